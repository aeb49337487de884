//! Surviving a Kafka cluster that is replaced or reset behind the configured address.
//!
//! librdkafka 2.12 keeps what a client learned of its cluster (topic ids, partition
//! leaders) across reconnections. A client that fetches from a new cluster with the old
//! topic ids gets UNKNOWN_TOPIC_OR_PARTITION with a zero topic id and a current-leader
//! hint (Tansu answers so), and librdkafka then looks the topic up by a null name in
//! `rd_kafka_metadata_update_op`: SIGSEGV on its main thread, in
//! `rd_kafka_metadata_cache_find` (relatives: confluentinc/librdkafka #4964, #5280). The
//! same answer for a topic deleted while a client fetches it crashes it too, and nothing
//! on the gateway's side can prevent that one. So no fetching client of the gateway reconnects
//! after losing every broker connection ([`KafkaContext::is_lost`]): it is dropped, and a
//! new one learns the cluster from metadata before it fetches.
//!
//! A reader that waits on a slow subscriber does not poll its client, and would not see it
//! lose the cluster; so one [`Watch`] per gateway keeps its own client connected to every
//! broker and polls it, and when it loses them all it moves to a new epoch: every client
//! made before is lost too, and waiting readers are woken to renew theirs. The watch also
//! pauses the fetching of every client of the gateway at once, from its own thread, since
//! a reader's client does not wait for its reader to reconnect: librdkafka counts its
//! reconnect back-off from the previous connection attempt, so a connection that was up
//! for longer is retried at once, and a new cluster that already listens at the address
//! would get a fetch with the old topic ids while the reader is still waiting on its
//! subscriber, or in the middle of a poll. No client setting closes that gap: a longer
//! back-off (or maximum back-off) does not delay that first retry either, and librdkafka
//! uses topic ids and the leader hint with every broker that offers them (Fetch v13 and
//! v16), short of turning off its protocol version negotiation altogether.
//!
//! A new cluster also numbers its records afresh. Positions the gateway had reached are
//! checked against the partitions' ends and the cluster id: a partition that now ends
//! before a reached position went back, and records were lost or renumbered; the reader
//! reports it instead of silently waiting for the old offsets to come round again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{GatewayConsumer, KafkaContext};
use crate::error::{Error, Result};

/// What a reader knew of the cluster before it lost it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The cluster id from metadata, when the broker reports one.
    pub cluster: Option<String>,
    /// Per partition, the next offset to read, where one was reached.
    pub reached: Vec<(i32, i64)>,
}

/// A partition that went back: it now ends before an offset the gateway had reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Regression {
    pub partition: i32,
    pub reached: i64,
    pub end: i64,
}

/// The gateway's watch on its cluster: an epoch that moves on each time every broker
/// connection of the watching client is lost.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    epoch: AtomicU64,
    changed: Notify,
    /// The gateway's clients, whose fetching stops when the epoch moves. Weak: a client
    /// ends with its last user, and dead entries are pruned as clients are added.
    clients: Mutex<Vec<Weak<BaseConsumer<KafkaContext>>>>,
}

impl Watch {
    /// Starts the watching client (settings `config`) on its own thread, which ends with
    /// the last handle on the watch. Without a client (bad settings), the epoch never
    /// moves and each client relies on its own errors.
    pub(crate) fn start(config: ClientConfig) -> Arc<Watch> {
        let watch = Arc::new(Watch::default());
        let client: Result<BaseConsumer<Quiet>, _> = config.create_with_context(Quiet);
        let weak = Arc::downgrade(&watch);
        let started = client.map_err(|e| e.to_string()).and_then(|client| {
            std::thread::Builder::new()
                .name("kafka-watch".into())
                .spawn(move || watch_loop(&client, &weak))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the kafka cluster watch");
        }
        watch
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Notified (to current waiters) when the epoch moves.
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Adds a client made with this watch, whose fetching [`Watch::lost`] stops.
    pub(crate) fn register(&self, client: &Arc<BaseConsumer<KafkaContext>>) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|c| c.strong_count() > 0);
        clients.push(Arc::downgrade(client));
    }

    /// Moves to a new epoch, wakes the readers waiting on one, and pauses every assigned
    /// partition of every live client from this thread, without waiting for their
    /// readers. A reader may be waiting on a subscriber or in the middle of a poll, and
    /// the client's broker threads reconnect without waiting for it: librdkafka spaces a
    /// connection attempt from the previous attempt (`reconnect.backoff.ms`), so a
    /// connection that was up longer than that is retried at once, and a cluster that
    /// already listens again at the address gets the stale topic ids in a fetch (see the
    /// module doc). A pause needs no reader: librdkafka's own main thread marks the
    /// partitions, and a broker thread checks the mark before each fetch, also while it
    /// is disconnected (measured in the tests: the partitions left the fetch lists 1.5 ms
    /// after the broker's death, and the replacing Tansu took connections after 23 ms).
    /// That narrows the window to this thread being descheduled for that long, on a
    /// loaded machine, rather than closing it; librdkafka offers no hook on a client's
    /// own reconnection that would. Records the
    /// client had prefetched are dropped with the pause and read again by the renewed
    /// client, from the positions its reader had reached.
    fn lost(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
        let live: Vec<Arc<BaseConsumer<KafkaContext>>> = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut paused = 0usize;
        for client in &live {
            // What the client was assigned, as noted by `GatewayConsumer::assign`: asking
            // librdkafka would wait on each client's own thread in turn.
            let tpl = client.context().assigned();
            if tpl.count() > 0 && client.pause(&tpl).is_ok() {
                paused += tpl.count();
            }
        }
        tracing::info!(
            clients = live.len(),
            paused,
            "kafka clients of the lost cluster stopped fetching"
        );
        // A client its reader dropped meanwhile ends here, on this thread.
    }
}

