//! Queries ordered by a column that is not an integer (timestamptz, text): resume tokens
//! and row refs carry the value safely, a resumed stream (after kill -9 of the gateway)
//! continues without gaps or repeats in the database's own order of that type, and Fetch
//! resolves the rows' refs.

use alertmesh_proto::v1;
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Postgres};
use anyhow::{ensure, Context, Result};

fn config(pg: &Postgres) -> String {
    format!(
        r#"
[[databases]]
name = "archive"
url = "{url}"
password_file = "{pw}"

[[queries]]
name = "events"
database = "archive"
table = "events"
namespace = "ZTF"
key = "object_id"
order = "ts"
columns = ["ts", "object_id", "mag"]
public = true

[[queries]]
name = "names"
database = "archive"
table = "names"
namespace = "ZTF"
key = "object_id"
order = "name"
columns = ["name", "object_id", "n"]
public = true
"#,
        url = pg.url("postgres"),
        pw = pg.dir().join("pw").display()
    )
}

/// Timestamps a microsecond apart, across days and offsets, and names that sort
/// differently as bytes and in the column's collation, with `/`, spaces and non-ASCII.
const FIXTURE: &str = "
create table events (ts timestamptz primary key, object_id text not null, mag real);
insert into events select timestamptz '2019-06-01 00:00:00+00' + (i % 7) * interval '1 day'
    + i * interval '1 microsecond' + (i % 3) * interval '1 hour',
    'ZTF19aaaaaa' || chr(97 + i % 26), 15 + i % 5
  from generate_series(1, 157) i;
create table names (name text primary key, object_id text not null, n integer);
insert into names select
    (array['a/b', 'A b', 'zeta', 'Ωmega', 'b~c', '10', '9', 'x y/z'])[1 + i % 8] || ' ' || i,
    'ZTF19aaaaaa' || chr(97 + i % 26), i
  from generate_series(1, 131) i;
";

/// One stream of `name`: the first column of every row (as JSON text) and the last token.
async fn read(
    gateway: &Gateway,
    name: &str,
    resume: &str,
    limit: Option<u64>,
) -> Result<(Vec<v1::Alert>, String)> {
    let mut client = gateway.client().await?;
    let mut stream = client
        .query(v1::QueryRequest {
            name: name.into(),
            resume_token: resume.into(),
            limit,
            max_batch_alerts: 7,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (mut alerts, mut token) = (Vec::new(), String::new());
    while let Some(batch) = stream.message().await? {
        alerts.extend(batch.alerts);
        token = batch.resume_token;
    }
    Ok((alerts, token))
}

fn first_column(alerts: &[v1::Alert], column: &str) -> Result<Vec<String>> {
    alerts
        .iter()
        .map(|a| {
            let v: serde_json::Value = serde_json::from_slice(&a.payload)?;
            Ok(v[column].as_str().context("a text value")?.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn text_and_timestamp_order_columns_resume_without_gaps_or_repeats() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    pg.psql(FIXTURE)?;
    let broker = Broker::start("order").await?;
    let mut gateway =
        Gateway::start(&GatewaySpec::new("lasair", &broker.bootstrap()).extra(&config(&pg)))
            .await?;
    for (name, column, sql) in [
        ("events", "ts", "select ts::text from events order by ts"),
        ("names", "name", "select name from names order by name"),
    ] {
        let want: Vec<String> = pg.psql(sql)?.lines().map(str::to_owned).collect();
        ensure!(want.len() > 100, "{name}: {} rows", want.len());
        // A first stream stops early; the gateway is killed; its token resumes the rest.
        let (first, token) = read(&gateway, name, "", Some(40)).await?;
        ensure!(
            first.len() == 40 && !token.is_empty(),
            "{name}: {}",
            first.len()
        );
        gateway.kill_and_restart().await?;
        let (rest, _) = read(&gateway, name, &token, None).await?;
        let mut got = first_column(&first, column)?;
        got.extend(first_column(&rest, column)?);
        ensure!(
            got == want,
            "{name}: the resumed stream differs from psql: {} rows, {} expected, first \
             difference at {:?}",
            got.len(),
            want.len(),
            got.iter().zip(&want).position(|(a, b)| a != b)
        );
        // Refs are distinct, carry no raw value, and Fetch resolves them to the same row.
        let mut refs: Vec<&str> = first
            .iter()
            .chain(&rest)
            .map(|a| a.r#ref.as_str())
            .collect();
        let prefix = format!("am://lasair/query:{name}/~");
        ensure!(refs
            .iter()
            .all(|r| r.starts_with(&prefix) && !r[prefix.len()..].contains('/')));
        refs.sort_unstable();
        refs.dedup();
        ensure!(refs.len() == want.len(), "{name}: repeated refs");
        let sample = &rest[rest.len() / 2];
        let mut client = gateway.client().await?;
        let fetched = client
            .fetch(v1::FetchRequest {
                r#ref: sample.r#ref.clone(),
            })
            .await?
            .into_inner();
        ensure!(
            fetched.payload == sample.payload,
            "{name}: fetch gave another row"
        );
        // A token of one query does not resume the other.
        let other = if name == "events" { "names" } else { "events" };
        let status = client
            .query(v1::QueryRequest {
                name: other.into(),
                resume_token: token.clone(),
                ..Default::default()
            })
            .await
            .err()
            .context("a foreign token is refused")?;
        ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");
    }
    Ok(())
}
