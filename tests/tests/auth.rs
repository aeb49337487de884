//! Authentication end to end: real gateways over real TLS, tokens from the `creds` CLI and
//! hand-made ones, mutual TLS, the admin API, revocation of open streams, key rotation.

use std::time::{Duration, Instant};

use alertmesh_proto::v1::{
    revoke_credential_request::Target, FetchRequest, IssueCredentialRequest,
    ListCredentialsRequest, ListTopicsRequest, RevokeCredentialRequest,
};
use alertmesh_tests::auth::{self, jti_of, Pki, Secure, SecureSpec};
use alertmesh_tests::cli::json_lines;
use alertmesh_tests::client::{collect, earliest, end_status, latest, request, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Broker, ZTF_TOPIC};
use anyhow::{ensure, Context, Result};
use tonic::Code;

const PUBLIC_TOPIC: &str = "lasair.public";

/// A broker with the 45 ZTF alerts in `ztf.alerts` (private) and `lasair.public` (public),
/// and a gateway `lasair` requiring tokens and client certificates.
async fn lasair(pki: &Pki) -> Result<(Broker, Secure)> {
    let broker = Broker::start("lasair").await?;
    let records = ztf_records(2, now_ms() - 3_600_000, 1000)?;
    for topic in [ZTF_TOPIC, PUBLIC_TOPIC] {
        broker.create_topic(topic, 2).await?;
        broker.produce_all(topic, &records).await?;
    }
    let spec = SecureSpec::new("lasair", &broker.bootstrap())
        .topic(ZTF_TOPIC, false)
        .topic(PUBLIC_TOPIC, true);
    let gw = Secure::start(pki, spec).await?;
    Ok((broker, gw))
}

/// Subscribes to everything stored in `topic`; the status of a refused call.
async fn read_all(client: &mut auth::Client, topic: &str) -> Result<usize, tonic::Status> {
    let mut req = request(topic);
    req.start = earliest();
    req.end = until_now();
    let stream = client.subscribe(req).await?.into_inner();
    let got = collect(stream, Duration::from_secs(20)).await;
    match got.end {
        Some(Err(s)) => Err(s),
        Some(Ok(())) => Ok(got.alerts.len()),
        None => Err(tonic::Status::deadline_exceeded("the stream did not end")),
    }
}

