//! Replicas of one gateway sharing a mirror (`gateway.share_mirrors`): three replicas copy
//! a live raw Kafka source while one is killed -9 and restarted, one is paused with SIGSTOP
//! past its group session (its partitions move; when it wakes, Kafka fences what it was
//! writing) and every one is restarted in turn. Every source alert must be at the
//! destination exactly once, and each replica's status must describe the whole group.
//!
//! Shared mirrors resume from what the destination committed, so they need a cluster
//! whose `read_committed` reads hide aborted records: Apache Kafka
//! (`ALERTMESH_TEST_KAFKA=apache`, `make test-apache`). With Tansu the test is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alertmesh_tests::apache::Flavor;
use alertmesh_tests::fixtures::{now_ms, ztf_alerts};
use alertmesh_tests::kafka::read_to_eof_with;
use alertmesh_tests::process::wait_until;
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Record};
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const RAW: &str = "ztf.raw";
const ALERTS: &str = "ztf.alerts";
const PARTITIONS: i32 = 6;
const REPLICAS: [&str; 3] = ["r1", "r2", "r3"];
/// Longer than any rebalance on a busy 2-core machine.
const WAIT: Duration = Duration::from_secs(120);

/// One copy at the destination: its partition, `am-origin` and `am-source`.
#[derive(Debug, Clone)]
struct Copy {
    partition: i32,
    origin: String,
    source: String,
}

/// Every committed record of the destination.
async fn copies(bootstrap: &str) -> Result<Vec<Copy>> {
    read(bootstrap, "read_committed", PARTITIONS).await
}

/// Every record of the destination (of `partitions` partitions) that a reader with
/// `isolation` sees.
async fn read(bootstrap: &str, isolation: &'static str, partitions: i32) -> Result<Vec<Copy>> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "alertmesh-tests-replicas")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10")
            .set("isolation.level", isolation)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(ALERTS, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut out = Vec::new();
        read_to_eof_with(&consumer, partitions, 0, Duration::from_secs(60), |m| {
            let header = |name: &str| alertmesh_tests::kafka::header_text(m, name);
            out.push(Copy {
                partition: m.partition(),
                origin: header("am-origin"),
                source: header("am-source"),
            });
        })?;
        Ok(out)
    })
    .await?
}

/// Waits until the destination holds at least `n` records; returns how many it holds.
async fn reaches(bootstrap: &str, n: usize) -> Result<usize> {
    wait_until(&format!("{n} records at the destination"), WAIT, || async {
        let held = copies(bootstrap).await.map(|c| c.len()).unwrap_or(0);
        (held >= n).then_some(held)
    })
    .await
}

/// Source alert `i`: a ZTF payload in partition `i % PARTITIONS`, with an `am-origin`
/// naming it (as an alert published through a survey's gateway would carry).
fn alert(i: usize, payloads: &[Bytes]) -> Record {
    Record {
        partition: (i % PARTITIONS as usize) as i32,
        key: None,
        payload: payloads[i % payloads.len()].clone(),
        headers: vec![(
            "am-origin".into(),
            Some(Bytes::from(format!("am://survey/ztf.raw/{i}"))),
        )],
        timestamp_ms: now_ms(),
    }
}

