//! The hand-written protobuf encoder: writes a record as the `AlertBatch.alerts` element it
//! is sent as, in one pass after a sizing pass, so that serving it needs no encoding at
//! all. Its bytes are exactly prost's encoding of the same alert (tested below).

use bytes::{BufMut, BytesMut};
use prost::encoding::{self, WireType};

use alertmesh_alert::headers as am;
use alertmesh_proto::tags::alert::{
    FORMAT, HEADERS, KEY, MESH_KEY, NAMESPACE, OFFSET, PARTITION, PAYLOAD, REF, SCHEMA, TIMESTAMP,
    TOPIC,
};
use alertmesh_proto::tags::batch::ALERTS;
use alertmesh_proto::tags::header::{KEY as HEADER_KEY, VALUE as HEADER_VALUE};

use super::field::{decimal_len, field_len, header_len, push_decimal, put_field, put_str};
use super::timestamp::timestamp_from_ms;
use super::{AlertContext, Layout, Parts, Span};

/// Sizes of one record's encoding.
#[derive(Debug)]
pub(super) struct Sizes<'a> {
    ref_len: usize,
    /// The encoded alert.
    alert: usize,
    /// The `AlertBatch.alerts` element: tag, length, alert.
    pub(super) element: usize,
    /// The `am-schema` header's value, as the `schema` field.
    schema: Option<std::borrow::Cow<'a, str>>,
    /// The key, if it is UTF-8.
    mesh_key: Option<&'a str>,
}

