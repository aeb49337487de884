//! Mirrors across a mesh of real gateways, each beside its own Tansu broker: a survey
//! relay → broker `lasair` → broker `fink` chain with provenance, crashes of the mirroring
//! gateway at random moments, loss of the source, active-active and ring topologies, and a
//! dead-letter topic for records that cannot be keyed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use alertmesh_tests::auth::{Pki, Secure, SecureSpec};
use alertmesh_tests::cli::json_lines;
use alertmesh_tests::fixtures::{now_ms, ztf_alerts};
use alertmesh_tests::kafka::{assigned_consumer, delete_below, deletes_records, read_to_eof_with};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Record};
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;

const RAW: &str = "ztf.raw";
const ALERTS: &str = "ztf.alerts";

/// One record as found in a topic.
#[derive(Debug, Clone)]
struct Found {
    partition: i32,
    offset: i64,
    key: Option<String>,
    payload: Bytes,
    headers: HashMap<String, String>,
}

/// Every record of `topic`, read straight from Kafka.
async fn dump(broker: &Broker, topic: &str, partitions: i32) -> Result<Vec<Found>> {
    let bootstrap = broker.bootstrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = assigned_consumer(&bootstrap, &topic, partitions, Offset::Beginning)?;
        let mut out = Vec::new();
        read_to_eof_with(&consumer, partitions, 0, Duration::from_secs(20), |m| {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                            (h.key.to_owned(), v.unwrap_or_default())
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Found {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                headers,
            });
        })?;
        Ok(out)
    })
    .await?
}

