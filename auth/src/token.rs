//! Gateway tokens: compact JWS JWTs signed with the gateway's key, encoded and verified by
//! jsonwebtoken; keys, algorithms and claims are checked here.
//!
//! - [`Issuer`] signs [`Claims`] for a [`TokenRequest`] with the keyring's current key.
//! - [`Verifier`] checks tokens of trusted issuers (the gateway's own keyring and peers'
//!   JWKS) and yields a [`VerifiedToken`] holding the caller's [`crate::Principal`].
//! - [`TokenError`]: one variant per way a token can be bad, each with a message that
//!   says what to do and never contains the token or key material.
//! - [`JwksRefreshLimiter`]: at most one JWKS refresh per issuer per interval, for
//!   [`TokenError::UnknownKey`].
//! - [`bearer_token`]: the token in an `authorization: Bearer ...` value.

mod claims;
mod issuer;
mod peek;
mod refresh;
#[cfg(test)]
mod tests;
mod verifier;

pub use claims::Claims;
pub use issuer::{IssuedToken, Issuer, TokenRequest, DEFAULT_MAX_TTL};
pub use refresh::JwksRefreshLimiter;
pub use verifier::{VerifiedToken, Verifier, DEFAULT_LEEWAY, MAX_LEEWAY, MAX_TOKEN_BYTES};

use crate::keys::Algorithm;

/// Why a token was refused. All variants map to `Unauthenticated`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token, or an empty one.
    #[error("no token; send one as `authorization: Bearer <token>`")]
    Missing,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than {max} bytes; send a token issued by a gateway")]
    TooLarge { max: usize },
    /// Not three base64url segments with JSON header and payload.
    #[error("the token is malformed: {reason}; send a compact jwt as issued by a gateway")]
    Malformed { reason: &'static str },
    /// `alg: none` or an empty signature.
    #[error("the token is unsigned; only EdDSA and ES256 signed tokens are accepted")]
    Unsigned,
    /// A header `alg` other than EdDSA and ES256 (HS256, RS256, ...).
    #[error(
        "the token's algorithm {alg:?} is not accepted; only EdDSA and ES256 signed tokens are"
    )]
    UnsupportedAlgorithm { alg: String },
    /// The header has `crit` extensions, none of which are supported.
    #[error(
        "the token's header has critical extensions, which are not supported; send a plain jwt"
    )]
    UnsupportedCritical,
    /// The header names no signing key.
    #[error("the token's header has no kid; tokens must name their signing key")]
    MissingKid,
    /// A required claim is absent.
    #[error("the token has no {claim} claim; request a new token from its issuer")]
    MissingClaim { claim: &'static str },
    /// A claim of the wrong type or form.
    #[error(
        "the token's {claim} claim is invalid ({reason}); request a new token from its issuer"
    )]
    InvalidClaim {
        claim: &'static str,
        reason: &'static str,
    },
    /// `iss` is not a trusted issuer.
    #[error("the token's issuer {issuer:?} is not trusted here; add it as a peer or use a token of a trusted issuer")]
    UnknownIssuer { issuer: String },
    /// The issuer is trusted but has no key `kid`: its keys may have rotated, so the
    /// caller may refresh that issuer's JWKS (rate-limited) and retry once.
    #[error(
        "issuer {issuer:?} has no key {kid:?}; its keys may have rotated, so refresh its jwks"
    )]
    UnknownKey { issuer: String, kid: String },
    /// The header's `alg` differs from the algorithm of the key named by `kid`.
    #[error("the token claims algorithm {found} but key {kid:?} is an {expected} key; the key fixes the algorithm")]
    AlgorithmMismatch {
        kid: String,
        expected: Algorithm,
        found: Algorithm,
    },
    /// The signature does not verify: the token was altered or forged.
    #[error("the token's signature does not verify; it was altered or not signed by its issuer")]
    BadSignature,
    /// `aud` does not name this gateway.
    #[error("the token is for {found:?}, not for this gateway {expected:?}; request a token for this gateway")]
    WrongAudience { expected: String, found: String },
    /// `exp` has passed (beyond the leeway).
    #[error("the token expired at {exp} (now {now}); request a new token")]
    Expired { exp: u64, now: u64 },
    /// `nbf` is still in the future (beyond the leeway).
    #[error("the token is not valid before {nbf} (now {now}); wait, or check the clocks")]
    NotYetValid { nbf: u64, now: u64 },
    /// `iat` is in the future (beyond the leeway).
    #[error("the token was issued at {iat}, after now ({now}); check the issuer's clock")]
    IssuedInFuture { iat: u64, now: u64 },
    /// The token's `jti` is revoked.
    #[error("token {jti:?} has been revoked; request a new credential")]
    Revoked { jti: String },
    /// All tokens of the subject issued at or before `at` are revoked.
    #[error(
        "the credentials of {sub:?} issued until {at} have been revoked; request a new credential"
    )]
    SubjectRevoked { sub: String, at: u64 },
}

impl TokenError {
    /// Whether refreshing the issuer's JWKS might make the token verify.
    pub fn is_unknown_key(&self) -> bool {
        matches!(self, TokenError::UnknownKey { .. })
    }
}

/// The token in an `authorization` header value `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, TokenError> {
    let value = authorization.map(str::trim).unwrap_or_default();
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Err(TokenError::Missing)
            } else {
                Ok(token)
            }
        }
        _ => Err(TokenError::Malformed {
            reason: "the authorization value is not `Bearer <token>`",
        }),
    }
}

/// An untrusted string fit for an error message: at most 64 characters, no controls.
pub(crate) fn shown(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}
