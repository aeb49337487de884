//! Mirrors shared by the replicas of one gateway (same `gateway.name`, same local Kafka),
//! as Kafka Connect and MirrorMaker 2 share their tasks: through Kafka's own group
//! membership.
//!
//! A mirror's work is split into *units*: one per source partition of a Kafka source, one
//! for a whole gateway source (a peer gateway streams every partition of a topic in one
//! subscription). The units are the partitions of a small local *work topic*,
//! `_alertmesh.mirror-work.<gateway>.<mirror>`, which holds only the aborted records of
//! the transaction probe (see `share/probe.rs`). Every replica
//! joins the consumer group `alertmesh-mirrors.<gateway>.<mirror>` on it (in `share/group.rs`),
//! so the group coordinator's round-robin assignment gives each unit to exactly one live
//! replica and moves units when replicas come and go. A replica copies the units it was
//! assigned and stops their copiers (committing what they sent) when they are revoked,
//! before the group completes the rebalance.
//!
//! Group membership alone cannot stop a replica that lost its units without knowing it
//! (paused by SIGSTOP, cut off from Kafka): so each unit copies with a transactional
//! producer whose `transactional.id` is `alertmesh.<gateway>.<mirror>.<unit>`. A new owner's
//! `init_transactions` bumps the id's epoch: Kafka aborts the previous owner's open
//! transaction and rejects everything that owner sends afterwards. Only then does the new
//! owner read back, with `read_committed`, where the destination ends, and copy from there.
//! So a source record is committed to the destination by one owner at most, and each
//! owner resumes exactly after the last committed copy.

mod group;
mod probe;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::convert::Converter;
use crate::status::StatusCell;
use crate::{destination, source, Backoff, MirrorEnv, MirrorSpec, MirrorState, Result, Source};

pub use group::decode_assignment;

/// One work unit of a shared mirror.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    /// The source partition it copies; `None`: all of them (a gateway source).
    pub(crate) partition: Option<i32>,
    /// The id whose epoch fences the unit's previous owner.
    pub(crate) transactional_id: String,
}

/// The work topic of mirror `mirror` of gateway `gateway`: one partition per work unit.
pub fn work_topic(gateway: &str, mirror: &str) -> String {
    format!("_alertmesh.mirror-work.{gateway}.{mirror}")
}

/// The consumer group whose members are the replicas sharing mirror `mirror`.
pub fn group_id(gateway: &str, mirror: &str) -> String {
    format!("alertmesh-mirrors.{gateway}.{mirror}")
}

/// What the group thread tells the mirror.
#[derive(Debug)]
enum Event {
    /// These work units are this replica's now.
    Assigned(Vec<i32>),
    /// These work units are no longer this replica's: stop their copiers, then answer
    /// (the group waits, bounded, for the answer before the rebalance completes).
    Revoked(Vec<i32>, std::sync::mpsc::Sender<()>),
    /// The group as the coordinator describes it: (replica, work units) per member.
    Members(Vec<(String, Vec<i32>)>),
    /// The group client failed; the mirror joins again after a backoff.
    Failed(String),
}

