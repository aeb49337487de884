//! Compact JWS (RFC 7515) encoding and the untrusted first pass of decoding.
//!
//! Decoding only splits and parses; nothing it returns is trusted until the verifier has
//! checked the signature with a key it chose by `iss` and `kid`. The header's `alg` is
//! only compared with the key's algorithm, never used to pick one; `jku`, `jwk`, `x5u`
//! and `x5c` header parameters are ignored.

use serde_json::{Map, Value};

use super::TokenError;
use crate::encoding::{b64url, b64url_decode};
use crate::keys::{Algorithm, SigningKey};
use crate::Result;

/// Signs `payload` (JSON bytes) with `key` as `header.payload.signature`.
pub(crate) fn encode(key: &SigningKey, payload: &[u8]) -> Result<String> {
    let header = serde_json::json!({
        "alg": key.algorithm().jose_name(),
        "typ": "JWT",
        "kid": key.kid(),
    });
    let mut token = b64url(header.to_string().as_bytes());
    token.push('.');
    token.push_str(&b64url(payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64url(&signature));
    Ok(token)
}

/// A token split into its parts; all untrusted.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
    pub(crate) payload: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
}

/// Splits and parses a compact JWS, checking the header's algorithm family.
pub(crate) fn decode(token: &str) -> Result<Parts<'_>, TokenError> {
    let malformed = |reason| TokenError::Malformed { reason };
    let mut segments = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed(
            "expected three base64url segments separated by dots",
        ));
    };
    let header = b64url_decode(h).ok_or(malformed("the header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|_| malformed("the header is not a json object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
            return Err(TokenError::Unsigned)
        }
        Some(Value::String(alg)) => {
            Algorithm::from_jose_name(alg).ok_or_else(|| TokenError::UnsupportedAlgorithm {
                alg: super::shown(alg),
            })?
        }
        _ => return Err(malformed("the header has no alg string")),
    };
    if header.contains_key("crit") {
        return Err(TokenError::UnsupportedCritical);
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        _ => return Err(TokenError::MissingKid),
    };
    let payload = b64url_decode(p).ok_or(malformed("the payload is not base64url"))?;
    let payload: Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|_| malformed("the payload is not a json object"))?;
    if s.is_empty() {
        return Err(TokenError::Unsigned);
    }
    let signature = b64url_decode(s).ok_or(malformed("the signature is not base64url"))?;
    Ok(Parts {
        alg,
        kid,
        payload,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}
