//! Many subscribers, one Kafka read; and subscriptions are freed when clients leave.

use alertmesh_proto::v1::alert_mesh_client::AlertMeshClient;
use alertmesh_tests::client::{check_exactly, earliest, latest, request, take, until_time};
use alertmesh_tests::fixtures::{now_ms, synthetic_records, ztf_records};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Mesh, Produced, WAIT, ZTF_TOPIC};
use anyhow::{ensure, Context, Result};
use tonic::transport::Endpoint;

const SUBSCRIBERS: usize = 50;

#[tokio::test]
async fn fifty_live_subscribers_all_receive_everything_from_one_tail_reader() -> Result<()> {
    // The topic already holds the fixtures; live subscribers must see only the new ones.
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    // A few connections, many streams each, like real clients behind a few hosts.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(site.gateway.client().await?);
    }
    let mut streams = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut req = request(ZTF_TOPIC);
        req.start = latest();
        let n = clients.len();
        let response = clients[i % n].subscribe(req).await?;
        streams.push(response.into_inner());
    }
    site.gateway
        .wait_metrics("50 open subscriptions", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == SUBSCRIBERS as f64
        })
        .await?;

    let records = ztf_records(3, now_ms(), 1)?;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let n = records.len();
            tokio::spawn(async move { take(&mut s, n, WAIT * 2).await.map(|a| (a, s)) })
        })
        .collect();
    let produced = site.broker.produce_all(ZTF_TOPIC, &records).await?;
    let want: Vec<&Produced> = produced.iter().collect();
    let mut still_open = Vec::new();
    for (i, reader) in readers.into_iter().enumerate() {
        let (alerts, stream) = reader.await?.with_context(|| format!("subscriber {i}"))?;
        check_exactly(&alerts, &want, "lasair").with_context(|| format!("subscriber {i}"))?;
        still_open.push(stream);
    }

    let m = site.gateway.metrics().await?;
    let tail = m.value("alertmesh_kafka_readers_started_total", &[("kind", "tail")]);
    let own = m.value("alertmesh_kafka_readers_started_total", &[("kind", "own")]);
    assert_eq!(
        tail, 1.0,
        "one shared tail reader for {SUBSCRIBERS} live subscribers (own: {own})"
    );
    assert!(
        own < SUBSCRIBERS as f64 / 2.0,
        "{own} own readers for live subscribers"
    );
    assert_eq!(
        m.value("alertmesh_open_subscriptions", &[]),
        SUBSCRIBERS as f64
    );
    let served = m.value("alertmesh_alerts_served_total", &[("topic", ZTF_TOPIC)]);
    assert_eq!(
        served,
        (SUBSCRIBERS * records.len()) as f64,
        "alerts served"
    );
    drop(still_open);
    Ok(())
}

#[tokio::test]
async fn client_disconnect_frees_its_subscriptions() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let mut live = request(ZTF_TOPIC);
    live.start = latest();
    let mut past = request(ZTF_TOPIC);
    past.start = earliest();
    // An end in the future keeps the stream open after the past is read.
    let mut window = request(ZTF_TOPIC);
    window.start = earliest();
    window.end = until_time(now_ms() + 3_600_000);
    let s1 = client.subscribe(live).await?.into_inner();
    let mut s2 = client.subscribe(past).await?.into_inner();
    let mut s3 = client.subscribe(window).await?.into_inner();
    // The past readers are flowing: a 1-alert read from each.
    take(&mut s2, 1, WAIT).await?;
    take(&mut s3, 1, WAIT).await?;
    site.gateway
        .wait_metrics("three open subscriptions", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 3.0
        })
        .await?;

    // Dropping a stream cancels it; dropping the client closes the connection.
    drop(s2);
    site.gateway
        .wait_metrics("two open subscriptions after one stream is dropped", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 2.0
        })
        .await?;
    drop((s1, s3, client));
    site.gateway
        .wait_metrics("no open subscriptions after disconnect", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 0.0
        })
        .await?;
    // The gateway still serves new subscribers afterwards.
    let mut client = site.gateway.client().await?;
    let mut again = request(ZTF_TOPIC);
    again.start = earliest();
    let mut s = client.subscribe(again).await?.into_inner();
    take(&mut s, 45, WAIT).await?;
    Ok(())
}

/// A live subscriber that stops reading while alerts keep arriving falls off the shared
/// tail (whose buffer is bounded in bytes), reads on its own from where it stood, and still
/// receives every alert exactly once, in order; a subscriber that keeps up is unaffected.
#[tokio::test]
async fn a_stalled_subscriber_falls_behind_the_tail_and_catches_up_on_its_own() -> Result<()> {
    const N: usize = 192;
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 3).await?;
    // A 1 MiB tail and one 64 KB alert per batch: a stalled stream holds little.
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(ZTF_TOPIC, "ZTF", "avro-ocf")
        .extra("[limits]\ntail_buffer_bytes = 1048576\nmax_batch_bytes = 65536\n");
    let gateway = Gateway::start(&spec).await?;
    // HTTP/2's default 64 KiB windows: a subscriber that does not read stalls its stream
    // after a few alerts.
    let channel = Endpoint::from_shared(gateway.grpc_url())?.connect().await?;
    let mut slow_client = AlertMeshClient::new(channel).max_decoding_message_size(64 << 20);
    let mut fast_client = gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = latest();
    let mut slow = slow_client.subscribe(req.clone()).await?.into_inner();
    let mut fast = fast_client.subscribe(req).await?.into_inner();
    gateway
        .wait_metrics("2 open subscriptions", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 2.0
        })
        .await?;

    // 12 MB of 64 KB alerts, twelve times what the tail keeps.
    let records = synthetic_records(N, 64 * 1024, 3, now_ms());
    let fast_reader = tokio::spawn(async move { take(&mut fast, N, WAIT * 4).await });
    let produced = broker.produce_all(ZTF_TOPIC, &records).await?;
    let fast_alerts = fast_reader.await??;
    let want: Vec<&Produced> = produced.iter().collect();
    check_exactly(&fast_alerts, &want, "lasair").context("the subscriber that kept up")?;

    // Only now does the stalled subscriber read: the tail no longer holds what it missed.
    let slow_alerts = take(&mut slow, N, WAIT * 4).await?;
    check_exactly(&slow_alerts, &want, "lasair").context("the stalled subscriber")?;
    let m = gateway.metrics().await?;
    let fallbacks = m.value("alertmesh_subscriber_fallbacks_total", &[]);
    ensure!(
        fallbacks >= 1.0,
        "the stalled subscriber never fell back to its own reader"
    );
    ensure!(
        m.value("alertmesh_kafka_readers_started_total", &[("kind", "tail")]) == 1.0,
        "one tail reader"
    );
    Ok(())
}
