//! Mesh-wide client commands: `mirror status`, `directory` (a breadth-first walk over
//! every gateway reachable through peers) and `provenance` (an alert's path back to where
//! it entered the mesh).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;

use alertmesh_alert::headers;
use alertmesh_alert::AlertRef;
use alertmesh_proto::v1;
use serde_json::json;

use super::client::{connect, ClientAuthArgs};
use super::output::{field, message, text as terminal_text};
use super::{status_line, GatewayArg};

/// `alertmesh mirror ...`
#[derive(Debug, clap::Subcommand)]
pub enum MirrorCommand {
    /// State, positions, lag and counters of a gateway's mirror jobs.
    Status {
        #[command(flatten)]
        gateway: GatewayArg,
        /// One JSON object per mirror.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn mirror(cmd: MirrorCommand) -> Result<(), String> {
    let MirrorCommand::Status { gateway, json } = cmd;
    let mut client = connect(&gateway.url, &gateway.auth).await?;
    let mirrors = client
        .mirror_status(v1::MirrorStatusRequest {})
        .await
        .map_err(|s| status_line(&s))?
        .into_inner()
        .mirrors;
    let mut out = std::io::stdout().lock();
    let mut lines = Vec::new();
    if json {
        for m in &mirrors {
            let positions: BTreeMap<String, i64> = m
                .positions
                .iter()
                .map(|p| (p.partition.to_string(), p.offset))
                .collect();
            lines.push(
                json!({
                    "name": m.name, "state": m.state, "source": m.source,
                    "destination": m.destination, "positions": positions,
                    "lag_seconds": m.lag_seconds, "copied": m.copied,
                    "cycles_dropped": m.cycles_dropped, "dead_lettered": m.dead_lettered,
                    "errors": m.errors, "reconnects": m.reconnects, "error": m.error,
                })
                .to_string(),
            );
        }
    } else {
        lines.push(format!(
            "{:<20} {:<10} {:>9} {:>8} {:>6} {:>6}  SOURCE -> DESTINATION",
            "MIRROR", "STATE", "COPIED", "LAG(s)", "DLQ", "ERRORS"
        ));
        for m in &mirrors {
            lines.push(format!(
                "{:<20} {:<10} {:>9} {:>8.1} {:>6} {:>6}  {} -> {}",
                field(&m.name),
                field(&m.state),
                m.copied,
                m.lag_seconds,
                m.dead_lettered,
                m.errors,
                field(&m.source),
                field(&m.destination)
            ));
            if !m.error.is_empty() {
                lines.push(format!("  last error: {}", message(&m.error)));
            }
        }
    }
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            break;
        }
    }
    Ok(())
}

/// Walks the mesh breadth-first from `start`, through every gateway's mirror sources.
/// Returns each reachable gateway's description with the URL it was reached at, and the
/// gateways that could not be reached with the reason.
async fn walk(
    start: &GatewayArg,
) -> Result<(Vec<(String, v1::GatewayDescription)>, Vec<(String, String)>), String> {
    let mut queue = VecDeque::from([start.url.clone()]);
    let mut seen = vec![start.url.clone()];
    let (mut found, mut failed) = (Vec::new(), Vec::new());
    while let Some(url) = queue.pop_front() {
        let described = async {
            // DescribeGateway is open: no token leaves for a gateway it was not issued for.
            let mut c = connect(&url, &for_gateway(&url, None, &start.auth)?).await?;
            c.describe_gateway(v1::DescribeGatewayRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|s| status_line(&s))
        }
        .await;
        match described {
            Ok(d) => {
                for p in d.peers.iter().filter(|p| p.relation == "mirror-source") {
                    if !seen.contains(&p.url) {
                        seen.push(p.url.clone());
                        queue.push_back(p.url.clone());
                    }
                }
                found.push((url, d));
            }
            Err(e) if found.is_empty() => return Err(e),
            Err(e) => failed.push((url, e)),
        }
    }
    Ok((found, failed))
}

pub(super) async fn directory(gateway: GatewayArg, as_json: bool) -> Result<(), String> {
    let (found, failed) = walk(&gateway).await?;
    let mut out = std::io::stdout().lock();
    for (url, d) in &found {
        let text = if as_json {
            json!({
                "name": d.name, "reached_at": url, "version": d.version,
                "endpoints": d.endpoints.iter().map(|e| json!({"kind": e.kind, "url": e.url})).collect::<Vec<_>>(),
                "topics": d.topics.iter().map(|t| json!({
                    "name": t.name, "namespace": t.namespace, "format": t.format, "partitions": t.partitions,
                })).collect::<Vec<_>>(),
                "auth": d.auth.iter().map(|a| json!({"kind": a.kind, "params": a.params})).collect::<Vec<_>>(),
                "peers": d.peers.iter().map(|p| json!({"name": p.name, "url": p.url, "relation": p.relation})).collect::<Vec<_>>(),
            })
            .to_string()
        } else {
            let mut s = format!("{} ({url}, alertmesh {})\n", d.name, d.version);
            for e in &d.endpoints {
                s.push_str(&format!("  endpoint {:<5} {}\n", e.kind, e.url));
            }
            for a in &d.auth {
                let params: Vec<String> =
                    a.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("  auth     {} {}\n", a.kind, params.join(" ")));
            }
            for t in &d.topics {
                s.push_str(&format!(
                    "  topic    {} ({} {}, {} partitions)\n",
                    t.name, t.namespace, t.format, t.partitions
                ));
            }
            for p in &d.peers {
                s.push_str(&format!(
                    "  peer     {} {} ({})\n",
                    p.name, p.url, p.relation
                ));
            }
            terminal_text(&s)
        };
        if writeln!(out, "{text}").is_err() {
            return Ok(());
        }
    }
    for (url, e) in &failed {
        eprintln!("warning: cannot reach {}: {e}", field(url));
    }
    Ok(())
}

