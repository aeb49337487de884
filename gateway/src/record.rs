//! An owned Kafka record, encoded once as the wire `Alert` it becomes.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use prost::encoding::{self, WireType};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use alertmesh_alert::headers as am;
use alertmesh_proto::v1;

use crate::config::TopicConfig;

/// One Kafka record, detached from librdkafka's buffers so it can cross threads and be
/// shared by many subscribers.
///
/// Reading a record serialises it at once as the `alertmesh.v1.Alert` this gateway sends
/// ([`wire`](Self::wire)); key, payload and header values are views into that buffer. So a
/// record costs one copy out of librdkafka, and serving it to any number of subscribers
/// costs no further encoding.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub payload: Bytes,
    /// The record as an encoded `alertmesh.v1.Alert` (no JSON): what a subscriber that
    /// asked for native output receives, byte for byte.
    pub wire: Bytes,
}

impl Record {
    /// Copies a librdkafka message, encoding it for `ctx`'s topic.
    pub fn from_kafka(m: &BorrowedMessage<'_>, ctx: &AlertContext) -> Record {
        let headers: Vec<(&str, Option<&[u8]>)> = m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default();
        ctx.record(
            m.partition(),
            m.offset(),
            m.timestamp().to_millis(),
            m.key(),
            &headers,
            m.payload().unwrap_or_default(),
        )
    }

    /// Approximate memory held by the record, used for byte-bounded buffers.
    pub fn size(&self) -> usize {
        64 + self.wire.len()
            + self
                .headers
                .iter()
                .map(|(k, _)| k.len() + 32)
                .sum::<usize>()
    }

    fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
    }
}

/// What every alert of one exposed topic shares on the wire.
#[derive(Debug, Clone)]
pub struct AlertContext {
    pub gateway: String,
    pub topic: String,
    pub format: String,
    pub namespace: String,
}

// Field numbers of `alertmesh.v1.Alert` and `Header` (see alertmesh.proto).
const REF: u32 = 1;
const TOPIC: u32 = 2;
const PARTITION: u32 = 3;
const OFFSET: u32 = 4;
const TIMESTAMP: u32 = 5;
const KEY: u32 = 6;
const HEADERS: u32 = 7;
const PAYLOAD: u32 = 8;
const FORMAT: u32 = 9;
const NAMESPACE: u32 = 10;
const SCHEMA: u32 = 11;
const MESH_KEY: u32 = 13;
const HEADER_KEY: u32 = 1;
const HEADER_VALUE: u32 = 2;

impl AlertContext {
    /// The context of an exposed topic of gateway `gateway`.
    pub fn new(gateway: &str, topic: &TopicConfig) -> Arc<AlertContext> {
        Arc::new(AlertContext {
            gateway: gateway.to_owned(),
            topic: topic.name.clone(),
            format: topic.format.to_string(),
            namespace: topic.namespace.clone(),
        })
    }

    pub fn alert_ref(&self, r: &Record) -> String {
        format!(
            "am://{}/{}/{}/{}",
            self.gateway, self.topic, r.partition, r.offset
        )
    }

    /// A record of this topic from borrowed parts: one buffer holds its encoded `Alert`,
    /// and the record's key, payload and header values point into it. Fields are written
    /// as prost writes them (default values omitted), so the bytes decode to exactly
    /// [`alert`](Self::alert) of the record.
    pub fn record(
        &self,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        payload: &[u8],
    ) -> Record {
        let ref_len = "am://".len()
            + self.gateway.len()
            + self.topic.len()
            + 3
            + decimal_len(i64::from(partition))
            + decimal_len(offset);
        let schema = headers
            .iter()
            .find(|(k, _)| *k == am::SCHEMA)
            .and_then(|(_, v)| *v)
            .map(String::from_utf8_lossy);
        let mesh_key = key.and_then(|k| std::str::from_utf8(k).ok());
        let header_lens: usize = headers
            .iter()
            .map(|(k, v)| 12 + k.len() + v.map_or(0, |v| v.len() + 6))
            .sum();
        // An upper bound: each field's tag and length prefix fit in 6 bytes, the
        // timestamp in 24.
        let capacity = 13 * 6
            + 24
            + ref_len
            + self.topic.len()
            + 20
            + key.map_or(0, <[u8]>::len)
            + header_lens
            + payload.len()
            + self.format.len()
            + self.namespace.len()
            + schema.as_ref().map_or(0, |s| s.len())
            + mesh_key.map_or(0, str::len);
        let mut buf: Vec<u8> = Vec::with_capacity(capacity);

        // ref: written in place, so it needs its length first.
        encoding::encode_key(REF, WireType::LengthDelimited, &mut buf);
        encoding::encode_varint(ref_len as u64, &mut buf);
        let before = buf.len();
        let _ = write!(
            buf,
            "am://{}/{}/{partition}/{offset}",
            self.gateway, self.topic
        );
        debug_assert_eq!(buf.len() - before, ref_len);
        put_str(TOPIC, &self.topic, &mut buf);
        if partition != 0 {
            encoding::int32::encode(PARTITION, &partition, &mut buf);
        }
        if offset != 0 {
            encoding::int64::encode(OFFSET, &offset, &mut buf);
        }
        if let Some(ms) = timestamp_ms {
            encoding::message::encode(TIMESTAMP, &timestamp_from_ms(ms), &mut buf);
        }
        let key_at = key.map(|k| put_field(KEY, k, &mut buf));
        let mut header_at = Vec::with_capacity(headers.len());
        for (k, v) in headers {
            let inner = if k.is_empty() {
                0
            } else {
                field_len(HEADER_KEY, k.len())
            } + v.map_or(0, |v| field_len(HEADER_VALUE, v.len()));
            encoding::encode_key(HEADERS, WireType::LengthDelimited, &mut buf);
            encoding::encode_varint(inner as u64, &mut buf);
            put_str(HEADER_KEY, k, &mut buf);
            header_at.push(v.map(|v| put_field(HEADER_VALUE, v, &mut buf)));
        }
        let payload_at = (!payload.is_empty()).then(|| put_field(PAYLOAD, payload, &mut buf));
        put_str(FORMAT, &self.format, &mut buf);
        put_str(NAMESPACE, &self.namespace, &mut buf);
        if let Some(schema) = &schema {
            put_str(SCHEMA, schema, &mut buf);
        }
        if let Some(mesh_key) = mesh_key {
            put_str(MESH_KEY, mesh_key, &mut buf);
        }

        let wire = Bytes::from(buf);
        let view = |(at, len): (usize, usize)| wire.slice(at..at + len);
        Record {
            partition,
            offset,
            timestamp_ms,
            key: key_at.map(view),
            headers: headers
                .iter()
                .zip(header_at)
                .map(|((k, _), at)| ((*k).to_owned(), at.map(view)))
                .collect(),
            payload: payload_at.map(view).unwrap_or_default(),
            wire,
        }
    }

