//! Clients that subscribe and never read, against a real gateway process on a topic of
//! large real alerts: the gateway bounds what it holds for them, stops their Kafka
//! readers, ends them with RESOURCE_EXHAUSTED, and keeps serving a client that reads.

use std::time::{Duration, Instant};

use alertmesh_tests::auth::{Pki, Secure, SecureSpec};
use alertmesh_tests::client::{earliest, request, subscribe_all, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::h2c::grpc_head;
use alertmesh_tests::process::{rss_bytes, threads};
use alertmesh_tests::{Broker, Mesh, WAIT, ZTF_TOPIC};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use prost::Message as _;
use tokio::net::TcpStream;

const SUBSCRIBE: &str = "/alertmesh.v1.AlertMesh/Subscribe";

/// Connections of non-reading clients, and subscriptions on each (the default
/// per-connection limit): 1,000 in all, the default gateway-wide limit.
const CONNECTIONS: usize = 10;
const PER_CONNECTION: usize = 100;
/// Copies of the 45 fixture alerts (~60 KB each) in the topic: 81 MB, far more than
/// all the gateway's buffers.
const COPIES: usize = 30;

/// A grpc-message as sent (percent-encoded), decoded.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Subscribe call from earliest on h2c, as one gRPC request message.
fn subscribe_call(addr: &str) -> (http::Request<()>, Bytes) {
    let head = grpc_head(addr, SUBSCRIBE);
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    let msg = req.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    (head, body.into())
}

/// Reads a response to its end, releasing flow control as it goes: its gRPC status and
/// message, and the bytes of data received.
async fn read_to_status(
    response: http::Response<h2::RecvStream>,
) -> Result<(String, String, usize)> {
    let header = |h: &http::HeaderMap, name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if response.headers().contains_key("grpc-status") {
        let h = response.headers();
        return Ok((header(h, "grpc-status"), header(h, "grpc-message"), 0));
    }
    let mut body = response.into_body();
    let mut bytes = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        bytes += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.context("no trailers")?;
    Ok((
        header(&trailers, "grpc-status"),
        header(&trailers, "grpc-message"),
        bytes,
    ))
}

/// Clients that never read took a gateway from 113 MB to 2.09 GB with 50 of them (their
/// readers kept prefetching, their batches stayed queued) and one connection could take
/// every subscription slot. Now each connection holds at most
/// `limits.max_subscriptions_per_connection`, every Kafka read is charged to
/// `limits.reader_budget_mib` (and waits for its share), a read starts small, a stream
/// left full for `limits.unread_pause_ms` has its reader stopped, and after
/// `limits.unread_drop_ms` it ends with RESOURCE_EXHAUSTED. 1,000 of them, from earliest
/// on a topic of large alerts, keep the gateway under 1 GiB; a client that reads gets
/// every alert meanwhile.
#[tokio::test]
async fn clients_that_never_read_are_bounded_paused_and_ended() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .extra(&format!(
            "[limits]\nmax_subscriptions_per_connection = {PER_CONNECTION}\n\
             max_subscriptions = {}\nunread_pause_ms = 3000\nunread_drop_ms = 45000",
            // One more, for the client that reads.
            CONNECTIONS * PER_CONNECTION + 1
        ))
        .start()
        .await?;
    // Many more copies of the real alerts: a topic of large alerts to catch up on.
    for copy in 1..COPIES {
        let records = ztf_records(3, site.base_ms + copy as i64 * 100_000, 1)?;
        site.broker.produce_all(ZTF_TOPIC, &records).await?;
    }
    let total = COPIES * site.produced.len();
    let pid = site.gateway.pid().context("gateway pid")?;
    let addr = site.gateway.grpc_addr();
    let (before, threads_before) = (rss_bytes(pid)?, threads(pid)?);
    // The highest RSS seen, sampled from here on.
    let highest = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = tokio::spawn({
        let highest = std::sync::Arc::clone(&highest);
        async move {
            while let Ok(rss) = rss_bytes(pid) {
                highest.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // Non-reading clients: a tiny stream window, and nothing ever released. The
    // connection's window holds every stream's, so each can be read at the end.
    let (mut calls, mut opened) = (Vec::new(), Vec::new());
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        let tcp = TcpStream::connect(&addr).await?;
        let (mut send, connection) = h2::client::Builder::new()
            .initial_window_size(1024)
            .initial_connection_window_size(1 << 20)
            .handshake::<_, Bytes>(tcp)
            .await?;
        tokio::spawn(connection);
        for _ in 0..PER_CONNECTION {
            send = send.ready().await?;
            let (head, body) = subscribe_call(&addr);
            let (response, mut stream) = send.send_request(head, false)?;
            stream.send_data(body, true)?;
            calls.push((response, stream));
        }
        // Each answered (admitted) before the next connection's calls.
        for (response, stream) in calls.drain(..) {
            let response = tokio::time::timeout(WAIT * 3, response)
                .await
                .context("a subscription got no answer")??;
            opened.push((response, stream));
        }
        if senders.is_empty() {
            // One subscription more than a connection may hold is refused, naming the
            // limit.
            let mut send = send.clone().ready().await?;
            let (head, body) = subscribe_call(&addr);
            let (response, mut stream) = send.send_request(head, false)?;
            stream.send_data(body, true)?;
            let (code, message, _) =
                tokio::time::timeout(WAIT * 3, async { read_to_status(response.await?).await })
                    .await
                    .context("the extra subscription got no answer")??;
            assert_eq!(code, "8", "RESOURCE_EXHAUSTED expected: {message}");
            assert!(
                percent_decoded(&message).contains("max_subscriptions_per_connection"),
                "{message}"
            );
        }
        senders.push(send);
    }
    let n = opened.len();

    // Memory and reader threads while they catch up, then once their readers are stopped
    // (after limits.unread_pause_ms without a batch taken).
    let mut peak = before;
    let mut timeline = Vec::new();
    let started = Instant::now();
    // Until every subscription is parked and the readers' threads are gone (or long after
    // they should be); then a little longer, for freed memory to be returned.
    let mut settled = 0;
    // The most reads seen waiting for their share of the budget at once.
    let mut waited = 0.0f64;
    while started.elapsed() < Duration::from_secs(90) && settled < 4 {
        let (rss, now) = (rss_bytes(pid)?, threads(pid)?);
        let m = site.gateway.metrics().await?;
        let parked = m.value("alertmesh_parked_subscriptions", &[]);
        let open = m.value("alertmesh_open_subscriptions", &[]);
        waited = waited.max(m.value("alertmesh_kafka_reads_waiting", &[]));
        peak = peak.max(rss);
        timeline.push(format!("{}/{now}/{parked}", rss >> 20));
        if now <= threads_before + 16 && parked == open {
            settled += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (paused, paused_threads) = (rss_bytes(pid)?, threads(pid)?);
    sampler.abort();
    let peak = peak.max(highest.load(std::sync::atomic::Ordering::Relaxed));
    // Every reader stopped by now, so every stream has been full for unread_pause_ms.
    let all_paused = Instant::now();
    let per_sub = |rss: u64| rss.saturating_sub(before) / n as u64;
    eprintln!(
        "gateway RSS MiB / threads / parked every 0.5 s: {timeline:?}\n\
         {n} non-reading subscribers on {total} alerts: gateway RSS {} MiB before, peak {} MiB \
         ({} KiB each), {} MiB once paused ({} KiB each); up to {waited} reads waited for the \
         reader budget at once",
        before >> 20,
        peak >> 20,
        per_sub(peak) >> 10,
        paused >> 20,
        per_sub(paused) >> 10,
    );
    assert!(
        waited > 0.0,
        "no read ever waited for the reader budget: the test does not load it"
    );
    let own = site
        .gateway
        .metrics()
        .await?
        .value("alertmesh_kafka_readers_started_total", &[("kind", "own")]);
    assert!(
        own < (n + n / 10) as f64,
        "{own} Kafka reads for {n} clients that never read: they should get one small read each"
    );
    assert!(
        paused_threads <= threads_before + 16,
        "the non-readers' Kafka readers were not stopped: {paused_threads} threads, \
         {threads_before} before"
    );
    // Unbounded, each held ~40 MiB (50 took 2.09 GB).
    assert!(
        peak < 1 << 30 && paused < 1 << 30,
        "{n} non-reading subscribers took the gateway to {} MiB (peak {} MiB)",
        paused >> 20,
        peak >> 20
    );

    // A client that reads, next to them, gets every alert.
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = subscribe_all(&mut client, req, WAIT * 4).await;
    assert!(matches!(got.end, Some(Ok(()))), "reader: {:?}", got.end);
    assert_eq!(got.alerts.len(), total, "the reading client missed alerts");
    let mut refs: Vec<&str> = got.alerts.iter().map(|a| a.r#ref.as_str()).collect();
    refs.sort_unstable();
    refs.dedup();
    assert_eq!(refs.len(), total, "duplicates delivered");

    // After limits.unread_drop_ms each non-reader is ended: once it reads, it gets what
    // was queued, then RESOURCE_EXHAUSTED saying why. (Read before that, it would resume.)
    tokio::time::sleep_until((all_paused + Duration::from_secs(42 + 5)).into()).await;
    let mut ended = 0;
    for (response, _stream) in opened {
        let (code, message, bytes) = tokio::time::timeout(WAIT, read_to_status(response))
            .await
            .context("a non-reading subscription was never ended")??;
        let message = percent_decoded(&message);
        if code != "8" || !message.contains("read nothing for 45 s") {
            bail!("non-reader ended with {code} {message:?} after {bytes} bytes");
        }
        ended += 1;
    }
    assert_eq!(ended, n);
    Ok(())
}

/// A client that reads, pauses long enough for its subscription to be parked (its Kafka
/// reader stopped), then reads on, gets every alert exactly once and in order: what was
/// not handed over when the reader stopped is read again from Kafka, from where the last
/// batch sent ended. The read it starts with is small and is replaced by a full one once
/// the client drains its stream; that switch loses and repeats nothing either.
#[tokio::test]
async fn a_client_that_pauses_then_reads_on_gets_every_alert_once() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .extra("[limits]\nunread_pause_ms = 500\nunread_drop_ms = 60000")
        .start()
        .await?;
    for copy in 1..10 {
        let records = ztf_records(3, site.base_ms + copy * 100_000, 1)?;
        site.broker.produce_all(ZTF_TOPIC, &records).await?;
    }
    let total = 10 * site.produced.len();
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let mut stream = client.subscribe(req).await?.into_inner();
    let mut alerts = Vec::new();
    // Enough, taken at once, for the small read to be replaced by a full one.
    while alerts.len() < total / 3 {
        let batch = tokio::time::timeout(WAIT, stream.message())
            .await
            .context("no batch")??
            .context("stream ended early")?;
        alerts.extend(batch.alerts);
    }
    // Long enough, several times over, for the stream to fill and the reader to stop.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m = site.gateway.metrics().await?;
    assert_eq!(
        m.value("alertmesh_parked_subscriptions", &[]),
        1.0,
        "the paused client's subscription was not parked"
    );
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("stream stalled after the pause")??
    {
        alerts.extend(batch.alerts);
    }
    let m = site.gateway.metrics().await?;
    assert_eq!(m.value("alertmesh_parked_subscriptions", &[]), 0.0);
    let own = m.value("alertmesh_kafka_readers_started_total", &[("kind", "own")]);
    assert!(
        own >= 3.0,
        "expected a small read, a full one, and a read after the pause: {own} reads"
    );
    // Every offset of every partition, once, in order.
    let mut next = std::collections::HashMap::<i32, i64>::new();
    for a in &alerts {
        let expected = next.entry(a.partition).or_insert(0);
        assert_eq!(
            a.offset, *expected,
            "partition {}: offset {} where {} was due",
            a.partition, a.offset, expected
        );
        *expected += 1;
    }
    let mut produced = std::collections::HashMap::<i32, i64>::new();
    for p in 0..3 {
        produced.insert(p, (total / 3) as i64);
    }
    assert_eq!(next, produced, "alerts lost or repeated across the pause");
    Ok(())
}

/// Clients that present a token and never read stay on their small Kafka read and are
/// parked like those without one: the token's periodic re-check takes no batches out of
/// their streams (taking them made each look like a reading client and gave it a full
/// read, ~5 MiB each). Revoking the token still ends such a stream, reader included,
/// though nothing is read from it; when the client reads at last it gets UNAUTHENTICATED.
#[tokio::test]
async fn clients_with_a_token_that_never_read_stay_small_and_revocation_ends_them() -> Result<()> {
    const N: usize = 20;
    let pki = Pki::new()?;
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 3).await?;
    let base = now_ms() - 3_600_000;
    for copy in 0..10 {
        let records = ztf_records(3, base + copy * 100_000, 1)?;
        broker.produce_all(ZTF_TOPIC, &records).await?;
    }
    let spec = SecureSpec::new("lasair", &broker.bootstrap())
        .topic(ZTF_TOPIC, false)
        .without_mtls()
        .extra("[limits]\nunread_pause_ms = 1000\nunread_drop_ms = 600000");
    let gw = Secure::start(&pki, spec).await?;
    let ops = pki.client("ops")?;
    let token = gw.issue("alice", &["subscribe:ztf.*"], "1h").await?;
    let addr = gw.gateway.grpc_addr();
    let pid = gw.gateway.pid().context("gateway pid")?;
    let before = rss_bytes(pid)?;

    // One TLS connection of non-reading subscriptions: a tiny stream window, nothing
    // ever released.
    let mut tls =
        alertmesh_auth::tls::client_config(&alertmesh_auth::tls::load_certs(&gw.ca)?, None)?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(&addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await?;
    let (mut send, connection) = h2::client::Builder::new()
        .initial_window_size(1024)
        .initial_connection_window_size(1 << 20)
        .handshake::<_, Bytes>(tls)
        .await?;
    tokio::spawn(connection);
    let mut calls = Vec::new();
    for _ in 0..N {
        send = send.ready().await?;
        let (mut head, body) = subscribe_call(&addr);
        head.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
        let (response, mut stream) = send.send_request(head, false)?;
        stream.send_data(body, true)?;
        calls.push((response, stream));
    }
    let mut opened = Vec::new();
    for (response, stream) in calls {
        let response = tokio::time::timeout(WAIT * 3, response)
            .await
            .context("a subscription got no answer")??;
        assert!(
            !response.headers().contains_key("grpc-status"),
            "refused: {:?}",
            response.headers()
        );
        opened.push((response, stream));
    }

    // Every one parked (its stream full for unread_pause_ms, its reader stopped).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut parked, mut open) = (0.0, 0.0);
    while Instant::now() < deadline {
        let m = gw.metrics(&ops).await?;
        parked = m.value("alertmesh_parked_subscriptions", &[]);
        open = m.value("alertmesh_open_subscriptions", &[]);
        if parked == N as f64 && open == N as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        (parked, open),
        (N as f64, N as f64),
        "non-reading subscriptions with a token were not all parked"
    );
    // Each stayed on its small read: no batches were taken for it, so it never looked
    // like a client that drains its stream and never got a full read (which reads
    // megabytes ahead).
    let m = gw.metrics(&ops).await?;
    let own = m.value("alertmesh_kafka_readers_started_total", &[("kind", "own")]);
    let read = m.value("alertmesh_kafka_bytes_read_total", &[("kind", "own")]);
    let rss = rss_bytes(pid)?;
    eprintln!(
        "{N} non-reading subscribers with a token: {own} Kafka reads started, {} KiB read \
         from Kafka each, gateway RSS {} MiB before, {} MiB parked ({} KiB each)",
        (read as u64 / N as u64) >> 10,
        before >> 20,
        rss >> 20,
        (rss.saturating_sub(before) / N as u64) >> 10
    );
    assert_eq!(
        own, N as f64,
        "{own} Kafka reads for {N} clients with a token that never read: one small read \
         each expected, a second (full) one means batches were taken for a client that \
         reads nothing"
    );
    // Revoking the token ends them all though none reads: the subscriptions close.
    let out = gw.creds(&["revoke", "--sub", "alice"]).await?;
    assert!(
        out.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        open = gw
            .metrics(&ops)
            .await?
            .value("alertmesh_open_subscriptions", &[]);
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(open, 0.0, "revocation left non-reading subscriptions open");
    // Read at last, each ends with UNAUTHENTICATED naming the revocation.
    for (response, _stream) in opened {
        let (code, message, bytes) = tokio::time::timeout(WAIT, read_to_status(response))
            .await
            .context("a revoked non-reading stream never ended")??;
        let message = percent_decoded(&message);
        if code != "16" || !message.contains("revoked") {
            bail!("revoked non-reader ended with {code} {message:?} after {bytes} bytes");
        }
    }
    Ok(())
}
