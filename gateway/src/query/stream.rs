//! A running query stream: keyset pages by the order column, one read-only statement per
//! batch, then with `follow` one poll per interval for rows inserted since.

use std::sync::Arc;

use alertmesh_alert::filter::{Cone, Predicate};
use alertmesh_proto::v1;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sql::{self, Selection, Shape, Statement};
use super::token::Binding;
use super::{Declared, Described};
use crate::config::QueryConfig;
use crate::error::Result;

/// What a checked request asks for.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) gateway: String,
    pub(crate) filter: Option<Predicate>,
    pub(crate) cone: Option<Cone>,
    pub(crate) ids: Option<Vec<String>>,
    /// Order value of the last row already delivered.
    pub(crate) after: Option<i64>,
    pub(crate) limit: Option<u64>,
    /// Rows asked for per statement: shrinks when rows are large, so one batch stays
    /// near `max_batch_bytes`.
    pub(crate) batch: usize,
    /// The most rows per statement (the request's or the gateway's batch size).
    pub(crate) batch_cap: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) follow: bool,
    pub(crate) json: bool,
    pub(crate) binding: Binding,
}

impl Plan {
    /// The statement for the next `n` rows.
    pub(crate) fn statement(&self, q: &QueryConfig, shape: &Shape, n: i64) -> Result<Statement> {
        let sel = Selection {
            filter: self.filter.as_ref().map(Predicate::expr),
            cone: self.cone,
            ids: self.ids.clone(),
        };
        sql::rows(q, shape, &sel, self.after, n)
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
    loop {
        let want = match plan.limit {
            Some(l) => (l - sent).min(plan.batch as u64),
            None => plan.batch as u64,
        } as i64;
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
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let n = rows.len();
        if n > 0 {
            let mut bytes = 0;
            let mut alerts = Vec::with_capacity(n);
            for r in &rows {
                match declared.row_alert(&plan.gateway, r, &described, plan.json) {
                    Ok((order, alert, size)) => {
                        bytes += size;
                        plan.after = Some(order);
                        alerts.push(alert);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
            drop(rows);
            sent += n as u64;
            // Large rows: ask for fewer next time (at least one), keeping memory flat.
            let per_row = bytes / n + 1;
            plan.batch = plan.batch_cap.min((plan.max_batch_bytes / per_row).max(1));
            let resume_token = plan
                .after
                .map(|a| plan.binding.token(a))
                .unwrap_or_default();
            let batch = v1::QueryBatch {
                alerts,
                skipped: Vec::new(),
                resume_token,
            };
            if tx.send(Ok(batch)).await.is_err() {
                return;
            }
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
