//! Throughput of a gateway against reading Kafka directly, on one Tansu and one release
//! gateway, for 1 KB and 64 KB payloads:
//!
//! - past: a direct rdkafka consumer vs one `Subscribe(earliest, end = now)`, and the same
//!   direct rounds vs a bare relay (that consumer writing the payloads into a loopback TCP
//!   connection, read on its other end): the least any relay costs on these cores, so the
//!   `relay floor` row bounds what the gateway's ratio can reach;
//! - live: 100 subscribers at `latest` while N records are produced, vs a direct consumer.
//!
//! Run: `cargo build --release -p alertmesh-gateway && cargo run --release -p
//! alertmesh-tests --bin bench_subscribe -- [--n-1k N] [--n-64k N] [--live-1k N]
//! [--live-64k N] [--subscribers S] [--rounds R] [--warmup W]` (or `BENCH_N_1K`, ... env
//! variables). Past reads run W unmeasured rounds of each reader first.
//! The gateway binary comes from `$ALERTMESH_BIN` or sits next to this one.

use std::collections::BTreeMap;
use std::time::Duration;

use alertmesh_tests::bench::{
    cpu_time, direct_past, gateway_past, live_fanout, median, peak_rss_kib, relay_past, Run,
};
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::fixtures::{now_ms, synthetic_records};
use alertmesh_tests::{Broker, Gateway, GatewaySpec};
use anyhow::{bail, Context, Result};

const PARTITIONS: i32 = 3;

#[derive(Debug, Clone)]
struct Args {
    n: [(usize, u64); 2],
    live: [u64; 2],
    subscribers: usize,
    rounds: usize,
    warmup: usize,
}

fn args() -> Result<Args> {
    let values = alertmesh_tests::bench::numeric_args(&[
        ("--n-1k", "BENCH_N_1K", 150_000),
        ("--n-64k", "BENCH_N_64K", 5_000),
        ("--live-1k", "BENCH_LIVE_1K", 10_000),
        ("--live-64k", "BENCH_LIVE_64K", 300),
        ("--subscribers", "BENCH_SUBSCRIBERS", 100),
        ("--rounds", "BENCH_ROUNDS", 9),
        ("--warmup", "BENCH_WARMUP", 1),
    ])?;
    Ok(Args {
        n: [(1024, values["--n-1k"]), (64 * 1024, values["--n-64k"])],
        live: [values["--live-1k"], values["--live-64k"]],
        subscribers: values["--subscribers"] as usize,
        rounds: values["--rounds"].max(1) as usize,
        warmup: values["--warmup"] as usize,
    })
}

/// One table row: median rates over rounds.
#[derive(Debug)]
struct Row {
    what: String,
    direct: Vec<Run>,
    gateway: Vec<Run>,
}

