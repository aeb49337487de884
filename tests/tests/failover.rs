//! Broker failover on a three-node Apache Kafka cluster (replication factor 3): killing the
//! leader of the partitions being read or written loses and repeats nothing, and live
//! streams and mirrors go on after the election. Needs `ALERTMESH_TEST_KAFKA=apache` (`make test-apache`); with Tansu,
//! a single in-memory broker, there is no failover to test and the test says so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alertmesh_tests::apache::Flavor;
use alertmesh_tests::client::{check_exactly, earliest, request, take};
use alertmesh_tests::fixtures::{now_ms, ztf_alerts, ztf_records};
use alertmesh_tests::kafka::{assigned_consumer, read_to_eof_with};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Produced, Record, ZTF_TOPIC};
use anyhow::{bail, ensure, Context, Result};
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;

/// Long enough for an election and the clients' metadata refresh on a busy machine.
const FAILOVER_WAIT: Duration = Duration::from_secs(90);

// The subscription starts on the empty topic and is handed over to the shared tail while
// the first alerts are being written: where its reader and the tail's found each
// partition's end must be where their fetch stood, not the high watermark a moment later
// (which once made a whole partition's first alerts skipped; see
// `gateway/src/kafka/reader.rs`, `eof_position`).
#[tokio::test]
async fn a_live_subscription_loses_and_repeats_nothing_when_the_partition_leader_dies() -> Result<()>
{
    if Flavor::from_env() != Flavor::Apache {
        eprintln!("skipped: broker failover needs ALERTMESH_TEST_KAFKA=apache");
        return Ok(());
    }
    let mut cluster = Broker::start_cluster("failover", 3).await?;
    cluster.create_topic(ZTF_TOPIC, 3).await?;
    let gateway = Gateway::start(
        &GatewaySpec::new("lasair", &cluster.bootstrap()).topic(ZTF_TOPIC, "ZTF", "avro-ocf"),
    )
    .await?;

    let mut client = gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    let mut stream = client.subscribe(req).await?.into_inner();

    let records = ztf_records(3, now_ms(), 1)?;
    let (before, after) = records.split_at(20);
    let mut produced: Vec<Produced> = cluster.produce_all(ZTF_TOPIC, before).await?;
    // A failure here says what the gateway logged (its temporary directory is removed).
    let logged = |e: anyhow::Error| e.context(format!("gateway log:\n{}", gateway.stderr_tail(40)));
    let mut alerts = take(&mut stream, before.len(), FAILOVER_WAIT)
        .await
        .map_err(logged)?;

    let leader = cluster.leader(ZTF_TOPIC, 0).await?;
    cluster.kill_node(leader);
    // Written while the election runs: the idempotent producer retries until a new leader
    // takes them, each once.
    produced.extend(cluster.produce_all(ZTF_TOPIC, after).await?);
    alerts.extend(
        take(&mut stream, after.len(), FAILOVER_WAIT)
            .await
            .map_err(logged)?,
    );

    let want: Vec<&Produced> = produced.iter().collect();
    check_exactly(&alerts, &want, "lasair")?;
    let extra = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
    ensure!(
        extra.is_err(),
        "unexpected message after every alert: {extra:?}"
    );

    // The old leader comes back as a follower; the stream is not disturbed.
    cluster.restart_node(leader).await?;
    let more = ztf_records(3, now_ms(), 1)?;
    let more = cluster.produce_all(ZTF_TOPIC, &more[..6]).await?;
    let got = take(&mut stream, more.len(), FAILOVER_WAIT).await?;
    check_exactly(&got, &more.iter().collect::<Vec<_>>(), "lasair")?;
    Ok(())
}

const RAW: &str = "ztf.raw";

/// The ZTF alerts as a survey publishes them: no key, no headers, 3 partitions.
fn survey_records(first: usize, count: usize) -> Result<Vec<Record>> {
    let alerts = ztf_alerts()?;
    let base = now_ms() - 60_000;
    Ok((first..first + count)
        .map(|i| Record {
            partition: (i % 3) as i32,
            key: None,
            payload: alerts[i % alerts.len()].payload.clone(),
            headers: Vec::new(),
            timestamp_ms: base + i as i64,
        })
        .collect())
}

