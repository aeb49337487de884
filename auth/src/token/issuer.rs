//! Issuing tokens with the keyring's current key.

use std::fmt;

use super::Claims;
use crate::encoding::random_hex;
use crate::keys::KeyRing;
use crate::revocation::CredentialRecord;
use crate::scope::Scope;
use crate::{Error, Result};

/// Default longest token lifetime: 30 days. Retired keys must be kept this long.
pub const DEFAULT_MAX_TTL: u64 = 30 * 24 * 3600;

/// What to put in a new token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Who the token identifies (a user, or a peer gateway's name).
    pub sub: String,
    /// The gateway the token is for.
    pub aud: String,
    /// What it grants.
    pub scopes: Vec<Scope>,
    /// Lifetime in seconds, from issue time.
    pub ttl: u64,
    /// Optional start of validity (unix seconds).
    pub not_before: Option<u64>,
}

/// A signed token and its claims. `Debug` redacts the token, which is a bearer secret.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWT to hand to the subject.
    pub token: String,
    /// What it says.
    pub claims: Claims,
    /// The scopes, typed.
    pub scopes: Vec<Scope>,
}

impl IssuedToken {
    /// The record the gateway stores for this credential (no secret in it).
    pub fn record(&self) -> CredentialRecord {
        CredentialRecord {
            jti: self.claims.jti.clone(),
            sub: self.claims.sub.clone(),
            scopes: self.scopes.clone(),
            aud: self.claims.aud.clone(),
            iat: self.claims.iat,
            exp: self.claims.exp,
            issued_by: self.claims.iss.clone(),
        }
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("claims", &self.claims)
            .finish()
    }
}

/// Signs tokens as gateway `name`.
#[derive(Debug)]
pub struct Issuer {
    name: String,
    keys: KeyRing,
    max_ttl: u64,
}

impl Issuer {
    /// An issuer named `name` (the gateway name, used as `iss`) signing with `keys`.
    pub fn new(name: impl Into<String>, keys: KeyRing) -> Self {
        Issuer {
            name: name.into(),
            keys,
            max_ttl: DEFAULT_MAX_TTL,
        }
    }

    /// Sets the longest lifetime a request may ask for.
    pub fn with_max_ttl(mut self, secs: u64) -> Self {
        self.max_ttl = secs;
        self
    }

    /// The issuer name (`iss`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The longest token lifetime.
    pub fn max_ttl(&self) -> u64 {
        self.max_ttl
    }

    /// The signing keys.
    pub fn keyring(&self) -> &KeyRing {
        &self.keys
    }

    /// Signs a token for `request`, issued at `now` (unix seconds), with a random `jti`.
    pub fn issue(&self, request: &TokenRequest, now: u64) -> Result<IssuedToken> {
        let bad = |what: &str| Err(Error::InvalidRequest(what.to_owned()));
        if request.sub.trim().is_empty() {
            return bad("the token subject is empty; name a user or gateway");
        }
        if request.aud.trim().is_empty() {
            return bad("the token audience is empty; name the gateway it is for");
        }
        if request.ttl == 0 || request.ttl > self.max_ttl {
            return Err(Error::InvalidRequest(format!(
                "the token lifetime must be 1 to {} seconds",
                self.max_ttl
            )));
        }
        let claims = Claims {
            iss: self.name.clone(),
            sub: request.sub.clone(),
            aud: request.aud.clone(),
            exp: now.saturating_add(request.ttl),
            iat: now,
            nbf: request.not_before,
            jti: random_hex(16)?,
            scope: request
                .scopes
                .iter()
                .map(Scope::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        };
        let key = self.keys.current();
        let mut header = jsonwebtoken::Header::new(key.algorithm().jwt());
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key.encoding_key())
            .map_err(|_| Error::Crypto("signing failed"))?;
        Ok(IssuedToken {
            token,
            claims,
            scopes: request.scopes.clone(),
        })
    }
}
