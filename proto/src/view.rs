//! Reading `Subscribe` streams without decoding every alert into owned fields.
//!
//! [`AlertBatchView`] has the wire format of `alertmesh.v1.AlertBatch`, but decoding it
//! keeps each alert as the bytes it arrived in (slices of the received buffer, no copy);
//! [`AlertView::fields`] then reads an alert's fields in place. A subscriber that needs
//! only some fields (a payload and its position, say) pays no allocation per alert, as a
//! Kafka consumer reading librdkafka's message views does not. [`AlertView::to_alert`]
//! gives the full [`Alert`] when one is wanted.
//!
//! [`subscribe_views`] opens such a stream on any tonic channel, reading the HTTP/2 frames
//! as they arrived.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::v1::{Alert, Header, PartitionOffset, Skipped};

mod stream;

pub use stream::{subscribe_views, ViewStream};

/// An `AlertBatch` whose alerts stay encoded until read.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct AlertBatchView {
    pub alerts: Vec<AlertView>,
    /// Records the gateway had to decode (for a filter or JSON output) but could not.
    pub skipped: Vec<Skipped>,
    /// Where the stream starts, per partition (its first message only).
    pub starts: Vec<PartitionOffset>,
}

/// Why an alert's fields cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("alert field {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("alert field {tag} has wire type {wire_type:?}, not its type's")]
    WireType { tag: u32, wire_type: WireType },
    #[error("an alert field is longer than the alert")]
    Truncated,
    #[error(transparent)]
    Refused(#[from] crate::bound::Refused),
    #[error(
        "a batch of more than {MAX_BATCH_ELEMENTS} alerts, skipped records or partition starts"
    )]
    TooMany,
}

/// The most alerts, and the most skipped records, one batch may carry: ten times the
/// most a gateway sends. A view takes 32 bytes per alert, so 64 MiB of two-byte empty
/// alerts would otherwise take a gigabyte.
pub const MAX_BATCH_ELEMENTS: usize = 1_000_000;

/// One encoded `alertmesh.v1.Alert`.
#[derive(Clone, PartialEq, Debug)]
pub struct AlertView {
    bytes: Bytes,
}

/// An alert's fields, borrowed from its [`AlertView`]; absent fields have their proto3
/// defaults (empty, zero), as in [`Alert`].
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct AlertFields<'a> {
    pub r#ref: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp, milliseconds since the epoch, when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub format: &'a str,
    pub namespace: &'a str,
    pub schema: &'a str,
    pub json: &'a [u8],
    pub mesh_key: &'a str,
    /// The alert's bytes, to read headers from ([`AlertFields::headers`]).
    raw: &'a [u8],
}

use crate::tags::alert::{
    FORMAT, HEADERS, JSON, KEY, MESH_KEY, NAMESPACE, OFFSET, PARTITION, PAYLOAD, REF, SCHEMA,
    TIMESTAMP, TOPIC,
};

impl AlertView {
    /// The alert as it arrived: an encoded `alertmesh.v1.Alert`.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The alert's fields, read in one pass without copying.
    pub fn fields(&self) -> Result<AlertFields<'_>, ViewError> {
        let raw: &[u8] = &self.bytes;
        let mut f = AlertFields {
            raw,
            ..AlertFields::default()
        };
        let mut buf = raw;
        while !buf.is_empty() {
            let (tag, wire_type) = encoding::decode_key(&mut buf)?;
            match (tag, wire_type) {
                (PARTITION, WireType::Varint) => {
                    f.partition = encoding::decode_varint(&mut buf)? as i32
                }
                (OFFSET, WireType::Varint) => f.offset = encoding::decode_varint(&mut buf)? as i64,
                (_, WireType::LengthDelimited) => {
                    let value = take(&mut buf)?;
                    match tag {
                        REF => f.r#ref = text(value, "ref")?,
                        TOPIC => f.topic = text(value, "topic")?,
                        TIMESTAMP => {
                            let t = prost_types::Timestamp::decode(value)?;
                            // The sender's word: a time past i64 milliseconds is left out.
                            f.timestamp_ms = t
                                .seconds
                                .checked_mul(1000)
                                .and_then(|ms| ms.checked_add(i64::from(t.nanos) / 1_000_000));
                        }
                        KEY => f.key = Some(value),
                        PAYLOAD => f.payload = value,
                        FORMAT => f.format = text(value, "format")?,
                        NAMESPACE => f.namespace = text(value, "namespace")?,
                        SCHEMA => f.schema = text(value, "schema")?,
                        JSON => f.json = value,
                        MESH_KEY => f.mesh_key = text(value, "mesh_key")?,
                        // Headers are read on demand; unknown fields are skipped.
                        _ => {}
                    }
                }
                (
                    PARTITION | OFFSET | REF | TOPIC | TIMESTAMP | KEY | HEADERS | PAYLOAD | FORMAT
                    | NAMESPACE | SCHEMA | JSON | MESH_KEY,
                    _,
                ) => {
                    return Err(ViewError::WireType { tag, wire_type });
                }
                _ => encoding::skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
            }
        }
        Ok(f)
    }

    /// The alert decoded into an owned message, unless it would take more memory than
    /// [`crate::bound::MAX_DECODED_BYTES`] (an alert of millions of empty headers).
    pub fn to_alert(&self) -> Result<Alert, ViewError> {
        crate::bound::check::<Alert>(&self.bytes)?;
        Ok(Alert::decode(self.bytes.clone())?)
    }
}

