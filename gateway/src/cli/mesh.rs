//! Mesh-wide client commands: `mirror status` and `directory` (a breadth-first walk over
//! every gateway reachable through peers).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::Duration;

use alertmesh_proto::v1;
use serde_json::json;

use alertmesh_client::Gateway;

use super::commands::hidden_topics;
use super::output::{field, message, text as terminal_text};
use super::{connect, status_line, GatewayArg};

/// Most gateways a walk visits: a hostile gateway can name any number of peers.
const MAX_GATEWAYS: usize = 256;

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
    let mut client = connect(&gateway).await?;
    let mirrors = client
        .grpc()
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
                    "replica": m.replica,
                    "replicas": m.replicas.iter()
                        .map(|r| (r.replica.clone(), r.partitions.clone()))
                        .collect::<BTreeMap<String, Vec<i32>>>(),
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
            for r in &m.replicas {
                let partitions: Vec<String> = r.partitions.iter().map(i32::to_string).collect();
                let this = if r.replica == m.replica {
                    " (answered)"
                } else {
                    ""
                };
                lines.push(format!(
                    "  replica {}{this}: partitions {}",
                    field(&r.replica),
                    if partitions.is_empty() {
                        "-".to_owned()
                    } else {
                        partitions.join(",")
                    }
                ));
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

/// A gateway of a walk: how it was reached, its description, and how many of its topics
/// the description leaves out because they need a token.
type Described = (Gateway, v1::GatewayDescription, u64);

/// DescribeGateway is open: it is called without a token. Only when the gateway keeps
/// topics back, and it is a gateway the user configured whose name the token's `aud`
/// names, is it asked again with the token, to list them.
async fn describe(gateway: &Gateway) -> Result<(v1::GatewayDescription, u64), String> {
    let once = |g: Gateway| async move {
        let mut client = g
            .connect()
            .await
            .map_err(|e| e.to_string())?
            .with_max_message_bytes(MAX_DESCRIPTION_BYTES);
        let response = client
            .grpc()
            .describe_gateway(v1::DescribeGatewayRequest {})
            .await
            .map_err(|s| status_line(&s))?;
        let hidden = hidden_topics(response.metadata());
        Ok::<_, String>((response.into_inner(), hidden))
    };
    let (d, hidden) = once(gateway.without_token()).await?;
    let with_token = gateway.for_name(&d.name);
    if hidden == 0 || !with_token.has_token() {
        return Ok((d, hidden));
    }
    once(with_token).await
}

/// Largest description taken from a gateway of a walk (one with thousands of topics
/// takes a few hundred KB): a walk keeps up to 256 of them.
const MAX_DESCRIPTION_BYTES: usize = 2 << 20;

/// Walks the mesh breadth-first from `home`, through every gateway's mirror sources.
/// Returns each reachable gateway's description with the [`Gateway`] it was reached as,
/// and the gateways that could not be reached with the reason. Peers are addresses other
/// gateways supplied, so they are reached as [`Gateway::discovered`]: never with the
/// user's token.
async fn walk(home: &Gateway) -> Result<(Vec<Described>, Vec<(String, String)>), String> {
    let mut queue = VecDeque::from([home.clone()]);
    let mut seen = vec![home.url().to_owned()];
    let (mut found, mut failed) = (Vec::new(), Vec::new());
    while let Some(gateway) = queue.pop_front() {
        let described = tokio::time::timeout(HOP_TIMEOUT, describe(&gateway))
            .await
            .map_err(|_| format!("no answer within {HOP_TIMEOUT:?}"))
            .and_then(|d| d);
        match described {
            Ok((d, hidden)) => {
                for p in d.peers.iter().filter(|p| p.relation == "mirror-source") {
                    match home.discovered(&p.url) {
                        Ok(peer) if seen.len() < MAX_GATEWAYS => {
                            if !seen.iter().any(|u| u == peer.url()) {
                                seen.push(peer.url().to_owned());
                                queue.push_back(peer);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => failed.push((p.url.clone(), e.to_string())),
                    }
                }
                found.push((gateway, d, hidden));
            }
            Err(e) if found.is_empty() => return Err(e),
            Err(e) => failed.push((gateway.url().to_owned(), e)),
        }
    }
    Ok((found, failed))
}

/// A gateway of a walk configured by the user: TLS files apply to `https://` URLs only
/// (a walk crosses open and TLS gateways).
fn configured(url: &str, gateway: &GatewayArg) -> Result<Gateway, String> {
    Gateway::lenient(url, &gateway.auth.options()?).map_err(|e| e.to_string())
}

pub(super) async fn directory(gateway: GatewayArg, as_json: bool) -> Result<(), String> {
    let (found, failed) = walk(&configured(gateway.first_url()?, &gateway)?).await?;
    let mut out = std::io::stdout().lock();
    for (reached, d, hidden) in &found {
        let url = reached.url();
        let text = if as_json {
            json!({
                "name": d.name, "reached_at": url, "version": d.version,
                "endpoints": d.endpoints.iter().map(|e| json!({"kind": e.kind, "url": e.url})).collect::<Vec<_>>(),
                "topics": d.topics.iter().map(|t| json!({
                    "name": t.name, "namespace": t.namespace, "format": t.format, "partitions": t.partitions,
                    "schema_ids": t.schema_ids, "schema_registry": t.schema_registry,
                    "publishable": t.publishable, "publish_schema": t.publish_schema,
                })).collect::<Vec<_>>(),
                "auth": d.auth.iter().map(|a| json!({"kind": a.kind, "params": a.params})).collect::<Vec<_>>(),
                "peers": d.peers.iter().map(|p| json!({"name": p.name, "url": p.url, "relation": p.relation})).collect::<Vec<_>>(),
                "topics_need_token": hidden,
            })
            .to_string()
        } else {
            // Every value comes from the gateway: each is one line of its own (a newline
            // inside one would print lines that look like another gateway's).
            let f = |text: &str| field(text);
            let mut s = format!("{} ({}, alertmesh {})\n", f(&d.name), f(url), f(&d.version));
            for e in &d.endpoints {
                s.push_str(&format!("  endpoint {:<5} {}\n", f(&e.kind), f(&e.url)));
            }
            for a in &d.auth {
                let params: Vec<String> = a
                    .params
                    .iter()
                    .map(|(k, v)| format!("{}={}", f(k), f(v)))
                    .collect();
                s.push_str(&format!("  auth     {} {}\n", f(&a.kind), params.join(" ")));
            }
            for t in &d.topics {
                s.push_str(&format!(
                    "  topic    {} ({} {}, {} partitions)\n",
                    f(&t.name),
                    f(&t.namespace),
                    f(&t.format),
                    t.partitions
                ));
                if !t.schema_ids.is_empty() {
                    let ids: Vec<String> = t.schema_ids.iter().map(u32::to_string).collect();
                    s.push_str(&format!(
                        "           schema ids {} at {}\n",
                        ids.join(", "),
                        f(&t.schema_registry)
                    ));
                }
            }
            if *hidden > 0 {
                s.push_str(&format!(
                    "  topics   {hidden} more need a token for {} (--token)\n",
                    f(&d.name)
                ));
            }
            for p in &d.peers {
                s.push_str(&format!(
                    "  peer     {} {} ({})\n",
                    f(&p.name),
                    f(&p.url),
                    f(&p.relation)
                ));
            }
            terminal_text(&s)
        };
        if writeln!(out, "{text}").is_err() {
            return Ok(());
        }
    }
    for (url, e) in &failed {
        eprintln!("warning: cannot reach {}: {}", field(url), message(e));
    }
    Ok(())
}

/// How long one gateway of a walk may take to answer.
const HOP_TIMEOUT: Duration = Duration::from_secs(15);
