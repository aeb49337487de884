//! Shared mirrors resume from what the destination *committed*, so they are only as safe
//! as the cluster's `read_committed` reads: a broker that returns aborted records (Tansu
//! does) would let a fenced replica's aborted copies through. Before joining its group a
//! replica writes one record to partition 0 of the work topic in a transaction, aborts
//! it, and reads the partition back with `read_committed`: if the record shows, the
//! mirror refuses to share (a permanent error naming `gateway.share_mirrors = false`).

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::destination::{destination_error, reader_config};
use crate::quiet::{Consumer, Producer, QuietContext};
use crate::{Error, MirrorEnv, Result};

/// Checks that `topic`'s cluster hides aborted records from `read_committed` readers.
pub(super) async fn hides_aborted(env: &MirrorEnv, mirror: &str, topic: &str) -> Result<()> {
    let (config, t, timeout) = (env.kafka.clone(), topic.to_owned(), env.timeout);
    let id = format!("alertmesh.{}.{mirror}.probe.{}", env.gateway, env.replica);
    let marker = format!("alertmesh transaction probe {id} {}", std::process::id());
    let shows = tokio::task::spawn_blocking(move || probe(config, &t, timeout, &id, &marker))
        .await
        .map_err(|e| destination_error(topic, format!("probe task failed: {e}")))??;
    if shows {
        return Err(Error::Spec {
            name: mirror.to_owned(),
            reason: "the local Kafka returns aborted records to read_committed readers, so \
                     replicas cannot share mirrors safely on it; set gateway.share_mirrors = \
                     false and run the mirrors in one process (see docs/replicas.md)"
                .into(),
        });
    }
    Ok(())
}

/// Whether an aborted record of partition 0 of `topic` is visible to `read_committed`.
/// Blocking.
fn probe(
    config: ClientConfig,
    topic: &str,
    timeout: Duration,
    id: &str,
    marker: &str,
) -> Result<bool> {
    let fail = |what: &str, e: KafkaError| destination_error(topic, format!("{what}: {e}"));
    let wait = timeout.max(Duration::from_secs(5)) * 2;
    let reader: Consumer = reader_config(config.clone())
        .set("isolation.level", "read_committed")
        .create_with_context(QuietContext::default())
        .map_err(|e| fail("cannot create a consumer", e))?;
    let (_, start) = reader
        .fetch_watermarks(topic, 0, wait)
        .map_err(|e| fail("cannot read offsets", e))?;
    let producer: Producer = config
        .clone()
        .set("transactional.id", id)
        .create_with_context(QuietContext::default())
        .map_err(|e| fail("cannot create a producer", e))?;
    producer
        .init_transactions(wait)
        .map_err(|e| fail("cannot initialise transactions", e))?;
    producer
        .begin_transaction()
        .map_err(|e| fail("cannot begin a transaction", e))?;
    producer
        .send_result(
            FutureRecord::<(), str>::to(topic)
                .partition(0)
                .payload(marker),
        )
        .map_err(|(e, _)| fail("cannot produce", e))?;
    producer.flush(wait).map_err(|e| fail("cannot flush", e))?;
    producer
        .abort_transaction(wait)
        .map_err(|e| fail("cannot abort", e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(start))
        .map_err(|e| fail("cannot assign", e))?;
    reader.assign(&tpl).map_err(|e| fail("cannot assign", e))?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.payload() == Some(marker.as_bytes()) => return Ok(true),
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(false),
            Some(Err(e)) => return Err(fail("cannot read", e)),
            Some(Ok(_)) | None => {}
        }
    }
    Err(destination_error(
        topic,
        format!("reading back the transaction probe stalled for {wait:?}"),
    ))
}
