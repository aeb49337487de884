//! Measurements for `bench_mirror`: a plain rdkafka consume→produce copy loop between two
//! brokers (the baseline), progress of a mirror seen from the destination's partition ends,
//! and end-to-end lag under a steady source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::Record;
use crate::fixtures::{now_ms, synthetic_records};
use crate::kafka::{assigned_consumer, read_to_eof};

/// How long any single measurement may take before the benchmark gives up.
pub const MEASURE_TIMEOUT: Duration = Duration::from_secs(300);

/// A valid ZTF object id for `i` (`ZTF` + 2 digits + 7 lowercase letters), unique for
/// `i < 80 * 26^7`.
pub fn ztf_id(i: u64) -> String {
    const LETTERS: u64 = 26u64.pow(7);
    let mut rest = i % LETTERS;
    let mut letters = [b'a'; 7];
    for slot in letters.iter_mut().rev() {
        *slot = b'a' + (rest % 26) as u8;
        rest /= 26;
    }
    format!(
        "ZTF{:02}{}",
        20 + (i / LETTERS) % 80,
        std::str::from_utf8(&letters).expect("ascii")
    )
}

/// [`synthetic_records`] keyed with valid mesh keys (`ZTF:ZTF20aaaaaab`, ...), which a
/// mirror keeps as they are (a key that is not a valid mesh key makes it decode the payload,
/// and a synthetic payload goes to the dead-letter topic).
pub fn keyed_records(n: usize, size: usize, partitions: i32, base_ms: i64) -> Vec<Record> {
    let mut records = synthetic_records(n, size, partitions, base_ms);
    for (i, r) in records.iter_mut().enumerate() {
        r.key = Some(Bytes::from(format!("ZTF:{}", ztf_id(i as u64))));
    }
    records
}

/// The record count of `topic`, read to the end (Tansu's ListOffsets answers with the base
/// offset of a partition's last batch, not its end, so partition ends cannot be trusted).
pub fn count_records(bootstrap: &str, topic: &str, partitions: i32) -> Result<u64> {
    let consumer = assigned_consumer(bootstrap, topic, partitions, Offset::Beginning)?;
    Ok(read_to_eof(&consumer, partitions, 0, Duration::from_secs(60))?.records)
}

/// Best-effort deletion of topics (frees the in-memory broker's storage between runs).
pub async fn delete_topics(bootstrap: &str, topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create();
    if let Ok(admin) = admin {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let _ = admin.delete_topics(topics, &options).await;
    }
}

/// Counts acknowledged deliveries and keeps the first failure.
#[derive(Debug, Default)]
struct Acks {
    acked: Arc<AtomicU64>,
    failed: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Default)]
struct AckContext(Arc<Acks>);

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                let mut failed = self.0.failed.lock().expect("not poisoned");
                failed.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Producer settings of the copy loop: what the mirror sets by default (idempotent,
/// `acks=all`, `linger.ms=5`), with `max.in.flight.requests.per.connection = in_flight`
/// (the mirror uses 1 with `enable.gapless.guarantee`; librdkafka's default is 5).
fn copy_producer_config(bootstrap: &str, in_flight: u32) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "max.in.flight.requests.per.connection",
            in_flight.to_string(),
        )
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        .set("message.timeout.ms", "60000")
        .set("log_level", "3");
    if in_flight == 1 {
        c.set("enable.gapless.guarantee", "true");
    }
    c
}

