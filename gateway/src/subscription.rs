//! `Subscribe`: turns a request into a plan (partitions, start positions, end, limit), then
//! streams it. A subscription reads Kafka on its own while it is in the past and joins
//! the topic's shared tail once it reaches the end, falling back if it lags behind.

use std::collections::HashMap;
use std::sync::Arc;

use alertmesh_auth::Principal;
use alertmesh_proto::v1::{self, end, start};
use tokio::sync::mpsc;
use tonic::Status;

use crate::catalog::describe_partitions;
use crate::error::{Error, Result};
use crate::kafka::reader::{BatchBounds, StartAt};
use crate::metrics::ReaderKind;
use crate::record::{ms_from_timestamp, AlertContext};
use crate::server::State;

pub(crate) mod progress;
pub(crate) mod select;
mod stream;

use progress::{EndAt, Progress};

/// The stream handed to tonic: batches, then at most one error status.
pub(crate) type Outbound = mpsc::Receiver<Result<v1::AlertBatch, Status>>;

/// How a subscription begins reading.
#[derive(Debug)]
enum Begin {
    /// At the shared tail's head: only what arrives from now on.
    Head,
    /// On its own, from these positions.
    Positions(Vec<(i32, StartAt)>),
}

/// Validates `req`, resolves its positions and starts streaming.
pub(crate) async fn open(
    state: Arc<State>,
    principal: &Principal,
    req: v1::SubscribeRequest,
) -> Result<Outbound> {
    let topic = state.catalog.exposed(&req.topic)?.clone();
    let ctx = AlertContext::new(&state.config.gateway.name, &topic);
    if req.limit == Some(0) {
        return Err(Error::InvalidArgument(
            "limit must be at least 1; leave it unset for no limit".into(),
        ));
    }
    let limits = &state.config.limits;
    let bounds = BatchBounds {
        max_records: clamp_default(req.max_batch_alerts, limits.max_batch_alerts),
        max_bytes: clamp_default(req.max_batch_bytes, limits.max_batch_bytes),
    };
    let permit = Arc::clone(&state.permits)
        .try_acquire_owned()
        .map_err(|_| {
            Error::ResourceExhausted(format!(
                "gateway {} serves at most {} subscriptions at once; retry later",
                state.config.gateway.name, limits.max_subscriptions
            ))
        })?;
    let end = match req.end.and_then(|e| e.position) {
        None => EndAt::Never,
        Some(end::Position::Now(_)) => EndAt::Now,
        Some(end::Position::Time(t)) => EndAt::Time(ms_from_timestamp(&t).ok_or_else(|| {
            Error::InvalidArgument(
                "end time is not a valid timestamp; send an RFC 3339 time or `now`".into(),
            )
        })?),
    };
    let selection = select::Selection::from_request(
        &req,
        &topic.name,
        topic.format,
        Arc::clone(&state.decoder),
        Arc::clone(&state.config.alert.registry),
        state.seen_schema(&topic.name),
    )?;
    let partitions = state.catalog.partitions(&topic.name).await?;
    let start = req.start.and_then(|s| s.position);
    let mut skip_before = None;
    let mut begin = match start {
        None | Some(start::Position::Latest(_)) => Begin::Head,
        Some(start::Position::Earliest(_)) => Begin::Positions(
            partitions
                .iter()
                .map(|p| (*p, StartAt::Beginning))
                .collect(),
        ),
        Some(start::Position::Time(t)) => {
            let ms = ms_from_timestamp(&t).ok_or_else(|| {
                Error::InvalidArgument(
                    "start time is not a valid timestamp; send earliest, latest, an RFC 3339 time or partition offsets".into(),
                )
            })?;
            if let EndAt::Time(e) = end {
                if e < ms {
                    return Err(Error::InvalidArgument(
                        "end time is before start time; the end must be at or after the start"
                            .into(),
                    ));
                }
            }
            skip_before = Some(ms);
            let found = state
                .cluster
                .offsets_for_time(&topic.name, &partitions, ms)
                .await?;
            Begin::Positions(
                found
                    .into_iter()
                    .map(|(p, o)| (p, o.map_or(StartAt::End, StartAt::Offset)))
                    .collect(),
            )
        }
        Some(start::Position::Offsets(list)) => {
            Begin::Positions(explicit_offsets(&list, &partitions)?)
        }
    };
    // A cursor's positions first, then explicit resume positions, which win.
    if !req.cursor.is_empty() {
        let saved = state
            .cursors
            .get(&principal.name, &req.cursor, &topic.name)
            .await?;
        if !saved.is_empty() {
            begin = apply_cursor(&state, &ctx, &partitions, begin, &saved).await?;
        }
    }
    if !req.resume.is_empty() {
        let mut saved = HashMap::new();
        for po in &req.resume {
            if !partitions.contains(&po.partition) || po.offset < 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot resume partition {} at offset {}: partitions are {} and offsets start at 0",
                    po.partition,
                    po.offset,
                    describe_partitions(&partitions)
                )));
            }
            saved.insert(po.partition, po.offset);
        }
        begin = apply_cursor(&state, &ctx, &partitions, begin, &saved).await?;
    }

    // Subscriptions that may go live get the shared tail started now, so it is ready by
    // the time they reach the end of what is stored.
    let tail = (end != EndAt::Now).then(|| state.tails.get_or_start(&ctx, &partitions));
    let (mode, streamed, next) = match begin {
        // `latest` up to `now` is empty by definition.
        Begin::Head if end == EndAt::Now => {
            (stream::Mode::Done, partitions.clone(), HashMap::new())
        }
        Begin::Head => {
            let tail = state.tails.get_or_start(&ctx, &partitions);
            tail.wait_ready(state.cluster.timeout() * 2).await?;
            let (seq, next) = tail.join_at_head();
            (stream::Mode::Tail { seq }, partitions.clone(), next)
        }
        Begin::Positions(starts) => {
            let next = starts
                .iter()
                .filter_map(|(p, s)| match s {
                    StartAt::Offset(o) => Some((*p, *o)),
                    _ => None,
                })
                .collect();
            let parts = starts.iter().map(|(p, _)| *p).collect();
            let rx = state.cluster.read(&ctx, &starts, bounds, ReaderKind::own)?;
            (stream::Mode::Own(rx), parts, next)
        }
    };
    let progress = Progress::new(streamed, next, skip_before, end, req.limit);
    let (tx, rx) = mpsc::channel(2);
    let span =
        tracing::info_span!("subscription", topic = %topic.name, principal = %principal.name);
    let sub = stream::Subscription::new(state, ctx, progress, tail, bounds, tx, selection);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _permit = permit;
            sub.run(mode).await;
        },
        span,
    ));
    Ok(rx)
}

