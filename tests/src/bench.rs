//! Measurements for `bench_subscribe`: the same records read straight from Kafka and
//! through a gateway, past and live.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdkafka::Offset;
use tokio::task::JoinSet;

use crate::client::{earliest, latest, request, until_now};
use crate::gateway::Gateway;
use crate::kafka::{assigned_consumer, read_to_eof_with};

/// How long any single measurement may take before the benchmark gives up.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(300);

/// One timed read of `records` records holding `bytes` payload bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Run {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// Payload megabytes (10^6) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Reads `n` records of `topic` from the beginning with a plain rdkafka consumer; also
/// returns how long the first record took (client and connection setup included).
pub async fn direct_past(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
) -> Result<(Run, Duration)> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let consumer = assigned_consumer(&bootstrap, &topic, partitions, Offset::Beginning)?;
        let mut first = None;
        let stats = read_to_eof_with(&consumer, partitions, n, MEASURE_TIMEOUT, |_| {
            first.get_or_insert_with(|| began.elapsed());
        })?;
        ensure!(
            stats.records == n,
            "direct read {} records, want {n}",
            stats.records
        );
        let run = Run {
            records: stats.records,
            bytes: stats.payload_bytes,
            elapsed: began.elapsed(),
        };
        Ok((run, first.unwrap_or_default()))
    })
    .await?
}

/// The least any relay can cost: a plain rdkafka consumer (as [`direct_past`]) that writes
/// each payload, length-prefixed, into a loopback TCP connection through a 1 MiB buffer,
/// read on the other end by this thread. No encoding, no gRPC, no TLS: one copy into a
/// buffer, the kernel's copies and a second thread, as any gateway needs at least. The
/// gateway's ratio is to be read against this one's.
pub async fn relay_past(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
) -> Result<(Run, Duration)> {
    use std::io::{BufReader, BufWriter, Read, Write};
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let relay = std::thread::spawn(move || -> Result<()> {
            // Connected first: a relay that fails then ends the other side's read.
            let socket = std::net::TcpStream::connect(addr)?;
            socket.set_nodelay(true)?;
            let consumer = assigned_consumer(&bootstrap, &topic, partitions, Offset::Beginning)?;
            let mut out = BufWriter::with_capacity(1 << 20, socket);
            let mut failed = None;
            read_to_eof_with(&consumer, partitions, n, MEASURE_TIMEOUT, |m| {
                let payload = rdkafka::Message::payload(m).unwrap_or_default();
                let written = out
                    .write_all(&(payload.len() as u32).to_le_bytes())
                    .and_then(|()| out.write_all(payload));
                if let Err(e) = written {
                    failed.get_or_insert(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            out.flush()?;
            Ok(())
        });
        let (socket, _) = listener.accept()?;
        let mut input = BufReader::with_capacity(1 << 20, socket);
        let (mut records, mut bytes, mut first) = (0u64, 0u64, None);
        let mut payload = Vec::new();
        let mut len = [0u8; 4];
        let mut received = || -> std::io::Result<()> {
            while records < n {
                input.read_exact(&mut len)?;
                payload.resize(u32::from_le_bytes(len) as usize, 0);
                input.read_exact(&mut payload)?;
                first.get_or_insert_with(|| began.elapsed());
                records += 1;
                bytes += payload.len() as u64;
            }
            Ok(())
        };
        let received = received();
        let elapsed = began.elapsed();
        // The relay's own error says more than the end of its stream.
        relay
            .join()
            .map_err(|_| anyhow::anyhow!("relay thread panicked"))??;
        received.with_context(|| format!("relay stream ended after {records} of {n} records"))?;
        Ok((
            Run {
                records,
                bytes,
                elapsed,
            },
            first.unwrap_or_default(),
        ))
    })
    .await?
}

/// Reads `topic` through one gRPC `Subscribe(earliest, end = now)`, expecting `n` alerts;
/// also returns how long the first alert took (connection and subscription included).
///
/// Like the direct consumer, which reads librdkafka's views of each message, it reads
/// each alert's fields where they arrived ([`alertmesh_proto::view`]), checking that
/// offsets rise per partition.
pub async fn gateway_past(gateway: &Gateway, topic: &str, n: u64) -> Result<(Run, Duration)> {
    past_through(&gateway.endpoint()?, topic, n).await
}

/// [`gateway_past`] through a gateway as `alertmesh-client` reaches it (TLS, a token):
/// connecting is part of the time.
pub async fn past_through(
    gateway: &alertmesh_client::Gateway,
    topic: &str,
    n: u64,
) -> Result<(Run, Duration)> {
    let began = Instant::now();
    let mut client = gateway.connect().await?;
    let mut req = request(topic);
    req.start = earliest();
    req.end = until_now();
    let mut stream = client.subscribe_views(req).await?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut first = None;
    while let Some(batch) = tokio::time::timeout(MEASURE_TIMEOUT, stream.message()).await?? {
        if !batch.alerts.is_empty() {
            first.get_or_insert_with(|| began.elapsed());
        }
        for alert in &batch.alerts {
            let f = alert.fields()?;
            let expected = next.entry(f.partition).or_default();
            ensure!(
                f.offset >= *expected,
                "partition {} went back to offset {} after {}",
                f.partition,
                f.offset,
                *expected - 1
            );
            *expected = f.offset + 1;
            records += 1;
            bytes += f.payload.len() as u64;
        }
    }
    ensure!(records == n, "gateway streamed {records} alerts, want {n}");
    let run = Run {
        records,
        bytes,
        elapsed: began.elapsed(),
    };
    Ok((run, first.unwrap_or_default()))
}

/// A live fan-out measurement: the slowest of the subscribers and a direct consumer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveRun {
    /// From the first produce until every subscriber has every record.
    pub gateway: Run,
    /// From the first produce until a direct consumer has every record.
    pub direct: Run,
}

/// Opens `subscribers` live subscriptions, waits until the gateway counts them, then runs
/// `produce` and times how long until all subscribers (and a direct consumer positioned at
/// `from`, the next offset per partition) have received `n` records.
pub async fn live_fanout<F, Fut>(
    gateway: &Gateway,
    bootstrap: &str,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    subscribers: usize,
    n: u64,
    produce: F,
) -> Result<LiveRun>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    // Subscribers of an earlier round are counted out once the gateway sees them gone.
    gateway
        .wait_metrics("earlier subscribers closed", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 0.0
        })
        .await?;
    let open_before = 0.0;
    let mut clients = Vec::new();
    for _ in 0..subscribers.div_ceil(10) {
        clients.push(gateway.client().await?);
    }
    let mut streams = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let mut req = request(topic);
        req.start = latest();
        let n_clients = clients.len();
        streams.push(clients[i % n_clients].subscribe(req).await?.into_inner());
    }
    let want_open = open_before + subscribers as f64;
    gateway
        .wait_metrics("live subscribers open", |m| {
            m.value("alertmesh_open_subscriptions", &[]) >= want_open
        })
        .await?;

    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut readers = JoinSet::new();
    for mut stream in streams {
        let mut start_rx = start_rx.clone();
        readers.spawn(async move {
            let (mut records, mut bytes) = (0u64, 0u64);
            while records < n {
                let batch = tokio::time::timeout(MEASURE_TIMEOUT, stream.message())
                    .await
                    .context("live subscriber timed out")??
                    .context("live stream ended")?;
                records += batch.alerts.len() as u64;
                bytes += batch
                    .alerts
                    .iter()
                    .map(|a| a.payload.len() as u64)
                    .sum::<u64>();
            }
            let done = Instant::now();
            let began = start_rx.wait_for(Option::is_some).await?.expect("set");
            anyhow::Ok(Run {
                records,
                bytes,
                elapsed: done - began,
            })
        });
    }
    let direct = {
        let (bootstrap, topic, from) = (bootstrap.to_owned(), topic.to_owned(), from.clone());
        let start_rx = start_rx.clone();
        tokio::task::spawn_blocking(move || direct_live(&bootstrap, &topic, &from, n, start_rx))
    };
    // Let the direct consumer connect and fetch at its position before producing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    start_tx.send(Some(Instant::now()))?;
    let produced = produce().await?;
    ensure!(produced == n, "produced {produced}, want {n}");

    let mut slowest: Option<Run> = None;
    while let Some(run) = readers.join_next().await {
        let run = run??;
        if slowest.is_none_or(|s| run.elapsed > s.elapsed) {
            slowest = Some(run);
        }
    }
    let direct = direct.await??;
    drop(clients);
    let slowest = slowest.context("no subscribers")?;
    Ok(LiveRun {
        gateway: Run {
            records: slowest.records * subscribers as u64,
            bytes: slowest.bytes * subscribers as u64,
            elapsed: slowest.elapsed,
        },
        direct,
    })
}