/// The baseline: a plain rdkafka copy loop. A `BaseConsumer` assigned to every partition of
/// `src_topic` from the beginning (no group; `fetch.wait.max.ms=100` as the mirror's Kafka
/// reader) feeds a `ThreadedProducer` that sends each record, key, headers and timestamp
/// unchanged, to the same partition of `dst_topic`. Returns when `n` records are
/// acknowledged, counting acknowledgements in `acked` as they come. Blocking: run it on its
/// own thread.
#[allow(clippy::too_many_arguments)]
pub fn copy_loop(
    src_bootstrap: &str,
    src_topic: &str,
    dst_bootstrap: &str,
    dst_topic: &str,
    partitions: i32,
    n: u64,
    in_flight: u32,
    acked: Arc<AtomicU64>,
) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", src_bootstrap)
        .set("group.id", "alertmesh-bench-copy")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        .set("log_level", "3")
        .create()
        .context("create copy consumer")?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(src_topic, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let acks = Arc::new(Acks {
        acked,
        failed: Mutex::default(),
    });
    let producer: ThreadedProducer<AckContext> = copy_producer_config(dst_bootstrap, in_flight)
        .create_with_context(AckContext(Arc::clone(&acks)))
        .context("create copy producer")?;
    let deadline = Instant::now() + MEASURE_TIMEOUT;
    let mut sent = 0u64;
    while sent < n {
        if Instant::now() > deadline {
            bail!("copy loop timed out having sent {sent} of {n}");
        }
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(m)) => m,
            Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(Err(e)) => bail!("copy loop read: {e}"),
        };
        let headers = m.headers().map(|h| h.detach());
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dst_topic)
            .partition(m.partition())
            .payload(m.payload().unwrap_or_default());
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("copy loop produce: {e}"),
            }
        }
        sent += 1;
    }
    while acks.acked.load(Ordering::Relaxed) < n {
        if let Some(e) = acks.failed.lock().expect("not poisoned").clone() {
            bail!("copy loop delivery failed: {e}");
        }
        if Instant::now() > deadline {
            bail!(
                "copy loop: {} of {n} acknowledged after {MEASURE_TIMEOUT:?}",
                acks.acked.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// What a steady producer achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steady {
    pub sent: u64,
    pub elapsed: Duration,
    /// The most records the producer was ever behind its schedule when it checked.
    pub max_behind: u64,
}

impl Steady {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }
}

/// Produces `size`-byte records with mesh keys to `topic`, round-robin over `partitions`,
/// at `rate` records per second for `duration`, each stamped with the wall clock when it
/// is handed to the producer (so lag counts librdkafka's batching too). Waits for every
/// delivery. Blocking: run it on its own thread.
pub fn produce_steady(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    size: usize,
    rate: f64,
    duration: Duration,
) -> Result<Steady> {
    let acks = Arc::new(Acks::default());
    let producer: ThreadedProducer<AckContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        .set("message.timeout.ms", "60000")
        .set("log_level", "3")
        .create_with_context(AckContext(Arc::clone(&acks)))
        .context("create steady producer")?;
    // A few distinct payloads, reused (the broker does not care).
    let payloads: Vec<Vec<u8>> = synthetic_records(16, size, 1, 0)
        .into_iter()
        .map(|r| r.payload.to_vec())
        .collect();
    let headers = OwnedHeaders::new().insert(Header {
        key: "am-ns",
        value: Some("ZTF"),
    });
    let began = Instant::now();
    let (mut sent, mut max_behind) = (0u64, 0u64);
    loop {
        let elapsed = began.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        max_behind = max_behind.max(due.saturating_sub(sent));
        while sent < due {
            let key = format!("ZTF:{}", ztf_id(sent));
            let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic)
                .partition((sent % partitions as u64) as i32)
                .key(key.as_str())
                .payload(payloads[(sent % 16) as usize].as_slice())
                .headers(headers.clone())
                .timestamp(now_ms());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                    {
                        record = back.timestamp(now_ms());
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => bail!("steady produce: {e}"),
                }
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = began.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.acked.load(Ordering::Relaxed) < sent {
        if let Some(e) = acks.failed.lock().expect("not poisoned").clone() {
            bail!("steady delivery failed: {e}");
        }
        ensure!(
            Instant::now() < deadline,
            "steady producer: deliveries pending"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Steady {
        sent,
        elapsed,
        max_behind,
    })
}

/// Reads `topic` live from the beginning, recording for each record `now − its Kafka
/// timestamp` in milliseconds, until `expected` (set once known; `u64::MAX` before) records
/// were read or `timeout` passes; records keyed `skip` (a warm-up) are not counted.
/// Blocking: run it on its own thread.
pub fn read_lags(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    skip: Option<&[u8]>,
    expected: &AtomicU64,
    timeout: Duration,
) -> Result<Vec<f64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "alertmesh-bench-lag")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.error.backoff.ms", "10")
        .set("log_level", "3")
        .create()
        .context("create lag consumer")?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let deadline = Instant::now() + timeout;
    let mut lags = Vec::new();
    while (lags.len() as u64) < expected.load(Ordering::Relaxed) {
        if Instant::now() > deadline {
            bail!(
                "lag reader: {} records of {} after {timeout:?}",
                lags.len(),
                expected.load(Ordering::Relaxed)
            );
        }
        match consumer.poll(Duration::from_millis(20)) {
            None => {}
            Some(Ok(m)) => {
                if skip.is_some() && m.key() == skip {
                    continue;
                }
                let ts = m
                    .timestamp()
                    .to_millis()
                    .context("record without timestamp")?;
                lags.push((now_ms() - ts) as f64);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => bail!("lag reader: {e}"),
        }
    }
    Ok(lags)
}

/// The `q` quantile (0..=1, nearest rank) of sorted `values`; 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_ztf_ids() {
        assert_eq!(ztf_id(0), "ZTF20aaaaaaa");
        assert_eq!(ztf_id(27), "ZTF20aaaaabb");
        let id = ztf_id(26u64.pow(7) + 1);
        assert_eq!(id, "ZTF21aaaaaab");
    }

    #[test]
    fn quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
    }
}
