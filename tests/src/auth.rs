//! Authenticated gateways: a development PKI, gateways with `[auth]` and `[tls]`, TLS
//! clients with tokens, and hand-made JWTs for the bad-token matrix.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use alertmesh_tests::auth::{Pki, Secure, SecureSpec};
//! let pki = Pki::new()?;
//! let broker = alertmesh_tests::Broker::start("lasair").await?;
//! let lasair = Secure::start(&pki, SecureSpec::new("lasair", &broker.bootstrap())).await?;
//! let token = lasair.issue("alice", &["subscribe:ztf.*"], "1h").await?;
//! let mut client = lasair.client(Some(&pki.client("alice")?), Some(&token)).await?;
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use alertmesh_auth::{KeyRing, SigningKey};
use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use tempfile::TempDir;

use crate::cli::run_cli;
use crate::gateway::{Gateway, GatewaySpec, Ready};
use crate::metrics::{https_get, Metrics};

/// A development mesh PKI: a CA (the mesh CA) and certificates it signs.
#[derive(Debug)]
pub struct Pki {
    dir: TempDir,
}

/// A certificate and key file pair.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA in a temporary directory.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("alertmesh-pki-")
            .tempdir()?;
        alertmesh_auth::tls::creds_init(&dir.path().join("ca"), "ca-holder", now())?;
        Ok(Pki { dir })
    }

    /// The CA certificate (PEM file).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca").join("ca.pem")
    }

    /// A certificate for `name` (DNS SAN `name`, `localhost`, `127.0.0.1`).
    pub fn client(&self, name: &str) -> Result<CertFiles> {
        let p = alertmesh_auth::tls::creds_issue(&self.dir.path().join("ca"), name, now())?;
        Ok(CertFiles {
            cert: p.cert,
            key: p.key,
        })
    }

    /// A scratch directory that lives as long as the PKI.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// What to configure on a secure gateway.
#[derive(Debug, Clone)]
pub struct SecureSpec {
    pub name: String,
    pub bootstrap: String,
    /// `(topic, public)`.
    pub topics: Vec<(String, bool)>,
    pub require: bool,
    pub mtls: bool,
    /// `(peer name, https JWKS URL)`.
    pub trusted_peers: Vec<(String, String)>,
    /// TOML appended to the configuration (more `[[topics]]`, `[limits]`).
    pub extra: String,
}

impl SecureSpec {
    /// A gateway `name` with `require = true` and mutual TLS, exposing nothing yet.
    pub fn new(name: &str, bootstrap: &str) -> Self {
        SecureSpec {
            name: name.to_owned(),
            bootstrap: bootstrap.to_owned(),
            topics: Vec::new(),
            require: true,
            mtls: true,
            trusted_peers: Vec::new(),
            extra: String::new(),
        }
    }

    /// Appends TOML to the configuration, after every other section.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// Exposes a ZTF topic, public or not.
    pub fn topic(mut self, name: &str, public: bool) -> Self {
        self.topics.push((name.to_owned(), public));
        self
    }

    /// Without client certificates.
    pub fn without_mtls(mut self) -> Self {
        self.mtls = false;
        self
    }

    /// Trusts a peer's tokens.
    pub fn trust(mut self, peer: &str, jwks_url: &str) -> Self {
        self.trusted_peers
            .push((peer.to_owned(), jwks_url.to_owned()));
        self
    }

