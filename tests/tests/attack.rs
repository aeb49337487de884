//! Hostile clients against a real gateway process: raw HTTP/2 that a gRPC library would
//! never send. The gateway must bound what it buffers, end what never finishes, and keep
//! serving everyone else.

use std::time::Duration;

use alertmesh_tests::client::{earliest, request, subscribe_all, until_now};
use alertmesh_tests::h2c::grpc_head;
use alertmesh_tests::process::{rss_bytes, threads};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Mesh, WAIT, ZTF_TOPIC};
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use tokio::net::TcpStream;

const SUBSCRIBE: &str = "/alertmesh.v1.AlertMesh/Subscribe";

/// The gRPC status of a finished response: from the trailers, or from the headers of a
/// trailers-only response.
async fn grpc_status(response: h2::client::ResponseFuture) -> Result<Option<String>> {
    let response = response.await?;
    if let Some(s) = response.headers().get("grpc-status") {
        return Ok(Some(s.to_str()?.to_owned()));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?;
    Ok(trailers
        .and_then(|t| t.get("grpc-status").map(|v| v.to_str().map(str::to_owned)))
        .transpose()?)
}

/// 500 Subscribe streams on one connection, each declaring a 1,000,000-byte request and
/// never finishing it, once took the gateway from 256 MB to 762 MB, held forever. Now the
/// server limits concurrent streams per connection, caps what it buffers of unfinished
/// requests (`limits.request_buffer_bytes`, 16 MiB here) and ends them after
/// `limits.request_timeout_ms`.
#[tokio::test]
async fn unfinished_request_bodies_are_bounded_and_ended() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .extra("[limits]\nrequest_timeout_ms = 2000\nrequest_buffer_bytes = 16777216")
        .start()
        .await?;
    let pid = site.gateway.pid().context("gateway pid")?;
    let addr = site.gateway.grpc_addr();
    let before = rss_bytes(pid)?;

    let tcp = TcpStream::connect(&addr).await?;
    let (mut send, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .handshake::<_, Bytes>(tcp)
        .await?;
    let mut connection = Box::pin(connection);
    // Drive the connection until the server's SETTINGS arrive.
    let _ = tokio::time::timeout(Duration::from_millis(500), &mut connection).await;
    let advertised = connection.max_concurrent_send_streams();
    assert!(
        advertised <= 1024,
        "SETTINGS_MAX_CONCURRENT_STREAMS should be bounded, got {advertised}"
    );
    tokio::spawn(connection);

    let mut declared = vec![0u8];
    declared.extend_from_slice(&1_000_000u32.to_be_bytes());
    let body = Bytes::from(vec![0x0a; 999_000]);
    let mut responses = Vec::new();
    for _ in 0..500 {
        // A server at its stream limit makes the client wait here: that is the defence.
        match tokio::time::timeout(Duration::from_secs(2), send.clone().ready()).await {
            Ok(Ok(ready)) => send = ready,
            Ok(Err(e)) => bail!("connection failed while opening streams: {e}"),
            Err(_) => break,
        }
        let Ok((response, mut stream)) = send.send_request(grpc_head(&addr, SUBSCRIBE), false)
        else {
            break;
        };
        stream.send_data(Bytes::from(declared.clone()), false)?;
        stream.send_data(body.clone(), false)?;
        responses.push((response, stream));
    }
    assert!(!responses.is_empty(), "no stream could be opened");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = rss_bytes(pid)?;
    let grown = during.saturating_sub(before);
    eprintln!(
        "{} streams opened, gateway RSS {} -> {} MiB",
        responses.len(),
        before >> 20,
        during >> 20
    );
    assert!(
        grown < 64 << 20,
        "{} unfinished requests grew the gateway by {} MiB (from {} MiB)",
        responses.len(),
        grown >> 20,
        before >> 20
    );

    // Every unfinished request is ended by the server, with a status or a reset.
    let mut ended = 0;
    for (response, _stream) in responses {
        match tokio::time::timeout(WAIT, grpc_status(response)).await {
            Ok(Ok(Some(code))) => {
                assert_ne!(code, "0", "an unfinished request cannot succeed");
                ended += 1;
            }
            Ok(Ok(None)) => bail!("a response ended without a gRPC status"),
            Ok(Err(_reset)) => ended += 1,
            Err(_) => bail!("an unfinished request was still open after {WAIT:?}"),
        }
    }
    assert!(ended > 0);

    // And the gateway still serves everyone else.
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = subscribe_all(&mut client, req, WAIT).await;
    assert!(
        matches!(got.end, Some(Ok(()))),
        "subscribe after the attack: {:?}",
        got.end
    );
    assert_eq!(got.alerts.len(), site.produced.len());
    Ok(())
}

/// Reads until the peer closes the connection; `None` if it is still open after `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt as _;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// Connections that send nothing, trickle their first bytes, or stay without a call were
/// kept open indefinitely on both ports. Now the first request must arrive within
/// `limits.header_timeout_ms` and a gRPC connection without a call closes after
/// `limits.idle_timeout_ms`, while a live stream stays open as long as it lasts.
#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed() -> Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .extra("[limits]\nheader_timeout_ms = 1000\nidle_timeout_ms = 1500")
        .start()
        .await?;
    let (grpc, http) = (site.gateway.grpc_addr(), site.gateway.http_addr());
    let patience = Duration::from_secs(15);

    // gRPC: nothing at all.
    let mut silent = TcpStream::connect(&grpc).await?;
    closed_within(&mut silent, patience)
        .await
        .context("a gRPC connection that sends nothing stayed open")?;

    // gRPC: the preface one byte at a time (slowloris).
    let mut slow = TcpStream::connect(&grpc).await?;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut cut = false;
    for byte in preface {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if !cut {
        closed_within(&mut slow, patience)
            .await
            .context("a trickled preface kept the connection open")?;
    }

    // HTTP side port: a request line, then nothing.
    let mut partial = TcpStream::connect(&http).await?;
    partial.write_all(b"GET /metrics HTTP/1.1\r\n").await?;
    closed_within(&mut partial, patience)
        .await
        .context("an unfinished HTTP request stayed open")?;

    // gRPC: a proper HTTP/2 connection that never makes a call.
    let tcp = TcpStream::connect(&grpc).await?;
    let (_send, connection) = h2::client::handshake(tcp).await?;
    tokio::time::timeout(patience, connection)
        .await
        .context("an idle HTTP/2 connection stayed open")?
        .ok();

    // A live stream outlasts the idle timeout: it is a call in progress.
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    let mut stream = client.subscribe(req).await?.into_inner();
    let mut got = 0;
    while got < site.produced.len() {
        let batch = tokio::time::timeout(WAIT, stream.message())
            .await
            .context("live stream stalled")??
            .context("live stream ended")?;
        got += batch.alerts.len();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = alertmesh_tests::fixtures::ztf_records(1, alertmesh_tests::fixtures::now_ms(), 1)?
        .into_iter()
        .next()
        .context("a fixture record")?;
    site.broker.produce(ZTF_TOPIC, &record).await?;
    let batch = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("live stream got nothing after the idle timeout")??
        .context("the live stream was closed as idle")?;
    assert!(!batch.alerts.is_empty());
    Ok(())
}

/// Rapid reset (CVE-2023-44487's pattern): streams opened and cancelled at once, thousands
/// of times. The gateway must keep serving and must not turn the attack into a log flood.
#[tokio::test]
async fn rapid_reset_neither_stops_the_gateway_nor_floods_its_log() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let addr = site.gateway.grpc_addr();
    let mut sent = 0;
    'connections: for _ in 0..20 {
        let tcp = TcpStream::connect(&addr).await?;
        let Ok((mut send, connection)) = h2::client::handshake(tcp).await else {
            continue;
        };
        tokio::spawn(connection);
        for _ in 0..500 {
            match tokio::time::timeout(Duration::from_secs(2), send.clone().ready()).await {
                Ok(Ok(ready)) => send = ready,
                _ => continue 'connections,
            }
            let Ok((_response, mut stream)) = send.send_request(grpc_head(&addr, SUBSCRIBE), false)
            else {
                continue 'connections;
            };
            stream.send_reset(h2::Reason::CANCEL);
            sent += 1;
        }
    }
    assert!(sent > 1000, "only {sent} streams could be opened and reset");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let log = site.gateway.stderr_tail(1_000_000);
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    eprintln!(
        "{sent} streams reset; {warnings} warning lines; last lines:\n{}",
        site.gateway.stderr_tail(5)
    );
    assert!(
        warnings < 50,
        "{warnings} warning lines after {sent} resets"
    );

    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = subscribe_all(&mut client, req, WAIT).await;
    assert_eq!(got.alerts.len(), site.produced.len(), "{:?}", got.end);
    Ok(())
}

