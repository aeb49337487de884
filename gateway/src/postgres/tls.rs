//! TLS for PostgreSQL connections: tokio-postgres's `MakeTlsConnect` / `TlsConnect` over
//! tokio-rustls, with SCRAM channel binding (`tls-server-end-point`).
//!
//! Written here rather than taken from an adapter crate: the existing ones bring a second
//! crypto library (ring) for the channel-binding digest, and the traits are small.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_rustls::TlsConnector;

use crate::config::{DatabaseTls, TlsMode};

/// The rustls configuration for `tls` (not `disable`): the roots to verify against (or
/// none, for `require`), and the client certificate if any. Errors name the key.
pub(crate) fn client_config(tls: &DatabaseTls) -> Result<ClientConfig, String> {
    let provider = alertmesh_auth::tls::crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match tls.mode {
        TlsMode::VerifyFull => builder.with_root_certificates(roots(tls)?),
        TlsMode::Require | TlsMode::Disable => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
    };
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain =
                alertmesh_auth::tls::load_certs(cert).map_err(|e| format!("cert_file: {e}"))?;
            let key = alertmesh_auth::tls::load_key(key).map_err(|e| format!("key_file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("cert_file and key_file do not fit together: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    // Required by PostgreSQL 17 for direct TLS (`sslnegotiation=direct`), harmless before.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn roots(tls: &DatabaseTls) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for cert in alertmesh_auth::tls::load_certs(ca).map_err(|e| format!("ca_file: {e}"))? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: unusable certificate: {e}", ca.display()))?;
            }
        }
        None => {
            // Unreadable entries are skipped, as libpq does with a system bundle.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(
            "no CA certificate to verify the server with: the platform has none; set ca_file"
                .to_owned(),
        );
    }
    Ok(roots)
}

/// `tls = "require"`: any certificate is accepted (the connection is encrypted, the server
/// not authenticated), but the handshake signatures are still checked, so the session keys
/// belong to whoever holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Makes TLS connections to the hosts of one database.
#[derive(Debug, Clone)]
pub(crate) struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    pub(crate) fn new(config: ClientConfig) -> Self {
        MakeRustls {
            config: Arc::new(config),
        }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{:?} is not a host name or address to check the certificate against",
                    alertmesh_alert::echo::line(domain, 100)
                ),
            )
        })?;
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            name,
        })
    }
}

/// One TLS handshake, with the server name to verify.
#[derive(Debug)]
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// An established TLS connection to PostgreSQL.
#[derive(Debug)]
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| server_end_point(leaf))
        {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929 `tls-server-end-point`: the hash of the server's certificate, with the hash
/// function of its signature algorithm (SHA-256 for MD5 and SHA-1). `None` for algorithms
/// without one (Ed25519, RSA-PSS), for which PostgreSQL offers no channel binding either.
fn server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::digest;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let algorithm = match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        // md5, sha1, sha256 with RSA; ecdsa with sha1, sha256.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => &digest::SHA256,
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &digest::SHA384,
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(algorithm, der).as_ref().to_vec())
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_hashes_the_certificate_with_its_signature_hash() {
        let der = mesh_ca_cert();
        let hash = server_end_point(&der).expect("an ECDSA P-256 SHA-256 certificate");
        assert_eq!(
            hash,
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der).as_ref()
        );
        assert_eq!(server_end_point(b"not a certificate"), None);
    }

    #[test]
    fn client_configs_name_the_key_whose_file_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let paths = alertmesh_auth::tls::creds_init(dir.path(), "db", 1_700_000_000).unwrap();
        let tls =
            |mode, ca: Option<&std::path::Path>, cert: Option<&std::path::Path>| DatabaseTls {
                mode,
                ca_file: ca.map(Into::into),
                cert_file: cert.map(Into::into),
                key_file: cert.map(|_| paths.key.clone()),
            };
        let c = client_config(&tls(TlsMode::VerifyFull, Some(&paths.ca_cert), None)).unwrap();
        assert_eq!(c.alpn_protocols, [b"postgresql".to_vec()]);
        assert!(client_config(&tls(TlsMode::Require, None, Some(&paths.cert))).is_ok());
        let e = client_config(&tls(TlsMode::VerifyFull, Some(&paths.key), None)).unwrap_err();
        assert!(
            e.starts_with("ca_file: ") && e.contains("no CERTIFICATE block"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = client_config(&tls(TlsMode::VerifyFull, Some(&missing), None)).unwrap_err();
        assert!(
            e.starts_with("ca_file: ") && e.contains("missing.pem"),
            "{e}"
        );
        // A certificate with another key.
        let other = alertmesh_auth::tls::creds_issue(dir.path(), "other", 1_700_000_000).unwrap();
        let e = client_config(&tls(TlsMode::Require, None, Some(&other.cert))).unwrap_err();
        assert!(
            e.starts_with("cert_file and key_file do not fit together"),
            "{e}"
        );
    }

    /// A self-signed ECDSA P-256 certificate (what `alertmesh creds init` makes).
    fn mesh_ca_cert() -> Vec<u8> {
        let ca = alertmesh_auth::tls::MeshCa::generate("db", 1_700_000_000).unwrap();
        alertmesh_auth::tls::certs_from_pem(ca.pem().cert_pem.as_bytes()).unwrap()[0].to_vec()
    }
}
