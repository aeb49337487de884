//! The gateway's Kafka side: client settings, metadata look-ups, and readers that run on
//! their own threads (librdkafka polling blocks, so it never runs on the async runtime).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub(crate) mod cluster;
pub(crate) mod reader;
pub(crate) mod replaced;

/// A consumer of this gateway: librdkafka's errors and logs go to tracing and metrics.
/// The gateway's [`replaced::Watch`] holds a weak handle on each, to stop its fetching
/// from the watch's own thread the moment the cluster is lost.
pub(crate) struct GatewayConsumer(Arc<BaseConsumer<KafkaContext>>);

impl GatewayConsumer {
    /// Makes the client with `context` and registers it with the context's watch.
    fn create(config: &ClientConfig, context: KafkaContext) -> Result<GatewayConsumer> {
        let watch = Arc::clone(&context.watch);
        let consumer: BaseConsumer<KafkaContext> = config
            .create_with_context(context)
            .map_err(Error::from_kafka)?;
        let consumer = Arc::new(consumer);
        watch.register(&consumer);
        Ok(GatewayConsumer(consumer))
    }

    /// Assigns `tpl`, noted first in the context: the watch pauses the partitions a
    /// client was given without asking librdkafka for them (a round trip through the
    /// client's own thread, per client, while the clients reconnect).
    pub(crate) fn assign(&self, tpl: &TopicPartitionList) -> KafkaResult<()> {
        self.context().set_assigned(tpl.clone());
        self.0.assign(tpl)
    }

    /// Removes the assignment.
    pub(crate) fn unassign(&self) -> KafkaResult<()> {
        let done = self.0.unassign();
        self.context().set_assigned(TopicPartitionList::new());
        done
    }
}

impl std::ops::Deref for GatewayConsumer {
    type Target = BaseConsumer<KafkaContext>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Routes librdkafka's client-level errors and logs: errors are counted in
/// `alertmesh_kafka_errors_total` and logged as warnings; reaching the end of a partition
/// is an event the readers use, not an error.
///
/// Each consumer has its own context, which remembers whether the client has lost every
/// broker connection: the cluster may then have been replaced behind the same address,
/// and such a client is dropped rather than reconnected (see [`replaced`]).
pub(crate) struct KafkaContext {
    metrics: Arc<Metrics>,
    lost: AtomicBool,
    /// The gateway's watch on its cluster, and its epoch when the client was made: a
    /// client made before the cluster was last lost is lost too.
    watch: Arc<replaced::Watch>,
    epoch: u64,
    /// The settings the client was made with, to make a fresh one.
    config: ClientConfig,
    /// The partitions assigned through [`GatewayConsumer::assign`].
    assigned: Mutex<TopicPartitionList>,
}

impl std::fmt::Debug for KafkaContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the settings: operator properties may hold secrets.
        f.debug_struct("KafkaContext")
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl KafkaContext {
    /// Whether the client, or the gateway's watch, has lost every connection to the
    /// cluster since the client was made.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed) || self.watch.epoch() != self.epoch
    }

    /// The gateway's watch on its cluster.
    pub(crate) fn watch(&self) -> &replaced::Watch {
        &self.watch
    }

    /// The client must not fetch again: it is to be renewed.
    pub(crate) fn mark_lost(&self) {
        self.lost.store(true, Ordering::Relaxed);
    }

    /// The partitions assigned to the client.
    pub(crate) fn assigned(&self) -> TopicPartitionList {
        self.assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_assigned(&self, tpl: TopicPartitionList) {
        *self.assigned.lock().unwrap_or_else(|e| e.into_inner()) = tpl;
    }

    /// Notes an error the client reported, through its callback or its queue.
    pub(crate) fn saw(&self, error: &KafkaError) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.lost.store(true, Ordering::Relaxed);
        }
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                if let Some(suppressed) = LIBRDKAFKA_ERRORS.admit() {
                    tracing::error!(target: "librdkafka", fac, suppressed, "{message}");
                }
            }
            RDKafkaLogLevel::Warning => {
                if let Some(suppressed) = LIBRDKAFKA_WARNINGS.admit() {
                    tracing::warn!(target: "librdkafka", fac, suppressed, "{message}");
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        self.saw(&error);
        self.metrics.kafka_errors.inc();
        if let Some(suppressed) = CLIENT_ERRORS.admit() {
            tracing::warn!(error = %error, reason, suppressed, "kafka client error");
        }
    }
}

impl ConsumerContext for KafkaContext {}

