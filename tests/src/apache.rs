//! Apache Kafka 4.x in KRaft mode, run from its Maven Central jars with `java`: the broker
//! the tests use instead of Tansu when `ALERTMESH_TEST_KAFKA=apache`, and a cluster of
//! several combined broker+controller nodes for failover tests.
//!
//! `scripts/apache-kafka.sh jars` fetches the jars when missing (like `scripts/devenv.sh`
//! installs Tansu); node settings match that script's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::process::{free_port, wait_until, Child};

/// A JVM broker on a busy 2-core machine takes 5–15 s to serve metadata.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Which Kafka the harness starts: Tansu by default, Apache Kafka when
/// `ALERTMESH_TEST_KAFKA=apache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Tansu,
    Apache,
}

impl Flavor {
    /// The flavor selected by `ALERTMESH_TEST_KAFKA` (`tansu`, the default, or `apache`).
    pub fn from_env() -> Self {
        match std::env::var("ALERTMESH_TEST_KAFKA").as_deref() {
            Ok("apache") => Self::Apache,
            _ => Self::Tansu,
        }
    }
}

/// One node of an Apache Kafka cluster: its client and controller ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    pub id: u32,
    pub port: u16,
    pub controller: u16,
}

/// Ports for `n` nodes on `host`, the first client port given (a broker restarted on its
/// old address keeps it).
pub fn node_ports(n: u32, first_port: u16) -> Vec<NodePorts> {
    (1..=n)
        .map(|id| NodePorts {
            id,
            port: if id == 1 { first_port } else { free_port() },
            controller: free_port(),
        })
        .collect()
}

/// A KRaft cluster id: 16 random bytes, base64url without padding.
pub fn cluster_id() -> String {
    use base64::Engine as _;
    // The kernel's random uuid is 32 hex digits (and dashes): 16 random bytes.
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let hex: Vec<u8> = uuid
        .chars()
        .filter_map(|c| c.to_digit(16).map(|d| d as u8))
        .collect();
    let mut bytes = [0u8; 16];
    for (i, pair) in hex.chunks(2).take(16).enumerate() {
        bytes[i] = pair[0] << 4 | pair.get(1).copied().unwrap_or(0);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The directory of the Kafka jars (`$KAFKA_JARS`, else fetched by `scripts/apache-kafka.sh`).
pub fn jars() -> Result<PathBuf> {
    static JARS: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    JARS.get_or_init(|| {
        if let Some(dir) = std::env::var_os("KAFKA_JARS") {
            return Ok(PathBuf::from(dir));
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/apache-kafka.sh");
        let out = Command::new(&script)
            .arg("jars")
            .output()
            .map_err(|e| format!("run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} jars failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn java(jars: &Path, log4j: &Path) -> Command {
    let mut command = Command::new("java");
    command
        .args(["-Xmx512m", "-Xms64m", "-XX:+UseSerialGC", "-Xshare:auto"])
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", jars.display()));
    command
}

const LOG4J: &str = "status = error
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
";

/// The `server.properties` of node `me` in a cluster of `nodes` (replication factor = nodes,
/// capped at 3), with its log in `data`.
pub fn node_config(host: &str, me: NodePorts, nodes: &[NodePorts], data: &Path) -> String {
    let voters = nodes
        .iter()
        .map(|n| format!("{}@{host}:{}", n.id, n.controller))
        .collect::<Vec<_>>()
        .join(",");
    let rf = nodes.len().min(3);
    let isr = if rf >= 3 { 2 } else { 1 };
    format!(
        "process.roles=broker,controller
node.id={id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
auto.create.topics.enable=false
num.partitions=1
default.replication.factor={rf}
min.insync.replicas={isr}
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=5
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
log.segment.bytes=1048576
log.retention.check.interval.ms=60000
message.max.bytes=10485760
replica.fetch.max.bytes=10485760
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
",
        id = me.id,
        port = me.port,
        controller = me.controller,
        data = data.display(),
    )
}

/// Writes node `me`'s config under `dir/node-<id>`, formats its log directory with
/// `cluster` (wiping what was there) and starts it. Does not wait for it to serve.
pub fn spawn_node(
    label: &str,
    host: &str,
    cluster: &str,
    me: NodePorts,
    nodes: &[NodePorts],
    dir: &Path,
) -> Result<Child> {
    let jars = jars()?;
    let log4j = dir.join("log4j2.properties");
    std::fs::write(&log4j, LOG4J)?;
    let node = dir.join(format!("node-{}", me.id));
    let data = node.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&node)?;
    let config = node.join("server.properties");
    std::fs::write(&config, node_config(host, me, nodes, &data))?;
    let format = java(&jars, &log4j)
        // `--cluster-id=` form: an id may begin with '-', which would read as an option.
        .args(["kafka.tools.StorageTool", "format"])
        .arg(format!("--cluster-id={cluster}"))
        .arg(format!("--config={}", config.display()))
        .output()
        .context("run kafka.tools.StorageTool (is java installed?)")?;
    if !format.status.success() {
        bail!(
            "kafka storage format failed: {}{}",
            String::from_utf8_lossy(&format.stdout),
            String::from_utf8_lossy(&format.stderr)
        );
    }
    restart_node(label, me, dir)
}

/// Starts node `me` again on its formatted log directory (after a kill).
pub fn restart_node(label: &str, me: NodePorts, dir: &Path) -> Result<Child> {
    let jars = jars()?;
    let log4j = dir.join("log4j2.properties");
    let config = dir.join(format!("node-{}/server.properties", me.id));
    let mut command = java(&jars, &log4j);
    command.arg("kafka.Kafka").arg(&config);
    Child::spawn(&format!("kafka-{label}-{}", me.id), &mut command, dir)
}

/// Starts MirrorMaker 2 in dedicated mode with `config` (its logs in `dir`), with the JVM
/// settings of Kafka's `kafka-run-class.sh` (G1, the full JIT; not the broker's quick-start
/// flags) and 1 GiB of heap, as an operator would run it.
pub fn spawn_mirror_maker(label: &str, config: &Path, dir: &Path) -> Result<Child> {
    let jars = jars()?;
    let log4j = dir.join("log4j2.properties");
    std::fs::write(&log4j, LOG4J)?;
    let mut command = Command::new("java");
    command
        .args([
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
        ])
        .args([
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
        ])
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", jars.display()))
        .arg("org.apache.kafka.connect.mirror.MirrorMaker")
        .arg(config);
    Child::spawn(&format!("mm2-{label}"), &mut command, dir)
}

/// Waits until `bootstrap` serves metadata; on failure reports the node's stderr.
pub async fn wait_ready(child: &mut Child, bootstrap: &str) -> Result<()> {
    let ready = wait_until("kafka metadata", START_TIMEOUT, || {
        let bootstrap = bootstrap.to_owned();
        async move {
            tokio::task::spawn_blocking(move || crate::broker::metadata_ok(&bootstrap))
                .await
                .ok()
                .filter(|ok| *ok)
        }
    })
    .await;
    if let Err(e) = ready {
        let exit = child.try_exit();
        bail!(
            "{e}; kafka exit {exit:?}; stderr:\n{}",
            child.stderr_tail(30)
        );
    }
    Ok(())
}
