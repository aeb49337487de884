//! The publishing side of `[[topics]]`: `publish = true` and the optional `schema` file
//! published payloads are checked against.

use std::path::Path;
use std::sync::Arc;

use alertmesh_alert::json_schema::JsonSchema;
use alertmesh_alert::{Format, WriterSchema};

use super::reader::Reader;

/// The schema a publishable topic's payloads must match.
#[derive(Debug, Clone)]
pub enum TopicSchema {
    /// An Avro schema (`.avsc`): the payload's records must resolve to it.
    Avro(Arc<WriterSchema>),
    /// A JSON Schema: the document must match its `type`, `required`, `properties`
    /// and `items` keywords. `fingerprint` (the `am-schema` of records checked with it)
    /// is the 64-bit FNV-1a hash of the file, in hex.
    Json {
        schema: Arc<JsonSchema>,
        fingerprint: String,
        /// The file as written, shown to publishers in the topic listing.
        text: Arc<str>,
    },
}

impl TopicSchema {
    /// The schema as publishers see it in the topic listing: the JSON Schema file, or the
    /// Avro schema in its Parsing Canonical Form.
    pub fn text(&self) -> String {
        match self {
            TopicSchema::Json { text, .. } => text.to_string(),
            TopicSchema::Avro(s) => s.schema().canonical_form(),
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Reads `publish` and `schema` of the `[[topics]]` entry at `path`.
pub(super) fn read(
    r: &mut Reader,
    t: &mut toml::Table,
    path: &str,
    base: &Path,
    format: Option<Format>,
) -> (bool, Option<TopicSchema>) {
    let publish = r.bool(t, path, "publish", false);
    let file = r.string(t, path, "schema", Some(String::new()));
    let key = format!("{path}.schema");
    let file = match file {
        Some(f) if !f.is_empty() => f,
        _ => return (publish, None),
    };
    if !publish {
        r.error(
            &key,
            "a schema checks published records; set publish = true or remove it",
        );
        return (publish, None);
    }
    let full = base.join(&file);
    let text = match std::fs::read_to_string(&full) {
        Ok(text) => text,
        Err(e) => {
            r.error(&key, &format!("cannot read {}: {e}", full.display()));
            return (publish, None);
        }
    };
    let schema = match format {
        None => return (publish, None),
        Some(Format::Json) => JsonSchema::parse(&text)
            .map(|s| TopicSchema::Json {
                schema: Arc::new(s),
                fingerprint: format!("{:016x}", fnv1a(text.as_bytes())),
                text: Arc::from(text.as_str()),
            })
            .map_err(|e| format!("{} is not a usable JSON Schema: {e}", full.display())),
        Some(Format::AvroOcf | Format::AvroConfluent) => WriterSchema::parse(&text)
            .map(|s| TopicSchema::Avro(Arc::new(s)))
            .map_err(|e| format!("{} is not an Avro schema: {e}", full.display())),
    };
    match schema {
        Ok(s) => (publish, Some(s)),
        Err(e) => {
            r.error(&key, &e);
            (publish, None)
        }
    }
}
