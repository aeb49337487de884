//! The Kafka layer request handlers use: look-ups on one long-lived metadata client, the
//! reachability probe, and the one place where readers are started (a subscriber's own
//! read and a topic's shared tail alike).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::reader::{self, BatchBounds, ReaderCtx, ReaderEvent, StartAt};
use super::{GatewayConsumer, Kafka};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, ReaderKind};
use crate::record::AlertContext;

/// A cheap handle on the local cluster.
#[derive(Clone)]
pub(crate) struct Cluster {
    kafka: Kafka,
    /// The client for metadata and offset look-ups.
    meta: Arc<GatewayConsumer>,
    metrics: Arc<Metrics>,
    /// Ends every reader started here.
    cancel: CancellationToken,
    /// Whether the last probe reached Kafka (drives `/readyz` and gRPC health).
    ready: Arc<AtomicBool>,
    reader_buffer_kib: usize,
    reader_connections: usize,
    /// KiB that own reads may still take, gateway-wide (see [`Shape::charge_kib`]).
    budget: Arc<Semaphore>,
    /// The whole budget, in KiB: no read is charged more.
    budget_kib: usize,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("kafka", &self.kafka)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub(crate) fn new(
        kafka: Kafka,
        metrics: Arc<Metrics>,
        limits: &Limits,
        cancel: CancellationToken,
    ) -> Result<Self> {
        Ok(Cluster {
            meta: Arc::new(kafka.consumer(64)?),
            kafka,
            metrics,
            cancel,
            ready: Arc::new(AtomicBool::new(false)),
            reader_buffer_kib: limits.reader_buffer_kib,
            reader_connections: limits.reader_connections,
            budget: Arc::new(Semaphore::new(limits.reader_budget_mib << 10)),
            budget_kib: limits.reader_budget_mib << 10,
        })
    }

    /// The client settings, for clients of their own (fetch, mirrors).
    pub(crate) fn kafka(&self) -> &Kafka {
        &self.kafka
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.kafka.timeout()
    }