/// How many times each source record (partition, offset) was copied into `topic`, by the
/// `am-source` header of every copy; fails on a copy whose payload differs from its source.
async fn copies(
    cluster: &Broker,
    topic: &str,
    source_ref: &str,
    source: &[Produced],
) -> Result<BTreeMap<(i32, i64), usize>> {
    let (bootstrap, topic, prefix) = (
        cluster.bootstrap(),
        topic.to_owned(),
        format!("{source_ref}/"),
    );
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Vec<u8>)>> {
        let consumer = assigned_consumer(&bootstrap, &topic, 3, Offset::Beginning)?;
        let mut found = Vec::new();
        read_to_eof_with(&consumer, 3, 0, Duration::from_secs(20), |m| {
            let origin = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "am-source")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            found.push((
                origin.unwrap_or_default(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        })?;
        Ok(found)
    })
    .await??;
    let mut counts = BTreeMap::new();
    for (origin, payload) in found {
        let (p, o) = origin
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
            .with_context(|| format!("am-source {origin:?}"))?;
        let (p, o): (i32, i64) = (p.parse()?, o.parse()?);
        let src = source
            .iter()
            .find(|s| s.record.partition == p && s.offset == o)
            .with_context(|| format!("no source record {p}/{o}"))?;
        ensure!(src.record.payload == payload, "payload of {p}/{o} differs");
        *counts.entry((p, o)).or_default() += 1;
    }
    Ok(counts)
}

#[tokio::test]
async fn a_mirror_loses_and_repeats_nothing_when_the_destination_leader_dies() -> Result<()> {
    if Flavor::from_env() != Flavor::Apache {
        eprintln!("skipped: broker failover needs ALERTMESH_TEST_KAFKA=apache");
        return Ok(());
    }
    let survey_broker = Broker::start("survey").await?;
    survey_broker.create_topic(RAW, 3).await?;
    let survey = Gateway::start(
        &GatewaySpec::new("survey", &survey_broker.bootstrap()).topic(RAW, "ZTF", "avro-ocf"),
    )
    .await?;
    let mut source = survey_broker
        .produce_all(RAW, &survey_records(0, 150)?)
        .await?;

    let mut cluster = Broker::start_cluster("lasair", 3).await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"from-survey\"\ndestination = {ZTF_TOPIC:?}\nstart = \"earliest\"\n\
         [mirrors.source]\ngateway = {:?}\ntopic = {RAW:?}\n",
        survey.grpc_url()
    );
    let _lasair = Gateway::start(
        &GatewaySpec::new("lasair", &cluster.bootstrap())
            .topic(ZTF_TOPIC, "ZTF", "avro-ocf")
            .extra(&mirror),
    )
    .await?;
    let source_ref = format!("am://survey/{RAW}");

    // Kill the destination's leader once copying is under way, and keep the source growing.
    let deadline = Instant::now() + FAILOVER_WAIT;
    while copies(&cluster, ZTF_TOPIC, &source_ref, &source)
        .await
        .map(|c| c.len())
        .unwrap_or(0)
        < 20
    {
        if Instant::now() > deadline {
            bail!("the mirror copied fewer than 20 alerts in {FAILOVER_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = cluster.leader(ZTF_TOPIC, 0).await?;
    cluster.kill_node(leader);
    source.extend(
        survey_broker
            .produce_all(RAW, &survey_records(150, 150)?)
            .await?,
    );

    let deadline = Instant::now() + FAILOVER_WAIT;
    let mut last_error = None;
    let counts = loop {
        let counts = match copies(&cluster, ZTF_TOPIC, &source_ref, &source).await {
            Ok(counts) => counts,
            Err(e) => {
                last_error = Some(e);
                BTreeMap::new()
            }
        };
        if counts.len() >= source.len() {
            // A little longer, so that a late duplicate would be seen; the read is retried
            // like the ones above (a fresh reader can meet the cluster still settling).
            tokio::time::sleep(Duration::from_secs(2)).await;
            break loop {
                match copies(&cluster, ZTF_TOPIC, &source_ref, &source).await {
                    Ok(counts) => break counts,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("verification read failed, retrying: {e:#}");
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Err(e) => return Err(e.context("final verification read")),
                }
            };
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} source alerts copied after the failover (last read error: {last_error:?})",
                counts.len(),
                source.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for s in &source {
        let n = counts
            .get(&(s.record.partition, s.offset))
            .copied()
            .unwrap_or(0);
        ensure!(
            n == 1,
            "source {}/{} copied {n} times",
            s.record.partition,
            s.offset
        );
    }
    Ok(())
}
