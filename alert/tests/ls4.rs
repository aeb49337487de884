//! LS4 (SeeChange) alerts: bare schemaless Avro with a known split schema and UUID ids.
//! No real LS4 alert is public yet, so the test builds one from the real v0.2 schema.

use std::path::Path;
use std::sync::Arc;

use alertmesh_alert::apache_avro::schema::Schema;
use alertmesh_alert::apache_avro::types::Value;
use alertmesh_alert::path::SchemaNames;
use alertmesh_alert::schema::combine_split_schemas;
use alertmesh_alert::{
    decode_bare, encode, mesh_key, Alert, Filter, Registry, Target, WriterSchema,
};

/// The simplest value of a schema: zeros, empty strings, the first union branch.
fn zero<'s>(schema: &'s Schema, names: &SchemaNames<'s>) -> Value {
    match names.deref(schema) {
        Schema::Boolean => Value::Boolean(false),
        Schema::Int => Value::Int(0),
        Schema::Long => Value::Long(0),
        Schema::Float => Value::Float(0.0),
        Schema::Double => Value::Double(0.0),
        Schema::String => Value::String(String::new()),
        Schema::Bytes => Value::Bytes(Vec::new()),
        Schema::Uuid => Value::Uuid(Default::default()),
        Schema::Array(_) => Value::Array(Vec::new()),
        Schema::Union(u) => Value::Union(0, Box::new(zero(&u.variants()[0], names))),
        Schema::Record(r) => Value::Record(
            r.fields
                .iter()
                .map(|f| (f.name.clone(), zero(&f.schema, names)))
                .collect(),
        ),
        Schema::Enum(e) => Value::Enum(0, e.symbols[0].clone()),
        other => panic!("unexpected type in the LS4 schema: {other:?}"),
    }
}

fn set(value: &mut Value, path: &[&str], new: Value) {
    let mut v = value;
    for (i, part) in path.iter().enumerate() {
        while let Value::Union(_, inner) = v {
            v = inner;
        }
        let Value::Record(fields) = v else {
            panic!("{part} is not in a record")
        };
        let slot = &mut fields.iter_mut().find(|(n, _)| n == part).unwrap().1;
        if i + 1 == path.len() {
            *slot = match slot {
                Value::Union(idx, _) => Value::Union(*idx, Box::new(new)),
                _ => new,
            };
            return;
        }
        v = slot;
    }
}

#[test]
fn ls4_bare_avro_decodes_and_keys_by_uuid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ls4");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    // SeeChange's v0.2 diaObject has a field named `ls-xgboost`, which the Avro spec does
    // not allow (fastavro accepts it; apache-avro does not). The error names it; the rest of
    // the test uses the spec-conforming spelling.
    let err = combine_split_schemas(&files, "ls4.v0_2.alert")
        .unwrap_err()
        .to_string();
    assert!(err.contains("ls-xgboost"), "{err}");
    let files: Vec<String> = files
        .iter()
        .map(|f| f.replace("\"ls-xgboost\"", "\"ls_xgboost\""))
        .collect();
    let schema = Arc::new(
        WriterSchema::new(combine_split_schemas(&files, "ls4.v0_2.alert").unwrap()).unwrap(),
    );
    let names = SchemaNames::new(schema.schema());
    let mut value = zero(schema.schema(), &names);
    let uuid = "0f8c1f2e-1d2b-4c3a-9e8f-0123456789ab";
    set(
        &mut value,
        &["alertId"],
        Value::String("7d0b9c1e-5a2f-4b8e-8c3d-2e1f0a9b8c7d".into()),
    );
    set(
        &mut value,
        &["diaObject", "diaObjectId"],
        Value::String(uuid.into()),
    );
    set(&mut value, &["diaSource", "ra"], Value::Double(250.25));
    set(&mut value, &["diaSource", "dec"], Value::Double(-60.5));
    let alert = Alert::new(value, Some(schema.clone()));
    let bare = encode(&alert, Target::Bare).unwrap();
    let back = decode_bare(&schema, &bare).unwrap();

    let registry = Registry::builtin();
    assert_eq!(
        registry.family_for_schema(schema.schema()).unwrap().name(),
        "ls4"
    );
    assert_eq!(
        mesh_key(&back, &registry).unwrap().to_string(),
        format!("LS4:{uuid}")
    );
    assert!(Filter::cone(250.25, -60.5, 0.001)
        .unwrap()
        .matches_alert(&back, &registry));
    for cut in [0, 1, bare.len() / 2, bare.len() - 1] {
        assert!(decode_bare(&schema, &bare[..cut]).is_err());
    }
}

/// 19 bytes announcing a map of 2^29 entries: apache-avro reserved room for all of them
/// (43 GB) before reading one, and the failed allocation aborted the process. Now a clear
/// error, and legitimate records still decode.
#[test]
fn a_huge_announced_block_count_is_an_error_not_an_abort() {
    let schema = std::sync::Arc::new(
        alertmesh_alert::WriterSchema::parse(
            r#"{"type":"record","name":"a","fields":[{"name":"id","type":"long"},
              {"name":"s","type":["null","string"]},{"name":"xs","type":{"type":"array","items":"double"}},
              {"name":"m","type":{"type":"map","values":"bytes"}}]}"#,
        )
        .unwrap(),
    );
    let hostile = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/crashes/decode-bare-map-count-43gb"
    ))
    .unwrap();
    assert_eq!(
        alertmesh_alert::limit_avro_allocations(),
        alertmesh_alert::MAX_AVRO_ITEMS
    );
    // An error (the data runs out long before the count), not a 43 GB reservation.
    let err = alertmesh_alert::decode_bare(&schema, &hostile)
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed avro payload"), "{err}");
    // An array announcing 2^22 + 1 doubles with none present: refused before reserving.
    let mut over = vec![0x02, 0x00]; // id 1, s null
    over.extend([0x82, 0x80, 0x80, 0x04]); // block count 2^22 + 1 (zigzag varint)
    assert!(alertmesh_alert::decode_bare(&schema, &over).is_err());
    // A small real record still decodes.
    let ok = [0x02, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x00, 0x00];
    let a = alertmesh_alert::decode_bare(&schema, &ok).unwrap();
    assert!(a
        .to_json(Default::default())
        .starts_with(br#"{"id":1,"s":null,"xs":[1.0]"#));
}
