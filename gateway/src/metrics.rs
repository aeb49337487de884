//! Prometheus metrics, with low-cardinality labels (topic names are bounded by the config).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabels {
    pub topic: String,
}

/// Which kind of Kafka reader the gateway started.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum ReaderKind {
    /// The one shared reader per topic at the live tail.
    tail,
    /// A subscriber reading on its own (from the past, or after falling behind).
    own,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReaderLabels {
    pub kind: ReaderKind,
}

/// Why the gateway refused a call (authentication or authorization).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum RefusalReason {
    /// Mutual TLS is required and the client presented no certificate.
    client_certificate,
    /// A token was needed (a non-public topic, an admin call) and none was sent.
    token_missing,
    /// The token is malformed, badly signed, of an unknown key or issuer, or for
    /// another audience.
    token_invalid,
    /// The token is expired, not yet valid, or issued in the future.
    token_time,
    /// The token, or every token of its subject, was revoked.
    token_revoked,
    /// A peer's token came without that peer's certificate, or with another's.
    peer_identity,
    /// The token is valid but lacks the scope the call needs.
    scope,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    pub reason: RefusalReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ArchiveLabels {
    pub archive: String,
}

/// Which of the gateway's two ports a connection came to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Port {
    /// `gateway.listen`: the gRPC API.
    grpc,
    /// `gateway.http_listen`: metrics, health, JWKS and the schema registry API.
    http,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PortLabels {
    pub port: Port,
}

/// Which cap a refused connection would have passed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum ConnRefusal {
    /// `limits.max_connections` were open on the port.
    port_full,
    /// `limits.max_connections_per_ip` were open from the client's address.
    per_ip,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusedLabels {
    pub port: Port,
    pub reason: ConnRefusal,
}

/// Why the gateway refused a `Publish` batch (nothing of it was written).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum PublishRejection {
    /// The topic is not exposed (NOT_FOUND).
    unknown_topic,
    /// The topic is exposed but not `publish = true` (FAILED_PRECONDITION).
    not_publishable,
    /// No token, or a token without a `publish:` scope for the topic.
    scope,
    /// A key outside the registered namespaces, or malformed.
    key,
    /// A payload not in the topic's format or not matching its schema.
    payload,
    /// `derived_from` empty or not alert refs.
    derived_from,
    /// `activity` missing or malformed.
    activity,
    /// A malformed `used` entry.
    used,
    /// A missing, malformed or repeated publish id.
    publish_id,
    /// A record larger than `limits.max_publish_record_bytes`.
    size,
    /// Any other invalid request (an empty batch).
    invalid,
    /// Kafka could not be read or written: the batch may be retried with the same ids.
    kafka,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PublishRejectionLabels {
    pub reason: PublishRejection,
}

/// Every metric the gateway exports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub alerts_served: Family<TopicLabels, Counter>,
    pub bytes_served: Family<TopicLabels, Counter>,
    pub alerts_filtered: Family<TopicLabels, Counter>,
    pub alerts_skipped: Family<TopicLabels, Counter>,
    pub open_subscriptions: Gauge,
    pub parked_subscriptions: Gauge,
    pub reads_waiting: Gauge,
    pub kafka_errors: Counter,
    pub readers_started: Family<ReaderLabels, Counter>,
    pub kafka_bytes_read: Family<ReaderLabels, Counter>,
    pub fallbacks: Counter,
    pub cursor_commits: Counter,
    pub auth_refused: Family<RefusalLabels, Counter>,
    pub archive_rows: Family<ArchiveLabels, Counter>,
    pub archive_lag: Family<ArchiveLabels, Gauge>,
    pub archive_errors: Family<ArchiveLabels, Counter>,
    pub archive_undecodable: Family<ArchiveLabels, Counter>,
    pub archive_missed: Family<ArchiveLabels, Counter>,
    pub published: Family<TopicLabels, Counter>,
    pub publish_batches: Family<TopicLabels, Counter>,
    pub publish_duplicates: Family<TopicLabels, Counter>,
    pub publish_rejected: Family<PublishRejectionLabels, Counter>,
    pub connections: Family<PortLabels, Gauge>,
    pub connections_refused: Family<RefusedLabels, Counter>,
    pub accept_errors: Family<PortLabels, Counter>,
}

