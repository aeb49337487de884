//! Mirror jobs copy a remote stream into a local Kafka topic, exactly once, without Kafka
//! transactions.
//!
//! - [`spec`]: what to mirror ([`MirrorSpec`]: a peer gateway's topic over gRPC, or a raw
//!   Kafka topic such as a survey's) and the local environment ([`MirrorEnv`]).
//! - [`job`]: [`Mirror::start`] runs one mirror as a tokio task; its [`MirrorHandle`] reads
//!   status, stops it and waits for it.
//! - [`status`]: [`MirrorStatus`], cheap snapshots for the admin RPC and `/metrics`.
//! - [`provenance`]: the pure header rules: `am-origin`, `am-hops`, `am-source`, cycle drops.
//! - [`convert`]: one source record → a destination record, a dead letter, or a drop.
//! - [`resume`]: where a mirror restarts, recovered from the destination topic itself.
//!   Every mirrored record names its source record in its `am-source` header, so the
//!   destination is its own checkpoint and a crash between produce and checkpoint cannot
//!   duplicate or lose a record.
//! - [`share`]: replicas of one gateway share each mirror's partitions through a Kafka
//!   consumer group, each partition copied by a transactional producer whose id fences
//!   the partition's previous owner.
//! - [`claims`]: which mirror writes a topic named after a peer (the peer picks its name).
//! - [`backoff`]: capped exponential backoff with jitter between recovery cycles.
//! - [`limit`]: rate limits for log lines that a peer or a failing cluster can repeat.
//! - [`watch`]: notices changed configuration and credential files (a `failed` mirror
//!   waits for them).
//! - `source` (gateway and Kafka readers) and `destination` (topic creation, tail
//!   recovery, producer settings) do the I/O; `quiet` is their librdkafka context, which
//!   marks a client that lost its cluster so that it is renewed, never reconnected.

pub mod backoff;
pub mod claims;
pub mod convert;
mod destination;
pub mod job;
pub mod kafka_headers;
pub mod limit;
pub mod provenance;
mod quiet;
pub mod resume;
pub mod share;
mod source;
pub mod spec;
pub mod status;
pub mod watch;

pub use backoff::Backoff;
pub use job::{Mirror, MirrorHandle};
pub use resume::ResumePositions;
pub use spec::{GatewaySource, KafkaSource, MirrorEnv, MirrorSpec, QuerySource, Source, Start};
pub use status::{MirrorState, MirrorStatus};

/// Everything that can stop a mirror cycle. Every error is retried after a backoff except
/// where noted; the message is what status shows, so it never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mirror's specification cannot work (bad filter, bad destination name, ...).
    #[error("invalid mirror {name:?}: {reason}")]
    Spec { name: String, reason: String },
    /// The source (peer gateway or remote Kafka) failed, is unreachable, or ended.
    #[error("source {source_name}: {reason}")]
    Source { source_name: String, reason: String },
    /// The source refused in a way a retry cannot fix (it rejects the filter, does not
    /// expose the topic, or does not accept the credentials): the mirror is `failed` and
    /// retried only slowly, or when its configuration or credential files change.
    #[error("source {source_name} refused: {reason}")]
    Refused { source_name: String, reason: String },
    /// The local Kafka cluster failed or is unreachable.
    #[error("destination {topic}: {reason}")]
    Destination { topic: String, reason: String },
    /// An existing destination topic has fewer partitions than the source, so partition
    /// order could not be kept.
    #[error(
        "destination topic {topic:?} has {has} partitions but the source has {needs}; \
         add partitions to it (kafka-topics --alter) or choose another destination"
    )]
    TooFewPartitions {
        topic: String,
        has: usize,
        needs: usize,
    },
    /// Another replica took this work unit over (Kafka fenced its transactional producer):
    /// what this one was writing is aborted, and it waits for the group to assign work.
    #[error("destination {topic}: another replica took this mirror's partition over (fenced)")]
    Fenced { topic: String },
}

impl Error {
    /// Whether retrying soon cannot help: the configuration or credentials must change.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Refused { .. } | Error::Spec { .. })
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
