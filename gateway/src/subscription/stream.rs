//! The running side of a subscription: moves records from its reader (its own, or the
//! shared tail) through [`Progress`] into byte-bounded batches on the gRPC stream.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alertmesh_proto::v1;
use std::ops::Range;

use alertmesh_proto::tags::batch::ALERTS;
use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use prost::encoding;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;
use tonic::Status;

use super::progress::{EndAt, Progress};
use super::select::{Outcome, Selection};
use crate::error::Error;
use crate::kafka::cluster::Cluster;
use crate::kafka::reader::{BatchBounds, ReaderEvent, StartAt};
use crate::metrics::{Metrics, OpenGuard, ReaderKind};
use crate::record::{AlertContext, Record};
use crate::tail::{Tail, TailRead};

/// Where the subscription currently reads from.
#[derive(Debug)]
pub(super) enum Mode {
    /// Its own Kafka reader.
    Own(mpsc::Receiver<ReaderEvent>),
    /// The topic's shared tail, at this sequence number.
    Tail { seq: u64 },
    /// Nothing to read (e.g. `latest` up to `now`).
    Done,
}

/// Why a stream stopped early.
enum Stop {
    /// The client went away: nothing to send.
    ClientGone,
    Failed(Error),
}

/// What a running subscription reads with and reports to.
#[derive(Debug)]
pub(super) struct Parts {
    /// Starts its own reader again after it falls behind the shared tail.
    pub(super) cluster: Cluster,
    pub(super) metrics: Arc<Metrics>,
    /// Ends the stream (the gateway is stopping).
    pub(super) cancel: tokio_util::sync::CancellationToken,
    pub(super) ctx: Arc<AlertContext>,
    /// The topic's shared tail, for a stream that may go live.
    pub(super) tail: Option<Arc<Tail>>,
    pub(super) bounds: BatchBounds,
    /// Where its own reader started, for partitions not read yet when it restarts.
    pub(super) starts: Vec<(i32, StartAt)>,
    /// The start offsets its first message tells the client (`AlertBatch.starts`).
    pub(super) announce: Vec<v1::PartitionOffset>,
    /// The stream reads every partition of its topic (it did not name its own), so it
    /// takes on the partitions the topic gains.
    pub(super) whole_topic: bool,
    /// How long a client may leave its stream full: then its reader stops, and later the
    /// subscription ends.
    pub(super) unread: Unread,
}

/// The policy for a client that takes nothing (`limits.unread_pause_ms`,
/// `limits.unread_drop_ms`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Unread {
    pub(super) pause: Duration,
    pub(super) drop: Duration,
}

type Item = Result<v1::AlertBatch, Status>;

/// Batches a subscription may have queued for its client (its channel holds one more
/// slot, for the final status).
pub(super) const OUT_SLOTS: usize = 2;

/// The size of a subscription's first batches, in bytes: a client that never reads holds
/// a few small batches (one alert each, for large alerts).
const FIRST_BATCH_BYTES: usize = 16 << 10;

/// Batches its client must have taken (out of the stream's queue) to show it drains its
/// stream: the subscription then moves from its small Kafka read to a full one. A client
/// that never reads takes two, never three: HTTP/2 sends what its window allows of the
/// first batch and holds the rest, and hyper asks the response body for its next piece
/// before it waits for window, which takes the second batch out of the queue. Counting batches taken rather than waiting for batches to
/// grow (which needs the queue found empty at three sends in a row, about one per small
/// read) moves a reading client to the full read after its first Kafka batch: with 1 KB
/// alerts the small read had served tens of milliseconds of a catch-up read.
const TAKEN_FOR_FULL: usize = 3;

