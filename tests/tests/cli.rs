//! The `alertmesh` CLI against a running gateway: JSON lines, raw payload files, topics,
//! fetch, and one-line errors with a non-zero exit.

use std::collections::HashMap;

use alertmesh_tests::cli::run_cli;
use alertmesh_tests::client::alert_ref;
use alertmesh_tests::process::free_port;
use alertmesh_tests::{Mesh, Site, ZTF_TOPIC};
use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use serde_json::Value;

fn b64(v: &Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

/// A JSON key is the mesh key as text (or, for binary keys, base64).
fn key_matches(v: &Value, want: &[u8]) -> bool {
    v.as_str().is_some_and(|s| s.as_bytes() == want) || b64(v).is_some_and(|k| k == want)
}

fn check_json_line(line: &str, site: &Site) -> Result<(i32, i64)> {
    let v: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line:.200}"))?;
    let partition = v["partition"].as_i64().context("partition")? as i32;
    let offset = v["offset"].as_i64().context("offset")?;
    let p = site
        .produced
        .iter()
        .find(|p| p.record.partition == partition && p.offset == offset)
        .context("unknown position")?;
    ensure!(
        v["ref"] == alert_ref("lasair", ZTF_TOPIC, partition, offset),
        "ref {}",
        v["ref"]
    );
    ensure!(v["topic"] == ZTF_TOPIC, "topic {}", v["topic"]);
    ensure!(!v["timestamp"].is_null(), "timestamp missing");
    ensure!(!v["headers"].is_null(), "headers missing");
    let key = p.record.key.as_deref().unwrap_or_default();
    ensure!(key_matches(&v["key"], key), "key {}", v["key"]);
    ensure!(
        b64(&v["payload"]).as_deref() == Some(p.record.payload.as_ref()),
        "payload differs"
    );
    Ok((partition, offset))
}

async fn site() -> Result<Site> {
    Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await
}

#[tokio::test]
async fn cli_subscribe_native_prints_one_object_per_alert_with_its_payload() -> Result<()> {
    let site = site().await?;
    let args = [
        "subscribe",
        "--topic",
        ZTF_TOPIC,
        "--from",
        "earliest",
        "--until",
        "now",
        "--format",
        "native",
    ];
    let out = site.gateway.cli(&args).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}; stderr:\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout)?;
    let mut seen = HashMap::new();
    for line in stdout.lines() {
        let pos = check_json_line(line, &site)?;
        ensure!(seen.insert(pos, ()).is_none(), "{pos:?} printed twice");
    }
    assert_eq!(seen.len(), 45);

    let limited = [
        "subscribe",
        "--topic",
        ZTF_TOPIC,
        "--from",
        "1:10",
        "--until",
        "now",
        "--limit",
        "3",
        "--format",
        "native",
    ];
    let out = site.gateway.cli(&limited).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<(i32, i64)> = String::from_utf8(out.stdout)?
        .lines()
        .map(|l| check_json_line(l, &site))
        .collect::<Result<_>>()?;
    assert_eq!(lines, vec![(1, 10), (1, 11), (1, 12)]);
    Ok(())
}

#[tokio::test]
async fn cli_subscribe_raw_writes_each_payload_to_a_file() -> Result<()> {
    let site = site().await?;
    let dir = site.gateway.dir().join("raw-out");
    let dir_arg = dir.to_string_lossy().into_owned();
    let args = [
        "subscribe",
        "--topic",
        ZTF_TOPIC,
        "--from",
        "earliest",
        "--until",
        "now",
        "--format",
        "raw",
        "--out",
        &dir_arg,
    ];
    let out = site.gateway.cli(&args).await?;
    assert!(
        out.status.success(),
        "exit {}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)?
        .map(|e| std::fs::read(e?.path()).map_err(Into::into))
        .collect::<Result<_>>()?;
    let mut want: Vec<Vec<u8>> = site
        .produced
        .iter()
        .map(|p| p.record.payload.to_vec())
        .collect();
    files.sort();
    want.sort();
    // The user is told where the files went and how many.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wrote 45 alert file(s)") && stderr.contains(&dir_arg),
        "stderr: {stderr}"
    );
    assert_eq!(files.len(), 45, "one file per alert");
    assert!(
        files == want,
        "file contents are not the 45 payloads byte for byte"
    );
    Ok(())
}

