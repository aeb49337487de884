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
    // The live stream ended instead of hanging: OK, UNAVAILABLE or a dropped connection.
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
