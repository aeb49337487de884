//! `alertmesh creds`: the gateway's signing keys, development TLS, and credentials.
//!
//! Key files are written by the auth crate (private keys 0600); credential records and
//! revocations go straight to the gateway's credentials topic in Kafka, so running
//! gateways (every replica) see them within a second. Tokens are printed on stdout only.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use alertmesh_auth::{Algorithm, Issuer, KeyRing, Revocation, Scope, TokenRequest};
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::auth::unix_now;
use crate::config::{AuthConfig, Config};
use crate::creds::CredentialStore;
use crate::kafka::Kafka;

#[derive(Debug, Subcommand)]
pub enum CredsCommand {
    /// Create the signing key in auth.keys_dir (and with --dev-tls a mesh CA and this
    /// gateway's certificate at the `[tls]` paths).
    Init {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Signing algorithm: ed25519 (default) or es256.
        #[arg(long, default_value = "ed25519")]
        alg: String,
        /// Also create a development mesh CA and this gateway's TLS certificate.
        #[arg(long)]
        dev_tls: bool,
    },
    /// Sign a token and record the credential; prints the token on stdout.
    Issue {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Who the token is for: a user, or a peer gateway's name.
        #[arg(long, value_name = "NAME")]
        sub: String,
        /// `subscribe:<topic glob>`, `fetch:<topic glob>`, `publish:<topic glob>`, `mirror` or `admin` (repeatable).
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// Lifetime: 90s, 30m, 12h, 7d (or seconds).
        #[arg(long, value_name = "DUR")]
        ttl: String,
        /// The gateway the token is for (default: this gateway).
        #[arg(long, value_name = "GATEWAY")]
        aud: Option<String>,
    },
    /// List issued credentials and whether they are revoked.
    List {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this subject's credentials.
        #[arg(long, value_name = "NAME")]
        sub: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one token (JTI), or every token of a subject issued until now (--sub).
    Revoke {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(
            value_name = "JTI",
            required_unless_present = "sub",
            conflicts_with = "sub"
        )]
        jti: Option<String>,
        #[arg(long, value_name = "NAME")]
        sub: Option<String>,
    },
    /// Generate a new signing key; the old one keeps verifying its tokens until they expire.
    Rotate {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, default_value = "ed25519")]
        alg: String,
    },
    /// Delete retired signing keys once every token they signed has expired (retired
    /// longer ago than `auth.max_ttl_secs` plus `auth.leeway_secs`).
    Prune {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Sign a development TLS certificate for a client or peer with the mesh CA of
    /// `creds init --dev-tls`; writes `<NAME>.pem` and `<NAME>.key` into the mesh CA folder.
    Cert {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The certificate identity (DNS SAN): a user, or a peer gateway's name.
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

/// Runs a `creds` command; the error is one line.
pub async fn run(cmd: CredsCommand) -> Result<(), String> {
    match cmd {
        CredsCommand::Init {
            config,
            alg,
            dev_tls,
        } => init(&config, &alg, dev_tls),
        CredsCommand::Issue {
            config,
            sub,
            scopes,
            ttl,
            aud,
        } => issue(&config, sub, &scopes, &ttl, aud).await,
        CredsCommand::List { config, sub, json } => list(&config, sub.as_deref(), json).await,
        CredsCommand::Revoke { config, jti, sub } => revoke(&config, jti, sub).await,
        CredsCommand::Rotate { config, alg } => rotate(&config, &alg),
        CredsCommand::Prune { config } => {
            let (_, auth) = load(&config)?;
            let (pruned, kept) = prune(&auth, unix_now())?;
            eprintln!(
                "deleted {pruned} retired key(s) whose tokens have all expired; {kept} key(s) remain"
            );
            Ok(())
        }
        CredsCommand::Cert { config, name } => cert(&config, &name),
    }
}

fn load(path: &Path) -> Result<(Config, AuthConfig), String> {
    let config = Config::load(path).map_err(|problems| {
        format!(
            "invalid configuration {}: {}",
            path.display(),
            problems.join("; ")
        )
    })?;
    let auth = config.auth.clone().ok_or_else(|| {
        format!(
            "{} has no [auth] section; add one with keys_dir = \"keys\"",
            path.display()
        )
    })?;
    Ok((config, auth))
}

fn mesh_ca_dir(auth: &AuthConfig) -> PathBuf {
    auth.keys_dir.join("mesh-ca")
}

fn init(path: &Path, alg: &str, dev_tls: bool) -> Result<(), String> {
    let (config, auth) = load(path)?;
    let alg: Algorithm = alg.parse().map_err(|e| format!("--alg: {e}"))?;
    let now = unix_now();
    let ring = KeyRing::init(&auth.keys_dir, alg, now).map_err(|e| e.to_string())?;
    eprintln!(
        "signing key {} ({alg}) created in {}",
        ring.current().kid(),
        auth.keys_dir.display()
    );
    if dev_tls {
        let name = &config.gateway.name;
        let dir = mesh_ca_dir(&auth);
        let paths = alertmesh_auth::tls::creds_init(&dir, name, now).map_err(|e| e.to_string())?;
        let (cert, key, ca) = match &config.tls {
            Some(tls) => (
                tls.cert.clone(),
                tls.key.clone(),
                tls.client_ca
                    .clone()
                    .unwrap_or(auth.keys_dir.join("mesh-ca.crt")),
            ),
            None => (
                auth.keys_dir.join("gateway.crt"),
                auth.keys_dir.join("gateway.key"),
                auth.keys_dir.join("mesh-ca.crt"),
            ),
        };
        copy(&paths.cert, &cert, 0o644)?;
        copy(&paths.key, &key, 0o600)?;
        copy(&paths.ca_cert, &ca, 0o644)?;
        eprintln!(
            "development mesh ca in {}; this gateway's certificate {} (key {}), ca {}",
            dir.display(),
            cert.display(),
            key.display(),
            ca.display()
        );
        if config.tls.is_none() {
            eprintln!(
                "add to {}:\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}",
                path.display(),
                cert.display().to_string(),
                key.display().to_string(),
                ca.display().to_string()
            );
        }
    }
    Ok(())
}

/// Copies a PEM file; the destination has `mode` from its creation on.
fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let bytes = std::fs::read(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(to);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)
        .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(&bytes))
        .map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// Parses `90`, `90s`, `30m`, `12h`, `7d` into seconds.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid --ttl {text:?}: expected e.g. 90s, 30m, 12h or 7d");
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).filter(|s| *s > 0).ok_or_else(bad)
}

