//! alertmesh identities and authorization: who is calling, and what they may do.
//!
//! - [`principal`]: the authenticated caller of an RPC.
//! - [`scope`]: scopes carried by tokens (`subscribe:<topic glob>`, `fetch:<topic glob>`,
//!   `mirror`, `admin`) and the topic globs they grant.
//! - [`keys`]: the gateway's signing keys (Ed25519 or ES256), the keys directory with
//!   rotation, and JWKS documents.
//! - [`token`]: issuing and verifying JWTs ([`Issuer`], [`Verifier`], [`TokenError`]).
//! - [`revocation`]: credential records, revocations and the revocation list.
//! - [`tls`]: development mesh CA and certificates, rustls server/client configurations,
//!   and the identity in a peer certificate.
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
    bearer_token, Claims, IssuedToken, Issuer, TokenError, TokenRequest, VerifiedToken, Verifier,
};

/// Everything that can go wrong in this crate. Messages never contain tokens or key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scope string that is not one of the known forms.
    #[error("invalid scope {input:?}: {reason}; expected subscribe:<topic glob>, fetch:<topic glob>, mirror or admin")]
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

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
