//! Authentication and authorization of gRPC calls.
//!
//! - [`Auth`]: this gateway's keys (issuer and verifier), trusted peers' JWKS, and the
//!   credentials store; [`Auth::authenticate`] turns a bearer token and a client
//!   certificate into a [`Caller`].
//! - [`layer`]: the tower layer that authenticates every call once and puts the [`Caller`]
//!   in the request extensions (the health service stays open).
//! - [`authorize_topic`], [`require_admin`]: the per-method scope checks handlers make.
//! - [`stream`]: ends an open stream within seconds of its token's revocation or expiry.
//! - [`jwks`]: fetching a peer's JWKS over HTTPS with the mesh CA.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alertmesh_auth::{
    bearer_token, Action, Issuer, JwksRefreshLimiter, KeyRing, Principal, Scope, TokenError,
    VerifiedToken, Verifier,
};
use tokio_util::sync::CancellationToken;

use crate::config::{AuthConfig, Config, TrustedPeer};
use crate::creds::CredentialStore;
use crate::error::{Error, Result};
use crate::kafka::Kafka;
use crate::metrics::RefusalReason;

pub(crate) mod jwks;
pub(crate) mod layer;
pub(crate) mod stream;

/// At most one JWKS fetch (or own keyring reload) per issuer per this many seconds when a
/// token names an unknown key.
const UNKNOWN_KID_REFRESH_SECS: u64 = 5;

/// Starts authentication when `[auth]` is configured: keys, credentials store, and a
/// background task on `tasks` that refreshes peers' JWKS and picks up rotated keys.
pub(crate) async fn start(
    config: &Config,
    metrics: Arc<crate::metrics::Metrics>,
    cancel: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<Option<Arc<Auth>>> {
    if config.auth.is_none() {
        return Ok(None);
    }
    let kafka = Kafka::new(
        config.kafka.clone(),
        &config.gateway.name,
        Arc::clone(&metrics),
    );
    let auth = Arc::new(Auth::start(config, kafka, metrics, cancel.clone()).await?);
    tasks.spawn(Arc::clone(&auth).refresh_forever(cancel));
    Ok(Some(auth))
}

/// Who is calling, as established by [`Auth::authenticate`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The principal whose scopes the call is checked against.
    pub principal: Principal,
    /// The verified token, when the call carried one.
    pub token: Option<Arc<VerifiedToken>>,
}

impl Caller {
    /// A caller on a gateway without `[auth]`: reads every topic.
    pub(crate) fn open() -> Self {
        Caller {
            principal: Principal::anonymous(),
            token: None,
        }
    }

    /// A caller without any credential where one is required: public topics only.
    pub(crate) fn public_only() -> Self {
        Caller::without_token(true)
    }

    /// A caller without a token on a gateway with `[auth]`: with `require`, it has no
    /// scope (public topics remain readable); without, it reads every topic.
    fn without_token(require: bool) -> Self {
        let mut principal = Principal::anonymous();
        if require {
            principal.scopes.clear();
        }
        Caller {
            principal,
            token: None,
        }
    }
}

/// The gateway's name when `tls.client_ca` is set without `[auth]`: the client certificate
/// is then the only credential, so a gRPC call without one is refused
/// ([`layer::AuthLayer`]) and the registry API serves it public topics only. Without this,
/// nothing checked: the handshake lets a client without a certificate in, for the token
/// check that `[auth]` adds.
pub(crate) fn certificate_only(config: &crate::config::Config) -> Option<Arc<str>> {
    let mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    (mtls && config.auth.is_none()).then(|| Arc::from(config.gateway.name.as_str()))
}

