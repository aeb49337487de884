//! Gateways cut off from each other: a gateway runs in its own network namespace, joined
//! by a veth pair, and the link goes down under a mirror and under a provenance walk. The
//! mirror reports its peer unreachable and resumes exactly once the link is back; the walk
//! marks the unreachable gateway as unresolved instead of hanging. Needs root and `ip`;
//! skipped with a message otherwise.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alertmesh_proto::v1::MirrorInfo;
use alertmesh_tests::fixtures::{now_ms, ztf_alerts};
use alertmesh_tests::kafka::{assigned_consumer, read_to_eof_with};
use alertmesh_tests::netns::Netns;
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Record};
use anyhow::{bail, ensure, Result};
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;

const RAW: &str = "ztf.raw";
const ALERTS: &str = "ztf.alerts";

/// The namespace, or `None` after saying why the test is skipped.
fn netns() -> Result<Option<Netns>> {
    Ok(match Netns::new()? {
        Ok(ns) => Some(ns),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    })
}

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

/// A survey gateway inside `ns` (its broker on this side of the pair, holding `n`
/// alerts), and `lasair` outside, mirroring it over the pair.
async fn mesh(ns: &Netns, n: usize) -> Result<(Broker, Gateway, Broker, Gateway)> {
    let survey_broker = Broker::start_on("survey", &ns.host_ip()).await?;
    survey_broker.create_topic(RAW, 3).await?;
    survey_broker
        .produce_all(RAW, &survey_records(0, n)?)
        .await?;
    let spec = GatewaySpec::new("survey", &survey_broker.bootstrap())
        .topic(RAW, "ZTF", "avro-ocf")
        .in_netns(ns.name(), &ns.inner_ip());
    let survey = Gateway::start(&spec).await?;
    let lasair_broker = Broker::start("lasair").await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"relay\"\ndestination = {ALERTS:?}\nstart = \"earliest\"\n[mirrors.source]\ngateway = {:?}\ntopic = {RAW:?}\n",
        survey.grpc_url()
    );
    let spec = GatewaySpec::new("lasair", &lasair_broker.bootstrap())
        .topic(ALERTS, "ZTF", "avro-ocf")
        .extra(&mirror);
    let lasair = Gateway::start(&spec).await?;
    Ok((survey_broker, survey, lasair_broker, lasair))
}

/// `(partition, offset, am-source)` of every record of the destination.
async fn copies(broker: &Broker) -> Result<Vec<(i32, i64, String)>> {
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        let consumer = assigned_consumer(&bootstrap, ALERTS, 3, Offset::Beginning)?;
        let mut out = Vec::new();
        read_to_eof_with(&consumer, 3, 0, Duration::from_secs(20), |m| {
            let source = m
                .headers()
                .and_then(|hs| {
                    hs.iter()
                        .find(|h| h.key == "am-source")
                        .and_then(|h| h.value)
                })
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            out.push((m.partition(), m.offset(), source));
        })?;
        Ok(out)
    })
    .await?
}

/// Waits until the destination holds `n` copies, then checks it holds exactly `n`, each of
/// a different source record.
async fn holds_exactly(broker: &Broker, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        if copies(broker).await.unwrap_or_default().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let found = copies(broker).await?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, _, s) in &found {
        ensure!(!s.is_empty(), "a copy without am-source");
        *seen.entry(s).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
    ensure!(repeated.is_empty(), "copied more than once: {repeated:?}");
    ensure!(found.len() == n, "{} copies, want {n}", found.len());
    Ok(())
}

async fn status(gateway: &Gateway) -> Result<MirrorInfo> {
    let mut all = gateway.mirror_status().await?;
    ensure!(all.len() == 1, "{all:?}");
    Ok(all.remove(0))
}

fn alive(gateway: &mut Gateway) -> Result<()> {
    if let Some(exit) = gateway.exited() {
        bail!(
            "gateway {} exited with {exit}:\n{}",
            gateway.name(),
            gateway.stderr_tail(40)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_cut_off_from_its_source_reports_it_and_resumes_exactly() -> Result<()> {
    let Some(ns) = netns()? else { return Ok(()) };
    let (survey_broker, mut survey, lasair_broker, mut lasair) = mesh(&ns, 45).await?;
    holds_exactly(&lasair_broker, 45).await?;
    let before = status(&lasair).await?;

    ns.cut()?;
    let deadline = Instant::now() + Duration::from_secs(45);
    let reported = loop {
        alive(&mut lasair)?;
        let m = status(&lasair).await?;
        if m.errors > before.errors && !m.error.is_empty() {
            break m;
        }
        ensure!(
            Instant::now() < deadline,
            "the mirror did not report its source unreachable: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        reported.error.contains("source"),
        "the error does not name the source: {}",
        reported.error
    );

    ns.join()?;
    survey_broker
        .produce_all(RAW, &survey_records(45, 15)?)
        .await?;
    // Resumed where it stopped: the 15 new records, nothing twice.
    holds_exactly(&lasair_broker, 60).await?;
    alive(&mut survey)?;
    alive(&mut lasair)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provenance_walk_marks_a_cut_off_gateway_unresolved() -> Result<()> {
    let Some(ns) = netns()? else { return Ok(()) };
    let (_survey_broker, mut survey, lasair_broker, lasair) = mesh(&ns, 6).await?;
    holds_exactly(&lasair_broker, 6).await?;
    let (partition, offset, _) = copies(&lasair_broker).await?[0].clone();
    let start = format!("am://lasair/{ALERTS}/{partition}/{offset}");
    // Joined: the walk reaches the survey.
    let out = lasair.cli(&["provenance", &start]).await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone())?;
    ensure!(
        text.contains("am://survey/") && !text.contains("unresolved"),
        "{text}"
    );

    ns.cut()?;
    let began = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(50), lasair.cli(&["provenance", &start]))
        .await
        .map_err(|_| anyhow::anyhow!("the provenance walk hung"))??;
    let took = began.elapsed();
    // The cut-off gateway's record is an unresolved node with the reason, not an error.
    let text = String::from_utf8(out.stdout.clone())?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.lines()
            .any(|l| l.contains("am://survey/") && l.contains("[unresolved: ")),
        "{text}"
    );
    ensure!(took < Duration::from_secs(45), "the walk took {took:?}");
    alive(&mut survey)?;
    Ok(())
}
