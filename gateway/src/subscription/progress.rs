//! Per-subscription bookkeeping: which records to deliver, where each partition stands,
//! and when the stream is complete. Pure and synchronous, shared by both read modes.

use std::collections::{HashMap, HashSet};

use crate::record::Record;

/// Where a bounded stream stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndAt {
    /// A live stream.
    Never,
    /// The end of each partition as the reader reaches it.
    Now,
    /// The last record whose timestamp is at or before this time (ms since the epoch).
    Time(i64),
}

#[derive(Debug, Clone)]
pub(super) struct Progress {
    partitions: Vec<i32>,
    /// One per subscribed partition, in `partitions` order. Looked up per record, so a
    /// small vector rather than hash maps.
    parts: Vec<Part>,
    /// Skip records older than this until a partition reaches it (start at a time).
    skip_before: Option<i64>,
    end: EndAt,
    end_passed: bool,
    remaining: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Part {
    /// Next offset to deliver, once known.
    next: Option<i64>,
    /// A record at or after `skip_before` was seen.
    started: bool,
    done: bool,
    at_eof: bool,
}

impl Progress {
    pub(super) fn new(
        partitions: Vec<i32>,
        next: HashMap<i32, i64>,
        skip_before: Option<i64>,
        end: EndAt,
        limit: Option<u64>,
    ) -> Self {
        let parts = partitions
            .iter()
            .map(|p| Part {
                next: next.get(p).copied(),
                ..Part::default()
            })
            .collect();
        Progress {
            partitions,
            parts,
            skip_before,
            end,
            end_passed: false,
            remaining: limit,
        }
    }

    pub(super) fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// These partitions resume at positions given by the client or its cursor: their
    /// records are delivered from there whatever their timestamps (a start time only
    /// places the partitions that have no such position).
    pub(super) fn resumed(mut self, partitions: &HashSet<i32>) -> Self {
        for (p, part) in self.partitions.iter().zip(self.parts.iter_mut()) {
            if partitions.contains(p) {
                part.started = true;
            }
        }
        self
    }

    /// Takes on partitions the topic gained while the stream ran, each from its first
    /// record (all of them came after the stream began).
    pub(super) fn add_partitions(&mut self, added: &[i32]) {
        for p in added {
            if !self.partitions.contains(p) {
                self.partitions.push(*p);
                self.parts.push(Part::default());
            }
        }
    }

    /// The slot of partition `p`: partitions are usually 0..n in order, so `p` itself
    /// is tried first.
    fn slot(&self, p: i32) -> Option<usize> {
        let guess = usize::try_from(p).ok()?;
        if self.partitions.get(guess) == Some(&p) {
            return Some(guess);
        }
        self.partitions.iter().position(|q| *q == p)
    }

    /// Next offset to deliver in partition `p`, once known.
    pub(super) fn next(&self, p: i32) -> Option<i64> {
        self.slot(p).and_then(|i| self.parts[i].next)
    }

    /// Next offset to deliver per partition, for the partitions where it is known.
    pub(super) fn next_positions(&self) -> HashMap<i32, i64> {
        self.partitions
            .iter()
            .zip(&self.parts)
            .filter_map(|(p, s)| s.next.map(|n| (*p, n)))
            .collect()
    }

    /// Whether `r` is delivered, filters aside: [`Progress::admit`] then [`Progress::take`].
    #[cfg(test)]
    fn accept(&mut self, r: &Record) -> bool {
        self.admit(r) && self.take()
    }

    /// Whether `r` is within the asked positions, start and end; updates the partition's
    /// position either way.
    pub(super) fn admit(&mut self, r: &Record) -> bool {
        let Some(i) = self.slot(r.partition) else {
            return false;
        };
        let part = &mut self.parts[i];
        if part.done || self.remaining == Some(0) {
            return false;
        }
        // Already delivered, or older than the position asked for (a broker may answer a
        // fetch with the whole batch that contains the asked offset).
        if part.next.is_some_and(|n| r.offset < n) {
            return false;
        }
        part.next = Some(r.offset + 1);
        part.at_eof = false;
        if let (Some(t), Some(ts)) = (self.skip_before, r.timestamp_ms) {
            if !part.started {
                if ts < t {
                    return false;
                }
                part.started = true;
            }
        }
        if let (EndAt::Time(t), Some(ts)) = (self.end, r.timestamp_ms) {
            if ts > t {
                part.done = true;
                return false;
            }
        }
        true
    }

    /// Whether partition `p` has delivered all it was asked for (its end, a bounded
    /// stream's, was reached).
    pub(super) fn is_done(&self, p: i32) -> bool {
        self.slot(p).is_some_and(|i| self.parts[i].done)
    }

    /// Records before `to` in partition `p` are gone (reported as a gap): the partition
    /// goes on from there.
    pub(super) fn skipped_to(&mut self, p: i32, to: i64) {
        if let Some(i) = self.slot(p) {
            let part = &mut self.parts[i];
            part.next = Some(part.next.map_or(to, |n| n.max(to)));
        }
    }

