//! A Kafka reader on a dedicated thread: polls an assigned consumer and hands batches of
//! records to async code through a small bounded channel, so memory stays bounded in
//! bytes (librdkafka's prefetch buffer plus at most two batches in flight).

use std::thread;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rdkafka::consumer::Consumer;

use crate::kafka::GatewayConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{is_transport, Error};
use crate::kafka::replaced;
use crate::metrics::Metrics;
use crate::record::{AlertContext, Arena, Record, Written};
use rdkafka::message::BorrowedMessage;
use std::sync::Arc;

/// What a reader reports, in the order it saw it.
#[derive(Debug)]
pub(crate) enum ReaderEvent {
    Records(Vec<Record>),
    /// The reader reached the current end of `partition`; `position` is the next offset.
    Eof {
        partition: i32,
        position: Option<i64>,
    },
    /// Offsets `from` up to (not including) `to` of `partition` were deleted (the topic's
    /// retention) before the reader reached them; it goes on from `to`. Only readers made
    /// with [`Kafka::consumer_reporting_gaps`](crate::kafka::Kafka::consumer_reporting_gaps)
    /// report these; others move to the first record held without a word.
    Gap {
        partition: i32,
        from: i64,
        to: i64,
    },
    /// The reader stopped: Kafka is unreachable or refused the read.
    Failed(Error),
}

/// Where a reader starts in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartAt {
    Beginning,
    End,
    Offset(i64),
}

/// Bounds of one batch handed over by a reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchBounds {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Who a reader reports to, and what ends it.
#[derive(Debug, Clone)]
pub(crate) struct ReaderCtx {
    pub metrics: Arc<Metrics>,
    pub kind: crate::metrics::ReaderKind,
    pub cancel: CancellationToken,
    /// The topic's wire context: records are encoded as alerts as they are read.
    pub alert: Arc<AlertContext>,
    /// The read's share of the gateway's reader budget, held until its last reader ends.
    pub budget: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl ReaderCtx {
    /// Counts a read in `alertmesh_kafka_readers_started_total` (once, however many
    /// readers it has).
    pub(crate) fn count_read(&self) {
        self.metrics
            .reader(&self.metrics.readers_started, self.kind)
            .inc();
    }
}

/// Starts a reader thread for `topic` at the given positions, reporting into `tx` (which
/// the readers of one read share). The thread ends when the receiver is dropped, when
/// `cancel` fires, or after reporting `Failed`.
pub(crate) fn spawn(
    name: String,
    consumer: GatewayConsumer,
    topic: &str,
    starts: &[(i32, StartAt)],
    bounds: BatchBounds,
    ctx: ReaderCtx,
    tx: mpsc::Sender<ReaderEvent>,
) -> Result<(), Error> {
    let mut tpl = TopicPartitionList::new();
    for (p, start) in starts {
        let offset = match start {
            StartAt::Beginning => Offset::Beginning,
            StartAt::End => Offset::End,
            StartAt::Offset(o) => Offset::Offset(*o),
        };
        tpl.add_partition_offset(topic, *p, offset)
            .map_err(Error::from_kafka)?;
    }
    let topic = topic.to_owned();
    let starts = starts.to_vec();
    let runtime = tokio::runtime::Handle::try_current().ok();
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            // A fresh client that does not know the partition leaders yet when it is
            // assigned postpones each start position lookup by librdkafka's 500 ms offset
            // query timer; looking the topic up first lets the read start at once. The
            // lookup is also the read's first sign of an unreachable cluster.
            if let Err(e) = consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT) {
                let _ = tx.blocking_send(ReaderEvent::Failed(Error::Unavailable(format!(
                    "cannot read topic {topic:?}: {e}"
                ))));
                return;
            }
            let mut place = Place::new(replaced::cluster_id(&consumer), &starts);
            // A start at the end is looked up here rather than by librdkafka, so that the
            // reader knows the offset it starts from: an end reached before any record is
            // then that offset (see `eof_position`).
            if let Err(e) = resolve_ends(&consumer, &topic, &mut tpl, &mut place) {
                let _ = tx.blocking_send(ReaderEvent::Failed(e));
                return;
            }
            if let Err(e) = consumer.assign(&tpl) {
                let _ = tx.blocking_send(ReaderEvent::Failed(Error::from_kafka(e)));
                return;
            }
            run(consumer, topic, place, bounds, (tx, runtime), ctx)
        })
        .map_err(|e| Error::Internal(format!("cannot start reader thread: {e}")))?;
    Ok(())
}

