//! `alertmesh.v1.AlertBatch`, written by hand so a gateway can send alerts it serialised
//! once, when it read them from Kafka.
//!
//! Generated code would make the gateway build an [`Alert`] per record and subscriber and
//! serialise it field by field (allocating its strings, copying its payload). Instead the
//! gateway encodes each record as an `Alert` message once, and a batch carries those bytes
//! in [`AlertBatch::encoded`]: one copy into the gRPC frame, shared by every subscriber.
//! On the wire both forms are the same repeated field 1, so clients (this crate's
//! generated client, Python, any gRPC stack) see an ordinary `AlertBatch`.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use crate::v1::{Alert, Skipped};

/// A batch of alerts of one subscription (see `alertmesh.proto`).
#[derive(Clone, PartialEq, Default)]
pub struct AlertBatch {
    /// Alerts as messages. Decoding fills this field only.
    pub alerts: Vec<Alert>,
    /// Records the gateway had to decode (for a filter or JSON output) but could not; they
    /// are skipped, and counted in `alertmesh_alerts_skipped_total`.
    pub skipped: Vec<Skipped>,
    /// Alerts already serialised as `alertmesh.v1.Alert` messages, sent after
    /// [`alerts`](Self::alerts) as more elements of the same field. Each must be a valid
    /// encoding: it is written as it is.
    pub encoded: Vec<Bytes>,
}

impl std::fmt::Debug for AlertBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertBatch")
            .field("alerts", &self.alerts)
            .field("skipped", &self.skipped)
            .field("encoded", &format_args!("{} alerts", self.encoded.len()))
            .finish()
    }
}

impl AlertBatch {
    /// Number of alerts in the batch, in both forms.
    pub fn len(&self) -> usize {
        self.alerts.len() + self.encoded.len()
    }

    /// Whether the batch carries no alert (it may still report skipped records).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

use crate::tags::batch::{ALERTS, SKIPPED};

/// Writes the `skipped` field; shared with [`crate::view::AlertBatchView`].
pub(crate) fn encode_skipped(skipped: &[Skipped], buf: &mut impl BufMut) {
    for s in skipped {
        encoding::message::encode(SKIPPED, s, buf);
    }
}

/// Reads one element of the `skipped` field; shared with [`crate::view::AlertBatchView`].
pub(crate) fn merge_skipped(
    wire_type: WireType,
    skipped: &mut Vec<Skipped>,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    encoding::message::merge_repeated(wire_type, skipped, buf, ctx).map_err(|mut e| {
        e.push("AlertBatch", "skipped");
        e
    })
}

impl prost::Message for AlertBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for alert in &self.alerts {
            encoding::message::encode(ALERTS, alert, buf);
        }
        for alert in &self.encoded {
            encoding::encode_key(ALERTS, WireType::LengthDelimited, buf);
            encoding::encode_varint(alert.len() as u64, buf);
            buf.put_slice(alert);
        }
        encode_skipped(&self.skipped, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            ALERTS => encoding::message::merge_repeated(wire_type, &mut self.alerts, buf, ctx)
                .map_err(|mut e| {
                    e.push("AlertBatch", "alerts");
                    e
                }),
            SKIPPED => merge_skipped(wire_type, &mut self.skipped, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(ALERTS, &self.alerts)
            + self
                .encoded
                .iter()
                .map(|a| {
                    encoding::key_len(ALERTS)
                        + encoding::encoded_len_varint(a.len() as u64)
                        + a.len()
                })
                .sum::<usize>()
            + encoding::message::encoded_len_repeated(SKIPPED, &self.skipped)
    }

    fn clear(&mut self) {
        self.alerts.clear();
        self.skipped.clear();
        self.encoded.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Header;
    use prost::Message;

    fn alert(offset: i64) -> Alert {
        Alert {
            r#ref: format!("am://g/t/0/{offset}"),
            topic: "t".into(),
            offset,
            key: Some(Bytes::from_static(b"ZTF:ZTF18abc")),
            headers: vec![Header {
                key: "am-schema".into(),
                value: None,
            }],
            payload: Bytes::from(vec![7u8; 300]),
            ..Alert::default()
        }
    }

    #[test]
    fn encoded_alerts_decode_as_alerts_in_order() {
        let batch = AlertBatch {
            alerts: vec![alert(1)],
            skipped: vec![Skipped {
                r#ref: "am://g/t/0/9".into(),
                reason: "bad".into(),
            }],
            encoded: vec![
                alert(2).encode_to_vec().into(),
                alert(3).encode_to_vec().into(),
            ],
        };
        let wire = batch.encode_to_vec();
        assert_eq!(wire.len(), batch.encoded_len());
        let back = AlertBatch::decode(wire.as_slice()).unwrap();
        assert_eq!(back.alerts, vec![alert(1), alert(2), alert(3)]);
        assert_eq!(back.skipped, batch.skipped);
        assert!(back.encoded.is_empty());
        assert_eq!(back.len(), 3);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        // Field 1, length 5, but only two bytes follow.
        assert!(AlertBatch::decode(&[0x0a, 0x05, 0x01, 0x02][..]).is_err());
    }
}
