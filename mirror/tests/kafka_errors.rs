//! A Kafka-source mirror meeting bad input and missing or mismatched topics: dead letters,
//! backoff until the source exists, an existing destination with too few partitions, and a
//! time start on a broker that answers time look-ups with the earliest offset.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/fixtures.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use alertmesh_mirror::{Mirror, MirrorState, Start};
use anyhow::Result;
use broker::{free_port, produce, Broker};
use fixtures::{env, kafka_spec, kafka_spec_at, wait_for, ztf_alerts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_goes_to_the_dlq_once_and_the_rest_is_copied() -> Result<()> {
    let (source, local) = (
        Broker::start("survey").await?,
        Broker::start("lasair").await?,
    );
    source.create_topic("ztf", 1).await?;
    let alerts = ztf_alerts()?;
    let producer = source.producer(&[])?;
    produce(&producer, "ztf", 0, None, &alerts[0].payload, &[], 1000).await?;
    produce(
        &producer,
        "ztf",
        0,
        None,
        b"not an alert",
        &[("trace", "g")],
        1001,
    )
    .await?;
    produce(&producer, "ztf", 0, None, &alerts[1].payload, &[], 1002).await?;
    produce(
        &producer,
        "ztf",
        0,
        None,
        b"\x00\x00\x00\x00\x01also garbage",
        &[],
        1003,
    )
    .await?;

    let (e, cancel) = env("lasair", &local);
    let mirror = Mirror::start(kafka_spec("m", &source, "ztf", None), e);
    let status = wait_for(
        &mirror,
        |s| s.positions == [(0, 4)],
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!((status.copied, status.dead_lettered), (2, 2));
    assert_eq!(
        status.destination, "ztf",
        "a kafka source's default destination is its topic"
    );
    cancel.cancel();
    mirror.join().await;

    // A restart after the dead letters must not write them again.
    let (e, cancel) = env("lasair", &local);
    let mirror = Mirror::start(kafka_spec("m", &source, "ztf", None), e);
    wait_for(
        &mirror,
        |s| s.state == MirrorState::Running,
        Duration::from_secs(30),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mirror.status().dead_lettered, 0);
    cancel.cancel();
    mirror.join().await;

    let copied = local.read_all("ztf").await?;
    let keys: Vec<String> = copied
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        keys,
        [
            format!("ZTF:{}", alerts[0].object_id),
            format!("ZTF:{}", alerts[1].object_id)
        ]
    );
    let dlq = local.read_all("ztf.dlq").await?;
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq[0].payload, b"not an alert");
    assert_eq!(dlq[0].key, None, "the original key (none)");
    assert_eq!(dlq[0].header("trace").as_deref(), Some("g"));
    assert_eq!(
        dlq[0].header("am-source"),
        Some(format!("kafka://{}/ztf/0/1", source.bootstrap()))
    );
    let reason = dlq[0].header("am-error").unwrap_or_default();
    assert!(reason.contains("cannot decode"), "{reason}");
    assert_eq!(
        dlq[1].header("am-source"),
        Some(format!("kafka://{}/ztf/0/3", source.bootstrap()))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_means_backoff_then_everything_is_copied_when_it_appears() -> Result<()> {
    let local = Broker::start("lasair").await?;
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let (e, cancel) = env("lasair", &local);
    let mirror = Mirror::start(kafka_spec_at("m", &bootstrap, "ztf", Some("ztf.alerts")), e);

    let status = wait_for(
        &mirror,
        |s| s.state == MirrorState::Backoff,
        Duration::from_secs(30),
    )
    .await?;
    assert!(status.error.contains(&bootstrap), "{}", status.error);
    assert!(status.errors >= 1);
    // No busy loop: over 4 s at most a handful of attempts (each bounded by the timeout,
    // spaced by a growing backoff).
    let before = mirror.status().errors;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = mirror.status();
    assert!(
        after.errors - before <= 6,
        "{} errors in 4 s",
        after.errors - before
    );
    assert!(after.copied == 0 && after.reconnects >= 1, "{after:?}");

    let source = Broker::start_on("survey", port).await?;
    source.create_topic("ztf", 2).await?;
    let alerts = ztf_alerts()?;
    let producer = source.producer(&[])?;
    for (i, a) in alerts.iter().enumerate() {
        produce(
            &producer,
            "ztf",
            i as i32 % 2,
            None,
            &a.payload,
            &[],
            1000 + i as i64,
        )
        .await?;
    }
    // Backoff is capped at 30 s; with a few failures it is far below.
    let started = Instant::now();
    let status = wait_for(&mirror, |s| s.copied == 45, Duration::from_secs(60)).await?;
    assert_eq!(status.state, MirrorState::Running);
    assert!(
        status.error.is_empty(),
        "the error clears once copying resumes: {}",
        status.error
    );
    eprintln!(
        "caught up {:?} after the source appeared",
        started.elapsed()
    );
    cancel.cancel();
    mirror.join().await;
    assert_eq!(local.read_all("ztf.alerts").await?.len(), 45);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_destination_with_fewer_partitions_is_a_clear_error() -> Result<()> {
    let (source, local) = (
        Broker::start("survey").await?,
        Broker::start("lasair").await?,
    );
    source.create_topic("ztf", 3).await?;
    local.create_topic("small", 1).await?;
    let (e, cancel) = env("lasair", &local);
    let mirror = Mirror::start(kafka_spec("m", &source, "ztf", Some("small")), e);
    let status = wait_for(
        &mirror,
        |s| s.state == MirrorState::Backoff,
        Duration::from_secs(30),
    )
    .await?;
    assert!(
        status
            .error
            .contains("\"small\" has 1 partitions but the source has 3"),
        "{}",
        status.error
    );
    cancel.cancel();
    let last = tokio::time::timeout(Duration::from_secs(10), mirror.join()).await?;
    assert_eq!(
        last.state,
        MirrorState::Stopped,
        "a cancel ends the backoff at once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_start_skips_older_records() -> Result<()> {
    let (source, local) = (
        Broker::start("survey").await?,
        Broker::start("lasair").await?,
    );
    source.create_topic("ztf", 2).await?;
    let alerts = ztf_alerts()?;
    let producer = source.producer(&[])?;
    for (i, a) in alerts.iter().take(20).enumerate() {
        produce(
            &producer,
            "ztf",
            i as i32 % 2,
            None,
            &a.payload,
            &[],
            1_000_000 + i as i64 * 1000,
        )
        .await?;
    }
    let (e, cancel) = env("lasair", &local);
    let mut spec = kafka_spec("m", &source, "ztf", None);
    spec.start = Start::Time(1_000_000 + 12_000);
    let mirror = Mirror::start(spec, e);
    wait_for(&mirror, |s| s.copied == 8, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    assert_eq!(mirror.join().await.copied, 8);
    let copied = local.read_all("ztf").await?;
    let mut ts: Vec<i64> = copied.iter().filter_map(|r| r.timestamp).collect();
    ts.sort_unstable();
    assert_eq!(
        ts,
        (12..20).map(|i| 1_000_000 + i * 1000).collect::<Vec<_>>()
    );
    Ok(())
}
