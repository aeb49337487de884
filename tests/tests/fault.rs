//! Faults under running work: Kafka replaced (killed, then a new, empty broker on the same
//! address, since Tansu keeps its data in memory) during a bounded stream and under
//! mirrors, whose source or destination it may be; and a credential request too large to
//! be a token. The gateways must stay up, end streams clearly, and never duplicate or lose
//! records silently.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alertmesh_proto::v1::{IssueCredentialRequest, MirrorInfo};
use alertmesh_tests::auth::{Pki, Secure, SecureSpec};
use alertmesh_tests::client::{collect, earliest, request, take, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_alerts, ztf_records};
use alertmesh_tests::h2c::grpc_head;
use alertmesh_tests::kafka::{assigned_consumer, read_to_eof_with};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Mesh, Record, ZTF_TOPIC};
use anyhow::{bail, ensure, Context, Result};
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;
use tonic::Code;

/// How long a killed broker stays dead: long enough for every client to notice.
const DOWN: Duration = Duration::from_secs(12);

const RAW: &str = "ztf.raw";
const ALERTS: &str = "ztf.alerts";

/// Fails if the gateway exited, or a thread of it panicked.
fn alive(gateway: &mut Gateway) -> Result<()> {
    if let Some(exit) = gateway.exited() {
        bail!(
            "gateway {} exited with {exit}; stderr tail:\n{}",
            gateway.name(),
            gateway.stderr_tail(40)
        );
    }
    let log = gateway.stderr_tail(4000);
    ensure!(
        !log.contains("panicked"),
        "a gateway thread panicked:\n{log}"
    );
    Ok(())
}

/// Kills `broker`, leaves it dead for [`DOWN`], then starts an empty one on its address.
async fn replace_after_outage(broker: &mut Broker) -> Result<()> {
    broker.kill();
    tokio::time::sleep(DOWN).await;
    broker.replace().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bounded_stream_ends_clearly_when_its_kafka_is_replaced() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    req.max_batch_alerts = 1;
    let mut stream = client.subscribe(req).await?.into_inner();
    let first = take(&mut stream, 2, Duration::from_secs(20)).await?;

    replace_after_outage(&mut site.broker).await?;
    site.broker.create_topic(ZTF_TOPIC, 2).await?;
    // Complete (what the gateway had read), or a clear error: never a hang.
    let got = collect(stream, Duration::from_secs(30)).await;
    let total = first.len() + got.alerts.len();
    match &got.end {
        None => bail!("the bounded stream hung after {total} alerts"),
        Some(Ok(())) => ensure!(total <= 45, "read {total} alerts of 45"),
        Some(Err(s)) => ensure!(
            matches!(s.code(), Code::DataLoss | Code::Unavailable) && !s.message().is_empty(),
            "the stream ended with {:?} {:?}",
            s.code(),
            s.message()
        ),
    }
    alive(&mut site.gateway)?;
    // The gateway serves the new cluster.
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = collect(
        client.subscribe(req).await?.into_inner(),
        Duration::from_secs(20),
    )
    .await;
    ensure!(
        matches!(got.end, Some(Ok(()))) && got.alerts.is_empty(),
        "{:?} after {} alerts",
        got.end,
        got.alerts.len()
    );
    Ok(())
}

/// The ZTF alerts as a survey publishes them: no key, no headers, 3 partitions.
fn survey_records(count: usize) -> Result<Vec<Record>> {
    let alerts = ztf_alerts()?;
    let base = now_ms() - 60_000;
    Ok((0..count)
        .map(|i| Record {
            partition: (i % 3) as i32,
            key: None,
            payload: alerts[i % alerts.len()].payload.clone(),
            headers: Vec::new(),
            timestamp_ms: base + i as i64,
        })
        .collect())
}

/// A survey broker whose `ztf.raw` holds `n` alerts.
async fn survey_broker(n: usize) -> Result<Broker> {
    let broker = Broker::start("survey").await?;
    broker.create_topic(RAW, 3).await?;
    broker.produce_all(RAW, &survey_records(n)?).await?;
    Ok(broker)
}

fn kafka_mirror(bootstrap: &str) -> String {
    format!(
        "[[mirrors]]\nname = \"raw\"\ndestination = {ALERTS:?}\nstart = \"earliest\"\n[mirrors.source]\nkafka = {bootstrap:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n"
    )
}

fn gateway_mirror(url: &str) -> String {
    format!(
        "[[mirrors]]\nname = \"relay\"\ndestination = {ALERTS:?}\nstart = \"earliest\"\n[mirrors.source]\ngateway = {url:?}\ntopic = {RAW:?}\n"
    )
}

