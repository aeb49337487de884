//! Kafka's transactional fencing, the primitive that keeps a paused or cut-off mirror
//! replica from writing after another replica took its partitions over: a producer that
//! calls `init_transactions` with the same `transactional.id` fences the previous one, and
//! `read_committed` readers never see what a fenced or aborted producer wrote.
//!
//! Runs against the Kafka the harness selects (`ALERTMESH_TEST_KAFKA`). Tansu fences the old
//! producer too, but its `read_committed` reads still return aborted records, so replica
//! mode, which resumes from what the destination committed, needs Apache Kafka; on Tansu the
//! test checks the fence and prints what the reader saw.

use std::time::{Duration, Instant};

use alertmesh_tests::apache::Flavor;
use alertmesh_tests::Broker;
use anyhow::{bail, ensure, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

fn transactional(bootstrap: &str, id: &str) -> Result<ThreadedProducer<DefaultProducerContext>> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "30000")
        .create()?;
    Ok(producer)
}

fn send_committed(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    payloads: &[&str],
) -> Result<()> {
    producer.begin_transaction()?;
    for p in payloads {
        producer
            .send(BaseRecord::<(), str>::to(topic).partition(0).payload(*p))
            .map_err(|(e, _)| e)?;
    }
    producer.commit_transaction(TIMEOUT)?;
    Ok(())
}

/// Every record a `read_committed` reader sees in partition 0 of `topic`.
fn read_committed(bootstrap: &str, topic: &str, want: usize) -> Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fence-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    // Read on a little past `want`, so that an extra record would be seen.
    let mut quiet_until = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => bail!("read {topic}: {e}"),
            None if seen.len() >= want => {
                let until = *quiet_until.get_or_insert(Instant::now() + Duration::from_secs(2));
                if Instant::now() >= until {
                    break;
                }
            }
            None => {}
        }
    }
    Ok(seen)
}

#[tokio::test]
async fn a_new_transactional_producer_fences_the_previous_owner() -> Result<()> {
    let broker = Broker::start("fence").await?;
    broker.create_topic("fenced", 1).await?;
    let bootstrap = broker.bootstrap();
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
        let old = transactional(&bootstrap, "alertmesh-test-fence")?;
        old.init_transactions(TIMEOUT).context("init old")?;
        send_committed(&old, "fenced", &["a1", "a2"])?;

        // A second owner of the same id: the old producer is fenced from here on.
        let new = transactional(&bootstrap, "alertmesh-test-fence")?;
        new.init_transactions(TIMEOUT).context("init new")?;
        let stale = send_committed(&old, "fenced", &["stale"]);
        ensure!(
            stale.is_err(),
            "the fenced producer committed a transaction"
        );
        send_committed(&new, "fenced", &["b1"])?;

        // An aborted transaction is never seen either.
        new.begin_transaction()?;
        new.send(
            BaseRecord::<(), str>::to("fenced")
                .partition(0)
                .payload("aborted"),
        )
        .map_err(|(e, _)| e)?;
        new.flush(TIMEOUT)?;
        new.abort_transaction(TIMEOUT)?;
        send_committed(&new, "fenced", &["b2"])?;
        read_committed(&bootstrap, "fenced", 4)
    })
    .await?;
    match (broker.flavor(), result) {
        (Flavor::Apache, result) => {
            assert_eq!(result?, ["a1", "a2", "b1", "b2"]);
        }
        // Seen on Tansu 0.x: ["a1", "a2", "b1", "aborted", "b2"].
        (Flavor::Tansu, result) => eprintln!("tansu transactions: {result:?}"),
    }
    Ok(())
}
