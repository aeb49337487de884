//! The untrusted first look at a token: the header's `alg` and `kid` and the payload, which
//! pick the key that jsonwebtoken then verifies the token with.
//!
//! Nothing here is trusted: `iss` and `kid` only select a key, and the header's `alg` is only
//! compared with that key's algorithm, never used to pick one. `jku`, `jwk`, `x5u` and `x5c`
//! are ignored. The look exists for the errors: jsonwebtoken reports `alg: none`, an unknown
//! `alg` and a bad header alike, and callers are told which it was.

use std::str::FromStr as _;

use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use super::{shown, TokenError};
use crate::encoding::b64url_decode;
use crate::keys::Algorithm;

/// What a token says about itself before verification; all untrusted.
#[derive(Debug)]
pub(crate) struct Peek {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
    pub(crate) payload: Map<String, Value>,
}

fn malformed(reason: &'static str) -> TokenError {
    TokenError::Malformed { reason }
}

/// Reads the header and payload of `token` without checking its signature.
pub(crate) fn peek(token: &str) -> Result<Peek, TokenError> {
    if token.split('.').count() != 3 {
        return Err(malformed(
            "expected three base64url segments separated by dots",
        ));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => header_error(token),
        _ => malformed("the header is not base64url"),
    })?;
    let alg = Algorithm::from_jwt(header.alg).ok_or_else(|| TokenError::UnsupportedAlgorithm {
        // The Debug names of jsonwebtoken's algorithms are their JOSE names.
        alg: format!("{:?}", header.alg),
    })?;
    if header.crit.is_some() {
        return Err(TokenError::UnsupportedCritical);
    }
    let kid = header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or(TokenError::MissingKid)?;
    let payload = jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token)
        .map_err(|e| match e.kind() {
            ErrorKind::Base64(_) => malformed("the payload is not base64url"),
            _ => malformed("the payload is not a json object"),
        })?;
    if token.ends_with('.') {
        return Err(TokenError::Unsigned);
    }
    Ok(Peek { alg, kid, payload })
}

/// Why a base64url header is not one jsonwebtoken reads: `alg: none`, an `alg` it does not
/// know, or members of the wrong type.
fn header_error(token: &str) -> TokenError {
    let header = token
        .split('.')
        .next()
        .and_then(b64url_decode)
        .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok());
    let Some(header) = header else {
        return malformed("the header is not a json object");
    };
    match header.get("alg") {
        Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => TokenError::Unsigned,
        Some(Value::String(alg)) if jsonwebtoken::Algorithm::from_str(alg).is_err() => {
            TokenError::UnsupportedAlgorithm { alg: shown(alg) }
        }
        Some(Value::String(_)) => malformed("a header member has the wrong type"),
        _ => malformed("the header has no alg string"),
    }
}