/// Where a reader stands: its start positions, the offsets it reached, and the cluster.
#[derive(Debug)]
struct Place {
    starts: Vec<(i32, StartAt)>,
    /// Per partition (in `starts` order), the next offset to read once one is known.
    next: Vec<Option<i64>>,
    /// The slot last updated.
    last: usize,
    cluster: Option<String>,
}

impl Place {
    fn new(cluster: Option<String>, starts: &[(i32, StartAt)]) -> Self {
        let next = starts
            .iter()
            .map(|(_, s)| match s {
                StartAt::Offset(o) => Some(*o),
                _ => None,
            })
            .collect();
        Place {
            starts: starts.to_vec(),
            next,
            last: 0,
            cluster,
        }
    }

    fn reached(&mut self, partition: i32, next: i64) {
        // Partitions are usually 0..n in order (or a stride of them): try the last slot
        // used, then look.
        let i = match self.starts.get(self.last) {
            Some((p, _)) if *p == partition => Some(self.last),
            _ => self.starts.iter().position(|(p, _)| *p == partition),
        };
        if let Some(i) = i {
            self.next[i] = Some(next);
            self.last = i;
        }
    }

    /// The next offset known for `partition`: where it started, or what was read.
    fn next_of(&self, partition: i32) -> Option<i64> {
        self.starts
            .iter()
            .position(|(p, _)| *p == partition)
            .and_then(|i| self.next[i])
    }

    /// Records a batch about to be handed over (the last record per partition wins).
    fn read(&mut self, records: &[Record]) {
        for r in records {
            self.reached(r.partition, r.offset + 1);
        }
    }

    fn seen(&self) -> replaced::Seen {
        replaced::Seen {
            cluster: self.cluster.clone(),
            reached: self
                .starts
                .iter()
                .zip(&self.next)
                .filter_map(|((p, _), n)| n.map(|n| (*p, n)))
                .collect(),
        }
    }

    /// Where a renewed client resumes: after what was read, else where the read began.
    fn resume(&self, topic: &str) -> Result<TopicPartitionList, Error> {
        let mut tpl = TopicPartitionList::new();
        for ((p, start), next) in self.starts.iter().zip(&self.next) {
            let offset = match (next, start) {
                (Some(n), _) => Offset::Offset(*n),
                (None, StartAt::Beginning) => Offset::Beginning,
                (None, StartAt::End) => Offset::End,
                (None, StartAt::Offset(o)) => Offset::Offset(*o),
            };
            tpl.add_partition_offset(topic, *p, offset)
                .map_err(Error::from_kafka)?;
        }
        Ok(tpl)
    }
}