fn watch_loop(client: &BaseConsumer<Quiet>, watch: &Weak<Watch>) {
    while let Some(watch) = watch.upgrade() {
        if let Some(Err(e)) = client.poll(Duration::from_millis(50)) {
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
                tracing::warn!("kafka cluster lost: every broker connection is down; kafka clients will be renewed");
                watch.lost();
            }
        }
    }
}

/// The watching client's context: its errors are seen through polling, and the
/// gateway's readers log their own.
#[derive(Debug, Clone, Copy)]
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{message}");
    }

    fn error(&self, _: KafkaError, _: &str) {}
}

impl ConsumerContext for Quiet {}

/// Whether `consumer` lost every broker connection and must be renewed before it fetches.
pub(crate) fn is_lost(consumer: &GatewayConsumer) -> bool {
    let context: &KafkaContext = consumer.context();
    context.is_lost()
}

/// The cluster id `consumer` learned from metadata, without asking the broker again.
pub(crate) fn cluster_id(consumer: &GatewayConsumer) -> Option<String> {
    consumer.client().fetch_cluster_id(Duration::ZERO)
}

/// Looks `topic` up with `consumer` and compares what it finds with `seen`: the
/// partitions that went back, or all of them when the cluster id changed. Unavailable
/// when the cluster cannot be reached or no longer has the topic.
pub(crate) fn check(
    consumer: &GatewayConsumer,
    topic: &str,
    seen: &Seen,
    timeout: Duration,
) -> Result<Vec<Regression>> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Error::Unavailable(format!("cannot read topic {topic:?}: {e}")))?;
    let present = md
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if !present {
        return Err(Error::Unavailable(format!(
            "topic {topic:?} does not exist in kafka (any more)"
        )));
    }
    let now = cluster_id(consumer);
    let replaced = seen.cluster.is_some() && now.is_some() && seen.cluster != now;
    let mut out = Vec::new();
    for (partition, reached) in &seen.reached {
        let (_, end) = consumer
            .fetch_watermarks(topic, *partition, timeout)
            .map_err(|e| Error::Unavailable(format!("cannot read topic {topic:?}: {e}")))?;
        if replaced || went_back(*reached, end) {
            out.push(Regression {
                partition: *partition,
                reached: *reached,
                end,
            });
        }
    }
    Ok(out)
}

/// Renews a reader of one of the gateway's own topics that lost its cluster, until
/// `restore` accepts the new client (the cluster is back and the topic is whole), waiting
/// 200 ms to 5 s between tries. `None` on `cancel`, or when no client can be made (logged:
/// the `what` reader stops, and changes other replicas make are no longer seen).
/// Blocking: for the reader's own thread.
pub(crate) fn renew_until(
    mut consumer: GatewayConsumer,
    what: &str,
    cancel: &CancellationToken,
    mut restore: impl FnMut(&GatewayConsumer) -> Result<()>,
) -> Option<GatewayConsumer> {
    let mut wait = Duration::from_millis(200);
    loop {
        consumer = match super::renew(consumer) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the {what} reader; changes other replicas make are no longer seen");
                return None;
            }
        };
        match restore(&consumer) {
            Ok(()) => return Some(consumer),
            Err(e) => tracing::debug!(error = %e, "{what} topic not back yet"),
        }
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            if cancel.is_cancelled() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// A partition that ends before a position already reached has lost records.
fn went_back(reached: i64, end: i64) -> bool {
    end < reached
}

/// The subscriber-facing description of the regressions of `topic` (not empty).
pub(crate) fn data_loss(topic: &str, regressions: &[Regression]) -> Error {
    let parts: Vec<String> = regressions
        .iter()
        .map(|r| {
            format!(
                "partition {} now ends at offset {}, before offset {} already reached",
                r.partition, r.end, r.reached
            )
        })
        .collect();
    Error::DataLoss(format!(
        "kafka went back in topic {topic:?}: {}; the cluster was replaced or reset, or the topic \
         recreated, and its records are numbered afresh; subscribe again (from earliest, or \
         from the new offsets) to read them",
        parts.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_that_ends_before_a_reached_offset_went_back() {
        assert!(went_back(45, 0));
        assert!(went_back(45, 44));
        // At the end, or further: new records, nothing lost.
        assert!(!went_back(45, 45));
        assert!(!went_back(45, 90));
    }

    #[test]
    fn data_loss_names_topic_partitions_and_offsets() {
        let e = data_loss(
            "ztf.alerts",
            &[Regression {
                partition: 1,
                reached: 23,
                end: 5,
            }],
        );
        let msg = e.to_string();
        assert!(matches!(e, Error::DataLoss(_)));
        for needle in ["\"ztf.alerts\"", "partition 1", "offset 5", "offset 23"] {
            assert!(msg.contains(needle), "{msg}");
        }
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::DataLoss,
            "a clear status, not INTERNAL"
        );
    }
}
