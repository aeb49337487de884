//! The copy loop: source batches in, produces out, deliveries acknowledged in order.
//!
//! Deliveries are awaited in the order records were read, so status positions only move
//! over records the destination holds. In-flight work is bounded by records and bytes. On
//! the first failed delivery the producer's queue is purged, so no later record of the
//! partition can land after the gap; the next cycle's recovery then resumes right after the
//! last record that did land.
//!
//! A transactional sink (a shared mirror's work unit) commits what it sent every
//! [`COMMIT_EVERY`] and whenever the in-flight bounds are reached; status positions move
//! at commits only. A failed commit ends the cycle: the next one's `init_transactions`
//! aborts what was left open, and recovery reads only committed copies.

use std::collections::VecDeque;
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

/// One handled source record awaiting its delivery (none for a dropped record).
struct Pending {
    delivery: Option<DeliveryFuture>,
    partition: i32,
    offset: i64,
    handled: Handled,
    bytes: usize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Pending>,
    bytes: usize,
}

impl Queue {
    fn has_room(&self) -> bool {
        self.items.len() < MAX_PENDING_RECORDS && self.bytes < MAX_PENDING_BYTES
    }

    /// Waits for the oldest delivery; never completes when nothing is pending.
    async fn next(&mut self) -> std::result::Result<(), String> {
        let Some(front) = self.items.front_mut() else {
            return std::future::pending().await;
        };
        match front.delivery.as_mut() {
            None => Ok(()),
            Some(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("the producer was dropped".into()),
            },
        }
    }

    /// Records the oldest as done.
    fn pop_done(&mut self, status: &StatusCell) {
        if let Some(p) = self.items.pop_front() {
            self.bytes -= p.bytes;
            status.handled(p.partition, p.offset, p.handled);
        }
    }
}

/// Copies until cancelled (`Ok`) or an error (`Err`, after in-flight deliveries finished).
pub(super) async fn run(
    sink: &Sink,
    topics: &Topics,
    mut batches: Batches,
    converter: &Arc<Converter>,
    status: &StatusCell,
    cancel: &CancellationToken,
    timeout: Duration,
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
                finish(producer, &mut queue, status, timeout, &topics.destination, open).await?;
                return Ok(());
            }
            _ = commits.tick(), if open => {
                commit(producer, &mut queue, status, timeout, &topics.destination).await?;
                open = false;
            }
            _ = check.tick() => if lost.is_lost() {
                // A producer that lost its cluster is not kept (see `quiet`); what it did
                // not deliver is sent again by the next cycle, after recovery.
                producer.purge(PurgeConfig::default().queue().inflight());
                let _ = drain(producer, &mut queue, status, timeout, &topics.destination).await;
                return Err(failed(LOST.to_owned()));
            },
            done = queue.next(), if !txn => match done {
                Ok(()) => queue.pop_done(status),
                Err(reason) => {
                    // Nothing after a failed record may land: purge what is still queued.
                    producer.purge(PurgeConfig::default().queue());
                    let _ = drain(producer, &mut queue, status, timeout, &topics.destination).await;
                    return Err(failed(format!("delivery failed: {reason}")));
                }
            },
            batch = batches.recv(), if room => {
                let records = match batch {
                    Some(Ok(records)) => records,
                    Some(Err(e)) => {
                        finish(producer, &mut queue, status, timeout, &topics.destination, open).await?;
                        return Err(e);
                    }
                    None => {
                        finish(producer, &mut queue, status, timeout, &topics.destination, open).await?;
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
                    let pending = send(producer, topics, &mut queue, status, partition, offset, outcome).await?;
                    queue.bytes += pending.bytes;
                    queue.items.push_back(pending);
                }
                if open && !queue.has_room() {
                    commit(producer, &mut queue, status, timeout, &topics.destination).await?;
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

/// Enqueues one outcome with the producer (waiting for deliveries while its queue is full).
async fn send(
    producer: &Producer,
    topics: &Topics,
    queue: &mut Queue,
    status: &StatusCell,
    partition: i32,
    offset: i64,
    outcome: Outcome,
) -> Result<Pending> {
    let (topic, out, handled) = match outcome {
        Outcome::Cycle => {
            return Ok(Pending {
                delivery: None,
                partition,
                offset,
                handled: Handled::Cycle,
                bytes: 0,
            })
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
                return Ok(Pending {
                    delivery: Some(delivery),
                    partition,
                    offset,
                    handled,
                    bytes,
                })
            }
            Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                if queue.items.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    queue
                        .next()
                        .await
                        .map_err(|r| destination_error(topic, format!("delivery failed: {r}")))?;
                    queue.pop_done(status);
                }
            }
            Err((e, _)) => return Err(kafka_error(topic, "cannot produce", &e)),
        }
    }
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
) -> Result<()> {
    if open {
        commit(producer, queue, status, timeout, destination).await
    } else {
        drain(producer, queue, status, timeout, destination).await
    }
}

/// Commits the open transaction (bounded by `timeout`) and records what it held.
async fn commit(
    producer: &Producer,
    queue: &mut Queue,
    status: &StatusCell,
    timeout: Duration,
    destination: &str,
) -> Result<()> {
    let p = producer.clone();
    // Committing flushes and waits for the broker: blocking work.
    tokio::task::spawn_blocking(move || p.commit_transaction(timeout))
        .await
        .map_err(|e| destination_error(destination, format!("commit task failed: {e}")))?
        .map_err(|e| kafka_error(destination, "cannot commit", &e))?;
    // Every delivery has completed: the commit succeeds only when all did.
    drain(producer, queue, status, timeout, destination).await
}

/// Waits (bounded by `timeout`) for every pending delivery, recording the acknowledged ones.
async fn drain(
    producer: &Producer,
    queue: &mut Queue,
    status: &StatusCell,
    timeout: Duration,
    destination: &str,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !queue.items.is_empty() {
        match tokio::time::timeout_at(deadline, queue.next()).await {
            Ok(Ok(())) => queue.pop_done(status),
            Ok(Err(reason)) => {
                producer.purge(PurgeConfig::default().queue());
                return Err(destination_error(
                    destination,
                    format!("delivery failed: {reason}"),
                ));
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
