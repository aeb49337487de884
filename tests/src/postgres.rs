//! A real PostgreSQL server for the query tests: a fresh cluster per test in a temporary
//! directory, on a free 127.0.0.1 port, with password (SCRAM) authentication over TCP;
//! stopped on drop. `scripts/postgres.sh` (run by `make test`) installs the server when
//! missing; `psql` runs the same SQL the gateway does, as the tests' ground truth.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::process::{free_port, wait_until, Child};

/// The superuser's password of every test cluster.
pub const PASSWORD: &str = "alertmesh-test-pw";

/// How long a fresh cluster may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running PostgreSQL cluster, stopped and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    port: u16,
    /// The cluster's data directory is `<dir>/data`; the socket lives in `<dir>`.
    dir: TempDir,
    child: Option<Child>,
    /// Root runs the server as the `postgres` user (initdb refuses root).
    owner: Option<(u32, u32)>,
}

impl Postgres {
    /// The directory of `initdb`, `pg_ctl`, `postgres` and `psql`: `$PG_BIN`, else the
    /// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
    pub fn bin_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PG_BIN") {
            let dir = PathBuf::from(dir);
            return dir.join("initdb").is_file().then_some(dir);
        }
        let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| {
                let version = e
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(|p| p.parse().ok())
                    .collect::<Option<Vec<u32>>>()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    }

    /// Starts a fresh cluster, or returns `None` after a loud message when PostgreSQL is
    /// not installed (`make test` installs it; so does `scripts/postgres.sh`).
    pub async fn start_or_skip() -> Result<Option<Self>> {
        match Self::bin_dir() {
            Some(bin) => Ok(Some(Self::start_with(bin).await?)),
            None => {
                eprintln!(
                    "\n*** SKIPPED: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, \
                     no $PG_BIN). Run scripts/postgres.sh or `make test` to install it. ***\n"
                );
                Ok(None)
            }
        }
    }

    /// Starts a fresh cluster with the binaries of `bin`.
    pub async fn start_with(bin: PathBuf) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("alertmesh-pg-")
            .tempdir()
            .context("create cluster directory")?;
        let owner = if is_root() {
            let uid = id("-u")?;
            let gid = id("-g")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("chown the cluster directory to postgres")?;
            Some((uid, gid))
        } else {
            None
        };
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }
        let out = command(&bin.join("initdb"), owner)
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut pg = Postgres {
            bin,
            port: free_port(),
            dir,
            child: None,
            owner,
        };
        pg.start().await?;
        Ok(pg)
    }

    /// Starts the server of this cluster (again) on its port and waits until it answers.
    pub async fn start(&mut self) -> Result<()> {
        let data = self.dir.path().join("data");
        let mut cmd = command(&self.bin.join("postgres"), self.owner);
        cmd.arg("-D").arg(&data).args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("port={}", self.port),
            "-c",
            &format!("unix_socket_directories={}", self.dir.path().display()),
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=60",
            "-c",
            "log_min_messages=warning",
        ]);
        let logs = self.dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        self.child = Some(Child::spawn("postgres", &mut cmd, &logs)?);
        let pg = &*self;
        wait_until("postgres to accept connections", START_TIMEOUT, || async {
            pg.psql("select 1").ok()
        })
        .await
        .with_context(|| {
            format!(
                "postgres did not start: {}",
                crate::process::tail(&logs.join("postgres.stderr"), 20)
            )
        })?;
        Ok(())
    }

    /// Stops the server (fast shutdown) and waits for it; the data stays for [`Self::start`].
    pub async fn stop(&mut self) -> Result<()> {
        let out = command(&self.bin.join("pg_ctl"), self.owner)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["stop", "-m", "fast", "-w", "-t", "30"])
            .output()
            .context("run pg_ctl stop")?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// Turns TLS on: the server presents `cert_pem` (chain, leaf first) with `key_pem`
    /// (written into the data directory, the key 0600 and owned by the server's user, as
    /// PostgreSQL insists), trusts `client_ca_pem` for client certificates when given, and
    /// with `hba` replaces `pg_hba.conf` (e.g. `hostssl` lines only, so that plain TCP is
    /// refused). Restarts the server.
    pub async fn enable_tls(
        &mut self,
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
        hba: Option<&str>,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let data = self.dir.path().join("data");
        let mut settings =
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".to_owned();
        let mut files = vec![
            ("server.crt", cert_pem, 0o644),
            ("server.key", key_pem, 0o600),
        ];
        if let Some(ca) = client_ca_pem {
            files.push(("client-ca.crt", ca, 0o644));
            settings.push_str("ssl_ca_file = 'client-ca.crt'\n");
        }
        if let Some(hba) = hba {
            files.push(("pg_hba.conf", hba, 0o600));
        }
        for (name, text, mode) in files {
            let path = data.join(name);
            std::fs::write(&path, text).with_context(|| format!("write {name}"))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).context("read postgresql.conf")?;
        text.push_str(&settings);
        std::fs::write(&conf, text)?;
        self.stop().await?;
        self.start().await
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>` (the password is [`PASSWORD`]).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` with `psql` over TCP on database `postgres`, unaligned with tab-separated
    /// fields, stopping at the first error: its standard output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_on("postgres", sql)
    }

    /// Like [`Self::psql`] on another database.
    pub fn psql_on(&self, database: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", database, "-c", sql])
            .output()
            .context("run psql")?;
        if !out.status.success() {
            bail!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The cluster's directory (data in `data/`, server logs in `logs/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Immediate shutdown ends the server's backends too; the kill below is the
            // backstop if pg_ctl cannot.
            let _ = command(&self.bin.join("pg_ctl"), self.owner)
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["stop", "-m", "immediate", "-w", "-t", "10"])
                .output();
        }
    }
}

fn command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    cmd
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
fn id(flag: &str) -> Result<u32> {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .context("run id")?;
    if !out.status.success() {
        bail!("there is no postgres user to run the server as (install PostgreSQL: scripts/postgres.sh)");
    }
    Ok(std::str::from_utf8(&out.stdout)?.trim().parse()?)
}
