//! A gateway's Kafka cluster replaced under it: the broker is killed and a new, empty one
//! starts on the same address (same cluster id), as after a reset or a rebuilt cluster.
//! The gateway must stay up, serve the new cluster, not lose the new topic's records
//! silently, and keep the revocations it knew.

use std::time::{Duration, Instant};

use alertmesh_proto::v1::CommitCursorRequest;
use alertmesh_tests::auth::{self, jti_of, Pki, Secure, SecureSpec};
use alertmesh_tests::client::{
    collect, earliest, latest, partition_offsets, request, take, until_now,
};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Broker, Mesh, ZTF_TOPIC};
use anyhow::{bail, ensure, Result};
use tonic::Code;

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

/// Fails if the gateway process has exited, or a thread of it panicked, at any time
/// during `watch`.
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
    let log = gw.gateway.stderr_tail(2000);
    ensure!(
        !log.contains("panicked"),
        "a gateway thread panicked:\n{log}"
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn every_kafka_reader_of_a_gateway_survives_an_immediate_replacement() -> Result<()> {
    let pki = Pki::new()?;
    let (mut broker, mut gw) = lasair(&pki).await?;
    let cert = pki.client("alice")?;
    let token = gw.issue("alice", &["subscribe:ztf.*"], "1h").await?;
    let mut client = gw.client(Some(&cert), Some(&token)).await?;
    // The cursor store's reader, and a live subscriber on the shared tail, besides the
    // credentials reader.
    client
        .commit_cursor(CommitCursorRequest {
            name: "night-1".to_owned(),
            topic: ZTF_TOPIC.to_owned(),
            offsets: partition_offsets(&[(0, 5)]),
        })
        .await?;
    let mut req = request(ZTF_TOPIC);
    req.start = latest();
    let mut live = client.subscribe(req).await?.into_inner();
    let records = ztf_records(2, now_ms(), 1)?;
    broker.produce_all(ZTF_TOPIC, &records[..2]).await?;
    take(&mut live, 2, Duration::from_secs(20)).await?;

    // No pause: the new broker listens as soon as it can.
    broker.replace().await?;
    broker.create_topic(ZTF_TOPIC, 2).await?;
    stays_alive(&mut gw, Duration::from_secs(20)).await?;
    let n = read_all(&mut client, ZTF_TOPIC).await?;
    ensure!(n == 0, "the new topic is empty, read {n}");
    // The cursor topic is back for commits.
    let committed = client
        .commit_cursor(CommitCursorRequest {
            name: "night-2".to_owned(),
            topic: ZTF_TOPIC.to_owned(),
            offsets: partition_offsets(&[(0, 0)]),
        })
        .await;
    ensure!(
        committed.is_ok(),
        "commit after the replacement: {committed:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(20), live.message()).await;
    ensure!(
        matches!(&end, Ok(Err(s)) if s.code() == Code::DataLoss),
        "live stream after the replacement: {end:?}, want DATA_LOSS"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_waiting_on_a_stalled_subscriber_survives_a_replacement() -> Result<()> {
    let pki = Pki::new()?;
    let (mut broker, mut gw) = lasair(&pki).await?;
    let cert = pki.client("alice")?;
    let token = gw.issue("alice", &["subscribe:ztf.*"], "1h").await?;
    let mut client = gw.client(Some(&cert), Some(&token)).await?;
    // One alert per batch, never read: the subscriber's own reader soon waits on it,
    // with the rest of the topic in its prefetch queue and its fetches still going.
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.max_batch_alerts = 1;
    let stalled = client.subscribe(req).await?.into_inner();
    // (A fresh connection per stream: the stalled one holds its connection's window.)
    let mut client = gw.client(Some(&cert), Some(&token)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    broker.replace().await?;
    broker.create_topic(ZTF_TOPIC, 2).await?;
    stays_alive(&mut gw, Duration::from_secs(20)).await?;
    // Read again, the subscriber gets what was read before, then a clear end: DATA_LOSS,
    // or UNAVAILABLE if its reader looked while the new cluster had no topic yet.
    let got = collect(stalled, Duration::from_secs(20)).await;
    ensure!(
        matches!(&got.end, Some(Err(s)) if s.code() == Code::DataLoss
            || (s.code() == Code::Unavailable && s.message().contains(ZTF_TOPIC))),
        "the stalled stream ended with {:?} after {} alerts, want DATA_LOSS or UNAVAILABLE",
        got.end,
        got.alerts.len()
    );
    let n = read_all(&mut client, ZTF_TOPIC).await?;
    ensure!(n == 0, "the new topic is empty, read {n}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn live_subscriber_gets_data_loss_when_kafka_goes_back() -> Result<()> {
    let mut site = Mesh::new("lasair").topic(ZTF_TOPIC, 2).start().await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = latest();
    let mut stream = client.subscribe(req).await?.into_inner();
    site.gateway
        .wait_metrics("one open subscription", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 1.0
        })
        .await?;
    // 20 alerts over 2 partitions: the shared tail reaches offset 10 in each.
    let records = ztf_records(2, now_ms(), 1)?;
    site.broker.produce_all(ZTF_TOPIC, &records[..20]).await?;
    let got = take(&mut stream, 20, Duration::from_secs(20)).await?;
    ensure!(got.len() == 20);

    site.broker.kill();
    tokio::time::sleep(DOWN).await;
    site.broker.replace().await?;
    site.broker.create_topic(ZTF_TOPIC, 2).await?;
    // The new cluster numbers from 0: fewer records than the old one had.
    site.broker.produce_all(ZTF_TOPIC, &records[..6]).await?;

    // The subscriber is told, with the partitions and offsets; nothing is skipped silently.
    let status = match tokio::time::timeout(Duration::from_secs(40), stream.message()).await {
        Err(_) => bail!("no error and no alerts 40 s after kafka went back"),
        Ok(Ok(Some(batch))) => {
            // Delivering the new records from offset 0 would be correct too.
            let refs: Vec<String> = batch.alerts.iter().map(|a| a.r#ref.clone()).collect();
            bail!("alerts after kafka went back, want DATA_LOSS: {refs:?}");
        }
        Ok(Ok(None)) => bail!("stream ended without an error"),
        Ok(Err(status)) => status,
    };
    ensure!(
        status.code() == Code::DataLoss,
        "got {:?} {:?}, want DATA_LOSS",
        status.code(),
        status.message()
    );
    for needle in [ZTF_TOPIC, "partition", "offset 10", "went back"] {
        ensure!(
            status.message().contains(needle),
            "message {:?} does not say {needle:?}",
            status.message()
        );
    }
    ensure!(site.gateway.exited().is_none(), "gateway exited");

    // A new subscription reads the new cluster from offset 0.
    // Until the gateway's metadata client has reconnected to the new cluster, a new
    // subscription may be refused with UNAVAILABLE, which a client retries.
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match client.subscribe(req.clone()).await {
            Ok(s) => break s.into_inner(),
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("subscribe after kafka went back: {s}"),
        }
    };
    let got = collect(stream, Duration::from_secs(20)).await;
    ensure!(matches!(got.end, Some(Ok(()))), "{:?}", got.end);
    ensure!(
        got.alerts.len() == 6,
        "read {} alerts, want 6",
        got.alerts.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_survive_kafka_being_replaced() -> Result<()> {
    let pki = Pki::new()?;
    let (mut broker, mut gw) = lasair(&pki).await?;
    let cert = pki.client("alice")?;
    let revoked = gw.issue("alice", &["subscribe:ztf.*"], "1h").await?;
    let valid = gw.issue("bob", &["subscribe:ztf.*"], "1h").await?;
    let jti = jti_of(&revoked)?;
    let out = gw.creds(&["revoke", &jti]).await?;
    ensure!(
        out.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut client = gw.client(Some(&cert), Some(&revoked)).await?;
    let refused = wait_refused(&mut client).await;
    ensure!(refused.is_ok(), "revoked token still reads: {refused:?}");

    broker.kill();
    tokio::time::sleep(DOWN).await;
    broker.replace().await?;
    broker.create_topic(ZTF_TOPIC, 2).await?;
    // The gateway writes what it knows back to the new cluster's credentials topic.
    let deadline = Instant::now() + Duration::from_secs(40);
    while !gw
        .gateway
        .stderr_tail(400)
        .contains("credentials topic restored")
    {
        ensure!(
            Instant::now() < deadline,
            "credentials not restored; stderr tail:\n{}",
            gw.gateway.stderr_tail(40)
        );
        ensure!(gw.gateway.exited().is_none(), "gateway exited");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut client = gw.client(Some(&cert), Some(&revoked)).await?;
    wait_refused(&mut client).await?;

    // A restarted gateway loads the revocation from the new cluster.
    gw.gateway.restart().await?;
    let mut client = gw.client(Some(&cert), Some(&revoked)).await?;
    wait_refused(&mut client).await?;
    let mut client = gw.client(Some(&cert), Some(&valid)).await?;
    let n = read_all(&mut client, ZTF_TOPIC).await?;
    ensure!(n == 0, "the new topic is empty, read {n}");
    Ok(())
}

/// Expects calls to be refused as revoked within a few seconds (the gateway learns of a
/// revocation by reading the credentials topic).
async fn wait_refused(client: &mut auth::Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = read_all(client, ZTF_TOPIC).await;
        match &got {
            Err(s) if s.code() == Code::Unauthenticated && s.message().contains("revoked") => {
                return Ok(())
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(n) => bail!("revoked token read {n} alerts"),
            Err(s) => bail!(
                "got {:?} {:?}, want UNAUTHENTICATED revoked",
                s.code(),
                s.message()
            ),
        }
    }
}
