//! A subscription's plan: what a `SubscribeRequest` asks to read, from where to where,
//! in which batches and through which filters, with every check that needs no Kafka.
//! Pure: [`Plan::from_request`] and the position rules below are unit-tested here, and
//! `subscription.rs` only carries them out (look-ups, cursor, reader).

use std::collections::HashMap;
use std::sync::Arc;

use alertmesh_alert::{Decoder, Registry};
use alertmesh_proto::v1::{self, end, start};

use super::progress::EndAt;
use super::select::{SeenSchema, Selection};
use crate::catalog::describe_partitions;
use crate::config::{Limits, TopicConfig};
use crate::cursor;
use crate::error::{Error, Result};
use crate::kafka::reader::{BatchBounds, StartAt};
use crate::record::ms_from_timestamp;

/// Where the request asks to begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// What arrives from now on (also when the request names no start).
    Latest,
    Earliest,
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    /// Explicit positions, per partition.
    Offsets(Vec<(i32, i64)>),
}

/// How payloads are decoded for filters and JSON output.
#[derive(Debug, Clone)]
pub(crate) struct Decoding {
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) registry: Arc<Registry>,
    /// The latest writer schema seen on the topic.
    pub(crate) seen: SeenSchema,
}

/// A validated request.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) start: Start,
    pub(crate) end: EndAt,
    pub(crate) limit: Option<u64>,
    pub(crate) bounds: BatchBounds,
    /// `None`: every record, native bytes, no decoding at all.
    pub(crate) selection: Option<Selection>,
    /// A durable cursor whose positions override the start.
    pub(crate) cursor: Option<String>,
    /// Resume positions, which override the start and the cursor.
    pub(crate) resume: HashMap<i32, i64>,
}

impl Plan {
    /// Validates `req` for the exposed topic `topic`.
    pub(crate) fn from_request(
        req: &v1::SubscribeRequest,
        topic: &TopicConfig,
        limits: &Limits,
        decoding: Decoding,
    ) -> Result<Plan> {
        if req.limit == Some(0) {
            return Err(Error::InvalidArgument(
                "limit must be at least 1; leave it unset for no limit".into(),
            ));
        }
        let bounds = BatchBounds {
            max_records: clamp_default(req.max_batch_alerts, limits.max_batch_alerts),
            max_bytes: clamp_default(req.max_batch_bytes, limits.max_batch_bytes),
        };
        let end = match req.end.as_ref().and_then(|e| e.position.as_ref()) {
            None => EndAt::Never,
            Some(end::Position::Now(_)) => EndAt::Now,
            Some(end::Position::Time(t)) => EndAt::Time(ms_from_timestamp(t).ok_or_else(|| {
                Error::InvalidArgument(
                    "end time is not a valid timestamp; send an RFC 3339 time or `now`".into(),
                )
            })?),
        };
        let selection = Selection::from_request(
            req,
            &topic.name,
            topic.format,
            decoding.decoder,
            decoding.registry,
            decoding.seen,
        )?;
        let start = match req.start.as_ref().and_then(|s| s.position.as_ref()) {
            None | Some(start::Position::Latest(_)) => Start::Latest,
            Some(start::Position::Earliest(_)) => Start::Earliest,
            Some(start::Position::Time(t)) => {
                let ms = ms_from_timestamp(t).ok_or_else(|| {
                    Error::InvalidArgument(
                        "start time is not a valid timestamp; send earliest, latest, an RFC 3339 time or partition offsets".into(),
                    )
                })?;
                if let EndAt::Time(e) = end {
                    if e < ms {
                        return Err(Error::InvalidArgument(
                            "end time is before start time; the end must be at or after the start"
                                .into(),
                        ));
                    }
                }
                if ms < 0 {
                    // Every Kafka timestamp is at or after 1970, so every record is at or
                    // after such a time (and Kafka refuses negative times in ListOffsets:
                    // they are its symbolic earliest and latest).
                    Start::Earliest
                } else {
                    Start::Time(ms)
                }
            }
            Some(start::Position::Offsets(list)) => Start::Offsets(explicit_offsets(list)?),
        };
        let cursor = match req.cursor.as_str() {
            "" => None,
            name => {
                cursor::check_name(name)?;
                Some(name.to_owned())
            }
        };
        let mut resume = HashMap::new();
        for po in &req.resume {
            if po.offset < 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot resume partition {} at offset {}: offsets start at 0",
                    po.partition, po.offset,
                )));
            }
            resume.insert(po.partition, po.offset);
        }
        Ok(Plan {
            start,
            end,
            limit: req.limit,
            bounds,
            selection,
            cursor,
            resume,
        })
    }

    /// Checks that the partitions the plan names exist in the topic.
    pub(crate) fn check_partitions(&self, partitions: &[i32]) -> Result<()> {
        if let Start::Offsets(list) = &self.start {
            if let Some((p, _)) = list.iter().find(|(p, _)| !partitions.contains(p)) {
                return Err(Error::InvalidArgument(format!(
                    "partition {p} does not exist; the topic has partitions {}",
                    describe_partitions(partitions)
                )));
            }
        }
        let mut resumed: Vec<(&i32, &i64)> = self.resume.iter().collect();
        resumed.sort_unstable();
        if let Some((p, o)) = resumed.iter().find(|(p, _)| !partitions.contains(p)) {
            return Err(Error::InvalidArgument(format!(
                "cannot resume partition {p} at offset {o}: partitions are {} and offsets start at 0",
                describe_partitions(partitions)
            )));
        }
        Ok(())
    }

    /// Records older than this are skipped until a partition reaches it (a start time).
    pub(crate) fn skip_before(&self) -> Option<i64> {
        match self.start {
            Start::Time(ms) => Some(ms),
            _ => None,
        }
    }
}

