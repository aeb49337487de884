//! The plain settings of a connection: [`Options`] and the bearer [`Token`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Result};

/// How to reach one gateway and prove who the caller is. Plain data: the command line,
/// a mirror's config and tests fill it in their own way, and [`crate::Gateway::new`]
/// checks it against the URL and loads the files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sent as `authorization: Bearer <token>` on every call to the gateway it is for.
    pub token: Option<Token>,
    /// CA certificate (PEM) that signs the gateway's certificate, for `https://` URLs.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for gateways that require mutual TLS; needs `key`.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            ca: None,
            cert: None,
            key: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl Options {
    /// Whether any TLS file is set (they need an `https://` URL).
    pub fn has_tls_files(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// A bearer token (a JWT as printed by `alertmesh creds issue`). Its `Debug` shows no
/// content, and it has no `Display`: a token is never formatted into a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token given as text; surrounding whitespace is dropped. Refused when empty or
    /// when it holds characters an HTTP header cannot carry.
    pub fn new(text: &str) -> Result<Token> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Token(
                "the token is empty; pass the output of `alertmesh creds issue`",
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Token(
                "the token has characters a header cannot carry",
            ));
        }
        Ok(Token(text.to_owned()))
    }

    /// The token held in a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Token> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::TokenFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Token::new(&text)
    }

    /// The token held in an environment variable.
    pub fn from_env(var: &str) -> Result<Token> {
        let text = std::env::var(var).map_err(|_| Error::TokenEnv {
            var: var.to_owned(),
        })?;
        Token::new(&text)
    }

    /// The token's text, to put in a header or a file. Never log it.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The gateways the token is for: its JWT `aud` claim, read without verifying the
    /// token (only to choose where it may be sent). `None` when the token is not a JWT
    /// or names no audience.
    pub fn audience(&self) -> Option<Vec<String>> {
        use base64::Engine as _;
        let payload = self.0.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let aud = match &claims["aud"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => return None,
        };
        (!aud.is_empty()).then_some(aud)
    }

    /// Whether the token may be sent to the gateway named `name`: its `aud` names it, or
    /// it has no readable `aud` (then only the URL it was configured for decides).
    pub fn is_for(&self, name: &str) -> bool {
        self.audience()
            .is_none_or(|aud| aud.iter().any(|a| a == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.c2ln",
            enc(serde_json::json!({"alg": "EdDSA"})),
            enc(claims)
        )
    }

    #[test]
    fn audience_is_read_from_the_payload_as_string_or_list() {
        let one = Token::new(&jwt(serde_json::json!({"aud": "lasair"}))).unwrap();
        assert_eq!(one.audience(), Some(vec!["lasair".to_owned()]));
        assert!(one.is_for("lasair") && !one.is_for("lab"));
        let two = Token::new(&jwt(serde_json::json!({"aud": ["fink", "lab"]}))).unwrap();
        assert!(two.is_for("lab") && two.is_for("fink") && !two.is_for("lasair"));
        for opaque in [
            "not-a-jwt",
            "a.!!!.c",
            &jwt(serde_json::json!({"sub": "x"})),
        ] {
            let t = Token::new(opaque).unwrap();
            assert_eq!(t.audience(), None, "{opaque}");
            assert!(t.is_for("anything"));
        }
    }

    #[test]
    fn token_errors_and_debug_never_show_the_token() {
        let t = Token::new("  s3cret.token.value\n").unwrap();
        assert_eq!(t.secret(), "s3cret.token.value");
        assert!(!format!("{t:?}").contains("s3cret"));
        let e = Token::new("bad token\u{7}").unwrap_err().to_string();
        assert!(!e.contains("bad token"), "{e}");
        assert!(matches!(Token::new(" \n"), Err(Error::Token(_))));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.jwt");
        let e = Token::from_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.jwt"), "{e}");
        let e = Token::from_env("ALERTMESH_CLIENT_TEST_UNSET_VAR").unwrap_err();
        assert!(e.to_string().contains("ALERTMESH_CLIENT_TEST_UNSET_VAR"));
    }
}
