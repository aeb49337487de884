//! Archive ingest rate against the mirror rate (issue 13, item 5), on one Tansu broker, one
//! PostgreSQL cluster and release gateways on the same machine:
//!
//! N real ZTF alerts (the 45 fixtures, cycled; 60-90 KB each) in a 3-partition topic are
//! (a) mirrored by a gateway from raw Kafka into a fresh topic of the same broker (the
//! mirror rate: read, write, acknowledge), and (b) archived by a gateway into a fresh
//! PostgreSQL table with six extracted columns (read, decode, COPY, commit). Rounds
//! alternate the order; the table shows medians and each round's archive/mirror ratio,
//! from the gateway's start to the last record (both include one gateway start-up; the
//! archive writes in batches, so its first progress says little about its rate).
//!
//! Run: `cargo build --release -p alertmesh-gateway -p alertmesh-tests --bins &&
//! target/release/bench_archive [--n N] [--rounds R]` (or `BENCH_ARCHIVE_N`,
//! `BENCH_ARCHIVE_ROUNDS`). The gateway binary comes from `$ALERTMESH_BIN` or sits next to
//! this one; PostgreSQL from `$PG_BIN` (scripts/postgres.sh installs it).

use std::time::{Duration, Instant};

use alertmesh_proto::v1::MirrorStatusRequest;
use alertmesh_tests::bench::{median, peak_rss_kib, Run};
use alertmesh_tests::bench_mirror::{count_records, delete_topics, MEASURE_TIMEOUT};
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Postgres};
use anyhow::{bail, ensure, Context, Result};

const PARTITIONS: i32 = 3;
const SOURCE_TOPIC: &str = "bench.src";
const POLL_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Mirror,
    Archive,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Mirror => "mirror (raw Kafka -> topic)",
            Variant::Archive => "archive (topic -> PostgreSQL)",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    /// From the first record seen to the last.
    phase: Run,
    /// From the gateway's start to the last record.
    total: Run,
    rss_kib: Option<u64>,
}

struct Bench {
    n: u64,
    bytes: u64,
    broker: Broker,
    pg: Postgres,
}

fn archive_toml(pg: &Postgres, table: &str) -> String {
    format!(
        r#"
[[databases]]
name = "bench"
url = "{url}"
password_file = "{pw}"

[[archives]]
name = "bench"
topic = "{SOURCE_TOPIC}"
database = "bench"
table = "{table}"
ra = "ra"
dec = "dec"
columns = [
  {{ name = "candid", path = "candidate.candid", type = "int8" }},
  {{ name = "ra", path = "candidate.ra", type = "float8" }},
  {{ name = "dec", path = "candidate.dec", type = "float8" }},
  {{ name = "magpsf", path = "candidate.magpsf", type = "float8" }},
  {{ name = "fid", path = "candidate.fid", type = "int8" }},
  {{ name = "isdiffpos", path = "candidate.isdiffpos", type = "text" }},
]
"#,
        url = pg.url("postgres"),
        pw = pg.dir().join("pw").display()
    )
}

