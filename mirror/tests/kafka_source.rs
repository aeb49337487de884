//! Kafka → Kafka mirroring between two real Tansu brokers, with the 45 keyless ZTF alerts
//! of the fixtures: exactly once across abrupt restarts, dead letters, backoff while the
//! source is missing, and the destination partition check.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use alertmesh_mirror::{Mirror, MirrorHandle, MirrorState, MirrorStatus};
use anyhow::{anyhow, Result};
use broker::{produce, Broker, Record};
use fixtures::{env, kafka_spec, wait_for, ztf_alerts};

const GATEWAY: &str = "lasair";

/// Produces the alerts round-robin over `partitions`, keyless, with increasing timestamps
/// and one foreign header; returns (partition, offset, payload index) per record.
async fn load(
    source: &Broker,
    topic: &str,
    partitions: i32,
    alerts: &[Vec<u8>],
    first_ts: i64,
) -> Result<Vec<(i32, i64, usize)>> {
    let producer = source.producer(&[])?;
    let mut out = Vec::new();
    for (i, payload) in alerts.iter().enumerate() {
        let p = i as i32 % partitions;
        let trace = format!("t{i}");
        let o = produce(
            &producer,
            topic,
            p,
            None,
            payload,
            &[("trace", &trace)],
            first_ts + i as i64,
        )
        .await?;
        out.push((p, o, i));
    }
    Ok(out)
}