/// Builds librdkafka settings shared by every client of this gateway.
#[derive(Debug, Clone)]
pub(crate) struct Kafka {
    config: Arc<KafkaConfig>,
    client_id: String,
    metrics: Arc<Metrics>,
    /// Started with the first consumer.
    watch: Arc<OnceLock<Arc<replaced::Watch>>>,
}

impl Kafka {
    pub(crate) fn new(config: KafkaConfig, gateway: &str, metrics: Arc<Metrics>) -> Self {
        Kafka {
            config: Arc::new(config),
            client_id: format!("alertmesh-{gateway}"),
            metrics,
            watch: Arc::new(OnceLock::new()),
        }
    }

    /// The watch on the cluster (see [`replaced::Watch`]), started on first use.
    fn watch(&self) -> Arc<replaced::Watch> {
        let watch = self.watch.get_or_init(|| {
            // One watch per cluster (address and settings) in the process, shared by the
            // gateway's `Kafka`s (serving, credentials): the first watch to see the
            // cluster go must pause every client of it, and a second watch's thread can be
            // descheduled for longer than a new broker takes to listen (seen at 100 ms on
            // a loaded machine, with the credentials reader's client left fetching).
            let key = format!("{}\n{:?}", self.config.bootstrap, self.config.properties);
            let mut watches = WATCHES.lock().unwrap_or_else(|e| e.into_inner());
            watches.retain(|_, w| w.strong_count() > 0);
            if let Some(shared) = watches.get(&key).and_then(std::sync::Weak::upgrade) {
                return shared;
            }
            let mut c = self.client_config();
            c.set("group.id", &self.client_id)
                .set("enable.auto.commit", "false")
                // Connected to every broker, so "all down" means the cluster is gone.
                .set("enable.sparse.connections", "false")
                .set("reconnect.backoff.ms", "10");
            for (k, v) in &self.config.properties {
                c.set(k, v);
            }
            let watch = replaced::Watch::start(c);
            watches.insert(key, Arc::downgrade(&watch));
            watch
        });
        Arc::clone(watch)
    }

    /// The metrics its clients count errors in.
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Counts an error met outside librdkafka's callbacks (e.g. a failed look-up).
    pub(crate) fn count_error(&self) {
        self.metrics.kafka_errors.inc();
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config.timeout
    }

    pub(crate) fn cursor_topic(&self) -> &str {
        &self.config.cursor_topic
    }

    pub(crate) fn credentials_topic(&self) -> &str {
        &self.config.credentials_topic
    }

