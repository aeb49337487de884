//! One mirror cycle: connect, prepare the destination, recover, copy. A shared mirror's
//! work unit first makes its transactional producer, fencing the unit's previous owner,
//! and then recovers and copies only its own source partition.

use std::sync::Arc;

use alertmesh_alert::naming::check_destination;
use tokio_util::sync::CancellationToken;

use super::copy;
use crate::convert::Converter;
use crate::destination::{self, dlq_topic};
use crate::resume::{QueryResume, Starts};
use crate::share::Unit;
use crate::status::StatusCell;
use crate::{source, Error, MirrorEnv, MirrorSpec, MirrorState, Result};

/// Runs one cycle: `Ok` when cancelled, `Err` when the cycle must be retried.
pub(super) async fn run(
    spec: &MirrorSpec,
    env: &MirrorEnv,
    converter: &Arc<Converter>,
    status: &StatusCell,
    cancel: &CancellationToken,
    unit: Option<&Unit>,
    (refused, starts): (&mut copy::Refused, &Starts),
) -> Result<()> {
    // Nothing has been produced before copying starts, so a cancel there just returns.
    let fenced = match unit {
        Some(u) => tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            sink = destination::transactional_producer(env, &u.transactional_id, &spec.name) => Some(sink?),
        },
        None => None,
    };
    let only = unit.and_then(|u| u.partition);
    let prepared = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        prepared = prepare(spec, env, status, only, starts) => prepared?,
    };
    let (batches, destination) = prepared;
    let sink = match fenced {
        Some(sink) => sink,
        None => destination::producer(env, &destination)?,
    };
    status.update(|s| {
        s.state = MirrorState::Running;
        s.error.clear();
    });
    tracing::info!(destination = %destination, "mirror running");
    let topics = copy::Topics {
        dlq: dlq_topic(&destination),
        destination,
    };
    copy::run(
        &sink,
        &topics,
        batches,
        converter,
        status,
        cancel,
        env.timeout,
        refused,
    )
    .await
}

/// Connects, creates missing topics, recovers positions and opens the source stream.
async fn prepare(
    spec: &MirrorSpec,
    env: &MirrorEnv,
    status: &StatusCell,
    only: Option<i32>,
    starts: &Starts,
) -> Result<(source::Batches, String)> {
    let (connected, info) = source::connect(spec, env).await?;
    let destination = spec
        .destination
        .clone()
        .unwrap_or_else(|| info.default_destination.clone());
    let checked = check_destination(&destination)
        .map_err(|e| e.to_string())
        .and_then(|()| match spec.destination {
            Some(_) => Ok(()),
            None => check_default_destination(&destination),
        });
    if let Err(reason) = checked {
        return Err(Error::Spec {
            name: spec.name.clone(),
            reason,
        });
    }
    if spec.destination.is_none() {
        // Named after what the source says it is: never a topic another writer has.
        env.claims
            .claim(&destination, &crate::claims::mirror(&spec.name))
            .map_err(|owner| Error::Spec {
                name: spec.name.clone(),
                reason: format!(
                    "the default destination {destination:?} (named after the source) is \
                     written by {owner}: set destination"
                ),
            })?;
    }
    status.update(|s| {
        s.source = spec.source_label(info.gateway_name.as_deref());
        s.destination = destination.clone();
        if let (Some((name, _)), Some(known)) = (s.source_gateway.as_mut(), &info.gateway_name) {
            name.clone_from(known);
        }
        s.state = MirrorState::Recovering;
    });
    destination::ensure_topics(env, &destination, info.partitions).await?;
    if spec.is_query() {
        let resume = recover_query(env, &destination, &info.prefix).await?;
        tracing::info!(
            copied = resume.seq,
            skip = resume.skip,
            "recovered the query position from the destination"
        );
        status.set_positions(&[(0, i64::try_from(resume.seq).unwrap_or(i64::MAX))]);
        let batches = connected.stream_query(spec, &resume).await?;
        return Ok((batches, destination));
    }
    let (config, topics, prefix, timeout, partitions) = (
        env.kafka.clone(),
        vec![destination.clone(), dlq_topic(&destination)],
        info.prefix.clone(),
        env.timeout,
        info.partitions,
    );
    let mut positions = tokio::task::spawn_blocking(move || {
        destination::recover(config, &topics, partitions, only, &prefix, timeout)
    })
    .await
    .map_err(|e| {
        destination::destination_error(&destination, format!("recovery task failed: {e}"))
    })??;
    tracing::info!(positions = ?positions.positions(), "recovered positions from the destination");
    // A partition the destination holds no copy of resumes after what this job handled
    // there (its copies may have aged out of the destination), else where the job's first
    // stream began (nothing copied from it yet).
    let recovered: std::collections::HashSet<i32> =
        positions.positions().iter().map(|(p, _)| *p).collect();
    if starts.is_for(positions.prefix()) {
        for (p, o) in status.positions() {
            if !recovered.contains(&p) {
                positions.advance(p, o);
            }
        }
    }
    starts.fill(&mut positions);
    status.set_positions(&positions.positions());
    let batches = connected.stream(spec, &positions, only, starts).await?;
    Ok((batches, destination))
}

/// Where a query source resumes: the last copy of it in partition 0 of the destination or
/// its dead-letter topic.
async fn recover_query(env: &MirrorEnv, destination: &str, prefix: &str) -> Result<QueryResume> {
    let (config, topics, timeout) = (
        env.kafka.clone(),
        vec![destination.to_owned(), dlq_topic(destination)],
        env.timeout,
    );
    let mut resume = QueryResume::new(prefix);
    let resume = tokio::task::spawn_blocking(move || {
        destination::recover_with(config, &topics, 1, None, timeout, &mut resume).map(|()| resume)
    })
    .await
    .map_err(|e| {
        destination::destination_error(destination, format!("recovery task failed: {e}"))
    })??;
    resume
        .check()
        .map_err(|(topic, reason)| destination::destination_error(&topic, reason))?;
    Ok(resume)
}

/// A default destination is named after the source (a peer gateway's own name): one
/// starting with `_` would write into the topics Kafka and the gateway keep for themselves
/// (`__consumer_offsets`, `_alertmesh.cursors`, ...), which the configuration refuses as a
/// named destination.
fn check_default_destination(destination: &str) -> std::result::Result<(), String> {
    if destination.starts_with('_') {
        return Err(format!(
            "the default destination {destination:?} (named after the source) starts with '_', \
             as internal and state topics do: set destination"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod default_destination_tests {
    use super::check_default_destination;

    #[test]
    fn a_default_destination_may_not_look_like_an_internal_topic() {
        assert!(check_default_destination("lasair.ztf.alerts").is_ok());
        for internal in ["_alertmesh.cursors", "__consumer_offsets", "_x.alerts"] {
            let err = check_default_destination(internal).unwrap_err();
            assert!(err.contains("set destination"), "{err}");
        }
    }
}
