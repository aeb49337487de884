//! Public keys as JWKs (RFC 7517), JWKS documents, and RFC 7638 thumbprints.

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

use super::Algorithm;
use crate::encoding::{b64url, b64url_decode};
use crate::{Error, Result};

/// Largest JWKS document [`Jwks::from_json`] accepts.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A public key with its id; the algorithm it verifies is fixed by the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    /// Ed25519: the 32-byte key; ES256: the 65-byte uncompressed point `04 || x || y`.
    public: Vec<u8>,
}

impl VerifyingKey {
    pub(crate) fn new(kid: String, alg: Algorithm, public: Vec<u8>) -> Self {
        VerifyingKey { kid, alg, public }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The only algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        jsonwebtoken::crypto::verify(
            &b64url(signature),
            message,
            &self.decoding_key(),
            self.alg.jwt(),
        )
        .unwrap_or(false)
    }

    /// The key in jsonwebtoken's form. Its `from_*_der` constructors take the raw key its
    /// aws-lc-rs backend verifies with, as held here (not a DER structure).
    pub(crate) fn decoding_key(&self) -> DecodingKey {
        match self.alg {
            Algorithm::EdDsa => DecodingKey::from_ed_der(&self.public),
            Algorithm::Es256 => DecodingKey::from_ec_der(&self.public),
        }
    }

    /// The RFC 7638 thumbprint (base64url SHA-256 of the canonical JWK) of a public key.
    pub fn thumbprint(alg: Algorithm, public: &[u8]) -> Result<String> {
        // Members in lexicographic order, no whitespace, as RFC 7638 section 3 requires.
        let canonical = match alg {
            Algorithm::EdDsa => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64url(public)
            ),
            Algorithm::Es256 => {
                let (x, y) = split_point(public)?;
                format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    b64url(x),
                    b64url(y)
                )
            }
        };
        Ok(b64url(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
        ))
    }

    /// This key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn to_jwk(&self) -> Jwk {
        let (kty, crv, x, y) = match self.alg {
            Algorithm::EdDsa => ("OKP", "Ed25519", b64url(&self.public), None),
            Algorithm::Es256 => {
                // Keys are only built from valid points, so the split cannot fail here.
                let (x, y) = split_point(&self.public).unwrap_or((&[], &[]));
                ("EC", "P-256", b64url(x), Some(b64url(y)))
            }
        };
        Jwk {
            kty: kty.to_owned(),
            crv: Some(crv.to_owned()),
            x: Some(x),
            y,
            kid: Some(self.kid.clone()),
            alg: Some(self.alg.jose_name().to_owned()),
            key_use: Some("sig".to_owned()),
        }
    }

    /// The verifying key a JWK describes. The algorithm follows from `kty`/`crv`; a JWK
    /// whose `alg` or `use` says otherwise, or that has no `kid`, is refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self> {
        let bad = |reason: &str| Error::Jwks(format!("unusable jwk: {reason}"));
        let kid = jwk
            .kid
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("it has no kid"))?;
        if kid.len() > 128 {
            return Err(bad("its kid is longer than 128 characters"));
        }
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(bad("its use is not sig"));
        }
        let alg = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => Algorithm::EdDsa,
            ("EC", Some("P-256")) => Algorithm::Es256,
            _ => return Err(bad("only OKP/Ed25519 and EC/P-256 keys are supported")),
        };
        if jwk.alg.as_deref().is_some_and(|a| a != alg.jose_name()) {
            return Err(bad("its alg does not match its key type"));
        }
        let coord = |c: &Option<String>, name| {
            c.as_deref()
                .and_then(b64url_decode)
                .filter(|v| v.len() == 32)
                .ok_or_else(|| bad(name))
        };
        let public = match alg {
            Algorithm::EdDsa => coord(&jwk.x, "x is not a base64url 32-byte value")?,
            Algorithm::Es256 => {
                let mut point = vec![4u8];
                point.extend(coord(&jwk.x, "x is not a base64url 32-byte value")?);
                point.extend(coord(&jwk.y, "y is not a base64url 32-byte value")?);
                point
            }
        };
        Ok(VerifyingKey { kid, alg, public })
    }
}

fn split_point(public: &[u8]) -> Result<(&[u8], &[u8])> {
    match public {
        [4, rest @ ..] if rest.len() == 64 => Ok(rest.split_at(32)),
        _ => Err(Error::Key(
            "a p-256 public key must be an uncompressed point".to_owned(),
        )),
    }
}

/// One JSON Web Key (public members only; private members of a peer's JWK are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP` or `EC`.
    pub kty: String,
    /// Curve: `Ed25519` or `P-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public key (OKP) or x coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// y coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm: `EdDSA` or `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use: `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

/// A JWKS document: what `/.well-known/jwks.json` serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The document for `keys`.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a VerifyingKey>) -> Self {
        Jwks {
            keys: keys.into_iter().map(VerifyingKey::to_jwk).collect(),
        }
    }

    /// Parses a peer's JWKS document.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(Error::Jwks(format!(
                "the jwks document is larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        serde_json::from_slice(json).map_err(|e| {
            Error::Jwks(format!(
                "not a jwks document ({}); expected {{\"keys\": [...]}}",
                e.classify_str()
            ))
        })
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The usable verifying keys: keys of other types or without a `kid` are skipped
    /// (use [`VerifyingKey::from_jwk`] on each to learn why).
    pub fn verifying_keys(&self) -> Vec<VerifyingKey> {
        self.keys
            .iter()
            .filter_map(|k| VerifyingKey::from_jwk(k).ok())
            .collect()
    }
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "invalid json",
            serde_json::error::Category::Data => "wrong structure",
            serde_json::error::Category::Eof => "truncated json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    #[test]
    fn rfc7638_thumbprint_of_the_rfc8037_example_key() {
        // RFC 8037 appendix A.3: thumbprint of the Ed25519 example public key.
        let x = b64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        assert_eq!(
            VerifyingKey::thumbprint(Algorithm::EdDsa, &x).unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn jwks_round_trips_both_algorithms() {
        let keys: Vec<_> = [Algorithm::EdDsa, Algorithm::Es256]
            .into_iter()
            .map(|a| SigningKey::generate(a, 0).unwrap().verifying_key())
            .collect();
        let json = Jwks::from_keys(&keys).to_json();
        assert!(
            json.contains(r#""use":"sig""#) && !json.contains(r#""d""#),
            "{json}"
        );
        let parsed = Jwks::from_json(json.as_bytes()).unwrap();
        assert_eq!(parsed.verifying_keys(), keys);
    }

    #[test]
    fn unusable_jwks_are_skipped_or_refused() {
        let rsa = r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","alg":"HS256","kid":"h","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert!(Jwks::from_json(rsa.as_bytes())
            .unwrap()
            .verifying_keys()
            .is_empty());
        let err = Jwks::from_json(b"[1,2]").unwrap_err().to_string();
        assert!(err.contains("expected {\"keys\""), "{err}");
    }
}