/// Turns every start at the end into the partition's current end offset (its high
/// watermark, what librdkafka's own lookup of `Offset::End` answers), in `tpl` and as the
/// reader's known position in `place`.
fn resolve_ends(
    consumer: &GatewayConsumer,
    topic: &str,
    tpl: &mut TopicPartitionList,
    place: &mut Place,
) -> Result<(), Error> {
    for (p, start) in place.starts.clone() {
        if start != StartAt::End {
            continue;
        }
        let (_, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(|e| {
                Error::Unavailable(format!("cannot find the end of topic {topic:?}: {e}"))
            })?;
        tpl.set_partition_offset(topic, p, Offset::Offset(high))
            .map_err(Error::from_kafka)?;
        place.reached(p, high);
    }
    Ok(())
}

/// After librdkafka stopped a partition whose position is out of the range Kafka holds:
/// moves every partition whose next offset was deleted to the first offset held, and
/// returns those gaps as (partition, next offset, first held). A partition that now ends
/// before its next offset went back (DataLoss, as for a replaced cluster).
fn skip_deleted(
    consumer: &GatewayConsumer,
    topic: &str,
    place: &mut Place,
) -> Result<Vec<(i32, i64, i64)>, Error> {
    // A read from the beginning that has not reached a record yet promised nothing (and
    // librdkafka looks the beginning up again).
    let known: Vec<(i32, i64)> = place
        .starts
        .iter()
        .filter_map(|(p, _)| place.next_of(*p).map(|n| (*p, n)))
        .collect();
    if known.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<i32> = known.iter().map(|(p, _)| *p).collect();
    // One request per end for the whole share, tried twice: librdkafka stops each
    // partition with an error of its own, so several may come in a row.
    let lookup = |at: Offset| {
        list_offsets(consumer, topic, &parts, at).or_else(|_| {
            thread::sleep(Duration::from_millis(200));
            list_offsets(consumer, topic, &parts, at)
        })
    };
    let lows = lookup(Offset::Beginning)?;
    let highs = lookup(Offset::End)?;
    let mut gaps = Vec::new();
    let mut regressions = Vec::new();
    for (partition, next) in known {
        let (Some(&low), Some(&high)) = (lows.get(&partition), highs.get(&partition)) else {
            continue;
        };
        if next < low {
            gaps.push((partition, next, low));
            place.reached(partition, low);
        } else if next > high {
            regressions.push(replaced::Regression {
                partition,
                reached: next,
                end: high,
            });
        }
    }
    if regressions.is_empty() {
        Ok(gaps)
    } else {
        tracing::warn!(topic, ?regressions, "kafka went back under a reader");
        Err(replaced::data_loss(topic, &regressions))
    }
}

/// Per partition, the offset Kafka lists for `at` (`Beginning` or `End`), in one request.
fn list_offsets(
    consumer: &GatewayConsumer,
    topic: &str,
    partitions: &[i32],
    at: Offset,
) -> Result<std::collections::HashMap<i32, i64>, Error> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, at)
            .map_err(Error::from_kafka)?;
    }
    let found = consumer
        .offsets_for_times(tpl, METADATA_TIMEOUT)
        .map_err(|e| {
            Error::Unavailable(format!("cannot read the offsets of topic {topic:?}: {e}"))
        })?;
    Ok(found
        .elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// Replaces a client that lost every broker connection (see [`replaced`]): the new one
/// resumes after what was read, unless the cluster cannot be reached (Unavailable) or
/// went back past a reached position (DataLoss).
fn renew(consumer: GatewayConsumer, topic: &str, place: &Place) -> Result<GatewayConsumer, Error> {
    let fresh = crate::kafka::renew(consumer)?;
    let regressions = replaced::check(&fresh, topic, &place.seen(), METADATA_TIMEOUT)?;
    if !regressions.is_empty() {
        tracing::warn!(topic, ?regressions, "kafka went back under a reader");
        return Err(replaced::data_loss(topic, &regressions));
    }
    fresh
        .assign(&place.resume(topic)?)
        .map_err(Error::from_kafka)?;
    tracing::info!(topic, "kafka connection lost and regained; reader renewed");
    Ok(fresh)
}

/// How long a reader waits for the topic's metadata before assigning its partitions.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

fn run(
    mut consumer: GatewayConsumer,
    topic: String,
    mut place: Place,
    bounds: BatchBounds,
    (tx, runtime): (mpsc::Sender<ReaderEvent>, Option<tokio::runtime::Handle>),
    ctx: ReaderCtx,
) {
    let ReaderCtx {
        metrics,
        kind,
        cancel,
        alert,
        budget: _budget,
    } = ctx;
    let mut filling = Filling {
        bytes_read: metrics.reader(&metrics.kafka_bytes_read, kind),
        ..Filling::default()
    };
    let mut out = Outbox { tx, runtime };
    // Stops of partitions (auto.offset.reset) in a row that found nothing deleted.
    let mut quiet_resets = 0u32;
    // Sends what has been read, if anything; false once the subscriber is gone.
    let flush =
        |filling: &mut Filling, place: &mut Place, out: &mut Outbox, consumer: &GatewayConsumer| {
            filling.take().is_none_or(|rs| {
                place.read(&rs);
                out.send(consumer, ReaderEvent::Records(rs))
            })
        };
    loop {
        if replaced::is_lost(&consumer) {
            // No fetch from here on: handing over what was read may wait on a slow
            // subscriber, and the cluster may come back replaced meanwhile.
            let _ = consumer.unassign();
            if !flush(&mut filling, &mut place, &mut out, &consumer) {
                return;
            }
            consumer = match renew(consumer, &topic, &place) {
                Ok(c) => c,
                Err(e) => {
                    if matches!(e, Error::DataLoss(_)) {
                        metrics.kafka_errors.inc();
                    }
                    let _ = out.send_final(ReaderEvent::Failed(e));
                    return;
                }
            };
        }
        // Checked between batches: a batch fills in well under a millisecond, and the
        // token takes a lock.
        if filling.is_empty() && (cancel.is_cancelled() || out.tx.is_closed()) {
            return;
        }
        // Block only while the batch is empty; otherwise take what is already buffered.
        let wait = if filling.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                filling.push_kafka(&m, &alert);
                if filling.is_full(bounds) && !flush(&mut filling, &mut place, &mut out, &consumer)
                {
                    return;
                }
            }
            None => {
                if !flush(&mut filling, &mut place, &mut out, &consumer) {
                    return;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if !flush(&mut filling, &mut place, &mut out, &consumer) {
                    return;
                }
                let position = eof_position(&consumer, &topic, partition, &place);
                if let Some(p) = position {
                    place.reached(partition, p);
                }
                if !out.send(
                    &consumer,
                    ReaderEvent::Eof {
                        partition,
                        position,
                    },
                ) {
                    return;
                }
            }
            Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) => {
                // A position Kafka no longer holds (or not yet): librdkafka stopped fetching
                // that partition and says which one only in its log, so every partition of
                // the reader is checked, after handing over what was read before it.
                if !flush(&mut filling, &mut place, &mut out, &consumer) {
                    return;
                }
                let gaps = match skip_deleted(&consumer, &topic, &mut place) {
                    Ok(gaps) => gaps,
                    Err(e) => {
                        if matches!(e, Error::DataLoss(_)) {
                            metrics.kafka_errors.inc();
                        }
                        let _ = out.send_final(ReaderEvent::Failed(e));
                        return;
                    }
                };
                if gaps.is_empty() {
                    // Nothing deleted under the reader: another partition's stop, already
                    // dealt with, or the broker's offsets briefly behind (a leader
                    // change). Fetch again, but not in a tight loop.
                    quiet_resets += 1;
                    if quiet_resets > 1 {
                        thread::sleep(Duration::from_millis(100));
                    }
                } else {
                    quiet_resets = 0;
                }
                for (partition, from, to) in gaps {
                    tracing::info!(
                        topic,
                        partition,
                        from,
                        to,
                        "records deleted before the reader reached them"
                    );
                    if !out.send(
                        &consumer,
                        ReaderEvent::Gap {
                            partition,
                            from,
                            to,
                        },
                    ) {
                        return;
                    }
                }
                // A client that lost the cluster meanwhile is renewed at the loop's top,
                // from the same positions.
                if !replaced::is_lost(&consumer) {
                    if let Err(e) = place
                        .resume(&topic)
                        .and_then(|tpl| consumer.assign(&tpl).map_err(Error::from_kafka))
                    {
                        let _ = out.send_final(ReaderEvent::Failed(e));
                        return;
                    }
                }
            }
            Some(Err(e)) => {
                metrics.kafka_errors.inc();
                consumer.context().saw(&e);
                if let Some(suppressed) = READ_ERRORS.admit() {
                    tracing::warn!(topic = %topic, error = %e, suppressed, "kafka read error");
                }
                if let Some(failure) = classify(&consumer, &topic, e) {
                    let _ = out.send_final(ReaderEvent::Failed(failure));
                    return;
                }
            }
        }
    }
}

