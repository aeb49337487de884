//! Payload codecs: Avro OCF (ZTF), Confluent wire (LSST), bare Avro (LS4) and JSON.
//!
//! [`Decoder`] turns a payload into [`Alert`]s, caching prepared writer schemas (by
//! embedded schema text for OCF, by schema id for Confluent). [`encode`] writes an alert in
//! any [`Target`] format.

pub mod confluent;
mod ocf;
pub mod schema_dir;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::types::Value;
use apache_avro::Codec;

pub use self::confluent::SchemaResolver;
pub use self::schema_dir::SchemaDir;
use crate::json::{self, JsonOptions};
use crate::projection::Projection;
use crate::schema::{SchemaCache, WriterSchema};
use crate::{Error, Format, Result};

/// One decoded alert: its value and, for Avro payloads, the writer schema.
#[derive(Debug, Clone)]
pub struct Alert {
    value: Value,
    schema: Option<Arc<WriterSchema>>,
}

impl Alert {
    /// An alert from a value and (optionally) the schema it conforms to.
    pub fn new(value: Value, schema: Option<Arc<WriterSchema>>) -> Self {
        Alert { value, schema }
    }

    /// The decoded value (a record for every known alert family).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The writer schema; `None` for JSON payloads.
    pub fn schema(&self) -> Option<&Arc<WriterSchema>> {
        self.schema.as_ref()
    }

    /// Takes the value out.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The alert as JSON (see [`crate::json`] for the exact mapping).
    pub fn to_json(&self, options: JsonOptions) -> Vec<u8> {
        json::to_json(&self.value, options)
    }
}

/// Decodes payloads of every [`Format`], caching schemas. Cheap to share (`Arc`) across
/// threads; all methods take `&self`.
#[derive(Debug, Default)]
pub struct Decoder {
    ocf_schemas: SchemaCache,
    resolver: Option<Arc<dyn SchemaResolver>>,
    by_id: RwLock<HashMap<u32, Arc<WriterSchema>>>,
}

impl Decoder {
    /// A decoder for OCF and JSON payloads (Confluent payloads need a resolver).
    pub fn new() -> Self {
        Decoder::default()
    }

    /// A decoder that resolves Confluent schema ids with `resolver`.
    pub fn with_resolver(resolver: Arc<dyn SchemaResolver>) -> Self {
        Decoder {
            resolver: Some(resolver),
            ..Decoder::default()
        }
    }

    /// Decodes a payload holding exactly one alert.
    pub fn decode(&self, format: Format, payload: &[u8]) -> Result<Alert> {
        exactly_one(format, self.decode_with(format, payload, None, 2)?)
    }

    /// Decodes every alert of a payload (an OCF file may hold many records).
    pub fn decode_all(&self, format: Format, payload: &[u8]) -> Result<Vec<Alert>> {
        self.decode_with(format, payload, None, usize::MAX)
    }

    /// Decodes a payload holding exactly one alert, only the fields of `projection`
    /// (see [`crate::projection`]); JSON payloads are decoded in full.
    pub fn decode_projected(
        &self,
        format: Format,
        payload: &[u8],
        projection: &Projection,
    ) -> Result<Alert> {
        exactly_one(
            format,
            self.decode_with(format, payload, Some(projection), 2)?,
        )
    }

    /// Decodes every alert of a payload, only the fields of `projection`.
    pub fn decode_all_projected(
        &self,
        format: Format,
        payload: &[u8],
        projection: &Projection,
    ) -> Result<Vec<Alert>> {
        self.decode_with(format, payload, Some(projection), usize::MAX)
    }

    /// The alerts of a payload, at most `at_most` of them.
    fn decode_with(
        &self,
        format: Format,
        payload: &[u8],
        projection: Option<&Projection>,
        at_most: usize,
    ) -> Result<Vec<Alert>> {
        match format {
            Format::AvroOcf => {
                let (schema, values) =
                    ocf::decode(payload, &self.ocf_schemas, projection, at_most)?;
                Ok(values
                    .into_iter()
                    .map(|v| Alert::new(v, Some(schema.clone())))
                    .collect())
            }
            Format::AvroConfluent => {
                let (id, body) = confluent::split(payload)?;
                let schema = self.schema_for_id(id)?;
                Ok(vec![read_bare(&schema, body, projection)?])
            }
            Format::Json => {
                let json: serde_json::Value =
                    serde_json::from_slice(payload).map_err(|e| Error::Decode {
                        format: "json",
                        reason: e.to_string(),
                    })?;
                Ok(vec![Alert::new(json::from_json_untyped(&json), None)])
            }
        }
    }

