//! The namespace registry: which objectId spaces exist, what their ids look like, and how
//! to find an alert's id in each family of alert payloads.
//!
//! The built-in registry is `alert/namespaces.toml` (`ZTF`, `LSST:dia`, `LSST:ss`, `LS4`);
//! a gateway config adds a broker's own namespaces and families with [`Registry::with_extra`].

mod id_pattern;

use apache_avro::schema::Schema;
use apache_avro::types::Value;
use serde::Deserialize;

pub use self::id_pattern::IdPattern;
use crate::path::{unwrap_union, FieldPath};
use crate::{Error, MeshKey, Result};

const BUILTIN: &str = include_str!("../namespaces.toml");

/// The type of the ids of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// Any non-empty string without control characters, optionally matching a pattern.
    String,
    /// A decimal signed 64-bit integer other than 0 (0 means "no id" in LSST alerts).
    Int64,
    /// A canonical hyphenated UUID (`8-4-4-4-12` hex digits).
    Uuid,
}

/// One registered objectId space.
#[derive(Debug, Clone)]
pub struct Namespace {
    name: String,
    description: String,
    id_type: IdType,
    id_pattern: Option<IdPattern>,
}

impl Namespace {
    /// The name, e.g. `LSST:dia`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A human description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The type of the ids.
    pub fn id_type(&self) -> IdType {
        self.id_type
    }

    /// The pattern string ids must match, if any.
    pub fn id_pattern(&self) -> Option<&IdPattern> {
        self.id_pattern.as_ref()
    }

    /// Checks that `id` is a valid id of this namespace.
    pub fn validate_id(&self, id: &str) -> Result<()> {
        let expected = match self.id_type {
            IdType::Int64
                if !matches!(id.parse::<i64>(), Ok(n) if n != 0) || id.starts_with('+') =>
            {
                "a non-zero decimal int64".to_owned()
            }
            IdType::Uuid if !is_uuid(id) => "a hyphenated uuid (8-4-4-4-12 hex digits)".to_owned(),
            IdType::String if id.is_empty() || id.chars().any(char::is_control) => {
                "a non-empty string without control characters".to_owned()
            }
            IdType::String if self.id_pattern.as_ref().is_some_and(|p| !p.matches(id)) => {
                format!(
                    "an id matching {}",
                    self.id_pattern.as_ref().map_or("", |p| p.as_str())
                )
            }
            _ => return Ok(()),
        };
        Err(Error::InvalidId {
            namespace: self.name.clone(),
            id: id.chars().take(100).collect(),
            expected,
        })
    }
}

/// A kind of alert payload (ZTF, LSST, LS4, ...) and where its ids and position live.
#[derive(Debug, Clone)]
pub struct Family {
    name: String,
    description: String,
    schemas: Vec<String>,
    fields: Vec<String>,
    ra: Option<FieldPath>,
    dec: Option<FieldPath>,
    keys: Vec<(String, FieldPath)>,
}

impl Family {
    /// The family name, e.g. `lsst`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A human description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Paths to right ascension and declination (degrees), if the family has a position.
    pub fn position_paths(&self) -> Option<(&FieldPath, &FieldPath)> {
        self.ra.as_ref().zip(self.dec.as_ref())
    }

    /// The `(namespace, path)` extraction rules, in the order they are tried.
    pub fn key_rules(&self) -> &[(String, FieldPath)] {
        &self.keys
    }

    fn matches_name(&self, full_name: &str) -> bool {
        self.schemas.iter().any(|g| glob_match(g, full_name))
    }

    fn matches_fields(&self, has: impl Fn(&str) -> bool) -> bool {
        !self.fields.is_empty() && self.fields.iter().all(|f| has(f))
    }

    /// The sky position `(ra, dec)` in degrees, when both are present numbers.
    pub fn position(&self, alert: &Value) -> Option<(f64, f64)> {
        let (ra, dec) = self.position_paths()?;
        Some((as_f64(ra.lookup(alert)?)?, as_f64(dec.lookup(alert)?)?))
    }
}

/// The set of known namespaces and alert families.
#[derive(Debug, Clone)]
pub struct Registry {
    namespaces: Vec<Namespace>,
    families: Vec<Family>,
}

mod file;

impl Registry {
    /// The registry of `alert/namespaces.toml`: `ZTF`, `LSST:dia`, `LSST:ss`, `LS4`.
    pub fn builtin() -> Registry {
        // The embedded file is checked by the tests; failing here is a build defect.
        Registry::empty()
            .extended(BUILTIN)
            .unwrap_or_else(|e| panic!("the built-in namespaces.toml is invalid: {e}"))
    }

