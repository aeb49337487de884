//! Connecting the CLI to a gateway: `https://` URLs use TLS (`--ca`, and `--cert`/`--key`
//! for mutual TLS), and `--token FILE` / `--token-env VAR` send a bearer token on every call.
//! The flags become [`alertmesh_client::Options`]; the client crate does the rest.

use std::path::PathBuf;

use alertmesh_client::{Client, Gateway, Options, Token};

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

impl ClientAuthArgs {
    /// The client options: the token read from --token or --token-env (errors name the
    /// flag, never the token), and the TLS files.
    pub fn options(&self) -> Result<Options, String> {
        let token = if let Some(path) = &self.token_file {
            Some(Token::from_file(path).map_err(|e| format!("--token: {e}"))?)
        } else if let Some(var) = &self.token_env {
            Some(Token::from_env(var).map_err(|e| format!("--token-env: {e}"))?)
        } else {
            None
        };
        Ok(Options {
            token,
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            ..Options::default()
        })
    }

    /// The gateway at `url` with these options: the token is bound to `url`.
    pub fn gateway(&self, url: &str) -> Result<Gateway, String> {
        Gateway::new(url, &self.options()?).map_err(|e| e.to_string())
    }
}

/// Connects to a gateway, failing within seconds when nothing answers.
pub async fn connect(gateway: &Gateway) -> Result<Client, String> {
    gateway.connect().await.map_err(|e| e.to_string())
}
