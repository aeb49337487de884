//! `alertmesh-client` against real gateways: TLS with a token and a client certificate,
//! describe, topics and fetch; a live subscription that resumes across a gateway restart
//! and a crash without gaps or repeats; and tokens that never reach an address another
//! gateway supplied (a hostile gateway written here names a peer the test controls).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertmesh_client::v1::{self, alert_mesh_server};
use alertmesh_client::{Backoff, Gateway, Options, Subscription, Token};
use alertmesh_tests::auth::{Pki, Secure, SecureSpec};
use alertmesh_tests::cli::{json_lines, run_cli};
use alertmesh_tests::client::{check_exactly, earliest, request, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Broker, Mesh, Produced, WAIT, ZTF_TOPIC};
use anyhow::{bail, ensure, Context, Result};
use tokio_stream::StreamExt as _;
use tonic::Code;

/// Reads `n` more alerts, failing on an end, an error or the deadline.
async fn take(sub: &mut Subscription, n: usize) -> Result<Vec<v1::Alert>> {
    let mut got = Vec::with_capacity(n);
    let read = async {
        while got.len() < n {
            match sub.next().await? {
                Some(a) => got.push(a),
                None => bail!("the stream ended after {} of {n} alerts", got.len()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(WAIT, read).await {
        Ok(r) => r?,
        Err(_) => bail!("timed out with {} of {n} alerts", got.len()),
    }
    Ok(got)
}

#[tokio::test]
async fn a_live_subscription_resumes_across_a_restart_and_a_crash_without_gaps_or_repeats(
) -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut produced: Vec<Produced> = site.produced.clone();
    let client = site.gateway.endpoint()?.connect().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    let mut sub = client.subscribe(req).await?.with_backoff(Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(1),
    ));
    let mut alerts = take(&mut sub, 20).await?;

    // A graceful restart (open streams end with UNAVAILABLE), with alerts produced while
    // the gateway is down.
    site.gateway.sigterm().await?;
    let more = ztf_records(3, now_ms(), 1000)?;
    produced.extend(site.broker.produce_all(ZTF_TOPIC, &more).await?);
    site.gateway.start_again().await?;
    alerts.extend(take(&mut sub, produced.len() - alerts.len()).await?);

    // A crash: the connection is cut without a status.
    site.gateway.kill();
    produced.extend(site.broker.produce_all(ZTF_TOPIC, &more).await?);
    site.gateway.start_again().await?;
    alerts.extend(take(&mut sub, produced.len() - alerts.len()).await?);

    ensure!(sub.reconnects() >= 2, "reconnects: {}", sub.reconnects());
    let expected: Vec<&Produced> = produced.iter().collect();
    check_exactly(&alerts, &expected, "lasair")?;
    // Positions are what a cursor would commit: one past the last delivered offset.
    for (partition, next) in sub.positions() {
        let last = alerts
            .iter()
            .filter(|a| a.partition == *partition)
            .map(|a| a.offset)
            .max();
        ensure!(
            last == Some(next - 1),
            "partition {partition}: next {next}, last {last:?}"
        );
    }
    Ok(())
}

/// A `latest` subscription whose partition 1 delivered nothing before the gateway went
/// away: records stamped before the stream opened that reach partition 1 meanwhile (a
/// mirror catching up copies its source's timestamps) come after the reconnection, and
/// nothing partition 1 held before the stream opened does.
#[tokio::test]
async fn a_latest_subscription_resumes_quiet_partitions_where_it_started() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .ztf_alerts()
        .start()
        .await?;
    ensure!(
        site.produced.iter().any(|p| p.record.partition == 1),
        "partition 1 holds records from before the stream"
    );
    let client = site.gateway.endpoint()?.connect().await?;
    // Unset start: `latest`. The stream is at the head once the call returns.
    let mut sub = client
        .subscribe(request(ZTF_TOPIC))
        .await?
        .with_backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
        ));
    let opened = now_ms();
    let in_partition = |p: i32, ts: i64| -> Result<Vec<_>> {
        Ok(ztf_records(2, ts, 1000)?
            .into_iter()
            .filter(|r| r.partition == p)
            .take(4)
            .collect())
    };
    let mut produced = site
        .broker
        .produce_all(ZTF_TOPIC, &in_partition(0, opened)?)
        .await?;
    let mut alerts = take(&mut sub, produced.len()).await?;

    site.gateway.sigterm().await?;
    let copied = in_partition(1, opened - 3_600_000)?;
    produced.extend(site.broker.produce_all(ZTF_TOPIC, &copied).await?);
    produced.extend(
        site.broker
            .produce_all(ZTF_TOPIC, &in_partition(0, now_ms())?)
            .await?,
    );
    site.gateway.start_again().await?;
    alerts.extend(take(&mut sub, produced.len() - alerts.len()).await?);
    ensure!(sub.reconnects() >= 1, "reconnects: {}", sub.reconnects());
    check_exactly(&alerts, &produced.iter().collect::<Vec<_>>(), "lasair")?;
    // Nothing more: a partition replayed from before the stream would come next.
    let more = tokio::time::timeout(Duration::from_secs(2), sub.next()).await;
    ensure!(more.is_err(), "an alert beyond those produced: {more:?}");
    Ok(())
}

