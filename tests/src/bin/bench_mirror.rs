//! Mirror throughput and lag (issue 5, item 9), on two Tansu brokers (source and
//! destination) and release gateways, 3-partition topics:
//!
//! - throughput: N alerts of 64 KB copied from the source topic into a fresh destination
//!   topic by (a) a plain rdkafka consume→produce loop in this process (the baseline,
//!   idempotent, `acks=all`), (b) a destination gateway mirroring the source's raw Kafka,
//!   (c) a destination gateway mirroring a source gateway over gRPC. Rounds alternate the
//!   order; the table shows medians and each run's ratio to the same round's baseline.
//! - lag: a steady source (1 KB at 5,000 alerts/s, 64 KB at the highest steady rate this
//!   machine sustains) mirrored gateway→gateway; a consumer reads the destination live and
//!   records `now − Kafka timestamp` per record (the mirror keeps the source timestamp,
//!   which the source producer sets to the wall clock when it sends).
//!
//! - `--mm2 1`: instead, an alertmesh raw-Kafka mirror side by side with MirrorMaker 2 on
//!   two single-node Apache Kafka 4.1 clusters (needs `java`; see
//!   `alertmesh_tests::bench_mm2`): throughput and lag at 1 KB and 64 KB, and duplicates
//!   after a kill -9 of the copier mid-run (`--mm2-n-1k`, `--mm2-n-64k`,
//!   `--mm2-lag-rate-64k`, `--mm2-kill 0|1`; `--rounds`, `--lag-seconds` and
//!   `--lag-rate-1k` apply too).
//!
//! Run: `cargo build --release -p alertmesh-gateway -p alertmesh-tests --bins &&
//! target/release/bench_mirror [--n N] [--size-kib K] [--rounds R] [--lag-seconds S]
//! [--lag-rate-1k R] [--lag-rate-64k R]` (or `BENCH_MIRROR_N`, ... env variables;
//! `--lag-rate-64k 0` picks half the measured gateway→gateway rate, at most 5,000/s;
//! `--lag-seconds 0` skips the lag runs). The gateway binary comes from `$ALERTMESH_BIN`
//! or sits next to this one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmesh_proto::v1::MirrorStatusRequest;
use alertmesh_tests::bench::{median, peak_rss_kib, Run};
use alertmesh_tests::bench_mirror::{
    copy_loop, count_records, delete_topics, keyed_records, produce_steady, quantile, read_lags,
    Steady, MEASURE_TIMEOUT,
};
use alertmesh_tests::bench_mm2::Mm2Args;
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::fixtures::now_ms;
use alertmesh_tests::{Broker, Gateway, GatewaySpec};
use anyhow::{bail, ensure, Context, Result};

const PARTITIONS: i32 = 3;
const SOURCE_TOPIC: &str = "bench.src";
/// How often a copy's progress (acknowledged records) is polled.
const POLL_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
struct Args {
    n: u64,
    size: usize,
    rounds: usize,
    lag_seconds: u64,
    lag_rate_1k: u64,
    lag_rate_64k: u64,
    /// `--mm2 1`: only the MirrorMaker 2 comparison, on Apache Kafka.
    mm2: Option<Mm2Args>,
}

