//! What a gateway does with a published payload, on arbitrary bytes: the bytes as a JSON
//! Schema, as a JSON document checked against one, and as an Avro container resolved to
//! a topic's schema. Errors are fine, panics and hangs are not.
#![no_main]

use std::sync::OnceLock;

use alertmesh_alert::json_schema::JsonSchema;
use alertmesh_alert::{Decoder, Format, WriterSchema};
use libfuzzer_sys::fuzz_target;

const JSON_SCHEMA: &str = r#"{"type":"object","required":["class"],"properties":{
  "class":{"type":"string"},"score":{"type":["number","null"]},
  "bands":{"type":"array","items":{"type":"object","properties":{"mag":{"type":"number"}}}}}}"#;
const AVRO_SCHEMA: &str = r#"{"type":"record","name":"a","fields":[{"name":"id","type":"long"},
  {"name":"s","type":["null","string"]},{"name":"xs","type":{"type":"array","items":"double"}}]}"#;

fuzz_target!(|data: &[u8]| {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    static JSON: OnceLock<JsonSchema> = OnceLock::new();
    static AVRO: OnceLock<WriterSchema> = OnceLock::new();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(schema) = JsonSchema::parse(text) {
            if let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) {
                let _ = schema.check(&doc);
            }
        }
    }
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
        let schema = JSON.get_or_init(|| JsonSchema::parse(JSON_SCHEMA).unwrap());
        let _ = schema.check(&doc);
    }
    let decoder = DECODER.get_or_init(Decoder::new);
    let declared = AVRO.get_or_init(|| WriterSchema::parse(AVRO_SCHEMA).unwrap());
    if let Ok(alert) = decoder.decode(Format::AvroOcf, data) {
        let _ = alert.into_value().resolve(declared.schema());
    }
});
