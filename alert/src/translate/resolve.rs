//! Avro schema resolution of a decoded value into a reader schema: field names and
//! aliases, defaults for missing fields, numeric and string/bytes promotions, union
//! branch choice, enum symbols. Writer fields the reader lacks are dropped.

use std::collections::HashMap;

use apache_avro::schema::Schema;
use apache_avro::types::Value;

use crate::json::from_json;
use crate::path::{unwrap_union, SchemaNames};
use crate::{Error, Result};

fn fail(at: &str, reason: impl std::fmt::Display) -> Error {
    Error::Translate {
        reason: format!(
            "at {}: {reason}",
            if at.is_empty() { "top level" } else { at }
        ),
    }
}

/// Resolves `value` into `reader`.
pub(crate) fn resolve(
    value: &Value,
    reader: &Schema,
    names: &SchemaNames<'_>,
    at: &str,
    depth: usize,
) -> Result<Value> {
    if depth > 128 {
        return Err(fail(at, "nesting deeper than 128 levels"));
    }
    let value = unwrap_union(value);
    let reader = names.deref(reader);
    Ok(match (reader, value) {
        (Schema::Union(u), _) => {
            if matches!(value, Value::Null) {
                if let Some(i) = u.variants().iter().position(|v| matches!(v, Schema::Null)) {
                    return Ok(Value::Union(i as u32, Box::new(Value::Null)));
                }
            }
            for (i, branch) in u.variants().iter().enumerate() {
                if let Ok(v) = resolve(value, branch, names, at, depth + 1) {
                    return Ok(Value::Union(i as u32, Box::new(v)));
                }
            }
            return Err(fail(at, "no branch of the reader union accepts the value"));
        }
        (Schema::Null, Value::Null) => Value::Null,
        (Schema::Boolean, Value::Boolean(b)) => Value::Boolean(*b),
        (Schema::Int, Value::Int(n)) => Value::Int(*n),
        (Schema::Long, Value::Int(n)) => Value::Long(i64::from(*n)),
        (Schema::Long, Value::Long(n)) => Value::Long(*n),
        (Schema::Float, Value::Int(n)) => Value::Float(*n as f32),
        (Schema::Float, Value::Long(n)) => Value::Float(*n as f32),
        (Schema::Float, Value::Float(x)) => Value::Float(*x),
        (Schema::Double, Value::Int(n)) => Value::Double(f64::from(*n)),
        (Schema::Double, Value::Long(n)) => Value::Double(*n as f64),
        (Schema::Double, Value::Float(x)) => Value::Double(f64::from(*x)),
        (Schema::Double, Value::Double(x)) => Value::Double(*x),
        (Schema::String, Value::String(s)) => Value::String(s.clone()),
        (Schema::String, Value::Bytes(b)) => Value::String(
            String::from_utf8(b.clone()).map_err(|_| fail(at, "bytes are not utf-8"))?,
        ),
        (Schema::Bytes, Value::Bytes(b)) => Value::Bytes(b.clone()),
        (Schema::Bytes, Value::String(s)) => Value::Bytes(s.clone().into_bytes()),
        (Schema::Fixed(f), Value::Fixed(n, b)) if f.size == *n => Value::Fixed(*n, b.clone()),
        (Schema::Enum(e), Value::Enum(_, s)) => match e.symbols.iter().position(|x| x == s) {
            Some(i) => Value::Enum(i as u32, s.clone()),
            None => match &e.default {
                Some(d) => Value::Enum(
                    e.symbols.iter().position(|x| x == d).unwrap_or(0) as u32,
                    d.clone(),
                ),
                None => {
                    return Err(fail(
                        at,
                        format!("enum symbol {s:?} is unknown to the reader"),
                    ))
                }
            },
        },
        (Schema::Array(a), Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|v| resolve(v, &a.items, names, at, depth + 1))
                .collect::<Result<_>>()?,
        ),
        (Schema::Map(m), Value::Map(entries)) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, &m.types, names, at, depth + 1)?)))
                .collect::<Result<HashMap<_, _>>>()?,
        ),
        (Schema::Record(r), Value::Record(fields)) => {
            let mut out = Vec::with_capacity(r.fields.len());
            for field in &r.fields {
                let path = if at.is_empty() {
                    field.name.clone()
                } else {
                    format!("{at}.{}", field.name)
                };
                let found = fields.iter().find(|(n, _)| {
                    n == &field.name
                        || field
                            .aliases
                            .as_ref()
                            .is_some_and(|a| a.iter().any(|x| x == n))
                });
                let v = match (found, &field.default) {
                    (Some((_, v)), _) => resolve(v, &field.schema, names, &path, depth + 1)?,
                    (None, Some(d)) => from_json(d, names.deref(&field.schema)).map_err(|e| fail(&path, format!("bad default: {e}")))?,
                    (None, None) => return Err(fail(&path, "the writer has no such field (nor an alias) and the reader gives no default")),
                };
                out.push((field.name.clone(), v));
            }
            Value::Record(out)
        }
        (_, v) if is_logical(reader) => v.clone().resolve(reader).map_err(|e| fail(at, e))?,
        _ => {
            return Err(fail(
                at,
                "the value's type cannot be promoted to the reader's type",
            ))
        }
    })
}

fn is_logical(s: &Schema) -> bool {
    matches!(
        s,
        Schema::Uuid
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Decimal(_)
            | Schema::BigDecimal
            | Schema::Duration
    )
}
