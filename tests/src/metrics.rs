//! A minimal HTTP/1.1 GET (for `/healthz` and `/metrics`) and a Prometheus text parser.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET path` to `addr` and returns the status code and body.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    get(addr, path, None, None).await
}

/// [`http_get`] over TLS with `tls` (its ALPN is set to HTTP/1.1 here).
pub async fn https_get(addr: &str, path: &str, tls: rustls::ClientConfig) -> Result<(u16, String)> {
    get(addr, path, Some(tls), None).await
}

/// [`https_get`] with `Authorization: Bearer <token>` when a token is given.
pub async fn https_get_with_token(
    addr: &str,
    path: &str,
    tls: rustls::ClientConfig,
    token: Option<&str>,
) -> Result<(u16, String)> {
    get(addr, path, Some(tls), token).await
}

async fn get(
    addr: &str,
    path: &str,
    tls: Option<rustls::ClientConfig>,
    token: Option<&str>,
) -> Result<(u16, String)> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        let mut raw = Vec::new();
        match tls {
            None => {
                let mut stream = tcp;
                stream.write_all(request.as_bytes()).await?;
                stream.read_to_end(&mut raw).await?;
            }
            Some(mut config) => {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
                let mut stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                    .connect(name, tcp)
                    .await?;
                stream.write_all(request.as_bytes()).await?;
                // A server may close without a TLS close_notify once the body is sent.
                if let Err(e) = stream.read_to_end(&mut raw).await {
                    if raw.is_empty() {
                        return Err(e.into());
                    }
                }
            }
        }
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("http get timed out")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no http header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no http status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            bail!("short chunk");
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
}

/// One scrape of `/metrics`: samples keyed by name and sorted labels.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Parses the Prometheus text exposition format (comments are skipped).
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Self { samples }
    }

    /// The value of the sample `name` whose labels include all of `labels`; summed when
    /// several samples match. `None` when none does.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for (n, l, v) in &self.samples {
            let matches = labels
                .iter()
                .all(|(k, want)| l.get(*k).is_some_and(|got| got == want));
            if n == name && matches {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// Like [`Metrics::get`], with 0 for an absent sample (a counter never incremented).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// All sample names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.samples.iter().map(|(n, _, _)| n.as_str()).collect();
        names.dedup();
        names
    }
}

fn parse_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series.trim(), BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.trim_end().strip_suffix('}')?;
            let labels = body
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                })
                .collect();
            (name, labels)
        }
    };
    Some((name.to_owned(), labels, value))
}
