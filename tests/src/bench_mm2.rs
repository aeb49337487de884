//! `bench_mirror --mm2 1`: an alertmesh raw-Kafka mirror and MirrorMaker 2 (what an operator
//! would otherwise run) side by side, in the same run, on the same pair of single-node
//! Apache Kafka 4.x clusters (source and destination):
//!
//! - throughput: N alerts of 1 KB and of 64 KB, preloaded in a 3-partition source topic,
//!   copied into a fresh destination topic by each copier in turn;
//! - end-to-end lag: a steady source, the destination read live (`now − Kafka timestamp`;
//!   both copiers keep the source record's timestamp);
//! - duplicates: each copier killed with SIGKILL when the destination holds half of the 64 KB
//!   topic, restarted with the same config, and the destination read to the end: records
//!   written minus distinct keys.
//!
//! MirrorMaker 2 runs in dedicated mode (`org.apache.kafka.connect.mirror.MirrorMaker`) from
//! the Maven Central jars, with the JVM settings of Kafka's own `kafka-run-class.sh` (G1,
//! full JIT) and 1 GiB of heap, `tasks.max = 3` (one task per partition), heartbeats,
//! checkpoints and config syncing off, and Connect's defaults otherwise (among them
//! `offset.flush.interval.ms = 60000`: the source offsets a restart resumes from). A second
//! MirrorMaker 2 row enables exactly-once source support (KIP-618,
//! `dst.exactly.once.source.support = enabled`), the setting an operator who cannot accept
//! duplicates would reach for.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmesh_proto::v1::MirrorStatusRequest;
use anyhow::{bail, ensure, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::Offset;

use crate::bench::{cpu_time, median, peak_rss_kib, Run};
use crate::bench_mirror::{
    delete_topics, keyed_records, produce_steady, quantile, read_lags, Steady,
};
use crate::fixtures::now_ms;
use crate::kafka::{assigned_consumer, read_to_eof_with};
use crate::process::Child;
use crate::{Broker, Gateway, GatewaySpec, Record};

const PARTITIONS: i32 = 3;
/// How often progress is polled.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// The longest one copy may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a copier may take to start and copy a first record.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Sizes and rates of the side-by-side runs.
#[derive(Debug, Clone)]
pub struct Mm2Args {
    /// Alerts of 1 KB in the throughput run.
    pub n_1k: u64,
    /// Alerts of 64 KB in the throughput and kill runs.
    pub n_64k: u64,
    /// Rounds of the throughput runs (the order of copiers alternates).
    pub rounds: usize,
    /// Seconds of steady source per lag run (0: no lag runs).
    pub lag_seconds: u64,
    /// Alerts per second of the 1 KB lag run.
    pub lag_rate_1k: u64,
    /// Alerts per second of the 64 KB lag run.
    pub lag_rate_64k: u64,
    /// Whether to run the kill -9 runs.
    pub kill: bool,
}

/// The copiers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copier {
    /// An alertmesh gateway with a `[[mirrors]]` job whose source is the raw Kafka topic.
    Alertmesh,
    /// MirrorMaker 2, Connect's defaults (at-least-once).
    Mm2,
    /// MirrorMaker 2 with exactly-once source support.
    Mm2Eos,
}

impl Copier {
    const ALL: [Copier; 3] = [Copier::Alertmesh, Copier::Mm2, Copier::Mm2Eos];

    fn label(self) -> &'static str {
        match self {
            Copier::Alertmesh => "alertmesh mirror",
            Copier::Mm2 => "MirrorMaker 2",
            Copier::Mm2Eos => "MirrorMaker 2, exactly-once",
        }
    }
}

/// A copier at work: the process and the topic it writes.
struct Running {
    copier: Copier,
    gateway: Option<Gateway>,
    mm2: Option<Child>,
    /// What restarts the same MirrorMaker 2 (config path).
    mm2_config: Option<PathBuf>,
    dst_topic: String,
    label: String,
}

impl Running {
    fn pid(&self) -> Option<u32> {
        match (&self.gateway, &self.mm2) {
            (Some(g), _) => g.pid(),
            (_, Some(c)) => Some(c.id()),
            _ => None,
        }
    }

    /// CPU time of the copier process so far.
    fn cpu(&self) -> Duration {
        self.pid()
            .and_then(|p| cpu_time(Some(p)))
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(g) = &mut self.gateway {
            g.kill();
        }
        if let Some(c) = &mut self.mm2 {
            c.kill();
        }
    }

