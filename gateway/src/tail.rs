//! The shared live tail of one topic: a single Kafka reader whose recent records are kept
//! in a byte-bounded log that every live subscriber reads from. A subscriber that falls
//! out of the log's window goes back to reading Kafka on its own, so a slow client never
//! holds the others back or grows the gateway's memory.
//!
//! When Kafka goes back (the cluster replaced or reset, the topic recreated: see
//! [`crate::kafka::cluster`]), the log is emptied and every subscriber that read it
//! before gets DATA_LOSS naming the partitions and offsets; the tail reads the new
//! cluster from its end, for subscribers that come after.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::kafka::cluster::Cluster;
use crate::kafka::reader::{BatchBounds, ReaderEvent, StartAt};
use crate::kafka::replaced;
use crate::metrics::{Metrics, ReaderKind};
use crate::record::{AlertContext, Record};

/// One topic's shared tail.
#[derive(Debug)]
pub(crate) struct Tail {
    /// The topic, and how its records are encoded for the wire.
    alert: Arc<AlertContext>,
    partitions: Vec<i32>,
    inner: Mutex<Inner>,
    /// Sequence number of the next record to be appended; bumped on every append and
    /// whenever the tail becomes ready.
    head: watch::Sender<u64>,
    /// The tail over more partitions that replaced this one (the topic gained some): the
    /// subscriptions of this one move to it, and this one's reader stops once none is
    /// left.
    successor: std::sync::OnceLock<Arc<Tail>>,
}

#[derive(Debug)]
struct Inner {
    records: VecDeque<Record>,
    first_seq: u64,
    bytes: usize,
    cap_bytes: usize,
    /// Per partition: every record at or above this offset that the tail has read is
    /// still in the log.
    low: HashMap<i32, i64>,
    /// Per partition: the next offset the tail will read.
    pos: HashMap<i32, i64>,
    /// Partitions whose end the tail has reached at least once.
    caught_up: Vec<i32>,
    /// The cluster id the tail reads from, once known.
    cluster: Option<String>,
    /// The last time Kafka went back: the head then (every subscriber at or before it
    /// read the old numbering), and what to tell them.
    reset: Option<(u64, String)>,
}

/// What a subscriber gets from one read of the log.
#[derive(Debug)]
pub(crate) enum TailRead {
    Records(Vec<Record>),
    /// Nothing new yet; wait for the head to move.
    Empty,
    /// The subscriber's position was evicted: it must read on its own.
    Lagged,
    /// Kafka went back since the subscriber joined: it must stop with this error.
    Failed(Error),
}

