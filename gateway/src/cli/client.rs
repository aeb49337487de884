//! Connecting the CLI to a gateway: `https://` URLs use TLS (`--ca`, and `--cert`/`--key`
//! for mutual TLS), and `--token FILE` / `--token-env VAR` send a bearer token on every call.

use std::path::PathBuf;
use std::time::Duration;

use alertmesh_proto::v1::alert_mesh_client::AlertMeshClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Largest message the CLI accepts from a gateway (one batch, or one large alert).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// How the CLI proves who it is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientAuthArgs {
    /// File holding a bearer token (as printed by `alertmesh creds issue`).
    #[arg(long = "token", value_name = "FILE", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding a bearer token.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// CA certificate (PEM) that signs the gateway's certificate, for https:// URLs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for gateways that require mutual TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A connected gateway client.
pub type Client = AlertMeshClient<InterceptedService<Channel, Bearer>>;

impl ClientAuthArgs {
    /// The token, read from --token or --token-env; errors never show its content.
    pub fn token(&self) -> Result<Option<String>, String> {
        let token = if let Some(path) = &self.token_file {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --token {}: {e}", path.display()))?
        } else if let Some(var) = &self.token_env {
            std::env::var(var).map_err(|_| format!("--token-env {var}: the variable is not set"))?
        } else {
            return Ok(None);
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err("the token is empty; pass the output of `alertmesh creds issue`".into());
        }
        Ok(Some(token))
    }

    fn bearer(&self) -> Result<Bearer, String> {
        match self.token()? {
            None => Ok(Bearer(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| "the token has characters a header cannot carry".to_owned()),
        }
    }

    fn tls(&self) -> Result<ClientTlsConfig, String> {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            let pem = alertmesh_auth::tls::load_pem_certs(ca).map_err(|e| format!("--ca: {e}"))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let (c, k) = alertmesh_auth::tls::load_pem_identity(cert, key)
                .map_err(|e| format!("--cert/--key: {e}"))?;
            tls = tls.identity(Identity::from_pem(c, k));
        }
        Ok(tls)
    }
}

/// The endpoint of a gateway URL with the TLS options of `auth`: large HTTP/2 windows
/// (a stream of 60 KB alerts needs far more than the 64 KiB default, or every megabyte
/// waits on a dozen window updates), 1 MiB HTTP/2 frames (a batch then arrives in one or
/// two frames instead of 64 of 16 KiB: measured, about a third less client CPU),
/// TCP_NODELAY, a 5 s connect timeout.
pub fn endpoint(url: &str, auth: &ClientAuthArgs) -> Result<(String, Endpoint), String> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("invalid gateway URL {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20)
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(auth.tls()?)
            .map_err(|e| format!("tls: {e}"))?;
    } else if auth.ca.is_some() || auth.cert.is_some() {
        return Err(format!(
            "--ca/--cert need an https:// gateway URL, not {url}"
        ));
    }
    Ok((url, endpoint))
}

/// Connects to a gateway, failing within seconds when nothing answers.
pub async fn connect(url: &str, auth: &ClientAuthArgs) -> Result<Client, String> {
    let (url, endpoint) = endpoint(url, auth)?;
    let bearer = auth.bearer()?;
    let channel = endpoint.connect().await.map_err(|e| {
        format!(
            "cannot connect to gateway {url}: {}",
            super::source_chain(&e)
        )
    })?;
    Ok(AlertMeshClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
