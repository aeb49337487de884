//! The `alertmesh` command line: `serve` runs a gateway; `subscribe`, `query`, `topics`,
//! `fetch`, `publish` and `describe` are gRPC clients of one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub mod client;
mod commands;
pub mod creds;
mod inspect;
mod mesh;
pub mod output;
pub mod positions;
mod provenance;
mod publish;
mod query;
mod replay;

pub use inspect::InspectArgs;
pub use provenance::ProvFormat;
pub use publish::PublishArgs;
pub use query::QueryArgs;
pub use replay::ReplayArgs;

#[derive(Debug, Parser)]
#[command(
    name = "alertmesh",
    version,
    about = "Federation gateway for astronomical alert brokers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway over the local Kafka cluster.
    Serve {
        /// Gateway configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only validate the configuration (and that the files it names can be read),
        /// then exit.
        #[arg(long)]
        check: bool,
        /// Do not require the files the configuration names (certificates, keys, CAs,
        /// tokens) to exist yet: to validate configurations before their secrets are
        /// provisioned.
        #[arg(long)]
        skip_files: bool,
    },
    /// Stream alerts of a topic.
    Subscribe(SubscribeArgs),
    /// Stream the rows of a declared database query as alerts (resumes by itself when the
    /// stream drops).
    Query(QueryArgs),
    /// List the topics a gateway exposes.
    Topics {
        #[command(flatten)]
        gateway: GatewayArg,
        /// Print one JSON object per topic instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fetch the record an alert ref names.
    Fetch {
        /// `am://<gateway>/<topic>/<partition>/<offset>`
        #[arg(value_name = "REF")]
        alert_ref: String,
        #[command(flatten)]
        gateway: GatewayArg,
        /// `native`: one JSON line, payload as base64; `json`: one JSON line, the alert
        /// decoded under "alert"; `raw`: the payload bytes, to --out or stdout.
        #[arg(long, value_enum, default_value_t = OutputFormat::Native)]
        format: OutputFormat,
        /// File to write the raw payload to.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a topic's Avro schema under a Confluent schema id (its latest without --id):
    /// one JSON object with topic, subject, id, format, fingerprint and schema.
    Schema {
        #[command(flatten)]
        gateway: GatewayArg,
        /// Exposed topic.
        #[arg(long)]
        topic: String,
        /// Confluent schema id, e.g. 1100 for LSST 11.0.
        #[arg(long)]
        id: Option<u32>,
    },
    /// Publish a derived record, with what it was derived from and what produced it, to a
    /// publishable topic; prints its ref.
    Publish(PublishArgs),
    /// Decode alert files locally: one JSON line per alert with key, namespace, schema,
    /// position and the alert.
    Inspect(InspectArgs),
    /// Produce alert files into a Kafka topic, once or as a steady live feed.
    Replay(ReplayArgs),
    /// Describe a gateway: name, version, endpoints, topics, authentication.
    Describe {
        #[command(flatten)]
        gateway: GatewayArg,
    },
    /// Mirror jobs of a gateway.
    #[command(subcommand)]
    Mirror(mesh::MirrorCommand),
    /// Walk the mesh from a gateway through its peers, printing each gateway's endpoints,
    /// topics, namespaces, formats and authentication.
    Directory {
        #[command(flatten)]
        gateway: GatewayArg,
        /// One JSON object per gateway.
        #[arg(long)]
        json: bool,
    },
    /// The provenance graph behind an alert ref: what it was copied and derived from,
    /// across gateways, back to where it entered the mesh. The gateway walks the mesh with
    /// its own peer credentials.
    Provenance {
        /// `am://<gateway>/<topic>/<partition>/<offset>`
        #[arg(value_name = "REF")]
        alert_ref: String,
        /// The gateway to ask (it asks the gateways the refs name).
        #[command(flatten)]
        gateway: GatewayArg,
        /// Ask the gateway NAME at URL directly when the ref names it, with this command's
        /// token and TLS files (the token only if its `aud` names NAME).
        #[arg(long = "peer", value_name = "NAME=URL")]
        peers: Vec<String>,
        /// `text`: a tree with RFC 3339 times; `prov-json`: W3C PROV-JSON; `dot`: Graphviz.
        #[arg(long, value_enum, default_value_t = ProvFormat::Text)]
        format: ProvFormat,
        /// Links to follow from REF (the gateway's default is 16, at most 64).
        #[arg(long, value_name = "N")]
        depth: Option<u32>,
        /// Seconds the whole walk may take (the gateway's default is 10, at most 60).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u32>,
    },
    /// Manage this gateway's keys and credentials (tokens, revocations, dev TLS).
    #[command(subcommand)]
    Creds(creds::CredsCommand),
}

#[derive(Debug, clap::Args)]
pub struct GatewayArg {
    /// Gateway gRPC URL. Replicas of one gateway: repeat the flag or give a comma list;
    /// commands use the first that answers, and a live `subscribe` moves to another
    /// replica when its own dies.
    #[arg(
        long = "gateway",
        env = "ALERTMESH_GATEWAY",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub urls: Vec<String>,
    #[command(flatten)]
    pub auth: client::ClientAuthArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line, the alert decoded by the gateway under "alert".
    Json,
    /// One JSON object per line, the payload bytes as base64 under "payload".
    Native,
    /// Payload bytes only, one file per alert.
    Raw,
}

#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    pub gateway: GatewayArg,
    /// Exposed topic to stream.
    #[arg(long)]
    pub topic: String,
    /// earliest | latest | RFC 3339 time | partition:offset,...
    #[arg(long = "from", default_value = "latest", value_name = "START")]
    pub from: String,
    /// RFC 3339 time | now. Without it the stream is live.
    #[arg(long, value_name = "END")]
    pub until: Option<String>,
    /// Stop after this many alerts.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Named durable cursor: resume from it, and commit progress to it.
    #[arg(long, value_name = "NAME")]
    pub cursor: Option<String>,
    /// Predicate over alert fields, e.g. 'candidate.magpsf < 18.5 && candidate.ndethist >= 3'.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Only alerts within this cone: RA,DEC,RADIUS in degrees.
    #[arg(long, value_name = "RA,DEC,RADIUS")]
    pub cone: Option<String>,
    /// Only alerts of these objects: mesh keys, e.g. ZTF:ZTF20aabaesm,ZTF:ZTF18acqsson.
    #[arg(long, value_name = "KEY,...", value_delimiter = ',')]
    pub ids: Vec<String>,
    /// With --format json: write cutout images as null.
    #[arg(long)]
    pub omit_cutouts: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub format: OutputFormat,
    /// Directory for --format raw: one `<topic>-<partition>-<offset>.avro` per alert.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl GatewayArg {
    /// The first URL given: where commands that walk the mesh start.
    pub fn url(&self) -> &str {
        self.urls
            .first()
            .map_or("http://127.0.0.1:50051", String::as_str)
    }

    /// The first URL given, once the list is checked (see [`Self::gateways`]).
    pub fn first_url(&self) -> Result<&str, String> {
        alertmesh_client::check_replica_urls(&self.urls).map_err(|e| format!("--gateway: {e}"))?;
        Ok(self.url())
    }

    /// Every URL given, with the command's TLS and token options (each token bound to
    /// its URL).
    pub fn gateways(&self) -> Result<Vec<alertmesh_client::Gateway>, String> {
        alertmesh_client::check_replica_urls(&self.urls).map_err(|e| format!("--gateway: {e}"))?;
        self.urls
            .iter()
            .map(|u| self.auth.gateway(u).map_err(|e| format!("--gateway: {e}")))
            .collect()
    }
}

