//! `alertmesh.v1.AlertBatch`, written by hand so a gateway can send alerts it serialised
//! once, when it read them from Kafka.
//!
//! Generated code would make the gateway build an [`Alert`] per record and subscriber and
//! serialise it field by field (allocating its strings, copying its payload). Instead the
//! gateway writes each record once, when it reads it, as an element of the `alerts` field
//! (tag, length, `Alert` message), and a batch carries those bytes in
//! [`AlertBatch::framed`]: records read together lie side by side, so a run of them is one
//! slice, shared by every subscriber, that can go to the socket without a copy.
//! On the wire both forms are the same repeated field 1, so clients (this crate's
//! generated client, Python, any gRPC stack) see an ordinary `AlertBatch`.
//!
//! [`QueryBatch`] is written by hand for the same reason: a query stream writes each row
//! once as the `alerts` element it is sent as, instead of building an [`Alert`] (a handful
//! of strings) per row and serialising it.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use crate::v1::{Alert, PartitionOffset, Skipped};

/// A batch of alerts of one subscription (see `alertmesh.proto`).
#[derive(Clone, PartialEq, Default)]
pub struct AlertBatch {
    /// Alerts as messages. Decoding fills this field only.
    pub alerts: Vec<Alert>,
    /// Records the gateway had to decode (for a filter or JSON output) but could not; they
    /// are skipped, and counted in `alertmesh_alerts_skipped_total`.
    pub skipped: Vec<Skipped>,
    /// Alerts already serialised as elements of the `alerts` field, sent after
    /// [`alerts`](Self::alerts). Decoding leaves this empty.
    pub framed: Framed,
    /// Where the stream starts, per partition (the stream's first message only).
    pub starts: Vec<PartitionOffset>,
}

/// Alerts serialised as elements of `AlertBatch.alerts`, each a tag, a length and an
/// encoded `alertmesh.v1.Alert`, kept as runs of one or more elements.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Framed {
    runs: Vec<Bytes>,
    alerts: usize,
    len: usize,
}

impl Framed {
    /// Appends `run`: `alerts` complete elements of field 1, written as they are (the
    /// caller vouches for their encoding).
    pub fn push_run(&mut self, run: Bytes, alerts: usize) {
        self.len += run.len();
        self.alerts += alerts;
        self.runs.push(run);
    }

    /// Appends `alert`, serialised here.
    pub fn push_alert(&mut self, alert: &Alert) {
        let mut buf = Vec::with_capacity(encoding::message::encoded_len(ALERTS, alert));
        encoding::message::encode(ALERTS, alert, &mut buf);
        self.push_run(buf.into(), 1);
    }

    /// The runs, in order.
    pub fn runs(&self) -> &[Bytes] {
        &self.runs
    }

    /// Number of alerts in all runs.
    pub fn alerts(&self) -> usize {
        self.alerts
    }

    /// Bytes of all runs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.alerts == 0
    }

    /// The runs, taken out.
    pub fn into_runs(self) -> Vec<Bytes> {
        self.runs
    }
}

impl std::fmt::Debug for AlertBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertBatch")
            .field("alerts", &self.alerts)
            .field("skipped", &self.skipped)
            .field("framed", &format_args!("{} alerts", self.framed.alerts()))
            .field("starts", &self.starts)
            .finish()
    }
}

impl AlertBatch {
    /// Number of alerts in the batch, in both forms.
    pub fn len(&self) -> usize {
        self.alerts.len() + self.framed.alerts()
    }

    /// Whether the batch carries no alert (it may still report skipped records).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

use crate::tags::batch::{ALERTS, RESUME_TOKEN, SKIPPED, STARTS};

/// One batch of a `Query` stream (see `alertmesh.proto`): an [`AlertBatch`] on the wire,
/// plus the token that resumes after its last alert.
#[derive(Clone, PartialEq, Default)]
pub struct QueryBatch {
    /// Alerts as messages. Decoding fills this field only.
    pub alerts: Vec<Alert>,
    pub skipped: Vec<Skipped>,
    pub resume_token: String,
    /// Alerts already serialised as elements of the `alerts` field, sent after
    /// [`alerts`](Self::alerts). Decoding leaves this empty.
    pub framed: Framed,
}

impl std::fmt::Debug for QueryBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryBatch")
            .field("alerts", &self.alerts)
            .field("skipped", &self.skipped)
            .field("resume_token", &self.resume_token)
            .field("framed", &format_args!("{} alerts", self.framed.alerts()))
            .finish()
    }
}

impl QueryBatch {
    /// Number of alerts in the batch, in both forms.
    pub fn len(&self) -> usize {
        self.alerts.len() + self.framed.alerts()
    }

    /// Whether the batch carries no alert.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl prost::Message for QueryBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for alert in &self.alerts {
            encoding::message::encode(ALERTS, alert, buf);
        }
        for run in self.framed.runs() {
            buf.put_slice(run);
        }
        encode_skipped(&self.skipped, buf);
        if !self.resume_token.is_empty() {
            encoding::string::encode(RESUME_TOKEN, &self.resume_token, buf);
        }
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
                    e.push("QueryBatch", "alerts");
                    e
                }),
            SKIPPED => merge_skipped(wire_type, &mut self.skipped, buf, ctx),
            RESUME_TOKEN => encoding::string::merge(wire_type, &mut self.resume_token, buf, ctx)
                .map_err(|mut e| {
                    e.push("QueryBatch", "resume_token");
                    e
                }),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(ALERTS, &self.alerts)
            + self.framed.len()
            + encoding::message::encoded_len_repeated(SKIPPED, &self.skipped)
            + if self.resume_token.is_empty() {
                0
            } else {
                encoding::string::encoded_len(RESUME_TOKEN, &self.resume_token)
            }
    }

    fn clear(&mut self) {
        self.alerts.clear();
        self.skipped.clear();
        self.resume_token.clear();
        self.framed = Framed::default();
    }
}

