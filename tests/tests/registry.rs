//! Schema registry interop with real gateways and a real HTTP registry: a raw LSST stream
//! decoded with schemas fetched by id (and what an outage, an unknown id or a short frame
//! do to a mirror), the gateway's own Confluent-compatible registry API, and a chain of
//! three gateways where only the first holds the schema files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alertmesh_alert::{encode, Alert, Decoder, Format, Target};
use alertmesh_tests::cli::json_lines;
use alertmesh_tests::fixtures::now_ms;
use alertmesh_tests::kafka::{assigned_consumer, read_to_eof_with};
use alertmesh_tests::metrics::http_get;
use alertmesh_tests::registry::{lsst_fixture_schemas, lsst_fixtures, Mode, SchemaRegistry};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Record};
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;

/// One record as found in a topic: key, payload and headers.
#[derive(Debug, Clone)]
struct Found {
    payload: Bytes,
    headers: HashMap<String, String>,
}

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
                payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                headers,
            });
        })?;
        Ok(out)
    })
    .await?
}

/// Waits until `topic` holds at least `n` records, then returns them all.
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

/// Real Rubin alerts framed as Rubin publishes them: the ten 7.1 alerts of the Ampel
/// sample (id 701) and the 9.0 and 11.0 sample alerts (ids 900, 1100).
fn lsst_alerts() -> Result<Vec<(u32, Alert)>> {
    let decoder = Decoder::new();
    let dir = lsst_fixtures();
    let mut out = Vec::new();
    let ampel = std::fs::read(dir.join("ampel_usdf_dev_v7_1/schema_701.avro"))?;
    for a in decoder.decode_all(Format::AvroOcf, &ampel)? {
        out.push((701, a));
    }
    for (id, v) in [(900, "9/0"), (1100, "11/0")] {
        let ocf = std::fs::read(dir.join(format!("sample_data/{v}/fakeAlert.avro")))?;
        out.push((id, decoder.decode(Format::AvroOcf, &ocf)?));
    }
    Ok(out)
}

fn framed(alerts: &[(u32, Alert)], base_ms: i64) -> Result<Vec<Record>> {
    alerts
        .iter()
        .enumerate()
        .map(|(i, (id, a))| {
            Ok(Record {
                partition: (i % 3) as i32,
                key: None,
                payload: Bytes::from(encode(a, Target::Confluent(*id))?),
                headers: Vec::new(),
                timestamp_ms: base_ms + i as i64,
            })
        })
        .collect()
}

fn raw(payload: Vec<u8>, partition: i32) -> Record {
    Record {
        partition,
        key: None,
        payload: Bytes::from(payload),
        headers: Vec::new(),
        timestamp_ms: now_ms(),
    }
}

