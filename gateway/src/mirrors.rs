//! The gateway's mirror jobs: started from `[[mirrors]]`, reported by `MirrorStatus`,
//! `/metrics` and `DescribeGateway` (their sources are this gateway's peers).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alertmesh_alert::Decoder;
use alertmesh_mirror::{Mirror, MirrorEnv, MirrorHandle, MirrorState, Source};
use alertmesh_proto::v1;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MirrorConfig, TrustedPeer};
use crate::error::{Error, Result};
use crate::kafka::Kafka;

/// The gateway's mirror jobs, in `[[mirrors]]` order.
#[derive(Debug)]
pub(crate) struct Mirrors {
    /// Taken at shutdown, to wait for each job to finish.
    handles: Mutex<Vec<MirrorHandle>>,
    configs: Vec<MirrorConfig>,
    /// Per mirror, its source gateway reached with the mirror's credentials.
    sources: Vec<Option<alertmesh_client::Gateway>>,
    trusted_peers: Vec<TrustedPeer>,
    metrics: MirrorMetrics,
}

/// Starts every configured mirror. A gateway source's token and TLS files are read now, so
/// a missing file stops the gateway at startup with the mirror's name.
pub(crate) fn start(
    config: &Config,
    kafka: &Kafka,
    decoder: Arc<Decoder>,
    cancel: &CancellationToken,
) -> Result<Mirrors> {
    let env = MirrorEnv {
        gateway: config.gateway.name.clone(),
        kafka: kafka.client_config(),
        registry: Arc::clone(&config.alert.registry),
        decoder,
        timeout: kafka.timeout(),
        cancel: cancel.clone(),
    };
    let specs = config
        .mirrors
        .iter()
        .map(with_credentials)
        .collect::<Result<Vec<_>>>()?;
    let sources = specs
        .iter()
        .map(|s| match &s.source {
            Source::Gateway(g) => alertmesh_client::Gateway::new(&g.url, &g.options).ok(),
            Source::Kafka(_) => None,
        })
        .collect();
    let handles = specs
        .into_iter()
        .map(|s| Mirror::start(s, env.clone()))
        .collect();
    Ok(Mirrors {
        handles: Mutex::new(handles),
        configs: config.mirrors.clone(),
        sources,
        trusted_peers: config
            .auth
            .as_ref()
            .map(|a| a.trusted_peers.clone())
            .unwrap_or_default(),
        metrics: MirrorMetrics::default(),
    })
}

impl Mirrors {
    fn handles(&self) -> MutexGuard<'_, Vec<MirrorHandle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every mirror's status on the wire.
    pub(crate) fn infos(&self) -> Vec<v1::MirrorInfo> {
        self.handles().iter().map(info).collect()
    }

    /// The gateways this one knows: its mirrors' sources and its trusted peers.
    pub(crate) fn peers(&self) -> Vec<v1::Peer> {
        let mut out: Vec<v1::Peer> = Vec::new();
        for (h, m) in self.handles().iter().zip(&self.configs) {
            if let Source::Gateway(g) = &m.spec.source {
                let name = h
                    .status()
                    .source_gateway
                    .map(|(n, _)| n)
                    .unwrap_or_default();
                if !out.iter().any(|p| p.url == g.url) {
                    out.push(v1::Peer {
                        name,
                        url: g.url.clone(),
                        relation: "mirror-source".into(),
                    });
                }
            }
        }
        for t in &self.trusted_peers {
            out.push(v1::Peer {
                name: t.name.clone(),
                url: t.jwks_url.clone(),
                relation: "trusted".into(),
            });
        }
        out
    }

    /// The gateways this one mirrors from, with the mirrors' credentials: (the gateway's
    /// name once its mirror has connected, else empty; how to reach it).
    pub(crate) fn source_gateways(&self) -> Vec<(String, alertmesh_client::Gateway)> {
        let handles = self.handles();
        self.sources
            .iter()
            .zip(handles.iter())
            .filter_map(|(g, h)| {
                let name = h
                    .status()
                    .source_gateway
                    .map(|(n, _)| n)
                    .unwrap_or_default();
                g.clone().map(|g| (name, g))
            })
            .collect()
    }

    /// Mirror figures for Prometheus.
    pub(crate) fn metrics(&self) -> &MirrorMetrics {
        &self.metrics
    }

