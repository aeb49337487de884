//! The keys directory: one current signing key plus retired verify-only keys.
//!
//! Layout of the directory (mode 0700 when created here):
//!
//! - `keyring.json`: which key is current, and each key's algorithm and dates (public);
//! - `<kid>.pem`: each private key, PKCS#8 PEM, mode 0600;
//! - `jwks.json`: the public keys, the content of `/.well-known/jwks.json`.

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

use super::{Algorithm, Jwks, SigningKey, VerifyingKey};
use crate::encoding::pem;
use crate::{files, Error, Result};

const MANIFEST: &str = "keyring.json";
const JWKS: &str = "jwks.json";

/// Identity and dates of one key; no key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// Signature algorithm.
    pub alg: Algorithm,
    /// When the key was generated (unix seconds).
    pub created_at: u64,
    /// When the key stopped signing (unix seconds); `None` for the current key. A retired
    /// key still verifies tokens until `retired_at + max token TTL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    current: String,
    keys: Vec<KeyMeta>,
}

/// The gateway's signing keys: the current one signs, all of them verify.
#[derive(Debug)]
pub struct KeyRing {
    current: SigningKey,
    retired: Vec<SigningKey>,
}

impl KeyRing {
    /// An in-memory keyring with one fresh key (tests, tools; nothing is written).
    pub fn ephemeral(alg: Algorithm, now: u64) -> Result<Self> {
        Ok(KeyRing {
            current: SigningKey::generate(alg, now)?,
            retired: Vec::new(),
        })
    }

    /// Creates the keys directory `dir` with one fresh key; refuses to overwrite a keyring.
    pub fn init(dir: &Path, alg: Algorithm, now: u64) -> Result<Self> {
        if dir.join(MANIFEST).exists() {
            return Err(Error::Key(format!(
                "{} already holds a keyring; use rotate to replace its signing key",
                dir.display()
            )));
        }
        files::create_dir(dir)?;
        let current = generate_into(dir, alg, now)?;
        let ring = KeyRing {
            current,
            retired: Vec::new(),
        };
        ring.save(dir)?;
        Ok(ring)
    }

    /// Loads the keyring written by [`KeyRing::init`] / [`KeyRing::rotate`].
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let manifest: Manifest = serde_json::from_slice(&files::read(&path)?).map_err(|_| {
            Error::Key(format!(
                "{} is not a keyring manifest; restore it or run init on a new directory",
                path.display()
            ))
        })?;
        let mut current = None;
        let mut retired = Vec::new();
        for meta in manifest.keys {
            let key = load_key(dir, &meta)?;
            if meta.kid == manifest.current {
                current = Some(key);
            } else {
                retired.push(key);
            }
        }
        let mut current = current.ok_or_else(|| {
            Error::Key(format!(
                "{} names no current key that it lists; restore it or rotate",
                path.display()
            ))
        })?;
        current.set_retired_at(None);
        Ok(KeyRing { current, retired })
    }

    /// Generates a new current key in `dir`; the previous current key is kept, verify-only,
    /// with `retired_at = now`.
    pub fn rotate(dir: &Path, alg: Algorithm, now: u64) -> Result<Self> {
        let mut ring = Self::load(dir)?;
        let new = generate_into(dir, alg, now)?;
        let mut old = std::mem::replace(&mut ring.current, new);
        old.set_retired_at(Some(now));
        ring.retired.insert(0, old);
        ring.save(dir)?;
        Ok(ring)
    }

    /// Drops retired keys whose tokens have all expired (`retired_at + max_token_ttl <= now`),
    /// deleting their files.
    pub fn prune(dir: &Path, now: u64, max_token_ttl: u64) -> Result<Self> {
        let mut ring = Self::load(dir)?;
        let (gone, kept): (Vec<_>, Vec<_>) = ring.retired.into_iter().partition(|k| {
            k.meta()
                .retired_at
                .is_some_and(|at| at.saturating_add(max_token_ttl) <= now)
        });
        ring.retired = kept;
        ring.save(dir)?;
        for key in gone {
            let path = dir.join(format!("{}.pem", key.kid()));
            std::fs::remove_file(&path).map_err(|e| files::io_error("remove", &path, e))?;
        }
        Ok(ring)
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// All keys, current first, then retired ones from newest to oldest.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(&self.retired)
    }

    /// The key with id `kid`.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys().find(|k| k.kid() == kid)
    }

    /// Public halves of all keys.
    pub fn verifying_keys(&self) -> Vec<VerifyingKey> {
        self.keys().map(SigningKey::verifying_key).collect()
    }

    /// The JWKS document of all keys (current and retired).
    pub fn jwks(&self) -> Jwks {
        Jwks::from_keys(&self.verifying_keys())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let manifest = Manifest {
            current: self.current.kid().to_owned(),
            keys: self.keys().map(|k| k.meta().clone()).collect(),
        };
        let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        files::write_public(&dir.join(JWKS), self.jwks().to_json().as_bytes())?;
        files::write_public(&dir.join(MANIFEST), &json)
    }
}