#[tokio::test]
async fn tls_and_a_token_reach_describe_topics_subscribe_and_fetch() -> Result<()> {
    let pki = Pki::new()?;
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 2).await?;
    let produced = broker
        .produce_all(ZTF_TOPIC, &ztf_records(2, now_ms() - 3_600_000, 1000)?)
        .await?;
    let gw = Secure::start(
        &pki,
        SecureSpec::new("lasair", &broker.bootstrap()).topic(ZTF_TOPIC, false),
    )
    .await?;
    let secret = gw
        .issue("alice", &["subscribe:ztf.*", "fetch:ztf.*"], "1h")
        .await?;
    let alice = pki.client("alice")?;
    let options = Options {
        token: Some(Token::new(&secret)?),
        ca: Some(gw.ca.clone()),
        cert: Some(alice.cert.clone()),
        key: Some(alice.key.clone()),
        ..Options::default()
    };
    let lasair = Gateway::new(&gw.url(), &options)?;
    ensure!(
        !format!("{lasair:?}").contains(&secret),
        "Debug shows the token"
    );
    let mut client = lasair.connect().await?;

    let described = client.describe().await?;
    ensure!(described.name == "lasair", "{described:?}");
    let topics = client.list_topics().await?;
    ensure!(
        topics
            .iter()
            .any(|t| t.name == ZTF_TOPIC && t.partitions == 2),
        "{topics:?}"
    );

    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    // A bounded stream, read as a `Stream`.
    let sub = client.subscribe(req.clone()).await?;
    let alerts: Vec<v1::Alert> =
        tokio::time::timeout(WAIT, sub.into_stream().collect::<Result<_, _>>()).await??;
    check_exactly(&alerts, &produced.iter().collect::<Vec<_>>(), "lasair")?;
    let fetched = client.fetch(&alerts[7].r#ref).await?;
    ensure!(
        fetched.payload == alerts[7].payload && fetched.r#ref == alerts[7].r#ref,
        "fetch returned another record"
    );

    // Without the token the private topic is refused, with a status and no retry.
    let anonymous = Gateway::new(
        &gw.url(),
        &Options {
            token: None,
            ..options.clone()
        },
    )?;
    let refused = anonymous.connect().await?.subscribe(req).await;
    match refused {
        Err(e) => ensure!(
            e.status().map(tonic::Status::code) == Some(Code::Unauthenticated),
            "{e}"
        ),
        Ok(_) => bail!("a private topic was served without a token"),
    }
    // A bad token is refused, and the error does not repeat it.
    let forged = format!("{secret}x");
    let bad = Gateway::new(
        &gw.url(),
        &Options {
            token: Some(Token::new(&forged)?),
            ..options.clone()
        },
    )?;
    let b = bad.connect().await?;
    let mut r = request(ZTF_TOPIC);
    r.start = earliest();
    match b.subscribe(r).await {
        Err(e) => {
            ensure!(
                e.status().map(tonic::Status::code) == Some(Code::Unauthenticated),
                "{e}"
            );
            ensure!(
                !e.to_string().contains(&forged),
                "error shows the token: {e}"
            );
        }
        Ok(_) => bail!("a forged token was accepted"),
    }

    // TLS files are refused for a plain-text URL, and a TLS gateway needs its CA.
    let plain = format!("http://{}", gw.gateway.grpc_addr());
    ensure!(Gateway::new(&plain, &options).is_err());
    let untrusting = Gateway::new(
        &gw.url(),
        &Options {
            ca: None,
            ..options.clone()
        },
    )?;
    match untrusting.connect().await {
        Err(e) => ensure!(!e.to_string().contains(&secret), "{e}"),
        Ok(mut c) => ensure!(
            c.describe().await.is_err(),
            "an untrusted certificate was accepted"
        ),
    }
    Ok(())
}

