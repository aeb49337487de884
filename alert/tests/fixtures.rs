//! Every real alert in `tests/fixtures` decoded by alertmesh and checked against an
//! independent reader (fastavro): the checked-in `expected.json` always, and full records
//! when Python with fastavro is available.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use alertmesh_alert::apache_avro::types::Value;
use alertmesh_alert::Filter;
use alertmesh_alert::{
    encode, Alert, BytesMode, Decoder, FieldPath, Format, JsonOptions, Registry, SchemaDir, Target,
};
use serde_json::Value as Json;

mod common;

use common::{avro_files, dir};

fn rel(path: &Path) -> String {
    path.strip_prefix(dir())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

fn at<'v>(alert: &'v Alert, path: &str) -> Option<&'v Value> {
    FieldPath::parse(path).unwrap().lookup(alert.value())
}

fn bytes_len(v: Option<&Value>) -> Json {
    match v {
        Some(Value::Bytes(b)) => Json::from(b.len()),
        _ => Json::Null,
    }
}

fn f32_of(v: Option<&Value>) -> Option<f32> {
    match v {
        Some(Value::Float(x)) => Some(*x),
        _ => None,
    }
}

fn expected_key(e: &Json) -> String {
    if e["family"] == "ztf" {
        return format!("ZTF:{}", e["object_id"].as_str().unwrap());
    }
    let present = |k: &str| e[k].as_i64().filter(|n| *n != 0);
    match present("dia_object_id").or(present("dia_source_object_id")) {
        Some(id) => format!("LSST:dia:{id}"),
        None => format!("LSST:ss:{}", present("ss_object_id").unwrap()),
    }
}

#[test]
fn every_fixture_matches_the_fastavro_summary() {
    let expected: Json =
        serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap();
    let registry = Registry::builtin();
    let decoder = Decoder::new();
    let mut checked = 0;
    for path in avro_files() {
        let name = rel(&path);
        let alerts = decoder
            .decode_all(Format::AvroOcf, &std::fs::read(&path).unwrap())
            .unwrap();
        let want = expected[&name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} not in expected.json"));
        assert_eq!(alerts.len(), want.len(), "{name}");
        for (alert, e) in alerts.iter().zip(want) {
            let family = registry
                .family_for_schema(alert.schema().unwrap().schema())
                .unwrap();
            assert_eq!(family.name(), e["family"], "{name}");
            let key = registry.extract_key(family, alert.value()).unwrap();
            assert_eq!(key.to_string(), expected_key(e), "{name}");
            let (ra, dec) = family.position(alert.value()).unwrap();
            assert_eq!(
                (ra, dec),
                (e["ra"].as_f64().unwrap(), e["dec"].as_f64().unwrap()),
                "{name}"
            );
            let id_path = if e["family"] == "ztf" {
                "candid"
            } else if at(alert, "alertId").is_some() {
                "alertId"
            } else {
                "diaSourceId"
            };
            assert_eq!(
                at(alert, id_path),
                Some(&Value::Long(e["alert_id"].as_i64().unwrap())),
                "{name}"
            );
            let lengths: Vec<Json> = if e["family"] == "ztf" {
                assert_eq!(
                    f32_of(at(alert, "candidate.magpsf")),
                    e["magpsf"].as_f64().map(|x| x as f32),
                    "{name}"
                );
                ["cutoutScience", "cutoutTemplate", "cutoutDifference"]
                    .map(|c| bytes_len(at(alert, &format!("{c}.stampData"))))
                    .into()
            } else {
                assert_eq!(
                    f32_of(at(alert, "diaSource.psfFlux")),
                    e["psf_flux"].as_f64().map(|x| x as f32),
                    "{name}"
                );
                ["cutoutScience", "cutoutTemplate", "cutoutDifference"]
                    .map(|c| bytes_len(at(alert, c)))
                    .into()
            };
            assert_eq!(Json::from(lengths), e["cutout_lengths"], "{name}");
            checked += 1;
        }
    }
    assert_eq!(checked, 81);
}