    /// Common settings; operator properties come last so they can override ours.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let timeout_ms = self.config.timeout.as_millis().to_string();
        c.set("bootstrap.servers", &self.config.bootstrap)
            .set("client.id", &self.client_id)
            .set("socket.timeout.ms", &timeout_ms)
            .set("log_level", "3");
        for (k, v) in &self.config.properties {
            c.set(k, v);
        }
        c
    }

    /// A consumer for `assign()`-only use: no group membership, no offset commits.
    pub(crate) fn consumer(&self, buffer_kib: usize) -> Result<GatewayConsumer> {
        self.consumer_waiting(buffer_kib, Duration::from_millis(100))
    }

    /// A consumer that reads stored records to their end: a partition at its end answers
    /// after `fetch_wait` (Kafka's long poll), and a reader that must see where the end is
    /// (for `end = now`, or to join the live tail) waits that long, so catch-up readers
    /// use a short one. The live tail keeps the long poll: it is idle most of the time.
    pub(crate) fn consumer_waiting(
        &self,
        buffer_kib: usize,
        fetch_wait: Duration,
    ) -> Result<GatewayConsumer> {
        self.make_consumer(buffer_kib, fetch_wait, false)
    }

    /// A [`consumer_waiting`](Self::consumer_waiting) for a subscriber's own read, which
    /// must say when records it was to deliver are gone: a position Kafka no longer holds
    /// (the topic's retention deleted it while the read was behind or parked) stops the
    /// partition with `AutoOffsetReset` instead of moving silently to the first record
    /// held; the reader reports the gap ([`reader::ReaderEvent::Gap`]) and goes on.
    pub(crate) fn consumer_reporting_gaps(
        &self,
        buffer_kib: usize,
        fetch_wait: Duration,
    ) -> Result<GatewayConsumer> {
        self.make_consumer(buffer_kib, fetch_wait, true)
    }

    fn make_consumer(
        &self,
        buffer_kib: usize,
        fetch_wait: Duration,
        report_gaps: bool,
    ) -> Result<GatewayConsumer> {
        // librdkafka wants fetch.max.bytes >= message.max.bytes (1 MB by default).
        let fetch_max = (buffer_kib << 10).clamp(1 << 20, 16 << 20);
        let mut c = self.client_config();
        c.set("group.id", &self.client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // A position older than the oldest retained record resumes at the oldest.
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
            .set("queued.max.messages.kbytes", buffer_kib.to_string())
            // librdkafka otherwise pauses a partition's fetches for a whole second each
            // time the bounded prefetch queue fills, which starved fast readers.
            .set("fetch.queue.backoff.ms", "5")
            // A new client connects to the bootstrap address, then again to the broker
            // that metadata names; librdkafka spaces connection attempts by this backoff,
            // which put ~50 ms before the first alert of about half the subscriptions.
            .set("reconnect.backoff.ms", "10")
            // With sparse connections librdkafka 2.12 drops the bootstrap connection when
            // the first metadata answer names the brokers; a topic lookup sent on it just
            // before then is retried only after the sparse-connect interval (>= 11 ms), in
            // about half of all new readers. Connecting to the named brokers at once
            // avoids it (measured: first record after 4-6 ms, not 4 or 17).
            .set("enable.sparse.connections", "false")
            // Fewer, larger fetches: a reader of small alerts spends less per alert on
            // round trips; but never more per fetch than the prefetch queue holds, or
            // reads stall and the broker does more work per byte (measured with
            // bench_subscribe: 1 KB alerts about 0.72x -> 0.8x a direct consumer).
            // A small prefetch queue (a small read, see `cluster::Shape`) gets small
            // partition fetches too, or one response holds many times the queue
            // (librdkafka grows it for a larger record).
            .set(
                "max.partition.fetch.bytes",
                (buffer_kib << 10).clamp(64 << 10, 4 << 20).to_string(),
            )
            .set("fetch.max.bytes", fetch_max.to_string());
        // The operator's properties have the last word, but on what a read promises its
        // subscriber.
        for (k, v) in &self.config.properties {
            c.set(k, v);
        }
        if report_gaps {
            c.set("auto.offset.reset", "error");
        }
        let watch = self.watch();
        let context = KafkaContext {
            metrics: Arc::clone(&self.metrics),
            lost: AtomicBool::new(false),
            epoch: watch.epoch(),
            watch,
            config: c.clone(),
            assigned: Mutex::new(TopicPartitionList::new()),
        };
        GatewayConsumer::create(&c, context)
    }

    /// Creates a single-partition compacted topic for gateway state (cursors,
    /// credentials) unless it exists; `what` names it in errors. Its replication factor is
    /// the cluster's default (`default.replication.factor`), not 1: on a cluster of several
    /// brokers, cursors and revocations must survive the loss of one.
    pub(crate) async fn ensure_state_topic(&self, topic: &str, what: &str) -> Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            self.client_config().create().map_err(Error::from_kafka)?;
        let new =
            NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
        let opts = AdminOptions::new().operation_timeout(Some(self.config.timeout));
        let results = admin.create_topics([&new], &opts).await.map_err(|e| {
            Error::Unavailable(format!("cannot create {what} topic {topic:?}: {e}"))
        })?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(Error::Unavailable(format!(
                        "cannot create {what} topic {topic:?}: {code}"
                    )))
                }
            }
        }
        // State is read from partition 0 alone, in order, and written there: a topic made
        // by hand with more partitions may hold records that earlier versions wrote to the
        // others (revocations among them), which would be ignored without a word.
        let (kafka, name) = (self.clone(), topic.to_owned());
        let partitions = tokio::task::spawn_blocking(move || {
            let consumer = kafka.consumer(64)?;
            let started = std::time::Instant::now();
            loop {
                match kafka.partitions(&consumer, &name) {
                    // A topic just created may not be in every broker's metadata yet.
                    Err(Error::NotFound(_)) if started.elapsed() < kafka.timeout() => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    found => return found,
                }
            }
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        // A topic made by hand with the delete policy drops records with its retention:
        // revocations would lapse while their tokens still run (up to a year).
        let policy = admin
            .describe_configs([&rdkafka::admin::ResourceSpecifier::Topic(topic)], &opts)
            .await
            .ok()
            .and_then(|rs| rs.into_iter().next()?.ok())
            .and_then(|r| {
                r.entries
                    .into_iter()
                    .find(|e| e.name == "cleanup.policy")?
                    .value
            });
        if let Some(policy) = policy.filter(|p| !p.contains("compact")) {
            tracing::warn!(
                topic,
                // Kafka's answer: echoed capped and escaped.
                policy = %alertmesh_alert::echo::shown(&policy, 64),
                "the {what} topic is not compacted: its records are dropped with its retention; \
                 set cleanup.policy=compact on it"
            );
        }
        if partitions != [0] {
            return Err(Error::FailedPrecondition(format!(
                "{what} topic {topic:?} has {} partitions; the gateway keeps its {what} in one \
                 (it creates the topic so when it is missing): recreate it with one partition \
                 and cleanup.policy=compact, or name another topic",
                partitions.len()
            )));
        }
        Ok(())
    }

    /// Partition ids of `topic`, or NotFound / Unavailable.
    pub(crate) fn partitions(&self, consumer: &GatewayConsumer, topic: &str) -> Result<Vec<i32>> {
        let md = consumer
            .fetch_metadata(Some(topic), self.config.timeout)
            .map_err(|e| match e.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
                ) => Error::NotFound(format!(
                    "topic {topic:?} is exposed but does not exist in kafka"
                )),
                _ => Error::Unavailable(format!("cannot read metadata of topic {topic:?}: {e}")),
            })?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "topic {topic:?} is exposed but does not exist in kafka"
                ))
            })?;
        if let Some(err) = t.error() {
            let code: RDKafkaErrorCode = err.into();
            return Err(match code {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    Error::NotFound(format!(
                        "topic {topic:?} is exposed but does not exist in kafka"
                    ))
                }
                c if crate::error::is_transport(c) => {
                    Error::Unavailable(format!("topic {topic:?}: {c}"))
                }
                c => Error::Kafka(KafkaError::MetadataFetch(c)),
            });
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err(Error::NotFound(format!(
                "topic {topic:?} has no partitions in kafka"
            )));
        }
        Ok(ids)
    }

    /// Per partition, the first offset whose timestamp is at or after `ms`, or `None` when
    /// no such record exists yet. (Some brokers answer with the earliest offset instead;
    /// readers skip older records, so both are correct.)
    pub(crate) fn offsets_for_time(
        &self,
        consumer: &GatewayConsumer,
        topic: &str,
        partitions: &[i32],
        ms: i64,
    ) -> Result<Vec<(i32, Option<i64>)>> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(ms))
                .map_err(Error::from_kafka)?;
        }
        let found = consumer
            .offsets_for_times(tpl, self.config.timeout)
            .map_err(Error::from_kafka)?;
        Ok(partitions
            .iter()
            .map(|p| {
                let off = found
                    .find_partition(topic, *p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o),
                        _ => None,
                    });
                (*p, off)
            })
            .collect())
    }
}

