//! Publishing derived records (issue 12), on one Tansu and release gateways:
//!
//! - throughput: N records of 1 KB JSON, each with `derived_from`, `activity`, `used` and a
//!   publish id, sent through the gateway's `Publish` in batches of B (P batches in flight)
//!   to a publishable topic with a JSON Schema, against a direct rdkafka producer writing the
//!   same keys, payloads and provenance headers to a topic of the same shape (idempotent,
//!   `acks=all`, as the gateway's producer). Rounds alternate the order (ABBA); medians and
//!   the per-round ratio gateway / direct are printed.
//! - provenance walk: a 3-gateway chain. `a` serves survey alerts, `b` mirrors them, `c`
//!   mirrors `b` and holds a derived record published from `b`'s copy; `Provenance` of that
//!   record on `c` walks `c` → `b` → `a`. W sequential walks, p50/p99/max printed.
//!
//! Run: `cargo build --release -p alertmesh-gateway --bin alertmesh && cargo run --release
//! -p alertmesh-tests --bin bench_publish -- [--n N] [--batch B] [--in-flight P]
//! [--rounds R] [--warmup W] [--walks W]` (or `BENCH_PUBLISH_N`, ... env variables).
//! The gateway binary comes from `$ALERTMESH_BIN` or sits next to this one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmesh_proto::v1::{self, PublishRecord, PublishRequest};
use alertmesh_tests::bench::{cpu_time, median, numeric_args, peak_rss_kib};
use alertmesh_tests::cli::alertmesh_bin;
use alertmesh_tests::client::{collect, earliest, request, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_alerts};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Record};
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinSet;

const PARTITIONS: i32 = 3;
const PUBLISHED: &str = "bench.published";
const DIRECT: &str = "bench.direct";
const RECORD_BYTES: usize = 1024;
/// The schema the gateway checks every payload against.
const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["objectId", "class", "score", "features"],
  "properties": {
    "objectId": {"type": "string"},
    "class": {"type": "string"},
    "score": {"type": "number"},
    "features": {"type": "object"}
  }
}"#;
const ACTIVITY: &str = r#"{"name":"snclass","version":"2.1.0","parameters":{"threshold":0.5}}"#;

#[derive(Debug, Clone, Copy)]
struct Args {
    n: usize,
    batch: usize,
    in_flight: usize,
    rounds: usize,
    warmup: usize,
    walks: usize,
}

fn args() -> Result<Args> {
    let v = numeric_args(&[
        ("--n", "BENCH_PUBLISH_N", 50_000),
        ("--batch", "BENCH_PUBLISH_BATCH", 500),
        ("--in-flight", "BENCH_PUBLISH_IN_FLIGHT", 4),
        ("--rounds", "BENCH_ROUNDS", 6),
        ("--warmup", "BENCH_WARMUP", 1),
        ("--walks", "BENCH_PUBLISH_WALKS", 300),
    ])?;
    Ok(Args {
        n: v["--n"].max(1) as usize,
        batch: v["--batch"].max(1) as usize,
        in_flight: v["--in-flight"].max(1) as usize,
        rounds: v["--rounds"].max(1) as usize,
        warmup: v["--warmup"] as usize,
        walks: v["--walks"].max(1) as usize,
    })
}

/// The `i`th record of round `round`: a 1 KB JSON object of one ZTF object, derived from
/// two alerts on other gateways, with a catalog row used.
fn record(round: &str, i: usize) -> PublishRecord {
    let head = format!(
        r#"{{"objectId":"ZTF21bench{i:06}","class":"SN Ia","score":0.{:03},"features":{{"rise":0.21,"decline":0.034,"peak_mag":18.7,"pad":""#,
        i % 1000
    );
    let pad = RECORD_BYTES.saturating_sub(head.len() + 3);
    let payload = format!("{head}{}\"}}}}", "x".repeat(pad));
    PublishRecord {
        key: format!("ZTF:ZTF21bench{i:06}"),
        payload: Bytes::from(payload),
        derived_from: vec![
            format!("am://lasair/ztf.alerts/{}/{}", i % 3, 1000 + i),
            format!("am://antares/ztf.alerts/{}/{}", i % 2, 2000 + i),
        ],
        activity: Some(v1::Activity {
            name: "snclass".into(),
            version: "2.1.0".into(),
            parameters_json: r#"{"threshold":0.5}"#.into(),
        }),
        used: vec![format!("catalog:gaia-dr3/{}", 4_295_806_720u64 + i as u64)],
        publish_id: format!("{round}/{i}"),
    }
}

/// One timed round.
#[derive(Debug, Clone, Copy)]
struct Timed {
    elapsed: Duration,
    /// CPU seconds of the gateway over the round (0 for the direct producer).
    gateway_cpu: f64,
    client_cpu: f64,
}

