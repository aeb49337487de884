//! An `alertmesh serve` process with a generated TOML config, on free 127.0.0.1 ports.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use alertmesh_proto::v1::alert_mesh_client::AlertMeshClient;
use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::cli::{alertmesh_bin, run_cli};
use crate::metrics::{http_get, Metrics};
use crate::process::{free_port, wait_until, Child};

/// How long a gateway may take to become ready, and to exit after SIGTERM.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const GRACE: Duration = Duration::from_secs(15);
/// gRPC messages may carry many 64 KB alerts.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// One `[[topics]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub namespace: String,
    pub format: String,
}

/// When a started gateway counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// `GET /healthz` answers 200.
    Healthz,
    /// The gRPC port accepts TCP connections (for gateways whose Kafka is unreachable).
    GrpcPort,
}

/// What to write into the gateway's config.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub name: String,
    pub bootstrap: String,
    pub topics: Vec<TopicSpec>,
    pub cursor_topic: Option<String>,
    pub timeout_ms: Option<u64>,
    pub ready: Ready,
    /// Raw TOML appended to the config (sections such as `[auth]` or `[[mirrors]]`).
    pub extra: Vec<String>,
    /// The address the gateway listens on (`127.0.0.1` unless in a network namespace).
    pub host: String,
    /// The network namespace the gateway runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// Extra `key = value` lines of the `[gateway]` section.
    pub gateway_keys: Vec<String>,
    /// The open-file limit (soft and hard) the gateway starts under, if not inherited.
    pub open_files: Option<u64>,
}

impl GatewaySpec {
    /// A gateway named `name` over the Kafka cluster at `bootstrap`, exposing nothing yet.
    pub fn new(name: &str, bootstrap: &str) -> Self {
        Self {
            name: name.to_owned(),
            bootstrap: bootstrap.to_owned(),
            topics: Vec::new(),
            cursor_topic: None,
            timeout_ms: None,
            ready: Ready::Healthz,
            extra: Vec::new(),
            host: "127.0.0.1".to_owned(),
            netns: None,
            gateway_keys: Vec::new(),
            open_files: None,
        }
    }

    /// Starts the gateway under an open-file limit of `n` descriptors (`ulimit -n`).
    pub fn open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Adds a `key = value` line to the `[gateway]` section.
    pub fn gateway_key(mut self, line: &str) -> Self {
        self.gateway_keys.push(line.to_owned());
        self
    }

    /// Appends raw TOML to the config.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push(toml.to_owned());
        self
    }

    /// Exposes `name` with the given namespace and payload format.
    pub fn topic(mut self, name: &str, namespace: &str, format: &str) -> Self {
        self.topics.push(TopicSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            format: format.to_owned(),
        });
        self
    }

    /// Runs the gateway in network namespace `netns`, listening on `host` there.
    pub fn in_netns(mut self, netns: &str, host: &str) -> Self {
        self.netns = Some(netns.to_owned());
        self.host = host.to_owned();
        self
    }

    /// Sets `kafka.timeout_ms`.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sets when the gateway counts as started.
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    /// The TOML config text for the given listen addresses.
    pub fn to_toml(&self, listen: &str, http_listen: &str) -> String {
        let mut toml = format!(
            "[gateway]\nname = {:?}\nlisten = {listen:?}\nhttp_listen = {http_listen:?}\n\n\
             [kafka]\nbootstrap = {:?}\n",
            self.name, self.bootstrap
        );
        if self.netns.is_some() {
            // A veth address is not loopback; the pair exists only on this machine.
            toml = toml.replacen("\n\n[kafka]", "\nallow_plaintext = true\n\n[kafka]", 1);
        }
        for line in &self.gateway_keys {
            toml = toml.replacen("\n\n[kafka]", &format!("\n{line}\n\n[kafka]"), 1);
        }
        if let Some(topic) = &self.cursor_topic {
            let _ = writeln!(toml, "cursor_topic = {topic:?}");
        }
        if let Some(ms) = self.timeout_ms {
            let _ = writeln!(toml, "timeout_ms = {ms}");
        }
        for t in &self.topics {
            let _ = write!(
                toml,
                "\n[[topics]]\nname = {:?}\nnamespace = {:?}\nformat = {:?}\n",
                t.name, t.namespace, t.format
            );
        }
        for extra in &self.extra {
            toml.push('\n');
            toml.push_str(extra);
            toml.push('\n');
        }
        toml
    }
}

