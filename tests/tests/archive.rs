//! Archives over a real PostgreSQL and a real Kafka: a topic kept in a table exactly once,
//! served as a query whose alerts are the originals, compared with `psql` on the same
//! database and with `Subscribe` on the same topic.

use std::collections::BTreeMap;

use alertmesh_alert::filter::angular_distance;
use alertmesh_proto::v1::{self, alert_mesh_client::AlertMeshClient};
use alertmesh_tests::client::{earliest, request as subscribe_request, subscribe_all, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_alerts, ztf_records};
use alertmesh_tests::kafka::{delete_below, deletes_records};
use alertmesh_tests::{cli::run_cli, Broker, Gateway, GatewaySpec, Postgres, WAIT};
use anyhow::{ensure, Context, Result};
use tonic::transport::Channel;
use tonic::Code;

type Client = AlertMeshClient<Channel>;

const TOPIC: &str = "ztf.alerts";

fn archive_config(pg: &Postgres, batch_rows: usize) -> String {
    format!(
        r#"
[[databases]]
name = "archive"
url = "{url}"
password_file = "{pw}"

[[archives]]
name = "ztf_archive"
topic = "{TOPIC}"
database = "archive"
table = "ztf_alerts"
query = "ztf_history"
public = true
ra = "ra"
dec = "dec"
batch_rows = {batch_rows}
batch_wait_ms = 20
poll_interval_ms = 200
columns = [
  {{ name = "candid", path = "candidate.candid", type = "int8" }},
  {{ name = "ra", path = "candidate.ra", type = "float8" }},
  {{ name = "dec", path = "candidate.dec", type = "float8" }},
  {{ name = "magpsf", path = "candidate.magpsf", type = "float8" }},
  {{ name = "fid", path = "candidate.fid", type = "int8" }},
  {{ name = "isdiffpos", path = "candidate.isdiffpos", type = "text" }},
  {{ name = "missing", path = "candidate.no_such_field", type = "bool" }},
]
"#,
        url = pg.url("postgres"),
        pw = pg.dir().join("pw").display()
    )
}

fn spec(broker: &Broker, pg: &Postgres, batch_rows: usize) -> GatewaySpec {
    GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(TOPIC, "ZTF", "avro-ocf")
        .extra(&archive_config(pg, batch_rows))
}

fn query_request(r#where: &str) -> v1::QueryRequest {
    v1::QueryRequest {
        name: "ztf_history".into(),
        r#where: r#where.into(),
        max_batch_alerts: 7,
        ..Default::default()
    }
}

/// Every alert of a Query stream that must end by itself.
async fn query_all(client: &mut Client, req: v1::QueryRequest) -> Result<Vec<v1::Alert>> {
    let mut stream = client.query(req).await?.into_inner();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.message()).await {
            Err(_) => anyhow::bail!("query stream did not end within {WAIT:?}"),
            Ok(Ok(Some(b))) => out.extend(b.alerts),
            Ok(Ok(None)) => return Ok(out),
            Ok(Err(status)) => return Err(status.into()),
        }
    }
}

