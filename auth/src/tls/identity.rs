//! The identity a peer certificate asserts: its first DNS subject alternative name, or
//! else its subject common name.

use x509_parser::extensions::GeneralName;

use crate::{Error, Result};

/// The identity in a DER certificate (as rustls hands out peer certificates).
pub fn peer_identity(der: &[u8]) -> Result<String> {
    let bad = |what: &str| Error::Certificate(format!("the peer certificate {what}"));
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| bad("is not a valid x.509 certificate"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| bad("has a malformed subject alternative name extension"))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                return Ok((*dns).to_owned());
            }
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .map(str::to_owned);
    common_name.ok_or_else(|| bad("names no dns subject alternative name and no common name"))
}

/// Checks that the peer certificate's identity is `sub`, the subject of its token.
pub fn check_peer_identity(der: &[u8], sub: &str) -> Result<()> {
    let identity = peer_identity(der)?;
    if identity == sub {
        Ok(())
    } else {
        Err(Error::IdentityMismatch {
            certificate: crate::token::shown(&identity),
            token: crate::token::shown(sub),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{certs_from_pem, MeshCa};

    fn der_of(pem: &str) -> Vec<u8> {
        certs_from_pem(pem.as_bytes()).unwrap()[0].to_vec()
    }

    #[test]
    fn identity_is_the_first_dns_san() {
        let ca = MeshCa::generate("dev", 1_700_000_000).unwrap();
        let leaf = ca.issue("lasair", 1_700_000_000).unwrap();
        let der = der_of(&leaf.cert_pem);
        assert_eq!(peer_identity(&der).unwrap(), "lasair");
        assert!(check_peer_identity(&der, "lasair").is_ok());
        let err = check_peer_identity(&der, "fink").unwrap_err();
        assert!(matches!(err, Error::IdentityMismatch { .. }), "{err}");
        assert!(!format!("{ca:?}{leaf:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn identity_falls_back_to_the_common_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["10.0.0.1".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alerce");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(peer_identity(cert.der()).unwrap(), "alerce");
        assert!(peer_identity(b"not a certificate").is_err());
    }
}
