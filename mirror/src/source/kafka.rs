//! A remote Kafka topic as a mirror source. librdkafka polling blocks, so the reader is a
//! `BaseConsumer` on its own thread, assigned explicit offsets (no consumer group: the
//! destination is the checkpoint), feeding a bounded channel.

use std::time::Duration;

use alertmesh_alert::headers;
use bytes::Bytes;
use rdkafka::consumer::Consumer as _;

use crate::quiet::{Consumer, QuietContext, LOST};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::{Batches, SourceInfo, CHANNEL_BATCHES, MAX_BATCH_BYTES, MAX_BATCH_RECORDS};
use crate::convert::SourceRecord;
use crate::provenance;
use crate::resume::{kafka_prefix, source_ref};
use crate::{Error, KafkaSource, MirrorEnv, MirrorSpec, Result, ResumePositions, Start};

/// A connected remote Kafka topic.
#[derive(Debug)]
pub(crate) struct Remote {
    source: KafkaSource,
    partitions: usize,
    label: String,
    timeout: Duration,
}

fn failure(label: &str, reason: String) -> Error {
    Error::Source {
        source_name: label.to_owned(),
        reason,
    }
}

fn client_config(source: &KafkaSource, mirror: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &source.bootstrap)
        .set("client.id", format!("alertmesh-mirror-{mirror}"))
        .set("group.id", format!("alertmesh-mirror-{mirror}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // An offset the source no longer has is an error to report, never a silent jump
        // (reads are assigned explicit positions; see `check_not_back`).
        .set("auto.offset.reset", "error")
        // Mirrors are latency-sensitive: do not let an idle partition hold a fetch long.
        .set("fetch.wait.max.ms", "100")
        // When the destination is the bottleneck the prefetch queue fills; librdkafka would
        // then pause fetching for fetch.queue.backoff.ms (1 s by default), a stall.
        .set("fetch.queue.backoff.ms", "5")
        .set("queued.max.messages.kbytes", "16384")
        .set("max.partition.fetch.bytes", (4 << 20).to_string())
        .set("log_level", "3");
    // Operator properties (SASL, TLS) come last so they can override ours.
    for (k, v) in &source.properties {
        c.set(k, v);
    }
    c
}

/// Reads the topic's partition count.
pub(crate) async fn connect(
    spec: &MirrorSpec,
    source: &KafkaSource,
    env: &MirrorEnv,
) -> Result<(Remote, SourceInfo)> {
    let label = spec.source_label(None);
    let (config, topic, timeout, l) = (
        client_config(source, &spec.name),
        source.topic.clone(),
        env.timeout,
        label.clone(),
    );
    let partitions = tokio::task::spawn_blocking(move || {
        let consumer: Consumer = config
            .create_with_context(QuietContext::default())
            .map_err(|e| failure(&l, format!("cannot create a consumer: {e}")))?;
        crate::destination::partition_count(&consumer, &topic, timeout).map_err(|e| failure(&l, e))
    })
    .await
    .map_err(|e| failure(&label, format!("metadata task failed: {e}")))??;
    if partitions == 0 {
        return Err(failure(&label, "the topic has no partitions".into()));
    }
    let info = SourceInfo {
        partitions,
        prefix: kafka_prefix(&source.bootstrap, &source.topic),
        default_destination: source.topic.clone(),
        gateway_name: None,
    };
    let remote = Remote {
        source: source.clone(),
        partitions,
        label,
        timeout: env.timeout,
    };
    Ok((remote, info))
}

impl Remote {
    /// Starts the reader thread at `positions`, else at `start`.
    pub(crate) fn stream(
        self,
        start: Start,
        positions: &ResumePositions,
        only: Option<i32>,
    ) -> Result<Batches> {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let positions = positions.clone();
        let name = format!("mirror-{}", self.source.topic);
        std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || {
                if let Err(e) = self.read(start, &positions, only, &tx) {
                    let _ = tx.blocking_send(Err(e));
                }
            })
            .map_err(|e| failure("kafka", format!("cannot start a reader thread: {e}")))?;
        Ok(rx)
    }

    fn read(
        &self,
        start: Start,
        positions: &ResumePositions,
        only: Option<i32>,
        tx: &mpsc::Sender<Result<Vec<SourceRecord>>>,
    ) -> Result<()> {
        let fail = |reason: String| failure(&self.label, reason);
        let topic = &self.source.topic;
        let consumer: Consumer = client_config(&self.source, "reader")
            .create_with_context(QuietContext::default())
            .map_err(|e| fail(format!("cannot create a consumer: {e}")))?;
        let partitions = (0..i32::try_from(self.partitions).unwrap_or(i32::MAX))
            .filter(|p| only.is_none_or(|o| o == *p));
        // Per partition: records older than this are skipped (a time start that the broker
        // may have answered with an earlier offset).
        let mut skip_before = vec![None; self.partitions];
        let mut tpl = TopicPartitionList::new();
        let by_time = match start {
            Start::Time(ms) => self.offsets_for_time(&consumer, ms)?,
            _ => Vec::new(),
        };
        self.check_not_back(&consumer, positions)?;
        for p in partitions {
            let offset = match (positions.next_offset(p), start) {
                (Some(next), _) => Offset::Offset(next),
                (None, Start::Earliest) => Offset::Beginning,
                (None, Start::Latest) => Offset::End,
                (None, Start::Time(ms)) => {
                    skip_before[p as usize] = Some(ms);
                    by_time
                        .get(p as usize)
                        .copied()
                        .flatten()
                        .map_or(Offset::End, Offset::Offset)
                }
            };
            tpl.add_partition_offset(topic, p, offset)
                .map_err(|e| fail(e.to_string()))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| fail(format!("cannot assign partitions: {e}")))?;
        let prefix = kafka_prefix(&self.source.bootstrap, topic);
        let mut known = self.partitions;
        let mut looked = std::time::Instant::now();
        while !tx.is_closed() {
            // A source topic that gained partitions: they are read too, from their first
            // record (all of them came after this read began). Not for a replica's single
            // partition (shared mirrors split the partitions they knew of).
            if only.is_none() && looked.elapsed() >= GROWTH_CHECK {
                looked = std::time::Instant::now();
                known = self.take_on_new_partitions(&consumer, &mut tpl, known)?;
            }
            let mut batch = Vec::new();
            let mut bytes = 0;
            let mut wait = Duration::from_millis(100);
            while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
                let polled = consumer.poll(wait);
                if consumer.context().is_lost() {
                    // Never reconnect a client that lost its cluster (see `quiet`): the
                    // next cycle recovers and reads with a new one.
                    return Err(fail(LOST.to_owned()));
                }
                let Some(polled) = polled else {
                    break;
                };
                wait = Duration::ZERO;
                let m = match polled {
                    Ok(m) => m,
                    Err(KafkaError::PartitionEOF(_)) => continue,
                    Err(e) => return Err(fail(format!("cannot read: {e}"))),
                };
                let timestamp = m.timestamp().to_millis();
                let p = m.partition();
                tpl.set_partition_offset(topic, p, Offset::Offset(m.offset() + 1))
                    .map_err(|e| fail(e.to_string()))?;
                if let Some(Some(ms)) = skip_before.get_mut(p as usize).map(|s| s.as_mut()) {
                    if timestamp.is_some_and(|t| t < *ms) {
                        continue;
                    }
                    skip_before[p as usize] = None;
                }
                let payload = Bytes::copy_from_slice(m.payload().unwrap_or_default());
                let headers: provenance::Headers = match m.headers() {
                    None => Vec::new(),
                    Some(hs) => {
                        let (readable, left_out) = crate::kafka_headers::readable(hs);
                        if left_out > 0 {
                            if let Some(suppressed) = UNREADABLE_HEADERS.admit() {
                                tracing::warn!(
                                    partition = p,
                                    offset = m.offset(),
                                    left_out,
                                    suppressed,
                                    "source record has header names that are not utf-8; copied without them"
                                );
                            }
                        }
                        readable
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                            .collect()
                    }
                };
                let schema = provenance::header(&headers, headers::SCHEMA).map(str::to_owned);
                // What the record holds, headers and key too: a producer can put megabytes
                // there with an empty payload.
                bytes += payload.len()
                    + m.key().map_or(0, <[u8]>::len)
                    + headers
                        .iter()
                        .map(|(k, v)| 16 + k.len() + v.as_ref().map_or(0, Vec::len))
                        .sum::<usize>();
                batch.push(SourceRecord {
                    partition: p,
                    offset: m.offset(),
                    timestamp,
                    key: m.key().map(<[u8]>::to_vec),
                    payload,
                    headers,
                    source_ref: source_ref(&prefix, p, m.offset()),
                    gateway: None,
                    format: Some(self.source.format),
                    namespace: self.source.namespace.clone(),
                    schema,
                    mesh_key: None,
                    resume: None,
                });
            }
            if !batch.is_empty() && !send(&consumer, &tpl, tx, batch).map_err(fail)? {
                break;
            }
        }
        Ok(())
    }
}

