//! Recovery: where to resume, read back from the destination's own tail.
//!
//! Per partition of the destination (and of its dead-letter topic, so a dead letter is not
//! written twice), read the last `W` records up to the partition's end and keep the
//! highest `am-source` offset of this mirror's source. If none of them names this source
//! and the window did not reach the partition's start, widen it and read again. The end is
//! found by reading to partition EOF rather than trusting the high watermark, which some
//! brokers report as the base offset of the last batch.

use std::time::{Duration, Instant};

use alertmesh_alert::headers;
use rdkafka::consumer::Consumer as _;

use crate::quiet::{Consumer, QuietContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::destination_error;
use crate::resume::QueryResume;
use crate::{Result, ResumePositions};

/// What recovery looks for in the destination's records.
pub(crate) trait Observer {
    /// Takes the headers of the record at `offset` of `topic` (read in offset order per
    /// partition); returns whether it is a copy of this mirror's source.
    fn observe(&mut self, topic: &str, offset: i64, headers: &[(&str, Option<&[u8]>)]) -> bool;
}

impl Observer for ResumePositions {
    fn observe(&mut self, _: &str, _: i64, hs: &[(&str, Option<&[u8]>)]) -> bool {
        let mut found = false;
        for (_, value) in hs.iter().filter(|(k, _)| *k == headers::SOURCE) {
            if let Some(v) = value {
                found |= ResumePositions::observe(self, v);
            }
        }
        found
    }
}

impl Observer for QueryResume {
    fn observe(&mut self, topic: &str, offset: i64, hs: &[(&str, Option<&[u8]>)]) -> bool {
        let value = |name: &str| hs.iter().find(|(k, _)| *k == name).and_then(|(_, v)| *v);
        match value(headers::SOURCE) {
            Some(source) => self.observe_copy_at(
                topic,
                offset,
                source,
                value(headers::QUERY),
                value(headers::RESUME),
            ),
            None => false,
        }
    }
}

/// Records read first from the end of each partition; most mirrors find their position in
/// the last record.
const FIRST_WINDOW: i64 = 16;
/// Each widening reads this many times more records.
const WIDEN: i64 = 16;

/// One partition still being searched.
struct Search {
    topic: String,
    partition: i32,
    low: i64,
    high: i64,
    window: i64,
}

impl Search {
    fn from(&self) -> i64 {
        self.low.max(self.high.saturating_sub(self.window))
    }
}

/// Resume positions of the source `prefix` in `topics` (each with `partitions`
/// partitions; only partition `only` when given, a shared mirror's work unit). Every
/// partition is read at once, in rounds that widen the window of the partitions still
/// without a record of this source. Blocking: run it on a blocking thread.
pub(crate) fn recover(
    config: ClientConfig,
    topics: &[String],
    partitions: usize,
    only: Option<i32>,
    prefix: &str,
    timeout: Duration,
) -> Result<ResumePositions> {
    let mut positions = ResumePositions::new(prefix);
    recover_with(config, topics, partitions, only, timeout, &mut positions)?;
    Ok(positions)
}

/// Feeds the tails of `topics` (each with `partitions` partitions, or only partition `only`)
/// to `observer`, widening
/// the window of each partition until it finds a copy of the source or the partition's
/// start. Blocking: run it on a blocking thread.
pub(crate) fn recover_with<O: Observer>(
    config: ClientConfig,
    topics: &[String],
    partitions: usize,
    only: Option<i32>,
    timeout: Duration,
    positions: &mut O,
) -> Result<()> {
    let mut config = super::reader_config(config);
    // Reaching the end of a partition should not wait for the broker's long poll.
    config.set("fetch.wait.max.ms", "50");
    // One consumer per topic: partition EOF events name only the partition.
    for topic in topics {
        let consumer: Consumer = config
            .create_with_context(QuietContext::default())
            .map_err(|e| destination_error(topic, format!("cannot create a consumer: {e}")))?;
        recover_topic(&consumer, topic, partitions, only, timeout, positions)?;
    }
    Ok(())
}

fn recover_topic<O: Observer>(
    consumer: &Consumer,
    topic: &str,
    partitions: usize,
    only: Option<i32>,
    timeout: Duration,
    positions: &mut O,
) -> Result<()> {
    let mut todo = Vec::new();
    let all = 0..i32::try_from(partitions).unwrap_or(i32::MAX);
    for partition in all.filter(|p| only.is_none_or(|o| o == *p)) {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| {
                destination_error(
                    topic,
                    format!("cannot read offsets of partition {partition}: {e}"),
                )
            })?;
        todo.push(Search {
            topic: topic.to_owned(),
            partition,
            low,
            high,
            window: FIRST_WINDOW,
        });
    }
    while !todo.is_empty() {
        let found = read_round(consumer, &todo, timeout, positions)?;
        todo = todo
            .into_iter()
            .zip(found)
            .filter(|(s, found)| !found && s.from() > s.low)
            .map(|(mut s, _)| {
                s.window = s.window.saturating_mul(WIDEN);
                s
            })
            .collect();
    }
    Ok(())
}

/// Reads every searched partition from its window's start to its end; returns, per
/// search, whether a record named the source.
fn read_round<O: Observer>(
    consumer: &Consumer,
    todo: &[Search],
    timeout: Duration,
    positions: &mut O,
) -> Result<Vec<bool>> {
    let name = todo[0].topic.as_str();
    let fail = |reason: String| destination_error(name, reason);
    let mut tpl = TopicPartitionList::new();
    for s in todo {
        tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.from()))
            .map_err(|e| fail(e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| fail(format!("cannot assign partitions: {e}")))?;
    let index = |topic: &str, partition: i32| {
        todo.iter()
            .position(|s| s.topic == topic && s.partition == partition)
    };
    let mut found = vec![false; todo.len()];
    let mut at_end = vec![false; todo.len()];
    // A stall (no record, no EOF) longer than the timeout means the cluster is not
    // answering; a long read that keeps progressing is fine.
    let mut last_progress = Instant::now();
    while at_end.iter().any(|e| !e) {
        if consumer.context().is_lost() {
            return Err(fail(crate::quiet::LOST.to_owned()));
        }
        if last_progress.elapsed() > timeout {
            return Err(fail(format!(
                "reading the destination stalled for {timeout:?}"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(i) = todo.iter().position(|s| s.partition == p) {
                    at_end[i] = true;
                    last_progress = Instant::now();
                }
            }
            Some(Err(e)) => return Err(fail(format!("cannot read the destination: {e}"))),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let Some(i) = index(m.topic(), m.partition()) else {
                    continue;
                };
                let Some(hs) = m.headers() else { continue };
                let (hs, _) = crate::kafka_headers::readable(hs);
                found[i] |= positions.observe(m.topic(), m.offset(), &hs);
            }
        }
    }
    Ok(found)
}