#[test]
fn json_output_keeps_ids_exact_and_can_drop_cutouts() {
    let decoder = Decoder::new();
    for path in avro_files() {
        for alert in decoder
            .decode_all(Format::AvroOcf, &std::fs::read(&path).unwrap())
            .unwrap()
        {
            let full = alert.to_json(JsonOptions::default());
            let slim = alert.to_json(JsonOptions {
                bytes: BytesMode::OmitCutouts,
                ..JsonOptions::default()
            });
            let parsed: Json = serde_json::from_slice(&slim).unwrap();
            assert!(
                slim.len() < 60_000 && full.len() >= slim.len(),
                "{}",
                rel(&path)
            );
            if let Some(Value::Long(id)) = at(&alert, "diaSourceId").or(at(&alert, "candid")) {
                let key = if parsed.get("candid").is_some() {
                    "candid"
                } else {
                    "diaSourceId"
                };
                assert_eq!(parsed[key].as_i64(), Some(*id));
                assert!(String::from_utf8_lossy(&slim).contains(&format!(":{id},")));
            }
            assert!(parsed["cutoutScience"].is_null());
        }
    }
}

#[test]
fn lsst_alerts_round_trip_through_confluent_wire_with_split_schemas() {
    let schemas = SchemaDir::load(&dir().join("lsst/schema")).unwrap();
    assert_eq!(schemas.ids().collect::<Vec<_>>(), [701, 900, 1100]);
    let decoder = Decoder::with_resolver(Arc::new(schemas));
    let ocf = Decoder::new();
    for (file, id) in [
        ("lsst/sample_data/7/1/fakeAlert.avro", 701),
        ("lsst/sample_data/9/0/fakeAlert.avro", 900),
        ("lsst/sample_data/11/0/fakeAlert.avro", 1100),
        ("lsst/ampel_usdf_dev_v7_1/schema_701.avro", 701),
    ] {
        for alert in ocf
            .decode_all(Format::AvroOcf, &std::fs::read(dir().join(file)).unwrap())
            .unwrap()
        {
            let wire = encode(&alert, Target::Confluent(id)).unwrap();
            let back = decoder.decode(Format::AvroConfluent, &wire).unwrap();
            // Values hold NaN (never equal to itself): compare the encodings instead.
            let same_bytes =
                encode(&back, Target::Bare).unwrap() == encode(&alert, Target::Bare).unwrap();
            assert!(same_bytes, "{file}: record changed through confluent wire");
            assert_eq!(
                back.schema().unwrap().fingerprint(),
                alert.schema().unwrap().fingerprint(),
                "{file}: split schema differs from the embedded one"
            );
        }
    }
}

#[test]
fn truncated_fixtures_are_errors_not_panics() {
    let decoder = Decoder::new();
    for path in avro_files() {
        let bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        for cut in [0, 1, 3, 4, 10, 100, n / 4, n / 2, n - 17, n - 16, n - 1] {
            assert!(
                decoder.decode_all(Format::AvroOcf, &bytes[..cut]).is_err(),
                "{} cut at {cut}",
                rel(&path)
            );
        }
        let mut flipped = bytes.clone();
        flipped[n / 2] ^= 0xff;
        let _ = decoder.decode_all(Format::AvroOcf, &flipped);
        let _ = decoder.decode_all(Format::Json, &bytes[..n / 2]);
    }
}