/// How often a reader looks for partitions its source topic gained.
const GROWTH_CHECK: Duration = Duration::from_secs(5);

impl Remote {
    /// Assigns, from their first record, the partitions the source topic has beyond the
    /// `known` first ones, adding them to `tpl` (the positions the reader goes on from);
    /// returns the partition count now read. A failed look-up changes nothing: the next
    /// one tries again.
    fn take_on_new_partitions(
        &self,
        consumer: &Consumer,
        tpl: &mut TopicPartitionList,
        known: usize,
    ) -> Result<usize> {
        let topic = &self.source.topic;
        // Briefly: the reader does not poll meanwhile.
        let wait = self.timeout.min(Duration::from_secs(2));
        let Ok(now) = crate::destination::partition_count(consumer, topic, wait) else {
            return Ok(known);
        };
        if now <= known {
            return Ok(known);
        }
        let fail = |reason: String| failure(&self.label, reason);
        let mut added = TopicPartitionList::new();
        for p in known..now {
            let p = i32::try_from(p).map_err(|e| fail(e.to_string()))?;
            added
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| fail(e.to_string()))?;
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| fail(e.to_string()))?;
        }
        consumer
            .incremental_assign(&added)
            .map_err(|e| fail(format!("cannot assign the new partitions: {e}")))?;
        tracing::info!(source = %self.label, before = known, now, "the source topic gained partitions; reading them too");
        Ok(now)
    }
}

