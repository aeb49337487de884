//! A running query stream: keyset pages by the order column, one read-only statement per
//! batch, then with `follow` one poll per interval for rows inserted since.

use std::sync::Arc;

use alertmesh_alert::filter::{Cone, Predicate};
use alertmesh_proto::v1;
use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sql::{self, Selection, Shape, Statement};
use super::token::Binding;
use super::{row, Declared, Described, OrderValue};
use crate::config::QueryConfig;
use crate::error::Result;
use tokio_postgres::Row;

/// Bounds of one statement's rows, which the gateway holds while it sends them as batches.
const STATEMENT_ROWS: usize = 10_000;
const STATEMENT_BYTES: usize = 4 << 20;

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
    pub(crate) max_batch_bytes: usize,
    pub(crate) follow: bool,
    pub(crate) json: bool,
    pub(crate) binding: Binding,
}

impl Plan {
    /// The statement for the next `n` rows.
    pub(crate) fn statement(&self, q: &QueryConfig, shape: &Shape, n: i64) -> Result<Statement> {
        self.statement_after(q, shape, self.after.as_ref(), n)
    }

    /// The statement for `n` rows after `after`.
    fn statement_after(
        &self,
        q: &QueryConfig,
        shape: &Shape,
        after: Option<&OrderValue>,
        n: i64,
    ) -> Result<Statement> {
        let sel = Selection {
            filter: self.filter.as_ref().map(Predicate::expr),
            cone: self.cone,
            ids: self.ids.clone(),
        };
        sql::rows(q, shape, &sel, self.order_type, after, n)
    }
}

pub(super) async fn run(
    declared: Arc<Declared>,
    described: Arc<Described>,
    mut plan: Plan,
    tx: mpsc::Sender<Result<v1::QueryBatch, tonic::Status>>,
    cancel: CancellationToken,
) {
    let q = &declared.config;
    let mut sent: u64 = 0;
    // The next statement's rows, read while the previous ones were sent.
    let mut prefetched: Option<(i64, Result<Vec<Row>>)> = None;
    loop {
        let (want, rows) = match prefetched.take() {
            Some(p) => p,
            None => {
                let want = plan
                    .limit
                    .map_or(u64::MAX, |l| l - sent)
                    .min(plan.statement_rows as u64) as i64;
                let rows = match plan.statement(q, &described.shape, want) {
                    Ok(stmt) => {
                        tokio::select! {
                            r = declared.run(&stmt) => r,
                            _ = tx.closed() => return,
                            _ = cancel.cancelled() => return,
                        }
                    }
                    Err(e) => Err(e),
                };
                (want, rows)
            }
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let n = rows.len();
        // A full statement: the next one most likely has rows too. It runs on the database
        // while these rows are converted and sent, so neither side waits for the other.
        let next_want = plan
            .limit
            .map_or(u64::MAX, |l| l.saturating_sub(sent + n as u64))
            .min(plan.statement_rows as u64) as i64;
        let next = match rows.last() {
            Some(last) if n as i64 == want && next_want > 0 => {
                match row::order_of(last, &described.shape, described.order) {
                    Ok(Some(after)) => plan
                        .statement_after(q, &described.shape, Some(&after), next_want)
                        .ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        let fetch_next = async {
            match &next {
                Some(stmt) => Some(declared.run(stmt).await),
                None => None,
            }
        };
        let send = send_rows(&rows, &declared, &described, &mut plan, &tx);
        let (bytes, next_rows) = tokio::select! {
            done = async { tokio::join!(send, fetch_next) } => done,
            _ = tx.closed() => return,
            _ = cancel.cancelled() => return,
        };
        let Some(bytes) = bytes else { return };
        prefetched = next_rows.map(|r| (next_want, r));
        drop(rows);
        if n > 0 {
            sent += n as u64;
            // Large rows: fewer per batch (at least one) and per statement, keeping
            // memory flat.
            let per_row = bytes / n + 1;
            plan.batch = plan.batch_cap.min((plan.max_batch_bytes / per_row).max(1));
            plan.statement_rows = STATEMENT_ROWS
                .min(STATEMENT_BYTES / per_row)
                .max(plan.batch);
        }
        if plan.limit.is_some_and(|l| sent >= l) {
            return;
        }
        if (n as i64) < want {
            if !plan.follow {
                return;
            }
            // Caught up: one poll per interval, however many rows arrive.
            tokio::select! {
                _ = tokio::time::sleep(q.poll_interval) => {}
                _ = tx.closed() => return,
                _ = cancel.cancelled() => return,
            }
        }
    }
}

/// Writes `rows` as batches and sends them; returns the JSON bytes sent, or `None` when
/// the stream must end (the client left, or a row could not be converted). Each row is
/// written once as the batch element it is sent as ([`row::RowWriter`]).
async fn send_rows(
    rows: &[Row],
    declared: &Declared,
    described: &Described,
    plan: &mut Plan,
    tx: &mpsc::Sender<Result<v1::QueryBatch, tonic::Status>>,
) -> Option<usize> {
    let q = &declared.config;
    let mut writer = row::RowWriter::new(&plan.gateway, &q.name, &q.namespace, plan.json);
    let mut bytes = 0;
    // Bytes per element of the last batch, to size the next one's buffer.
    let mut per_row = 256;
    for chunk in rows.chunks(plan.batch.max(1)) {
        let mut buf = BytesMut::with_capacity(chunk.len() * (per_row + per_row / 8 + 16));
        for r in chunk {
            match declared.write_row(&mut writer, r, described, plan.json, &mut buf) {
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
        if tx.send(Ok(batch)).await.is_err() {
            return None;
        }
    }
    Some(bytes)
}