async fn store(config: &Config) -> Result<(CredentialStore, CancellationToken), String> {
    let cancel = CancellationToken::new();
    let kafka = Kafka::new(
        config.kafka.clone(),
        &config.gateway.name,
        std::sync::Arc::new(crate::metrics::Metrics::default()),
    );
    let store = CredentialStore::open(kafka, cancel.clone())
        .await
        .map_err(|e| e.to_string())?;
    Ok((store, cancel))
}

async fn issue(
    path: &Path,
    sub: String,
    scopes: &[String],
    ttl: &str,
    aud: Option<String>,
) -> Result<(), String> {
    let (config, auth) = load(path)?;
    let scopes = scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--scope: {e}"))?;
    let ttl = parse_ttl(ttl)?;
    let ring = KeyRing::load(&auth.keys_dir).map_err(|e| e.to_string())?;
    let issuer = Issuer::new(config.gateway.name.clone(), ring).with_max_ttl(auth.max_ttl_secs);
    let request = TokenRequest {
        sub,
        aud: aud.unwrap_or_else(|| config.gateway.name.clone()),
        scopes,
        ttl,
        not_before: None,
    };
    let issued = issuer
        .issue(&request, unix_now())
        .map_err(|e| e.to_string())?;
    let (store, cancel) = store(&config).await?;
    let record = issued.record();
    let stored = store.record(&record).await.map_err(|e| e.to_string());
    cancel.cancel();
    stored?;
    eprintln!(
        "issued {} for {} (aud {}, expires at {})",
        record.jti, record.sub, record.aud, record.exp
    );
    println!("{}", issued.token);
    Ok(())
}