pub(super) struct Subscription {
    cluster: Cluster,
    metrics: Arc<Metrics>,
    cancel: tokio_util::sync::CancellationToken,
    ctx: Arc<AlertContext>,
    progress: Progress,
    tail: Option<Arc<Tail>>,
    bounds: BatchBounds,
    /// Bytes that fill an outgoing batch now (grows to `bounds.max_bytes`).
    batch_bytes: usize,
    starts: Vec<(i32, StartAt)>,
    /// See [`Parts::announce`]; sent before anything else, then empty.
    announce: Vec<v1::PartitionOffset>,
    /// See [`Parts::whole_topic`].
    whole_topic: bool,
    /// Per partition, the next offset it was opened with (see `positions`).
    first_next: Vec<(i32, Option<i64>)>,
    unread: Unread,
    /// Whether its own read is a full one (see [`Cluster::read_full`]), or one is
    /// starting.
    full: bool,
    /// Batches sent since the subscription started or was last parked (see `drains`).
    sent: usize,
    /// A full read starting while the small one goes on: it takes over with its first
    /// event, so the stream does not wait while its consumers connect.
    next_read: Option<mpsc::Receiver<ReaderEvent>>,
    /// Bytes of the last batches sent, as many as its client may not have taken yet (the
    /// channel's, and the one HTTP/2 is sending).
    recent: std::collections::VecDeque<usize>,
    out: mpsc::Sender<Item>,
    /// Room kept for the stream's final error, so it can be queued even behind batches
    /// a client never takes.
    last: Option<mpsc::OwnedPermit<Item>>,
    selection: Option<Arc<Selection>>,
    alerts_served: Counter,
    bytes_served: Counter,
    alerts_filtered: Counter,
    alerts_skipped: Counter,
    _open: OpenGuard,
}

impl Subscription {
    pub(super) fn new(
        parts: Parts,
        progress: Progress,
        (out, last): (mpsc::Sender<Item>, mpsc::OwnedPermit<Item>),
        selection: Option<Selection>,
    ) -> Self {
        let Parts {
            cluster,
            metrics,
            cancel,
            ctx,
            tail,
            bounds,
            starts,
            announce,
            whole_topic,
            unread,
        } = parts;
        let m = &metrics;
        let first_next = progress
            .partitions()
            .iter()
            .map(|p| (*p, progress.next(*p)))
            .collect();
        Subscription {
            alerts_served: m.topic(&m.alerts_served, &ctx.topic),
            bytes_served: m.topic(&m.bytes_served, &ctx.topic),
            alerts_filtered: m.topic(&m.alerts_filtered, &ctx.topic),
            alerts_skipped: m.topic(&m.alerts_skipped, &ctx.topic),
            selection: selection.map(Arc::new),
            _open: OpenGuard::new(&m.open_subscriptions),
            cluster,
            metrics,
            cancel,
            ctx,
            progress,
            tail,
            bounds,
            batch_bytes: FIRST_BATCH_BYTES.min(bounds.max_bytes),
            first_next,
            starts,
            announce,
            whole_topic,
            unread,
            full: false,
            sent: 0,
            next_read: None,
            recent: std::collections::VecDeque::with_capacity(OUT_SLOTS + 1),
            out,
            last: Some(last),
        }
    }

    pub(super) async fn run(mut self, mode: Mode) {
        tracing::debug!("subscription started");
        let ran = match self.announce().await {
            Ok(()) => self.drive(mode).await,
            Err(stop) => Err(stop),
        };
        match ran {
            Ok(()) => tracing::debug!("subscription complete"),
            Err(Stop::ClientGone) => tracing::debug!("client gone"),
            Err(Stop::Failed(e)) => {
                tracing::info!(error = %e, "subscription failed");
                if let Some(last) = self.last.take() {
                    last.send(Err(e.into()));
                }
            }
        }
    }

    /// Sends the start offsets (`AlertBatch.starts`) as the stream's first message. Not
    /// counted as a batch sent (see [`Self::drains`]): it says nothing of whether the
    /// client reads.
    async fn announce(&mut self) -> Result<(), Stop> {
        if self.announce.is_empty() {
            return Ok(());
        }
        let starts = std::mem::take(&mut self.announce);
        self.out
            .send(Ok(v1::AlertBatch {
                starts,
                ..v1::AlertBatch::default()
            }))
            .await
            .map_err(|_| Stop::ClientGone)
    }

