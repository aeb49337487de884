//! Resume positions recovered from the `am-source` headers of a destination topic.
//!
//! A mirror names each copied record's source in `am-source`: the source alert ref
//! `am://<gateway>/<topic>/<partition>/<offset>` for a gateway source, or
//! `kafka://<bootstrap>/<topic>/<partition>/<offset>` for a raw Kafka source (the cluster's
//! bootstrap servers, so a reader knows where the record came from). Both are a *source
//! prefix* followed by `/<partition>/<offset>`, so one parser serves both, and records of
//! other sources (another mirror sharing the topic, a local producer) are ignored.
//!
//! A raw Kafka source is recognised by its topic whatever bootstrap list its values name,
//! and in the older `kafka://<topic>/<partition>/<offset>` form too: editing the bootstrap
//! list (adding a broker) or upgrading must not make a mirror copy its source again.

use std::collections::BTreeMap;

/// The `am-source` value of one source record: `<prefix>/<partition>/<offset>`.
pub fn source_ref(prefix: &str, partition: i32, offset: i64) -> String {
    format!("{prefix}/{partition}/{offset}")
}

/// The source prefix of a gateway source: `am://<gateway>/<topic>`.
pub fn gateway_prefix(gateway: &str, topic: &str) -> String {
    format!("am://{gateway}/{topic}")
}

/// The source prefix of a raw Kafka source: `kafka://<bootstrap>/<topic>`, the bootstrap
/// servers comma-separated without schemes or slashes (so the value still splits at `/`).
pub fn kafka_prefix(bootstrap: &str, topic: &str) -> String {
    let servers: Vec<String> = bootstrap
        .split(',')
        .map(|s| s.trim())
        .map(|s| s.rsplit_once("://").map_or(s, |(_, rest)| rest))
        .map(|s| s.replace('/', ""))
        .filter(|s| !s.is_empty())
        .collect();
    format!("kafka://{}/{topic}", servers.join(","))
}

/// Splits an `am-source` value of the source `prefix` into (partition, offset); `None` for
/// another source's value or a malformed one.
pub fn parse_source(prefix: &str, value: &[u8]) -> Option<(i32, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    position(text.strip_prefix(prefix)?.strip_prefix('/')?)
}

/// `<partition>/<offset>`, both non-negative, and an offset that has a next one (a value
/// read back from the destination was written from a source's answer: `i64::MAX` there
/// would wrap the next offset around).
fn position(rest: &str) -> Option<(i32, i64)> {
    let (partition, offset) = rest.split_once('/')?;
    let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
    let offset: i64 = offset.parse().ok().filter(|o| (0..i64::MAX).contains(o))?;
    Some((partition, offset))
}

/// Splits an `am-source` value of a raw Kafka source of `topic` into (partition, offset):
/// `kafka://<any bootstrap>/<topic>/<p>/<o>` or the older `kafka://<topic>/<p>/<o>`.
pub fn parse_kafka_source(topic: &str, value: &[u8]) -> Option<(i32, i64)> {
    let rest = std::str::from_utf8(value).ok()?.strip_prefix("kafka://")?;
    let in_topic = |r: &str| r.strip_prefix(topic)?.strip_prefix('/').and_then(position);
    // Older form first; a bootstrap that happens to equal the topic name falls through.
    in_topic(rest).or_else(|| in_topic(rest.split_once('/')?.1))
}

/// The topic of a raw Kafka source prefix (`kafka://<bootstrap>/<topic>`).
fn kafka_topic(prefix: &str) -> Option<&str> {
    let rest = prefix.strip_prefix("kafka://")?;
    Some(rest.rsplit_once('/').map_or(rest, |(_, topic)| topic))
}

/// Where a source's stream said it started, per partition (a peer gateway's
/// `AlertBatch.starts`), kept for the life of a mirror job: a stream reopened after an
/// error resumes a partition it had copied nothing from where it first began, not at a new
/// `latest` that would pass over what arrived meanwhile. Only in memory: after a restart,
/// the destination's copies are the only checkpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct Starts {
    inner: std::sync::Arc<std::sync::Mutex<(String, BTreeMap<i32, i64>)>>,
}