impl<'a> AlertFields<'a> {
    /// The alert's Kafka headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = Result<Header, ViewError>> + 'a {
        let mut buf = self.raw;
        std::iter::from_fn(move || loop {
            if buf.is_empty() {
                return None;
            }
            let next = (|| -> Result<Option<Header>, ViewError> {
                let (tag, wire_type) = encoding::decode_key(&mut buf)?;
                if tag == HEADERS && wire_type == WireType::LengthDelimited {
                    Ok(Some(Header::decode(take(&mut buf)?)?))
                } else {
                    encoding::skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
                    Ok(None)
                }
            })();
            match next {
                Ok(None) => continue,
                Ok(Some(h)) => return Some(Ok(h)),
                Err(e) => {
                    buf = &[];
                    return Some(Err(e));
                }
            }
        })
    }
}

/// Takes a length-delimited value off `buf`.
fn take<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], ViewError> {
    let len = encoding::decode_varint(buf)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= buf.len())
        .ok_or(ViewError::Truncated)?;
    let (value, rest) = buf.split_at(len);
    *buf = rest;
    Ok(value)
}

fn text<'a>(value: &'a [u8], field: &'static str) -> Result<&'a str, ViewError> {
    std::str::from_utf8(value).map_err(|_| ViewError::NotUtf8(field))
}

use crate::batch::{encode_skipped, encode_starts, merge_skipped, merge_starts};
use crate::tags::batch::{ALERTS, SKIPPED, STARTS};

impl AlertBatchView {
    /// Decodes a batch as [`Message::decode`] does, but ends with [`ViewError::TooMany`]
    /// as soon as it counts more than [`MAX_BATCH_ELEMENTS`] alerts or skipped records.
    pub fn decode_bounded(mut buf: impl Buf) -> Result<AlertBatchView, ViewError> {
        let mut view = AlertBatchView::default();
        while buf.has_remaining() {
            let (tag, wire_type) = encoding::decode_key(&mut buf)?;
            view.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
            let most = view.alerts.len().max(view.skipped.len());
            if most.max(view.starts.len()) > MAX_BATCH_ELEMENTS {
                return Err(ViewError::TooMany);
            }
        }
        Ok(view)
    }
}

impl Message for AlertBatchView {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for alert in &self.alerts {
            encoding::bytes::encode(ALERTS, &alert.bytes, buf);
        }
        encode_skipped(&self.skipped, buf);
        encode_starts(&self.starts, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            ALERTS => {
                let mut bytes = Bytes::new();
                // A slice, not a copy, on a `Bytes`-backed buffer (tonic's) or on a value
                // within one frame of a `ViewStream`.
                encoding::bytes::merge(wire_type, &mut bytes, buf, ctx).map_err(|mut e| {
                    e.push("AlertBatch", "alerts");
                    e
                })?;
                self.alerts.push(AlertView { bytes });
                Ok(())
            }
            SKIPPED => merge_skipped(wire_type, &mut self.skipped, buf, ctx),
            STARTS => merge_starts(wire_type, &mut self.starts, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.alerts
            .iter()
            .map(|a| encoding::bytes::encoded_len(ALERTS, &a.bytes))
            .sum::<usize>()
            + encoding::message::encoded_len_repeated(SKIPPED, &self.skipped)
            + encoding::message::encoded_len_repeated(STARTS, &self.starts)
    }

    fn clear(&mut self) {
        self.alerts.clear();
        self.skipped.clear();
        self.starts.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::v1::AlertBatch;

    pub(crate) fn alert(offset: i64, headers: Vec<Header>) -> Alert {
        Alert {
            r#ref: format!("am://lasair/ztf/2/{offset}"),
            topic: "ztf".into(),
            partition: 2,
            offset,
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000,
            }),
            key: Some(Bytes::from_static(b"ZTF:ZTF18abc")),
            headers,
            payload: Bytes::from(vec![offset as u8; 100]),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
            schema: "ztf-4.02".into(),
            json: Bytes::new(),
            mesh_key: "ZTF:ZTF18abc".into(),
            json_bare_nonfinite: false,
        }
    }

