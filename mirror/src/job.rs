//! A running mirror: [`Mirror::start`] spawns the job; [`MirrorHandle`] reads its status,
//! stops it and waits for it.
//!
//! The job repeats *cycles* (in `cycle`): connect to the source, make sure the
//! destination and dead-letter topics exist, recover positions from their tails, then copy
//! (in `copy`) until cancelled or an error. After an error it waits for in-flight
//! deliveries, backs off, and starts a new cycle, which recovers from the destination
//! again, so no state outside Kafka can go stale.

mod copy;
mod cycle;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::convert::Converter;
use crate::share::Unit;
use crate::status::StatusCell;
use crate::watch::Stamps;
use crate::{Backoff, Error, MirrorEnv, MirrorSpec, MirrorState, MirrorStatus, Source};

/// A cycle that ran at least this long counts as healthy: the next failure backs off from
/// the initial delay again.
const HEALTHY: Duration = Duration::from_secs(30);

/// How long a `failed` mirror waits before trying again: the source said no for good, so
/// a retry is for a source whose operator fixed it meanwhile.
pub const FAILED_RETRY: Duration = Duration::from_secs(300);

/// How often a `failed` mirror looks at its credential files for a change.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// How long a fenced work unit waits before it tries again (if its replica still holds
/// it then): longer than a group session, so a replica that woke from a pause has learnt
/// from the group that it lost the unit, and does not fence its new owner in turn.
const FENCED_WAIT: Duration = Duration::from_secs(15);

/// Starts mirror jobs.
#[derive(Debug)]
pub struct Mirror;

impl Mirror {
    /// Spawns the job on the current tokio runtime. It runs until `env.cancel` (or
    /// [`MirrorHandle::cancel`]) fires; then it finishes in-flight produces, bounded by
    /// `env.timeout`, and exits.
    pub fn start(spec: MirrorSpec, env: MirrorEnv) -> MirrorHandle {
        let status = StatusCell::new(MirrorStatus {
            name: spec.name.clone(),
            source: spec.source_label(None),
            destination: spec.destination.clone().unwrap_or_default(),
            state: MirrorState::Starting,
            error: String::new(),
            positions: Vec::new(),
            lag_seconds: 0.0,
            last_copied_timestamp_ms: None,
            copied: 0,
            cycles_dropped: 0,
            dead_lettered: 0,
            errors: 0,
            reconnects: 0,
            replica: String::new(),
            replicas: Vec::new(),
            source_gateway: match &spec.source {
                Source::Gateway(g) => Some((String::new(), g.url.clone())),
                Source::Kafka(_) => None,
            },
        });
        let cancel = env.cancel.child_token();
        let span = tracing::info_span!("mirror", name = %spec.name);
        status.update(|s| s.replica.clone_from(&env.replica));
        let task = tokio::spawn(run(spec, env, status.clone(), cancel.clone()).instrument(span));
        MirrorHandle {
            status,
            cancel,
            task,
        }
    }
}

/// A running mirror job.
#[derive(Debug)]
pub struct MirrorHandle {
    status: StatusCell,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl MirrorHandle {
    /// A snapshot of the mirror's status (a short lock and a copy).
    pub fn status(&self) -> MirrorStatus {
        self.status.snapshot()
    }

    /// Asks this mirror alone to stop (the gateway's shutdown cancels `env.cancel`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the job has exited.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the job has exited (after a cancel: in-flight produces finished) and
    /// returns its final status.
    pub async fn join(self) -> MirrorStatus {
        if let Err(e) = self.task.await {
            if e.is_panic() {
                tracing::error!(error = %e, "mirror job panicked");
            }
        }
        self.status.snapshot()
    }

    /// Stops the job at once, without waiting for in-flight produces: what a crash does.
    /// For tests and for a shutdown whose grace period ran out. Returns once the job's
    /// resources (its producer, purged unflushed) are gone.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Returns after [`FAILED_RETRY`], or sooner when a TLS file of the source (CA,
/// certificate, key) changes, so a renewed certificate is tried at once. (The gateway
/// restarts a failed mirror whose token file or configuration changes.)
async fn wait_for_change(spec: &MirrorSpec) {
    let files = Stamps::new(spec.credential_files());
    let until = Instant::now() + FAILED_RETRY;
    while Instant::now() < until {
        tokio::time::sleep(WATCH_EVERY.min(until - Instant::now())).await;
        if !files.is_empty() && files.changed() {
            tracing::info!("a credential file of the mirror changed; retrying");
            return;
        }
    }
}

async fn run(spec: MirrorSpec, env: MirrorEnv, status: StatusCell, cancel: CancellationToken) {
    let converter = Arc::new(
        Converter::new(&env.gateway, env.registry.clone(), env.decoder.clone())
            .with_mapping(spec.translate.clone()),
    );
    if env.shared {
        crate::share::run(&spec, &env, &converter, &status, &cancel).await;
    } else {
        cycles(&spec, &env, &converter, &status, &cancel, None).await;
    }
    env.claims.release(&crate::claims::mirror(&spec.name));
    status.set_state(MirrorState::Stopped);
    tracing::info!("mirror stopped");
}

/// Runs cycles of the mirror (or of one work unit of a shared mirror) until `cancel`,
/// backing off after each failed one.
pub(crate) async fn cycles(
    spec: &MirrorSpec,
    env: &MirrorEnv,
    converter: &Arc<Converter>,
    status: &StatusCell,
    cancel: &CancellationToken,
    unit: Option<&Unit>,
) {
    let mut backoff = Backoff::new(RandomState::new().hash_one(&spec.name));
    let mut first = true;
    let mut refused = copy::Refused::default();
    let starts = crate::resume::Starts::default();
    while !cancel.is_cancelled() {
        if !first {
            status.update(|s| s.reconnects += 1);
        }
        first = false;
        let started = Instant::now();
        let result = cycle::run(
            spec,
            env,
            converter,
            status,
            cancel,
            unit,
            (&mut refused, &starts),
        )
        .await;
        let Err(error) = result else { break };
        if cancel.is_cancelled() {
            break;
        }
        if started.elapsed() >= HEALTHY {
            backoff.reset();
        }
        if error.is_permanent() {
            tracing::error!(error = %error, retry_s = FAILED_RETRY.as_secs(), "mirror failed: the source refused; fix the configuration or credentials");
            status.update(|s| {
                s.errors += 1;
                s.error = error.to_string();
                s.state = MirrorState::Failed;
            });
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wait_for_change(spec) => {}
            }
            backoff.reset();
            continue;
        }
        let delay = match error {
            // Wait until this replica's group membership has caught up with the takeover.
            Error::Fenced { .. } => FENCED_WAIT,
            _ => backoff.next_delay(),
        };
        tracing::warn!(error = %error, delay_ms = delay.as_millis() as u64, "mirror cycle failed; retrying after backoff");
        status.update(|s| {
            s.errors += 1;
            s.error = error.to_string();
            s.state = MirrorState::Backoff;
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