fn args() -> Result<Args> {
    let values = alertmesh_tests::bench::numeric_args(&[
        ("--n", "BENCH_MIRROR_N", 10_000),
        ("--size-kib", "BENCH_MIRROR_SIZE_KIB", 64),
        ("--rounds", "BENCH_MIRROR_ROUNDS", 3),
        ("--lag-seconds", "BENCH_MIRROR_LAG_SECONDS", 10),
        ("--lag-rate-1k", "BENCH_MIRROR_LAG_RATE_1K", 5_000),
        ("--lag-rate-64k", "BENCH_MIRROR_LAG_RATE_64K", 0),
        ("--mm2", "BENCH_MIRROR_MM2", 0),
        ("--mm2-n-1k", "BENCH_MIRROR_MM2_N_1K", 100_000),
        ("--mm2-n-64k", "BENCH_MIRROR_MM2_N_64K", 5_000),
        ("--mm2-lag-rate-64k", "BENCH_MIRROR_MM2_LAG_RATE_64K", 500),
        ("--mm2-kill", "BENCH_MIRROR_MM2_KILL", 1),
    ])?;
    Ok(Args {
        n: values["--n"].max(1),
        size: (values["--size-kib"].max(1) * 1024) as usize,
        rounds: values["--rounds"].max(1) as usize,
        lag_seconds: values["--lag-seconds"],
        lag_rate_1k: values["--lag-rate-1k"].max(1),
        lag_rate_64k: values["--lag-rate-64k"],
        mm2: (values["--mm2"] > 0).then(|| Mm2Args {
            n_1k: values["--mm2-n-1k"],
            n_64k: values["--mm2-n-64k"],
            rounds: values["--rounds"].max(1) as usize,
            lag_seconds: values["--lag-seconds"],
            lag_rate_1k: values["--lag-rate-1k"],
            lag_rate_64k: values["--mm2-lag-rate-64k"],
            kill: values["--mm2-kill"] > 0,
        }),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The baseline copy loop with librdkafka's default 5 requests in flight.
    Copy5,
    /// The copy loop with the mirror's producer settings (1 in flight, gapless).
    Copy1,
    Kafka,
    Gateway,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Copy5,
        Variant::Kafka,
        Variant::Gateway,
        Variant::Copy1,
    ];

    fn tag(self) -> &'static str {
        match self {
            Variant::Copy5 => "copy5",
            Variant::Copy1 => "copy1",
            Variant::Kafka => "kafka",
            Variant::Gateway => "gw",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Copy5 => "copy loop (baseline)",
            Variant::Copy1 => "copy loop, in-flight 1",
            Variant::Kafka => "raw Kafka -> gateway",
            Variant::Gateway => "gateway -> gateway",
        }
    }
}

/// One measured copy.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// From the start (copy loop created / gateway spawned) until the destination held N.
    total: Run,
    /// From the first record seen at the destination until it held N.
    phase: Run,
    /// The destination gateway's peak RSS (KiB), for mirrors.
    rss_kib: Option<u64>,
}

/// How a copy progressed: when it began, when the first records were acknowledged (and how
/// many), and when the N-th was.
#[derive(Debug, Clone, Copy)]
struct Progress {
    began: Instant,
    first: Instant,
    first_count: u64,
    done: Instant,
}

