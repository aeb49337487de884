//! `[[mirrors]]`: streams this gateway copies into its local Kafka, from a peer gateway or
//! from a raw Kafka cluster (a survey's); `[[mappings]]`: named target schemas a mirror can
//! translate alerts into.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alertmesh_alert::naming::{check_destination, check_mirror_name, check_topic};
use alertmesh_alert::{Format, Mapping, Registry};
use alertmesh_mirror::{GatewaySource, KafkaSource, MirrorSpec, Source, Start};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::reader::Reader;

/// One mirror job, with the files its gateway source authenticates with.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The job; a gateway source's token and TLS endpoint are filled in at startup.
    pub spec: MirrorSpec,
    /// Bearer token for a gateway source (a JWT as printed by `creds issue`).
    pub token_file: Option<PathBuf>,
    /// CA that signs the source gateway's certificate (https:// sources).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for sources that require mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Where the source's Confluent schema ids are registered (for a gateway source, its
    /// registry API, asked with `token_file`).
    pub schema_registry: Option<super::RegistrySource>,
    /// A digest of its `[[mirrors]]` table as written (after `ALERTMESH_*` overrides): a
    /// failed mirror is restarted when a reloaded config changes it. A digest, not the
    /// table, as the table may hold passwords.
    pub section_digest: u64,
}

/// What mirrors are checked against: the local cluster they write into.
#[derive(Debug)]
pub(super) struct Local<'a> {
    /// `kafka.bootstrap`.
    pub(super) bootstrap: Option<&'a str>,
    /// The gateway's own topics (cursors, credentials).
    pub(super) internal_topics: &'a [&'a str],
}

/// Whether two bootstrap lists name a common broker, i.e. the same cluster.
fn same_cluster(a: &str, b: &str) -> bool {
    let brokers = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|b| b.trim().to_ascii_lowercase())
            .filter(|b| !b.is_empty())
            .collect()
    };
    let b = brokers(b);
    brokers(a).iter().any(|x| b.contains(x))
}

fn path(base: &Path, p: Option<String>) -> Option<PathBuf> {
    p.filter(|s| !s.is_empty()).map(|s| base.join(s))
}

