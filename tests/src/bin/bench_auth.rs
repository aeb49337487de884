//! Subscribe throughput with JWT + mutual TLS versus plaintext without auth, in one run
//! over the same Kafka topic: two gateways (one plain, one with `[auth]` and `[tls]`), read
//! in alternating order each round. Prints the median ratio (target ≥ 0.9).
//!
//! `cargo build --release -p alertmesh-gateway && ALERTMESH_BIN=target/release/alertmesh
//!  cargo run --release -p alertmesh-tests --bin bench_auth -- [N] [SIZE_BYTES] [ROUNDS]`

use std::time::Instant;

use alertmesh_tests::auth::{Client, Pki, Secure, SecureSpec};
use alertmesh_tests::bench::{gateway_past, median, Run};
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::client::{earliest, request, until_now};
use alertmesh_tests::fixtures::{now_ms, synthetic_records};
use alertmesh_tests::{Broker, Gateway, GatewaySpec};
use anyhow::{bail, ensure, Result};

const TOPIC: &str = "bench.auth";
const PARTITIONS: i32 = 3;

async fn secure_past(client: &mut Client, n: u64) -> Result<Run> {
    let began = Instant::now();
    let mut req = request(TOPIC);
    req.start = earliest();
    req.end = until_now();
    let mut stream = client.subscribe(req).await?.into_inner();
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some(batch) = stream.message().await? {
        records += batch.alerts.len() as u64;
        bytes += batch
            .alerts
            .iter()
            .map(|a| a.payload.len() as u64)
            .sum::<u64>();
    }
    ensure!(
        records == n,
        "secure gateway streamed {records} alerts, want {n}"
    );
    Ok(Run {
        records,
        bytes,
        elapsed: began.elapsed(),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(8 * 1024), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
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

    let (mut p, mut s) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // A new connection per round for both: the TLS handshake is part of the cost.
        let measure_secure = || async {
            let mut client = secure.client(Some(&cert), Some(&token)).await?;
            secure_past(&mut client, n).await
        };
        let (a, b) = if round % 2 == 0 {
            let a = gateway_past(&plain, TOPIC, n).await?.0;
            (a, measure_secure().await?)
        } else {
            let b = measure_secure().await?;
            (gateway_past(&plain, TOPIC, n).await?.0, b)
        };
        eprintln!(
            "round {round}: plaintext {:?} ({:.0}/s), jwt+mtls {:?} ({:.0}/s), ratio {:.3}",
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
