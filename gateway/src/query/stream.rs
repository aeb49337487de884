//! A running query stream: keyset pages by the order column, one read-only statement per
//! batch, then with `follow` one poll per interval for rows inserted since.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use alertmesh_alert::filter::{Cone, Predicate};
use alertmesh_proto::v1;
use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::sql::{self, Selection, Shape, Statement};
use super::token::Binding;
use super::{row, Declared, Described, OrderValue};
use crate::config::QueryConfig;
use crate::error::Result;
use tokio_postgres::Row;

/// Bounds of one statement's rows, which the gateway holds while it sends them as batches.
const STATEMENT_ROWS: usize = 10_000;
const STATEMENT_BYTES: usize = 4 << 20;

/// The bytes of a stream's first batches: a client shows it reads before it gets more.
pub(crate) const FIRST_BATCH_BYTES: usize = 64 << 10;

/// What a checked request asks for.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) gateway: String,
    pub(crate) filter: Option<Predicate>,
    pub(crate) cone: Option<Cone>,
    pub(crate) ids: Option<Vec<String>>,
    /// Order value of the last row already delivered.
    pub(crate) after: Option<OrderValue>,
    /// The order column's type when not an integer.
    pub(crate) order_type: Option<&'static str>,
    pub(crate) limit: Option<u64>,
    /// Rows asked for per statement: shrinks when rows are large, so one batch stays
    /// near `max_batch_bytes`.
    pub(crate) batch: usize,
    /// The most rows per batch (the request's or the gateway's batch size).
    pub(crate) batch_cap: usize,
    /// Rows asked for per statement: several batches, so that the round trip and the
    /// statement's start are paid once per several batches, within [`STATEMENT_BYTES`].
    pub(crate) statement_rows: usize,
    /// The batch size aimed at now: from [`FIRST_BATCH_BYTES`], doubled up to
    /// `max_batch_bytes` while the client keeps up.
    pub(crate) batch_bytes: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) follow: bool,
    pub(crate) json: bool,
    /// Non-finite doubles as bare tokens (`QueryRequest.json_bare_nonfinite`).
    pub(crate) bare_nonfinite: bool,
    pub(crate) binding: Binding,
    /// A client that takes nothing for this long ends its stream (`limits.unread_drop_ms`).
    pub(crate) unread_drop: std::time::Duration,
}

/// Batches a stream may have queued for its client; its channel holds one more slot, for
/// the status that ends it.
pub(crate) const OUT_SLOTS: usize = 2;

impl Plan {
    /// The statement for the next `n` rows (checked when the stream opens).
    pub(crate) fn statement(&self, q: &QueryConfig, shape: &Shape, n: i64) -> Result<Statement> {
        Fetch::new(self).statement(q, shape, n)
    }
}

/// What the task that reads statements needs of a [`Plan`].
struct Fetch {
    filter: Option<Predicate>,
    cone: Option<Cone>,
    ids: Option<Vec<String>>,
    order_type: Option<&'static str>,
    /// Order value of the last row read (not yet necessarily sent).
    after: Option<OrderValue>,
    limit: Option<u64>,
    follow: bool,
}

impl Fetch {
    fn new(plan: &Plan) -> Self {
        Fetch {
            filter: plan.filter.clone(),
            cone: plan.cone,
            ids: plan.ids.clone(),
            order_type: plan.order_type,
            after: plan.after.clone(),
            limit: plan.limit,
            follow: plan.follow,
        }
    }

    fn statement(&self, q: &QueryConfig, shape: &Shape, n: i64) -> Result<Statement> {
        let sel = Selection {
            filter: self.filter.as_ref().map(Predicate::expr),
            cone: self.cone,
            ids: self.ids.clone(),
        };
        sql::rows(q, shape, &sel, self.order_type, self.after.as_ref(), n)
    }
}

/// One statement's rows, or why there are no more.
type Rows = Result<Vec<Row>>;

