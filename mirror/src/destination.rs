//! The local Kafka side of a mirror: the destination and dead-letter topics, the producer,
//! and (in [`recover`]) resume positions read back from the destination's tail.

mod recover;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer as _;

use crate::quiet::{Consumer, Lost, Producer, QuietContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

pub(crate) use self::recover::{recover, recover_with};
use crate::{Error, MirrorEnv, Result};

/// The dead-letter topic of `destination`.
pub(crate) fn dlq_topic(destination: &str) -> String {
    alertmesh_alert::naming::dlq_topic(destination)
}

/// Sets `key` unless the operator's settings already do.
fn default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

/// A producer for one cycle. Idempotence plus one request in flight keeps each partition's
/// records in order with no gap, which recovery relies on (it resumes after the highest
/// source offset found); a fatal producer error ends the cycle and the next one starts
/// with a fresh producer.
pub(crate) fn producer(env: &MirrorEnv, destination: &str) -> Result<Sink> {
    let mut config = env.kafka.clone();
    default(&mut config, "enable.idempotence", "true");
    default(&mut config, "acks", "all");
    default(&mut config, "max.in.flight.requests.per.connection", "1");
    default(&mut config, "enable.gapless.guarantee", "true");
    default(&mut config, "linger.ms", "5");
    default(&mut config, "message.max.bytes", "10000000");
    let timeout_ms = (env.timeout.as_millis() * 3).max(1000).to_string();
    default(&mut config, "message.timeout.ms", &timeout_ms);
    let lost = Lost::default();
    let producer = config
        .create_with_context(QuietContext::sharing(&lost))
        .map_err(|e| destination_error(destination, format!("cannot create a producer: {e}")))?;
    Ok(Sink {
        producer,
        lost,
        transactional: false,
    })
}

/// A transactional producer for one work unit of a shared mirror (see [`crate::share`]).
/// `init_transactions` gives its `transactional.id` a new epoch: the unit's previous owner
/// (a replica paused or cut off that does not know it lost the unit) is fenced, and what
/// it had not committed is aborted, before this cycle reads back where to resume.
pub(crate) async fn transactional_producer(
    env: &MirrorEnv,
    transactional_id: &str,
    destination: &str,
) -> Result<Sink> {
    let mut config = env.kafka.clone();
    config.set("transactional.id", transactional_id);
    default(&mut config, "acks", "all");
    default(&mut config, "max.in.flight.requests.per.connection", "1");
    default(&mut config, "linger.ms", "5");
    default(&mut config, "message.max.bytes", "10000000");
    let message_ms = (env.timeout.as_millis() * 3).max(1000);
    default(&mut config, "message.timeout.ms", &message_ms.to_string());
    // A replica paused mid-transaction holds back read_committed readers of its partition
    // until another takes the unit over or this expires.
    let transaction_ms = message_ms.max(30_000);
    default(
        &mut config,
        "transaction.timeout.ms",
        &transaction_ms.to_string(),
    );
    let lost = Lost::default();
    let producer: Producer = config
        .create_with_context(QuietContext::sharing(&lost))
        .map_err(|e| destination_error(destination, format!("cannot create a producer: {e}")))?;
    let (p, timeout) = (
        producer.clone(),
        env.timeout.max(Duration::from_secs(5)) * 2,
    );
    tokio::task::spawn_blocking(move || p.init_transactions(timeout))
        .await
        .map_err(|e| destination_error(destination, format!("init task failed: {e}")))?
        .map_err(|e| kafka_error(destination, "cannot initialise transactions", &e))?;
    Ok(Sink {
        producer,
        lost,
        transactional: true,
    })
}

/// A destination error, or [`Error::Fenced`] when Kafka says another producer with the
/// same `transactional.id` took over.
pub(crate) fn kafka_error(topic: &str, context: &str, e: &KafkaError) -> Error {
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    );
    if fenced {
        Error::Fenced {
            topic: topic.to_owned(),
        }
    } else {
        destination_error(topic, format!("{context}: {e}"))
    }
}

/// A cycle's producer, and whether it lost the destination cluster (then the cycle ends).
pub(crate) struct Sink {
    pub(crate) producer: Producer,
    pub(crate) lost: Lost,
    /// Copies are written in transactions, committed every few records (a shared mirror).
    pub(crate) transactional: bool,
}

/// Settings for `assign()`-only reads: no group membership, no commits, EOF events.
pub(crate) fn reader_config(mut config: ClientConfig) -> ClientConfig {
    config
        .set("group.id", "alertmesh-mirror")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    config
}

pub(crate) fn destination_error(topic: &str, reason: String) -> Error {
    Error::Destination {
        topic: topic.to_owned(),
        reason,
    }
}

/// Creates `destination` and its dead-letter topic with `partitions` partitions when
/// missing, and checks that existing ones have at least that many.
pub(crate) async fn ensure_topics(
    env: &MirrorEnv,
    destination: &str,
    partitions: usize,
) -> Result<()> {
    let dlq = dlq_topic(destination);
    ensure(env, &[destination.to_owned(), dlq], partitions).await
}

/// Creates each of `topics` with `partitions` partitions when missing, and checks that
/// existing ones have at least that many.
pub(crate) async fn ensure(env: &MirrorEnv, topics: &[String], partitions: usize) -> Result<()> {
    let first = topics.first().map_or("", String::as_str);
    let admin: AdminClient<DefaultClientContext> = env
        .kafka
        .create()
        .map_err(|e| destination_error(first, format!("cannot create an admin client: {e}")))?;
    let destination = first;
    let count = i32::try_from(partitions).unwrap_or(i32::MAX);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, count, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(env.timeout))
        .request_timeout(Some(env.timeout));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|e| destination_error(destination, format!("cannot create topics: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(destination_error(
                    &topic,
                    format!("cannot create the topic: {code}"),
                ))
            }
        }
    }
    for topic in topics.iter().cloned() {
        let (config, timeout, t) = (env.kafka.clone(), env.timeout, topic.clone());
        let has = tokio::task::spawn_blocking(move || wait_for_partitions(config, &t, timeout))
            .await
            .map_err(|e| destination_error(&topic, format!("metadata task failed: {e}")))??;
        if has < partitions {
            return Err(Error::TooFewPartitions {
                topic,
                has,
                needs: partitions,
            });
        }
    }
    Ok(())
}

/// The partition count of `topic`, waiting (bounded) for a new topic to show in metadata.
/// Blocking: librdkafka metadata requests block.
fn wait_for_partitions(config: ClientConfig, topic: &str, timeout: Duration) -> Result<usize> {
    let consumer: Consumer = reader_config(config)
        .create_with_context(QuietContext::default())
        .map_err(|e| destination_error(topic, format!("cannot create a consumer: {e}")))?;
    let deadline = Instant::now() + timeout.max(Duration::from_secs(1)) * 2;
    loop {
        match partition_count(&consumer, topic, timeout) {
            Ok(n) if n > 0 => return Ok(n),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(_) => {
                return Err(destination_error(
                    topic,
                    "the topic has no partitions".into(),
                ))
            }
            Err(e) => return Err(destination_error(topic, e)),
        }
    }
}

pub(crate) fn partition_count(
    consumer: &Consumer,
    topic: &str,
    timeout: Duration,
) -> std::result::Result<usize, String> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("cannot read metadata: {e}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| "the topic does not exist".to_owned())?;
    if let Some(err) = t.error() {
        return Err(format!("metadata error: {}", RDKafkaErrorCode::from(err)));
    }
    Ok(t.partitions().len())
}