fn clamp_default(asked: u32, max: usize) -> usize {
    match asked as usize {
        0 => max,
        n => n.min(max),
    }
}

fn explicit_offsets(
    list: &v1::PartitionOffsets,
    partitions: &[i32],
) -> Result<Vec<(i32, StartAt)>> {
    if list.offsets.is_empty() {
        return Err(Error::InvalidArgument(
            "start offsets name no partition; send partition:offset pairs such as 0:120,1:80"
                .into(),
        ));
    }
    let mut out: Vec<(i32, StartAt)> = Vec::new();
    for po in &list.offsets {
        if !partitions.contains(&po.partition) {
            return Err(Error::InvalidArgument(format!(
                "partition {} does not exist; the topic has partitions {}",
                po.partition,
                describe_partitions(partitions)
            )));
        }
        if po.offset < 0 {
            return Err(Error::InvalidArgument(format!(
                "offset {} of partition {} is negative; offsets start at 0 (use earliest or latest for symbolic positions)",
                po.offset, po.partition
            )));
        }
        if out.iter().any(|(p, _)| *p == po.partition) {
            return Err(Error::InvalidArgument(format!(
                "partition {} is listed twice in the start offsets",
                po.partition
            )));
        }
        out.push((po.partition, StartAt::Offset(po.offset)));
    }
    Ok(out)
}

/// Partitions with a saved cursor position resume there; the others keep their start.
async fn apply_cursor(
    state: &State,
    ctx: &Arc<AlertContext>,
    partitions: &[i32],
    begin: Begin,
    saved: &HashMap<i32, i64>,
) -> Result<Begin> {
    let mut starts = match begin {
        Begin::Positions(s) => s,
        Begin::Head => {
            let tail = state.tails.get_or_start(ctx, partitions);
            tail.wait_ready(state.cluster.timeout() * 2).await?;
            let (_, pos) = tail.join_at_head();
            partitions
                .iter()
                .map(|p| (*p, pos.get(p).map_or(StartAt::End, |o| StartAt::Offset(*o))))
                .collect()
        }
    };
    for (p, s) in starts.iter_mut() {
        if let Some(o) = saved.get(p) {
            *s = StartAt::Offset(*o);
        }
    }
    Ok(Begin::Positions(starts))
}