fn by_partition(records: &[Record]) -> BTreeMap<i32, Vec<&Record>> {
    let mut map: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for r in records {
        map.entry(r.partition).or_default().push(r);
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ztf_alert_is_copied_once_with_mesh_keys_and_headers() -> Result<()> {
    let (source, local) = (
        Broker::start("survey").await?,
        Broker::start("lasair").await?,
    );
    source.create_topic("ztf", 3).await?;
    let alerts = ztf_alerts()?;
    let loaded = load(
        &source,
        "ztf",
        3,
        &alerts.iter().map(|a| a.payload.clone()).collect::<Vec<_>>(),
        1_700_000_000_000,
    )
    .await?;

    let (env, cancel) = env(GATEWAY, &local);
    let mirror = Mirror::start(
        kafka_spec("ztf-raw", &source, "ztf", Some("ztf.alerts")),
        env,
    );
    wait_for(&mirror, |s| s.copied == 45, Duration::from_secs(60)).await?;

    let copied = local.read_all("ztf.alerts").await?;
    assert_eq!(copied.len(), 45);
    for (p, records) in by_partition(&copied) {
        let expected: Vec<_> = loaded.iter().filter(|(sp, _, _)| *sp == p).collect();
        assert_eq!(records.len(), expected.len(), "partition {p}");
        for (r, (sp, so, i)) in records.iter().zip(expected) {
            let alert = &alerts[*i];
            assert_eq!(r.payload, alert.payload, "payload byte-identical");
            assert_eq!(
                r.key.as_deref(),
                Some(format!("ZTF:{}", alert.object_id).as_bytes())
            );
            assert_eq!(
                r.timestamp,
                Some(1_700_000_000_000 + *i as i64),
                "original timestamp"
            );
            assert_eq!(r.header("trace"), Some(format!("t{i}")));
            assert_eq!(r.header("am-ns").as_deref(), Some("ZTF"));
            assert_eq!(r.header("am-format").as_deref(), Some("avro-ocf"));
            let schema = r.header("am-schema").unwrap_or_default();
            assert!(
                schema.len() == 16 && schema.chars().all(|c| c.is_ascii_hexdigit()),
                "{schema}"
            );
            assert_eq!(
                r.header("am-origin"),
                None,
                "a raw record enters the mesh at the copy"
            );
            assert_eq!(r.header("am-hops").as_deref(), Some(GATEWAY));
            assert_eq!(
                r.header("am-source"),
                Some(format!("kafka://{}/ztf/{sp}/{so}", source.bootstrap()))
            );
        }
    }
    let status = mirror.status();
    assert_eq!(status.state, MirrorState::Running);
    assert_eq!(status.destination, "ztf.alerts");
    assert_eq!(status.source, format!("kafka://{}/ztf", source.bootstrap()));
    assert_eq!(
        (status.dead_lettered, status.cycles_dropped, status.errors),
        (0, 0, 0)
    );
    assert_eq!(status.positions, vec![(0, 15), (1, 15), (2, 15)]);
    assert!(
        local.read_all("ztf.alerts.dlq").await?.is_empty(),
        "dlq created, empty"
    );

    cancel.cancel();
    let status = stop(mirror).await?;
    assert_eq!(status.state, MirrorState::Stopped);
    Ok(())
}

/// Cancels and joins, returning the final status.
async fn stop(mirror: MirrorHandle) -> Result<MirrorStatus> {
    mirror.cancel();
    tokio::time::timeout(Duration::from_secs(20), mirror.join())
        .await
        .map_err(|_| anyhow!("the mirror did not stop within 20s of its cancel"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_restarts_while_the_source_grows_copy_every_alert_exactly_once() -> Result<()> {
    let (source, local) = (
        Broker::start("survey").await?,
        Broker::start("lasair").await?,
    );
    source.create_topic("ztf", 3).await?;
    let payloads: Vec<Vec<u8>> = ztf_alerts()?.into_iter().map(|a| a.payload).collect();
    // The source keeps growing in the background, an alert every 30 ms, for as long as the
    // mirror is being restarted (so every restart can land mid-copy, on any machine speed).
    let bootstrap = source.bootstrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grower = tokio::spawn({
        let payloads = payloads.clone();
        async move {
            let producer = broker::producer_for(&bootstrap)?;
            let mut n = 0usize;
            while !*stop_rx.borrow() {
                let payload = &payloads[n % payloads.len()];
                produce(
                    &producer,
                    "ztf",
                    n as i32 % 3,
                    None,
                    payload,
                    &[],
                    1_700_000_000_000 + n as i64,
                )
                .await?;
                n += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            anyhow::Ok(n)
        }
    });

    let mut rng = fixtures::Rng::seeded();
    let mut killed_while_copying = 0;
    for cycle in 0..8 {
        let (env, _cancel) = env(GATEWAY, &local);
        let mirror = Mirror::start(
            kafka_spec("ztf-raw", &source, "ztf", Some("ztf.alerts")),
            env,
        );
        if cycle % 3 == 2 {
            // Killed while connecting or recovering.
            tokio::time::sleep(Duration::from_millis(rng.below(800))).await;
        } else {
            // Killed mid-copy: once it has copied, after a random moment more (however
            // long connecting and recovering took on this machine).
            let copying = tokio::time::timeout(Duration::from_secs(30), async {
                while mirror.status().copied == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            if copying.is_ok() {
                tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
            }
        }
        if mirror.status().copied > 0 {
            killed_while_copying += 1;
        }
        mirror.abort().await;
        // A restarted process needs a moment too; requests already on the wire land first.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true)?;
    let total = grower.await??;
    assert!(
        killed_while_copying >= 3,
        "only {killed_while_copying} restarts hit a copying mirror"
    );

    let (env, cancel) = env(GATEWAY, &local);
    let mirror = Mirror::start(
        kafka_spec("ztf-raw", &source, "ztf", Some("ztf.alerts")),
        env,
    );
    wait_for(
        &mirror,
        |s| s.positions.iter().map(|(_, o)| *o as usize).sum::<usize>() == total,
        Duration::from_secs(90),
    )
    .await?;
    cancel.cancel();
    stop(mirror).await?;

    let copied = local.read_all("ztf.alerts").await?;
    let sources: Vec<String> = copied
        .iter()
        .filter_map(|r| r.header("am-source"))
        .collect();
    let unique: BTreeSet<&String> = sources.iter().collect();
    assert_eq!(unique.len(), sources.len(), "no duplicates");
    assert_eq!(copied.len(), total, "nothing lost");
    for (p, records) in by_partition(&copied) {
        let offsets: Vec<i64> = records
            .iter()
            .map(|r| {
                r.header("am-source")
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, expected,
            "partition {p}: every source offset once, in order"
        );
        for (r, o) in records.iter().zip(&offsets) {
            let n = *o as usize * 3 + p as usize;
            assert_eq!(
                r.payload,
                payloads[n % payloads.len()],
                "partition {p} offset {o}"
            );
        }
    }
    Ok(())
}