/// A client could open connections without end, each held until its header or idle
/// deadline: enough of them took every file descriptor, those the gateway's own Kafka
/// connections need included. Now each port holds at most `limits.max_connections`, and at
/// most `limits.max_connections_per_ip` from one address; one more is closed at once and
/// counted, and the other port (metrics, health) answers on.
#[tokio::test]
async fn connections_beyond_the_connection_limits_are_closed_at_once() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 1)
        .extra("[limits]\nmax_connections = 8\nmax_connections_per_ip = 5")
        .start()
        .await?;
    let grpc = site.gateway.grpc_addr();
    let open = |m: &alertmesh_tests::Metrics| m.value("alertmesh_connections", &[("port", "grpc")]);
    let refused = |m: &alertmesh_tests::Metrics, reason| {
        m.value(
            "alertmesh_connections_refused_total",
            &[("port", "grpc"), ("reason", reason)],
        )
    };
    // Five from 127.0.0.1: its share.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(&grpc).await?);
    }
    site.gateway
        .wait_metrics("5 gRPC connections open", |m| open(m) == 5.0)
        .await?;
    let mut sixth = TcpStream::connect(&grpc).await?;
    closed_within(&mut sixth, Duration::from_secs(10))
        .await
        .context("a connection beyond limits.max_connections_per_ip stayed open")?;
    // Another address still gets in, up to the port's limit.
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2", &grpc).await?);
    }
    site.gateway
        .wait_metrics("8 gRPC connections open", |m| open(m) == 8.0)
        .await?;
    let mut ninth = connect_from("127.0.0.3", &grpc).await?;
    closed_within(&mut ninth, Duration::from_secs(10))
        .await
        .context("a connection beyond limits.max_connections stayed open")?;
    // A gRPC client is told at once, rather than left waiting.
    let call = tokio::time::timeout(WAIT, async { site.gateway.mirror_status().await })
        .await
        .context("a call beyond the connection limits hung")?;
    ensure!(
        call.is_err(),
        "a call beyond the connection limits was served"
    );
    let m = site.gateway.metrics().await?;
    ensure!(
        refused(&m, "per_ip") >= 1.0,
        "per-address refusals not counted"
    );
    ensure!(
        refused(&m, "port_full") >= 2.0,
        "full-port refusals not counted"
    );
    ensure!(
        open(&m) == 8.0,
        "{} gRPC connections open, want 8",
        open(&m)
    );

    // The places are given back as connections close.
    drop(held);
    site.gateway
        .wait_metrics("the held connections closed", |m| open(m) == 0.0)
        .await?;
    site.gateway.mirror_status().await?;
    Ok(())
}

