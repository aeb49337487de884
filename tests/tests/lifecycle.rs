//! The gateway process: a broken config is refused with every problem listed, and SIGTERM
//! shuts it down cleanly, ending open streams.

use std::time::{Duration, Instant};

use alertmesh_tests::cli::run_cli;
use alertmesh_tests::client::{latest, request};
use alertmesh_tests::{Mesh, ZTF_TOPIC};
use anyhow::Result;
use tonic::Code;

async fn serve(config: &str) -> Result<std::process::Output> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config)?;
    run_cli(&["serve".as_ref(), "--config".as_ref(), path.as_os_str()]).await
}

#[tokio::test]
async fn broken_config_exits_64_listing_every_bad_key() -> Result<()> {
    let output = serve(
        r#"
[gateway]
name = "lasair"
listen = "nowhere"
http_listen = "127.0.0.1:99999"
[kafka]
timeout_ms = 5
[[topics]]
name = "ztf.alerts"
namespace = "ZTF"
format = "protobuf"
[[topics]]
name = "ztf alerts"
namespace = ""
format = "json"
"#,
    )
    .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(64),
        "exit status; stderr:\n{stderr}"
    );
    for key in [
        "gateway.listen",
        "gateway.http_listen",
        "kafka.bootstrap",
        "kafka.timeout_ms",
        "topics[0].format",
        "topics[1].name",
        "topics[1].namespace",
    ] {
        assert!(
            stderr.contains(key),
            "stderr does not name {key}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("topics[0].name"),
        "a good key is blamed:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn files_the_config_names_must_be_readable_to_serve() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A certificate that exists; everything else named is missing (or a folder).
    std::fs::write(dir.path().join("gateway.crt"), "not checked here")?;
    std::fs::create_dir(dir.path().join("token.jwt"))?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        r#"
[gateway]
name = "fink"
listen = "127.0.0.1:29053"
http_listen = "127.0.0.1:29463"
[kafka]
bootstrap = "127.0.0.1:19093"
[[topics]]
name = "ztf.alerts"
namespace = "ZTF"
format = "avro-ocf"
[[mirrors]]
name = "lasair-ztf"
destination = "ztf.alerts"
[mirrors.source]
gateway = "https://127.0.0.1:29052"
topic = "ztf.alerts"
token_file = "token.jwt"
ca = "lasair-ca.crt"
[auth]
keys_dir = "keys"
[tls]
cert = "gateway.crt"
key = "gateway.key"
client_ca = "mesh-ca.crt"
"#,
    )?;
    for args in [vec!["--check"], vec![]] {
        let mut argv: Vec<&std::ffi::OsStr> =
            vec!["serve".as_ref(), "--config".as_ref(), path.as_os_str()];
        argv.extend(args.iter().map(std::ffi::OsStr::new));
        let output = run_cli(&argv).await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}; stderr:
{stderr}"
        );
        for key in [
            "tls.key",
            "tls.client_ca",
            "auth.keys_dir",
            "mirrors[0].source.token_file",
            "mirrors[0].source.ca",
        ] {
            assert!(
                stderr.contains(&format!("{key}: ")),
                "{args:?}: stderr does not name {key}:
{stderr}"
            );
        }
        assert!(
            !stderr.contains("tls.cert"),
            "a readable file is blamed:
{stderr}"
        );
    }
    // Checking a configuration before its secrets exist.
    let output = run_cli(&[
        "serve".as_ref(),
        "--check".as_ref(),
        "--skip-files".as_ref(),
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

#[tokio::test]
async fn unreadable_config_exits_64_with_one_clear_line() -> Result<()> {
    let output = serve("[gateway\nname = ").await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    assert!(stderr.to_lowercase().contains("toml"), "stderr:\n{stderr}");

    let output = run_cli(&["serve", "--config", "/nonexistent/alertmesh.toml"]).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "missing file must fail");
    assert!(
        stderr.contains("/nonexistent/alertmesh.toml"),
        "stderr:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_cleanly() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = latest();
    let mut stream = client.subscribe(req).await?.into_inner();
    site.gateway
        .wait_metrics("one open subscription", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 1.0
        })
        .await?;

    let began = Instant::now();
    let status = site.gateway.sigterm().await?;
    assert!(status.success(), "exit status {status}");
    assert!(
        began.elapsed() < Duration::from_secs(12),
        "shutdown took {:?}",
        began.elapsed()
    );
    // The live stream ended instead of hanging: OK, UNAVAILABLE or a dropped connection,
    // after its first message (where it starts, no alerts).
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message()).await?;
    assert!(
        matches!(&first, Ok(Some(b)) if b.alerts.is_empty() && !b.starts.is_empty()),
        "the first message announces where the stream starts: {first:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message()).await?;
    match end {
        Ok(None) => {}
        Ok(Some(batch)) => panic!("unexpected alerts after shutdown: {}", batch.alerts.len()),
        Err(s) => assert!(
            matches!(
                s.code(),
                Code::Unavailable | Code::Cancelled | Code::Unknown
            ),
            "{s:?}"
        ),
    }
    Ok(())
}

/// A valid base configuration in `dir` with TLS and auth files that `serve` accepts.
fn secured_base(dir: &std::path::Path) -> Result<String> {
    let now = alertmesh_tests::auth::now();
    let mesh = alertmesh_auth::tls::creds_init(&dir.join("mesh"), "lasair", now)?;
    std::fs::copy(&mesh.cert, dir.join("gateway.crt"))?;
    std::fs::copy(&mesh.key, dir.join("gateway.key"))?;
    alertmesh_auth::KeyRing::init(&dir.join("keys"), alertmesh_auth::Algorithm::EdDsa, now)?;
    Ok(r#"
[gateway]
name = "lasair"
listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[kafka]
bootstrap = "127.0.0.1:1"
[auth]
keys_dir = "keys"
[tls]
cert = "gateway.crt"
key = "gateway.key"
[[topics]]
name = "ztf.alerts"
namespace = "ZTF"
format = "avro-ocf"
"#
    .to_owned())
}

/// Runs `serve --check` and `serve` on `config` written in `dir`; both must exit 64 and
/// name `key` on stderr, and never show `secret`.
async fn both_refuse(dir: &std::path::Path, config: &str, key: &str, secret: &str) -> Result<()> {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config)?;
    for check in [true, false] {
        let mut argv: Vec<&std::ffi::OsStr> =
            vec!["serve".as_ref(), "--config".as_ref(), path.as_os_str()];
        if check {
            argv.push("--check".as_ref());
        }
        let output = run_cli(&argv).await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{key}, check={check}; stderr:\n{stderr}"
        );
        assert!(stderr.contains(&format!("{key}: ")), "{key}:\n{stderr}");
        assert!(!stderr.contains(secret), "the secret is shown:\n{stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn check_refuses_what_serve_would_refuse_and_both_exit_64() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let secret = "hunter2-do-not-print";
    let dir = tempfile::tempdir()?;
    let base = secured_base(dir.path())?;

    // The base passes: the cases below fail for their one change only.
    std::fs::write(dir.path().join("ok.toml"), &base)?;
    let ok = run_cli(&[
        "serve".as_ref(),
        "--check".as_ref(),
        "--config".as_ref(),
        dir.path().join("ok.toml").as_os_str(),
    ])
    .await?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let with_property = |k: &str, v: &str| {
        base.replace(
            "[auth]",
            &format!("[kafka.properties]\n\"{k}\" = '{v}'\n[auth]"),
        )
    };
    let jaas = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"u\" password=\"{secret}\";"
    );
    both_refuse(
        dir.path(),
        &with_property("sasl.jaas.config", &jaas),
        "kafka.properties.sasl.jaas.config",
        secret,
    )
    .await?;
    both_refuse(
        dir.path(),
        &with_property("sasl.passwrd", secret),
        "kafka.properties.sasl.passwrd",
        secret,
    )
    .await?;
    both_refuse(
        dir.path(),
        &with_property("security.protocol", secret),
        "kafka.properties.security.protocol",
        secret,
    )
    .await?;

    // The gateway's own topics are not exposed; a mirror does not write into its source;
    // a destination leaves room for its dead-letter topic.
    both_refuse(
        dir.path(),
        &base.replace("ztf.alerts", "_alertmesh.credentials"),
        "topics[0].name",
        secret,
    )
    .await?;
    let mirror = |source: &str, destination: &str| {
        format!(
            "{base}[[mirrors]]\nname = \"m\"\ndestination = \"{destination}\"\n\
             [mirrors.source]\nkafka = \"{source}\"\ntopic = \"ztf\"\nnamespace = \"ZTF\"\n\
             format = \"avro-ocf\"\n"
        )
    };
    both_refuse(
        dir.path(),
        &mirror("127.0.0.1:1", "ztf"),
        "mirrors[0].destination",
        secret,
    )
    .await?;
    both_refuse(
        dir.path(),
        &mirror("10.0.0.1:9092", &"d".repeat(247)),
        "mirrors[0].destination",
        secret,
    )
    .await?;

    // Files: garbage PEM, a key that is not the certificate's, a signing key others
    // may read.
    let path = dir.path().join("gateway.toml");
    let cert = dir.path().join("gateway.crt");
    let good_cert = std::fs::read(&cert)?;
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ngarbage\n")?;
    both_refuse(dir.path(), &base, "tls.cert", secret).await?;
    let other = alertmesh_auth::tls::creds_init(
        &dir.path().join("other"),
        "lasair",
        alertmesh_tests::auth::now(),
    )?;
    std::fs::copy(&other.cert, &cert)?;
    both_refuse(dir.path(), &base, "tls.cert", secret).await?;
    std::fs::write(&cert, good_cert)?;
    let keys = dir.path().join("keys");
    for entry in std::fs::read_dir(&keys)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "pem") {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    both_refuse(dir.path(), &base, "auth.keys_dir", secret).await?;
    drop(path);
    Ok(())
}

#[tokio::test]
async fn a_serve_that_cannot_work_never_prints_a_property_value() -> Result<()> {
    // Valid properties, a Kafka that is not there and a port already taken: whatever serve
    // prints while it fails holds no credential.
    let secret = "hunter2-do-not-print";
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[gateway]
name = "lasair"
listen = "{}"
http_listen = "127.0.0.1:0"
[kafka]
bootstrap = "127.0.0.1:1"
timeout_ms = 500
[kafka.properties]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "alertmesh"
"sasl.password" = "{secret}"
[[topics]]
name = "ztf.alerts"
namespace = "ZTF"
format = "avro-ocf"
"#,
            taken.local_addr()?
        ),
    )?;
    let mut child = tokio::process::Command::new(alertmesh_tests::cli::alertmesh_bin())
        .args(["serve".as_ref(), "--config".as_ref(), path.as_os_str()])
        .env("ALERTMESH_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        child.start_kill()?;
    }
    let output = child.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.is_empty(), "serve printed nothing");
    assert!(!stderr.contains(secret), "the password is shown:\n{stderr}");
    Ok(())
}