impl Tail {
    /// An empty tail of `partitions`, keeping up to `cap_bytes` of records.
    fn new(alert: Arc<AlertContext>, partitions: Vec<i32>, cap_bytes: usize) -> Self {
        Tail {
            alert,
            partitions,
            inner: Mutex::new(Inner {
                records: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                cap_bytes,
                low: HashMap::new(),
                pos: HashMap::new(),
                caught_up: Vec::new(),
                cluster: None,
                reset: None,
            }),
            head: watch::Sender::new(0),
            successor: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the log inconsistent in a way that
        // matters more than stopping service, so a poisoned lock is simply taken over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partitions it reads.
    pub(crate) fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// The tail that now serves the topic, if this one was replaced because the topic
    /// gained partitions (the last of several replacements).
    pub(crate) fn successor(&self) -> Option<Arc<Tail>> {
        let mut newest = Arc::clone(self.successor.get()?);
        while let Some(next) = newest.successor.get().map(Arc::clone) {
            newest = next;
        }
        Some(newest)
    }

    fn is_retired(&self) -> bool {
        self.successor.get().is_some()
    }

    pub(crate) fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn is_ready(&self) -> bool {
        let inner = self.lock();
        self.partitions.iter().all(|p| inner.caught_up.contains(p))
    }

    /// Waits until the tail has reached the end of every partition once.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut head = self.head();
        let wait = async {
            loop {
                head.borrow_and_update();
                if self.is_ready() {
                    return;
                }
                if head.changed().await.is_err() {
                    return;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(()) if self.is_ready() => Ok(()),
            _ => Err(Error::Unavailable(format!(
                "cannot reach the end of topic {:?} in kafka",
                self.alert.topic
            ))),
        }
    }

    /// Joins at the head: returns the sequence to read from and, per partition, the next
    /// offset (so only records that arrive from now on are delivered).
    pub(crate) fn join_at_head(&self) -> (u64, HashMap<i32, i64>) {
        let inner = self.lock();
        (
            inner.first_seq + inner.records.len() as u64,
            inner.pos.clone(),
        )
    }

    /// Joins a subscriber whose next offsets are `next`, if the log holds every record it
    /// still needs for `partitions`. It then reads from the oldest record in the log and
    /// skips what it already has.
    pub(crate) fn try_join(&self, partitions: &[i32], next: &HashMap<i32, i64>) -> Option<u64> {
        let inner = self.lock();
        // A subscriber ahead of the tail read an older numbering of the partition (Kafka
        // went back): it must not join and silently skip the new records below its offset.
        let covered =
            partitions.iter().all(
                |p| match (next.get(p), inner.low.get(p), inner.pos.get(p)) {
                    (Some(n), Some(low), Some(pos)) => n >= low && n <= pos,
                    _ => false,
                },
            );
        covered.then_some(inner.first_seq)
    }

    /// Reads records from `*seq` on, up to the bounds, and advances `*seq`.
    pub(crate) fn read(&self, seq: &mut u64, bounds: BatchBounds) -> TailRead {
        let inner = self.lock();
        if let Some((at, message)) = &inner.reset {
            if *seq <= *at {
                return TailRead::Failed(Error::DataLoss(message.clone()));
            }
        }
        if *seq < inner.first_seq {
            return TailRead::Lagged;
        }
        let start = (*seq - inner.first_seq) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in inner.records.range(start.min(inner.records.len())..) {
            if out.len() >= bounds.max_records || bytes >= bounds.max_bytes {
                break;
            }
            bytes += r.size();
            out.push(r.clone());
        }
        *seq += out.len() as u64;
        if out.is_empty() {
            TailRead::Empty
        } else {
            TailRead::Records(out)
        }
    }

    fn append(&self, records: Vec<Record>) {
        let mut inner = self.lock();
        for r in records {
            inner.low.entry(r.partition).or_insert(r.offset);
            inner.pos.insert(r.partition, r.offset + 1);
            inner.bytes += r.size();
            inner.records.push_back(r);
        }
        while inner.bytes > inner.cap_bytes && inner.records.len() > 1 {
            let Some(old) = inner.records.pop_front() else {
                break;
            };
            inner.bytes -= old.size();
            inner.first_seq += 1;
            inner.low.insert(old.partition, old.offset + 1);
        }
        let head = inner.first_seq + inner.records.len() as u64;
        drop(inner);
        self.head.send_replace(head);
    }

    fn reached_end(&self, partition: i32, position: Option<i64>) {
        let mut inner = self.lock();
        if let Some(p) = position {
            let pos = inner.pos.entry(partition).or_insert(p);
            *pos = (*pos).max(p);
            inner.low.entry(partition).or_insert(p);
        }
        if inner.pos.contains_key(&partition) && !inner.caught_up.contains(&partition) {
            inner.caught_up.push(partition);
        }
        let head = inner.first_seq + inner.records.len() as u64;
        drop(inner);
        // Wake readiness waiters even though no record was added.
        self.head.send_replace(head);
    }

    /// Kafka went back: forgets the old numbering and fails every subscriber that read it.
    /// Sequence numbers skip one, so the subscribers that join from now on are told apart.
    fn reset(&self, message: String) {
        let mut inner = self.lock();
        let head = inner.first_seq + inner.records.len() as u64;
        inner.reset = Some((head, message));
        inner.records.clear();
        inner.bytes = 0;
        inner.first_seq = head + 1;
        inner.low.clear();
        inner.pos.clear();
        inner.caught_up.clear();
        inner.cluster = None;
        drop(inner);
        self.head.send_replace(head + 1);
    }

    /// What the tail knew of the cluster: to check it after a reconnection.
    fn seen(&self) -> replaced::Seen {
        let inner = self.lock();
        let mut reached: Vec<(i32, i64)> = inner.pos.iter().map(|(p, o)| (*p, *o)).collect();
        reached.sort_unstable();
        replaced::Seen {
            cluster: inner.cluster.clone(),
            reached,
        }
    }

    /// Where to (re)start reading each partition: after what was read, else at the end.
    fn restart_positions(&self) -> Vec<(i32, StartAt)> {
        let inner = self.lock();
        self.partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    inner
                        .pos
                        .get(p)
                        .map_or(StartAt::End, |o| StartAt::Offset(*o)),
                )
            })
            .collect()
    }
}

