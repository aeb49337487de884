//! The claims of an alertmesh token, and their strict extraction from a verified payload.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TokenError;

/// The claims alertmesh issues. All but `nbf` are required when verifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the name of the gateway that signed the token.
    pub iss: String,
    /// Subject: the user or peer gateway the token identifies.
    pub sub: String,
    /// Audience: the gateway the token is for.
    pub aud: String,
    /// Expiry (unix seconds).
    pub exp: u64,
    /// Issue time (unix seconds).
    pub iat: u64,
    /// Not before (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id: 128 random bits, hex.
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
}

/// Reads the claims from a payload whose signature has been checked. `aud` may be a string
/// or an array of strings (RFC 7519); `audiences` receives all of them.
pub(crate) fn extract(payload: &Map<String, Value>) -> Result<(Claims, Vec<String>), TokenError> {
    let iss = string(payload, "iss")?;
    let sub = string(payload, "sub")?;
    let audiences = match payload.get("aud") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim { claim: "aud" }),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .ok_or(TokenError::InvalidClaim {
                claim: "aud",
                reason: "not a string or a non-empty array of strings",
            })?,
        Some(_) => {
            return Err(TokenError::InvalidClaim {
                claim: "aud",
                reason: "not a string or a non-empty array of strings",
            })
        }
    };
    let exp = seconds(payload, "exp")?.ok_or(TokenError::MissingClaim { claim: "exp" })?;
    let iat = seconds(payload, "iat")?.ok_or(TokenError::MissingClaim { claim: "iat" })?;
    let nbf = seconds(payload, "nbf")?;
    let jti = string(payload, "jti")?;
    let scope = match payload.get("scope") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(TokenError::InvalidClaim {
                claim: "scope",
                reason: "not a space-separated string",
            })
        }
    };
    let claims = Claims {
        iss,
        sub,
        aud: audiences[0].clone(),
        exp,
        iat,
        nbf,
        jti,
        scope,
    };
    Ok((claims, audiences))
}

/// A required non-empty string claim.
pub(crate) fn string(
    payload: &Map<String, Value>,
    claim: &'static str,
) -> Result<String, TokenError> {
    match payload.get(claim) {
        None | Some(Value::Null) => Err(TokenError::MissingClaim { claim }),
        Some(Value::String(s)) if s.is_empty() => Err(TokenError::InvalidClaim {
            claim,
            reason: "empty",
        }),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(TokenError::InvalidClaim {
            claim,
            reason: "not a string",
        }),
    }
}

/// An optional NumericDate claim, as whole non-negative seconds.
fn seconds(payload: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, TokenError> {
    match payload.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 0.0 && f.is_finite())
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(TokenError::InvalidClaim {
                claim,
                reason: "not a non-negative number of seconds",
            }),
        Some(_) => Err(TokenError::InvalidClaim {
            claim,
            reason: "not a number of seconds",
        }),
    }
}
