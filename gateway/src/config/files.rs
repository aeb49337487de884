//! The files a configuration names for serving (TLS certificate and key, CAs, mirror
//! tokens and identities, the signing keys): checked the way `serve` will use them, so
//! that `serve --check` fails on whatever `serve` would fail on.

use std::path::Path;

use alertmesh_auth::tls::pem::{load_certs, load_key};

use super::Config;

impl Config {
    /// Every problem with the files this configuration names, one per key path: files
    /// that cannot be read, PEM that does not parse, a certificate and key that do not
    /// fit together, a CA that cannot verify anything, a keyring that cannot be loaded
    /// (including a signing key that group or others may read).
    ///
    /// `serve` checks them with the rest of the configuration; [`Config::load`] does not,
    /// because `alertmesh creds init` loads the configuration to create some of them.
    pub fn check_files(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut file = |key: &str, path: &Path| -> bool {
            let readable = std::fs::File::open(path).and_then(|f| {
                if f.metadata()?.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            });
            match readable {
                Ok(()) => true,
                Err(e) => {
                    problems.push(format!("{key}: cannot read {}: {e}", path.display()));
                    false
                }
            }
        };
        // Each check runs only on files that could be read, so one missing file is one
        // problem, not three.
        let mut checks: Vec<(String, Result<(), String>)> = Vec::new();
        if let Some(tls) = &self.tls {
            let cert_ok = file("tls.cert", &tls.cert);
            let key_ok = file("tls.key", &tls.key);
            if cert_ok && key_ok {
                checks.extend(identity(
                    ("tls.cert".into(), &tls.cert),
                    ("tls.key".into(), &tls.key),
                    true,
                ));
            }
            if let Some(ca) = &tls.client_ca {
                if file("tls.client_ca", ca) {
                    checks.push(("tls.client_ca".into(), ca_roots(ca)));
                }
            }
        }
        if let Some(auth) = &self.auth {
            for (i, peer) in auth.trusted_peers.iter().enumerate() {
                if let Some(ca) = &peer.ca {
                    let key = format!("auth.trusted_peers[{i}].ca");
                    if file(&key, ca) {
                        checks.push((key, ca_roots(ca)));
                    }
                }
            }
        }
        for (i, db) in self.databases.iter().enumerate() {
            if let super::PasswordSource::File(f) = &db.password {
                file(&format!("databases[{i}].password_file"), f);
            }
            let at = format!("databases[{i}]");
            if let Some(ca) = &db.tls.ca_file {
                if file(&format!("{at}.ca_file"), ca) {
                    checks.push((format!("{at}.ca_file"), ca_roots(ca)));
                }
            }
            if let (Some(cert), Some(key)) = (&db.tls.cert_file, &db.tls.key_file) {
                let cert_ok = file(&format!("{at}.cert_file"), cert);
                let key_ok = file(&format!("{at}.key_file"), key);
                if cert_ok && key_ok {
                    checks.extend(identity(
                        (format!("{at}.cert_file"), cert),
                        (format!("{at}.key_file"), key),
                        false,
                    ));
                }
            }
        }
        for (i, m) in self.mirrors.iter().enumerate() {
            let at = format!("mirrors[{i}].source");
            if let Some(t) = &m.token_file {
                file(&format!("{at}.token_file"), t);
            }
            if let Some(ca) = &m.ca {
                if file(&format!("{at}.ca"), ca) {
                    checks.push((format!("{at}.ca"), ca_roots(ca)));
                }
            }
            if let (Some(cert), Some(key)) = (&m.cert, &m.key) {
                let cert_ok = file(&format!("{at}.cert"), cert);
                let key_ok = file(&format!("{at}.key"), key);
                if cert_ok && key_ok {
                    checks.extend(identity(
                        (format!("{at}.cert"), cert),
                        (format!("{at}.key"), key),
                        false,
                    ));
                }
            }
        }
        if let Some(auth) = &self.auth {
            if !auth.keys_dir.is_dir() {
                problems.push(format!(
                    "auth.keys_dir: {} is not a folder; create the signing key with \
                     `alertmesh creds init --config FILE`",
                    auth.keys_dir.display()
                ));
            } else if let Err(e) = alertmesh_auth::KeyRing::load(&auth.keys_dir) {
                problems.push(format!("auth.keys_dir: {e}"));
            }
        }
        for (key, result) in checks {
            if let Err(e) = result {
                problems.push(format!("{key}: {e}"));
            }
        }
        problems
    }
}

/// Problems with a certificate chain and its key, by key path: each must parse, and they
/// must belong together (checked by building the rustls configuration that uses them).
fn identity(
    (cert_key, cert): (String, &Path),
    (key_key, key): (String, &Path),
    server: bool,
) -> Vec<(String, Result<(), String>)> {
    let chain = load_certs(cert).map_err(|e| e.to_string());
    let private = load_key(key).map_err(|e| e.to_string());
    match (chain, private) {
        (Ok(chain), Ok(private)) => {
            let built = if server {
                alertmesh_auth::tls::server_config(chain, private, None).map(drop)
            } else {
                // Any root will do: only the identity is checked here.
                let root = chain[..1].to_vec();
                alertmesh_auth::tls::client_config(&root, Some((chain, private))).map(drop)
            };
            vec![(cert_key, built.map_err(|e| e.to_string()))]
        }
        (chain, private) => vec![(cert_key, chain.map(drop)), (key_key, private.map(drop))],
    }
}

/// CA certificates that parse and can serve as trust roots.
fn ca_roots(ca: &Path) -> Result<(), String> {
    let certs = load_certs(ca).map_err(|e| e.to_string())?;
    alertmesh_auth::tls::client_config(&certs, None)
        .map(drop)
        .map_err(|e| e.to_string())
}
