//! The gateway's typed configuration: one TOML file, a few environment overrides, and a
//! validation pass that reports every problem at once with its key path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alertmesh_alert::naming::{check_gateway_name, check_topic};
use alertmesh_alert::{Format, Registry};

mod archives;
mod database_tls;
mod files;
mod mirror_query;
mod mirrors;
mod properties;
mod publish;
mod queries;
mod reader;
mod registry;
mod security;

pub use archives::{ArchiveColumn, ArchiveConfig, ColumnKind, ARCHIVE_COLUMNS};
pub use database_tls::{DatabaseTls, TlsMode};
pub use mirrors::MirrorConfig;
pub(crate) use properties::kafka_error_text;
pub use properties::Secrets;
pub use publish::TopicSchema;
pub use queries::{
    check_identifier, quote_identifier, DatabaseConfig, PasswordSource, QueryConfig, QuerySource,
};
use reader::Reader;
pub use registry::RegistrySource;
pub use security::{AuthConfig, TlsConfig, TrustedPeer};

/// Exit code for a configuration that cannot be used (sysexits `EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;

/// The prefix of the gateway's own topics (cursors, credentials): never exposed, never a
/// mirror's destination, whatever `kafka.cursor_topic` and `kafka.credentials_topic` say.
pub const INTERNAL_TOPIC_PREFIX: &str = "_alertmesh.";

/// A whole gateway configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub kafka: KafkaConfig,
    pub limits: Limits,
    pub alert: AlertConfig,
    /// Streams copied into local Kafka.
    pub mirrors: Vec<MirrorConfig>,
    pub topics: Vec<TopicConfig>,
    /// `[[databases]]`: PostgreSQL databases that `[[queries]]` read.
    pub databases: Vec<DatabaseConfig>,
    /// `[[queries]]`: database rows served as streams of alerts.
    pub queries: Vec<QueryConfig>,
    /// `[[archives]]`: topics kept in database tables and served as queries.
    pub archives: Vec<ArchiveConfig>,
    /// `[auth]`: token authentication; `None` serves everyone as anonymous.
    pub auth: Option<AuthConfig>,
    /// `[tls]`: TLS (and mutual TLS) on both ports; `None` serves plaintext.
    pub tls: Option<TlsConfig>,
    /// The file it was loaded from (`None` when parsed from text): failed mirrors watch it.
    pub file: Option<PathBuf>,
}

/// `[alert]`: how the gateway understands payloads.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// The built-in namespaces (`ZTF`, `LSST:dia`, `LSST:ss`, `LS4`) plus those of
    /// `namespaces_file`, a TOML file in the format of `alert/namespaces.toml`.
    pub registry: Arc<Registry>,
    /// Avro schemas for Confluent-framed payloads, as `<dir>/<major>/<minor>/*.avsc`
    /// (schema id = major*100+minor, the LSST convention).
    pub schema_dir: Option<PathBuf>,
}

/// `[gateway]`: who this gateway is and where it listens.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Unique name in the mesh; the `<gateway>` of every alert ref it hands out.
    pub name: String,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// HTTP side port: `/metrics`, `/healthz`.
    pub http_listen: SocketAddr,
    /// URL peers and users reach the gRPC port at; defaults to `http://<listen>`.
    pub advertised_url: String,
    /// How long open streams get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Serve plaintext on a non-loopback address (without `[tls]`).
    pub allow_plaintext: bool,
    /// This process among the replicas of the gateway (`gateway.replica_id`, else
    /// `<hostname>-<pid>`): mirror status names it as the copier of each partition.
    pub replica_id: String,
    /// `gateway.share_mirrors`: the replicas share each mirror's partitions through a
    /// Kafka consumer group and copy with transactional producers (needs a cluster whose
    /// `read_committed` reads hide aborted records, such as Apache Kafka).
    pub share_mirrors: bool,
}

