//! The crate's one error type. Messages say what was wrong and never hold a token: token
//! errors name the file or variable it came from, never its content.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can fail while setting up, connecting or calling a gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway URL cannot be parsed.
    #[error("invalid gateway URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// A list of gateway URLs (the replicas of one gateway) is empty, too long, or has an
    /// empty entry.
    #[error("invalid gateway URL list: {0}")]
    Urls(String),
    /// A token file cannot be read.
    #[error("cannot read token file {}: {reason}", path.display())]
    TokenFile { path: PathBuf, reason: String },
    /// A token environment variable is not set (or not UTF-8).
    #[error("token variable {var}: not set")]
    TokenEnv { var: String },
    /// The token is empty or cannot be carried in an HTTP header.
    #[error("invalid token: {0}")]
    Token(&'static str),
    /// A CA, certificate or key file cannot be used, or TLS files were given for a
    /// plain-text URL.
    #[error("tls: {0}")]
    Tls(String),
    /// Nothing answered at the URL, or the TLS handshake failed.
    #[error("cannot connect to gateway {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The gateway answered with an error status.
    #[error("{}", status_line(.0))]
    Status(#[from] tonic::Status),
}

impl Error {
    /// The gRPC status, when the gateway answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status(s) => Some(s),
            _ => None,
        }
    }
}

/// One line for a gRPC error: the canonical code, then the first line of the gateway's
/// message.
pub fn status_line(s: &tonic::Status) -> String {
    let code = match s.code() {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    };
    format!("{code}: {}", s.message().lines().next().unwrap_or(""))
}

/// `e` and its sources, joined with `: ` (transport errors hide the useful part inside).
/// A layer that repeats what is already said (tonic's "transport error", hyper's
/// "tcp connect error" twice) is left out: each cause is said once.
pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        cur = inner.source();
    }
    // Wrappers that only say "something failed below" add nothing to the cause.
    if parts.len() > 1 {
        parts.retain(|p| p != "transport error");
    }
    parts.join(": ")
}

/// What to check when nothing usable answered at a gateway URL, after the cause.
pub(crate) fn connect_hint(reason: &str) -> String {
    let lower = reason.to_ascii_lowercase();
    let check = if lower.contains("refused") {
        "is a gateway running and listening there? (check the URL, --gateway or ALERTMESH_GATEWAY, and the gateway's [gateway] listen address)"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        "check that the URL's scheme matches the gateway (http:// or https://) and --ca, --cert and --key"
    } else if lower.contains("dns") || lower.contains("resolve") || lower.contains("lookup") {
        "check the host name of the URL"
    } else {
        "check that the URL is the gateway's gRPC address and that it is reachable from here"
    };
    format!("{reason}; {check}")
}
