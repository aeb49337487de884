//! PostgreSQL over TLS: query streams and archives through `[[databases]] tls`, against a
//! real server with `ssl = on` whose certificates are made here with rcgen, and whose
//! `pg_hba.conf` accepts TCP only with TLS (`hostssl`), so a query that returns rows went
//! over TLS.

use alertmesh_proto::v1::{self, alert_mesh_client::AlertMeshClient};
use alertmesh_tests::client::{earliest, request as subscribe_request, subscribe_all, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::postgres::PASSWORD;
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Postgres, WAIT};
use anyhow::{bail, ensure, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::transport::Channel;
use tonic::Code;

type Client = AlertMeshClient<Channel>;

const ROWS: i64 = 300;
const TOPIC: &str = "ztf.alerts";

/// TCP needs TLS; `certuser` logs in with a client certificate (CN = user), everyone else
/// with a password (SCRAM, so channel binding applies).
const HBA_TLS_ONLY: &str = "local all all trust\n\
    hostssl all certuser 127.0.0.1/32 cert\n\
    hostssl all all 127.0.0.1/32 scram-sha-256\n";

/// A CA and what it signed, as PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// The server certificate names only 127.0.0.1, so `localhost` is the wrong host name.
fn pki() -> Result<Pki> {
    let (ca, issuer) = ca("test database ca")?;
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "test database");
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;
    let mut client = CertificateParams::default();
    client
        .distinguished_name
        .push(DnType::CommonName, "certuser");
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &issuer)?;
    Ok(Pki {
        ca,
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

/// A fresh cluster with TLS on, TLS-only TCP, the `objects` table and `certuser`; the PEM
/// files for the gateway are written next to the cluster (`ca.pem`, `client.pem`,
/// `client.key`).
async fn tls_postgres(pki: &Pki) -> Result<Option<Postgres>> {
    let Some(mut pg) = Postgres::start_or_skip().await? else {
        return Ok(None);
    };
    pg.psql(&format!(
        "create table objects (id bigint primary key, object_id text not null, mag real); \
         insert into objects select i, 'ZTF' || lpad(i::text, 9, '0'), 15 + (i % 70) / 10.0 \
         from generate_series(1, {ROWS}) i; \
         create role certuser login; grant select on objects to certuser;"
    ))?;
    pg.enable_tls(
        &pki.server_cert,
        &pki.server_key,
        Some(&pki.ca),
        Some(HBA_TLS_ONLY),
    )
    .await?;
    std::fs::write(pg.dir().join("ca.pem"), &pki.ca)?;
    std::fs::write(pg.dir().join("client.pem"), &pki.client_cert)?;
    std::fs::write(pg.dir().join("client.key"), &pki.client_key)?;
    Ok(Some(pg))
}

/// A `[[databases]]` entry and a public `[[queries]]` of `objects` on it, named `name`.
fn database(name: &str, url: &str, keys: &str) -> String {
    format!(
        r#"
[[databases]]
name = "{name}"
url = "{url}"
connect_timeout_ms = 3000
{keys}

[[queries]]
name = "{name}"
database = "{name}"
table = "objects"
namespace = "ZTF"
key = "object_id"
order = "id"
columns = ["id", "object_id", "mag"]
public = true
"#
    )
}

fn url(pg: &Postgres, user: &str, host: &str, params: &str) -> String {
    format!("postgres://{user}@{host}:{}/postgres{params}", pg.port())
}

fn file(pg: &Postgres, name: &str) -> String {
    pg.dir().join(name).display().to_string()
}

/// Every alert of a Query stream that ends by itself, or the status it failed with.
async fn query_all(
    client: &mut Client,
    name: &str,
) -> Result<Result<Vec<v1::Alert>, tonic::Status>> {
    let req = v1::QueryRequest {
        name: name.into(),
        ..Default::default()
    };
    let mut stream = match client.query(req).await {
        Ok(s) => s.into_inner(),
        Err(status) => return Ok(Err(status)),
    };
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.message()).await {
            Err(_) => bail!("query {name} did not end within {WAIT:?}"),
            Ok(Ok(Some(b))) => out.extend(b.alerts),
            Ok(Ok(None)) => return Ok(Ok(out)),
            Ok(Err(status)) => return Ok(Err(status)),
        }
    }
}

/// (id, object_id) of each alert.
fn pairs(alerts: &[v1::Alert]) -> Result<Vec<(i64, String)>> {
    alerts
        .iter()
        .map(|a| {
            let bytes = if a.json.is_empty() {
                &a.payload
            } else {
                &a.json
            };
            let v: serde_json::Value = serde_json::from_slice(bytes)?;
            Ok((
                v["id"].as_i64().context("id")?,
                v["object_id"].as_str().context("object_id")?.to_owned(),
            ))
        })
        .collect()
}

