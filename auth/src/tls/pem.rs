//! PEM certificates and private keys, for rustls (DER types) or tonic (PEM text as is).

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{files, Error, Result};

/// All certificates in PEM `text`, in order; an input with none is an error.
pub fn certs_from_pem(text: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::Certificate("the pem certificate text is malformed".to_owned()))?;
    if certs.is_empty() {
        return Err(Error::Certificate(
            "no CERTIFICATE block found in the pem text".to_owned(),
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in PEM `text`.
pub fn key_from_pem(text: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(text).map_err(|_| {
        Error::Certificate(
            "no PRIVATE KEY block found in the pem text (or it is malformed)".to_owned(),
        )
    })
}

/// The certificates in the PEM file at `path`.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    certs_from_pem(&files::read(path)?).map_err(|e| in_file(e, path))
}

/// The private key in the PEM file at `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    key_from_pem(&files::read(path)?).map_err(|e| in_file(e, path))
}

/// The raw PEM of a certificate file and a key file, checked to parse, for APIs that take
/// PEM text such as tonic's `Identity::from_pem(cert, key)`.
pub fn load_pem_identity(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let cert_pem = files::read(cert)?;
    certs_from_pem(&cert_pem).map_err(|e| in_file(e, cert))?;
    let key_pem = files::read(key)?;
    key_from_pem(&key_pem).map_err(|e| in_file(e, key))?;
    Ok((cert_pem, key_pem))
}

/// The raw PEM of a CA certificate file, checked to parse, for APIs that take PEM text
/// such as tonic's `Certificate::from_pem(ca)`.
pub fn load_pem_certs(path: &Path) -> Result<Vec<u8>> {
    let pem = files::read(path)?;
    certs_from_pem(&pem).map_err(|e| in_file(e, path))?;
    Ok(pem)
}

fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Certificate(m) => Error::Certificate(format!("{}: {m}", path.display())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_load_for_rustls_and_as_raw_text() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = crate::tls::creds_init(tmp.path(), "lasair", 1_700_000_000).unwrap();
        let (cert, key) = load_pem_identity(&paths.cert, &paths.key).unwrap();
        assert!(cert.starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert!(key.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        assert!(load_pem_certs(&paths.ca_cert).is_ok());
        let err = load_pem_certs(&paths.key).unwrap_err().to_string();
        assert!(err.contains("lasair.key: no CERTIFICATE block"), "{err}");
        assert!(!err.contains("PRIVATE KEY-----"));
        let err = key_from_pem(b"garbage").unwrap_err().to_string();
        assert!(err.starts_with("no PRIVATE KEY block"), "{err}");
    }
}
