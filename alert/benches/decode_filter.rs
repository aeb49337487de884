//! Per-core throughput of decode + filter + re-key on the ZTF fixtures, against Python
//! fastavro doing the same work (decode, the same predicate and cone, build the key), all
//! measured in the same run.
//!
//! `cargo bench -p alertmesh-alert --bench decode_filter` prints four rates and three ratios:
//!
//! - **projected vs fastavro** — the target (at least 20x). alertmesh's projected path
//!   ([`Decoder::decode_projected`] with [`Projection::for_filter`]), which the gateway uses
//!   to filter when it sends no JSON, against a Python broker decoding the same files with
//!   fastavro's default reader, as the issue's "decode + filter on the same files" means.
//! - **full vs fastavro** — alertmesh's full decoding ([`Decoder::decode`]) against the same
//!   fastavro reader: what a subscription that needs every field costs.
//! - **projected vs projected fastavro** — shown for honesty: fastavro given a reader schema
//!   with only the needed fields (`objectId`, `candidate.{ra,dec,magpsf,ndethist}`).
//!
//! The Python side (`../.venv/bin/python`, else `python3`) is skipped with a message when
//! fastavro is missing. Only `*.avro` files of the fixture folder are read (it also holds
//! its manifest); the others are listed as skipped. `BENCH_SECONDS` (default 3) sets the
//! length of each measurement: `make test` runs it for a fraction of a second as a smoke test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use alertmesh_alert::{Alert, Decoder, Filter, Format, Projection, Registry, Result, Subject};

/// Seconds per measurement, unless `BENCH_SECONDS` says otherwise.
const SECONDS: f64 = 3.0;

fn seconds() -> f64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(SECONDS)
}

const PY: &str = r#"
import fastavro, glob, io, math, sys, time
files = [open(p, 'rb').read() for p in sorted(glob.glob(sys.argv[1] + '/*.avro'))]
NEED = {'objectId': None, 'candidate': {'ra': None, 'dec': None, 'magpsf': None, 'ndethist': None}}
def prune(schema, need):
    if isinstance(schema, list):
        return [prune(s, need) for s in schema]
    if isinstance(schema, dict) and schema.get('type') == 'record':
        fields = [dict(f, type=prune(f['type'], need[f['name']]) if need[f['name']] else f['type'])
                  for f in schema['fields'] if f['name'] in need]
        return dict(schema, fields=fields)
    return schema
reader_schema = None
if sys.argv[2] == 'projected':
    reader_schema = fastavro.parse_schema(prune(fastavro.reader(io.BytesIO(files[0])).writer_schema, NEED))
def sep(ra1, d1, ra2, d2):
    p1, p2, dl = math.radians(d1), math.radians(d2), math.radians(ra2 - ra1)
    a = math.cos(p2) * math.sin(dl)
    b = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(math.hypot(a, b), math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)))
n, kept, t0 = 0, 0, time.perf_counter()
while time.perf_counter() - t0 < float(sys.argv[3]):
    for data in files:
        for rec in fastavro.reader(io.BytesIO(data), reader_schema=reader_schema):
            c = rec['candidate']
            key = 'ZTF:' + rec['objectId']
            if c['magpsf'] < 18.5 and c['ndethist'] >= 1 and sep(197.6, 7.2, c['ra'], c['dec']) < 2.0:
                kept += 1
            n += 1
print(n / (time.perf_counter() - t0))
"#;

/// Alerts per second of `decode` + [`Subject::new`] (re-key) + `filter`.
fn measure(
    label: &str,
    payloads: &[Vec<u8>],
    filter: &Filter,
    decode: impl Fn(&[u8]) -> Result<Alert>,
) -> f64 {
    let registry = Registry::builtin();
    let (mut n, mut kept) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds() {
        for payload in payloads {
            let alert = decode(payload).expect("fixture decodes");
            let subject = Subject::new(&alert, &registry);
            assert!(subject.key.is_some());
            kept += u64::from(filter.matches(&subject));
            n += 1;
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("{label:<28} {rate:>8.0} alerts/s/core ({kept} of {n} kept)");
    rate
}

/// fastavro's rate in `mode` (`full` or `projected`), if Python with fastavro is there.
fn fastavro(dir: &Path, mode: &str) -> Option<f64> {
    ["../.venv/bin/python", "python3"]
        .iter()
        .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
        .chain(std::iter::once(PathBuf::from("python3")))
        .find_map(|py| {
            let out = Command::new(&py)
                .args(["-c", PY])
                .arg(dir)
                .args([mode, &seconds().to_string()])
                .output()
                .ok()?;
            out.status.success().then(|| {
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })?
        })
        .inspect(|rate| {
            println!(
                "{:<28} {rate:>8.0} alerts/s/core",
                format!("fastavro {mode}")
            )
        })
}

fn main() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ztf/fink-ztf-public-2020-01-01");
    let (mut files, mut skipped): (Vec<PathBuf>, Vec<PathBuf>) = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .partition(|p| p.extension().is_some_and(|e| e == "avro"));
    files.sort();
    skipped.sort();
    println!("{} alert files in {}", files.len(), dir.display());
    for p in &skipped {
        println!("skipped: {} (not an .avro alert)", p.display());
    }
    let payloads: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();

    let registry = Registry::builtin();
    let decoder = Decoder::new();
    let filter = Filter::And(vec![
        Filter::predicate("candidate.magpsf < 18.5 && candidate.ndethist >= 1").unwrap(),
        Filter::cone(197.6, 7.2, 2.0).unwrap(),
    ]);
    let projection = Projection::for_filter(&filter, &registry);

    let projected = measure("alertmesh projected", &payloads, &filter, |p| {
        decoder.decode_projected(Format::AvroOcf, p, &projection)
    });
    let full = measure("alertmesh full", &payloads, &filter, |p| {
        decoder.decode(Format::AvroOcf, p)
    });
    let (Some(py_full), Some(py_projected)) = (fastavro(&dir, "full"), fastavro(&dir, "projected"))
    else {
        println!("fastavro: skipped (no python with fastavro)");
        return;
    };
    println!(
        "ratio projected / fastavro:           {:>5.1}x (the target: >= 20x)",
        projected / py_full
    );
    println!(
        "ratio full / fastavro:                {:>5.1}x",
        full / py_full
    );
    println!(
        "ratio projected / fastavro projected: {:>5.1}x",
        projected / py_projected
    );
}