    fn stderr_tail(&self) -> String {
        match (&self.gateway, &self.mm2) {
            (Some(g), _) => g.stderr_tail(20),
            (_, Some(c)) => c.stderr_tail(20),
            _ => String::new(),
        }
    }
}

struct Side {
    args: Mm2Args,
    src: Broker,
    dst: Broker,
    dir: tempfile::TempDir,
    runs: AtomicU64,
}

/// One measured copy.
#[derive(Debug, Clone, Copy)]
struct Measured {
    total: Run,
    phase: Run,
    rss_kib: Option<u64>,
    /// The copier's CPU seconds (all threads) per alert of the copy phase.
    cpu_per_alert: f64,
}

/// How a copy progressed (see [`Side::progress`]).
struct Progress {
    first: Instant,
    first_count: u64,
    done: Instant,
    cpu: Duration,
}

impl Side {
    fn next_run(&self) -> u64 {
        self.runs.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts `copier` on `topic` as run `run`; `again` restarts a killed one with the
    /// same config (same destination, same stored positions).
    async fn start(&self, copier: Copier, topic: &str, run: u64) -> Result<Running> {
        match copier {
            Copier::Alertmesh => {
                let dst_topic = format!("am{run}.{topic}");
                let source = format!(
                    "kafka = {:?}\ntopic = {topic:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
                    self.src.bootstrap()
                );
                let spec = GatewaySpec::new(&format!("am{run}"), &self.dst.bootstrap()).extra(
                    &format!(
                        "[[mirrors]]\nname = \"m\"\ndestination = {dst_topic:?}\nstart = \"earliest\"\n\
                         [mirrors.source]\n{source}"
                    ),
                );
                let gateway = Gateway::start(&spec).await?;
                Ok(Running {
                    copier,
                    gateway: Some(gateway),
                    mm2: None,
                    mm2_config: None,
                    dst_topic,
                    label: format!("am{run}"),
                })
            }
            Copier::Mm2 | Copier::Mm2Eos => {
                // The source alias names the destination topic (`<alias>.<topic>`, the
                // default replication policy) and MirrorMaker's internal topics, so every
                // run starts fresh.
                let alias = format!("s{run}");
                let config = self.dir.path().join(format!("mm2-{alias}.properties"));
                std::fs::write(
                    &config,
                    mm2_config(
                        &alias,
                        &self.src.bootstrap(),
                        &self.dst.bootstrap(),
                        topic,
                        copier == Copier::Mm2Eos,
                    ),
                )?;
                let child = crate::apache::spawn_mirror_maker(&alias, &config, self.dir.path())?;
                Ok(Running {
                    copier,
                    gateway: None,
                    mm2: Some(child),
                    mm2_config: Some(config),
                    dst_topic: format!("{alias}.{topic}"),
                    label: alias,
                })
            }
        }
    }

    /// Starts a killed copier again with the same config.
    async fn restart(&self, running: &mut Running) -> Result<()> {
        if let Some(g) = &mut running.gateway {
            g.start_again().await?;
        }
        if let Some(config) = &running.mm2_config {
            running.mm2 = Some(crate::apache::spawn_mirror_maker(
                &running.label,
                config,
                self.dir.path(),
            )?);
        }
        Ok(())
    }

    /// Records written to `topic` of the destination so far: the mirror's `copied` for a
    /// gateway (its destination writes may be transactional, whose markers take offsets),
    /// the partitions' end offsets for MirrorMaker 2 (plain writes) — 0 until it exists.
    async fn copied(&self, running: &Running) -> Result<u64> {
        match (&running.gateway, running.copier) {
            (Some(g), _) => {
                let mut client = g.client().await?;
                let status = client
                    .mirror_status(MirrorStatusRequest {})
                    .await?
                    .into_inner();
                let m = status.mirrors.first().context("no mirror")?;
                ensure!(m.dead_lettered == 0, "the mirror dead-lettered: {m:?}");
                Ok(m.copied)
            }
            (None, Copier::Mm2Eos) => {
                // Transactional writes: count committed records.
                let (b, t) = (self.dst.bootstrap(), running.dst_topic.clone());
                tokio::task::spawn_blocking(move || Ok(count_keys(&b, &t)?.0)).await?
            }
            _ => {
                let (b, t) = (self.dst.bootstrap(), running.dst_topic.clone());
                tokio::task::spawn_blocking(move || end_offsets(&b, &t)).await?
            }
        }
    }

    /// Polls [`Side::copied`] until it reaches `n`: when the first record arrived and when
    /// the N-th did, and the copier's CPU time in between.
    async fn progress(&self, running: &mut Running, n: u64, began: Instant) -> Result<Progress> {
        let mut first = None;
        loop {
            let c = self.copied(running).await.unwrap_or(0);
            let now = Instant::now();
            if c > 0 && first.is_none() {
                first = Some((now, c, running.cpu()));
            }
            if c >= n {
                let (first, first_count, cpu_first) = first.expect("set above");
                return Ok(Progress {
                    first,
                    first_count,
                    done: now,
                    cpu: running.cpu().saturating_sub(cpu_first),
                });
            }
            if let Some(c) = &mut running.mm2 {
                if let Some(exit) = c.try_exit() {
                    bail!("MirrorMaker 2 exited with {exit}:\n{}", c.stderr_tail(30));
                }
            }
            let limit = if first.is_none() {
                START_TIMEOUT
            } else {
                COPY_TIMEOUT
            };
            ensure!(
                now - began < limit,
                "{}: {c} of {n} copied after {:?}\n{}",
                running.copier.label(),
                now - began,
                running.stderr_tail()
            );
            // Counting a transactional destination reads it: poll less often.
            let every = if running.copier == Copier::Mm2Eos {
                POLL_EVERY * 10
            } else {
                POLL_EVERY
            };
            tokio::time::sleep(every).await;
        }
    }

    async fn throughput(
        &self,
        copier: Copier,
        topic: &str,
        n: u64,
        size: usize,
    ) -> Result<Measured> {
        let run = self.next_run();
        let began = Instant::now();
        let mut running = self.start(copier, topic, run).await?;
        let Progress {
            first,
            first_count,
            done,
            cpu,
        } = self.progress(&mut running, n, began).await?;
        let rss_kib = running.pid().and_then(peak_rss_kib);
        running.kill();
        let (b, t) = (self.dst.bootstrap(), running.dst_topic.clone());
        let (records, distinct) = tokio::task::spawn_blocking(move || count_keys(&b, &t)).await??;
        ensure!(
            records == n && distinct == n,
            "{}: destination holds {records} records, {distinct} distinct, want {n}",
            copier.label()
        );
        delete_topics(&self.dst.bootstrap(), &[&running.dst_topic]).await;
        let size = size as u64;
        let phase = n - first_count;
        Ok(Measured {
            total: Run {
                records: n,
                bytes: n * size,
                elapsed: done - began,
            },
            phase: Run {
                records: phase,
                bytes: phase * size,
                elapsed: done - first,
            },
            rss_kib,
            cpu_per_alert: cpu.as_secs_f64() / phase.max(1) as f64,
        })
    }

    /// Kills `copier` with SIGKILL once the destination holds half of `topic`'s `n`
    /// records, restarts it, and counts what the destination holds once every key arrived.
    async fn kill_run(&self, copier: Copier, topic: &str, n: u64) -> Result<KillRow> {
        let run = self.next_run();
        let began = Instant::now();
        let mut running = self.start(copier, topic, run).await?;
        self.progress(&mut running, n / 2, began).await?;
        running.kill();
        let at_kill = {
            let (b, t) = (self.dst.bootstrap(), running.dst_topic.clone());
            tokio::task::spawn_blocking(move || count_keys(&b, &t)).await??
        };
        self.restart(&mut running).await?;
        // Until every key is there (end offsets first: reading 64 KB records is not free).
        let deadline = Instant::now() + COPY_TIMEOUT;
        loop {
            let (b, t) = (self.dst.bootstrap(), running.dst_topic.clone());
            let ends = tokio::task::spawn_blocking(move || end_offsets(&b, &t)).await??;
            if ends >= n {
                let (b, t) = (self.dst.bootstrap(), running.dst_topic.clone());
                let counted = tokio::task::spawn_blocking(move || count_keys(&b, &t)).await??;
                if counted.1 >= n {
                    break;
                }
            }
            if let Some(c) = &mut running.mm2 {
                if let Some(exit) = c.try_exit() {
                    bail!("MirrorMaker 2 exited with {exit}:\n{}", c.stderr_tail(30));
                }
            }
            ensure!(
                Instant::now() < deadline,
                "{}: not every key copied after the restart\n{}",
                copier.label(),
                running.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Anything still in flight lands now.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (b, t) = (self.dst.bootstrap(), running.dst_topic.clone());
        let (records_after, distinct_after) =
            tokio::task::spawn_blocking(move || count_keys(&b, &t)).await??;
        running.kill();
        delete_topics(&self.dst.bootstrap(), &[&running.dst_topic]).await;
        ensure!(
            distinct_after == n,
            "{}: {distinct_after} distinct of {n}",
            copier.label()
        );
        Ok(KillRow {
            copier,
            n,
            at_kill: at_kill.0,
            records: records_after,
            duplicates: records_after - distinct_after,
            elapsed: began.elapsed(),
        })
    }

    /// A steady source of `size`-byte alerts at `rate`/s for the lag seconds, copied by
    /// `copier` and read live at the destination.
    async fn lag(&self, copier: Copier, size: usize, rate: u64) -> Result<LagRow> {
        let run = self.next_run();
        let topic = format!("lag{run}.{}k", size / 1024);
        self.src.create_topic(&topic, PARTITIONS).await?;
        // One record first: the copier is running (and its destination exists) once it
        // arrived; the lag reader skips it.
        let warm = Record {
            partition: 0,
            key: Some(bytes::Bytes::from_static(WARM_KEY.as_bytes())),
            payload: bytes::Bytes::from(vec![0u8; 16]),
            headers: Vec::new(),
            timestamp_ms: now_ms(),
        };
        self.src.produce(&topic, &warm).await?;
        let began = Instant::now();
        let mut running = self.start(copier, &topic, run).await?;
        self.progress(&mut running, 1, began).await?;
        let duration = Duration::from_secs(self.args.lag_seconds);
        let expected = Arc::new(AtomicU64::new(u64::MAX));
        let reader = {
            let (b, t, e) = (
                self.dst.bootstrap(),
                running.dst_topic.clone(),
                expected.clone(),
            );
            let timeout = duration + Duration::from_secs(180);
            tokio::task::spawn_blocking(move || {
                read_lags(&b, &t, PARTITIONS, Some(WARM_KEY.as_bytes()), &e, timeout)
            })
        };
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (b, t) = (self.src.bootstrap(), topic.clone());
        let steady = tokio::task::spawn_blocking(move || {
            produce_steady(&b, &t, PARTITIONS, size, rate as f64, duration)
        })
        .await?;
        let steady = match steady {
            Ok(s) => s,
            Err(e) => {
                expected.store(0, Ordering::Relaxed);
                return Err(e);
            }
        };
        expected.store(steady.sent, Ordering::Relaxed);
        let lags = match reader.await? {
            Ok(l) => l,
            Err(e) => bail!("{}: {e}\n{}", copier.label(), running.stderr_tail()),
        };
        let rss_kib = running.pid().and_then(peak_rss_kib);
        running.kill();
        delete_topics(&self.dst.bootstrap(), &[&running.dst_topic]).await;
        delete_topics(&self.src.bootstrap(), &[&topic]).await;
        let mut sorted = lags;
        sorted.sort_by(f64::total_cmp);
        Ok(LagRow {
            copier,
            size,
            rate,
            steady,
            p50: quantile(&sorted, 0.5),
            p99: quantile(&sorted, 0.99),
            max: quantile(&sorted, 1.0),
            rss_kib,
        })
    }
}

const WARM_KEY: &str = "ZTF:ZTF20zzzzzzz";

#[derive(Debug)]
struct KillRow {
    copier: Copier,
    n: u64,
    at_kill: u64,
    records: u64,
    duplicates: u64,
    elapsed: Duration,
}

#[derive(Debug)]
struct LagRow {
    copier: Copier,
    size: usize,
    rate: u64,
    steady: Steady,
    p50: f64,
    p99: f64,
    max: f64,
    rss_kib: Option<u64>,
}

/// MirrorMaker 2's dedicated-mode config: `alias` → `dst` for `topic` only.
fn mm2_config(alias: &str, src: &str, dst: &str, topic: &str, exactly_once: bool) -> String {
    let topic_regex = topic.replace('.', "\\.");
    let mut c = format!(
        "clusters = {alias}, dst\n\
         {alias}.bootstrap.servers = {src}\n\
         dst.bootstrap.servers = {dst}\n\
         {alias}->dst.enabled = true\n\
         {alias}->dst.topics = {topic_regex}\n\
         dst->{alias}.enabled = false\n\
         tasks.max = {PARTITIONS}\n\
         replication.factor = 1\n\
         refresh.topics.interval.seconds = 5\n\
         sync.topic.configs.enabled = false\n\
         sync.topic.acls.enabled = false\n\
         emit.heartbeats.enabled = false\n\
         emit.checkpoints.enabled = false\n\
         sync.group.offsets.enabled = false\n\
         checkpoints.topic.replication.factor = 1\n\
         heartbeats.topic.replication.factor = 1\n\
         offset-syncs.topic.replication.factor = 1\n\
         offset.storage.replication.factor = 1\n\
         status.storage.replication.factor = 1\n\
         config.storage.replication.factor = 1\n"
    );
    if exactly_once {
        c.push_str("dst.exactly.once.source.support = enabled\n");
    }
    c
}

/// The sum of `topic`'s partition end offsets at `bootstrap` (0 while it does not exist).
fn end_offsets(bootstrap: &str, topic: &str) -> Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()?;
    let mut total = 0;
    for p in 0..PARTITIONS {
        match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
            Ok((_, high)) => total += high.max(0) as u64,
            Err(_) => return Ok(0),
        }
    }
    Ok(total)
}

/// Records and distinct keys of `topic` (committed records only), read to the end.
fn count_keys(bootstrap: &str, topic: &str) -> Result<(u64, u64)> {
    if end_offsets(bootstrap, topic)? == 0 {
        return Ok((0, 0));
    }
    let consumer = assigned_consumer(bootstrap, topic, PARTITIONS, Offset::Beginning)?;
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    let stats = read_to_eof_with(&consumer, PARTITIONS, 0, Duration::from_secs(300), |m| {
        keys.insert(m.key().unwrap_or_default().to_vec());
    })?;
    Ok((stats.records, keys.len() as u64))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0))
}

