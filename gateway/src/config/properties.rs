//! librdkafka properties (`kafka.properties`, a Kafka-source mirror's `properties`):
//! checked against librdkafka when the configuration is read, so `--check` finds an
//! unknown property or a bad value, and reported by key only. Values are often secrets
//! (`sasl.password`), and librdkafka's own message for a bad value repeats the value.

use std::collections::BTreeMap;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use rdkafka::ClientConfig;

use super::reader::Reader;

/// What replaces a property value wherever a message would show it.
pub(crate) const REDACTED: &str = "<redacted>";

/// Records one problem per property librdkafka refuses, under `path.<key>`.
pub(super) fn check(r: &mut Reader, path: &str, properties: &BTreeMap<String, String>) {
    for (key, value) in properties {
        let mut one = ClientConfig::new();
        one.set(key, value);
        if let Err(e) = one.create_native_config() {
            r.error(&format!("{path}.{key}"), &refusal(&e, value));
        }
    }
}

/// librdkafka's reason for refusing one property, with the value taken out.
fn refusal(e: &KafkaError, value: &str) -> String {
    match e {
        KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..) => {
            "librdkafka has no such property".to_owned()
        }
        KafkaError::ClientConfig(_, desc, ..) => {
            format!("librdkafka refuses the value: {}", redact(desc, [value]))
        }
        other => redact(&other.to_string(), [value]),
    }
}

/// `text` with every non-empty value in `values` replaced by [`REDACTED`].
pub(crate) fn redact<'a>(text: &str, values: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_owned();
    for v in values {
        if !v.is_empty() {
            out = out.replace(v, REDACTED);
        }
    }
    out
}

/// A librdkafka error as text safe to log or send: a configuration error names its
/// property but never its value.
pub(crate) fn kafka_error_text(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => format!(
            "client configuration error for property {key:?}: {}",
            redact(desc, [value.as_str()])
        ),
        other => other.to_string(),
    }
}

/// Property names whose values are credentials.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "token",
        "credential",
        "oauthbearer.config",
        ".pem",
    ]
    .iter()
    .any(|s| key.contains(s))
        || key.ends_with(".key")
        || key == "sasl.username"
}

/// The credential values of a configuration's librdkafka properties, to take out of any
/// text before it is printed.
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.0.len())
    }
}

impl Secrets {
    /// `text` with every credential value replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, self.0.iter().map(String::as_str))
    }
}

impl super::Config {
    /// The credential values among `kafka.properties` and the Kafka-source mirrors'
    /// properties (passwords, SASL and OAuth settings, PEM keys).
    pub fn secrets(&self) -> Secrets {
        let mirrors = self.mirrors.iter().filter_map(|m| match &m.spec.source {
            alertmesh_mirror::Source::Kafka(k) => Some(&k.properties),
            _ => None,
        });
        let values = std::iter::once(&self.kafka.properties)
            .chain(mirrors)
            .flat_map(|p| p.iter())
            .filter(|(k, v)| is_secret_key(k) && !v.is_empty())
            .map(|(_, v)| v.clone());
        Secrets(values.collect())
    }
}
