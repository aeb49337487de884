//! Throughput of a `Query` stream through the gateway against a direct PostgreSQL client,
//! on one PostgreSQL cluster, one Tansu and one release gateway:
//!
//! - direct: `COPY (SELECT <columns> FROM objects ORDER BY id) TO STDOUT` over
//!   tokio-postgres, the fastest way a client reads a whole result;
//! - gateway: one `Query` of the same rows (native output: each row a JSON object).
//!
//! Rounds alternate which reader goes first; the table shows median rows/s of each and
//! the ratio per round, then the gateway's peak RSS after each gateway round (it must stay
//! flat whatever the row count: the gateway reads in bounded chunks).
//!
//! Run: `cargo build --release -p alertmesh-gateway && cargo run --release -p
//! alertmesh-tests --bin bench_query -- [--rows N] [--rounds R] [--warmup W]` (or
//! `BENCH_QUERY_ROWS`, `BENCH_QUERY_ROUNDS`, `BENCH_QUERY_WARMUP`). The gateway binary
//! comes from `$ALERTMESH_BIN` or sits next to this one; PostgreSQL from `$PG_BIN` or the
//! distribution's packages (scripts/postgres.sh installs them).

use std::time::{Duration, Instant};

use alertmesh_proto::v1;
use alertmesh_proto::view::AlertBatchView;
use alertmesh_tests::bench::{cpu_time, median, numeric_args, peak_rss_kib};
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::postgres::PASSWORD;
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Postgres};
use anyhow::{bail, ensure, Context, Result};
use tokio_stream::StreamExt;

const COLUMNS: &str = "id, object_id, ra, dec, mag, ndet, jd";

/// One measured read.
#[derive(Debug, Clone, Copy)]
struct Run {
    rows: u64,
    bytes: u64,
    elapsed: Duration,
    /// CPU seconds of the gateway, of PostgreSQL and of this reader over the read.
    cpu: [f64; 3],
}

impl Run {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

fn table_sql(rows: u64) -> String {
    format!(
        "create table objects (id bigint primary key, object_id text not null, \
           ra double precision not null, dec double precision not null, mag real, \
           ndet integer not null, jd double precision not null); \
         insert into objects select i, \
           'ZTF2' || (i % 10) || translate(lpad(i::text, 7, '0'), '0123456789', 'abcdefghij'), \
           (i * 7.3)::numeric % 360, ((i * 3.1)::numeric % 180) - 90, \
           15 + (i % 70) / 10.0, i % 40, 2459000.5 + i / 86400.0 \
         from generate_series(1, {rows}) i;"
    )
}

fn query_toml(pg: &Postgres) -> String {
    format!(
        r#"
[[databases]]
name = "archive"
url = "{url}"
password_file = "{pw}"
statement_timeout_ms = 600000

[[queries]]
name = "objects"
database = "archive"
table = "objects"
namespace = "ZTF"
key = "object_id"
order = "id"
ra = "ra"
dec = "dec"
columns = ["id", "object_id", "ra", "dec", "mag", "ndet", "jd"]
public = true
"#,
        url = pg.url("postgres"),
        pw = pg.dir().join("pw").display()
    )
}

/// CPU time of every PostgreSQL process (the direct reader's backend and the gateway's).
fn postgres_cpu(pg: &Postgres) -> f64 {
    let Ok(pids) = std::fs::read_to_string(pg.dir().join("data/postmaster.pid")) else {
        return 0.0;
    };
    let Some(main) = pids
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        return 0.0;
    };
    let mut total = cpu_time(Some(main)).unwrap_or_default().as_secs_f64() + reaped_cpu(main);
    // Backends are children of the postmaster.
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{main}/task/{main}/children")) {
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            total += cpu_time(Some(c)).unwrap_or_default().as_secs_f64();
        }
    }
    total
}

/// CPU seconds of `pid`'s children that have exited (`cutime` + `cstime`): a direct
/// reader's backend ends with its connection, and its time must still count.
fn reaped_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    // cutime and cstime are fields 16 and 17 of the whole line, 14 and 15 of `rest`,
    // in USER_HZ (100 per second).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

