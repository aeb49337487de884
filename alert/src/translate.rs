//! Translation between namespaces, formats and schemas, as mirrors need it:
//! re-key an alert to its mesh key, project it into a target schema through a named
//! [`Mapping`], and encode it in the target format.

mod resolve;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::{encode, Alert, Target};
use crate::path::SchemaNames;
use crate::schema::{combine_split_schemas, WriterSchema};
use crate::{Error, Format, MeshKey, Registry, Result};

/// The mesh key of an alert: its family (by schema name, else by fields) and the family's
/// extraction rules.
pub fn mesh_key(alert: &Alert, registry: &Registry) -> Result<MeshKey> {
    let family = match alert.schema() {
        Some(s) => registry.family_for_schema(s.schema()),
        None => registry.family_for_value(alert.value()),
    }
    .ok_or_else(|| Error::Translate {
        reason: "the alert belongs to no registered family; add one to the namespace registry"
            .into(),
    })?;
    registry.extract_key(family, alert.value())
}

/// A named projection into a target (reader) schema, by Avro schema resolution: fields are
/// matched by name or by the reader field's `aliases` (which is how fields are renamed),
/// missing ones take the reader's `default`, numbers are promoted (int → long → float →
/// double), string and bytes interchange, and writer fields the reader lacks are dropped.
#[derive(Debug, Clone)]
pub struct Mapping {
    name: String,
    target: Arc<WriterSchema>,
}

impl Mapping {
    /// A mapping called `name` into the schema given as JSON text.
    pub fn new(name: &str, target_schema_json: &str) -> Result<Self> {
        Ok(Mapping {
            name: name.to_owned(),
            target: Arc::new(WriterSchema::parse(target_schema_json)?),
        })
    }

    /// A mapping into a schema split over several files (see [`combine_split_schemas`]).
    pub fn from_split<S: AsRef<str>>(name: &str, files: &[S], root: &str) -> Result<Self> {
        Ok(Mapping {
            name: name.to_owned(),
            target: Arc::new(WriterSchema::new(combine_split_schemas(files, root)?)?),
        })
    }

    /// The mapping's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The target schema.
    pub fn target(&self) -> &Arc<WriterSchema> {
        &self.target
    }

    /// Projects an alert into the target schema. JSON alerts (no schema) are resolved from
    /// their untyped values, so integers must fit and floats are promoted.
    pub fn apply(&self, alert: &Alert) -> Result<Alert> {
        let schema = self.target.schema();
        let names = SchemaNames::new(schema);
        let value = resolve::resolve(alert.value(), schema, &names, "", 0).map_err(|e| {
            Error::Translate {
                reason: format!("mapping {}: {e}", self.name),
            }
        })?;
        Ok(Alert::new(value, Some(self.target.clone())))
    }
}

/// Named mappings, as a gateway config lists them.
#[derive(Debug, Clone, Default)]
pub struct Mappings {
    by_name: BTreeMap<String, Mapping>,
}

impl Mappings {
    /// Adds (or replaces) a mapping.
    pub fn insert(&mut self, mapping: Mapping) {
        self.by_name.insert(mapping.name.clone(), mapping);
    }

    /// The mapping called `name`.
    pub fn get(&self, name: &str) -> Result<&Mapping> {
        self.by_name.get(name).ok_or_else(|| Error::Translate {
            reason: format!(
                "unknown mapping {name:?}; known: {}",
                self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// A translated record, ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The Kafka key.
    pub key: MeshKey,
    /// The payload.
    pub payload: Vec<u8>,
    /// The `am-format` header value (`None` for bare Avro).
    pub format: Option<Format>,
    /// The `am-schema` header value: fingerprint as 16 hex digits, or the Confluent id.
    pub schema: Option<String>,
}

/// Re-keys, optionally projects through `mapping`, and encodes for `target`.
pub fn translate(
    alert: &Alert,
    registry: &Registry,
    mapping: Option<&Mapping>,
    target: Target,
) -> Result<Translated> {
    let key = mesh_key(alert, registry)?;
    let projected;
    let out = match mapping {
        Some(m) => {
            projected = m.apply(alert)?;
            &projected
        }
        None => alert,
    };
    let schema = match target {
        Target::Confluent(id) => Some(id.to_string()),
        Target::Json(_) => None,
        _ => out.schema().map(|s| format!("{:016x}", s.fingerprint())),
    };
    Ok(Translated {
        key,
        payload: encode(out, target)?,
        format: target.format(),
        schema,
    })
}

#[cfg(test)]
mod tests;