    async fn drive(&mut self, mut mode: Mode) -> Result<(), Stop> {
        let deadline = match self.progress.end() {
            EndAt::Time(t) => Some(instant_at(t)),
            _ => None,
        };
        let mut deadline_passed = false;
        let cancel = self.cancel.clone();
        loop {
            if self.progress.finished() {
                return Ok(());
            }
            let timer = async {
                match deadline {
                    Some(d) if !deadline_passed => tokio::time::sleep_until(d).await,
                    _ => std::future::pending().await,
                }
            };
            if matches!(mode, Mode::Tail { .. }) && self.follow_growth() {
                // The new partitions from their start, the others from where the stream
                // got to, on its own; then it joins the new tail.
                mode = Mode::Own(self.own_reader()?);
            }
            mode = match mode {
                Mode::Done => return Ok(()),
                Mode::Own(mut rx) => {
                    let next_read = &mut self.next_read;
                    let next_read = async move {
                        match next_read {
                            Some(next) => next.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        ev = rx.recv() => self.on_reader_event(ev, rx).await?,
                        ev = next_read => {
                            // The full read has started: the small one stops, and what it
                            // read that was not sent yet is read again by the full one.
                            tracing::debug!("full kafka read took over");
                            drop(rx);
                            let full = self.next_read.take().ok_or_else(|| {
                                Stop::Failed(Error::Internal("no full read to take over".into()))
                            })?;
                            self.on_reader_event(ev, full).await?
                        }
                        _ = self.out.closed() => return Err(Stop::ClientGone),
                        _ = cancel.cancelled() => return Err(Stop::Failed(Error::ShuttingDown)),
                        _ = timer => {
                            deadline_passed = true;
                            self.progress.end_time_passed(false);
                            Mode::Own(rx)
                        }
                    }
                }
                Mode::Tail { mut seq } => {
                    let Some(tail) = self.tail.clone() else {
                        return Err(Stop::Failed(Error::Internal(
                            "tail mode without a tail".into(),
                        )));
                    };
                    let mut head = tail.head();
                    head.borrow_and_update();
                    // Replaced between the check above and subscribing: its wake-up was
                    // before this receiver, so look again rather than wait on it.
                    if tail.successor().is_some() {
                        mode = Mode::Tail { seq };
                        continue;
                    }
                    match tail.read(&mut seq, self.bounds) {
                        TailRead::Records(rs) => {
                            self.deliver(rs, &mut None).await?;
                            Mode::Tail { seq }
                        }
                        TailRead::Lagged => {
                            self.metrics.fallbacks.inc();
                            tracing::debug!("fell behind the shared tail; reading on its own");
                            Mode::Own(self.own_reader()?)
                        }
                        TailRead::Failed(e) => return Err(Stop::Failed(e)),
                        TailRead::Empty => {
                            tokio::select! {
                                _ = head.changed() => {}
                                _ = self.out.closed() => return Err(Stop::ClientGone),
                                _ = cancel.cancelled() => return Err(Stop::Failed(Error::ShuttingDown)),
                                _ = timer => {
                                    deadline_passed = true;
                                    self.progress.end_time_passed(true);
                                }
                            }
                            Mode::Tail { seq }
                        }
                    }
                }
            };
        }
    }

    async fn on_reader_event(
        &mut self,
        ev: Option<ReaderEvent>,
        rx: mpsc::Receiver<ReaderEvent>,
    ) -> Result<Mode, Stop> {
        match ev {
            Some(ReaderEvent::Records(rs)) => {
                let mut reader = Some(rx);
                self.deliver(rs, &mut reader).await?;
                match reader {
                    Some(rx) => Ok(Mode::Own(self.grown(rx)?)),
                    None => self.park().await,
                }
            }
            Some(ReaderEvent::Gap {
                partition,
                from,
                to,
            }) => {
                // Reported once: a full read taking over, or a reader restarted after a
                // pause, finds the same gap from where the stream had got to.
                // Nor for a partition already read to the stream's end: what went after
                // that end was never asked for.
                let from = self.progress.next(partition).map_or(from, |n| n.max(from));
                if from >= to || self.progress.is_done(partition) {
                    return Ok(Mode::Own(rx));
                }
                tracing::info!(
                    partition,
                    from,
                    to,
                    "records deleted before the read reached them"
                );
                let skipped = vec![super::gap(&self.ctx, partition, from, to)];
                let mut reader = Some(rx);
                // Not sent (the client stopped reading): the restarted reader finds it again.
                if self.send(Runs::default(), skipped, 0, &mut reader).await? {
                    self.progress.skipped_to(partition, to);
                }
                match reader {
                    Some(rx) => Ok(Mode::Own(rx)),
                    None => self.park().await,
                }
            }
            Some(ReaderEvent::Eof {
                partition,
                position,
            }) => {
                self.progress.eof(partition, position, now_ms());
                if self.progress.all_at_eof() && !self.progress.finished() {
                    if self.follow_growth() {
                        return Ok(Mode::Own(self.own_reader()?));
                    }
                    if let Some(tail) = &self.tail {
                        if let Some(seq) = tail
                            .try_join(self.progress.partitions(), &self.progress.next_positions())
                        {
                            tracing::debug!("caught up; joined the shared tail");
                            // Dropping `rx` (and a full read starting) stops the own reader.
                            self.next_read = None;
                            return Ok(Mode::Tail { seq });
                        }
                    }
                }
                Ok(Mode::Own(rx))
            }
            Some(ReaderEvent::Failed(e)) => Err(Stop::Failed(e)),
            None => Err(Stop::Failed(Error::Internal("kafka reader stopped".into()))),
        }
    }

    /// No reader, small batches from here on: waits for the client to read again (the
    /// room is only looked at), then reads on its own from where the stream got to.
    async fn park(&mut self) -> Result<Mode, Stop> {
        self.next_read = None;
        self.batch_bytes = FIRST_BATCH_BYTES.min(self.bounds.max_bytes);
        self.sent = 0;
        // What it holds for its client is charged to the reader budget meanwhile, so
        // reads wait rather than add to it.
        let held = self.recent.iter().sum::<usize>().div_ceil(1 << 10);
        let charged = self.cluster.charge_held(held);
        self.metrics.parked_subscriptions.inc();
        let room = wait_until_read(&self.out, self.unread).await;
        self.metrics.parked_subscriptions.dec();
        drop(charged);
        drop(room?);
        tracing::info!("client reads again; kafka reader restarted");
        Ok(Mode::Own(self.own_reader()?))
    }

    /// The reader to go on with: `rx`. Once the client drains its stream (and the reader
    /// budget allows), a full read starts from where this one is; `rx` goes on until the
    /// full read has its first event and takes over (see `next_read`). What the full read
    /// finds already sent is skipped ([`Progress::admit`]).
    fn grown(
        &mut self,
        rx: mpsc::Receiver<ReaderEvent>,
    ) -> Result<mpsc::Receiver<ReaderEvent>, Stop> {
        if self.full || !self.drains() {
            return Ok(rx);
        }
        let full = self
            .cluster
            .read_full(&self.ctx, &self.positions(), self.bounds)
            .map_err(Stop::Failed)?;
        if let Some(full) = full {
            tracing::debug!("client drains its stream; full kafka read starting");
            self.full = true;
            self.next_read = Some(full);
        }
        Ok(rx)
    }

    /// Whether the client has taken [`TAKEN_FOR_FULL`] batches since the subscription
    /// started (or was parked): those sent less those still queued.
    fn drains(&self) -> bool {
        let queued = OUT_SLOTS.saturating_sub(self.out.capacity());
        self.sent.saturating_sub(queued) >= TAKEN_FOR_FULL
    }

    /// Moves to the topic's newest tail if the one it had was replaced because the topic
    /// gained partitions, and, for a stream of the whole topic, takes on the partitions
    /// that tail reads and the stream does not (from their first record: they came after
    /// the stream began; also a stream opened while a new tail was being made, with the
    /// partition list from just before). True if it did; the caller then reads on its own.
    fn follow_growth(&mut self) -> bool {
        let Some(tail) = &self.tail else {
            return false;
        };
        let newest = tail.successor();
        let current = newest.as_ref().unwrap_or(tail);
        let grew =
            self.whole_topic && current.partitions().len() > self.progress.partitions().len();
        if newest.is_none() && !grew {
            return false;
        }
        let added: Vec<i32> = if grew {
            current
                .partitions()
                .iter()
                .copied()
                .filter(|p| !self.progress.partitions().contains(p))
                .collect()
        } else {
            Vec::new()
        };
        if newest.is_none() && added.is_empty() {
            return false;
        }
        tracing::info!(
            added = added.len(),
            "the topic gained partitions; the stream reads them too"
        );
        self.progress.add_partitions(&added);
        for p in added {
            self.starts.push((p, StartAt::Beginning));
            self.first_next.push((p, None));
        }
        if let Some(newest) = newest {
            self.tail = Some(newest);
        }
        true
    }

    /// A small read on its own from the positions reached so far (see [`Cluster::read`]).
    fn own_reader(&mut self) -> Result<mpsc::Receiver<ReaderEvent>, Stop> {
        self.full = false;
        self.next_read = None;
        self.cluster
            .read(&self.ctx, &self.positions(), self.bounds, ReaderKind::own)
            .map_err(Stop::Failed)
    }

    /// Where a read of its own starts: the positions reached so far; a partition not
    /// read yet starts where the first reader did (the end, if it had none).
    fn positions(&self) -> Vec<(i32, StartAt)> {
        let started = |p: i32| self.starts.iter().find(|(sp, _)| *sp == p).map(|(_, s)| *s);
        self.progress
            .partitions()
            .iter()
            .map(|p| {
                let next = self.progress.next(*p);
                // Nothing read there yet: where the first reader started, which is where a
                // start past the end was clamped to (the position asked for may not
                // exist in Kafka yet).
                let first = self.first_next.iter().find(|(fp, _)| fp == p);
                let unread = first.is_some_and(|(_, n)| *n == next);
                let at = match (next, started(*p)) {
                    (_, Some(s)) if unread => s,
                    (Some(n), _) => StartAt::Offset(n),
                    (None, s) => s.unwrap_or(StartAt::End),
                };
                (*p, at)
            })
            .collect()
    }

    /// Sends the records this subscriber asked for, in batches bounded by count and bytes.
    /// If the client stops reading, `reader` (its own reader) is stopped and what was not
    /// handed over yet is dropped, to be read again from Kafka: progress goes back to just
    /// after the last batch sent.
    async fn deliver(
        &mut self,
        records: Vec<Record>,
        reader: &mut Option<mpsc::Receiver<ReaderEvent>>,
    ) -> Result<(), Stop> {
        // Once per reader batch, and only for an own read (the one that can pause).
        let before = reader.is_some().then(|| self.progress.clone());
        let admitted: Vec<Record> = records
            .into_iter()
            .filter(|r| self.progress.admit(r))
            .collect();
        if admitted.is_empty() {
            return Ok(());
        }
        let outcomes = match &self.selection {
            None => None,
            Some(sel) => {
                let (sel, rs) = (Arc::clone(sel), admitted.clone());
                let evaluated = tokio::task::spawn_blocking(move || sel.evaluate(&rs))
                    .await
                    .map_err(|e| {
                        Stop::Failed(Error::Internal(format!("filter task failed: {e}")))
                    })?;
                Some(evaluated.map_err(Stop::Failed)?)
            }
        };
        let bare_nonfinite = self.selection.as_ref().is_some_and(|s| s.bare_nonfinite());
        let mut batch = Runs::default();
        let mut skipped = Vec::new();
        let mut bytes = 0;
        // Records (of `admitted`) and alerts counted against the limit, in batches sent.
        let (mut taken, mut sent, mut taken_sent) = (0u64, 0, 0u64);
        for (i, r) in admitted.iter().enumerate() {
            let (json, mesh_key) = match outcomes.as_ref().and_then(|o| o.get(i)) {
                None => (None, None),
                Some(Outcome::Drop) => {
                    self.alerts_filtered.inc();
                    continue;
                }
                Some(Outcome::Skip(reason)) => {
                    self.alerts_skipped.inc();
                    skipped.push(v1::Skipped {
                        r#ref: self.ctx.alert_ref(r),
                        reason: reason.clone(),
                    });
                    continue;
                }
                Some(Outcome::Keep { json, mesh_key }) => (json.clone(), mesh_key.clone()),
            };
            if !self.progress.take() {
                break;
            }
            taken += 1;
            let mesh_key = mesh_key.filter(|_| !r.carries_mesh_key());
            if json.is_none() && mesh_key.is_none() {
                // As read: the record's encoding is the alert.
                bytes += r.payload().len();
                batch.push_record(r);
            } else {
                let mut alert = self.ctx.alert(r);
                if let Some(json) = json {
                    alert.json = json;
                    alert.payload = bytes::Bytes::new();
                    alert.json_bare_nonfinite = bare_nonfinite;
                }
                if let Some(key) = mesh_key {
                    alert.mesh_key = key;
                }
                bytes += alert.payload.len() + alert.json.len();
                batch.push_alert(&alert);
            }
            if batch.alerts >= self.bounds.max_records || bytes >= self.batch_bytes {
                let full = std::mem::take(&mut batch);
                let skipped = std::mem::take(&mut skipped);
                let bytes = std::mem::take(&mut bytes);
                if !self.send(full, skipped, bytes, reader).await? {
                    self.rewind(before, &admitted[..sent], taken_sent);
                    return Ok(());
                }
                (sent, taken_sent) = (i + 1, taken);
            }
        }
        if (batch.alerts > 0 || !skipped.is_empty())
            && !self.send(batch, skipped, bytes, reader).await?
        {
            self.rewind(before, &admitted[..sent], taken_sent);
            return Ok(());
        }
        Ok(())
    }

    /// Puts progress back to `before` plus the records and alerts of the batches sent.
    fn rewind(&mut self, before: Option<Progress>, sent: &[Record], taken: u64) {
        let Some(before) = before else { return };
        self.progress = before;
        for r in sent {
            self.progress.admit(r);
        }
        for _ in 0..taken {
            self.progress.take();
        }
    }

    /// Sends encoded alerts (in order) and the records skipped among them; false if the
    /// client stopped reading and the batch was dropped (see [`wait_for_room`]).
    async fn send(
        &mut self,
        alerts: Runs,
        skipped: Vec<v1::Skipped>,
        bytes: usize,
        reader: &mut Option<mpsc::Receiver<ReaderEvent>>,
    ) -> Result<bool, Stop> {
        // Until the client has shown it drains its stream, batches are copied out of the
        // blocks they were read into: one that stops holds their bytes only, not the
        // 256 KiB chunks around them (nor the tail's).
        let compact = !self.drains();
        // Batches start small and grow while the client takes each one before the next is
        // ready: a client that never reads holds small batches only.
        if self.out.capacity() == OUT_SLOTS {
            self.batch_bytes = (self.batch_bytes * 2).min(self.bounds.max_bytes);
        }
        let room = match self.out.try_reserve() {
            Ok(room) => room,
            Err(TrySendError::Closed(())) => return Err(Stop::ClientGone),
            Err(TrySendError::Full(())) => {
                match wait_for_room(&self.out, reader, self.unread).await? {
                    Some(room) => room,
                    None => return Ok(false),
                }
            }
        };
        let framed = alerts.finish();
        let framed = if compact { compacted(framed) } else { framed };
        let n = framed.alerts() as u64;
        if self.recent.len() > OUT_SLOTS {
            self.recent.pop_front();
        }
        self.recent.push_back(framed.len());
        room.send(Ok(v1::AlertBatch {
            alerts: Vec::new(),
            skipped,
            framed,
            starts: Vec::new(),
        }));
        self.sent += 1;
        self.alerts_served.inc_by(n);
        self.bytes_served.inc_by(bytes as u64);
        Ok(true)
    }
}

/// `framed` as one run in a buffer of its own.
fn compacted(framed: v1::Framed) -> v1::Framed {
    let mut bytes = BytesMut::with_capacity(framed.len());
    for run in framed.runs() {
        bytes.extend_from_slice(run);
    }
    let mut out = v1::Framed::default();
    if framed.alerts() > 0 {
        out.push_run(bytes.freeze(), framed.alerts());
    }
    out
}

/// Waits until the client takes a batch. After `unread.pause` without one, an own Kafka
/// reader is dropped (the reader thread ends and librdkafka's buffers and the read's
/// budget are freed) and `None` returned: the caller drops what it has not sent and reads
/// it again later. Without a reader to stop it waits on; after `unread.drop` the
/// subscription ends with RESOURCE_EXHAUSTED.
async fn wait_for_room<'a>(
    out: &'a mpsc::Sender<Item>,
    reader: &mut Option<mpsc::Receiver<ReaderEvent>>,
    unread: Unread,
) -> Result<Option<mpsc::Permit<'a, Item>>, Stop> {
    if let Ok(room) = tokio::time::timeout(unread.pause, out.reserve()).await {
        return room.map(Some).map_err(|_| Stop::ClientGone);
    }
    if reader.take().is_some() {
        tracing::info!(
            after_ms = unread.pause.as_millis() as u64,
            "client not reading; kafka reader stopped"
        );
        return Ok(None);
    }
    wait_until_read(out, unread).await.map(Some)
}