    /// Partition ids of `topic`, or NotFound / Unavailable.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let (meta, kafka, topic) = (Arc::clone(&self.meta), self.kafka.clone(), topic.to_owned());
        let found = tokio::task::spawn_blocking(move || kafka.partitions(&meta, &topic))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if let Err(Error::Unavailable(_)) = &found {
            self.kafka.count_error();
        }
        found
    }

    /// Per partition, the first offset at or after `ms` (see [`Kafka::offsets_for_time`]).
    pub(crate) async fn offsets_for_time(
        &self,
        topic: &str,
        partitions: &[i32],
        ms: i64,
    ) -> Result<Vec<(i32, Option<i64>)>> {
        let (meta, kafka) = (Arc::clone(&self.meta), self.kafka.clone());
        let (topic, partitions) = (topic.to_owned(), partitions.to_vec());
        tokio::task::spawn_blocking(move || kafka.offsets_for_time(&meta, &topic, &partitions, ms))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// The end of each partition: the offset its next record will get (Kafka's latest
    /// offset, asked for all partitions in one request).
    pub(crate) async fn ends(&self, topic: &str, partitions: &[i32]) -> Result<HashMap<i32, i64>> {
        let (meta, timeout) = (Arc::clone(&self.meta), self.kafka.timeout());
        let (topic, partitions) = (topic.to_owned(), partitions.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(&topic, *p, Offset::End)
                    .map_err(Error::from_kafka)?;
            }
            let found = meta
                .offsets_for_times(tpl, timeout)
                .map_err(Error::from_kafka)?;
            Ok(found
                .elements_for_topic(&topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Asks Kafka for cluster metadata: can the gateway reach its cluster right now?
    pub(crate) async fn probe(&self) -> bool {
        let (meta, timeout) = (Arc::clone(&self.meta), self.kafka.timeout());
        let ok = tokio::task::spawn_blocking(move || meta.fetch_metadata(None, timeout).is_ok())
            .await
            .unwrap_or(false);
        self.ready.store(ok, Ordering::Relaxed);
        ok
    }

    /// Whether the last probe reached Kafka.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Starts a read of `ctx.topic` from `starts`, all its readers reporting into one
    /// channel.
    ///
    /// A subscriber's own read (`ReaderKind::own`) starts small: one consumer with a
    /// [`SMALL_QUEUE_KIB`] prefetch queue and batches of at most [`SMALL_BATCH_BYTES`]. A
    /// client that never reads, or reads a few alerts, costs little that way; one that
    /// drains its stream is moved to a full read ([`read_full`](Self::read_full)). The
    /// read is charged to the gateway's reader budget (`limits.reader_budget_mib`) for
    /// everything it can hold (see [`Shape::charge_kib`]); when the budget is short it
    /// waits for its share (the channel stays empty meanwhile) rather than failing.
    ///
    /// The shared tail (`ReaderKind::tail`) is one consumer that keeps Kafka's long poll:
    /// it is idle most of the time.
    pub(crate) fn read(
        &self,
        ctx: &Arc<AlertContext>,
        starts: &[(i32, StartAt)],
        bounds: BatchBounds,
        kind: ReaderKind,
    ) -> Result<mpsc::Receiver<ReaderEvent>> {
        let shape = match kind {
            ReaderKind::own => Shape::small(bounds),
            ReaderKind::tail => Shape::tail(self.reader_buffer_kib, bounds),
        };
        let (tx, rx) = mpsc::channel(2 * shape.readers(starts.len()));
        if kind == ReaderKind::tail {
            self.start(ctx, starts, &shape, kind, None, tx)?;
            return Ok(rx);
        }
        let charge = shape.charge(self.budget_kib)?;
        if let Ok(permit) = Arc::clone(&self.budget).try_acquire_many_owned(charge) {
            self.start(ctx, starts, &shape, kind, Some(Arc::new(permit)), tx)?;
            return Ok(rx);
        }
        // Waits for the budget, or for the subscriber to go.
        let (cluster, ctx, starts) = (self.clone(), Arc::clone(ctx), starts.to_vec());
        self.metrics.reads_waiting.inc();
        tokio::spawn(async move {
            let budget = Arc::clone(&cluster.budget);
            let permit = tokio::select! {
                p = budget.acquire_many_owned(charge) => p.ok(),
                () = tx.closed() => None,
                () = cluster.cancel.cancelled() => None,
            };
            cluster.metrics.reads_waiting.dec();
            let Some(permit) = permit else { return };
            let sent = tx.clone();
            if let Err(e) = cluster.start(&ctx, &starts, &shape, kind, Some(Arc::new(permit)), tx) {
                let _ = sent.send(ReaderEvent::Failed(e)).await;
            }
        });
        Ok(rx)
    }

    /// A full-size own read: up to `limits.reader_connections` consumers, each with its
    /// own connection and thread, sharing `limits.reader_buffer_kib` of prefetch. One
    /// connection has one fetch in flight, so the broker would wait while the gateway
    /// decodes each response; with several, it prepares the next while the gateway works
    /// (bench_subscribe: 64 KB alerts 0.84x -> 0.94x a direct consumer). It waits only
    /// briefly at a partition's end, which it must see to finish or join the tail.
    ///
    /// `None` if the reader budget cannot cover it right now: the caller keeps its small
    /// read and asks again later.
    pub(crate) fn read_full(
        &self,
        ctx: &Arc<AlertContext>,
        starts: &[(i32, StartAt)],
        bounds: BatchBounds,
    ) -> Result<Option<mpsc::Receiver<ReaderEvent>>> {
        let shape = Shape::full(self.reader_buffer_kib, self.reader_connections, bounds);
        let Ok(permit) =
            Arc::clone(&self.budget).try_acquire_many_owned(shape.charge(self.budget_kib)?)
        else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::channel(2 * shape.readers(starts.len()));
        let kind = ReaderKind::own;
        self.start(ctx, starts, &shape, kind, Some(Arc::new(permit)), tx)?;
        Ok(Some(rx))
    }

    /// Charges `kib` held outside any read (a parked subscription's batches) to the reader
    /// budget until the guard is dropped. The charge takes its turn among waiting reads,
    /// which then wait for it, but the caller does not wait: what it holds is in memory
    /// already, and it must be able to resume at once.
    pub(crate) fn charge_held(&self, kib: usize) -> tokio_util::sync::DropGuard {
        let done = CancellationToken::new();
        let guard = done.clone().drop_guard();
        let n = u32::try_from(kib.min(self.budget_kib)).unwrap_or(u32::MAX);
        if n > 0 {
            let budget = Arc::clone(&self.budget);
            tokio::spawn(async move {
                tokio::select! {
                    permit = budget.acquire_many_owned(n) => {
                        done.cancelled().await;
                        drop(permit);
                    }
                    () = done.cancelled() => {}
                }
            });
        }
        guard
    }

    /// Starts the consumers of a read, its partitions spread over them.
    fn start(
        &self,
        ctx: &Arc<AlertContext>,
        starts: &[(i32, StartAt)],
        shape: &Shape,
        kind: ReaderKind,
        budget: Option<Arc<OwnedSemaphorePermit>>,
        tx: mpsc::Sender<ReaderEvent>,
    ) -> Result<()> {
        let n = shape.readers(starts.len());
        let (fetch_wait, name) = match kind {
            ReaderKind::own => (Duration::from_millis(10), format!("read-{}", ctx.topic)),
            ReaderKind::tail => (Duration::from_millis(100), format!("tail-{}", ctx.topic)),
        };
        let rctx = ReaderCtx {
            metrics: Arc::clone(&self.metrics),
            kind,
            cancel: self.cancel.clone(),
            alert: Arc::clone(ctx),
            budget,
        };
        rctx.count_read();
        for i in 0..n {
            let share: Vec<(i32, StartAt)> = starts.iter().skip(i).step_by(n).copied().collect();
            let consumer = match kind {
                ReaderKind::own => self
                    .kafka
                    .consumer_reporting_gaps(shape.queue_kib / n, fetch_wait)?,
                // The tail reads what arrives; it is never behind retention.
                ReaderKind::tail => self
                    .kafka
                    .consumer_waiting(shape.queue_kib / n, fetch_wait)?,
            };
            reader::spawn(
                name.clone(),
                consumer,
                &ctx.topic,
                &share,
                shape.bounds,
                rctx.clone(),
                tx.clone(),
            )?;
        }
        Ok(())
    }
}

/// The prefetch queue of a small read (librdkafka's least).
const SMALL_QUEUE_KIB: usize = 64;
/// The batches of a small read.
const SMALL_BATCH_BYTES: usize = 64 << 10;
/// What a consumer costs besides its queue and fetch: librdkafka's threads (one per
/// broker and two of its own), their buffers and state, the reader thread, and what the
/// C allocator keeps for them (measured with 1,000 subscribers: 3-4 MiB).
const CONSUMER_KIB: usize = 4 << 10;

/// What a read runs with.
#[derive(Debug, Clone, Copy)]
struct Shape {
    connections: usize,
    /// librdkafka's prefetch queue, over all its consumers.
    queue_kib: usize,
    bounds: BatchBounds,
}

impl Shape {
    fn small(bounds: BatchBounds) -> Shape {
        Shape {
            connections: 1,
            queue_kib: SMALL_QUEUE_KIB,
            bounds: BatchBounds {
                max_records: bounds.max_records,
                max_bytes: bounds.max_bytes.min(SMALL_BATCH_BYTES),
            },
        }
    }

    fn full(buffer_kib: usize, connections: usize, bounds: BatchBounds) -> Shape {
        Shape {
            connections,
            queue_kib: buffer_kib,
            bounds,
        }
    }

    fn tail(buffer_kib: usize, bounds: BatchBounds) -> Shape {
        Shape::full(buffer_kib, 1, bounds)
    }

    /// Consumers for `partitions` partitions.
    fn readers(&self, partitions: usize) -> usize {
        self.connections.clamp(1, partitions.max(1))
    }

    /// KiB the read can hold at once: librdkafka's queue, a fetch response in flight and
    /// the client itself per consumer (fetches of at least 1 MiB, see
    /// [`Kafka::consumer_waiting`]), and the batches its channel holds and the subscriber
    /// has in hand (two per consumer, plus one).
    fn charge_kib(&self) -> usize {
        let n = self.connections.max(1);
        let fetch = (self.queue_kib / n).clamp(1 << 10, 16 << 10);
        let batch = self.bounds.max_bytes.div_ceil(1 << 10);
        self.queue_kib + n * (fetch + CONSUMER_KIB) + (2 * n + 1) * batch
    }

    /// The permits to take from a budget of `budget_kib`: a read larger than the whole
    /// budget takes all of it (it runs alone) rather than waiting forever.
    fn charge(&self, budget_kib: usize) -> Result<u32> {
        u32::try_from(self.charge_kib().min(budget_kib))
            .map_err(|_| Error::Internal("a read larger than the reader budget can count".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_charged_for_its_queue_fetches_and_batches() {
        let bounds = BatchBounds {
            max_records: 1000,
            max_bytes: 1 << 20,
        };
        // Small: 64 KiB queue, one consumer and its 1 MiB fetch, three 64 KiB batches.
        let small = Shape::small(bounds);
        assert_eq!(small.bounds.max_bytes, 64 << 10);
        assert_eq!(small.charge_kib(), 64 + 1024 + 4096 + 3 * 64);
        // Full (defaults): 8 MiB queue over three consumers, a 2.7 MiB fetch each, seven
        // 1 MiB batches.
        let full = Shape::full(8192, 3, bounds);
        assert_eq!(full.charge_kib(), 8192 + 3 * (2730 + 4096) + 7 * 1024);
        // A 512 MiB budget holds about a hundred small reads at once, and some full ones.
        assert!((512 << 10) / small.charge_kib() >= 95);
        assert!((512 << 10) / full.charge_kib() >= 14);
        // No read waits for more than the whole budget.
        assert_eq!(full.charge(4096).unwrap(), 4096);
    }
}
