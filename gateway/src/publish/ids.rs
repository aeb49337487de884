//! The publish ids of one partition, read back from the `am-agent` and `am-publish-id`
//! headers of its records: Kafka holds the state, so a restarted gateway or another
//! replica knows what was published before.
//!
//! The index covers the partition's last `window` records; it is brought up to the end of
//! the partition before each publish to it (under the partition's lock), so a record
//! written by a gateway that then crashed, or by another replica, is found.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use alertmesh_alert::headers;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::plan::id_key;
use crate::error::{Error, Result};
use crate::kafka::{replaced, Kafka};

/// Publish ids of one partition and the offsets of the records they published.
#[derive(Debug)]
pub(crate) struct Index {
    /// The next offset to read; `None` before the first read.
    next: Option<i64>,
    ids: HashMap<String, i64>,
    /// Ids in offset order, to forget those that leave the window.
    order: VecDeque<(i64, String)>,
    window: usize,
    /// Records were sent whose outcome is not known (the request was dropped, or a
    /// delivery failed): the next publish reads the partition to its end, whatever end
    /// offset the broker reports.
    uncertain: bool,
}

impl Index {
    pub(crate) fn new(window: usize) -> Self {
        Index {
            next: None,
            ids: HashMap::new(),
            order: VecDeque::new(),
            window: window.max(1),
            uncertain: false,
        }
    }

    /// The offset published under `id_key`, if it is within the window.
    pub(crate) fn get(&self, id_key: &str) -> Option<i64> {
        self.ids.get(id_key).copied()
    }

    /// Where reading must start for the partition to be known up to `end` (its next
    /// offset), or `None` when it is known already.
    pub(crate) fn read_from(&self, end: i64) -> Option<i64> {
        let floor = (end - self.window as i64).max(0);
        match self.next {
            Some(n) if self.uncertain => Some(n.max(floor)),
            Some(n) if n >= end => None,
            Some(n) => Some(n.max(floor)),
            None => Some(floor),
        }
    }

    /// Records are about to be sent: until [`Index::settled`], their outcome is unknown.
    pub(crate) fn sending(&mut self) {
        self.uncertain = true;
    }

    /// Every record sent was acknowledged and noted.
    pub(crate) fn settled(&mut self) {
        self.uncertain = false;
    }

    /// Records that `offset` published `id_key` (the first record with an id wins). The
    /// partition counts as known past `offset` only when it was known up to it: records
    /// another writer put in between are read on the next publish.
    pub(crate) fn note(&mut self, offset: i64, id_key: String) {
        if !self.ids.contains_key(&id_key) {
            self.ids.insert(id_key.clone(), offset);
            self.order.push_back((offset, id_key));
        }
        if self.next == Some(offset) {
            self.advance(offset + 1);
        }
    }

    /// The partition was read up to `next` (its end): ids older than the window are
    /// forgotten.
    pub(crate) fn caught_up(&mut self, next: i64) {
        self.uncertain = false;
        self.advance(next);
    }

    /// The partition is known up to `next`; ids older than the window are forgotten.
    pub(crate) fn advance(&mut self, next: i64) {
        let next = self.next.map_or(next, |n| n.max(next));
        self.next = Some(next);
        let floor = next - self.window as i64;
        while self.order.front().is_some_and(|(o, _)| *o < floor) {
            if let Some((o, k)) = self.order.pop_front() {
                if self.ids.get(&k) == Some(&o) {
                    self.ids.remove(&k);
                }
            }
        }
    }
}

/// Reads the publish ids of `topic`/`partition` from `from` to the end of the partition,
/// at least up to `end` (blocking: run it off the runtime). Answers each id's offset, and
/// the next offset.
pub(crate) fn read(
    kafka: &Kafka,
    topic: &str,
    partition: i32,
    from: i64,
    end: i64,
) -> Result<(Vec<(i64, String)>, i64)> {
    let consumer = kafka.consumer_waiting(1024, Duration::from_millis(20))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(Error::from_kafka)?;
    consumer.assign(&tpl).map_err(Error::from_kafka)?;
    let timeout = kafka.timeout();
    let mut found = Vec::new();
    let mut next = from;
    let mut last_progress = Instant::now();
    // Read to the end of the partition as the fetch sees it, not just to `end`: some
    // brokers (Tansu) report an end short of a batch's last record.
    loop {
        // A client that lost its cluster is paused by the gateway's watch, and must not
        // fetch again (see `replaced`): the read fails at once, to be retried.
        if replaced::is_lost(&consumer) {
            return Err(Error::Unavailable(format!(
                "lost the connection to kafka while reading the publish ids of partition \
                 {partition} of topic {topic:?}"
            )));
        }
        if last_progress.elapsed() > timeout {
            return Err(Error::Unavailable(format!(
                "cannot read the publish ids of partition {partition} of topic {topic:?} \
                 (at offset {next} of {end}) within {timeout:?}"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                next = m.offset() + 1;
                let Some(hs) = m.headers() else { continue };
                let (hs, _) = alertmesh_mirror::kafka_headers::readable(hs);
                let (mut agent, mut id) = (None, None);
                for (key, value) in hs {
                    match key {
                        headers::AGENT => agent = value.and_then(|v| std::str::from_utf8(v).ok()),
                        headers::PUBLISH_ID => id = value.and_then(|v| std::str::from_utf8(v).ok()),
                        _ => {}
                    }
                }
                if let (Some(agent), Some(id)) = (agent, id) {
                    found.push((m.offset(), id_key(agent, id)));
                }
            }
            // Compaction or retention may leave the end short of `end`.
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok((found, next.max(end))),
            Some(Err(e)) => {
                consumer.context().saw(&e);
                tracing::debug!(error = %e, "publish id read error");
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_read_covers_the_window_then_only_what_is_new() {
        let mut ix = Index::new(100);
        assert_eq!(ix.read_from(40), Some(0));
        assert_eq!(ix.read_from(1000), Some(900));
        ix.caught_up(1000);
        assert_eq!(ix.read_from(1000), None);
        assert_eq!(ix.read_from(1003), Some(1000));
        ix.note(1000, "a".into());
        assert_eq!(ix.read_from(1001), None);
        // A send whose outcome is unknown: read to the end even if the broker's end
        // offset says nothing is new.
        ix.sending();
        assert_eq!(ix.read_from(1001), Some(1001));
        ix.caught_up(1001);
        assert_eq!(ix.read_from(1001), None);
        ix.sending();
        ix.settled();
        assert_eq!(ix.read_from(1001), None);
    }

    #[test]
    fn ids_are_remembered_within_the_window_and_the_first_write_wins() {
        let mut ix = Index::new(3);
        ix.caught_up(10);
        ix.note(10, "a".into());
        ix.note(11, "a".into());
        ix.note(12, "b".into());
        assert_eq!(ix.get("a"), Some(10));
        assert_eq!(ix.get("b"), Some(12));
        ix.note(13, "c".into());
        ix.note(14, "d".into());
        assert_eq!(ix.get("a"), None, "10 is older than the last 3 records");
        assert_eq!(ix.get("b"), Some(12));
        assert_eq!(ix.get("d"), Some(14));
        // Another writer's record at 15: ours at 16 does not make 15 count as read.
        ix.note(16, "f".into());
        assert_eq!(ix.get("f"), Some(16));
        assert_eq!(ix.read_from(17), Some(15));
    }
}