/// Waits until `topic` holds at least `n` records, then a little longer to catch extras.
async fn settle(broker: &Broker, topic: &str, partitions: i32, n: usize) -> Result<Vec<Found>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = dump(broker, topic, partitions).await.unwrap_or_default();
        if found.len() >= n {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return dump(broker, topic, partitions).await;
        }
        if Instant::now() > deadline {
            bail!("{topic} holds {} records, want {n}", found.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The 45 ZTF alerts as the survey publishes them: no key, no headers, 3 partitions.
fn survey_records(first: usize, count: usize) -> Result<Vec<Record>> {
    let alerts = ztf_alerts()?;
    let base = now_ms() - 60_000;
    Ok((first..first + count)
        .map(|i| {
            let a = &alerts[i % alerts.len()];
            Record {
                partition: (i % 3) as i32,
                key: None,
                payload: a.payload.clone(),
                headers: Vec::new(),
                timestamp_ms: base + i as i64,
            }
        })
        .collect())
}

fn gateway_mirror(name: &str, url: &str, topic: &str, destination: Option<&str>) -> String {
    let dest = destination.map_or(String::new(), |d| format!("destination = {d:?}\n"));
    format!(
        "[[mirrors]]\nname = {name:?}\n{dest}start = \"earliest\"\n[mirrors.source]\ngateway = {url:?}\ntopic = {topic:?}\n"
    )
}

struct Site {
    broker: Broker,
    gateway: Gateway,
}

async fn site(name: &str, topics: &[&str], mirrors: &[String]) -> Result<Site> {
    let broker = Broker::start(name).await?;
    let mut spec = GatewaySpec::new(name, &broker.bootstrap());
    for t in topics {
        spec = spec.topic(t, "ZTF", "avro-ocf");
    }
    for m in mirrors {
        spec = spec.extra(m);
    }
    let gateway = Gateway::start(&spec).await?;
    Ok(Site { broker, gateway })
}

/// Every source record appears once in `copied`, in source order per partition, with the
/// same payload, a mesh key, and `am-source` naming it.
fn check_exactly_once(source: &[Found], source_ref: &str, copied: &[Found]) -> Result<()> {
    let mut by_source: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut last_per_partition: HashMap<i32, i64> = HashMap::new();
    for c in copied {
        let s = c.headers.get("am-source").context("am-source missing")?;
        let rest = s
            .strip_prefix(source_ref)
            .with_context(|| format!("am-source {s}"))?;
        let (p, o) = rest
            .trim_start_matches('/')
            .split_once('/')
            .context("am-source shape")?;
        let (p, o): (i32, i64) = (p.parse()?, o.parse()?);
        ensure!(
            c.partition == p,
            "copied into partition {} from {p}",
            c.partition
        );
        *by_source.entry((p, o)).or_default() += 1;
        if let Some(prev) = last_per_partition.insert(p, o) {
            ensure!(o > prev, "partition {p}: source offset {o} after {prev}");
        }
        let src = source
            .iter()
            .find(|r| r.partition == p && r.offset == o)
            .with_context(|| format!("no source record {p}/{o}"))?;
        ensure!(c.payload == src.payload, "payload of {p}/{o} differs");
        ensure!(
            c.key.as_deref().is_some_and(|k| k.starts_with("ZTF:ZTF")),
            "key {:?}",
            c.key
        );
    }
    for r in source {
        let n = by_source
            .get(&(r.partition, r.offset))
            .copied()
            .unwrap_or(0);
        ensure!(
            n == 1,
            "source {}/{} copied {n} times",
            r.partition,
            r.offset
        );
    }
    Ok(())
}

/// A survey relay: its broker holds `n` keyless ZTF alerts in `ztf.raw`, its gateway serves them.
async fn survey_with(n: usize) -> Result<Site> {
    let survey = site("survey", &[RAW], &[]).await?;
    survey.broker.create_topic(RAW, 3).await?;
    if n > 0 {
        survey
            .broker
            .produce_all(RAW, &survey_records(0, n)?)
            .await?;
    }
    Ok(survey)
}

/// Broker `lasair`, mirroring the survey's `ztf.raw` into `ztf.alerts` over gRPC.
async fn lasair_from(survey: &Site) -> Result<Site> {
    let mirror = gateway_mirror("from-survey", &survey.gateway.grpc_url(), RAW, Some(ALERTS));
    site("lasair", &[ALERTS], &[mirror]).await
}

#[tokio::test]
async fn a_chain_of_three_gateways_copies_every_alert_with_provenance() -> Result<()> {
    let survey = survey_with(45).await?;
    let lasair = lasair_from(&survey).await?;
    // Default destination: <source gateway>.<topic>.
    let fink = site(
        "fink",
        &["lasair.ztf.alerts"],
        &[gateway_mirror(
            "from-lasair",
            &lasair.gateway.grpc_url(),
            ALERTS,
            None,
        )],
    )
    .await?;

    let source = dump(&survey.broker, RAW, 3).await?;
    let at_lasair = settle(&lasair.broker, ALERTS, 3, 45).await?;
    check_exactly_once(&source, "am://survey/ztf.raw", &at_lasair)?;
    let at_fink = settle(&fink.broker, "lasair.ztf.alerts", 3, 45).await?;
    check_exactly_once(&at_lasair, "am://lasair/ztf.alerts", &at_fink)?;
    let alerts = ztf_alerts()?;
    for f in &at_fink {
        let origin = f.headers.get("am-origin").context("am-origin")?;
        ensure!(
            origin.starts_with("am://survey/ztf.raw/"),
            "origin {origin}"
        );
        ensure!(f.headers.get("am-hops").map(String::as_str) == Some("survey,lasair,fink"));
        ensure!(f.headers.get("am-ns").map(String::as_str) == Some("ZTF"));
        ensure!(f.headers.get("am-format").map(String::as_str) == Some("avro-ocf"));
        let a = alerts
            .iter()
            .find(|a| a.payload == f.payload)
            .context("a fixture")?;
        ensure!(f.key.as_deref() == Some(a.mesh_key().as_str()));
    }

    // Status over the admin RPC and the CLI.
    let mirrors = fink.gateway.mirror_status().await?;
    ensure!(mirrors.len() == 1);
    let m = &mirrors[0];
    ensure!(m.state == "running" && m.copied == 45, "{m:?}");
    ensure!(
        m.source == "am://lasair/ztf.alerts" && m.destination == "lasair.ztf.alerts",
        "{m:?}"
    );
    let out = fink.gateway.cli(&["mirror", "status"]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("from-lasair") && text.contains("running"),
        "{text}"
    );

    // The directory walks fink → lasair → survey.
    let out = fink.gateway.cli(&["directory", "--json"]).await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map(|v| v["name"].as_str().unwrap_or("").to_owned())
        })
        .collect::<Result<_, _>>()?;
    ensure!(names == ["fink", "lasair", "survey"], "{names:?}");

    // Provenance from fink's copy back to the survey's record, walked by the gateways.
    let f = &at_fink[0];
    let start = format!("am://fink/lasair.ztf.alerts/{}/{}", f.partition, f.offset);
    let out = fink.gateway.cli(&["provenance", &start]).await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let origin = f.headers.get("am-origin").context("am-origin")?;
    let lines: Vec<&str> = text.lines().collect();
    ensure!(lines[0].starts_with(&start), "{text}");
    ensure!(
        lines[1].contains("copied from: am://lasair/ztf.alerts/"),
        "{text}"
    );
    // The survey's record, where the alert entered the mesh, with an RFC 3339 time as
    // `subscribe` prints them.
    let at_survey = lines
        .iter()
        .find(|l| l.contains(&format!("copied from: {origin}  alert")))
        .with_context(|| format!("no hop to {origin}: {text}"))?;
    ensure!(at_survey.contains("(entered the mesh here)"), "{text}");
    let t = at_survey
        .split("  ")
        .find(|w| w.len() >= 20 && w.as_bytes().get(10) == Some(&b'T'))
        .unwrap_or("");
    ensure!(
        t.ends_with('Z'),
        "timestamp {t:?} is not RFC 3339: {at_survey}"
    );
    ensure!(!text.contains("unresolved"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_filtered_mirror_of_keyless_alerts_keeps_their_schema() -> Result<()> {
    let survey = survey_with(45).await?;
    // The filter makes the source gateway decode and key each record for the mirror.
    let mirror = gateway_mirror("bright", &survey.gateway.grpc_url(), RAW, Some(ALERTS))
        + "filter = \"candidate.magpsf < 99\"\n";
    let lasair = site("lasair", &[ALERTS], &[mirror]).await?;
    let copied = settle(&lasair.broker, ALERTS, 3, 45).await?;
    for c in &copied {
        let schema = c.headers.get("am-schema").map(String::as_str).unwrap_or("");
        ensure!(
            schema.len() == 16 && schema.chars().all(|ch| ch.is_ascii_hexdigit()),
            "am-schema {schema:?} of {}/{}",
            c.partition,
            c.offset
        );
    }
    Ok(())
}

#[tokio::test]
async fn killing_the_mirroring_gateway_at_random_moments_loses_and_repeats_nothing() -> Result<()> {
    let survey = survey_with(0).await?;
    let mut lasair = lasair_from(&survey).await?;
    let mut produced = 0;
    // Pseudo-random kill moments, reproducible from the seed printed on failure.
    let seed = now_ms() as u64;
    let mut x = seed | 1;
    for round in 0..6 {
        survey
            .broker
            .produce_all(RAW, &survey_records(produced, 40)?)
            .await?;
        produced += 40;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tokio::time::sleep(Duration::from_millis(50 + x % 700)).await;
        lasair
            .gateway
            .kill_and_restart()
            .await
            .with_context(|| format!("round {round}, seed {seed}"))?;
    }
    let source = dump(&survey.broker, RAW, 3).await?;
    ensure!(source.len() == produced);
    let copied = settle(&lasair.broker, ALERTS, 3, produced).await?;
    check_exactly_once(&source, "am://survey/ztf.raw", &copied)
        .with_context(|| format!("seed {seed}"))?;
    Ok(())
}

#[tokio::test]
async fn a_mirror_backs_off_while_its_source_is_gone_and_catches_up_after() -> Result<()> {
    let mut survey = survey_with(20).await?;
    let lasair = lasair_from(&survey).await?;
    settle(&lasair.broker, ALERTS, 3, 20).await?;
    survey.gateway.kill();
    survey
        .broker
        .produce_all(RAW, &survey_records(20, 25)?)
        .await?;
    // While the source gateway is down the mirror says so, with its last positions.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = lasair.gateway.mirror_status().await?;
        if m[0].state == "backoff" && !m[0].error.is_empty() {
            ensure!(
                m[0].copied >= 20 && !m[0].positions.is_empty(),
                "{:?}",
                m[0]
            );
            break;
        }
        ensure!(Instant::now() < deadline, "no backoff reported: {:?}", m[0]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    survey.gateway.start_again().await?;
    let source = dump(&survey.broker, RAW, 3).await?;
    let copied = settle(&lasair.broker, ALERTS, 3, 45).await?;
    check_exactly_once(&source, "am://survey/ztf.raw", &copied)
}

/// A `latest` mirror from a gateway: partition 2 had delivered nothing when the source
/// gateway went away, and what it received meanwhile is copied once the source is back,
/// not passed over by a new `latest`; what the source held before the mirror began is not.
#[tokio::test]
async fn a_latest_mirror_copies_what_a_quiet_partition_received_while_its_source_was_down(
) -> Result<()> {
    let mut survey = survey_with(6).await?;
    let mirror = gateway_mirror("from-survey", &survey.gateway.grpc_url(), RAW, Some(ALERTS))
        .replace("start = \"earliest\"", "start = \"latest\"");
    let lasair = site("lasair", &[ALERTS], &[mirror]).await?;
    wait_for_state(&lasair, "running").await?;
    let live: Vec<Record> = survey_records(6, 12)?
        .into_iter()
        .filter(|r| r.partition != 2)
        .collect();
    survey.broker.produce_all(RAW, &live).await?;
    settle(&lasair.broker, ALERTS, 3, live.len()).await?;

    survey.gateway.kill();
    let quiet: Vec<Record> = survey_records(12, 4)?
        .into_iter()
        .map(|r| Record { partition: 2, ..r })
        .collect();
    survey.broker.produce_all(RAW, &quiet).await?;
    wait_for_state(&lasair, "backoff").await?;
    survey.gateway.start_again().await?;
    let copied = settle(&lasair.broker, ALERTS, 3, live.len() + quiet.len()).await?;
    // The survey's first 6 records (offsets 0 and 1 of each partition) came before the
    // mirror began.
    let source: Vec<Found> = dump(&survey.broker, RAW, 3)
        .await?
        .into_iter()
        .filter(|r| r.offset >= 2)
        .collect();
    ensure!(
        source.len() == live.len() + quiet.len(),
        "{} source records",
        source.len()
    );
    check_exactly_once(&source, "am://survey/ztf.raw", &copied)
}

/// Copies that left the destination (deleted here, as retention would age them out) are
/// not made again when the source comes back: the mirror resumes after what it handled,
/// not where its stream began. Apache Kafka only (DeleteRecords).
#[tokio::test]
async fn a_latest_mirror_does_not_copy_again_what_left_its_destination() -> Result<()> {
    if !deletes_records() {
        return Ok(());
    }
    let mut survey = survey_with(6).await?;
    let mirror = gateway_mirror("from-survey", &survey.gateway.grpc_url(), RAW, Some(ALERTS))
        .replace("start = \"earliest\"", "start = \"latest\"");
    let lasair = site("lasair", &[ALERTS], &[mirror]).await?;
    wait_for_state(&lasair, "running").await?;
    survey
        .broker
        .produce_all(RAW, &survey_records(6, 6)?)
        .await?;
    settle(&lasair.broker, ALERTS, 3, 6).await?;
    for p in 0..3 {
        delete_below(&lasair.broker.bootstrap(), ALERTS, p, 2).await?;
    }
    survey.gateway.kill();
    wait_for_state(&lasair, "backoff").await?;
    survey.gateway.start_again().await?;
    survey
        .broker
        .produce_all(RAW, &survey_records(12, 3)?)
        .await?;
    let copied = settle(&lasair.broker, ALERTS, 3, 3).await?;
    // Source offsets 0-1 came before the mirror began, 2-3 were copied and deleted.
    let source: Vec<Found> = dump(&survey.broker, RAW, 3)
        .await?
        .into_iter()
        .filter(|r| r.offset >= 4)
        .collect();
    ensure!(source.len() == 3, "{} source records", source.len());
    check_exactly_once(&source, "am://survey/ztf.raw", &copied)
}

/// Waits until the first mirror of `site` reports `state`.
async fn wait_for_state(site: &Site, state: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = site.gateway.mirror_status().await?;
        if m.first().is_some_and(|m| m.state == state) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "mirror not {state}: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sites that each hold `local` alerts of their own in `ztf.alerts` and mirror the listed
/// peers' `ztf.alerts` into it.
async fn mesh_of(names: &[&str], sources: &[(usize, usize)], local: usize) -> Result<Vec<Site>> {
    let mut brokers = Vec::new();
    for n in names {
        let b = Broker::start(n).await?;
        b.create_topic(ALERTS, 3).await?;
        brokers.push(b);
    }
    // Gateways start without mirrors to learn their URLs, then get their mirrors.
    let mut sites = Vec::new();
    for (i, b) in brokers.into_iter().enumerate() {
        let first = i * local;
        let mut recs = survey_records(first, local)?;
        for r in &mut recs {
            r.key = Some(Bytes::from(format!(
                "ZTF:ZTF20{:07}",
                first + r.timestamp_ms as usize % 1000
            )));
        }
        b.produce_all(ALERTS, &recs).await?;
        let spec = GatewaySpec::new(names[i], &b.bootstrap()).topic(ALERTS, "ZTF", "avro-ocf");
        let gateway = Gateway::start(&spec).await?;
        sites.push(Site { broker: b, gateway });
    }
    let urls: Vec<String> = sites.iter().map(|s| s.gateway.grpc_url()).collect();
    for (to, from) in sources {
        let spec = GatewaySpec::new(names[*to], &sites[*to].broker.bootstrap())
            .topic(ALERTS, "ZTF", "avro-ocf")
            .extra(&gateway_mirror(
                &format!("from-{}", names[*from]),
                &urls[*from],
                ALERTS,
                Some(ALERTS),
            ));
        // Same broker and ports, now with its mirror.
        sites[*to].gateway.reconfigure(spec).await?;
    }
    Ok(sites)
}

#[tokio::test]
async fn active_active_mirrors_never_loop() -> Result<()> {
    let sites = mesh_of(&["lasair", "fink"], &[(0, 1), (1, 0)], 10).await?;
    for s in &sites {
        let found = settle(&s.broker, ALERTS, 3, 20).await?;
        ensure!(
            found.len() == 20,
            "{} holds {}",
            s.gateway.name(),
            found.len()
        );
    }
    // Long enough for a loop to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in &sites {
        let found = dump(&s.broker, ALERTS, 3).await?;
        ensure!(
            found.len() == 20,
            "{} grew to {}",
            s.gateway.name(),
            found.len()
        );
        let m = s.gateway.mirror_status().await?;
        ensure!(m[0].cycles_dropped == 10 && m[0].copied == 10, "{:?}", m[0]);
    }
    Ok(())
}

#[tokio::test]
async fn a_ring_of_three_mirrors_never_loops() -> Result<()> {
    // b ← a, c ← b, a ← c.
    let sites = mesh_of(&["a", "b", "c"], &[(1, 0), (2, 1), (0, 2)], 5).await?;
    for s in &sites {
        settle(&s.broker, ALERTS, 3, 15).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in &sites {
        let found = dump(&s.broker, ALERTS, 3).await?;
        ensure!(
            found.len() == 15,
            "{} holds {}",
            s.gateway.name(),
            found.len()
        );
        for f in found.iter().filter(|f| f.headers.contains_key("am-hops")) {
            let hops: Vec<&str> = f.headers["am-hops"].split(',').collect();
            let mut unique = hops.clone();
            unique.sort_unstable();
            unique.dedup();
            ensure!(unique.len() == hops.len(), "a gateway twice in {hops:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn records_that_cannot_be_keyed_go_to_the_dead_letter_topic() -> Result<()> {
    let survey = Broker::start("survey").await?;
    survey.create_topic(RAW, 3).await?;
    let mut records = survey_records(0, 45)?;
    records.push(Record {
        partition: 1,
        key: None,
        payload: Bytes::from_static(b"Obj\x01 not an avro container at all"),
        headers: vec![("x-trace".into(), Some(Bytes::from_static(b"abc")))],
        timestamp_ms: now_ms(),
    });
    survey.produce_all(RAW, &records).await?;
    // lasair reads the survey's Kafka directly (a raw survey source).
    let mirror = format!(
        "[[mirrors]]\nname = \"ztf-raw\"\ndestination = {ALERTS:?}\n[mirrors.source]\nkafka = {:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
        survey.bootstrap()
    );
    let lasair = site("lasair", &[ALERTS], &[mirror]).await?;
    let copied = settle(&lasair.broker, ALERTS, 3, 45).await?;
    ensure!(copied.len() == 45, "{}", copied.len());
    for c in &copied {
        ensure!(
            c.headers
                .get("am-source")
                .is_some_and(|s| s.starts_with("kafka://")),
            "{:?}",
            c.headers
        );
        ensure!(c.headers.get("am-hops").map(String::as_str) == Some("lasair"));
        ensure!(c.key.as_deref().is_some_and(|k| k.starts_with("ZTF:")));
    }
    let dead = settle(&lasair.broker, &format!("{ALERTS}.dlq"), 3, 1).await?;
    ensure!(dead.len() == 1, "{}", dead.len());
    ensure!(
        dead[0]
            .headers
            .get("am-error")
            .is_some_and(|e| !e.is_empty()),
        "{:?}",
        dead[0].headers
    );
    ensure!(dead[0].headers.get("x-trace").map(String::as_str) == Some("abc"));
    let m = lasair.gateway.mirror_status().await?;
    ensure!(m[0].dead_lettered == 1 && m[0].copied == 45, "{:?}", m[0]);
    Ok(())
}

/// Broker `lasair` holding 45 ZTF alerts in `ALERTS`, served by a gateway with `[auth]`
/// and mutual TLS.
async fn secure_lasair(pki: &Pki) -> Result<(Broker, Secure)> {
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ALERTS, 3).await?;
    broker.produce_all(ALERTS, &survey_records(0, 45)?).await?;
    let gateway = Secure::start(
        pki,
        SecureSpec::new("lasair", &broker.bootstrap()).topic(ALERTS, false),
    )
    .await?;
    Ok((broker, gateway))
}

/// A mirror of `ALERTS` from the secure gateway at `url`, with a token file and a client
/// certificate for fink.
fn secure_mirror(
    pki: &Pki,
    url: &str,
    name: &str,
    dest: &str,
    token_file: &std::path::Path,
) -> Result<String> {
    let cert = pki.client("fink")?;
    Ok(format!(
        "[[mirrors]]\nname = {name:?}\ndestination = {dest:?}\n[mirrors.source]\ngateway = {url:?}\ntopic = {ALERTS:?}\ntoken_file = {:?}\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        token_file.display().to_string(),
        pki.ca().display().to_string(),
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    ))
}

/// Waits until mirror `name` of `gateway` is in `state`, and returns its status.
async fn wait_for_mirror(
    gateway: &Gateway,
    name: &str,
    state: &str,
) -> Result<alertmesh_proto::v1::MirrorInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = gateway.mirror_status().await?;
        let m = status.iter().find(|m| m.name == name);
        if let Some(m) = m.filter(|m| m.state == state) {
            return Ok(m.clone());
        }
        if Instant::now() > deadline {
            bail!("mirror {name} never became {state}: {m:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_mirror_authenticates_to_its_source_with_a_token_and_a_client_certificate() -> Result<()>
{
    let pki = Pki::new()?;
    let (lasair_broker, lasair) = secure_lasair(&pki).await?;
    let token = lasair.issue("fink", &["subscribe:ztf.*"], "1h").await?;
    let weak = lasair.issue("fink", &["subscribe:lsst.*"], "1h").await?;
    let dir = pki.dir().join("fink-mirror");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("good.jwt"), &token)?;
    std::fs::write(dir.join("weak.jwt"), &weak)?;
    let fink = site(
        "fink",
        &[ALERTS],
        &[
            secure_mirror(
                &pki,
                &lasair.url(),
                "from-lasair",
                ALERTS,
                &dir.join("good.jwt"),
            )?,
            secure_mirror(
                &pki,
                &lasair.url(),
                "not-allowed",
                "denied.copy",
                &dir.join("weak.jwt"),
            )?,
        ],
    )
    .await?;
    let source = dump(&lasair_broker, ALERTS, 3).await?;
    let copied = settle(&fink.broker, ALERTS, 3, 45).await?;
    check_exactly_once(&source, "am://lasair/ztf.alerts", &copied)?;
    ensure!(copied
        .iter()
        .all(|c| c.headers.get("am-hops").map(String::as_str) == Some("lasair,fink")));

    // The token without the topic's scope copies nothing and says why.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = fink.gateway.mirror_status().await?;
        let denied = m
            .iter()
            .find(|m| m.name == "not-allowed")
            .context("second mirror")?;
        if denied.state == "failed" && denied.error.to_lowercase().contains("permission") {
            ensure!(denied.copied == 0, "{denied:?}");
            ensure!(
                !denied.error.contains(&weak),
                "the token must not appear in status"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no permission error reported: {denied:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_mirror_translates_alerts_into_a_named_mapping() -> Result<()> {
    use alertmesh_alert::apache_avro::types::Value;
    use alertmesh_alert::{Decoder, Format};
    let survey = Broker::start("survey").await?;
    survey.create_topic(RAW, 3).await?;
    survey.produce_all(RAW, &survey_records(0, 45)?).await?;
    // A slim ZTF schema: two ids, three candidate fields renamed or kept, and a default.
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("ztf-lite.avsc");
    std::fs::write(
        &schema,
        r#"{"type": "record", "name": "alert", "namespace": "ztf", "fields": [
            {"name": "objectId", "type": "string"},
            {"name": "candid", "type": "long"},
            {"name": "candidate", "type": {"type": "record", "name": "candidate",
             "namespace": "ztf.alert", "fields": [
                {"name": "ra", "type": "double"},
                {"name": "dec", "type": "double"},
                {"name": "mag", "aliases": ["magpsf"], "type": "double"}]}},
            {"name": "broker", "type": "string", "default": "lasair"}]}"#,
    )?;
    let config = format!(
        "[[mappings]]\nname = \"ztf-lite\"\nschema = {:?}\n\n[[mirrors]]\nname = \"lite\"\ndestination = \"ztf.lite\"\n[mirrors.source]\nkafka = {:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n[mirrors.translate]\nmapping = \"ztf-lite\"\n",
        schema.display().to_string(),
        survey.bootstrap()
    );
    let lasair = site("lasair", &["ztf.lite"], &[config]).await?;
    let copied = settle(&lasair.broker, "ztf.lite", 3, 45).await?;
    ensure!(copied.len() == 45);
    let decoder = Decoder::new();
    let alerts = ztf_alerts()?;
    for c in &copied {
        let alert = decoder.decode(Format::AvroOcf, &c.payload)?;
        let Value::Record(fields) = alert.value() else {
            bail!("not a record")
        };
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        ensure!(
            names == ["objectId", "candid", "candidate", "broker"],
            "{names:?}"
        );
        let Value::String(object_id) = &fields[0].1 else {
            bail!("objectId")
        };
        let fixture = alerts
            .iter()
            .find(|a| &a.object_id == object_id)
            .context("a fixture")?;
        ensure!(fields[1].1 == Value::Long(fixture.candid));
        ensure!(fields[3].1 == Value::String("lasair".into()));
        let Value::Record(cand) = &fields[2].1 else {
            bail!("candidate")
        };
        ensure!(
            cand[2].0 == "mag" && matches!(cand[2].1, Value::Double(m) if m > 10.0),
            "{cand:?}"
        );
        ensure!(c.key.as_deref() == Some(fixture.mesh_key().as_str()));
        let fp = format!("{:016x}", alert.schema().context("schema")?.fingerprint());
        ensure!(
            c.headers.get("am-schema") == Some(&fp),
            "{:?}",
            c.headers.get("am-schema")
        );
        ensure!(c.headers.get("am-format").map(String::as_str) == Some("avro-ocf"));
    }
    Ok(())
}

#[tokio::test]
async fn a_raw_lsst_stream_in_confluent_wire_format_is_mirrored_with_mesh_keys() -> Result<()> {
    use alertmesh_alert::{encode, Decoder, Format, Registry, Subject, Target};
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../alert/tests/fixtures/lsst");
    // Ten real Rubin alerts (schema 7.1) as Rubin publishes them: Confluent wire format,
    // schema id 701, no key.
    let ocf = std::fs::read(fixtures.join("ampel_usdf_dev_v7_1/schema_701.avro"))?;
    let decoder = Decoder::new();
    let registry = Registry::builtin();
    let alerts = decoder.decode_all(Format::AvroOcf, &ocf)?;
    ensure!(alerts.len() == 10);
    let mut records = Vec::new();
    let mut want_keys = Vec::new();
    for (i, a) in alerts.iter().enumerate() {
        want_keys.push(
            Subject::new(a, &registry)
                .key
                .context("an LSST key")?
                .to_string(),
        );
        records.push(Record {
            partition: (i % 3) as i32,
            key: None,
            payload: Bytes::from(encode(a, Target::Confluent(701))?),
            headers: Vec::new(),
            timestamp_ms: now_ms() - 1000 + i as i64,
        });
    }
    let survey = Broker::start("rubin").await?;
    survey.create_topic("lsst.raw", 3).await?;
    survey.produce_all("lsst.raw", &records).await?;
    let broker = Broker::start("fink").await?;
    let spec = GatewaySpec::new("fink", &broker.bootstrap())
        .extra(&format!("[alert]\nschema_dir = {:?}\n", fixtures.join("schema").display().to_string()))
        .extra(&format!(
            "[[topics]]\nname = \"lsst.alerts\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\n\n[[mirrors]]\nname = \"rubin\"\ndestination = \"lsst.alerts\"\n[mirrors.source]\nkafka = {:?}\ntopic = \"lsst.raw\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\n",
            survey.bootstrap()
        ));
    let fink = Site {
        gateway: Gateway::start(&spec).await?,
        broker,
    };
    let copied = settle(&fink.broker, "lsst.alerts", 3, 10).await?;
    ensure!(copied.len() == 10, "{}", copied.len());
    let mut keys: Vec<String> = copied.iter().filter_map(|c| c.key.clone()).collect();
    keys.sort();
    want_keys.sort();
    ensure!(keys == want_keys, "{keys:?} vs {want_keys:?}");
    for c in &copied {
        ensure!(c.headers.get("am-format").map(String::as_str) == Some("avro-confluent"));
        ensure!(
            c.headers.get("am-schema").map(String::as_str) == Some("701"),
            "{:?}",
            c.headers
        );
        ensure!(c.headers.get("am-ns").map(String::as_str) == Some("LSST:dia"));
        ensure!(
            records.iter().any(|r| r.payload == c.payload),
            "payload unchanged"
        );
    }
    // And the gateway serves them decoded, with exact 64-bit ids.
    let out = fink
        .gateway
        .cli(&[
            "subscribe",
            "--topic",
            "lsst.alerts",
            "--from",
            "earliest",
            "--until",
            "now",
            "--omit-cutouts",
        ])
        .await?;
    let lines = json_lines(&out)?;
    ensure!(lines.len() == 10);
    let path = alertmesh_alert::FieldPath::parse("diaSource.diaSourceId")?;
    let mut want_ids: Vec<i64> = alerts
        .iter()
        .filter_map(|a| match path.lookup(a.value()) {
            Some(alertmesh_alert::apache_avro::types::Value::Long(v)) => Some(*v),
            _ => None,
        })
        .collect();
    let mut ids: Vec<i64> = lines
        .iter()
        .filter_map(|l| l["alert"]["diaSource"]["diaSourceId"].as_i64())
        .collect();
    want_ids.sort_unstable();
    ids.sort_unstable();
    ensure!(
        want_ids.len() == 10 && ids == want_ids,
        "{ids:?} vs {want_ids:?}"
    );
    let mut served_keys: Vec<String> = lines
        .iter()
        .filter_map(|l| l["key"].as_str().map(str::to_owned))
        .collect();
    served_keys.sort();
    ensure!(served_keys == want_keys, "{served_keys:?}");
    Ok(())
}

#[tokio::test]
async fn a_mirror_the_source_refuses_for_good_is_failed_and_not_retried_in_a_loop() -> Result<()> {
    let survey = survey_with(3).await?;
    // The filter parses, but the source's schema has no such field: INVALID_ARGUMENT.
    let mirror = gateway_mirror("bad-filter", &survey.gateway.grpc_url(), RAW, Some(ALERTS))
        + "filter = \"candidate.no_such_field < 1\"\n";
    let lasair = site("lasair", &[ALERTS], &[mirror]).await?;
    let failed = wait_for_mirror(&lasair.gateway, "bad-filter", "failed").await?;
    ensure!(failed.error.contains("INVALID_ARGUMENT"), "{failed:?}");
    lasair
        .gateway
        .wait_metrics("alertmesh_mirror_failed 1", |m| {
            m.value("alertmesh_mirror_failed", &[("mirror", "bad-filter")]) == 1.0
        })
        .await?;
    // No retry loop: a few seconds later it is still failed, with the same error count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = lasair.gateway.mirror_status().await?;
    let m = later
        .iter()
        .find(|m| m.name == "bad-filter")
        .context("mirror")?;
    ensure!(
        m.state == "failed" && m.errors == failed.errors,
        "retried: {m:?} after {failed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_mirror_restarts_with_its_section_once_the_config_file_fixes_it() -> Result<()> {
    const BAD: &str = "candidate.no_such_field < 1";
    let survey = survey_with(45).await?;
    let mirror = gateway_mirror("from-survey", &survey.gateway.grpc_url(), RAW, Some(ALERTS))
        + &format!("filter = {BAD:?}\n");
    let lasair = site("lasair", &[ALERTS], &[mirror]).await?;
    wait_for_mirror(&lasair.gateway, "from-survey", "failed").await?;
    let config = lasair.gateway.config_path().to_owned();
    let text = std::fs::read_to_string(&config)?;

    // A new config that `serve --check` refuses is reported and ignored.
    std::fs::write(&config, text.replace(BAD, "candidate.magpsf >"))?;
    lasair
        .gateway
        .wait_stderr("changed configuration is invalid")
        .await?;
    let status = lasair.gateway.mirror_status().await?;
    ensure!(
        status.len() == 1 && status[0].state == "failed",
        "{status:?}"
    );
    ensure!(status[0].copied == 0, "{status:?}");

    // The fixed filter: the mirror runs it and copies every alert exactly once.
    std::fs::write(&config, text.replace(BAD, "candidate.magpsf < 99"))?;
    wait_for_mirror(&lasair.gateway, "from-survey", "running").await?;
    let source = dump(&survey.broker, RAW, 3).await?;
    let copied = settle(&lasair.broker, ALERTS, 3, 45).await?;
    check_exactly_once(&source, "am://survey/ztf.raw", &copied)?;
    let m = wait_for_mirror(&lasair.gateway, "from-survey", "running").await?;
    ensure!(m.copied == 45 && m.error.is_empty(), "{m:?}");
    Ok(())
}

#[tokio::test]
async fn a_mirror_refused_for_its_token_runs_once_the_token_file_is_replaced() -> Result<()> {
    let pki = Pki::new()?;
    let (lasair_broker, lasair) = secure_lasair(&pki).await?;
    let dir = pki.dir().join("fink-mirror");
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("mirror.jwt");
    let weak = lasair.issue("fink", &["subscribe:lsst.*"], "1h").await?;
    std::fs::write(&token_file, &weak)?;
    let mirror = secure_mirror(&pki, &lasair.url(), "from-lasair", ALERTS, &token_file)?;
    let fink = site("fink", &[ALERTS], &[mirror]).await?;
    let failed = wait_for_mirror(&fink.gateway, "from-lasair", "failed").await?;
    ensure!(
        failed.error.to_lowercase().contains("permission") && failed.copied == 0,
        "{failed:?}"
    );

    // Replaced as an operator would: written beside it, then renamed over it.
    let good = lasair.issue("fink", &["subscribe:ztf.*"], "1h").await?;
    std::fs::write(dir.join("mirror.jwt.new"), &good)?;
    std::fs::rename(dir.join("mirror.jwt.new"), &token_file)?;
    wait_for_mirror(&fink.gateway, "from-lasair", "running").await?;
    let source = dump(&lasair_broker, ALERTS, 3).await?;
    let copied = settle(&fink.broker, ALERTS, 3, 45).await?;
    check_exactly_once(&source, "am://lasair/ztf.alerts", &copied)?;
    Ok(())
}

/// The destination's producer refuses the largest alerts (`message.max.bytes` below
/// them): each is dead-lettered without its payload, its `am-source` and `am-error` saying
/// which and why, and the mirror copies the rest on in order instead of failing on the
/// first one forever.
#[tokio::test]
async fn records_the_destination_refuses_are_dead_lettered_and_the_mirror_goes_on() -> Result<()> {
    // Between the fixtures' sizes: most are 64-65 KB, some 66 KB (the limit counts the
    // key, the headers and the record's framing too).
    const LIMIT: usize = 65_600;
    let survey = Broker::start("survey").await?;
    survey.create_topic(RAW, 3).await?;
    survey.produce_all(RAW, &survey_records(0, 45)?).await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"ztf-raw\"\ndestination = {ALERTS:?}\n[mirrors.source]\nkafka = {:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n\
         [kafka.properties]\n\"message.max.bytes\" = \"{LIMIT}\"\n",
        survey.bootstrap()
    );
    let lasair = site("lasair", &[ALERTS], &[mirror]).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let m = lasair.gateway.mirror_status().await?;
        if m[0].copied + m[0].dead_lettered >= 45 {
            break m[0].clone();
        }
        ensure!(Instant::now() < deadline, "the mirror stopped: {:?}", m[0]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (n_copied, n_dead) = (status.copied as usize, status.dead_lettered as usize);
    ensure!(
        n_copied + n_dead == 45 && n_copied > 0 && n_dead > 0 && status.state == "running",
        "{status:?}"
    );
    let copied = settle(&lasair.broker, ALERTS, 3, n_copied).await?;
    let dead = settle(&lasair.broker, &format!("{ALERTS}.dlq"), 3, n_dead).await?;
    ensure!(
        copied.len() == n_copied && dead.len() == n_dead,
        "{} copied, {} dead-lettered: {status:?}",
        copied.len(),
        dead.len()
    );
    ensure!(copied.iter().all(|c| c.payload.len() < LIMIT));
    for d in &dead {
        ensure!(d.payload.is_empty(), "a dead letter kept its payload");
        ensure!(
            d.headers
                .get("am-error")
                .is_some_and(|e| e.contains("the destination refused the record")),
            "{:?}",
            d.headers
        );
        ensure!(d.key.as_deref().is_some_and(|k| k.starts_with("ZTF:")));
    }
    // Every source record is in one of the two topics, once, and each copy is whole; a
    // dead letter's `am-source` finds its payload in the source.
    let source = dump(&survey, RAW, 3).await?;
    let am_source = copied[0].headers.get("am-source").context("am-source")?;
    let prefix = am_source
        .rsplitn(3, '/')
        .nth(2)
        .context("am-source shape")?
        .to_owned();
    let mut all = copied.clone();
    for d in &dead {
        let s = d.headers.get("am-source").context("am-source")?;
        let found = source
            .iter()
            .find(|r| *s == format!("{prefix}/{}/{}", r.partition, r.offset))
            .with_context(|| format!("no source record for {s}"))?;
        // The largest fixtures, not any record of the same size as one copied.
        ensure!(
            found.payload.len() > LIMIT - 1_000,
            "{s} ({} bytes) was refused",
            found.payload.len()
        );
        all.push(Found {
            payload: found.payload.clone(),
            ..d.clone()
        });
    }
    // In source order, as the two topics hold them between them.
    all.sort_by_key(|f| {
        let s = f.headers.get("am-source").cloned().unwrap_or_default();
        let mut parts = s.rsplitn(3, '/');
        let offset: i64 = parts.next().and_then(|o| o.parse().ok()).unwrap_or(-1);
        (f.partition, offset)
    });
    check_exactly_once(&source, &prefix, &all)
}

/// A Kafka-source mirror whose source topic gains partitions copies them too, from their
/// first record, without a restart: here a mirror started at `latest` (so nothing written
/// to the new partition before the mirror noticed it may be passed over).
#[tokio::test]
async fn a_kafka_source_that_gains_partitions_is_copied_from_all_of_them() -> Result<()> {
    if !alertmesh_tests::kafka::adds_partitions() {
        return Ok(());
    }
    let mut survey = Broker::start("survey").await?;
    survey.create_topic(RAW, 2).await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"ztf-raw\"\ndestination = {ALERTS:?}\nstart = \"latest\"\n\
         [mirrors.source]\nkafka = {:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
        survey.bootstrap()
    );
    // A destination with room for the source's growth (one the mirror made would have
    // the source's two partitions, and the mirror would stop, saying so, until it grew).
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ALERTS, 3).await?;
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(ALERTS, "ZTF", "avro-ocf")
        .extra(&mirror);
    let lasair = Site {
        gateway: Gateway::start(&spec).await?,
        broker,
    };
    let copied = |n: u64| {
        let gateway = &lasair.gateway;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let m = gateway.mirror_status().await?;
                if m[0].copied >= n {
                    return anyhow::Ok(m[0].clone());
                }
                ensure!(
                    Instant::now() < deadline,
                    "the mirror stopped short of {n}: {:?}",
                    m[0]
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    // Running (at the end of both partitions) before anything is written.
    let deadline = Instant::now() + alertmesh_tests::WAIT;
    while lasair.gateway.mirror_status().await?[0].state != "running" {
        ensure!(Instant::now() < deadline, "the mirror did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = survey_records(0, 30)?;
    let (old, new): (Vec<Record>, Vec<Record>) = records.into_iter().partition(|r| r.partition < 2);
    survey.produce_all(RAW, &old).await?;
    copied(old.len() as u64).await?;
    survey.add_partitions(RAW, 3).await?;
    survey.produce_all(RAW, &new).await?;
    let status = copied((old.len() + new.len()) as u64).await?;
    ensure!(
        status.copied == (old.len() + new.len()) as u64 && status.state == "running",
        "{status:?}"
    );
    let found = settle(&lasair.broker, ALERTS, 3, old.len() + new.len()).await?;
    let third = found.iter().filter(|f| f.partition == 2).count();
    ensure!(
        third == new.len(),
        "{third} of {} copies from the new partition",
        new.len()
    );
    Ok(())
}
