//! The gateway's mirror jobs: started from `[[mirrors]]`, reported by `MirrorStatus`,
//! `/metrics` and `DescribeGateway` (their sources are this gateway's peers).

use std::sync::Arc;
use std::time::Duration;

use alertmesh_mirror::{Mirror, MirrorEnv, MirrorHandle, MirrorState, Source};
use alertmesh_proto::v1;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

use crate::cli::client::{endpoint, ClientAuthArgs};
use crate::config::MirrorConfig;
use crate::error::{Error, Result};
use crate::server::State;

/// Starts every configured mirror. A gateway source's token and TLS files are read now, so
/// a missing file stops the gateway at startup with the mirror's name.
pub(crate) fn start(state: &State, cancel: &CancellationToken) -> Result<Vec<MirrorHandle>> {
    let env = MirrorEnv {
        gateway: state.config.gateway.name.clone(),
        kafka: state.kafka.client_config(),
        registry: Arc::clone(&state.config.alert.registry),
        decoder: Arc::clone(&state.decoder),
        timeout: state.kafka.timeout(),
        cancel: cancel.clone(),
    };
    state
        .config
        .mirrors
        .iter()
        .map(|m| Ok(Mirror::start(with_credentials(m)?, env.clone())))
        .collect()
}

fn with_credentials(m: &MirrorConfig) -> Result<alertmesh_mirror::MirrorSpec> {
    let mut spec = m.spec.clone();
    if let Source::Gateway(g) = &mut spec.source {
        let auth = ClientAuthArgs {
            token_file: m.token_file.clone(),
            token_env: None,
            ca: m.ca.clone(),
            cert: m.cert.clone(),
            key: m.key.clone(),
        };
        let fail = |e: String| Error::Internal(format!("mirror {}: {e}", spec_name(m)));
        g.token = auth.token().map_err(fail)?;
        g.endpoint = Some(Box::new(endpoint(&g.url, &auth).map_err(fail)?.1));
    }
    Ok(spec)
}

fn spec_name(m: &MirrorConfig) -> &str {
    &m.spec.name
}

/// One mirror's status on the wire.
pub(crate) fn info(h: &MirrorHandle) -> v1::MirrorInfo {
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

/// The gateways this one knows: its mirrors' sources and its trusted peers.
pub(crate) fn peers(state: &State) -> Vec<v1::Peer> {
    let mut out: Vec<v1::Peer> = Vec::new();
    for (h, m) in state.mirrors.iter().zip(&state.config.mirrors) {
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
    if let Some(auth) = &state.config.auth {
        for t in &auth.trusted_peers {
            out.push(v1::Peer {
                name: t.name.clone(),
                url: t.jwks_url.clone(),
                relation: "trusted".into(),
            });
        }
    }
    out
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
        self.lag.get_or_create(&l).set(s.lag_seconds);
    }
}

/// Refreshes the mirror metrics until shutdown.
pub(crate) async fn export(state: Arc<State>) {
    loop {
        for h in &state.mirrors {
            state.mirror_metrics.update(h);
        }
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