/// Connects to a gateway with the command's TLS and token options: the first of the
/// given replicas that answers.
pub async fn connect(gateway: &GatewayArg) -> Result<alertmesh_client::Client, String> {
    Ok(connect_replicas(gateway).await?.0)
}

/// Like [`connect`], with lazy clients of the other replicas to move a stream to.
pub async fn connect_replicas(
    gateway: &GatewayArg,
) -> Result<(alertmesh_client::Client, Vec<alertmesh_client::Client>), String> {
    let gateways = gateway.gateways()?;
    if let [one] = gateways.as_slice() {
        return Ok((client::connect(one).await?, Vec::new()));
    }
    alertmesh_client::connect_any(&gateways)
        .await
        .map_err(|e| e.to_string())
}

/// One line for a gRPC error: the canonical code, then the gateway's message.
pub fn status_line(s: &tonic::Status) -> String {
    // The message comes from the gateway: one line, capped, no terminal controls.
    let text = s.message().lines().next().unwrap_or("");
    output::message(&alertmesh_client::status_line(&tonic::Status::new(
        s.code(),
        text,
    )))
}

/// Runs a client command; errors are printed as one line on stderr.
pub async fn run_client(command: Command) -> ExitCode {
    let result = match command {
        Command::Serve { .. } => Err("serve is not a client command".to_owned()),
        Command::Subscribe(args) => commands::subscribe(args).await,
        Command::Query(args) => query::query(args).await,
        Command::Topics { gateway, json } => commands::topics(&gateway, json).await,
        Command::Fetch {
            alert_ref,
            gateway,
            format,
            out,
        } => commands::fetch(&gateway, &alert_ref, format, out).await,
        Command::Describe { gateway } => commands::describe(&gateway).await,
        Command::Schema { gateway, topic, id } => commands::schema(&gateway, &topic, id).await,
        Command::Publish(args) => publish::publish(args).await,
        Command::Creds(cmd) => creds::run(cmd).await,
        Command::Mirror(cmd) => mesh::mirror(cmd).await,
        Command::Directory { gateway, json } => mesh::directory(gateway, json).await,
        Command::Provenance {
            alert_ref,
            gateway,
            peers,
            format,
            depth,
            timeout,
        } => {
            let req = provenance::Request {
                alert_ref: &alert_ref,
                peers: &peers,
                format,
                depth,
                timeout_secs: timeout,
            };
            provenance::provenance(gateway, req).await
        }
        Command::Replay(args) => replay::replay(args).await,
        Command::Inspect(args) => inspect::inspect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            // Errors may quote what a gateway sent: terminal-safe and capped, line by line.
            eprintln!("error: {}", output::text(&line));
            ExitCode::FAILURE
        }
    }
}