/// A running gateway process; killed on drop.
#[derive(Debug)]
pub struct Gateway {
    spec: GatewaySpec,
    dir: TempDir,
    config: PathBuf,
    grpc_port: u16,
    http_port: u16,
    child: Option<Child>,
}

impl Gateway {
    /// Writes the config, spawns `alertmesh serve` and waits until it is ready.
    pub async fn start(spec: &GatewaySpec) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("alertmesh-gw-{}-", spec.name))
            .tempdir()?;
        let (grpc_port, http_port) = (free_port(), free_port());
        let config = dir.path().join("gateway.toml");
        let text = spec.to_toml(
            &format!("{}:{grpc_port}", spec.host),
            &format!("{}:{http_port}", spec.host),
        );
        std::fs::write(&config, text)?;
        let mut gateway = Self {
            spec: spec.clone(),
            dir,
            config,
            grpc_port,
            http_port,
            child: None,
        };
        gateway.spawn().await?;
        Ok(gateway)
    }

    /// Stops the gateway (SIGTERM), rewrites its config from `spec` on the same ports, and
    /// starts it again: how peers that must know each other's URLs are wired up.
    pub async fn reconfigure(&mut self, spec: GatewaySpec) -> Result<()> {
        if self.child.is_some() {
            self.sigterm().await?;
        }
        let text = spec.to_toml(
            &format!("{}:{}", spec.host, self.grpc_port),
            &format!("{}:{}", spec.host, self.http_port),
        );
        std::fs::write(&self.config, text)?;
        self.spec = spec;
        self.spawn().await
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut command = match &self.spec.netns {
            None => match self.spec.open_files {
                None => Command::new(alertmesh_bin()),
                Some(n) => {
                    let mut c = Command::new("sh");
                    c.args(["-c", r#"ulimit -n "$1" && shift && exec "$@""#, "sh"])
                        .arg(n.to_string())
                        .arg(alertmesh_bin());
                    c
                }
            },
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns]).arg(alertmesh_bin());
                c
            }
        };
        command.arg("serve").arg("--config").arg(&self.config).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        );
        let name = format!("gateway-{}", self.spec.name);
        self.child = Some(Child::spawn(&name, &mut command, self.dir.path())?);
        let (http, grpc) = (self.http_addr(), self.grpc_addr());
        let deadline = Instant::now() + READY_TIMEOUT;
        let child = self.child.as_mut().expect("spawned");
        loop {
            let ready = match self.spec.ready {
                Ready::Healthz => http_get(&http, "/healthz")
                    .await
                    .is_ok_and(|(status, _)| status == 200),
                Ready::GrpcPort => tokio::net::TcpStream::connect(&grpc).await.is_ok(),
            };
            if ready {
                return Ok(());
            }
            // A gateway that exited (e.g. a config it refuses) will not become ready.
            if let Some(exit) = child.try_exit() {
                bail!(
                    "gateway exited with {exit} before it was ready; stderr tail:\n{}",
                    child.stderr_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "gateway not ready after {READY_TIMEOUT:?}; stderr tail:\n{}",
                    child.stderr_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:<grpc port>`.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr())
    }

    /// `127.0.0.1:<grpc port>`.
    pub fn grpc_addr(&self) -> String {
        format!("{}:{}", self.spec.host, self.grpc_port)
    }

    /// `127.0.0.1:<http port>` (metrics and health).
    pub fn http_addr(&self) -> String {
        format!("{}:{}", self.spec.host, self.http_port)
    }

    /// The gateway's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// A scratch directory that lives as long as the gateway.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The gateway's process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The gateway as `alertmesh-client` reaches it (plain text, no token): to connect
    /// with [`alertmesh_client::Gateway::connect`] and subscribe with resume.
    pub fn endpoint(&self) -> Result<alertmesh_client::Gateway> {
        Ok(alertmesh_client::Gateway::new(
            &self.grpc_url(),
            &alertmesh_client::Options::default(),
        )?)
    }

    /// A new gRPC client connected to the gateway.
    pub async fn client(&self) -> Result<AlertMeshClient<Channel>> {
        let client = AlertMeshClient::new(self.channel().await?);
        Ok(client
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// A new connection to the gateway, tuned as `alertmesh-client` tunes every
    /// connection (large HTTP/2 windows and frames, TCP_NODELAY).
    pub async fn channel(&self) -> Result<Channel> {
        self.endpoint()?
            .channel()
            .await
            .context("connect to gateway")
    }

    /// Every mirror's status, from the `MirrorStatus` RPC.
    pub async fn mirror_status(&self) -> Result<Vec<alertmesh_proto::v1::MirrorInfo>> {
        let mut client = self.client().await?;
        let status = client
            .mirror_status(alertmesh_proto::v1::MirrorStatusRequest {})
            .await?;
        Ok(status.into_inner().mirrors)
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> Result<Metrics> {
        let (status, body) = http_get(&self.http_addr(), "/metrics").await?;
        if status != 200 {
            bail!("GET /metrics returned {status}: {body}");
        }
        Ok(Metrics::parse(&body))
    }

    /// Waits until `predicate` holds for a scrape of `/metrics`, and returns that scrape.
    pub async fn wait_metrics(
        &self,
        what: &str,
        predicate: impl Fn(&Metrics) -> bool,
    ) -> Result<Metrics> {
        let predicate = &predicate;
        let waited = wait_until(what, READY_TIMEOUT, || async move {
            self.metrics().await.ok().filter(predicate)
        })
        .await;
        match waited {
            Ok(m) => Ok(m),
            Err(e) => {
                let now = self.metrics().await.unwrap_or_default();
                bail!("{e}; last scrape: {now:?}")
            }
        }
    }

    /// SIGTERM, then the same config again (same ports), waiting until ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.sigterm().await?;
        self.spawn().await
    }

    /// SIGKILL, then start again on the same ports with the same config (a crash and a
    /// supervisor's restart).
    pub async fn kill_and_restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn().await
    }

    /// Starts a gateway that was killed or stopped, on the same ports.
    pub async fn start_again(&mut self) -> Result<()> {
        self.spawn().await
    }

    /// The exit status if the gateway process has exited (e.g. crashed), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(Child::try_exit)
    }

    /// SIGKILL; the gateway stays down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGTERM and wait for the exit (failing after a grace period).
    pub async fn sigterm(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("gateway not running")?;
        child.terminate(GRACE).await
    }

    /// The last lines the gateway wrote to stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        crate::process::tail(
            &self
                .dir
                .path()
                .join(format!("gateway-{}.stderr", self.spec.name)),
            lines,
        )
    }

    /// Waits until the gateway's stderr holds `needle` (a log line it must write).
    pub async fn wait_stderr(&self, needle: &str) -> Result<()> {
        let waited = wait_until(needle, READY_TIMEOUT, || async {
            self.stderr_tail(200).contains(needle).then_some(())
        })
        .await;
        waited.with_context(|| format!("stderr tail:\n{}", self.stderr_tail(40)))
    }

    /// Runs the `alertmesh` CLI with `args` followed by `--gateway <url>`.
    pub async fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.extend(["--gateway".to_owned(), self.grpc_url()]);
        run_cli(&all).await
    }
}