impl Metrics {
    /// Registers every metric under the `alertmesh_` prefix.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("alertmesh");
        r.register(
            "alerts_served",
            "Alerts sent to subscribers",
            self.alerts_served.clone(),
        );
        r.register(
            "bytes_served",
            "Payload bytes sent to subscribers",
            self.bytes_served.clone(),
        );
        r.register(
            "alerts_filtered",
            "Alerts a subscriber's filter left out",
            self.alerts_filtered.clone(),
        );
        r.register(
            "alerts_skipped",
            "Alerts skipped because they could not be decoded for a filter or JSON output",
            self.alerts_skipped.clone(),
        );
        r.register(
            "open_subscriptions",
            "Subscribe streams currently open",
            self.open_subscriptions.clone(),
        );
        r.register(
            "parked_subscriptions",
            "Subscriptions whose client is not reading: their Kafka reader is stopped",
            self.parked_subscriptions.clone(),
        );
        r.register(
            "kafka_reads_waiting",
            "Kafka reads waiting for their share of limits.reader_budget_mib",
            self.reads_waiting.clone(),
        );
        r.register(
            "kafka_errors",
            "Errors reported by Kafka clients",
            self.kafka_errors.clone(),
        );
        r.register(
            "kafka_readers_started",
            "Kafka reads started: one shared tail per topic, or one per subscriber reading on its own (over up to limits.reader_connections consumers)",
            self.readers_started.clone(),
        );
        r.register(
            "kafka_bytes_read",
            "Payload bytes read from Kafka, by reader kind",
            self.kafka_bytes_read.clone(),
        );
        r.register(
            "subscriber_fallbacks",
            "Live subscribers that fell behind the shared tail and went back to reading on their own",
            self.fallbacks.clone(),
        );
        r.register(
            "cursor_commits",
            "Durable cursor commits stored in Kafka",
            self.cursor_commits.clone(),
        );
        r.register(
            "auth_refused",
            "Calls refused by authentication or authorization, by reason",
            self.auth_refused.clone(),
        );
        r.register(
            "archive_rows",
            "Rows written to archive tables since start, by archive",
            self.archive_rows.clone(),
        );
        r.register(
            "archive_lag",
            "Records in Kafka not yet in the archive table, by archive",
            self.archive_lag.clone(),
        );
        r.register(
            "archive_errors",
            "Times an archive's ingest stopped on an error and restarted, by archive",
            self.archive_errors.clone(),
        );
        r.register(
            "archive_undecodable",
            "Records archived whose payload did not decode (stored with NULL columns), by archive",
            self.archive_undecodable.clone(),
        );
        r.register(
            "archive_missed",
            "Records an archive never got: deleted from Kafka (the topic's retention) before its ingest read them, by archive",
            self.archive_missed.clone(),
        );
        r.register(
            "publish_records",
            "Derived records written by Publish, by topic (retries answered from the publish ids are not counted)",
            self.published.clone(),
        );
        r.register(
            "publish_batches",
            "Publish calls answered with every record's ref, by topic",
            self.publish_batches.clone(),
        );
        r.register(
            "publish_duplicates",
            "Publish records whose publish id was already published: answered with the first ref, nothing written",
            self.publish_duplicates.clone(),
        );
        r.register(
            "publish_rejected",
            "Publish calls refused (nothing written), by reason",
            self.publish_rejected.clone(),
        );
        r.register(
            "connections",
            "Client connections open, by port",
            self.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Client connections closed as soon as they were accepted, by port and by the cap reached: port_full (limits.max_connections), per_ip (limits.max_connections_per_ip)",
            self.connections_refused.clone(),
        );
        r.register(
            "accept_errors",
            "Times accepting a connection failed for want of resources (file descriptors, memory), by port; the port then pauses briefly",
            self.accept_errors.clone(),
        );
    }

    /// Counts one refused `Publish` call.
    pub(crate) fn publish_rejected(&self, reason: PublishRejection) {
        self.publish_rejected
            .get_or_create(&PublishRejectionLabels { reason })
            .inc();
    }

    /// Counts one refused call.
    pub(crate) fn refused(&self, reason: RefusalReason) {
        self.auth_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    pub(crate) fn topic(&self, family: &Family<TopicLabels, Counter>, topic: &str) -> Counter {
        family
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .clone()
    }

    pub(crate) fn reader(
        &self,
        family: &Family<ReaderLabels, Counter>,
        kind: ReaderKind,
    ) -> Counter {
        family.get_or_create(&ReaderLabels { kind }).clone()
    }
}

/// Keeps `open_subscriptions` exact: incremented on creation, decremented on drop, so a
/// stream that ends in any way (client gone, error, shutdown) is counted out.
#[derive(Debug)]
pub(crate) struct OpenGuard(Gauge);

impl OpenGuard {
    pub(crate) fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        OpenGuard(gauge.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
