//! Provenance across three gateways with JWT and mutual TLS: a survey's raw Kafka topic →
//! `lasair` (a Kafka-source mirror) → `fink` (mirrors lasair) → `ampel` (mirrors fink),
//! and derived records on ampel, computed from its copy, a catalog row and a ref on a
//! gateway no one reaches. Each gateway asks the next with its own peer credentials.
//! A derived record published through ampel's Publish RPC, retried with its publish id
//! across kill -9s of ampel, resolves back to lasair, and with fink killed still answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alertmesh_proto::v1;
use alertmesh_tests::auth::{CertFiles, Pki, Secure, SecureSpec};
use alertmesh_tests::cli::run_cli;
use alertmesh_tests::fixtures::{now_ms, ztf_alerts};
use alertmesh_tests::kafka::{assigned_consumer, read_to_eof_with};
use alertmesh_tests::{Broker, Record};
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;

const RAW: &str = "ztf.raw";
const ALERTS: &str = "ztf.alerts";
const AT_FINK: &str = "lasair.ztf.alerts";
const AT_AMPEL: &str = "fink.lasair.ztf.alerts";
const CLASS: &str = "ampel.class";
/// Publishable (`publish = true`) on ampel: derived records written through Publish.
const PUBLISHED: &str = "ampel.published";

/// Offsets and headers of every record of partition 0 of `topic`.
async fn dump(broker: &Broker, topic: &str) -> Result<Vec<(i64, HashMap<String, String>)>> {
    let bootstrap = broker.bootstrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = assigned_consumer(&bootstrap, &topic, 1, Offset::Beginning)?;
        let mut out = Vec::new();
        read_to_eof_with(&consumer, 1, 0, Duration::from_secs(20), |m| {
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
            out.push((m.offset(), headers));
        })?;
        Ok(out)
    })
    .await?
}

