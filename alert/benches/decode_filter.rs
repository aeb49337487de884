//! Per-core throughput of decode + filter + re-key on the ZTF fixtures, against Python
//! fastavro doing the same work (decode, the same predicate and cone, build the key).
//!
//! `cargo bench -p alertmesh-alert --bench decode_filter` (prints the ratio; the target is
//! at least 20x). The Python side is skipped with a message when fastavro is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use alertmesh_alert::{Decoder, Filter, Format, Registry, Subject};

const PY: &str = r#"
import fastavro, glob, io, math, sys, time
files = [open(p, 'rb').read() for p in sorted(glob.glob(sys.argv[1] + '/*.avro'))]
def sep(ra1, d1, ra2, d2):
    p1, p2, dl = math.radians(d1), math.radians(d2), math.radians(ra2 - ra1)
    a = math.cos(p2) * math.sin(dl)
    b = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(math.hypot(a, b), math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)))
n, kept, t0 = 0, 0, time.perf_counter()
while time.perf_counter() - t0 < 3.0:
    for data in files:
        for rec in fastavro.reader(io.BytesIO(data)):
            c = rec['candidate']
            key = 'ZTF:' + rec['objectId']
            if c['magpsf'] < 18.5 and c['ndethist'] >= 1 and sep(197.6, 7.2, c['ra'], c['dec']) < 2.0:
                kept += 1
            n += 1
print(n / (time.perf_counter() - t0))
"#;

fn main() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ztf/fink-ztf-public-2020-01-01");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let payloads: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();

    let registry = Registry::builtin();
    let decoder = Decoder::new();
    let filter = Filter::And(vec![
        Filter::predicate("candidate.magpsf < 18.5 && candidate.ndethist >= 1").unwrap(),
        Filter::cone(197.6, 7.2, 2.0).unwrap(),
    ]);
    let (mut n, mut kept) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < 3.0 {
        for payload in &payloads {
            let alert = decoder.decode(Format::AvroOcf, payload).unwrap();
            let subject = Subject::new(&alert, &registry);
            assert!(subject.key.is_some());
            kept += u64::from(filter.matches(&subject));
            n += 1;
        }
    }
    let rust = n as f64 / start.elapsed().as_secs_f64();
    println!("alertmesh: {rust:.0} alerts/s/core ({kept} of {n} kept)");

    let python = ["../.venv/bin/python", "python3"]
        .iter()
        .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
        .chain(std::iter::once(PathBuf::from("python3")))
        .find_map(|py| {
            let out = Command::new(&py).args(["-c", PY]).arg(&dir).output().ok()?;
            out.status.success().then(|| {
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })?
        });
    match python {
        Some(py) => println!(
            "fastavro:  {py:.0} alerts/s/core\nratio:     {:.1}x (target >= 20x)",
            rust / py
        ),
        None => println!("fastavro:  skipped (no python with fastavro)"),
    }
}