fn producer(bootstrap: &str) -> Result<FutureProducer> {
    // As the gateway's publish producer: idempotent, acks=all, linger 2 ms.
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.max.bytes", "2000000")
        .set("message.timeout.ms", "60000")
        .create()?)
}

/// The direct producer writes what the gateway writes: key, payload and the provenance
/// headers, one record per `send`, then waits for every acknowledgement.
async fn direct(producer: &FutureProducer, records: &[PublishRecord]) -> Result<Duration> {
    let began = Instant::now();
    let mut pending = VecDeque::new();
    for r in records {
        let derived = r.derived_from.join(",");
        let used = serde_json::to_string(&r.used)?;
        let headers = OwnedHeaders::new_with_capacity(8)
            .insert(hdr("am-ns", b"ZTF"))
            .insert(hdr("am-format", b"json"))
            .insert(hdr("am-hops", b"bench"))
            .insert(hdr("am-derived-from", derived.as_bytes()))
            .insert(hdr("am-activity", ACTIVITY.as_bytes()))
            .insert(hdr("am-used", used.as_bytes()))
            .insert(hdr("am-agent", br#"{"sub":"anonymous","iss":"bench"}"#))
            .insert(hdr("am-publish-id", r.publish_id.as_bytes()));
        let mut rec = FutureRecord::to(DIRECT)
            .key(r.key.as_str())
            .payload(r.payload.as_ref())
            .headers(headers);
        loop {
            match producer.send_result(rec) {
                Ok(d) => {
                    pending.push_back(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    if let Some(d) = pending.pop_front() {
                        d.await?.map_err(|(e, _)| e)?;
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(began.elapsed())
}

fn hdr<'a>(key: &'a str, value: &'a [u8]) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value),
    }
}

/// Every record through `Publish`, `batch` per request, `in_flight` requests at a time.
async fn through_gateway(
    gateway: &Gateway,
    records: Arc<Vec<PublishRecord>>,
    batch: usize,
    in_flight: usize,
) -> Result<Duration> {
    let chunks = records.len().div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..in_flight {
        clients.push(gateway.client().await?);
    }
    let began = Instant::now();
    let mut tasks = JoinSet::new();
    for mut client in clients {
        let (records, next) = (Arc::clone(&records), Arc::clone(&next));
        tasks.spawn(async move {
            let mut written = 0usize;
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    return anyhow::Ok(written);
                }
                let part = &records[c * batch..((c + 1) * batch).min(records.len())];
                let results = client
                    .publish(PublishRequest {
                        topic: PUBLISHED.into(),
                        records: part.to_vec(),
                    })
                    .await?
                    .into_inner()
                    .results;
                ensure!(results.len() == part.len(), "{} results", results.len());
                written += results.iter().filter(|r| !r.duplicate).count();
            }
        });
    }
    let mut written = 0;
    while let Some(t) = tasks.join_next().await {
        written += t??;
    }
    let elapsed = began.elapsed();
    ensure!(
        written == records.len(),
        "the gateway wrote {written} of {} new records",
        records.len()
    );
    Ok(elapsed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let bin = alertmesh_bin();
    if !bin.exists() {
        bail!(
            "no gateway binary at {}; run `cargo build --release -p alertmesh-gateway` or set ALERTMESH_BIN",
            bin.display()
        );
    }
    eprintln!("gateway binary: {}; {args:?}", bin.display());
    let broker = Broker::start("bench").await?;
    broker.create_topic(PUBLISHED, PARTITIONS).await?;
    broker.create_topic(DIRECT, PARTITIONS).await?;
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("class.schema.json");
    std::fs::write(&schema, SCHEMA)?;
    let mut spec = GatewaySpec::new("bench", &broker.bootstrap()).extra(&format!(
        "[[topics]]\nname = {PUBLISHED:?}\nnamespace = \"ZTF\"\nformat = \"json\"\npublish = true\nschema = {:?}\n",
        schema.display().to_string()
    ));
    if let Ok(extra) = std::env::var("BENCH_GATEWAY_TOML") {
        spec = spec.extra(&extra);
    }
    let gateway = Gateway::start(&spec).await?;
    let pid = gateway.pid().context("gateway pid")?;
    let producer = producer(&broker.bootstrap())?;

    let build = |round: &str| Arc::new((0..args.n).map(|i| record(round, i)).collect::<Vec<_>>());
    let cpu = |pid| cpu_time(pid).unwrap_or_default().as_secs_f64();
    let timed = |elapsed, g0: f64, c0: f64, gateway_side: bool| Timed {
        elapsed,
        gateway_cpu: if gateway_side {
            cpu(Some(pid)) - g0
        } else {
            0.0
        },
        client_cpu: cpu(None) - c0,
    };
    for w in 0..args.warmup {
        direct(&producer, &build(&format!("w{w}"))).await?;
        through_gateway(
            &gateway,
            build(&format!("w{w}")),
            args.batch,
            args.in_flight,
        )
        .await?;
    }
    let (mut ds, mut gs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let records = build(&format!("r{round}"));
        let run_direct = || async {
            let (g0, c0) = (cpu(Some(pid)), cpu(None));
            let e = direct(&producer, &records).await?;
            anyhow::Ok(timed(e, g0, c0, false))
        };
        let run_gateway = || async {
            let (g0, c0) = (cpu(Some(pid)), cpu(None));
            let e =
                through_gateway(&gateway, Arc::clone(&records), args.batch, args.in_flight).await?;
            anyhow::Ok(timed(e, g0, c0, true))
        };
        // ABBA: direct first in rounds 0 and 3, gateway first in 1 and 2, and so on.
        let (d, g) = if matches!(round % 4, 0 | 3) {
            let d = run_direct().await?;
            (d, run_gateway().await?)
        } else {
            let g = run_gateway().await?;
            (run_direct().await?, g)
        };
        eprintln!(
            "round {round}: direct {:.0?} (client cpu {:.2} s), gateway {:.0?} (gateway cpu {:.2} s, client cpu {:.2} s)",
            d.elapsed, d.client_cpu, g.elapsed, g.gateway_cpu, g.client_cpu
        );
        ds.push(d);
        gs.push(g);
    }
    let rate = |t: &Timed| args.n as f64 / t.elapsed.as_secs_f64();
    let ratios: Vec<f64> = ds.iter().zip(&gs).map(|(d, g)| rate(g) / rate(d)).collect();
    let d_rate = median(&ds.iter().map(rate).collect::<Vec<_>>());
    let g_rate = median(&gs.iter().map(rate).collect::<Vec<_>>());
    let mb = |r: f64| r * RECORD_BYTES as f64 / 1e6;
    let metrics = gateway.metrics().await.ok();
    let gateway_rss = peak_rss_kib(pid);
    drop(gateway);

    // The 3-gateway chain.
    let walks = provenance_chain(&broker, args.walks).await?;

    println!();
    println!(
        "{:<44} {:>11} {:>7} {:>11} {:>7} {:>6}  per round",
        "publish (median of rounds)", "direct /s", "MB/s", "gateway /s", "MB/s", "ratio"
    );
    println!(
        "{:<44} {:>11.0} {:>7.1} {:>11.0} {:>7.1} {:>6.2}  {}",
        format!(
            "1 KB JSON x {} (batch {}, {} in flight)",
            args.n, args.batch, args.in_flight
        ),
        d_rate,
        mb(d_rate),
        g_rate,
        mb(g_rate),
        median(&ratios),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!(
        "ratio = gateway records/s / direct producer records/s, per round, then the median; \
         both write the same keys, payloads and provenance headers, idempotent with acks=all; \
         the gateway also checks each payload against the topic's JSON Schema and each publish \
         id against those already in the partition"
    );
    println!(
        "gateway peak RSS: {} MiB; gateway cpu per round (median): {:.2} s",
        gateway_rss.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
        median(&gs.iter().map(|g| g.gateway_cpu).collect::<Vec<_>>())
    );
    if let Some(m) = metrics {
        let published = m.value("alertmesh_publish_records_total", &[("topic", PUBLISHED)]);
        if published > 0.0 {
            println!("alertmesh_publish_records_total{{topic={PUBLISHED:?}}}: {published}");
        }
    }
    println!();
    let mut sorted = walks.warm.clone();
    sorted.sort();
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "provenance walk c -> b -> a", "walks", "p50 ms", "p99 ms", "max ms", "first ms"
    );
    println!(
        "{:<44} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>9.1}",
        format!("3 gateways, {} entities", walks.entities),
        sorted.len(),
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default()),
        ms(walks.first)
    );
    println!();
    println!(
        "walk: Provenance of a derived record on c (derived from b's mirrored copy of an alert \
         on a), answered by c asking b, and b asking a, over gRPC; sequential walks, the first \
         (connections to the peers not yet open) reported apart"
    );
    Ok(())
}

/// Latencies of the provenance walks.
struct Walks {
    first: Duration,
    warm: Vec<Duration>,
    entities: usize,
}

/// Starts `a` (survey alerts), `b` (mirrors a), `c` (mirrors b, publishable topic), publishes
/// a record on `c` derived from `b`'s copy and times `walks` walks of its provenance on `c`.
async fn provenance_chain(broker: &Broker, walks: usize) -> Result<Walks> {
    const ALERTS: &str = "chain.ztf.alerts";
    const AT_B: &str = "chain.b.ztf.alerts";
    const AT_C: &str = "chain.c.ztf.alerts";
    const CLASS: &str = "chain.c.class";
    broker.create_topic(ALERTS, 1).await?;
    broker.create_topic(CLASS, 1).await?;
    let alerts = ztf_alerts()?;
    let raw: Vec<Record> = alerts
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, a)| Record {
            partition: 0,
            key: Some(Bytes::from(a.mesh_key())),
            payload: a.payload.clone(),
            headers: vec![("am-ns".to_owned(), Some(Bytes::from_static(b"ZTF")))],
            timestamp_ms: now_ms() - 60_000 + i as i64,
        })
        .collect();
    broker.produce_all(ALERTS, &raw).await?;
    let mirror = |source: &Gateway, topic: &str, destination: &str| {
        format!(
            "[[mirrors]]\nname = \"m\"\ndestination = {destination:?}\nstart = \"earliest\"\n\
             [mirrors.source]\ngateway = {:?}\ntopic = {topic:?}\n",
            source.grpc_url()
        )
    };
    let a = Gateway::start(
        &GatewaySpec::new("a", &broker.bootstrap()).topic(ALERTS, "ZTF", "avro-ocf"),
    )
    .await?;
    let b = Gateway::start(
        &GatewaySpec::new("b", &broker.bootstrap())
            .topic(AT_B, "ZTF", "avro-ocf")
            .extra(&mirror(&a, ALERTS, AT_B)),
    )
    .await?;
    let c = Gateway::start(
        &GatewaySpec::new("c", &broker.bootstrap())
            .topic(AT_C, "ZTF", "avro-ocf")
            .extra(&format!(
                "[[topics]]\nname = {CLASS:?}\nnamespace = \"ZTF\"\nformat = \"json\"\npublish = true\n"
            ))
            .extra(&mirror(&b, AT_B, AT_C)),
    )
    .await?;
    // b's copy of the first alert, read through b once the mirror wrote it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let copy = loop {
        let mut client = b.client().await?;
        let mut req = request(AT_B);
        req.start = earliest();
        req.end = until_now();
        let got = collect(
            client.subscribe(req).await?.into_inner(),
            Duration::from_secs(20),
        )
        .await;
        if let Some(first) = got.alerts.first() {
            break first.r#ref.clone();
        }
        ensure!(Instant::now() < deadline, "b's mirror copied nothing");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // c must know b as a mirror source before it can ask it: wait for c's copy too.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut client = c.client().await?;
        let mut req = request(AT_C);
        req.start = earliest();
        req.end = until_now();
        let got = collect(
            client.subscribe(req).await?.into_inner(),
            Duration::from_secs(20),
        )
        .await;
        if !got.alerts.is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "c's mirror copied nothing");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut client = c.client().await?;
    let mut rec = record("chain", 0);
    rec.derived_from = vec![copy.clone()];
    let derived = client
        .publish(PublishRequest {
            topic: CLASS.into(),
            records: vec![rec],
        })
        .await?
        .into_inner()
        .results
        .first()
        .context("no publish result")?
        .r#ref
        .clone();
    let walk = |client: &mut alertmesh_proto::v1::alert_mesh_client::AlertMeshClient<_>| {
        let req = v1::ProvenanceRequest {
            r#ref: derived.clone(),
            max_depth: None,
            timeout_ms: 30_000,
        };
        let mut client = client.clone();
        async move {
            let began = Instant::now();
            let g = client.provenance(req).await?.into_inner();
            anyhow::Ok((began.elapsed(), g))
        }
    };
    let (first, g) = walk(&mut client).await?;
    // The walk must reach a's alert and resolve every entity: a latency of a walk that
    // stopped early would say nothing.
    let unresolved: Vec<&str> = g
        .entities
        .iter()
        .filter(|e| !e.resolved)
        .map(|e| e.id.as_str())
        .collect();
    ensure!(unresolved.is_empty(), "unresolved entities: {unresolved:?}");
    ensure!(
        g.entities.iter().any(|e| e.gateway == "a" && e.resolved),
        "the walk did not reach gateway a: {g:#?}"
    );
    let entities = g.entities.len();
    let mut warm = Vec::with_capacity(walks);
    for _ in 0..walks {
        let (t, g) = walk(&mut client).await?;
        ensure!(
            g.entities.len() == entities,
            "{} entities",
            g.entities.len()
        );
        warm.push(t);
    }
    Ok(Walks {
        first,
        warm,
        entities,
    })
}