/// How long a reader waits for room in the channel before it stops fetching while it waits.
const SEND_PATIENCE: Duration = Duration::from_secs(1);

/// Hands `batch` to the copy loop; `false` when it is gone. A reader that waits long on a
/// slow destination polls nothing, so it would not notice losing its cluster while
/// librdkafka keeps fetching in the background: it stops fetching (unassigns) while it
/// waits, and assigns again at `positions` (the next offsets) afterwards.
fn send(
    consumer: &Consumer,
    positions: &TopicPartitionList,
    tx: &mpsc::Sender<Result<Vec<SourceRecord>>>,
    batch: Vec<SourceRecord>,
) -> std::result::Result<bool, String> {
    use tokio::sync::mpsc::error::TrySendError;
    let deadline = std::time::Instant::now() + SEND_PATIENCE;
    let mut batch = Ok(batch);
    loop {
        match tx.try_send(batch) {
            Ok(()) => return Ok(true),
            Err(TrySendError::Closed(_)) => return Ok(false),
            Err(TrySendError::Full(back)) => batch = back,
        }
        if std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A partition still at `End` has no concrete position to come back to: assigning
    // `End` again would skip what arrived meanwhile, so such a reader keeps fetching.
    if positions
        .elements()
        .iter()
        .any(|e| e.offset() == Offset::End)
    {
        return Ok(tx.blocking_send(batch).is_ok());
    }
    consumer
        .unassign()
        .map_err(|e| format!("cannot stop fetching: {e}"))?;
    if tx.blocking_send(batch).is_err() {
        return Ok(false);
    }
    consumer
        .assign(positions)
        .map_err(|e| format!("cannot assign partitions: {e}"))?;
    Ok(true)
}

impl Remote {
    /// Fails when a partition of the source now ends before the next offset to copy: the
    /// source cluster was replaced or reset, or the topic recreated, and its records are
    /// numbered afresh. Resuming there would skip or repeat records silently, so the
    /// mirror reports it (status, errors) until an operator decides.
    fn check_not_back(&self, consumer: &Consumer, positions: &ResumePositions) -> Result<()> {
        let topic = &self.source.topic;
        for p in 0..i32::try_from(self.partitions).unwrap_or(i32::MAX) {
            let Some(next) = positions.next_offset(p) else {
                continue;
            };
            let (_, end) = consumer
                .fetch_watermarks(topic, p, self.timeout)
                .map_err(|e| failure(&self.label, format!("cannot read offsets: {e}")))?;
            // Some brokers report the base offset of the last batch as the end: a low end
            // is confirmed by looking for the last record copied.
            if end < next && !self.holds(consumer, p, next - 1)? {
                return Err(failure(
                    &self.label,
                    format!(
                        "the source went back: partition {p} now ends at offset {end}, before \
                         offset {next} the destination already holds; the source cluster was \
                         replaced or reset, or the topic recreated; mirror it into a new \
                         destination (or empty this one) to copy its records"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether partition `p` of the source holds a record at `offset`.
    fn holds(&self, consumer: &Consumer, p: i32, offset: i64) -> Result<bool> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.source.topic, p, Offset::Offset(offset))
            .map_err(|e| failure(&self.label, e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| failure(&self.label, format!("cannot assign partitions: {e}")))?;
        let deadline = std::time::Instant::now() + self.timeout;
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => return Ok(m.partition() == p && m.offset() == offset),
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                // Out of range (reported as such, or as no offset to reset to, since
                // auto.offset.reset is "error"): the record is gone.
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset
                        )
                    ) =>
                {
                    return Ok(false)
                }
                Some(Err(e)) => return Err(failure(&self.label, format!("cannot read: {e}"))),
            }
        }
        // The broker answered with the partition's end but gives no record at `offset`
        // (some brokers answer a fetch past the end with nothing, not OUT_OF_RANGE).
        Ok(false)
    }

    /// Per partition, the broker's offset for time `ms` (`None`: no record that recent yet).
    fn offsets_for_time(&self, consumer: &Consumer, ms: i64) -> Result<Vec<Option<i64>>> {
        let topic = &self.source.topic;
        let mut tpl = TopicPartitionList::new();
        for p in 0..i32::try_from(self.partitions).unwrap_or(i32::MAX) {
            tpl.add_partition_offset(topic, p, Offset::Offset(ms))
                .map_err(|e| failure(&self.label, e.to_string()))?;
        }
        let found = consumer
            .offsets_for_times(tpl, self.timeout)
            .map_err(|e| failure(&self.label, format!("cannot look up offsets by time: {e}")))?;
        Ok((0..self.partitions as i32)
            .map(
                |p| match found.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => Some(o),
                    _ => None,
                },
            )
            .collect())
    }
}

/// Logs of source records with header names that are not UTF-8, which a producer can repeat.
static UNREADABLE_HEADERS: crate::limit::RateLimit = crate::limit::RateLimit::new();
