//! Confluent schema ids: where a gateway learns them and how it serves them.
//!
//! - [`client`]: `GET /schemas/ids/{id}` against a configured registry (bounded, no
//!   redirects, credentials only to that registry); `peer`: a source gateway's
//!   `GetSchema`, for a mirror of a Confluent-framed topic with no registry configured.
//! - [`Schemas`]: every schema id the gateway knows (from `alert.schema_dir`, from
//!   registries, and the ids of `[[mappings]]` schemas), the Confluent [`SchemaResolver`]
//!   of its decoder: each id fetched once, even under concurrent load, and kept.
//! - [`api`]: the read-only Confluent-compatible registry API on the HTTP side port.
//!
//! Ids are one namespace per gateway: the schema directory's (LSST: major*100+minor), then
//! what the registries of its sources answer, in configuration order. A translated topic's
//! schema gets an id in [`MAPPED_IDS`], derived from its fingerprint, so every replica and
//! every restart gives it the same id.

pub(crate) mod api;
pub(crate) mod client;
mod peer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use alertmesh_alert::apache_avro::schema::Schema;
use alertmesh_alert::{Error as AlertError, Format, SchemaDir, SchemaResolver, WriterSchema};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::runtime::Handle;

use self::client::{FetchError, HttpRegistry, RegistryClient};
use self::peer::PeerRegistry;
use crate::config::{Config, RegistrySource};

/// Ids given to `[[mappings]]` schemas: `2^30 + (fingerprint mod 2^30)`. Registries number
/// their schemas upwards from 1, so this range does not meet theirs.
pub(crate) const MAPPED_IDS: std::ops::Range<u32> = (1 << 30)..(1 << 31);

/// How long a failed lookup of an id is remembered before the registry is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Failed lookups remembered at most (cleared when full: a hostile stream of ids cannot
/// grow memory).
const MAX_FAILURES: usize = 4096;

/// Schemas learned from registries at most: a hostile source naming ever new ids (that a
/// hostile registry answers) cannot grow memory without bound.
const MAX_LEARNED: usize = 10_000;

/// Schema text learned from registries at most, in bytes: each answer may be 1 MiB, so
/// the count alone would let a hostile registry fill gigabytes. (Unit tests reach a
/// smaller one with a few schemas.)
#[cfg(not(test))]
const MAX_LEARNED_BYTES: usize = 64 << 20;
#[cfg(test)]
const MAX_LEARNED_BYTES: usize = 1 << 20;

/// The id of a `[[mappings]]` schema with this fingerprint.
pub(crate) fn mapped_id(fingerprint: u64) -> u32 {
    MAPPED_IDS.start + (fingerprint % u64::from(MAPPED_IDS.start)) as u32
}

/// One schema the gateway knows.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) schema: Arc<Schema>,
    /// The schema as served (the registry's text, or the parsed schema as JSON).
    pub(crate) text: Arc<str>,
    pub(crate) fingerprint: u64,
    origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Dir,
    Registry(usize),
    Mapping,
}

/// Where one exposed topic's schemas come from.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicSchemas {
    /// The topic is Confluent-framed (`avro-confluent`).
    confluent: bool,
    /// Confluent-framed: the schema directory's ids apply.
    dir: bool,
    /// Indexes into the registries.
    registries: Vec<usize>,
    /// The id of the mapping schema a mirror translates into this topic.
    mapped: Option<u32>,
}

/// Outcomes of registry lookups.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum LookupResult {
    ok,
    not_found,
    unavailable,
    garbage,
    invalid_schema,
    /// Refused from memory: the id failed less than [`RETRY_AFTER`] ago.
    recently_failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LookupLabels {
    pub(crate) result: LookupResult,
}

/// Registry lookup counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct RegistryMetrics {
    pub(crate) lookups: Family<LookupLabels, Counter>,
}

impl RegistryMetrics {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "alertmesh_schema_registry_lookups",
            "Schema ids looked up in a schema registry, by result",
            self.lookups.clone(),
        );
    }

    fn count(&self, result: LookupResult) {
        self.lookups.get_or_create(&LookupLabels { result }).inc();
    }
}