/// Runs the side-by-side comparison and prints its tables. Needs `java` (Apache Kafka and
/// MirrorMaker 2 run from their jars, see `scripts/apache-kafka.sh`).
pub async fn run(args: Mm2Args) -> Result<()> {
    // Both clusters are Apache Kafka whatever the environment says: MirrorMaker 2 is a
    // Kafka Connect application and the comparison is on the brokers operators run.
    std::env::set_var("ALERTMESH_TEST_KAFKA", "apache");
    let src = Broker::start("mm2-src").await?;
    let dst = Broker::start("mm2-dst").await?;
    let dir = tempfile::Builder::new()
        .prefix("alertmesh-mm2-")
        .tempdir()?;
    let side = Side {
        args: args.clone(),
        src,
        dst,
        dir,
        runs: AtomicU64::new(0),
    };

    let mut tables = Vec::new();
    for (size, n) in [(1024usize, args.n_1k), (64 * 1024, args.n_64k)] {
        if n == 0 {
            continue;
        }
        let topic = format!("tp.{}k", size / 1024);
        side.src.create_topic(&topic, PARTITIONS).await?;
        let records: Vec<Record> = keyed_records(n as usize, size, PARTITIONS, now_ms() - 60_000);
        let loaded = Instant::now();
        side.src.produce_all(&topic, &records).await?;
        drop(records);
        eprintln!("mm2: loaded {n} x {size} B in {:?}", loaded.elapsed());
        let mut runs: Vec<(Copier, Vec<Measured>)> =
            Copier::ALL.iter().map(|c| (*c, Vec::new())).collect();
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); Copier::ALL.len()];
        for round in 0..args.rounds {
            let mut order = Copier::ALL;
            order.rotate_left(round % Copier::ALL.len());
            if round % 2 == 1 {
                order.reverse();
            }
            let mut this = Vec::new();
            for c in order {
                let m = side.throughput(c, &topic, n, size).await?;
                eprintln!(
                    "mm2: {} KB round {round}: {:<28} copy phase {:.0}/s, total {:.1}s",
                    size / 1024,
                    c.label(),
                    m.phase.rate(),
                    m.total.elapsed.as_secs_f64()
                );
                this.push((c, m));
            }
            let base = this
                .iter()
                .find(|(c, _)| *c == Copier::Mm2)
                .map(|(_, m)| m.phase.rate())
                .expect("MirrorMaker 2 ran");
            for (c, m) in this {
                let i = Copier::ALL.iter().position(|x| *x == c).expect("listed");
                ratios[i].push(m.phase.rate() / base);
                runs[i].1.push(m);
            }
        }
        delete_topics(&side.src.bootstrap(), &[&topic]).await;
        tables.push((size, n, runs, ratios));
    }

    println!();
    println!(
        "alertmesh mirror vs MirrorMaker 2: raw Kafka -> local copy, Apache Kafka 4.1 -> Apache \
         Kafka 4.1 (single-node KRaft clusters), {PARTITIONS} partitions, median of {} rounds",
        args.rounds
    );
    println!(
        "{:<7} {:<28} {:>9} {:>7} {:>7}  {:<16} {:>9} {:>8} {:>8}",
        "size",
        "copier",
        "alerts/s",
        "MB/s",
        "vs MM2",
        "per round",
        "w/ start",
        "CPU us",
        "RSS MiB"
    );
    for (size, _n, runs, ratios) in &tables {
        for (i, (c, ms)) in runs.iter().enumerate() {
            let rate = median(&ms.iter().map(|m| m.phase.rate()).collect::<Vec<_>>());
            let mb = median(&ms.iter().map(|m| m.phase.mb_per_s()).collect::<Vec<_>>());
            let total = median(&ms.iter().map(|m| m.total.rate()).collect::<Vec<_>>());
            println!(
                "{:<7} {:<28} {:>9.0} {:>7.1} {:>7.2}  {:<16} {:>9.0} {:>8.1} {:>8}",
                format!("{} KB", size / 1024),
                c.label(),
                rate,
                mb,
                median(&ratios[i]),
                ratios[i]
                    .iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                total,
                median(&ms.iter().map(|m| m.cpu_per_alert).collect::<Vec<_>>()) * 1e6,
                mib(ms.iter().filter_map(|m| m.rss_kib).max()),
            );
        }
    }
    println!(
        "alerts/s, MB/s: copy phase, from the first record at the destination until the N-th \
         (polled every {} ms); w/ start: from spawning the copier (process start, topic \
         creation) until the N-th; CPU us: the copier process's CPU time (all threads) per alert \
         of the copy phase; every destination held exactly N distinct records",
        POLL_EVERY.as_millis()
    );
    println!(
        "MirrorMaker 2: dedicated mode, tasks.max={PARTITIONS}, heap 1 GiB, G1, Connect's \
         defaults otherwise; the brokers and the copiers share this machine's cores"
    );

    if args.lag_seconds > 0 {
        let mut rows = Vec::new();
        for (size, rate) in [(1024, args.lag_rate_1k), (64 * 1024, args.lag_rate_64k)] {
            if rate == 0 {
                continue;
            }
            for c in Copier::ALL {
                let row = side.lag(c, size, rate).await?;
                eprintln!("mm2: lag {row:?}");
                rows.push(row);
            }
        }
        println!();
        println!(
            "end-to-end lag, steady source for {} s (ms: destination read time - source record \
             timestamp)",
            args.lag_seconds
        );
        println!(
            "{:<7} {:<28} {:>8} {:>8} {:>6} {:>6} {:>6} {:>8}",
            "size", "copier", "target/s", "sent/s", "p50", "p99", "max", "RSS MiB"
        );
        for r in &rows {
            println!(
                "{:<7} {:<28} {:>8} {:>8.0} {:>6.0} {:>6.0} {:>6.0} {:>8}",
                format!("{} KB", r.size / 1024),
                r.copier.label(),
                r.rate,
                r.steady.rate(),
                r.p50,
                r.p99,
                r.max,
                mib(r.rss_kib)
            );
        }
    }

    if args.kill && args.n_64k > 0 {
        let topic = "kill.64k";
        side.src.create_topic(topic, PARTITIONS).await?;
        let n = args.n_64k;
        let records = keyed_records(n as usize, 64 * 1024, PARTITIONS, now_ms() - 60_000);
        side.src.produce_all(topic, &records).await?;
        drop(records);
        let mut rows = Vec::new();
        for c in Copier::ALL {
            let row = side.kill_run(c, topic, n).await?;
            eprintln!("mm2: kill {row:?}");
            rows.push(row);
        }
        println!();
        println!(
            "kill -9 of the copier when the destination holds half of {n} alerts of 64 KB, then \
             restarted with the same config"
        );
        println!(
            "{:<28} {:>9} {:>9} {:>10} {:>8}",
            "copier", "at kill", "written", "duplicates", "secs"
        );
        for r in &rows {
            println!(
                "{:<28} {:>9} {:>9} {:>10} {:>8.1}",
                r.copier.label(),
                r.at_kill,
                r.records,
                r.duplicates,
                r.elapsed.as_secs_f64()
            );
        }
        println!(
            "at kill: records at the destination when the copier was killed; written: records \
             at the end ({} distinct keys each); duplicates = written - distinct",
            rows.first().map_or(0, |r| r.n)
        );
    }
    Ok(())
}