/// Waits for room (a paused subscription) until `unread.drop` has passed since the stream
/// filled; then the subscription ends with RESOURCE_EXHAUSTED.
async fn wait_until_read(
    out: &mpsc::Sender<Item>,
    unread: Unread,
) -> Result<mpsc::Permit<'_, Item>, Stop> {
    match tokio::time::timeout(unread.drop.saturating_sub(unread.pause), out.reserve()).await {
        Ok(room) => room.map_err(|_| Stop::ClientGone),
        Err(_) => Err(Stop::Failed(Error::ResourceExhausted(format!(
            "the client read nothing for {} s (limits.unread_drop_ms); the subscription \
             was ended to free its buffers: resume from the last positions received",
            unread.drop.as_secs()
        )))),
    }
}

/// A batch's alerts as `AlertBatch.framed` runs: records written side by side in one
/// block go out as one slice of it, with no copy. Runs below [`Runs::COPY_BELOW`] bytes
/// (alerts a filter kept here and there, alerts re-encoded for JSON output) are copied
/// together, so a filtered stream does not cost a frame per alert.
#[derive(Debug, Default)]
struct Runs {
    framed: v1::Framed,
    /// The run being extended: its block, its range there, its alerts.
    open: Option<(Bytes, Range<usize>, usize)>,
    /// Small runs copied together, and their alerts.
    small: BytesMut,
    small_alerts: usize,
    /// Alerts pushed so far.
    alerts: usize,
}