/// Every schema id the gateway knows, and the registries it learns new ones from.
#[derive(Debug, Clone)]
pub(crate) struct Schemas {
    inner: Arc<Inner>,
}

/// A schema id and the registries (by index) that failed to give it.
type FailedLookup = (u32, Vec<usize>);

#[derive(Debug)]
struct Inner {
    registries: Vec<RegistryClient>,
    known: RwLock<BTreeMap<u32, Known>>,
    /// One lock per id being fetched: the first caller fetches, the others wait for it.
    flights: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
    /// Failed lookups, by id and the registries asked (a miss in one registry says
    /// nothing of another's ids).
    failures: Mutex<HashMap<FailedLookup, (Instant, String)>>,
    /// Bytes of schema text learned from registries so far.
    learned_bytes: std::sync::atomic::AtomicUsize,
    /// Grows when a mirror without `destination` names the topic it writes (see
    /// [`Schemas::watch_mirrors`]).
    topics: RwLock<BTreeMap<String, TopicSchemas>>,
    /// Mirrors from a peer gateway without `destination`: they write to
    /// `<peer name>.<topic>`, known once they have connected.
    pending: Mutex<Vec<Pending>>,
    /// Where a mirror writes, once it knows (set once the mirrors have started).
    destinations: OnceLock<Destinations>,
    /// Runs lookups for synchronous callers (the decoder), off the caller's runtime.
    runtime: Option<Handle>,
    metrics: RegistryMetrics,
}

impl Schemas {
    /// The schemas of `config`: its schema directory, its topics' and mirrors' registries
    /// and its mappings.
    pub(crate) fn new(config: &Config) -> crate::Result<Self> {
        let internal = |what: String| crate::Error::Internal(what);
        let mut known = BTreeMap::new();
        if let Some(dir) = &config.alert.schema_dir {
            let loaded =
                SchemaDir::load(dir).map_err(|e| internal(format!("alert.schema_dir: {e}")))?;
            for id in loaded.ids().collect::<Vec<_>>() {
                let schema = loaded.resolve(id).map_err(|e| internal(e.to_string()))?;
                known.insert(id, known_of(schema, None, Origin::Dir));
            }
        }
        let timeout = config.kafka.timeout.min(Duration::from_secs(10));
        let mut sources: Vec<Wanted> = Vec::new();
        let mut index = |wanted: Wanted| match sources.iter().position(|s| s.same(&wanted)) {
            Some(i) => i,
            None => {
                sources.push(wanted);
                sources.len() - 1
            }
        };
        let mut topics: BTreeMap<String, TopicSchemas> = BTreeMap::new();
        let mut pending = Vec::new();
        for t in &config.topics {
            let entry = topics.entry(t.name.clone()).or_default();
            entry.confluent = t.format == Format::AvroConfluent;
            entry.dir = entry.confluent && config.alert.schema_dir.is_some();
            if let Some(reg) = &t.schema_registry {
                entry.registries.push(index(Wanted::Http(reg.clone())));
            }
        }
        for m in &config.mirrors {
            let written = m.spec.destination.clone().or(match &m.spec.source {
                alertmesh_mirror::Source::Kafka(k) => Some(k.topic.clone()),
                // Named after the peer, known only once connected.
                alertmesh_mirror::Source::Gateway(_) => None,
            });
            let confluent = match (&written, &m.spec.source) {
                (Some(w), _) => config
                    .topic(w)
                    .is_some_and(|t| t.format == Format::AvroConfluent),
                // `<peer>.<topic>`: worth a registry if such a Confluent-framed topic is
                // exposed (which one is settled once the mirror knows its peer's name).
                (None, alertmesh_mirror::Source::Gateway(g)) => config.topics.iter().any(|t| {
                    t.format == Format::AvroConfluent
                        && t.name
                            .strip_suffix(g.topic.as_str())
                            .is_some_and(|p| p.ends_with('.'))
                }),
                (None, alertmesh_mirror::Source::Kafka(_)) => false,
            };
            let registry = match (&m.schema_registry, &m.spec.source) {
                (Some(reg), _) => Some(index(Wanted::Http(reg.clone()))),
                // A Confluent-framed copy of a peer's topic: the peer knows its ids.
                (None, alertmesh_mirror::Source::Gateway(g)) if confluent => {
                    let options = crate::mirrors::source_options(m)
                        .map_err(|e| internal(format!("mirror {}: {e}", m.spec.name)))?;
                    Some(index(Wanted::Peer {
                        url: g.url.clone(),
                        topic: g.topic.clone(),
                        options: Box::new(options),
                    }))
                }
                _ => None,
            };
            let mapped = m.spec.translate.as_ref().and_then(|mapping| {
                let target = mapping.target();
                let id = mapped_id(target.fingerprint());
                match known.get(&id) {
                    Some(k) if k.fingerprint != target.fingerprint() => {
                        tracing::warn!(
                            mapping = mapping.name(),
                            id,
                            "two mapping schemas share an id; the second is not served"
                        );
                        None
                    }
                    _ => {
                        known.insert(
                            id,
                            known_of(Arc::new(target.schema().clone()), None, Origin::Mapping),
                        );
                        Some(id)
                    }
                }
            });
            match written {
                Some(w) => {
                    if let Some(topic) = topics.get_mut(&w) {
                        topic.bind(registry, mapped);
                    }
                }
                None if registry.is_some() || mapped.is_some() => pending.push(Pending {
                    mirror: m.spec.name.clone(),
                    registry,
                    mapped,
                }),
                None => {}
            }
        }
        let registries = sources
            .iter()
            .map(|s| s.client(timeout).map_err(internal))
            .collect::<crate::Result<Vec<_>>>()?;
        let runtime =
            if registries.is_empty() {
                None
            } else {
                Some(lookup_runtime().map_err(|e| {
                    internal(format!("cannot start the schema registry thread: {e}"))
                })?)
            };
        Ok(Schemas {
            inner: Arc::new(Inner {
                registries,
                known: RwLock::new(known),
                flights: Mutex::default(),
                failures: Mutex::default(),
                learned_bytes: std::sync::atomic::AtomicUsize::new(0),
                topics: RwLock::new(topics),
                pending: Mutex::new(pending),
                destinations: OnceLock::new(),
                runtime,
                metrics: RegistryMetrics::default(),
            }),
        })
    }