    /// The record as a wire alert, for the paths that change it (JSON output, keys found
    /// by decoding) or read it field by field; the payload and key are shared, not copied.
    pub fn alert(&self, r: &Record) -> v1::Alert {
        let schema = r
            .header(am::SCHEMA)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        v1::Alert {
            r#ref: self.alert_ref(r),
            topic: self.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp_ms.map(timestamp_from_ms),
            key: r.key.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| v1::Header {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            payload: r.payload.clone(),
            format: self.format.clone(),
            namespace: self.namespace.clone(),
            schema,
            json: Bytes::new(),
            // Inside the mesh the Kafka key is the mesh key.
            mesh_key: r
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_owned)
                .unwrap_or_default(),
        }
    }
}

/// Bytes of a length-delimited field holding `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// Writes a length-delimited field; returns where its value starts and its length.
fn put_field(tag: u32, value: &[u8], buf: &mut Vec<u8>) -> (usize, usize) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(value.len() as u64, buf);
    let at = buf.len();
    buf.extend_from_slice(value);
    (at, value.len())
}

/// Writes a proto3 string field, omitted when empty as prost does.
fn put_str(tag: u32, value: &str, buf: &mut Vec<u8>) {
    if !value.is_empty() {
        put_field(tag, value.as_bytes(), buf);
    }
}

/// Characters of `v` in decimal.
fn decimal_len(v: i64) -> usize {
    let sign = usize::from(v < 0);
    sign + v
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1)
}

pub fn timestamp_from_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the epoch, rounding sub-millisecond times up so that "at or after
/// T" never admits a record from before T.
pub fn ms_from_timestamp(t: &prost_types::Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    let ms = t.seconds.checked_mul(1000)?;
    ms.checked_add((i64::from(t.nanos) + 999_999) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn ctx() -> AlertContext {
        AlertContext {
            gateway: "lasair".into(),
            topic: "ztf.alerts".into(),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
        }
    }

    /// partition, offset, timestamp, key, headers, payload
    type Case<'a> = (
        i32,
        i64,
        Option<i64>,
        Option<&'a [u8]>,
        Vec<(&'a str, Option<&'a [u8]>)>,
        &'a [u8],
    );

    #[test]
    fn wire_bytes_decode_to_the_alert() {
        let ctx = ctx();
        let big = vec![0xabu8; 70_000];
        let cases: Vec<Case<'_>> = vec![
            (0, 0, None, None, vec![], b""),
            (
                2,
                1_234_567,
                Some(1_577_836_800_123),
                Some(b"ZTF:ZTF18abc"),
                vec![],
                b"payload",
            ),
            (
                1,
                i64::MAX,
                Some(-1),
                Some(b""),
                vec![
                    (am::SCHEMA, Some(b"ztf-3.3")),
                    ("am-source", Some(b"")),
                    ("", None),
                    ("bin", Some(&[0xff, 0xfe])),
                ],
                &big,
            ),
            (
                9,
                5,
                Some(0),
                Some(&[0xc3, 0x28]),
                vec![(am::SCHEMA, Some(&[0xff]))],
                b"x",
            ),
        ];
        for (p, o, ts, key, headers, payload) in cases {
            let r = ctx.record(p, o, ts, key, &headers, payload);
            let decoded = v1::Alert::decode(r.wire.clone()).expect("decodes");
            assert_eq!(decoded, ctx.alert(&r), "partition {p} offset {o}");
            assert_eq!(
                decoded.encode_to_vec(),
                r.wire.to_vec(),
                "same bytes as prost"
            );
            assert_eq!(r.payload.as_ref(), payload);
            assert_eq!(r.key.as_deref(), key);
            assert_eq!(r.headers.len(), headers.len());
            assert!(r.wire.len() <= r.size());
        }
    }

    #[test]
    fn decimal_lengths() {
        for v in [0, 1, 9, 10, 99, 100, 12345, i64::MAX, -1, -10, i64::MIN] {
            assert_eq!(decimal_len(v), v.to_string().len(), "{v}");
        }
    }

    #[test]
    fn timestamps_convert_both_ways() {
        for ms in [0, 1, 999, 1_577_836_800_123, -1, -1001] {
            assert_eq!(ms_from_timestamp(&timestamp_from_ms(ms)), Some(ms));
        }
        let t = prost_types::Timestamp {
            seconds: 1,
            nanos: 1,
        };
        assert_eq!(ms_from_timestamp(&t), Some(1001));
        let bad = prost_types::Timestamp {
            seconds: 1,
            nanos: -5,
        };
        assert_eq!(ms_from_timestamp(&bad), None);
    }
}
