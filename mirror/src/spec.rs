//! What a mirror copies ([`MirrorSpec`]) and where it runs ([`MirrorEnv`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use alertmesh_alert::{Decoder, Format, Registry};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

/// One mirror job, as the gateway config's `[[mirrors]]` describes it.
#[derive(Debug, Clone)]
pub struct MirrorSpec {
    /// Re-shape every copied alert into this mapping's schema (Avro schema resolution:
    /// aliases rename, defaults fill, promotions widen) and write it as an Avro container.
    pub translate: Option<Arc<alertmesh_alert::Mapping>>,
    /// Unique among the gateway's mirrors; names its status and log span.
    pub name: String,
    /// Local topic to copy into; `None` for the default: `<source gateway name>.<topic>`
    /// for a gateway source, the source topic for a Kafka source.
    pub destination: Option<String>,
    /// Where to start when the destination holds nothing of this source yet.
    pub start: Start,
    /// Where to copy from.
    pub source: Source,
}

/// Where a mirror starts reading a source partition of which nothing was copied yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record the source still holds.
    Earliest,
    /// Only records that arrive after the mirror (re)starts.
    Latest,
    /// The first record whose Kafka timestamp is at or after this time (ms since the epoch).
    Time(i64),
}

/// The stream a mirror copies.
#[derive(Debug, Clone)]
pub enum Source {
    /// An exposed topic of another alertmesh gateway, over gRPC.
    Gateway(GatewaySource),
    /// A topic of a remote Kafka cluster (a survey's raw stream).
    Kafka(KafkaSource),
}

/// A peer gateway's exposed topic.
#[derive(Clone)]
pub struct GatewaySource {
    /// The peer's gRPC URL, e.g. `https://127.0.0.1:50061`.
    pub url: String,
    /// Its exposed topic.
    pub topic: String,
    /// A filter evaluated at the source, e.g. `candidate.magpsf < 19` (for a query
    /// source: its `where` over the query's columns).
    pub filter: Option<String>,
    /// Copy the rows of this declared query instead of a topic (`topic` is then
    /// `query:<name>`, the prefix of the rows' refs).
    pub query: Option<QuerySource>,
    /// How to reach `url`: the bearer token bound to it, and the CA and client
    /// certificate for an `https://` URL. Its connect timeout is replaced by the mirror
    /// environment's.
    pub options: alertmesh_client::Options,
}

impl fmt::Debug for GatewaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The options show no token (its Debug is redacted).
        f.debug_struct("GatewaySource")
            .field("url", &self.url)
            .field("topic", &self.topic)
            .field("filter", &self.filter)
            .field("query", &self.query)
            .field("options", &self.options)
            .finish()
    }
}

/// A peer gateway's declared database query as a mirror source: its rows, in the
/// query's order, land in partition 0 of the destination, each naming its row ref in
/// `am-source` and the source's resume position in `am-resume` (see
/// [`crate::resume::QueryResume`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySource {
    /// The query's name on the source gateway.
    pub name: String,
    /// Only rows inside this cone: RA, Dec and radius in degrees.
    pub cone: Option<[f64; 3]>,
    /// Only rows whose key is one of these mesh keys.
    pub ids: Vec<String>,
    /// After the existing rows, go on with rows inserted later.
    pub follow: bool,
}

/// A remote Kafka topic.
#[derive(Clone)]
pub struct KafkaSource {
    /// Its bootstrap servers.
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
    /// The objectId namespace of its alerts, e.g. `ZTF`.
    pub namespace: String,
    /// Payload format.
    pub format: Format,
    /// Extra librdkafka properties (SASL, TLS) by their librdkafka names.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Property values may be passwords: show only their names.
        f.debug_struct("KafkaSource")
            .field("bootstrap", &self.bootstrap)
            .field("topic", &self.topic)
            .field("namespace", &self.namespace)
            .field("format", &self.format)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What every mirror of one gateway shares.
#[derive(Clone)]
pub struct MirrorEnv {
    /// This gateway's name: added to `am-hops`, and records naming it are not copied.
    pub gateway: String,
    /// Settings for clients of the local Kafka cluster (at least `bootstrap.servers`).
    pub kafka: ClientConfig,
    /// Namespaces and alert families, for re-keying keyless records.
    pub registry: Arc<Registry>,
    /// Payload decoder (with the gateway's Confluent schema resolver).
    pub decoder: Arc<Decoder>,
    /// Bound on each request to Kafka or to the source gateway.
    pub timeout: Duration,
    /// Cancelled at shutdown: mirrors finish in-flight produces and exit.
    pub cancel: CancellationToken,
    /// This process among the replicas of its gateway (`hostname-pid` unless configured):
    /// status names it as the one that copies a mirror's partitions.
    pub replica: String,
    /// Whether the replicas of this gateway share each mirror's work through a Kafka
    /// consumer group, with transactional producers (see [`crate::share`]); otherwise this
    /// process copies every partition of every mirror.
    pub shared: bool,
    /// The topics this gateway's mirrors and publishers write (see [`crate::claims`]).
    pub claims: crate::claims::Claims,
}

impl fmt::Debug for MirrorEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The Kafka settings may hold credentials.
        f.debug_struct("MirrorEnv")
            .field("gateway", &self.gateway)
            .field("timeout", &self.timeout)
            .field("replica", &self.replica)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl MirrorSpec {
    /// Whether the source is a peer gateway's database query.
    pub fn is_query(&self) -> bool {
        matches!(&self.source, Source::Gateway(g) if g.query.is_some())
    }

    /// The TLS files a gateway source is reached with (a failed mirror watches them).
    pub fn credential_files(&self) -> Vec<std::path::PathBuf> {
        match &self.source {
            Source::Gateway(g) => [&g.options.ca, &g.options.cert, &g.options.key]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            Source::Kafka(_) => Vec::new(),
        }
    }

    /// `am://<gateway>/<topic>` (the gateway's name once known, else its URL) or
    /// `kafka://<bootstrap>/<topic>`.
    pub fn source_label(&self, gateway_name: Option<&str>) -> String {
        match &self.source {
            Source::Gateway(g) => {
                format!("am://{}/{}", gateway_name.unwrap_or(&g.url), g.topic)
            }
            Source::Kafka(k) => format!("kafka://{}/{}", k.bootstrap, k.topic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_source_debug_shows_no_token() {
        let source = GatewaySource {
            url: "https://lasair:50051".into(),
            topic: "ztf.alerts".into(),
            filter: None,
            query: None,
            options: alertmesh_client::Options {
                token: Some(alertmesh_client::Token::new("s3cret.jwt.value").unwrap()),
                ..Default::default()
            },
        };
        let shown = format!("{source:?}");
        assert!(
            shown.contains("lasair") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
