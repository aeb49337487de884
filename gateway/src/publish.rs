//! `Publish`: derived records written to publishable topics, each exactly once per
//! publish id.
//!
//! - `plan`: the pure checks of a batch and the records with their provenance headers.
//! - `ids`: the publish ids of a partition, read back from Kafka.
//!
//! A record goes to the partition of its key. Publishes to one topic are serialized within
//! the gateway by its writer task, which takes the batches that queued up while it wrote
//! the previous ones as one round: under the partitions' locks their publish ids are read
//! up to the end of each partition, ids already published answer their first ref, and
//! only the others are written (idempotent producer, `acks=all`) and noted once Kafka
//! acknowledged them. One round costs one end-offset look-up and one wait for
//! acknowledgements, however many batches it holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use alertmesh_alert::{AlertRef, Decoder, Registry};
use alertmesh_proto::v1;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::kafka::cluster::Cluster;
use crate::metrics::{Metrics, PublishRejection};

mod ids;
mod plan;

pub(crate) use plan::agent;

/// The metrics reason of a refused batch: the field its message names first.
pub(crate) fn rejection(e: &Error) -> PublishRejection {
    match e {
        Error::InvalidArgument(m) => plan::rejection(m),
        Error::NotFound(_) => PublishRejection::unknown_topic,
        Error::FailedPrecondition(_) => PublishRejection::not_publishable,
        Error::PermissionDenied(_) | Error::Unauthenticated(_) => PublishRejection::scope,
        _ => PublishRejection::kafka,
    }
}

type SharedIndex = Arc<tokio::sync::Mutex<ids::Index>>;

/// Most records and bytes one write round takes from the batches waiting for it
/// (well within the producer's queue, 100,000 records and 1 GB by default).
const MAX_ROUND_RECORDS: usize = 20_000;
const MAX_ROUND_BYTES: usize = 64 << 20;
/// Most bytes of checked records waiting for or being written, gateway-wide: a writer
/// slowed by Kafka cannot make callers (who may give up and send again) fill memory.
const MAX_QUEUED_BYTES: usize = 256 << 20;
/// How long a publishable topic's partition list is reused.
const PARTITIONS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// A checked batch waiting for its topic's writer.
struct Job {
    records: Vec<plan::Planned>,
    reply: oneshot::Sender<Result<Vec<v1::PublishResult>>>,
    /// Its share of [`MAX_QUEUED_BYTES`], given back once it is answered.
    _queued: tokio::sync::OwnedSemaphorePermit,
}