    /// The `[[topics]]`, `[auth]` and `[tls]` sections, with absolute paths.
    fn sections(&self, keys: &Path, tls: &CertFiles, ca: &Path) -> String {
        let mut t = String::new();
        for (name, public) in &self.topics {
            let _ = write!(
                t,
                "[[topics]]\nname = {name:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\npublic = {public}\n\n"
            );
        }
        let _ = write!(
            t,
            "[auth]\nkeys_dir = {:?}\nrequire = {}\n",
            keys.display().to_string(),
            self.require
        );
        if !self.trusted_peers.is_empty() {
            let peers: Vec<String> = self
                .trusted_peers
                .iter()
                .map(|(n, u)| format!("{{ name = {n:?}, jwks_url = {u:?} }}"))
                .collect();
            let _ = writeln!(t, "trusted_peers = [{}]", peers.join(", "));
        }
        let _ = write!(
            t,
            "\n[tls]\ncert = {:?}\nkey = {:?}\n",
            tls.cert.display().to_string(),
            tls.key.display().to_string()
        );
        if self.mtls {
            let _ = writeln!(t, "client_ca = {:?}", ca.display().to_string());
        }
        t.push('\n');
        t.push_str(&self.extra);
        t
    }
}

/// A running gateway with `[auth]` and `[tls]`, and the config file the `creds` CLI uses.
#[derive(Debug)]
pub struct Secure {
    pub gateway: Gateway,
    /// The config file for `alertmesh creds ... --config` (same gateway, Kafka and keys).
    pub creds_config: PathBuf,
    /// The gateway's keys directory.
    pub keys_dir: PathBuf,
    /// The mesh CA that signs the gateway's certificate.
    pub ca: PathBuf,
}

impl Secure {
    /// Creates the signing key with `alertmesh creds init`, a TLS certificate from `pki`,
    /// and starts the gateway.
    pub async fn start(pki: &Pki, spec: SecureSpec) -> Result<Self> {
        let home = pki.dir().join(&spec.name);
        std::fs::create_dir_all(&home)?;
        let keys_dir = home.join("keys");
        let tls = pki.client(&spec.name)?;
        let sections = spec.sections(&keys_dir, &tls, &pki.ca());
        let creds_config = home.join("creds.toml");
        std::fs::write(
            &creds_config,
            format!(
                "[gateway]\nname = {:?}\nlisten = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"\n\n[kafka]\nbootstrap = {:?}\n\n{sections}",
                spec.name, spec.bootstrap
            ),
        )?;
        let out = run_cli(&[
            "creds",
            "init",
            "--config",
            creds_config.to_str().context("utf-8 path")?,
        ])
        .await?;
        if !out.status.success() {
            bail!(
                "creds init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let gw = GatewaySpec::new(&spec.name, &spec.bootstrap)
            .extra(&sections)
            .ready(Ready::GrpcPort);
        let gateway = Gateway::start(&gw).await?;
        Ok(Secure {
            gateway,
            creds_config,
            keys_dir,
            ca: pki.ca(),
        })
    }

    /// `https://127.0.0.1:<grpc port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.gateway.grpc_addr())
    }

    /// `https://127.0.0.1:<http port>/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("https://{}/.well-known/jwks.json", self.gateway.http_addr())
    }

    /// Runs `alertmesh creds <args> --config <creds config>`.
    pub async fn creds(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut all: Vec<String> = vec!["creds".into(), args[0].into()];
        all.extend(["--config".into(), self.creds_config.display().to_string()]);
        all.extend(args[1..].iter().map(|s| (*s).to_owned()));
        run_cli(&all).await
    }

