//! alertmesh identities and authorization: who is calling, and what they may do.
//!
//! - [`principal`]: the authenticated caller of an RPC.
//! - [`scope`]: scopes carried by tokens (`subscribe:<topic glob>`, `fetch:<topic glob>`, `publish:<topic glob>`,
//!   `mirror`, `admin`) and the topic globs they grant.
//! - [`keys`]: the gateway's signing keys (Ed25519 or ES256), the keys directory with
//!   rotation, and JWKS documents.
//! - [`token`]: issuing and verifying JWTs ([`Issuer`], [`Verifier`], [`TokenError`]).
//! - [`revocation`]: credential records, revocations and the revocation list.
//! - [`tls`]: development mesh CA and certificates, rustls server/client configurations,
//!   and the identity in a peer certificate.
//!
//! The gateway's flow:
//!
//! ```
//! use alertmesh_auth::{
//!     Action, Algorithm, Issuer, KeyRing, MemoryRevocations, Scope, TokenRequest, Verifier,
//! };
//!
//! # fn main() -> alertmesh_auth::Result<()> {
//! let now = 1_700_000_000;
//! let dir = tempfile::tempdir().unwrap();
//! let keys = KeyRing::init(dir.path(), Algorithm::EdDsa, now)?; // or KeyRing::load
//! let jwks_json = keys.jwks().to_json(); // serve at /.well-known/jwks.json
//!
//! let mut verifier = Verifier::new("lasair");
//! verifier.trust_keyring("lasair", &keys);
//! // verifier.trust_jwks("fink", &Jwks::from_json(&fetched_bytes)?);
//!
//! let issuer = Issuer::new("lasair", keys);
//! let issued = issuer.issue(
//!     &TokenRequest {
//!         sub: "alice".into(),
//!         aud: "lasair".into(),
//!         scopes: vec!["subscribe:ztf.*".parse()?],
//!         ttl: 3600,
//!         not_before: None,
//!     },
//!     now,
//! )?;
//! // Store issued.record() in the credentials topic; hand issued.token to alice.
//!
//! let revocations = MemoryRevocations::new();
//! let verified = verifier.verify(&issued.token, now + 5, &revocations)?;
//! verified.principal.require(Action::Subscribe, "ztf.alerts")?;
//! assert!(!verified.principal.has(&Scope::Admin));
//! # assert!(jwks_json.contains(r#""kty":"OKP""#));
//! # Ok(())
//! # }
//! ```
//!
//! Time is always passed in as unix seconds (`now`), never read from the clock here, so
//! callers and tests control it.

mod encoding;
mod files;
pub mod keys;
pub mod principal;
pub mod revocation;
pub mod scope;
pub mod tls;
pub mod token;

use std::path::PathBuf;

pub use keys::{Algorithm, Jwk, Jwks, KeyRing, SigningKey, VerifyingKey};
pub use principal::Principal;
pub use revocation::{
    CredentialRecord, MemoryRevocations, NoRevocations, Revocation, RevocationList, RevokedBy,
};
pub use scope::{Action, Scope};
pub use token::{
    bearer_token, Claims, IssuedToken, Issuer, JwksRefreshLimiter, TokenError, TokenRequest,
    VerifiedToken, Verifier,
};

/// Everything that can go wrong in this crate. Messages never contain tokens or key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scope string that is not one of the known forms.
    #[error("invalid scope {input:?}: {reason}; expected subscribe:<topic glob>, fetch:<topic glob>, publish:<topic glob>, mirror or admin")]
    InvalidScope { input: String, reason: &'static str },
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A private key file that others may read.
    #[error("{path} has mode {mode:o} but holds a private key; run chmod 600 on it")]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    /// A key that cannot be used (malformed file, unknown algorithm, ...).
    #[error("{0}")]
    Key(String),
    /// A JWKS document that cannot be used.
    #[error("{0}")]
    Jwks(String),
    /// A token was refused (maps to `Unauthenticated`).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The caller lacks a scope (maps to `PermissionDenied`).
    #[error("{principal} may not do this: it needs the scope {needed}; ask the gateway admin for a token with it")]
    NotPermitted { principal: String, needed: String },
    /// A token request that cannot be issued.
    #[error("{0}")]
    InvalidRequest(String),
    /// A stored credential record or revocation that cannot be decoded.
    #[error("{0}")]
    Record(String),
    /// A certificate or PEM file that cannot be used.
    #[error("{0}")]
    Certificate(String),
    /// A TLS configuration that cannot be built.
    #[error("tls: {0}")]
    Tls(String),
    /// The peer's certificate names someone else than its token (maps to `Unauthenticated`).
    #[error("the peer certificate is for {certificate:?} but its token is for {token:?}; use the certificate and token of one gateway")]
    IdentityMismatch { certificate: String, token: String },
    /// The cryptographic library failed (no randomness, ...).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// The class of an [`Error`], for mapping to a protocol status (gRPC codes in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad, expired or revoked token, or a certificate/token mismatch (`Unauthenticated`).
    Unauthenticated,
    /// A valid caller lacking a scope (`PermissionDenied`).
    PermissionDenied,
    /// A bad request or input, such as an unknown scope string (`InvalidArgument`).
    InvalidArgument,
    /// Files, keys, certificates, TLS or crypto on this side (`Internal`).
    Internal,
}

impl Error {
    /// How a protocol layer should report this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Token(_) | Error::IdentityMismatch { .. } => ErrorKind::Unauthenticated,
            Error::NotPermitted { .. } => ErrorKind::PermissionDenied,
            Error::InvalidScope { .. } | Error::InvalidRequest(_) => ErrorKind::InvalidArgument,
            Error::Io { .. }
            | Error::InsecureKeyFile { .. }
            | Error::Key(_)
            | Error::Jwks(_)
            | Error::Record(_)
            | Error::Certificate(_)
            | Error::Tls(_)
            | Error::Crypto(_) => ErrorKind::Internal,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