/// How a subscription begins reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Begin {
    /// At the shared tail's head: only what arrives from now on.
    Head,
    /// On its own, from these positions.
    Positions(Vec<(i32, StartAt)>),
}

impl Begin {
    /// Every partition from its first record.
    pub(crate) fn earliest(partitions: &[i32]) -> Begin {
        Begin::Positions(
            partitions
                .iter()
                .map(|p| (*p, StartAt::Beginning))
                .collect(),
        )
    }

    /// From the offsets Kafka found for a start time: partitions with no record that
    /// late yet start at their end.
    pub(crate) fn at_time(found: Vec<(i32, Option<i64>)>) -> Begin {
        Begin::Positions(
            found
                .into_iter()
                .map(|(p, o)| (p, o.map_or(StartAt::End, StartAt::Offset)))
                .collect(),
        )
    }

    pub(crate) fn offsets(list: &[(i32, i64)]) -> Begin {
        Begin::Positions(
            list.iter()
                .map(|(p, o)| (*p, StartAt::Offset(*o)))
                .collect(),
        )
    }

    /// Partitions with a saved position resume there; the others keep their start.
    /// `Head` must have been turned into positions first ([`Begin::Positions`]).
    pub(crate) fn overlay(starts: Vec<(i32, StartAt)>, saved: &HashMap<i32, i64>) -> Begin {
        let mut starts = starts;
        for (p, s) in starts.iter_mut() {
            if let Some(o) = saved.get(p) {
                *s = StartAt::Offset(*o);
            }
        }
        Begin::Positions(starts)
    }

    /// The head positions of the shared tail as start positions: partitions the tail has
    /// not read yet start at their end.
    pub(crate) fn head_positions(
        partitions: &[i32],
        head: &HashMap<i32, i64>,
    ) -> Vec<(i32, StartAt)> {
        partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    head.get(p).map_or(StartAt::End, |o| StartAt::Offset(*o)),
                )
            })
            .collect()
    }
}