    /// Counts one delivered alert against the limit; false once the limit is reached.
    pub(super) fn take(&mut self) -> bool {
        match self.remaining.as_mut() {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    /// The reader reached the current end of `p`; `position` is its next offset.
    pub(super) fn eof(&mut self, p: i32, position: Option<i64>, now_ms: i64) {
        let Some(i) = self.slot(p) else {
            return;
        };
        let (end, end_passed) = (self.end, self.end_passed);
        let part = &mut self.parts[i];
        if let Some(pos) = position {
            part.next = Some(part.next.map_or(pos, |n| n.max(pos)));
        }
        part.at_eof = true;
        match end {
            EndAt::Now => part.done = true,
            EndAt::Time(t) if now_ms > t || end_passed => part.done = true,
            _ => {}
        }
    }

    /// The wall clock passed the end time: partitions already at their end are complete;
    /// at the shared tail every partition is (it only sees what arrives from now on).
    pub(super) fn end_time_passed(&mut self, at_tail: bool) {
        self.end_passed = true;
        for part in &mut self.parts {
            if at_tail || part.at_eof {
                part.done = true;
            }
        }
    }

    pub(super) fn end(&self) -> EndAt {
        self.end
    }

    /// Every partition is at its current end (the moment to try joining the shared tail).
    pub(super) fn all_at_eof(&self) -> bool {
        self.parts.iter().all(|s| s.at_eof || s.done)
    }

    /// The stream has delivered everything it was asked for.
    pub(super) fn finished(&self) -> bool {
        self.remaining == Some(0) || (self.end != EndAt::Never && self.parts.iter().all(|s| s.done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64, ts: i64) -> Record {
        Record::bare(partition, offset, Some(ts))
    }

    #[test]
    fn skips_records_before_the_asked_offset_and_duplicates() {
        let mut p = Progress::new(vec![0], HashMap::from([(0, 5)]), None, EndAt::Never, None);
        assert!(!p.accept(&rec(0, 3, 0)));
        assert!(p.accept(&rec(0, 5, 0)));
        assert!(!p.accept(&rec(0, 5, 0)));
        assert!(p.accept(&rec(0, 6, 0)));
        assert_eq!(p.next(0), Some(7));
        assert!(!p.accept(&rec(1, 0, 0)), "partition not subscribed");
    }

    #[test]
    fn a_gap_moves_a_partition_on_and_never_back() {
        let mut p = Progress::new(
            vec![0, 1],
            HashMap::from([(0, 5)]),
            None,
            EndAt::Never,
            None,
        );
        p.skipped_to(0, 9);
        assert_eq!(p.next(0), Some(9));
        assert!(!p.accept(&rec(0, 8, 0)), "inside the gap");
        assert!(p.accept(&rec(0, 9, 0)));
        // A gap reported again by a later reader, from an older position: no step back.
        p.skipped_to(0, 7);
        assert_eq!(p.next(0), Some(10));
        p.skipped_to(1, 3);
        assert_eq!(p.next(1), Some(3), "a partition with no position yet");
        p.skipped_to(2, 3);
        assert_eq!(p.next(2), None, "not subscribed");
        assert!(!p.is_done(0));
    }

    #[test]
    fn partitions_taken_on_later_start_unknown_and_are_not_done() {
        let mut p = Progress::new(vec![0, 1], HashMap::from([(0, 5)]), None, EndAt::Now, None);
        p.eof(0, Some(5), 0);
        p.eof(1, Some(2), 0);
        assert!(p.finished());
        p.add_partitions(&[1, 3, 2]);
        assert_eq!(p.partitions(), &[0, 1, 3, 2]);
        assert_eq!(p.next(3), None);
        assert!(!p.finished(), "the new partitions are still to be read");
        assert!(p.accept(&rec(3, 0, 0)));
        assert_eq!(p.next(3), Some(1));
    }

    #[test]
    fn start_time_skips_only_until_the_first_later_record() {
        let mut p = Progress::new(vec![0], HashMap::new(), Some(100), EndAt::Never, None);
        assert!(!p.accept(&rec(0, 0, 50)));
        assert!(p.accept(&rec(0, 1, 100)));
        // Kafka semantics: once started, later records are delivered whatever their time.
        assert!(p.accept(&rec(0, 2, 90)));
    }

    #[test]
    fn resumed_partitions_deliver_from_their_position_whatever_the_start_time() {
        let next = HashMap::from([(0, 5), (1, 7)]);
        let mut p = Progress::new(vec![0, 1], next, Some(100), EndAt::Never, None)
            .resumed(&HashSet::from([1]));
        // Partition 0 was placed by the start time; partition 1 by the client.
        assert!(!p.accept(&rec(0, 5, 50)));
        assert!(
            p.accept(&rec(1, 7, 50)),
            "an older record after a resume position"
        );
        assert!(!p.accept(&rec(1, 6, 150)), "before the resume position");
    }

    #[test]
    fn end_time_and_limit_finish_the_stream() {
        let mut p = Progress::new(vec![0, 1], HashMap::new(), None, EndAt::Time(100), None);
        assert!(p.accept(&rec(0, 0, 100)));
        assert!(!p.accept(&rec(0, 1, 101)));
        assert!(!p.finished());
        p.eof(1, Some(0), 200);
        assert!(p.finished());

        let mut p = Progress::new(vec![0], HashMap::new(), None, EndAt::Never, Some(2));
        assert!(p.accept(&rec(0, 0, 0)));
        assert!(p.accept(&rec(0, 1, 0)));
        assert!(p.finished());
        assert!(!p.accept(&rec(0, 2, 0)));
    }

    #[test]
    fn end_now_completes_at_each_partition_end() {
        let mut p = Progress::new(vec![0, 1], HashMap::new(), None, EndAt::Now, None);
        p.eof(0, Some(10), 0);
        assert!(!p.finished());
        assert!(p.is_done(0) && !p.is_done(1));
        p.eof(1, Some(3), 0);
        assert!(p.finished());
        assert_eq!(p.next(0), Some(10));
        assert_eq!(p.next_positions(), HashMap::from([(0, 10), (1, 3)]));
    }

    #[test]
    fn future_end_time_waits_at_eof_until_the_clock_passes_it() {
        let mut p = Progress::new(vec![0], HashMap::new(), None, EndAt::Time(1_000), None);
        p.eof(0, Some(4), 500);
        assert!(!p.finished());
        p.end_time_passed(false);
        assert!(p.finished());
    }
}