/// Where a reader's events go.
struct Outbox {
    tx: mpsc::Sender<ReaderEvent>,
    /// The runtime the reader was started from, to wait on the subscriber and the
    /// cluster watch at once.
    runtime: Option<tokio::runtime::Handle>,
}

impl Outbox {
    /// Hands an event over; false once the subscriber is gone. A reader waiting on a slow
    /// subscriber does not poll its client, so it would not see the cluster go: if the
    /// gateway's watch loses the cluster meanwhile, the client stops fetching at once
    /// and is renewed before the reader polls again (see [`replaced`]).
    fn send(&mut self, consumer: &GatewayConsumer, ev: ReaderEvent) -> bool {
        use tokio::sync::mpsc::error::TrySendError;
        let Some(runtime) = &self.runtime else {
            return self.tx.blocking_send(ev).is_ok();
        };
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(ev);
                return true;
            }
            Err(TrySendError::Closed(())) => return false,
            Err(TrySendError::Full(())) => {}
        }
        let context = consumer.context();
        let wait = async {
            // Registered before the state is read, so no change goes unseen.
            let changed = context.watch().changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if context.is_lost() {
                return None;
            }
            tokio::select! {
                reserved = self.tx.reserve() => Some(reserved),
                () = &mut changed => None,
            }
        };
        let reserved = match runtime.block_on(wait) {
            Some(reserved) => reserved,
            None => {
                // Stop fetching now; the reader renews its client before it polls again.
                let _ = consumer.unassign();
                context.mark_lost();
                runtime.block_on(self.tx.reserve())
            }
        };
        match reserved {
            Ok(permit) => {
                permit.send(ev);
                true
            }
            Err(_) => false,
        }
    }

    /// Hands over the reader's last event (the reader stops after it).
    fn send_final(&self, ev: ReaderEvent) -> bool {
        self.tx.blocking_send(ev).is_ok()
    }
}

