//! rustls configurations for gateways and their clients, on the aws-lc-rs provider, with ALPN
//! `h2` (gRPC).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::pem::{load_certs, load_key};
use crate::{Error, Result};

/// The aws-lc-rs crypto provider every configuration here uses (no process-wide default is
/// installed, so this crate never conflicts with another provider choice), with the
/// AES-128-GCM suites first.
///
/// AES-128-GCM is the suite every TLS 1.3 peer must support, and on CPUs with AES
/// instructions it costs about a fifth less per byte than AES-256-GCM (10 rounds against
/// 14): streams of alerts are bulk data, so that is most of what TLS adds to them. Servers
/// made here choose by this order ([`ServerConfig::ignore_client_order`]); the other suites
/// stay available.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: the provider's order otherwise.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// A server configuration presenting `chain` (leaf first) and `key`. With `client_ca`,
/// clients must present a certificate signed by one of those CAs (mutual TLS).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<&[CertificateDer<'static>]>,
) -> Result<ServerConfig> {
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let builder = match client_ca {
        Some(cas) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(cas)?), provider)
                    .build()
                    .map_err(|e| Error::Tls(format!("cannot build the client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(format!("the certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.ignore_client_order = true;
    Ok(config)
}

/// [`server_config`] from PEM files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig> {
    let cas = client_ca.map(load_certs).transpose()?;
    server_config(load_certs(cert)?, load_key(key)?, cas.as_deref())
}

/// A client configuration trusting `ca` and, for mutual TLS, presenting `identity`
/// (certificate chain and key).
pub fn client_config(
    ca: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            Error::Tls(format!(
                "the client certificate and key do not fit together: {e}"
            ))
        })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn roots(cas: &[CertificateDer<'static>]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca.clone())
            .map_err(|e| Error::Tls(format!("unusable ca certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls(
            "no ca certificate given; pass the mesh ca.pem".to_owned(),
        ));
    }
    Ok(roots)
}

fn tls_error(e: rustls::Error) -> Error {
    Error::Tls(e.to_string())
}
