//! The HTTP side port: `/metrics` (Prometheus text), `/healthz` (liveness) and `/readyz`
//! (Kafka reachable), `/.well-known/jwks.json` (this gateway's public keys, with `[auth]`),
//! and the read-only schema registry API (`/schemas/...`, `/subjects/...`, see
//! [`crate::registry::api`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as Axum;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer as _;

use crate::auth::Auth;
use crate::kafka::cluster::Cluster;
use crate::metrics::Metrics;
use crate::mirrors::Mirrors;
use crate::registry::{api, Schemas};

/// What the side port reports on.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) mirrors: Arc<Mirrors>,
    /// Whether Kafka answered the last probe.
    pub(crate) cluster: Cluster,
    /// This gateway's keys, when `[auth]` is configured.
    pub(crate) auth: Option<Arc<Auth>>,
    /// Without `[auth]`, where the client certificate is the only credential
    /// ([`crate::auth::certificate_only`]): the public topics, all a caller without one
    /// may read.
    pub(crate) certificate_only: Option<Arc<std::collections::HashSet<String>>>,
    /// Cancelled when the gateway starts stopping.
    pub(crate) stopping: CancellationToken,
    /// The schemas served by the registry API.
    pub(crate) schemas: Schemas,
}

/// The certificate (DER) the client of a side-port connection presented, if any: in each
/// request's extensions, for the registry API's auth.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientCert(pub(crate) Option<Arc<[u8]>>);

/// A listener's peer address, and the client certificate it carries (HTTPS only).
pub(crate) trait PeerCert {
    fn cert(&self) -> Option<Arc<[u8]>>;
}

impl PeerCert for std::net::SocketAddr {
    fn cert(&self) -> Option<Arc<[u8]>> {
        None
    }
}

impl PeerCert for crate::tls::Peer {
    fn cert(&self) -> Option<Arc<[u8]>> {
        self.cert.clone()
    }
}

struct Http {
    parts: Parts,
    registry: Registry,
}

/// Serves the side port on `listener` until `shutdown`. A connection must send its
/// request headers within `header_timeout` (also between keep-alive requests, so idle
/// connections close): the side port faces the same clients as the gRPC port.
pub(crate) async fn serve<L>(
    mut listener: L,
    parts: Parts,
    shutdown: CancellationToken,
    header_timeout: Duration,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug + PeerCert,
{
    let mut registry = Registry::default();
    parts.metrics.register(&mut registry);
    parts.mirrors.metrics().register(&mut registry);
    parts.schemas.metrics().register(&mut registry);
    let schema_api = api::routes(api::Api {
        schemas: parts.schemas.clone(),
        auth: parts.auth.clone(),
        certificate_only: parts.certificate_only.clone(),
    });
    let shared = Arc::new(Http { parts, registry });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(shared)
        .merge(schema_api);
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let cert = ClientCert(peer.cert());
        let service = TowerToHyperService::new(Extension(cert).layer(app.clone()));
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "http connection ended");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn metrics(Axum(http): Axum<Arc<Http>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &http.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}

async fn healthz(Axum(http): Axum<Arc<Http>>) -> impl IntoResponse {
    if http.parts.stopping.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Ready to serve: not shutting down, and Kafka answered the last probe.
async fn readyz(Axum(http): Axum<Arc<Http>>) -> impl IntoResponse {
    if http.parts.stopping.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !http.parts.cluster.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "kafka unreachable\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// This gateway's public signing keys; 404 without `[auth]`.
async fn jwks(Axum(http): Axum<Arc<Http>>) -> impl IntoResponse {
    match &http.parts.auth {
        Some(auth) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/jwk-set+json")],
            auth.jwks_json(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this gateway has no [auth] section, so no keys\n".to_owned(),
        ),
    }
}
