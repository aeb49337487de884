//! [`Subscription`]: a `Subscribe` stream that survives gateway restarts.
//!
//! A stream that is live or ends at a fixed time is resumable: when the connection fails
//! transiently (the gateway restarts, the network cuts it), the subscription reopens it
//! after a capped exponential backoff. The reopened request asks each partition that has
//! delivered something to resume at the offset after its last delivered alert (the
//! `resume` field, which wins over the start and a cursor), each partition whose start
//! offset the gateway announced (`AlertBatch.starts`: every partition of a `latest`
//! stream) to resume there, and any other partition at the original start; a `latest`
//! start becomes the time the subscription first opened, so what arrived while
//! disconnected is not skipped. Alerts at offsets already delivered are
//! dropped here as well, so nothing repeats even if a gateway replays more than asked.
//! A stream ending at `now` is not reopened: `now` would mean a later time.
//!
//! Replicas of one gateway (processes with the same name and config over the same Kafka
//! cluster) serve any subscription: positions are Kafka offsets, cursors and credentials
//! live in Kafka. A subscription opened with replicas
//! ([`Client::subscribe_with_replicas`](crate::Client::subscribe_with_replicas)) reopens
//! on the next replica after each transient failure, so a stream whose gateway dies moves
//! to another one and continues from the same positions.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use alertmesh_proto::v1::{self, end, start};
use tonic::{Code, Status, Streaming};

use crate::{Grpc, Result};

mod stream;

pub use stream::AlertStream;

/// The most partitions whose start offsets a subscription keeps from its gateway
/// (`AlertBatch.starts`); Kafka topics have far fewer.
const MAX_PARTITIONS: usize = 1 << 16;

/// `start = earliest`: the oldest record Kafka still holds.
pub fn earliest() -> v1::Start {
    v1::Start {
        position: Some(start::Position::Earliest(v1::Earliest {})),
    }
}

/// `start = latest`: only records that arrive after the subscription opens.
pub fn latest() -> v1::Start {
    v1::Start {
        position: Some(start::Position::Latest(v1::Latest {})),
    }
}

/// `start = offsets`: only the listed `(partition, offset)` pairs are streamed.
pub fn offsets(positions: &[(i32, i64)]) -> v1::Start {
    v1::Start {
        position: Some(start::Position::Offsets(v1::PartitionOffsets {
            offsets: positions
                .iter()
                .map(|&(partition, offset)| v1::PartitionOffset { partition, offset })
                .collect(),
        })),
    }
}

/// Capped exponential backoff with jitter between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub maximum: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            maximum: Duration::from_secs(10),
            next: Duration::ZERO,
        }
    }
}

impl Backoff {
    /// Delays from `initial`, doubling up to `maximum`.
    pub fn new(initial: Duration, maximum: Duration) -> Backoff {
        Backoff {
            initial,
            maximum,
            next: Duration::ZERO,
        }
    }

    /// Starts over from `initial` (after a batch arrived).
    pub fn reset(&mut self) {
        self.next = Duration::ZERO;
    }

    /// The next delay to wait: doubling up to `maximum`, less up to 20 % so that many
    /// clients of one restarted gateway do not all come back at once.
    pub fn delay(&mut self) -> Duration {
        self.next = if self.next.is_zero() {
            self.initial
        } else {
            (self.next * 2).min(self.maximum)
        };
        self.next.mul_f64(1.0 - 0.2 * jitter())
    }
}