    /// The built-in registry plus the namespaces and families of `toml`
    /// (same layout as `namespaces.toml`).
    pub fn with_extra(toml: &str) -> Result<Registry> {
        Registry::builtin().extended(toml)
    }

    /// A registry with nothing in it.
    pub fn empty() -> Registry {
        Registry {
            namespaces: Vec::new(),
            families: Vec::new(),
        }
    }

    /// This registry plus the definitions of `toml`; reports every problem at once.
    pub fn extended(&self, toml: &str) -> Result<Registry> {
        file::extend(self.clone(), toml)
    }

    /// Every namespace, in registration order.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// Every family, in registration order.
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The namespace called `name`.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.name == name)
    }

    /// The family called `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Parses `<namespace>:<id>` (longest registered namespace wins) and validates the id.
    pub fn parse_key(&self, input: &str) -> Result<MeshKey> {
        let key = MeshKey::parse(input, self.namespaces.iter().map(|n| n.name.as_str()))?;
        self.validate_key(&key)?;
        Ok(key)
    }

    /// Builds a key in a registered namespace, validating the id.
    pub fn key(&self, namespace: &str, id: &str) -> Result<MeshKey> {
        let key = MeshKey::new(namespace, id)?;
        self.validate_key(&key)?;
        Ok(key)
    }

    /// Checks that the key's namespace is registered and its id valid there.
    pub fn validate_key(&self, key: &MeshKey) -> Result<()> {
        self.namespace(key.namespace())
            .ok_or_else(|| Error::UnknownNamespace(key.namespace().to_owned()))?
            .validate_id(key.id())
    }

    /// The family of alerts written with `schema`: by the record's full name, then by fields.
    pub fn family_for_schema(&self, schema: &Schema) -> Option<&Family> {
        let Schema::Record(record) = schema else {
            return None;
        };
        let full = record.name.fullname(None);
        self.families
            .iter()
            .find(|f| f.matches_name(&full))
            .or_else(|| {
                self.families
                    .iter()
                    .find(|f| f.matches_fields(|n| record.fields.iter().any(|rf| rf.name == n)))
            })
    }

    /// The family of a schema-less alert (e.g. JSON), by its top-level fields.
    pub fn family_for_value(&self, alert: &Value) -> Option<&Family> {
        let has = |name: &str| match unwrap_union(alert) {
            Value::Record(fields) => fields.iter().any(|(n, _)| n == name),
            Value::Map(entries) => entries.contains_key(name),
            _ => false,
        };
        self.families.iter().find(|f| f.matches_fields(has))
    }

    /// The mesh key of an alert of `family`: the first rule whose path holds a present id.
    ///
    /// Null, `0` and `""` are absent. An id of the wrong type or shape is an error.
    pub fn extract_key(&self, family: &Family, alert: &Value) -> Result<MeshKey> {
        for (ns, path) in &family.keys {
            let id = match path.lookup(alert) {
                None | Some(Value::Null) => continue,
                Some(Value::Long(0) | Value::Int(0)) => continue,
                Some(Value::Long(n)) => n.to_string(),
                Some(Value::Int(n)) => n.to_string(),
                Some(Value::String(s) | Value::Enum(_, s)) if s.is_empty() => continue,
                Some(Value::String(s) | Value::Enum(_, s)) => s.clone(),
                Some(Value::Uuid(u)) => u.to_string(),
                Some(_) => {
                    return Err(Error::InvalidId {
                        namespace: ns.clone(),
                        id: format!("<value at {path}>"),
                        expected: "a long, int, string or uuid field".into(),
                    })
                }
            };
            return self.key(ns, &id);
        }
        Err(Error::NoKey {
            family: family.name.clone(),
            tried: family
                .keys
                .iter()
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

pub(crate) fn as_f64(value: &Value) -> Option<f64> {
    match unwrap_union(value) {
        Value::Double(x) => Some(*x),
        Value::Float(x) => Some(f64::from(*x)),
        Value::Int(x) => Some(f64::from(*x)),
        // Positions are never beyond 2^53; this is not an id path.
        Value::Long(x) => Some(*x as f64),
        _ => None,
    }
}

fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `*` matches any run of characters; everything else is literal.
fn glob_match(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests;