    /// Refreshes the mirror metrics every second until `cancel`.
    pub(crate) async fn export(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            for h in self.handles().iter() {
                self.metrics.update(h);
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Waits for every job to exit (once cancelled, each finishes its in-flight produces
    /// and records its position first).
    pub(crate) async fn join(&self) {
        let handles = std::mem::take(&mut *self.handles());
        for h in handles {
            h.join().await;
        }
    }
}

fn with_credentials(m: &MirrorConfig) -> Result<alertmesh_mirror::MirrorSpec> {
    let mut spec = m.spec.clone();
    if let Source::Gateway(g) = &mut spec.source {
        g.options = source_options(m)
            .map_err(|e| Error::Internal(format!("mirror {}: {e}", spec_name(m))))?;
        // Checks the URL and loads the TLS files now, so a bad one stops the gateway.
        alertmesh_client::Gateway::new(&g.url, &g.options)
            .map_err(|e| Error::Internal(format!("mirror {}: {e}", spec_name(m))))?;
    }
    Ok(spec)
}

/// How a gateway source is reached: its token (read now) and TLS files.
pub(crate) fn source_options(
    m: &MirrorConfig,
) -> std::result::Result<alertmesh_client::Options, alertmesh_client::Error> {
    Ok(alertmesh_client::Options {
        token: m
            .token_file
            .as_ref()
            .map(alertmesh_client::Token::from_file)
            .transpose()?,
        ca: m.ca.clone(),
        cert: m.cert.clone(),
        key: m.key.clone(),
        ..Default::default()
    })
}

fn spec_name(m: &MirrorConfig) -> &str {
    &m.spec.name
}

/// One mirror's status on the wire.
fn info(h: &MirrorHandle) -> v1::MirrorInfo {
    let s = h.status();
    v1::MirrorInfo {
        name: s.name,
        source: s.source,
        destination: s.destination,
        state: s.state.as_str().to_owned(),
        error: s.error,
        positions: s
            .positions
            .into_iter()
            .map(|(partition, offset)| v1::PartitionOffset { partition, offset })
            .collect(),
        lag_seconds: s.lag_seconds,
        copied: s.copied,
        cycles_dropped: s.cycles_dropped,
        dead_lettered: s.dead_lettered,
        errors: s.errors,
        reconnects: s.reconnects,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    mirror: String,
}

/// Mirror figures for Prometheus, refreshed from the jobs' status every second.
#[derive(Debug, Default)]
pub(crate) struct MirrorMetrics {
    copied: Family<MirrorLabels, Gauge>,
    cycles: Family<MirrorLabels, Gauge>,
    dead_lettered: Family<MirrorLabels, Gauge>,
    errors: Family<MirrorLabels, Gauge>,
    reconnects: Family<MirrorLabels, Gauge>,
    running: Family<MirrorLabels, Gauge>,
    failed: Family<MirrorLabels, Gauge>,
    lag: Family<MirrorLabels, Gauge<f64, AtomicU64>>,
}

impl MirrorMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("alertmesh_mirror");
        r.register(
            "alerts_copied",
            "Alerts a mirror copied into local Kafka (since start)",
            self.copied.clone(),
        );
        r.register(
            "cycles_dropped",
            "Records not copied because their am-hops named this gateway",
            self.cycles.clone(),
        );
        r.register(
            "dead_lettered",
            "Records sent to <destination>.dlq",
            self.dead_lettered.clone(),
        );
        r.register(
            "errors",
            "Errors that made a mirror back off",
            self.errors.clone(),
        );
        r.register(
            "reconnects",
            "Times a mirror reconnected to its source",
            self.reconnects.clone(),
        );
        r.register(
            "running",
            "1 while the mirror copies, 0 while it recovers or backs off",
            self.running.clone(),
        );
        r.register(
            "failed",
            "1 while the source refuses the mirror for good (bad filter, unknown topic, credentials); see mirror status",
            self.failed.clone(),
        );
        r.register(
            "lag_seconds",
            "Copy time minus the Kafka timestamp of the last alert copied",
            self.lag.clone(),
        );
    }

    fn update(&self, h: &MirrorHandle) {
        let s = h.status();
        let l = MirrorLabels {
            mirror: s.name.clone(),
        };
        let set = |f: &Family<MirrorLabels, Gauge>, v: u64| {
            f.get_or_create(&l)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.copied, s.copied);
        set(&self.cycles, s.cycles_dropped);
        set(&self.dead_lettered, s.dead_lettered);
        set(&self.errors, s.errors);
        set(&self.reconnects, s.reconnects);
        set(&self.running, u64::from(s.state == MirrorState::Running));
        set(&self.failed, u64::from(s.state == MirrorState::Failed));
        self.lag.get_or_create(&l).set(s.lag_seconds);
    }
}