/// Rows of `psql`, tab-split.
fn psql_rows(pg: &Postgres, sql: &str) -> Result<Vec<Vec<String>>> {
    Ok(pg
        .psql(sql)?
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

async fn wait_rows(pg: &Postgres, n: usize) -> Result<()> {
    // Ingest of a few thousand 60 KB alerts in a debug build on a loaded machine.
    let within = WAIT * 6;
    alertmesh_tests::process::wait_until("the archive holds every record", within, || async {
        let count: usize = pg
            .psql("select count(*) from ztf_alerts")
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (count >= n).then_some(())
    })
    .await
}

/// The ZTF fixtures (twice, 45 alerts) in two partitions of `TOPIC`, served by lasair with
/// their archive, once the archive holds them all.
async fn archived_fixtures(
    pg: &Postgres,
) -> Result<(Broker, Vec<alertmesh_tests::Record>, Gateway)> {
    let broker = Broker::start("archive").await?;
    broker.create_topic(TOPIC, 2).await?;
    let records = ztf_records(2, now_ms() - 60_000, 10)?;
    broker.produce_all(TOPIC, &records).await?;
    let gateway = Gateway::start(&spec(&broker, pg, 16)).await?;
    wait_rows(pg, records.len()).await?;
    Ok((broker, records, gateway))
}

#[tokio::test]
async fn an_archive_of_the_ztf_fixtures_answers_like_psql_with_the_original_alerts() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let (broker, records, mut gateway) = archived_fixtures(&pg).await?;
    let mut client = gateway.client().await?;

    // The extracted columns are the fixtures' own values (manifest candids, per position).
    let fixtures = ztf_alerts()?;
    let stored = psql_rows(
        &pg,
        "select kafka_partition, kafka_offset, object_id, candid, ref, missing is null \
         from ztf_alerts order by kafka_partition, kafka_offset",
    )?;
    assert_eq!(stored.len(), fixtures.len(), "one row per record");
    let mut next = BTreeMap::new();
    let mut by_candid = BTreeMap::new();
    for (i, f) in fixtures.iter().enumerate() {
        let p = i as i32 % 2;
        let o = next.entry(p).or_insert(0i64);
        by_candid.insert(f.candid, (p, *o, f));
        *o += 1;
    }
    for row in &stored {
        let candid: i64 = row[3].parse()?;
        let (p, o, f) = by_candid
            .get(&candid)
            .context("a stored candid is a fixture's")?;
        assert_eq!((row[0].parse::<i32>()?, row[1].parse::<i64>()?), (*p, *o));
        assert_eq!(row[2], f.object_id);
        assert_eq!(row[4], format!("am://lasair/{TOPIC}/{p}/{o}"));
        assert_eq!(row[5], "t", "a path the schema lacks is NULL");
    }

    // Native output is exactly what Subscribe sends for the same records.
    let mut sub = subscribe_request(TOPIC);
    sub.start = earliest();
    sub.end = until_now();
    let subscribed = subscribe_all(&mut client, sub.clone(), WAIT).await;
    ensure!(
        matches!(subscribed.end, Some(Ok(()))),
        "{:?}",
        subscribed.end
    );
    let by_ref: BTreeMap<&str, &v1::Alert> = subscribed
        .alerts
        .iter()
        .map(|a| (a.r#ref.as_str(), a))
        .collect();
    let all = query_all(&mut client, query_request("")).await?;
    assert_eq!(all.len(), records.len());
    for a in &all {
        assert_eq!(Some(&a), by_ref.get(a.r#ref.as_str()), "{}", a.r#ref);
    }
    // And JSON output is Subscribe's JSON output.
    sub.output = v1::Output::Json as i32;
    let subscribed_json = subscribe_all(&mut client, sub, WAIT).await;
    let json_by_ref: BTreeMap<&str, &v1::Alert> = subscribed_json
        .alerts
        .iter()
        .map(|a| (a.r#ref.as_str(), a))
        .collect();
    let mut req = query_request("");
    req.output = v1::Output::Json as i32;
    let all_json = query_all(&mut client, req).await?;
    assert_eq!(all_json.len(), records.len());
    for a in &all_json {
        assert!(a.payload.is_empty() && !a.json.is_empty());
        assert_eq!(Some(&a), json_by_ref.get(a.r#ref.as_str()), "{}", a.r#ref);
    }

    // Filters equal the same SQL in psql, in id order.
    for (filter, sql) in [
        ("magpsf < 18", "magpsf < 18"),
        (
            "fid == 2 && isdiffpos == \"t\" || candid == 1087249400515015009",
            "(fid = 2 and isdiffpos = 't') or candid = 1087249400515015009",
        ),
        ("!(magpsf < 100)", "magpsf is null"),
    ] {
        let got = query_all(&mut client, query_request(filter)).await?;
        let refs: Vec<&str> = got.iter().map(|a| a.r#ref.as_str()).collect();
        let want = psql_rows(
            &pg,
            &format!("select ref from ztf_alerts where {sql} order by id"),
        )?;
        let want: Vec<&str> = want.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(refs, want, "{filter}");
    }
    let bright = psql_rows(&pg, "select count(*) from ztf_alerts where magpsf < 18")?;
    ensure!(
        bright[0][0] != "0",
        "the fixtures hold alerts brighter than 18"
    );

    // A cone (brighter than 18 in it) equals the exact distance over psql's positions.
    let positions = psql_rows(
        &pg,
        "select ref, ra, dec, magpsf from ztf_alerts order by id",
    )?;
    let (ra0, dec0): (f64, f64) = (positions[0][1].parse()?, positions[0][2].parse()?);
    for radius in [0.01, 5.0, 40.0] {
        let mut req = query_request("magpsf < 18.5");
        req.cone = Some(v1::Cone {
            ra: ra0,
            dec: dec0,
            radius,
        });
        let got = query_all(&mut client, req).await?;
        let refs: Vec<&str> = got.iter().map(|a| a.r#ref.as_str()).collect();
        let want: Vec<&str> = positions
            .iter()
            .filter(|r| {
                let (ra, dec, mag): (f64, f64, f64) = (
                    r[1].parse().unwrap(),
                    r[2].parse().unwrap(),
                    r[3].parse().unwrap(),
                );
                mag < 18.5 && angular_distance(ra0, dec0, ra, dec) <= radius
            })
            .map(|r| r[0].as_str())
            .collect();
        assert_eq!(refs, want, "cone radius {radius}");
    }

    // ids: the object's alerts only.
    let object = &fixtures[3].object_id;
    let mut req = query_request("");
    req.ids = vec![format!("ZTF:{object}")];
    let got = query_all(&mut client, req).await?;
    let want = psql_rows(
        &pg,
        &format!("select ref from ztf_alerts where object_id = '{object}' order by id"),
    )?;
    assert_eq!(
        got.iter().map(|a| a.r#ref.clone()).collect::<Vec<_>>(),
        want.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>()
    );

    // The refs are the Kafka records': Fetch resolves them to the same alert.
    let one = &all[5];
    let fetched = client
        .fetch(v1::FetchRequest {
            r#ref: one.r#ref.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(&fetched, one);

    // The stored parts are not columns: no filter on them, and the catalog lists the
    // others.
    let err = query_all(&mut client, query_request("payload == \"x\""))
        .await
        .unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().context("a status")?;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("payload"), "{status:?}");
    let topics = client
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner();
    let q = topics
        .queries
        .iter()
        .find(|q| q.name == "ztf_history")
        .context("the archive is listed as a query")?;
    assert_eq!(
        q.columns,
        [
            "id",
            "object_id",
            "kafka_partition",
            "kafka_offset",
            "kafka_timestamp_ms",
            "candid",
            "ra",
            "dec",
            "magpsf",
            "fid",
            "isdiffpos",
            "missing"
        ]
    );

    // With follow: the archived alerts, then those archived later, each once.
    let mut req = query_request("");
    req.follow = true;
    let mut stream = client.query(req).await?.into_inner();
    let mut followed: Vec<v1::Alert> = Vec::new();
    let more = records.len() + 5;
    while followed.len() < more {
        if followed.len() == records.len() {
            broker.produce_all(TOPIC, &records[..5]).await?;
        }
        let batch = tokio::time::timeout(WAIT, stream.message())
            .await
            .context("follow: no batch in time")??
            .context("follow: the stream ended")?;
        followed.extend(batch.alerts);
    }
    drop(stream);
    assert_eq!(followed.len(), more, "no repeats");
    assert_eq!(followed[..records.len()], all[..]);
    let later_refs: Vec<&str> = followed[records.len()..]
        .iter()
        .map(|a| a.r#ref.as_str())
        .collect();
    let want = psql_rows(&pg, "select ref from ztf_alerts order by id offset 45")?;
    assert_eq!(
        later_refs,
        want.iter().map(|r| r[0].as_str()).collect::<Vec<_>>()
    );

    // /metrics counts the rows and shows no lag.
    let n = more as f64;
    gateway
        .wait_metrics("archive metrics", |m| {
            m.value(
                "alertmesh_archive_rows_total",
                &[("archive", "ztf_archive")],
            ) == n
                && m.get("alertmesh_archive_lag", &[("archive", "ztf_archive")]) == Some(0.0)
        })
        .await?;

    // Long after Kafka dropped them: the same gateway (by name) over a Kafka cluster that
    // does not hold these records any more still serves the archive, and Fetch of their
    // refs is answered from it with the same alert. (Deleting or resetting the topic under
    // a running gateway crashes librdkafka's metadata cache, so the cluster is swapped.)
    gateway.kill();
    let empty = Broker::start("archive-empty").await?;
    empty.create_topic(TOPIC, 2).await?;
    let later = Gateway::start(&spec(&empty, &pg, 16)).await?;
    let mut client = later.client().await?;
    let gone = &all[9];
    let fetched = client
        .fetch(v1::FetchRequest {
            r#ref: gone.r#ref.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(&fetched, gone);
    let again = query_all(&mut client, query_request("")).await?;
    assert_eq!(again, followed);
    let missing = client
        .fetch(v1::FetchRequest {
            r#ref: format!("am://lasair/{TOPIC}/0/999"),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    Ok(())
}

/// A payload that does not decode (a producer wrote anything) is still archived, with
/// NULL columns, and counted and logged rather than passed over silently; one that would
/// ask a decoder for gigabytes is one of them.
#[tokio::test]
async fn undecodable_payloads_are_archived_with_null_columns_and_counted() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let broker = Broker::start("archive-undecodable").await?;
    broker.create_topic(TOPIC, 1).await?;
    let mut records = ztf_records(1, now_ms() - 60_000, 10)?;
    records.truncate(2);
    // An OCF file of an empty record schema whose block announces 2^62 records.
    let schema = br#"{"type":"record","name":"r","fields":[]}"#;
    let mut bomb = b"Obj\x01\x02\x16avro.schema".to_vec();
    bomb.push((schema.len() * 2) as u8);
    bomb.extend(schema);
    bomb.push(0);
    bomb.extend([7u8; 16]);
    bomb.extend([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]);
    bomb.extend([7u8; 16]);
    for payload in [bytes::Bytes::from_static(b"not avro"), bomb.into()] {
        let mut r = records[0].clone();
        r.payload = payload;
        records.push(r);
    }
    broker.produce_all(TOPIC, &records).await?;
    let mut gateway = Gateway::start(&spec(&broker, &pg, 16)).await?;
    wait_rows(&pg, 4).await?;
    let stored = psql_rows(
        &pg,
        "select kafka_offset, candid is null, length(payload) from ztf_alerts order by kafka_offset",
    )?;
    let nulls: Vec<&str> = stored.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(nulls, ["f", "f", "t", "t"], "{stored:?}");
    assert_eq!(stored[2][2], "8", "the payload is kept as it came");
    gateway
        .wait_metrics("undecodable counted", |m| {
            m.value(
                "alertmesh_archive_undecodable_total",
                &[("archive", "ztf_archive")],
            ) == 2.0
        })
        .await?;
    ensure!(gateway.exited().is_none(), "the gateway stopped");
    Ok(())
}

/// Records deleted from Kafka before the archive read them (its ingest was down longer
/// than the topic's retention; here delete-records) are counted and logged, never passed
/// over in silence, and the ingest goes on from the first record held.
#[tokio::test]
async fn records_deleted_before_the_archive_read_them_are_counted_and_it_goes_on() -> Result<()> {
    if !deletes_records() {
        return Ok(());
    }
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let (broker, records, mut gateway) = archived_fixtures(&pg).await?;
    let held = |p: i32| records.iter().filter(|r| r.partition == p).count() as i64;
    let (n0, n1) = (held(0), held(1));
    gateway.kill();
    // While it is down: as many records again, and most of partition 1's new ones deleted.
    broker.produce_all(TOPIC, &records).await?;
    let cut = n1 + n1 / 2;
    ensure!(delete_below(&broker.bootstrap(), TOPIC, 1, cut).await? == cut);
    gateway.start_again().await?;
    let missed = cut - n1;
    wait_rows(&pg, 2 * records.len() - missed as usize).await?;
    gateway
        .wait_metrics("the missed records counted", |m| {
            m.value(
                "alertmesh_archive_missed_total",
                &[("archive", "ztf_archive")],
            ) == missed as f64
        })
        .await?;
    let per_partition = psql_rows(
        &pg,
        "select kafka_partition, count(*), count(distinct kafka_offset), min(kafka_offset), \
         max(kafka_offset), count(*) filter (where kafka_partition = 1 and kafka_offset >= $n1 and kafka_offset < $cut) \
         from ztf_alerts group by kafka_partition order by 1"
            .replace("$n1", &n1.to_string())
            .replace("$cut", &cut.to_string())
            .as_str(),
    )?;
    let want = [
        vec![
            "0".to_owned(),
            (2 * n0).to_string(),
            (2 * n0).to_string(),
            "0".into(),
            (2 * n0 - 1).to_string(),
            "0".into(),
        ],
        vec![
            "1".to_owned(),
            (2 * n1 - missed).to_string(),
            (2 * n1 - missed).to_string(),
            "0".into(),
            (2 * n1 - 1).to_string(),
            "0".into(),
        ],
    ];
    ensure!(
        per_partition == want,
        "rows per partition {per_partition:?}, want {want:?}"
    );
    let log = gateway.stderr_tail(200);
    ensure!(
        log.contains("records deleted from kafka before the archive read them"),
        "not logged:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn the_archive_is_exactly_once_across_kill_9_during_ingest() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let broker = Broker::start("archive-kill").await?;
    broker.create_topic(TOPIC, 3).await?;
    let fixtures = ztf_records(3, now_ms() - 60_000, 1)?;
    // 10 copies of the fixtures per round: many small batches to be killed among.
    let round: Vec<alertmesh_tests::Record> =
        (0..10).flat_map(|_| fixtures.iter().cloned()).collect();
    let mut produced = 0usize;
    broker.produce_all(TOPIC, &round).await?;
    produced += round.len();
    let mut gateway = Gateway::start(&spec(&broker, &pg, 10)).await?;
    let mut mid_ingest = 0;
    for _ in 0..3 {
        // Once some rows are in, kill -9, and more records arrive while it is down.
        alertmesh_tests::process::wait_until("some rows archived", WAIT, || async {
            let c: usize = pg
                .psql("select count(*) from ztf_alerts")
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (c > 0).then_some(c)
        })
        .await?;
        gateway.kill();
        let count: usize = pg.psql("select count(*) from ztf_alerts")?.trim().parse()?;
        if count < produced {
            mid_ingest += 1;
        }
        broker.produce_all(TOPIC, &round).await?;
        produced += round.len();
        gateway.start_again().await?;
    }
    if let Err(e) = wait_rows(&pg, produced).await {
        let count = pg.psql("select count(*) from ztf_alerts")?;
        anyhow::bail!(
            "{e}: {} of {produced} rows; gateway stderr:\n{}",
            count.trim(),
            gateway.stderr_tail(30)
        );
    }
    // Per partition: offsets 0..n, each once (no gaps, no repeats).
    let per_partition = psql_rows(
        &pg,
        "select kafka_partition, count(*), count(distinct kafka_offset), min(kafka_offset), \
         max(kafka_offset) from ztf_alerts group by kafka_partition order by 1",
    )?;
    let mut total = 0;
    for r in &per_partition {
        let n: i64 = r[1].parse()?;
        assert_eq!(r[2], r[1], "partition {}: repeats", r[0]);
        assert_eq!(r[3], "0", "partition {}: starts at 0", r[0]);
        assert_eq!(r[4].parse::<i64>()?, n - 1, "partition {}: gaps", r[0]);
        total += n as usize;
    }
    assert_eq!(total, produced);
    // The query streams each of them once too.
    let mut client = gateway.client().await?;
    let all = query_all(&mut client, query_request("")).await?;
    assert_eq!(all.len(), produced);
    let refs: std::collections::BTreeSet<&str> = all.iter().map(|a| a.r#ref.as_str()).collect();
    assert_eq!(refs.len(), produced);
    eprintln!("killed during ingest {mid_ingest} of 3 times; {produced} records");
    Ok(())
}

#[tokio::test]
async fn bad_archive_configs_are_refused_by_serve_check_with_the_key_and_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = r#"
[gateway]
name = "lasair"
listen = "127.0.0.1:50051"
http_listen = "127.0.0.1:9464"
[kafka]
bootstrap = "127.0.0.1:9092"
[[topics]]
name = "ztf.alerts"
namespace = "ZTF"
format = "avro-ocf"
[[databases]]
name = "archive"
url = "postgres://lasair@127.0.0.1:5432/lasair"
"#;
    let cases = [
        (
            r#"table = "alerts; drop table x"
columns = [{ name = "ra", path = "candidate.ra", type = "float8" }]"#,
            "archives[0].table: \"alerts; drop table x\" is not a plain SQL identifier",
        ),
        (
            r#"table = "alerts"
columns = [{ name = "ra\"x", path = "candidate.ra", type = "float8" }]"#,
            "archives[0].columns[0].name:",
        ),
        (
            r#"table = "alerts"
columns = [{ name = "ra", path = "candidate..ra", type = "float8" }]"#,
            "archives[0].columns[0].path:",
        ),
        (
            r#"table = "alerts"
columns = [{ name = "ra", path = "candidate.ra", type = "double" }]"#,
            "archives[0].columns[0].type: \"double\" is not a column type; use one of int8, float8, text, bool",
        ),
        (
            r#"table = "alerts"
columns = [{ name = "payload", path = "candidate.ra", type = "float8" }]"#,
            "archives[0].columns[0].name: \"payload\" is a column every archive has",
        ),
        (
            r#"table = "alerts"
ra = "magpsf"
dec = "dec"
columns = [{ name = "dec", path = "candidate.dec", type = "float8" }]"#,
            "archives[0].ra: \"magpsf\" must be one of the extracted columns",
        ),
    ];
    for (i, (archive, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "{base}\n[[archives]]\nname = \"a\"\ntopic = \"ztf.alerts\"\ndatabase = \"archive\"\n{archive}\n"
            ),
        )?;
        let output = run_cli(&[
            "serve".as_ref(),
            "--check".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ])
        .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "case {i}: {stderr}");
        assert!(
            stderr.contains(message),
            "case {i}: want {message:?} in:\n{stderr}"
        );
    }
    // A good one passes.
    let path = dir.path().join("good.toml");
    std::fs::write(
        &path,
        format!(
            "{base}\n[[archives]]\nname = \"a\"\ntopic = \"ztf.alerts\"\ndatabase = \"archive\"\ntable = \"public.alerts\"\nra = \"ra\"\ndec = \"dec\"\ncolumns = [{{ name = \"ra\", path = \"candidate.ra\", type = \"float8\" }}, {{ name = \"dec\", path = \"candidate.dec\", type = \"float8\" }}]\n"
        ),
    )?;
    let output = run_cli(&[
        "serve".as_ref(),
        "--check".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
    ])
    .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The records of partition 0 of `topic` with their `am-source` and `am-query` headers.
async fn copies(broker: &Broker, topic: &str) -> Result<Vec<(String, String)>> {
    let (bootstrap, topic) = (broker.bootstrap(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer = alertmesh_tests::kafka::assigned_consumer(
            &bootstrap,
            &topic,
            1,
            rdkafka::Offset::Beginning,
        )?;
        let mut out = Vec::new();
        alertmesh_tests::kafka::read_to_eof_with(
            &consumer,
            1,
            0,
            std::time::Duration::from_secs(20),
            |m| {
                use alertmesh_tests::kafka::header_text;
                out.push((header_text(m, "am-source"), header_text(m, "am-query")));
            },
        )?;
        Ok(out)
    })
    .await?
}

/// A mirror of an archive's query on another gateway: its copies' `am-source` are the
/// archived alerts' refs, and `am-query` names the query, so a restarted mirror finds
/// where it was and copies nothing twice (it copied the whole result again each time).
#[tokio::test]
async fn a_mirror_of_an_archive_query_resumes_after_a_restart_without_copying_twice() -> Result<()>
{
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let (_broker, records, lasair) = archived_fixtures(&pg).await?;

    const COPIES: &str = "lasair.history";
    let fink_broker = Broker::start("fink").await?;
    let mirror = format!(
        "[[mirrors]]\nname = \"history\"\ndestination = {COPIES:?}\n[mirrors.source]\n\
         gateway = {url:?}\nquery = \"ztf_history\"\nfollow = true\n",
        url = lasair.grpc_url()
    );
    let mut fink =
        Gateway::start(&GatewaySpec::new("fink", &fink_broker.bootstrap()).extra(&mirror)).await?;
    let n = records.len();
    let copied = async |fink: &Gateway| -> Result<()> {
        alertmesh_tests::process::wait_until("the mirror copied the result", WAIT * 3, || async {
            let m = fink.mirror_status().await.ok()?;
            (m.first()?.copied >= n as u64).then_some(())
        })
        .await
    };
    copied(&fink).await?;
    for restart in 0..2 {
        fink.kill();
        fink.start_again().await?;
        // Running again, recovered; give it time to copy anything it would copy twice.
        alertmesh_tests::process::wait_until("the mirror runs again", WAIT * 3, || async {
            let m = fink.mirror_status().await.ok()?;
            (m.first()?.state == "running").then_some(())
        })
        .await?;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let found = copies(&fink_broker, COPIES).await?;
        ensure!(
            found.len() == n,
            "after restart {restart}: {} copies of {n} rows",
            found.len()
        );
        let mut sources: Vec<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        ensure!(sources.len() == n, "a row was copied twice: {found:?}");
        for (source, query) in &found {
            ensure!(
                source.starts_with(&format!("am://lasair/{TOPIC}/"))
                    && query == "am://lasair/query:ztf_history",
                "{source} {query}"
            );
        }
    }
    Ok(())
}