impl AlertContext {
    /// Sizes of a record's encoding, from a first pass over its parts.
    pub(super) fn sizes<'a, H>(&self, parts: &Parts<'a, H>) -> Sizes<'a>
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let Parts {
            partition,
            offset,
            timestamp_ms,
            key,
            payload,
            ..
        } = *parts;
        let ref_len = "am://".len()
            + self.gateway.len()
            + self.topic.len()
            + 3
            + decimal_len(i64::from(partition))
            + decimal_len(offset);
        let mesh_key = key.and_then(|k| std::str::from_utf8(k).ok());
        let mut schema = None;
        let mut headers_len = 0;
        for (k, v) in parts.headers.clone() {
            if k == am::SCHEMA && schema.is_none() {
                schema = v.map(String::from_utf8_lossy);
            }
            headers_len += field_len(HEADERS, header_len(k, v));
        }
        let str_len = |tag, s: &str| {
            if s.is_empty() {
                0
            } else {
                field_len(tag, s.len())
            }
        };
        let alert = field_len(REF, ref_len)
            + str_len(TOPIC, &self.topic)
            + if partition != 0 {
                encoding::int32::encoded_len(PARTITION, &partition)
            } else {
                0
            }
            + if offset != 0 {
                encoding::int64::encoded_len(OFFSET, &offset)
            } else {
                0
            }
            + timestamp_ms.map_or(0, |ms| {
                encoding::message::encoded_len(TIMESTAMP, &timestamp_from_ms(ms))
            })
            + key.map_or(0, |k| field_len(KEY, k.len()))
            + headers_len
            + if payload.is_empty() {
                0
            } else {
                field_len(PAYLOAD, payload.len())
            }
            + str_len(FORMAT, &self.format)
            + str_len(NAMESPACE, &self.namespace)
            + schema.as_deref().map_or(0, |s| str_len(SCHEMA, s))
            + mesh_key.map_or(0, |k| str_len(MESH_KEY, k));
        Sizes {
            ref_len,
            alert,
            element: field_len(ALERTS, alert),
            schema,
            mesh_key,
        }
    }

    /// Writes a record as an `AlertBatch.alerts` element at the end of `buf`, which has
    /// room for `sizes.element` more bytes. Fields are written as prost writes them (in
    /// field order, default values omitted), so the alert's bytes are exactly prost's
    /// encoding of it. `headers` lists the Kafka headers.
    pub(super) fn encode<'a, H>(
        &self,
        buf: &mut BytesMut,
        sizes: &Sizes<'_>,
        parts: Parts<'a, H>,
    ) -> Layout
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let Parts {
            partition,
            offset,
            timestamp_ms,
            key,
            headers,
            payload,
        } = parts;
        let element_at = buf.len();
        encoding::encode_key(ALERTS, WireType::LengthDelimited, buf);
        encoding::encode_varint(sizes.alert as u64, buf);
        let alert_at = buf.len();

        // ref: written in place, so it needs its length first.
        encoding::encode_key(REF, WireType::LengthDelimited, buf);
        encoding::encode_varint(sizes.ref_len as u64, buf);
        buf.extend_from_slice(b"am://");
        buf.extend_from_slice(self.gateway.as_bytes());
        buf.put_u8(b'/');
        buf.extend_from_slice(self.topic.as_bytes());
        buf.put_u8(b'/');
        push_decimal(i64::from(partition), buf);
        buf.put_u8(b'/');
        push_decimal(offset, buf);
        put_str(TOPIC, &self.topic, buf);
        if partition != 0 {
            encoding::int32::encode(PARTITION, &partition, buf);
        }
        if offset != 0 {
            encoding::int64::encode(OFFSET, &offset, buf);
        }
        if let Some(ms) = timestamp_ms {
            encoding::message::encode(TIMESTAMP, &timestamp_from_ms(ms), buf);
        }
        let key_at = key.map(|k| put_field(KEY, k, buf));
        for (k, v) in headers {
            encoding::encode_key(HEADERS, WireType::LengthDelimited, buf);
            encoding::encode_varint(header_len(k, v) as u64, buf);
            put_str(HEADER_KEY, k, buf);
            if let Some(v) = v {
                put_field(HEADER_VALUE, v, buf);
            }
        }
        let payload_at = (!payload.is_empty()).then(|| put_field(PAYLOAD, payload, buf));
        put_str(FORMAT, &self.format, buf);
        put_str(NAMESPACE, &self.namespace, buf);
        if let Some(schema) = &sizes.schema {
            put_str(SCHEMA, schema, buf);
        }
        if let Some(mesh_key) = sizes.mesh_key {
            put_str(MESH_KEY, mesh_key, buf);
        }
        debug_assert_eq!(buf.len() - alert_at, sizes.alert, "alert size");
        // Positions in `buf` are positions in the block it is frozen into.
        let span = |(at, len): (usize, usize)| Span::new(at, len);
        Layout {
            element: Span::new(element_at, buf.len() - element_at),
            alert: Span::new(alert_at, sizes.alert),
            key: key_at.map(span),
            payload: payload_at.map(span).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message as _;

    use alertmesh_proto::v1;

    use super::*;
    use crate::record::Arena;

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
        let ctx = AlertContext::lasair();
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
            let parts = Parts {
                partition: p,
                offset: o,
                timestamp_ms: ts,
                key,
                headers: headers.iter().copied(),
                payload,
            };
            let r = ctx.record(&mut Arena::default(), parts);
            // The alert as the generated code builds it, field by field.
            let expected = v1::Alert {
                r#ref: format!("am://lasair/ztf.alerts/{p}/{o}"),
                topic: "ztf.alerts".into(),
                partition: p,
                offset: o,
                timestamp: ts.map(timestamp_from_ms),
                key: key.map(Bytes::copy_from_slice),
                headers: headers
                    .iter()
                    .map(|(k, v)| v1::Header {
                        key: (*k).to_owned(),
                        value: v.map(Bytes::copy_from_slice),
                    })
                    .collect(),
                payload: Bytes::copy_from_slice(payload),
                format: "avro-ocf".into(),
                namespace: "ZTF".into(),
                schema: headers
                    .iter()
                    .find(|(k, _)| *k == am::SCHEMA)
                    .and_then(|(_, v)| *v)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
                json: Bytes::new(),
                mesh_key: key
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or_default()
                    .to_owned(),
                json_bare_nonfinite: false,
            };
            assert_eq!(
                r.wire().to_vec(),
                expected.encode_to_vec(),
                "prost's bytes, partition {p} offset {o}"
            );
            assert_eq!(ctx.alert(&r), expected);
            assert_eq!(r.payload(), payload);
            assert_eq!(r.payload_bytes().as_ref(), payload);
            assert_eq!(r.key(), key);
            assert_eq!(
                r.carries_mesh_key(),
                !expected.mesh_key.is_empty() || key == Some(&b""[..])
            );
            assert!(r.wire().len() <= r.size());
            // The element is the alert as a one-alert batch encodes it.
            let (block, element) = r.element();
            let batch = v1::AlertBatch {
                alerts: vec![expected.clone()],
                ..v1::AlertBatch::default()
            };
            assert_eq!(block[element].to_vec(), batch.encode_to_vec());
        }
    }
}