pub(super) async fn provenance(gateway: GatewayArg, alert_ref: &str) -> Result<(), String> {
    let (found, _) = walk(&gateway).await?;
    let url_of: BTreeMap<String, String> =
        found.into_iter().map(|(url, d)| (d.name, url)).collect();
    let mut next: AlertRef = alert_ref
        .parse()
        .map_err(|e: alertmesh_alert::Error| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut origin_claimed: Option<String> = None;
    for hop in 0.. {
        if hop > 64 {
            return Err("more than 64 hops: the provenance chain loops".into());
        }
        let url = url_of.get(&next.gateway).ok_or_else(|| {
            format!(
                "gateway {:?} is not reachable from {} in the mesh directory",
                next.gateway, gateway.url
            )
        })?;
        let mut c = connect(url, &for_gateway(url, Some(&next.gateway), &gateway.auth)?).await?;
        let a = c
            .fetch(v1::FetchRequest {
                r#ref: next.to_string(),
            })
            .await
            .map_err(|s| format!("{next}: {}", status_line(&s)))?
            .into_inner();
        let header = |name: &str| {
            a.headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.as_ref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if origin_claimed.is_none() {
            origin_claimed = header(headers::ORIGIN);
        }
        let source = header(headers::SOURCE);
        let line = json!({
            "hop": hop, "ref": a.r#ref, "key": a.mesh_key, "hops": header(headers::HOPS),
            "source": source, "timestamp": a.timestamp.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
        });
        let _ = writeln!(out, "{line}");
        match source.as_deref().map(str::parse::<AlertRef>) {
            Some(Ok(r)) => next = r,
            // No gateway source: the alert entered the mesh here (from a survey's Kafka).
            _ => {
                if let Some(claimed) = origin_claimed.filter(|o| *o != a.r#ref) {
                    return Err(format!(
                        "the chain ends at {} but am-origin names {}",
                        field(&a.r#ref),
                        field(&claimed)
                    ));
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The options to reach one gateway of a walk: TLS files only for https:// URLs (a walk
/// crosses open and TLS gateways), and the token only for the gateway it was issued for
/// (its `aud`), so a bearer token never reaches another gateway.
fn for_gateway(
    url: &str,
    name: Option<&str>,
    auth: &ClientAuthArgs,
) -> Result<ClientAuthArgs, String> {
    let mut a = auth.clone();
    if !url.starts_with("https://") {
        a.ca = None;
        a.cert = None;
        a.key = None;
    }
    let token = auth.token()?;
    let meant_here = match (name, token.as_deref().and_then(audience)) {
        (Some(n), Some(aud)) => aud.iter().any(|x| x == n),
        _ => false,
    };
    if !meant_here {
        a.token_file = None;
        a.token_env = None;
    }
    Ok(a)
}

/// The `aud` claim of a JWT, read without verifying it (only to choose where to send it).
fn audience(token: &str) -> Option<Vec<String>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match &claims["aud"] {
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_only_to_their_audience_and_tls_files_only_to_https() {
        use base64::Engine as _;
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.sig",
            enc(json!({"alg": "EdDSA"})),
            enc(json!({"aud": "lasair"}))
        );
        assert_eq!(audience(&token), Some(vec!["lasair".to_owned()]));
        let dir = std::env::temp_dir().join(format!("am-mesh-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.jwt");
        std::fs::write(&file, &token).unwrap();
        let auth = ClientAuthArgs {
            token_file: Some(file),
            ca: Some("ca.pem".into()),
            ..ClientAuthArgs::default()
        };
        let to_lasair = for_gateway("https://x:1", Some("lasair"), &auth).unwrap();
        assert!(to_lasair.token_file.is_some() && to_lasair.ca.is_some());
        let to_fink = for_gateway("http://x:2", Some("fink"), &auth).unwrap();
        assert!(to_fink.token_file.is_none() && to_fink.ca.is_none());
        assert!(for_gateway("https://x:1", None, &auth)
            .unwrap()
            .token_file
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