impl Bench {
    async fn measure(&self, v: Variant, round: usize) -> Result<Measured> {
        let n = self.n;
        let spec = GatewaySpec::new(&format!("bench-r{round}"), &self.broker.bootstrap()).topic(
            SOURCE_TOPIC,
            "ZTF",
            "avro-ocf",
        );
        let dst = format!("bench.dst.r{round}");
        let table = format!("bench_r{round}");
        let spec = match v {
            Variant::Mirror => spec.extra(&format!(
                "[[mirrors]]\nname = \"m\"\ndestination = {dst:?}\nstart = \"earliest\"\n\
                 [mirrors.source]\nkafka = {:?}\ntopic = {SOURCE_TOPIC:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
                self.broker.bootstrap()
            )),
            Variant::Archive => spec.extra(&archive_toml(&self.pg, &table)),
        };
        let began = Instant::now();
        let g = Gateway::start(&spec).await?;
        let client = g.client().await?;
        let deadline = began + MEASURE_TIMEOUT;
        let mut first: Option<(Instant, u64)> = None;
        let done = loop {
            let c = match v {
                Variant::Mirror => {
                    let status = client
                        .clone()
                        .mirror_status(MirrorStatusRequest {})
                        .await?
                        .into_inner();
                    let m = status.mirrors.first().context("no mirror")?;
                    ensure!(m.dead_lettered == 0, "the mirror dead-lettered: {m:?}");
                    m.copied
                }
                Variant::Archive => g
                    .metrics()
                    .await?
                    .value("alertmesh_archive_rows_total", &[("archive", "bench")])
                    as u64,
            };
            let now = Instant::now();
            if c > 0 && first.is_none() {
                first = Some((now, c));
            }
            if c >= n {
                break now;
            }
            if now > deadline {
                bail!(
                    "{}: {c} of {n} after {MEASURE_TIMEOUT:?}\n{}",
                    v.label(),
                    g.stderr_tail(20)
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        };
        let rss_kib = g.pid().and_then(peak_rss_kib);
        drop(g);
        // Exactly N, once each.
        match v {
            Variant::Mirror => {
                let (b, t) = (self.broker.bootstrap(), dst.clone());
                let count = tokio::task::spawn_blocking(move || count_records(&b, &t, PARTITIONS))
                    .await??;
                ensure!(count == n, "mirror destination holds {count}, want {n}");
                delete_topics(&self.broker.bootstrap(), &[&dst, &format!("{dst}.dlq")]).await;
            }
            Variant::Archive => {
                let counts = self.pg.psql(&format!(
                    "select count(*), count(distinct (kafka_partition, kafka_offset)) from {table}"
                ))?;
                ensure!(
                    counts.trim() == format!("{n}\t{n}"),
                    "archive table holds {counts:?}, want {n} distinct"
                );
                self.pg.psql(&format!("drop table {table}"))?;
            }
        }
        let (first, first_count) = first.expect("set when c > 0");
        let records = n - first_count;
        Ok(Measured {
            phase: Run {
                records,
                bytes: records * self.bytes / n,
                elapsed: done - first,
            },
            total: Run {
                records: n,
                bytes: self.bytes,
                elapsed: done - began,
            },
            rss_kib,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let values = alertmesh_tests::bench::numeric_args(&[
        ("--n", "BENCH_ARCHIVE_N", 20_000),
        ("--rounds", "BENCH_ARCHIVE_ROUNDS", 3),
    ])?;
    let (n, rounds) = (values["--n"].max(100), values["--rounds"].max(1) as usize);
    let bin = alertmesh_bin();
    if !bin.exists() {
        bail!(
            "no gateway binary at {}; run `cargo build --release -p alertmesh-gateway` or set ALERTMESH_BIN",
            bin.display()
        );
    }
    let Some(bin_dir) = Postgres::bin_dir() else {
        bail!("PostgreSQL is not installed: run scripts/postgres.sh (or set PG_BIN)");
    };
    let pg = Postgres::start_with(bin_dir).await?;
    let broker = Broker::start("bench-archive").await?;
    broker.create_topic(SOURCE_TOPIC, PARTITIONS).await?;
    let fixtures = ztf_records(PARTITIONS, now_ms() - 60_000, 0)?;
    let mut bytes = 0;
    let mut loaded = 0;
    while loaded < n {
        let take = (n - loaded).min(fixtures.len() as u64) as usize;
        let mut chunk = fixtures[..take].to_vec();
        for (i, r) in chunk.iter_mut().enumerate() {
            r.partition = ((loaded as usize + i) % PARTITIONS as usize) as i32;
            bytes += r.payload.len() as u64;
        }
        broker.produce_all(SOURCE_TOPIC, &chunk).await?;
        loaded += take as u64;
    }
    eprintln!(
        "gateway binary: {}; {n} ZTF alerts ({:.1} MB), {rounds} rounds",
        bin.display(),
        bytes as f64 / 1e6
    );
    let bench = Bench {
        n,
        bytes,
        broker,
        pg,
    };
    let mut mirror = Vec::new();
    let mut archive = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Variant::Mirror, Variant::Archive]
        } else {
            [Variant::Archive, Variant::Mirror]
        };
        let mut this = [None, None];
        for v in order {
            let m = bench.measure(v, round).await?;
            eprintln!(
                "round {round}: {:<30} {:>8.0} alerts/s ({:.1} MB/s) in {:.2}s; after the first: {:.0}/s; peak RSS {} MiB",
                v.label(),
                m.total.rate(),
                m.total.mb_per_s(),
                m.total.elapsed.as_secs_f64(),
                m.phase.rate(),
                m.rss_kib.map_or(0, |k| k / 1024)
            );
            this[(v == Variant::Archive) as usize] = Some(m);
        }
        let (m, a) = (this[0].expect("ran"), this[1].expect("ran"));
        mirror.push(m.total.rate());
        archive.push(a.total.rate());
        ratios.push(a.total.rate() / m.total.rate());
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    println!("\n{n} ZTF alerts, {rounds} rounds, medians (gateway start to last record):");
    println!("| variant | alerts/s | archive / mirror |");
    println!("|---|---:|---:|");
    println!("| {} | {:.0} | |", Variant::Mirror.label(), median(&mirror));
    println!(
        "| {} | {:.0} | {:.2}× ({lo:.2}–{hi:.2}) |",
        Variant::Archive.label(),
        median(&archive),
        median(&ratios)
    );
    Ok(())
}
