//! Reading a topic straight from Kafka, the baseline the gateway is compared with.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

/// What a direct read saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub records: u64,
    pub payload_bytes: u64,
}

/// A consumer assigned to every partition of `topic` at `start` (no consumer group).
pub fn assigned_consumer(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    start: Offset,
) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "alertmesh-tests-direct")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .set("reconnect.backoff.ms", "10")
        .set("enable.sparse.connections", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .context("create consumer")?;
    // Knowing the partition leaders before the assignment spares librdkafka's 500 ms
    // offset query timer, a short reconnect backoff a ~50 ms wait before connecting to
    // the broker metadata names, and eager connections a ~12 ms stall of the lookup
    // (the gateway's readers do all three).
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .context("topic metadata")?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, start)?;
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

/// Reads from `consumer` until every partition is at EOF and `min_records` were read.
/// Blocking: call from a thread or `spawn_blocking`.
pub fn read_to_eof(
    consumer: &BaseConsumer,
    partitions: i32,
    min_records: u64,
    timeout: Duration,
) -> Result<ReadStats> {
    read_to_eof_with(consumer, partitions, min_records, timeout, |_| {})
}

/// [`read_to_eof`], handing every record to `each`.
pub fn read_to_eof_with(
    consumer: &BaseConsumer,
    partitions: i32,
    min_records: u64,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<ReadStats> {
    let deadline = std::time::Instant::now() + timeout;
    let mut at_eof = HashSet::new();
    let mut stats = ReadStats::default();
    while at_eof.len() < partitions as usize || stats.records < min_records {
        if std::time::Instant::now() > deadline {
            bail!("direct read timed out with {stats:?}, eof {at_eof:?}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                at_eof.remove(&message.partition());
                each(&message);
                stats.records += 1;
                stats.payload_bytes += message.payload_len() as u64;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_eof.insert(p);
            }
            // One broker of a cluster is down: librdkafka reads from the others (a new
            // leader) and reports the dead one's connection failures on the way. Under
            // load every connection can be down at the same moment (the dead broker's, and
            // the others' still being set up), which librdkafka reports as AllBrokersDown
            // and recovers from by itself; the deadline bounds the wait.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(e)) => bail!("direct read: {e}"),
        }
    }
    Ok(stats)
}

/// The value of header `name` of `m` as text (lossy UTF-8), empty when absent or null.
pub fn header_text(m: &BorrowedMessage<'_>, name: &str) -> String {
    use rdkafka::message::Headers as _;
    m.headers()
        .and_then(|hs| hs.iter().find(|h| h.key == name))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Whether the test broker can delete records ([`delete_below`]): Apache Kafka can, Tansu
/// cannot (nor has it retention a test can wait for). Says so when it cannot, for a test
/// that then skips.
pub fn deletes_records() -> bool {
    apache_only("Tansu has no DeleteRecords (nor retention a test can wait for)")
}

/// Whether the test broker can add partitions to a topic
/// ([`Broker::add_partitions`](crate::Broker::add_partitions)): Tansu cannot.
pub fn adds_partitions() -> bool {
    apache_only("Tansu cannot add partitions to a topic (CreatePartitions)")
}

/// Whether the tests run on Apache Kafka; if not, prints why a test skips (`why`).
fn apache_only(why: &str) -> bool {
    let apache = crate::apache::Flavor::from_env() == crate::apache::Flavor::Apache;
    if !apache {
        eprintln!("skipped: {why}; runs with ALERTMESH_TEST_KAFKA=apache");
    }
    apache
}

/// Deletes the records of `partition` below `offset` (as retention would), returning the
/// partition's new first offset. Apache Kafka only: Tansu has no DeleteRecords.
pub async fn delete_below(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    let done = admin
        .delete_records(
            &tpl,
            &AdminOptions::new().operation_timeout(Some(crate::WAIT)),
        )
        .await?;
    let e = done
        .find_partition(topic, partition)
        .context("no answer for the partition")?;
    e.error()?;
    match e.offset() {
        Offset::Offset(o) => Ok(o),
        other => bail!("new first offset {other:?}"),
    }
}
