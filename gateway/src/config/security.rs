//! `[auth]` and `[tls]`: who may call the gateway, and how connections are encrypted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::reader::Reader;

/// `[auth]`: JWT authentication with this gateway's keys and trusted peers' JWKS.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The keys directory written by `alertmesh creds init` (absolute, or relative to the
    /// config file as written).
    pub keys_dir: PathBuf,
    /// Every call needs a token, except reading public topics and the open methods
    /// (`DescribeGateway`, health). With `false`, calls without a token act as an anonymous
    /// reader of every topic, and calls with one are verified.
    pub require: bool,
    /// Peer gateways whose tokens are accepted.
    pub trusted_peers: Vec<TrustedPeer>,
    /// Clock skew tolerated when checking `exp`, `nbf` and `iat` (at most 30 s).
    pub leeway_secs: u64,
    /// Longest lifetime of a token this gateway issues.
    pub max_ttl_secs: u64,
    /// How often trusted peers' JWKS are fetched again.
    pub jwks_refresh_secs: u64,
}

/// One `[[auth.trusted_peers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPeer {
    /// The peer gateway's name: the `iss` of its tokens.
    pub name: String,
    /// `https://.../.well-known/jwks.json` of the peer.
    pub jwks_url: String,
    /// CA certificate(s) that sign the peer's HTTPS certificate; default `tls.client_ca`.
    pub ca: Option<PathBuf>,
}

/// `[tls]`: the gateway's certificate, on the gRPC port and the HTTP side port.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Set → gRPC clients must present a certificate signed by it (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Reads `[auth]` and `[tls]`, and checks plaintext is only used where allowed.
pub(super) fn read(
    r: &mut Reader,
    root: &mut toml::Table,
    base: &Path,
    listen: Option<SocketAddr>,
    allow_plaintext: bool,
) -> (Option<AuthConfig>, Option<TlsConfig>) {
    let tls = if root.contains_key("tls") {
        let mut t = r.table(root, "", "tls", false);
        let cert = r.string(&mut t, "tls", "cert", None);
        let key = r.string(&mut t, "tls", "key", None);
        let client_ca = r.string(&mut t, "tls", "client_ca", Some(String::new()));
        r.unknown(t, "tls");
        match (cert, key, client_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsConfig {
                cert: base.join(cert),
                key: base.join(key),
                client_ca: (!ca.is_empty()).then(|| base.join(ca)),
            }),
            _ => None,
        }
    } else {
        None
    };

    let auth = if root.contains_key("auth") {
        let mut t = r.table(root, "", "auth", false);
        let keys_dir = r.string(&mut t, "auth", "keys_dir", Some("keys".to_owned()));
        let require = r.bool(&mut t, "auth", "require", true);
        let leeway_secs = r.uint(&mut t, "auth", "leeway_secs", 10, 0, 30);
        let max_ttl_secs = r.uint(
            &mut t,
            "auth",
            "max_ttl_secs",
            30 * 86_400,
            60,
            366 * 86_400,
        );
        let jwks_refresh_secs = r.uint(&mut t, "auth", "jwks_refresh_secs", 300, 5, 86_400);
        let trusted_peers = read_peers(r, &mut t, base);
        r.unknown(t, "auth");
        keys_dir.map(|d| AuthConfig {
            keys_dir: base.join(d),
            require,
            trusted_peers,
            leeway_secs,
            max_ttl_secs,
            jwks_refresh_secs,
        })
    } else {
        None
    };

    if let (Some(listen), None) = (listen, &tls) {
        if !listen.ip().is_loopback() && !allow_plaintext {
            r.error(
                "gateway.listen",
                &format!(
                    "{listen} is not a loopback address, so it needs [tls] (cert, key); \
                     set gateway.allow_plaintext = true to serve plaintext anyway"
                ),
            );
        }
    }
    if let Some(auth) = &auth {
        let mesh_ca = tls.as_ref().and_then(|t| t.client_ca.as_ref());
        for (i, p) in auth.trusted_peers.iter().enumerate() {
            if p.ca.is_none() && mesh_ca.is_none() {
                r.error(
                    &format!("auth.trusted_peers[{i}].ca"),
                    "missing key: set it, or tls.client_ca, to the CA that signs the peer's https certificate",
                );
            }
        }
    }
    (auth, tls)
}

fn read_peers(r: &mut Reader, t: &mut toml::Table, base: &Path) -> Vec<TrustedPeer> {
    let items = match t.remove("trusted_peers") {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            r.error(
                "auth.trusted_peers",
                &format!(
                    "must be an array of {{ name, jwks_url }} tables, found {}",
                    other.type_str()
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<TrustedPeer> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("auth.trusted_peers[{i}]");
        let toml::Value::Table(mut p) = item else {
            r.error(&path, "must be a table { name, jwks_url }");
            continue;
        };
        let name = r.string(&mut p, &path, "name", None);
        let url = r.string(&mut p, &path, "jwks_url", None);
        let ca = r.string(&mut p, &path, "ca", Some(String::new()));
        r.unknown(p, &path);
        if let Some(n) = &name {
            if let Err(e) = alertmesh_alert::naming::check_gateway_name(n) {
                r.error(&format!("{path}.name"), &e.to_string());
            } else if out.iter().any(|o| &o.name == n) {
                r.error(&format!("{path}.name"), &format!("{n:?} is listed twice"));
            }
        }
        if let Some(u) = &url {
            if !u.starts_with("https://") {
                r.error(
                    &format!("{path}.jwks_url"),
                    &format!("{u:?} is not an https:// URL; peers' keys are only fetched over TLS"),
                );
            }
        }
        if let (Some(name), Some(jwks_url), Some(ca)) = (name, url, ca) {
            out.push(TrustedPeer {
                name,
                jwks_url,
                ca: (!ca.is_empty()).then(|| base.join(ca)),
            });
        }
    }
    out
}
