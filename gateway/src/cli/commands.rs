//! The client commands. Each returns one error line for the caller to print.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use alertmesh_alert::{BytesMode, Decoder, Format, JsonOptions};
use alertmesh_proto::v1;

use super::output::{alert_json, decoded_json, field, message, raw_path};
use super::positions::{parse_cone, parse_from, parse_until};
use super::{connect, connect_replicas, status_line, GatewayArg, OutputFormat, SubscribeArgs};
use crate::catalog::TOPICS_NEED_TOKEN;

/// Writing to a closed pipe (`| head`) ends the command quietly.
fn write_err(e: io::Error) -> Option<String> {
    (e.kind() != io::ErrorKind::BrokenPipe).then(|| format!("cannot write output: {e}"))
}

pub(super) async fn subscribe(args: SubscribeArgs) -> Result<(), String> {
    if args.format == OutputFormat::Raw && args.out.is_none() {
        return Err("--format raw needs --out DIR".into());
    }
    if args.limit == Some(0) {
        return Err("invalid --limit 0: expected a positive number of alerts".into());
    }
    let req = v1::SubscribeRequest {
        topic: args.topic.clone(),
        start: Some(parse_from(&args.from)?),
        end: args.until.as_deref().map(parse_until).transpose()?,
        limit: args.limit,
        cursor: args.cursor.clone().unwrap_or_default(),
        max_batch_alerts: 0,
        max_batch_bytes: 0,
        ids: args.ids.clone(),
        cone: args.cone.as_deref().map(parse_cone).transpose()?,
        filter: args.filter.clone().unwrap_or_default(),
        output: match args.format {
            OutputFormat::Json => v1::Output::Json,
            OutputFormat::Native | OutputFormat::Raw => v1::Output::Native,
        } as i32,
        omit_cutouts: args.omit_cutouts,
        resume: Vec::new(),
        // The CLI prints standard JSON.
        json_bare_nonfinite: false,
    };
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create --out {}: {e}", dir.display()))?;
    }
    let (client, replicas) = connect_replicas(&args.gateway).await?;
    // Live and time-bounded streams reconnect after a gateway restart, or move to another
    // replica, and resume after the last alert written, without gaps or repeats.
    let mut subscription = client
        .subscribe_with_replicas(&replicas, req)
        .await
        .map_err(|e| e.to_string())?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut reconnects = 0;
    let mut files: u64 = 0;
    loop {
        let batch = match subscription.next_batch().await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                return Err(e.to_string());
            }
        };
        if subscription.reconnects() > reconnects {
            reconnects = subscription.reconnects();
            eprintln!(
                "warning: the stream was interrupted and resumed ({reconnects} reconnect(s))"
            );
        }
        for s in &batch.skipped {
            eprintln!(
                "warning: skipped {}: {}",
                field(&s.r#ref),
                message(&s.reason)
            );
        }
        for a in &batch.alerts {
            match (&args.format, &args.out) {
                (OutputFormat::Raw, Some(dir)) => {
                    let path = raw_path(dir, a)?;
                    // Files are named by topic: one of another topic would overwrite what
                    // an earlier subscription to that topic saved in the same directory.
                    if a.topic != args.topic {
                        return Err(format!(
                            "the gateway sent an alert of topic \"{}\" on a subscription to \
                             {:?}; nothing more is written",
                            field(&a.topic),
                            args.topic
                        ));
                    }
                    std::fs::write(&path, &a.payload)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    files += 1;
                }
                _ => {
                    let line = match args.format {
                        OutputFormat::Json => decoded_json(a),
                        _ => alert_json(a).to_string(),
                    };
                    if let Err(e) = writeln!(out, "{line}") {
                        return write_err(e).map_or(Ok(()), Err);
                    }
                }
            }
        }
        if let Err(e) = out.flush() {
            return write_err(e).map_or(Ok(()), Err);
        }
        // Commit only after the batch is written out: at-least-once for the reader.
        // A commit that fails because the replica just went away is covered by the next
        // batch's, on the replica the stream moves to.
        if let Some(name) = &args.cursor {
            match subscription.commit_cursor(name).await {
                Ok(()) => {}
                Err(alertmesh_client::Error::Status(s))
                    if !replicas.is_empty() && alertmesh_client::subscription::is_transient(&s) =>
                {
                    eprintln!(
                        "warning: cursor commit failed ({}); retried with the next batch",
                        status_line(&s)
                    );
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    if let (OutputFormat::Raw, Some(dir)) = (&args.format, &args.out) {
        eprintln!("wrote {files} alert file(s) to {}", dir.display());
    }
    Ok(())
}

/// How many topics a gateway kept back from this caller because they need a token.
pub(super) fn hidden_topics(meta: &tonic::metadata::MetadataMap) -> u64 {
    meta.get(TOPICS_NEED_TOKEN)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The hint for topics kept back: they exist, and a token shows them.
pub(super) fn token_hint(hidden: u64) -> String {
    format!(
        "{hidden} more topic(s) need a token: pass --token FILE with a token for this \
         gateway (its operator issues one with `alertmesh creds issue`)"
    )
}

pub(super) async fn topics(gateway: &GatewayArg, json: bool) -> Result<(), String> {
    let mut client = connect(gateway).await?;
    let response = client
        .grpc()
        .list_topics(v1::ListTopicsRequest {})
        .await
        .map_err(|s| status_line(&s))?;
    let hidden = hidden_topics(response.metadata());
    let listing = response.into_inner();
    let (topics, queries) = (listing.topics, listing.queries);
    if hidden > 0 {
        eprintln!("note: {}", token_hint(hidden));
    }
    let mut out = io::stdout().lock();
    let mut lines = Vec::new();
    if json {
        for t in &topics {
            let v = serde_json::json!({
                "name": t.name, "namespace": t.namespace, "format": t.format,
                "partitions": t.partitions, "description": t.description,
                "schema_ids": t.schema_ids, "schema_registry": t.schema_registry,
                "publishable": t.publishable, "publish_schema": t.publish_schema,
            });
            lines.push(v.to_string());
        }
        for q in &queries {
            let v = serde_json::json!({
                "query": q.name, "namespace": q.namespace, "columns": q.columns,
                "order": q.order, "cone": !q.ra.is_empty(), "description": q.description,
            });
            lines.push(v.to_string());
        }
    } else {
        let w = topics
            .iter()
            .map(|t| field(&t.name).chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        lines.push(format!(
            "{:<w$}  {:<10}  {:<14}  {:>10}  {:<7}  DESCRIPTION",
            "TOPIC", "NAMESPACE", "FORMAT", "PARTITIONS", "PUBLISH"
        ));
        for t in &topics {
            // `schema`: Publish checks payloads against a schema (`--json` shows it).
            let publish = match (t.publishable, t.publish_schema.is_empty()) {
                (false, _) => "-",
                (true, true) => "yes",
                (true, false) => "schema",
            };
            lines.push(format!(
                "{:<w$}  {:<10}  {:<14}  {:>10}  {:<7}  {}",
                field(&t.name),
                field(&t.namespace),
                field(&t.format),
                t.partitions,
                publish,
                field(&t.description)
            ));
        }
        if !queries.is_empty() {
            let w = queries
                .iter()
                .map(|q| field(&q.name).chars().count())
                .max()
                .unwrap_or(0)
                .max(5);
            lines.push(String::new());
            lines.push(format!(
                "{:<w$}  {:<10}  COLUMNS (alertmesh query NAME --where ...)",
                "QUERY", "NAMESPACE"
            ));
            for q in &queries {
                let cols: Vec<String> = q.columns.iter().map(|c| field(c)).collect();
                lines.push(format!(
                    "{:<w$}  {:<10}  {}",
                    field(&q.name),
                    field(&q.namespace),
                    cols.join(", ")
                ));
            }
        }
    }
    for l in lines {
        if let Err(e) = writeln!(out, "{l}") {
            return write_err(e).map_or(Ok(()), Err);
        }
    }
    Ok(())
}

pub(super) async fn fetch(
    gateway: &GatewayArg,
    alert_ref: &str,
    format: OutputFormat,
    out: Option<PathBuf>,
) -> Result<(), String> {
    let mut client = connect(gateway).await?;
    let alert = client.fetch(alert_ref).await.map_err(|e| e.to_string())?;
    let mut alert = alert;
    if format == OutputFormat::Json && alert.json.is_empty() {
        alert.json = decode_payload(&alert)?.into();
    }
    let written = match (format, out) {
        (OutputFormat::Raw, Some(path)) => {
            return std::fs::write(&path, &alert.payload)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        // Binary on a terminal could hold escape sequences the terminal acts on.
        (OutputFormat::Raw, None) if io::stdout().is_terminal() => {
            return Err(
                "--format raw writes the payload's bytes: redirect them to a file or use --out"
                    .into(),
            )
        }
        (OutputFormat::Raw, None) => io::stdout().lock().write_all(&alert.payload),
        (OutputFormat::Json, _) => writeln!(io::stdout().lock(), "{}", decoded_json(&alert)),
        (OutputFormat::Native, _) => writeln!(io::stdout().lock(), "{}", alert_json(&alert)),
    };
    written.or_else(|e| write_err(e).map_or(Ok(()), Err))
}

/// The alert document of a fetched payload, decoded here (Fetch carries only the bytes):
/// one JSON object, or an array when a container holds several alerts.
fn decode_payload(alert: &v1::Alert) -> Result<Vec<u8>, String> {
    let undecodable = |e: String| {
        format!(
            "cannot decode {} ({}): {e}; --format native prints the payload as base64",
            field(&alert.r#ref),
            field(&alert.format)
        )
    };
    let format: Format = alert
        .format
        .parse()
        .map_err(|e: alertmesh_alert::Error| undecodable(e.to_string()))?;
    let alerts = Decoder::new()
        .decode_all(format, &alert.payload)
        .map_err(|e| undecodable(e.to_string()))?;
    let options = JsonOptions {
        bytes: BytesMode::Base64,
        ..JsonOptions::default()
    };
    let mut docs: Vec<Vec<u8>> = alerts.iter().map(|a| a.to_json(options)).collect();
    if docs.len() == 1 {
        return Ok(docs.remove(0));
    }
    let mut out = b"[".to_vec();
    out.extend(docs.join(&b","[..]));
    out.push(b']');
    Ok(out)
}

pub(super) async fn describe(gateway: &GatewayArg) -> Result<(), String> {
    let mut client = connect(gateway).await?;
    let response = client
        .grpc()
        .describe_gateway(v1::DescribeGatewayRequest {})
        .await
        .map_err(|s| status_line(&s))?;
    let hidden = hidden_topics(response.metadata());
    let d = response.into_inner();
    if hidden > 0 {
        eprintln!("note: {}", token_hint(hidden));
    }
    let v = serde_json::json!({
        "name": d.name,
        "version": d.version,
        "endpoints": d.endpoints.iter().map(|e| serde_json::json!({"kind": e.kind, "url": e.url})).collect::<Vec<_>>(),
        "topics": d.topics.iter().map(|t| serde_json::json!({
            "name": t.name, "namespace": t.namespace, "format": t.format, "partitions": t.partitions,
            "schema_ids": t.schema_ids, "schema_registry": t.schema_registry,
            "publishable": t.publishable, "publish_schema": t.publish_schema,
        })).collect::<Vec<_>>(),
        "auth": d.auth.iter().map(|a| serde_json::json!({"kind": a.kind, "params": a.params})).collect::<Vec<_>>(),
        "topics_need_token": hidden,
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    writeln!(io::stdout().lock(), "{text}").or_else(|e| write_err(e).map_or(Ok(()), Err))
}

pub(super) async fn schema(
    gateway: &GatewayArg,
    topic: &str,
    id: Option<u32>,
) -> Result<(), String> {
    let mut client = connect(gateway).await?;
    let s = client
        .grpc()
        .get_schema(v1::GetSchemaRequest {
            topic: topic.to_owned(),
            id,
        })
        .await
        .map_err(|s| status_line(&s))?
        .into_inner();
    let v = serde_json::json!({
        "topic": s.topic, "subject": s.subject, "id": s.id, "format": s.format,
        "fingerprint": s.fingerprint, "schema": s.schema,
    });
    writeln!(io::stdout().lock(), "{v}").or_else(|e| write_err(e).map_or(Ok(()), Err))
}
