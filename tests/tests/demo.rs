//! `make demo` works: `deploy/demo/run.sh` starts the three-institution mesh (survey →
//! lasair with a filtered topic → fink over JWT + mutual TLS), runs for 15 s with
//! `DEMO_SECONDS`, stops everything, and every hop copied alerts.
//!
//! The demo listens on fixed ports of 127.0.0.1 (below the ephemeral range the other tests'
//! random ports come from); when one is taken, a developer's demo is probably running, and
//! this test is skipped with a message rather than fighting over the ports.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alertmesh_tests::broker::tansu_bin;
use alertmesh_tests::cli::alertmesh_bin;
use anyhow::{ensure, Context, Result};

/// The ports of `deploy/demo/*.toml`: Kafka, gRPC and HTTP of survey, lasair and fink.
const PORTS: [u16; 10] = [
    19091, 19092, 19093, 29051, 29052, 29053, 29461, 29462, 29463, 15432,
];
/// Exit status of run.sh when one of its ports is in use.
const PORT_IN_USE: i32 = 2;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn taken_port() -> Option<u16> {
    PORTS
        .into_iter()
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
}

/// The `copied N` figure of `mirror` in the demo's final lines.
fn copied(last: &str, mirror: &str) -> Option<u64> {
    let at = last.find(&format!("{mirror} copied "))? + mirror.len() + " copied ".len();
    last[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_demo_mesh_copies_alerts_at_every_hop_and_stops_cleanly() -> Result<()> {
    if let Some(port) = taken_port() {
        eprintln!("SKIPPED: port {port} on 127.0.0.1 is in use (is `make demo` running?); the demo needs its fixed ports");
        return Ok(());
    }
    let started = Instant::now();
    let mut child = Command::new(root().join("deploy/demo/run.sh"))
        .current_dir(root())
        .env("ALERTMESH_BIN", alertmesh_bin())
        .env("TANSU_BIN", tansu_bin())
        .env("DEMO_SECONDS", "15")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start deploy/demo/run.sh")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = started + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            // SIGTERM: run.sh's trap stops the mesh it started.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let took = started.elapsed();
    let status = status.with_context(|| {
        format!("the demo did not stop within 60 s\nstdout:\n{out}\nstderr:\n{err}")
    })?;
    if status.code() == Some(PORT_IN_USE) && err.contains("in use") {
        eprintln!("SKIPPED: {}", err.trim());
        return Ok(());
    }
    ensure!(
        status.success(),
        "run.sh exited with {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    ensure!(
        out.contains("from alertmesh import Gateway")
            && out.contains("gw.subscribe(\"ztf.alerts\")"),
        "the Python lines are missing:\n{out}"
    );
    let verdict = out
        .lines()
        .rfind(|l| l.starts_with("demo: ") && l.contains("copied alerts"))
        .with_context(|| format!("no final line:\n{out}"))?;
    ensure!(verdict.contains("every hop copied alerts"), "{verdict}");
    let last: String = out
        .lines()
        .filter(|l| l.starts_with("demo: "))
        .collect::<Vec<_>>()
        .join("\n");
    let last = last.as_str();
    // The live summary and final lines fit an 80-column terminal.
    let summary = out.split_once("live summary").map_or("", |(_, rest)| rest);
    for line in summary.lines().skip(1) {
        ensure!(
            line.chars().count() <= 80,
            "a summary line wider than 80 columns:\n{line}"
        );
    }
    for mirror in ["survey-ztf", "survey-ztf-bright", "lasair-ztf"] {
        let n = copied(last, mirror).with_context(|| format!("no count for {mirror}: {last}"))?;
        ensure!(n > 0, "{mirror} copied nothing: {last}");
    }
    // lasair archived what it mirrored (query ztf.history).
    let archived: u64 = last
        .split_once("lasair archived ")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .with_context(|| format!("no archive count: {last}"))?;
    ensure!(archived > 0, "lasair archived nothing: {last}");
    // The README shows the summary as it is printed: its column header and hop labels.
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    let shown = readme
        .split_once("```\n-- t=")
        .and_then(|(_, rest)| rest.split_once("```"))
        .context("no demo summary in the README")?
        .0;
    for line in shown.lines().skip(1) {
        let label: String = line.chars().take(40).collect();
        ensure!(
            out.contains(label.trim_end()),
            "README summary line not printed by the demo: {line:?}"
        );
    }
    // The summary was live (one every 2 s).
    ensure!(
        out.matches("-- t=").count() >= 5,
        "too few summaries:\n{out}"
    );
    ensure!(err.contains("stopped"), "no clean stop reported:\n{err}");
    ensure!(
        err.contains("stopping the demo mesh"),
        "no stopping line:\n{err}"
    );
    // Gateways stop before their brokers: no flood of refused connections while stopping.
    let refused = std::fs::read_to_string(root().join(".demo/gateway-fink.log"))
        .unwrap_or_default()
        .matches("Connection refused")
        .count();
    ensure!(refused < 5, "fink logged {refused} refused connections");
    // Everything it started is gone: the ports are free again.
    if let Some(port) = taken_port() {
        anyhow::bail!("port {port} is still in use after the demo stopped");
    }
    eprintln!(
        "demo ran and stopped in {:.1} s: {last}",
        took.as_secs_f64()
    );
    Ok(())
}
