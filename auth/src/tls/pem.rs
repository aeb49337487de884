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

fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Certificate(m) => Error::Certificate(format!("{}: {m}", path.display())),
        other => other,
    }
}
