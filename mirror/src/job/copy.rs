//! The copy loop: source batches in, produces out, deliveries acknowledged in order.
//!
//! Deliveries are awaited in the order records were read, so status positions only move
//! over records the destination holds. In-flight work is bounded by records and bytes. On
//! the first failed delivery the producer's queue is purged, so no later record of the
//! partition can land after the gap; the next cycle's recovery then resumes right after the
//! last record that did land.
//!
//! Recovery resumes after the furthest record found in either the destination or its
//! dead-letter topic, so without transactions nothing may land in one while an earlier
//! record bound for the other can still fail: the loop waits for pending deliveries
//! whenever the next record goes to the other topic (dead letters are rare).
//!
//! A record the destination refuses for what it is (larger than its size limit) would fail
//! every cycle: it is remembered ([`Refused`]), and the next cycle dead-letters it without
//! its payload, its `am-source` and `am-error` saying where it is and why.
//!
//! A transactional sink (a shared mirror's work unit) commits what it sent every
//! [`COMMIT_EVERY`] and whenever the in-flight bounds are reached; status positions move
//! at commits only. A failed commit ends the cycle: the next one's `init_transactions`
//! aborts what was left open, and recovery reads only committed copies.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer as _, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::convert::{Converter, Outcome, Outgoing, SourceRecord};
use crate::destination::Sink;
use crate::destination::{destination_error, kafka_error};
use crate::quiet::{Producer, LOST};
use crate::source::Batches;
use crate::status::{Handled, StatusCell};
use crate::{Error, Result};

/// Bounds on records produced but not yet acknowledged.
const MAX_PENDING_RECORDS: usize = 10_000;
const MAX_PENDING_BYTES: usize = 64 << 20;
/// How often the loop looks whether its producer lost the destination cluster.
const LOST_CHECK: Duration = Duration::from_millis(200);
/// How often a transactional sink commits what it sent.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Where copies and dead letters go.
#[derive(Debug)]
pub(super) struct Topics {
    pub(super) destination: String,
    pub(super) dlq: String,
}

/// Source records the destination refused for what they are, by (partition, offset),
/// with the reason: kept across the cycles of one mirror, so the next one dead-letters them.
#[derive(Debug, Default)]
pub(crate) struct Refused(HashMap<(i32, i64), String>);

/// A bound on what [`Refused`] keeps: each entry costs a failed cycle first, but a source
/// of nothing but oversized records must not grow it without end.
const MAX_REFUSED: usize = 10_000;

impl Refused {
    fn note(&mut self, partition: i32, offset: i64, reason: String) {
        if self.0.len() < MAX_REFUSED {
            self.0.insert((partition, offset), reason);
        }
    }
}

/// Errors about the record itself, which sending it again cannot fix.
fn refuses_the_record(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord)
    )
}

/// A failed delivery.
struct Failure {
    reason: String,
    /// The destination refused the record itself (see [`refuses_the_record`]).
    refused: bool,
}

/// One handled source record awaiting its delivery (none for a dropped record).
struct Pending {
    delivery: Option<DeliveryFuture>,
    /// Whether it goes to the dead-letter topic.
    dead_letter: bool,
    partition: i32,
    offset: i64,
    handled: Handled,
    bytes: usize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Pending>,
    bytes: usize,
    /// Pending deliveries to the destination and to the dead-letter topic.
    copies: usize,
    dead_letters: usize,
}

impl Queue {
    fn has_room(&self) -> bool {
        self.items.len() < MAX_PENDING_RECORDS && self.bytes < MAX_PENDING_BYTES
    }

    /// Waits for the oldest delivery; never completes when nothing is pending.
    async fn next(&mut self) -> std::result::Result<(), Failure> {
        let Some(front) = self.items.front_mut() else {
            return std::future::pending().await;
        };
        match front.delivery.as_mut() {
            None => Ok(()),
            Some(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(Failure {
                    refused: refuses_the_record(e.rdkafka_error_code()),
                    reason: e.to_string(),
                }),
                Err(_) => Err(Failure {
                    reason: "the producer was dropped".into(),
                    refused: false,
                }),
            },
        }
    }