impl Starts {
    /// The most partitions kept; Kafka topics have far fewer.
    const MAX_PARTITIONS: usize = 1 << 16;

    /// Records the starts a source with `prefix` announced; a partition keeps its first.
    pub(crate) fn record(&self, prefix: &str, starts: impl IntoIterator<Item = (i32, i64)>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (known, next) = &mut *guard;
        if known != prefix {
            // Another source (the configuration changed): its numbering is not this one's.
            *known = prefix.to_owned();
            next.clear();
        }
        for (p, o) in starts {
            // Positions read back from copies are below i64::MAX too.
            let sane = p >= 0 && (0..i64::MAX).contains(&o);
            if sane && (next.len() < Self::MAX_PARTITIONS || next.contains_key(&p)) {
                next.entry(p).or_insert(o);
            }
        }
    }

    /// Whether the starts recorded are those of the source `prefix`.
    pub(crate) fn is_for(&self, prefix: &str) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 == prefix
    }

    /// Gives `positions` the recorded start of each partition it has no position for.
    pub(crate) fn fill(&self, positions: &mut ResumePositions) {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (known, next) = &*guard;
        if known != positions.prefix() {
            return;
        }
        for (p, o) in next {
            if positions.next_offset(*p).is_none() {
                positions.advance(*p, *o);
            }
        }
    }
}

/// Per source partition, the next source offset a mirror must copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumePositions {
    prefix: String,
    next: BTreeMap<i32, i64>,
}

impl ResumePositions {
    /// No positions yet for the source `prefix` (see [`gateway_prefix`], [`kafka_prefix`]):
    /// the mirror starts where its configuration says.
    pub fn new(prefix: &str) -> Self {
        ResumePositions {
            prefix: prefix.to_owned(),
            next: BTreeMap::new(),
        }
    }

    /// The source prefix these positions are for.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Records that the destination holds the record whose `am-source` is `value`; returns
    /// whether the value names this source.
    ///
    /// Feed it the destination's records in any order: the highest source offset per source
    /// partition wins, since a mirror copies each source partition in offset order.
    pub fn observe(&mut self, value: &[u8]) -> bool {
        let parsed = match kafka_topic(&self.prefix) {
            Some(topic) => parse_kafka_source(topic, value),
            None => parse_source(&self.prefix, value),
        };
        match parsed {
            Some((partition, offset)) => {
                self.advance(partition, offset + 1);
                true
            }
            None => false,
        }
    }

    /// Moves `partition`'s next offset forward to `next` (never backwards).
    pub fn advance(&mut self, partition: i32, next: i64) {
        let slot = self.next.entry(partition).or_insert(next);
        *slot = (*slot).max(next);
    }

    /// Takes, per partition, the further of both positions.
    pub fn merge(&mut self, other: &ResumePositions) {
        for (p, o) in &other.next {
            self.advance(*p, *o);
        }
    }

    /// The next offset to copy from `partition`, if any record of it was copied.
    pub fn next_offset(&self, partition: i32) -> Option<i64> {
        self.next.get(&partition).copied()
    }

    /// Every (partition, next offset), by partition.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.next.iter().map(|(p, o)| (*p, *o)).collect()
    }

    /// Whether no position is known.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }
}