impl GatewayConfig {
    /// The URL others reach the HTTP side port at (`DescribeGateway`, the JWKS and schema
    /// registry URLs): `http_listen`, or where that binds every address (`0.0.0.0`, `::`,
    /// where no one can connect to), the host of `advertised_url` with its port.
    pub fn advertised_http_url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        let addr = self.http_listen;
        let advertised_host = || {
            let uri: http::Uri = self.advertised_url.parse().ok()?;
            uri.host().map(str::to_owned)
        };
        match advertised_host() {
            Some(host) if addr.ip().is_unspecified() => {
                format!("{scheme}://{host}:{}", addr.port())
            }
            _ => format!("{scheme}://{addr}"),
        }
    }
}

/// `[kafka]`: the local cluster.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    /// Topic that holds durable cursors (created when missing).
    pub cursor_topic: String,
    /// Compacted topic holding issued-credential records and revocations.
    pub credentials_topic: String,
    /// Upper bound for any single Kafka request the gateway waits on.
    pub timeout: Duration,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.*`). Never logged.
    pub properties: BTreeMap<String, String>,
}

/// `[limits]`: per-subscriber and per-topic memory and batch bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open client connections on each port; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Open client connections from one address on each port.
    pub max_connections_per_ip: usize,
    /// `Fetch` reads (each with a Kafka consumer of its own) in progress, gateway-wide.
    pub max_fetches: usize,
    /// Durable cursors one principal (token subject, or `anonymous`) may hold.
    pub max_cursors_per_principal: usize,
    pub max_subscriptions: usize,
    /// Open subscriptions one gRPC connection may hold.
    pub max_subscriptions_per_connection: usize,
    /// Open subscriptions one principal (token subject, or `anonymous`) may hold.
    pub max_subscriptions_per_principal: usize,
    /// Default and maximum size of one `AlertBatch`, in bytes.
    pub max_batch_bytes: usize,
    /// Default and maximum number of alerts in one `AlertBatch`.
    pub max_batch_alerts: usize,
    /// librdkafka prefetch buffer of a subscriber that reads on its own, in KiB.
    pub reader_buffer_kib: usize,
    /// Kafka connections a subscriber reading on its own splits its partitions over.
    pub reader_connections: usize,
    /// Gateway-wide prefetch, in MiB, that subscribers reading on their own share.
    pub reader_budget_mib: usize,
    /// A subscription whose client has not taken a batch for this long has its own Kafka
    /// reader stopped (restarted where it was once the client reads again).
    pub unread_pause: Duration,
    /// A subscription whose client has not taken a batch for this long is ended.
    pub unread_drop: Duration,
    /// Bytes of recent alerts the shared per-topic tail keeps for live subscribers.
    pub tail_buffer_bytes: usize,
    /// HTTP/2 streams one gRPC connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
    /// A request message must have arrived this long after its stream opened.
    pub request_timeout: Duration,
    /// Bytes of request messages still arriving, gateway-wide, before more are refused.
    pub request_buffer_bytes: usize,
    /// A new connection's first request (gRPC: the HTTP/2 preface; HTTP: the request
    /// headers) must arrive within this.
    pub header_timeout: Duration,
    /// A gRPC connection without an open call is closed after this.
    pub idle_timeout: Duration,
    /// Largest record `Publish` writes: key, payload and headers, in bytes.
    pub max_publish_record_bytes: usize,
    /// Records per partition read back to find publish ids already written (the
    /// exactly-once window): a retry older than this many records is written again.
    pub publish_id_window: usize,
}

/// `[[topics]]`: one exposed local Kafka topic.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub name: String,
    pub namespace: String,
    pub format: Format,
    pub description: String,
    /// Readable (subscribe, fetch) without a token.
    pub public: bool,
    /// Where its Confluent-framed payloads' schema ids are registered.
    pub schema_registry: Option<RegistrySource>,
    /// Derived records may be written to it with `Publish` (scope `publish:<topic>`).
    pub publish: bool,
    /// What published payloads must match, beyond the topic's format.
    pub schema: Option<TopicSchema>,
}

impl Config {
    /// Reads and validates a config file, applying `ALERTMESH_*` environment overrides.
    ///
    /// The error lists every problem found, one per line.
    pub fn load(path: &Path) -> Result<Config, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read config {}: {e}", path.display())])?;
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("ALERTMESH_"))
            .collect();
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::parse_at(&text, &env, base)?;
        config.file = Some(path.to_owned());
        Ok(config)
    }

    /// [`Config::load`], then [`Config::check_files`]: what `serve --check` accepts.
    pub fn load_checked(path: &Path) -> Result<Config, Vec<String>> {
        let config = Config::load(path)?;
        let problems = config.check_files();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Parses and validates config text; `env` holds `ALERTMESH_*` overrides. Relative
    /// paths are taken from the current directory.
    pub fn parse(text: &str, env: &[(String, String)]) -> Result<Config, Vec<String>> {
        Config::parse_at(text, env, Path::new("."))
    }

    /// Like [`Config::parse`], with relative paths taken from `base` (the config's folder).
    pub fn parse_at(
        text: &str,
        env: &[(String, String)],
        base: &Path,
    ) -> Result<Config, Vec<String>> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![format!("config is not valid TOML: {}", e.message().trim())]
        })?;
        apply_env(&mut table, env)?;
        let mut r = Reader::default();
        let config = Config::read(&mut r, table, base);
        match config {
            Some(c) if r.errors.is_empty() => Ok(c),
            _ => Err(r.errors),
        }
    }

    fn read(r: &mut Reader, mut root: toml::Table, base: &Path) -> Option<Config> {
        let mut gw = r.table(&mut root, "", "gateway", true);
        let name = r.string(&mut gw, "gateway", "name", None);
        if let Some(Err(e)) = name.as_deref().map(check_gateway_name) {
            r.error("gateway.name", &e.to_string());
        }
        let listen = r.addr(&mut gw, "gateway", "listen", None);
        let http_listen = r.addr(&mut gw, "gateway", "http_listen", None);
        if let (Some(a), Some(b)) = (listen, http_listen) {
            if a == b && a.port() != 0 {
                r.error("gateway.http_listen", "must differ from gateway.listen");
            }
        }
        let advertised = r.string(&mut gw, "gateway", "advertised_url", Some(String::new()));
        let grace = r.uint(&mut gw, "gateway", "shutdown_grace_ms", 10_000, 0, 600_000);
        let allow_plaintext = r.bool(&mut gw, "gateway", "allow_plaintext", false);
        let replica_id = r.string(&mut gw, "gateway", "replica_id", Some(String::new()));
        if let Some(id) = replica_id.as_deref() {
            if id.len() > 200 || id.chars().any(|c| c.is_control()) {
                r.error(
                    "gateway.replica_id",
                    "must be at most 200 characters, without control characters",
                );
            }
        }
        let share_mirrors = r.bool(&mut gw, "gateway", "share_mirrors", false);
        r.unknown(gw, "gateway");

        let mut kafka = r.table(&mut root, "", "kafka", true);
        let bootstrap = r.string(&mut kafka, "kafka", "bootstrap", None);
        if bootstrap.as_deref() == Some("") {
            r.error("kafka.bootstrap", "must list at least one host:port");
        }
        let cursor_topic = r.string(
            &mut kafka,
            "kafka",
            "cursor_topic",
            Some("_alertmesh.cursors".to_owned()),
        );
        if let Some(t) = &cursor_topic {
            check_topic_name(r, "kafka.cursor_topic", t);
        }
        let credentials_topic = r.string(
            &mut kafka,
            "kafka",
            "credentials_topic",
            Some("_alertmesh.credentials".to_owned()),
        );
        if let Some(t) = &credentials_topic {
            check_topic_name(r, "kafka.credentials_topic", t);
        }
        let timeout = r.uint(&mut kafka, "kafka", "timeout_ms", 5_000, 100, 300_000);
        let properties = r.string_map(&mut kafka, "kafka", "properties");
        properties::check(r, "kafka.properties", &properties);
        r.unknown(kafka, "kafka");
        let internal: Vec<&str> = [cursor_topic.as_deref(), credentials_topic.as_deref()]
            .into_iter()
            .flatten()
            .collect();

        let mut lim = r.table(&mut root, "", "limits", false);
        let limits = Limits {
            max_connections: r.uint(&mut lim, "limits", "max_connections", 4_096, 1, 1_000_000)
                as usize,
            max_connections_per_ip: r.uint(
                &mut lim,
                "limits",
                "max_connections_per_ip",
                256,
                1,
                1_000_000,
            ) as usize,
            max_fetches: r.uint(&mut lim, "limits", "max_fetches", 32, 1, 10_000) as usize,
            max_cursors_per_principal: r.uint(
                &mut lim,
                "limits",
                "max_cursors_per_principal",
                1_000,
                1,
                1_000_000,
            ) as usize,
            max_subscriptions: r.uint(&mut lim, "limits", "max_subscriptions", 1_000, 1, 1_000_000)
                as usize,
            max_subscriptions_per_connection: r.uint(
                &mut lim,
                "limits",
                "max_subscriptions_per_connection",
                100,
                1,
                1_000_000,
            ) as usize,
            max_subscriptions_per_principal: r.uint(
                &mut lim,
                "limits",
                "max_subscriptions_per_principal",
                250,
                1,
                1_000_000,
            ) as usize,
            max_batch_bytes: r.uint(
                &mut lim,
                "limits",
                "max_batch_bytes",
                1 << 20,
                1 << 10,
                64 << 20,
            ) as usize,
            max_batch_alerts: r.uint(&mut lim, "limits", "max_batch_alerts", 1_000, 1, 100_000)
                as usize,
            reader_buffer_kib: r.uint(&mut lim, "limits", "reader_buffer_kib", 8_192, 64, 1 << 20)
                as usize,
            reader_connections: r.uint(&mut lim, "limits", "reader_connections", 3, 1, 64) as usize,
            reader_budget_mib: r.uint(&mut lim, "limits", "reader_budget_mib", 512, 1, 1 << 20)
                as usize,
            unread_pause: Duration::from_millis(r.uint(
                &mut lim,
                "limits",
                "unread_pause_ms",
                10_000,
                100,
                86_400_000,
            )),
            unread_drop: Duration::from_millis(r.uint(
                &mut lim,
                "limits",
                "unread_drop_ms",
                120_000,
                100,
                86_400_000,
            )),
            tail_buffer_bytes: r.uint(
                &mut lim,
                "limits",
                "tail_buffer_bytes",
                64 << 20,
                1 << 20,
                16 << 30,
            ) as usize,
            max_streams_per_connection: r.uint(
                &mut lim,
                "limits",
                "max_streams_per_connection",
                128,
                1,
                10_000,
            ) as u32,
            request_timeout: Duration::from_millis(r.uint(
                &mut lim,
                "limits",
                "request_timeout_ms",
                10_000,
                100,
                600_000,
            )),
            request_buffer_bytes: r.uint(
                &mut lim,
                "limits",
                "request_buffer_bytes",
                64 << 20,
                1 << 20,
                16 << 30,
            ) as usize,
            header_timeout: Duration::from_millis(r.uint(
                &mut lim,
                "limits",
                "header_timeout_ms",
                10_000,
                100,
                600_000,
            )),
            idle_timeout: Duration::from_millis(r.uint(
                &mut lim,
                "limits",
                "idle_timeout_ms",
                300_000,
                100,
                86_400_000,
            )),
            max_publish_record_bytes: r.uint(
                &mut lim,
                "limits",
                "max_publish_record_bytes",
                900_000,
                1 << 10,
                // Below a request's limit, with room for the rest of the request.
                900_000,
            ) as usize,
            publish_id_window: r.uint(
                &mut lim,
                "limits",
                "publish_id_window",
                100_000,
                1,
                10_000_000,
            ) as usize,
        };
        r.unknown(lim, "limits");
        if limits.unread_drop < limits.unread_pause {
            r.error(
                "limits.unread_drop_ms",
                "must be at least limits.unread_pause_ms (a subscription is paused before it is ended)",
            );
        }

        let alert = read_alert(r, &mut root, base);
        let local = mirrors::Local {
            bootstrap: bootstrap.as_deref(),
            internal_topics: &internal,
        };
        let registry = alert.as_ref().map(|a| &*a.registry);
        let mirrors = mirrors::read(r, &mut root, base, registry, &local);
        let (auth, tls) = security::read(r, &mut root, base, listen, allow_plaintext);
        // A peer trusted under this gateway's own name would have its keys taken for the
        // gateway's own: the peer could then sign tokens as this gateway, admin included.
        if let (Some(auth), Some(me)) = (&auth, &name) {
            for (i, p) in auth.trusted_peers.iter().enumerate() {
                if &p.name == me {
                    r.error(
                        &format!("auth.trusted_peers[{i}].name"),
                        &format!("{me:?} is this gateway's own name (gateway.name), not a peer's"),
                    );
                }
            }
        }
        let (databases, queries) = queries::read(r, &mut root, base, registry);

        let topics = r.array_of_tables(&mut root, "topics");
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for (i, mut t) in topics.into_iter().enumerate() {
            let path = format!("topics[{i}]");
            let name = r.string(&mut t, &path, "name", None);
            if let Some(n) = &name {
                check_topic_name(r, &format!("{path}.name"), n);
                if let Some(why) = internal_topic(n, &internal) {
                    r.error(&format!("{path}.name"), &why);
                }
                if let Some(first) = seen.insert(n.clone(), i) {
                    r.error(
                        &format!("{path}.name"),
                        &format!("{n:?} is already exposed by topics[{first}]"),
                    );
                }
            }
            let namespace = r.string(&mut t, &path, "namespace", None);
            if let (Some(ns), Some(alert)) = (&namespace, &alert) {
                if alert.registry.namespace(ns).is_none() {
                    let known: Vec<&str> = alert
                        .registry
                        .namespaces()
                        .iter()
                        .map(|n| n.name())
                        .collect();
                    r.error(
                        &format!("{path}.namespace"),
                        &format!(
                            "unknown namespace {ns:?}; registered: {} (add others with alert.namespaces_file)",
                            known.join(", ")
                        ),
                    );
                }
            }
            let format =
                r.string(&mut t, &path, "format", None)
                    .and_then(|f| match f.parse::<Format>() {
                        Ok(f) => Some(f),
                        Err(e) => {
                            r.error(&format!("{path}.format"), &e.to_string());
                            None
                        }
                    });
            let description = r.string(&mut t, &path, "description", Some(String::new()));
            let public = r.bool(&mut t, &path, "public", false);
            let schema_registry = registry::read(r, &mut t, &path, base);
            let (publish, schema) = publish::read(r, &mut t, &path, base, format);
            r.unknown(t, &path);
            if let (Some(name), Some(namespace), Some(format), Some(description)) =
                (name, namespace, format, description)
            {
                out.push(TopicConfig {
                    name,
                    namespace,
                    format,
                    description,
                    public,
                    schema_registry,
                    publish,
                    schema,
                });
            }
        }
        let archives = archives::read(r, &mut root, &databases, &queries, &out);
        r.unknown(root, "");

        let listen = listen?;
        Some(Config {
            gateway: GatewayConfig {
                name: name?,
                advertised_url: match advertised? {
                    u if u.is_empty() && tls.is_some() => format!("https://{listen}"),
                    u if u.is_empty() => format!("http://{listen}"),
                    u => u,
                },
                listen,
                http_listen: http_listen?,
                shutdown_grace: Duration::from_millis(grace),
                allow_plaintext,
                replica_id: match replica_id? {
                    id if id.is_empty() => default_replica_id(),
                    id => id,
                },
                share_mirrors,
            },
            kafka: KafkaConfig {
                bootstrap: bootstrap?,
                cursor_topic: cursor_topic?,
                credentials_topic: credentials_topic?,
                timeout: Duration::from_millis(timeout),
                properties,
            },
            limits,
            alert: alert?,
            mirrors,
            topics: out,
            databases,
            queries,
            archives,
            auth,
            tls,
            file: None,
        })
    }

    /// The exposed topic called `name`, if any.
    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// One line per mirror for `serve --check`: its source and destination, and whether
    /// the destination is served (listed in `[[topics]]`).
    pub fn mirror_summary(&self) -> Vec<String> {
        self.mirrors
            .iter()
            .map(|m| {
                let spec = &m.spec;
                let (dest, served) = match (&spec.destination, &spec.source) {
                    (Some(d), _) => (d.clone(), Some(self.topic(d).is_some())),
                    (None, alertmesh_mirror::Source::Kafka(k)) => {
                        (k.topic.clone(), Some(self.topic(&k.topic).is_some()))
                    }
                    // Named after the peer, whose name is learned when the mirror connects.
                    (None, alertmesh_mirror::Source::Gateway(g)) => {
                        (format!("<source gateway name>.{}", g.topic), None)
                    }
                };
                let note = match served {
                    Some(true) => "served",
                    Some(false) => "not served: add it to [[topics]] to expose it",
                    None => "served only if listed in [[topics]]",
                };
                format!(
                    "mirror {}: {} -> {dest} ({note})",
                    spec.name,
                    spec.source_label(None)
                )
            })
            .collect()
    }

    /// Mirrors whose destination no `[[topics]]` entry exposes: they copy alerts nobody
    /// can subscribe to through this gateway.
    pub fn unserved_mirrors(&self) -> Vec<String> {
        self.mirror_summary()
            .into_iter()
            .filter(|l| l.ends_with("to expose it)"))
            .collect()
    }
}

fn read_alert(r: &mut Reader, root: &mut toml::Table, base: &Path) -> Option<AlertConfig> {
    let mut t = r.table(root, "", "alert", false);
    let namespaces = r.string(&mut t, "alert", "namespaces_file", Some(String::new()));
    let schema_dir = r.string(&mut t, "alert", "schema_dir", Some(String::new()));
    r.unknown(t, "alert");
    let registry = match namespaces.as_deref() {
        None => None,
        Some("") => Some(Registry::builtin()),
        Some(file) => {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => match Registry::builtin().extended(&text) {
                    Ok(reg) => Some(reg),
                    Err(e) => {
                        r.error("alert.namespaces_file", &e.to_string());
                        None
                    }
                },
                Err(e) => {
                    r.error(
                        "alert.namespaces_file",
                        &format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
    };
    let schema_dir = match schema_dir? {
        d if d.is_empty() => None,
        d => {
            let path = base.join(d);
            if !path.is_dir() {
                r.error(
                    "alert.schema_dir",
                    &format!("{} is not a directory", path.display()),
                );
            }
            Some(path)
        }
    };
    Some(AlertConfig {
        registry: Arc::new(registry?),
        schema_dir,
    })
}

fn check_topic_name(r: &mut Reader, path: &str, name: &str) {
    if let Err(e) = check_topic(name) {
        r.error(path, &e.to_string());
    }
}

/// Why `name` is one of the gateway's own topics (`internal` are the configured cursor
/// and credentials topics), which hold cursors and issued credentials: never served or
/// written by a mirror.
fn internal_topic(name: &str, internal: &[&str]) -> Option<String> {
    if internal.contains(&name) {
        Some(format!(
            "{name:?} is the gateway's own state topic (kafka.cursor_topic or \
             kafka.credentials_topic); it must not be exposed or written to"
        ))
    } else if name.starts_with(INTERNAL_TOPIC_PREFIX) {
        Some(format!(
            "{name:?} is reserved for the gateway's own state ({INTERNAL_TOPIC_PREFIX}*); \
             it must not be exposed or written to"
        ))
    } else {
        None
    }
}

/// Environment overrides for runtime knobs, so one file serves several replicas.
const ENV_OVERRIDES: [(&str, &str, &str); 5] = [
    ("ALERTMESH_GATEWAY_LISTEN", "gateway", "listen"),
    ("ALERTMESH_GATEWAY_HTTP_LISTEN", "gateway", "http_listen"),
    (
        "ALERTMESH_GATEWAY_ADVERTISED_URL",
        "gateway",
        "advertised_url",
    ),
    ("ALERTMESH_KAFKA_BOOTSTRAP", "kafka", "bootstrap"),
    ("ALERTMESH_GATEWAY_REPLICA_ID", "gateway", "replica_id"),
];

fn apply_env(root: &mut toml::Table, env: &[(String, String)]) -> Result<(), Vec<String>> {
    for (var, section, key) in ENV_OVERRIDES {
        if let Some((_, value)) = env.iter().find(|(k, _)| k == var) {
            let entry = root
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(key.to_owned(), toml::Value::String(value.clone()));
                }
                _ => return Err(vec![format!("{section}: must be a table (to apply {var})")]),
            }
        }
    }
    Ok(())
}

/// `<hostname>-<pid>`: unique among the replicas of a gateway on one cluster (a pod's
/// hostname is its name).
pub fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests;
