//! The gateway's mirror jobs: started from `[[mirrors]]`, reported by `MirrorStatus`,
//! `/metrics` and `DescribeGateway` (their sources are this gateway's peers), and restarted
//! while `failed` when their token file or their section of the config file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alertmesh_alert::Decoder;
use alertmesh_mirror::job::WATCH_EVERY;
use alertmesh_mirror::watch::Stamps;
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
    /// Emptied at shutdown, to wait for each job to finish.
    jobs: Mutex<Vec<Job>>,
    /// What a restarted job runs in.
    env: MirrorEnv,
    /// The gateway's config file, reloaded when it changes while a mirror is `failed`.
    config_file: Option<PathBuf>,
    trusted_peers: Vec<TrustedPeer>,
    metrics: MirrorMetrics,
}

/// One mirror: the config it runs with, its job, and its token file as it was read.
#[derive(Debug)]
struct Job {
    config: MirrorConfig,
    handle: MirrorHandle,
    token: Stamps,
    /// Its source gateway reached with the mirror's credentials (`Provenance` walks).
    source: Option<alertmesh_client::Gateway>,
}

impl Job {
    /// Reads `config`'s credentials and starts it; its token file is stamped first, so a
    /// change made while it is read is not missed.
    fn start(config: MirrorConfig, env: &MirrorEnv) -> Result<Job> {
        let token = token_stamps(&config);
        let spec = with_credentials(&config)?;
        let source = match &spec.source {
            Source::Gateway(g) => alertmesh_client::Gateway::new(&g.url, &g.options).ok(),
            Source::Kafka(_) => None,
        };
        Ok(Job {
            source,
            handle: Mirror::start(spec, env.clone()),
            config,
            token,
        })
    }
}

/// The topics the configuration says who writes: mirrors' destinations (named, or a Kafka
/// source's topic) and the topics clients publish into. A mirror whose destination is
/// named after its source gateway may not take one of them.
fn claims(config: &Config) -> alertmesh_mirror::claims::Claims {
    let claims = alertmesh_mirror::claims::Claims::default();
    for t in config.topics.iter().filter(|t| t.publish) {
        claims.reserve(&t.name, "clients publishing derived results");
    }
    for m in &config.mirrors {
        let named = match (&m.spec.destination, &m.spec.source) {
            (Some(d), _) => Some(d),
            (None, Source::Kafka(k)) => Some(&k.topic),
            (None, Source::Gateway(_)) => None,
        };
        if let Some(topic) = named {
            claims.reserve(topic, &alertmesh_mirror::claims::mirror(&m.spec.name));
        }
    }
    claims
}

fn token_stamps(config: &MirrorConfig) -> Stamps {
    Stamps::new(config.token_file.iter().cloned().collect())
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
        replica: config.gateway.replica_id.clone(),
        shared: config.gateway.share_mirrors,
        claims: claims(config),
    };
    let jobs = config
        .mirrors
        .iter()
        .map(|m| Job::start(m.clone(), &env))
        .collect::<Result<_>>()?;
    Ok(Mirrors {
        jobs: Mutex::new(jobs),
        env,
        config_file: config.file.clone(),
        trusted_peers: config
            .auth
            .as_ref()
            .map(|a| a.trusted_peers.clone())
            .unwrap_or_default(),
        metrics: MirrorMetrics::default(),
    })
}

impl Mirrors {
    fn jobs(&self) -> MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every mirror's status on the wire.
    pub(crate) fn infos(&self) -> Vec<v1::MirrorInfo> {
        self.jobs().iter().map(|j| info(&j.handle)).collect()
    }

