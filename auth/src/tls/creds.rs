//! Development mesh credentials (`alertmesh creds init`): a mesh CA and the gateway and
//! client certificates it signs, written as PEM files (private keys mode 0600).
//!
//! Certificates use ECDSA P-256 keys. A leaf certificate names its holder in the common
//! name and as the first DNS subject alternative name, followed by `localhost` and
//! `127.0.0.1` so a development mesh on one host verifies; it is valid for both server
//! and client authentication.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{files, Error, Result};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CA_VALIDITY: u64 = 10 * 365 * 86_400;
const LEAF_VALIDITY: u64 = 825 * 86_400;

/// A certificate and its private key, as PEM. `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedPem {
    /// The certificate, PEM.
    pub cert_pem: String,
    key_pem: String,
}

impl CertifiedPem {
    /// The private key, PKCS#8 PEM. Keep it out of logs.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for CertifiedPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The certificate authority of a development mesh.
pub struct MeshCa {
    pem: CertifiedPem,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshCa").field("pem", &self.pem).finish()
    }
}

impl MeshCa {
    /// A new CA for mesh `mesh`, valid from an hour before `now` for ten years.
    pub fn generate(mesh: &str, now: u64) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("alertmesh {mesh} mesh ca"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, now, CA_VALIDITY)?;
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        Ok(MeshCa {
            pem: CertifiedPem {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and private key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| Error::Certificate("the ca key is not a pem private key".to_owned()))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|_| {
            Error::Certificate("the ca certificate is not a pem x.509 certificate".to_owned())
        })?;
        let key_pem = issuer.key().serialize_pem();
        Ok(MeshCa {
            pem: CertifiedPem {
                cert_pem: cert_pem.to_owned(),
                key_pem,
            },
            issuer,
        })
    }

    /// The CA written by [`creds_init`] into `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let cert = files::read(&dir.join(CA_CERT))?;
        let key = files::read_private(&dir.join(CA_KEY))?;
        Self::from_pem(
            &String::from_utf8_lossy(&cert),
            &String::from_utf8_lossy(&key),
        )
    }

    /// The CA certificate and key.
    pub fn pem(&self) -> &CertifiedPem {
        &self.pem
    }

    /// A certificate for `holder` (a gateway or client name), with SANs `holder`,
    /// `localhost` and `127.0.0.1`, valid from an hour before `now` for 825 days.
    pub fn issue(&self, holder: &str, now: u64) -> Result<CertifiedPem> {
        check_name(holder)?;
        let mut sans = vec![holder.to_owned()];
        for extra in ["localhost", "127.0.0.1"] {
            if extra != holder {
                sans.push(extra.to_owned());
            }
        }
        let mut params = CertificateParams::new(sans).map_err(rcgen_error)?;
        params.distinguished_name = name(holder);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, LEAF_VALIDITY)?;
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(CertifiedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Where [`creds_init`] and [`creds_issue`] wrote their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredsPaths {
    /// The mesh CA certificate (`ca.pem`).
    pub ca_cert: PathBuf,
    /// The holder's certificate (`<name>.pem`).
    pub cert: PathBuf,
    /// The holder's private key (`<name>.key`, mode 0600).
    pub key: PathBuf,
}

/// Creates a development mesh in `dir`: `ca.pem`, `ca.key` and a certificate for gateway
/// `gateway` (`<gateway>.pem`, `<gateway>.key`). Refuses to replace an existing CA.
pub fn creds_init(dir: &Path, gateway: &str, now: u64) -> Result<CredsPaths> {
    check_name(gateway)?;
    if dir.join(CA_KEY).exists() {
        return Err(Error::Certificate(format!(
            "{} already holds a mesh ca; use creds issue to add a certificate",
            dir.display()
        )));
    }
    files::create_dir(dir)?;
    let ca = MeshCa::generate(gateway, now)?;
    files::write_private(&dir.join(CA_KEY), ca.pem.key_pem.as_bytes())?;
    files::write_public(&dir.join(CA_CERT), ca.pem.cert_pem.as_bytes())?;
    write_leaf(dir, &ca, gateway, now)
}

/// Signs a certificate for `holder` (another gateway, or a client) with the mesh CA in `dir`.
pub fn creds_issue(dir: &Path, holder: &str, now: u64) -> Result<CredsPaths> {
    check_name(holder)?;
    write_leaf(dir, &MeshCa::load(dir)?, holder, now)
}

fn write_leaf(dir: &Path, ca: &MeshCa, holder: &str, now: u64) -> Result<CredsPaths> {
    let leaf = ca.issue(holder, now)?;
    let paths = CredsPaths {
        ca_cert: dir.join(CA_CERT),
        cert: dir.join(format!("{holder}.pem")),
        key: dir.join(format!("{holder}.key")),
    };
    files::write_private(&paths.key, leaf.key_pem.as_bytes())?;
    files::write_public(&paths.cert, leaf.cert_pem.as_bytes())?;
    Ok(paths)
}

/// Names become file names and DNS names: letters, digits, `.`, `-`, `_`, not leading `.`.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::Certificate(format!(
            "{:?} is not a usable certificate name; use letters, digits, '.', '-' and '_'",
            crate::token::shown(name)
        )))
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "alertmesh");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, now: u64, secs: u64) -> Result<()> {
    let at = |t: u64| {
        i64::try_from(t)
            .ok()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or_else(|| {
                Error::Certificate("the certificate validity is out of range".to_owned())
            })
    };
    params.not_before = at(now.saturating_sub(3600))?;
    params.not_after = at(now.saturating_add(secs))?;
    Ok(())
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::Certificate(format!("cannot create the certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn creds_init_writes_private_keys_0600_and_refuses_to_replace_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        let paths = creds_init(&dir, "lasair", 1_700_000_000).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
        assert_eq!(mode(&paths.cert), 0o644);
        assert!(creds_init(&dir, "lasair", 1_700_000_000).is_err());

        let fink = creds_issue(&dir, "fink", 1_700_000_000).unwrap();
        let der = crate::tls::load_certs(&fink.cert).unwrap();
        assert_eq!(crate::tls::peer_identity(&der[0]).unwrap(), "fink");
        assert!(crate::tls::load_key(&fink.key).is_ok());
        assert!(creds_issue(&dir, "../evil", 1_700_000_000).is_err());
    }
}
