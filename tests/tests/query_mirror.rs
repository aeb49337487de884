//! Mirrors whose source is a peer gateway's database query: gateway `lasair` serves a
//! query over a real PostgreSQL, gateway `fink` copies its result into its own Kafka,
//! exactly once across kill -9 of fink, goes on with rows inserted later (`follow`), and
//! its copies' provenance resolves to the rows on lasair.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use alertmesh_tests::cli::run_cli;
use alertmesh_tests::fixtures::now_ms;
use alertmesh_tests::kafka::{assigned_consumer, read_to_eof_with};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Postgres};
use anyhow::{bail, ensure, Context, Result};
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;

/// Rows in the source table at the start; the mirror copies those with `ndet >= 2`.
const ROWS: i64 = 100_000;
const DESTINATION: &str = "lasair.query.objects";

/// One copied record.
#[derive(Debug)]
struct Copy {
    offset: i64,
    key: Option<String>,
    payload: serde_json::Value,
    headers: HashMap<String, String>,
}

fn lasair_config(pg: &Postgres) -> String {
    format!(
        r#"
[[databases]]
name = "archive"
url = "{url}"
password_file = "{pw}"

[[queries]]
name = "objects"
database = "archive"
table = "objects"
namespace = "ZTF"
key = "object_id"
order = "id"
ra = "ra"
dec = "dec"
columns = ["id", "object_id", "ra", "dec", "mag", "ndet"]
public = true
poll_interval_ms = 200

[limits]
# Many batches, so kills land inside batches as well as between them.
max_batch_alerts = 100
"#,
        url = pg.url("postgres"),
        pw = pg.dir().join("pw").display()
    )
}

fn insert_sql(from: i64, to: i64) -> String {
    format!(
        "insert into objects select i, \
           'ZTF2' || (i % 10) || translate(lpad(i::text, 7, '0'), '0123456789', 'abcdefghij'), \
           (i * 7.3)::numeric % 360, \
           ((i * 3.1)::numeric % 180) - 90, 15 + (i % 70) / 10.0, i % 5 \
         from generate_series({from}, {to}) i;"
    )
}

/// Every record of the destination (one partition).
async fn dump(broker: &Broker) -> Result<Vec<Copy>> {
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        let consumer = assigned_consumer(&bootstrap, DESTINATION, 1, Offset::Beginning)?;
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
            out.push(Copy {
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: serde_json::from_slice(m.payload().unwrap_or_default())
                    .unwrap_or_default(),
                headers,
            });
        })?;
        Ok(out)
    })
    .await?
}

/// How many records the destination holds (its high watermark), 0 before it exists.
async fn count(broker: &Broker) -> usize {
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .ok()?;
        let (_, high) = rdkafka::consumer::Consumer::fetch_watermarks(
            &consumer,
            DESTINATION,
            0,
            Duration::from_secs(5),
        )
        .ok()?;
        usize::try_from(high).ok()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(0)
}