/// Reads every `[[mirrors]]` table; problems are recorded in `r` with their key paths.
pub(super) fn read(
    r: &mut Reader,
    root: &mut toml::Table,
    base: &Path,
    registry: Option<&Registry>,
    local: &Local<'_>,
) -> Vec<MirrorConfig> {
    let mappings = read_mappings(r, root, base);
    let mut out: Vec<MirrorConfig> = Vec::new();
    for (i, mut t) in r.array_of_tables(root, "mirrors").into_iter().enumerate() {
        let at = format!("mirrors[{i}]");
        let section_digest = digest(&t);
        let name = r.string(&mut t, &at, "name", None);
        if let Some(n) = &name {
            if let Err(e) = check_mirror_name(n) {
                r.error(&format!("{at}.name"), &e.to_string());
            }
            if let Some(j) = out.iter().position(|m| &m.spec.name == n) {
                r.error(
                    &format!("{at}.name"),
                    &format!("{n:?} is already used by mirrors[{j}]"),
                );
            }
        }
        let destination = r.string(&mut t, &at, "destination", Some(String::new()));
        let destination = destination.filter(|d| !d.is_empty());
        if let Some(d) = &destination {
            if let Err(e) = check_destination(d) {
                r.error(&format!("{at}.destination"), &e.to_string());
            }
            if let Some(why) = super::internal_topic(d, local.internal_topics) {
                r.error(&format!("{at}.destination"), &why);
            }
            if let Some(j) = out
                .iter()
                .position(|m| m.spec.destination.as_deref() == Some(d))
            {
                r.error(
                    &format!("{at}.destination"),
                    &format!("{d:?} is already the destination of mirrors[{j}]; each mirror needs its own topic"),
                );
            }
        }
        let start = r
            .string(&mut t, &at, "start", Some("earliest".into()))
            .and_then(|s| {
                parse_start(&s).or_else(|| {
                    r.error(
                        &format!("{at}.start"),
                        &format!("{s:?} is not earliest, latest or an RFC 3339 time"),
                    );
                    None
                })
            });
        let translate = {
            let mut tr = r.table(&mut t, &at, "translate", false);
            let name = r.string(
                &mut tr,
                &format!("{at}.translate"),
                "mapping",
                Some(String::new()),
            );
            r.unknown(tr, &format!("{at}.translate"));
            match name.filter(|n| !n.is_empty()) {
                None => None,
                Some(n) => match mappings.get(&n) {
                    Some(m) => Some(Arc::clone(m)),
                    None => {
                        let known: Vec<&String> = mappings.keys().collect();
                        r.error(
                            &format!("{at}.translate.mapping"),
                            &format!("unknown mapping {n:?}; defined in [[mappings]]: {known:?}"),
                        );
                        None
                    }
                },
            }
        };
        let mut src = r.table(&mut t, &at, "source", true);
        let sat = format!("{at}.source");
        let query = super::mirror_query::read(r, &mut src, &sat);
        let topic = match &query {
            Some(q) => {
                if src.remove("topic").is_some() {
                    r.error(
                        &format!("{sat}.topic"),
                        "a query source has no topic; set either topic or query",
                    );
                }
                Some(format!("query:{}", q.name))
            }
            None => r.string(&mut src, &sat, "topic", None),
        };
        let topic_checked = if query.is_some() {
            None
        } else {
            topic.as_deref()
        };
        if let Some(Err(e)) = topic_checked.map(check_topic) {
            r.error(&format!("{sat}.topic"), &e.to_string());
        }
        let query_where = super::mirror_query::read_where(r, &mut src, &sat, query.is_some());
        let topic_filter_ok = query.is_none();
        let gateway = r
            .string(&mut src, &sat, "gateway", Some(String::new()))
            .filter(|s| !s.is_empty());
        let kafka = r
            .string(&mut src, &sat, "kafka", Some(String::new()))
            .filter(|s| !s.is_empty());
        let filter = r
            .string(&mut src, &sat, "filter", Some(String::new()))
            .filter(|s| !s.is_empty());
        // The source gateway parses it too, but a typo should stop `serve --check`, not
        // surface as a refused subscription at run time.
        if let Some(Err(e)) = filter.as_deref().map(alertmesh_alert::Predicate::parse) {
            r.error(&format!("{sat}.filter"), &e.to_string());
        }
        if filter.is_some() && !topic_filter_ok {
            r.error(
                &format!("{sat}.filter"),
                "a query source filters with where (over the query's columns)",
            );
        }
        let filter = if query.is_some() { query_where } else { filter };
        let token_file = path(
            base,
            r.string(&mut src, &sat, "token_file", Some(String::new())),
        );
        let ca = path(base, r.string(&mut src, &sat, "ca", Some(String::new())));
        let cert = path(base, r.string(&mut src, &sat, "cert", Some(String::new())));
        let key = path(base, r.string(&mut src, &sat, "key", Some(String::new())));
        if cert.is_some() != key.is_some() {
            r.error(&format!("{sat}.cert"), "cert and key go together");
        }
        let mut schema_registry = super::registry::read(r, &mut src, &sat, base);
        if let Some(reg) = &mut schema_registry {
            // A gateway's registry API (its side port) takes the same token as its gRPC
            // port; the token goes to that gateway's host only, and not in clear where the
            // gateway itself is reached over TLS. Another registry is asked without it.
            let source_host = gateway.as_deref().and_then(url_host);
            let same_host = source_host.is_some() && source_host == url_host(&reg.url);
            if same_host && token_file.is_some() {
                let gateway_tls = gateway
                    .as_deref()
                    .is_some_and(|g| g.starts_with("https://"));
                if gateway_tls && !reg.url.starts_with("https://") {
                    r.error(
                        &format!("{sat}.schema_registry"),
                        "the source gateway is reached over https: its registry API too (the token goes with each request)",
                    );
                }
                reg.token_file = token_file.clone();
                if reg.credentials.is_some() {
                    r.error(
                        &format!("{sat}.schema_registry_credentials"),
                        "a gateway source's registry is asked with its token_file; drop the credentials",
                    );
                }
            }
        }
        let source = match (gateway, kafka) {
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    r.error(
                        &format!("{sat}.gateway"),
                        "must be an http:// or https:// URL",
                    );
                }
                if url.starts_with("http://") && (ca.is_some() || cert.is_some()) {
                    r.error(
                        &format!("{sat}.ca"),
                        "ca/cert/key need an https:// gateway URL",
                    );
                }
                let mut unused = src.clone();
                for k in ["namespace", "format", "properties"] {
                    if unused.remove(k).is_some() {
                        r.error(&format!("{sat}.{k}"), "applies to kafka sources only");
                    }
                }
                src = unused;
                topic.clone().map(|topic| {
                    Source::Gateway(GatewaySource {
                        url,
                        topic,
                        filter,
                        query: query.clone(),
                        options: Default::default(),
                    })
                })
            }
            (None, Some(bootstrap)) => {
                if query.is_some() {
                    r.error(
                        &format!("{sat}.query"),
                        "a query is read from a peer gateway: set gateway, not kafka",
                    );
                }
                let namespace = r.string(&mut src, &sat, "namespace", None);
                if let (Some(ns), Some(reg)) = (&namespace, registry) {
                    if reg.namespace(ns).is_none() {
                        r.error(
                            &format!("{sat}.namespace"),
                            &format!("unknown namespace {ns:?}"),
                        );
                    }
                }
                let format = r.string(&mut src, &sat, "format", None).and_then(|f| {
                    f.parse::<Format>()
                        .map_err(|e| r.error(&format!("{sat}.format"), &e.to_string()))
                        .ok()
                });
                let properties: BTreeMap<String, String> =
                    r.string_map(&mut src, &sat, "properties");
                super::properties::check(r, &format!("{sat}.properties"), &properties);
                if let (Some(t), None) = (&topic, &destination) {
                    // Without a destination the mirror writes to a topic named as its source.
                    if check_topic(t).is_ok() {
                        if let Err(e) = check_destination(t) {
                            r.error(
                                &format!("{at}.destination"),
                                &format!("unset, so the source topic is used: {e}"),
                            );
                        }
                    }
                    if let Some(why) = super::internal_topic(t, local.internal_topics) {
                        r.error(
                            &format!("{at}.destination"),
                            &format!("unset, so the source topic is used: {why}"),
                        );
                    }
                }
                let written = destination.as_ref().or(topic.as_ref());
                if let (Some(local_bootstrap), Some(t)) = (local.bootstrap, &topic) {
                    let here = same_cluster(&bootstrap, local_bootstrap);
                    if let Some(why) = super::internal_topic(t, local.internal_topics) {
                        if here {
                            r.error(&format!("{sat}.topic"), &why);
                        }
                    }
                    if here && written == Some(t) {
                        r.error(
                            &format!("{at}.destination"),
                            &format!(
                                "{t:?} on {bootstrap:?} is this mirror's own source (the local \
                                 cluster, kafka.bootstrap): it would copy its own output \
                                 forever; set another destination"
                            ),
                        );
                    }
                }
                if filter.is_some() {
                    r.error(
                        &format!("{sat}.filter"),
                        "applies to gateway sources only (they filter at the source)",
                    );
                }
                if token_file.is_some() || ca.is_some() || cert.is_some() {
                    r.error(
                        &format!("{sat}.token_file"),
                        "gateway-source options; put librdkafka TLS/SASL settings in properties",
                    );
                }
                match (topic.clone(), namespace, format) {
                    (Some(topic), Some(namespace), Some(format)) => {
                        Some(Source::Kafka(KafkaSource {
                            bootstrap,
                            topic,
                            namespace,
                            format,
                            properties,
                        }))
                    }
                    _ => None,
                }
            }
            (Some(_), Some(_)) => {
                r.error(&sat, "set either gateway (a peer gateway's URL) or kafka (bootstrap servers), not both");
                None
            }
            (None, None) => {
                r.error(
                    &sat,
                    "set gateway (a peer gateway's URL) or kafka (bootstrap servers)",
                );
                None
            }
        };
        r.unknown(src, &sat);
        r.unknown(t, &at);
        if let (Some(name), Some(start), Some(source)) = (name, start, source) {
            let spec = MirrorSpec {
                translate,
                name,
                destination,
                start,
                source,
            };
            // A Kafka source without `destination` writes the topic of its source's name:
            // two such mirrors (or one and a named destination) would share a topic, and
            // each one's recovery would take the other's positions for its own.
            if let Some(d) = default_destination(&spec) {
                if let Err(e) = check_destination(d) {
                    r.error(
                        &format!("{at}.destination"),
                        &format!("the default, {d:?}: {e}"),
                    );
                }
                if let Some(why) = super::internal_topic(d, local.internal_topics) {
                    r.error(&format!("{at}.destination"), &format!("the default: {why}"));
                }
            }
            let mine = spec.destination.as_deref().or(default_destination(&spec));
            if let Some(d) = mine {
                let shared = out.iter().position(|m| {
                    let theirs = m
                        .spec
                        .destination
                        .as_deref()
                        .or(default_destination(&m.spec));
                    theirs == Some(d)
                        && (spec.destination.is_none() || m.spec.destination.is_none())
                });
                if let Some(j) = shared {
                    r.error(
                        &format!("{at}.destination"),
                        &format!(
                            "{d:?} is already the destination of mirrors[{j}] (a kafka source \
                             without destination writes its topic's name); each mirror needs \
                             its own topic: set destination"
                        ),
                    );
                }
            }
            out.push(MirrorConfig {
                spec,
                token_file,
                ca,
                cert,
                key,
                schema_registry,
                section_digest,
            });
        }
    }
    out
}

