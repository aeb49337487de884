//! `[[archives]]`: local Kafka topics kept in PostgreSQL tables, exactly once, and served
//! as queries whose rows are the original alerts.
//!
//! - `table`: the table's SQL (create, check, resume position, COPY).
//! - `extract`: a record as a row: its wire alert's parts and the configured columns.
//! - `ingest`: one archive's loop: a Kafka reader thread feeding batches to one
//!   database connection.
//!
//! Exactly once without a separate offsets table: every record becomes one row, the
//! table's unique `(kafka_partition, kafka_offset)` refuses a second copy, and ingest
//! resumes after the highest offset stored per partition, which is committed in the same
//! transaction as the rows. A gateway killed at any point resumes where its last
//! committed batch ended.

mod extract;
mod ingest;
pub(crate) mod table;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use alertmesh_alert::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::kafka::Kafka;
use crate::metrics::Metrics;

/// What an archive reports: `/metrics` and logs.
#[derive(Debug)]
pub(crate) struct Status {
    /// Rows written since the gateway started.
    pub(crate) rows: AtomicU64,
    /// Records in Kafka not yet in the table, summed over partitions (-1: unknown).
    pub(crate) lag: AtomicI64,
    pub(crate) last_error: Mutex<String>,
}

/// Starts one ingest task per `[[archives]]` entry.
pub(crate) fn start(
    config: &Config,
    kafka: &Kafka,
    decoder: Arc<Decoder>,
    metrics: Arc<Metrics>,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) {
    for a in &config.archives {
        let (Some(topic), Some(db)) = (
            config.topic(&a.topic),
            config.databases.iter().find(|d| d.name == a.database),
        ) else {
            continue;
        };
        let status = Arc::new(Status {
            rows: AtomicU64::new(0),
            lag: AtomicI64::new(-1),
            last_error: Mutex::new(String::new()),
        });
        let job = ingest::Job {
            archive: a.clone(),
            database: db.clone(),
            gateway: config.gateway.name.clone(),
            topic: topic.clone(),
            kafka: kafka.clone(),
            decoder: Arc::clone(&decoder),
            registry: Arc::clone(&config.alert.registry),
            status,
            metrics: Arc::clone(&metrics),
        };
        tasks.spawn(ingest::run(job, cancel.clone()));
    }
}

impl Status {
    pub(crate) fn set_error(&self, e: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_owned();
    }
}
