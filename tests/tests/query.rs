//! Query streams over a real PostgreSQL: rows of declared queries as alerts through a real
//! gateway process, compared with `psql` on the same database.

use std::time::{Duration, Instant};

use alertmesh_alert::filter::angular_distance;
use alertmesh_proto::v1::{self, alert_mesh_client::AlertMeshClient};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Postgres, WAIT};
use anyhow::{bail, ensure, Context as _, Result};
use tonic::transport::Channel;
use tonic::Code;

type Client = AlertMeshClient<Channel>;

/// Rows in the fixture table.
const ROWS: i64 = 1_000;

/// A database with the `objects` table, a Kafka broker and a gateway serving queries on it.
struct Site {
    pg: Postgres,
    _broker: Broker,
    gateway: Gateway,
}

/// `objects`: ids 1..=ROWS, positions spread over the sky (some across RA 0 and near the
/// poles), `big` near 2^63, one row with a null mag.
fn fixture_sql(rows: i64) -> String {
    format!(
        "create table objects (id bigint primary key, object_id text not null, \
           ra double precision, dec double precision, mag real, ndet integer, big bigint); \
         insert into objects select i, 'ZTF' || lpad(i::text, 9, '0'), \
           (i * 7.3)::numeric % 360, ((i * 3.1)::numeric % 180) - 90, \
           15 + (i % 70) / 10.0, i % 20, 9223372036854775807 - i \
         from generate_series(1, {rows}) i; \
         update objects set mag = null where id = 7; \
         create table secrets (v text); insert into secrets values ('untouched'); \
         create table wide (id bigint primary key, object_id text, blob text); \
         insert into wide select i, 'W' || i, repeat('x', 100000) from generate_series(1, 40) i;"
    )
}

fn config(pg: &Postgres, statement_timeout_ms: u64) -> String {
    let pw = pg.dir().join("pw");
    format!(
        r#"
[[databases]]
name = "archive"
url = "{url}"
password_file = "{pw}"
pool_size = 4
statement_timeout_ms = 5000
connect_timeout_ms = 2000

[[databases]]
name = "slow"
url = "{url}"
password_file = "{pw}"
statement_timeout_ms = {statement_timeout_ms}

[[queries]]
name = "objects"
database = "archive"
table = "objects"
namespace = "ZTF"
key = "object_id"
order = "id"
ra = "ra"
dec = "dec"
columns = ["id", "object_id", "ra", "dec", "mag", "ndet", "big"]
public = true
poll_interval_ms = 200

[[queries]]
name = "wide"
database = "archive"
table = "wide"
namespace = "ZTF"
key = "object_id"
order = "id"
columns = ["id", "object_id", "blob"]
public = true

[[queries]]
name = "sleepy"
database = "slow"
select = "SELECT o.id, o.object_id FROM objects o, pg_sleep(2) s"
namespace = "ZTF"
key = "object_id"
order = "id"
columns = ["id", "object_id"]
public = true
"#,
        url = pg.url("postgres"),
        pw = pw.display()
    )
}

async fn site() -> Result<Option<Site>> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(None);
    };
    pg.psql(&fixture_sql(ROWS))?;
    let broker = Broker::start("query").await?;
    let spec = GatewaySpec::new("lasair", &broker.bootstrap()).extra(&config(&pg, 300));
    let gateway = Gateway::start(&spec).await?;
    Ok(Some(Site {
        pg,
        _broker: broker,
        gateway,
    }))
}

fn request(name: &str) -> v1::QueryRequest {
    v1::QueryRequest {
        name: name.into(),
        ..Default::default()
    }
}

/// What a stream delivered: alerts, the last resume token, and how it ended.
#[derive(Debug, Default)]
struct Got {
    alerts: Vec<v1::Alert>,
    token: String,
    end: Option<Result<(), tonic::Status>>,
}

/// Reads a Query stream until it ends, `want` alerts arrived, or `within` passed.
async fn query(client: &mut Client, req: v1::QueryRequest, want: usize, within: Duration) -> Got {
    let mut got = Got::default();
    let deadline = Instant::now() + within;
    let mut stream = match client.query(req).await {
        Ok(s) => s.into_inner(),
        Err(status) => {
            got.end = Some(Err(status));
            return got;
        }
    };
    while got.alerts.len() < want {
        match tokio::time::timeout_at(deadline.into(), stream.message()).await {
            Err(_) => break,
            Ok(Ok(Some(batch))) => {
                got.alerts.extend(batch.alerts);
                got.token = batch.resume_token;
            }
            Ok(Ok(None)) => {
                got.end = Some(Ok(()));
                break;
            }
            Ok(Err(status)) => {
                got.end = Some(Err(status));
                break;
            }
        }
    }
    got
}

fn json(alert: &v1::Alert) -> Result<serde_json::Value> {
    let bytes = if alert.json.is_empty() {
        &alert.payload
    } else {
        &alert.json
    };
    Ok(serde_json::from_slice(bytes)?)
}

