//! Live streams: `start = latest` sees only what arrives after subscribing, promptly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alertmesh_tests::client::{check_exactly, latest, request};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Mesh, Produced, Site, WAIT, ZTF_TOPIC};
use anyhow::{bail, ensure, Result};

#[tokio::test]
async fn latest_delivers_only_new_alerts_each_within_one_second() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    expect_live_delivery(&site).await
}

#[tokio::test]
async fn latest_on_an_empty_topic_delivers_the_first_alerts() -> Result<()> {
    let site = Mesh::new("lasair").topic(ZTF_TOPIC, 3).start().await?;
    expect_live_delivery(&site).await
}

/// Subscribes at `latest`, produces 30 alerts one by one and checks that exactly those
/// arrive, each within 1 s of being produced.
async fn expect_live_delivery(site: &Site) -> Result<()> {
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = latest();
    let mut stream = client.subscribe(req).await?.into_inner();
    site.gateway
        .wait_metrics("one open subscription", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 1.0
        })
        .await?;

    const NEW: usize = 30;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while got.len() < NEW {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => bail!("timed out with {} of {NEW} live alerts", got.len()),
                Ok(Err(status)) => bail!("live stream failed: {status}"),
                Ok(Ok(None)) => bail!("live stream ended after {} alerts", got.len()),
                Ok(Ok(Some(batch))) => {
                    let at = Instant::now();
                    got.extend(batch.alerts.into_iter().map(|a| (a, at)));
                }
            }
        }
        Ok((got, stream))
    });

    // Produce one by one, like a survey does, remembering when each was sent.
    let records = ztf_records(3, now_ms(), 1)?;
    let mut sent_at: HashMap<(i32, i64), Instant> = HashMap::new();
    let mut produced: Vec<Produced> = Vec::new();
    for record in records.iter().take(NEW) {
        let sent = Instant::now();
        let p = site.broker.produce(ZTF_TOPIC, record).await?;
        sent_at.insert((record.partition, p.offset), sent);
        produced.push(p);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (got, mut stream) = reader.await??;
    let alerts: Vec<_> = got.iter().map(|(a, _)| a.clone()).collect();
    let want: Vec<&Produced> = produced.iter().collect();
    // Exactly the new records: none of the 45 that were there before subscribing.
    check_exactly(&alerts, &want, "lasair")?;
    for (alert, received) in &got {
        let sent = sent_at[&(alert.partition, alert.offset)];
        let latency = received.duration_since(sent);
        ensure!(
            latency < Duration::from_secs(1),
            "{} arrived {latency:?} after it was produced",
            alert.r#ref
        );
    }
    // Nothing more arrives.
    let extra = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
    ensure!(
        extra.is_err(),
        "unexpected message after the new alerts: {extra:?}"
    );
    Ok(())
}

/// A subscription from the beginning of an empty topic reaches each partition's end, then
/// joins the shared tail, while alerts are being written one by one: every alert arrives
/// exactly once. Where a reader found a partition's end must be where its fetch stood; the
/// high watermark looked up a moment later is past any alert written in between, which
/// the subscription then counted as delivered and skipped.
#[tokio::test]
async fn earliest_on_an_empty_topic_written_meanwhile_misses_nothing() -> Result<()> {
    let site = Mesh::new("lasair").topic(ZTF_TOPIC, 3).start().await?;
    let mut client = site.gateway.client().await?;
    let records = ztf_records(3, now_ms(), 1)?;
    let mut produced: Vec<Produced> = Vec::new();
    // Several subscriptions, each started while alerts are being written, so that some
    // partition's end is reached just before an alert lands there.
    let mut streams = Vec::new();
    for record in &records {
        if produced.len().is_multiple_of(20) {
            let mut req = request(ZTF_TOPIC);
            req.start = alertmesh_tests::client::earliest();
            streams.push((produced.len(), client.subscribe(req).await?.into_inner()));
        }
        produced.push(site.broker.produce(ZTF_TOPIC, record).await?);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let want: Vec<&Produced> = produced.iter().collect();
    for (at, mut stream) in streams {
        let alerts = alertmesh_tests::client::take(&mut stream, want.len(), WAIT).await?;
        check_exactly(&alerts, &want, "lasair")
            .map_err(|e| e.context(format!("subscribed after {at} alerts")))?;
    }
    Ok(())
}

/// A topic that gains partitions: `latest` subscriptions made before and after read them
/// all. The topic's shared tail had started over the old partitions, and neither a
/// subscription at it nor one joining it saw the new ones' alerts.
#[tokio::test]
async fn subscriptions_made_before_and_after_a_topic_grew_read_its_new_partitions() -> Result<()> {
    if !alertmesh_tests::kafka::adds_partitions() {
        return Ok(());
    }
    let mut site = Mesh::new("lasair").topic(ZTF_TOPIC, 2).start().await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = latest();
    // The first live subscription starts the topic's tail over two partitions; another
    // names partition 0 alone (from its start), and keeps to it.
    let mut first = client.subscribe(req.clone()).await?.into_inner();
    let mut only_0 = request(ZTF_TOPIC);
    only_0.start = alertmesh_tests::client::start_offsets(&[(0, 0)]);
    let mut only_0 = client.subscribe(only_0).await?.into_inner();
    site.gateway
        .wait_metrics("two open subscriptions", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 2.0
        })
        .await?;
    site.broker.add_partitions(ZTF_TOPIC, 3).await?;
    let mut second = client.subscribe(req).await?.into_inner();
    site.gateway
        .wait_metrics("three open subscriptions", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 3.0
        })
        .await?;
    let records = ztf_records(3, now_ms(), 1)?;
    let produced = site.broker.produce_all(ZTF_TOPIC, &records[..9]).await?;
    ensure!(
        produced.iter().any(|p| p.record.partition == 2),
        "nothing written to the new partition"
    );
    let alerts = alertmesh_tests::client::take(&mut second, produced.len(), WAIT).await?;
    let want: Vec<&Produced> = produced.iter().collect();
    check_exactly(&alerts, &want, "lasair")?;
    // The subscription made before takes the new partition on too.
    let alerts = alertmesh_tests::client::take(&mut first, produced.len(), WAIT).await?;
    check_exactly(&alerts, &want, "lasair")?;
    let zero: Vec<&Produced> = produced
        .iter()
        .filter(|p| p.record.partition == 0)
        .collect();
    let alerts = alertmesh_tests::client::take(&mut only_0, zero.len(), WAIT).await?;
    check_exactly(&alerts, &zero, "lasair")?;
    let more = tokio::time::timeout(Duration::from_millis(700), only_0.message()).await;
    ensure!(more.is_err(), "a stream of partition 0 got more: {more:?}");
    Ok(())
}
