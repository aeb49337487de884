//! Publishing derived records end to end: a real broker and a gateway with JWT + mutual
//! TLS; records read back through Subscribe with their provenance headers; retries with
//! the same publish id, also across a kill -9 of the gateway, write nothing new; every
//! bad input is refused with its status and nothing written.

use std::collections::HashSet;
use std::time::Duration;

use alertmesh_proto::v1::{self, PublishRecord, PublishRequest};
use alertmesh_tests::auth::{self, CertFiles, Pki, Secure, SecureSpec};
use alertmesh_tests::client::{collect, earliest, request, until_now};
use alertmesh_tests::{Broker, ZTF_TOPIC};
use anyhow::{ensure, Context, Result};
use tonic::Code;

/// JSON, with a JSON Schema; three partitions.
const CLASS: &str = "fink.class";
/// JSON without a schema.
const FREE: &str = "fink.free";

const CLASS_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["class", "score"],
  "properties": {"class": {"type": "string"}, "score": {"type": "number"}}
}"#;

struct Fink {
    _pki: Pki,
    broker: Broker,
    gw: Secure,
    cert: CertFiles,
    /// `publish:fink.*` and `subscribe:fink.*`.
    token: String,
}

impl Fink {
    async fn start(limits: &str) -> Result<Fink> {
        let pki = Pki::new()?;
        let broker = Broker::start("fink").await?;
        broker.create_topic(ZTF_TOPIC, 1).await?;
        broker.create_topic(CLASS, 3).await?;
        broker.create_topic(FREE, 1).await?;
        let schema = pki.dir().join("class.schema.json");
        std::fs::write(&schema, CLASS_SCHEMA)?;
        let extra = format!(
            "[[topics]]\nname = {CLASS:?}\nnamespace = \"ZTF\"\nformat = \"json\"\npublish = true\nschema = {:?}\n\n\
             [[topics]]\nname = {FREE:?}\nnamespace = \"ZTF\"\nformat = \"json\"\npublish = true\n\n{limits}",
            schema.display().to_string()
        );
        let spec = SecureSpec::new("fink", &broker.bootstrap())
            .topic(ZTF_TOPIC, false)
            .extra(&extra);
        let gw = Secure::start(&pki, spec).await?;
        // A classifier: reads the alerts, publishes its classes (listings show it both).
        let token = gw
            .issue(
                "fink",
                &["publish:fink.*", "subscribe:fink.*", "subscribe:ztf.*"],
                "1h",
            )
            .await?;
        let cert = pki.client("fink")?;
        Ok(Fink {
            _pki: pki,
            broker,
            gw,
            cert,
            token,
        })
    }

    async fn client(&self, token: Option<&str>) -> Result<auth::Client> {
        self.gw.client(Some(&self.cert), token).await
    }

    async fn publish(
        &self,
        topic: &str,
        records: Vec<PublishRecord>,
    ) -> Result<Vec<v1::PublishResult>, tonic::Status> {
        let mut c = self
            .client(Some(&self.token))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let req = PublishRequest {
            topic: topic.to_owned(),
            records,
        };
        Ok(c.publish(req).await?.into_inner().results)
    }

    /// Every record of `topic`, through Subscribe.
    async fn read(&self, topic: &str) -> Result<Vec<v1::Alert>> {
        let mut c = self.client(Some(&self.token)).await?;
        let mut req = request(topic);
        req.start = earliest();
        req.end = until_now();
        let stream = c.subscribe(req).await?.into_inner();
        let got = collect(stream, Duration::from_secs(20)).await;
        match got.end {
            Some(Ok(())) => Ok(got.alerts),
            other => anyhow::bail!("subscribe to {topic} ended with {other:?}"),
        }
    }
}

