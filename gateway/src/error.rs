//! The gateway's error type and its one mapping to gRPC status codes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Everything a gateway request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something that does not exist (topic, record, cursor).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed; the message says what is accepted.
    #[error("{0}")]
    InvalidArgument(String),
    /// Kafka cannot be reached or did not answer in time.
    #[error("kafka unavailable: {0}")]
    Unavailable(String),
    /// A database of `[[databases]]` cannot be reached or did not answer in time; the
    /// message names it.
    #[error("{0}")]
    DatabaseUnavailable(String),
    /// Too many subscriptions or similar overload.
    #[error("{0}")]
    ResourceExhausted(String),
    /// No token, or a bad, expired or revoked one, or a client certificate that does not
    /// fit the token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The call is valid but the target is not in a state that allows it (a topic that is
    /// not declared publishable).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A valid caller lacking the scope the call needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// Kafka went back past a position already reached (the cluster was replaced or reset,
    /// or the topic recreated): records were lost or renumbered.
    #[error("{0}")]
    DataLoss(String),
    /// A limit on how long something may take was reached; the message names the limit.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The gateway is stopping.
    #[error("gateway is shutting down")]
    ShuttingDown,
    /// Kafka answered with an error the caller cannot fix. A configuration error shows
    /// the property's name, never its value (it can be a password).
    #[error("kafka error: {}", crate::config::kafka_error_text(.0))]
    Kafka(#[from] KafkaError),
    /// A bug or an unexpected condition inside the gateway.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for the gateway.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error again, for each of several callers that share one failure.
    pub fn share(&self) -> Error {
        match self {
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
            Error::DatabaseUnavailable(m) => Error::DatabaseUnavailable(m.clone()),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(m.clone()),
            Error::Unauthenticated(m) => Error::Unauthenticated(m.clone()),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
            Error::PermissionDenied(m) => Error::PermissionDenied(m.clone()),
            Error::DataLoss(m) => Error::DataLoss(m.clone()),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(m.clone()),
            Error::ShuttingDown => Error::ShuttingDown,
            Error::Kafka(e) => Error::Kafka(e.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
        }
    }

    /// Classifies a Kafka error: transport problems are `Unavailable`, the rest stays Kafka.
    pub fn from_kafka(e: KafkaError) -> Error {
        match e.rdkafka_error_code() {
            Some(code) if is_transport(code) => Error::Unavailable(e.to_string()),
            _ => Error::Kafka(e),
        }
    }
}

impl From<alertmesh_auth::Error> for Error {
    fn from(e: alertmesh_auth::Error) -> Error {
        use alertmesh_auth::ErrorKind;
        let msg = e.to_string();
        match e.kind() {
            ErrorKind::Unauthenticated => Error::Unauthenticated(msg),
            ErrorKind::PermissionDenied => Error::PermissionDenied(msg),
            ErrorKind::InvalidArgument => Error::InvalidArgument(msg),
            ErrorKind::Internal => Error::Internal(msg),
        }
    }
}

impl From<alertmesh_auth::TokenError> for Error {
    fn from(e: alertmesh_auth::TokenError) -> Error {
        Error::Unauthenticated(e.to_string())
    }
}

/// librdkafka codes that mean "the cluster cannot be reached right now".
pub(crate) fn is_transport(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
    )
}

/// The longest message a status carries. Messages echo what clients sent (a field name,
/// a topic); a 1 MB name must not come back as a 1 MB error.
pub(crate) const MAX_STATUS_MESSAGE: usize = 1024;

/// A status message as sent: one line, control characters escaped, at most
/// [`MAX_STATUS_MESSAGE`] characters.
pub(crate) fn status_message(text: &str) -> String {
    alertmesh_alert::echo::line(text, MAX_STATUS_MESSAGE)
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let msg = status_message(&e.to_string());
        match e {
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            Error::Unavailable(_) | Error::DatabaseUnavailable(_) | Error::ShuttingDown => {
                tonic::Status::unavailable(msg)
            }
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            Error::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            Error::PermissionDenied(_) => tonic::Status::permission_denied(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::DataLoss(_) => tonic::Status::data_loss(msg),
            Error::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(msg),
            Error::Kafka(_) | Error::Internal(_) => tonic::Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_input_is_capped_and_escaped_in_statuses() {
        let huge = format!("unknown topic \"{}\u{1b}[2J\"", "x".repeat(1 << 20));
        let status = tonic::Status::from(Error::NotFound(huge));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().len() < MAX_STATUS_MESSAGE + 40);
        assert!(status.message().starts_with("unknown topic \"xxx"));
        assert!(
            status.message().ends_with("of 1048596 bytes)"),
            "{}",
            status.message()
        );
        let short = tonic::Status::from(Error::InvalidArgument("bad\u{1b}[2J".into()));
        assert_eq!(short.message(), "bad\\u{1b}[2J");
    }

    #[test]
    fn a_kafka_configuration_error_never_shows_the_value() {
        let e = rdkafka::ClientConfig::new()
            .set("sasl.password", "hunter2")
            .set("security.protocol", "hunter2-protocol")
            .create_native_config()
            .err()
            .expect("librdkafka refuses the protocol");
        let text = Error::Kafka(e).to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("security.protocol"), "{text}");
        let status = tonic::Status::from(Error::from_kafka(
            rdkafka::ClientConfig::new()
                .set("sasl.jaas.config", "password=hunter2")
                .create_native_config()
                .err()
                .expect("unknown property"),
        ));
        assert!(
            !status.message().contains("hunter2"),
            "{}",
            status.message()
        );
    }
}