/// Produces batches of alerts into the source until `stop`; counts them in `produced`.
async fn produce_live(
    broker: Arc<Broker>,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicUsize>,
) -> Result<()> {
    let payloads: Vec<Bytes> = ztf_alerts()?.into_iter().map(|a| a.payload).collect();
    while !stop.load(Ordering::Relaxed) {
        let first = produced.load(Ordering::Relaxed);
        let batch: Vec<Record> = (first..first + 12).map(|i| alert(i, &payloads)).collect();
        broker.produce_all(RAW, &batch).await?;
        produced.fetch_add(batch.len(), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    Ok(())
}

fn signal(gateway: &Gateway, sig: &str) -> Result<()> {
    let pid = gateway.pid().context("replica not running")?;
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill {sig} {pid}: {status}");
    Ok(())
}

/// The group as `gateway` describes it: replica → source partitions, when every partition
/// is copied by exactly one of them.
async fn group(gateway: &Gateway) -> Option<BTreeMap<String, Vec<i32>>> {
    let status = gateway.mirror_status().await.ok()?;
    let m = status.first()?;
    let view: BTreeMap<String, Vec<i32>> = m
        .replicas
        .iter()
        .map(|r| (r.replica.clone(), r.partitions.clone()))
        .collect();
    let mut all: Vec<i32> = view.values().flatten().copied().collect();
    all.sort_unstable();
    (all == (0..PARTITIONS).collect::<Vec<_>>()).then_some(view)
}

/// Waits until `gateway` reports the group made of exactly `members`, sharing every partition.
async fn group_of(gateway: &Gateway, members: &[&str]) -> Result<BTreeMap<String, Vec<i32>>> {
    let want: BTreeSet<&str> = members.iter().copied().collect();
    wait_until(&format!("a group of {members:?}"), WAIT, || async {
        group(gateway)
            .await
            .filter(|g| g.keys().map(String::as_str).collect::<BTreeSet<_>>() == want)
    })
    .await
}

/// Every produced alert is at the destination once (by `am-origin`), in the partition it
/// was produced to, and each source partition's copies are in source order.
fn check_exactly_once(copied: &[Copy], produced: usize) -> Result<()> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for c in copied {
        *count.entry(c.origin.as_str()).or_default() += 1;
        let (p, o) = c
            .source
            .rsplit_once('/')
            .and_then(|(rest, o)| Some((rest.rsplit_once('/')?.1.parse().ok()?, o.parse().ok()?)))
            .with_context(|| format!("am-source {:?}", c.source))?;
        ensure!(
            p == c.partition,
            "{:?} copied into partition {}",
            c.source,
            c.partition
        );
        if let Some(prev) = last.insert(p, o) {
            ensure!(o > prev, "partition {p}: source offset {o} after {prev}");
        }
    }
    let repeated: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(repeated.is_empty(), "copied more than once: {repeated:?}");
    let missing: Vec<usize> = (0..produced)
        .filter(|i| !count.contains_key(format!("am://survey/ztf.raw/{i}").as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} alerts never copied: {missing:?}",
        missing.len()
    );
    ensure!(
        copied.len() == produced,
        "{} copies of {produced} alerts",
        copied.len()
    );
    Ok(())
}

#[tokio::test]
async fn three_replicas_copy_a_live_source_exactly_once_while_killed_paused_and_restarted(
) -> Result<()> {
    if Flavor::from_env() != Flavor::Apache {
        eprintln!("skipped: shared mirrors need ALERTMESH_TEST_KAFKA=apache");
        return Ok(());
    }
    let broker = Arc::new(Broker::start("local").await?);
    broker.create_topic(RAW, PARTITIONS).await?;
    let bootstrap = broker.bootstrap();
    let mirror = format!(
        "[[mirrors]]\nname = \"ztf\"\ndestination = {ALERTS:?}\nstart = \"earliest\"\n\
         [mirrors.source]\nkafka = {bootstrap:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n"
    );
    let spec = |replica: &str| {
        GatewaySpec::new("lasair", &bootstrap)
            .gateway_key("share_mirrors = true")
            .gateway_key(&format!("replica_id = {replica:?}"))
            .topic(ALERTS, "ZTF", "avro-ocf")
            .extra(&mirror)
    };
    let mut replicas = Vec::new();
    for r in REPLICAS {
        replicas.push(Gateway::start(&spec(r)).await?);
    }
    let (stop, produced) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let producer = tokio::spawn(produce_live(broker.clone(), stop.clone(), produced.clone()));
    let result = chaos(&mut replicas, &bootstrap, &produced).await;
    stop.store(true, Ordering::Relaxed);
    producer.await??;
    result.with_context(|| {
        let tails: Vec<String> = replicas.iter().map(|g| g.stderr_tail(30)).collect();
        tails.join("\n----\n")
    })?;
    let produced = produced.load(Ordering::Relaxed);
    eprintln!("produced {produced} alerts");
    reaches(&bootstrap, produced).await?;
    // Anything written twice would show up after the last expected copy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let committed = copies(&bootstrap).await?;
    check_exactly_once(&committed, produced)?;
    // Copies that a fenced or stopped owner wrote but never committed are still in the log,
    // hidden from read_committed readers.
    let written = read(&bootstrap, "read_uncommitted", PARTITIONS)
        .await?
        .len();
    eprintln!(
        "{} copies committed, {} written and aborted",
        committed.len(),
        written.saturating_sub(committed.len())
    );
    // Whichever replica answers describes the whole group.
    let views = [
        group_of(&replicas[0], &REPLICAS).await?,
        group_of(&replicas[2], &REPLICAS).await?,
    ];
    ensure!(views[0] == views[1], "{views:?}");
    let status = replicas[1].mirror_status().await?;
    ensure!(status[0].replica == "r2", "{:?}", status[0].replica);
    let metrics = replicas[1].metrics().await?;
    let per_replica: Vec<f64> = REPLICAS
        .iter()
        .map(|r| {
            metrics
                .get(
                    "alertmesh_mirror_replica_partitions",
                    &[("mirror", "ztf"), ("replica", r)],
                )
                .unwrap_or(0.0)
        })
        .collect();
    ensure!(
        per_replica.iter().sum::<f64>() == f64::from(PARTITIONS),
        "{per_replica:?}"
    );
    // The CLI shows the group too, marking the replica that answered.
    let out = replicas[2].cli(&["mirror", "status"]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        REPLICAS
            .iter()
            .all(|r| text.contains(&format!("replica {r}")))
            && text.contains("replica r3 (answered): partitions"),
        "{text}"
    );
    Ok(())
}

/// Kills, pauses and restarts replicas while the source is live, waiting for the copy to
/// progress after each step.
async fn chaos(replicas: &mut [Gateway], bootstrap: &str, produced: &AtomicUsize) -> Result<()> {
    let progress = |n: usize| reaches(bootstrap, n);
    let view = group_of(&replicas[0], &REPLICAS).await?;
    eprintln!("group: {view:?}");
    ensure!(view.values().all(|ps| ps.len() == 2), "uneven: {view:?}");
    let mut held = progress(50).await?;

    // kill -9 of r1: its partitions move to r2 and r3, then back once it is restarted.
    replicas[0].kill();
    held = progress(held + 60).await?;
    group_of(&replicas[1], &["r2", "r3"]).await?;
    held = progress(held + 60).await?;
    replicas[0].start_again().await?;
    group_of(&replicas[1], &REPLICAS).await?;
    held = progress(held + 60).await?;

    // SIGSTOP of r2 past its session: its partitions move; when it wakes up, what it
    // was writing is fenced and it rejoins.
    signal(&replicas[1], "-STOP")?;
    let moved = group_of(&replicas[2], &["r1", "r3"]).await;
    held = progress(held + 60).await?;
    signal(&replicas[1], "-CONT")?;
    moved?;
    group_of(&replicas[1], &REPLICAS).await?;
    held = progress(held + 60).await?;

    // A rolling restart (SIGTERM, start) of every replica.
    for replica in replicas.iter_mut() {
        replica.restart().await?;
        held = progress(held + 40).await?;
    }

    // A pause shorter than the session: nothing moves, the replica carries on.
    signal(&replicas[2], "-STOP")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&replicas[2], "-CONT")?;
    // And a kill -9 mid-copy of the replica that just woke.
    held = progress(held + 40).await?;
    replicas[2].kill();
    replicas[2].start_again().await?;
    group_of(&replicas[0], &REPLICAS).await?;
    let target = produced.load(Ordering::Relaxed).max(held + 40);
    progress(target).await?;
    if replicas.iter_mut().any(|g| g.exited().is_some()) {
        bail!("a replica exited on its own");
    }
    Ok(())
}