/// Writes the `skipped` field; shared with [`crate::view::AlertBatchView`].
pub(crate) fn encode_skipped(skipped: &[Skipped], buf: &mut impl BufMut) {
    for s in skipped {
        encoding::message::encode(SKIPPED, s, buf);
    }
}

/// Writes the `starts` field; shared with [`crate::view::AlertBatchView`].
pub(crate) fn encode_starts(starts: &[PartitionOffset], buf: &mut impl BufMut) {
    for s in starts {
        encoding::message::encode(STARTS, s, buf);
    }
}

/// Reads one element of the `starts` field; shared with [`crate::view::AlertBatchView`].
pub(crate) fn merge_starts(
    wire_type: WireType,
    starts: &mut Vec<PartitionOffset>,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    encoding::message::merge_repeated(wire_type, starts, buf, ctx).map_err(|mut e| {
        e.push("AlertBatch", "starts");
        e
    })
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

impl prost::Name for AlertBatch {
    const NAME: &'static str = "AlertBatch";
    const PACKAGE: &'static str = "alertmesh.v1";
}

impl prost::Name for QueryBatch {
    const NAME: &'static str = "QueryBatch";
    const PACKAGE: &'static str = "alertmesh.v1";
}

impl prost::Message for AlertBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for alert in &self.alerts {
            encoding::message::encode(ALERTS, alert, buf);
        }
        for run in self.framed.runs() {
            buf.put_slice(run);
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
            ALERTS => encoding::message::merge_repeated(wire_type, &mut self.alerts, buf, ctx)
                .map_err(|mut e| {
                    e.push("AlertBatch", "alerts");
                    e
                }),
            SKIPPED => merge_skipped(wire_type, &mut self.skipped, buf, ctx),
            STARTS => merge_starts(wire_type, &mut self.starts, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(ALERTS, &self.alerts)
            + self.framed.len()
            + encoding::message::encoded_len_repeated(SKIPPED, &self.skipped)
            + encoding::message::encoded_len_repeated(STARTS, &self.starts)
    }

    fn clear(&mut self) {
        self.alerts.clear();
        self.skipped.clear();
        self.framed = Framed::default();
        self.starts.clear();
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
    fn framed_alerts_decode_as_alerts_in_order() {
        let mut batch = AlertBatch {
            alerts: vec![alert(1)],
            skipped: vec![Skipped {
                r#ref: "am://g/t/0/9".into(),
                reason: "bad".into(),
            }],
            framed: Framed::default(),
            starts: vec![PartitionOffset {
                partition: 1,
                offset: 40,
            }],
        };
        batch.framed.push_alert(&alert(2));
        let mut run = Vec::new();
        for offset in [3, 4] {
            encoding::message::encode(ALERTS, &alert(offset), &mut run);
        }
        batch.framed.push_run(run.into(), 2);
        let wire = batch.encode_to_vec();
        assert_eq!(wire.len(), batch.encoded_len());
        let back = AlertBatch::decode(wire.as_slice()).unwrap();
        assert_eq!(batch.len(), 4);
        assert_eq!(back.alerts, vec![alert(1), alert(2), alert(3), alert(4)]);
        assert_eq!(back.skipped, batch.skipped);
        assert_eq!(back.starts, batch.starts);
        assert!(back.framed.is_empty());
        assert_eq!(back.len(), 4);
    }

    #[test]
    fn a_query_batch_is_prosts_encoding_with_framed_alerts_in_place() {
        let mut batch = QueryBatch {
            alerts: vec![alert(1)],
            skipped: vec![Skipped {
                r#ref: "am://g/t/0/9".into(),
                reason: "bad".into(),
            }],
            resume_token: "token".into(),
            framed: Framed::default(),
        };
        batch.framed.push_alert(&alert(2));
        let wire = batch.encode_to_vec();
        assert_eq!(wire.len(), batch.encoded_len());
        let back = QueryBatch::decode(wire.as_slice()).unwrap();
        assert_eq!(back.alerts, vec![alert(1), alert(2)]);
        assert_eq!(back.skipped, batch.skipped);
        assert_eq!(back.resume_token, "token");
        assert_eq!(back.len(), 2);
        // The same bytes as an `AlertBatch` of the same alerts, then field 3.
        let plain = AlertBatch {
            alerts: vec![alert(1), alert(2)],
            skipped: batch.skipped.clone(),
            framed: Framed::default(),
            starts: Vec::new(),
        };
        let mut expected = plain.encode_to_vec();
        encoding::string::encode(RESUME_TOKEN, &"token".to_owned(), &mut expected);
        assert_eq!(wire, expected);
        assert!(QueryBatch::default().encode_to_vec().is_empty());
    }

    #[test]
    fn garbage_is_a_decode_error() {
        // Field 1, length 5, but only two bytes follow.
        assert!(AlertBatch::decode(&[0x0a, 0x05, 0x01, 0x02][..]).is_err());
    }
}