    /// The gateways this one knows: its mirrors' sources and its trusted peers.
    pub(crate) fn peers(&self) -> Vec<v1::Peer> {
        let mut out: Vec<v1::Peer> = Vec::new();
        for job in self.jobs().iter() {
            if let Source::Gateway(g) = &job.config.spec.source {
                let name = job
                    .handle
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
        self.jobs()
            .iter()
            .filter_map(|j| {
                let name = j
                    .handle
                    .status()
                    .source_gateway
                    .map(|(n, _)| n)
                    .unwrap_or_default();
                j.source.clone().map(|g| (name, g))
            })
            .collect()
    }

    /// Where mirror `name` writes, once it has connected to its source (a mirror without
    /// `destination` writes to `<peer name>.<topic>`).
    pub(crate) fn destination_of(&self, name: &str) -> Option<String> {
        self.jobs()
            .iter()
            .find(|j| j.config.spec.name == name)
            .map(|j| j.handle.status().destination)
            .filter(|d| !d.is_empty())
    }

    /// Mirror figures for Prometheus.
    pub(crate) fn metrics(&self) -> &MirrorMetrics {
        &self.metrics
    }

    /// Refreshes the mirror metrics every second until `cancel`.
    pub(crate) async fn export(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            self.metrics.update_all(&self.jobs());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Restarts `failed` mirrors whose token file or `[[mirrors]]` section changed, until
    /// `cancel`. The config file is reloaded only while a mirror is failed and only when it
    /// changed; a new config that `serve --check` would refuse is logged and ignored. Other
    /// mirrors, and everything else in the file, are left alone (that needs a restart).
    pub(crate) async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let mut config_stamp = self.config_file.clone().map(|f| Stamps::new(vec![f]));
        // The mirror sections of the newest valid config.
        let mut latest: Vec<MirrorConfig> = self.jobs().iter().map(|j| j.config.clone()).collect();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(WATCH_EVERY) => {}
            }
            let failed = self.failed();
            if failed.is_empty() {
                continue;
            }
            if let (Some(file), Some(stamp)) = (&self.config_file, &config_stamp) {
                if stamp.changed() {
                    config_stamp = Some(Stamps::new(vec![file.clone()]));
                    // Parsing and checking the files it names is blocking work.
                    let file = file.clone();
                    if let Ok(Some(mirrors)) =
                        tokio::task::spawn_blocking(move || reload(&file)).await
                    {
                        latest = mirrors;
                    }
                }
            }
            for (i, name) in failed {
                // Cloned out, so the files are read without the lock.
                let Some((current, token)) = self
                    .jobs()
                    .get(i)
                    .map(|j| (j.config.clone(), j.token.clone()))
                else {
                    continue;
                };
                match restart_plan(&current, &latest, token.changed()) {
                    Some(Restart::NewSection(m)) => {
                        tracing::info!(mirror = %name, "the failed mirror's configuration changed; restarting it");
                        self.restart(i, *m, &cancel).await;
                    }
                    Some(Restart::NewToken) => {
                        tracing::info!(mirror = %name, "the failed mirror's token file changed; retrying");
                        self.restart(i, current, &cancel).await;
                    }
                    None => {}
                }
            }
        }
    }

    /// The index and name of every `failed` mirror.
    fn failed(&self) -> Vec<(usize, String)> {
        self.jobs()
            .iter()
            .enumerate()
            .filter(|(_, j)| j.handle.status().state == MirrorState::Failed)
            .map(|(i, j)| (i, j.config.spec.name.clone()))
            .collect()
    }