    /// Whether a delivery to the other topic than `dead_letter` says is pending.
    fn pending_elsewhere(&self, dead_letter: bool) -> bool {
        if dead_letter {
            self.copies > 0
        } else {
            self.dead_letters > 0
        }
    }

    fn counter(&mut self, p: &Pending) -> &mut usize {
        if p.dead_letter {
            &mut self.dead_letters
        } else {
            &mut self.copies
        }
    }

    fn push(&mut self, p: Pending) {
        self.bytes += p.bytes;
        if p.delivery.is_some() {
            *self.counter(&p) += 1;
        }
        self.items.push_back(p);
    }

    fn pop(&mut self) -> Option<Pending> {
        let p = self.items.pop_front()?;
        self.bytes -= p.bytes;
        if p.delivery.is_some() {
            *self.counter(&p) -= 1;
        }
        Some(p)
    }

    /// The reason of the oldest record's failed delivery, noted in `refused` when the
    /// destination refused a copy of it for what it is.
    fn failed(&self, failure: Failure, refused: &mut Refused) -> String {
        match self.items.front() {
            Some(p) if failure.refused && !p.dead_letter => {
                refused.note(p.partition, p.offset, failure.reason.clone());
                format!(
                    "delivery failed: {} (source partition {} offset {}: the next cycle \
                     dead-letters it without its payload)",
                    failure.reason, p.partition, p.offset
                )
            }
            _ => format!("delivery failed: {}", failure.reason),
        }
    }

    /// Records the oldest as done.
    fn pop_done(&mut self, status: &StatusCell) {
        if let Some(p) = self.pop() {
            status.handled(p.partition, p.offset, p.handled);
        }
    }
}

/// Copies until cancelled (`Ok`) or an error (`Err`, after in-flight deliveries finished).
#[allow(clippy::too_many_arguments)] // the parts of one cycle, each used throughout
pub(super) async fn run(
    sink: &Sink,
    topics: &Topics,
    mut batches: Batches,
    converter: &Arc<Converter>,
    status: &StatusCell,
    cancel: &CancellationToken,
    timeout: Duration,
    refused: &mut Refused,
) -> Result<()> {
    let Sink {
        producer,
        lost,
        transactional,
    } = sink;
    let txn = *transactional;
    let mut queue = Queue::default();
    let failed = |reason: String| destination_error(&topics.destination, reason);
    let mut check = tokio::time::interval(LOST_CHECK);
    let mut commits = tokio::time::interval(COMMIT_EVERY);
    // Whether a transaction is open (transactional sinks only).
    let mut open = false;
    loop {
        let room = queue.has_room();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                finish(producer, &mut queue, status, timeout, &topics.destination, open, refused).await?;
                return Ok(());
            }
            _ = commits.tick(), if open => {
                commit(producer, &mut queue, status, timeout, &topics.destination, refused).await?;
                open = false;
            }
            _ = check.tick() => if lost.is_lost() {
                // A producer that lost its cluster is not kept (see `quiet`); what it did
                // not deliver is sent again by the next cycle, after recovery.
                producer.purge(PurgeConfig::default().queue().inflight());
                let _ = drain(producer, &mut queue, status, timeout, &topics.destination, refused).await;
                return Err(failed(LOST.to_owned()));
            },
            done = queue.next(), if !txn => match done {
                Ok(()) => queue.pop_done(status),
                Err(failure) => {
                    let reason = queue.failed(failure, refused);
                    // Nothing after a failed record may land: purge what is still queued.
                    producer.purge(PurgeConfig::default().queue());
                    queue.pop();
                    let _ = drain(producer, &mut queue, status, timeout, &topics.destination, refused).await;
                    return Err(failed(reason));
                }
            },
            batch = batches.recv(), if room => {
                let records = match batch {
                    Some(Ok(records)) => records,
                    Some(Err(e)) => {
                        finish(producer, &mut queue, status, timeout, &topics.destination, open, refused).await?;
                        return Err(e);
                    }
                    None => {
                        finish(producer, &mut queue, status, timeout, &topics.destination, open, refused).await?;
                        return Err(Error::Source {
                            source_name: "source".into(),
                            reason: "the reader stopped".into(),
                        });
                    }
                };
                let outcomes = convert(converter, records).await?;
                if txn && !open && !outcomes.is_empty() {
                    producer.begin_transaction().map_err(|e| {
                        kafka_error(&topics.destination, "cannot begin a transaction", &e)
                    })?;
                    open = true;
                }
                for (partition, offset, outcome) in outcomes {
                    let outcome = match outcome {
                        Outcome::Copy(out) => match refused.0.get(&(partition, offset)) {
                            Some(reason) => stripped_dead_letter(out, reason),
                            None => Outcome::Copy(out),
                        },
                        other => other,
                    };
                    let mut outcome = outcome;
                    let pending = loop {
                        let dead_letter = matches!(outcome, Outcome::DeadLetter(..));
                        if !txn && !matches!(outcome, Outcome::Cycle) && queue.pending_elsewhere(dead_letter) {
                            drain(producer, &mut queue, status, timeout, &topics.destination, refused).await?;
                        }
                        match send(producer, topics, &mut queue, status, partition, offset, outcome).await? {
                            Sent::Pending(pending) => break pending,
                            Sent::Failed(failure) => {
                                let reason = queue.failed(failure, refused);
                                producer.purge(PurgeConfig::default().queue());
                                queue.pop();
                                let _ = drain(producer, &mut queue, status, timeout, &topics.destination, refused).await;
                                return Err(failed(reason));
                            }
                            // The producer refused it before sending (over its
                            // message.max.bytes): dead-lettered at once, in order.
                            Sent::Refused(out, reason) => outcome = stripped_dead_letter(out, &reason),
                        }
                    };
                    queue.push(pending);
                }
                if open && !queue.has_room() {
                    commit(producer, &mut queue, status, timeout, &topics.destination, refused).await?;
                    open = false;
                }
            }
        }
    }
}

