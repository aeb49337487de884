//! What every alert of one exposed topic shares on the wire, and the way back from a
//! record's bytes to a wire alert for the paths that change it or read it field by field.

use std::sync::Arc;

use prost::Message as _;

use alertmesh_proto::v1;

use super::Record;
#[cfg(test)]
use super::{Arena, Parts};
use crate::config::TopicConfig;

/// What every alert of one exposed topic shares on the wire.
#[derive(Debug, Clone)]
pub(crate) struct AlertContext {
    pub(crate) gateway: String,
    pub(crate) topic: String,
    pub(crate) format: String,
    pub(crate) namespace: String,
}

impl AlertContext {
    /// The context of an exposed topic of gateway `gateway`.
    pub(crate) fn new(gateway: &str, topic: &TopicConfig) -> Arc<AlertContext> {
        Arc::new(AlertContext {
            gateway: gateway.to_owned(),
            topic: topic.name.clone(),
            format: topic.format.to_string(),
            namespace: topic.namespace.clone(),
        })
    }

    pub(crate) fn alert_ref(&self, r: &Record) -> String {
        format!(
            "am://{}/{}/{}/{}",
            self.gateway, self.topic, r.partition, r.offset
        )
    }

    /// One record of this topic from borrowed parts, written into `arena` alone.
    #[cfg(test)]
    pub(crate) fn record<'a, H>(&self, arena: &mut Arena, parts: Parts<'a, H>) -> Record
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        arena.write(self, parts);
        arena.last_written()
    }

    /// The record as a wire alert, for the paths that change it (JSON output, keys found
    /// by decoding) or read it field by field. Decoded from [`Record::wire_bytes`], so it is
    /// what native output sends; bytes fields share the buffer, nothing is copied.
    pub(crate) fn alert(&self, r: &Record) -> v1::Alert {
        // The bytes were written by `record` above; a failure would be a bug there, and an
        // alert that names its record is still the most useful answer.
        v1::Alert::decode(r.wire_bytes()).unwrap_or_else(|e| {
            if let Some(suppressed) = UNDECODABLE.admit() {
                tracing::error!(error = %e, suppressed, "cannot decode an encoded alert");
            }
            v1::Alert {
                r#ref: self.alert_ref(r),
                topic: self.topic.clone(),
                partition: r.partition,
                offset: r.offset,
                payload: r.payload_bytes(),
                ..v1::Alert::default()
            }
        })
    }

    /// Gateway `lasair`'s topic `ztf.alerts`, for tests.
    #[cfg(test)]
    pub(super) fn lasair() -> AlertContext {
        AlertContext {
            gateway: "lasair".into(),
            topic: "ztf.alerts".into(),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
        }
    }
}

/// Logs of undecodable alerts, which a peer, a producer or a failing cluster can repeat.
static UNDECODABLE: alertmesh_mirror::limit::RateLimit = alertmesh_mirror::limit::RateLimit::new();