/// Waits until the destination holds at least `n` records, then a little longer to catch
/// extras.
async fn settle(broker: &Broker, n: usize) -> Result<Vec<Copy>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = dump(broker).await.unwrap_or_default();
        if found.len() >= n {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return dump(broker).await;
        }
        if Instant::now() > deadline {
            bail!("{DESTINATION} holds {} records, want {n}", found.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The ids `psql` selects with `ndet >= 2`, in order.
fn expected_ids(pg: &Postgres) -> Result<Vec<i64>> {
    pg.psql("select id from objects where ndet >= 2 order by id")?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(l.trim().parse::<i64>()?))
        .collect()
}

/// Every expected row once, in order, with its ref as `am-source` and `am-origin`, its
/// mesh key and its row as the payload.
fn check_exactly_once(copies: &[Copy], expected: &[i64]) -> Result<()> {
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    let mut ids = Vec::with_capacity(copies.len());
    for c in copies {
        let source = c.headers.get("am-source").context("am-source missing")?;
        let id: i64 = source
            .strip_prefix("am://lasair/query:objects/")
            .with_context(|| format!("am-source {source}"))?
            .parse()?;
        *seen.entry(id).or_default() += 1;
        ids.push(id);
        ensure!(
            c.headers.get("am-origin") == Some(source),
            "{:?}",
            c.headers
        );
        ensure!(
            c.headers.get("am-hops").map(String::as_str) == Some("lasair,fink"),
            "{:?}",
            c.headers
        );
        ensure!(c.headers.get("am-ns").map(String::as_str) == Some("ZTF"));
        ensure!(c.headers.get("am-format").map(String::as_str) == Some("json"));
        ensure!(c.payload["id"] == id, "payload {} for {id}", c.payload);
        let object = c.payload["object_id"].as_str().unwrap_or_default();
        ensure!(c.key.as_deref() == Some(&*format!("ZTF:{object}")));
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(
        repeated.is_empty(),
        "rows copied more than once: {repeated:?}"
    );
    ensure!(
        ids == expected,
        "copied {} rows, {} expected; first difference at {:?}",
        ids.len(),
        expected.len(),
        ids.iter().zip(expected).position(|(a, b)| a != b)
    );
    Ok(())
}

/// lasair serving `objects` (rows 1..=`rows`) from PostgreSQL, and fink mirroring the
/// rows with `ndet >= 2` of that query into [`DESTINATION`].
struct Sites {
    lasair_broker: Broker,
    lasair: Gateway,
    fink_broker: Broker,
    fink: Gateway,
}

async fn sites(pg: &Postgres, rows: i64, follow: bool) -> Result<Sites> {
    pg.psql(&format!(
        "create table objects (id bigint primary key, object_id text not null, \
           ra double precision, dec double precision, mag real, ndet integer); {}",
        insert_sql(1, rows)
    ))?;
    let lasair_broker = Broker::start("lasair").await?;
    let lasair = Gateway::start(
        &GatewaySpec::new("lasair", &lasair_broker.bootstrap()).extra(&lasair_config(pg)),
    )
    .await?;
    let fink_broker = Broker::start("fink").await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"objects\"\n[mirrors.source]\ngateway = {url:?}\n\
         query = \"objects\"\nwhere = \"ndet >= 2\"\nfollow = {follow}\n",
        url = lasair.grpc_url()
    );
    let fink_spec = GatewaySpec::new("fink", &fink_broker.bootstrap())
        .topic(DESTINATION, "ZTF", "json")
        .extra(&mirror);
    let fink = Gateway::start(&fink_spec).await?;
    Ok(Sites {
        lasair_broker,
        lasair,
        fink_broker,
        fink,
    })
}

#[tokio::test]
async fn a_query_sourced_mirror_copies_every_row_once_across_kill_9_and_follows() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let Sites {
        lasair_broker: _lasair_broker,
        lasair: _lasair,
        fink_broker,
        mut fink,
    } = sites(&pg, ROWS, true).await?;

    // Kill fink at pseudo-random moments once it has made progress (reproducible from
    // the seed).
    let seed = now_ms() as u64;
    let mut x = seed | 1;
    let mut partial = Vec::new();
    let first_result = expected_ids(&pg)?.len();
    for round in 0..4 {
        let before = partial.last().copied().unwrap_or(0);
        if before >= first_result {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&fink_broker).await <= before {
            ensure!(
                Instant::now() < deadline,
                "no progress after {before} rows; fink's stderr:\n{}",
                fink.stderr_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tokio::time::sleep(Duration::from_millis(x % 200)).await;
        partial.push(count(&fink_broker).await);
        fink.kill_and_restart()
            .await
            .with_context(|| format!("round {round}, seed {seed}"))?;
    }
    // Rows inserted later arrive through follow, and survive one more kill.
    pg.psql(&insert_sql(ROWS + 1, ROWS + 500))?;
    fink.kill_and_restart().await?;
    let expected = expected_ids(&pg)?;
    let copies = settle(&fink_broker, expected.len())
        .await
        .with_context(|| fink.stderr_tail(20))?;
    check_exactly_once(&copies, &expected)
        .with_context(|| format!("seed {seed}; copies seen at the kills: {partial:?}"))?;
    eprintln!(
        "copied {} rows; destination sizes at the kills: {partial:?}",
        copies.len()
    );

    let status = fink.mirror_status().await?;
    ensure!(status.len() == 1, "{status:?}");
    let m = &status[0];
    ensure!(
        m.state == "running"
            && m.source == "am://lasair/query:objects"
            && m.destination == DESTINATION,
        "{m:?}"
    );

    // Provenance from fink's copy back to the row on lasair.
    let c = &copies[copies.len() / 2];
    let start = format!("am://fink/{DESTINATION}/0/{}", c.offset);
    let out = fink.cli(&["provenance", &start]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = &c.headers["am-source"];
    ensure!(
        text.contains(&format!("copied from: {row}")),
        "provenance does not reach {row}: {text}"
    );
    ensure!(!text.contains("unresolved"), "{text}");
    Ok(())
}

const MINIMAL: &str = r#"
[gateway]
name = "fink"
listen = "127.0.0.1:50051"
http_listen = "127.0.0.1:9464"
[kafka]
bootstrap = "127.0.0.1:9092"
"#;

#[tokio::test]
async fn bad_query_mirror_configs_are_refused_by_serve_check() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    let check = |config: &str| {
        let config = format!("{MINIMAL}[[mirrors]]\nname = \"m\"\n[mirrors.source]\n{config}");
        std::fs::write(&path, config)?;
        let argv = [
            "serve".as_ref(),
            "--check".as_ref(),
            "--skip-files".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ];
        anyhow::Ok(argv.map(|a| a.to_owned()))
    };
    let url = "gateway = \"http://127.0.0.1:1\"\n";
    let good = format!("{url}query = \"objects\"\nwhere = \"ndet >= 2\"\ncone = [10.0, -5, 1.5]\nids = [\"ZTF:ZTF19abc\"]\nfollow = true\n");
    let out = run_cli(&check(&good)?).await?;
    ensure!(
        out.status.success(),
        "a good query mirror is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (config, key) in [
        (format!("{url}query = \"objects\"\nwhere = \"ndet >=\"\n"), "mirrors[0].source.where: "),
        (format!("{url}query = \"objects\"\ntopic = \"ztf\"\n"), "mirrors[0].source.topic: "),
        (format!("{url}query = \"objects\"\nfilter = \"x < 1\"\n"), "mirrors[0].source.filter: "),
        (format!("{url}query = \"objects\"\ncone = [10.0, 95.0, 1.0]\n"), "mirrors[0].source.cone: "),
        (format!("{url}query = \"objects\"\ncone = \"near\"\n"), "mirrors[0].source.cone: "),
        (format!("{url}query = \"objects\"\nids = [\"ZTF19abc\"]\n"), "mirrors[0].source.ids[0]: "),
        (format!("{url}query = \"objects\"\nfollow = \"yes\"\n"), "mirrors[0].source.follow: "),
        (format!("{url}query = \"obj/../x\"\n"), "mirrors[0].source.query: "),
        (format!("{url}topic = \"ztf\"\nwhere = \"x < 1\"\n"), "mirrors[0].source.where: "),
        (format!("{url}topic = \"ztf\"\nfollow = true\n"), "mirrors[0].source.follow: "),
        (
            "kafka = \"127.0.0.2:9092\"\nquery = \"objects\"\nnamespace = \"ZTF\"\nformat = \"json\"\n".to_owned(),
            "mirrors[0].source.query: ",
        ),
    ] {
        let out = run_cli(&check(&config)?).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(64) && stderr.contains(key),
            "{config}: exit {:?}, stderr does not name {key}:\n{stderr}",
            out.status.code()
        );
    }
    Ok(())
}

/// Writes one record into the destination as if it were a copy of lasair's query, with
/// `am-resume` = `resume` (none: no header).
async fn forge_copy(broker: &Broker, id: i64, resume: Option<&[u8]>) -> Result<()> {
    let mut headers = vec![(
        "am-source".to_owned(),
        Some(bytes::Bytes::from(format!(
            "am://lasair/query:objects/{id}"
        ))),
    )];
    if let Some(r) = resume {
        headers.push(("am-resume".to_owned(), Some(bytes::Bytes::from(r.to_vec()))));
    }
    let record = alertmesh_tests::Record {
        partition: 0,
        key: None,
        payload: bytes::Bytes::from_static(b"{}"),
        headers,
        timestamp_ms: now_ms(),
    };
    broker.produce_all(DESTINATION, &[record]).await?;
    Ok(())
}

/// Waits until the mirror reports an error containing every one of `says`; its state.
async fn wait_mirror_error(fink: &Gateway, says: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = fink.mirror_status().await?;
        if let Some(m) = status.first() {
            if says.iter().all(|s| m.error.contains(s)) {
                return Ok(m.state.clone());
            }
            ensure!(
                Instant::now() < deadline,
                "mirror error {:?} (state {}) does not say {says:?}",
                m.error,
                m.state
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_hostile_am_resume_in_the_destination_stops_the_mirror_without_repeats_or_gaps(
) -> Result<()> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let Sites {
        lasair_broker: _lasair_broker,
        lasair: _lasair,
        fink_broker,
        mut fink,
    } = sites(&pg, 500, false).await?;
    let expected = expected_ids(&pg)?;
    let copies = settle(&fink_broker, expected.len()).await?;
    check_exactly_once(&copies, &expected)?;
    // Rows a restarted mirror would copy; a mirror that lost its place would copy the
    // first ones again.
    pg.psql(&insert_sql(501, 600))?;

    // Missing, non-UTF-8, garbage, oversized: each the last copy in the destination.
    let big = format!("9999 0 amq1.{}", "A".repeat(8192));
    let hostile: [(Option<&[u8]>, &str); 4] = [
        (None, "no am-resume header"),
        (Some(b"\xff\xfe\xfd"), "not UTF-8"),
        (
            Some(b"1 0 ; drop table objects"),
            "unreadable am-resume header",
        ),
        (Some(big.as_bytes()), "at most 4096"),
    ];
    let mut forged = 0;
    for (resume, says) in hostile {
        forge_copy(&fink_broker, 999_999, resume).await?;
        forged += 1;
        fink.kill_and_restart().await?;
        wait_mirror_error(
            &fink,
            &["am-resume", says, "rather than skip or repeat rows"],
        )
        .await
        .with_context(|| fink.stderr_tail(20))?;
        ensure!(
            count(&fink_broker).await == expected.len() + forged,
            "nothing copied after a hostile am-resume ({says})"
        );
    }

    // Readable, but the token of another query: the source refuses it, and the mirror
    // says where the token came from.
    let other = format!(
        "{} 0 amq1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        copies.len() + 1
    );
    forge_copy(&fink_broker, 999_999, Some(other.as_bytes())).await?;
    forged += 1;
    fink.kill_and_restart().await?;
    let state = wait_mirror_error(&fink, &["resume_token", "am-resume header"])
        .await
        .with_context(|| fink.stderr_tail(20))?;
    ensure!(state == "failed" || state == "backoff", "state {state}");
    ensure!(count(&fink_broker).await == expected.len() + forged);

    // A readable copy written after them, with the last real copy's position (as the
    // mirror would have written it next): the mirror goes on from there, each new row
    // once, none repeated, none skipped.
    let last = copies.last().context("copies")?;
    let (_, rest) = last.headers["am-resume"]
        .split_once(' ')
        .context("am-resume")?;
    let resume = format!("{} {rest}", copies.len() + 2);
    let id: i64 = last.payload["id"].as_i64().context("id")?;
    forge_copy(&fink_broker, id, Some(resume.as_bytes())).await?;
    forged += 1;
    fink.kill_and_restart().await?;
    let expected = expected_ids(&pg)?;
    let all = settle(&fink_broker, expected.len() + forged)
        .await
        .with_context(|| fink.stderr_tail(20))?;
    let forged_at = copies.len() as i64..(copies.len() + forged) as i64;
    let real: Vec<Copy> = all
        .into_iter()
        .filter(|c| !forged_at.contains(&c.offset))
        .collect();
    check_exactly_once(&real, &expected)
}