/// What a record takes in a producer's queue and in memory: payload, key and headers.
fn record_bytes(r: &plan::Planned) -> usize {
    r.payload.len()
        + r.key.len()
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// What `Publish` needs: the exposed topics, the cluster, and the payload checks.
pub(crate) struct Publisher {
    pub(crate) gateway: String,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) cluster: Cluster,
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) max_record_bytes: usize,
    pub(crate) id_window: usize,
    pub(crate) metrics: Arc<Metrics>,
    producer: OnceCell<FutureProducer>,
    /// Per topic and partition, its publish ids; the lock serializes publishes to it.
    partitions: Mutex<HashMap<(String, i32), SharedIndex>>,
    /// Per publishable topic, the queue of its writer task.
    writers: Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
    /// Per publishable topic, its partitions and when they were looked up.
    partition_cache: Mutex<HashMap<String, (std::time::Instant, Vec<i32>)>>,
    /// Bytes of queued records ([`MAX_QUEUED_BYTES`]).
    queued: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub(crate) fn new(
        gateway: String,
        catalog: Arc<Catalog>,
        cluster: Cluster,
        decoder: Arc<Decoder>,
        registry: Arc<Registry>,
        limits: &crate::config::Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Publisher {
            gateway,
            catalog,
            cluster,
            decoder,
            registry,
            max_record_bytes: limits.max_publish_record_bytes,
            id_window: limits.publish_id_window,
            metrics,
            producer: OnceCell::new(),
            partitions: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            partition_cache: Mutex::new(HashMap::new()),
            queued: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_BYTES)),
        }
    }

    /// The topic `name` if it is exposed and publishable.
    pub(crate) fn publishable(&self, name: &str) -> Result<()> {
        let topic = self.catalog.exposed(name)?;
        if !topic.publish {
            return Err(Error::FailedPrecondition(format!(
                "topic {name:?} is not publishable on gateway {}; the operator declares \
                 publishable topics with publish = true in [[topics]]",
                self.gateway
            )));
        }
        Ok(())
    }

    /// Checks the whole batch, then writes the records whose publish ids are new.
    /// `agent` is the `am-agent` JSON of the caller.
    pub(crate) async fn publish(
        self: &Arc<Self>,
        topic: &str,
        agent: &str,
        records: &[v1::PublishRecord],
    ) -> Result<Vec<v1::PublishResult>> {
        self.publishable(topic)?;
        let config = self.catalog.exposed(topic)?;
        let planned = plan::plan(
            &plan::Context {
                gateway: &self.gateway,
                topic: config,
                registry: &self.registry,
                decoder: &self.decoder,
                agent,
                max_record_bytes: self.max_record_bytes,
            },
            records,
        )?;
        // A batch is at most a request (1 MiB) plus its headers, far below the budget.
        let bytes = planned
            .iter()
            .map(record_bytes)
            .sum::<usize>()
            .clamp(1, MAX_QUEUED_BYTES);
        let wait = self.cluster.kafka().timeout();
        let queued = tokio::time::timeout(
            wait,
            Arc::clone(&self.queued).acquire_many_owned(bytes as u32),
        )
        .await
        .map_err(|_| {
            Error::ResourceExhausted(format!(
                "{} MiB of published records are waiting for Kafka; retry later",
                MAX_QUEUED_BYTES >> 20
            ))
        })?
        .map_err(|_| Error::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        self.writer(topic)
            .send(Job {
                records: planned,
                reply,
                _queued: queued,
            })
            .map_err(|_| Error::ShuttingDown)?;
        let results = answer.await.map_err(|_| Error::ShuttingDown)??;
        let written = results.iter().filter(|r| !r.duplicate).count();
        self.metrics
            .topic(&self.metrics.published, topic)
            .inc_by(written as u64);
        let duplicates = results.len() - written;
        if duplicates > 0 {
            self.metrics
                .topic(&self.metrics.publish_duplicates, topic)
                .inc_by(duplicates as u64);
        }
        self.metrics
            .topic(&self.metrics.publish_batches, topic)
            .inc();
        Ok(results)
    }

    /// The queue of the task that writes `topic`'s batches, started on first use.
    fn writer(self: &Arc<Self>, topic: &str) -> mpsc::UnboundedSender<Job> {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = writers.get(topic).filter(|w| !w.is_closed()) {
            return w.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(Arc::clone(self).write_loop(topic.to_owned(), rx));
        writers.insert(topic.to_owned(), tx.clone());
        tx
    }

    /// Writes the batches of one topic, those that arrived while the previous write was
    /// under way together: one end-offset look-up and one wait for Kafka's
    /// acknowledgements per round, not per batch, as a producer pipelines its sends.
    async fn write_loop(self: Arc<Self>, topic: String, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = jobs.recv().await {
            let size = |j: &Job| (j.records.len(), j.records.iter().map(record_bytes).sum());
            let (mut n, mut bytes): (usize, usize) = size(&first);
            let mut round = vec![first];
            while n < MAX_ROUND_RECORDS && bytes < MAX_ROUND_BYTES {
                match jobs.try_recv() {
                    Ok(job) => {
                        let (more, more_bytes) = size(&job);
                        n += more;
                        bytes += more_bytes;
                        round.push(job);
                    }
                    Err(_) => break,
                }
            }
            let records: Vec<&plan::Planned> =
                round.iter().flat_map(|j| j.records.iter()).collect();
            let outcome = self.write(&topic, &records).await;
            let mut at = 0;
            for job in round {
                let len = job.records.len();
                let answer = match &outcome {
                    Ok(results) => {
                        let mine = &results[at..at + len];
                        match mine.iter().find_map(|r| r.as_ref().err()) {
                            Some(e) => Err(e.share()),
                            None => Ok(mine
                                .iter()
                                .filter_map(|r| r.as_ref().ok().cloned())
                                .collect()),
                        }
                    }
                    Err(e) => Err(e.share()),
                };
                at += len;
                // A caller that went away still had its records written and noted: its
                // retry finds them.
                let _ = job.reply.send(answer);
            }
        }
    }

    /// Writes the records whose publish ids are new; answers each record's outcome. A
    /// publish id repeated in `records` (a retry racing its first attempt) is written once.
    async fn write(
        &self,
        topic: &str,
        records: &[&plan::Planned],
    ) -> Result<Vec<Result<v1::PublishResult>>> {
        let partitions = self.partitions(topic).await?;
        if partitions.is_empty() {
            return Err(Error::Unavailable(format!(
                "kafka reports no partitions for topic {topic:?}"
            )));
        }
        let mut by_partition: BTreeMap<i32, Vec<(usize, &plan::Planned)>> = BTreeMap::new();
        for (i, p) in records.iter().enumerate() {
            let partition = partitions[plan::partition(&p.key, partitions.len())];
            by_partition.entry(partition).or_default().push((i, p));
        }
        // Locked in partition order, so two writers never wait on each other in a circle.
        let mut locked = Vec::with_capacity(by_partition.len());
        for partition in by_partition.keys() {
            locked.push(self.index(topic, *partition).lock_owned().await);
        }
        let ends = self
            .cluster
            .ends(topic, &by_partition.keys().copied().collect::<Vec<_>>())
            .await?;
        // Catch up with whatever reached these partitions since they were last read: our
        // own writes before a crash, other replicas' writes.
        for (index, partition) in locked.iter_mut().zip(by_partition.keys()) {
            let end = ends.get(partition).copied().ok_or_else(|| {
                Error::Unavailable(format!(
                    "no end offset for partition {partition} of topic {topic:?}"
                ))
            })?;
            if let Some(from) = index.read_from(end) {
                let kafka = self.cluster.kafka().clone();
                let (t, p) = (topic.to_owned(), *partition);
                let (found, next) =
                    tokio::task::spawn_blocking(move || ids::read(&kafka, &t, p, from, end))
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))??;
                for (offset, key) in found {
                    index.note(offset, key);
                }
                index.caught_up(next);
            }
        }
        let producer = self.producer().await?;
        let reference = |partition: i32, offset: i64| -> Result<String> {
            AlertRef::new(&self.gateway, topic, partition, offset)
                .map(|r| r.to_string())
                .map_err(|e| Error::Internal(e.to_string()))
        };
        let mut results: Vec<Option<Result<v1::PublishResult>>> =
            (0..records.len()).map(|_| None).collect();
        let mut pending = Vec::new();
        // Records whose id an earlier record of this round carries: (record, that record).
        let mut repeats = Vec::new();
        for (slot, ((partition, recs), index)) in
            by_partition.iter().zip(locked.iter_mut()).enumerate()
        {
            let mut sent: HashMap<&str, usize> = HashMap::new();
            for (i, rec) in recs {
                if let Some(offset) = index.get(&rec.id_key) {
                    results[*i] = Some(Ok(v1::PublishResult {
                        r#ref: reference(*partition, offset)?,
                        duplicate: true,
                    }));
                    continue;
                }
                if let Some(first) = sent.get(rec.id_key.as_str()) {
                    repeats.push((*i, *first));
                    continue;
                }
                // Until every delivery is noted: if a delivery fails, the next publish here
                // reads the partition to its end first.
                index.sending();
                let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
                for (k, v) in &rec.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    });
                }
                let record = FutureRecord::to(topic)
                    .partition(*partition)
                    .key(rec.key.as_str())
                    .payload(rec.payload.as_ref())
                    .headers(headers);
                let delivery = match producer.send_result(record) {
                    Ok(d) => d,
                    Err((e, _)) => {
                        results[*i] = Some(Err(Error::from_kafka(e)));
                        continue;
                    }
                };
                sent.insert(rec.id_key.as_str(), *i);
                pending.push((*i, slot, *partition, rec.id_key.clone(), delivery));
            }
        }
        // Every delivery is awaited, so each written record is noted even when another
        // failed; a retry with the same ids then writes only what is missing.
        let mut failed = vec![false; locked.len()];
        for (i, slot, partition, id_key, delivery) in pending {
            let delivered = delivery
                .await
                .map_err(|_| Error::Unavailable("the kafka producer stopped".into()))
                .and_then(|d| d.map_err(|(e, _)| Error::from_kafka(e)));
            results[i] = Some(match delivered {
                Ok(d) => {
                    if let Some(index) = locked.get_mut(slot) {
                        index.note(d.offset, id_key);
                    }
                    reference(partition, d.offset).map(|r| v1::PublishResult {
                        r#ref: r,
                        duplicate: false,
                    })
                }
                Err(e) => {
                    if let Some(f) = failed.get_mut(slot) {
                        *f = true;
                    }
                    Err(e)
                }
            });
        }
        for (index, failed) in locked.iter_mut().zip(failed) {
            if !failed {
                index.settled();
            }
        }
        for (i, first) in repeats {
            results[i] = Some(match &results[first] {
                Some(Ok(r)) => Ok(v1::PublishResult {
                    r#ref: r.r#ref.clone(),
                    duplicate: true,
                }),
                Some(Err(e)) => Err(e.share()),
                None => Err(Error::Internal(
                    "a repeated publish id lost its first record".into(),
                )),
            });
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("a record was not written".into()))))
            .collect())
    }

    /// The topic's partitions, looked up at most every [`PARTITIONS_TTL`]: a metadata
    /// round trip per write round would cost as much as the end-offset look-up. A topic
    /// that gains partitions moves keys either way (see the README's bounds).
    async fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let cached = self
            .partition_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .filter(|(at, _)| at.elapsed() < PARTITIONS_TTL)
            .map(|(_, p)| p.clone());
        if let Some(p) = cached {
            return Ok(p);
        }
        let p = self.catalog.partitions(topic).await?;
        self.partition_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), (std::time::Instant::now(), p.clone()));
        Ok(p)
    }

    fn index(&self, topic: &str, partition: i32) -> SharedIndex {
        let mut map = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry((topic.to_owned(), partition)).or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(ids::Index::new(self.id_window)))
            }),
        )
    }

    async fn producer(&self) -> Result<&FutureProducer> {
        self.producer
            .get_or_try_init(|| async {
                let kafka = self.cluster.kafka();
                let mut c = kafka.client_config();
                // Idempotence: librdkafka's own retries never write a record twice.
                c.set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("linger.ms", "2")
                    .set("message.max.bytes", "2000000")
                    .set(
                        "message.timeout.ms",
                        (kafka.timeout().as_millis() * 3).max(1000).to_string(),
                    );
                c.create().map_err(Error::from_kafka)
            })
            .await
    }
}