/// The batch a reader is filling.
#[derive(Debug, Default)]
struct Filling {
    /// Where the batch's records are written.
    arena: Arena,
    records: usize,
    /// Memory the batch holds (`Record::size`), against `BatchBounds::max_bytes`.
    bytes: usize,
    /// Payload bytes not yet counted in `alertmesh_kafka_bytes_read_total`: the shared
    /// counter is touched once per batch rather than per record.
    payload_bytes: u64,
    bytes_read: Counter,
}

impl Filling {
    fn push_kafka(&mut self, m: &BorrowedMessage<'_>, ctx: &AlertContext) {
        let written = self.arena.write_kafka(m, ctx);
        self.count(written);
    }

    fn count(&mut self, w: Written) {
        self.records += 1;
        self.payload_bytes += w.payload_len as u64;
        self.bytes += w.size;
    }

    fn is_empty(&self) -> bool {
        self.records == 0
    }

    fn is_full(&self, bounds: BatchBounds) -> bool {
        self.records >= bounds.max_records || self.bytes >= bounds.max_bytes
    }

    /// The batch, if there is one, leaving an empty one behind.
    fn take(&mut self) -> Option<Vec<Record>> {
        if self.records == 0 {
            return None;
        }
        self.bytes_read
            .inc_by(std::mem::take(&mut self.payload_bytes));
        self.bytes = 0;
        self.records = 0;
        Some(self.arena.take())
    }
}

/// Decides whether a read error ends the reader. librdkafka retries transport errors by
/// itself, so one only ends the read when a metadata probe confirms the cluster is gone:
/// a subscriber then gets UNAVAILABLE within seconds instead of waiting forever. A client
/// that lost every connection is not probed: it is renewed (see [`renew`]).
fn classify(consumer: &GatewayConsumer, topic: &str, e: KafkaError) -> Option<Error> {
    use rdkafka::types::RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(code) if is_transport(code) && replaced::is_lost(consumer) => None,
        Some(code) if is_transport(code) => consumer
            .fetch_metadata(Some(topic), Duration::from_secs(3))
            .err()
            .map(|probe| Error::Unavailable(format!("cannot read topic {topic:?}: {e}; {probe}"))),
        Some(C::UnknownTopicOrPartition | C::UnknownPartition | C::TopicAuthorizationFailed) => {
            Some(Error::from_kafka(e))
        }
        _ => None,
    }
}

