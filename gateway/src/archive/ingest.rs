//! One archive's ingest: a reader thread takes records from Kafka from where the table
//! ends, turns them into rows and hands them over in batches; the task writes each batch
//! with one binary COPY in one transaction. Any failure (database, Kafka) drops both and
//! starts again from what the table holds, after a backoff.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmesh_alert::{Decoder, Registry};
use rdkafka::consumer::Consumer as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::extract::{Extractor, Row};
use super::{table, Status};
use crate::config::{ArchiveConfig, DatabaseConfig, TopicConfig};
use crate::kafka::Kafka;
use crate::metrics::{ArchiveLabels, Metrics};
use crate::record::{AlertContext, Arena, Record};

/// Everything one archive needs.
pub(crate) struct Job {
    pub(crate) archive: ArchiveConfig,
    pub(crate) database: DatabaseConfig,
    pub(crate) gateway: String,
    pub(crate) topic: TopicConfig,
    pub(crate) kafka: Kafka,
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) status: Arc<Status>,
    pub(crate) metrics: Arc<Metrics>,
}

/// Bytes of rows one batch holds at most, whatever `batch_rows` says (large alerts).
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Batches in flight between the reader thread and the writer.
const QUEUE: usize = 2;

type Failure = String;

pub(super) async fn run(job: Job, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    let labels = ArchiveLabels {
        archive: job.archive.name.clone(),
    };
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            r = once(&job) => r,
            _ = cancel.cancelled() => return,
        };
        let e = match outcome {
            Ok(never) => match never {},
            Err(e) => e,
        };
        job.metrics.archive_errors.get_or_create(&labels).inc();
        job.status.set_error(&e);
        tracing::warn!(archive = %job.archive.name, error = %e, retry_in = ?backoff, "archive ingest stopped; retrying");
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Connects, makes sure of the table, and ingests until something fails.
async fn once(job: &Job) -> Result<std::convert::Infallible, Failure> {
    let a = &job.archive;
    let mut client = connect(&job.database).await?;
    let db_err = |what: &str, e: tokio_postgres::Error| {
        let msg = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        format!("archive {:?}: {what}: {msg}", a.name)
    };
    for stmt in table::create(a) {
        client
            .batch_execute(&stmt)
            .await
            .map_err(|e| db_err("cannot create its table", e))?;
    }
    let have: Vec<(String, String)> = client
        .query(table::COLUMNS, &[&table::regclass(a)])
        .await
        .map_err(|e| db_err("cannot read its table's columns", e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let missing = table::missing(a, &have);
    if !missing.is_empty() {
        return Err(format!(
            "archive {:?}: table {} exists but does not fit: {}",
            a.name,
            a.table.join("."),
            missing.join("; ")
        ));
    }

    // Where the table ends, per partition of the topic.
    let kafka = job.kafka.clone();
    let topic = a.topic.clone();
    let (consumer, partitions) = tokio::task::spawn_blocking(move || {
        // A position Kafka no longer holds stops the read rather than moving on in
        // silence: the ingest starts again and reports the gap (see `skip_deleted`).
        let consumer = kafka
            .consumer_reporting_gaps(4 << 10, Duration::from_millis(100))
            .map_err(|e| format!("kafka consumer: {e}"))?;
        let partitions = kafka
            .partitions(&consumer, &topic)
            .map_err(|e| e.to_string())?;
        Ok::<_, Failure>((consumer, partitions))
    })
    .await
    .map_err(|e| e.to_string())??;
    let last = client
        .prepare(&table::last_offset(a))
        .await
        .map_err(|e| db_err("cannot read where it stands", e))?;
    let mut tpl = TopicPartitionList::new();
    let mut next = BTreeMap::new();
    for &p in &partitions {
        let row = client
            .query_one(&last, &[&p])
            .await
            .map_err(|e| db_err("cannot read where it stands", e))?;
        let offset = match row.get::<_, Option<i64>>(0) {
            Some(o) => {
                next.insert(p, o + 1);
                Offset::Offset(o + 1)
            }
            None => Offset::Beginning,
        };
        tpl.add_partition_offset(&a.topic, p, offset)
            .map_err(|e| e.to_string())?;
    }
    let missed = job
        .metrics
        .archive_missed
        .get_or_create(&ArchiveLabels {
            archive: a.name.clone(),
        })
        .clone();
    let (topic, name) = (a.topic.clone(), a.name.clone());
    let (consumer, next) = tokio::task::spawn_blocking(move || {
        skip_deleted(&consumer, &topic, &name, &mut tpl, &mut next, &missed)?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        Ok::<_, Failure>((consumer, next))
    })
    .await
    .map_err(|e| e.to_string())??;
    *job.status
        .last_error
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = String::new();
    tracing::info!(archive = %a.name, table = %a.table.join("."), partitions = partitions.len(), "archive ingest started");

    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(QUEUE);
    let extractor = Extractor::new(
        job.topic.format,
        a.columns.clone(),
        Arc::clone(&job.decoder),
        Arc::clone(&job.registry),
    );
    let ctx = AlertContext::new(&job.gateway, &job.topic);
    let labels = ArchiveLabels {
        archive: a.name.clone(),
    };
    let reader = Reader {
        next,
        lag: job.metrics.archive_lag.get_or_create(&labels).clone(),
        undecodable: job
            .metrics
            .archive_undecodable
            .get_or_create(&labels)
            .clone(),
        consumer,
        topic: a.topic.clone(),
        ctx,
        extractor,
        batch_rows: a.batch_rows,
        batch_wait: a.batch_wait,
        status: Arc::clone(&job.status),
    };
    let thread = std::thread::Builder::new()
        .name(format!("archive-{}", a.name))
        .spawn(move || reader.run(tx))
        .map_err(|e| e.to_string())?;
    let copy = table::copy(a);
    let types = table::copy_types(a);
    let rows_metric = job.metrics.archive_rows.get_or_create(&labels).clone();
    while let Some(batch) = rx.recv().await {
        let n = batch.len();
        write(&mut client, &copy, &types, &batch)
            .await
            .map_err(|e| db_err("cannot write a batch", e))?;
        job.status.rows.fetch_add(n as u64, Ordering::Relaxed);
        rows_metric.inc_by(n as u64);
    }
    // The reader ended on its own: Kafka failed it (the thread says why).
    drop(rx);
    let why = thread
        .join()
        .unwrap_or_else(|_| "the archive reader panicked".into());
    Err(format!("archive {:?}: {why}", a.name))
}

/// Moves each partition whose next offset Kafka no longer holds (the topic's retention
/// deleted it before the archive read it: the ingest was stopped or behind) to the first
/// offset held, and says so: a warning naming the offsets, and the count in
/// `alertmesh_archive_missed_total`. A partition read from the beginning missed nothing.
fn skip_deleted(
    consumer: &crate::kafka::GatewayConsumer,
    topic: &str,
    archive: &str,
    tpl: &mut TopicPartitionList,
    next: &mut BTreeMap<i32, i64>,
    missed: &prometheus_client::metrics::counter::Counter,
) -> Result<(), Failure> {
    for (&partition, at) in next.iter_mut() {
        // Only the log start: a broker may report a high watermark short of the true
        // end (Tansu stops it at the last batch's base offset).
        let (low, _) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(|e| format!("cannot read the offsets of topic {topic:?}: {e}"))?;
        if *at < low {
            tracing::warn!(
                archive,
                topic,
                partition,
                from = *at,
                to = low - 1,
                "records deleted from kafka before the archive read them; it goes on from the first one held"
            );
            missed.inc_by(u64::try_from(low - *at).unwrap_or(0));
            tpl.set_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(|e| e.to_string())?;
            *at = low;
        }
    }
    Ok(())
}

/// One batch, one transaction: the rows and, with them, the new resume position.
async fn write(
    client: &mut Client,
    copy: &str,
    types: &[tokio_postgres::types::Type],
    batch: &[Row],
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let sink = tx.copy_in(copy).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in batch {
        writer.as_mut().write(&row.params()).await?;
    }
    writer.finish().await?;
    tx.commit().await
}

async fn connect(db: &DatabaseConfig) -> Result<Client, Failure> {
    let name = &db.name;
    let client = crate::postgres::connect(db, "alertmesh-archive")
        .await
        .map_err(|e| e.to_string())?;
    // A statement stuck on a lock or a full disk fails rather than hangs the archive.
    // Commits need not wait for the disk: a commit PostgreSQL loses in a crash loses its
    // rows and the position they advanced together, so they are read from Kafka again
    // (exactly once holds; only what Kafka no longer has would be missing).
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}; SET synchronous_commit = off",
            db.statement_timeout.as_millis()
        ))
        .await
        .map_err(|e| format!("database {name:?}: {e}"))?;
    Ok(client)
}

