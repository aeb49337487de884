//! `Subscribe`: turns a request into a [`plan::Plan`] (pure), resolves it against Kafka
//! (partitions, times, cursor) and starts streaming. A subscription reads Kafka on its own
//! while it is in the past and joins the topic's shared tail once it reaches the end,
//! falling back if it lags behind.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alertmesh_alert::{Decoder, Registry};
use alertmesh_auth::Principal;
use alertmesh_proto::v1;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;

use crate::catalog::{describe_partitions, Catalog};
use crate::config::Limits;
use crate::cursor::CursorStore;
use crate::error::{Error, Result};
use crate::kafka::cluster::Cluster;
use crate::metrics::{Metrics, ReaderKind};
use crate::record::AlertContext;
use crate::tail::Tails;

mod plan;
mod progress;
pub(crate) mod quota;
mod select;
mod stream;

use plan::{Begin, Decoding, Plan, Start};
use progress::{EndAt, Progress};
use select::SeenSchema;

/// The stream handed to tonic: batches, then at most one error status.
pub(crate) type Outbound = mpsc::Receiver<Result<v1::AlertBatch, Status>>;

/// Everything subscriptions share: the catalog, Kafka readers and the shared tails,
/// durable cursors, the payload decoder, and the slots that bound how many run at once.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    gateway: String,
    catalog: Arc<Catalog>,
    cluster: Cluster,
    tails: Tails,
    cursors: CursorStore,
    decoder: Arc<Decoder>,
    registry: Arc<Registry>,
    /// Per topic, the latest writer schema seen (to check filters at subscribe time).
    seen_schemas: Mutex<HashMap<String, SeenSchema>>,
    permits: Arc<Semaphore>,
    /// Per connection and per principal.
    quotas: quota::Quotas,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Ends every stream (the gateway is stopping).
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// What [`Subscriptions::new`] is built from.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) gateway: String,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) cluster: Cluster,
    pub(crate) tails: Tails,
    pub(crate) cursors: CursorStore,
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl Subscriptions {
    pub(crate) fn new(parts: Parts) -> Self {
        let Parts {
            gateway,
            catalog,
            cluster,
            tails,
            cursors,
            decoder,
            registry,
            limits,
            metrics,
            cancel,
            tasks,
        } = parts;
        Subscriptions {
            permits: Arc::new(Semaphore::new(limits.max_subscriptions)),
            quotas: quota::Quotas::new(
                "subscriptions",
                limits.max_subscriptions_per_connection,
                limits.max_subscriptions_per_principal,
            ),
            seen_schemas: Mutex::new(HashMap::new()),
            gateway,
            catalog,
            cluster,
            tails,
            cursors,
            decoder,
            registry,
            limits,
            metrics,
            cancel,
            tasks,
        }
    }

    fn seen_schema(&self, topic: &str) -> SeenSchema {
        let mut map = self.seen_schemas.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(topic.to_owned()).or_default())
    }

    /// Validates `req`, resolves its positions and starts streaming. `connection` is the
    /// client's peer address, which its per-connection limit counts by; `token` says
    /// whether the caller presented one (only then is its principal one client).
    pub(crate) async fn open(
        &self,
        principal: &Principal,
        (connection, token): (Option<SocketAddr>, bool),
        req: v1::SubscribeRequest,
    ) -> Result<Outbound> {
        let topic = self.catalog.exposed(&req.topic)?.clone();
        let decoding = Decoding {
            decoder: Arc::clone(&self.decoder),
            registry: Arc::clone(&self.registry),
            seen: self.seen_schema(&topic.name),
        };
        let plan = Plan::from_request(&req, &topic, &self.limits, decoding)?;
        let permit = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "gateway {} serves at most {} subscriptions at once; retry later",
                self.gateway, self.limits.max_subscriptions
            ))
        })?;
        let held = self
            .quotas
            .acquire(connection, token.then_some(principal.name.as_str()))?;
        let ctx = AlertContext::new(&self.gateway, &topic);
        let partitions = self.catalog.partitions(&topic.name).await?;
        plan.check_partitions(&partitions)?;
        let (begin, resumed) = self.begin(principal, &plan, &ctx, &partitions).await?;

        // Subscriptions that may go live get the shared tail started now, so it is ready by
        // the time they reach the end of what is stored.
        let tail = (plan.end != EndAt::Now).then(|| self.tails.get_or_start(&ctx, &partitions));
        let mut first_starts = Vec::new();
        // Where each partition starts, where that is an offset: the stream's first message
        // tells the client, which resumes partitions that delivered nothing there.
        let mut announce = Vec::new();
        let (mode, streamed, next) = match begin {
            // `latest` up to `now` is empty by definition.
            Begin::Head if plan.end == EndAt::Now => {
                (stream::Mode::Done, partitions.clone(), HashMap::new())
            }
            Begin::Head => {
                let tail = self.tails.get_or_start(&ctx, &partitions);
                tail.wait_ready(self.cluster.timeout() * 2).await?;
                let (seq, next) = tail.join_at_head();
                announce = plan::announced(&next, |_| true);
                (stream::Mode::Tail { seq }, partitions.clone(), next)
            }
            Begin::Positions(starts) => {
                let next = plan::next_offsets(&starts);
                // Offsets a start time found are not exact (Tansu answers with the first
                // offset; the stream then skips what is older): only the positions given
                // are announced.
                let timed = plan.skip_before().is_some();
                announce = plan::announced(&next, |p| !timed || resumed.contains(&p));
                let parts: Vec<i32> = starts.iter().map(|(p, _)| *p).collect();
                // A start before what Kafka still holds is reported by the reader, as a
                // gap (see `ReaderEvent::Gap`).
                let from = if plan::names_offsets(&starts) {
                    let ends = self.cluster.ends(&topic.name, &parts).await?;
                    plan::reader_starts(&starts, &ends)
                } else {
                    starts
                };
                let rx = self
                    .cluster
                    .read(&ctx, &from, plan.bounds, ReaderKind::own)?;
                first_starts = from;
                (stream::Mode::Own(rx), parts, next)
            }
        };
        let progress = Progress::new(streamed, next, plan.skip_before(), plan.end, plan.limit)
            .resumed(&resumed);
        // Two batches in flight, and room for the final status.
        let (tx, rx) = mpsc::channel(stream::OUT_SLOTS + 1);
        let last = tx
            .clone()
            .try_reserve_owned()
            .map_err(|_| Error::Internal("a new stream has no room".into()))?;
        let span =
            tracing::info_span!("subscription", topic = %topic.name, principal = %principal.name);
        let sub = stream::Subscription::new(
            stream::Parts {
                cluster: self.cluster.clone(),
                metrics: Arc::clone(&self.metrics),
                cancel: self.cancel.clone(),
                ctx,
                tail,
                bounds: plan.bounds,
                starts: first_starts,
                announce,
                whole_topic: !matches!(plan.start, Start::Offsets(_)),
                unread: stream::Unread {
                    pause: self.limits.unread_pause,
                    drop: self.limits.unread_drop,
                },
            },
            progress,
            (tx, last),
            plan.selection,
        );
        self.tasks.spawn(tracing::Instrument::instrument(
            async move {
                let _permit = (permit, held);
                sub.run(mode).await;
            },
            span,
        ));
        Ok(rx)
    }

    /// Where the plan begins: its start, then a cursor's positions, then explicit resume
    /// positions, which win; and the partitions placed by those two.
    async fn begin(
        &self,
        principal: &Principal,
        plan: &Plan,
        ctx: &Arc<AlertContext>,
        partitions: &[i32],
    ) -> Result<(Begin, HashSet<i32>)> {
        let mut resumed = HashSet::new();
        let mut begin = match &plan.start {
            Start::Latest => Begin::Head,
            Start::Earliest => Begin::earliest(partitions),
            Start::Time(ms) => Begin::at_time(
                self.cluster
                    .offsets_for_time(&ctx.topic, partitions, *ms)
                    .await?,
            ),
            Start::Offsets(list) => Begin::offsets(list),
        };
        if let Some(name) = &plan.cursor {
            let saved = self.cursors.get(&principal.name, name, &ctx.topic).await?;
            if !saved.is_empty() {
                begin = self.overlay(ctx, partitions, begin, &saved).await?;
                resumed.extend(saved.keys().copied());
            }
        }
        if !plan.resume.is_empty() {
            begin = self.overlay(ctx, partitions, begin, &plan.resume).await?;
            resumed.extend(plan.resume.keys().copied());
        }
        Ok((begin, resumed))
    }

    /// Partitions with a saved position resume there; the others keep their start (from
    /// the shared tail's head, for a live start).
    async fn overlay(
        &self,
        ctx: &Arc<AlertContext>,
        partitions: &[i32],
        begin: Begin,
        saved: &HashMap<i32, i64>,
    ) -> Result<Begin> {
        let starts = match begin {
            Begin::Positions(s) => s,
            Begin::Head => {
                let tail = self.tails.get_or_start(ctx, partitions);
                tail.wait_ready(self.cluster.timeout() * 2).await?;
                let (_, head) = tail.join_at_head();
                Begin::head_positions(partitions, &head)
            }
        };
        Ok(Begin::overlay(starts, saved))
    }

    /// Stores positions of `topic` in the caller's cursor `name`; returns the cursor's
    /// whole state, by partition.
    pub(crate) async fn commit_cursor(
        &self,
        principal: &Principal,
        name: &str,
        topic: &str,
        offsets: &[v1::PartitionOffset],
    ) -> Result<Vec<v1::PartitionOffset>> {
        let topic = self.catalog.exposed(topic)?.name.clone();
        if offsets.is_empty() {
            return Err(Error::InvalidArgument(
                "commit names no partition; send partition:offset pairs".into(),
            ));
        }
        let partitions = self.catalog.partitions(&topic).await?;
        let mut positions = HashMap::new();
        for po in offsets {
            if !partitions.contains(&po.partition) || po.offset < 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot commit offset {} of partition {}: partitions are {} and offsets start at 0",
                    po.offset,
                    po.partition,
                    describe_partitions(&partitions)
                )));
            }
            positions.insert(po.partition, po.offset);
        }
        let state = self
            .cursors
            .commit(&principal.name, name, &topic, &positions)
            .await?;
        self.metrics.cursor_commits.inc();
        let mut out: Vec<v1::PartitionOffset> = state
            .into_iter()
            .map(|(partition, offset)| v1::PartitionOffset { partition, offset })
            .collect();
        out.sort_by_key(|po| po.partition);
        Ok(out)
    }
}

/// The report of records a read asked for that Kafka no longer holds: offsets `from` up to
/// (not including) `to` of `partition`, named by the first one's ref.
fn gap(ctx: &AlertContext, partition: i32, from: i64, to: i64) -> v1::Skipped {
    v1::Skipped {
        r#ref: format!("am://{}/{}/{partition}/{from}", ctx.gateway, ctx.topic),
        reason: format!(
            "offsets {from} to {} of partition {partition} were deleted (the topic's \
             retention) before this read reached them; it goes on from {to}",
            to - 1
        ),
    }
}