    pub(crate) fn metrics(&self) -> &RegistryMetrics {
        &self.inner.metrics
    }

    /// Lets the schemas learn where mirrors without `destination` write: `destination`
    /// answers a mirror's topic once it has connected to its source. Such a mirror's
    /// registry (its source gateway, or its `schema_registry`) then serves that topic as
    /// it does a configured destination.
    pub(crate) fn watch_mirrors(
        &self,
        destination: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) {
        let _ = self
            .inner
            .destinations
            .set(Destinations(Box::new(destination)));
    }

    /// Binds the mirrors whose destination became known since the last call.
    fn settle(&self) {
        let Some(Destinations(destination)) = self.inner.destinations.get() else {
            return;
        };
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            return;
        }
        pending.retain(|p| {
            let Some(written) = destination(&p.mirror) else {
                return true;
            };
            let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
            match topics.get_mut(&written) {
                Some(t) if t.confluent || p.mapped.is_some() => {
                    tracing::debug!(mirror = %p.mirror, topic = %written, "mirror's schemas serve its destination");
                    t.bind(p.registry, p.mapped);
                }
                _ => {}
            }
            false
        });
    }

    fn topic(&self, name: &str) -> Option<TopicSchemas> {
        self.settle();
        self.inner.topics().get(name).cloned()
    }

    /// The exposed topics that have schema ids (Confluent-framed or translated).
    pub(crate) fn topics_with_schemas(&self) -> Vec<String> {
        self.settle();
        self.inner
            .topics()
            .iter()
            .filter(|(_, t)| t.dir || t.mapped.is_some() || !t.registries.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The ids known for `topic`, ascending (ids its registries have not been asked
    /// about yet are not listed).
    pub(crate) fn topic_ids(&self, topic: &str) -> Vec<u32> {
        let Some(t) = self.topic(topic) else {
            return Vec::new();
        };
        self.inner
            .known()
            .iter()
            .filter(|(id, k)| t.covers(**id, k.origin))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The schema `id` of `topic`, asking the topic's registries if it is not known yet.
    pub(crate) async fn topic_schema(&self, topic: &str, id: u32) -> Result<Known, AlertError> {
        let t = self.topic(topic).ok_or(AlertError::UnknownSchemaId(id))?;
        if let Some(k) = self
            .inner
            .known()
            .get(&id)
            .filter(|k| t.covers(id, k.origin))
        {
            return Ok(k.clone());
        }
        if t.registries.is_empty() {
            return Err(AlertError::UnknownSchemaId(id));
        }
        let k = Arc::clone(&self.inner)
            .learn(id, t.registries.clone())
            .await?;
        Ok(k)
    }
}

/// A registry a source asks for: configured, or the source gateway itself.
enum Wanted {
    Http(RegistrySource),
    Peer {
        url: String,
        topic: String,
        options: Box<alertmesh_client::Options>,
    },
}

impl Wanted {
    fn same(&self, other: &Wanted) -> bool {
        match (self, other) {
            (Wanted::Http(a), Wanted::Http(b)) => a == b,
            (
                Wanted::Peer { url, topic, .. },
                Wanted::Peer {
                    url: u, topic: t, ..
                },
            ) => url == u && topic == t,
            _ => false,
        }
    }

    fn client(&self, timeout: Duration) -> Result<RegistryClient, String> {
        Ok(match self {
            Wanted::Http(source) => RegistryClient::Http(HttpRegistry::new(source, timeout)?),
            Wanted::Peer {
                url,
                topic,
                options,
            } => RegistryClient::Peer(Box::new(PeerRegistry::new(url, topic, options, timeout)?)),
        })
    }
}

/// A mirror without `destination` whose schemas serve the topic it writes, once known.
#[derive(Debug)]
struct Pending {
    mirror: String,
    registry: Option<usize>,
    mapped: Option<u32>,
}

/// Where a mirror writes, by its name (once it knows).
struct Destinations(Box<DestinationOf>);

type DestinationOf = dyn Fn(&str) -> Option<String> + Send + Sync;

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Destinations")
    }
}

impl TopicSchemas {
    /// A mirror writing into this topic: its source's registry, or the mapping it
    /// translates into.
    fn bind(&mut self, registry: Option<usize>, mapped: Option<u32>) {
        self.registries.extend(registry);
        if mapped.is_some() {
            self.mapped = mapped;
            // Translated payloads carry the mapping's schema, not the source's.
            self.dir = false;
            self.registries.clear();
        }
    }

    fn covers(&self, id: u32, origin: Origin) -> bool {
        match origin {
            Origin::Dir => self.dir,
            Origin::Registry(i) => self.registries.contains(&i),
            Origin::Mapping => self.mapped == Some(id),
        }
    }
}

impl Inner {
    fn topics(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, TopicSchemas>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Known>> {
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches `id` from `registries` (in order, the first that knows it wins), once at a
    /// time per id, and keeps it.
    async fn learn(self: Arc<Self>, id: u32, registries: Vec<usize>) -> Result<Known, AlertError> {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(flights.entry(id).or_default())
        };
        let _turn = flight.lock().await;
        let result = self.learn_now(id, &registries).await;
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        result
    }

    async fn learn_now(&self, id: u32, registries: &[usize]) -> Result<Known, AlertError> {
        // Fetched by the caller this one waited for.
        if let Some(k) = self.known().get(&id).filter(|k| match k.origin {
            Origin::Registry(i) => registries.contains(&i),
            _ => false,
        }) {
            return Ok(k.clone());
        }
        let failed = |reason: &str| AlertError::Schema {
            reason: format!("schema id {id}: {reason}"),
        };
        {
            let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, reason)) = failures.get(&(id, registries.to_vec())) {
                if at.elapsed() < RETRY_AFTER {
                    self.metrics.count(LookupResult::recently_failed);
                    return Err(if reason.is_empty() {
                        AlertError::UnknownSchemaId(id)
                    } else {
                        failed(reason)
                    });
                }
            }
        }
        let mut last = FetchError::NotFound(id);
        for &i in registries {
            let registry = &self.registries[i];
            match registry.schema(id).await {
                Ok(_) if self.known().len() >= MAX_LEARNED => {
                    self.metrics.count(LookupResult::garbage);
                    last = FetchError::Garbage(format!(
                        "more than {MAX_LEARNED} schema ids learned; not keeping more"
                    ));
                }
                Ok(text)
                    if self
                        .learned_bytes
                        .load(std::sync::atomic::Ordering::Relaxed)
                        + text.len()
                        > MAX_LEARNED_BYTES =>
                {
                    self.metrics.count(LookupResult::garbage);
                    last = FetchError::Garbage(format!(
                        "more than {} MiB of schema text learned; not keeping more",
                        MAX_LEARNED_BYTES >> 20
                    ));
                }
                Ok(text) => match WriterSchema::parse(&text) {
                    Ok(parsed) => {
                        self.metrics.count(LookupResult::ok);
                        self.learned_bytes
                            .fetch_add(text.len(), std::sync::atomic::Ordering::Relaxed);
                        let k = known_of(
                            Arc::new(parsed.schema().clone()),
                            Some(text),
                            Origin::Registry(i),
                        );
                        self.known
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, k.clone());
                        tracing::info!(id, registry = %registry.url(), "schema learned from registry");
                        return Ok(k);
                    }
                    Err(e) => {
                        self.metrics.count(LookupResult::invalid_schema);
                        last = FetchError::Garbage(format!("schema does not parse: {e}"));
                    }
                },
                Err(e) => {
                    self.metrics.count(match e {
                        FetchError::NotFound(_) => LookupResult::not_found,
                        FetchError::Unavailable(_) => LookupResult::unavailable,
                        FetchError::Garbage(_) => LookupResult::garbage,
                    });
                    tracing::warn!(id, registry = %registry.url(), error = %e, "schema lookup failed");
                    last = e;
                }
            }
        }
        let reason = match &last {
            FetchError::NotFound(_) => String::new(),
            other => other.to_string(),
        };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_FAILURES {
            failures.clear();
        }
        failures.insert((id, registries.to_vec()), (Instant::now(), reason.clone()));
        Err(if reason.is_empty() {
            AlertError::UnknownSchemaId(id)
        } else {
            failed(&reason)
        })
    }
}

