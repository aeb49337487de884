//! The librdkafka client context of mirror clients: reaching the end of a partition is an
//! event recovery and readers rely on, not an error to log; other client errors are logged
//! as warnings (the status and backoff report them to operators).
//!
//! The context also remembers whether its client lost every broker connection. librdkafka
//! keeps what a client learned of its cluster (topic ids, leaders) across reconnections,
//! and has crashed (SIGSEGV in `rd_kafka_metadata_update_op`) when a client that lost its
//! cluster reconnected to a new one started behind the same address, as after a reset or
//! a rebuilt cluster. So a mirror client that is [lost](QuietContext::is_lost) is never
//! used again: its cycle ends with an error, and the next cycle makes new clients, which
//! learn the cluster from metadata first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;

/// A consumer created with [`QuietContext`].
pub(crate) type Consumer = BaseConsumer<QuietContext>;

/// A producer created with [`QuietContext`].
pub(crate) type Producer = FutureProducer<QuietContext>;

#[derive(Debug, Default)]
pub(crate) struct QuietContext {
    lost: Lost,
}

/// Whether a client has lost every broker connection since it was made: then it must be
/// dropped, not reconnected. Shared, since a producer's context is not reachable.
#[derive(Debug, Default, Clone)]
pub(crate) struct Lost(Arc<AtomicBool>);

impl Lost {
    pub(crate) fn is_lost(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl QuietContext {
    /// A context that reports losing the cluster to `lost`.
    pub(crate) fn sharing(lost: &Lost) -> Self {
        Self { lost: lost.clone() }
    }

    /// Whether the client has lost every broker connection since it was made.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_lost()
    }

    /// Notes an error the client reported, through its callback or its queue.
    pub(crate) fn saw(&self, error: &KafkaError) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.lost.0.store(true, Ordering::Relaxed);
        }
    }
}

/// The reason a cycle gives up a lost client.
pub(crate) const LOST: &str =
    "every broker connection was lost (the cluster may have been replaced); \
     reconnecting with new clients";

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        self.saw(&error);
        if let Some(suppressed) = KAFKA_ERRORS.admit() {
            tracing::warn!(error = %error, reason, suppressed, "kafka client error");
        }
    }
}

/// Client errors repeat while a cluster is down: a few per interval are enough.
static KAFKA_ERRORS: crate::limit::RateLimit = crate::limit::RateLimit::new();

impl ConsumerContext for QuietContext {}