/// (id, object_id, big) of each alert, `big` as text so it stays exact.
fn triples(alerts: &[v1::Alert]) -> Result<Vec<(i64, String, String)>> {
    alerts
        .iter()
        .map(|a| {
            let v = json(a)?;
            let id = v["id"]
                .as_i64()
                .ok_or_else(|| anyhow::anyhow!("id in {v}"))?;
            ensure!(
                a.offset == id,
                "offset {} is the order value {id}",
                a.offset
            );
            let big = &v["big"];
            ensure!(big.is_u64() || big.is_i64(), "big is an integer: {big}");
            Ok((
                id,
                v["object_id"].as_str().unwrap_or("").to_owned(),
                big.to_string(),
            ))
        })
        .collect()
}

fn psql_triples(pg: &Postgres, where_sql: &str) -> Result<Vec<(i64, String, String)>> {
    pg.psql(&format!(
        "select id, object_id, big from objects where {where_sql} order by id"
    ))?
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        Ok((f[0].parse()?, f[1].to_owned(), f[2].to_owned()))
    })
    .collect()
}

#[tokio::test]
async fn postgres_fixture_serves_a_fresh_cluster_and_restarts() -> Result<()> {
    let Some(mut pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    pg.psql("create table t (id bigint primary key); insert into t values (9223372036854775807)")?;
    assert_eq!(pg.psql("select id from t")?.trim(), "9223372036854775807");
    pg.stop().await?;
    assert!(pg.psql("select 1").is_err(), "a stopped server answers");
    pg.start().await?;
    assert_eq!(pg.psql("select count(*) from t")?.trim(), "1");
    Ok(())
}

#[tokio::test]
async fn query_results_equal_psql_with_exact_int64_and_refs_that_fetch_resolves() -> Result<()> {
    let Some(s) = site().await? else {
        return Ok(());
    };
    let mut client = s.gateway.client().await?;

    // Every row, in small batches, native output.
    let mut req = request("objects");
    req.max_batch_alerts = 64;
    let all = query(&mut client, req, usize::MAX, WAIT).await;
    ensure!(matches!(all.end, Some(Ok(()))), "{:?}", all.end);
    assert_eq!(triples(&all.alerts)?, psql_triples(&s.pg, "true")?);
    assert_eq!(
        json(&all.alerts[0])?["big"].as_u64(),
        Some(9223372036854775806)
    );

    // A filter, JSON output; null mag (row 7) never matches a comparison, but matches a
    // negated one.
    let mut req = request("objects");
    req.r#where = "mag < 18.5 && ndet >= 3 || object_id == \"ZTF000000005\"".into();
    req.output = v1::Output::Json as i32;
    let got = query(&mut client, req, usize::MAX, WAIT).await;
    ensure!(matches!(got.end, Some(Ok(()))), "{:?}", got.end);
    assert!(got
        .alerts
        .iter()
        .all(|a| a.payload.is_empty() && !a.json.is_empty()));
    assert_eq!(
        triples(&got.alerts)?,
        psql_triples(
            &s.pg,
            "(mag < 18.5 and ndet >= 3) or object_id = 'ZTF000000005'"
        )?
    );
    let mut req = request("objects");
    req.r#where = "!(mag < 100)".into();
    let got = query(&mut client, req, usize::MAX, WAIT).await;
    assert_eq!(triples(&got.alerts)?, psql_triples(&s.pg, "mag is null")?);

    // ids, and a limit.
    let mut req = request("objects");
    req.ids = vec![
        "ZTF:ZTF000000003".into(),
        "ZTF:ZTF000000999".into(),
        "LSST:dia:3".into(),
    ];
    req.limit = Some(1);
    let got = query(&mut client, req, usize::MAX, WAIT).await;
    assert_eq!(triples(&got.alerts)?, psql_triples(&s.pg, "id = 3")?);
    assert_eq!(got.alerts[0].mesh_key, "ZTF:ZTF000000003");

    // Cones across RA 0 and around the north pole, against the exact distance of every row.
    let positions: Vec<(i64, f64, f64)> =
        s.pg.psql("select id, ra, dec from objects order by id")?
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                )
            })
            .collect();
    for (ra, dec, r) in [
        (359.0, 10.0, 8.0),
        (0.5, -20.0, 15.0),
        (100.0, 85.0, 9.0),
        (200.0, 30.0, 20.0),
    ] {
        let mut req = request("objects");
        req.cone = Some(v1::Cone { ra, dec, radius: r });
        let got = query(&mut client, req, usize::MAX, WAIT).await;
        ensure!(matches!(got.end, Some(Ok(()))), "{:?}", got.end);
        let ids: Vec<i64> = triples(&got.alerts)?.into_iter().map(|t| t.0).collect();
        let want: Vec<i64> = positions
            .iter()
            .filter(|(_, pra, pdec)| angular_distance(ra, dec, *pra, *pdec) <= r)
            .map(|p| p.0)
            .collect();
        ensure!(!want.is_empty(), "cone ({ra}, {dec}, {r}) should hold rows");
        assert_eq!(ids, want, "cone ({ra}, {dec}, {r})");
    }

    // Fetch resolves a row's ref to the same alert.
    let one = &all.alerts[41];
    let fetched = client
        .fetch(v1::FetchRequest {
            r#ref: one.r#ref.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        fetched.r#ref,
        format!("am://lasair/query:objects/{}", one.offset)
    );
    assert_eq!(fetched.payload, one.payload);
    let missing = client
        .fetch(v1::FetchRequest {
            r#ref: "am://lasair/query:objects/123456789".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // The catalog lists the query with its columns.
    let topics = client
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner();
    let q = topics
        .queries
        .iter()
        .find(|q| q.name == "objects")
        .expect("listed");
    assert_eq!(
        q.columns,
        ["id", "object_id", "ra", "dec", "mag", "ndet", "big"]
    );
    assert_eq!((q.order.as_str(), q.ra.as_str()), ("id", "ra"));
    let described = client
        .describe_gateway(v1::DescribeGatewayRequest {})
        .await?
        .into_inner();
    let names: Vec<&str> = described.queries.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["objects", "sleepy", "wide"]);
    Ok(())
}

#[tokio::test]
async fn a_resume_token_continues_after_kill_9_without_gaps_or_repeats() -> Result<()> {
    let Some(mut s) = site().await? else {
        return Ok(());
    };
    let mut client = s.gateway.client().await?;
    let filter = "ndet != 4";
    let mut req = request("objects");
    req.r#where = filter.into();
    req.max_batch_alerts = 50;
    // Stop reading mid-stream, after a few batches.
    let first = query(&mut client, req.clone(), 150, WAIT).await;
    ensure!(
        first.alerts.len() >= 150 && first.end.is_none(),
        "{:?}",
        first.end
    );
    let token = first.token.clone();
    let delivered: usize = first.alerts.len();

    s.gateway.kill_and_restart().await?;
    let mut client = s.gateway.client().await?;
    let mut again = req.clone();
    again.resume_token = token.clone();
    let rest = query(&mut client, again, usize::MAX, WAIT).await;
    ensure!(matches!(rest.end, Some(Ok(()))), "{:?}", rest.end);

    let mut ids: Vec<i64> = triples(&first.alerts[..delivered])?
        .into_iter()
        .map(|t| t.0)
        .collect();
    ids.extend(triples(&rest.alerts)?.into_iter().map(|t| t.0));
    let want: Vec<i64> = psql_triples(&s.pg, "ndet <> 4")?
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(ids, want, "no gap, no repeat");

    // The token of another filter, a damaged one and junk are refused.
    let mut foreign = request("objects");
    foreign.r#where = "ndet != 5".into();
    foreign.resume_token = token.clone();
    for bad in [
        foreign,
        {
            let mut r = req.clone();
            r.resume_token = format!("{token}x");
            r
        },
        {
            let mut r = req.clone();
            r.resume_token = "' OR 1=1 --".into();
            r
        },
    ] {
        let got = query(&mut client, bad, 1, WAIT).await;
        match got.end {
            Some(Err(st)) => {
                assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
                assert!(st.message().contains("resume_token"), "{st:?}");
            }
            other => bail!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    Ok(())
}

/// The ids of the first `n` rows a follow stream sends, within [`WAIT`].
async fn follow_ids(stream: &mut tonic::Streaming<v1::QueryBatch>, n: usize) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + WAIT;
    while ids.len() < n {
        let batch = tokio::time::timeout_at(deadline.into(), stream.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("a follow stream ended"))?;
        ids.extend(triples(&batch.alerts)?.into_iter().map(|t| t.0));
    }
    Ok(ids)
}

#[tokio::test]
async fn follow_streams_rows_inserted_later_once_each() -> Result<()> {
    let Some(s) = site().await? else {
        return Ok(());
    };
    let mut client = s.gateway.client().await?;
    let mut req = request("objects");
    req.follow = true;
    req.r#where = "id > 990".into();
    let mut stream = client.query(req).await?.into_inner();
    // A stream with nothing to send at first goes on polling too.
    let mut empty_first = request("objects");
    empty_first.follow = true;
    empty_first.r#where = format!("id > {ROWS}");
    let mut later = client.query(empty_first).await?.into_inner();
    let inserter = {
        let sql: Vec<String> = (0..5)
            .map(|k| {
                let lo = ROWS + 1 + k * 10;
                format!(
                    "insert into objects select i, 'ZTF' || i, 1, 1, 17, 3, i from generate_series({lo}, {}) i",
                    lo + 9
                )
            })
            .collect();
        let pg = &s.pg;
        async move {
            for stmt in sql {
                tokio::time::sleep(Duration::from_millis(150)).await;
                pg.psql(&stmt)?;
            }
            anyhow::Ok(())
        }
    };
    let (inserted, ids, later_ids) = tokio::join!(
        inserter,
        follow_ids(&mut stream, 60),
        follow_ids(&mut later, 50)
    );
    inserted?;
    let ids = ids?;
    let want: Vec<i64> = (991..=ROWS + 50).collect();
    assert_eq!(
        ids, want,
        "existing rows, then the inserted ones, each once"
    );
    let want: Vec<i64> = (ROWS + 1..=ROWS + 50).collect();
    assert_eq!(later_ids?, want, "only the inserted rows, each once");
    // Nothing more arrives.
    let more = tokio::time::timeout(Duration::from_millis(700), stream.message()).await;
    assert!(more.is_err(), "no more rows: {more:?}");
    Ok(())
}

/// Non-finite doubles come as the bare tokens Python's `json` reads as floats when asked
/// for (`json_bare_nonfinite`), so that a reader can tell them from a text column holding
/// the same word, which stays a string; without the option they are strings, as JSON has
/// no literal for them.
#[tokio::test]
async fn nonfinite_doubles_are_bare_tokens_when_asked_and_text_stays_text() -> Result<()> {
    let Some(s) = site().await? else {
        return Ok(());
    };
    s.pg.psql(&format!(
        "insert into objects values ({id}, 'NaN', 'Infinity', 0, 'NaN', 1, 0)",
        id = ROWS + 1
    ))?;
    let mut client = s.gateway.client().await?;
    for bare in [false, true] {
        let mut req = request("objects");
        req.r#where = format!("id > {ROWS}");
        req.output = v1::Output::Json as i32;
        req.json_bare_nonfinite = bare;
        let got = query(&mut client, req, 1, WAIT).await;
        ensure!(got.alerts.len() == 1, "bare {bare}: {got:?}");
        let a = &got.alerts[0];
        let json = String::from_utf8(a.json.to_vec())?;
        let (ra, mag) = if bare {
            ("\"ra\":Infinity", "\"mag\":NaN")
        } else {
            ("\"ra\":\"Infinity\"", "\"mag\":\"NaN\"")
        };
        ensure!(
            a.json_bare_nonfinite == bare
                && json.contains("\"object_id\":\"NaN\"")
                && json.contains(ra)
                && json.contains(mag),
            "bare {bare}: {json} (says bare: {})",
            a.json_bare_nonfinite
        );
    }
    Ok(())
}

/// Rows of `objects` PostgreSQL has read for statements so far (sequential and index
/// scans), from its statistics (sent by each connection about once a second).
fn rows_read(pg: &alertmesh_tests::Postgres) -> Result<i64> {
    let out = pg.psql(
        "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) \
         from pg_stat_user_tables where relname = 'objects'",
    )?;
    Ok(out.trim().parse()?)
}

/// A follow stream whose filter matches nothing new does not read the table again at every
/// poll: once a poll has looked at the rows there were, the next starts after them (it
/// used to start after the last row sent, so a rare filter on a growing table had each
/// poll read every row since). A row that matches is still sent.
#[tokio::test]
async fn a_follow_poll_that_finds_nothing_does_not_read_the_same_rows_again() -> Result<()> {
    let Some(s) = site().await? else {
        return Ok(());
    };
    let mut client = s.gateway.client().await?;
    let mut req = request("objects");
    req.follow = true;
    req.r#where = "mag < 0".into();
    let mut stream = client.query(req).await?.into_inner();
    // A few polls (every 200 ms) for the first one to have read the table, and the
    // statistics of the connections to have been sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rows_read(&s.pg)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = rows_read(&s.pg)? - before;
    eprintln!("rows read in 4 s of polls: {during}");
    // Twenty polls: each reading the 1,000 rows was 20,000.
    assert!(
        during < ROWS,
        "{during} rows read in 4 s of polls that found nothing new"
    );
    s.pg.psql(&format!(
        "insert into objects values ({id}, 'ZTF{id}', 1, 1, -1, 3, 0)",
        id = ROWS + 1
    ))?;
    let ids = follow_ids(&mut stream, 1).await?;
    assert_eq!(ids, vec![ROWS + 1]);
    Ok(())
}

#[tokio::test]
async fn bad_requests_and_injection_attempts_are_clear_errors_and_touch_nothing() -> Result<()> {
    let Some(s) = site().await? else {
        return Ok(());
    };
    let mut client = s.gateway.client().await?;
    let refusal = |got: Got| match got.end {
        Some(Err(st)) => Ok(st),
        other => bail!(
            "expected an error, got {other:?} after {} alerts",
            got.alerts.len()
        ),
    };

    let st = refusal(
        query(
            &mut client,
            request("nope\"; drop table objects; --"),
            1,
            WAIT,
        )
        .await,
    )?;
    assert_eq!(st.code(), Code::NotFound, "{st:?}");
    assert!(
        st.message().contains("objects"),
        "names the served queries: {st:?}"
    );

    for (filter, names) in [
        ("secret < 1", "secret"),
        ("v == \"x\"", "\"v\""),
        ("candidate.magpsf < 18", "candidate.magpsf"),
        ("mag <", "where"),
        ("object_id == 1", "object_id"),
        ("mag < 1; drop table objects", "where"),
    ] {
        let mut req = request("objects");
        req.r#where = filter.into();
        let st = refusal(query(&mut client, req, 1, WAIT).await)?;
        assert_eq!(st.code(), Code::InvalidArgument, "{filter}: {st:?}");
        assert!(st.message().contains(names), "{filter}: {st:?}");
    }

    // Strings that would be SQL if spliced: as values they match nothing.
    for hostile in [
        "x' OR '1'='1",
        "'; DROP TABLE objects; --",
        "\\'; delete from secrets; --",
        "ZTF000000001' --",
    ] {
        let mut req = request("objects");
        req.r#where = format!("object_id == {hostile:?}");
        let got = query(&mut client, req, usize::MAX, WAIT).await;
        ensure!(
            matches!(got.end, Some(Ok(()))) && got.alerts.is_empty(),
            "{hostile}: {got:?}"
        );
        let mut req = request("objects");
        req.ids = vec![format!("ZTF:{hostile}")];
        let got = query(&mut client, req, usize::MAX, WAIT).await;
        ensure!(
            matches!(got.end, Some(Ok(()))) && got.alerts.is_empty(),
            "{hostile}: {got:?}"
        );
    }
    let mut req = request("objects");
    req.cone = Some(v1::Cone {
        ra: f64::NAN,
        dec: 100.0,
        radius: 1.0,
    });
    assert_eq!(
        refusal(query(&mut client, req, 1, WAIT).await)?.code(),
        Code::InvalidArgument
    );
    let mut req = request("objects");
    req.limit = Some(0);
    assert_eq!(
        refusal(query(&mut client, req, 1, WAIT).await)?.code(),
        Code::InvalidArgument
    );
    let bad_ref = client
        .fetch(v1::FetchRequest {
            r#ref: "am://lasair/query:objects'--/1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_ref.code(), Code::NotFound, "{bad_ref:?}");

    assert_eq!(
        s.pg.psql("select count(*) from objects")?.trim(),
        ROWS.to_string()
    );
    assert_eq!(s.pg.psql("select v from secrets")?.trim(), "untouched");
    Ok(())
}

#[tokio::test]
async fn statement_timeout_is_deadline_exceeded_and_a_down_database_unavailable() -> Result<()> {
    let Some(mut s) = site().await? else {
        return Ok(());
    };
    let mut client = s.gateway.client().await?;
    let got = query(&mut client, request("sleepy"), 1, WAIT).await;
    match got.end {
        Some(Err(st)) => {
            assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
            assert!(
                st.message().contains("statement_timeout_ms = 300"),
                "{st:?}"
            );
        }
        other => bail!("expected DEADLINE_EXCEEDED, got {other:?}"),
    }

    // Warm a pooled connection, then take the database away.
    let ok = query(&mut client, request("objects"), 1, WAIT).await;
    ensure!(!ok.alerts.is_empty(), "{:?}", ok.end);
    s.pg.stop().await?;
    let started = Instant::now();
    let got = query(&mut client, request("objects"), 1, WAIT).await;
    match got.end {
        Some(Err(st)) => {
            assert_eq!(st.code(), Code::Unavailable, "{st:?}");
            // It names the database, and does not blame Kafka.
            assert!(
                st.message().contains("database \"archive\"") && !st.message().contains("kafka"),
                "{st:?}"
            );
        }
        other => bail!("expected UNAVAILABLE, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // The gateway still serves everything else.
    client.list_topics(v1::ListTopicsRequest {}).await?;
    s.pg.start().await?;
    let back = query(&mut client, request("objects"), 1, WAIT).await;
    ensure!(
        !back.alerts.is_empty(),
        "served again once the database is back: {:?}",
        back.end
    );
    Ok(())
}

/// The `id` of each JSON line the CLI printed (`--format json`: the row under "alert").
fn cli_ids(lines: &[serde_json::Value]) -> Result<Vec<i64>> {
    lines
        .iter()
        .map(|l| {
            l["alert"]["id"]
                .as_i64()
                .ok_or_else(|| anyhow::anyhow!("no alert.id in {l}"))
        })
        .collect()
}

#[tokio::test]
async fn the_cli_streams_a_query_and_resumes_by_itself_after_kill_9() -> Result<()> {
    use tokio::io::AsyncBufReadExt as _;

    let Some(mut s) = site().await? else {
        return Ok(());
    };
    let out = s
        .gateway
        .cli(&[
            "query",
            "objects",
            "--where",
            "mag < 16 && ndet > 2",
            "--limit",
            "40",
        ])
        .await?;
    let lines = alertmesh_tests::cli::json_lines(&out)?;
    let want: Vec<i64> = psql_triples(&s.pg, "mag < 16 and ndet > 2")?
        .into_iter()
        .map(|t| t.0)
        .take(40)
        .collect();
    assert_eq!(cli_ids(&lines)?, want);
    // 64-bit integers keep every digit.
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains(&format!("\"big\":{}", i64::MAX - want[0])),
        "{text}"
    );

    let fetched = s
        .gateway
        .cli(&["fetch", "am://lasair/query:objects/5", "--format", "json"])
        .await?;
    let line = alertmesh_tests::cli::json_lines(&fetched)?;
    assert_eq!(line[0]["alert"]["object_id"], "ZTF000000005", "{line:?}");

    let topics = s.gateway.cli(&["topics"]).await?;
    let listing = String::from_utf8_lossy(&topics.stdout);
    assert!(
        listing.contains("objects") && listing.contains("object_id"),
        "{listing}"
    );

    // A following stream survives the gateway's kill -9 and restart.
    let mut child = tokio::process::Command::new(alertmesh_tests::cli::alertmesh_bin())
        .args(["query", "objects", "--follow", "--where", "id > 995"])
        .args(["--gateway", &s.gateway.grpc_url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut ids = Vec::new();
    let deadline = Instant::now() + WAIT;
    while ids.len() < 5 {
        let l = tokio::time::timeout_at(deadline.into(), lines.next_line()).await??;
        ids.push(cli_ids(&[serde_json::from_str(&l.unwrap_or_default())?])?[0]);
    }
    s.gateway.kill_and_restart().await?;
    s.pg.psql(&format!(
        "insert into objects select i, 'ZTF' || i, 1, 1, 17, 3, i from generate_series({}, {}) i",
        ROWS + 1,
        ROWS + 10
    ))?;
    while ids.len() < 15 {
        let l = tokio::time::timeout_at(deadline.into(), lines.next_line()).await??;
        ids.push(cli_ids(&[serde_json::from_str(&l.unwrap_or_default())?])?[0]);
    }
    assert_eq!(ids, (996..=ROWS + 10).collect::<Vec<i64>>());
    child.kill().await?;
    Ok(())
}

/// A gateway with JWT (no mutual TLS) serving the fixture's 20 objects as the private
/// query `private.objects`, besides the public ones.
struct PrivateSite {
    _pg: Postgres,
    _broker: Broker,
    _pki: alertmesh_tests::auth::Pki,
    gw: alertmesh_tests::auth::Secure,
}

async fn private_site(name: &str) -> Result<Option<PrivateSite>> {
    use alertmesh_tests::auth::{Pki, Secure, SecureSpec};

    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(None);
    };
    pg.psql(&fixture_sql(20))?;
    let broker = Broker::start(name).await?;
    let private = config(&pg, 300)
        .replace("name = \"objects\"", "name = \"private.objects\"")
        .replace("public = true\npoll", "public = false\npoll");
    let pki = Pki::new()?;
    let spec = SecureSpec::new("lasair", &broker.bootstrap())
        .without_mtls()
        .extra(&private);
    let gw = Secure::start(&pki, spec).await?;
    Ok(Some(PrivateSite {
        _pg: pg,
        _broker: broker,
        _pki: pki,
        gw,
    }))
}

#[tokio::test]
async fn a_private_query_needs_a_query_scope_and_a_public_one_no_token() -> Result<()> {
    let Some(site) = private_site("query-auth").await? else {
        return Ok(());
    };
    let gw = &site.gw;

    let read = |mut client: alertmesh_tests::auth::Client, name: &'static str| async move {
        let mut stream = client.query(request(name)).await?.into_inner();
        let mut n = 0;
        while let Some(b) = stream.message().await? {
            n += b.alerts.len();
        }
        Ok::<usize, tonic::Status>(n)
    };
    let mut anonymous = gw.client(None, None).await?;
    let listed = anonymous
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner();
    let names: Vec<&str> = listed.queries.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names,
        ["sleepy", "wide"],
        "a private query is listed only with a token"
    );
    let st = read(anonymous.clone(), "private.objects")
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");
    // The public query of the same gateway needs no token.
    let st = read(anonymous, "sleepy").await.unwrap_err();
    assert_eq!(
        st.code(),
        Code::DeadlineExceeded,
        "public, then too slow: {st:?}"
    );

    let topics_only = gw.issue("alice", &["subscribe:*", "fetch:*"], "1h").await?;
    let st = read(
        gw.client(None, Some(&topics_only)).await?,
        "private.objects",
    )
    .await
    .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
    assert!(st.message().contains("query"), "names the scope: {st:?}");

    let scoped = gw.issue("bob", &["query:private.*"], "1h").await?;
    let mut client = gw.client(None, Some(&scoped)).await?;
    let listed = client
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner();
    assert_eq!(listed.queries.len(), 3);
    assert_eq!(read(client.clone(), "private.objects").await?, 20);
    let alert = client
        .fetch(v1::FetchRequest {
            r#ref: "am://lasair/query:private.objects/3".into(),
        })
        .await?
        .into_inner();
    assert_eq!(json(&alert)?["id"], 3);
    Ok(())
}

/// A `follow` stream re-checks its token as a Subscribe stream does: revoking the token
/// ends it with UNAUTHENTICATED within seconds, instead of serving new rows to a revoked
/// caller for as long as the connection lasts.
#[tokio::test]
async fn revoking_the_token_ends_an_open_follow_query() -> Result<()> {
    let Some(site) = private_site("query-revoke").await? else {
        return Ok(());
    };
    let gw = &site.gw;
    let token = gw.issue("bob", &["query:private.*"], "1h").await?;
    let mut client = gw.client(None, Some(&token)).await?;
    let mut req = request("private.objects");
    req.follow = true;
    let mut stream = client.query(req).await?.into_inner();
    let mut rows = 0;
    while rows < 20 {
        let batch = tokio::time::timeout(WAIT, stream.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("the follow stream ended after {rows} rows"))?;
        rows += batch.alerts.len();
    }

    let out = gw
        .creds(&["revoke", &alertmesh_tests::auth::jti_of(&token)?])
        .await?;
    ensure!(
        out.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let status = alertmesh_tests::client::end_status(&mut stream, Duration::from_secs(10)).await?;
    let took = revoked_at.elapsed();
    ensure!(status.code() == Code::Unauthenticated, "{status:?}");
    ensure!(status.message().contains("revoked"), "{status:?}");
    ensure!(took < Duration::from_secs(5), "took {took:?}");
    Ok(())
}

/// Query streams count against the subscriptions' per-connection limit (apart from
/// subscriptions), and a client that takes nothing for `limits.unread_drop_ms` has its
/// stream ended with RESOURCE_EXHAUSTED after what was queued, losing nothing: its last
/// resume token continues where it stopped.
#[tokio::test]
async fn query_streams_have_a_share_per_connection_and_an_unread_deadline() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    pg.psql(&fixture_sql(20))?;
    // 40 MB of wide rows: more than the HTTP/2 windows hold for a client that reads nothing.
    pg.psql(
        "insert into wide select i, 'W' || i, repeat('x', 100000) from generate_series(41, 400) i;",
    )?;
    let broker = Broker::start("query-quota").await?;
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .extra(&config(&pg, 300))
        .extra(
            "[limits]\nmax_subscriptions_per_connection = 2\nunread_pause_ms = 500\n\
             unread_drop_ms = 1500\n",
        );
    let gateway = Gateway::start(&spec).await?;

    let mut client = gateway.client().await?;
    let mut follow = request("objects");
    follow.follow = true;
    let first = client.query(follow.clone()).await?.into_inner();
    let _second = client.query(follow.clone()).await?.into_inner();
    let refused = client.query(follow.clone()).await.unwrap_err();
    ensure!(refused.code() == Code::ResourceExhausted, "{refused:?}");
    ensure!(
        refused.message().contains("query streams")
            && refused
                .message()
                .contains("limits.max_subscriptions_per_connection"),
        "{refused:?}"
    );
    // Another connection has its own share.
    let mut other = gateway.client().await?;
    drop(other.query(follow.clone()).await?.into_inner());
    // A stream that ends gives its place back.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        match client.query(follow.clone()).await {
            Ok(_) => break,
            Err(s) if s.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => bail!("the ended stream's place did not come back: {s:?}"),
        }
    }

    // A client that reads nothing.
    let mut reader = gateway.client().await?;
    let mut wide = request("wide");
    wide.max_batch_alerts = 1;
    let mut stream = reader.query(wide.clone()).await?.into_inner();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (mut ids, mut token) = (Vec::new(), String::new());
    let end = loop {
        match tokio::time::timeout(WAIT, stream.message()).await? {
            Ok(Some(batch)) => {
                for a in &batch.alerts {
                    ids.push(json(a)?["id"].as_i64().unwrap_or_default());
                }
                token = batch.resume_token;
            }
            Ok(None) => bail!("the stream ended without an error after {} rows", ids.len()),
            Err(status) => break status,
        }
    };
    ensure!(end.code() == Code::ResourceExhausted, "{end:?}");
    ensure!(end.message().contains("limits.unread_drop_ms"), "{end:?}");
    ensure!(
        !ids.is_empty() && ids.len() < 400,
        "{} rows before the end",
        ids.len()
    );
    // Nothing lost: the last token continues after the last row received.
    wide.resume_token = token;
    let rest = query(&mut reader, wide, usize::MAX, WAIT).await;
    ensure!(matches!(rest.end, Some(Ok(()))), "{:?}", rest.end);
    for a in &rest.alerts {
        ids.push(json(a)?["id"].as_i64().unwrap_or_default());
    }
    assert_eq!(ids, (1..=400).collect::<Vec<i64>>());
    Ok(())
}

#[tokio::test]
async fn large_rows_come_in_batches_near_max_batch_bytes() -> Result<()> {
    let Some(s) = site().await? else {
        return Ok(());
    };
    let mut client = s.gateway.client().await?;
    let mut stream = client.query(request("wide")).await?.into_inner();
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    while let Some(batch) = stream.message().await? {
        sizes.push(batch.alerts.len());
        ids.extend(triples_of(&batch.alerts)?);
    }
    assert_eq!(ids, (1..=40).collect::<Vec<i64>>());
    // 100 KB rows and the default 1 MiB batches: about ten rows each, after the first.
    assert!(sizes.iter().all(|&n| n <= 16), "{sizes:?}");
    assert!(sizes[1..].iter().all(|&n| n <= 11), "{sizes:?}");
    Ok(())
}

fn triples_of(alerts: &[v1::Alert]) -> Result<Vec<i64>> {
    alerts
        .iter()
        .map(|a| {
            json(a)?["id"]
                .as_i64()
                .ok_or_else(|| anyhow::anyhow!("no id"))
        })
        .collect()
}

/// A client that goes away while its statement runs: the statement is cancelled on the
/// server, not left running on a connection the next caller would be handed (and wait
/// behind, holding no slot of its own).
#[tokio::test]
async fn a_statement_whose_client_left_is_cancelled_not_left_on_a_pooled_connection() -> Result<()>
{
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    pg.psql(&fixture_sql(ROWS))?;
    let broker = Broker::start("query").await?;
    let extra = format!(
        "{}\n[[queries]]\nname = \"sleepier\"\ndatabase = \"slow\"\n\
         select = \"SELECT o.id, o.object_id FROM objects o, pg_sleep(30) s\"\n\
         namespace = \"ZTF\"\nkey = \"object_id\"\norder = \"id\"\ncolumns = [\"id\", \"object_id\"]\n\
         public = true\n",
        config(&pg, 60_000)
    );
    let gateway =
        Gateway::start(&GatewaySpec::new("lasair", &broker.bootstrap()).extra(&extra)).await?;
    let running = || -> Result<usize> {
        Ok(pg
            .psql(
                "select count(*) from pg_stat_activity where state = 'active' \
                 and query like '%pg_sleep(30)%' and pid <> pg_backend_pid()",
            )?
            .trim()
            .parse()?)
    };
    let mut client = gateway.client().await?;
    let stream = client.query(request("sleepier")).await?.into_inner();
    alertmesh_tests::process::wait_until("the statement runs", WAIT, || async {
        (running().ok()? == 1).then_some(())
    })
    .await?;
    // The client goes: its stream and its connection close.
    drop(stream);
    drop(client);
    alertmesh_tests::process::wait_until(
        "the abandoned statement is cancelled",
        Duration::from_secs(10),
        || async { (running().ok()? == 0).then_some(()) },
    )
    .await?;
    // The pool still serves.
    let mut client = gateway.client().await?;
    let got = query(&mut client, request("objects"), 1, WAIT).await;
    ensure!(!got.alerts.is_empty(), "{:?}", got.end);
    Ok(())
}

/// Clients that open query streams over large rows and read nothing (a tiny HTTP/2
/// window, never released): each stream's batches and statements start small and grow
/// only while its client takes them. 120 such streams took the gateway from 33 MiB to
/// 1.4 GiB (three 4 MiB statements and two 1 MiB batches each); now about 260 MiB.
#[tokio::test]
async fn query_streams_whose_clients_read_nothing_stay_small() -> Result<()> {
    use prost::Message as _;
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    pg.psql(&fixture_sql(ROWS))?;
    // 40 MB of 100 KB rows.
    pg.psql(
        "create table huge (id bigint primary key, object_id text, blob text); \
         insert into huge select i, 'H' || i, repeat('x', 100000) from generate_series(1, 400) i;",
    )?;
    let broker = Broker::start("query").await?;
    let extra = format!(
        "{}\n[[queries]]\nname = \"huge\"\ndatabase = \"archive\"\ntable = \"huge\"\n\
         namespace = \"ZTF\"\nkey = \"object_id\"\norder = \"id\"\n\
         columns = [\"id\", \"object_id\", \"blob\"]\npublic = true\n",
        config(&pg, 5_000)
    );
    let gateway =
        Gateway::start(&GatewaySpec::new("lasair", &broker.bootstrap()).extra(&extra)).await?;
    let pid = gateway.pid().context("gateway pid")?;
    let addr = gateway.grpc_addr();
    let before = alertmesh_tests::process::rss_bytes(pid)?;
    let msg = request("huge").encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let body = bytes::Bytes::from(body);
    let (mut held, mut senders) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(&addr).await?;
        let (mut send, connection) = h2::client::Builder::new()
            .initial_window_size(1024)
            .initial_connection_window_size(1 << 20)
            .handshake::<_, bytes::Bytes>(tcp)
            .await?;
        tokio::spawn(connection);
        for _ in 0..60 {
            send = send.ready().await?;
            let head = alertmesh_tests::h2c::grpc_head(&addr, "/alertmesh.v1.AlertMesh/Query");
            let (response, mut stream) = send.send_request(head, false)?;
            stream.send_data(body.clone(), true)?;
            held.push((response, stream));
        }
        senders.push(send);
    }
    let mut peak = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(alertmesh_tests::process::rss_bytes(pid)?);
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "120 unread query streams over 100 KB rows: RSS {} MiB -> {} MiB",
        before >> 20,
        peak >> 20
    );
    ensure!(grown < 600 << 20, "the gateway grew by {} MiB", grown >> 20);
    // A client that reads gets the whole result meanwhile.
    let mut client = gateway.client().await?;
    let mut stream = client.query(request("huge")).await?.into_inner();
    let mut n = 0;
    while let Some(batch) = stream.message().await? {
        n += batch.alerts.len();
    }
    ensure!(n == 400, "{n} rows");
    drop((held, senders));
    Ok(())
}
