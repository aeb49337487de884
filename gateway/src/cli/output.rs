//! How the CLI prints what a gateway sends: alerts as one JSON object per line or raw
//! payload files, and text (errors, names, descriptions) made safe for a terminal.

use std::path::{Path, PathBuf};

use alertmesh_alert::echo;
use alertmesh_alert::naming::check_topic;
use alertmesh_proto::v1;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Bytes as a JSON string when they are UTF-8, else as `{"base64": "..."}`.
fn bytes_value(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "base64": BASE64.encode(b) }),
    }
}

/// A timestamp as RFC 3339 text, the form a person reads everywhere the CLI prints a time.
pub fn rfc3339(t: &prost_types::Timestamp) -> Value {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

/// The JSON line for one alert. Header names repeated in one record become arrays.
pub fn alert_json(a: &v1::Alert) -> Value {
    let mut headers = Map::new();
    for h in &a.headers {
        let v = h.value.as_deref().map_or(Value::Null, bytes_value);
        match headers.get_mut(&h.key) {
            None => {
                headers.insert(h.key.clone(), v);
            }
            Some(Value::Array(items)) => items.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
        }
    }
    json!({
        "ref": a.r#ref,
        "topic": a.topic,
        "partition": a.partition,
        "offset": a.offset,
        "timestamp": a.timestamp.as_ref().map_or(Value::Null, rfc3339),
        "key": a.key.as_deref().map_or(Value::Null, bytes_value),
        "headers": headers,
        "namespace": a.namespace,
        "format": a.format,
        "schema": a.schema,
        "payload": BASE64.encode(&a.payload),
    })
}

/// The JSON line for a decoded alert (OUTPUT_JSON): the envelope, the mesh key under
/// "key", and the gateway's JSON document under "alert", embedded as is so that 64-bit
/// integers and floats keep every digit.
pub fn decoded_json(a: &v1::Alert) -> String {
    let mut envelope = alert_json(a);
    if let Some(obj) = envelope.as_object_mut() {
        obj.remove("payload");
        let key = match a.mesh_key.as_str() {
            "" => Value::Null,
            k => Value::String(k.to_owned()),
        };
        obj.insert("key".into(), key);
    }
    let alert = std::str::from_utf8(&a.json)
        .ok()
        .and_then(|j| serde_json::value::RawValue::from_string(j.to_owned()).ok());
    let mut line = envelope.to_string();
    // The envelope is an object: reopen it to append the raw document.
    line.pop();
    line.push_str(",\"alert\":");
    line.push_str(alert.as_ref().map_or("null", |r| r.get()));
    line.push('}');
    line
}

/// Characters of a gateway's message (an error, a skipped alert's reason) printed.
pub const MAX_MESSAGE: usize = 1024;

/// Characters of one name or description from a gateway printed in a table.
pub const MAX_FIELD: usize = 256;

/// A gateway's message as one terminal-safe line: control characters escaped, capped.
pub fn message(text: &str) -> String {
    echo::line(text, MAX_MESSAGE)
}

/// Several lines of text built from what a gateway sent, each line made a [`message`].
pub fn text(lines: &str) -> String {
    lines.lines().map(message).collect::<Vec<_>>().join("\n")
}

/// A name or description from a gateway, terminal-safe and capped, for tables.
pub fn field(text: &str) -> String {
    echo::line(text, MAX_FIELD)
}

/// `<dir>/<topic>-<partition>-<offset>.<ext>`, the extension following the format. The
/// topic comes from the gateway: it must be a Kafka topic name (no `/`, not `..`), so the
/// file lands in `dir` whatever a hostile gateway sends.
pub fn raw_path(dir: &Path, a: &v1::Alert) -> Result<PathBuf, String> {
    check_topic(&a.topic).map_err(|e| {
        format!(
            "the gateway sent an alert whose topic is not a topic name, so no file is \
             written for it under {}: {e}",
            dir.display()
        )
    })?;
    let ext = if a.format == "json" { "json" } else { "avro" };
    Ok(dir.join(format!("{}-{}-{}.{ext}", a.topic, a.partition, a.offset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_carries_every_field() {
        let a = v1::Alert {
            r#ref: "am://lasair/ztf.alerts/1/7".into(),
            topic: "ztf.alerts".into(),
            partition: 1,
            offset: 7,
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_577_836_800,
                nanos: 5_000_000,
            }),
            key: Some("ZTF:ZTF20aabaesm".into()),
            headers: vec![
                v1::Header {
                    key: "am-ns".into(),
                    value: Some("ZTF".into()),
                },
                v1::Header {
                    key: "x".into(),
                    value: Some(vec![0xff, 0].into()),
                },
                v1::Header {
                    key: "x".into(),
                    value: None,
                },
            ],
            payload: vec![1, 2, 3].into(),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
            schema: String::new(),
            json: r#"{"objectId":"ZTF20aabaesm","candid":1095578115815010001,"x":0.1}"#.into(),
            mesh_key: "ZTF:ZTF20aabaesm".into(),
            json_bare_nonfinite: false,
        };
        let v = alert_json(&a);
        assert_eq!(v["timestamp"], "2020-01-01T00:00:00.005Z");
        assert_eq!(v["key"], "ZTF:ZTF20aabaesm");
        assert_eq!(v["headers"]["am-ns"], "ZTF");
        assert_eq!(v["headers"]["x"], json!([{ "base64": "/wA=" }, null]));
        assert_eq!(v["payload"], "AQID");
        assert_eq!(
            raw_path(Path::new("/o"), &a).unwrap(),
            Path::new("/o/ztf.alerts-1-7.avro")
        );
    }

    #[test]
    fn a_topic_that_could_leave_the_folder_is_refused() {
        for topic in ["../../x", "/etc/cron.d/x", "..", "a/b", "", "x\u{1b}[2J"] {
            let a = v1::Alert {
                topic: topic.into(),
                ..v1::Alert::default()
            };
            let e = raw_path(Path::new("/o"), &a).unwrap_err();
            assert!(e.contains("invalid Kafka topic name"), "{topic:?}: {e}");
            assert!(!e.chars().any(char::is_control), "{e:?}");
        }
        let a = v1::Alert {
            topic: "t".repeat(100_000),
            ..v1::Alert::default()
        };
        assert!(raw_path(Path::new("/o"), &a).unwrap_err().len() < 600);
    }

    #[test]
    fn gateway_text_is_one_capped_line_without_terminal_controls() {
        let m = message(&format!("no\u{1b}]0;owned\u{7}\n{}", "x".repeat(1 << 20)));
        assert!(!m.chars().any(char::is_control), "{m:?}");
        assert!(m.len() < MAX_MESSAGE + 40);
        assert_eq!(field("ZTF alerts"), "ZTF alerts");
    }
}
