//! A client of a Confluent-compatible schema registry: `GET /schemas/ids/{id}` over
//! HTTP/1.1 (rustls for https), bounded in size and time. Credentials (basic or bearer)
//! go to the configured registry only: redirects are errors, never followed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::{StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::config::RegistrySource;

/// Largest schema answer read (LSST 11.0 is ~40 KB of JSON).
pub(crate) const MAX_ANSWER_BYTES: usize = 1 << 20;

/// How one lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// The registry does not know the id (404, or Confluent error 40403).
    #[error("the registry does not know schema id {0}")]
    NotFound(u32),
    /// No usable answer: unreachable, timed out, refused, a redirect, an error status.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// An answer that is not a registry's schema JSON.
    #[error("registry answered garbage: {0}")]
    Garbage(String),
}

/// Where a source's schema ids are looked up: a registry over HTTP, or a source
/// gateway's `GetSchema`.
#[derive(Debug)]
pub(crate) enum RegistryClient {
    Http(HttpRegistry),
    Peer(Box<super::peer::PeerRegistry>),
}

impl RegistryClient {
    /// The registry's base URL, or the source gateway's URL (no secret in either).
    pub(crate) fn url(&self) -> &str {
        match self {
            RegistryClient::Http(h) => &h.url,
            RegistryClient::Peer(p) => p.url(),
        }
    }

    /// The schema text registered under `id`.
    pub(crate) async fn schema(&self, id: u32) -> Result<String, FetchError> {
        match self {
            RegistryClient::Http(h) => h.schema(id).await,
            RegistryClient::Peer(p) => p.schema(id).await,
        }
    }
}

/// One HTTP registry: where it is and how to authenticate.
pub(crate) struct HttpRegistry {
    url: String,
    host: String,
    port: u16,
    /// The base path, without a trailing slash (`""` at the root).
    prefix: String,
    authority: String,
    tls: Option<(ServerName<'static>, TlsConnector)>,
    /// The `authorization` header value; never logged.
    authorization: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRegistry")
            .field("url", &self.url)
            .field("authenticated", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpRegistry {
    /// A client for `source`; its credential, token and CA files are read now.
    pub(crate) fn new(source: &RegistrySource, timeout: Duration) -> Result<Self, String> {
        let url = &source.url;
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid schema registry url {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("schema registry url {url:?} is not http(s)")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("schema registry url {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match (https, &source.ca) {
            (false, _) => None,
            (true, None) => {
                return Err(format!(
                    "schema registry {url:?} is https: set schema_registry_ca"
                ))
            }
            (true, Some(ca)) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| format!("registry host {host:?} is not a dns name or ip"))?;
                let cas = alertmesh_auth::tls::load_certs(ca).map_err(|e| e.to_string())?;
                let mut config =
                    alertmesh_auth::tls::client_config(&cas, None).map_err(|e| e.to_string())?;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some((name, TlsConnector::from(Arc::new(config))))
            }
        };
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let authorization = match (&source.credentials, &source.token_file) {
            (Some(file), _) => {
                let pair = read(file)?;
                if !pair.contains(':') {
                    return Err(format!(
                        "{}: expected user:password on one line",
                        file.display()
                    ));
                }
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                Some(format!("Basic {b64}"))
            }
            (None, Some(file)) => Some(format!("Bearer {}", read(file)?)),
            (None, None) => None,
        };
        Ok(HttpRegistry {
            url: url.clone(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            authority: uri.authority().map_or(String::new(), |a| a.to_string()),
            host,
            port,
            tls,
            authorization,
            timeout,
        })
    }

    /// The schema text registered under `id`.
    async fn schema(&self, id: u32) -> Result<String, FetchError> {
        let path = format!("{}/schemas/ids/{id}", self.prefix);
        let (status, body) = tokio::time::timeout(self.timeout, self.get(&path))
            .await
            .map_err(|_| {
                FetchError::Unavailable(format!("no answer within {:?}", self.timeout))
            })??;
        parse_answer(id, status, &body)
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), FetchError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| FetchError::Unavailable(format!("cannot connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(tcp, path).await,
            Some((name, connector)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| FetchError::Unavailable(format!("tls handshake failed: {e}")))?;
                self.exchange(tls, path).await
            }
        }
    }

    async fn exchange<S>(&self, io: S, path: &str) -> Result<(StatusCode, Bytes), FetchError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let unavailable =
            |what: &str, e: &dyn std::fmt::Display| FetchError::Unavailable(format!("{what}: {e}"));
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| unavailable("http handshake failed", &e))?;
        let mut req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.authority)
            .header(
                hyper::header::ACCEPT,
                "application/vnd.schemaregistry.v1+json, application/json",
            );
        if let Some(a) = &self.authorization {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| unavailable("bad request", &e))?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unavailable("request failed", &e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    FetchError::Garbage(format!(
                        "cannot read the body (limit {MAX_ANSWER_BYTES} bytes): {e}"
                    ))
                })?;
            Ok((status, body.to_bytes()))
        };
        // Driven beside the exchange (as the JWKS fetcher does): once the connection ends,
        // the exchange has all it will get.
        let mut exchange = std::pin::pin!(exchange);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            got = &mut exchange => got,
            _ = &mut conn => exchange.await,
        }
    }
}

/// The schema text of a registry answer to `GET /schemas/ids/{id}`.
pub(crate) fn parse_answer(id: u32, status: StatusCode, body: &[u8]) -> Result<String, FetchError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        schema: String,
        #[serde(default, rename = "schemaType")]
        schema_type: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Refusal {
        error_code: Option<i64>,
    }
    if status == StatusCode::NOT_FOUND {
        let code = serde_json::from_slice::<Refusal>(body)
            .ok()
            .and_then(|r| r.error_code);
        // 40403 is "schema not found"; other 404s (a wrong base path) are a setup error.
        return match code {
            Some(40403) | None => Err(FetchError::NotFound(id)),
            Some(code) => Err(FetchError::Unavailable(format!(
                "answered 404 with error_code {code}"
            ))),
        };
    }
    if status.is_redirection() {
        return Err(FetchError::Unavailable(format!(
            "answered {status}; redirects are not followed (credentials go to the configured url only)"
        )));
    }
    if !status.is_success() {
        return Err(FetchError::Unavailable(format!("answered {status}")));
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| FetchError::Garbage(format!("not schema JSON: {e}")))?;
    match answer.schema_type.as_deref() {
        None | Some("AVRO") => Ok(answer.schema),
        Some(other) => Err(FetchError::Garbage(format!(
            "schema id {id} is a {other} schema; only AVRO is decoded"
        ))),
    }
}