/// The refusal of a call that came without the client certificate `gateway` requires.
pub(crate) fn certificate_missing(gateway: &str) -> Error {
    Error::Unauthenticated(format!(
        "gateway {gateway} requires a client certificate signed by its mesh ca; pass --cert and --key"
    ))
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The gateway's authentication state.
pub(crate) struct Auth {
    gateway: String,
    config: AuthConfig,
    mtls: bool,
    public: HashSet<String>,
    verifier: RwLock<Verifier>,
    issuer: RwLock<Arc<Issuer>>,
    jwks_json: RwLock<String>,
    /// When `keyring.json` was last read (to pick up `creds rotate`).
    keyring_mtime: Mutex<Option<SystemTime>>,
    limiter: Mutex<JwksRefreshLimiter>,
    peers: Vec<(TrustedPeer, Arc<jwks::Fetcher>)>,
    pub store: CredentialStore,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("gateway", &self.gateway)
            .field("require", &self.config.require)
            .field("mtls", &self.mtls)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Loads the keys, builds peer fetchers and loads the credentials topic. Trusted peers'
    /// JWKS are fetched by [`Auth::refresh_forever`].
    pub(crate) async fn start(
        config: &Config,
        kafka: Kafka,
        metrics: Arc<crate::metrics::Metrics>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let auth = config
            .auth
            .clone()
            .ok_or_else(|| Error::Internal("no [auth] section".into()))?;
        let name = config.gateway.name.clone();
        let (verifier, issuer, jwks_json) = load_keys(&name, &auth)?;
        let mut verifier = verifier;
        let mut peers = Vec::new();
        let mesh_ca = config.tls.as_ref().and_then(|t| t.client_ca.clone());
        for peer in &auth.trusted_peers {
            // Known issuer without keys yet: its tokens get UnknownKey, which fetches.
            verifier.trust(peer.name.clone(), Vec::new());
            let ca: PathBuf = peer.ca.clone().or_else(|| mesh_ca.clone()).ok_or_else(|| {
                Error::Internal(format!("auth.trusted_peers {}: no ca", peer.name))
            })?;
            let fetcher = jwks::Fetcher::new(&peer.jwks_url, &ca)
                .map_err(|e| Error::Internal(format!("auth.trusted_peers {}: {e}", peer.name)))?;
            peers.push((peer.clone(), Arc::new(fetcher)));
        }
        let store = CredentialStore::open(kafka, cancel).await?;
        Ok(Auth {
            mtls: config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            public: config
                .topics
                .iter()
                .filter(|t| t.public)
                .map(|t| t.name.clone())
                .collect(),
            keyring_mtime: Mutex::new(keyring_mtime(&auth)),
            limiter: Mutex::new(JwksRefreshLimiter::new(UNKNOWN_KID_REFRESH_SECS)),
            verifier: RwLock::new(verifier),
            issuer: RwLock::new(Arc::new(issuer)),
            jwks_json: RwLock::new(jwks_json),
            gateway: name,
            config: auth,
            peers,
            store,
            metrics,
        })
    }

    /// Counts a refusal (by reason, for `/metrics`) and passes its error on.
    fn refuse(&self, reason: RefusalReason, e: Error) -> Error {
        self.metrics.refused(reason);
        e
    }

    /// Refuses a call that needs a token and came without one; `why` says what needs it.
    fn token_missing(&self, why: &str) -> Error {
        self.refuse(
            RefusalReason::token_missing,
            Error::Unauthenticated(format!("{why}: {}", TokenError::Missing)),
        )
    }

    /// Whether every call needs a token (except public topics and open methods).
    pub(crate) fn require(&self) -> bool {
        self.config.require
    }

    /// Whether clients must present a certificate from `tls.client_ca`.
    pub(crate) fn mtls(&self) -> bool {
        self.mtls
    }

    /// The clock-skew leeway, seconds.
    pub(crate) fn leeway(&self) -> u64 {
        self.config.leeway_secs
    }

    /// Whether `topic` is readable without a token.
    pub(crate) fn is_public(&self, topic: &str) -> bool {
        self.public.contains(topic)
    }

    /// The JWKS document of this gateway's keys (`/.well-known/jwks.json`).
    pub(crate) fn jwks_json(&self) -> String {
        self.jwks_json
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The issuer signing with the current key.
    pub(crate) fn issuer(&self) -> Arc<Issuer> {
        Arc::clone(&self.issuer.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The gateway name (the `iss` of tokens it issues, and their default `aud`).
    pub(crate) fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Authenticates one call from its `authorization` header value and the leaf
    /// certificate the client presented (DER), if any.
    pub(crate) async fn authenticate(
        &self,
        authorization: Option<&str>,
        client_cert: Option<&[u8]>,
    ) -> Result<Caller> {
        if self.mtls && client_cert.is_none() {
            return Err(self.refuse(
                RefusalReason::client_certificate,
                certificate_missing(&self.gateway),
            ));
        }
        self.caller(authorization, client_cert, self.config.require)
            .await
    }

    /// Authenticates a request to the schema registry API of the HTTP side port. Schemas
    /// of public topics are public, so unlike a gRPC call it needs no client certificate
    /// where mutual TLS is required; but a caller without a certificate and without a
    /// token then reads public topics only, whatever `require` says (only mesh members
    /// read as anonymous). A token is verified and its scopes apply as on gRPC, and a
    /// peer's token still needs that peer's certificate.
    pub(crate) async fn authenticate_schema_reader(
        &self,
        authorization: Option<&str>,
        client_cert: Option<&[u8]>,
    ) -> Result<Caller> {
        let anonymous_public_only = self.config.require || (self.mtls && client_cert.is_none());
        self.caller(authorization, client_cert, anonymous_public_only)
            .await
    }

    /// The caller of a verified token, or without one an anonymous caller that reads
    /// public topics only (`public_only`) or every topic.
    async fn caller(
        &self,
        authorization: Option<&str>,
        client_cert: Option<&[u8]>,
        public_only: bool,
    ) -> Result<Caller> {
        let token = match bearer_token(authorization) {
            Ok(t) => t,
            Err(TokenError::Missing) => return Ok(Caller::without_token(public_only)),
            Err(e) => return Err(self.refuse(token_refusal(&e), e.into())),
        };
        let verified = match self.verify(token) {
            Err(TokenError::UnknownKey { issuer, .. }) if self.refresh_issuer(&issuer).await => {
                self.verify(token)
            }
            other => other,
        }
        .map_err(|e| self.refuse(token_refusal(&e), e.into()))?;
        if verified.issuer != self.gateway {
            let Some(cert) = client_cert else {
                return Err(self.refuse(
                    RefusalReason::peer_identity,
                    Error::Unauthenticated(format!(
                        "a token issued by peer {:?} must come with that peer's client certificate (mutual tls)",
                        verified.issuer
                    )),
                ));
            };
            alertmesh_auth::tls::check_peer_identity(cert, &verified.principal.name)
                .map_err(|e| self.refuse(RefusalReason::peer_identity, e.into()))?;
        }
        if !verified.ignored_scopes.is_empty() {
            tracing::debug!(sub = %verified.principal.name, ignored = ?verified.ignored_scopes, "token has unknown scopes");
        }
        Ok(Caller {
            principal: verified.principal.clone(),
            token: Some(Arc::new(verified)),
        })
    }

    fn verify(&self, token: &str) -> std::result::Result<VerifiedToken, TokenError> {
        let verifier = self.verifier.read().unwrap_or_else(|p| p.into_inner());
        verifier.verify(token, unix_now(), &self.store)
    }

    /// After an unknown kid: reloads the own keyring or fetches the peer's JWKS, at most
    /// once per issuer per few seconds. Whether new keys were loaded.
    async fn refresh_issuer(&self, issuer: &str) -> bool {
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_acquire(issuer, unix_now());
        if !allowed {
            return false;
        }
        if issuer == self.gateway {
            return self.reload_keys(true);
        }
        match self.peers.iter().find(|(p, _)| p.name == issuer) {
            Some((peer, fetcher)) => self.fetch_peer(peer, fetcher).await,
            None => false,
        }
    }

    async fn fetch_peer(&self, peer: &TrustedPeer, fetcher: &jwks::Fetcher) -> bool {
        match fetcher.fetch().await {
            Ok(set) => {
                let n = self
                    .verifier
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .trust_jwks(peer.name.clone(), &set);
                tracing::debug!(peer = %peer.name, keys = n, "peer jwks loaded");
                true
            }
            Err(e) => {
                tracing::warn!(peer = %peer.name, url = %peer.jwks_url, error = %e, "cannot fetch peer jwks");
                false
            }
        }
    }

    /// Reloads the keys directory when `keyring.json` changed (or always with `force`).
    pub(crate) fn reload_keys(&self, force: bool) -> bool {
        let mtime = keyring_mtime(&self.config);
        {
            let mut last = self.keyring_mtime.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *last == mtime {
                return false;
            }
            *last = mtime;
        }
        match load_keys(&self.gateway, &self.config) {
            Ok((_, issuer, jwks_json)) => {
                let keys = issuer.keyring().verifying_keys();
                self.verifier
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .trust(self.gateway.clone(), keys);
                *self.issuer.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(issuer);
                *self.jwks_json.write().unwrap_or_else(|p| p.into_inner()) = jwks_json;
                tracing::info!(kid = %self.issuer().keyring().current().kid(), "signing keys reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload signing keys");
                false
            }
        }
    }

    /// Fetches every trusted peer's JWKS now and then every `jwks_refresh_secs` (sooner
    /// while a peer cannot be reached), and picks up rotated own keys, until `cancel`.
    pub(crate) async fn refresh_forever(self: Arc<Self>, cancel: CancellationToken) {
        let every = Duration::from_secs(self.config.jwks_refresh_secs);
        let mut next_fetch = vec![tokio::time::Instant::now(); self.peers.len()];
        loop {
            let now = tokio::time::Instant::now();
            for (i, (peer, fetcher)) in self.peers.iter().enumerate() {
                if now >= next_fetch[i] {
                    let ok = self.fetch_peer(peer, fetcher).await;
                    next_fetch[i] = now
                        + if ok {
                            every
                        } else {
                            every.min(Duration::from_secs(5))
                        };
                }
            }
            self.reload_keys(false);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

fn keyring_mtime(config: &AuthConfig) -> Option<SystemTime> {
    std::fs::metadata(config.keys_dir.join("keyring.json"))
        .and_then(|m| m.modified())
        .ok()
}

fn load_keys(name: &str, config: &AuthConfig) -> Result<(Verifier, Issuer, String)> {
    let ring = KeyRing::load(&config.keys_dir).map_err(|e| {
        Error::Internal(format!(
            "auth.keys_dir: {e}; create the keys with `alertmesh creds init --config FILE`"
        ))
    })?;
    let mut verifier = Verifier::new(name).with_leeway(config.leeway_secs);
    verifier.trust_keyring(name, &ring);
    let jwks_json = ring.jwks().to_json();
    let issuer = Issuer::new(name, ring).with_max_ttl(config.max_ttl_secs);
    Ok((verifier, issuer, jwks_json))
}

/// Checks that `caller` may do `action` on `topic`. Without `[auth]` everyone may.
pub(crate) fn authorize_topic(
    auth: Option<&Auth>,
    caller: &Caller,
    action: Action,
    topic: &str,
) -> Result<()> {
    let Some(auth) = auth else { return Ok(()) };
    if auth.is_public(topic) {
        return Ok(());
    }
    if caller.token.is_none() && auth.require() {
        return Err(auth.token_missing(&format!("topic {topic:?} is not public")));
    }
    caller
        .principal
        .require(action, topic)
        .map_err(|e| auth.refuse(RefusalReason::scope, e.into()))
}

/// Whether `caller` may see `topic` in listings: without `[auth]` every topic, else the
/// public ones and those its scopes cover with any action (uncounted: not a refusal).
pub(crate) fn may_see_topic(auth: Option<&Auth>, caller: &Caller, topic: &str) -> bool {
    let Some(auth) = auth else { return true };
    if auth.is_public(topic) {
        return true;
    }
    if caller.token.is_none() && auth.require() {
        return false;
    }
    [Action::Subscribe, Action::Fetch, Action::Publish]
        .into_iter()
        .any(|a| caller.principal.may(a, topic))
}

/// Whether `caller` may use the query `name` ([`authorize_query`] without counting a
/// refusal: for listings).
pub(crate) fn authorize_query_quietly(
    auth: Option<&Auth>,
    caller: &Caller,
    name: &str,
    public: bool,
) -> bool {
    let Some(auth) = auth else { return true };
    public
        || !(caller.token.is_none() && auth.require()) && caller.principal.may(Action::Query, name)
}

/// Checks that `caller` may publish to `topic`. Public topics are readable without a
/// token, never writable: with `[auth]` publishing always takes a token with
/// `publish:<topic glob>`. Without `[auth]` everyone may.
pub(crate) fn authorize_publish(auth: Option<&Auth>, caller: &Caller, topic: &str) -> Result<()> {
    let Some(auth) = auth else { return Ok(()) };
    let Some(token) = &caller.token else {
        return Err(auth.token_missing(&format!(
            "publishing to topic {topic:?} needs a token with the scope publish:{topic}"
        )));
    };
    // A trusted peer vouches for its users' reads, not for what is written here.
    if token.issuer != auth.gateway {
        return Err(auth.refuse(
            RefusalReason::scope,
            Error::PermissionDenied(format!(
                "publishing needs a token issued by this gateway ({}); a token issued by peer \
                 {:?} grants reads only",
                auth.gateway, token.issuer
            )),
        ));
    }
    caller
        .principal
        .require(Action::Publish, topic)
        .map_err(|e| auth.refuse(RefusalReason::scope, e.into()))
}

/// Checks that `caller` may stream (and fetch rows of) the declared query `name`
/// (`public` in its `[[queries]]` entry, or a `query:<glob>` scope).
pub(crate) fn authorize_query(
    auth: Option<&Auth>,
    caller: &Caller,
    name: &str,
    public: bool,
) -> Result<()> {
    let Some(auth) = auth else { return Ok(()) };
    if public {
        return Ok(());
    }
    if caller.token.is_none() && auth.require() {
        return Err(auth.token_missing(&format!("query {name:?} is not public")));
    }
    caller
        .principal
        .require(Action::Query, name)
        .map_err(|e| auth.refuse(RefusalReason::scope, e.into()))
}

/// Checks that `caller` holds `admin` in a token this gateway issued. Without `[auth]` no
/// one does. A trusted peer vouches for its own users' reads here, not for who administers
/// this gateway: its tokens grant no admin (else whoever runs the peer could mint tokens
/// of this gateway with any scope, or revoke its users).
pub(crate) fn require_admin(auth: Option<&Auth>, caller: &Caller) -> Result<()> {
    let Some(auth) = auth else {
        return Err(Error::PermissionDenied(
            "this gateway has no [auth] section, so it has no admin; configure auth first".into(),
        ));
    };
    let Some(token) = &caller.token else {
        return Err(auth.token_missing("admin calls need a token with the admin scope"));
    };
    if token.issuer != auth.gateway {
        return Err(auth.refuse(
            RefusalReason::scope,
            Error::PermissionDenied(format!(
                "admin calls need a token issued by this gateway ({}); a token issued by peer \
                 {:?} grants no admin here",
                auth.gateway, token.issuer
            )),
        ));
    }
    caller
        .principal
        .require_scope(&Scope::Admin)
        .map_err(|e| auth.refuse(RefusalReason::scope, e.into()))
}

/// The refusal reason of a token that failed verification.
fn token_refusal(e: &TokenError) -> RefusalReason {
    match e {
        TokenError::Missing => RefusalReason::token_missing,
        TokenError::Expired { .. }
        | TokenError::NotYetValid { .. }
        | TokenError::IssuedInFuture { .. } => RefusalReason::token_time,
        TokenError::Revoked { .. } | TokenError::SubjectRevoked { .. } => {
            RefusalReason::token_revoked
        }
        _ => RefusalReason::token_invalid,
    }
}

/// The caller of a request: set by [`layer`], else an open gateway's anonymous reader.
pub(crate) fn caller<T>(req: &tonic::Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::open)
}