/// Every topic's tail, started on first use.
#[derive(Debug)]
pub(crate) struct Tails {
    cluster: Cluster,
    cap_bytes: usize,
    cancel: CancellationToken,
    /// Where the tails' feeds run, so shutdown waits for them.
    tasks: TaskTracker,
    map: Mutex<HashMap<String, Arc<Tail>>>,
}

impl Tails {
    pub(crate) fn new(
        cluster: Cluster,
        cap_bytes: usize,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Tails {
            cluster,
            cap_bytes,
            cancel,
            tasks,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The tail of `topic`, starting its reader if it is not running yet.
    pub(crate) fn get_or_start(&self, ctx: &Arc<AlertContext>, partitions: &[i32]) -> Arc<Tail> {
        let topic = ctx.topic.as_str();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get(topic) {
            if partitions.iter().all(|p| t.partitions.contains(p)) {
                return Arc::clone(t);
            }
        }
        let tail = Arc::new(Tail::new(
            Arc::clone(ctx),
            partitions.to_vec(),
            self.cap_bytes,
        ));
        if let Some(old) = map.insert(topic.to_owned(), Arc::clone(&tail)) {
            // The topic gained partitions since its tail started: a tail over the old ones
            // would never deliver the new ones' records. The new tail reads them all; the
            // subscriptions of the old one move over (woken, should they be waiting on
            // it), and its reader stops once they have.
            tracing::info!(
                topic,
                before = old.partitions.len(),
                now = partitions.len(),
                "topic has new partitions; its shared tail starts again over all of them"
            );
            let _ = old.successor.set(Arc::clone(&tail));
            old.head.send_modify(|_| {});
        }
        self.tasks.spawn(feed(
            Arc::clone(&tail),
            self.cluster.clone(),
            self.cancel.clone(),
        ));
        tail
    }
}

/// How often a retired tail with nothing to read looks whether it is still used.
const RETIRED_CHECK: Duration = Duration::from_secs(1);

/// Keeps the tail's reader running: restarts it with capped backoff when Kafka fails,
/// resuming after the last record read so the log has no gap.
async fn feed(tail: Arc<Tail>, cluster: Cluster, cancel: CancellationToken) {
    let bounds = BatchBounds {
        max_records: 1_000,
        max_bytes: 1 << 20,
    };
    let mut backoff = Duration::from_millis(200);
    // A retired tail stops once only this task holds it.
    let unused = |tail: &Arc<Tail>| tail.is_retired() && Arc::strong_count(tail) == 1;
    while !cancel.is_cancelled() && !unused(&tail) {
        let rx = prepare(&tail, &cluster)
            .await
            .and_then(|starts| cluster.read(&tail.alert, &starts, bounds, ReaderKind::tail));
        match rx {
            Ok(mut rx) => {
                loop {
                    // A retired tail's partitions may be idle: it looks now and then
                    // whether its last stream has moved on, not only when records come.
                    let ev = tokio::select! {
                        ev = rx.recv() => ev,
                        () = tokio::time::sleep(RETIRED_CHECK), if tail.is_retired() => {
                            if unused(&tail) {
                                tracing::info!(topic = %tail.alert.topic, "retired tail stopped");
                                return;
                            }
                            continue;
                        }
                    };
                    let Some(ev) = ev else { break };
                    if unused(&tail) {
                        tracing::info!(topic = %tail.alert.topic, "retired tail stopped");
                        return;
                    }
                    match ev {
                        ReaderEvent::Records(rs) => {
                            backoff = Duration::from_millis(200);
                            tail.append(rs);
                        }
                        ReaderEvent::Eof {
                            partition,
                            position,
                        } => tail.reached_end(partition, position),
                        // Not reported by the tail's client (see `Cluster::start`).
                        ReaderEvent::Gap { .. } => {}
                        ReaderEvent::Failed(Error::DataLoss(message)) => {
                            went_back(&tail, &cluster.kafka().metrics(), message);
                            break;
                        }
                        ReaderEvent::Failed(e) => {
                            tracing::warn!(topic = %tail.alert.topic, error = %e, "tail reader stopped; restarting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(topic = %tail.alert.topic, error = %e, "cannot start tail reader")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// A client for the tail's next reader, and where it starts. A restart first checks that
/// Kafka did not go back under the positions the tail reached (a reader that lost its
/// cluster ends before it can tell, when the cluster is down for a while).
async fn prepare(tail: &Arc<Tail>, cluster: &Cluster) -> Result<Vec<(i32, StartAt)>> {
    // A small client of its own for the check: the reader's clients are made fresh after it.
    let consumer = cluster.kafka().consumer(64)?;
    let (t, timeout) = (Arc::clone(tail), cluster.timeout());
    let checked = tokio::task::spawn_blocking(move || {
        let seen = t.seen();
        replaced::check(&consumer, &t.alert.topic, &seen, timeout)
            .map(|regressions| (consumer, regressions))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    let (consumer, regressions) = checked?;
    if !regressions.is_empty() {
        let message = replaced::data_loss(&tail.alert.topic, &regressions).to_string();
        went_back(tail, &cluster.kafka().metrics(), message);
    }
    tail.lock().cluster = replaced::cluster_id(&consumer);
    Ok(tail.restart_positions())
}

/// Kafka went back under the tail: logged, counted as a Kafka error, and every subscriber
/// of the tail is told.
fn went_back(tail: &Tail, metrics: &Metrics, message: String) {
    tracing::warn!(topic = %tail.alert.topic, %message, "kafka went back; failing the tail's subscribers with DATA_LOSS");
    metrics.kafka_errors.inc();
    tail.reset(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail() -> Tail {
        let alert = Arc::new(AlertContext {
            gateway: "lasair".into(),
            topic: "ztf".into(),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
        });
        Tail::new(alert, vec![0], 1 << 20)
    }

    const ALL: BatchBounds = BatchBounds {
        max_records: 1000,
        max_bytes: usize::MAX,
    };

    #[test]
    fn subscribers_of_the_old_numbering_fail_with_data_loss_and_new_ones_read_on() {
        let t = tail();
        t.reached_end(0, Some(40));
        t.append((40..45).map(|o| Record::bare(0, o, None)).collect());
        let (mut caught_up, _) = t.join_at_head();
        let mut behind = 2;
        t.reset("kafka went back".into());
        for seq in [&mut caught_up, &mut behind] {
            match t.read(seq, ALL) {
                TailRead::Failed(Error::DataLoss(m)) => assert_eq!(m, "kafka went back"),
                other => panic!("want DATA_LOSS, got {other:?}"),
            }
        }
        // The new cluster, read from its end: later subscribers see its records.
        t.reached_end(0, Some(3));
        let (mut joined, next) = t.join_at_head();
        assert_eq!(next.get(&0), Some(&3));
        t.append(vec![Record::bare(0, 3, None)]);
        match t.read(&mut joined, ALL) {
            TailRead::Records(rs) => assert_eq!(rs[0].offset, 3),
            other => panic!("want the new record, got {other:?}"),
        }
    }

    #[test]
    fn a_subscriber_ahead_of_the_tail_does_not_join_it() {
        let t = tail();
        t.reached_end(0, Some(0));
        t.append((0..5).map(|o| Record::bare(0, o, None)).collect());
        assert!(t.try_join(&[0], &HashMap::from([(0, 2)])).is_some());
        assert!(t.try_join(&[0], &HashMap::from([(0, 5)])).is_some());
        // Offset 45 of an older numbering: joining would skip offsets 5-44 silently.
        assert!(t.try_join(&[0], &HashMap::from([(0, 45)])).is_none());
    }
}
