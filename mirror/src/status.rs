//! Mirror status: state, position, lag and counters, kept behind a mutex that is held only
//! to copy or bump a few fields, so the admin RPC and `/metrics` can read it at any time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a mirror is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorState {
    /// Not started its first cycle yet.
    Starting,
    /// Reading the destination's tail to find where to resume.
    Recovering,
    /// Copying.
    Running,
    /// Waiting after an error before recovering again.
    Backoff,
    /// The source refused for good (see [`crate::Error::is_permanent`]): retried only
    /// slowly, or at once when the mirror's credential files change.
    Failed,
    /// Exited (cancelled).
    Stopped,
    /// A shared mirror's replica in its group without partitions to copy: the other
    /// replicas copy them all (see [`crate::share`]).
    Standby,
}

impl MirrorState {
    /// `starting`, `recovering`, `running`, `backoff`, `failed`, `stopped` or `standby`.
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorState::Starting => "starting",
            MirrorState::Recovering => "recovering",
            MirrorState::Running => "running",
            MirrorState::Backoff => "backoff",
            MirrorState::Failed => "failed",
            MirrorState::Stopped => "stopped",
            MirrorState::Standby => "standby",
        }
    }
}

impl fmt::Display for MirrorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorStatus {
    /// The mirror's name.
    pub name: String,
    /// `am://<gateway>/<topic>` or `kafka://<bootstrap>/<topic>`.
    pub source: String,
    /// The local topic copied into (empty until known: a gateway source's default needs
    /// the peer's name).
    pub destination: String,
    /// What the mirror is doing.
    pub state: MirrorState,
    /// The last error; cleared when a later cycle reaches `running`.
    pub error: String,
    /// Per source partition, the next offset to copy.
    pub positions: Vec<(i32, i64)>,
    /// Seconds between the copy of the last copied alert and its Kafka timestamp.
    pub lag_seconds: f64,
    /// Kafka timestamp (ms) of the last copied alert, for lag measured against now.
    pub last_copied_timestamp_ms: Option<i64>,
    /// Records copied (acknowledged by the destination) since the mirror started.
    pub copied: u64,
    /// Records not copied because their `am-hops` already named this gateway.
    pub cycles_dropped: u64,
    /// Records sent to `<destination>.dlq`.
    pub dead_lettered: u64,
    /// Cycles that ended in an error.
    pub errors: u64,
    /// Cycles started after the first one.
    pub reconnects: u64,
    /// This process among its gateway's replicas (see [`crate::MirrorEnv::replica`]).
    pub replica: String,
    /// For a shared mirror: every replica of the group with the source partitions it
    /// copies, as the group's coordinator last described it (empty otherwise).
    pub replicas: Vec<(String, Vec<i32>)>,
    /// For a gateway source: its name (once known) and URL.
    pub source_gateway: Option<(String, String)>,
}

/// The shared, mutable status of one mirror.
#[derive(Debug, Clone)]
pub(crate) struct StatusCell {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    status: MirrorStatus,
    positions: BTreeMap<i32, i64>,
}

impl StatusCell {
    pub(crate) fn new(status: MirrorStatus) -> Self {
        StatusCell {
            inner: Arc::new(Mutex::new(Inner {
                status,
                positions: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way
        // that matters, so a poisoned lock is still read.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn snapshot(&self) -> MirrorStatus {
        let inner = self.lock();
        let mut status = inner.status.clone();
        status.positions = inner.positions.iter().map(|(p, o)| (*p, *o)).collect();
        status
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut MirrorStatus)) {
        f(&mut self.lock().status);
    }

    pub(crate) fn set_state(&self, state: MirrorState) {
        self.update(|s| s.state = state);
    }

    /// Forgets the positions of `partitions` (a shared mirror's replica gave them up).
    pub(crate) fn forget_positions(&self, partitions: &[i32]) {
        let mut inner = self.lock();
        for p in partitions {
            inner.positions.remove(p);
        }
    }

    /// Replaces every position (after recovery).
    pub(crate) fn set_positions(&self, positions: &[(i32, i64)]) {
        let mut inner = self.lock();
        for (p, o) in positions {
            inner.positions.insert(*p, *o);
        }
    }

    /// The position reached in each partition: after recovery, or after the last record
    /// handled and acknowledged since (whichever is further on).
    pub(crate) fn positions(&self) -> Vec<(i32, i64)> {
        self.lock()
            .positions
            .iter()
            .map(|(p, o)| (*p, *o))
            .collect()
    }

    /// One source record handled and acknowledged.
    pub(crate) fn handled(&self, partition: i32, offset: i64, done: Handled) {
        let mut inner = self.lock();
        // A peer's offset is its word: the largest one must not wrap around.
        inner.positions.insert(partition, offset.saturating_add(1));
        let s = &mut inner.status;
        match done {
            Handled::Copied(ts) => {
                s.copied += 1;
                if let Some(ts) = ts {
                    s.last_copied_timestamp_ms = Some(ts);
                    s.lag_seconds = ((now_ms() - ts) as f64 / 1000.0).max(0.0);
                }
            }
            Handled::DeadLettered => s.dead_lettered += 1,
            Handled::Cycle => s.cycles_dropped += 1,
        }
    }
}

/// How one source record was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Copied; its Kafka timestamp.
    Copied(Option<i64>),
    DeadLettered,
    Cycle,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