/// The next offset to deliver per partition, where a start names one.
pub(crate) fn next_offsets(starts: &[(i32, StartAt)]) -> HashMap<i32, i64> {
    starts
        .iter()
        .filter_map(|(p, s)| match s {
            StartAt::Offset(o) => Some((*p, *o)),
            _ => None,
        })
        .collect()
}

/// Start offsets as the stream's first message carries them (`AlertBatch.starts`), by
/// partition: those of `next` whose partition is `exact`.
pub(crate) fn announced(
    next: &HashMap<i32, i64>,
    exact: impl Fn(i32) -> bool,
) -> Vec<v1::PartitionOffset> {
    let mut starts: Vec<v1::PartitionOffset> = next
        .iter()
        .filter(|(p, _)| exact(**p))
        .map(|(p, o)| v1::PartitionOffset {
            partition: *p,
            offset: *o,
        })
        .collect();
    starts.sort_unstable_by_key(|s| s.partition);
    starts
}

/// Where the reader starts: never past a partition's end. Kafka serves nothing past the
/// end (not even the end-of-partition event that finishes an `end = now` stream), so a
/// start beyond it reads from the end, and [`next_offsets`] keeps the asked position:
/// records before it are not delivered, and such a partition of a bounded stream is
/// simply complete.
pub(crate) fn reader_starts(
    starts: &[(i32, StartAt)],
    ends: &HashMap<i32, i64>,
) -> Vec<(i32, StartAt)> {
    starts
        .iter()
        .map(|(p, s)| match (s, ends.get(p)) {
            (StartAt::Offset(o), Some(end)) if o > end => (*p, StartAt::Offset(*end)),
            _ => (*p, *s),
        })
        .collect()
}

/// Whether a start names an offset (which may lie past a partition's end).
pub(crate) fn names_offsets(starts: &[(i32, StartAt)]) -> bool {
    starts.iter().any(|(_, s)| matches!(s, StartAt::Offset(_)))
}

fn clamp_default(asked: u32, max: usize) -> usize {
    match asked as usize {
        0 => max,
        n => n.min(max),
    }
}