    /// The prepared schema for a Confluent id, asking the resolver once per id.
    pub fn schema_for_id(&self, id: u32) -> Result<Arc<WriterSchema>> {
        if let Some(hit) = self.by_id.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(hit);
        }
        let resolver = self.resolver.as_ref().ok_or(Error::UnknownSchemaId(id))?;
        let schema = Arc::new(WriterSchema::new((*resolver.resolve(id)?).clone())?);
        if let Ok(mut map) = self.by_id.write() {
            map.insert(id, schema.clone());
        }
        Ok(schema)
    }
}

fn exactly_one(format: Format, mut alerts: Vec<Alert>) -> Result<Alert> {
    match (alerts.pop(), alerts.is_empty()) {
        (Some(alert), true) => Ok(alert),
        (None, _) => Err(Error::Decode {
            format: format.as_str(),
            reason: "no record in payload; expected exactly one".into(),
        }),
        (Some(_), false) => Err(Error::Decode {
            format: format.as_str(),
            reason: "more than one record in payload; expected exactly one".into(),
        }),
    }
}

/// Decodes one bare Avro datum (LS4 style: no header at all) written with `schema`.
pub fn decode_bare(schema: &Arc<WriterSchema>, body: &[u8]) -> Result<Alert> {
    read_bare(schema, body, None)
}

/// Decodes only the fields of `projection` from one bare Avro datum written with `schema`.
pub fn decode_bare_projected(
    schema: &Arc<WriterSchema>,
    body: &[u8],
    projection: &Projection,
) -> Result<Alert> {
    read_bare(schema, body, Some(projection))
}

fn read_bare(
    schema: &Arc<WriterSchema>,
    body: &[u8],
    projection: Option<&Projection>,
) -> Result<Alert> {
    let mut rest = body;
    let read = match projection {
        Some(p) => schema.plan(p)?.read(&mut rest).map_err(String::from),
        None => schema.decode_datum(&mut rest),
    };
    let value = read.map_err(|reason| Error::Decode {
        format: "avro",
        reason,
    })?;
    if !rest.is_empty() {
        return Err(Error::Decode {
            format: "avro",
            reason: format!("{} bytes left after the record", rest.len()),
        });
    }
    Ok(Alert::new(value, Some(schema.clone())))
}

/// An output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An Avro container file with the schema embedded and the given codec.
    Ocf(Codec),
    /// Confluent wire format with this schema id.
    Confluent(u32),
    /// A bare Avro datum.
    Bare,
    /// JSON.
    Json(JsonOptions),
}

impl Target {
    /// The `am-format` of the output, where there is one (bare Avro has none).
    pub fn format(self) -> Option<Format> {
        match self {
            Target::Ocf(_) => Some(Format::AvroOcf),
            Target::Confluent(_) => Some(Format::AvroConfluent),
            Target::Json(_) => Some(Format::Json),
            Target::Bare => None,
        }
    }
}

/// Encodes an alert. Avro targets need the alert's schema (JSON alerts have none: convert
/// them with [`crate::json::from_json`] first).
pub fn encode(alert: &Alert, target: Target) -> Result<Vec<u8>> {
    if let Target::Json(options) = target {
        return Ok(alert.to_json(options));
    }
    let schema = alert.schema().ok_or_else(|| Error::Encode {
        reason: "a JSON alert has no Avro schema; convert it with json::from_json first".into(),
    })?;
    let datum = || {
        apache_avro::to_avro_datum(schema.schema(), alert.value().clone()).map_err(|e| {
            Error::Encode {
                reason: e.to_string(),
            }
        })
    };
    match target {
        Target::Ocf(codec) => ocf::encode(schema, &[alert.value()], codec),
        Target::Confluent(id) => Ok(confluent::frame(id, &datum()?)),
        Target::Bare | Target::Json(_) => datum(),
    }
}

#[cfg(test)]
mod tests;
