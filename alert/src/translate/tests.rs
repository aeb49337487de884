use apache_avro::types::Value;

use super::*;
use crate::json::JsonOptions;
use crate::Decoder;

const SOURCE: &str = r#"{"type":"record","name":"alert","namespace":"ztf","fields":[
    {"name":"objectId","type":"string"},{"name":"candid","type":"long"},
    {"name":"candidate","type":{"type":"record","name":"candidate","fields":[
      {"name":"ra","type":"double"},{"name":"dec","type":"double"},
      {"name":"magpsf","type":"float"},{"name":"nid","type":"int"}]}},
    {"name":"cutoutScience","type":["null","bytes"]}]}"#;

const TARGET: &str = r#"{"type":"record","name":"slim","namespace":"mesh","fields":[
    {"name":"object","type":"string","aliases":["objectId"]},
    {"name":"candid","type":"long"},
    {"name":"candidate","type":{"type":"record","name":"c","fields":[
      {"name":"ra","type":"double"},{"name":"dec","type":"double"},
      {"name":"mag","type":"double","aliases":["magpsf"]},
      {"name":"nid","type":["null","long"]},
      {"name":"band","type":"string","default":"g"}]}},
    {"name":"note","type":["null","string"],"default":null}]}"#;

fn ztf() -> Alert {
    let value = Value::Record(vec![
        ("objectId".into(), Value::String("ZTF20aabaesm".into())),
        ("candid".into(), Value::Long(1_095_578_115_815_010_001)),
        (
            "candidate".into(),
            Value::Record(vec![
                ("ra".into(), Value::Double(197.590032)),
                ("dec".into(), Value::Double(7.357639)),
                ("magpsf".into(), Value::Float(18.25)),
                ("nid".into(), Value::Int(1095)),
            ]),
        ),
        (
            "cutoutScience".into(),
            Value::Union(1, Box::new(Value::Bytes(vec![1; 10]))),
        ),
    ]);
    Alert::new(value, Some(Arc::new(WriterSchema::parse(SOURCE).unwrap())))
}

#[test]
fn mapping_renames_promotes_defaults_and_drops() {
    let m = Mapping::new("ztf-slim", TARGET).unwrap();
    let out = m.apply(&ztf()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&out.to_json(JsonOptions::default())).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"object":"ZTF20aabaesm","candid":1095578115815010001_i64,
            "candidate":{"ra":197.590032,"dec":7.357639,"mag":18.25,"nid":1095,"band":"g"},"note":null})
    );
    // The projected value is valid for the target schema: it encodes and decodes.
    let bytes = encode(&out, Target::Ocf(apache_avro::Codec::Null)).unwrap();
    assert_eq!(
        Decoder::new()
            .decode(Format::AvroOcf, &bytes)
            .unwrap()
            .value(),
        out.value()
    );
}

#[test]
fn mapping_errors_name_the_field() {
    let m = Mapping::new(
        "bad",
        r#"{"type":"record","name":"x","fields":[{"name":"missing","type":"int"}]}"#,
    )
    .unwrap();
    let err = m.apply(&ztf()).unwrap_err().to_string();
    assert!(
        err.contains("mapping bad") && err.contains("at missing"),
        "{err}"
    );
    let m = Mapping::new(
        "narrow",
        r#"{"type":"record","name":"x","fields":[{"name":"candid","type":"int"}]}"#,
    )
    .unwrap();
    assert!(m
        .apply(&ztf())
        .unwrap_err()
        .to_string()
        .contains("at candid"));
    let mut all = Mappings::default();
    all.insert(m);
    assert!(all.get("narrow").is_ok());
    assert!(all
        .get("nope")
        .unwrap_err()
        .to_string()
        .contains("known: narrow"));
}

#[test]
fn translate_rekeys_and_converts_format() {
    let registry = Registry::builtin();
    let t = translate(
        &ztf(),
        &registry,
        None,
        Target::Json(JsonOptions::default()),
    )
    .unwrap();
    assert_eq!(t.key.to_string(), "ZTF:ZTF20aabaesm");
    assert_eq!(t.format, Some(Format::Json));
    let back = Decoder::new().decode(Format::Json, &t.payload).unwrap();
    assert_eq!(mesh_key(&back, &registry).unwrap(), t.key);
    let m = Mapping::new("ztf-slim", TARGET).unwrap();
    let t = translate(&ztf(), &registry, Some(&m), Target::Confluent(7)).unwrap();
    assert_eq!(t.schema.as_deref(), Some("7"));
    assert_eq!(t.key.to_string(), "ZTF:ZTF20aabaesm");
    // JSON back to Avro through the mapping (schema-less source).
    let projected = m.apply(&back).unwrap();
    assert!(encode(&projected, Target::Bare).is_ok());
}