fn explicit_offsets(list: &v1::PartitionOffsets) -> Result<Vec<(i32, i64)>> {
    if list.offsets.is_empty() {
        return Err(Error::InvalidArgument(
            "start offsets name no partition; send partition:offset pairs such as 0:120,1:80"
                .into(),
        ));
    }
    let mut out: Vec<(i32, i64)> = Vec::with_capacity(list.offsets.len());
    // A set, not a scan of `out`: a request may list a hundred thousand partitions.
    let mut listed = std::collections::HashSet::with_capacity(list.offsets.len());
    for po in &list.offsets {
        if po.offset < 0 {
            return Err(Error::InvalidArgument(format!(
                "offset {} of partition {} is negative; offsets start at 0 (use earliest or latest for symbolic positions)",
                po.offset, po.partition
            )));
        }
        if !listed.insert(po.partition) {
            return Err(Error::InvalidArgument(format!(
                "partition {} is listed twice in the start offsets",
                po.partition
            )));
        }
        out.push((po.partition, po.offset));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alertmesh_alert::Format;
    use prost_types::Timestamp;

    fn topic() -> TopicConfig {
        TopicConfig {
            name: "ztf".into(),
            namespace: "ZTF".into(),
            format: Format::AvroOcf,
            description: String::new(),
            public: false,
            schema_registry: None,
            publish: false,
            schema: None,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 100,
            max_connections_per_ip: 100,
            max_fetches: 8,
            max_cursors_per_principal: 10,
            max_subscriptions: 10,
            max_subscriptions_per_connection: 10,
            max_subscriptions_per_principal: 10,
            max_batch_bytes: 1 << 20,
            max_batch_alerts: 500,
            reader_buffer_kib: 1024,
            reader_connections: 2,
            reader_budget_mib: 64,
            unread_pause: std::time::Duration::from_secs(10),
            unread_drop: std::time::Duration::from_secs(120),
            tail_buffer_bytes: 1 << 20,
            max_streams_per_connection: 128,
            request_timeout: std::time::Duration::from_secs(10),
            request_buffer_bytes: 1 << 20,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(300),
            max_publish_record_bytes: 900_000,
            publish_id_window: 100_000,
        }
    }

    fn plan(req: &v1::SubscribeRequest) -> Result<Plan> {
        let decoding = Decoding {
            decoder: Arc::new(Decoder::new()),
            registry: Arc::new(Registry::builtin()),
            seen: SeenSchema::default(),
        };
        Plan::from_request(req, &topic(), &limits(), decoding)
    }

    fn invalid(req: &v1::SubscribeRequest) -> String {
        match plan(req) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn offsets(pairs: &[(i32, i64)]) -> Option<v1::Start> {
        Some(v1::Start {
            position: Some(start::Position::Offsets(v1::PartitionOffsets {
                offsets: pairs
                    .iter()
                    .map(|(partition, offset)| v1::PartitionOffset {
                        partition: *partition,
                        offset: *offset,
                    })
                    .collect(),
            })),
        })
    }

    #[test]
    fn a_bare_request_is_live_from_the_head_in_full_batches() {
        let p = plan(&v1::SubscribeRequest {
            topic: "ztf".into(),
            max_batch_alerts: 10_000,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.start, Start::Latest);
        assert_eq!(p.end, EndAt::Never);
        assert_eq!((p.bounds.max_records, p.bounds.max_bytes), (500, 1 << 20));
        assert!(p.selection.is_none(), "nothing to decode");
        assert!(p.cursor.is_none() && p.resume.is_empty());
    }

    #[test]
    fn times_and_bounds_are_checked_without_kafka() {
        let p = plan(&v1::SubscribeRequest {
            start: Some(v1::Start {
                position: Some(start::Position::Time(at(100))),
            }),
            end: Some(v1::End {
                position: Some(end::Position::Time(at(200))),
            }),
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.start, Start::Time(100_000));
        assert_eq!(p.skip_before(), Some(100_000));
        assert_eq!(p.end, EndAt::Time(200_000));
        assert_eq!(p.limit, Some(3));

        let backwards = v1::SubscribeRequest {
            start: Some(v1::Start {
                position: Some(start::Position::Time(at(200))),
            }),
            end: Some(v1::End {
                position: Some(end::Position::Time(at(100))),
            }),
            ..Default::default()
        };
        assert!(invalid(&backwards).contains("end time is before start time"));
        let before_1970 = plan(&v1::SubscribeRequest {
            start: Some(v1::Start {
                position: Some(start::Position::Time(at(-86_400))),
            }),
            end: Some(v1::End {
                position: Some(end::Position::Time(at(-3_600))),
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(before_1970.start, Start::Earliest, "every record is later");
        assert_eq!(before_1970.skip_before(), None);
        let zero = v1::SubscribeRequest {
            limit: Some(0),
            ..Default::default()
        };
        assert!(invalid(&zero).contains("limit must be at least 1"));
    }

    #[test]
    fn start_offsets_must_be_a_set_of_non_negative_positions() {
        for (pairs, says) in [
            (&[][..], "name no partition"),
            (&[(0, -1)][..], "negative"),
            (&[(0, 1), (0, 2)][..], "listed twice"),
        ] {
            let req = v1::SubscribeRequest {
                start: offsets(pairs),
                ..Default::default()
            };
            assert!(invalid(&req).contains(says), "{pairs:?}");
        }
        let p = plan(&v1::SubscribeRequest {
            start: offsets(&[(1, 7), (0, 3)]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.start, Start::Offsets(vec![(1, 7), (0, 3)]));
        assert!(p.check_partitions(&[0, 1]).is_ok());
        let err = p.check_partitions(&[0]).unwrap_err().to_string();
        assert!(err.contains("partition 1 does not exist") && err.contains("partitions 0-0"));
    }

    #[test]
    fn resume_positions_and_cursor_names_are_checked() {
        let resume = |partition, offset| v1::SubscribeRequest {
            resume: vec![v1::PartitionOffset { partition, offset }],
            ..Default::default()
        };
        assert!(invalid(&resume(0, -5)).contains("offsets start at 0"));
        let p = plan(&resume(4, 9)).unwrap();
        assert_eq!(p.resume, HashMap::from([(4, 9)]));
        let err = p.check_partitions(&[0, 1, 2]).unwrap_err().to_string();
        assert!(
            err.contains("cannot resume partition 4 at offset 9"),
            "{err}"
        );

        let bad_cursor = v1::SubscribeRequest {
            cursor: "no spaces".into(),
            ..Default::default()
        };
        assert!(plan(&bad_cursor).is_err());
    }

    #[test]
    fn filters_that_do_not_parse_are_refused() {
        let req = v1::SubscribeRequest {
            filter: "magpsf <".into(),
            ..Default::default()
        };
        let _ = invalid(&req);
        let p = plan(&v1::SubscribeRequest {
            filter: "magpsf < 18".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(p.selection.is_some());
    }

    #[test]
    fn saved_positions_override_the_start_where_they_exist() {
        let head = Begin::head_positions(&[0, 1, 2], &HashMap::from([(0, 40), (1, 7)]));
        assert_eq!(
            head,
            [
                (0, StartAt::Offset(40)),
                (1, StartAt::Offset(7)),
                (2, StartAt::End)
            ]
        );
        let begin = Begin::overlay(head, &HashMap::from([(1, 3), (2, 11)]));
        let Begin::Positions(starts) = begin else {
            panic!("positions expected");
        };
        assert_eq!(
            starts,
            [
                (0, StartAt::Offset(40)),
                (1, StartAt::Offset(3)),
                (2, StartAt::Offset(11))
            ]
        );
        assert_eq!(
            next_offsets(&starts),
            HashMap::from([(0, 40), (1, 3), (2, 11)])
        );
        assert_eq!(
            Begin::at_time(vec![(0, Some(5)), (1, None)]),
            Begin::Positions(vec![(0, StartAt::Offset(5)), (1, StartAt::End)])
        );
        assert_eq!(next_offsets(&[(0, StartAt::Beginning)]), HashMap::new());
    }

    #[test]
    fn only_exact_start_offsets_are_announced() {
        let next = HashMap::from([(2, 9), (0, 4), (1, 0)]);
        let all: Vec<(i32, i64)> = announced(&next, |_| true)
            .iter()
            .map(|s| (s.partition, s.offset))
            .collect();
        assert_eq!(all, [(0, 4), (1, 0), (2, 9)], "by partition");
        // A start time's offsets (partition 1 here) are left out; given positions stay.
        let given = announced(&next, |p| p != 1);
        assert_eq!(given.len(), 2);
        assert!(given.iter().all(|s| s.partition != 1));
    }

    #[test]
    fn a_reader_never_starts_past_a_partition_end() {
        let starts = [
            (0, StartAt::Offset(16)),
            (1, StartAt::Offset(i64::MAX)),
            (2, StartAt::Offset(4)),
            (3, StartAt::Beginning),
            (4, StartAt::Offset(9)),
        ];
        assert!(names_offsets(&starts));
        let ends = HashMap::from([(0, 15), (1, 15), (2, 15), (3, 15)]);
        assert_eq!(
            reader_starts(&starts, &ends),
            [
                (0, StartAt::Offset(15)),
                (1, StartAt::Offset(15)),
                (2, StartAt::Offset(4)),
                (3, StartAt::Beginning),
                (4, StartAt::Offset(9)),
            ],
            "past the end: from the end; before it, or end unknown: as asked"
        );
        // Delivery still starts where asked.
        assert_eq!(next_offsets(&starts)[&1], i64::MAX);
        assert!(!names_offsets(&[(0, StartAt::End)]));
    }
}
