//! Replicas of one gateway (two processes, same name and config, same Kafka cluster) serve
//! any subscription: a live stream whose replica is killed with SIGKILL mid-stream moves to
//! the other and continues, every offset exactly once and in order, through the Rust
//! client ([`Client::subscribe_with_replicas`]) and through `alertmesh subscribe` given
//! both URLs.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use alertmesh_client::{connect_any, v1, Backoff, Subscription};
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::client::{check_exactly, earliest, request};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::process::wait_until;
use alertmesh_tests::{Gateway, Mesh, Produced, Site, WAIT, ZTF_TOPIC};
use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

/// The site's gateway and a second replica of it: same name, same config, same Kafka.
async fn two_replicas() -> Result<(Site, Gateway)> {
    let mesh = Mesh::new("lasair").topic(ZTF_TOPIC, 3).ztf_alerts();
    let spec = mesh.clone();
    let site = mesh.start().await?;
    let other = Gateway::start(&spec.spec(&site.broker.bootstrap())).await?;
    Ok((site, other))
}

/// Which of `replicas` holds the one open subscription (their `/metrics` say so).
async fn serving(replicas: [&Gateway; 2]) -> Result<usize> {
    wait_until("one replica serving the stream", WAIT, || async move {
        let mut open = Vec::new();
        for g in replicas {
            // A killed replica serves nothing.
            let m = g.metrics().await.unwrap_or_default();
            open.push(m.value("alertmesh_open_subscriptions", &[]));
        }
        match open.as_slice() {
            [a, b] if *a == 1.0 && *b == 0.0 => Some(0),
            [a, b] if *a == 0.0 && *b == 1.0 => Some(1),
            _ => None,
        }
    })
    .await
}

/// Reads `n` more alerts, failing on an end, an error or the deadline.
async fn take(sub: &mut Subscription, n: usize) -> Result<Vec<v1::Alert>> {
    let mut got = Vec::with_capacity(n);
    let read = async {
        while got.len() < n {
            match sub.next().await? {
                Some(a) => got.push(a),
                None => bail!("the stream ended after {} of {n} alerts", got.len()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(WAIT, read).await {
        Ok(r) => r?,
        Err(_) => bail!("timed out with {} of {n} alerts", got.len()),
    }
    Ok(got)
}

#[tokio::test]
async fn a_live_stream_moves_to_another_replica_when_its_replica_is_killed() -> Result<()> {
    let (mut site, mut other) = two_replicas().await?;
    let mut produced: Vec<Produced> = site.produced.clone();
    let gateways = [site.gateway.endpoint()?, other.endpoint()?];
    let (client, replicas) = connect_any(&gateways).await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    // A small batch bound keeps part of the backlog unsent when the replica dies.
    req.max_batch_alerts = 4;
    let mut sub = client
        .subscribe_with_replicas(&replicas, req)
        .await?
        .with_backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
        ));
    let mut alerts = take(&mut sub, 10).await?;

    // Twice: kill -9 the replica serving the stream while alerts are being produced, and
    // bring it back as a spare for the next round.
    for round in 0..2 {
        let killed = serving([&site.gateway, &other]).await?;
        let more = ztf_records(3, now_ms(), 1000)?;
        let (half, rest) = more.split_at(more.len() / 2);
        produced.extend(site.broker.produce_all(ZTF_TOPIC, half).await?);
        if killed == 0 {
            site.gateway.kill();
        } else {
            other.kill();
        }
        produced.extend(site.broker.produce_all(ZTF_TOPIC, rest).await?);
        alerts.extend(take(&mut sub, produced.len() - alerts.len()).await?);
        let now = serving([&site.gateway, &other]).await?;
        ensure!(
            now != killed,
            "round {round}: still served by the killed replica"
        );
        if killed == 0 {
            site.gateway.start_again().await?;
        } else {
            other.start_again().await?;
        }
    }

    ensure!(sub.reconnects() >= 2, "reconnects: {}", sub.reconnects());
    let expected: Vec<&Produced> = produced.iter().collect();
    check_exactly(&alerts, &expected, "lasair")?;
    Ok(())
}

/// Reads `alertmesh subscribe --format native` lines until `seen` holds `n` positions.
async fn read_lines(
    lines: &mut Lines<BufReader<ChildStdout>>,
    n: usize,
    seen: &mut Vec<(i32, i64)>,
) -> Result<()> {
    while seen.len() < n {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .with_context(|| format!("timed out with {} of {n} lines", seen.len()))??
            .with_context(|| format!("the CLI stopped after {} of {n} lines", seen.len()))?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let partition = v["partition"].as_i64().context("partition")? as i32;
        let offset = v["offset"].as_i64().context("offset")?;
        seen.push((partition, offset));
    }
    Ok(())
}

#[tokio::test]
async fn the_cli_given_two_replicas_moves_a_live_stream_when_one_is_killed() -> Result<()> {
    let (mut site, mut other) = two_replicas().await?;
    let mut produced: Vec<Produced> = site.produced.clone();
    // Both URLs, once as a comma list and once more with the flag repeated (the duplicate
    // is harmless: it is one more replica to try).
    let mut child = tokio::process::Command::new(alertmesh_bin())
        .arg("subscribe")
        .arg("--gateway")
        .arg(format!("{},{}", site.gateway.grpc_url(), other.grpc_url()))
        .arg("--gateway")
        .arg(other.grpc_url())
        .args([
            "--topic", ZTF_TOPIC, "--from", "earliest", "--format", "native",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn alertmesh subscribe")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen: Vec<(i32, i64)> = Vec::new();
    read_lines(&mut lines, produced.len(), &mut seen).await?;

    for _ in 0..2 {
        let killed = serving([&site.gateway, &other]).await?;
        let more = ztf_records(3, now_ms(), 1000)?;
        let (half, rest) = more.split_at(more.len() / 2);
        produced.extend(site.broker.produce_all(ZTF_TOPIC, half).await?);
        if killed == 0 {
            site.gateway.kill();
        } else {
            other.kill();
        }
        produced.extend(site.broker.produce_all(ZTF_TOPIC, rest).await?);
        read_lines(&mut lines, produced.len(), &mut seen).await?;
        if killed == 0 {
            site.gateway.start_again().await?;
        } else {
            other.start_again().await?;
        }
    }
    child.start_kill()?;
    let out = child.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("resumed"),
        "the CLI did not report a move: {stderr}"
    );

    // Every produced offset exactly once, in offset order within each partition.
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for &(p, o) in &seen {
        if let Some(prev) = last.insert(p, o) {
            ensure!(o > prev, "partition {p}: offset {o} after {prev}");
        }
    }
    let mut got = seen.clone();
    got.sort();
    let mut want: Vec<(i32, i64)> = produced
        .iter()
        .map(|p| (p.record.partition, p.offset))
        .collect();
    want.sort();
    ensure!(got == want, "got {got:?}\nwant {want:?}");
    Ok(())
}
