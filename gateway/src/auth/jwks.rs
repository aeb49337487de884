//! Fetching a trusted peer's JWKS over HTTPS (HTTP/1.1 over rustls with the aws-lc-rs provider),
//! trusting only the mesh CA. Responses are bounded in size and time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alertmesh_auth::keys::MAX_JWKS_BYTES;
use alertmesh_auth::Jwks;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// How long one fetch (connect, handshake, request, body) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches one JWKS URL.
pub(crate) struct Fetcher {
    uri: Uri,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("uri", &self.uri).finish()
    }
}

impl Fetcher {
    /// A fetcher for `url` (https) trusting the CA certificates in the PEM file `ca`.
    pub(crate) fn new(url: &str, ca: &Path) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid jwks url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("jwks url {url:?} is not https"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("jwks url {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| format!("jwks url host {host:?} is not a dns name or ip address"))?;
        let cas = alertmesh_auth::tls::load_certs(ca).map_err(|e| e.to_string())?;
        let mut config =
            alertmesh_auth::tls::client_config(&cas, None).map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Fetcher {
            port: uri.port_u16().unwrap_or(443),
            uri,
            host,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// GETs the JWKS document and parses it.
    pub(crate) async fn fetch(&self) -> Result<Jwks, String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.fetch_inner())
            .await
            .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
    }

    async fn fetch_inner(&self) -> Result<Jwks, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("tls handshake failed: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http handshake failed: {e}"))?;
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let req = hyper::Request::get(path)
            .header(
                hyper::header::HOST,
                self.uri.authority().map_or("", |a| a.as_str()),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("answered {}", resp.status()));
            }
            Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("cannot read the body: {e}"))
        };
        // The connection is driven here, beside the exchange, rather than on a task of its
        // own; once it ends, the exchange has what it will get (the whole answer or an
        // error).
        let mut exchange = std::pin::pin!(exchange);
        let mut conn = std::pin::pin!(conn);
        let body = tokio::select! {
            got = &mut exchange => got,
            _ = &mut conn => exchange.await,
        }?
        .to_bytes();
        Jwks::from_json(&body).map_err(|e| e.to_string())
    }
}
