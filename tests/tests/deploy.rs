//! The configurations shipped in `deploy/` are valid: `alertmesh serve --check` accepts
//! each of them, including the one embedded in the Kubernetes ConfigMap (with
//! `--skip-files`: the certificates and tokens they name are made where they run).

use std::path::{Path, PathBuf};
use std::process::Command;

use alertmesh_tests::cli::alertmesh_bin;
use anyhow::{ensure, Context, Result};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn check(config: &Path) -> Result<()> {
    let out = Command::new(alertmesh_bin())
        .args(["serve", "--check", "--skip-files", "--config"])
        .arg(config)
        .output()?;
    ensure!(
        out.status.success(),
        "{} rejected: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn demo_configs_pass_the_check() -> Result<()> {
    let mut n = 0;
    for entry in std::fs::read_dir(deploy().join("demo"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            check(&path)?;
            n += 1;
        }
    }
    ensure!(n > 0, "no demo configs found");
    Ok(())
}

#[test]
fn kubernetes_configmap_holds_a_valid_gateway_config() -> Result<()> {
    let manifest = std::fs::read_to_string(deploy().join("kubernetes/alertmesh.yaml"))?;
    // The block scalar after `gateway.toml: |`, up to the end of the ConfigMap document.
    let start = manifest
        .find("gateway.toml: |")
        .context("no gateway.toml in the ConfigMap")?;
    let block = &manifest[start..];
    let block = &block[block.find('\n').context("empty block")? + 1..];
    let end = block.find("\n---").unwrap_or(block.len());
    let toml: String = block[..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml)?;
    check(&path)
}
