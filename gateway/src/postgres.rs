//! Connections to a `[[databases]]` entry, shared by query streams and archives: the URL,
//! the password (read at each connection, never logged), the timeouts and TLS.
//!
//! - [`tls`]: tokio-postgres's TLS traits over tokio-rustls, and the rustls configuration
//!   of `tls`, `ca_file`, `cert_file`, `key_file`.

mod tls;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use crate::config::{DatabaseConfig, PasswordSource, TlsMode};

/// Why a connection could not be made. Messages name the database and the key to check,
/// never the password.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The database cannot be reached, did not answer in time, or refused the login; it
    /// may work on a later try.
    Unavailable(String),
    /// TLS cannot work as configured (certificate not trusted or not for this host, a
    /// server without TLS, unreadable `ca_file`): retrying will not help until an operator
    /// fixes one side.
    Tls(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unavailable(m) | ConnectError::Tls(m) => f.write_str(m),
        }
    }
}

impl From<ConnectError> for crate::error::Error {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Unavailable(m) => crate::error::Error::DatabaseUnavailable(m),
            ConnectError::Tls(m) => crate::error::Error::FailedPrecondition(m),
        }
    }
}

/// A new connection to `db`, its connection task spawned on the current runtime (it ends
/// when the client is dropped or the server goes away).
pub(crate) async fn connect(
    db: &DatabaseConfig,
    application_name: &str,
) -> Result<Client, ConnectError> {
    let name = &db.name;
    let mut config: tokio_postgres::Config = db
        .url
        .parse()
        .map_err(|_| ConnectError::Unavailable(format!("database {name:?}: invalid url")))?;
    match &db.password {
        PasswordSource::None => {}
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConnectError::Unavailable(format!(
                    "database {name:?}: cannot read password_file {}: {e}",
                    path.display()
                ))
            })?;
            config.password(text.trim_end_matches(['\n', '\r']));
        }
        PasswordSource::Env(var) => {
            let value = std::env::var(var).map_err(|_| {
                ConnectError::Unavailable(format!(
                    "database {name:?}: environment variable {var} (password_env) is not set"
                ))
            })?;
            config.password(value);
        }
    }
    config.connect_timeout(db.connect_timeout);
    config.application_name(application_name);
    let mode = db.tls.mode;
    let timeout = |_| {
        ConnectError::Unavailable(format!(
            "database {name:?} did not answer within {:?}",
            db.connect_timeout
        ))
    };
    let client = if mode == TlsMode::Disable {
        config.ssl_mode(SslMode::Disable);
        let (client, connection) = tokio::time::timeout(db.connect_timeout, config.connect(NoTls))
            .await
            .map_err(timeout)?
            .map_err(|e| failure(name, mode, &e))?;
        spawn_connection(connection);
        client
    } else {
        config.ssl_mode(SslMode::Require);
        let rustls = tls::client_config(&db.tls)
            .map_err(|e| ConnectError::Tls(format!("database {name:?}: tls: {e}")))?;
        let make = tls::MakeRustls::new(rustls);
        let (client, connection) = tokio::time::timeout(db.connect_timeout, config.connect(make))
            .await
            .map_err(timeout)?
            .map_err(|e| failure(name, mode, &e))?;
        spawn_connection(connection);
        client
    };
    Ok(client)
}

/// Asks the server of `db` to cancel what the connection of `token` runs, over a new
/// connection with the same TLS settings.
pub(crate) async fn cancel(
    db: &DatabaseConfig,
    token: &tokio_postgres::CancelToken,
) -> Result<(), String> {
    if db.tls.mode == TlsMode::Disable {
        token.cancel_query(NoTls).await.map_err(|e| chain(&e))
    } else {
        let rustls = tls::client_config(&db.tls).map_err(|e| format!("tls: {e}"))?;
        token
            .cancel_query(tls::MakeRustls::new(rustls))
            .await
            .map_err(|e| chain(&e))
    }
}

fn spawn_connection<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    });
}

/// An error with its causes: tokio-postgres's own text is only the kind ("db error",
/// "error performing TLS handshake"); the server's message or rustls's reason is the cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A failed connect as a [`ConnectError`]: TLS failures (tokio-postgres's "error performing
/// TLS handshake", with the reason: a certificate rustls rejected, a server without TLS)
/// say which `tls` mode was in force.
fn failure(name: &str, mode: TlsMode, e: &tokio_postgres::Error) -> ConnectError {
    let tls = e.to_string().starts_with("error performing TLS handshake");
    let text = chain(e);
    if tls {
        let hint = if text.contains("does not support TLS") {
            "the server has ssl = off: turn it on, or set tls = \"disable\" on a trusted network"
        } else {
            "check the server's certificate, ca_file and the url's host name"
        };
        ConnectError::Tls(format!(
            "database {name:?}: {text} (tls = {:?}; {hint})",
            mode.as_str()
        ))
    } else {
        ConnectError::Unavailable(format!("database {name:?} cannot be reached: {text}"))
    }
}