async fn list(path: &Path, sub: Option<&str>, json: bool) -> Result<(), String> {
    let (config, _) = load(path)?;
    let (store, cancel) = store(&config).await?;
    let all = store.list();
    cancel.cancel();
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = writeln!(
            out,
            "{:<32}  {:<16}  {:<10}  {:<7}  SCOPES",
            "JTI", "SUBJECT", "EXPIRES", "REVOKED"
        );
    }
    for l in all.iter().filter(|l| sub.is_none_or(|s| l.record.sub == s)) {
        let r = &l.record;
        let scopes: Vec<String> = r.scopes.iter().map(Scope::to_string).collect();
        let line = if json {
            serde_json::json!({
                "jti": r.jti, "sub": r.sub, "aud": r.aud, "scopes": scopes, "iat": r.iat,
                "exp": r.exp, "issued_by": r.issued_by, "revoked": l.revoked,
            })
            .to_string()
        } else {
            format!(
                "{:<32}  {:<16}  {:<10}  {:<7}  {}",
                r.jti,
                r.sub,
                r.exp,
                l.revoked,
                scopes.join(" ")
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

async fn revoke(path: &Path, jti: Option<String>, sub: Option<String>) -> Result<(), String> {
    let (config, _) = load(path)?;
    let revocation = Revocation {
        jti,
        sub,
        at: unix_now(),
    };
    let (store, cancel) = store(&config).await?;
    let done = store.revoke(&revocation).await.map_err(|e| e.to_string());
    cancel.cancel();
    done?;
    eprintln!("revoked {}", revocation.key());
    Ok(())
}

fn rotate(path: &Path, alg: &str) -> Result<(), String> {
    let (_, auth) = load(path)?;
    let alg: Algorithm = alg.parse().map_err(|e| format!("--alg: {e}"))?;
    let ring = KeyRing::rotate(&auth.keys_dir, alg, unix_now()).map_err(|e| e.to_string())?;
    eprintln!(
        "new signing key {} ({alg}); {} older key(s) keep verifying until their tokens expire",
        ring.current().kid(),
        ring.keys().count() - 1
    );
    Ok(())
}

/// Prunes the keyring at `now`; returns how many keys were deleted and how many remain.
/// A retired key is kept while a token it signed can still verify: tokens live at most
/// `max_ttl_secs`, and verification tolerates `leeway_secs` past `exp`.
fn prune(auth: &AuthConfig, now: u64) -> Result<(usize, usize), String> {
    let before = KeyRing::load(&auth.keys_dir)
        .map_err(|e| e.to_string())?
        .keys()
        .count();
    let ring = KeyRing::prune(
        &auth.keys_dir,
        now,
        auth.max_ttl_secs.saturating_add(auth.leeway_secs),
    )
    .map_err(|e| e.to_string())?;
    let kept = ring.keys().count();
    Ok((before - kept, kept))
}

fn cert(path: &Path, name: &str) -> Result<(), String> {
    let (_, auth) = load(path)?;
    let paths = alertmesh_auth::tls::creds_issue(&mesh_ca_dir(&auth), name, unix_now())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "certificate {} (key {}), ca {}",
        paths.cert.display(),
        paths.key.display(),
        paths.ca_cert.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_retired_keys_until_their_tokens_cannot_verify() {
        let dir = tempfile::tempdir().unwrap();
        let auth = AuthConfig {
            keys_dir: dir.path().join("keys"),
            require: true,
            trusted_peers: Vec::new(),
            leeway_secs: 10,
            max_ttl_secs: 3600,
            jwks_refresh_secs: 300,
        };
        KeyRing::init(&auth.keys_dir, Algorithm::EdDsa, 100).unwrap();
        let retired = KeyRing::load(&auth.keys_dir)
            .unwrap()
            .current()
            .kid()
            .to_owned();
        KeyRing::rotate(&auth.keys_dir, Algorithm::EdDsa, 1_000).unwrap();
        // A token signed just before the rotation may live until 4600, and verify until 4610.
        assert_eq!(prune(&auth, 4_609).unwrap(), (0, 2));
        let ring = KeyRing::load(&auth.keys_dir).unwrap();
        assert!(ring.get(&retired).is_some());
        assert_eq!(prune(&auth, 4_610).unwrap(), (1, 1));
        let ring = KeyRing::load(&auth.keys_dir).unwrap();
        assert!(ring.get(&retired).is_none());
        assert_ne!(ring.current().kid(), retired);
        // The current key is never pruned.
        assert_eq!(prune(&auth, u64::MAX).unwrap(), (0, 1));
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("12h").unwrap(), 43_200);
        assert_eq!(parse_ttl("7d").unwrap(), 604_800);
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