/// The Kafka side, on its own thread: librdkafka's poll blocks, and decoding payloads
/// for their columns is CPU work that should not hold up the gateway's runtime.
struct Reader {
    /// The next offset per partition: where the table ends, then past what was read.
    next: BTreeMap<i32, i64>,
    lag: prometheus_client::metrics::gauge::Gauge,
    /// Rows whose payload did not decode (stored with NULL columns).
    undecodable: prometheus_client::metrics::counter::Counter,
    consumer: crate::kafka::GatewayConsumer,
    topic: String,
    ctx: Arc<AlertContext>,
    extractor: Extractor,
    batch_rows: usize,
    batch_wait: Duration,
    status: Arc<Status>,
}

impl Reader {
    /// Reads until the writer is gone (`Ok`: nothing to say) or Kafka fails for good.
    fn run(mut self, tx: mpsc::Sender<Vec<Row>>) -> String {
        let mut arena = Arena::single();
        let mut batch: Vec<Row> = Vec::new();
        let mut bytes = 0;
        let mut since = Instant::now();
        let mut lag_at = Instant::now() - Duration::from_secs(60);
        loop {
            if tx.is_closed() {
                return "the writer stopped".into();
            }
            // A client that lost its cluster is paused by the gateway's watch, and must
            // not fetch again (see `kafka::replaced`): the ingest starts again, from what
            // the table holds, with a new client.
            if crate::kafka::replaced::is_lost(&self.consumer) {
                let _ = self.consumer.unassign();
                return "lost the connection to kafka".into();
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let record: Record = Record::from_kafka(&m, &self.ctx, &mut arena);
                    let alert = self.ctx.alert(&record);
                    self.next.insert(record.partition, record.offset + 1);
                    let (row, undecodable) = self.extractor.row(alert);
                    if let Some(reason) = undecodable {
                        self.undecodable.inc();
                        if let Some(suppressed) = UNDECODABLE.admit() {
                            tracing::warn!(
                                archive_ref = %row.r#ref,
                                error = %alertmesh_alert::echo::shown(&reason, 256),
                                suppressed,
                                "archived a payload that does not decode (NULL columns)"
                            );
                        }
                    }
                    bytes += row.size();
                    batch.push(row);
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::AutoOffsetReset) =>
                {
                    // What was read before it is read again after the restart, from where
                    // the table ends.
                    let _ = self.consumer.unassign();
                    return format!(
                        "kafka no longer holds the position it reads in topic {:?}; starting \
                         again from what the table holds",
                        self.topic
                    );
                }
                Some(Err(e)) => {
                    tracing::debug!(topic = %self.topic, error = %e, "archive reader: kafka error");
                }
            }
            let full = batch.len() >= self.batch_rows || bytes >= MAX_BATCH_BYTES;
            if full || (!batch.is_empty() && since.elapsed() >= self.batch_wait) {
                if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                    return "the writer stopped".into();
                }
                bytes = 0;
                since = Instant::now();
            } else if batch.is_empty() {
                since = Instant::now();
            }
            if lag_at.elapsed() >= Duration::from_secs(2) {
                lag_at = Instant::now();
                self.update_lag();
            }
        }
    }

    /// Records in Kafka past what was read, summed over partitions.
    fn update_lag(&self) {
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let mut lag = 0;
        for e in assigned.elements() {
            let p = e.partition();
            let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(2))
            else {
                return;
            };
            let at = self.next.get(&p).copied().unwrap_or(low).max(low);
            lag += (high - at).max(0);
        }
        self.status.lag.store(lag, Ordering::Relaxed);
        self.lag.set(lag);
    }
}

/// Logs of undecodable payloads, which a producer can repeat.
static UNDECODABLE: alertmesh_mirror::limit::RateLimit = alertmesh_mirror::limit::RateLimit::new();
