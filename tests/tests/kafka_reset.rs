//! A gateway's Kafka cluster replaced under it: the broker is killed and a new, empty one
//! starts on the same address (same cluster id), as after a reset or a rebuilt cluster.
//! The gateway must stay up, serve the new cluster, not lose the new topic's records
//! silently, and keep the revocations it knew.

use std::time::{Duration, Instant};

use alertmesh_tests::auth::{self, Pki, Secure, SecureSpec};
use alertmesh_tests::client::{collect, earliest, request, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Broker, ZTF_TOPIC};
use anyhow::{bail, ensure, Result};

/// How long the old broker stays dead: long enough for the gateway's clients to notice.
const DOWN: Duration = Duration::from_secs(12);

/// A broker with the 45 ZTF alerts in `ztf.alerts`, and a gateway `lasair` with `[auth]`.
async fn lasair(pki: &Pki) -> Result<(Broker, Secure)> {
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 2).await?;
    let records = ztf_records(2, now_ms() - 3_600_000, 1000)?;
    broker.produce_all(ZTF_TOPIC, &records).await?;
    let spec = SecureSpec::new("lasair", &broker.bootstrap()).topic(ZTF_TOPIC, false);
    let gw = Secure::start(pki, spec).await?;
    Ok((broker, gw))
}

/// Fails if the gateway process has exited at any time during `watch`.
async fn stays_alive(gw: &mut Secure, watch: Duration) -> Result<()> {
    let deadline = Instant::now() + watch;
    while Instant::now() < deadline {
        if let Some(exit) = gw.gateway.exited() {
            bail!(
                "gateway exited with {exit}; stderr tail:\n{}",
                gw.gateway.stderr_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Reads `topic` from earliest to now; the status of a refused call.
async fn read_all(client: &mut auth::Client, topic: &str) -> Result<usize, tonic::Status> {
    let mut req = request(topic);
    req.start = earliest();
    req.end = until_now();
    let stream = client.subscribe(req).await?.into_inner();
    let got = collect(stream, Duration::from_secs(20)).await;
    match got.end {
        Some(Err(s)) => Err(s),
        Some(Ok(())) => Ok(got.alerts.len()),
        None => Err(tonic::Status::deadline_exceeded("the stream did not end")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_with_auth_survives_its_kafka_being_replaced() -> Result<()> {
    let pki = Pki::new()?;
    let (mut broker, mut gw) = lasair(&pki).await?;
    let cert = pki.client("alice")?;
    let token = gw.issue("alice", &["subscribe:ztf.*"], "1h").await?;
    let mut client = gw.client(Some(&cert), Some(&token)).await?;
    ensure!(read_all(&mut client, ZTF_TOPIC).await? == 45);

    broker.kill();
    tokio::time::sleep(DOWN).await;
    broker.replace().await?;
    stays_alive(&mut gw, Duration::from_secs(30)).await?;

    // The new cluster serves once its topic exists again.
    broker.create_topic(ZTF_TOPIC, 2).await?;
    let records = ztf_records(2, now_ms() - 60_000, 100)?;
    broker.produce_all(ZTF_TOPIC, &records[..10]).await?;
    let mut client = gw.client(Some(&cert), Some(&token)).await?;
    let n = read_all(&mut client, ZTF_TOPIC).await?;
    ensure!(n == 10, "read {n} alerts from the new cluster, want 10");
    stays_alive(&mut gw, Duration::from_secs(5)).await?;
    Ok(())
}
