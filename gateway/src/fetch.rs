//! `Fetch`: resolves an alert ref to the one record it names.

use std::time::{Duration, Instant};

use std::sync::Arc;

use alertmesh_alert::{AlertRef, Decoder, Registry, Subject};
use alertmesh_proto::v1;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::catalog::{describe_partitions, Catalog};
use crate::error::{Error, Result};
use crate::kafka::cluster::Cluster;
use crate::kafka::replaced;
use crate::record::{AlertContext, Arena, Record};

/// How long a read polls before it checks again that its client has not lost the
/// cluster: short, since a new cluster can answer the client's reconnection soon after
/// the old one is gone.
const LOST_CHECK: Duration = Duration::from_millis(10);

/// Resolves refs of this gateway's exposed topics.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    pub(crate) gateway: String,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) cluster: Cluster,
    /// Finds the mesh key of a record published without one.
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) registry: Arc<Registry>,
    /// Reads in progress, gateway-wide (`limits.max_fetches`): each has a Kafka consumer
    /// of its own, with librdkafka's threads and sockets.
    pub(crate) reads: Arc<tokio::sync::Semaphore>,
}

impl Fetcher {
    /// The alert `text` (an alert ref) names.
    pub(crate) async fn fetch(&self, text: &str) -> Result<v1::Alert> {
        let r: AlertRef = text
            .parse()
            .map_err(|e: alertmesh_alert::Error| Error::InvalidArgument(e.to_string()))?;
        let me = &self.gateway;
        if &r.gateway != me {
            return Err(Error::NotFound(format!(
                "ref names gateway {:?}; this gateway is {me:?}: ask that gateway",
                r.gateway
            )));
        }
        let topic = self.catalog.exposed(&r.topic)?.clone();
        let kafka = self.cluster.kafka();
        let timeout = kafka.timeout();
        // Waits its turn (a burst of calls is served a few at a time) before it asks Kafka
        // anything or has a consumer; a turn that does not come within the Kafka timeout
        // is an answer too.
        let turn =
            match tokio::time::timeout(timeout, Arc::clone(&self.reads).acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(Error::Unavailable("the gateway is stopping".into())),
                Err(_) => {
                    return Err(Error::ResourceExhausted(format!(
                        "limits.max_fetches reads were busy for {timeout:?} (kafka.timeout_ms); \
                     retry later"
                    )))
                }
            };
        let partitions = self.catalog.partitions(&topic.name).await?;
        if !partitions.contains(&r.partition) {
            return Err(Error::NotFound(format!(
                "partition {} does not exist; topic {:?} has partitions {}",
                r.partition,
                topic.name,
                describe_partitions(&partitions)
            )));
        }
        let consumer = kafka.consumer(1024)?;
        let (t, p, o) = (topic.name.clone(), r.partition, r.offset);
        let ctx = AlertContext::new(me, &topic);
        let record_ctx = Arc::clone(&ctx);
        let read = tokio::task::spawn_blocking(move || -> Result<Record> {
            // Past the high watermark a broker may answer fetches with nothing at all (no
            // end-of-partition either), so read from the watermark instead and let the end
            // of the partition say the offset does not exist yet. Some brokers report a
            // watermark short of the true end, which this also covers.
            let (_, high) = consumer.fetch_watermarks(&t, p, timeout).map_err(|e| {
                Error::Unavailable(format!(
                    "cannot read offsets of partition {p} of topic {t:?}: {e}"
                ))
            })?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&t, p, Offset::Offset(o.min(high)))
                .map_err(Error::from_kafka)?;
            consumer.assign(&tpl).map_err(Error::from_kafka)?;
            let started = Instant::now();
            let mut arena = Arena::single();
            while started.elapsed() < timeout {
                // A client that lost every broker connection must not fetch again: the
                // cluster may have been replaced behind the same address, and librdkafka
                // crashes the gateway when a new cluster answers a fetch by the old topic id
                // (see `replaced`). So stop before it reconnects: poll in short slices and
                // give up on the read as soon as the client or the gateway's watch sees the
                // cluster go.
                if replaced::is_lost(&consumer) {
                    let _ = consumer.unassign();
                    return Err(Error::Unavailable(format!(
                        "lost the connection to kafka while reading partition {p} of topic {t:?}"
                    )));
                }
                let slice = timeout.saturating_sub(started.elapsed()).min(LOST_CHECK);
                match consumer.poll(slice) {
                    Some(Ok(m)) => {
                        let rec = Record::from_kafka(&m, &record_ctx, &mut arena);
                        if rec.offset == o {
                            return Ok(rec);
                        }
                        if rec.offset > o {
                            return Err(Error::NotFound(format!(
                            "no record at offset {o} of partition {p}: it was removed by retention or compaction"
                        )));
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        return Err(Error::NotFound(format!(
                            "offset {o} is beyond the end of partition {p} of topic {t:?}"
                        )))
                    }
                    Some(Err(e)) => {
                        consumer.context().saw(&e);
                        tracing::debug!(error = %e, "fetch read error");
                    }
                    None => {}
                }
            }
            Err(Error::Unavailable(format!(
                "no answer from kafka for partition {p} of topic {t:?} within {timeout:?}"
            )))
        });
        // The turn ends with the read, not with the caller: a caller that gives up (its
        // deadline, a provenance walk's budget) leaves the read going on its thread, and
        // limits.max_fetches counts such reads too. Given back once the thread is free,
        // so the next read reuses it rather than start another.
        let record = tokio::spawn(async move {
            let record = read.await;
            drop(turn);
            record
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(e.to_string()))?;
        if let Err(Error::Unavailable(_)) = &record {
            kafka.count_error();
        }
        let record = record?;
        let mut alert = ctx.alert(&record);
        if alert.mesh_key.is_empty() {
            // A record published without a key (as ZTF does): its mesh key is in the payload.
            let (decoder, registry) = (Arc::clone(&self.decoder), Arc::clone(&self.registry));
            let (format, payload) = (topic.format, record.payload_bytes());
            let key = tokio::task::spawn_blocking(move || {
                let decoded = decoder.decode(format, &payload).ok()?;
                Subject::new(&decoded, &registry).key.map(|k| k.to_string())
            })
            .await
            .ok()
            .flatten();
            alert.mesh_key = key.unwrap_or_default();
        }
        Ok(alert)
    }
}