/// Broker and gateway `lasair`, serving `ztf.alerts` and running `mirror`.
async fn lasair(mirror: &str) -> Result<(Broker, Gateway)> {
    let broker = Broker::start("lasair").await?;
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(ALERTS, "ZTF", "avro-ocf")
        .extra(mirror);
    let gateway = Gateway::start(&spec).await?;
    Ok((broker, gateway))
}

/// The `am-source` header of every record of `topic`, read straight from Kafka.
async fn sources(broker: &Broker, topic: &str) -> Result<Vec<String>> {
    let bootstrap = broker.bootstrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = assigned_consumer(&bootstrap, &topic, 3, Offset::Beginning)?;
        let mut out = Vec::new();
        read_to_eof_with(&consumer, 3, 0, Duration::from_secs(20), |m| {
            let source = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "am-source")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            out.push(source.unwrap_or_default());
        })?;
        Ok(out)
    })
    .await?
}

/// Waits until the destination holds `n` records, then checks it holds exactly `n`, each
/// naming a different source record.
async fn holds_exactly(broker: &Broker, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut found = Vec::new();
    while Instant::now() < deadline {
        found = sources(broker, ALERTS).await.unwrap_or_default();
        if found.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A little longer, to catch copies made twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let found = match sources(broker, ALERTS).await {
        Ok(now) => now,
        Err(_) => found,
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for s in &found {
        ensure!(!s.is_empty(), "a copy without am-source");
        *seen.entry(s).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(repeated.is_empty(), "copied more than once: {repeated:?}");
    ensure!(
        found.len() == n,
        "the destination holds {} records, want {n}",
        found.len()
    );
    Ok(())
}

/// The mirror's status over the admin RPC; the CLI's `mirror status` answers too.
async fn status(gateway: &Gateway) -> Result<MirrorInfo> {
    let mut all = gateway.mirror_status().await?;
    ensure!(all.len() == 1, "{all:?}");
    let out = gateway.cli(&["mirror", "status"]).await?;
    ensure!(
        out.status.success(),
        "mirror status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(all.remove(0))
}

/// Waits until the mirror reports a new error (more than `errors_before`) whose text
/// satisfies `says`; returns it.
async fn reports(
    gateway: &mut Gateway,
    errors_before: u64,
    says: impl Fn(&str) -> bool,
) -> Result<MirrorInfo> {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = None;
    while Instant::now() < deadline {
        alive(gateway)?;
        let m = status(gateway).await?;
        if m.errors > errors_before && says(&m.error) {
            return Ok(m);
        }
        last = Some(m);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the mirror reported no such error: {last:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_source_mirror_reports_a_replaced_source_instead_of_copying_it_again() -> Result<()>
{
    let mut survey = survey_broker(45).await?;
    let (lasair_broker, mut lasair) = lasair(&kafka_mirror(&survey.bootstrap())).await?;
    holds_exactly(&lasair_broker, 45).await?;
    let before = status(&lasair).await?;

    replace_after_outage(&mut survey).await?;
    survey.create_topic(RAW, 3).await?;
    // Fewer records than the destination already copied: the new ones reuse old offsets.
    survey.produce_all(RAW, &survey_records(6)?).await?;
    let m = reports(&mut lasair, before.errors, |e| e.contains("went back")).await?;
    ensure!(m.error.contains("partition"), "{}", m.error);
    holds_exactly(&lasair_broker, 45).await?;
    alive(&mut lasair)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_survives_its_destination_being_replaced_and_copies_again_once() -> Result<()> {
    let survey = survey_broker(45).await?;
    let (mut lasair_broker, mut lasair) = lasair(&kafka_mirror(&survey.bootstrap())).await?;
    holds_exactly(&lasair_broker, 45).await?;
    let before = status(&lasair).await?;

    replace_after_outage(&mut lasair_broker).await?;
    // The mirror recreates its destination on the new cluster and, finding no copy there,
    // copies the source again: once.
    holds_exactly(&lasair_broker, 45).await?;
    alive(&mut lasair)?;
    let m = status(&lasair).await?;
    ensure!(
        m.reconnects > before.reconnects && m.errors > before.errors,
        "the outage left no trace in status: {m:?}"
    );
    ensure!(m.state == "running", "{m:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_source_mirror_reports_its_source_kafka_being_replaced() -> Result<()> {
    let mut survey_broker = survey_broker(45).await?;
    let spec = GatewaySpec::new("survey", &survey_broker.bootstrap()).topic(RAW, "ZTF", "avro-ocf");
    let mut survey = Gateway::start(&spec).await?;
    let (lasair_broker, mut lasair) = lasair(&gateway_mirror(&survey.grpc_url())).await?;
    holds_exactly(&lasair_broker, 45).await?;
    let before = status(&lasair).await?;

    replace_after_outage(&mut survey_broker).await?;
    survey_broker.create_topic(RAW, 3).await?;
    survey_broker.produce_all(RAW, &survey_records(6)?).await?;
    // The survey's gateway tells its subscriber; the mirror shows it and copies nothing
    // twice.
    reports(&mut lasair, before.errors, |e| !e.is_empty()).await?;
    holds_exactly(&lasair_broker, 45).await?;
    alive(&mut survey)?;
    alive(&mut lasair)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_credential_subject_is_refused_and_not_logged() -> Result<()> {
    let pki = Pki::new()?;
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 2).await?;
    broker
        .produce_all(ZTF_TOPIC, &ztf_records(2, now_ms(), 1000)?[..4])
        .await?;
    let spec = SecureSpec::new("lasair", &broker.bootstrap()).topic(ZTF_TOPIC, false);
    let gw = Secure::start(&pki, spec).await?;
    let cert = pki.client("ops")?;
    let admin_token = gw.issue("ops", &["admin"], "1h").await?;
    let mut admin = gw.client(Some(&cert), Some(&admin_token)).await?;
    let huge = "s".repeat(900_000);
    for _ in 0..20 {
        let refused = admin
            .issue_credential(IssueCredentialRequest {
                subject: huge.clone(),
                scopes: vec!["subscribe:ztf.*".into()],
                ttl_seconds: 600,
                audience: String::new(),
            })
            .await
            .err()
            .context("a 900 KB subject was accepted")?;
        ensure!(
            refused.code() == Code::InvalidArgument
                && refused.message().contains("256")
                && refused.message().len() < 1024,
            "{:?} {:?}",
            refused.code(),
            &refused.message()[..refused.message().len().min(300)]
        );
    }
    let refused = admin
        .issue_credential(IssueCredentialRequest {
            subject: "bob".into(),
            scopes: vec!["subscribe:ztf.*".into(); 1000],
            ttl_seconds: 600,
            audience: String::new(),
        })
        .await
        .err()
        .context("1000 scopes were accepted")?;
    ensure!(refused.code() == Code::InvalidArgument && refused.message().contains("64 scopes"));
    // A normal one still works.
    admin
        .issue_credential(IssueCredentialRequest {
            subject: "bob".into(),
            scopes: vec!["subscribe:ztf.*".into()],
            ttl_seconds: 600,
            audience: String::new(),
        })
        .await?;
    let log = gw.gateway.stderr_tail(1_000_000).len();
    ensure!(log < 200_000, "the gateway log grew to {log} bytes");
    Ok(())
}

/// A rapid-reset attack (streams opened and cancelled at once, over and over) once wrote
/// thousands of WARN lines: the log stays small and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_rapid_reset_attack_does_not_flood_the_log() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .ztf_alerts()
        .start()
        .await?;
    let addr = site.gateway.grpc_addr();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut resets, mut connections) = (0u32, 0u32);
    'connections: while Instant::now() < deadline && resets < 20_000 {
        connections += 1;
        let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await else {
            continue;
        };
        let Ok((mut send, connection)) = h2::client::Builder::new()
            .handshake::<_, bytes::Bytes>(tcp)
            .await
        else {
            continue;
        };
        tokio::spawn(connection);
        while Instant::now() < deadline && resets < 20_000 {
            match tokio::time::timeout(Duration::from_secs(1), send.clone().ready()).await {
                Ok(Ok(ready)) => send = ready,
                // The server may close a connection that resets too much: open another.
                _ => continue 'connections,
            }
            let Ok((_response, mut stream)) =
                send.send_request(grpc_head(&addr, "/alertmesh.v1.AlertMesh/Subscribe"), false)
            else {
                continue 'connections;
            };
            stream.send_reset(h2::Reason::CANCEL);
            resets += 1;
        }
    }
    ensure!(resets > 1000, "only {resets} streams reset");
    eprintln!("{resets} streams reset on {connections} connections");
    // Let the gateway handle what is still in flight.
    tokio::time::sleep(Duration::from_secs(1)).await;
    alive(&mut site.gateway)?;
    let log = site.gateway.stderr_tail(1_000_000);
    let loud = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    ensure!(
        loud < 100,
        "{loud} warnings after {resets} resets on {connections} connections:\n{}",
        log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
    );
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = collect(
        client.subscribe(req).await?.into_inner(),
        Duration::from_secs(20),
    )
    .await;
    ensure!(
        matches!(got.end, Some(Ok(()))) && got.alerts.len() == 45,
        "{:?} after {} alerts",
        got.end,
        got.alerts.len()
    );
    Ok(())
}
