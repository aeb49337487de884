//! Wires the gateway together and runs it until shutdown: the gRPC server, the HTTP side
//! port, and the shared state their handlers use.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::cursor::CursorStore;
use crate::error::{Error, Result};
use crate::kafka::cluster::Cluster;
use crate::kafka::Kafka;
use crate::metrics::Metrics;
use crate::service::GatewayService;
use crate::subscription::{self, Subscriptions};
use crate::tail::Tails;
use crate::{http, service};
use alertmesh_alert::{Decoder, SchemaDir};

/// Everything request handlers share.
pub(crate) struct State {
    pub config: Config,
    pub kafka: Kafka,
    /// Metadata look-ups, the readiness probe, and readers.
    pub cluster: Cluster,
    /// The exposed topics.
    pub catalog: Arc<Catalog>,
    /// Subscribe and CommitCursor.
    pub subscriptions: Arc<Subscriptions>,
    pub metrics: Arc<Metrics>,
    pub cancel: CancellationToken,
    /// Payload decoding with cached schemas, shared by every subscription.
    pub decoder: Arc<Decoder>,
    /// Token authentication, when `[auth]` is configured.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Running mirror jobs, in `[[mirrors]]` order.
    pub mirrors: Vec<alertmesh_mirror::MirrorHandle>,
    pub mirror_metrics: crate::mirrors::MirrorMetrics,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("gateway", &self.config.gateway.name)
            .finish_non_exhaustive()
    }
}

impl State {
    pub(crate) fn new(
        config: Config,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let kafka = Kafka::new(
            config.kafka.clone(),
            &config.gateway.name,
            Arc::clone(&metrics),
        );
        let cluster = Cluster::new(
            kafka.clone(),
            Arc::clone(&metrics),
            &config.limits,
            cancel.clone(),
        )?;
        let catalog = Arc::new(Catalog::new(
            &config.gateway.name,
            config.topics.clone(),
            cluster.clone(),
        ));
        let decoder = Arc::new(decoder(&config)?);
        let subscriptions = Arc::new(Subscriptions::new(subscription::Parts {
            gateway: config.gateway.name.clone(),
            catalog: Arc::clone(&catalog),
            cluster: cluster.clone(),
            tails: Tails::new(
                cluster.clone(),
                config.limits.tail_buffer_bytes,
                cancel.clone(),
            ),
            cursors: CursorStore::new(kafka.clone(), cancel.clone()),
            decoder: Arc::clone(&decoder),
            registry: Arc::clone(&config.alert.registry),
            limits: config.limits.clone(),
            metrics: Arc::clone(&metrics),
            cancel: cancel.clone(),
        }));
        Ok(State {
            catalog,
            subscriptions,
            decoder,
            auth: None,
            mirrors: Vec::new(),
            mirror_metrics: crate::mirrors::MirrorMetrics::default(),
            cluster,
            kafka,
            metrics,
            cancel,
            config,
        })
    }
}

/// The payload decoder: Confluent schema ids resolve from `alert.schema_dir` when set.
fn decoder(config: &Config) -> Result<Decoder> {
    match &config.alert.schema_dir {
        None => Ok(Decoder::new()),
        Some(dir) => {
            let schemas = SchemaDir::load(dir)
                .map_err(|e| Error::Internal(format!("alert.schema_dir: {e}")))?;
            Ok(Decoder::with_resolver(Arc::new(schemas)))
        }
    }
}

/// Runs a gateway until `shutdown` is cancelled, then drains open streams for the
/// configured grace period.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Streams are ended through this child token, before the server's own drain starts.
    let streams = shutdown.child_token();
    // Keys and the revocation list are loaded before the ports open.
    let metrics = Arc::new(Metrics::default());
    let auth = crate::auth::start(&config, Arc::clone(&metrics), streams.clone()).await?;
    let grpc = TcpListener::bind(config.gateway.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on gateway.listen {}: {e}",
                config.gateway.listen
            )
        })?;
    let http_listener = TcpListener::bind(config.gateway.http_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on gateway.http_listen {}: {e}",
                config.gateway.http_listen
            )
        })?;
    let grace = config.gateway.shutdown_grace;
    let tls = config.tls.clone();
    let mut state = State::new(config, metrics, streams.clone())?;
    state.auth = auth;
    state.mirrors = crate::mirrors::start(&state, &streams)?;
    let state = Arc::new(state);
    tokio::spawn(crate::mirrors::export(Arc::clone(&state)));
    tracing::info!(
        gateway = %state.config.gateway.name,
        grpc = %grpc.local_addr()?,
        http = %http_listener.local_addr()?,
        topics = state.config.topics.len(),
        "gateway serving"
    );

    let (health_reporter, health_service) = tonic_health::server::health_reporter();

    tokio::spawn(watch_kafka(Arc::clone(&state), health_reporter.clone()));
    let http_task = match &tls {
        Some(tls) => tokio::spawn(http::serve(
            crate::tls::TlsListener::new(http_listener, tls, shutdown.clone())?,
            Arc::clone(&state),
            shutdown.clone(),
        )),
        None => tokio::spawn(http::serve(
            http_listener,
            Arc::clone(&state),
            shutdown.clone(),
        )),
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(crate::tls::grpc_server_config(tls)?)?;
    }
    let server = builder
        .layer(crate::auth::layer::AuthLayer::new(state.auth.clone()))
        .add_service(health_service)
        .add_service(service::server(Arc::clone(&state)))
        .serve_with_incoming_shutdown(
            // Small alerts should not wait for Nagle's algorithm.
            TcpListenerStream::new(grpc).map(|conn| {
                if let Ok(c) = &conn {
                    let _ = c.set_nodelay(true);
                }
                conn
            }),
            shutdown.clone().cancelled_owned(),
        );

    let server = tokio::spawn(server);
    shutdown.cancelled().await;
    tracing::info!(grace = ?grace, "shutting down: ending open streams");
    health_reporter
        .set_not_serving::<alertmesh_proto::v1::alert_mesh_server::AlertMeshServer<GatewayService>>(
        )
        .await;
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "grpc server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "grpc server task failed"),
        Err(_) => tracing::warn!("grace period over; closing remaining connections"),
    }
    let _ = tokio::time::timeout(grace, http_task).await;
    // Mirrors finish their in-flight produces before the process exits.
    let deadline = tokio::time::Instant::now() + grace;
    while state.mirrors.iter().any(|m| !m.is_finished()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// Keeps readiness current: the AlertMesh service reports NOT_SERVING in gRPC health (and
/// `/readyz` 503) while Kafka cannot be reached; liveness (`/healthz`) is unaffected.
async fn watch_kafka(state: Arc<State>, health: tonic_health::server::HealthReporter) {
    type Svc = alertmesh_proto::v1::alert_mesh_server::AlertMeshServer<GatewayService>;
    let mut was = None;
    while !state.cancel.is_cancelled() {
        let ok = state.cluster.probe().await;
        if was != Some(ok) {
            if ok {
                tracing::info!("kafka reachable");
                health.set_serving::<Svc>().await;
            } else {
                tracing::warn!(bootstrap = %state.config.kafka.bootstrap, "kafka unreachable");
                health.set_not_serving::<Svc>().await;
            }
            was = Some(ok);
        }
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