/// Before sharing, a replica checks that the cluster hides aborted records from
/// `read_committed` readers (Apache Kafka does; Tansu does not): on Tansu the shared
/// mirror is `failed` with an error saying what to do, and copies nothing.
#[tokio::test]
async fn a_shared_mirror_runs_only_on_a_cluster_that_hides_aborted_records() -> Result<()> {
    let broker = Broker::start("local").await?;
    broker.create_topic(RAW, 2).await?;
    let payloads: Vec<Bytes> = ztf_alerts()?.into_iter().map(|a| a.payload).collect();
    let records: Vec<Record> = (0..20)
        .map(|i| Record {
            partition: (i % 2) as i32,
            ..alert(i, &payloads)
        })
        .collect();
    broker.produce_all(RAW, &records).await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"ztf\"\ndestination = {ALERTS:?}\nstart = \"earliest\"\n\
         [mirrors.source]\nkafka = {:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
        broker.bootstrap()
    );
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .gateway_key("share_mirrors = true")
        .extra(&mirror);
    let gateway = Gateway::start(&spec).await?;
    let status = wait_until("the shared mirror to settle", WAIT, || async {
        let s = gateway.mirror_status().await.ok()?.into_iter().next()?;
        match s.state.as_str() {
            "failed" => Some(s),
            "running" if s.copied == 20 && !s.replicas.is_empty() => Some(s),
            _ => None,
        }
    })
    .await?;
    match broker.flavor() {
        Flavor::Apache => {
            ensure!(status.state == "running", "{status:?}");
            let pid = gateway.pid().context("running")?;
            let me = &status.replicas;
            ensure!(
                me.len() == 1
                    && me[0].replica.ends_with(&format!("-{pid}"))
                    && me[0].partitions == [0, 1],
                "{me:?}"
            );
        }
        Flavor::Tansu => {
            ensure!(
                status.state == "failed"
                    && status.error.contains("returns aborted records")
                    && status.error.contains("share_mirrors = false"),
                "{status:?}"
            );
            ensure!(status.copied == 0, "{status:?}");
        }
    }
    Ok(())
}

