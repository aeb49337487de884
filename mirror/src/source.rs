//! Mirror sources: a peer gateway over gRPC ([`gateway`]) or a remote Kafka topic
//! ([`kafka`]). Each cycle first [`connect`]s (learning the partition count, the source
//! prefix of `am-source` values and the default destination), then, once recovery has
//! found where to resume, [`Connected::stream`]s batches of records over a bounded
//! channel. Dropping the receiver stops the reader.

mod gateway;
mod kafka;
mod query;

use tokio::sync::mpsc;

use crate::convert::SourceRecord;
use crate::resume::QueryResume;
use crate::{Error, MirrorEnv, MirrorSpec, Result, ResumePositions, Source};

/// Batches of source records, or the error that ended the stream.
pub(crate) type Batches = mpsc::Receiver<Result<Vec<SourceRecord>>>;

/// Batches in flight between a reader and the copy loop; with batches of at most
/// [`MAX_BATCH_BYTES`] this bounds the memory a mirror holds for its source.
const CHANNEL_BATCHES: usize = 4;
/// Upper bounds of one batch.
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 4 << 20;

/// What a connected source tells the mirror before it streams.
#[derive(Debug, Clone)]
pub(crate) struct SourceInfo {
    /// Source partitions (the destination gets as many).
    pub(crate) partitions: usize,
    /// Prefix of this source's `am-source` values (see [`crate::resume`]).
    pub(crate) prefix: String,
    /// The destination when the spec names none.
    pub(crate) default_destination: String,
    /// For a gateway source: its name.
    pub(crate) gateway_name: Option<String>,
}

/// A source ready to stream.
#[derive(Debug)]
pub(crate) enum Connected {
    Gateway(gateway::Peer),
    Kafka(kafka::Remote),
}

/// Connects to the spec's source.
pub(crate) async fn connect(spec: &MirrorSpec, env: &MirrorEnv) -> Result<(Connected, SourceInfo)> {
    match &spec.source {
        Source::Gateway(g) => {
            let (peer, info) = gateway::connect(spec, g, env).await?;
            Ok((Connected::Gateway(peer), info))
        }
        Source::Kafka(k) => {
            let (remote, info) = kafka::connect(spec, k, env).await?;
            Ok((Connected::Kafka(remote), info))
        }
    }
}

impl Connected {
    /// Streams from `positions` (partitions without one start at the spec's start); a Kafka
    /// source reads only partition `only` when given (a gateway source is one work unit).
    pub(crate) async fn stream(
        self,
        spec: &MirrorSpec,
        positions: &ResumePositions,
        only: Option<i32>,
        starts: &crate::resume::Starts,
    ) -> Result<Batches> {
        match self {
            Connected::Gateway(peer) => peer.stream(spec.start, positions, starts).await,
            Connected::Kafka(remote) => remote.stream(spec.start, positions, only),
        }
    }

    /// Streams a query source's rows after `resume`.
    pub(crate) async fn stream_query(
        self,
        spec: &MirrorSpec,
        resume: &QueryResume,
    ) -> Result<Batches> {
        match self {
            Connected::Gateway(peer) => peer.stream_query(resume).await,
            Connected::Kafka(_) => Err(Error::Spec {
                name: spec.name.clone(),
                reason: "a kafka source has no query".into(),
            }),
        }
    }
}