/// What a hostile gateway saw: the RPC and whether it carried `authorization`.
type Seen = Arc<Mutex<Vec<(&'static str, bool)>>>;

/// A gateway that answers `DescribeGateway` with a name and mirror-source peers of the
/// test's choosing, and `Fetch` with a record whose `am-source` names `source`. It records
/// every call and whether it carried a token.
struct Hostile {
    name: String,
    peers: Vec<v1::Peer>,
    source: Option<String>,
    seen: Seen,
    /// Whether it serves `Provenance` (a gateway from before it answers UNIMPLEMENTED).
    provenance: bool,
    /// The call it answers with millions of empty elements, if any.
    flood: Option<Flood>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flood {
    Subscribe,
    ListTopics,
}

/// Empty alerts (or topics) sent as one `AlertBatch` (or listing): two bytes each on the
/// wire, some hundreds each decoded (~2.5 GB for these).
const FLOOD: usize = 8 << 20;

/// `FLOOD` empty elements of field 1, as one run of encoded bytes.
fn flood_of_field_1() -> bytes::Bytes {
    bytes::Bytes::from([0x0a_u8, 0x00].repeat(FLOOD))
}

impl Hostile {
    fn record<T>(&self, rpc: &'static str, req: &tonic::Request<T>) {
        let auth = req.metadata().contains_key("authorization");
        self.seen.lock().expect("lock").push((rpc, auth));
    }
}

#[tonic::async_trait]
impl alert_mesh_server::AlertMesh for Hostile {
    type SubscribeStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<v1::AlertBatch, tonic::Status>>>;

    async fn subscribe(
        &self,
        req: tonic::Request<v1::SubscribeRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        self.record("Subscribe", &req);
        let mut batches = Vec::new();
        if self.flood == Some(Flood::Subscribe) {
            // Sent as pre-encoded alerts: building 8 million `Alert`s here would cost the
            // test what the flood is meant to cost its receiver.
            let mut batch = v1::AlertBatch::default();
            batch.framed.push_run(flood_of_field_1(), FLOOD);
            batches.push(Ok(batch));
        }
        Ok(tonic::Response::new(tokio_stream::iter(batches)))
    }
    type QueryStream = tokio_stream::Empty<Result<v1::QueryBatch, tonic::Status>>;
    async fn query(
        &self,
        req: tonic::Request<v1::QueryRequest>,
    ) -> Result<tonic::Response<Self::QueryStream>, tonic::Status> {
        self.record("Query", &req);
        Ok(tonic::Response::new(tokio_stream::empty()))
    }
    async fn commit_cursor(
        &self,
        req: tonic::Request<v1::CommitCursorRequest>,
    ) -> Result<tonic::Response<v1::CommitCursorResponse>, tonic::Status> {
        self.record("CommitCursor", &req);
        Err(tonic::Status::unimplemented(""))
    }
    async fn publish(
        &self,
        req: tonic::Request<v1::PublishRequest>,
    ) -> Result<tonic::Response<v1::PublishResponse>, tonic::Status> {
        self.record("Publish", &req);
        Err(tonic::Status::unimplemented(""))
    }
    async fn list_topics(
        &self,
        req: tonic::Request<v1::ListTopicsRequest>,
    ) -> Result<tonic::Response<v1::ListTopicsResponse>, tonic::Status> {
        self.record("ListTopics", &req);
        let mut topics = vec![v1::TopicInfo {
            name: "ztf".into(),
            partitions: 1,
            ..Default::default()
        }];
        if self.flood == Some(Flood::ListTopics) {
            // A million empty topics: 2 MB on the wire, over 300 MB decoded.
            topics.resize(1_000_001, v1::TopicInfo::default());
        }
        Ok(tonic::Response::new(v1::ListTopicsResponse {
            topics,
            ..Default::default()
        }))
    }
    async fn describe_gateway(
        &self,
        req: tonic::Request<v1::DescribeGatewayRequest>,
    ) -> Result<tonic::Response<v1::GatewayDescription>, tonic::Status> {
        self.record("DescribeGateway", &req);
        Ok(tonic::Response::new(v1::GatewayDescription {
            name: self.name.clone(),
            version: "0.0.0".into(),
            peers: self.peers.clone(),
            ..Default::default()
        }))
    }
    async fn fetch(
        &self,
        req: tonic::Request<v1::FetchRequest>,
    ) -> Result<tonic::Response<v1::Alert>, tonic::Status> {
        self.record("Fetch", &req);
        let headers = self
            .source
            .iter()
            .map(|s| v1::Header {
                key: alertmesh_alert::headers::SOURCE.into(),
                value: Some(s.clone().into_bytes().into()),
            })
            .collect();
        Ok(tonic::Response::new(v1::Alert {
            r#ref: req.into_inner().r#ref,
            mesh_key: "ZTF:ZTF18aaaaaaa".into(),
            headers,
            ..Default::default()
        }))
    }
    async fn provenance(
        &self,
        req: tonic::Request<v1::ProvenanceRequest>,
    ) -> Result<tonic::Response<v1::ProvenanceGraph>, tonic::Status> {
        self.record("Provenance", &req);
        if !self.provenance {
            return Err(tonic::Status::unimplemented(""));
        }
        let root = req.into_inner().r#ref;
        let mut entities = vec![v1::ProvEntity {
            id: root.clone(),
            kind: "copy".into(),
            resolved: true,
            ..Default::default()
        }];
        let mut edges = Vec::new();
        if let Some(s) = &self.source {
            entities.push(v1::ProvEntity {
                id: s.clone(),
                unresolved_reason: "not asked".into(),
                ..Default::default()
            });
            edges.push(v1::ProvEdge {
                kind: "copied_from".into(),
                from: root.clone(),
                to: s.clone(),
            });
        }
        Ok(tonic::Response::new(v1::ProvenanceGraph {
            root,
            entities,
            edges,
            ..Default::default()
        }))
    }
    async fn mirror_status(
        &self,
        req: tonic::Request<v1::MirrorStatusRequest>,
    ) -> Result<tonic::Response<v1::MirrorStatusResponse>, tonic::Status> {
        self.record("MirrorStatus", &req);
        Err(tonic::Status::unimplemented(""))
    }
    async fn issue_credential(
        &self,
        req: tonic::Request<v1::IssueCredentialRequest>,
    ) -> Result<tonic::Response<v1::IssueCredentialResponse>, tonic::Status> {
        self.record("IssueCredential", &req);
        Err(tonic::Status::unimplemented(""))
    }
    async fn list_credentials(
        &self,
        req: tonic::Request<v1::ListCredentialsRequest>,
    ) -> Result<tonic::Response<v1::ListCredentialsResponse>, tonic::Status> {
        self.record("ListCredentials", &req);
        Err(tonic::Status::unimplemented(""))
    }
    async fn revoke_credential(
        &self,
        req: tonic::Request<v1::RevokeCredentialRequest>,
    ) -> Result<tonic::Response<v1::RevokeCredentialResponse>, tonic::Status> {
        self.record("RevokeCredential", &req);
        Err(tonic::Status::unimplemented(""))
    }

    async fn get_schema(
        &self,
        req: tonic::Request<v1::GetSchemaRequest>,
    ) -> Result<tonic::Response<v1::SchemaInfo>, tonic::Status> {
        self.record("GetSchema", &req);
        Err(tonic::Status::unimplemented(""))
    }
}

/// A gateway named `name` with no peers, provenance or source, answering `flood` (if any)
/// with millions of empty elements.
fn hostile(name: &str, flood: Option<Flood>) -> Hostile {
    Hostile {
        name: name.into(),
        peers: Vec::new(),
        source: None,
        seen: Seen::default(),
        provenance: false,
        flood,
    }
}

/// Serves `gateway` on a free 127.0.0.1 port until the test ends.
async fn serve(gateway: Hostile) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(alert_mesh_server::AlertMeshServer::new(gateway))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(addr)
}

/// An unsigned JWT-shaped token with the given claims (the hostile gateways never verify).
fn token_with(claims: serde_json::Value) -> String {
    alertmesh_tests::auth::unsigned(&claims, "kid-1")
}

#[tokio::test]
async fn provenance_and_directory_never_send_the_token_to_an_address_a_gateway_supplied(
) -> Result<()> {
    // `lab` is a listener the test controls; `hostile` (the gateway the user names on the
    // command line) claims that a peer called "lab" lives there.
    let lab_seen = Seen::default();
    let lab = serve(Hostile {
        name: "lab".into(),
        peers: Vec::new(),
        source: None,
        seen: lab_seen.clone(),
        provenance: true,
        flood: None,
    })
    .await?;
    // A peer claiming the configured gateway's own name must not take its place.
    let impostor_seen = Seen::default();
    let impostor = serve(Hostile {
        name: "hostile".into(),
        peers: Vec::new(),
        source: None,
        seen: impostor_seen.clone(),
        provenance: true,
        flood: None,
    })
    .await?;
    let home_seen = Seen::default();
    let home = serve(Hostile {
        name: "hostile".into(),
        peers: vec![
            v1::Peer {
                name: "lab".into(),
                url: format!("http://{lab}"),
                relation: "mirror-source".into(),
            },
            v1::Peer {
                name: "hostile".into(),
                url: format!("http://{impostor}"),
                relation: "mirror-source".into(),
            },
        ],
        source: Some("am://lab/ztf.alerts/0/5".into()),
        seen: home_seen.clone(),
        provenance: true,
        flood: None,
    })
    .await?;
    let dir = tempfile::tempdir()?;
    // (case, token, whether the configured gateway gets it, whether the user configured
    // the lab with --peer, which makes it a gateway the token may go to).
    let cases = [
        // Issued for the lab: the one case the old walk sent it to the address "hostile" gave.
        (
            "aud lab",
            token_with(serde_json::json!({"aud": "lab", "sub": "alice"})),
            false,
            false,
        ),
        // Issued for the configured gateway: it goes there, and nowhere else.
        (
            "aud hostile",
            token_with(serde_json::json!({"aud": ["hostile"]})),
            true,
            false,
        ),
        // No readable aud: only the URL given on the command line gets it.
        ("opaque", "opaque-token-value".to_owned(), true, false),
        // The user configured the lab: a token for the lab goes there.
        (
            "aud lab, lab configured",
            token_with(serde_json::json!({"aud": "lab"})),
            false,
            true,
        ),
    ];
    for (what, token, home_gets_it, lab_configured) in &cases {
        for seen in [&lab_seen, &home_seen, &impostor_seen] {
            seen.lock().expect("lock").clear();
        }
        let file = dir.path().join("t.jwt");
        std::fs::write(&file, token)?;
        let home_url = format!("http://{home}");
        let file = file.to_str().context("utf-8 path")?;
        let lab_peer = format!("lab=http://{lab}");
        let mut args = vec![
            "provenance",
            "am://hostile/ztf.alerts/0/1",
            "--gateway",
            &home_url,
            "--token",
            file,
        ];
        if *lab_configured {
            args.extend(["--peer", &lab_peer]);
        }
        let out = run_cli(&args).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text.contains("copied from: am://lab/ztf.alerts/0/5"),
            "{what}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // TLS files apply to https:// gateways only: unused (and unread) here.
        let out = run_cli(&[
            "directory",
            "--json",
            "--gateway",
            &home_url,
            "--token",
            file,
            "--ca",
            "/nonexistent/ca.pem",
        ])
        .await?;
        ensure!(json_lines(&out)?.len() == 3, "{what}: directory");
        let impostor_calls = impostor_seen.lock().expect("lock").clone();
        ensure!(
            impostor_calls
                .iter()
                .all(|(rpc, auth)| *rpc != "Provenance" && !auth),
            "{what}: a peer took the configured gateway's name: {impostor_calls:?}"
        );

        // The walk is the gateway's: the command asks only the gateway it was given.
        let lab_calls = lab_seen.lock().expect("lock").clone();
        ensure!(
            lab_calls.iter().all(|(_, auth)| !auth),
            "{what}: the lab got the token: {lab_calls:?}"
        );
        let home_calls = home_seen.lock().expect("lock").clone();
        let home_auth = home_calls
            .iter()
            .any(|(rpc, auth)| *rpc == "Provenance" && *auth);
        ensure!(
            home_calls.iter().any(|(rpc, _)| *rpc == "Provenance") && home_auth == *home_gets_it,
            "{what}: configured gateway's calls {home_calls:?}"
        );
        ensure!(
            home_calls
                .iter()
                .all(|(rpc, auth)| *rpc == "Provenance" || !auth),
            "{what}: DescribeGateway is open and gets no token: {home_calls:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_provenance_walk_reads_a_peer_without_provenance_with_fetch() -> Result<()> {
    // A mirror source from before the Provenance RPC: the walk falls back to Fetch there.
    let seen = Seen::default();
    let old = serve(Hostile {
        name: "old".into(),
        peers: Vec::new(),
        source: Some("kafka://k:9092/ztf.raw/0/5".into()),
        seen: seen.clone(),
        provenance: false,
        flood: None,
    })
    .await?;
    let broker = Broker::start("home").await?;
    broker.create_topic("derived", 1).await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"from-old\"\n[mirrors.source]\ngateway = \"http://{old}\"\ntopic = \"ztf.alerts\"\n"
    );
    let home = alertmesh_tests::Gateway::start(
        &alertmesh_tests::GatewaySpec::new("home", &broker.bootstrap())
            .topic("derived", "ZTF", "json")
            .extra(&mirror),
    )
    .await?;
    let input = "am://old/ztf.alerts/0/7";
    broker
        .produce(
            "derived",
            &alertmesh_tests::Record {
                partition: 0,
                key: Some("ZTF:ZTF18aabcdef".into()),
                payload: bytes::Bytes::from_static(b"{}"),
                headers: vec![("am-derived-from".into(), Some(input.into()))],
                timestamp_ms: now_ms(),
            },
        )
        .await?;
    let g = home
        .client()
        .await?
        .provenance(v1::ProvenanceRequest {
            r#ref: "am://home/derived/0/0".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let e = g
        .entities
        .iter()
        .find(|e| e.id == input)
        .with_context(|| format!("{g:?}"))?;
    ensure!(
        e.resolved && e.resolved_by == "old" && e.kind == "copy",
        "{e:?}"
    );
    ensure!(
        g.edges
            .iter()
            .any(|e| e.kind == "copied_from" && e.from == input && e.to.starts_with("kafka://")),
        "{g:?}"
    );
    let calls = seen.lock().expect("lock").clone();
    ensure!(
        calls.iter().any(|(rpc, _)| *rpc == "Provenance")
            && calls.iter().any(|(rpc, _)| *rpc == "Fetch"),
        "{calls:?}"
    );
    Ok(())
}

/// A hostile gateway's answers of millions of empty elements (two bytes each on the wire,
/// hundreds in memory) are refused before they are decoded, with the reason: the client
/// gets RESOURCE_EXHAUSTED for a subscription and a listing.
#[tokio::test]
async fn floods_of_empty_elements_are_refused_before_decoding() -> Result<()> {
    for flood in [Flood::Subscribe, Flood::ListTopics] {
        let addr = serve(hostile("hostile", Some(flood))).await?;
        let gateway = Gateway::new(&format!("http://{addr}"), &Options::default())?;
        let mut client = gateway.connect().await?;
        let status = match flood {
            Flood::Subscribe => {
                let mut stream = client.subscribe_once(request("ztf")).await?;
                match stream.message().await {
                    Err(s) => s,
                    Ok(b) => bail!("a flood was decoded: {:?} alerts", b.map(|b| b.len())),
                }
            }
            Flood::ListTopics => match client.list_topics().await {
                Err(alertmesh_client::Error::Status(s)) => s,
                other => bail!("a flood was decoded: {:?}", other.map(|t| t.len())),
            },
        };
        ensure!(
            status.code() == Code::ResourceExhausted && status.message().contains("256 MiB"),
            "{flood:?}: {status:?}"
        );
    }
    Ok(())
}

/// A gateway mirroring a hostile peer's topic: the peer's flood is refused, the mirror
/// reports why and copies nothing, and the gateway's memory stays far below what the
/// flood would take decoded.
#[tokio::test]
async fn a_mirror_refuses_a_peers_flood_and_says_why() -> Result<()> {
    let addr = serve(hostile("hostile", Some(Flood::Subscribe))).await?;
    let broker = Broker::start("flooded").await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"from-hostile\"\ndestination = \"copies\"\nstart = \"earliest\"\n\
         [mirrors.source]\ngateway = \"http://{addr}\"\ntopic = \"ztf\"\n"
    );
    let spec = alertmesh_tests::GatewaySpec::new("flooded", &broker.bootstrap()).extra(&mirror);
    let gateway = alertmesh_tests::Gateway::start(&spec).await?;
    let pid = gateway.pid().context("gateway pid")?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut peak = 0;
    loop {
        peak = peak.max(alertmesh_tests::process::rss_bytes(pid)?);
        let m = gateway.mirror_status().await?;
        let m = m.first().context("no mirror")?;
        if m.error.contains("256 MiB") {
            ensure!(m.copied == 0, "{m:?}");
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the flood was not refused: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Decoded, the flood's 8 million alerts take ~2.5 GB.
    ensure!(peak < 1 << 30, "the gateway grew to {} MiB", peak >> 20);
    Ok(())
}

/// A peer names itself so that a mirror's default destination (`<peer>.<topic>`) is a
/// topic clients publish into: the mirror refuses to write there and says why, instead
/// of mixing the peer's records into the derived results.
#[tokio::test]
async fn a_peer_cannot_name_itself_into_a_topic_another_writer_has() -> Result<()> {
    let addr = serve(hostile("classes", None)).await?;
    let broker = Broker::start("claimed").await?;
    let toml = format!(
        "[[topics]]\nname = \"classes.ztf\"\nnamespace = \"ZTF\"\nformat = \"json\"\npublish = true\n\n\
         [[mirrors]]\nname = \"from-peer\"\nstart = \"earliest\"\n\
         [mirrors.source]\ngateway = \"http://{addr}\"\ntopic = \"ztf\"\n"
    );
    let spec = alertmesh_tests::GatewaySpec::new("claimed", &broker.bootstrap()).extra(&toml);
    let gateway = alertmesh_tests::Gateway::start(&spec).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = gateway.mirror_status().await?;
        let m = m.first().context("no mirror")?;
        if m.state == "failed" {
            ensure!(
                m.error.contains("\"classes.ztf\"")
                    && m.error.contains("clients publishing")
                    && m.error.contains("set destination"),
                "{m:?}"
            );
            ensure!(m.copied == 0, "{m:?}");
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the mirror did not refuse: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