/// A peer gateway's topic is one work unit (the peer streams every partition in one
/// subscription): one replica copies it all while the other stands by, and takes it over
/// when the first is killed -9, without a duplicate.
#[tokio::test]
async fn replicas_share_a_gateway_source_as_one_unit() -> Result<()> {
    if Flavor::from_env() != Flavor::Apache {
        eprintln!("skipped: shared mirrors need ALERTMESH_TEST_KAFKA=apache");
        return Ok(());
    }
    const SOURCE_PARTITIONS: i32 = 3;
    let broker = Broker::start("local").await?;
    broker.create_topic(RAW, SOURCE_PARTITIONS).await?;
    let payloads: Vec<Bytes> = ztf_alerts()?.into_iter().map(|a| a.payload).collect();
    let batch = |from: usize| -> Vec<Record> {
        (from..from + 60)
            .map(|i| Record {
                partition: (i % SOURCE_PARTITIONS as usize) as i32,
                ..alert(i, &payloads)
            })
            .collect()
    };
    broker.produce_all(RAW, &batch(0)).await?;
    let bootstrap = broker.bootstrap();
    let survey =
        Gateway::start(&GatewaySpec::new("survey", &bootstrap).topic(RAW, "ZTF", "avro-ocf"))
            .await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"from-survey\"\ndestination = {ALERTS:?}\nstart = \"earliest\"\n\
         [mirrors.source]\ngateway = {:?}\ntopic = {RAW:?}\n",
        survey.grpc_url()
    );
    let spec = |replica: &str| {
        GatewaySpec::new("lasair", &bootstrap)
            .gateway_key("share_mirrors = true")
            .gateway_key(&format!("replica_id = {replica:?}"))
            .extra(&mirror)
    };
    let mut replicas = vec![
        Gateway::start(&spec("r1")).await?,
        Gateway::start(&spec("r2")).await?,
    ];
    let committed = || read(&bootstrap, "read_committed", SOURCE_PARTITIONS);
    wait_until("60 copies", WAIT, || async {
        (committed().await.ok()?.len() >= 60).then_some(())
    })
    .await?;
    // One replica holds the unit (every source partition), the other none.
    let holder = wait_until("one replica copying, one standing by", WAIT, || async {
        let mut states = Vec::new();
        for g in &replicas {
            let m = g.mirror_status().await.ok()?.into_iter().next()?;
            let mine = m
                .replicas
                .iter()
                .find(|r| r.replica == m.replica)?
                .partitions
                .clone();
            states.push((m.state, mine));
        }
        match (&states[0], &states[1]) {
            ((a, p), (b, q))
                if a == "running" && p == &[0, 1, 2] && b == "standby" && q.is_empty() =>
            {
                Some(0)
            }
            ((a, p), (b, q))
                if b == "running" && q == &[0, 1, 2] && a == "standby" && p.is_empty() =>
            {
                Some(1)
            }
            _ => None,
        }
    })
    .await?;
    replicas[holder].kill();
    broker.produce_all(RAW, &batch(60)).await?;
    wait_until("120 copies", WAIT, || async {
        (committed().await.ok()?.len() >= 120).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copied = committed().await?;
    let sources: BTreeSet<&str> = copied.iter().map(|c| c.source.as_str()).collect();
    let origins: BTreeSet<&str> = copied.iter().map(|c| c.origin.as_str()).collect();
    ensure!(
        copied.len() == 120 && sources.len() == 120 && origins.len() == 120,
        "{} copies, {} sources, {} origins",
        copied.len(),
        sources.len(),
        origins.len()
    );
    ensure!(
        sources
            .iter()
            .all(|s| s.starts_with("am://survey/ztf.raw/")),
        "{sources:?}"
    );
    Ok(())
}