impl Runs {
    const COPY_BELOW: usize = 16 << 10;

    fn push_record(&mut self, r: &Record) {
        self.alerts += 1;
        let (block, range) = r.element();
        if let Some((open, run, n)) = &mut self.open {
            // Same block (same bytes in memory), and the record starts where the run ends.
            if open.as_ptr() == block.as_ptr()
                && open.len() == block.len()
                && run.end == range.start
            {
                run.end = range.end;
                *n += 1;
                return;
            }
        }
        self.close();
        self.open = Some((block.clone(), range, 1));
    }

    fn push_alert(&mut self, alert: &v1::Alert) {
        self.alerts += 1;
        self.close();
        encoding::message::encode(ALERTS, alert, &mut self.small);
        self.small_alerts += 1;
    }

    /// Ends the open run: sent as a slice of its block, or copied if small.
    fn close(&mut self) {
        let Some((block, run, n)) = self.open.take() else {
            return;
        };
        if run.len() < Self::COPY_BELOW {
            self.small.extend_from_slice(&block[run]);
            self.small_alerts += n;
        } else {
            self.flush_small();
            self.framed.push_run(block.slice(run), n);
        }
    }

    fn flush_small(&mut self) {
        if self.small_alerts > 0 {
            let run = self.small.split().freeze();
            self.framed
                .push_run(run, std::mem::take(&mut self.small_alerts));
        }
    }