    /// Replaces job `i` by a new job running `config`, once the old one has exited (two
    /// jobs must never write one destination). A token or TLS file that cannot be used is
    /// logged, and the old job is left failed.
    async fn restart(&self, i: usize, config: MirrorConfig, cancel: &CancellationToken) {
        // Checked before the old job stops, so a bad file leaves it as it is.
        if let Err(e) = with_credentials(&config) {
            tracing::error!(mirror = %config.spec.name, error = %e, "cannot restart the failed mirror");
            if let Some(job) = self.jobs().get_mut(i) {
                // Not again until the file changes again.
                job.token = token_stamps(&config);
            }
            return;
        }
        match self.jobs().get(i) {
            Some(job) => job.handle.cancel(),
            None => return,
        }
        // A failed job waits on its cancellation alone, so it exits at once.
        while self.jobs().get(i).is_some_and(|j| !j.handle.is_finished()) {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let mut jobs = self.jobs();
        if cancel.is_cancelled() || i >= jobs.len() {
            return;
        }
        match Job::start(config, &self.env) {
            Ok(job) => jobs[i] = job,
            // The files changed again meanwhile: the old job is stopped, so say so.
            Err(e) => {
                tracing::error!(error = %e, "cannot restart the failed mirror; it stays stopped until the gateway restarts")
            }
        }
    }

    /// Waits for every job to exit (once cancelled, each finishes its in-flight produces
    /// and records its position first).
    pub(crate) async fn join(&self) {
        let jobs = std::mem::take(&mut *self.jobs());
        for job in jobs {
            job.handle.join().await;
        }
    }
}

/// Why a failed mirror is restarted.
#[derive(Debug)]
enum Restart {
    /// Its section in the reloaded config differs: run that.
    NewSection(Box<MirrorConfig>),
    /// Its token file changed: run the same section, re-reading the token.
    NewToken,
}

/// What to do with a failed mirror running `current`, given the newest valid config's
/// mirror sections and whether its token file changed.
fn restart_plan(
    current: &MirrorConfig,
    latest: &[MirrorConfig],
    token_changed: bool,
) -> Option<Restart> {
    let section = latest.iter().find(|m| m.spec.name == current.spec.name);
    match section {
        Some(m) if m.section_digest != current.section_digest => {
            Some(Restart::NewSection(Box::new(m.clone())))
        }
        _ if token_changed => Some(Restart::NewToken),
        _ => None,
    }
}

/// The mirror sections of the config in `file`, if `serve --check` accepts it; its
/// problems are logged otherwise.
fn reload(file: &Path) -> Option<Vec<MirrorConfig>> {
    match Config::load_checked(file) {
        Ok(config) => {
            tracing::info!(config = %file.display(), "reloaded the configuration for failed mirrors");
            Some(config.mirrors)
        }
        Err(problems) => {
            tracing::error!(
                config = %file.display(),
                problems = %problems.join("; "),
                "the changed configuration is invalid (see `serve --check`); ignored"
            );
            None
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
        replica: s.replica,
        replicas: s
            .replicas
            .into_iter()
            .map(|(replica, partitions)| v1::MirrorReplica {
                replica,
                partitions,
            })
            .collect(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    mirror: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    mirror: String,
    replica: String,
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
    /// Per mirror and replica of the gateway, the source partitions that replica copies.
    partitions: Family<ReplicaLabels, Gauge>,
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
        r.register(
            "replica_partitions",
            "Source partitions of the mirror that each replica of this gateway copies (its group's current assignment; this replica alone for an unshared mirror)",
            self.partitions.clone(),
        );
    }

    /// Refreshes every mirror's figures; replicas that left the group disappear.
    fn update_all(&self, jobs: &[Job]) {
        self.partitions.clear();
        for job in jobs {
            self.update(&job.handle);
        }
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
        let replicas = if s.replicas.is_empty() {
            vec![(
                s.replica.clone(),
                s.positions.iter().map(|(p, _)| *p).collect(),
            )]
        } else {
            s.replicas.clone()
        };
        for (replica, partitions) in replicas {
            let labels = ReplicaLabels {
                mirror: s.name.clone(),
                replica,
            };
            self.partitions
                .get_or_create(&labels)
                .set(i64::try_from(partitions.len()).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors(sections: &str) -> Vec<MirrorConfig> {
        let text = format!(
            "[gateway]\nname = \"lasair\"\nlisten = \"127.0.0.1:50051\"\nhttp_listen = \"127.0.0.1:9464\"\n\
             [kafka]\nbootstrap = \"127.0.0.1:9092\"\n{sections}"
        );
        Config::parse(&text, &[]).unwrap().mirrors
    }

    fn mirror(name: &str, filter: &str) -> String {
        format!(
            "[[mirrors]]\nname = {name:?}\n[mirrors.source]\ngateway = \"http://127.0.0.1:29051\"\n\
             topic = \"ztf.raw\"\nfilter = {filter:?}\n"
        )
    }

    #[test]
    fn a_failed_mirror_restarts_only_for_its_own_changed_section_or_token() {
        let running = mirrors(&(mirror("a", "x < 1") + &mirror("b", "y < 1")));
        let a = &running[0];
        // Unchanged: nothing to do, unless the token file changed.
        assert!(restart_plan(a, &running, false).is_none());
        assert!(matches!(
            restart_plan(a, &running, true),
            Some(Restart::NewToken)
        ));
        // Only b's section changed: a stays as it is.
        let edited = mirrors(&(mirror("a", "x < 1") + &mirror("b", "y < 2")));
        assert!(restart_plan(a, &edited, false).is_none());
        match restart_plan(&running[1], &edited, true) {
            Some(Restart::NewSection(m)) => {
                let Source::Gateway(g) = &m.spec.source else {
                    panic!("a gateway source")
                };
                assert_eq!(g.filter.as_deref(), Some("y < 2"));
            }
            other => panic!("{other:?}"),
        }
        // A mirror removed from the file keeps running as it is.
        let removed = mirrors(&mirror("b", "y < 1"));
        assert!(restart_plan(a, &removed, false).is_none());
    }
}