/// Polls `count` (acknowledged copies) every [`POLL_EVERY`] until it reaches `n`.
async fn poll_progress<F, Fut>(began: Instant, n: u64, mut count: F) -> Result<Progress>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let deadline = began + MEASURE_TIMEOUT;
    let mut first = None;
    loop {
        let c = count().await?;
        let now = Instant::now();
        if c > 0 && first.is_none() {
            first = Some((now, c));
        }
        if c >= n {
            let (first, first_count) = first.expect("set above");
            return Ok(Progress {
                began,
                first,
                first_count,
                done: now,
            });
        }
        ensure!(
            now < deadline,
            "{c} of {n} copied after {MEASURE_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

struct Bench {
    args: Args,
    src: Broker,
    dst: Broker,
    src_gateway: Gateway,
}

fn mirror_toml(destination: &str, source: &str, start: &str) -> String {
    format!(
        "[[mirrors]]\nname = \"m\"\ndestination = {destination:?}\nstart = {start:?}\n\
         [mirrors.source]\n{source}"
    )
}

impl Bench {
    fn gateway_source(&self, topic: &str) -> String {
        format!(
            "gateway = {:?}\ntopic = {topic:?}\n",
            self.src_gateway.grpc_url()
        )
    }

    fn kafka_source(&self, topic: &str) -> String {
        format!(
            "kafka = {:?}\ntopic = {topic:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
            self.src.bootstrap()
        )
    }

    async fn measure(&self, variant: Variant, round: usize) -> Result<Measured> {
        let n = self.args.n;
        let dst_topic = format!("copy.r{round}.{}", variant.tag());
        let mut gateway = None;
        let progress = match variant {
            Variant::Copy5 | Variant::Copy1 => {
                // The mirror creates its own destination; the loop's is made before the clock.
                self.dst.create_topic(&dst_topic, PARTITIONS).await?;
                let in_flight = if variant == Variant::Copy5 { 5 } else { 1 };
                let acked = Arc::new(AtomicU64::new(0));
                let began = Instant::now();
                let copy = {
                    let (src, dst, topic) = (
                        self.src.bootstrap(),
                        self.dst.bootstrap(),
                        dst_topic.clone(),
                    );
                    let acked = Arc::clone(&acked);
                    tokio::task::spawn_blocking(move || {
                        copy_loop(
                            &src,
                            SOURCE_TOPIC,
                            &dst,
                            &topic,
                            PARTITIONS,
                            n,
                            in_flight,
                            acked,
                        )
                    })
                };
                let polled = poll_progress(began, n, || {
                    let count = acked.load(Ordering::Relaxed);
                    let failed = copy.is_finished() && count < n;
                    async move {
                        ensure!(!failed, "the copy loop stopped at {count} of {n}");
                        Ok(count)
                    }
                })
                .await;
                let result = copy.await?;
                result?;
                polled?
            }
            Variant::Kafka | Variant::Gateway => {
                let source = if variant == Variant::Kafka {
                    self.kafka_source(SOURCE_TOPIC)
                } else {
                    self.gateway_source(SOURCE_TOPIC)
                };
                let spec = GatewaySpec::new(
                    &format!("dst-r{round}-{}", variant.tag()),
                    &self.dst.bootstrap(),
                )
                .extra(&mirror_toml(&dst_topic, &source, "earliest"));
                let began = Instant::now();
                let g = Gateway::start(&spec).await?;
                let client = g.client().await?;
                let polled = poll_progress(began, n, || {
                    let mut client = client.clone();
                    async move {
                        let status = client
                            .mirror_status(MirrorStatusRequest {})
                            .await?
                            .into_inner();
                        let m = status.mirrors.first().context("no mirror")?;
                        ensure!(m.dead_lettered == 0, "the mirror dead-lettered: {m:?}");
                        Ok(m.copied)
                    }
                })
                .await;
                let polled = match polled {
                    Ok(p) => p,
                    Err(e) => bail!("{}: {e}\n{}", variant.label(), g.stderr_tail(20)),
                };
                gateway = Some(g);
                polled
            }
        };
        // Exactly N arrived, nothing more.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (dst, t) = (self.dst.bootstrap(), dst_topic.clone());
        let count =
            tokio::task::spawn_blocking(move || count_records(&dst, &t, PARTITIONS)).await??;
        ensure!(
            count == n,
            "{}: destination holds {count}, want {n}",
            variant.label()
        );
        let rss_kib = gateway
            .as_ref()
            .and_then(Gateway::pid)
            .and_then(peak_rss_kib);
        drop(gateway);
        delete_topics(
            &self.dst.bootstrap(),
            &[&dst_topic, &format!("{dst_topic}.dlq")],
        )
        .await;
        let size = self.args.size as u64;
        let phase_records = n - progress.first_count;
        Ok(Measured {
            total: Run {
                records: n,
                bytes: n * size,
                elapsed: progress.done - progress.began,
            },
            phase: Run {
                records: phase_records,
                bytes: phase_records * size,
                elapsed: progress.done - progress.first,
            },
            rss_kib,
        })
    }

    /// A gateway→gateway mirror of a steady source of `size`-byte alerts at `rate`/s.
    async fn lag(&self, topic: &str, size: usize, rate: u64) -> Result<LagRow> {
        let dst_topic = format!("{topic}.copy");
        let spec = GatewaySpec::new(&format!("lag-{}k", size / 1024), &self.dst.bootstrap()).extra(
            &mirror_toml(&dst_topic, &self.gateway_source(topic), "earliest"),
        );
        let gateway = Gateway::start(&spec).await?;
        gateway
            .wait_metrics("mirror running", |m| {
                m.value("alertmesh_mirror_running", &[("mirror", "m")]) == 1.0
            })
            .await?;
        let expected = Arc::new(AtomicU64::new(u64::MAX));
        let duration = Duration::from_secs(self.args.lag_seconds);
        let reader = {
            let (bootstrap, t, expected) =
                (self.dst.bootstrap(), dst_topic.clone(), expected.clone());
            let timeout = duration + Duration::from_secs(120);
            tokio::task::spawn_blocking(move || {
                read_lags(&bootstrap, &t, PARTITIONS, None, &expected, timeout)
            })
        };
        // The same reading of the source topic: the lag without the mirror hop.
        let direct = {
            let (bootstrap, t, expected) =
                (self.src.bootstrap(), topic.to_owned(), expected.clone());
            let timeout = duration + Duration::from_secs(120);
            tokio::task::spawn_blocking(move || {
                read_lags(&bootstrap, &t, PARTITIONS, None, &expected, timeout)
            })
        };
        // Let the readers connect and reach the (empty) end first.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (bootstrap, t) = (self.src.bootstrap(), topic.to_owned());
        let steady = tokio::task::spawn_blocking(move || {
            produce_steady(&bootstrap, &t, PARTITIONS, size, rate as f64, duration)
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
            Err(e) => bail!("{e}\n{}", gateway.stderr_tail(20)),
        };
        let mut direct = direct.await??;
        direct.sort_by(f64::total_cmp);
        let metrics = gateway.metrics().await?;
        let rss_kib = gateway.pid().and_then(peak_rss_kib);
        drop(gateway);
        // The last second's worth of records, to see whether lag grew over the run.
        let last: Vec<f64> = lags[lags.len().saturating_sub(rate as usize)..].to_vec();
        let mut sorted = lags;
        sorted.sort_by(f64::total_cmp);
        let mut last_sorted = last;
        last_sorted.sort_by(f64::total_cmp);
        Ok(LagRow {
            size,
            rate,
            steady,
            p50: quantile(&sorted, 0.5),
            p90: quantile(&sorted, 0.9),
            p99: quantile(&sorted, 0.99),
            max: quantile(&sorted, 1.0),
            last_p50: quantile(&last_sorted, 0.5),
            direct_p50: quantile(&direct, 0.5),
            direct_p99: quantile(&direct, 0.99),
            dead_lettered: metrics.value("alertmesh_mirror_dead_lettered", &[("mirror", "m")]),
            rss_kib,
        })
    }
}

#[derive(Debug)]
struct LagRow {
    size: usize,
    rate: u64,
    steady: Steady,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    last_p50: f64,
    direct_p50: f64,
    direct_p99: f64,
    dead_lettered: f64,
    rss_kib: Option<u64>,
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let bin = alertmesh_bin();
    if !bin.exists() {
        bail!(
            "no gateway binary at {}; run `cargo build --release -p alertmesh-gateway` or set ALERTMESH_BIN",
            bin.display()
        );
    }
    eprintln!("gateway binary: {}; {args:?}", bin.display());
    if let Some(mm2) = args.mm2.clone() {
        let load_before = loadavg();
        alertmesh_tests::bench_mm2::run(mm2).await?;
        println!(
            "load average (1/5/15 min) before: {load_before}; after: {} (other work on this \
             2-core machine shares the CPUs)",
            loadavg()
        );
        return Ok(());
    }
    let load_before = loadavg();
    let src = Broker::start("mirror-src").await?;
    let dst = Broker::start("mirror-dst").await?;
    let lag_topics = ["bench.live.1k", "bench.live.64k", "bench.live.64k.low"];
    src.create_topic(SOURCE_TOPIC, PARTITIONS).await?;
    let mut src_spec =
        GatewaySpec::new("src", &src.bootstrap()).topic(SOURCE_TOPIC, "ZTF", "avro-ocf");
    for t in lag_topics {
        src.create_topic(t, PARTITIONS).await?;
        src_spec = src_spec.topic(t, "ZTF", "avro-ocf");
    }
    let src_gateway = Gateway::start(&src_spec).await?;
    let records = keyed_records(args.n as usize, args.size, PARTITIONS, now_ms() - 60_000);
    let loaded = Instant::now();
    src.produce_all(SOURCE_TOPIC, &records).await?;
    eprintln!(
        "loaded {} records of {} B in {:?}",
        records.len(),
        args.size,
        loaded.elapsed()
    );
    drop(records);
    let bench = Bench {
        args: args.clone(),
        src,
        dst,
        src_gateway,
    };

    let mut runs: BTreeMap<&'static str, Vec<Measured>> = BTreeMap::new();
    let mut baseline: Vec<f64> = Vec::new();
    let mut ratios: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for round in 0..args.rounds {
        let mut order = Variant::ALL;
        order.rotate_left(round % Variant::ALL.len());
        if round % 2 == 1 {
            order.reverse();
        }
        let mut this: Vec<(Variant, Measured)> = Vec::new();
        for v in order {
            let m = bench.measure(v, round).await?;
            eprintln!(
                "round {round}: {:<24} total {:>7.3}s, copy phase {:>7.3}s ({:.0}/s)",
                v.label(),
                m.total.elapsed.as_secs_f64(),
                m.phase.elapsed.as_secs_f64(),
                m.phase.rate()
            );
            this.push((v, m));
        }
        let base = this
            .iter()
            .find(|(v, _)| *v == Variant::Copy5)
            .map(|(_, m)| *m)
            .expect("baseline ran");
        baseline.push(base.phase.rate());
        for (v, m) in this {
            ratios
                .entry(v.label())
                .or_default()
                .push(m.phase.rate() / base.phase.rate());
            ratios
                .entry(total_key(v))
                .or_default()
                .push(m.total.rate() / base.total.rate());
            runs.entry(v.label()).or_default().push(m);
        }
    }

    let kib = args.size / 1024;
    println!();
    println!(
        "mirror throughput: {} alerts x {kib} KB, {PARTITIONS} partitions, Tansu -> Tansu, median of {} rounds",
        args.n, args.rounds
    );
    println!(
        "{:<24} {:>9} {:>7} {:>6}  {:<16} {:>9} {:>6}  {:>8}",
        "copier", "alerts/s", "MB/s", "ratio", "per round", "w/ start", "ratio", "RSS MiB"
    );
    let mut g2g_rate = 0.0;
    for v in [
        Variant::Copy5,
        Variant::Copy1,
        Variant::Kafka,
        Variant::Gateway,
    ] {
        let ms = &runs[v.label()];
        let rate = median(&ms.iter().map(|m| m.phase.rate()).collect::<Vec<_>>());
        let mb = median(&ms.iter().map(|m| m.phase.mb_per_s()).collect::<Vec<_>>());
        let total = median(&ms.iter().map(|m| m.total.rate()).collect::<Vec<_>>());
        let r = &ratios[v.label()];
        let rt = &ratios[total_key(v)];
        let rss = ms.iter().filter_map(|m| m.rss_kib).max();
        if v == Variant::Gateway {
            g2g_rate = rate;
        }
        println!(
            "{:<24} {:>9.0} {:>7.1} {:>6.2}  {:<16} {:>9.0} {:>6.2}  {:>8}",
            v.label(),
            rate,
            mb,
            median(r),
            r.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            total,
            median(rt),
            if rss.is_some() { mib(rss) } else { "-".into() }
        );
    }
    println!();
    println!(
        "alerts/s, MB/s: copy phase, from the first acknowledged copy until the N-th (the \
         loop's delivery count, the mirror's MirrorStatus.copied, polled every {} ms)",
        POLL_EVERY.as_millis()
    );
    println!(
        "ratio: per round against the same round's baseline, then the median (target >= 0.90)"
    );
    println!(
        "w/ start: from creating the copy loop / spawning the mirroring gateway (process \
         start, topic creation, recovery) until all N were acknowledged"
    );
    println!(
        "baseline: BaseConsumer -> ThreadedProducer in one thread, idempotent, acks=all, \
         linger.ms=5, 5 requests in flight; 'in-flight 1' adds the mirror's \
         max.in.flight=1 + gapless guarantee"
    );
    println!(
        "every destination held exactly N, nothing dead-lettered; source gateway peak RSS {} MiB",
        mib(bench.src_gateway.pid().and_then(peak_rss_kib))
    );

    println!(
        "load average (1/5/15 min) before: {load_before}; after the throughput runs: {} \
         (other work on this 2-core machine shares the CPUs)",
        loadavg()
    );

    if args.lag_seconds > 0 {
        let rate_64k = if args.lag_rate_64k > 0 {
            args.lag_rate_64k
        } else {
            // Half the measured copy rate, in steps of 50, at most 5,000/s.
            (((g2g_rate / 2.0) as u64) / 50 * 50).clamp(50, 5_000)
        };
        let mut rows = Vec::new();
        let mut runs = vec![
            (lag_topics[0], 1024, args.lag_rate_1k),
            (lag_topics[1], 64 * 1024, rate_64k),
        ];
        if args.lag_rate_64k == 0 {
            // Also at half that rate, on a fresh topic.
            runs.push((lag_topics[2], 64 * 1024, (rate_64k / 2 / 50 * 50).max(50)));
        }
        for (topic, size, rate) in runs {
            let row = bench.lag(topic, size, rate).await?;
            eprintln!("lag {}: {row:?}", topic);
            rows.push(row);
        }
        println!();
        println!(
            "end-to-end lag, gateway -> gateway mirror, steady source for {} s \
             (ms: destination read time - source record timestamp)",
            args.lag_seconds
        );
        println!(
            "{:<7} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>7} {:>7} {:>7} {:>8}",
            "size",
            "target/s",
            "sent/s",
            "MB/s",
            "p50",
            "p90",
            "p99",
            "max",
            "last-1s",
            "src p50",
            "src p99",
            "behind",
            "RSS MiB"
        );
        for r in &rows {
            println!(
                "{:<7} {:>8} {:>8.0} {:>6.1} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>8.0} {:>7.0} {:>7.0} {:>7} {:>8}",
                format!("{} KB", r.size / 1024),
                r.rate,
                r.steady.rate(),
                r.steady.rate() * r.size as f64 / 1e6,
                r.p50,
                r.p90,
                r.p99,
                r.max,
                r.last_p50,
                r.direct_p50,
                r.direct_p99,
                r.steady.max_behind,
                mib(r.rss_kib),
            );
            ensure!(r.dead_lettered == 0.0, "lag run dead-lettered records");
        }
        println!(
            "64 KB x 5,000/s = 328 MB/s through two brokers and two gateways is beyond this \
             machine; the 64 KB {}",
            if args.lag_rate_64k > 0 {
                "row runs at the rate given with --lag-rate-64k".to_owned()
            } else {
                format!(
                    "rows run at half and a quarter of the measured gateway -> gateway copy \
                     rate ({g2g_rate:.0}/s)"
                )
            }
        );
        println!(
            "last-1s: p50 of the last second's records (a lag that grows over the run shows \
             here); src p50/p99: the same reader on the source topic at the same time (the lag \
             without the mirror hop); behind: most records the source producer ever trailed \
             its schedule; RSS: the mirroring gateway's peak"
        );
    }
    Ok(())
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn total_key(v: Variant) -> &'static str {
    match v {
        Variant::Copy5 => "copy5 total",
        Variant::Copy1 => "copy1 total",
        Variant::Kafka => "kafka total",
        Variant::Gateway => "gw total",
    }
}
