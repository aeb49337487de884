//! Running the `alertmesh` binary itself: where it is, and one-shot CLI invocations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

/// Runs the `alertmesh` binary with `args`, failing if it does not exit within 30 s.
pub async fn run_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<std::process::Output> {
    let mut command = tokio::process::Command::new(alertmesh_bin());
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .context("alertmesh did not exit within 30 s")?
        .context("run alertmesh")?;
    Ok(output)
}

/// The JSON lines a CLI run printed; an error with its stderr if the run failed.
pub fn json_lines(out: &std::process::Output) -> Result<Vec<serde_json::Value>> {
    ensure!(
        out.status.success(),
        "alertmesh failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::str::from_utf8(&out.stdout)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l}")))
        .collect()
}

/// The `alertmesh` binary: `$ALERTMESH_BIN`, else the one next to the running test binary
/// (`target/<profile>/deps/<test>` → `target/<profile>/alertmesh`).
pub fn alertmesh_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ALERTMESH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("alertmesh")
}