    #[test]
    fn views_read_what_the_batch_carries() {
        let headers = vec![
            Header {
                key: "am-schema".into(),
                value: Some(Bytes::from_static(b"ztf-4.02")),
            },
            Header {
                key: "empty".into(),
                value: None,
            },
        ];
        let alerts = vec![alert(0, vec![]), alert(7, headers.clone())];
        let batch = AlertBatch {
            alerts: alerts.clone(),
            skipped: vec![Skipped {
                r#ref: "am://lasair/ztf/0/3".into(),
                reason: "not Avro".into(),
            }],
            framed: Default::default(),
            starts: vec![PartitionOffset {
                partition: 0,
                offset: 12,
            }],
        };
        let wire = Bytes::from(batch.encode_to_vec());
        let view = AlertBatchView::decode(wire.clone()).unwrap();
        assert_eq!(view.alerts.len(), 2);
        assert_eq!(view.skipped, batch.skipped);
        assert_eq!(view.starts, batch.starts);
        for (v, a) in view.alerts.iter().zip(&alerts) {
            let f = v.fields().unwrap();
            assert_eq!(f.r#ref, a.r#ref);
            assert_eq!(f.topic, a.topic);
            assert_eq!((f.partition, f.offset), (a.partition, a.offset));
            assert_eq!(f.timestamp_ms, Some(1_700_000_000_123));
            assert_eq!(f.key, a.key.as_deref());
            assert_eq!(f.payload, &a.payload[..]);
            assert_eq!(
                (f.format, f.namespace, f.schema),
                ("avro-ocf", "ZTF", "ztf-4.02")
            );
            assert_eq!(f.mesh_key, a.mesh_key);
            let hs: Vec<Header> = f.headers().collect::<Result<_, _>>().unwrap();
            assert_eq!(hs, a.headers);
            assert_eq!(&v.to_alert().unwrap(), a);
        }
        // The payload is a view into the received buffer, not a copy.
        let payload = view.alerts[1].fields().unwrap().payload;
        assert!(wire.as_ptr_range().contains(&payload.as_ptr()));
        // Re-encoding gives the same bytes.
        assert_eq!(view.encode_to_vec(), wire.to_vec());
    }

    #[test]
    fn a_damaged_alert_is_an_error_not_a_panic() {
        let good = alert(1, vec![]).encode_to_vec();
        let payload_at = good
            .windows(100)
            .position(|w| w.iter().all(|b| *b == 1))
            .unwrap();
        // Each cut falls inside a field: the ref's tag, the ref, the payload, the mesh key.
        for cut in [1, 5, payload_at + 50, good.len() - 1] {
            let view = AlertView {
                bytes: Bytes::copy_from_slice(&good[..cut]),
            };
            assert!(view.fields().is_err(), "cut at {cut}");
        }
        // A string field that is not UTF-8.
        let mut bad = Vec::new();
        encoding::bytes::encode(REF, &vec![0xff, 0xfe], &mut bad);
        let view = AlertView {
            bytes: Bytes::from(bad),
        };
        assert!(view.fields().unwrap_err().to_string().contains("ref"));
        // A field with the wrong wire type.
        let mut bad = Vec::new();
        encoding::int64::encode(PAYLOAD, &5, &mut bad);
        let view = AlertView {
            bytes: Bytes::from(bad),
        };
        assert!(view.fields().is_err());
    }

    /// A sender's timestamp past i64 milliseconds is left out, not wrapped; an alert of
    /// millions of empty headers is refused before it is decoded.
    #[test]
    fn hostile_timestamps_and_header_floods_are_refused_not_decoded() {
        let mut a = alert(1, vec![]);
        a.timestamp = Some(prost_types::Timestamp {
            seconds: i64::MAX / 10,
            nanos: 0,
        });
        let view = AlertView {
            bytes: Bytes::from(a.encode_to_vec()),
        };
        assert_eq!(view.fields().unwrap().timestamp_ms, None);

        let flood = [0x3a_u8, 0x00].repeat(8 << 20);
        let view = AlertView {
            bytes: Bytes::from(flood),
        };
        assert!(matches!(view.to_alert(), Err(ViewError::Refused(_))));
        // Read lazily, the same headers cost nothing up front.
        assert_eq!(view.fields().unwrap().headers().take(3).count(), 3);
    }
}