/// Python with fastavro: `$ALERTMESH_PYTHON`, else the repo's `.venv`, else `python3`.
fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let candidates = [
        std::env::var_os("ALERTMESH_PYTHON").map(PathBuf::from),
        Some(venv),
        Some("python3".into()),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import fastavro"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Numbers equal as integers when both are, else as f32 when either came from a float field.
fn same(a: &Json, b: &Json, at: &str) -> Result<(), String> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let ok = match (x.as_i64(), y.as_i64()) {
                (Some(i), Some(j)) => i == j,
                _ => {
                    let (p, q) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                    p == q || p as f32 == q as f32
                }
            };
            ok.then_some(()).ok_or(format!("{at}: {x} != {y}"))
        }
        (Json::Object(x), Json::Object(y)) => {
            if x.len() != y.len() {
                return Err(format!("{at}: field count differs"));
            }
            x.iter().try_for_each(|(k, v)| {
                same(v, y.get(k).unwrap_or(&Json::Null), &format!("{at}.{k}"))
            })
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (p, q))| same(p, q, &format!("{at}[{i}]"))),
        _ => (a == b).then_some(()).ok_or(format!("{at}: {a} != {b}")),
    }
}

#[test]
fn every_record_matches_fastavro_field_by_field() {
    let Some(py) = python() else {
        eprintln!("SKIPPED every_record_matches_fastavro_field_by_field: no python with fastavro (set ALERTMESH_PYTHON or `python3 -m venv .venv && .venv/bin/pip install fastavro`)");
        return;
    };
    let script = dir().join("fastavro_reference.py");
    let decoder = Decoder::new();
    for path in avro_files() {
        let out = Command::new(&py)
            .arg(&script)
            .arg("full")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reference: Json = serde_json::from_slice(&out.stdout).unwrap();
        let ours: Vec<Json> = decoder
            .decode_all(Format::AvroOcf, &std::fs::read(&path).unwrap())
            .unwrap()
            .iter()
            .map(|a| serde_json::from_slice(&a.to_json(JsonOptions::default())).unwrap())
            .collect();
        same(&Json::from(ours), &reference, &rel(&path)).unwrap();
    }
}

#[test]
fn filters_work_on_real_alerts_and_schemas() {
    let registry = Registry::builtin();
    let expected: Json =
        serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap();
    let decoder = Decoder::new();
    let ztf_bright = Filter::predicate(
        "candidate.magpsf < 18.5 && candidate.ndethist >= 1 && candidate.isdiffpos is not null",
    )
    .unwrap();
    let lsst_bright =
        Filter::predicate("diaSource.psfFlux > 1e4 || diaObject.diaObjectId is null").unwrap();
    for path in avro_files() {
        let name = rel(&path);
        let alerts = decoder
            .decode_all(Format::AvroOcf, &std::fs::read(&path).unwrap())
            .unwrap();
        for (alert, e) in alerts.iter().zip(expected[&name].as_array().unwrap()) {
            let schema = alert.schema().unwrap().schema();
            let (ra, dec) = (e["ra"].as_f64().unwrap(), e["dec"].as_f64().unwrap());
            let near = Filter::cone(ra + 0.5 / 3600.0, dec, 1.0 / 3600.0).unwrap();
            let far = Filter::cone(ra + 180.0, -dec, 1.0).unwrap();
            assert!(
                near.matches_alert(alert, &registry) && !far.matches_alert(alert, &registry),
                "{name}"
            );
            let ids = Filter::object_ids(&[expected_key(e)], &registry).unwrap();
            assert!(ids.matches_alert(alert, &registry), "{name}");
            let (bright, other, want) = if e["family"] == "ztf" {
                (
                    &ztf_bright,
                    &lsst_bright,
                    e["magpsf"].as_f64().unwrap() < 18.5,
                )
            } else {
                let flux = e["psf_flux"].as_f64().unwrap_or(f64::NAN);
                (
                    &lsst_bright,
                    &ztf_bright,
                    flux > 1e4 || e["dia_object_id"].is_null(),
                )
            };
            bright.check_schema(schema).unwrap();
            assert_eq!(bright.matches_alert(alert, &registry), want, "{name}");
            let err = other.check_schema(schema).unwrap_err();
            assert!(
                matches!(err, alertmesh_alert::Error::UnknownField { .. }),
                "{name}: {err}"
            );
        }
    }
}
