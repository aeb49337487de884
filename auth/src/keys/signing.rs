//! One private signing key: generation, PKCS#8 loading, signing.
//!
//! aws-lc-rs generates keys and reads their public half; jsonwebtoken signs with them.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use jsonwebtoken::EncodingKey;

use super::{Algorithm, KeyMeta, VerifyingKey};
use crate::encoding::b64url_decode;
use crate::{Error, Result};

/// A private key that signs the gateway's tokens.
///
/// Its `Debug` shows the `kid`, algorithm and dates, never key material.
pub struct SigningKey {
    meta: KeyMeta,
    /// The PKCS#8 document, zeroed on drop by jsonwebtoken.
    encoding: EncodingKey,
    /// Ed25519: the 32-byte key; ES256: the 65-byte uncompressed point.
    public: Vec<u8>,
}

impl SigningKey {
    /// A fresh key created at `now` (unix seconds).
    pub fn generate(alg: Algorithm, now: u64) -> Result<Self> {
        Self::generate_pkcs8(alg, now).map(|(key, _)| key)
    }

    /// A fresh key and its PKCS#8 DER encoding, for writing to the keys directory.
    pub(crate) fn generate_pkcs8(alg: Algorithm, now: u64) -> Result<(Self, Vec<u8>)> {
        let rng = SystemRandom::new();
        let failed = |_| Error::Crypto("key generation failed");
        let pkcs8 = match alg {
            Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?,
            Algorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(failed)?
            }
        };
        let der = pkcs8.as_ref().to_vec();
        let key = Self::from_pkcs8(alg, &der, now, None)?;
        Ok((key, der))
    }

    /// Loads a key from PKCS#8 DER; its `kid` is computed from the public key.
    pub fn from_pkcs8(
        alg: Algorithm,
        der: &[u8],
        created_at: u64,
        retired_at: Option<u64>,
    ) -> Result<Self> {
        let bad = |_| {
            Error::Key(format!(
                "the private key is not a valid pkcs#8 {alg} key; regenerate the keys directory"
            ))
        };
        // Parsing here checks the key once, so signing with it later cannot meet a bad key.
        let (public, encoding) = match alg {
            Algorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(der).map_err(bad)?;
                (
                    pair.public_key().as_ref().to_vec(),
                    EncodingKey::from_ed_der(der),
                )
            }
            Algorithm::Es256 => {
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(bad)?;
                (
                    pair.public_key().as_ref().to_vec(),
                    EncodingKey::from_ec_der(der),
                )
            }
        };
        let kid = VerifyingKey::thumbprint(alg, &public)?;
        Ok(SigningKey {
            meta: KeyMeta {
                kid,
                alg,
                created_at,
                retired_at,
            },
            encoding,
            public,
        })
    }

    /// The key id: the RFC 7638 JWK thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.meta.kid
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.meta.alg
    }

    /// Identity and dates of this key (no key material).
    pub fn meta(&self) -> &KeyMeta {
        &self.meta
    }

    pub(crate) fn set_retired_at(&mut self, at: Option<u64>) {
        self.meta.retired_at = at;
    }

    /// The public half, for JWKS and verification.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::new(self.meta.kid.clone(), self.meta.alg, self.public.clone())
    }

    /// The key in jsonwebtoken's form, for [`jsonwebtoken::encode`].
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Signs `message` (a JWS signing input) and returns the raw signature. ES256
    /// signatures are the fixed 64-byte `r || s` form JWS requires.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = || Error::Crypto("signing failed");
        let signature = jsonwebtoken::crypto::sign(message, &self.encoding, self.meta.alg.jwt())
            .map_err(|_| failed())?;
        b64url_decode(&signature).ok_or_else(failed)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.meta.kid)
            .field("alg", &self.meta.alg)
            .field("created_at", &self.meta.created_at)
            .field("retired_at", &self.meta.retired_at)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_sign_and_verify() {
        for alg in [Algorithm::EdDsa, Algorithm::Es256] {
            let key = SigningKey::generate(alg, 1).unwrap();
            let sig = key.sign(b"hello").unwrap();
            assert_eq!(sig.len(), 64);
            let public = key.verifying_key();
            assert_eq!(public.kid(), key.kid());
            assert!(public.verify(b"hello", &sig));
            assert!(!public.verify(b"hellO", &sig));
        }
    }

    #[test]
    fn debug_redacts_the_private_key() {
        let (key, der) = SigningKey::generate_pkcs8(Algorithm::EdDsa, 1).unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.contains("<redacted>") && shown.contains(key.kid()),
            "{shown}"
        );
        let secret = crate::encoding::b64url(&der[16..48]);
        assert!(!shown.contains(&secret));
        assert!(!shown.contains(&crate::encoding::hex(&der[16..24])));
    }
}
