//! Query streams: the rows of `[[queries]]` over PostgreSQL, served as alerts.
//!
//! - `sql`: pure statement building; client values only ever become parameters.
//! - `pool`: a few connections per `[[databases]]` entry.
//! - `token`: resume tokens bound to the query and the request's filters.
//! - `row`: a row as an alert (JSON of the declared columns) and its ref.
//! - `stream`: the running stream: keyset pages by the order column, then polling with
//!   `follow`.
//!
//! Every statement runs in its own read-only transaction under the database's
//! statement timeout, and reads at most one batch of rows, so memory stays flat whatever
//! the result size and no connection is held between batches.

mod archived;
mod pool;
mod row;
mod sql;
mod stream;
mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

use alertmesh_alert::filter::{Cone, Predicate};
use alertmesh_proto::v1;
use tokio::sync::{mpsc, OnceCell, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, QueryConfig};
use crate::error::{Error, Result};
use crate::subscription::quota::Quotas;
use pool::Pool;
pub(crate) use row::parse_ref;
use sql::{Kind, Shape};

/// A row's value of its query's order column: an integer, or the text form of any other
/// orderable type (text, timestamps, dates, numeric, uuid), which the statements cast
/// back to the column's type so rows are compared and ordered as the database orders
/// that type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OrderValue {
    Int(i64),
    Text(String),
}

/// Rows the first statement of a stream reads, before row sizes are known.
const FIRST_BATCH: usize = 16;

/// The declared queries of this gateway.
#[derive(Debug)]
pub(crate) struct Queries {
    gateway: String,
    declared: BTreeMap<String, Arc<Declared>>,
    max_batch_alerts: usize,
    max_batch_bytes: usize,
    /// Open query streams, bounded like subscriptions (`limits.max_subscriptions`).
    streams: Arc<Semaphore>,
    max_streams: usize,
    /// Query streams per connection and per principal, with the subscriptions' limits
    /// (counted apart from them).
    quotas: Quotas,
    /// How long a stream waits for a client that takes nothing (`limits.unread_drop_ms`).
    unread_drop: std::time::Duration,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// One `[[queries]]` entry with its database.
#[derive(Debug)]
pub(crate) struct Declared {
    pub(crate) config: QueryConfig,
    pool: Arc<Pool>,
    /// The columns' types, learned from the database on first use.
    described: OnceCell<Arc<Described>>,
    /// Set for the query of an `[[archives]]` entry: its rows are the archived alerts.
    archive: Option<archived::Archived>,
}

#[derive(Debug)]
struct Described {
    shape: Shape,
    order: usize,
    key: usize,
    /// The order column's type when it is not an integer (`text`, `timestamptz`, ...).
    order_type: Option<&'static str>,
}

/// A stream of query batches, or the error that ended it.
pub(crate) type Batches = mpsc::Receiver<Result<v1::QueryBatch, tonic::Status>>;

impl Queries {
    pub(crate) fn new(config: &Config, cancel: CancellationToken, tasks: TaskTracker) -> Queries {
        let pools: BTreeMap<&str, Arc<Pool>> = config
            .databases
            .iter()
            .map(|d| (d.name.as_str(), Pool::new(d)))
            .collect();
        let declared = config
            .queries
            .iter()
            .filter_map(|q| {
                let pool = Arc::clone(pools.get(q.database.as_str())?);
                Some((
                    q.name.clone(),
                    Arc::new(Declared {
                        config: q.clone(),
                        pool,
                        described: OnceCell::new(),
                        archive: None,
                    }),
                ))
            })
            .collect();
        Queries {
            gateway: config.gateway.name.clone(),
            declared,
            max_batch_alerts: config.limits.max_batch_alerts,
            max_batch_bytes: config.limits.max_batch_bytes,
            streams: Arc::new(Semaphore::new(config.limits.max_subscriptions)),
            max_streams: config.limits.max_subscriptions,
            quotas: Quotas::new(
                "query streams",
                config.limits.max_subscriptions_per_connection,
                config.limits.max_subscriptions_per_principal,
            ),
            unread_drop: config.limits.unread_drop,
            cancel,
            tasks,
        }
    }