#[tokio::test]
async fn cli_topics_and_fetch_show_what_the_gateway_serves() -> Result<()> {
    let site = site().await?;
    let out = site.gateway.cli(&["topics"]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains(ZTF_TOPIC))
        .context("topic listed")?;
    assert!(
        line.contains("ZTF") && line.contains("avro-ocf"),
        "topics line {line:?}"
    );

    let p = site
        .produced
        .iter()
        .find(|p| p.record.partition == 2 && p.offset == 4)
        .unwrap();
    let r = alert_ref("lasair", ZTF_TOPIC, 2, 4);
    let out = site.gateway.cli(&["fetch", &r]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // JSON like `subscribe --format json` or the raw payload.
    if out.stdout != p.record.payload.as_ref() {
        let text = String::from_utf8(out.stdout).context("fetch output is neither raw nor JSON")?;
        assert_eq!(check_json_line(text.trim(), &site)?, (2, 4));
    }

    // --format json decodes the alert, as its help says, like `subscribe --format json`.
    let out = site.gateway.cli(&["fetch", &r, "--format", "json"]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["ref"], r.as_str());
    assert!(v.get("payload").is_none(), "json has the payload: {v}");
    assert!(
        v["alert"]["objectId"].is_string() && v["alert"]["candidate"]["candid"].is_i64(),
        "no decoded alert: {v}"
    );
    let native = site
        .gateway
        .cli(&["fetch", &r, "--format", "native"])
        .await?;
    assert_ne!(native.stdout, out.stdout, "json and native print the same");
    Ok(())
}

#[tokio::test]
async fn logs_written_to_a_file_are_plain_text() -> Result<()> {
    let site = site().await?;
    // The gateway's stderr is a file here: its startup lines carry no colour codes.
    let log = site.gateway.stderr_tail(200);
    assert!(log.contains("INFO"), "no log lines: {log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file: {log:?}");
    Ok(())
}

#[tokio::test]
async fn cli_errors_are_one_line_with_a_failing_exit() -> Result<()> {
    let site = site().await?;
    let missing_ref = alert_ref("lasair", ZTF_TOPIC, 0, 999);
    let failing: Vec<Vec<&str>> = vec![
        vec![
            "subscribe",
            "--topic",
            "not.exposed",
            "--from",
            "earliest",
            "--until",
            "now",
        ],
        vec![
            "subscribe",
            "--topic",
            ZTF_TOPIC,
            "--from",
            "7:0",
            "--until",
            "now",
        ],
        vec!["fetch", &missing_ref],
        vec!["fetch", "not-a-ref"],
    ];
    for args in failing {
        let out = site.gateway.cli(&args).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: stderr is not one line:\n{stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // No gateway at all.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let out = run_cli(&["topics", "--gateway", &nowhere]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "topics against nothing succeeded");
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr:\n{stderr}");
    // The cause is said once, with what to check.
    assert_eq!(stderr.matches("tcp connect error").count(), 1, "{stderr}");
    assert!(!stderr.contains("transport error"), "{stderr}");
    assert!(
        stderr.contains("Connection refused") && stderr.contains("--gateway"),
        "{stderr}"
    );
    Ok(())
}

/// A gateway that answers with whatever a test tells it to: a hostile topic name in
/// subscribed and fetched alerts, a hostile error message, hostile topic descriptions.
mod hostile {
    use alertmesh_proto::v1::{self, alert_mesh_server};
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status};

    #[derive(Debug, Clone)]
    pub(crate) struct Gateway {
        /// The topic every alert it sends claims to come from.
        pub(crate) topic: String,
        /// The message of every error it answers with.
        pub(crate) message: String,
    }

    impl Gateway {
        fn alert(&self) -> v1::Alert {
            v1::Alert {
                r#ref: format!("am://evil/{}/0/0", self.topic),
                topic: self.topic.clone(),
                payload: b"not an alert".to_vec().into(),
                format: "avro-ocf".into(),
                ..v1::Alert::default()
            }
        }

        /// Serves on 127.0.0.1 until the test ends; returns the URL.
        pub(crate) async fn start(self) -> anyhow::Result<String> {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(alert_mesh_server::AlertMeshServer::new(self))
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            );
            Ok(url)
        }
    }

    type Answer<T> = Result<Response<T>, Status>;

    #[tonic::async_trait]
    impl alert_mesh_server::AlertMesh for Gateway {
        type SubscribeStream =
            tokio_stream::Iter<std::vec::IntoIter<Result<v1::AlertBatch, Status>>>;

        async fn subscribe(
            &self,
            _: Request<v1::SubscribeRequest>,
        ) -> Answer<Self::SubscribeStream> {
            let batch = v1::AlertBatch {
                alerts: vec![self.alert()],
                ..v1::AlertBatch::default()
            };
            Ok(Response::new(tokio_stream::iter(vec![Ok(batch)])))
        }

        type QueryStream = tokio_stream::Empty<Result<v1::QueryBatch, Status>>;

        async fn query(&self, _: Request<v1::QueryRequest>) -> Answer<Self::QueryStream> {
            Err(Status::unimplemented(self.message.clone()))
        }

        async fn commit_cursor(
            &self,
            _: Request<v1::CommitCursorRequest>,
        ) -> Answer<v1::CommitCursorResponse> {
            Err(Status::invalid_argument(self.message.clone()))
        }

        async fn publish(&self, _: Request<v1::PublishRequest>) -> Answer<v1::PublishResponse> {
            Err(Status::unimplemented(self.message.clone()))
        }

        async fn list_topics(
            &self,
            _: Request<v1::ListTopicsRequest>,
        ) -> Answer<v1::ListTopicsResponse> {
            Ok(Response::new(v1::ListTopicsResponse {
                topics: vec![v1::TopicInfo {
                    name: self.topic.clone(),
                    namespace: "ZTF".into(),
                    format: "avro-ocf".into(),
                    description: self.message.clone(),
                    partitions: 1,
                    ..Default::default()
                }],
                queries: Vec::new(),
            }))
        }

        async fn describe_gateway(
            &self,
            _: Request<v1::DescribeGatewayRequest>,
        ) -> Answer<v1::GatewayDescription> {
            Err(Status::unavailable(self.message.clone()))
        }

        async fn fetch(&self, _: Request<v1::FetchRequest>) -> Answer<v1::Alert> {
            Err(Status::not_found(self.message.clone()))
        }

        async fn provenance(
            &self,
            _: Request<v1::ProvenanceRequest>,
        ) -> Answer<v1::ProvenanceGraph> {
            Err(Status::not_found(self.message.clone()))
        }

        async fn mirror_status(
            &self,
            _: Request<v1::MirrorStatusRequest>,
        ) -> Answer<v1::MirrorStatusResponse> {
            Err(Status::unimplemented(self.message.clone()))
        }

        async fn issue_credential(
            &self,
            _: Request<v1::IssueCredentialRequest>,
        ) -> Answer<v1::IssueCredentialResponse> {
            Err(Status::unimplemented(self.message.clone()))
        }

        async fn list_credentials(
            &self,
            _: Request<v1::ListCredentialsRequest>,
        ) -> Answer<v1::ListCredentialsResponse> {
            Err(Status::unimplemented(self.message.clone()))
        }

        async fn revoke_credential(
            &self,
            _: Request<v1::RevokeCredentialRequest>,
        ) -> Answer<v1::RevokeCredentialResponse> {
            Err(Status::unimplemented(self.message.clone()))
        }

        async fn get_schema(&self, _: Request<v1::GetSchemaRequest>) -> Answer<v1::SchemaInfo> {
            Err(Status::unimplemented(self.message.clone()))
        }
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `alertmesh subscribe --topic ztf.alerts --from earliest --format raw --out <out>`.
async fn subscribe_raw(url: &str, out: &std::path::Path) -> Result<std::process::Output> {
    run_cli(&[
        "subscribe",
        "--gateway",
        url,
        "--topic",
        "ztf.alerts",
        "--from",
        "earliest",
        "--format",
        "raw",
        "--out",
        &out.display().to_string(),
    ])
    .await
}

#[tokio::test]
async fn a_hostile_gateway_cannot_make_subscribe_raw_write_outside_its_folder() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("a/b/c/d/out");
    let absolute = tmp.path().join("absolute");
    for topic in [
        "../../../../x".to_owned(),
        "..".to_owned(),
        absolute.display().to_string(),
        "t\u{1b}]0;owned\u{7}/../../../../y".to_owned(),
    ] {
        let url = hostile::Gateway {
            topic: topic.clone(),
            message: String::new(),
        }
        .start()
        .await?;
        let run = subscribe_raw(&url, &out).await?;
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{topic:?}: subscribe succeeded");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{topic:?}: {stderr}");
        assert!(
            stderr.contains("invalid Kafka topic name"),
            "{topic:?}: {stderr}"
        );
        assert!(
            !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
            "{stderr:?}"
        );
        let shown: String = topic.chars().take(8).flat_map(char::escape_debug).collect();
        assert!(
            stderr.contains(&shown),
            "{topic:?} is not named in {stderr}"
        );
        let written = files_under(tmp.path());
        assert!(written.is_empty(), "{topic:?} wrote {written:?}");
    }
    // A valid name, but not the topic asked for: its files would overwrite that topic's.
    let url = hostile::Gateway {
        topic: "ztf.other".into(),
        message: String::new(),
    }
    .start()
    .await?;
    let run = subscribe_raw(&url, &out).await?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("an alert of topic \"ztf.other\""),
        "{stderr}"
    );
    let written = files_under(tmp.path());
    assert!(written.is_empty(), "wrote {written:?}");
    Ok(())
}