fn psql_pairs(pg: &Postgres) -> Result<Vec<(i64, String)>> {
    pg.psql("select id, object_id from objects order by id")?
        .lines()
        .map(|l| {
            let (id, object_id) = l.split_once('\t').context("two columns")?;
            Ok((id.parse()?, object_id.to_owned()))
        })
        .collect()
}

/// The failure a query must end with: `code`, naming the database, never the password.
async fn expect_failure(client: &mut Client, name: &str, code: Code, says: &[&str]) -> Result<()> {
    let status = match query_all(client, name).await? {
        Ok(rows) => bail!(
            "query {name} returned {} rows; expected {code:?}",
            rows.len()
        ),
        Err(status) => status,
    };
    ensure!(status.code() == code, "{name}: {status:?}");
    let message = status.message();
    eprintln!("{name}: {code:?}: {message}");
    ensure!(
        message.contains(&format!("database {name:?}")),
        "{name}: {message}"
    );
    for s in says {
        ensure!(message.contains(s), "{name}: {s:?} missing in {message}");
    }
    ensure!(
        !message.contains(PASSWORD),
        "{name}: the password is echoed"
    );
    Ok(())
}

#[tokio::test]
async fn queries_over_verify_full_tls_return_the_rows_psql_sees() -> Result<()> {
    let pki = pki()?;
    let Some(pg) = tls_postgres(&pki).await? else {
        return Ok(());
    };
    let pw = format!("password_file = \"{}\"", file(&pg, "pw"));
    let ca = format!("ca_file = \"{}\"", file(&pg, "ca.pem"));
    let verify = format!("tls = \"verify-full\"\n{ca}");
    let client_cert = format!(
        "{verify}\ncert_file = \"{}\"\nkey_file = \"{}\"",
        file(&pg, "client.pem"),
        file(&pg, "client.key")
    );
    let config = [
        // SCRAM with channel binding required: the server checks the binding the client
        // computed from the certificate it saw.
        database(
            "tls",
            &url(&pg, "postgres", "127.0.0.1", "?channel_binding=require"),
            &format!("{pw}\n{verify}"),
        ),
        database(
            "client_cert",
            &url(&pg, "certuser", "127.0.0.1", ""),
            &client_cert,
        ),
        // 127.0.0.1 defaults to tls = "disable": refused by the TLS-only server.
        database("plain", &url(&pg, "postgres", "127.0.0.1", ""), &pw),
        database(
            "no_client_cert",
            &url(&pg, "certuser", "127.0.0.1", ""),
            "tls = \"require\"",
        ),
    ]
    .concat();
    let broker = Broker::start("query-tls").await?;
    let gateway =
        Gateway::start(&GatewaySpec::new("lasair", &broker.bootstrap()).extra(&config)).await?;
    let mut client = gateway.client().await?;

    let want = psql_pairs(&pg)?;
    assert_eq!(want.len(), ROWS as usize);
    for name in ["tls", "client_cert"] {
        let rows = query_all(&mut client, name)
            .await?
            .map_err(|s| anyhow::anyhow!("{name}: {s:?}"))?;
        assert_eq!(pairs(&rows)?, want, "{name}: the rows psql sees, once each");
    }
    // The gateway's pooled connections are TLS, the certificate one with its client DN.
    let ssl = pg.psql(
        "select a.usename, s.ssl, coalesce(s.client_dn, '') from pg_stat_ssl s \
         join pg_stat_activity a using (pid) where a.application_name = 'alertmesh' \
         order by 1",
    )?;
    let lines: Vec<&str> = ssl.lines().collect();
    assert_eq!(
        lines,
        ["certuser\tt\t/CN=certuser", "postgres\tt\t"],
        "one TLS connection per database left in the pool"
    );

    expect_failure(
        &mut client,
        "plain",
        Code::Unavailable,
        &["no pg_hba.conf entry", "no encryption"],
    )
    .await?;
    expect_failure(
        &mut client,
        "no_client_cert",
        Code::Unavailable,
        &["certificate"],
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_wrong_ca_host_name_or_tls_less_server_fails_clearly_and_topics_keep_serving(
) -> Result<()> {
    let pki = pki()?;
    let Some(pg) = tls_postgres(&pki).await? else {
        return Ok(());
    };
    let Some(plain_pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    let (other_ca, _) = ca("some other ca")?;
    std::fs::write(pg.dir().join("other-ca.pem"), other_ca)?;
    let pw = format!("password_file = \"{}\"", file(&pg, "pw"));
    let ca = |f: &str| format!("tls = \"verify-full\"\nca_file = \"{}\"", file(&pg, f));
    let config = [
        database(
            "good",
            &url(&pg, "postgres", "127.0.0.1", ""),
            &format!("{pw}\n{}", ca("ca.pem")),
        ),
        database(
            "wrong_ca",
            &url(&pg, "postgres", "127.0.0.1", ""),
            &format!("{pw}\n{}", ca("other-ca.pem")),
        ),
        // The certificate names 127.0.0.1 only.
        database(
            "wrong_host",
            &url(&pg, "postgres", "localhost", ""),
            &format!("{pw}\n{}", ca("ca.pem")),
        ),
        database(
            "no_tls_server",
            &url(&plain_pg, "postgres", "127.0.0.1", ""),
            &format!("{pw}\ntls = \"require\""),
        ),
    ]
    .concat();
    let broker = Broker::start("query-tls-bad").await?;
    broker.create_topic(TOPIC, 1).await?;
    let records = ztf_records(1, now_ms() - 60_000, 10)?;
    broker.produce_all(TOPIC, &records).await?;
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(TOPIC, "ZTF", "avro-ocf")
        .extra(&config);
    let gateway = Gateway::start(&spec).await?;
    let mut client = gateway.client().await?;

    let tls = "tls = \"verify-full\"";
    expect_failure(
        &mut client,
        "wrong_ca",
        Code::FailedPrecondition,
        &["TLS handshake", "invalid peer certificate", tls],
    )
    .await?;
    expect_failure(
        &mut client,
        "wrong_host",
        Code::FailedPrecondition,
        &["TLS handshake", "not valid for name", tls],
    )
    .await?;
    expect_failure(
        &mut client,
        "no_tls_server",
        Code::FailedPrecondition,
        &["server does not support TLS", "tls = \"require\""],
    )
    .await?;

    // The failures stay with their databases: the good one and the topic are served.
    let rows = query_all(&mut client, "good")
        .await?
        .map_err(|s| anyhow::anyhow!("good: {s:?}"))?;
    assert_eq!(pairs(&rows)?, psql_pairs(&pg)?);
    let mut sub = subscribe_request(TOPIC);
    sub.start = earliest();
    sub.end = until_now();
    let got = subscribe_all(&mut client, sub, WAIT).await;
    assert!(matches!(got.end, Some(Ok(()))), "{:?}", got.end);
    assert_eq!(got.alerts.len(), records.len());
    Ok(())
}

#[tokio::test]
async fn an_archive_writes_and_answers_over_verify_full_tls() -> Result<()> {
    let pki = pki()?;
    let Some(pg) = tls_postgres(&pki).await? else {
        return Ok(());
    };
    let broker = Broker::start("archive-tls").await?;
    broker.create_topic(TOPIC, 2).await?;
    let records = ztf_records(2, now_ms() - 60_000, 10)?;
    broker.produce_all(TOPIC, &records).await?;
    let config = format!(
        r#"
[[databases]]
name = "archive"
url = "{url}"
password_file = "{pw}"
tls = "verify-full"
ca_file = "{ca}"

[[archives]]
name = "ztf_archive"
topic = "{TOPIC}"
database = "archive"
table = "ztf_alerts"
query = "ztf_history"
public = true
batch_rows = 16
batch_wait_ms = 20
columns = [{{ name = "candid", path = "candidate.candid", type = "int8" }}]
"#,
        url = url(&pg, "postgres", "127.0.0.1", ""),
        pw = file(&pg, "pw"),
        ca = file(&pg, "ca.pem"),
    );
    let spec = GatewaySpec::new("lasair", &broker.bootstrap())
        .topic(TOPIC, "ZTF", "avro-ocf")
        .extra(&config);
    let gateway = Gateway::start(&spec).await?;
    alertmesh_tests::process::wait_until("the archive holds every record", WAIT * 6, || async {
        let count: usize = pg
            .psql("select count(*) from ztf_alerts")
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (count >= records.len()).then_some(())
    })
    .await?;
    let ssl = pg.psql(
        "select s.ssl from pg_stat_ssl s join pg_stat_activity a using (pid) \
         where a.application_name = 'alertmesh-archive'",
    )?;
    let ssl: Vec<&str> = ssl.lines().collect();
    assert!(
        !ssl.is_empty() && ssl.iter().all(|s| *s == "t"),
        "the archive writes over TLS: {ssl:?}"
    );

    let mut client = gateway.client().await?;
    let rows = query_all(&mut client, "ztf_history")
        .await?
        .map_err(|s| anyhow::anyhow!("ztf_history: {s:?}"))?;
    assert_eq!(rows.len(), records.len(), "each archived alert once");
    let stored = pg.psql("select count(distinct candid) from ztf_alerts")?;
    assert_eq!(stored.trim(), records.len().to_string());
    Ok(())
}