fn record(id: &str, n: usize) -> PublishRecord {
    PublishRecord {
        key: format!("ZTF:ZTF21aaa{n:04}"),
        payload: format!(r#"{{"class":"SN Ia","score":0.{n}}}"#)
            .into_bytes()
            .into(),
        derived_from: vec![
            format!("am://lasair/ztf.alerts/0/{n}"),
            format!("am://antares/ztf.alerts/1/{}", n + 100),
        ],
        activity: Some(v1::Activity {
            name: "snclass".into(),
            version: "2.1.0".into(),
            parameters_json: r#"{"threshold":0.5,"bands":["g","r"]}"#.into(),
        }),
        used: vec![format!("catalog:gaia-dr3/{}", 4295806720u64 + n as u64)],
        publish_id: id.to_owned(),
    }
}

fn header<'a>(alert: &'a v1::Alert, name: &str) -> Option<&'a str> {
    alert
        .headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn refs(results: &[v1::PublishResult]) -> Vec<String> {
    results.iter().map(|r| r.r#ref.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_records_read_back_with_their_provenance_and_retries_write_nothing() -> Result<()>
{
    let fink = Fink::start("").await?;
    let batch: Vec<PublishRecord> = (0..4).map(|n| record(&format!("run-1/{n}"), n)).collect();
    let first = fink.publish(CLASS, batch.clone()).await?;
    ensure!(
        first.len() == 4 && first.iter().all(|r| !r.duplicate),
        "{first:?}"
    );

    let alerts = fink.read(CLASS).await?;
    ensure!(alerts.len() == 4, "{} records", alerts.len());
    for (sent, result) in batch.iter().zip(&first) {
        let a = alerts
            .iter()
            .find(|a| a.r#ref == result.r#ref)
            .with_context(|| format!("{} not read back", result.r#ref))?;
        ensure!(a.payload == sent.payload, "payload of {}", a.r#ref);
        ensure!(a.mesh_key == sent.key, "key {:?}", a.mesh_key);
        ensure!(a.format == "json" && a.namespace == "ZTF", "{a:?}");
        ensure!(header(a, "am-ns") == Some("ZTF"));
        ensure!(header(a, "am-format") == Some("json"));
        ensure!(
            header(a, "am-schema").is_some_and(|s| s.len() == 16),
            "am-schema"
        );
        ensure!(header(a, "am-hops") == Some("fink"));
        ensure!(
            header(a, "am-origin").is_none(),
            "a published record is its own origin"
        );
        ensure!(header(a, "am-derived-from") == Some(sent.derived_from.join(",").as_str()));
        let activity: serde_json::Value =
            serde_json::from_str(header(a, "am-activity").context("am-activity")?)?;
        ensure!(
            activity
                == serde_json::json!({"name": "snclass", "version": "2.1.0", "parameters": {"threshold": 0.5, "bands": ["g", "r"]}}),
            "{activity}"
        );
        let used: Vec<String> = serde_json::from_str(header(a, "am-used").context("am-used")?)?;
        ensure!(used == sent.used, "{used:?}");
        let agent: serde_json::Value =
            serde_json::from_str(header(a, "am-agent").context("am-agent")?)?;
        ensure!(
            agent == serde_json::json!({"sub": "fink", "iss": "fink"}),
            "{agent}"
        );
        ensure!(header(a, "am-publish-id") == Some(sent.publish_id.as_str()));
    }

    // The same batch again: the first refs, nothing written.
    let again = fink.publish(CLASS, batch.clone()).await?;
    ensure!(refs(&again) == refs(&first), "{again:?}");
    ensure!(again.iter().all(|r| r.duplicate), "{again:?}");
    // Old and new ids mixed: only the new one is written.
    let mut mixed = batch[..2].to_vec();
    mixed.push(record("run-1/9", 9));
    let m = fink.publish(CLASS, mixed).await?;
    ensure!(m[0].duplicate && m[1].duplicate && !m[2].duplicate, "{m:?}");
    ensure!(refs(&m)[..2] == refs(&first)[..2], "{m:?}");
    ensure!(fink.read(CLASS).await?.len() == 5, "a retry wrote a record");
    // /metrics: 5 records written in 3 batches; 4 + 2 answered from the publish ids.
    let m = fink.gw.metrics(&fink.cert).await?;
    let topic = |name| m.value(name, &[("topic", CLASS)]);
    ensure!(
        topic("alertmesh_publish_records_total") == 5.0
            && topic("alertmesh_publish_batches_total") == 3.0
            && topic("alertmesh_publish_duplicates_total") == 6.0,
        "publish metrics: {m:?}"
    );

    // After kill -9 the gateway learns its publish ids back from Kafka.
    let mut fink = fink;
    fink.gw.gateway.kill_and_restart().await?;
    let after = fink.publish(CLASS, batch.clone()).await?;
    ensure!(refs(&after) == refs(&first), "{after:?} vs {first:?}");
    ensure!(after.iter().all(|r| r.duplicate), "{after:?}");
    ensure!(
        fink.read(CLASS).await?.len() == 5,
        "a retry after restart wrote a record"
    );

    // Retries racing their first attempt (the same ids sent at once on four connections,
    // queued for the same write round or the next): each record is written once.
    let racing: Vec<PublishRecord> = (10..16).map(|n| record(&format!("run-2/{n}"), n)).collect();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut c = fink.client(Some(&fink.token)).await?;
        let req = PublishRequest {
            topic: CLASS.to_owned(),
            records: racing.clone(),
        };
        calls.spawn(async move { c.publish(req).await.map(|r| r.into_inner().results) });
    }
    let mut answers = Vec::new();
    while let Some(a) = calls.join_next().await {
        answers.push(a??);
    }
    for i in 0..racing.len() {
        let refs: HashSet<&str> = answers.iter().map(|a| a[i].r#ref.as_str()).collect();
        let written = answers.iter().filter(|a| !a[i].duplicate).count();
        ensure!(refs.len() == 1 && written == 1, "record {i}: {answers:?}");
    }
    let n = fink.read(CLASS).await?.len();
    ensure!(n == 5 + racing.len(), "{n} records after racing retries");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_publish_neither_loses_nor_duplicates_on_retry() -> Result<()> {
    let mut fink = Fink::start("").await?;
    // Killed before, while or after the batch is written: some, all or none of it
    // reached Kafka, and the publisher never heard back.
    for (round, delay_ms) in [5u64, 30, 120].into_iter().enumerate() {
        let batch: Vec<PublishRecord> = (0..60)
            .map(|n| record(&format!("crash/{round}/{n}"), n))
            .collect();
        let mut c = fink.client(Some(&fink.token)).await?;
        let req = PublishRequest {
            topic: CLASS.into(),
            records: batch.clone(),
        };
        let inflight = tokio::spawn(async move { c.publish(req).await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        fink.gw.gateway.kill();
        let _ = inflight.await;
        fink.gw.gateway.start_again().await?;
        let before = fink.read(CLASS).await?.len();
        eprintln!("round {round}: killed after {delay_ms} ms, {before} records in Kafka");
        let results = fink.publish(CLASS, batch.clone()).await?;
        let unique: HashSet<String> = refs(&results).into_iter().collect();
        ensure!(unique.len() == 60, "{} distinct refs", unique.len());
        let alerts = fink.read(CLASS).await?;
        ensure!(
            alerts.len() == 60 * (round + 1),
            "{} records after round {round}",
            alerts.len()
        );
        let read: HashSet<String> = alerts.iter().map(|a| a.r#ref.clone()).collect();
        ensure!(
            unique.is_subset(&read),
            "the answered refs are records written"
        );
    }
    Ok(())
}

async fn expect(
    what: &str,
    got: Result<Vec<v1::PublishResult>, tonic::Status>,
    code: Code,
    needle: &str,
) -> Result<()> {
    let status = match got {
        Ok(r) => anyhow::bail!("{what}: accepted {r:?}, want {code:?}"),
        Err(s) => s,
    };
    ensure!(
        status.code() == code && status.message().contains(needle),
        "{what}: got {:?} {:?}, want {code:?} saying {needle:?}",
        status.code(),
        status.message()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publishes_get_a_clear_status_and_write_nothing() -> Result<()> {
    let fink = Fink::start("[limits]\nmax_publish_record_bytes = 2048\n").await?;
    let good = || vec![record("ok/0", 0), record("ok/1", 1)];
    let with = |change: &dyn Fn(&mut PublishRecord)| {
        let mut batch = good();
        change(&mut batch[1]);
        batch
    };
    expect(
        "unknown topic",
        fink.publish("fink.nope", good()).await,
        Code::NotFound,
        "\"fink.nope\" is not exposed",
    )
    .await?;
    expect(
        "not publishable",
        fink.publish(ZTF_TOPIC, good()).await,
        Code::FailedPrecondition,
        "publish = true",
    )
    .await?;
    let reader = fink.gw.issue("fink", &["subscribe:*"], "1h").await?;
    let mut c = fink.client(Some(&reader)).await?;
    let refused = c
        .publish(PublishRequest {
            topic: CLASS.into(),
            records: good(),
        })
        .await
        .map(|r| r.into_inner().results);
    expect(
        "no publish scope",
        refused,
        Code::PermissionDenied,
        "publish:fink.class",
    )
    .await?;
    let mut c = fink.client(None).await?;
    let refused = c
        .publish(PublishRequest {
            topic: CLASS.into(),
            records: good(),
        })
        .await
        .map(|r| r.into_inner().results);
    expect(
        "no token",
        refused,
        Code::Unauthenticated,
        "publish:fink.class",
    )
    .await?;
    let invalid: Vec<(&str, &str, Vec<PublishRecord>, &str)> = vec![
        (
            "schema mismatch",
            CLASS,
            with(&|r| r.payload = br#"{"class":"SN","score":"high"}"#.to_vec().into()),
            "records[1].payload: score: expected number, found string",
        ),
        (
            "required field",
            CLASS,
            with(&|r| r.payload = br#"{"score":1}"#.to_vec().into()),
            "records[1].payload: class: required field is missing",
        ),
        (
            "not an object",
            FREE,
            with(&|r| r.payload = b"[1]".to_vec().into()),
            "records[1].payload: topic \"fink.free\" holds JSON objects",
        ),
        (
            "no derived_from",
            CLASS,
            with(&|r| r.derived_from.clear()),
            "records[1].derived_from: empty",
        ),
        (
            "malformed derived_from",
            CLASS,
            with(&|r| r.derived_from.push("lasair/ztf/0/1".into())),
            "records[1].derived_from[2]: invalid alert ref",
        ),
        (
            "unregistered namespace",
            CLASS,
            with(&|r| r.key = "GAIA:4295806720".into()),
            "records[1].key: namespace \"GAIA\" is not registered",
        ),
        (
            "oversized",
            FREE,
            with(&|r| {
                r.payload = format!(r#"{{"x":"{}"}}"#, "y".repeat(4000))
                    .into_bytes()
                    .into()
            }),
            "records[1]: 4",
        ),
        (
            "no activity",
            CLASS,
            with(&|r| r.activity = None),
            "records[1].activity: missing",
        ),
        (
            "repeated id",
            CLASS,
            with(&|r| r.publish_id = "ok/0".into()),
            "records[1].publish_id",
        ),
    ];
    for (what, topic, batch, needle) in invalid {
        expect(
            what,
            fink.publish(topic, batch).await,
            Code::InvalidArgument,
            needle,
        )
        .await?;
    }
    for topic in [CLASS, FREE] {
        let n = fink.read(topic).await?.len();
        ensure!(
            n == 0,
            "{n} records written to {topic} by refused publishes"
        );
    }
    // The same good batch is then accepted.
    let ok = fink.publish(CLASS, good()).await?;
    ensure!(ok.len() == 2 && fink.read(CLASS).await?.len() == 2);

    // Each refusal is counted under its reason on /metrics; only the good batch wrote.
    let m = fink.gw.metrics(&fink.cert).await?;
    let rejected = |reason| m.value("alertmesh_publish_rejected_total", &[("reason", reason)]);
    for (reason, n) in [
        ("unknown_topic", 1.0),
        ("not_publishable", 1.0),
        ("scope", 2.0),
        ("payload", 3.0),
        ("derived_from", 2.0),
        ("key", 1.0),
        ("size", 1.0),
        ("activity", 1.0),
        ("publish_id", 1.0),
    ] {
        ensure!(
            rejected(reason) == n,
            "rejected {reason}: {}",
            rejected(reason)
        );
    }
    let topic = |name| m.value(name, &[("topic", CLASS)]);
    ensure!(topic("alertmesh_publish_records_total") == 2.0);
    ensure!(topic("alertmesh_publish_batches_total") == 1.0);
    ensure!(topic("alertmesh_publish_duplicates_total") == 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_once_per_content_and_reports_bad_input() -> Result<()> {
    let fink = Fink::start("").await?;
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("fink.jwt");
    std::fs::write(&token, &fink.token)?;
    let payload = dir.path().join("class.json");
    std::fs::write(&payload, r#"{"class":"SN Ia","score":0.8}"#)?;
    let path = |p: &std::path::Path| p.display().to_string();
    let (token, ca, cert, key) = (
        path(&token),
        path(&fink.gw.ca),
        path(&fink.cert.cert),
        path(&fink.cert.key),
    );
    let url = fink.gw.url();
    let run = |extra: Vec<&str>| {
        let mut args = vec![
            "publish",
            "--gateway",
            &url,
            "--token",
            &token,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--topic",
            CLASS,
            "--mesh-key",
            "ZTF:ZTF18aabcdef",
            "--derived-from",
            "am://lasair/ztf.alerts/0/5",
            "--activity-name",
            "snclass",
            "--activity-version",
            "2.0",
            "--param",
            "threshold=0.5",
            "--used",
            "catalog:gaia-dr3/1",
        ];
        args.extend(extra);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move { alertmesh_tests::cli::run_cli(&args).await }
    };
    let first = run(vec![&payload.to_str().context("utf-8")?]).await?;
    ensure!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&first.stdout)?;
    ensure!(line["duplicate"] == false, "{line}");
    let again = run(vec![&payload.to_str().context("utf-8")?]).await?;
    let line2: serde_json::Value = serde_json::from_slice(&again.stdout)?;
    ensure!(
        line2["ref"] == line["ref"] && line2["duplicate"] == true,
        "{line2}"
    );
    let alerts = fink.read(CLASS).await?;
    ensure!(alerts.len() == 1, "{} records", alerts.len());
    ensure!(
        header(&alerts[0], "am-activity")
            == Some(r#"{"name":"snclass","version":"2.0","parameters":{"threshold":0.5}}"#),
        "{:?}",
        header(&alerts[0], "am-activity")
    );
    std::fs::write(&payload, r#"{"class":"SN Ia"}"#)?;
    let bad = run(vec![&payload.to_str().context("utf-8")?]).await?;
    let err = String::from_utf8_lossy(&bad.stderr);
    ensure!(
        !bad.status.success()
            && err.contains("INVALID_ARGUMENT")
            && err.contains("score: required field is missing"),
        "{err}"
    );

    // Publishable topics and their schema in ListTopics, DescribeGateway and the CLI.
    let mut c = fink.client(Some(&fink.token)).await?;
    let listed = c
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;
    let described = c
        .describe_gateway(v1::DescribeGatewayRequest {})
        .await?
        .into_inner()
        .topics;
    for topics in [&listed, &described] {
        let find = |name: &str| topics.iter().find(|t| t.name == name).cloned();
        let class = find(CLASS).context("no class topic")?;
        ensure!(class.publishable && class.format == "json", "{class:?}");
        ensure!(class.publish_schema == CLASS_SCHEMA, "{class:?}");
        let free = find(FREE).context("no free topic")?;
        ensure!(
            free.publishable && free.publish_schema.is_empty(),
            "{free:?}"
        );
        let alerts = find(ZTF_TOPIC).context("no alert topic")?;
        ensure!(
            !alerts.publishable && alerts.publish_schema.is_empty(),
            "{alerts:?}"
        );
    }
    let topics = |json: bool| {
        let mut args = vec![
            "topics",
            "--gateway",
            &url,
            "--token",
            &token,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ];
        if json {
            args.push("--json");
        }
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move { alertmesh_tests::cli::run_cli(&args).await }
    };
    let text = topics(false).await?;
    let text = String::from_utf8(text.stdout)?;
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().nth(4).unwrap_or("").to_owned())
    };
    ensure!(
        text.lines().next().is_some_and(|h| h.contains("PUBLISH")),
        "{text}"
    );
    ensure!(row(CLASS).as_deref() == Some("schema"), "{text}");
    ensure!(row(FREE).as_deref() == Some("yes"), "{text}");
    ensure!(row(ZTF_TOPIC).as_deref() == Some("-"), "{text}");
    let json = topics(true).await?;
    let class = String::from_utf8(json.stdout)?
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|v| v["name"] == CLASS)
        .context("class topic in --json")?;
    ensure!(
        class["publishable"] == true && class["publish_schema"] == CLASS_SCHEMA,
        "{class}"
    );
    Ok(())
}

/// A second replica of `fink`: the same configuration (name, keys, Kafka) on other ports.
struct Replica {
    child: tokio::process::Child,
    url: String,
}

impl Replica {
    async fn start(fink: &Fink) -> Result<Replica> {
        let (grpc, http) = (
            alertmesh_tests::process::free_port(),
            alertmesh_tests::process::free_port(),
        );
        let child = tokio::process::Command::new(alertmesh_tests::cli::alertmesh_bin())
            .args(["serve", "--config"])
            .arg(fink.gw.gateway.config_path())
            .env("ALERTMESH_GATEWAY_LISTEN", format!("127.0.0.1:{grpc}"))
            .env("ALERTMESH_GATEWAY_HTTP_LISTEN", format!("127.0.0.1:{http}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start a second replica")?;
        let replica = Replica {
            child,
            url: format!("https://127.0.0.1:{grpc}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", grpc))
            .await
            .is_err()
        {
            ensure!(
                std::time::Instant::now() < deadline,
                "the replica did not listen"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(replica)
    }

    async fn publish(
        &self,
        fink: &Fink,
        records: Vec<PublishRecord>,
    ) -> Result<Vec<v1::PublishResult>> {
        let mut c =
            auth::client(&self.url, &fink.gw.ca, Some(&fink.cert), Some(&fink.token)).await?;
        let req = PublishRequest {
            topic: CLASS.into(),
            records,
        };
        Ok(c.publish(req).await?.into_inner().results)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_sent_to_another_replica_writes_nothing() -> Result<()> {
    let fink = Fink::start("").await?;
    let mut replica = Replica::start(&fink).await?;
    let batch: Vec<PublishRecord> = (0..5).map(|n| record(&format!("rep/{n}"), n)).collect();
    let first = fink.publish(CLASS, batch.clone()).await?;
    let on_b = replica.publish(&fink, batch.clone()).await?;
    ensure!(refs(&on_b) == refs(&first), "{on_b:?} vs {first:?}");
    ensure!(on_b.iter().all(|r| r.duplicate), "{on_b:?}");
    // And the other way: written by the replica, retried on the first gateway, which
    // has to read what the replica wrote after its own last write.
    let more: Vec<PublishRecord> = (5..9).map(|n| record(&format!("rep/{n}"), n)).collect();
    let written = replica.publish(&fink, more.clone()).await?;
    ensure!(written.iter().all(|r| !r.duplicate), "{written:?}");
    let on_a = fink.publish(CLASS, more).await?;
    ensure!(refs(&on_a) == refs(&written), "{on_a:?} vs {written:?}");
    ensure!(on_a.iter().all(|r| r.duplicate), "{on_a:?}");
    ensure!(
        fink.read(CLASS).await?.len() == 9,
        "a retry on another replica wrote a record"
    );
    replica.child.kill().await?;
    Ok(())
}

/// An Avro topic's declared schema.
const AVRO_SCHEMA: &str = r#"{"type":"record","name":"Class","fields":[
    {"name":"class","type":"string"},{"name":"score","type":"double"}]}"#;

use alertmesh_tests::fixtures::ocf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avro_topic_takes_records_its_schema_reads_and_names_the_field_of_others() -> Result<()>
{
    use alertmesh_alert::apache_avro::types::Value;
    const AVRO: &str = "fink.avroclass";
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("class.avsc");
    std::fs::write(&schema, AVRO_SCHEMA)?;
    let fink = Fink::start(&format!(
        "[[topics]]\nname = {AVRO:?}\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\npublish = true\nschema = {:?}\n",
        schema.display().to_string()
    ))
    .await?;
    fink.broker.create_topic(AVRO, 1).await?;
    let with_payload = |id: &str, payload: Vec<u8>| {
        let mut r = record(id, 1);
        r.payload = payload.into();
        r
    };
    let good = ocf(
        AVRO_SCHEMA,
        vec![
            ("class", Value::String("SN Ia".into())),
            ("score", Value::Double(0.9)),
        ],
    );
    // A writer schema without `score` (no default): the topic's schema cannot read it.
    let narrow = ocf(
        r#"{"type":"record","name":"Class","fields":[{"name":"class","type":"string"}]}"#,
        vec![("class", Value::String("SN Ia".into()))],
    );
    expect(
        "a record without a field the schema needs",
        fink.publish(AVRO, vec![with_payload("avro/1", narrow)])
            .await,
        Code::InvalidArgument,
        "score",
    )
    .await?;
    expect(
        "JSON on an Avro topic",
        fink.publish(
            AVRO,
            vec![with_payload(
                "avro/2",
                br#"{"class":"SN Ia","score":0.9}"#.to_vec(),
            )],
        )
        .await,
        Code::InvalidArgument,
        "avro",
    )
    .await?;
    ensure!(
        fink.read(AVRO).await?.is_empty(),
        "a refused record was written"
    );
    let written = fink
        .publish(AVRO, vec![with_payload("avro/3", good.clone())])
        .await?;
    ensure!(written.len() == 1 && !written[0].duplicate, "{written:?}");
    let back = fink.read(AVRO).await?;
    ensure!(back.len() == 1, "{back:?}");
    ensure!(back[0].payload == good, "the payload was changed");
    ensure!(back[0].format == "avro-ocf", "{:?}", back[0].format);
    ensure!(
        header(&back[0], "am-derived-from")
            == Some("am://lasair/ztf.alerts/0/1,am://antares/ztf.alerts/1/101")
            && header(&back[0], "am-schema").is_some(),
        "{:?}",
        back[0].headers
    );
    Ok(())
}
