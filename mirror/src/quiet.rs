//! The librdkafka client context of mirror consumers: reaching the end of a partition is an
//! event recovery and readers rely on, not an error to log; other client errors are logged
//! once as warnings (the status and backoff report them to operators).

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A consumer created with [`QuietContext`].
pub(crate) type Consumer = BaseConsumer<QuietContext>;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuietContext;

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for QuietContext {}