impl Row {
    fn print(&self) {
        let rate = |runs: &[Run]| median(&runs.iter().map(Run::rate).collect::<Vec<_>>());
        let mb = |runs: &[Run]| median(&runs.iter().map(Run::mb_per_s).collect::<Vec<_>>());
        let ratios: Vec<f64> = self
            .direct
            .iter()
            .zip(&self.gateway)
            .map(|(d, g)| g.rate() / d.rate())
            .collect();
        println!(
            "{:<26} {:>12.0} {:>9.1} {:>12.0} {:>9.1} {:>7.2}  {}",
            self.what,
            rate(&self.direct),
            mb(&self.direct),
            rate(&self.gateway),
            mb(&self.gateway),
            median(&ratios),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// CPU seconds used by the broker, the gateway and this process (the reader) over a run.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    broker: u32,
    gateway: u32,
}

impl Cpu {
    fn sample(&self) -> [Duration; 3] {
        let t = |pid| cpu_time(pid).unwrap_or_default();
        [t(Some(self.broker)), t(Some(self.gateway)), t(None)]
    }

    fn since(&self, before: [Duration; 3]) -> String {
        let now = self.sample();
        let s = |i: usize| now[i].saturating_sub(before[i]).as_secs_f64();
        format!(
            "broker {:.2} s, gateway {:.2} s, reader {:.2} s",
            s(0),
            s(1),
            s(2)
        )
    }
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
    let broker = Broker::start("bench").await?;
    let mut spec = GatewaySpec::new("bench", &broker.bootstrap());
    // Extra gateway configuration to compare settings, e.g. `[limits]` or
    // `[kafka.properties]` tables.
    if let Ok(extra) = std::env::var("BENCH_GATEWAY_TOML") {
        spec = spec.extra(&extra);
    }
    for (size, _) in args.n {
        for kind in ["past", "live"] {
            let topic = format!("bench.{kind}.{}k", size / 1024);
            broker.create_topic(&topic, PARTITIONS).await?;
            spec = spec.topic(&topic, "ZTF", "avro-ocf");
        }
    }
    let gateway = Gateway::start(&spec).await?;
    let pid = gateway.pid().context("gateway pid")?;

    let mut rows = Vec::new();
    // Gateway CPU seconds per alert delivered to a subscriber, per row (for capacity
    // planning: docs/capacity.md).
    let mut cpu_per_alert: Vec<(String, f64)> = Vec::new();
    for (i, &(size, n)) in args.n.iter().enumerate() {
        let kib = size / 1024;
        // A size asked for with no alerts (`--n-64k 0`, `--live-1k 0`) is left out.
        if n > 0 {
            // Past: N records, then both readers in alternating order.
            let topic = format!("bench.past.{kib}k");
            let records = synthetic_records(n as usize, size, PARTITIONS, now_ms() - 60_000);
            broker.produce_all(&topic, &records).await?;
            drop(records);
            let mut row = Row {
                what: format!("past {kib} KB x {n}"),
                direct: Vec::new(),
                gateway: Vec::new(),
            };
            // The same direct rounds against the least a relay costs (`relay_past`): the
            // gateway's ratio is bounded by this one on the same cores.
            let mut floor = Row {
                what: format!("relay floor {kib} KB x {n}"),
                direct: Vec::new(),
                gateway: Vec::new(),
            };
            let cpu = Cpu {
                broker: broker.pid(),
                gateway: pid,
            };
            // Unmeasured rounds first: both readers then start warm (allocator, page cache,
            // the gateway's buffer pool), as a long-running service is.
            for _ in 0..args.warmup {
                direct_past(&broker.bootstrap(), &topic, PARTITIONS, n).await?;
                gateway_past(&gateway, &topic, n).await?;
                relay_past(&broker.bootstrap(), &topic, PARTITIONS, n).await?;
            }
            let gateway_cpu_before = cpu_time(Some(pid)).unwrap_or_default();
            for round in 0..args.rounds {
                let direct = || async {
                    let before = cpu.sample();
                    let (d, first) =
                        direct_past(&broker.bootstrap(), &topic, PARTITIONS, n).await?;
                    anyhow::Ok((d, format!("first {first:.0?}, cpu {}", cpu.since(before))))
                };
                let through_gateway = || async {
                    let before = cpu.sample();
                    let (g, first) = gateway_past(&gateway, &topic, n).await?;
                    anyhow::Ok((g, format!("first {first:.0?}, cpu {}", cpu.since(before))))
                };
                let relay = || async {
                    let before = cpu.sample();
                    let (r, first) = relay_past(&broker.bootstrap(), &topic, PARTITIONS, n).await?;
                    anyhow::Ok((r, format!("first {first:.0?}, cpu {}", cpu.since(before))))
                };
                // Each reader goes first, second and last in turn.
                let ((d, d_cpu), (g, g_cpu), (r, r_cpu)) = match round % 3 {
                    0 => {
                        let d = direct().await?;
                        let g = through_gateway().await?;
                        (d, g, relay().await?)
                    }
                    1 => {
                        let g = through_gateway().await?;
                        let r = relay().await?;
                        (direct().await?, g, r)
                    }
                    _ => {
                        let r = relay().await?;
                        let d = direct().await?;
                        (d, through_gateway().await?, r)
                    }
                };
                eprintln!(
                    "{}: round {round}: direct {:.0?} ({d_cpu}), gateway {:.0?} ({g_cpu}), \
                     relay {:.0?} ({r_cpu})",
                    row.what, d.elapsed, g.elapsed, r.elapsed
                );
                row.direct.push(d);
                row.gateway.push(g);
                floor.direct.push(d);
                floor.gateway.push(r);
            }
            // The gateway is idle while the other readers read: its CPU over the rounds is
            // what it spent on its own.
            cpu_per_alert.push((
                row.what.clone(),
                (cpu_time(Some(pid)).unwrap_or_default() - gateway_cpu_before).as_secs_f64()
                    / (n * args.rounds as u64) as f64,
            ));
            rows.push(row);
            rows.push(floor);
        }
        // Live: fresh records each round; the direct consumer starts at the old end.
        let topic = format!("bench.live.{kib}k");
        let n = args.live[i];
        if n > 0 {
            let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
            let mut row = Row {
                what: format!("live {kib} KB x {n} x {}", args.subscribers),
                direct: Vec::new(),
                gateway: Vec::new(),
            };
            let mut live_cpu = Duration::ZERO;
            for round in 0..args.rounds {
                let records = synthetic_records(n as usize, size, PARTITIONS, now_ms());
                let before = cpu_time(Some(pid)).unwrap_or_default();
                let from = next.clone();
                let run = live_fanout(
                    &gateway,
                    &broker.bootstrap(),
                    &topic,
                    &from,
                    args.subscribers,
                    n,
                    || async {
                        let produced = broker.produce_all(&topic, &records).await?;
                        for p in &produced {
                            next.insert(p.record.partition, p.offset + 1);
                        }
                        Ok(produced.len() as u64)
                    },
                )
                .await?;
                live_cpu += cpu_time(Some(pid)).unwrap_or_default() - before;
                eprintln!(
                    "{}: round {round}: direct {:?}, all subscribers {:?}",
                    row.what, run.direct.elapsed, run.gateway.elapsed
                );
                row.direct.push(run.direct);
                row.gateway.push(run.gateway);
            }
            cpu_per_alert.push((
                row.what.clone(),
                live_cpu.as_secs_f64() / (n * args.rounds as u64 * args.subscribers as u64) as f64,
            ));
            rows.push(row);
        }
    }

    let metrics = gateway.metrics().await?;
    let readers = |kind| metrics.value("alertmesh_kafka_readers_started_total", &[("kind", kind)]);
    println!();
    println!(
        "{:<26} {:>12} {:>9} {:>12} {:>9} {:>7}  per round",
        "run (median of rounds)", "direct /s", "MB/s", "gateway /s", "MB/s", "ratio"
    );
    for row in &rows {
        row.print();
    }
    println!();
    println!("ratio = gateway alerts/s / direct alerts/s, per round, then the median");
    println!(
        "relay floor: a bare relay (the direct consumer writing payloads into loopback TCP, \
         read on its other end) / the same direct rounds: the most any relay reaches here"
    );
    println!(
        "live: timed from the first produce until all {} subscribers (or the direct consumer) \
         have all N; gateway rates count every subscriber's copy ({} x N)",
        args.subscribers, args.subscribers
    );
    println!(
        "gateway CPU per alert delivered (all its threads; live: per subscriber's copy): {}",
        cpu_per_alert
            .iter()
            .map(|(what, secs)| format!("{what}: {:.2} us", secs * 1e6))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "gateway peak RSS: {} MiB",
        peak_rss_kib(pid).map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
    println!(
        "kafka readers started by the gateway: tail {}, own {} (over {} live subscriptions)",
        readers("tail"),
        readers("own"),
        args.subscribers * args.rounds * 2
    );
    Ok(())
}