/// A number in [0, 1) that differs between calls and processes.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a failed stream is worth reopening: the gateway went away or restarted, or
/// ended the stream because this program took nothing from it for a while.
/// `UNAVAILABLE` covers refused connections and shutdowns; a connection cut mid-stream
/// surfaces as `INTERNAL` or `UNKNOWN` with an HTTP/2 or socket message; a stream whose
/// client read nothing for `limits.unread_drop_ms` ends with `RESOURCE_EXHAUSTED` saying
/// so, and resumes where it stopped when the program reads again.
pub fn is_transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::ResourceExhausted => status.message().contains("read nothing for"),
        Code::Internal | Code::Unknown => {
            let m = status.message().to_ascii_lowercase();
            [
                "reset",
                "connection",
                "goaway",
                "go away",
                "broken pipe",
                "eof",
                "h2 protocol",
                "transport error",
                "stream removed",
                "socket closed",
            ]
            .iter()
            .any(|s| m.contains(s))
        }
        _ => false,
    }
}

/// What one read of a [`Subscription`] delivers.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// New alerts, in offset order within each partition.
    pub alerts: Vec<v1::Alert>,
    /// Records the gateway had to decode but could not, as it reported them.
    pub skipped: Vec<v1::Skipped>,
}

/// A `Subscribe` stream that reconnects and resumes (see the module docs). Read it with
/// [`Subscription::next_batch`] or [`Subscription::next`]; drop it to end the stream.
#[derive(Debug)]
pub struct Subscription {
    grpc: Grpc,
    /// The other replicas, in the order they are tried after a failure.
    replicas: VecDeque<Grpc>,
    request: v1::SubscribeRequest,
    stream: Option<Streaming<v1::AlertBatch>>,
    positions: BTreeMap<i32, i64>,
    delivered: u64,
    limit: Option<u64>,
    resumable: bool,
    started_at: SystemTime,
    reconnects: u64,
    backoff: Backoff,
    pending: VecDeque<v1::Alert>,
    done: bool,
}

impl Subscription {
    /// Sends `request` and returns the open stream; an error status now (unknown topic,
    /// bad filter, missing scope, gateway down) is returned, not retried.
    pub(crate) async fn open(grpc: Grpc, request: v1::SubscribeRequest) -> Result<Self> {
        Subscription::open_any(grpc, Vec::new(), request).await
    }

    /// Like [`Subscription::open`], on `grpc` or, while the answer is a transient failure
    /// (the replica is down), on each of `replicas` in turn; the stream later moves between
    /// them. An error that is not transient is returned at once.
    pub(crate) async fn open_any(
        grpc: Grpc,
        replicas: Vec<Grpc>,
        request: v1::SubscribeRequest,
    ) -> Result<Self> {
        let resumable = !matches!(
            request.end.as_ref().and_then(|e| e.position.as_ref()),
            Some(end::Position::Now(_))
        );
        let started_at = SystemTime::now();
        let mut replicas: VecDeque<Grpc> = replicas.into();
        let mut grpc = grpc;
        let mut tries = replicas.len();
        let stream = loop {
            match grpc.subscribe(request.clone()).await {
                Ok(r) => break r.into_inner(),
                Err(status) if tries > 0 && is_transient(&status) => {
                    tries -= 1;
                    tracing::warn!(
                        topic = %request.topic,
                        status = %crate::status_line(&status),
                        "replica unavailable; trying the next one"
                    );
                    let next = replicas.pop_front().expect("tries counts the replicas");
                    replicas.push_back(std::mem::replace(&mut grpc, next));
                }
                Err(status) => return Err(status.into()),
            }
        };
        Ok(Subscription {
            grpc,
            replicas,
            limit: request.limit,
            request,
            stream: Some(stream),
            positions: BTreeMap::new(),
            delivered: 0,
            resumable,
            started_at,
            reconnects: 0,
            backoff: Backoff::default(),
            pending: VecDeque::new(),
            done: false,
        })
    }

    /// Whether to reopen the stream after transient failures (default: yes, unless it
    /// ends at `now`).
    pub fn reconnect(mut self, on: bool) -> Self {
        self.resumable = on
            && !matches!(
                self.request.end.as_ref().and_then(|e| e.position.as_ref()),
                Some(end::Position::Now(_))
            );
        self
    }

