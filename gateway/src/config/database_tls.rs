//! `[[databases]] tls`, `ca_file`, `cert_file`, `key_file`: how the gateway secures its
//! connections to PostgreSQL.
//!
//! One place says it: the `tls` key. libpq's `sslmode` and friends in the URL are refused
//! with the `tls` value to use instead, so a URL copied from `psql` cannot quietly ask for
//! less than the operator thinks (libpq's default, `prefer`, falls back to plain text).
//!
//! The default is `verify-full` (encrypted, certificate chain and host name checked), except
//! for a database on this host (loopback addresses, `localhost`, Unix sockets), where
//! there is no network to protect and `disable` keeps existing local setups working.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

use super::reader::Reader;

/// How a database connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS, any server certificate accepted: encrypted, not authenticated.
    Require,
    /// TLS, the server certificate must chain to `ca_file` (else the platform's roots) and
    /// name the URL's host.
    VerifyFull,
}

impl TlsMode {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS settings of one `[[databases]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseTls {
    pub mode: TlsMode,
    /// PEM CA certificates the server's certificate must chain to (`verify-full`); `None`
    /// trusts the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and key (PEM) for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl DatabaseTls {
    /// No TLS, as for a database on this host.
    pub fn disabled() -> Self {
        DatabaseTls {
            mode: TlsMode::Disable,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// Reads the TLS keys of `[[databases]]` table `t` at `path`, for the database at `url`
/// (already checked by the caller; `None` if it did not parse).
pub(super) fn read(
    r: &mut Reader,
    t: &mut toml::Table,
    path: &str,
    base: &Path,
    url: Option<&tokio_postgres::Config>,
) -> DatabaseTls {
    let local = url.is_some_and(is_local);
    let mode = match r.string(t, path, "tls", Some(String::new())).as_deref() {
        Some("") | None => {
            if local {
                TlsMode::Disable
            } else {
                TlsMode::VerifyFull
            }
        }
        Some("disable") => TlsMode::Disable,
        Some("require") => TlsMode::Require,
        Some("verify-full") => TlsMode::VerifyFull,
        Some(other) => {
            r.error(
                &format!("{path}.tls"),
                &format!(
                    "{:?} is not one of \"disable\", \"require\", \"verify-full\"",
                    alertmesh_alert::echo::line(other, 40)
                ),
            );
            TlsMode::VerifyFull
        }
    };
    let mut file = |key: &str| {
        r.string(t, path, key, Some(String::new()))
            .filter(|f| !f.is_empty())
            .map(|f| base.join(f))
    };
    let ca_file = file("ca_file");
    let cert_file = file("cert_file");
    let key_file = file("key_file");
    if ca_file.is_some() && mode != TlsMode::VerifyFull {
        r.error(
            &format!("{path}.ca_file"),
            &format!(
                "is only used with tls = \"verify-full\" (tls is {:?})",
                mode.as_str()
            ),
        );
    }
    if cert_file.is_some() != key_file.is_some() {
        r.error(
            &format!("{path}.cert_file"),
            "cert_file and key_file go together: give both or neither",
        );
    }
    if cert_file.is_some() && mode == TlsMode::Disable {
        r.error(
            &format!("{path}.cert_file"),
            "a client certificate needs tls = \"require\" or \"verify-full\"",
        );
    }
    if mode != TlsMode::Disable
        && url.is_some_and(|u| u.get_hosts().iter().any(|h| matches!(h, Host::Unix(_))))
    {
        r.error(
            &format!("{path}.tls"),
            "PostgreSQL has no TLS on Unix sockets: use a host name, or tls = \"disable\"",
        );
    }
    DatabaseTls {
        mode,
        ca_file,
        cert_file,
        key_file,
    }
}

/// The `tls` value to use instead of a libpq TLS parameter in the URL's query string, if
/// the URL has one.
pub(super) fn url_tls_parameter(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        let value = pair.split_once('=').map_or("", |(_, v)| v);
        match key {
            "sslmode" => Some(match value {
                "disable" | "allow" | "prefer" => {
                    format!("sslmode={value} in the url is not used; set tls = \"disable\" (or \"require\" / \"verify-full\")")
                }
                "require" | "verify-ca" => format!(
                    "sslmode={value} in the url is not used; set tls = \"require\" (or \"verify-full\" with ca_file)"
                ),
                _ => "sslmode in the url is not used; set tls = \"verify-full\" (and ca_file)"
                    .to_owned(),
            }),
            "sslrootcert" | "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => Some(format!(
                "{key} in the url is not used; use ca_file, cert_file and key_file"
            )),
            _ => None,
        }
    })
}

/// Whether every address the URL names is on this host.
fn is_local(url: &tokio_postgres::Config) -> bool {
    let hosts_local = url.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    });
    hosts_local && url.get_hostaddrs().iter().all(IpAddr::is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(url: &str) -> bool {
        is_local(&url.parse().unwrap())
    }

    #[test]
    fn only_loopback_hosts_and_sockets_count_as_local() {
        assert!(local("postgres://u@127.0.0.1:5432/db"));
        assert!(local("postgres://u@localhost/db"));
        assert!(local("postgres://u@[::1]:5432/db"));
        assert!(local("postgres://u@%2Fvar%2Frun%2Fpostgresql/db"));
        assert!(!local("postgres://u@db.example.org/db"));
        assert!(!local("postgres://u@10.0.0.5/db"));
        assert!(!local("postgres://u@127.0.0.1,db.example.org/db"));
        assert!(!local("postgres://u@localhost/db?hostaddr=10.0.0.5"));
    }

    #[test]
    fn libpq_tls_parameters_in_the_url_name_the_key_to_use() {
        assert_eq!(url_tls_parameter("postgres://u@h/db"), None);
        assert_eq!(
            url_tls_parameter("postgres://u@h/db?application_name=x"),
            None
        );
        let m = url_tls_parameter("postgres://u@h/db?x=1&sslmode=require").unwrap();
        assert!(m.contains("set tls = \"require\""), "{m}");
        let m = url_tls_parameter("postgres://u@h/db?sslmode=disable").unwrap();
        assert!(m.contains("set tls = \"disable\""), "{m}");
        let m = url_tls_parameter("postgres://u@h/db?sslrootcert=/x").unwrap();
        assert!(m.contains("ca_file"), "{m}");
    }
}
