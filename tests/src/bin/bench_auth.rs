//! Subscribe throughput with JWT + mutual TLS versus plaintext without auth, in one run
//! over the same Kafka topic: two gateways (one plain, one with `[auth]` and `[tls]`), read
//! in alternating order each round by the same reader (`alertmesh-client`'s
//! `subscribe_views`, checking that offsets rise per partition), so only TLS and the token
//! differ. Prints the median ratio (target ≥ 0.9) and each round's CPU seconds.
//!
//! `cargo build --release -p alertmesh-gateway && ALERTMESH_BIN=target/release/alertmesh
//!  cargo run --release -p alertmesh-tests --bin bench_auth -- [--n N] [--size BYTES] [--rounds R] [--warmup W]`
//! (`--help` lists them; the defaults are the documented measurement, 100 000 alerts of
//! 1 KB in 9 rounds; `make bench` runs it again with `--n 2000 --size 65536`).

use std::time::Duration;

use alertmesh_tests::auth::{Pki, Secure, SecureSpec};
use alertmesh_tests::bench::{cpu_time, median, past_through, Run};
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::fixtures::{now_ms, synthetic_records};
use alertmesh_tests::{Broker, Gateway, GatewaySpec};
use anyhow::{bail, Context, Result};

const TOPIC: &str = "bench.auth";
const PARTITIONS: i32 = 3;

/// CPU seconds of a gateway and of this process (the reader) over one read.
async fn timed(
    gateway: u32,
    read: impl std::future::Future<Output = Result<Run>>,
) -> Result<(Run, String)> {
    let t = |pid| cpu_time(pid).unwrap_or_default();
    let before = (t(Some(gateway)), t(None));
    let run = read.await?;
    let secs = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64();
    let cpu = format!(
        "cpu gateway {:.2} s, reader {:.2} s",
        secs(t(Some(gateway)), before.0),
        secs(t(None), before.1)
    );
    Ok((run, cpu))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = alertmesh_tests::bench::numeric_args(&[
        ("--n", "BENCH_AUTH_N", 100_000),
        ("--size", "BENCH_AUTH_SIZE", 1024),
        ("--rounds", "BENCH_AUTH_ROUNDS", 9),
        ("--warmup", "BENCH_AUTH_WARMUP", 1),
    ])?;
    let n = args["--n"];
    let size = usize::try_from(args["--size"]).context("--size")?;
    let rounds = usize::try_from(args["--rounds"])
        .context("--rounds")?
        .max(1);
    if n == 0 || size == 0 {
        bail!("--n and --size must be at least 1");
    }
    let bin = alertmesh_bin();
    if !bin.exists() {
        bail!(
            "no gateway binary at {}; build it or set ALERTMESH_BIN",
            bin.display()
        );
    }
    eprintln!(
        "gateway binary: {}; n={n} size={size} rounds={rounds}",
        bin.display()
    );

    let broker = Broker::start("bench").await?;
    broker.create_topic(TOPIC, PARTITIONS).await?;
    let records = synthetic_records(n as usize, size, PARTITIONS, now_ms() - 60_000);
    broker.produce_all(TOPIC, &records).await?;
    drop(records);

    let plain = Gateway::start(
        &GatewaySpec::new("plain", &broker.bootstrap()).topic(TOPIC, "ZTF", "avro-ocf"),
    )
    .await?;
    let pki = Pki::new()?;
    let secure = Secure::start(
        &pki,
        SecureSpec::new("secure", &broker.bootstrap()).topic(TOPIC, false),
    )
    .await?;
    let token = secure.issue("bench", &["subscribe:bench.*"], "1h").await?;
    let cert = pki.client("bench")?;
    let (plain_pid, secure_pid) = (
        plain.pid().context("plain gateway pid")?,
        secure.gateway.pid().context("secure gateway pid")?,
    );
    // A new connection per round for both (`past_through` connects): the TLS handshake is
    // part of the cost.
    let (plain_at, secure_at) = (
        plain.endpoint()?,
        secure.endpoint(Some(&cert), Some(&token))?,
    );

    // Unmeasured reads first, as in bench_subscribe: the first read of each gateway pays
    // for cold caches and its first Kafka connections, and made the first round an outlier
    // (1.0-1.2 where the others were 0.85-0.95).
    for _ in 0..args["--warmup"] {
        past_through(&plain_at, TOPIC, n).await?;
        past_through(&secure_at, TOPIC, n).await?;
    }
    let (mut p, mut s) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let measure_plain = || {
            timed(plain_pid, async {
                Ok(past_through(&plain_at, TOPIC, n).await?.0)
            })
        };
        let measure_secure = || {
            timed(secure_pid, async {
                Ok(past_through(&secure_at, TOPIC, n).await?.0)
            })
        };
        let ((a, a_cpu), (b, b_cpu)) = if round % 2 == 0 {
            let a = measure_plain().await?;
            (a, measure_secure().await?)
        } else {
            let b = measure_secure().await?;
            (measure_plain().await?, b)
        };
        eprintln!(
            "round {round}: plaintext {:?} ({:.0}/s; {a_cpu}), jwt+mtls {:?} ({:.0}/s; {b_cpu}), ratio {:.3}",
            a.elapsed,
            a.rate(),
            b.elapsed,
            b.rate(),
            b.rate() / a.rate()
        );
        p.push(a);
        s.push(b);
    }
    let ratios: Vec<f64> = p.iter().zip(&s).map(|(a, b)| b.rate() / a.rate()).collect();
    let rates = |runs: &[Run]| median(&runs.iter().map(Run::rate).collect::<Vec<_>>());
    let mbs = |runs: &[Run]| median(&runs.iter().map(Run::mb_per_s).collect::<Vec<_>>());
    println!();
    println!(
        "{:<28} {:>12} {:>9}",
        format!("past {} B x {n}", size),
        "alerts/s",
        "MB/s"
    );
    println!(
        "{:<28} {:>12.0} {:>9.1}",
        "plaintext, no auth",
        rates(&p),
        mbs(&p)
    );
    println!("{:<28} {:>12.0} {:>9.1}", "jwt + mtls", rates(&s), mbs(&s));
    println!(
        "ratio (jwt+mtls / plaintext), median of {rounds} rounds: {:.3} (target >= 0.9); per round: {}",
        median(&ratios),
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}