    /// Replaces the delays between reconnection attempts.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Per partition, the offset after the last alert delivered, or for a partition that
    /// delivered nothing yet, where the gateway said the stream starts there
    /// (`AlertBatch.starts`): what to commit to a cursor once those alerts are processed.
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.positions
    }

    /// How many alerts were delivered.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// How many times the stream was reopened.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// `CommitCursor` of [`Subscription::positions`] under the caller's cursor `name`,
    /// on the replica serving the stream now (the one that delivered the alerts, or the
    /// next to try once it failed).
    pub async fn commit_cursor(&mut self, name: &str) -> Result<()> {
        let request = v1::CommitCursorRequest {
            name: name.to_owned(),
            topic: self.request.topic.clone(),
            offsets: self
                .positions
                .iter()
                .map(|(&partition, &offset)| v1::PartitionOffset { partition, offset })
                .collect(),
        };
        self.grpc.commit_cursor(request).await?;
        Ok(())
    }

    /// The topic streamed.
    pub fn topic(&self) -> &str {
        &self.request.topic
    }

    /// The subscription as a [`Stream`](tokio_stream::Stream) of alerts, for
    /// `StreamExt` combinators; it ends after the first error.
    pub fn into_stream(self) -> AlertStream {
        AlertStream::new(self)
    }

    /// The next alert; `None` once the stream ended (its end or limit reached). Skipped
    /// records are logged; read [`Subscription::next_batch`] to see them.
    pub async fn next(&mut self) -> Result<Option<v1::Alert>> {
        loop {
            if let Some(a) = self.pending.pop_front() {
                return Ok(Some(a));
            }
            let Some(batch) = self.next_batch().await? else {
                return Ok(None);
            };
            for s in &batch.skipped {
                tracing::warn!(alert_ref = %s.r#ref, reason = %s.reason, "gateway skipped a record");
            }
            self.pending.extend(batch.alerts);
        }
    }

    /// The next batch of new alerts (with the records the gateway skipped); `None` once
    /// the stream ended. Reconnects as needed; an error is final.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let stream = match &mut self.stream {
                Some(s) => s,
                None => {
                    match self.grpc.subscribe(self.reopen_request()).await {
                        Ok(r) => self.stream = Some(r.into_inner()),
                        Err(status) => self.retry_or_fail(status).await?,
                    }
                    continue;
                }
            };
            match stream.message().await {
                Ok(Some(batch)) => {
                    self.backoff.reset();
                    let batch = self.accept(batch);
                    if !batch.alerts.is_empty() || !batch.skipped.is_empty() {
                        return Ok(Some(batch));
                    }
                }
                Ok(None) => {
                    self.finish();
                    return Ok(None);
                }
                Err(status) => {
                    self.stream = None;
                    self.retry_or_fail(status).await?;
                }
            }
        }
    }

    /// After a failure: waits the backoff when the stream can be reopened, else ends it
    /// with the error.
    async fn retry_or_fail(&mut self, status: Status) -> Result<()> {
        if !(self.resumable && is_transient(&status)) {
            self.finish();
            return Err(status.into());
        }
        let delay = self.backoff.delay();
        self.reconnects += 1;
        // Another replica serves the same stream: the next attempt goes there.
        if let Some(next) = self.replicas.pop_front() {
            let failed = std::mem::replace(&mut self.grpc, next);
            self.replicas.push_back(failed);
        }
        tracing::warn!(
            topic = %self.request.topic,
            status = %crate::status_line(&status),
            delay = ?delay,
            "stream interrupted; reconnecting"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn finish(&mut self) {
        self.done = true;
        self.stream = None;
    }

    /// Drops what was delivered already, applies the limit and records positions.
    fn accept(&mut self, batch: v1::AlertBatch) -> Batch {
        // Where the stream starts on partitions that delivered nothing yet: a reopened
        // stream resumes them there (a new `latest`, or the time the subscription opened,
        // would pass over records that arrived in between with older timestamps, such
        // as a mirror's copies). Bounded: a gateway cannot make the map grow without end.
        for s in &batch.starts {
            if s.partition >= 0
                && s.offset >= 0
                && (self.positions.len() < MAX_PARTITIONS
                    || self.positions.contains_key(&s.partition))
            {
                self.positions.entry(s.partition).or_insert(s.offset);
            }
        }
        let mut alerts = Vec::with_capacity(batch.alerts.len());
        for a in batch.alerts {
            if self.limit.is_some_and(|l| self.delivered >= l) {
                break;
            }
            if self
                .positions
                .get(&a.partition)
                .is_some_and(|&p| a.offset < p)
            {
                continue;
            }
            self.positions.insert(a.partition, a.offset + 1);
            self.delivered += 1;
            alerts.push(a);
        }
        if self.limit.is_some_and(|l| self.delivered >= l) {
            self.finish();
        }
        Batch {
            alerts,
            skipped: batch.skipped,
        }
    }

    /// The request that continues where the delivered alerts stopped.
    fn reopen_request(&self) -> v1::SubscribeRequest {
        let mut req = self.request.clone();
        if let Some(limit) = self.limit {
            req.limit = Some(limit.saturating_sub(self.delivered).max(1));
        }
        let latest = matches!(
            req.start.as_ref().and_then(|s| s.position.as_ref()),
            None | Some(start::Position::Latest(_))
        );
        if latest {
            // `latest` now would skip what arrived while disconnected on partitions that
            // delivered nothing yet: start those where the stream first started.
            let since = self
                .started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            req.start = Some(v1::Start {
                position: Some(start::Position::Time(prost_types::Timestamp {
                    seconds: since.as_secs() as i64,
                    nanos: since.subsec_nanos() as i32,
                })),
            });
        }
        req.resume = self
            .positions
            .iter()
            .map(|(&partition, &offset)| v1::PartitionOffset { partition, offset })
            .collect();
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_restarts() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| b.delay()).collect();
        assert!(delays[0] <= Duration::from_millis(200) && delays[0] >= Duration::from_millis(160));
        assert!(delays[1] > delays[0]);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[9] >= Duration::from_secs(8));
        b.reset();
        assert!(b.delay() <= Duration::from_millis(200));
    }

    #[test]
    fn only_lost_connections_are_transient() {
        assert!(is_transient(&Status::unavailable(
            "gateway is shutting down"
        )));
        assert!(is_transient(&Status::unknown(
            "h2 protocol error: error reading a body from connection"
        )));
        assert!(is_transient(&Status::internal("stream reset by peer")));
        assert!(!is_transient(&Status::internal("decoder failed")));
        assert!(!is_transient(&Status::unauthenticated("token revoked")));
        assert!(!is_transient(&Status::invalid_argument("bad filter")));
        assert!(is_transient(&Status::resource_exhausted(
            "the client read nothing for 120 s (limits.unread_drop_ms); the subscription was ended"
        )));
        assert!(!is_transient(&Status::resource_exhausted(
            "gateway lasair serves at most 1000 subscriptions at once; retry later"
        )));
    }

    fn alert(partition: i32, offset: i64) -> v1::Alert {
        v1::Alert {
            partition,
            offset,
            ..Default::default()
        }
    }

    fn unopened(request: v1::SubscribeRequest) -> Subscription {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let grpc = Grpc::new(tonic::service::interceptor::InterceptedService::new(
            channel,
            crate::Bearer::new(None).unwrap(),
        ));
        Subscription {
            grpc,
            replicas: VecDeque::new(),
            limit: request.limit,
            resumable: true,
            request,
            stream: None,
            positions: BTreeMap::new(),
            delivered: 0,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            reconnects: 0,
            backoff: Backoff::default(),
            pending: VecDeque::new(),
            done: false,
        }
    }

    #[tokio::test]
    async fn replayed_alerts_are_dropped_and_the_reopened_request_resumes_after_them() {
        let mut s = unopened(v1::SubscribeRequest {
            topic: "t".into(),
            limit: Some(5),
            ..Default::default()
        });
        let first = s.accept(v1::AlertBatch {
            alerts: vec![alert(0, 10), alert(1, 3), alert(0, 11)],
            ..Default::default()
        });
        assert_eq!(first.alerts.len(), 3);
        let req = s.reopen_request();
        assert_eq!(req.limit, Some(2));
        let resume: Vec<(i32, i64)> = req.resume.iter().map(|p| (p.partition, p.offset)).collect();
        assert_eq!(resume, [(0, 12), (1, 4)]);
        // `latest` (here: unset) became the time the stream first opened.
        let Some(start::Position::Time(t)) = req.start.and_then(|s| s.position) else {
            panic!("start is not a time")
        };
        assert_eq!(t.seconds, 1_700_000_000);
        // A gateway replaying from before the resume positions repeats nothing, and the
        // limit ends the stream.
        let second = s.accept(v1::AlertBatch {
            alerts: vec![
                alert(0, 11),
                alert(0, 12),
                alert(1, 3),
                alert(1, 4),
                alert(2, 0),
            ],
            ..Default::default()
        });
        let got: Vec<(i32, i64)> = second
            .alerts
            .iter()
            .map(|a| (a.partition, a.offset))
            .collect();
        assert_eq!(got, [(0, 12), (1, 4)]);
        assert_eq!(s.delivered(), 5);
        assert!(s.done);
    }

    #[tokio::test]
    async fn announced_starts_resume_partitions_that_delivered_nothing() {
        let mut s = unopened(v1::SubscribeRequest {
            topic: "t".into(),
            ..Default::default()
        });
        let po = |partition, offset| v1::PartitionOffset { partition, offset };
        let first = s.accept(v1::AlertBatch {
            starts: vec![po(0, 10), po(1, 3), po(-1, 5), po(2, -4)],
            ..Default::default()
        });
        assert!(first.alerts.is_empty());
        s.accept(v1::AlertBatch {
            alerts: vec![alert(0, 10), alert(0, 11)],
            // A later announcement moves no position already held.
            starts: vec![po(0, 2), po(1, 9)],
            ..Default::default()
        });
        let req = s.reopen_request();
        let resume: Vec<(i32, i64)> = req.resume.iter().map(|p| (p.partition, p.offset)).collect();
        assert_eq!(resume, [(0, 12), (1, 3)], "nonsense starts are dropped");
        // Partition 1's records from offset 3 come, whatever their timestamps.
        let got = s.accept(v1::AlertBatch {
            alerts: vec![alert(1, 2), alert(1, 3)],
            ..Default::default()
        });
        assert_eq!(got.alerts.len(), 1);
        assert_eq!(got.alerts[0].offset, 3);
        // A gateway cannot grow the map without end.
        s.accept(v1::AlertBatch {
            starts: (0..2 * MAX_PARTITIONS as i32).map(|p| po(p, 0)).collect(),
            ..Default::default()
        });
        assert_eq!(s.positions().len(), MAX_PARTITIONS);
    }

    #[tokio::test]
    async fn explicit_start_offsets_are_kept_on_reopen() {
        let mut s = unopened(v1::SubscribeRequest {
            topic: "t".into(),
            start: Some(offsets(&[(0, 5)])),
            ..Default::default()
        });
        s.accept(v1::AlertBatch {
            alerts: vec![alert(0, 5)],
            ..Default::default()
        });
        let req = s.reopen_request();
        assert_eq!(req.start, Some(offsets(&[(0, 5)])));
        assert_eq!(
            req.resume,
            [v1::PartitionOffset {
                partition: 0,
                offset: 6
            }]
        );
        assert_eq!(req.limit, None);
    }
}
