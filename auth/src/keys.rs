//! Gateway signing keys.
//!
//! - [`Algorithm`]: the asymmetric JWS algorithms alertmesh accepts (EdDSA, ES256).
//! - [`SigningKey`]: one private key with its `kid` (RFC 7638 thumbprint); its `Debug`
//!   never shows key material.
//! - [`VerifyingKey`], [`Jwk`], [`Jwks`]: public keys and their JWKS document.
//! - [`KeyRing`]: the keys directory, with one current key and retired verify-only keys
//!   (rotation).

mod jwk;
mod keyring;
mod signing;

use std::fmt;
use std::str::FromStr;

pub use jwk::{Jwk, Jwks, VerifyingKey, MAX_JWKS_BYTES};
pub use keyring::{KeyMeta, KeyRing};
pub use signing::SigningKey;

use crate::Error;

/// A JWS signature algorithm. Only asymmetric algorithms exist here: a verifier holding
/// only public keys can never be made to accept a token forged with a shared secret.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Algorithm {
    /// Ed25519 signatures (`EdDSA`), the default.
    #[default]
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (`ES256`), for peers that need NIST curves.
    #[serde(rename = "ES256")]
    Es256,
}

impl Algorithm {
    /// The JOSE name, as in a JWS header's `alg`.
    pub fn jose_name(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
        }
    }

    /// The same algorithm in jsonwebtoken's terms.
    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }

    /// The algorithm alertmesh accepts for jsonwebtoken's `alg`, if any.
    pub(crate) fn from_jwt(alg: jsonwebtoken::Algorithm) -> Option<Self> {
        match alg {
            jsonwebtoken::Algorithm::EdDSA => Some(Algorithm::EdDsa),
            jsonwebtoken::Algorithm::ES256 => Some(Algorithm::Es256),
            _ => None,
        }
    }

    /// The algorithm with JOSE name `name`, if it is one alertmesh accepts.
    pub fn from_jose_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Algorithm::EdDsa),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

/// Parses `eddsa`/`ed25519` or `es256`/`p256`, case-insensitively (for the CLI).
impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" | "ed25519" => Ok(Algorithm::EdDsa),
            "es256" | "p256" | "p-256" => Ok(Algorithm::Es256),
            _ => Err(Error::Key(format!(
                "unknown key algorithm {:?}; use ed25519 (default) or es256",
                s.chars().take(32).collect::<String>()
            ))),
        }
    }
}