async fn direct(pg: &Postgres, want: u64) -> Result<Run> {
    let started = Instant::now();
    let config = format!(
        "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres",
        pg.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    let stream = client
        .copy_out(&format!(
            "COPY (SELECT {COLUMNS} FROM objects ORDER BY id) TO STDOUT"
        ))
        .await?;
    tokio::pin!(stream);
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let elapsed = started.elapsed();
    drop(client);
    let _ = conn.await;
    ensure!(rows == want, "COPY gave {rows} rows, want {want}");
    Ok(Run {
        rows,
        bytes,
        elapsed,
        cpu: [0.0; 3],
    })
}

/// The gateway's rows, read in place as `bench_subscribe`'s subscriber reads alerts
/// (`alertmesh_proto::view`: each alert's fields without an allocation), as the direct
/// reader reads COPY's buffers.
async fn through_gateway(gateway: &Gateway, want: u64) -> Result<Run> {
    let started = Instant::now();
    let mut grpc =
        tonic::client::Grpc::new(gateway.channel().await?).max_decoding_message_size(64 << 20);
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<v1::QueryRequest, AlertBatchView>::default();
    let request = v1::QueryRequest {
        name: "objects".into(),
        output: v1::Output::Native as i32,
        ..Default::default()
    };
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(request),
            http::uri::PathAndQuery::from_static("/alertmesh.v1.AlertMesh/Query"),
            codec,
        )
        .await?
        .into_inner();
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut last = i64::MIN;
    while let Some(batch) = stream.message().await? {
        for a in &batch.alerts {
            let f = a.fields()?;
            // Rows arrive in order, each once.
            ensure!(f.offset > last, "row {} after {last}", f.offset);
            last = f.offset;
            bytes += f.payload.len() as u64;
        }
        rows += batch.alerts.len() as u64;
    }
    ensure!(rows == want, "the gateway gave {rows} rows, want {want}");
    Ok(Run {
        rows,
        bytes,
        elapsed: started.elapsed(),
        cpu: [0.0; 3],
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let values = numeric_args(&[
        ("--rows", "BENCH_QUERY_ROWS", 1_000_000),
        ("--rounds", "BENCH_QUERY_ROUNDS", 5),
        ("--warmup", "BENCH_QUERY_WARMUP", 1),
    ])?;
    let (n, rounds, warmup) = (
        values["--rows"],
        values["--rounds"].max(1) as usize,
        values["--warmup"] as usize,
    );
    let bin = alertmesh_bin();
    if !bin.exists() {
        bail!(
            "no gateway binary at {}; run `cargo build --release -p alertmesh-gateway` or set ALERTMESH_BIN",
            bin.display()
        );
    }
    eprintln!(
        "gateway binary: {}; rows {n}, rounds {rounds}",
        bin.display()
    );
    let pg = Postgres::start_or_skip()
        .await?
        .context("PostgreSQL is not installed: run scripts/postgres.sh")?;
    pg.psql(&table_sql(n))?;
    pg.psql("vacuum analyze objects")?;
    let broker = Broker::start("bench").await?;
    let mut spec = GatewaySpec::new("bench", &broker.bootstrap()).extra(&query_toml(&pg));
    // Extra gateway configuration to compare settings, e.g. a `[limits]` table.
    if let Ok(extra) = std::env::var("BENCH_GATEWAY_TOML") {
        spec = spec.extra(&extra);
    }
    let gateway = Gateway::start(&spec).await?;
    let pid = gateway.pid().context("gateway pid")?;
    let rss_start = peak_rss_kib(pid).unwrap_or(0);

    for _ in 0..warmup {
        direct(&pg, n).await?;
        through_gateway(&gateway, n).await?;
    }
    let measure = |run: Run, before: (f64, f64, f64)| Run {
        cpu: [
            cpu_time(Some(pid)).unwrap_or_default().as_secs_f64() - before.0,
            postgres_cpu(&pg) - before.1,
            cpu_time(None).unwrap_or_default().as_secs_f64() - before.2,
        ],
        ..run
    };
    let sample = || {
        (
            cpu_time(Some(pid)).unwrap_or_default().as_secs_f64(),
            postgres_cpu(&pg),
            cpu_time(None).unwrap_or_default().as_secs_f64(),
        )
    };
    let (mut directs, mut gateways, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for first in [round % 2 == 0, round % 2 == 1] {
            let before = sample();
            if first {
                let d = direct(&pg, n).await?;
                directs.push(measure(d, before));
            } else {
                let g = through_gateway(&gateway, n).await?;
                gateways.push(measure(g, before));
                rss.push(peak_rss_kib(pid).unwrap_or(0));
            }
        }
    }

    let rates = |runs: &[Run]| runs.iter().map(Run::rate).collect::<Vec<_>>();
    let mb = |runs: &[Run]| {
        median(
            &runs
                .iter()
                .map(|r| r.bytes as f64 / 1e6 / r.elapsed.as_secs_f64())
                .collect::<Vec<_>>(),
        )
    };
    let cpu = |runs: &[Run], i: usize| median(&runs.iter().map(|r| r.cpu[i]).collect::<Vec<_>>());
    let ratios: Vec<f64> = gateways
        .iter()
        .zip(&directs)
        .map(|(g, d)| g.rate() / d.rate())
        .collect();
    println!();
    println!(
        "{:<28} {:>12} {:>9} {:>12} {:>9} {:>7}  per round",
        "query stream", "direct/s", "MB/s", "gateway/s", "MB/s", "ratio"
    );
    println!(
        "{:<28} {:>12.0} {:>9.1} {:>12.0} {:>9.1} {:>7.2}  {}",
        format!("{n} rows, 7 columns"),
        median(&rates(&directs)),
        mb(&directs),
        median(&rates(&gateways)),
        mb(&gateways),
        median(&ratios),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "cpu s per read (median): direct: postgres {:.2}, reader {:.2}; \
         gateway: postgres {:.2}, gateway {:.2}, reader {:.2}",
        cpu(&directs, 1),
        cpu(&directs, 2),
        cpu(&gateways, 1),
        cpu(&gateways, 0),
        cpu(&gateways, 2)
    );
    println!(
        "gateway peak RSS: {} MiB at the start, after each gateway round: {} MiB",
        rss_start / 1024,
        rss.iter()
            .map(|k| (k / 1024).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}
