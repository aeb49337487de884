//! The HTTP side port: `/metrics` (Prometheus text), `/healthz` (liveness) and `/readyz`
//! (Kafka reachable), `/.well-known/jwks.json` (this gateway's public keys, with `[auth]`).

use std::sync::Arc;

use axum::extract::State as Axum;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::server::State;

struct Http {
    state: Arc<State>,
    registry: Registry,
}

pub(crate) async fn serve<L>(listener: L, state: Arc<State>, shutdown: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let mut registry = Registry::default();
    state.metrics.register(&mut registry);
    state.mirror_metrics.register(&mut registry);
    let shared = Arc::new(Http { state, registry });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "http server failed");
    }
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
    if http.state.cancel.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Ready to serve: not shutting down, and Kafka answered the last probe.
async fn readyz(Axum(http): Axum<Arc<Http>>) -> impl IntoResponse {
    if http.state.cancel.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !http.state.cluster.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "kafka unreachable\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// This gateway's public signing keys; 404 without `[auth]`.
async fn jwks(Axum(http): Axum<Arc<Http>>) -> impl IntoResponse {
    match &http.state.auth {
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