/// A new client with the settings of `consumer`, which is dropped first: once a client
/// has lost its cluster it must not reconnect, since librdkafka keeps what it knew of the
/// old cluster (topic ids, leaders) and has crashed on meeting a new one behind the same
/// address (see [`replaced`]).
pub(crate) fn renew(consumer: GatewayConsumer) -> Result<GatewayConsumer> {
    let (metrics, config, watch) = {
        let context: &KafkaContext = consumer.context();
        (
            Arc::clone(&context.metrics),
            context.config.clone(),
            Arc::clone(&context.watch),
        )
    };
    // No fetch from here on: the gateway's watch may hold the client a moment longer
    // (see `replaced::Watch`), and closing it stops its fetches only in passing.
    let _ = consumer.unassign();
    drop(consumer);
    let context = KafkaContext {
        metrics,
        lost: AtomicBool::new(false),
        epoch: watch.epoch(),
        watch,
        config: config.clone(),
        assigned: Mutex::new(TopicPartitionList::new()),
    };
    GatewayConsumer::create(&config, context)
}

/// The live cluster watches of the process, by cluster address and settings.
static WATCHES: Mutex<std::collections::BTreeMap<String, std::sync::Weak<replaced::Watch>>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Rate limit of the log lines for librdkafka's warnings, which a peer, a producer or a failing cluster
/// can make repeat.
static LIBRDKAFKA_WARNINGS: alertmesh_mirror::limit::RateLimit =
    alertmesh_mirror::limit::RateLimit::new();

/// Logs of librdkafka's error log lines, which a peer, a producer or a failing cluster can repeat.
static LIBRDKAFKA_ERRORS: alertmesh_mirror::limit::RateLimit =
    alertmesh_mirror::limit::RateLimit::new();

/// Logs of client errors, which a peer, a producer or a failing cluster can repeat.
static CLIENT_ERRORS: alertmesh_mirror::limit::RateLimit =
    alertmesh_mirror::limit::RateLimit::new();
