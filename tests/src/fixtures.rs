//! The 45 real ZTF alerts in `alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01/`
//! (Apache-2.0, see the README there), and records built from them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bytes::Bytes;

use crate::broker::Record;

/// One fixture alert: an Avro OCF file and its manifest row.
#[derive(Debug, Clone)]
pub struct ZtfAlert {
    pub file: String,
    pub object_id: String,
    pub candid: i64,
    pub payload: Bytes,
}

impl ZtfAlert {
    /// The mesh key, `ZTF:<objectId>`.
    pub fn mesh_key(&self) -> String {
        format!("ZTF:{}", self.object_id)
    }
}

/// The fixture folder (shared with the alert model's tests).
pub fn ztf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01")
}

/// All fixture alerts in manifest order.
pub fn ztf_alerts() -> Result<Vec<ZtfAlert>> {
    let dir = ztf_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).context("read manifest")?;
    manifest
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let [file, object_id, candid, ..] = cols[..] else {
                anyhow::bail!("bad manifest line {line:?}");
            };
            let payload = std::fs::read(dir.join(file)).with_context(|| format!("read {file}"))?;
            Ok(ZtfAlert {
                file: file.to_owned(),
                object_id: object_id.to_owned(),
                candid: candid.parse()?,
                payload: Bytes::from(payload),
            })
        })
        .collect()
}

/// The fixture alerts as records: alert `i` goes to partition `i % partitions` with
/// timestamp `base_ms + i * step_ms`, key `ZTF:<objectId>` and mesh headers.
pub fn ztf_records(partitions: i32, base_ms: i64, step_ms: i64) -> Result<Vec<Record>> {
    Ok(ztf_alerts()?
        .into_iter()
        .enumerate()
        .map(|(i, alert)| Record {
            partition: i as i32 % partitions,
            key: Some(Bytes::from(alert.mesh_key())),
            headers: vec![
                ("am-ns".to_owned(), Some(Bytes::from_static(b"ZTF"))),
                (
                    "am-format".to_owned(),
                    Some(Bytes::from_static(b"avro-ocf")),
                ),
                ("am-schema".to_owned(), Some(Bytes::from_static(b"ztf-3.3"))),
                (
                    "am-candid".to_owned(),
                    Some(Bytes::from(alert.candid.to_string())),
                ),
            ],
            payload: alert.payload,
            timestamp_ms: base_ms + i as i64 * step_ms,
        })
        .collect())
}

/// Synthetic ZTF-keyed records of `size` bytes each (for load), round-robin over partitions.
pub fn synthetic_records(n: usize, size: usize, partitions: i32, base_ms: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut payload = vec![0u8; size];
            for (j, b) in payload.iter_mut().enumerate() {
                *b = (i.wrapping_mul(31).wrapping_add(j) % 251) as u8;
            }
            Record {
                partition: i as i32 % partitions,
                key: Some(Bytes::from(format!("ZTF:ZTF99bench{i}"))),
                payload: Bytes::from(payload),
                headers: vec![("am-ns".to_owned(), Some(Bytes::from_static(b"ZTF")))],
                timestamp_ms: base_ms + i as i64,
            }
        })
        .collect()
}

/// One Avro object container file of one record written with `schema`.
pub fn ocf(
    schema: &str,
    fields: Vec<(&str, alertmesh_alert::apache_avro::types::Value)>,
) -> Vec<u8> {
    use alertmesh_alert::apache_avro::{types::Value, Schema, Writer};
    let schema = Schema::parse_str(schema).expect("test schema");
    let mut w = Writer::new(&schema, Vec::new());
    w.append(Value::Record(
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    ))
    .expect("test record");
    w.into_inner().expect("test ocf")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}