impl SchemaResolver for Schemas {
    fn resolve(&self, id: u32) -> alertmesh_alert::Result<Arc<Schema>> {
        if let Some(k) = self.inner.known().get(&id) {
            return Ok(Arc::clone(&k.schema));
        }
        let Some(runtime) = &self.inner.runtime else {
            return Err(AlertError::UnknownSchemaId(id));
        };
        // Decoding is synchronous; the lookup runs on the registry thread and this thread
        // waits for it (bounded by the registry timeout; once per id).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        let all = (0..inner.registries.len()).collect();
        runtime.spawn(async move {
            let _ = tx.send(inner.learn(id, all).await);
        });
        let wait = || {
            rx.recv().unwrap_or_else(|_| {
                Err(AlertError::Schema {
                    reason: format!("schema id {id}: the registry lookup was dropped"),
                })
            })
        };
        let on_worker = Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let known = if on_worker {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        }?;
        Ok(known.schema)
    }
}

fn known_of(schema: Arc<Schema>, text: Option<String>, origin: Origin) -> Known {
    let text = text.unwrap_or_else(|| {
        serde_json::to_string(&*schema).unwrap_or_else(|_| schema.canonical_form())
    });
    Known {
        fingerprint: alertmesh_alert::schema::fingerprint(&schema),
        schema,
        text: text.into(),
        origin,
    }
}

/// A runtime of its own on one thread, for lookups asked from synchronous code.
fn lookup_runtime() -> std::io::Result<Handle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("schema-registry".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

#[cfg(test)]
mod tests;
