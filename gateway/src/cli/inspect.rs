//! `alertmesh inspect FILE...`: decodes alert files locally and prints, per alert, one JSON
//! line `{"key", "namespace", "schema", "ra", "dec", "alert"}`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use alertmesh_alert::apache_avro::Schema;
use alertmesh_alert::{BytesMode, Decoder, Format, JsonOptions, Registry, SchemaDir, Subject};
use serde_json::{json, Value};

/// Arguments of `alertmesh inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Avro schemas for Confluent-framed files, as `<dir>/<major>/<minor>/*.avsc`.
    #[arg(long, value_name = "DIR")]
    pub schema_dir: Option<PathBuf>,
    /// Write cutout images as null.
    #[arg(long)]
    pub omit_cutouts: bool,
    /// Alert files: Avro OCF, Confluent wire format, or JSON.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// The format of a payload, from its first bytes.
pub(super) fn sniff(bytes: &[u8]) -> Option<Format> {
    match bytes {
        [b'O', b'b', b'j', 1, ..] => Some(Format::AvroOcf),
        [0, _, _, _, _, ..] => Some(Format::AvroConfluent),
        _ if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Some(Format::Json),
        _ => None,
    }
}

fn schema_name(schema: &Schema) -> Value {
    match schema {
        Schema::Record(r) => Value::String(r.name.fullname(None)),
        _ => Value::Null,
    }
}

pub(super) fn inspect(args: InspectArgs) -> Result<(), String> {
    let decoder = match &args.schema_dir {
        None => Decoder::new(),
        Some(dir) => Decoder::with_resolver(Arc::new(
            SchemaDir::load(dir).map_err(|e| format!("--schema-dir: {e}"))?,
        )),
    };
    let registry = Registry::builtin();
    let options = JsonOptions {
        bytes: if args.omit_cutouts {
            BytesMode::OmitCutouts
        } else {
            BytesMode::Base64
        },
        ..JsonOptions::default()
    };
    let mut failed = 0;
    let mut out = io::stdout().lock();
    for path in &args.files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                failed += 1;
                continue;
            }
        };
        let Some(format) = sniff(&bytes) else {
            eprintln!(
                "error: {}: not an alert file (expected Avro OCF, Confluent wire format or JSON)",
                path.display()
            );
            failed += 1;
            continue;
        };
        let alerts = match decoder.decode_all(format, &bytes) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                failed += 1;
                continue;
            }
        };
        for alert in &alerts {
            let subject = Subject::new(alert, &registry);
            let head = json!({
                "key": subject.key.as_ref().map(|k| k.to_string()),
                "namespace": subject.key.as_ref().map(|k| k.namespace().to_owned()),
                "schema": alert.schema().map_or(Value::Null, |s| schema_name(s.schema())),
                "ra": subject.position.map(|p| p.0),
                "dec": subject.position.map(|p| p.1),
            });
            let mut line = head.to_string();
            line.pop();
            line.push_str(",\"alert\":");
            line.push_str(&String::from_utf8_lossy(&alert.to_json(options)));
            line.push('}');
            if let Err(e) = writeln!(out, "{line}") {
                return if e.kind() == io::ErrorKind::BrokenPipe {
                    Ok(())
                } else {
                    Err(e.to_string())
                };
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} file(s) could not be inspected",
            args.files.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_their_first_bytes() {
        assert_eq!(sniff(b"Obj\x01rest"), Some(Format::AvroOcf));
        assert_eq!(sniff(&[0, 0, 0, 3, 76, 1, 2]), Some(Format::AvroConfluent));
        assert_eq!(sniff(b"  {\"a\": 1}"), Some(Format::Json));
        assert_eq!(sniff(b"PK\x03\x04"), None);
        assert_eq!(sniff(b""), None);
    }
}