/// The `diaSourceId` of every alert a gateway serves on `topic`, sorted.
async fn served_ids(gateway: &Gateway, topic: &str) -> Result<Vec<i64>> {
    let out = gateway
        .cli(&[
            "subscribe",
            "--topic",
            topic,
            "--from",
            "earliest",
            "--until",
            "now",
            "--omit-cutouts",
        ])
        .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids: Vec<i64> = json_lines(&out)?
        .iter()
        .filter_map(|l| l["alert"]["diaSource"]["diaSourceId"].as_i64())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn dia_source_ids(alerts: &[(u32, Alert)]) -> Vec<i64> {
    let path = alertmesh_alert::FieldPath::parse("diaSource.diaSourceId").expect("a path");
    let mut ids: Vec<i64> = alerts
        .iter()
        .filter_map(|(_, a)| match path.lookup(a.value()) {
            Some(alertmesh_alert::apache_avro::types::Value::Long(v)) => Some(*v),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn raw_mirror(survey: &Broker, registry: &str) -> String {
    format!(
        "[[topics]]\nname = \"lsst.alerts\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\npublic = true\n\n\
         [[mirrors]]\nname = \"rubin\"\ndestination = \"lsst.alerts\"\n[mirrors.source]\nkafka = {:?}\n\
         topic = \"lsst.raw\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\nschema_registry = {registry:?}\n",
        survey.bootstrap()
    )
}

#[tokio::test]
async fn a_raw_lsst_stream_decodes_with_schemas_from_a_registry_and_survives_its_outage(
) -> Result<()> {
    let alerts = lsst_alerts()?;
    let mut registry = SchemaRegistry::start(lsst_fixture_schemas()?).await?;
    let survey = Broker::start("rubin").await?;
    survey.create_topic("lsst.raw", 3).await?;
    let mut records = framed(&alerts, now_ms() - 10_000)?;
    // An id the registry does not know, and a frame shorter than its 5-byte header.
    let body = &records[0].payload[5..];
    records.push(raw([&[0, 0, 0, 0x10, 0x92][..], body].concat(), 0));
    records.push(raw(vec![0, 0, 0], 1));
    survey.produce_all("lsst.raw", &records).await?;

    let broker = Broker::start("fink").await?;
    let spec =
        GatewaySpec::new("fink", &broker.bootstrap()).extra(&raw_mirror(&survey, &registry.url()));
    let fink = Gateway::start(&spec).await?;
    let copied = settle(&broker, "lsst.alerts", 3, 12).await?;
    ensure!(copied.len() == 12, "{}", copied.len());
    ensure!(
        copied
            .iter()
            .all(|c| records.iter().any(|r| r.payload == c.payload)),
        "payloads are copied unchanged"
    );
    let dead = settle(&broker, "lsst.alerts.dlq", 3, 2).await?;
    let mut reasons: Vec<&str> = dead
        .iter()
        .filter_map(|d| d.headers.get("am-error").map(String::as_str))
        .collect();
    reasons.sort();
    ensure!(reasons.len() == 2, "{reasons:?}");
    ensure!(
        reasons.iter().any(|r| r.contains("unknown schema id 4242")),
        "{reasons:?}"
    );
    ensure!(
        reasons.iter().any(|r| r.contains("truncated")),
        "{reasons:?}"
    );
    // Each id was fetched once, however many records named it.
    let lookups = |m: &alertmesh_tests::Metrics, result: &str| {
        m.value(
            "alertmesh_schema_registry_lookups_total",
            &[("result", result)],
        )
    };
    let m = fink.metrics().await?;
    ensure!(lookups(&m, "ok") == 3.0, "ok {}", lookups(&m, "ok"));
    ensure!(lookups(&m, "not_found") >= 1.0);
    ensure!(served_ids(&fink, "lsst.alerts").await? == dia_source_ids(&alerts));

    // The gateway's own registry API serves what it learned.
    let http = fink.http_addr();
    let (status, body) = http_get(&http, "/schemas/ids/1100").await?;
    ensure!(status == 200, "{status} {body}");
    let schema: serde_json::Value = serde_json::from_str(&body)?;
    let text = schema["schema"].as_str().context("schema")?;
    ensure!(text.contains("lsst.v11_0"), "{text:.200}");
    let (status, body) = http_get(&http, "/schemas/ids/900/schema").await?;
    let bare: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(
        status == 200 && bare["namespace"] == "lsst.v9_0",
        "{status} {body:.200}"
    );
    let (status, body) = http_get(&http, "/subjects").await?;
    ensure!(
        status == 200 && body == r#"["lsst.alerts-value"]"#,
        "{body}"
    );
    let (_, body) = http_get(&http, "/subjects/lsst.alerts-value/versions/1/schema").await?;
    let bare: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(bare["namespace"] == "lsst.v7_1", "{body:.200}");
    let (_, body) = http_get(&http, "/subjects/lsst.alerts-value/versions").await?;
    ensure!(body == "[1,2,3]", "{body}");
    let (_, body) = http_get(&http, "/subjects/lsst.alerts-value/versions/latest").await?;
    let latest: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(
        latest["id"] == 1100 && latest["version"] == 3,
        "{body:.200}"
    );
    let (status, body) = http_get(&http, "/schemas/ids/4242").await?;
    ensure!(
        status == 404 && body == r#"{"error_code":40403,"message":"Schema not found"}"#,
        "{status} {body}"
    );
    let (status, body) = http_get(&http, "/subjects/nope-value/versions").await?;
    ensure!(status == 404 && body.contains("40401"), "{status} {body}");
    let (status, body) = http_get(&http, "/subjects/lsst.alerts-value/versions/9").await?;
    ensure!(status == 404 && body.contains("40402"), "{status} {body}");
    // GetSchema, and the topic listing naming the ids and where they are served.
    let out = fink
        .cli(&["schema", "--topic", "lsst.alerts", "--id", "900"])
        .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = &json_lines(&out)?[0];
    ensure!(got["id"] == 900 && got["subject"] == "lsst.alerts-value" && got["format"] == "AVRO");
    ensure!(got["schema"]
        .as_str()
        .is_some_and(|s| s.contains("lsst.v9_0")));
    ensure!(got["fingerprint"].as_str().is_some_and(|f| f.len() == 16));
    let out = fink.cli(&["schema", "--topic", "lsst.alerts"]).await?;
    ensure!(json_lines(&out)?[0]["id"] == 1100, "latest");
    let out = fink
        .cli(&["schema", "--topic", "lsst.alerts", "--id", "4242"])
        .await?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("NOT_FOUND") && err.contains("4242"),
        "{err}"
    );
    let out = fink.cli(&["topics", "--json"]).await?;
    let listed = &json_lines(&out)?[0];
    ensure!(
        listed["schema_ids"] == serde_json::json!([701, 900, 1100]),
        "{listed}"
    );
    ensure!(
        listed["schema_registry"] == format!("http://{http}"),
        "{listed}"
    );

    // An outage: ids seen before still decode; a new id (7.4, never fetched) is a dead
    // letter naming the registry's failure, and the mirror keeps going.
    registry.stop();
    let mut more = framed(&alerts[..2], now_ms())?;
    more.push(raw(
        [&[0, 0, 0, 0x02, 0xc0][..], &more[0].payload[5..]].concat(),
        2,
    ));
    survey.produce_all("lsst.raw", &more).await?;
    let copied = settle(&broker, "lsst.alerts", 3, 14).await?;
    ensure!(copied.len() == 14, "{}", copied.len());
    let dead = settle(&broker, "lsst.alerts.dlq", 3, 3).await?;
    ensure!(
        dead.iter().any(|d| d
            .headers
            .get("am-error")
            .is_some_and(|e| e.contains("schema id 704") && e.contains("registry unavailable"))),
        "{:?}",
        dead.iter()
            .map(|d| d.headers.get("am-error"))
            .collect::<Vec<_>>()
    );
    let m = fink.metrics().await?;
    ensure!(lookups(&m, "unavailable") >= 1.0);

    // Back, but answering garbage (id 1000), then never answering (id 1001): each a dead
    // letter saying so, counted; the mirror goes on and known ids still copy.
    registry.resume().await?;
    let body = more[0].payload[5..].to_vec();
    let with_id = |id: u32| [&[0][..], &id.to_be_bytes(), &body].concat();
    for (mode, id, words, result, dead_letters) in [
        (Mode::Garbage, 1000u32, "garbage", "garbage", 4),
        (Mode::Hang, 1001, "no answer within", "unavailable", 5),
    ] {
        registry.set_mode(mode);
        let mut batch = framed(&alerts[..1], now_ms())?;
        batch.push(raw(with_id(id), 0));
        survey.produce_all("lsst.raw", &batch).await?;
        let dead = settle(&broker, "lsst.alerts.dlq", 3, dead_letters).await?;
        ensure!(
            dead.iter().any(|d| d
                .headers
                .get("am-error")
                .is_some_and(|e| e.contains(&format!("schema id {id}")) && e.contains(words))),
            "{mode:?}: {:?}",
            dead.iter()
                .map(|d| d.headers.get("am-error"))
                .collect::<Vec<_>>()
        );
        let m = fink.metrics().await?;
        ensure!(lookups(&m, result) >= 1.0, "{result}");
    }
    let copied = settle(&broker, "lsst.alerts", 3, 16).await?;
    ensure!(copied.len() == 16, "{}", copied.len());
    Ok(())
}

#[tokio::test]
async fn a_three_gateway_chain_decodes_where_only_the_first_has_the_schemas() -> Result<()> {
    let alerts = lsst_alerts()?;
    let schema_dir = lsst_fixtures().join("schema");
    let topic = "[[topics]]\nname = \"lsst.alerts\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\npublic = true\n";
    let rubin_broker = Broker::start("rubin").await?;
    rubin_broker.create_topic("lsst.alerts", 3).await?;
    let mut records = framed(&alerts, now_ms() - 10_000)?;
    // Keyed as the mesh keys them, so no hop needs to decode to copy.
    let registry = alertmesh_alert::Registry::builtin();
    for (r, (_, a)) in records.iter_mut().zip(&alerts) {
        let key = alertmesh_alert::Subject::new(a, &registry)
            .key
            .context("a key")?;
        r.key = Some(Bytes::from(key.to_string()));
    }
    rubin_broker.produce_all("lsst.alerts", &records).await?;
    let rubin = Gateway::start(
        &GatewaySpec::new("rubin", &rubin_broker.bootstrap())
            .extra(&format!(
                "[alert]\nschema_dir = {:?}\n",
                schema_dir.display().to_string()
            ))
            .extra(topic),
    )
    .await?;
    // The middle hop names the first one's registry API; the last names nothing and asks
    // its source gateway (GetSchema).
    let hop = |name: &str, bootstrap: &str, upstream: &Gateway, registry: bool| {
        let registry = if registry {
            format!("schema_registry = \"http://{}\"\n", upstream.http_addr())
        } else {
            String::new()
        };
        GatewaySpec::new(name, bootstrap)
            .extra(topic)
            .extra(&format!(
                "[[mirrors]]\nname = \"up\"\ndestination = \"lsst.alerts\"\nstart = \"earliest\"\n\
             [mirrors.source]\ngateway = {:?}\ntopic = \"lsst.alerts\"\n{registry}",
                upstream.grpc_url(),
            ))
    };
    let lasair_broker = Broker::start("lasair").await?;
    let lasair = Gateway::start(&hop("lasair", &lasair_broker.bootstrap(), &rubin, true)).await?;
    let fink_broker = Broker::start("fink").await?;
    let fink = Gateway::start(&hop("fink", &fink_broker.bootstrap(), &lasair, false)).await?;
    settle(&fink_broker, "lsst.alerts", 3, alerts.len()).await?;
    // The last hop decodes every alert, its schemas learned through the middle one.
    ensure!(served_ids(&fink, "lsst.alerts").await? == dia_source_ids(&alerts));
    let learned = fink.metrics().await?.value(
        "alertmesh_schema_registry_lookups_total",
        &[("result", "ok")],
    );
    ensure!(
        learned == 3.0,
        "fink asked its source for 3 ids, not {learned}"
    );
    for g in [&lasair, &fink] {
        let (status, body) = http_get(&g.http_addr(), "/schemas/ids/701").await?;
        ensure!(
            status == 200 && body.contains("lsst.v7_1"),
            "{} {status} {body:.200}",
            g.name()
        );
    }
    Ok(())
}

#[tokio::test]
async fn mirrors_without_destination_learn_schemas_at_every_hop() -> Result<()> {
    let alerts = lsst_alerts()?;
    let topic = |name: &str| {
        format!(
            "[[topics]]\nname = {name:?}\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\npublic = true\n"
        )
    };
    let rubin_broker = Broker::start("rubin").await?;
    rubin_broker.create_topic("lsst.alerts", 3).await?;
    rubin_broker
        .produce_all(
            "lsst.alerts",
            &keyed(framed(&alerts, now_ms() - 10_000)?, &alerts)?,
        )
        .await?;
    let rubin = Gateway::start(
        &GatewaySpec::new("rubin", &rubin_broker.bootstrap())
            .extra(&format!(
                "[alert]\nschema_dir = {:?}\n",
                lsst_fixtures().join("schema").display().to_string()
            ))
            .extra(&topic("lsst.alerts")),
    )
    .await?;
    // No `destination` and no `schema_registry`: each mirror writes `<source gateway>.<topic>`
    // and asks its source gateway for the ids it meets.
    let hop = |name: &str, bootstrap: &str, upstream: &Gateway, source: &str| {
        GatewaySpec::new(name, bootstrap)
            .extra(&topic(&format!("{}.{source}", upstream.name())))
            .extra(&format!(
                "[[mirrors]]\nname = \"up\"\nstart = \"earliest\"\n\
                 [mirrors.source]\ngateway = {:?}\ntopic = {source:?}\n",
                upstream.grpc_url(),
            ))
    };
    let lasair_broker = Broker::start("lasair").await?;
    let lasair = Gateway::start(&hop(
        "lasair",
        &lasair_broker.bootstrap(),
        &rubin,
        "lsst.alerts",
    ))
    .await?;
    let fink_broker = Broker::start("fink").await?;
    let fink = Gateway::start(&hop(
        "fink",
        &fink_broker.bootstrap(),
        &lasair,
        "rubin.lsst.alerts",
    ))
    .await?;
    let last = "lasair.rubin.lsst.alerts";
    settle(&fink_broker, last, 3, alerts.len()).await?;
    ensure!(served_ids(&fink, last).await? == dia_source_ids(&alerts));
    for (g, t) in [(&lasair, "rubin.lsst.alerts"), (&fink, last)] {
        // The registry API, DescribeGateway and the directory name the learned ids.
        let (status, body) =
            http_get(&g.http_addr(), &format!("/subjects/{t}-value/versions")).await?;
        ensure!(
            status == 200 && body == "[1,2,3]",
            "{} {status} {body}",
            g.name()
        );
        let out = g.cli(&["describe"]).await?;
        let described: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
        let info = &described["topics"][0];
        ensure!(
            info["name"] == t
                && info["schema_ids"] == serde_json::json!([701, 900, 1100])
                && info["schema_registry"] == format!("http://{}", g.http_addr()),
            "{} {described}",
            g.name()
        );
    }
    let out = fink.cli(&["directory"]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.contains(&format!(
            "schema ids 701, 900, 1100 at http://{}",
            lasair.http_addr()
        )),
        "{text}"
    );
    let out = fink.cli(&["directory", "--json"]).await?;
    let walked = json_lines(&out)?;
    ensure!(walked.len() == 3, "{walked:?}");
    for d in &walked {
        let t = &d["topics"][0];
        ensure!(
            t["schema_ids"] == serde_json::json!([701, 900, 1100])
                && t["schema_registry"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
            "{d}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_registry_api_follows_each_topics_auth_on_a_gateway_that_requires_mutual_tls(
) -> Result<()> {
    use alertmesh_tests::auth::{CertFiles, Pki, Secure, SecureSpec};
    use alertmesh_tests::metrics::https_get_with_token;
    let pki = Pki::new()?;
    let broker = Broker::start("rubin").await?;
    let alerts = lsst_alerts()?;
    broker.create_topic("lsst.private", 3).await?;
    broker
        .produce_all(
            "lsst.private",
            &keyed(framed(&alerts, now_ms() - 10_000)?, &alerts)?,
        )
        .await?;
    let topics = open_and_private_topics();
    // gRPC requires a client certificate (tls.client_ca) and a token for lsst.private.
    let spec = SecureSpec::new("rubin", &broker.bootstrap()).extra(&format!(
        "[alert]\nschema_dir = {:?}\n\n{topics}",
        lsst_fixtures().join("schema").display().to_string()
    ));
    ensure!(spec.mtls && spec.require);
    let gw = Secure::start(&pki, spec).await?;
    let reader = gw.issue("alice", &["subscribe:lsst.private"], "1h").await?;
    let other = gw.issue("bob", &["subscribe:ztf.*"], "1h").await?;
    let ca = alertmesh_auth::tls::load_certs(&gw.ca)?;
    let alice = pki.client("alice")?;
    // A stock registry client: the mesh CA, no client certificate (or, with `cert`, one).
    let get = |path: &'static str, token: Option<String>, cert: Option<&CertFiles>| {
        let identity = cert.map(|c| -> Result<_> {
            Ok((
                alertmesh_auth::tls::load_certs(&c.cert)?,
                alertmesh_auth::tls::load_key(&c.key)?,
            ))
        });
        let tls = identity
            .transpose()
            .and_then(|id| Ok(alertmesh_auth::tls::client_config(&ca, id)?));
        let addr = gw.gateway.http_addr();
        async move { https_get_with_token(&addr, path, tls?, token.as_deref()).await }
    };
    // gRPC itself still refuses a caller without a certificate.
    let refused = gw.client(None, Some(&reader)).await;
    if let Ok(mut c) = refused {
        let listed = c
            .list_topics(alertmesh_proto::v1::ListTopicsRequest {})
            .await;
        ensure!(
            listed.as_ref().err().map(|s| s.code()) == Some(tonic::Code::Unauthenticated),
            "gRPC without a client certificate: {listed:?}"
        );
    }

    // A public topic's schemas are open to anyone, with or without a certificate.
    for cert in [None, Some(&alice)] {
        let (status, body) = get("/subjects", None, cert).await?;
        ensure!(
            status == 200 && body == r#"["lsst.open-value"]"#,
            "{status} {body}"
        );
        let (status, body) = get("/schemas/ids/1100", None, cert).await?;
        ensure!(
            status == 200 && body.contains("lsst.v11_0"),
            "{status} {body:.200}"
        );
        let (status, body) = get("/subjects/lsst.open-value/versions/latest", None, cert).await?;
        ensure!(
            status == 200 && body.contains("\"id\":1100"),
            "{status} {body:.200}"
        );
        // Without a token, a protected topic's subject is refused as unauthorized...
        let (status, body) = get("/subjects/lsst.private-value/versions", None, cert).await?;
        ensure!(
            status == 401 && body.contains("40101") && body.contains("subscribe:lsst.private"),
            "{status} {body}"
        );
    }
    // ... with a token whose scopes do not cover it as forbidden, and a token that does
    // not verify as unauthorized, never echoed.
    let (status, body) = get(
        "/subjects/lsst.private-value/versions",
        Some(other.clone()),
        None,
    )
    .await?;
    ensure!(status == 403 && body.contains("40301"), "{status} {body}");
    ensure!(!body.contains(&other), "the token is not echoed");
    let forged = format!("{}x", &reader[..reader.len() - 1]);
    let (status, body) = get("/subjects", Some(forged.clone()), None).await?;
    ensure!(status == 401 && body.contains("40101"), "{status} {body}");
    ensure!(!body.contains(&forged), "the token is not echoed");
    for path in [
        "/subjects/lsst.private-value/versions/latest",
        "/subjects/lsst.private-value/versions/1/schema",
    ] {
        let (status, _) = get(path, Some(other.clone()), None).await?;
        ensure!(status == 403, "{path}: {status}");
    }
    // A token with the scope reads the protected topic's schemas, certificate or not.
    for cert in [None, Some(&alice)] {
        let (status, body) = get("/subjects", Some(reader.clone()), cert).await?;
        ensure!(
            status == 200 && body == r#"["lsst.open-value","lsst.private-value"]"#,
            "{status} {body}"
        );
        let (status, body) = get(
            "/subjects/lsst.private-value/versions",
            Some(reader.clone()),
            cert,
        )
        .await?;
        ensure!(status == 200 && body == "[1,2,3]", "{status} {body}");
    }

    // A mirror of the private topic (gRPC with its certificate) learns its schemas from
    // the side port over HTTPS with its token, and its gateway decodes every alert
    // without schema files.
    let token = gw.issue("fink", &["subscribe:lsst.*"], "1h").await?;
    let token_file = pki.dir().join("fink.jwt");
    std::fs::write(&token_file, token)?;
    let fink_cert = pki.client("fink")?;
    let fink_broker = Broker::start("fink").await?;
    let ca = pki.ca().display().to_string();
    let fink = Gateway::start(&GatewaySpec::new("fink", &fink_broker.bootstrap()).extra(&format!(
        "[[topics]]\nname = \"lsst.alerts\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\n\n\
         [[mirrors]]\nname = \"rubin\"\ndestination = \"lsst.alerts\"\n[mirrors.source]\n\
         gateway = {:?}\ntopic = \"lsst.private\"\ntoken_file = {:?}\nca = {ca:?}\ncert = {:?}\nkey = {:?}\n\
         schema_registry = \"https://{}\"\nschema_registry_ca = {ca:?}\n",
        gw.url(),
        token_file.display().to_string(),
        fink_cert.cert.display().to_string(),
        fink_cert.key.display().to_string(),
        gw.gateway.http_addr(),
    )))
    .await?;
    settle(&fink_broker, "lsst.alerts", 3, alerts.len()).await?;
    ensure!(served_ids(&fink, "lsst.alerts").await? == dia_source_ids(&alerts));
    let learned = fink.metrics().await?.value(
        "alertmesh_schema_registry_lookups_total",
        &[("result", "ok")],
    );
    ensure!(
        learned == 3.0,
        "fink learned {learned} ids from rubin's side port"
    );
    Ok(())
}

/// `records` keyed with their alerts' mesh keys, as a gateway-fed topic holds them.
fn keyed(mut records: Vec<Record>, alerts: &[(u32, Alert)]) -> Result<Vec<Record>> {
    let registry = alertmesh_alert::Registry::builtin();
    for (r, (_, a)) in records.iter_mut().zip(alerts) {
        let key = alertmesh_alert::Subject::new(a, &registry)
            .key
            .context("a key")?;
        r.key = Some(Bytes::from(key.to_string()));
    }
    Ok(records)
}

/// `tls.client_ca` without `[auth]`: the client certificate is the only credential, so the
/// registry API serves a caller without one the public topics' schemas only (it served
/// every topic's), and one with a mesh certificate all of them.
#[tokio::test]
async fn without_auth_the_registry_api_serves_callers_without_a_certificate_public_topics_only(
) -> Result<()> {
    use alertmesh_tests::auth::Pki;
    use alertmesh_tests::metrics::https_get_with_token;
    let pki = Pki::new()?;
    let broker = Broker::start("certonly").await?;
    let server = pki.client("rubin")?;
    let topics = open_and_private_topics();
    let spec = GatewaySpec::new("rubin", &broker.bootstrap())
        .extra(&format!(
            "[alert]\nschema_dir = {:?}\n\n{topics}[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
            lsst_fixtures().join("schema").display().to_string(),
            server.cert.display().to_string(),
            server.key.display().to_string(),
            pki.ca().display().to_string()
        ))
        .ready(alertmesh_tests::Ready::GrpcPort);
    let gw = Gateway::start(&spec).await?;
    let ca = alertmesh_auth::tls::load_certs(&pki.ca())?;
    let member = pki.client("alice")?;
    let identity = (
        alertmesh_auth::tls::load_certs(&member.cert)?,
        alertmesh_auth::tls::load_key(&member.key)?,
    );
    let anonymous = alertmesh_auth::tls::client_config(&ca, None)?;
    let with_cert = alertmesh_auth::tls::client_config(&ca, Some(identity))?;
    let addr = gw.http_addr();

    let (status, body) = https_get_with_token(&addr, "/subjects", anonymous.clone(), None).await?;
    ensure!(
        status == 200 && body == r#"["lsst.open-value"]"#,
        "without a certificate: {status} {body}"
    );
    let (status, body) = https_get_with_token(
        &addr,
        "/subjects/lsst.private-value/versions",
        anonymous.clone(),
        None,
    )
    .await?;
    ensure!(
        status == 404,
        "a private subject without a certificate: {status} {body}"
    );
    let (status, body) = https_get_with_token(&addr, "/subjects", with_cert.clone(), None).await?;
    ensure!(
        status == 200 && body == r#"["lsst.open-value","lsst.private-value"]"#,
        "with a mesh certificate: {status} {body}"
    );
    let (status, body) = https_get_with_token(
        &addr,
        "/subjects/lsst.private-value/versions",
        with_cert,
        None,
    )
    .await?;
    ensure!(status == 200 && body == "[1,2,3]", "{status} {body}");
    Ok(())
}

/// `[[topics]]` for `lsst.open` (public) and `lsst.private`, both `avro-confluent`.
fn open_and_private_topics() -> String {
    ["lsst.open", "lsst.private"]
        .iter()
        .map(|t| {
            format!(
                "[[topics]]\nname = {t:?}\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\npublic = {}\n\n",
                *t == "lsst.open"
            )
        })
        .collect()
}