    /// Issues a token with `alertmesh creds issue` (recorded in Kafka).
    pub async fn issue(&self, sub: &str, scopes: &[&str], ttl: &str) -> Result<String> {
        let mut args = vec!["issue", "--sub", sub, "--ttl", ttl];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        let out = self.creds(&args).await?;
        if !out.status.success() {
            bail!(
                "creds issue failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// The gateway's signing keys (to hand-craft tokens with `keyring.current()`).
    pub fn keyring(&self) -> Result<KeyRing> {
        Ok(KeyRing::load(&self.keys_dir)?)
    }

    /// The gateway as `alertmesh-client` reaches it over TLS, with an optional client
    /// certificate and token (see [`endpoint`]).
    pub fn endpoint(
        &self,
        cert: Option<&CertFiles>,
        token: Option<&str>,
    ) -> Result<alertmesh_client::Gateway> {
        endpoint(&self.url(), &self.ca, cert, token)
    }

    /// A TLS client trusting the mesh CA, with an optional client certificate and token.
    pub async fn client(&self, cert: Option<&CertFiles>, token: Option<&str>) -> Result<Client> {
        client(&self.url(), &self.ca, cert, token).await
    }

    /// Scrapes `/metrics` over HTTPS, presenting `cert` (the side port takes the same
    /// client certificates as the gRPC port).
    pub async fn metrics(&self, cert: &CertFiles) -> Result<Metrics> {
        let ca = alertmesh_auth::tls::load_certs(&self.ca)?;
        let identity = (
            alertmesh_auth::tls::load_certs(&cert.cert)?,
            alertmesh_auth::tls::load_key(&cert.key)?,
        );
        let tls = alertmesh_auth::tls::client_config(&ca, Some(identity))?;
        let (status, body) = https_get(&self.gateway.http_addr(), "/metrics", tls).await?;
        ensure!(status == 200, "GET /metrics returned {status}: {body}");
        Ok(Metrics::parse(&body))
    }
}

/// A gRPC client with a bearer token: `alertmesh-client`'s generated client.
pub type Client = alertmesh_client::Grpc;

/// Connects to `url` (https) trusting `ca`, with an optional client certificate and token
/// (sent verbatim after `Bearer `), through `alertmesh-client`.
pub async fn client(
    url: &str,
    ca: &Path,
    cert: Option<&CertFiles>,
    token: Option<&str>,
) -> Result<Client> {
    let connected = endpoint(url, ca, cert, token)?
        .connect()
        .await
        .context("connect over tls")?;
    Ok(connected.into_grpc())
}

/// `url` (https) as `alertmesh-client` reaches it, trusting `ca`, with an optional client
/// certificate and token: ready to connect.
pub fn endpoint(
    url: &str,
    ca: &Path,
    cert: Option<&CertFiles>,
    token: Option<&str>,
) -> Result<alertmesh_client::Gateway> {
    let options = alertmesh_client::Options {
        token: token.map(alertmesh_client::Token::new).transpose()?,
        ca: Some(ca.to_owned()),
        cert: cert.map(|c| c.cert.clone()),
        key: cert.map(|c| c.key.clone()),
        ..Default::default()
    };
    Ok(alertmesh_client::Gateway::new(url, &options)?)
}

/// The `jti` claim of a token (to revoke it by id).
pub fn jti_of(token: &str) -> Result<String> {
    let payload = token.split('.').nth(1).context("not a jwt")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    Ok(claims["jti"].as_str().context("no jti")?.to_owned())
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWS signed by `key` over `header` and `claims` as given (no checks), for tests.
pub fn sign(
    key: &SigningKey,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<String> {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64(&sig)))
}

/// The header alertmesh puts on tokens signed by `key`.
pub fn header(key: &SigningKey) -> serde_json::Value {
    serde_json::json!({"alg": key.algorithm().jose_name(), "typ": "JWT", "kid": key.kid()})
}

/// Claims of a valid token of gateway `gateway` for `sub` with `scope`.
pub fn claims(gateway: &str, sub: &str, scope: &str) -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "iss": gateway, "sub": sub, "aud": gateway, "iat": now, "exp": now + 3600,
        "jti": format!("test-{sub}-{}", rand_suffix()), "scope": scope,
    })
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now());
    h.finish()
}

/// An HS256 token whose "secret" is `secret` (the classic public-key-as-HMAC-key attack).
pub fn hs256(secret: &[u8], claims: &serde_json::Value, kid: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An unsigned (`alg: none`) token.
pub fn unsigned(claims: &serde_json::Value, kid: &str) -> String {
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `token` with its payload replaced by `claims` (signature kept: a tampered payload).
pub fn with_payload(token: &str, claims: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// `token` with one signature character changed.
pub fn with_bad_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').expect("a jws");
    let mut sig: Vec<char> = sig.chars().collect();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
    format!("{head}.{}", sig.into_iter().collect::<String>())
}