/// The topic a mirror without `destination` writes, where the configuration alone says it:
/// a Kafka source's topic name (a gateway source's default names the peer, known once it
/// answers).
fn default_destination(spec: &MirrorSpec) -> Option<&str> {
    match (&spec.destination, &spec.source) {
        (None, Source::Kafka(k)) => Some(k.topic.as_str()),
        _ => None,
    }
}

fn digest(table: &toml::Table) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    table.to_string().hash(&mut hasher);
    hasher.finish()
}

fn parse_start(s: &str) -> Option<Start> {
    match s {
        "earliest" => Some(Start::Earliest),
        "latest" => Some(Start::Latest),
        _ => {
            let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
            Some(Start::Time((t.unix_timestamp_nanos() / 1_000_000) as i64))
        }
    }
}

/// Reads every `[[mappings]]` table: `name` and `schema`, an Avro schema file (JSON).
fn read_mappings(
    r: &mut Reader,
    root: &mut toml::Table,
    base: &Path,
) -> BTreeMap<String, Arc<Mapping>> {
    let mut out = BTreeMap::new();
    for (i, mut t) in r.array_of_tables(root, "mappings").into_iter().enumerate() {
        let at = format!("mappings[{i}]");
        let name = r.string(&mut t, &at, "name", None);
        let schema = r.string(&mut t, &at, "schema", None);
        r.unknown(t, &at);
        let (Some(name), Some(schema)) = (name, schema) else {
            continue;
        };
        let file = base.join(&schema);
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
            .and_then(|text| Mapping::new(&name, &text).map_err(|e| e.to_string()));
        match parsed {
            Ok(m) if !out.contains_key(&name) => {
                out.insert(name, Arc::new(m));
            }
            Ok(_) => r.error(&format!("{at}.name"), &format!("{name:?} is defined twice")),
            Err(e) => r.error(&format!("{at}.schema"), &e),
        }
    }
    out
}

/// The host of an http(s) URL, lower case and without IPv6 brackets.
fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some(host.to_ascii_lowercase())
}
