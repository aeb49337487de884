use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value;

use super::*;
use crate::schema::WriterSchema;
use crate::{decode_bare, decode_bare_projected};

const SCHEMA: &str = r#"{"type":"record","name":"r","namespace":"t","fields":[
  {"name":"a","type":{"type":"array","items":"long"}},
  {"name":"m","type":{"type":"map","values":"string"}},
  {"name":"id","type":"long"},
  {"name":"u","type":["null",{"type":"record","name":"s","fields":[
      {"name":"x","type":"double"},{"name":"y","type":"string"},
      {"name":"next","type":["null","s"]}]}]},
  {"name":"e","type":{"type":"enum","name":"band","symbols":["g","r"]}},
  {"name":"f","type":{"type":"fixed","name":"f4","size":4}},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"flag","type":"boolean"}]}"#;

fn schema() -> Arc<WriterSchema> {
    Arc::new(WriterSchema::parse(SCHEMA).unwrap())
}

/// A datum written with negative block counts (item count, then the block's byte size).
fn datum() -> Vec<u8> {
    let mut out = vec![];
    out.extend([3, 4, 2, 4, 2, 6, 0]); // a: block of -2 (4 bytes) [1, 2], block [3], end
    out.extend([1, 8, 2, b'k', 2, b'v', 0]); // m: block of -1 (4 bytes) {"k": "v"}, end
    out.push(84); // id: 42
    out.push(2); // u: branch 1, the record s
    out.extend(1.5f64.to_le_bytes());
    out.extend([4, b'h', b'i']);
    out.push(2); // next: branch 1, another s
    out.extend(2.5f64.to_le_bytes());
    out.extend([0, 0]); // y "", next null
    out.push(2); // e: "r"
    out.extend([9, 8, 7, 6]); // f
    out.extend([0x80, 0x01]); // ts: 64
    out.push(1); // flag
    out
}

fn paths(list: &[&str]) -> Projection {
    Projection::new(list.iter().map(|p| FieldPath::parse(p).unwrap()))
}

fn show(v: Option<&Value>) -> String {
    format!("{v:?}")
}

#[test]
fn projected_lookups_equal_full_lookups_with_negative_block_counts() {
    let ws = schema();
    let full = decode_bare(&ws, &datum()).unwrap();
    for list in [
        &["id"][..],
        &["a", "m.k", "id"],
        &["u.x", "u.next.next.x", "e"],
        &["u.next.y", "ts", "flag", "f"],
        &["m.nope", "u", "a.x", "id.x", "nope"],
        &[],
    ] {
        let projection = paths(list);
        let part = decode_bare_projected(&ws, &datum(), &projection).unwrap();
        for p in list {
            let p = FieldPath::parse(p).unwrap();
            assert_eq!(
                show(p.lookup(part.value())),
                show(p.lookup(full.value())),
                "{p}"
            );
        }
    }
}

#[test]
fn projected_records_keep_only_needed_fields() {
    let ws = schema();
    let part = decode_bare_projected(&ws, &datum(), &paths(&["id", "m.k"])).unwrap();
    let want = Value::Record(vec![
        (
            "m".into(),
            Value::Map(HashMap::from([("k".into(), Value::String("v".into()))])),
        ),
        ("id".into(), Value::Long(42)),
    ]);
    assert_eq!(part.value(), &want);
}

#[test]
fn truncated_or_corrupt_datums_are_errors() {
    let ws = schema();
    let bytes = datum();
    for projection in [paths(&["id"]), paths(&["u.y", "a"]), paths(&[])] {
        for cut in 0..bytes.len() {
            assert!(
                decode_bare_projected(&ws, &bytes[..cut], &projection).is_err(),
                "{cut}"
            );
        }
        let mut bad_branch = bytes.clone();
        bad_branch[15] = 6; // union index 3 of 2
        assert!(decode_bare_projected(&ws, &bad_branch, &projection).is_err());
    }
    // A block skipped by its byte size must fit (a decoded one ignores the size).
    let mut long_block = bytes.clone();
    long_block[1] = 0x7e; // block size 63: past the end
    assert!(decode_bare_projected(&ws, &long_block, &paths(&["id"])).is_err());
}

#[test]
fn huge_counts_of_empty_items_are_bounded() {
    let ws = Arc::new(
        WriterSchema::parse(r#"{"type":"record","name":"n","fields":[{"name":"a","type":{"type":"array","items":"null"}},{"name":"id","type":"int"}]}"#)
            .unwrap(),
    );
    // 2^62 nulls in one block, then the end, then id 1.
    let mut bytes = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    bytes.extend([0, 2]);
    let skipped = decode_bare_projected(&ws, &bytes, &paths(&["id"])).unwrap();
    assert_eq!(paths(&["id"]).paths_for(ws.schema()).len(), 1);
    assert_eq!(
        FieldPath::parse("id").unwrap().lookup(skipped.value()),
        Some(&Value::Int(1))
    );
    assert!(decode_bare_projected(&ws, &bytes, &paths(&["a"])).is_err());
}

#[test]
fn plans_are_cached_per_schema_and_projection() {
    let ws = schema();
    let projection = paths(&["id"]);
    let a = ws.plan(&projection).unwrap();
    assert!(Arc::ptr_eq(&a, &ws.plan(&projection.clone()).unwrap()));
    assert!(!Arc::ptr_eq(&a, &ws.plan(&paths(&["id"])).unwrap()));
}

/// Values that take a byte or a few on the wire but far more decoded, repeated: an enum of
/// a 300 KB symbol 400 000 times (120 GB decoded), and 200 000 arrays of 65 536 nulls each
/// (a few bytes per array, 3 MB decoded). Each decode is refused within its budget (64
/// bytes decoded per byte read, at least 64 MiB) instead of taking the process's memory.
#[test]
fn decoded_values_are_bounded_by_the_datum_size() {
    let symbol = "S".repeat(300_000);
    let enums = WriterSchema::parse(&format!(
        r#"{{"type":"record","name":"r","fields":[{{"name":"xs","type":{{"type":"array",
        "items":{{"type":"enum","name":"e","symbols":["{symbol}"]}}}}}}]}}"#
    ))
    .unwrap();
    let mut datum = vec![0x80, 0xea, 0x30]; // a block of 400 000 items (zigzag varint)
    datum.extend(std::iter::repeat_n(0u8, 400_000));
    datum.push(0);
    let err = decode_bare(&Arc::new(enums), &datum)
        .unwrap_err()
        .to_string();
    assert!(err.contains("far more memory"), "{err}");

    let nested = Arc::new(
        WriterSchema::parse(
            r#"{"type":"record","name":"r","fields":[{"name":"xs","type":{"type":"array",
            "items":{"type":"array","items":"null"}}}]}"#,
        )
        .unwrap(),
    );
    let mut datum = vec![0x80, 0xb5, 0x18]; // 200 000 inner arrays
    for _ in 0..200_000 {
        datum.extend([0x80, 0x80, 0x08, 0x00]); // 65 536 nulls, then the end
    }
    datum.push(0);
    let err = decode_bare(&nested, &datum).unwrap_err().to_string();
    assert!(err.contains("far more memory"), "{err}");
    // A few of them decode.
    let mut small = vec![0x04];
    small.extend([0x80, 0x80, 0x08, 0x00, 0x80, 0x80, 0x08, 0x00, 0x00]);
    assert!(decode_bare(&nested, &small).is_ok());
}
