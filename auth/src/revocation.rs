//! Credential records and revocations, as the gateway stores them in Kafka (JSON), and
//! the in-memory revocation list the verifier consults.
//!
//! - [`CredentialRecord`]: one issued token, without the token itself.
//! - [`Revocation`]: revokes one token (`jti`) or every token of a subject issued at or
//!   before `at`.
//! - [`RevocationList`]: what the verifier asks; [`MemoryRevocations`] implements it,
//!   [`NoRevocations`] revokes nothing.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::scope::Scope;
use crate::{Error, Result};

/// One issued credential, as stored in the credentials topic (the token is not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// Token id.
    pub jti: String,
    /// Subject.
    pub sub: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Audience gateway.
    pub aud: String,
    /// Issue time (unix seconds).
    pub iat: u64,
    /// Expiry (unix seconds).
    pub exp: u64,
    /// Issuing gateway.
    pub issued_by: String,
}

impl CredentialRecord {
    /// The Kafka record key: the `jti`.
    pub fn key(&self) -> &str {
        &self.jti
    }

    /// JSON encoding.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a stored record.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json)
            .map_err(|e| Error::Record(format!("not a credential record: {e}")))
    }
}

/// A revocation: of one token (`jti`), or of every token of `sub` issued at or before
/// `at`, or both. Revocations are permanent; a revoked subject gets new tokens issued
/// after `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The token to revoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The subject whose tokens issued at or before `at` are revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// When the revocation was made (unix seconds).
    pub at: u64,
}

impl Revocation {
    /// The Kafka record key: `jti:<jti>` or `sub:<sub>`, so a compacted topic keeps the
    /// latest subject revocation.
    pub fn key(&self) -> String {
        match (&self.jti, &self.sub) {
            (Some(jti), _) => format!("jti:{jti}"),
            (None, Some(sub)) => format!("sub:{sub}"),
            (None, None) => String::new(),
        }
    }

    /// JSON encoding.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a stored revocation; one naming neither `jti` nor `sub` is refused.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let r: Revocation = serde_json::from_slice(json)
            .map_err(|e| Error::Record(format!("not a revocation: {e}")))?;
        if r.jti.as_deref().unwrap_or_default().is_empty()
            && r.sub.as_deref().unwrap_or_default().is_empty()
        {
            return Err(Error::Record(
                "a revocation must name a jti or a sub".to_owned(),
            ));
        }
        Ok(r)
    }
}

/// Why a token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// Its `jti` is revoked.
    Token,
    /// Its subject's tokens issued at or before `at` are revoked.
    Subject {
        /// The revocation time.
        at: u64,
    },
}

/// What the verifier asks about each token.
pub trait RevocationList {
    /// Whether, and why, the token `jti` of `sub` issued at `iat` is revoked.
    fn check(&self, jti: &str, sub: &str, iat: u64) -> Option<RevokedBy>;

    /// Whether the token is revoked.
    fn is_revoked(&self, jti: &str, sub: &str, iat: u64) -> bool {
        self.check(jti, sub, iat).is_some()
    }
}

/// Revokes nothing: for gateways without a credentials store, and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocations;

impl RevocationList for NoRevocations {
    fn check(&self, _: &str, _: &str, _: u64) -> Option<RevokedBy> {
        None
    }
}

/// Revocations held in memory, built by applying the revocations topic in order.
#[derive(Debug, Clone, Default)]
pub struct MemoryRevocations {
    jtis: HashSet<String>,
    subs: HashMap<String, u64>,
}

impl MemoryRevocations {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one revocation (idempotent; order does not matter).
    pub fn apply(&mut self, revocation: &Revocation) {
        if let Some(jti) = &revocation.jti {
            self.jtis.insert(jti.clone());
        }
        if let Some(sub) = &revocation.sub {
            let at = self.subs.entry(sub.clone()).or_insert(revocation.at);
            *at = (*at).max(revocation.at);
        }
    }

    /// Revokes one token.
    pub fn revoke_token(&mut self, jti: impl Into<String>) {
        self.jtis.insert(jti.into());
    }

    /// Revokes every token of `sub` issued at or before `at`.
    pub fn revoke_subject(&mut self, sub: impl Into<String>, at: u64) {
        self.apply(&Revocation {
            jti: None,
            sub: Some(sub.into()),
            at,
        });
    }

    /// Number of revoked tokens and subjects.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.subs.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationList for MemoryRevocations {
    fn check(&self, jti: &str, sub: &str, iat: u64) -> Option<RevokedBy> {
        if self.jtis.contains(jti) {
            return Some(RevokedBy::Token);
        }
        match self.subs.get(sub) {
            Some(&at) if iat <= at => Some(RevokedBy::Subject { at }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_revocations_round_trip_as_json() {
        let record = CredentialRecord {
            jti: "ab".into(),
            sub: "fink".into(),
            scopes: vec!["subscribe:ztf.*".parse().unwrap(), Scope::Mirror],
            aud: "lasair".into(),
            iat: 1,
            exp: 2,
            issued_by: "lasair".into(),
        };
        let json = record.to_json();
        assert!(String::from_utf8_lossy(&json).contains(r#""scopes":["subscribe:ztf.*","mirror"]"#));
        assert_eq!(CredentialRecord::from_json(&json).unwrap(), record);

        let r = Revocation {
            jti: None,
            sub: Some("fink".into()),
            at: 5,
        };
        assert_eq!(Revocation::from_json(&r.to_json()).unwrap(), r);
        assert_eq!(r.key(), "sub:fink");
        assert!(Revocation::from_json(br#"{"at":5}"#).is_err());
        assert!(CredentialRecord::from_json(br#"{"jti":"a"}"#).is_err());
    }

    #[test]
    fn subject_revocation_covers_tokens_issued_until_then() {
        let mut list = MemoryRevocations::new();
        list.revoke_subject("fink", 100);
        list.revoke_subject("fink", 50);
        list.revoke_token("t1");
        assert_eq!(
            list.check("x", "fink", 100),
            Some(RevokedBy::Subject { at: 100 })
        );
        assert!(!list.is_revoked("x", "fink", 101));
        assert_eq!(list.check("t1", "alerce", 500), Some(RevokedBy::Token));
        assert!(!list.is_revoked("t2", "alerce", 500));
        assert_eq!(list.len(), 2);
        assert!(!NoRevocations.is_revoked("t1", "fink", 0));
    }
}