fn expect_refused(
    what: &str,
    result: Result<usize, tonic::Status>,
    code: Code,
    needle: &str,
    token: &str,
) -> Result<()> {
    let status = match result {
        Ok(n) => anyhow::bail!("{what}: accepted ({n} alerts), want {code:?}"),
        Err(s) => s,
    };
    ensure!(
        status.code() == code,
        "{what}: got {:?} {:?}, want {code:?}",
        status.code(),
        status.message()
    );
    ensure!(
        status.message().contains(needle),
        "{what}: message {:?} does not say {needle:?}",
        status.message()
    );
    let sig = token.rsplit('.').next().unwrap_or_default();
    ensure!(
        token.len() < 8
            || (!status.message().contains(token)
                && (sig.len() < 8 || !status.message().contains(sig))),
        "{what}: message leaks the token: {:?}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_right_code_and_a_helpful_message() -> Result<()> {
    let pki = Pki::new()?;
    let (_broker, gw) = lasair(&pki).await?;
    let alice = pki.client("alice")?;
    let keyring = gw.keyring()?;
    let key = keyring.current();
    let kid = key.kid().to_owned();
    let good = auth::claims("lasair", "alice", "subscribe:ztf.*");
    let signed = |claims: &serde_json::Value| auth::sign(key, &auth::header(key), claims);
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut c = good.clone();
        f(c.as_object_mut().expect("object"));
        c
    };
    let now = auth::now();
    let valid = signed(&good)?;
    let public_key = keyring.jwks().to_json();

    let revoked = gw.issue("alice", &["subscribe:ztf.*"], "1h").await?;
    let jti = jti_of(&revoked)?;
    let out = gw.creds(&["revoke", &jti]).await?;
    ensure!(
        out.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases: Vec<(&str, Option<String>, Code, &str)> = vec![
        ("no token", None, Code::Unauthenticated, "no token"),
        (
            "garbage",
            Some("garbage".into()),
            Code::Unauthenticated,
            "malformed",
        ),
        (
            "alg none",
            Some(auth::unsigned(&good, &kid)),
            Code::Unauthenticated,
            "unsigned",
        ),
        (
            "hs256 with the public key",
            Some(auth::hs256(public_key.as_bytes(), &good, &kid)),
            Code::Unauthenticated,
            "HS256",
        ),
        (
            "expired",
            Some(signed(&edit(&|c| {
                c.insert("iat".into(), (now - 7200).into());
                c.insert("exp".into(), (now - 3600).into());
            }))?),
            Code::Unauthenticated,
            "expired",
        ),
        (
            "nbf in the future",
            Some(signed(&edit(&|c| {
                c.insert("nbf".into(), (now + 600).into());
            }))?),
            Code::Unauthenticated,
            "not valid before",
        ),
        (
            "wrong aud",
            Some(signed(&edit(&|c| {
                c.insert("aud".into(), "fink".into());
            }))?),
            Code::Unauthenticated,
            "not for this gateway",
        ),
        (
            "wrong iss",
            Some(signed(&edit(&|c| {
                c.insert("iss".into(), "mallory".into());
            }))?),
            Code::Unauthenticated,
            "not trusted",
        ),
        (
            "unknown kid",
            Some(auth::sign(
                key,
                &serde_json::json!({"alg": key.algorithm().jose_name(), "typ": "JWT", "kid": "nope"}),
                &good,
            )?),
            Code::Unauthenticated,
            "has no key",
        ),
        (
            "tampered payload",
            Some(auth::with_payload(
                &valid,
                &edit(&|c| {
                    c.insert("scope".into(), "admin subscribe:*".into());
                }),
            )),
            Code::Unauthenticated,
            "signature does not verify",
        ),
        (
            "tampered signature",
            Some(auth::with_bad_signature(&valid)),
            Code::Unauthenticated,
            "signature does not verify",
        ),
        (
            "missing exp",
            Some(signed(&edit(&|c| {
                c.remove("exp");
            }))?),
            Code::Unauthenticated,
            "no exp claim",
        ),
        (
            "missing aud",
            Some(signed(&edit(&|c| {
                c.remove("aud");
            }))?),
            Code::Unauthenticated,
            "no aud claim",
        ),
        (
            "revoked",
            Some(revoked.clone()),
            Code::Unauthenticated,
            "revoked",
        ),
        (
            "scope not covering the topic",
            Some(signed(&edit(&|c| {
                c.insert("scope".into(), "subscribe:lsst.* fetch:ztf.*".into());
            }))?),
            Code::PermissionDenied,
            "needs the scope subscribe:ztf.alerts",
        ),
    ];
    let before = gw.metrics(&alice).await?;
    for (what, token, code, needle) in &cases {
        let mut client = gw.client(Some(&alice), token.as_deref()).await?;
        let result = read_all(&mut client, ZTF_TOPIC).await;
        expect_refused(what, result, *code, needle, token.as_deref().unwrap_or(""))?;
    }
    // The same valid token does get in.
    let mut client = gw.client(Some(&alice), Some(&valid)).await?;
    ensure!(read_all(&mut client, ZTF_TOPIC).await? == 45);

    // Every refusal is counted once, under its reason.
    let after = gw.metrics(&alice).await?;
    let refused = |reason| {
        let labels = [("reason", reason)];
        after.value("alertmesh_auth_refused_total", &labels)
            - before.value("alertmesh_auth_refused_total", &labels)
    };
    for (reason, want) in [
        ("token_missing", 1.0),
        ("token_invalid", 10.0),
        ("token_time", 2.0),
        ("token_revoked", 1.0),
        ("scope", 1.0),
        ("client_certificate", 0.0),
        ("peer_identity", 0.0),
    ] {
        ensure!(
            refused(reason) == want,
            "alertmesh_auth_refused_total{{reason={reason:?}}} rose by {}, want {want}",
            refused(reason)
        );
    }
    Ok(())
}

#[tokio::test]
async fn scoped_token_subscribes_and_public_topics_need_no_token() -> Result<()> {
    let pki = Pki::new()?;
    let (_broker, gw) = lasair(&pki).await?;
    let alice = pki.client("alice")?;
    let token = gw
        .issue("alice", &["subscribe:ztf.*", "fetch:ztf.*"], "1h")
        .await?;
    let mut client = gw.client(Some(&alice), Some(&token)).await?;
    ensure!(read_all(&mut client, ZTF_TOPIC).await? == 45);
    let alert = client
        .fetch(FetchRequest {
            r#ref: format!("am://lasair/{ZTF_TOPIC}/0/0"),
        })
        .await?
        .into_inner();
    ensure!(alert.offset == 0);
    // Listings show what a token grants: its topics and the public ones, not every
    // private topic (with its schemas) to any token's holder.
    let listed = |topics: Vec<alertmesh_proto::v1::TopicInfo>| {
        let mut names: Vec<String> = topics.into_iter().map(|t| t.name).collect();
        names.sort();
        names
    };
    let names = listed(
        client
            .list_topics(ListTopicsRequest {})
            .await?
            .into_inner()
            .topics,
    );
    ensure!(names == [PUBLIC_TOPIC, ZTF_TOPIC], "{names:?}");
    let elsewhere = gw.issue("carol", &["subscribe:lsst.*"], "1h").await?;
    let carol = pki.client("carol")?;
    let mut other = gw.client(Some(&carol), Some(&elsewhere)).await?;
    let names = listed(
        other
            .list_topics(ListTopicsRequest {})
            .await?
            .into_inner()
            .topics,
    );
    ensure!(
        names == [PUBLIC_TOPIC],
        "a token for other topics: {names:?}"
    );
    let described = other
        .describe_gateway(alertmesh_proto::v1::DescribeGatewayRequest {})
        .await?
        .into_inner();
    ensure!(
        listed(described.topics) == [PUBLIC_TOPIC],
        "described to a token for other topics"
    );
    // The CLI with --token, --ca, --cert and --key over https.
    let token_file = gw.keys_dir.with_file_name("alice.jwt");
    std::fs::write(&token_file, &token)?;
    let url = gw.url();
    let (ca, crt, key) = (
        gw.ca.display().to_string(),
        alice.cert.display().to_string(),
        alice.key.display().to_string(),
    );
    let tf = token_file.display().to_string();
    let out = alertmesh_tests::cli::run_cli(&[
        "subscribe",
        "--gateway",
        &url,
        "--topic",
        ZTF_TOPIC,
        "--from",
        "earliest",
        "--until",
        "now",
        "--format",
        "native",
        "--token",
        &tf,
        "--ca",
        &ca,
        "--cert",
        &crt,
        "--key",
        &key,
    ])
    .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(String::from_utf8(out.stdout)?.lines().count() == 45);
    let out = alertmesh_tests::cli::run_cli(&[
        "topics",
        "--gateway",
        &url,
        "--json",
        "--ca",
        &ca,
        "--cert",
        &crt,
        "--key",
        &key,
    ])
    .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    ensure!(
        text.lines().count() == 1 && text.contains(PUBLIC_TOPIC),
        "{text}"
    );
    // Not an admin.
    let err = client
        .list_credentials(ListCredentialsRequest::default())
        .await
        .unwrap_err();
    ensure!(err.code() == Code::PermissionDenied, "{err:?}");

    // Without a token: the public topic only.
    let mut anon = gw.client(Some(&alice), None).await?;
    ensure!(read_all(&mut anon, PUBLIC_TOPIC).await? == 45);
    let topics = anon
        .list_topics(ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    ensure!(names == [PUBLIC_TOPIC], "{names:?}");
    let refused = read_all(&mut anon, ZTF_TOPIC).await;
    expect_refused(
        "anonymous on a private topic",
        refused,
        Code::Unauthenticated,
        "not public",
        "",
    )?;

    // Describe advertises jwt and mtls; the JWKS is served over https.
    let d = anon
        .describe_gateway(alertmesh_proto::v1::DescribeGatewayRequest {})
        .await?
        .into_inner();
    let kinds: Vec<&str> = d.auth.iter().map(|a| a.kind.as_str()).collect();
    ensure!(kinds == ["jwt", "mtls"], "{kinds:?}");
    ensure!(
        d.auth[0].params["jwks_url"] == gw.jwks_url(),
        "{:?}",
        d.auth[0].params
    );
    Ok(())
}

/// A token `fink` issues to itself for lasair (a peer token), with `scope`, for an hour.
async fn fink_token_for_lasair(fink: &Secure, scope: &str) -> Result<String> {
    let out = fink
        .creds(&[
            "issue", "--sub", "fink", "--scope", scope, "--ttl", "1h", "--aud", "lasair",
        ])
        .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::test]
async fn mutual_tls_needs_a_mesh_certificate_and_peer_tokens_need_the_peers_certificate(
) -> Result<()> {
    let pki = Pki::new()?;
    let broker = Broker::start("mesh").await?;
    broker.create_topic(ZTF_TOPIC, 1).await?;
    broker
        .produce_all(ZTF_TOPIC, &ztf_records(1, now_ms() - 3_600_000, 1000)?)
        .await?;
    let fink = Secure::start(&pki, SecureSpec::new("fink", &broker.bootstrap())).await?;
    let lasair = Secure::start(
        &pki,
        SecureSpec::new("lasair", &broker.bootstrap())
            .topic(ZTF_TOPIC, false)
            .trust("fink", &fink.jwks_url())
            .extra(
                "[[topics]]\nname = \"lasair.classes\"\nnamespace = \"ZTF\"\nformat = \"json\"\npublish = true\n",
            ),
    )
    .await?;
    let token = lasair.issue("alice", &["subscribe:ztf.*"], "1h").await?;

    // No client certificate: a clear UNAUTHENTICATED.
    let mut client = lasair.client(None, Some(&token)).await?;
    let result = read_all(&mut client, ZTF_TOPIC).await;
    expect_refused(
        "no client certificate",
        result,
        Code::Unauthenticated,
        "client certificate",
        &token,
    )?;

    // A certificate from another CA: refused in the TLS handshake.
    let other = Pki::new()?;
    let stranger = other.client("alice")?;
    let refused = match lasair.client(Some(&stranger), Some(&token)).await {
        Err(_) => true,
        Ok(mut c) => read_all(&mut c, ZTF_TOPIC).await.is_err(),
    };
    ensure!(refused, "a certificate from another ca was accepted");

    // A peer token (issued by fink for lasair) must come with fink's certificate.
    let peer_token = fink_token_for_lasair(&fink, "subscribe:ztf.*").await?;
    let mallory = pki.client("mallory")?;
    let mut client = lasair.client(Some(&mallory), Some(&peer_token)).await?;
    let result = read_all(&mut client, ZTF_TOPIC).await;
    expect_refused(
        "peer certificate identity != sub",
        result,
        Code::Unauthenticated,
        "certificate is for \"mallory\"",
        &peer_token,
    )?;
    let fink_cert = pki.client("fink")?;
    let mut client = lasair.client(Some(&fink_cert), Some(&peer_token)).await?;
    ensure!(read_all(&mut client, ZTF_TOPIC).await? == 45);

    // A peer vouches for reads, not for who administers lasair: a token fink issues with
    // the admin scope, with fink's own certificate, is refused by lasair's admin calls.
    let peer_admin = fink_token_for_lasair(&fink, "admin").await?;
    let mut client = lasair.client(Some(&fink_cert), Some(&peer_admin)).await?;
    let refused = client
        .issue_credential(IssueCredentialRequest {
            subject: "eve".into(),
            scopes: vec!["admin".into()],
            ttl_seconds: 600,
            audience: String::new(),
        })
        .await
        .unwrap_err();
    ensure!(refused.code() == Code::PermissionDenied, "{refused:?}");
    ensure!(
        refused.message().contains("issued by this gateway"),
        "{refused:?}"
    );

    // Both refusals by identity are counted under their reasons.
    let metrics = lasair.metrics(&fink_cert).await?;
    for reason in ["client_certificate", "peer_identity", "scope"] {
        let n = metrics.value("alertmesh_auth_refused_total", &[("reason", reason)]);
        ensure!(n == 1.0, "{reason}: {n} refusals counted, want 1");
    }

    // Nor for what is written here: a peer token with a publish scope, with fink's own
    // certificate, publishes nothing.
    let peer_publish = fink_token_for_lasair(&fink, "publish:lasair.classes").await?;
    let mut client = lasair.client(Some(&fink_cert), Some(&peer_publish)).await?;
    let refused = client
        .publish(alertmesh_proto::v1::PublishRequest {
            topic: "lasair.classes".into(),
            records: vec![alertmesh_proto::v1::PublishRecord {
                key: "ZTF:ZTF18aaaaaaa".into(),
                payload: br#"{"class":"SN"}"#.to_vec().into(),
                derived_from: vec![format!("am://lasair/{ZTF_TOPIC}/0/0")],
                publish_id: "fink-1".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    ensure!(
        refused.code() == Code::PermissionDenied && refused.message().contains("grants reads only"),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn admin_issues_over_the_api_and_revocation_closes_an_open_stream() -> Result<()> {
    let pki = Pki::new()?;
    let (_broker, gw) = lasair(&pki).await?;
    let cert = pki.client("ops")?;
    let admin_token = gw.issue("ops", &["admin"], "1h").await?;
    let mut admin = gw.client(Some(&cert), Some(&admin_token)).await?;
    let issued = admin
        .issue_credential(IssueCredentialRequest {
            subject: "bob".into(),
            scopes: vec!["subscribe:ztf.*".into()],
            ttl_seconds: 600,
            audience: String::new(),
        })
        .await?
        .into_inner();
    let cred = issued.credential.context("credential")?;
    ensure!(cred.subject == "bob" && !cred.revoked);

    // bob opens a live stream.
    let bob_cert = pki.client("bob")?;
    let mut bob = gw.client(Some(&bob_cert), Some(&issued.token)).await?;
    let mut req = request(ZTF_TOPIC);
    req.start = latest();
    let mut stream = bob.subscribe(req).await?.into_inner();

    admin
        .revoke_credential(RevokeCredentialRequest {
            target: Some(Target::Jti(cred.jti.clone())),
        })
        .await?;
    let revoked_at = Instant::now();
    let status = end_status(&mut stream, Duration::from_secs(10)).await?;
    let took = revoked_at.elapsed();
    ensure!(status.code() == Code::Unauthenticated, "{status:?}");
    ensure!(status.message().contains("revoked"), "{status:?}");
    ensure!(took < Duration::from_secs(5), "took {took:?}");

    let listed = admin
        .list_credentials(ListCredentialsRequest {
            subject: "bob".into(),
        })
        .await?
        .into_inner()
        .credentials;
    ensure!(listed.len() == 1 && listed[0].revoked, "{listed:?}");
    // New calls with the revoked token are refused too.
    let mut bob = gw.client(Some(&bob_cert), Some(&issued.token)).await?;
    let result = read_all(&mut bob, ZTF_TOPIC).await;
    expect_refused(
        "revoked over the api",
        result,
        Code::Unauthenticated,
        "revoked",
        &issued.token,
    )?;
    Ok(())
}

#[tokio::test]
async fn creds_cli_round_trip_and_rotation_keeps_old_tokens_valid() -> Result<()> {
    let pki = Pki::new()?;
    let (_broker, gw) = lasair(&pki).await?;
    let cert = pki.client("carol")?;
    let old = gw.issue("carol", &["subscribe:ztf.*"], "1h").await?;

    let out = gw.creds(&["rotate"]).await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = gw.issue("carol", &["subscribe:ztf.*"], "1h").await?;
    ensure!(auth_kid(&old)? != auth_kid(&new)?, "rotate kept the kid");
    // Tokens of the retired key are still valid, so prune keeps it.
    let out = gw.creds(&["prune"]).await?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success()
            && said.contains("deleted 0 retired key(s)")
            && said.contains("2 key(s) remain"),
        "prune: {said}"
    );
    for (what, token) in [("old key", &old), ("new key", &new)] {
        let mut client = gw.client(Some(&cert), Some(token)).await?;
        let n = read_all(&mut client, ZTF_TOPIC)
            .await
            .map_err(|s| anyhow::anyhow!("{what}: {s:?}"))?;
        ensure!(n == 45, "{what}: {n}");
    }

    // list shows both, revoke --sub revokes both.
    let lines = json_lines(&gw.creds(&["list", "--sub", "carol", "--json"]).await?)?;
    ensure!(lines.len() == 2, "{lines:?}");
    ensure!(lines.iter().all(|l| l["revoked"] == false));
    let out = gw.creds(&["revoke", "--sub", "carol"]).await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.creds(&["list", "--sub", "carol", "--json"]).await?;
    let text = String::from_utf8(out.stdout)?;
    ensure!(
        text.lines().count() == 2 && !text.contains("\"revoked\":false"),
        "{text}"
    );
    // The gateway follows the topic: the revocation reaches it within a second or two.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = gw.client(Some(&cert), Some(&new)).await?;
        match read_all(&mut client, ZTF_TOPIC).await {
            Err(s) if s.code() == Code::Unauthenticated => break,
            other if Instant::now() > deadline => anyhow::bail!("still accepted: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    // Secrets stay out of the CLI's stderr.
    ensure!(!String::from_utf8_lossy(&out.stderr).contains("PRIVATE KEY"));
    Ok(())
}

fn auth_kid(token: &str) -> Result<String> {
    use base64::Engine as _;
    let header = token.split('.').next().context("a jws")?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header)?;
    let v: serde_json::Value = serde_json::from_slice(&json)?;
    Ok(v["kid"].as_str().context("kid")?.to_owned())
}

/// The cipher suite both TLS ports negotiate with a client offering `suites` (rustls's
/// aws-lc-rs defaults when `None`).
async fn negotiated(
    addr: &str,
    ca: &std::path::Path,
    alpn: &[u8],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> Result<rustls::CipherSuite> {
    use std::sync::Arc;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites = s;
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in alertmesh_auth::tls::load_certs(ca)? {
        roots.add(c)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.get_ref()
        .1
        .negotiated_cipher_suite()
        .map(|s| s.suite())
        .context("no cipher suite after the handshake")
}

#[tokio::test]
async fn both_tls_ports_choose_aes_128_gcm_and_still_serve_clients_that_offer_only_others(
) -> Result<()> {
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    use rustls::CipherSuite;
    // rustls clients offer AES-256-GCM first: the server's choice is what this checks.
    let default = rustls::crypto::aws_lc_rs::default_provider();
    ensure!(default.cipher_suites[0].suite() == CipherSuite::TLS13_AES_256_GCM_SHA384);
    let pki = Pki::new()?;
    let broker = Broker::start("suites").await?;
    let gw = Secure::start(&pki, SecureSpec::new("lasair", &broker.bootstrap())).await?;
    for (addr, alpn) in [
        (gw.gateway.grpc_addr(), &b"h2"[..]),
        (gw.gateway.http_addr(), &b"http/1.1"[..]),
    ] {
        for (offer, want) in [
            (None, CipherSuite::TLS13_AES_128_GCM_SHA256),
            (
                Some(vec![TLS13_AES_256_GCM_SHA384]),
                CipherSuite::TLS13_AES_256_GCM_SHA384,
            ),
            (
                Some(vec![TLS13_CHACHA20_POLY1305_SHA256]),
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ),
        ] {
            let got = negotiated(&addr, &pki.ca(), alpn, offer).await?;
            ensure!(got == want, "{addr}: {got:?}, want {want:?}");
        }
    }
    // And gRPC works over the connection the gateway chose (the client's defaults), with
    // the client certificate reaching the auth layer.
    let mut client = gw.client(Some(&pki.client("alice")?), None).await?;
    client.list_topics(ListTopicsRequest::default()).await?;
    Ok(())
}

#[tokio::test]
async fn the_grpc_tls_port_drops_bad_handshakes_and_a_silent_one_blocks_nobody() -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pki = Pki::new()?;
    let broker = Broker::start("handshakes").await?;
    let gw = Secure::start(&pki, SecureSpec::new("lasair", &broker.bootstrap())).await?;
    let addr = gw.gateway.grpc_addr();
    // A connection that never says anything holds no one up: handshakes run on their own.
    let _silent = tokio::net::TcpStream::connect(&addr).await?;
    // Plaintext HTTP/2 (and junk) on the TLS port: the connection is closed, not served.
    for junk in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &b"\x16\x03\x01\x00\x05hello"[..],
    ] {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await?;
        tcp.write_all(junk).await?;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        ensure!(closed.is_ok(), "a bad handshake was left open");
        ensure!(
            !got.windows(4).any(|w| w == b"HTTP"),
            "plaintext was answered on the TLS port"
        );
    }
    let mut client = gw.client(Some(&pki.client("alice")?), None).await?;
    let started = Instant::now();
    client.list_topics(ListTopicsRequest::default()).await?;
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "a silent connection held up others"
    );
    Ok(())
}

/// `tls.client_ca` without `[auth]`: certificates are the only credential, so a gRPC
/// client without one is refused (it was served everything: the handshake lets such a
/// client in for the token check that `[auth]` adds, and without `[auth]` nothing
/// checked). With a mesh certificate it reads; health stays open.
#[tokio::test]
async fn client_ca_without_auth_still_requires_a_client_certificate() -> Result<()> {
    let pki = Pki::new()?;
    let broker = Broker::start("certonly").await?;
    broker.create_topic(ZTF_TOPIC, 1).await?;
    broker
        .produce_all(ZTF_TOPIC, &ztf_records(1, now_ms() - 3_600_000, 1000)?)
        .await?;
    let server = pki.client("lasair")?;
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        server.cert.display().to_string(),
        server.key.display().to_string(),
        pki.ca().display().to_string()
    );
    let spec = alertmesh_tests::GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(ZTF_TOPIC, "ZTF", "avro-ocf")
        .extra(&tls)
        .ready(alertmesh_tests::Ready::GrpcPort);
    let gw = alertmesh_tests::Gateway::start(&spec).await?;
    let url = format!("https://{}", gw.grpc_addr());

    let mut anonymous = auth::client(&url, &pki.ca(), None, None).await?;
    let result = read_all(&mut anonymous, ZTF_TOPIC).await;
    expect_refused(
        "no client certificate, no [auth]",
        result,
        Code::Unauthenticated,
        "requires a client certificate signed by its mesh ca",
        "",
    )?;
    let fetched = anonymous
        .fetch(FetchRequest {
            r#ref: format!("am://lasair/{ZTF_TOPIC}/0/0"),
        })
        .await;
    ensure!(
        fetched.as_ref().err().map(tonic::Status::code) == Some(Code::Unauthenticated),
        "Fetch without a certificate: {fetched:?}"
    );

    let member = pki.client("alice")?;
    let mut client = auth::client(&url, &pki.ca(), Some(&member), None).await?;
    let n = read_all(&mut client, ZTF_TOPIC)
        .await
        .map_err(|s| anyhow::anyhow!("with a mesh certificate: {s:?}"))?;
    ensure!(n == 45, "read {n} alerts with a mesh certificate, want 45");
    Ok(())
}

/// The credentials topic is read from partition 0 alone: a topic made by hand with more
/// partitions held revocations the gateway never saw (the key's hash put them on the
/// others), so such a topic is refused at start with what to do, not used.
#[tokio::test]
async fn a_credentials_topic_with_several_partitions_is_refused_at_start() -> Result<()> {
    let pki = Pki::new()?;
    let broker = Broker::start("threeparts").await?;
    broker.create_topic("_alertmesh.credentials", 3).await?;
    let started = Secure::start(&pki, SecureSpec::new("lasair", &broker.bootstrap())).await;
    let err = match started {
        Ok(_) => anyhow::bail!("a gateway started on a credentials topic of 3 partitions"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("credentials topic \"_alertmesh.credentials\" has 3 partitions")
            && err.contains("recreate it with one partition"),
        "{err}"
    );
    Ok(())
}

/// A credentials topic that is not compacted drops revocations with its retention: the
/// gateway says so at start (a topic it creates itself is compacted, and draws no word).
#[tokio::test]
async fn a_credentials_topic_that_is_not_compacted_is_reported_at_start() -> Result<()> {
    let pki = Pki::new()?;
    let broker = Broker::start("uncompacted").await?;
    let own = Secure::start(&pki, SecureSpec::new("fink", &broker.bootstrap())).await?;
    let warning = "the credentials topic is not compacted";
    ensure!(
        !own.gateway.stderr_tail(400).contains(warning),
        "a topic the gateway made: {}",
        own.gateway.stderr_tail(40)
    );
    drop(own);
    let other = Broker::start("uncompacted2").await?;
    other
        .create_topic_with("_alertmesh.credentials", 1, &[("cleanup.policy", "delete")])
        .await?;
    let gw = Secure::start(&pki, SecureSpec::new("lasair", &other.bootstrap())).await?;
    gw.gateway.wait_stderr(warning).await?;
    Ok(())
}