/// Where a query-sourced mirror resumes: recovered from the `am-resume` header of the
/// last record of this source in the destination (or its dead-letter topic).
///
/// A query stream hands out a resume token per batch, not per row, and a crash can land
/// part of a batch. So every copy carries `<seq> <skip> <token>`: `seq` counts the rows
/// this mirror has copied (1 for the first, so the latest record is the one with the
/// highest, across both topics), `token` is the source's last resume token before the row
/// (empty: the start of the result) and `skip` the rows of the stream from `token` up to
/// and including this one. A restart asks for the stream from `token` and drops its first
/// `skip` rows; the last of them is the row named in `am-source`.
///
/// Kafka is read back as untrusted input: a copy of this query whose `am-resume` is
/// missing or unreadable, with no readable copy after it in the same topic, leaves no way
/// to know where to go on without skipping or repeating rows, so [`QueryResume::check`]
/// refuses to resume (see [`QueryResume::observe_at`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResume {
    prefix: String,
    /// Rows copied so far (the `seq` of the last copy).
    pub seq: u64,
    /// The source token to resume from (empty: from the start).
    pub token: String,
    /// Rows of the stream from `token` that the destination already holds.
    pub skip: u64,
    /// The row ref of the last copy.
    pub last_ref: Option<String>,
    /// Per topic read back: the offset of the last readable copy and of the last
    /// unreadable one, with why.
    tails: BTreeMap<String, Tail>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tail {
    readable: Option<i64>,
    unreadable: Option<(i64, String)>,
}

/// The longest `am-resume` value read back: a token carries at most about 1.4 KB (an order
/// value of up to 1 KB, base64url, and a digest).
pub const MAX_RESUME_HEADER: usize = 4096;

/// The most rows one resume may skip: `skip` counts rows of one source batch, and a
/// gateway's batches hold at most 100,000 alerts (its `limits.max_batch_alerts` bound).
pub const MAX_RESUME_SKIP: u64 = 100_000;

impl QueryResume {
    /// Nothing copied yet from the query whose row refs start with `prefix`
    /// (`am://<gateway>/query:<name>`).
    pub fn new(prefix: &str) -> Self {
        QueryResume {
            prefix: prefix.to_owned(),
            ..Default::default()
        }
    }

    /// The source prefix these positions are for.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The `am-resume` value of a copy.
    pub fn header(seq: u64, skip: u64, token: &str) -> String {
        format!("{seq} {skip} {token}")
    }

    /// Records a destination record with `am-source` = `source` and `am-resume` =
    /// `resume`: `Ok(false)` if it is not a copy of this query, `Ok(true)` if it is (the
    /// one with the highest `seq` wins), `Err(why)` if it is a copy whose `am-resume`
    /// cannot be read.
    pub fn observe(&mut self, source: &[u8], resume: Option<&[u8]>) -> Result<bool, String> {
        self.observe_copy(source, None, resume)
    }

    /// [`Self::observe`] with the copy's `am-query`: a copy names its query there (an
    /// archive's rows are alerts, whose `am-source` is their own topic's ref), or, written
    /// before `am-query` was, by the prefix of its `am-source`.
    pub fn observe_copy(
        &mut self,
        source: &[u8],
        query: Option<&[u8]>,
        resume: Option<&[u8]>,
    ) -> Result<bool, String> {
        let named = query == Some(self.prefix.as_bytes());
        let Some(row) = std::str::from_utf8(source).ok().filter(|s| {
            named
                || s.strip_prefix(&self.prefix)
                    .is_some_and(|r| r.starts_with('/'))
        }) else {
            return Ok(false);
        };
        let (seq, skip, token) = parse_resume(resume)?;
        if seq > self.seq {
            self.seq = seq;
            self.skip = skip;
            self.token = token.to_owned();
            self.last_ref = Some(row.to_owned());
        }
        Ok(true)
    }

    /// [`Self::observe`] for the record at `offset` of partition 0 of `topic`, read in
    /// offset order; returns whether it is a copy of this query (readable or not).
    pub fn observe_at(
        &mut self,
        topic: &str,
        offset: i64,
        source: &[u8],
        resume: Option<&[u8]>,
    ) -> bool {
        self.observe_copy_at(topic, offset, source, None, resume)
    }

    /// [`Self::observe_at`] with the copy's `am-query` (see [`Self::observe_copy`]).
    pub fn observe_copy_at(
        &mut self,
        topic: &str,
        offset: i64,
        source: &[u8],
        query: Option<&[u8]>,
        resume: Option<&[u8]>,
    ) -> bool {
        match self.observe_copy(source, query, resume) {
            Ok(false) => false,
            Ok(true) => {
                let tail = self.tails.entry(topic.to_owned()).or_default();
                tail.readable = tail.readable.max(Some(offset));
                true
            }
            Err(why) => {
                let tail = self.tails.entry(topic.to_owned()).or_default();
                if tail.unreadable.as_ref().is_none_or(|(o, _)| *o < offset) {
                    tail.unreadable = Some((offset, why));
                }
                true
            }
        }
    }