/// Converts a batch, off the runtime when any record needs decoding.
async fn convert(
    converter: &Arc<Converter>,
    records: Vec<SourceRecord>,
) -> Result<Vec<(i32, i64, Outcome)>> {
    let all = |c: &Converter, records: Vec<SourceRecord>| {
        records
            .into_iter()
            .map(|r| (r.partition, r.offset, c.convert(r)))
            .collect::<Vec<_>>()
    };
    if !records.iter().any(|r| converter.needs_decode(r)) {
        return Ok(all(converter, records));
    }
    let c = converter.clone();
    tokio::task::spawn_blocking(move || all(&c, records))
        .await
        .map_err(|e| Error::Source {
            source_name: "source".into(),
            reason: format!("conversion task failed: {e}"),
        })
}

/// What became of one outcome given to the producer.
enum Sent {
    Pending(Pending),
    /// A copy the producer refused for what it is, handed back to be dead-lettered.
    Refused(Outgoing, String),
    /// Waiting for room in the producer's queue, the oldest pending delivery failed.
    Failed(Failure),
}

/// Enqueues one outcome with the producer (waiting for deliveries while its queue is full).
async fn send(
    producer: &Producer,
    topics: &Topics,
    queue: &mut Queue,
    status: &StatusCell,
    partition: i32,
    offset: i64,
    outcome: Outcome,
) -> Result<Sent> {
    let dead_letter = matches!(outcome, Outcome::DeadLetter(..));
    let (topic, out, handled) = match outcome {
        Outcome::Cycle => {
            return Ok(Sent::Pending(Pending {
                delivery: None,
                dead_letter,
                partition,
                offset,
                handled: Handled::Cycle,
                bytes: 0,
            }))
        }
        Outcome::Copy(out) => (&topics.destination, out, Handled::Copied(None)),
        Outcome::DeadLetter(out, reason) => {
            if let Some(suppressed) = DEAD_LETTERS.admit() {
                tracing::warn!(partition, offset, reason = %reason, suppressed, "dead-lettered a source record");
            }
            (&topics.dlq, out, Handled::DeadLettered)
        }
    };
    let handled = match handled {
        Handled::Copied(_) => Handled::Copied(out.timestamp),
        other => other,
    };
    // Headers and key count with the payload: they go out in the same record.
    let bytes = out.payload.len()
        + out.key.as_ref().map_or(0, Vec::len)
        + out
            .headers
            .iter()
            .map(|(k, v)| 16 + k.len() + v.as_ref().map_or(0, Vec::len))
            .sum::<usize>();
    let headers = headers(&out);
    loop {
        let mut record = FutureRecord::to(topic)
            .partition(out.partition)
            .payload(out.payload.as_ref())
            .headers(headers.clone());
        if let Some(key) = &out.key {
            record = record.key(key.as_slice());
        }
        if let Some(ts) = out.timestamp {
            record = record.timestamp(ts);
        }
        match producer.send_result(record) {
            Ok(delivery) => {
                return Ok(Sent::Pending(Pending {
                    delivery: Some(delivery),
                    dead_letter,
                    partition,
                    offset,
                    handled,
                    bytes,
                }))
            }
            Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                if queue.items.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    if let Err(failure) = queue.next().await {
                        return Ok(Sent::Failed(failure));
                    }
                    queue.pop_done(status);
                }
            }
            Err((e, _)) if refuses_the_record(e.rdkafka_error_code()) && !dead_letter => {
                return Ok(Sent::Refused(out, e.to_string()));
            }
            Err((e, _)) => return Err(kafka_error(topic, "cannot produce", &e)),
        }
    }
}