/// The next offset of a partition whose end was just reached. librdkafka knows it only
/// after consuming a record. Before that, the fetch is still where the read began: the
/// offset the reader started from (or last reached), which `place` knows for every start
/// but the beginning; a read from the beginning that ends before any record found the
/// partition empty, so its end is the partition's first offset (the low watermark).
/// The high watermark asked for now would not do: a record written since the fetch found
/// the end is below it, and a subscriber told that position would skip that record.
fn eof_position(
    consumer: &GatewayConsumer,
    topic: &str,
    partition: i32,
    place: &Place,
) -> Option<i64> {
    let consumed = consumer.position().ok().and_then(|tpl| {
        match tpl.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        }
    });
    consumed.or_else(|| place.next_of(partition)).or_else(|| {
        consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(3))
            .ok()
            .map(|(low, _)| low)
    })
}

/// Logs of read errors, which a peer, a producer or a failing cluster can repeat.
static READ_ERRORS: alertmesh_mirror::limit::RateLimit = alertmesh_mirror::limit::RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_reader_resumes_after_what_it_read_else_where_it_began() {
        let starts = [
            (0, StartAt::Offset(7)),
            (1, StartAt::Beginning),
            (2, StartAt::End),
        ];
        let mut place = Place::new(Some("lasair".into()), &starts);
        assert_eq!(place.seen().reached, [(0, 7)]);
        place.read(&[
            Record::bare(1, 3, None),
            Record::bare(0, 7, None),
            Record::bare(1, 4, None),
        ]);
        place.reached(2, 40);
        let seen = place.seen();
        assert_eq!(seen.reached, [(0, 8), (1, 5), (2, 40)]);
        assert_eq!(seen.cluster.as_deref(), Some("lasair"));
        let tpl = place.resume("ztf").unwrap();
        let offsets: Vec<(i32, Offset)> = tpl
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        assert_eq!(
            offsets,
            [
                (0, Offset::Offset(8)),
                (1, Offset::Offset(5)),
                (2, Offset::Offset(40))
            ]
        );
        // Nothing read yet: where the read began.
        let fresh = Place::new(None, &starts).resume("ztf").unwrap();
        let offsets: Vec<Offset> = fresh.elements().iter().map(|e| e.offset()).collect();
        assert_eq!(offsets, [Offset::Offset(7), Offset::Beginning, Offset::End]);
    }

    use crate::record::Parts;

    #[test]
    fn a_batch_fills_to_its_bounds_and_counts_payload_bytes_once_taken() {
        let ctx = AlertContext {
            gateway: "lasair".into(),
            topic: "ztf".into(),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
        };
        let bounds = BatchBounds {
            max_records: 3,
            max_bytes: usize::MAX,
        };
        let mut filling = Filling::default();
        let push = |filling: &mut Filling, offset: i64| {
            let payload = [7u8; 100];
            let w = filling.arena.write(&ctx, Parts::plain(0, offset, &payload));
            filling.count(w);
        };
        assert!(filling.take().is_none(), "nothing read, nothing sent");
        for offset in 0..3 {
            assert!(!filling.is_full(bounds));
            push(&mut filling, offset);
        }
        assert!(filling.is_full(bounds));
        assert_eq!(filling.bytes_read.get(), 0, "counted when taken");
        let batch = filling.take().unwrap();
        assert_eq!(
            batch.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        // Written side by side: the batch is one run of one block.
        for pair in batch.windows(2) {
            let ((a, ra), (b, rb)) = (pair[0].element(), pair[1].element());
            assert_eq!((a.as_ptr(), ra.end), (b.as_ptr(), rb.start));
        }
        assert_eq!(filling.bytes_read.get(), 300);
        assert!(filling.is_empty() && filling.bytes == 0);

        let by_bytes = BatchBounds {
            max_records: 1000,
            max_bytes: 2 * batch[0].size(),
        };
        push(&mut filling, 3);
        assert!(!filling.is_full(by_bytes));
        push(&mut filling, 4);
        assert!(filling.is_full(by_bytes));
        assert_eq!(filling.take().map(|b| b.len()), Some(2));
    }
}
