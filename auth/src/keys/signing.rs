//! One private signing key: generation, PKCS#8 loading, signing.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};

use super::{Algorithm, KeyMeta, VerifyingKey};
use crate::{Error, Result};

/// A private key that signs the gateway's tokens.
///
/// Its `Debug` shows the `kid`, algorithm and dates, never key material.
pub struct SigningKey {
    meta: KeyMeta,
    pair: Pair,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
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
        let pair = match alg {
            Algorithm::EdDsa => Pair::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(bad)?),
            Algorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(bad)?,
            ),
        };
        let public = match &pair {
            Pair::Ed25519(p) => p.public_key().as_ref().to_vec(),
            Pair::Es256(p) => p.public_key().as_ref().to_vec(),
        };
        let kid = VerifyingKey::thumbprint(alg, &public)?;
        Ok(SigningKey {
            meta: KeyMeta {
                kid,
                alg,
                created_at,
                retired_at,
            },
            pair,
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
        let public = match &self.pair {
            Pair::Ed25519(p) => p.public_key().as_ref().to_vec(),
            Pair::Es256(p) => p.public_key().as_ref().to_vec(),
        };
        VerifyingKey::new(self.meta.kid.clone(), self.meta.alg, public)
    }

    /// Signs `message` (a JWS signing input). ES256 signatures are the fixed 64-byte
    /// `r || s` form JWS requires.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.pair {
            Pair::Ed25519(p) => Ok(p.sign(message).as_ref().to_vec()),
            Pair::Es256(p) => p
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Crypto("signing failed")),
        }
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