/// A copy the destination refused, as a dead letter: its key and headers, `am-error`
/// saying why, and no payload (the dead-letter topic would refuse it too); `am-source`
/// names the source record, which still holds it.
fn stripped_dead_letter(out: Outgoing, reason: &str) -> Outcome {
    let reason = format!("the destination refused the record: {reason}");
    let mut headers = out.headers;
    headers.retain(|(k, _)| k != alertmesh_alert::headers::ERROR);
    headers.push((
        alertmesh_alert::headers::ERROR.into(),
        Some(reason.clone().into_bytes()),
    ));
    Outcome::DeadLetter(
        Outgoing {
            payload: bytes::Bytes::new(),
            headers,
            ..out
        },
        reason,
    )
}

fn headers(out: &Outgoing) -> OwnedHeaders {
    out.headers.iter().fold(
        OwnedHeaders::new_with_capacity(out.headers.len()),
        |acc, (key, value)| {
            acc.insert(Header {
                key,
                value: value.as_deref(),
            })
        },
    )
}

/// Commits the open transaction, if any, else waits for pending deliveries.
async fn finish(
    producer: &Producer,
    queue: &mut Queue,
    status: &StatusCell,
    timeout: Duration,
    destination: &str,
    open: bool,
    refused: &mut Refused,
) -> Result<()> {
    if open {
        commit(producer, queue, status, timeout, destination, refused).await
    } else {
        drain(producer, queue, status, timeout, destination, refused).await
    }
}

/// Commits the open transaction (bounded by `timeout`) and records what it held.
async fn commit(
    producer: &Producer,
    queue: &mut Queue,
    status: &StatusCell,
    timeout: Duration,
    destination: &str,
    refused: &mut Refused,
) -> Result<()> {
    let p = producer.clone();
    // Committing flushes and waits for the broker: blocking work.
    tokio::task::spawn_blocking(move || p.commit_transaction(timeout))
        .await
        .map_err(|e| destination_error(destination, format!("commit task failed: {e}")))?
        .map_err(|e| kafka_error(destination, "cannot commit", &e))?;
    // Every delivery has completed: the commit succeeds only when all did.
    drain(producer, queue, status, timeout, destination, refused).await
}

/// Waits (bounded by `timeout`) for every pending delivery, recording the acknowledged ones.
async fn drain(
    producer: &Producer,
    queue: &mut Queue,
    status: &StatusCell,
    timeout: Duration,
    destination: &str,
    refused: &mut Refused,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !queue.items.is_empty() {
        match tokio::time::timeout_at(deadline, queue.next()).await {
            Ok(Ok(())) => queue.pop_done(status),
            Ok(Err(failure)) => {
                let reason = queue.failed(failure, refused);
                producer.purge(PurgeConfig::default().queue());
                return Err(destination_error(destination, reason));
            }
            Err(_) => {
                return Err(destination_error(
                    destination,
                    format!(
                        "{} deliveries still pending after {timeout:?}",
                        queue.items.len()
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Logs of dead letters, which a peer, a producer or a failing cluster can repeat.
static DEAD_LETTERS: crate::limit::RateLimit = crate::limit::RateLimit::new();
