//! A network namespace joined to this machine by a veth pair, to cut a gateway off from
//! its peers (`ip link set ... down`) and join it again. Needs root and `ip`; [`Netns::new`]
//! says why it cannot be made, and tests then skip with that message.
//!
//! The pair uses `10.200.<n>.1` (this side) and `10.200.<n>.2` (inside the namespace), a
//! /30 that exists only on this machine. Everything is deleted on drop, even when a test
//! fails.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

/// A namespace with one veth pair.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_link: String,
    inner_link: String,
    index: u32,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates the namespace and the pair, both ends up; `Ok(Err(reason))` when this
    /// process cannot: not root, or no `ip`.
    pub fn new() -> Result<Result<Self, String>> {
        // The effective user id, from /proc/self/status (no libc call needed).
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0");
        if !root {
            return Ok(Err("not root: network namespaces need CAP_NET_ADMIN".into()));
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Ok(Err("the `ip` command (iproute2) is missing".into()));
        }
        // Unique per process and call; the pid keeps parallel test binaries apart.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let index = (pid % 200) * 8 + n % 8 + 1;
        let inner = format!("amv{}n{n}", pid % 100_000);
        let ns = Netns {
            name: format!("amtest-{pid}-{n}"),
            host_link: format!("amv{}h{n}", pid % 100_000),
            inner_link: inner.clone(),
            index,
        };
        ns.ip(&["netns", "add", &ns.name])?;
        ns.ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
        ])?;
        ns.ip(&["link", "set", &inner, "netns", &ns.name])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip()),
            "dev",
            &ns.host_link,
        ])?;
        ns.ip(&["link", "set", &ns.host_link, "up"])?;
        ns.inside(&[
            "addr",
            "add",
            &format!("{}/30", ns.inner_ip()),
            "dev",
            &inner,
        ])?;
        ns.inside(&["link", "set", &inner, "up"])?;
        ns.inside(&["link", "set", "lo", "up"])?;
        Ok(Ok(ns))
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This side's address.
    pub fn host_ip(&self) -> String {
        format!("10.200.{}.{}", self.index / 64, (self.index % 64) * 4 + 1)
    }

    /// The address inside the namespace.
    pub fn inner_ip(&self) -> String {
        format!("10.200.{}.{}", self.index / 64, (self.index % 64) * 4 + 2)
    }

    /// Cuts the link: nothing passes between the namespace and this side. The inner end
    /// goes down, so this side keeps its route to the pair (marked linkdown): packets for
    /// the namespace are dropped here, never sent along another route off this machine.
    pub fn cut(&self) -> Result<()> {
        self.inside(&["link", "set", &self.inner_link, "down"])
    }

    /// Joins the link again.
    pub fn join(&self) -> Result<()> {
        self.inside(&["link", "set", &self.inner_link, "up"])
    }

    fn inside(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        self.ip(&all)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .with_context(|| format!("ip {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "ip {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inner end, and with it the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