    /// The declared query `name`. Not found, the error lists the queries `visible` admits
    /// (those the caller may use: a private query's name is not told to everyone).
    pub(crate) fn get(
        &self,
        name: &str,
        visible: &dyn Fn(&QueryConfig) -> bool,
    ) -> Result<&Arc<Declared>> {
        self.declared.get(name).ok_or_else(|| {
            let known: Vec<&str> = self
                .declared
                .values()
                .filter(|d| visible(&d.config))
                .map(|d| d.config.name.as_str())
                .collect();
            Error::NotFound(format!(
                "unknown query {name:?}; this gateway serves: {}",
                if known.is_empty() {
                    "no queries".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The catalog entries of every declared query.
    pub(crate) fn infos(&self) -> Vec<v1::QueryInfo> {
        self.declared
            .values()
            .map(|d| {
                let q = &d.config;
                v1::QueryInfo {
                    name: q.name.clone(),
                    namespace: q.namespace.clone(),
                    description: q.description.clone(),
                    columns: d.visible_columns().to_vec(),
                    key: q.key.clone(),
                    order: q.order.clone(),
                    ra: q.ra.clone().unwrap_or_default(),
                    dec: q.dec.clone().unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Checks `req` and starts its stream (the caller is authorized for the query).
    /// `connection` is the client's peer address and `principal` the caller's when it
    /// presented a token: what its share of query streams is counted by.
    pub(crate) async fn open(
        &self,
        req: v1::QueryRequest,
        connection: Option<std::net::SocketAddr>,
        principal: Option<&str>,
    ) -> Result<Batches> {
        // Looked up and authorized by the caller already: an error here lists nothing.
        let declared = Arc::clone(self.get(&req.name, &|_| false)?);
        let q = &declared.config;
        if req.limit == Some(0) {
            return Err(Error::InvalidArgument(
                "limit must be at least 1 (leave it unset for no limit)".into(),
            ));
        }
        let filter = match req.r#where.trim() {
            "" => None,
            text => Some(
                Predicate::parse(text)
                    .map_err(|e| Error::InvalidArgument(format!("where: {e}")))?,
            ),
        };
        declared.check_filter(filter.as_ref())?;
        let cone = req
            .cone
            .as_ref()
            .map(|c| Cone::new(c.ra, c.dec, c.radius))
            .transpose()
            .map_err(|e| Error::InvalidArgument(format!("cone: {e}")))?;
        let ids = if req.ids.is_empty() {
            None
        } else {
            let prefix = format!("{}:", q.namespace);
            Some(
                req.ids
                    .iter()
                    .filter_map(|id| id.strip_prefix(&prefix).map(str::to_owned))
                    .collect::<Vec<_>>(),
            )
        };
        let binding = token::Binding::new(
            &self.gateway,
            &q.name,
            req.r#where.trim(),
            cone.map(|c| (c.ra(), c.dec(), c.radius())),
            &req.ids,
        );
        let after = match req.resume_token.as_str() {
            "" => None,
            t => Some(binding.resume(t)?),
        };
        let permit = Arc::clone(&self.streams).try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "this gateway serves at most {} query streams at once (limits.max_subscriptions); try again later",
                self.max_streams
            ))
        })?;
        let held = self.quotas.acquire(connection, principal)?;
        let described = declared.describe().await?;
        let after = after.map(|a| described.check(a)).transpose()?;
        let batch = match req.max_batch_alerts as usize {
            0 => self.max_batch_alerts,
            n => n.min(self.max_batch_alerts),
        };
        let plan = stream::Plan {
            gateway: self.gateway.clone(),
            filter,
            cone,
            ids,
            after,
            order_type: described.order_type,
            limit: req.limit,
            // Row sizes are learned from the first statement: it reads only a few.
            batch: batch.min(FIRST_BATCH),
            statement_rows: batch.min(FIRST_BATCH),
            batch_cap: batch,
            batch_bytes: stream::FIRST_BATCH_BYTES.min(self.max_batch_bytes),
            max_batch_bytes: self.max_batch_bytes,
            follow: req.follow,
            json: req.output == v1::Output::Json as i32,
            bare_nonfinite: req.json_bare_nonfinite,
            binding,
            unread_drop: self.unread_drop,
        };
        // Filters are checked against the columns before the stream starts, so a bad
        // one is the call's status.
        plan.statement(&declared.config, &described.shape, batch as i64)?;
        // Two batches, and room for the status that ends the stream.
        let (tx, rx) = mpsc::channel(stream::OUT_SLOTS + 1);
        let run = stream::run(declared, described, plan, tx, self.cancel.clone());
        self.tasks.spawn(async move {
            run.await;
            drop((permit, held));
        });
        Ok(rx)
    }

    /// The row a query ref names, as an alert (native output).
    pub(crate) async fn fetch(
        &self,
        declared: &Arc<Declared>,
        order: OrderValue,
    ) -> Result<v1::Alert> {
        let d = declared.describe().await?;
        let q = &declared.config;
        let order = d.check(order)?;
        let stmt = sql::one(q, &d.shape, d.order_type, &order);
        let rows = declared.run(&stmt).await?;
        let row = rows.first().ok_or_else(|| {
            Error::NotFound(format!(
                "query {:?} has no row with {} = {}",
                q.name,
                q.order,
                order.display()
            ))
        })?;
        let converted = row::convert(row, &d.shape, d.order, d.key)?;
        Ok(row::alert(
            &self.gateway,
            &q.name,
            &q.namespace,
            converted,
            false,
        ))
    }
}

impl Described {
    /// `value` when it is of the order column's kind (an integer token or ref is refused
    /// for a text order column, and the other way round).
    fn check(&self, value: OrderValue) -> Result<OrderValue> {
        match (&value, self.order_type) {
            (OrderValue::Int(_), None) | (OrderValue::Text(_), Some(_)) => Ok(value),
            _ => Err(Error::InvalidArgument(
                "the order value does not match the query's order column (an integer token \
                 or ref for a text order column, or the other way round)"
                    .into(),
            )),
        }
    }
}

impl OrderValue {
    /// The value as an error message shows it (capped).
    fn display(&self) -> String {
        match self {
            OrderValue::Int(i) => i.to_string(),
            OrderValue::Text(t) => format!("{:?}", t.chars().take(64).collect::<String>()),
        }
    }
}

impl Declared {
    /// The query's column types, asked from the database once.
    async fn describe(&self) -> Result<Arc<Described>> {
        let d = self
            .described
            .get_or_try_init(|| async {
                let q = &self.config;
                let mut conn = self.pool.get().await?;
                // A prepare waits on locks (an ALTER TABLE) and on a cut network like a
                // statement does: bounded the same way.
                let bound = self.pool.statement_timeout + self.pool.connect_timeout * 2;
                let stmt = tokio::time::timeout(bound, conn.client().prepare(&sql::describe(q)))
                    .await
                    .map_err(|_| {
                        Error::DatabaseUnavailable(format!(
                            "database {:?} of query {:?} did not describe the query within {bound:?}",
                            self.pool.name, q.name
                        ))
                    })?
                    .map_err(|e| self.error(e))?;
                conn.idle();
                let columns: Vec<(String, Kind)> = q
                    .columns
                    .iter()
                    .zip(stmt.columns())
                    .map(|(name, c)| (name.clone(), Kind::of(c.type_())))
                    .collect();
                let position = |c: &str| q.columns.iter().position(|n| n == c);
                let (Some(order), Some(key)) = (position(&q.order), position(&q.key)) else {
                    return Err(Error::Internal(format!(
                        "query {:?}: order and key must be columns",
                        q.name
                    )));
                };
                let order_type = match columns[order].1 {
                    Kind::Int2 | Kind::Int4 | Kind::Int8 => None,
                    _ => match sql::order_type(stmt.columns()[order].type_()) {
                        Some(t) => Some(t),
                        None => {
                            return Err(Error::Internal(format!(
                                "query {:?}: its order column {:?} has type {}; an order column \
                                 is an integer, text, varchar, timestamp, timestamptz, date, \
                                 numeric or uuid column",
                                q.name,
                                q.order,
                                stmt.columns()[order].type_().name()
                            )))
                        }
                    },
                };
                Ok(Arc::new(Described {
                    shape: Shape { columns },
                    order,
                    key,
                    order_type,
                }))
            })
            .await?;
        Ok(Arc::clone(d))
    }

    /// Runs `stmt` in a read-only transaction under the statement timeout. A connection
    /// that the server closed while idle is replaced once.
    async fn run(&self, stmt: &sql::Statement) -> Result<Vec<tokio_postgres::Row>> {
        match self.run_bounded(stmt).await {
            Err(Error::DatabaseUnavailable(_)) => self.run_bounded(stmt).await,
            other => other,
        }
    }

    /// The server cancels a statement past its timeout, but a server that stops
    /// answering altogether (a cut network) cannot: the gateway gives up a little later.
    async fn run_bounded(&self, stmt: &sql::Statement) -> Result<Vec<tokio_postgres::Row>> {
        let bound = self.pool.statement_timeout + self.pool.connect_timeout * 2;
        tokio::time::timeout(bound, self.run_once(stmt))
            .await
            .unwrap_or_else(|_| {
                Err(Error::DatabaseUnavailable(format!(
                    "database {:?} of query {:?} did not answer within {bound:?}",
                    self.pool.name, self.config.name
                )))
            })
    }

    /// One round trip: `BEGIN READ ONLY` with the statement timeout, the statement (with
    /// its parameter types given, so no separate prepare) and `COMMIT` are pipelined on
    /// the connection. A failed statement aborts the transaction, whose `COMMIT` then rolls
    /// it back; all three are sent before any answer is awaited, so the connection goes
    /// back to the pool outside a transaction even when the stream is dropped meanwhile.
    async fn run_once(&self, stmt: &sql::Statement) -> Result<Vec<tokio_postgres::Row>> {
        let mut conn = self.pool.get().await?;
        let client = conn.client();
        let begin = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {}",
            self.pool.statement_timeout.as_millis()
        );
        let params: Vec<(
            &(dyn tokio_postgres::types::ToSql + Sync),
            tokio_postgres::types::Type,
        )> = stmt
            .params
            .iter()
            .map(|p| (p.as_sql(), p.sql_type()))
            .collect();
        // A biased `join!` polls in the order written, and each call sends its messages
        // on its first poll: the server receives them in this order.
        // The rows are collected into a buffer sized for the statement's limit: grown
        // from empty it would be copied over and over (up to 10 000 rows a statement).
        let read = async {
            let stream = client
                .query_typed_raw(&stmt.sql, params.iter().map(|(v, t)| (*v, t.clone())))
                .await?;
            let mut stream = std::pin::pin!(stream);
            let mut rows = Vec::with_capacity(stmt.rows);
            while let Some(row) = stream.next().await {
                rows.push(row?);
            }
            Ok::<_, tokio_postgres::Error>(rows)
        };
        let (began, rows, committed) = tokio::join!(
            biased;
            client.batch_execute(&begin),
            read,
            client.batch_execute("COMMIT"),
        );
        // Answered in full (COMMIT's answer comes last): reusable, even after an error.
        conn.idle();
        began.map_err(|e| self.error(e))?;
        let rows = rows.map_err(|e| self.error(e))?;
        committed.map_err(|e| self.error(e))?;
        Ok(rows)
    }

    /// A database error as the client should see it: a timeout names the limit, a
    /// connection problem is UNAVAILABLE.
    fn error(&self, e: tokio_postgres::Error) -> Error {
        let (q, db) = (&self.config.name, &self.pool.name);
        let Some(dbe) = e.as_db_error() else {
            return Error::DatabaseUnavailable(format!("database {db:?} of query {q:?}: {e}"));
        };
        let code = dbe.code();
        let class = &code.code()[..2];
        if *code == SqlState::QUERY_CANCELED {
            Error::DeadlineExceeded(format!(
                "query {q:?} ran longer than the statement timeout of database {db:?} \
                 (statement_timeout_ms = {}); narrow the where, cone or ids, or ask for a smaller limit",
                self.pool.statement_timeout.as_millis()
            ))
        } else if matches!(class, "08" | "28" | "53" | "57") {
            Error::DatabaseUnavailable(format!("database {db:?} of query {q:?}: {}", dbe.message()))
        } else if class == "22" {
            Error::InvalidArgument(format!("query {q:?}: {}", dbe.message()))
        } else {
            Error::Internal(format!(
                "query {q:?}: database {db:?} refused the statement: {}",
                dbe.message()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_query_lists_only_the_queries_the_caller_may_use() {
        let text = "[gateway]\nname = \"lasair\"\nlisten = \"127.0.0.1:50051\"\n\
             http_listen = \"127.0.0.1:9464\"\n[kafka]\nbootstrap = \"127.0.0.1:9092\"\n\
             [[databases]]\nname = \"db\"\nurl = \"postgres://u@127.0.0.1:1/d\"\n\
             [[queries]]\nname = \"open\"\ndatabase = \"db\"\ntable = \"t\"\npublic = true\n\
             namespace = \"ZTF\"\nkey = \"k\"\norder = \"id\"\ncolumns = [\"k\", \"id\"]\n\
             [[queries]]\nname = \"secret\"\ndatabase = \"db\"\ntable = \"t\"\n\
             namespace = \"ZTF\"\nkey = \"k\"\norder = \"id\"\ncolumns = [\"k\", \"id\"]\n";
        let config = Config::parse(text, &[]).expect("config");
        let queries = Queries::new(&config, CancellationToken::new(), TaskTracker::new());
        let public_only = |q: &QueryConfig| q.public;
        let err = queries.get("nope", &public_only).expect_err("unknown");
        let text = err.to_string();
        assert!(
            text.contains("serves: open") && !text.contains("secret"),
            "{text}"
        );
        let err = queries.get("nope", &|_| false).expect_err("unknown");
        assert!(err.to_string().contains("serves: no queries"), "{err}");
        assert!(
            queries.get("secret", &public_only).is_ok(),
            "found, whatever is listed"
        );
    }
}