/// Runs the shared mirror until `cancel`: joins the group, copies the assigned units,
/// rejoins after a failure.
pub(crate) async fn run(
    spec: &MirrorSpec,
    env: &MirrorEnv,
    converter: &Arc<Converter>,
    status: &StatusCell,
    cancel: &CancellationToken,
) {
    let mut backoff = Backoff::new(RandomState::new().hash_one(&spec.name));
    while !cancel.is_cancelled() {
        let Err(error) = session(spec, env, converter, status, cancel).await else {
            break;
        };
        if cancel.is_cancelled() {
            break;
        }
        let (delay, state) = if error.is_permanent() {
            tracing::error!(error = %error, "shared mirror failed; fix the configuration");
            (crate::job::FAILED_RETRY, MirrorState::Failed)
        } else {
            let delay = backoff.next_delay();
            tracing::warn!(error = %error, delay_ms = delay.as_millis() as u64, "shared mirror cannot join its group; retrying after backoff");
            (delay, MirrorState::Backoff)
        };
        status.update(|s| {
            s.errors += 1;
            s.error = error.to_string();
            s.state = state;
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// A running copier of one unit.
struct Copier {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// One membership of the group: `Ok` when cancelled.
async fn session(
    spec: &MirrorSpec,
    env: &MirrorEnv,
    converter: &Arc<Converter>,
    status: &StatusCell,
    cancel: &CancellationToken,
) -> Result<()> {
    // The source's partition count sizes the work topic.
    let (_, info) = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        connected = source::connect(spec, env) => connected?,
    };
    let units = match spec.source {
        Source::Kafka(_) => info.partitions,
        Source::Gateway(_) => 1,
    };
    let topic = work_topic(&env.gateway, &spec.name);
    destination::ensure(env, std::slice::from_ref(&topic), units).await?;
    probe::hides_aborted(env, &spec.name, &topic).await?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let member = group::Member::join(env, &group_id(&env.gateway, &spec.name), &topic, tx)?;
    status.update(|s| {
        s.state = MirrorState::Recovering;
        s.error.clear();
    });
    tracing::info!(group = %group_id(&env.gateway, &spec.name), replica = %env.replica, units, "joined the mirror's replica group");
    let source_partitions = info.partitions as i32;
    let per_partition = matches!(spec.source, Source::Kafka(_));
    // Work units → the source partitions they copy.
    let covers = move |unit: &i32| -> Vec<i32> {
        if per_partition {
            vec![*unit]
        } else {
            (0..source_partitions).collect()
        }
    };
    let mut copiers: BTreeMap<i32, Copier> = BTreeMap::new();
    let result = loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            event = events.recv() => event,
        };
        match event {
            Some(Event::Assigned(assigned)) => {
                tracing::info!(units = ?assigned, "assigned mirror work");
                for u in assigned {
                    if copiers.contains_key(&u) {
                        continue;
                    }
                    let unit = Unit {
                        partition: per_partition.then_some(u),
                        transactional_id: format!("alertmesh.{}.{}.{u}", env.gateway, spec.name),
                    };
                    copiers.insert(u, start(spec, env, converter, status, cancel, unit));
                }
            }
            Some(Event::Revoked(revoked, ack)) => {
                tracing::info!(units = ?revoked, "mirror work revoked; stopping its copiers");
                let mut stopping = Vec::new();
                for u in &revoked {
                    if let Some(c) = copiers.remove(u) {
                        stopping.push(c);
                    }
                    status.forget_positions(&covers(u));
                }
                stop(stopping, env.timeout).await;
                let _ = ack.send(());
            }
            Some(Event::Members(members)) => {
                if copiers.is_empty() {
                    status.set_state(MirrorState::Standby);
                }
                let replicas = members
                    .into_iter()
                    .map(|(replica, us)| {
                        let mut ps: Vec<i32> = us.iter().flat_map(&covers).collect();
                        ps.sort_unstable();
                        (replica, ps)
                    })
                    .collect();
                status.update(|s| s.replicas = replicas);
            }
            Some(Event::Failed(reason)) => {
                break Err(destination::destination_error(&topic, reason));
            }
            None => {
                break Err(destination::destination_error(
                    &topic,
                    "the group client stopped".into(),
                ))
            }
        }
    };
    stop(
        std::mem::take(&mut copiers).into_values().collect(),
        env.timeout,
    )
    .await;
    // Nobody answers revocations any more: leaving must not wait for answers.
    drop(events);
    // Leaving the group revokes whatever is left; nothing runs any more.
    tokio::task::spawn_blocking(move || drop(member)).await.ok();
    status.update(|s| s.replicas.clear());
    result
}

fn start(
    spec: &MirrorSpec,
    env: &MirrorEnv,
    converter: &Arc<Converter>,
    status: &StatusCell,
    cancel: &CancellationToken,
    unit: Unit,
) -> Copier {
    let cancel = cancel.child_token();
    let (spec, env, converter, status, token) = (
        spec.clone(),
        env.clone(),
        converter.clone(),
        status.clone(),
        cancel.clone(),
    );
    let span = tracing::info_span!("unit", partition = ?unit.partition);
    let task = tokio::spawn(
        async move {
            crate::job::cycles(&spec, &env, &converter, &status, &token, Some(&unit)).await;
        }
        .instrument(span),
    );
    Copier { cancel, task }
}

/// Stops copiers: each commits what it sent (bounded by its timeouts); one that does not
/// finish within twice `timeout` is aborted (its open transaction is aborted by the next
/// owner's `init_transactions`).
async fn stop(copiers: Vec<Copier>, timeout: Duration) {
    for c in &copiers {
        c.cancel.cancel();
    }
    for mut c in copiers {
        if tokio::time::timeout(timeout * 2, &mut c.task)
            .await
            .is_err()
        {
            c.task.abort();
            let _ = c.task.await;
        }
    }
}
