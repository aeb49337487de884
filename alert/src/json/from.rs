//! JSON → Avro values: with a schema (the inverse of [`super::to_json`]), or untyped.

use std::collections::HashMap;

use apache_avro::schema::Schema;
use apache_avro::types::Value;
use base64::Engine;
use serde_json::Value as Json;

use crate::path::SchemaNames;
use crate::{Error, Result};

fn mismatch(path: &str, expected: &str) -> Error {
    Error::Decode {
        format: "json",
        reason: format!(
            "at {}: expected {expected}",
            if path.is_empty() { "top level" } else { path }
        ),
    }
}

/// Converts JSON written by [`super::to_json`] (or any plain JSON alert of that shape)
/// into an Avro value of `schema`. Integers must fit their Avro type exactly; the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"` are accepted for floats; bytes are base64.
/// Missing record fields take their schema default.
pub fn from_json(json: &Json, schema: &Schema) -> Result<Value> {
    let names = SchemaNames::new(schema);
    convert(json, schema, &names, &mut String::new(), 0)
}

fn convert<'s>(
    json: &Json,
    schema: &'s Schema,
    names: &SchemaNames<'s>,
    path: &mut String,
    depth: usize,
) -> Result<Value> {
    if depth > 128 {
        return Err(mismatch(path, "nesting of at most 128 levels"));
    }
    let int = |json: &Json| json.as_i64().ok_or_else(|| mismatch(path, "an integer"));
    Ok(match names.deref(schema) {
        Schema::Null if json.is_null() => Value::Null,
        Schema::Null => return Err(mismatch(path, "null")),
        Schema::Boolean => {
            Value::Boolean(json.as_bool().ok_or_else(|| mismatch(path, "a boolean"))?)
        }
        Schema::Int => {
            Value::Int(i32::try_from(int(json)?).map_err(|_| mismatch(path, "a 32-bit integer"))?)
        }
        Schema::Date => {
            Value::Date(i32::try_from(int(json)?).map_err(|_| mismatch(path, "a 32-bit integer"))?)
        }
        Schema::TimeMillis => Value::TimeMillis(
            i32::try_from(int(json)?).map_err(|_| mismatch(path, "a 32-bit integer"))?,
        ),
        Schema::Long => Value::Long(int(json)?),
        Schema::TimeMicros => Value::TimeMicros(int(json)?),
        Schema::TimestampMillis => Value::TimestampMillis(int(json)?),
        Schema::TimestampMicros => Value::TimestampMicros(int(json)?),
        Schema::TimestampNanos => Value::TimestampNanos(int(json)?),
        Schema::LocalTimestampMillis => Value::LocalTimestampMillis(int(json)?),
        Schema::LocalTimestampMicros => Value::LocalTimestampMicros(int(json)?),
        Schema::LocalTimestampNanos => Value::LocalTimestampNanos(int(json)?),
        // Narrowing to f32 restores the exact f32 that was widened for writing.
        Schema::Float => {
            Value::Float(float(json).ok_or_else(|| mismatch(path, "a number"))? as f32)
        }
        Schema::Double => Value::Double(float(json).ok_or_else(|| mismatch(path, "a number"))?),
        Schema::String => Value::String(
            json.as_str()
                .ok_or_else(|| mismatch(path, "a string"))?
                .to_owned(),
        ),
        Schema::Uuid => {
            let s = json
                .as_str()
                .ok_or_else(|| mismatch(path, "a uuid string"))?;
            Value::Uuid(s.parse().map_err(|_| mismatch(path, "a uuid string"))?)
        }
        Schema::Bytes => Value::Bytes(base64(json).ok_or_else(|| mismatch(path, "base64 bytes"))?),
        Schema::Fixed(f) => {
            let b = base64(json)
                .filter(|b| b.len() == f.size)
                .ok_or_else(|| mismatch(path, "base64 of the fixed size"))?;
            Value::Fixed(f.size, b)
        }
        Schema::Enum(e) => {
            let s = json
                .as_str()
                .ok_or_else(|| mismatch(path, "an enum symbol"))?;
            let i = e
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| mismatch(path, "a known enum symbol"))?;
            Value::Enum(u32::try_from(i).unwrap_or(u32::MAX), s.to_owned())
        }
        Schema::Union(u) => {
            let variants = u.variants();
            if json.is_null() {
                if let Some(i) = variants.iter().position(|v| matches!(v, Schema::Null)) {
                    return Ok(Value::Union(i as u32, Box::new(Value::Null)));
                }
            }
            for (i, v) in variants.iter().enumerate() {
                if let Ok(value) = convert(json, v, names, path, depth + 1) {
                    return Ok(Value::Union(i as u32, Box::new(value)));
                }
            }
            return Err(mismatch(path, "a value of one of the union's types"));
        }
        Schema::Array(a) => {
            let items = json.as_array().ok_or_else(|| mismatch(path, "an array"))?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(convert(item, &a.items, names, path, depth + 1)?);
            }
            Value::Array(out)
        }
        Schema::Map(m) => {
            let obj = json
                .as_object()
                .ok_or_else(|| mismatch(path, "an object"))?;
            let mut out = HashMap::with_capacity(obj.len());
            for (k, v) in obj {
                out.insert(k.clone(), convert(v, &m.types, names, path, depth + 1)?);
            }
            Value::Map(out)
        }
        Schema::Record(r) => {
            let obj = json
                .as_object()
                .ok_or_else(|| mismatch(path, "an object"))?;
            let mut out = Vec::with_capacity(r.fields.len());
            for field in &r.fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&field.name);
                let v = match (obj.get(&field.name), &field.default) {
                    (Some(v), _) => convert(v, &field.schema, names, path, depth + 1)?,
                    (None, Some(d)) => default(d, &field.schema, names, path, depth)?,
                    (None, None) => {
                        return Err(mismatch(
                            path,
                            "a value (the field is missing and has no default)",
                        ))
                    }
                };
                path.truncate(len);
                out.push((field.name.clone(), v));
            }
            Value::Record(out)
        }
        _ => {
            return Err(mismatch(
                path,
                "a type this converter supports (not decimal or duration)",
            ))
        }
    })
}

/// Defaults of union fields are values of the union's first branch (Avro spec).
fn default<'s>(
    json: &Json,
    schema: &'s Schema,
    names: &SchemaNames<'s>,
    path: &mut String,
    depth: usize,
) -> Result<Value> {
    match names.deref(schema) {
        Schema::Union(u) => match u.variants().first() {
            Some(first) => Ok(Value::Union(
                0,
                Box::new(convert(json, first, names, path, depth + 1)?),
            )),
            None => Err(mismatch(path, "a non-empty union")),
        },
        other => convert(json, other, names, path, depth + 1),
    }
}

fn float(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn base64(json: &Json) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(json.as_str()?)
        .ok()
}

/// Converts JSON without a schema: objects become records (keys in sorted order), integers
/// that fit `i64` become longs (exactly), other numbers doubles. Strings stay strings.
pub fn from_json_untyped(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Long(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(from_json_untyped).collect()),
        Json::Object(obj) => Value::Record(
            obj.iter()
                .map(|(k, v)| (k.clone(), from_json_untyped(v)))
                .collect(),
        ),
    }
}