pub(super) async fn run(
    declared: Arc<Declared>,
    described: Arc<Described>,
    mut plan: Plan,
    tx: mpsc::Sender<Result<v1::QueryBatch, tonic::Status>>,
    cancel: CancellationToken,
) {
    // Statements are read on a task of their own, back to back, one statement ahead of
    // the rows being converted and sent: the database and the conversion each run on
    // their own thread and neither waits for the other at every statement's end. At most
    // three statements' rows are held (one read, one queued, one sent).
    let (rows_tx, mut rows_rx) = mpsc::channel::<Rows>(1);
    let statement_rows = Arc::new(AtomicUsize::new(plan.statement_rows));
    let mut reader = AbortOnDropHandle::new(tokio::spawn(read_statements(
        Arc::clone(&declared),
        Arc::clone(&described),
        Fetch::new(&plan),
        Arc::clone(&statement_rows),
        rows_tx,
    )));
    // Statements whose rows were sent.
    let mut sent = 0u32;
    loop {
        let rows = tokio::select! {
            r = rows_rx.recv() => r,
            _ = tx.closed() => return,
            _ = cancel.cancelled() => return,
        };
        let rows = match rows {
            // The reader is done: the last rows were sent, unless it failed.
            None => {
                if let Err(e) = (&mut reader).await {
                    let status = tonic::Status::internal(format!("the query's reader failed: {e}"));
                    let _ = tx.send(Err(status)).await;
                }
                return;
            }
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let n = rows.len();
        // Batches and statements grow only while the client takes every batch sent before
        // (its queue is empty again): one that reads nothing holds a few small batches and
        // statements, not several statements of megabytes, for limits.unread_drop_ms.
        let drained = sent > 0 && tx.capacity() == tx.max_capacity();
        if drained {
            plan.batch_bytes = (plan.batch_bytes * 2).min(plan.max_batch_bytes);
        }
        let Some(bytes) = send_rows(rows, &declared, &described, &mut plan, &tx).await else {
            return;
        };
        sent += 1;
        // Large rows: fewer per batch (at least one) and per statement, keeping memory flat.
        if let Some(per_row) = bytes.checked_div(n).map(|b| b + 1) {
            plan.batch = plan.batch_cap.min((plan.batch_bytes / per_row).max(1));
            let rows = match drained {
                true => STATEMENT_ROWS.min(STATEMENT_BYTES / per_row),
                false => plan.batch,
            };
            statement_rows.store(rows.max(plan.batch), Ordering::Relaxed);
        }
    }
}

/// Reads the stream's statements in order into `out`, each after the last row of the one
/// before, until the result (or the limit) is exhausted, or with `follow` forever, one poll
/// per interval once caught up. Ends when `out` is closed.
async fn read_statements(
    declared: Arc<Declared>,
    described: Arc<Described>,
    mut fetch: Fetch,
    statement_rows: Arc<AtomicUsize>,
    out: mpsc::Sender<Rows>,
) {
    let q = &declared.config;
    let mut read: u64 = 0;
    // Caught up and following: the next statement polls for rows inserted since (after
    // a full statement it reads on through a backlog, and needs no look-up).
    let mut polling = false;
    let selective = fetch.filter.is_some() || fetch.cone.is_some() || fetch.ids.is_some();
    let order_kind = described.shape.columns[described.order].1;
    loop {
        let want = fetch
            .limit
            .map_or(u64::MAX, |l| l - read)
            .min(statement_rows.load(Ordering::Relaxed) as u64) as i64;
        // A poll that finds nothing to send has still looked at every row up to the newest
        // one there was before it: the next starts after that (see `sql::newest`). Without
        // a filter every row is sent, and the last one sent is as far.
        let newest = if polling && selective {
            let stmt = sql::newest(q, order_kind, fetch.order_type, fetch.after.as_ref());
            let found = tokio::select! {
                r = declared.run(&stmt) => r,
                _ = out.closed() => return,
            };
            match found {
                Ok(rows) => rows
                    .first()
                    .and_then(|r| row::order_value(r, order_kind, 0).ok().flatten()),
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            }
        } else {
            None
        };
        let rows = match fetch.statement(q, &described.shape, want) {
            Ok(stmt) => {
                tokio::select! {
                    r = declared.run(&stmt) => r,
                    _ = out.closed() => return,
                }
            }
            Err(e) => Err(e),
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        let n = rows.len();
        // The next statement starts after this one's last row. A row without an order
        // value is refused when it is converted; nothing is read after it.
        let unordered = match rows.last() {
            None => false,
            Some(last) => match row::order_of(last, &described.shape, described.order) {
                Ok(Some(after)) => {
                    fetch.after = Some(after);
                    false
                }
                _ => true,
            },
        };
        if n == 0 && newest.is_some() {
            fetch.after = newest;
        }
        read += n as u64;
        if n > 0 && out.send(Ok(rows)).await.is_err() || unordered {
            return;
        }
        if fetch.limit.is_some_and(|l| read >= l) {
            return;
        }
        polling = (n as i64) < want;
        if polling {
            if !fetch.follow {
                return;
            }
            // Caught up: one poll per interval, however many rows arrive.
            tokio::select! {
                _ = tokio::time::sleep(q.poll_interval) => {}
                _ = out.closed() => return,
            }
        }
    }
}

/// Sends `batch` once the client has taken all but one of those queued, so that a slot
/// stays free for the final status; false when the stream must end. A client that takes
/// nothing for `unread_drop` (a `follow` stream would hold its batches and statements
/// for ever) gets RESOURCE_EXHAUSTED after what is queued, and resumes with the last
/// resume token it received.
async fn send_batch(
    tx: &mpsc::Sender<Result<v1::QueryBatch, tonic::Status>>,
    batch: v1::QueryBatch,
    unread_drop: std::time::Duration,
) -> bool {
    match tokio::time::timeout(unread_drop, tx.reserve_many(OUT_SLOTS)).await {
        Ok(Ok(mut permits)) => match permits.next() {
            Some(permit) => {
                permit.send(Ok(batch));
                true
            }
            None => false,
        },
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!(
                after_s = unread_drop.as_secs(),
                "query client not reading; stream ended"
            );
            let _ = tx.try_send(Err(tonic::Status::resource_exhausted(format!(
                "the client read nothing for {} s (limits.unread_drop_ms); the query stream \
                 was ended to free its buffers: resume with the last resume token received",
                unread_drop.as_secs()
            ))));
            false
        }
    }
}

/// Writes `rows` as batches and sends them; returns the JSON bytes sent, or `None` when
/// the stream must end (the client left, or a row could not be converted). Each row is
/// written once as the batch element it is sent as ([`row::RowWriter`]). The rows are
/// dropped before the first batch is sent: a row is a slice of the database connection's
/// read buffer and keeps all of it, while a client that does not read holds the batches.
async fn send_rows(
    rows: Vec<Row>,
    declared: &Declared,
    described: &Described,
    plan: &mut Plan,
    tx: &mpsc::Sender<Result<v1::QueryBatch, tonic::Status>>,
) -> Option<usize> {
    let q = &declared.config;
    let mut writer = row::RowWriter::new(
        &plan.gateway,
        &q.name,
        &q.namespace,
        (plan.json, plan.bare_nonfinite),
    );
    let mut bytes = 0;
    // Bytes per element of the last batch, to size the next one's buffer.
    let mut per_row = 256;
    let mut batches = Vec::with_capacity(rows.len() / plan.batch.max(1) + 1);
    for chunk in rows.chunks(plan.batch.max(1)) {
        let mut buf = BytesMut::with_capacity(chunk.len() * (per_row + per_row / 8 + 16));
        for r in chunk {
            match declared.write_row(
                &mut writer,
                r,
                described,
                (plan.json, plan.bare_nonfinite),
                &mut buf,
            ) {
                Ok((order, size)) => {
                    bytes += size;
                    plan.after = Some(order);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return None;
                }
            }
        }
        per_row = buf.len() / chunk.len().max(1);
        let resume_token = plan
            .after
            .as_ref()
            .map(|a| plan.binding.token(a))
            .unwrap_or_default();
        let mut batch = v1::QueryBatch {
            resume_token,
            ..v1::QueryBatch::default()
        };
        batch.framed.push_run(buf.freeze(), chunk.len());
        batches.push(batch);
    }
    drop(rows);
    for batch in batches {
        if !send_batch(tx, batch, plan.unread_drop).await {
            return None;
        }
    }
    Some(bytes)
}