#[tokio::test]
async fn text_from_a_hostile_gateway_is_escaped_and_capped() -> Result<()> {
    let message = format!("\u{1b}]0;owned\u{7}\u{1b}[2J{}", "x".repeat(6000));
    let url = hostile::Gateway {
        topic: "ztf\u{1b}[31m".into(),
        message: message.clone(),
    }
    .start()
    .await?;
    for args in [
        vec!["fetch", "am://lasair/ztf.alerts/0/1", "--gateway", &url],
        vec!["describe", "--gateway", &url],
    ] {
        let run = run_cli(&args).await?;
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            !stderr.chars().any(|c| c.is_control() && c != '\n'),
            "{stderr:?}"
        );
        assert!(stderr.contains("\\u{1b}]0;owned\\u{7}"), "{stderr}");
        assert!(
            stderr.len() < 1200,
            "{args:?}: {} bytes on stderr",
            stderr.len()
        );
    }
    let run = run_cli(&["topics", "--gateway", &url]).await?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{stdout:?}"
    );
    assert!(stdout.contains("ztf\\u{1b}[31m"), "{stdout}");
    assert!(stdout.len() < 1000, "{} bytes", stdout.len());
    Ok(())
}

#[tokio::test]
async fn a_gateway_caps_and_escapes_the_input_it_echoes() -> Result<()> {
    use alertmesh_proto::v1::alert_mesh_client::AlertMeshClient;
    use alertmesh_tests::client::{earliest, request};
    let site = site().await?;
    let mut client = AlertMeshClient::connect(site.gateway.grpc_url()).await?;
    // Just under the gateway's 1 MiB request limit.
    let huge = "f".repeat(900_000);
    let mut unknown_field = request(ZTF_TOPIC);
    unknown_field.start = earliest();
    unknown_field.filter = format!("{huge} < 1");
    let mut unknown_topic = request(&format!("t\u{1b}[2J{huge}"));
    unknown_topic.start = earliest();
    for (req, code) in [
        (unknown_field, tonic::Code::InvalidArgument),
        (unknown_topic, tonic::Code::NotFound),
    ] {
        let status = match client.subscribe(req).await {
            Err(status) => status,
            Ok(stream) => match stream.into_inner().message().await {
                Err(status) => status,
                Ok(batch) => anyhow::bail!("a stream opened: {:?}", batch.map(|b| b.alerts.len())),
            },
        };
        let message = status.message();
        assert_eq!(status.code(), code, "{message:.300}");
        assert!(
            message.len() <= 1100,
            "{} bytes: {message:.300}",
            message.len()
        );
        assert!(message.contains("fff"), "the input is not named: {message}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
    Ok(())
}

#[tokio::test]
async fn topics_that_need_a_token_are_counted_and_listed_with_one() -> Result<()> {
    use alertmesh_tests::auth::{Pki, Secure, SecureSpec};
    use alertmesh_tests::Broker;
    let pki = Pki::new()?;
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 2).await?;
    broker.create_topic("ztf.open", 1).await?;
    let gw = Secure::start(
        &pki,
        SecureSpec::new("lasair", &broker.bootstrap())
            .without_mtls()
            .topic(ZTF_TOPIC, false)
            .topic("ztf.open", true),
    )
    .await?;
    let secret = gw.issue("alice", &["subscribe:ztf.*"], "1h").await?;
    let token = pki.dir().join("alice.token");
    std::fs::write(&token, &secret)?;
    let (url, ca) = (gw.url(), gw.ca.to_string_lossy().into_owned());
    let token = token.to_string_lossy().into_owned();
    let base = ["--gateway", url.as_str(), "--ca", ca.as_str()];

    for cmd in [vec!["topics"], vec!["describe"], vec!["directory"]] {
        let args: Vec<&str> = cmd.iter().copied().chain(base).collect();
        let out = run_cli(&args).await?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{cmd:?}: {stderr}");
        assert!(stdout.contains("ztf.open"), "{cmd:?}: {stdout}");
        assert!(!stdout.contains(ZTF_TOPIC), "{cmd:?}: {stdout}");
        assert!(
            format!("{stdout}{stderr}").contains("1 more"),
            "{cmd:?}: no hint that a token shows more:\n{stdout}\n{stderr}"
        );
    }
    // With a token for this gateway, directory lists its private topic too.
    let args: Vec<&str> = ["directory", "--token", &token]
        .into_iter()
        .chain(base)
        .collect();
    let out = run_cli(&args).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(ZTF_TOPIC), "{stdout}");
    assert!(!stdout.contains("more need a token"), "{stdout}");
    Ok(())
}