async fn settle(
    broker: &Broker,
    topic: &str,
    n: usize,
) -> Result<Vec<(i64, HashMap<String, String>)>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = dump(broker, topic).await.unwrap_or_default();
        if found.len() >= n {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("{topic} holds {} records, want {n}", found.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A `[[mirrors]]` from a secure gateway, with a token it issued and a client certificate.
fn secure_mirror(
    name: &str,
    source: &Secure,
    topic: &str,
    token: &Path,
    cert: &CertFiles,
    ca: &Path,
) -> String {
    format!(
        "[[mirrors]]\nname = {name:?}\nstart = \"earliest\"\n[mirrors.source]\ngateway = {:?}\ntopic = {topic:?}\ntoken_file = {:?}\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        source.url(),
        token.display().to_string(),
        ca.display().to_string(),
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    )
}

struct Mesh {
    pki: Pki,
    survey: Broker,
    lasair_broker: Broker,
    _fink_broker: Broker,
    ampel_broker: Broker,
    gateways: Vec<Secure>,
    /// A user of ampel: certificate and token file with `fetch:*`.
    user: (CertFiles, PathBuf, String),
}

impl Mesh {
    fn ampel(&self) -> &Secure {
        &self.gateways[2]
    }

    async fn provenance(&self, root: &str, depth: Option<u32>) -> Result<v1::ProvenanceGraph> {
        let (cert, _, token) = &self.user;
        let mut c = self.ampel().client(Some(cert), Some(token)).await?;
        Ok(c.provenance(v1::ProvenanceRequest {
            r#ref: root.into(),
            max_depth: depth,
            timeout_ms: 30_000,
        })
        .await?
        .into_inner())
    }

    async fn cli(&self, root: &str, format: &str) -> Result<String> {
        let (cert, token_file, _) = &self.user;
        let url = self.ampel().url();
        let ca = self.pki.ca();
        let args = [
            "provenance",
            root,
            "--format",
            format,
            "--gateway",
            &url,
            "--ca",
            ca.to_str().context("path")?,
            "--cert",
            cert.cert.to_str().context("path")?,
            "--key",
            cert.key.to_str().context("path")?,
            "--token",
            token_file.to_str().context("path")?,
        ];
        let out = run_cli(&args).await?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }
}

async fn mesh() -> Result<Mesh> {
    let pki = Pki::new()?;
    let survey = Broker::start("survey").await?;
    survey.create_topic(RAW, 1).await?;
    let alerts = ztf_alerts()?;
    let raw: Vec<Record> = (0..3)
        .map(|i| Record {
            partition: 0,
            key: None,
            payload: alerts[i].payload.clone(),
            headers: Vec::new(),
            timestamp_ms: now_ms() - 60_000 + i as i64,
        })
        .collect();
    survey.produce_all(RAW, &raw).await?;
    let dir = pki.dir().join("peer-tokens");
    std::fs::create_dir_all(&dir)?;

    let lasair_broker = Broker::start("lasair").await?;
    let from_kafka = format!(
        "[[mirrors]]\nname = \"raw\"\ndestination = {ALERTS:?}\nstart = \"earliest\"\n[mirrors.source]\nkafka = {:?}\ntopic = {RAW:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
        survey.bootstrap()
    );
    let lasair = Secure::start(
        &pki,
        SecureSpec::new("lasair", &lasair_broker.bootstrap())
            .topic(ALERTS, false)
            .extra(&from_kafka),
    )
    .await?;

    let fink_broker = Broker::start("fink").await?;
    let token = dir.join("fink.jwt");
    std::fs::write(
        &token,
        lasair
            .issue("fink", &["subscribe:ztf.*", "fetch:*"], "1h")
            .await?,
    )?;
    let cert = pki.client("fink")?;
    let fink = Secure::start(
        &pki,
        SecureSpec::new("fink", &fink_broker.bootstrap())
            .topic(AT_FINK, false)
            .extra(&secure_mirror(
                "from-lasair",
                &lasair,
                ALERTS,
                &token,
                &cert,
                &pki.ca(),
            )),
    )
    .await?;

    let ampel_broker = Broker::start("ampel").await?;
    ampel_broker.create_topic(CLASS, 1).await?;
    ampel_broker.create_topic(PUBLISHED, 1).await?;
    let token = dir.join("ampel.jwt");
    std::fs::write(
        &token,
        fink.issue("ampel", &["subscribe:lasair.*", "fetch:*"], "1h")
            .await?,
    )?;
    let cert = pki.client("ampel")?;
    let class_topic = format!(
        "[[topics]]\nname = {CLASS:?}\nnamespace = \"ZTF\"\nformat = \"json\"\npublic = false\n\n\
         [[topics]]\nname = {PUBLISHED:?}\nnamespace = \"ZTF\"\nformat = \"json\"\npublish = true\n"
    );
    let ampel = Secure::start(
        &pki,
        SecureSpec::new("ampel", &ampel_broker.bootstrap())
            .topic(AT_AMPEL, true)
            .extra(&class_topic)
            .extra(&secure_mirror(
                "from-fink",
                &fink,
                AT_FINK,
                &token,
                &cert,
                &pki.ca(),
            )),
    )
    .await?;
    let user_token = ampel.issue("alice", &["fetch:*"], "1h").await?;
    let user_file = dir.join("alice.jwt");
    std::fs::write(&user_file, &user_token)?;
    let user = (pki.client("alice")?, user_file, user_token);
    Ok(Mesh {
        pki,
        survey,
        lasair_broker,
        _fink_broker: fink_broker,
        ampel_broker,
        gateways: vec![lasair, fink, ampel],
        user,
    })
}

/// A derived record as a publisher writes it, produced straight into ampel's Kafka.
fn derived(offset: i64, derived_from: &str) -> Record {
    let me = format!("am://ampel/{CLASS}/0/{offset}");
    let h = |k: &str, v: &str| (k.to_owned(), Some(Bytes::from(v.to_owned())));
    Record {
        partition: 0,
        key: Some(Bytes::from_static(b"ZTF:ZTF18aabcdef")),
        payload: Bytes::from_static(br#"{"class":"SN Ia","p":0.93}"#),
        headers: vec![
            h("am-ns", "ZTF"),
            h("am-format", "json"),
            h("am-origin", &me),
            h("am-derived-from", derived_from),
            h(
                "am-activity",
                r#"{"name":"classify","version":"2.1.0","parameters":{"model":"rf","threshold":0.9}}"#,
            ),
            h("am-used", r#"["catalog:gaia-dr3/4295806720"]"#),
            h("am-agent", r#"{"sub":"ampel-bot","iss":"ampel"}"#),
            h("am-publish-id", &format!("run-7/{offset}")),
        ],
        timestamp_ms: now_ms(),
    }
}

fn entity<'g>(g: &'g v1::ProvenanceGraph, id: &str) -> Result<&'g v1::ProvEntity> {
    g.entities
        .iter()
        .find(|e| e.id == id)
        .with_context(|| format!("no entity {id} in {g:#?}"))
}

fn has_edge(g: &v1::ProvenanceGraph, kind: &str, from: &str, to: &str) -> bool {
    g.edges
        .iter()
        .any(|e| e.kind == kind && e.from == from && e.to == to)
}

#[tokio::test]
async fn provenance_walks_three_secure_gateways_back_to_the_raw_survey_record() -> Result<()> {
    let mut m = mesh().await?;
    let at_ampel = settle(&m.ampel_broker, AT_AMPEL, 3).await?;
    let (offset, headers) = &at_ampel[1];
    let copy = format!("am://ampel/{AT_AMPEL}/0/{offset}");
    let at_fink = headers.get("am-source").context("am-source")?.clone();
    let origin = headers.get("am-origin").context("am-origin")?.clone();
    ensure!(origin.starts_with("am://lasair/ztf.alerts/0/"), "{origin}");

    // Derived records: one from ampel's copy, a catalog row and a gateway no one reaches;
    // two derived from each other (a cycle no honest publisher makes).
    let ghost = "am://ghost/ztf.alerts/0/0";
    for r in [
        derived(0, &format!("{copy},{ghost}")),
        derived(1, &format!("am://ampel/{CLASS}/0/2")),
        derived(2, &format!("am://ampel/{CLASS}/0/1")),
    ] {
        m.ampel_broker.produce(CLASS, &r).await?;
    }
    let root = format!("am://ampel/{CLASS}/0/0");

    let g = m.provenance(&root, None).await?;
    let d = entity(&g, &root)?;
    ensure!(
        d.kind == "derived" && d.resolved && d.resolved_by == "ampel",
        "{d:?}"
    );
    let c = entity(&g, &copy)?;
    ensure!(
        c.kind == "copy" && c.resolved && c.origin == origin,
        "{c:?}"
    );
    let f = entity(&g, &at_fink)?;
    ensure!(
        f.kind == "copy" && f.resolved && f.resolved_by == "fink",
        "{f:?}"
    );
    // lasair's copy, read by lasair: where the alert entered the mesh.
    let l = entity(&g, &origin)?;
    ensure!(
        l.resolved && l.resolved_by == "lasair" && l.origin == origin,
        "{l:?}"
    );
    ensure!(
        l.timestamp.is_some() && l.key.starts_with("ZTF:ZTF"),
        "{l:?}"
    );
    // The raw record it was copied from, named with the survey cluster's address.
    let raw_prefix = format!("kafka://{}/{RAW}/0/", m.survey.bootstrap());
    let raw = g
        .edges
        .iter()
        .find(|e| e.kind == "copied_from" && e.from == origin)
        .context("lasair's copy names its raw source")?;
    ensure!(raw.to.starts_with(&raw_prefix), "{raw:?}");
    ensure!(entity(&g, &raw.to)?.kind == "external");
    ensure!(has_edge(&g, "derived_from", &root, &copy));
    ensure!(has_edge(&g, "copied_from", &copy, &at_fink));
    ensure!(has_edge(&g, "copied_from", &at_fink, &origin));
    ensure!(has_edge(&g, "primary_source", &copy, &origin));
    // The unreachable gateway is an unresolved node with the reason, not an error.
    let x = entity(&g, ghost)?;
    ensure!(
        !x.resolved && x.unresolved_reason.contains("not a peer"),
        "{x:?}"
    );
    // Activity, agent and the catalog row.
    let act = g.activities.first().context("activity")?;
    ensure!(
        act.name == "classify" && act.version == "2.1.0" && act.parameters.contains("threshold"),
        "{act:?}"
    );
    ensure!(g.used.iter().any(|u| u.id == "catalog:gaia-dr3/4295806720"));
    ensure!(has_edge(&g, "used", &act.id, "catalog:gaia-dr3/4295806720"));
    ensure!(has_edge(&g, "associated_with", &act.id, "ampel-bot@ampel"));
    ensure!(!g.cycle && !g.depth_limited && !g.timed_out, "{g:?}");

    // Depth: one link from the root reaches ampel's copy and no further.
    let g1 = m.provenance(&root, Some(1)).await?;
    ensure!(g1.depth_limited);
    ensure!(entity(&g1, &copy)?.resolved);
    let cut = entity(&g1, &at_fink)?;
    ensure!(
        !cut.resolved && cut.unresolved_reason.contains("depth limit"),
        "{cut:?}"
    );

    // A ref on another gateway: ampel hands the walk to fink.
    let gf = m.provenance(&at_fink, None).await?;
    ensure!(entity(&gf, &at_fink)?.resolved_by == "fink", "{gf:?}");
    ensure!(entity(&gf, &origin)?.resolved_by == "lasair", "{gf:?}");

    // A cycle stops and is reported.
    let gc = m
        .provenance(&format!("am://ampel/{CLASS}/0/1"), None)
        .await?;
    ensure!(gc.cycle && gc.cycle_refs.len() == 2, "{gc:?}");

    // The root needs the Fetch scope, as Fetch does.
    let weak = m.ampel().issue("bob", &["subscribe:*"], "1h").await?;
    let bob = m.pki.client("bob")?;
    let mut c = m.ampel().client(Some(&bob), Some(&weak)).await?;
    let denied = c
        .provenance(v1::ProvenanceRequest {
            r#ref: root.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no fetch scope");
    ensure!(denied.code() == tonic::Code::PermissionDenied, "{denied:?}");

    // A caller without a token (ampel requires tokens) does not get ampel to ask its
    // peers with its own mirror credentials: a ref on another gateway is refused, and
    // from ampel's public copy the walk stops at ampel.
    let mut tokenless = m.ampel().client(Some(&bob), None).await?;
    for other in [&at_fink, &origin] {
        let refused = tokenless
            .provenance(v1::ProvenanceRequest {
                r#ref: other.to_string(),
                ..Default::default()
            })
            .await
            .expect_err("no token, a ref on another gateway");
        ensure!(
            refused.code() == tonic::Code::Unauthenticated
                && refused.message().contains("callers with a token"),
            "{other}: {refused:?}"
        );
    }
    let own = tokenless
        .provenance(v1::ProvenanceRequest {
            r#ref: copy.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(entity(&own, &copy)?.resolved, "{own:?}");
    let stop = entity(&own, &at_fink)?;
    ensure!(
        !stop.resolved && stop.unresolved_reason.contains("callers with a token"),
        "{stop:?}"
    );
    ensure!(
        own.entities
            .iter()
            .all(|e| e.resolved_by != "fink" && e.resolved_by != "lasair"),
        "{own:?}"
    );

    // The command line: a tree with RFC 3339 times, PROV-JSON, Graphviz.
    let text = m.cli(&root, "text").await?;
    ensure!(text.starts_with(&root), "{text}");
    ensure!(text.contains("generated by: classify 2.1.0"), "{text}");
    ensure!(
        text.contains(&format!("{origin}  copy")) && text.contains("(entered the mesh here)"),
        "{text}"
    );
    ensure!(
        text.contains(&raw_prefix) && text.contains("unresolved:"),
        "{text}"
    );
    let line = text.lines().next().unwrap_or("");
    let t = line.split_whitespace().nth(3).unwrap_or("");
    ensure!(
        t.len() >= 20 && t.as_bytes()[10] == b'T' && t.ends_with('Z'),
        "time {t:?} in {line}"
    );

    let dot = m.cli(&root, "dot").await?;
    ensure!(
        dot.trim_start().starts_with("digraph provenance {") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    ensure!(dot.matches(" -> ").count() == g.edges.len(), "{dot}");

    let json = m.cli(&root, "prov-json").await?;
    let doc: serde_json::Value = serde_json::from_str(&json)?;
    for section in [
        "entity",
        "activity",
        "agent",
        "wasDerivedFrom",
        "wasGeneratedBy",
        "used",
        "wasAssociatedWith",
        "wasAttributedTo",
    ] {
        ensure!(doc.get(section).is_some(), "{section} missing");
    }
    read_with_python_prov(&json, g.entities.len() + g.used.len())?;

    // A derived record published at lasair is mirrored two hops with its provenance
    // untouched, and still resolves to the alert it was computed from.
    let first_at_lasair = "am://lasair/ztf.alerts/0/0";
    let mut at_lasair = derived(3, first_at_lasair);
    at_lasair.payload = ztf_alerts()?[0].payload.clone();
    at_lasair
        .headers
        .retain(|(k, _)| k != "am-origin" && k != "am-format");
    at_lasair.headers.extend([
        (
            "am-origin".to_owned(),
            Some(Bytes::from_static(b"am://lasair/ztf.alerts/0/3")),
        ),
        (
            "am-format".to_owned(),
            Some(Bytes::from_static(b"avro-ocf")),
        ),
    ]);
    let produced = m.lasair_broker.produce(ALERTS, &at_lasair).await?;
    ensure!(produced.offset == 3, "{produced:?}");
    let copies = settle(&m.ampel_broker, AT_AMPEL, 4).await?;
    let (offset, headers) = &copies[3];
    for name in [
        "am-derived-from",
        "am-activity",
        "am-used",
        "am-agent",
        "am-publish-id",
    ] {
        let original = at_lasair
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned());
        ensure!(
            headers.get(name) == original.as_ref(),
            "{name}: {headers:?}"
        );
    }
    ensure!(headers.get("am-origin").map(String::as_str) == Some("am://lasair/ztf.alerts/0/3"));
    let copy = format!("am://ampel/{AT_AMPEL}/0/{offset}");
    let g = m.provenance(&copy, None).await?;
    let d = entity(&g, "am://lasair/ztf.alerts/0/3")?;
    ensure!(d.kind == "derived" && d.resolved_by == "lasair", "{d:?}");
    ensure!(
        has_edge(&g, "derived_from", &d.id, first_at_lasair),
        "{g:?}"
    );
    ensure!(entity(&g, first_at_lasair)?.resolved);
    ensure!(g
        .activities
        .iter()
        .any(|a| a.id == format!("{}#activity", d.id) && a.name == "classify"));

    // lasair down (killed -9): the walk from ampel still answers, through fink, with
    // lasair's record an unresolved node naming why.
    m.gateways[0].gateway.kill();
    let g = m.provenance(&root, None).await?;
    ensure!(entity(&g, &root)?.resolved && entity(&g, &at_fink)?.resolved);
    let l = entity(&g, &origin)?;
    ensure!(
        !l.resolved
            && l.unresolved_reason
                .starts_with("gateway lasair: cannot connect"),
        "{l:?}"
    );
    Ok(())
}

/// Reads the PROV-JSON with the `prov` Python package when the repository's .venv has it
/// (clients/python/requirements-test.txt installs it), and counts its entities.
fn read_with_python_prov(json: &str, entities: usize) -> Result<()> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let has_prov = std::process::Command::new(&python)
        .args(["-c", "import prov"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_prov {
        eprintln!("skipping the prov package check: no .venv with prov (clients/python/run-tests.sh installs it)");
        return Ok(());
    }
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), json)?;
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys, prov\nd = prov.read(sys.argv[1], format='json')\nprint(len(list(d.get_records(prov.model.ProvEntity))))",
        ])
        .arg(file.path())
        .output()?;
    ensure!(
        out.status.success(),
        "prov.read failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = String::from_utf8(out.stdout)?.trim().parse()?;
    ensure!(n == entities, "prov read {n} entities, want {entities}");
    Ok(())
}

/// Records of ampel's publishable topic in Kafka carrying `publish_id`: `(offset, headers)`.
async fn published_with(
    broker: &Broker,
    publish_id: &str,
) -> Result<Vec<(i64, HashMap<String, String>)>> {
    let mut all = dump(broker, PUBLISHED).await?;
    all.retain(|(_, h)| h.get("am-publish-id").map(String::as_str) == Some(publish_id));
    Ok(all)
}

/// A classification of `copy` as a broker publishes it on ampel.
fn classification(copy: &str, publish_id: &str) -> v1::PublishRecord {
    v1::PublishRecord {
        key: "ZTF:ZTF18aabcdef".into(),
        payload: br#"{"class":"SN Ia","p":0.93}"#.to_vec().into(),
        derived_from: vec![copy.to_owned()],
        activity: Some(v1::Activity {
            name: "classify".into(),
            version: "2.1.0".into(),
            parameters_json: r#"{"model":"rf","threshold":0.9}"#.into(),
        }),
        used: vec!["catalog:gaia-dr3/4295806720".into()],
        publish_id: publish_id.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_published_on_the_third_gateway_survives_kill_9_and_resolves_across_three(
) -> Result<()> {
    let mut m = mesh().await?;
    let at_ampel = settle(&m.ampel_broker, AT_AMPEL, 3).await?;
    let (offset, headers) = &at_ampel[1];
    let copy = format!("am://ampel/{AT_AMPEL}/0/{offset}");
    let at_fink = headers.get("am-source").context("am-source")?.clone();
    ensure!(
        at_fink.starts_with(&format!("am://fink/{AT_FINK}/0/")),
        "{at_fink}"
    );
    let origin = headers.get("am-origin").context("am-origin")?.clone();
    ensure!(
        origin.starts_with(&format!("am://lasair/{ALERTS}/0/")),
        "{origin}"
    );

    // A broker on ampel: its own certificate, a token to publish and to read.
    let bot_token = m
        .ampel()
        .issue("ampel-bot", &["publish:ampel.*", "fetch:*"], "1h")
        .await?;
    let bot = m.pki.client("ampel-bot")?;
    let publish = |id: &str| v1::PublishRequest {
        topic: PUBLISHED.into(),
        records: vec![classification(&copy, id)],
    };

    // Published, then retried with the same id: the same ref, nothing new in Kafka.
    let mut c = m.ampel().client(Some(&bot), Some(&bot_token)).await?;
    let first = c.publish(publish("e2e/1")).await?.into_inner().results;
    ensure!(first.len() == 1 && !first[0].duplicate, "{first:?}");
    let root = first[0].r#ref.clone();
    ensure!(root == format!("am://ampel/{PUBLISHED}/0/0"), "{root}");
    let again = c.publish(publish("e2e/1")).await?.into_inner().results;
    ensure!(
        again.len() == 1 && again[0].duplicate && again[0].r#ref == root,
        "{again:?}"
    );
    let written = published_with(&m.ampel_broker, "e2e/1").await?;
    ensure!(written.len() == 1, "{written:?}");
    let (_, h) = &written[0];
    ensure!(h.get("am-derived-from") == Some(&copy), "{h:?}");
    ensure!(h.get("am-origin").is_none(), "{h:?}");
    ensure!(
        h.get("am-agent").map(String::as_str) == Some(r#"{"sub":"ampel-bot","iss":"ampel"}"#),
        "{h:?}"
    );
    ensure!(dump(&m.ampel_broker, PUBLISHED).await?.len() == 1);

    // ampel killed -9 once the record is in Kafka, whether or not the answer reached
    // the publisher: the restarted gateway answers the retry with that record.
    let mut c = m.ampel().client(Some(&bot), Some(&bot_token)).await?;
    let req = publish("e2e/2");
    let inflight = tokio::spawn(async move { c.publish(req).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    let landed = loop {
        let found = published_with(&m.ampel_broker, "e2e/2").await?;
        if !found.is_empty() {
            break found;
        }
        ensure!(Instant::now() < deadline, "e2e/2 never reached Kafka");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    m.gateways[2].gateway.kill();
    let _ = inflight.await;
    ensure!(landed.len() == 1, "{landed:?}");
    let landed = format!("am://ampel/{PUBLISHED}/0/{}", landed[0].0);
    m.gateways[2].gateway.start_again().await?;
    let mut c = m.ampel().client(Some(&bot), Some(&bot_token)).await?;
    let retry = c.publish(publish("e2e/2")).await?.into_inner().results;
    ensure!(
        retry.len() == 1 && retry[0].duplicate && retry[0].r#ref == landed,
        "{retry:?} vs {landed}"
    );

    // ampel killed -9 at several moments after a publish is sent (before, while or after
    // it is written, the answer never read): the retry after the restart leaves exactly
    // one record with that id, the one it answers.
    let delays = [5u64, 20, 60];
    for delay_ms in delays {
        let id = format!("e2e/3/{delay_ms}");
        let mut c = m.ampel().client(Some(&bot), Some(&bot_token)).await?;
        let req = publish(&id);
        let inflight = tokio::spawn(async move { c.publish(req).await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        m.gateways[2].gateway.kill();
        let answered = inflight.await?;
        m.gateways[2].gateway.start_again().await?;
        // Read after the restart: a produce request still on its way to the broker when
        // the gateway died has landed by then.
        let before = published_with(&m.ampel_broker, &id).await?.len();
        let mut c = m.ampel().client(Some(&bot), Some(&bot_token)).await?;
        let retry = c.publish(publish(&id)).await?.into_inner().results;
        let found = published_with(&m.ampel_broker, &id).await?;
        ensure!(found.len() == 1, "{id}: {found:?}");
        let written = format!("am://ampel/{PUBLISHED}/0/{}", found[0].0);
        ensure!(
            retry.len() == 1 && retry[0].r#ref == written && retry[0].duplicate == (before == 1),
            "{id}: {retry:?}, {before} written before the retry"
        );
        eprintln!(
            "killed {delay_ms} ms after sending: answered {}, {before} written before the retry",
            answered.is_ok()
        );
        if let Ok(a) = answered {
            ensure!(a.into_inner().results[0].r#ref == written, "{id}");
        }
    }
    // The first record too, retried after all those restarts.
    let mut c = m.ampel().client(Some(&bot), Some(&bot_token)).await?;
    let old = c.publish(publish("e2e/1")).await?.into_inner().results;
    ensure!(old[0].duplicate && old[0].r#ref == root, "{old:?}");
    let all = dump(&m.ampel_broker, PUBLISHED).await?;
    ensure!(
        all.len() == 2 + delays.len(),
        "{} records in {PUBLISHED}: {all:?}",
        all.len()
    );

    // Provenance from ampel of the published record: ampel's copy, fink's copy, lasair's
    // record where the alert entered the mesh, with the activity, agent and catalog row.
    let walk = |c: &mut alertmesh_tests::auth::Client, r: String| {
        let req = v1::ProvenanceRequest {
            r#ref: r,
            max_depth: None,
            timeout_ms: 30_000,
        };
        let mut c = c.clone();
        async move { anyhow::Ok(c.provenance(req).await?.into_inner()) }
    };
    let g = walk(&mut c, root.clone()).await?;
    let d = entity(&g, &root)?;
    ensure!(
        d.kind == "derived" && d.resolved && d.resolved_by == "ampel" && d.origin == root,
        "{d:?}"
    );
    ensure!(d.key == "ZTF:ZTF18aabcdef", "{d:?}");
    let e = entity(&g, &copy)?;
    ensure!(
        e.kind == "copy" && e.resolved && e.resolved_by == "ampel" && e.origin == origin,
        "{e:?}"
    );
    let f = entity(&g, &at_fink)?;
    ensure!(
        f.kind == "copy" && f.resolved && f.resolved_by == "fink",
        "{f:?}"
    );
    let l = entity(&g, &origin)?;
    ensure!(
        l.resolved && l.resolved_by == "lasair" && l.origin == origin,
        "{l:?}"
    );
    ensure!(has_edge(&g, "derived_from", &root, &copy), "{g:?}");
    ensure!(has_edge(&g, "copied_from", &copy, &at_fink), "{g:?}");
    ensure!(has_edge(&g, "copied_from", &at_fink, &origin), "{g:?}");
    let act = format!("{root}#activity");
    ensure!(has_edge(&g, "generated_by", &root, &act), "{g:?}");
    ensure!(g.activities.len() == 1, "{:?}", g.activities);
    let a = &g.activities[0];
    ensure!(
        a.id == act && a.name == "classify" && a.version == "2.1.0",
        "{a:?}"
    );
    let params: serde_json::Value = serde_json::from_str(&a.parameters)?;
    ensure!(
        params == serde_json::json!({"model": "rf", "threshold": 0.9}),
        "{params}"
    );
    ensure!(
        g.used
            .iter()
            .map(|u| u.id.as_str())
            .eq(["catalog:gaia-dr3/4295806720"]),
        "{:?}",
        g.used
    );
    ensure!(has_edge(&g, "used", &act, "catalog:gaia-dr3/4295806720"));
    ensure!(has_edge(&g, "used", &act, &copy));
    let agent = g
        .agents
        .iter()
        .find(|x| x.id == "ampel-bot@ampel")
        .with_context(|| format!("no publisher agent in {:?}", g.agents))?;
    ensure!(
        agent.subject == "ampel-bot" && agent.issuer == "ampel",
        "{agent:?}"
    );
    ensure!(has_edge(&g, "associated_with", &act, "ampel-bot@ampel"));
    ensure!(has_edge(&g, "attributed_to", &root, "ampel-bot@ampel"));
    ensure!(!g.cycle && !g.depth_limited && !g.timed_out, "{g:?}");

    // fink killed -9: the walk still answers, fink's copy an unresolved node with the
    // reason. ampel knows no way to lasair but through fink, so lasair's record (named by
    // the copy's am-origin) is unresolved too, saying why.
    m.gateways[1].gateway.kill();
    let g = walk(&mut c, root.clone()).await?;
    ensure!(entity(&g, &root)?.resolved, "{g:?}");
    ensure!(entity(&g, &copy)?.resolved, "{g:?}");
    let f = entity(&g, &at_fink)?;
    ensure!(
        !f.resolved
            && f.unresolved_reason
                .starts_with("gateway fink: cannot connect"),
        "{f:?}"
    );
    let l = entity(&g, &origin)?;
    ensure!(
        !l.resolved && l.unresolved_reason.contains("is not a peer of ampel"),
        "{l:?}"
    );
    ensure!(has_edge(&g, "primary_source", &copy, &origin), "{g:?}");
    ensure!(g.activities.len() == 1 && g.used.len() == 1, "{g:?}");
    Ok(())
}