fn generate_into(dir: &Path, alg: Algorithm, now: u64) -> Result<SigningKey> {
    let (key, der) = SigningKey::generate_pkcs8(alg, now)?;
    let path = dir.join(format!("{}.pem", key.kid()));
    files::write_private(&path, pem("PRIVATE KEY", &der).as_bytes())?;
    Ok(key)
}

fn load_key(dir: &Path, meta: &KeyMeta) -> Result<SigningKey> {
    let kid_ok = !meta.kid.is_empty()
        && meta.kid.len() <= 128
        && meta
            .kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !kid_ok {
        return Err(Error::Key(
            "the keyring manifest has a malformed kid; restore keyring.json".to_owned(),
        ));
    }
    let path = dir.join(format!("{}.pem", meta.kid));
    let text = files::read_private(&path)?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(&text).map_err(|_| {
        Error::Key(format!(
            "{} is not a pkcs#8 pem private key; restore it from backup",
            path.display()
        ))
    })?;
    let key = SigningKey::from_pkcs8(
        meta.alg,
        der.secret_pkcs8_der(),
        meta.created_at,
        meta.retired_at,
    )?;
    if key.kid() != meta.kid {
        return Err(Error::Key(format!(
            "{} does not hold the key its name says; restore it from backup",
            path.display()
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn rotation_keeps_retired_keys_until_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let first = KeyRing::init(&dir, Algorithm::EdDsa, 100).unwrap();
        let kid1 = first.current().kid().to_owned();
        assert!(KeyRing::init(&dir, Algorithm::EdDsa, 100).is_err());

        let ring = KeyRing::rotate(&dir, Algorithm::Es256, 200).unwrap();
        assert_ne!(ring.current().kid(), kid1);
        assert_eq!(ring.current().algorithm(), Algorithm::Es256);
        assert_eq!(ring.get(&kid1).unwrap().meta().retired_at, Some(200));

        let loaded = KeyRing::load(&dir).unwrap();
        assert_eq!(loaded.current().kid(), ring.current().kid());
        assert_eq!(loaded.jwks(), ring.jwks());
        assert_eq!(loaded.jwks().keys.len(), 2);

        let kept = KeyRing::prune(&dir, 200 + 3599, 3600).unwrap();
        assert!(kept.get(&kid1).is_some());
        let pruned = KeyRing::prune(&dir, 200 + 3600, 3600).unwrap();
        assert!(pruned.get(&kid1).is_none());
        assert!(!dir.join(format!("{kid1}.pem")).exists());
        assert_eq!(KeyRing::load(&dir).unwrap().keys().count(), 1);
    }

    #[test]
    fn private_key_files_are_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = KeyRing::init(tmp.path(), Algorithm::EdDsa, 1).unwrap();
        let path = tmp.path().join(format!("{}.pem", ring.current().kid()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let jwks = std::fs::read_to_string(tmp.path().join(JWKS)).unwrap();
        assert_eq!(Jwks::from_json(jwks.as_bytes()).unwrap(), ring.jwks());
    }
}
