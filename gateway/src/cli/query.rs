//! `alertmesh query NAME`: streams a declared database query; a dropped stream is reopened
//! with the last resume token, so no row is lost or repeated.

use std::io::{self, Write};
use std::time::Duration;

use alertmesh_client::subscription::is_transient;
use alertmesh_proto::v1;

use super::output::{alert_json, decoded_json};
use super::positions::parse_cone;
use super::{connect, status_line, GatewayArg};

/// Reopening attempts in a row before giving up (about a minute with the backoff).
const MAX_RETRIES: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// One JSON object per line, the row under "alert" (integers exact).
    Json,
    /// One JSON object per line, the row's JSON bytes as base64 under "payload".
    Native,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// A declared query (see `alertmesh topics`).
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub gateway: GatewayArg,
    /// Predicate over the query's columns, e.g. 'mag < 18.5 && ndet >= 3'.
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Only rows within this cone: RA,DEC,RADIUS in degrees.
    #[arg(long, value_name = "RA,DEC,RADIUS")]
    pub cone: Option<String>,
    /// Only rows of these objects: mesh keys, e.g. ZTF:ZTF20aabaesm,ZTF:ZTF18acqsson.
    #[arg(long, value_name = "KEY,...", value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Stop after this many rows.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Continue after the row a resume token (printed when a stream fails) names.
    #[arg(long, value_name = "TOKEN")]
    pub resume: Option<String>,
    /// After the existing rows, go on with rows inserted later.
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value_t = QueryFormat::Json)]
    pub format: QueryFormat,
}

pub(super) async fn query(args: QueryArgs) -> Result<(), String> {
    if args.limit == Some(0) {
        return Err("invalid --limit 0: expected a positive number of rows".into());
    }
    let mut req = v1::QueryRequest {
        name: args.name.clone(),
        r#where: args.filter.clone().unwrap_or_default(),
        cone: args.cone.as_deref().map(parse_cone).transpose()?,
        ids: args.ids.clone(),
        limit: args.limit,
        output: match args.format {
            QueryFormat::Json => v1::Output::Json,
            QueryFormat::Native => v1::Output::Native,
        } as i32,
        resume_token: args.resume.clone().unwrap_or_default(),
        follow: args.follow,
        max_batch_alerts: 0,
        // Lines of standard JSON: non-finite doubles as strings.
        json_bare_nonfinite: false,
    };
    let mut client = connect(&args.gateway).await?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut written: u64 = 0;
    let mut retries = 0;
    loop {
        let opened = client.grpc().query(req.clone()).await;
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(s) if is_transient(&s) && retries < MAX_RETRIES => {
                retries += 1;
                backoff(retries, &s).await;
                continue;
            }
            Err(s) => return Err(failed(&s, &req.resume_token)),
        };
        loop {
            match stream.message().await {
                Ok(Some(batch)) => {
                    retries = 0;
                    for a in &batch.alerts {
                        let line = match args.format {
                            QueryFormat::Json => decoded_json(a),
                            QueryFormat::Native => alert_json(a).to_string(),
                        };
                        if let Err(e) = writeln!(out, "{line}") {
                            return write_err(e);
                        }
                    }
                    if let Err(e) = out.flush() {
                        return write_err(e);
                    }
                    written += batch.alerts.len() as u64;
                    if !batch.resume_token.is_empty() {
                        req.resume_token = batch.resume_token;
                    }
                }
                Ok(None) => return Ok(()),
                Err(s) if is_transient(&s) && retries < MAX_RETRIES => {
                    retries += 1;
                    eprintln!(
                        "warning: the stream was interrupted; resuming after the last row written"
                    );
                    backoff(retries, &s).await;
                    break;
                }
                Err(s) => return Err(failed(&s, &req.resume_token)),
            }
        }
        // The reopened stream counts what is left of the limit.
        req.limit = args.limit.map(|l| l.saturating_sub(written));
        if req.limit == Some(0) {
            return Ok(());
        }
    }
}

async fn backoff(attempt: u32, s: &tonic::Status) {
    let wait = Duration::from_millis(250 << attempt.min(5));
    tracing::debug!(status = %status_line(s), ?wait, "reopening the query stream");
    tokio::time::sleep(wait).await;
}

fn failed(s: &tonic::Status, token: &str) -> String {
    if token.is_empty() {
        status_line(s)
    } else {
        format!("{} (continue with --resume {token})", status_line(s))
    }
}

/// Writing to a closed pipe (`| head`) ends the command quietly.
fn write_err(e: io::Error) -> Result<(), String> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(format!("cannot write output: {e}"))
    }
}
