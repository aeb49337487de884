//! Replica scaling of a shared mirror (`gateway.share_mirrors`), on one Apache Kafka broker:
//! a raw Kafka source topic of 6 partitions mirrored into a fresh local topic by 1, 2 and 3
//! replicas of one gateway, against the baseline of one unshared gateway (idempotent, not
//! transactional) in the same run.
//!
//! N alerts are produced into the source first (a backlog, so that the copiers set the
//! pace), then the replicas are started. The rate counts the alerts copied from the moment
//! every replica is in the group and copying until the replicas' `MirrorStatus` counters
//! (which move at transaction commits) add up to N; group joins and the rebalances they
//! cause before that moment are left out. The destination is then read back
//! (`read_committed`) and must hold exactly N records.
//! Rounds alternate the order; the table shows medians and each run's ratio to the same
//! round's baseline.
//!
//! Run: `cargo build --release -p alertmesh-gateway -p alertmesh-tests --bins &&
//! ALERTMESH_TEST_KAFKA=apache target/release/bench_replicas [--n N] [--size-kib K]
//! [--rounds R]` (or `BENCH_REPLICAS_N`, ... env variables). Everything shares this
//! machine's cores with the broker, so replicas scale only as far as idle cores allow.

use std::time::{Duration, Instant};

use alertmesh_tests::apache::Flavor;
use alertmesh_tests::bench::median;
use alertmesh_tests::bench_mirror::{count_records, keyed_records};
use alertmesh_tests::fixtures::now_ms;
use alertmesh_tests::{Broker, Gateway, GatewaySpec};
use anyhow::{bail, ensure, Result};

const PARTITIONS: i32 = 6;
const MEASURE_TIMEOUT: Duration = Duration::from_secs(600);

/// A copier: how many replicas, and whether they share the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    replicas: usize,
    shared: bool,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant {
            replicas: 1,
            shared: false,
        },
        Variant {
            replicas: 1,
            shared: true,
        },
        Variant {
            replicas: 2,
            shared: true,
        },
        Variant {
            replicas: 3,
            shared: true,
        },
    ];

    fn label(self) -> String {
        if self.shared {
            format!("{} shared replica(s)", self.replicas)
        } else {
            "1 gateway, unshared".to_owned()
        }
    }

    fn tag(self) -> String {
        format!("{}{}", if self.shared { "s" } else { "u" }, self.replicas)
    }
}

/// Sum of `copied` over the replicas' status of their one mirror.
async fn copied(replicas: &[Gateway]) -> u64 {
    let mut sum = 0;
    for g in replicas {
        if let Ok(s) = g.mirror_status().await {
            sum += s.first().map_or(0, |m| m.copied);
        }
    }
    sum
}

/// Whether every replica runs its mirror and (shared) the group holds them all.
async fn ready(replicas: &[Gateway], variant: Variant) -> bool {
    for g in replicas {
        let Ok(status) = g.mirror_status().await else {
            return false;
        };
        let Some(m) = status.first() else {
            return false;
        };
        if m.state != "running" {
            return false;
        }
        if variant.shared {
            let covered: usize = m.replicas.iter().map(|r| r.partitions.len()).sum();
            if m.replicas.len() != variant.replicas || covered != PARTITIONS as usize {
                return false;
            }
        }
    }
    true
}

async fn measure(
    broker: &Broker,
    variant: Variant,
    round: usize,
    n: u64,
    size: usize,
) -> Result<f64> {
    let (src, dst) = (
        format!("bench.src.r{round}.{}", variant.tag()),
        format!("bench.dst.r{round}.{}", variant.tag()),
    );
    broker.create_topic(&src, PARTITIONS).await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"m{round}{}\"\ndestination = {dst:?}\nstart = \"earliest\"\n\
         [mirrors.source]\nkafka = {:?}\ntopic = {src:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
        variant.tag(),
        broker.bootstrap()
    );
    // A backlog first: the copiers, not this process's producer, set the pace.
    let records = keyed_records(n as usize, size, PARTITIONS, now_ms());
    broker.produce_all(&src, &records).await?;
    drop(records);
    let began = Instant::now();
    let mut replicas = Vec::new();
    for i in 0..variant.replicas {
        let spec = GatewaySpec::new("bench", &broker.bootstrap())
            .gateway_key(&format!("share_mirrors = {}", variant.shared))
            .gateway_key(&format!("replica_id = \"r{i}\""))
            .extra(&mirror);
        replicas.push(Gateway::start(&spec).await?);
    }
    // The clock for the rate starts once every replica is in the group and copying.
    let mut window = None;
    loop {
        let done = copied(&replicas).await;
        if done >= n {
            break;
        }
        if window.is_none() && ready(&replicas, variant).await {
            window = Some((Instant::now(), copied(&replicas).await));
        }
        if began.elapsed() > MEASURE_TIMEOUT {
            bail!("{}: copied {done} of {n}", variant.label());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let finished = Instant::now();
    let elapsed = finished - began;
    let (t0, before) = window.unwrap_or((began, 0));
    let in_window = n - before.min(n);
    let (bootstrap, topic) = (broker.bootstrap(), dst.clone());
    let held = tokio::task::spawn_blocking(move || count_records(&bootstrap, &topic, PARTITIONS))
        .await??;
    ensure!(
        held == n,
        "{}: the destination holds {held} of {n}",
        variant.label()
    );
    let rate = in_window as f64 / (finished - t0).as_secs_f64().max(1e-3);
    eprintln!(
        "round {round} {:<22} {:>8.0} alerts/s ({in_window} of {n} copied with the whole group \
         in place; all {n} {:.2} s after the first replica started)",
        variant.label(),
        rate,
        elapsed.as_secs_f64(),
    );
    for mut g in replicas {
        let _ = g.sigterm().await;
    }
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<()> {
    let values = alertmesh_tests::bench::numeric_args(&[
        ("--n", "BENCH_REPLICAS_N", 20_000),
        ("--size-kib", "BENCH_REPLICAS_SIZE_KIB", 1),
        ("--rounds", "BENCH_REPLICAS_ROUNDS", 3),
    ])?;
    let n = values["--n"].max(1);
    let size = (values["--size-kib"].max(1) * 1024) as usize;
    let rounds = values["--rounds"].max(1) as usize;
    if Flavor::from_env() != Flavor::Apache {
        bail!("shared mirrors need transactions: run with ALERTMESH_TEST_KAFKA=apache");
    }
    let broker = Broker::start("bench").await?;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Variant::ALL.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); Variant::ALL.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..Variant::ALL.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut this = vec![0.0; Variant::ALL.len()];
        for i in order {
            this[i] = measure(&broker, Variant::ALL[i], round, n, size).await?;
        }
        for i in 0..Variant::ALL.len() {
            rates[i].push(this[i]);
            ratios[i].push(this[i] / this[0]);
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "bench_replicas: {n} alerts of {} KiB, {PARTITIONS} source partitions, one Apache Kafka broker, \
         {rounds} round(s), {cores} cores, load {}",
        size / 1024,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<24} {:>9} {:>7}  per round",
        "copier", "alerts/s", "ratio"
    );
    for (i, v) in Variant::ALL.iter().enumerate() {
        let per: Vec<String> = ratios[i].iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "{:<24} {:>9.0} {:>6.2}x  {}",
            v.label(),
            median(&rates[i]),
            median(&ratios[i]),
            per.join(" ")
        );
    }
    Ok(())
}