    /// Whether resuming is safe: no topic read back ends with a copy of this query whose
    /// `am-resume` cannot be read (such a copy may be the latest: resuming from an earlier
    /// one would repeat rows, from the start even more). `Err((topic, message))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (topic, tail) in &self.tails {
            if let Some((offset, why)) = &tail.unreadable {
                if tail.readable.is_none_or(|r| r < *offset) {
                    return Err((
                        topic.clone(),
                        format!(
                            "the last copy of {} (partition 0, offset {offset}) has {why}; the \
                             mirror stops rather than skip or repeat rows: delete the records \
                             from that offset on, or give the mirror a new destination topic",
                            self.prefix
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `<seq> <skip> <token>` with a positive seq, a skip of at most seq and
/// [`MAX_RESUME_SKIP`], and a token of printable ASCII (empty: the start of the result).
fn parse_resume(resume: Option<&[u8]>) -> Result<(u64, u64, &str), String> {
    let bytes = resume.ok_or("no am-resume header")?;
    if bytes.len() > MAX_RESUME_HEADER {
        return Err(format!(
            "an am-resume header of {} bytes (at most {MAX_RESUME_HEADER})",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "an am-resume header that is not UTF-8")?;
    let bad = || {
        format!(
            "an unreadable am-resume header \"{}\" (expected \"<seq> <skip> <token>\")",
            alertmesh_alert::echo::shown(text, 64)
        )
    };
    let mut parts = text.splitn(3, ' ');
    let (Some(seq), Some(skip), Some(token)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let seq: u64 = seq.parse().ok().filter(|s| *s > 0).ok_or_else(bad)?;
    let skip: u64 = skip.parse().map_err(|_| bad())?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    if skip > seq || skip > MAX_RESUME_SKIP {
        return Err(format!(
            "an am-resume header that skips {skip} rows after {seq} copied (at most {} here)",
            seq.min(MAX_RESUME_SKIP)
        ));
    }
    Ok((seq, skip, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_offset_without_a_next_one_is_not_a_position() {
        let mut r = ResumePositions::new("am://lasair/ztf");
        assert!(!r.observe(format!("am://lasair/ztf/0/{}", i64::MAX).as_bytes()));
        assert_eq!(r.next_offset(0), None);
        let last = i64::MAX - 1;
        assert!(r.observe(format!("am://lasair/ztf/0/{last}").as_bytes()));
        assert_eq!(r.next_offset(0), Some(i64::MAX));
        assert_eq!(
            parse_kafka_source("t", format!("kafka://h:1/t/0/{}", i64::MAX).as_bytes()),
            None
        );
    }

    #[test]
    fn the_copy_with_the_highest_seq_sets_where_a_query_resumes() {
        let mut r = QueryResume::new("am://lasair/query:objects");
        let row = |o: i64| format!("am://lasair/query:objects/{o}");
        assert_eq!(
            r.observe(row(5).as_bytes(), Some(b"7 2 amq1.abc")),
            Ok(true)
        );
        assert_eq!(
            r.observe(row(3).as_bytes(), Some(b"5 0 amq1.xyz")),
            Ok(true)
        );
        assert_eq!(r.observe(row(1).as_bytes(), Some(b"1 1 ")), Ok(true));
        assert_eq!((r.seq, r.skip, r.token.as_str()), (7, 2, "amq1.abc"));
        assert_eq!(r.last_ref, Some(row(5)));
        for source in [
            "am://lasair/query:objects2/9",
            "am://other/query:objects/9",
            "am://lasair/ztf/0/9",
            "",
        ] {
            assert_eq!(
                r.observe(source.as_bytes(), Some(b"9 0 t")),
                Ok(false),
                "{source}"
            );
        }
        assert_eq!(r.observe(&[0xff, 0xfe], Some(b"9 0 t")), Ok(false));
        assert_eq!(r.seq, 7);
        assert_eq!(QueryResume::header(8, 0, "amq1.t"), "8 0 amq1.t");
    }

    #[test]
    fn a_copy_with_a_missing_or_hostile_am_resume_is_an_error_not_a_skip() {
        let big = format!("9 0 amq1.{}", "A".repeat(MAX_RESUME_HEADER));
        let cases: [(Option<&[u8]>, &str); 12] = [
            (None, "no am-resume header"),
            (Some(b"\xff\xfe 0 t"), "not UTF-8"),
            (Some(big.as_bytes()), "of 4105 bytes (at most 4096)"),
            (Some(b"0 0 t"), "unreadable am-resume header \"0 0 t\""),
            (Some(b"9 x t"), "unreadable"),
            (Some(b"-9 0 t"), "unreadable"),
            (Some(b"9 0 t u"), "unreadable"),
            (Some(b"9 0"), "unreadable"),
            (Some(b""), "unreadable"),
            (Some(b"9 0 t\x1b[2J"), "\"9 0 t\\u{1b}[2J\""),
            (Some(b"9 10 t"), "skips 10 rows after 9 copied"),
            (Some(b"999999 100001 t"), "(at most 100000 here)"),
        ];
        for (resume, says) in cases {
            let mut r = QueryResume::new("am://lasair/query:objects");
            let why = r
                .observe(b"am://lasair/query:objects/9", resume)
                .unwrap_err();
            assert!(why.contains(says), "{resume:?}: {why}");
            assert!(why.len() < 300, "capped: {why}");
            assert_eq!(r.seq, 0, "nothing taken from {resume:?}");
        }
        // 18446744073709551616 does not fit a u64.
        let mut r = QueryResume::new("am://lasair/query:objects");
        assert!(r
            .observe(
                b"am://lasair/query:objects/9",
                Some(b"18446744073709551616 0 t")
            )
            .is_err());
    }

    #[test]
    fn an_unreadable_copy_stops_the_resume_unless_a_readable_one_follows_it() {
        let row = b"am://lasair/query:objects/9";
        let mut r = QueryResume::new("am://lasair/query:objects");
        assert!(r.observe_at("dest", 10, row, Some(b"3 0 amq1.a")));
        assert!(r.observe_at("dest", 11, row, Some(b"garbage")));
        assert!(r.observe_at("dest.dlq", 4, row, Some(b"2 1 amq1.b")));
        let (topic, message) = r.check().unwrap_err();
        assert_eq!(topic, "dest");
        assert!(
            message.starts_with(
                "the last copy of am://lasair/query:objects (partition 0, offset 11) has an \
                 unreadable am-resume header \"garbage\""
            ),
            "{message}"
        );
        assert!(message.contains("the mirror stops rather than skip or repeat rows"));
        // A readable copy written after it: the unreadable one is older, resuming is safe.
        assert!(r.observe_at("dest", 12, row, Some(b"4 0 amq1.c")));
        assert_eq!(r.check(), Ok(()));
        assert_eq!((r.seq, r.token.as_str()), (4, "amq1.c"));
        // Records of other sources say nothing.
        assert!(!r.observe_at("dest", 13, b"am://lasair/ztf/0/1", Some(b"garbage")));
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn highest_copied_offset_per_partition_sets_the_resume_point() {
        let mut r = ResumePositions::new(&gateway_prefix("survey", "ztf.alerts"));
        for text in [
            "am://survey/ztf.alerts/0/7",
            "am://survey/ztf.alerts/0/9",
            "am://survey/ztf.alerts/0/8",
            "am://survey/ztf.alerts/1/3",
        ] {
            assert!(r.observe(text.as_bytes()));
        }
        assert_eq!(r.next_offset(0), Some(10));
        assert_eq!(r.next_offset(1), Some(4));
        assert_eq!(r.next_offset(2), None);
        assert_eq!(r.positions(), vec![(0, 10), (1, 4)]);
    }

    #[test]
    fn other_sources_and_malformed_values_are_ignored() {
        let mut r = ResumePositions::new(&kafka_prefix("k:9092", "ztf"));
        for text in [
            "kafka://ztf2/0/5",
            "kafka://k:9092/ztf2/0/5",
            "kafka://k:9092/ztf/0",
            "kafka://ztf/0",
            "kafka://ztf/x/1",
            "kafka://ztf/0/-1",
            "kafka://ztf/0/1/2",
            "am://gw/ztf/0/99",
            "",
        ] {
            assert!(!r.observe(text.as_bytes()), "{text}");
        }
        assert!(!r.observe(&[0xff, 0xfe]));
        assert!(r.is_empty());
        assert!(r.observe(source_ref("kafka://k:9092/ztf", 2, 41).as_bytes()));
        assert_eq!(r.next_offset(2), Some(42));
    }

    #[test]
    fn raw_kafka_sources_name_the_cluster_and_resume_from_any_form() {
        assert_eq!(
            kafka_prefix(" a:9092, SSL://b:9093/ ,,", "ztf.raw"),
            "kafka://a:9092,b:9093/ztf.raw"
        );
        let mut r = ResumePositions::new(&kafka_prefix("a:9092", "ztf.raw"));
        // Written before am-source named the cluster: still this source.
        assert!(r.observe(b"kafka://ztf.raw/0/7"));
        // The bootstrap list was edited since: still this source.
        assert!(r.observe(b"kafka://a:9092,c:9092/ztf.raw/1/3"));
        assert!(r.observe(b"kafka://a:9092/ztf.raw/0/9"));
        assert_eq!(r.positions(), vec![(0, 10), (1, 4)]);
        // A bootstrap named like the topic.
        let mut same = ResumePositions::new(&kafka_prefix("t", "t"));
        assert!(same.observe(b"kafka://t/t/2/5"));
        assert_eq!(same.next_offset(2), Some(6));
    }

    #[test]
    fn merge_keeps_the_further_position_per_partition() {
        let mut a = ResumePositions::new("kafka://b:1/t");
        a.advance(0, 5);
        a.advance(1, 9);
        let mut b = ResumePositions::new("kafka://b:1/t");
        b.advance(0, 7);
        b.advance(2, 1);
        a.merge(&b);
        assert_eq!(a.positions(), vec![(0, 7), (1, 9), (2, 1)]);
        a.advance(0, 3);
        assert_eq!(a.next_offset(0), Some(7), "never moves backwards");
    }

    #[test]
    fn announced_starts_place_only_partitions_nothing_was_copied_from() {
        let prefix = gateway_prefix("survey", "ztf.raw");
        let starts = Starts::default();
        starts.record(&prefix, [(0, 4), (2, 9), (-1, 3), (1, -2)]);
        starts.record(&prefix, [(2, 1)]);
        let mut copied = ResumePositions::new(&prefix);
        copied.advance(0, 12);
        starts.fill(&mut copied);
        assert_eq!(
            copied.positions(),
            vec![(0, 12), (2, 9)],
            "first start kept, nonsense dropped"
        );
        // Another source's numbering is not this one's.
        let mut other = ResumePositions::new(&gateway_prefix("lasair", "ztf.raw"));
        starts.fill(&mut other);
        assert!(other.is_empty());
        starts.record(&gateway_prefix("lasair", "ztf.raw"), [(5, 5)]);
        let mut again = ResumePositions::new(&prefix);
        starts.fill(&mut again);
        assert!(
            again.is_empty(),
            "a new source replaced the old one's starts"
        );
        // Bounded.
        starts.record(
            &prefix,
            (0..2 * Starts::MAX_PARTITIONS as i32).map(|p| (p, 0)),
        );
        let mut many = ResumePositions::new(&prefix);
        starts.fill(&mut many);
        assert_eq!(many.positions().len(), Starts::MAX_PARTITIONS);
    }
}