fn direct_live(
    bootstrap: &str,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    n: u64,
    start: tokio::sync::watch::Receiver<Option<Instant>>,
) -> Result<Run> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::TopicPartitionList;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "alertmesh-bench-live")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut list = TopicPartitionList::new();
    for (p, o) in from {
        list.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    consumer.assign(&list)?;
    let deadline = Instant::now() + MEASURE_TIMEOUT;
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < n {
        if Instant::now() > deadline {
            bail!("direct live read timed out at {records} of {n}");
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => bail!("direct live read: {e}"),
            None => {}
        }
    }
    let done = Instant::now();
    let began = (*start.borrow()).context("never started")?;
    Ok(Run {
        records,
        bytes,
        elapsed: done - began,
    })
}

/// The median of `values` (upper median for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`; `None`
/// for `pid` means this process. Where the cycles go on a shared machine says more than
/// wall time alone.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or("/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest`.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ, the unit of these fields, is 100 on every Linux ABI.
    Some(Duration::from_millis(ticks * 10))
}

/// The gateway's peak resident set size in KiB (`VmHWM` in `/proc/<pid>/status`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Numeric benchmark options: each `(flag, environment variable, default)`, overridden by
/// the variable, then by `--flag N` on the command line.
pub fn numeric_args(spec: &[(&str, &str, u64)]) -> Result<BTreeMap<String, u64>> {
    let mut values: BTreeMap<String, u64> = BTreeMap::new();
    for (flag, env, default) in spec {
        let v = std::env::var(env).ok().map(|v| v.parse()).transpose()?;
        values.insert((*flag).to_owned(), v.unwrap_or(*default));
    }
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            let flags: Vec<String> = spec
                .iter()
                .map(|(f, env, default)| format!("  {f} N  (or {env}; default {default})"))
                .collect();
            println!("options:\n{}", flags.join("\n"));
            std::process::exit(0);
        }
        if !values.contains_key(&flag) {
            bail!(
                "unknown argument {flag:?}; expected one of {:?}",
                values.keys()
            );
        }
        let v = it
            .next()
            .with_context(|| format!("{flag} needs a number"))?;
        let parsed = v.parse().with_context(|| format!("{flag} {v:?}"))?;
        values.insert(flag, parsed);
    }
    Ok(values)
}