/// The top-level keys of a JSON object written with `...` elisions (as in the README).
fn top_level_keys(sample: &str) -> Vec<String> {
    let (mut depth, mut keys, mut chars) = (0, Vec::new(), sample.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        c => s.push(c),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if depth == 1 && chars.peek() == Some(&':') {
                    keys.push(s);
                }
            }
            _ => {}
        }
    }
    keys
}

#[tokio::test]
async fn the_readme_sample_json_has_the_keys_subscribe_prints() -> Result<()> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let sample = readme
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split_once("```"))
        .context("a json block in the README")?
        .0;
    let site = site().await?;
    let out = site
        .gateway
        .cli(&[
            "subscribe",
            "--topic",
            ZTF_TOPIC,
            "--from",
            "earliest",
            "--until",
            "now",
            "--limit",
            "1",
            "--omit-cutouts",
        ])
        .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout)?;
    let printed = top_level_keys(line.trim());
    ensure!(
        top_level_keys(sample) == printed,
        "README sample keys {:?}, printed {printed:?}",
        top_level_keys(sample)
    );
    Ok(())
}

#[tokio::test]
async fn hostile_gateway_url_lists_are_one_line_errors_without_credentials() -> Result<()> {
    let port = free_port();
    let many = (0..5000)
        .map(|i| format!("http://127.0.0.1:{}", 1 + i % 1000))
        .collect::<Vec<_>>()
        .join(",");
    let cases = [
        (
            format!("http://127.0.0.1:{port},,http://127.0.0.1:{port}"),
            "--gateway: invalid gateway URL list: entry 2 of 3 is empty",
        ),
        (
            format!("http://127.0.0.1:{port},"),
            "--gateway: invalid gateway URL list: entry 2 of 2 is empty",
        ),
        (
            many,
            "--gateway: invalid gateway URL list: 5000 URLs given; a gateway's replicas are at most 32",
        ),
        (
            format!("ftp://127.0.0.1:{port}"),
            "only http:// and https:// gateways are supported",
        ),
        (
            format!("https://alice:s3cret-pw@127.0.0.1:{port},http://127.0.0.1:{port}"),
            "a user or password in the URL is refused",
        ),
    ];
    for command in [
        &["topics"][..],
        &["subscribe", "--topic", "ztf"],
        &["directory"],
    ] {
        for (urls, says) in &cases {
            let mut args: Vec<&str> = command.to_vec();
            args.extend(["--gateway", urls]);
            let out = run_cli(&args).await?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(!out.status.success(), "{command:?} {says}: succeeded");
            ensure!(
                stderr.contains(says),
                "{command:?}: {says:?} not in {stderr}"
            );
            ensure!(
                stderr.trim_end().lines().count() == 1 && stderr.len() < 600,
                "{command:?}: one short line: {stderr}"
            );
            ensure!(
                !stderr.contains("s3cret") && !stderr.contains("alice"),
                "{stderr}"
            );
        }
    }
    Ok(())
}