/// A TCP connection to `addr` from the loopback address `from` (any of 127.0.0.0/8).
async fn connect_from(from: &str, addr: &str) -> Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse()?)?;
    Ok(socket.connect(addr.parse()?).await?)
}

/// Out of file descriptors, accepting fails while the listening socket stays readable, and
/// the gRPC port retried at once: a flood of 200 connections against a limit of 128 kept
/// a core busy (98 % of one, measured) for as long as it lasted. Now the port pauses after
/// each failure, counts it and says what to raise, and serves again once descriptors are
/// free.
#[tokio::test]
async fn out_of_file_descriptors_a_port_pauses_instead_of_spinning() -> Result<()> {
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 1).await?;
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(ZTF_TOPIC, "ZTF", "avro-ocf")
        .open_files(128);
    let gateway = Gateway::start(&spec).await?;
    let log = gateway.stderr_tail(100);
    ensure!(
        log.contains("the open-file limit is below what limits.max_connections"),
        "no warning about the open-file limit at start:\n{log}"
    );

    let grpc = gateway.grpc_addr();
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(TcpStream::connect(&grpc).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(flood);
    let m = gateway
        .wait_metrics("the flood's connections closed", |m| {
            m.value("alertmesh_connections", &[("port", "grpc")]) == 0.0
        })
        .await?;
    let errors = m.value("alertmesh_accept_errors_total", &[("port", "grpc")]);
    ensure!(
        errors >= 1.0,
        "the flood never ran out of descriptors ({errors} accept errors)"
    );
    // One failure per 100 ms pause gives about 20 in 2 s; retrying at once gave millions.
    ensure!(
        errors < 200.0,
        "{errors} accept errors in about 2 s: the port does not pause"
    );
    let log = gateway.stderr_tail(100);
    ensure!(
        log.contains("cannot accept connections") && log.contains("Too many open files"),
        "the accept failures were not reported:\n{log}"
    );
    gateway.mirror_status().await?;
    Ok(())
}

/// Every `Fetch` reads with a Kafka consumer of its own (librdkafka threads and sockets),
/// and it was created before the call waited for anything: 400 concurrent calls made as
/// many consumers at once (917 gateway threads, from 13). Now at most `limits.max_fetches` read at a time and the others
/// wait their turn; every call is still answered.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_fetches_wait_their_turn_and_are_all_answered() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .ztf_alerts()
        .kafka_timeout_ms(30_000)
        .extra("[limits]\nmax_fetches = 8")
        .start()
        .await?;
    let pid = site.gateway.pid().context("gateway pid")?;
    let base = threads(pid)?;
    let refs: Vec<String> = site
        .produced
        .iter()
        .map(|p| {
            alertmesh_tests::client::alert_ref("lasair", ZTF_TOPIC, p.record.partition, p.offset)
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(threads(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let mut calls = Vec::new();
    for c in 0..4 {
        let client = site.gateway.client().await?;
        for i in 0..100 {
            let mut client = client.clone();
            let r = refs[(c * 100 + i) % refs.len()].clone();
            calls.push(tokio::spawn(async move {
                let fetched = client
                    .fetch(alertmesh_proto::v1::FetchRequest { r#ref: r.clone() })
                    .await?
                    .into_inner();
                ensure!(fetched.r#ref == r, "asked for {r}, got {}", fetched.r#ref);
                anyhow::Ok(())
            }));
        }
    }
    for call in calls {
        tokio::time::timeout(WAIT * 4, call)
            .await
            .context("a Fetch was not answered")???;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.await?;
    // A consumer brings a handful of librdkafka threads: 8 at a time stay well below 100
    // more; 400 at once went far beyond.
    ensure!(
        most < base + 100,
        "{most} gateway threads during 400 concurrent fetches (before: {base})"
    );
    Ok(())
}
