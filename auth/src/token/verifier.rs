//! Verifying tokens of trusted issuers.

use std::collections::BTreeMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use super::{claims, peek, shown, TokenError};
use crate::keys::{Jwks, KeyRing, VerifyingKey};
use crate::principal::Principal;
use crate::revocation::{RevocationList, RevokedBy};
use crate::scope::Scope;

/// Largest clock skew a verifier tolerates, in seconds.
pub const MAX_LEEWAY: u64 = 30;
/// Clock skew tolerated unless configured otherwise, in seconds.
pub const DEFAULT_LEEWAY: u64 = 10;
/// Longest token accepted, in bytes; longer input is refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A token that verified: who is calling, what they may do, and what to re-check on open
/// streams ([`VerifiedToken::check_still_valid`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The caller: name = `sub`, scopes from `scope`.
    pub principal: Principal,
    /// The gateway that signed it (`iss`).
    pub issuer: String,
    /// Token id, for revocation.
    pub jti: String,
    /// Issue time (unix seconds), for subject revocation.
    pub iat: u64,
    /// Expiry (unix seconds): an open stream must end then.
    pub exp: u64,
    /// Scope strings this gateway does not know; they grant nothing (see [`Verifier`]).
    pub ignored_scopes: Vec<String>,
}

impl VerifiedToken {
    /// Re-checks expiry and revocation at `now`, e.g. periodically for an open stream.
    pub fn check_still_valid(
        &self,
        now: u64,
        leeway: u64,
        revocations: &dyn RevocationList,
    ) -> Result<(), TokenError> {
        if now >= self.exp.saturating_add(leeway.min(MAX_LEEWAY)) {
            return Err(TokenError::Expired { exp: self.exp, now });
        }
        revocation(&self.jti, &self.principal.name, self.iat, revocations)
    }
}

/// Verifies tokens for one audience (this gateway) from trusted issuers.
///
/// Each issuer has its own keys: this gateway's keyring and each peer's JWKS. The key is
/// found by `iss` and `kid`, and the key alone fixes the algorithm.
///
/// Required claims: `iss`, `sub`, `aud`, `exp`, `iat`, `jti` (alertmesh tokens always carry
/// them; `jti` and `iat` are needed for revocation). `nbf` is honoured when present.
/// Unknown scope strings are ignored, not rejected: they grant nothing, and a newer
/// issuer's scopes do not lock its tokens out of an older gateway; they are reported in
/// [`VerifiedToken::ignored_scopes`] for logging.
#[derive(Debug, Clone)]
pub struct Verifier {
    audience: String,
    leeway: u64,
    issuers: BTreeMap<String, Vec<VerifyingKey>>,
}

impl Verifier {
    /// A verifier accepting tokens whose `aud` is `audience` (this gateway's name), with
    /// no trusted issuer yet.
    pub fn new(audience: impl Into<String>) -> Self {
        Verifier {
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            issuers: BTreeMap::new(),
        }
    }

    /// Sets the clock-skew leeway, capped at [`MAX_LEEWAY`].
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs.min(MAX_LEEWAY);
        self
    }

    /// The clock-skew leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// The audience accepted.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Trusts `issuer` with exactly `keys`, replacing any keys it had.
    pub fn trust(&mut self, issuer: impl Into<String>, keys: Vec<VerifyingKey>) {
        self.issuers.insert(issuer.into(), keys);
    }

    /// Trusts this gateway's own keyring (current and retired keys) as `issuer`.
    pub fn trust_keyring(&mut self, issuer: impl Into<String>, keys: &KeyRing) {
        self.trust(issuer, keys.verifying_keys());
    }

    /// Trusts a peer's JWKS as `issuer`; returns how many keys were usable.
    pub fn trust_jwks(&mut self, issuer: impl Into<String>, jwks: &Jwks) -> usize {
        let keys = jwks.verifying_keys();
        let n = keys.len();
        self.trust(issuer, keys);
        n
    }

    /// Stops trusting `issuer`; whether it was trusted.
    pub fn distrust(&mut self, issuer: &str) -> bool {
        self.issuers.remove(issuer).is_some()
    }

    /// Names of trusted issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }

    /// Verifies `token` at `now` (unix seconds) and checks it against `revocations`.
    pub fn verify(
        &self,
        token: &str,
        now: u64,
        revocations: &dyn RevocationList,
    ) -> Result<VerifiedToken, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge {
                max: MAX_TOKEN_BYTES,
            });
        }
        let parts = peek::peek(token)?;
        // Unverified `iss` only selects the key set; everything is re-read after the check.
        let issuer = claims::string(&parts.payload, "iss")?;
        let keys = self
            .issuers
            .get(&issuer)
            .ok_or_else(|| TokenError::UnknownIssuer {
                issuer: shown(&issuer),
            })?;
        let key =
            keys.iter()
                .find(|k| k.kid() == parts.kid)
                .ok_or_else(|| TokenError::UnknownKey {
                    issuer: shown(&issuer),
                    kid: shown(&parts.kid),
                })?;
        if key.algorithm() != parts.alg {
            return Err(TokenError::AlgorithmMismatch {
                kid: shown(key.kid()),
                expected: key.algorithm(),
                found: parts.alg,
            });
        }
        let payload = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &key.decoding_key(),
            &signature_only(key.algorithm()),
        )
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::Base64(_) => TokenError::Malformed {
                reason: "the signature is not base64url",
            },
            _ => TokenError::Malformed {
                reason: "the header has members that are not supported",
            },
        })?
        .claims;

        let (claims, audiences) = claims::extract(&payload)?;
        if !audiences.contains(&self.audience) {
            return Err(TokenError::WrongAudience {
                expected: shown(&self.audience),
                found: shown(&audiences.join(" ")),
            });
        }
        let leeway = self.leeway;
        if now >= claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now,
            });
        }
        if let Some(nbf) = claims.nbf {
            if nbf > now.saturating_add(leeway) {
                return Err(TokenError::NotYetValid { nbf, now });
            }
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture {
                iat: claims.iat,
                now,
            });
        }
        revocation(&claims.jti, &claims.sub, claims.iat, revocations)?;

        let mut scopes = Vec::new();
        let mut ignored_scopes = Vec::new();
        for s in claims.scope.split_ascii_whitespace() {
            match s.parse::<Scope>() {
                Ok(scope) => scopes.push(scope),
                Err(_) => ignored_scopes.push(shown(s)),
            }
        }
        Ok(VerifiedToken {
            principal: Principal {
                name: claims.sub,
                scopes,
            },
            issuer: claims.iss,
            jti: claims.jti,
            iat: claims.iat,
            exp: claims.exp,
            ignored_scopes,
        })
    }
}

/// jsonwebtoken's checks for a key of `alg`: the header's `alg` must be the key's, and the
/// signature must verify. Its claim checks are off because it reads the system clock and
/// has no `iat` check; [`Verifier::verify`] checks the claims against the caller's `now`.
fn signature_only(alg: crate::keys::Algorithm) -> Validation {
    let mut validation = Validation::new(alg.jwt());
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation
}

fn revocation(
    jti: &str,
    sub: &str,
    iat: u64,
    revocations: &dyn RevocationList,
) -> Result<(), TokenError> {
    match revocations.check(jti, sub, iat) {
        None => Ok(()),
        Some(RevokedBy::Token) => Err(TokenError::Revoked { jti: shown(jti) }),
        Some(RevokedBy::Subject { at }) => Err(TokenError::SubjectRevoked {
            sub: shown(sub),
            at,
        }),
    }
}
