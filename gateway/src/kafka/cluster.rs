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
    /// KiB of prefetch that own reads may still take, gateway-wide.
    budget: Arc<Semaphore>,
    budget_mib: usize,
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
            budget_mib: limits.reader_budget_mib,
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
    /// A subscriber's own read (`ReaderKind::own`) splits its partitions over up to
    /// `limits.reader_connections` consumers, each with its own connection and thread. One
    /// connection has one fetch in flight, so the broker would wait while the gateway
    /// decodes each response; with several, it prepares the next while the gateway works
    /// (bench_subscribe: 64 KB alerts 0.84x -> 0.94x a direct consumer). They share the
    /// read's prefetch budget, so memory stays as bounded. It waits only briefly at a
    /// partition's end, which it must see to finish or join the tail.
    ///
    /// The shared tail (`ReaderKind::tail`) is one consumer that keeps Kafka's long poll:
    /// it is idle most of the time.
    ///
    /// An own read takes its prefetch from the gateway's reader budget
    /// (`limits.reader_budget_mib`): the full `limits.reader_buffer_kib` while the budget
    /// lasts, less when it runs short, and RESOURCE_EXHAUSTED when not even
    /// [`MIN_READ_KIB`] is left. Its readers give it back when the last one ends.
    pub(crate) fn read(
        &self,
        ctx: &Arc<AlertContext>,
        starts: &[(i32, StartAt)],
        bounds: BatchBounds,
        kind: ReaderKind,
    ) -> Result<mpsc::Receiver<ReaderEvent>> {
        let budget = match kind {
            ReaderKind::own => Some(Arc::new(self.take_budget()?)),
            ReaderKind::tail => None,
        };
        let buffer_kib = budget
            .as_ref()
            .map_or(self.reader_buffer_kib, |b| b.num_permits());
        // A read given less than its full buffer uses one connection: each has a fetch of
        // up to 1 MiB in flight besides what its queue holds.
        let connections = if buffer_kib < self.reader_buffer_kib {
            1
        } else {
            self.reader_connections
        };
        let (n, fetch_wait, name) = match kind {
            ReaderKind::own => (
                connections.clamp(1, starts.len().max(1)),
                Duration::from_millis(10),
                format!("read-{}", ctx.topic),
            ),
            ReaderKind::tail => (1, Duration::from_millis(100), format!("tail-{}", ctx.topic)),
        };
        let rctx = ReaderCtx {
            metrics: Arc::clone(&self.metrics),
            kind,
            cancel: self.cancel.clone(),
            alert: Arc::clone(ctx),
            budget,
        };
        rctx.count_read();
        // Each reader has at most two batches in flight, as a single reader would.
        let (tx, rx) = mpsc::channel(2 * n);
        for i in 0..n {
            let share: Vec<(i32, StartAt)> = starts.iter().skip(i).step_by(n).copied().collect();
            let consumer = self.kafka.consumer_waiting(buffer_kib / n, fetch_wait)?;
            reader::spawn(
                name.clone(),
                consumer,
                &ctx.topic,
                &share,
                bounds,
                rctx.clone(),
                tx.clone(),
            )?;
        }
        Ok(rx)
    }

    /// An own read's prefetch, in KiB permits (see [`share`]).
    fn take_budget(&self) -> Result<OwnedSemaphorePermit> {
        let refused = || {
            Error::ResourceExhausted(format!(
                "the gateway's Kafka read buffers (limits.reader_budget_mib = {}) are in use \
                 by other subscriptions; retry later",
                self.budget_mib
            ))
        };
        let take =
            share(self.reader_buffer_kib, self.budget.available_permits()).ok_or_else(refused)?;
        let n = u32::try_from(take).map_err(|_| refused())?;
        Arc::clone(&self.budget)
            .try_acquire_many_owned(n)
            .map_err(|_| refused())
    }
}

/// The least prefetch an own read starts with when the budget runs short.
const MIN_READ_KIB: usize = 256;

/// The prefetch a read gets when it `wants` KiB and `left` KiB of the budget remain: all
/// it wants while that is at most a quarter of what is left, then a quarter of what is
/// left (so many reads still fit, each smaller), down to [`MIN_READ_KIB`]; `None` below.
fn share(wants: usize, left: usize) -> Option<usize> {
    let least = wants.min(MIN_READ_KIB);
    if left < least {
        return None;
    }
    Some(wants.min((left / 4).max(least)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_get_smaller_as_the_budget_runs_short_then_are_refused() {
        assert_eq!(share(8192, 512 << 10), Some(8192));
        assert_eq!(share(8192, 16 << 10), Some(4096));
        assert_eq!(share(8192, 2048), Some(512));
        assert_eq!(share(8192, 300), Some(256));
        assert_eq!(share(8192, 255), None);
        // A read configured below the minimum needs only what it is configured for.
        assert_eq!(share(128, 130), Some(128));
        // How many full-size reads a 512 MiB budget admits before refusing.
        let (mut left, mut reads) = (512usize << 10, 0);
        while let Some(kib) = share(8192, left) {
            left -= kib;
            reads += 1;
        }
        assert!(reads > 64, "{reads}");
    }
}
