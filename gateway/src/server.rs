//! Wires the gateway together and runs it until shutdown: builds each part with the
//! handles it needs, serves the gRPC and HTTP ports, and on shutdown waits for every task
//! it started (streams, tails, mirrors, the ports) for the grace period.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::cursor::CursorStore;
use crate::fetch::Fetcher;
use crate::kafka::cluster::Cluster;
use crate::kafka::Kafka;
use crate::metrics::{Metrics, Port};
use crate::publish::Publisher;
use crate::registry::Schemas;
use crate::service::MeshService;
use crate::subscription::{self, Subscriptions};
use crate::tail::Tails;
use crate::{http, mirrors, service};
use alertmesh_alert::Decoder;

/// Runs a gateway until `shutdown` is cancelled, then drains open streams for the
/// configured grace period.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Streams, readers and mirrors end through this child token.
    let streams = shutdown.child_token();
    // Every task the gateway starts, awaited on shutdown.
    let tasks = TaskTracker::new();
    // Keys and the revocation list are loaded before the ports open.
    let metrics = Arc::new(Metrics::default());
    let auth = crate::auth::start(&config, Arc::clone(&metrics), streams.clone(), &tasks).await?;
    crate::listen::raise_open_file_limit(config.limits.max_connections);
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
    let gw = &config.gateway;

    let kafka = Kafka::new(config.kafka.clone(), &gw.name, Arc::clone(&metrics));
    let cluster = Cluster::new(
        kafka.clone(),
        Arc::clone(&metrics),
        &config.limits,
        streams.clone(),
    )?;
    let schemas = Schemas::new(&config)?;
    let decoder = Arc::new(Decoder::with_resolver(Arc::new(schemas.clone())));
    let catalog = Arc::new(Catalog::new(
        &gw.name,
        config.topics.clone(),
        cluster.clone(),
    ));
    let subscriptions = Arc::new(Subscriptions::new(subscription::Parts {
        gateway: gw.name.clone(),
        catalog: Arc::clone(&catalog),
        cluster: cluster.clone(),
        tails: Tails::new(
            cluster.clone(),
            config.limits.tail_buffer_bytes,
            streams.clone(),
            tasks.clone(),
        ),
        cursors: CursorStore::new(
            kafka.clone(),
            config.limits.max_cursors_per_principal,
            streams.clone(),
        ),
        decoder: Arc::clone(&decoder),
        registry: Arc::clone(&config.alert.registry),
        limits: config.limits.clone(),
        metrics: Arc::clone(&metrics),
        cancel: streams.clone(),
        tasks: tasks.clone(),
    }));
    let mirrors = Arc::new(mirrors::start(
        &config,
        &kafka,
        Arc::clone(&decoder),
        &streams,
    )?);
    tasks.spawn(Arc::clone(&mirrors).export(streams.clone()));
    // Weak: the mirrors hold the decoder, which holds the schemas.
    let watched = Arc::downgrade(&mirrors);
    schemas.watch_mirrors(move |name| watched.upgrade()?.destination_of(name));
    let mut queries = crate::query::Queries::new(&config, streams.clone(), tasks.clone());
    queries.add_archives(&config, &decoder);
    let queries = Arc::new(queries);
    crate::archive::start(
        &config,
        &kafka,
        Arc::clone(&decoder),
        Arc::clone(&metrics),
        &streams,
        &tasks,
    );
    tasks.spawn(Arc::clone(&mirrors).watch(streams.clone()));
    // Fetch calls and provenance walks share the Fetch reads.
    let fetch_reads = Arc::new(tokio::sync::Semaphore::new(config.limits.max_fetches));
    let service = service::server(service::Parts {
        gateway: gw.name.clone(),
        advertised_url: gw.advertised_url.clone(),
        http_url: gw.advertised_http_url(config.tls.is_some()),
        auth: auth.clone(),
        catalog: Arc::clone(&catalog),
        subscriptions,
        provenance: crate::provenance::Provenance {
            gateway: gw.name.clone(),
            fetcher: Fetcher {
                gateway: gw.name.clone(),
                catalog: Arc::clone(&catalog),
                cluster: cluster.clone(),
                decoder: Arc::clone(&decoder),
                registry: Arc::clone(&config.alert.registry),
                reads: Arc::clone(&fetch_reads),
            },
            mirrors: Arc::clone(&mirrors),
            names: Default::default(),
        },
        fetcher: Fetcher {
            gateway: gw.name.clone(),
            catalog: Arc::clone(&catalog),
            cluster: cluster.clone(),
            decoder: Arc::clone(&decoder),
            registry: Arc::clone(&config.alert.registry),
            reads: fetch_reads,
        },
        publisher: Arc::new(Publisher::new(
            gw.name.clone(),
            Arc::clone(&catalog),
            cluster.clone(),
            decoder,
            Arc::clone(&config.alert.registry),
            &config.limits,
            Arc::clone(&metrics),
        )),
        admin: Admin {
            auth: auth.clone(),
            gateway: gw.name.clone(),
            http_url: gw.advertised_http_url(config.tls.is_some()),
        },
        mirrors: Arc::clone(&mirrors),
        schemas: schemas.clone(),
        queries,
        tasks: tasks.clone(),
    });
    let (grpc_addr, http_addr) = (grpc.local_addr()?, http_listener.local_addr()?);
    tracing::info!(
        gateway = %gw.name,
        grpc = %grpc_addr,
        http = %http_addr,
        topics = config.topics.len(),
        "gateway serving"
    );
    let limits = &config.limits;
    let accept = |listener, port| {
        crate::listen::accept(
            listener,
            port,
            crate::listen::Caps {
                total: limits.max_connections,
                per_ip: limits.max_connections_per_ip,
            },
            &metrics,
            shutdown.clone(),
            &tasks,
        )
    };
    let http_conns = accept(http_listener, Port::http);
    let grpc_conns = accept(grpc, Port::grpc);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    tasks.spawn(service::watch_kafka(
        cluster.clone(),
        health_reporter.clone(),
        config.kafka.bootstrap.clone(),
        streams.clone(),
    ));
    let side = http::Parts {
        metrics,
        mirrors: Arc::clone(&mirrors),
        cluster,
        auth: auth.clone(),
        certificate_only: crate::auth::certificate_only(&config).map(|_| {
            Arc::new(
                config
                    .topics
                    .iter()
                    .filter(|t| t.public)
                    .map(|t| t.name.clone())
                    .collect(),
            )
        }),
        stopping: streams.clone(),
        schemas,
    };
    match &config.tls {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(http_conns, tls, shutdown.clone(), &tasks)?;
            tasks.spawn(http::serve(
                listener,
                side,
                shutdown.clone(),
                limits.header_timeout,
            ));
        }
        None => {
            tasks.spawn(http::serve(
                crate::listen::ConnListener::new(http_conns, http_addr),
                side,
                shutdown.clone(),
                limits.header_timeout,
            ));
        }
    }
    // Bounds a client cannot lift: streams per connection, request bytes buffered
    // gateway-wide and how long a request may take to arrive; keepalive pings find dead
    // peers, and connections that say nothing are closed (conn_guard).
    let builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    let conns = crate::conn_guard::ConnGuard::new(limits.header_timeout, limits.idle_timeout);
    let router = builder
        .layer(conns.layer())
        .layer(service::RequestLimitLayer::new(
            limits.request_buffer_bytes,
            limits.request_timeout,
        ))
        .layer(crate::auth::layer::AuthLayer::new(
            auth,
            crate::auth::certificate_only(&config),
        ))
        .add_service(health_service)
        .add_service(service);
    // Small alerts should not wait for Nagle's algorithm.
    let incoming = ReceiverStream::new(grpc_conns).map(move |c| {
        let _ = c.set_nodelay(true);
        Ok::<_, std::io::Error>(conns.guard(c))
    });
    let stopped = shutdown.clone().cancelled_owned();
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> = match &config.tls {
        Some(tls) => {
            let incoming = crate::tls::grpc_incoming(incoming, tls, shutdown.clone(), &tasks)?;
            Box::pin(router.serve_with_incoming_shutdown(incoming, stopped))
        }
        None => Box::pin(router.serve_with_incoming_shutdown(incoming, stopped)),
    };
    tasks.spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "grpc server ended with an error");
        }
    });

    shutdown.cancelled().await;
    let grace = gw.shutdown_grace;
    tracing::info!(grace = ?grace, "shutting down: ending open streams");
    health_reporter.set_not_serving::<MeshService>().await;
    // Mirrors finish their in-flight produces before the process exits.
    tasks.spawn(async move { mirrors.join().await });
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "grace period over; closing remaining connections"
        );
    }
    tracing::info!("gateway stopped");
    Ok(())
}