    fn finish(mut self) -> v1::Framed {
        self.close();
        self.flush_small();
        self.framed
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The monotonic instant at which the wall clock reads `ms`.
fn instant_at(ms: i64) -> Instant {
    let wait = ms.saturating_sub(now_ms()).max(0) as u64;
    Instant::now() + Duration::from_millis(wait.min(100 * 365 * 24 * 3600 * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Arena, Parts};
    use prost::Message as _;

    fn ctx() -> AlertContext {
        AlertContext {
            gateway: "lasair".into(),
            topic: "ztf".into(),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
        }
    }

    /// Records read together, as a reader writes them.
    fn read(n: i64) -> Vec<Record> {
        let (ctx, mut arena) = (ctx(), Arena::default());
        for offset in 0..n {
            let key = format!("ZTF:{offset}");
            let payload = vec![offset as u8; 1000];
            let parts = Parts {
                partition: 1,
                offset,
                timestamp_ms: Some(1_700_000_000_000 + offset),
                key: Some(key.as_bytes()),
                headers: [("am-ns", Some(&b"ZTF"[..]))],
                payload: &payload,
            };
            arena.write(&ctx, parts);
        }
        arena.take()
    }

    fn decoded(framed: &v1::Framed) -> Vec<v1::Alert> {
        let bytes: Vec<u8> = framed.runs().iter().flat_map(|r| r.to_vec()).collect();
        assert_eq!(bytes.len(), framed.len());
        let batch = v1::AlertBatch::decode(&bytes[..]).unwrap();
        assert_eq!(batch.alerts.len(), framed.alerts());
        batch.alerts
    }

    #[test]
    fn records_read_together_go_out_as_one_run() {
        let records = read(40);
        let mut runs = Runs::default();
        for r in &records {
            runs.push_record(r);
        }
        let framed = runs.finish();
        assert_eq!(framed.runs().len(), 1, "one slice, no copy");
        let (block, first) = records[0].element();
        assert_eq!(
            framed.runs()[0].as_ptr(),
            block[first].as_ptr(),
            "a slice of the block itself"
        );
        let expected: Vec<v1::Alert> = records.iter().map(|r| ctx().alert(r)).collect();
        assert_eq!(decoded(&framed), expected);
    }

    #[test]
    fn a_compacted_batch_holds_its_bytes_only() {
        let records = read(40);
        let mut runs = Runs::default();
        for r in &records[..30] {
            runs.push_record(r);
        }
        let framed = runs.finish();
        let compact = compacted(framed.clone());
        assert_eq!(decoded(&compact), decoded(&framed));
        assert_eq!(compact.runs().len(), 1);
        let (block, _) = records[0].element();
        assert!(
            !block.as_ptr_range().contains(&compact.runs()[0].as_ptr()),
            "a copy, not a slice of the reader's block"
        );
        assert_eq!(compacted(v1::Framed::default()).alerts(), 0);
    }

    #[test]
    fn gaps_and_changed_alerts_keep_their_order() {
        let records = read(60);
        let mut runs = Runs::default();
        let mut expected = Vec::new();
        // A few kept (small: copied), a gap, a long stretch (a slice), an alert changed
        // for JSON output, then the rest.
        for r in records[..5].iter().chain(&records[10..40]) {
            runs.push_record(r);
            expected.push(ctx().alert(r));
        }
        let mut changed = ctx().alert(&records[40]);
        changed.json = Bytes::from_static(b"{}");
        changed.payload = Bytes::new();
        runs.push_alert(&changed);
        expected.push(changed);
        for r in &records[41..] {
            runs.push_record(r);
            expected.push(ctx().alert(r));
        }
        assert_eq!(runs.alerts, expected.len());
        let framed = runs.finish();
        assert_eq!(decoded(&framed), expected);
        let (block, _) = records[0].element();
        let slices = framed
            .runs()
            .iter()
            .filter(|r| block.as_ptr_range().contains(&r.as_ptr()))
            .count();
        assert_eq!(
            slices, 2,
            "the 30- and 19-record stretches are slices, the rest copied"
        );
    }
}
