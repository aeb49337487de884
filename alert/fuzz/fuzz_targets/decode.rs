//! Every decoder, full and projected, on arbitrary bytes: errors are fine, panics and
//! hangs are not.
#![no_main]

use std::sync::{Arc, OnceLock};

use alertmesh_alert::{
    decode_bare, decode_bare_projected, Decoder, FieldPath, Format, JsonOptions, Projection,
    WriterSchema,
};
use libfuzzer_sys::fuzz_target;

const SCHEMA: &str = r#"{"type":"record","name":"a","fields":[{"name":"id","type":"long"},
  {"name":"s","type":["null","string"]},{"name":"xs","type":{"type":"array","items":"double"}},
  {"name":"m","type":{"type":"map","values":"bytes"}}]}"#;

fuzz_target!(|data: &[u8]| {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    static BARE: OnceLock<Arc<WriterSchema>> = OnceLock::new();
    static PROJECTION: OnceLock<Projection> = OnceLock::new();
    let decoder = DECODER.get_or_init(Decoder::new);
    let projection = PROJECTION.get_or_init(|| {
        Projection::new(["id", "m.k", "s"].map(|p| FieldPath::parse(p).unwrap()))
    });
    for format in [Format::AvroOcf, Format::AvroConfluent, Format::Json] {
        if let Ok(alerts) = decoder.decode_all(format, data) {
            for a in alerts {
                let _ = a.to_json(JsonOptions::default());
            }
        }
        let _ = decoder.decode_all_projected(format, data, projection);
    }
    let schema = BARE.get_or_init(|| Arc::new(WriterSchema::parse(SCHEMA).unwrap()));
    let _ = decode_bare(schema, data);
    let _ = decode_bare_projected(schema, data, projection);
});
