//! JSON output and input for alerts.
//!
//! # Mapping from Avro
//!
//! - `long` (and every 64-bit logical type) is written as a JSON integer with its exact
//!   decimal digits; it never passes through `f64`. Readers that parse JSON numbers as
//!   doubles (JavaScript) should read ids as text (e.g. a big-int aware parser).
//! - `float`/`double` are written in their shortest round-trip form. Non-finite values,
//!   which JSON cannot express, become the **strings** `"NaN"`, `"Infinity"` and
//!   `"-Infinity"`; [`from_json`] turns those strings back into the floats. With
//!   [`NonFinite::Bare`] they are the bare tokens `NaN`, `Infinity` and `-Infinity` instead:
//!   not JSON, but what Python's `json` (and JSON5) read as floats, so a Python reader needs
//!   no pass over the text to find them.
//! - `bytes` and `fixed` are base64 (standard alphabet, padded). With
//!   [`BytesMode::OmitCutouts`], fields named `cutout*` or `stampData` are written as
//!   `null`; with [`BytesMode::OmitAll`] so is every bytes or fixed value.
//! - Unions are written as their branch's value (no `{"type": value}` wrapper, unlike the
//!   Avro JSON encoding), as alert brokers publish them; enums as their symbol; uuids as
//!   strings; records as objects in schema order; maps as objects with sorted keys.
//!
//! [`from_json`] reverses this mapping given the schema, so Avro → JSON → Avro is lossless
//! (except bytes omitted on purpose).

mod from;

use std::io::Write;

use apache_avro::types::Value;
use base64::Engine;

pub use self::from::{from_json, from_json_untyped};

/// How bytes values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BytesMode {
    /// Every bytes value as base64.
    #[default]
    Base64,
    /// Fields named `cutout*` or `stampData` as `null`, other bytes as base64.
    OmitCutouts,
    /// Every bytes or fixed value as `null`.
    OmitAll,
}

/// How non-finite floats are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonFinite {
    /// As the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (the output stays JSON).
    #[default]
    Strings,
    /// As the bare tokens `NaN`, `Infinity`, `-Infinity` (Python's `json` reads them).
    Bare,
}

/// Options for [`to_json`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// How bytes values are written.
    pub bytes: BytesMode,
    /// How non-finite floats are written.
    pub nonfinite: NonFinite,
}

/// Whether a field of this name holds an image cutout.
pub fn is_cutout_field(name: &str) -> bool {
    name.starts_with("cutout") || name == "stampData"
}

/// Writes `value` as compact JSON (see the [module docs](self) for the mapping).
pub fn to_json(value: &Value, options: JsonOptions) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write_value(value, options, &mut out);
    out
}

fn write_value(value: &Value, opts: JsonOptions, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail; results of write! are ignored for that reason.
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Long(n)
        | Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(x) => write_float(
            f64::from(*x),
            x.is_finite().then(|| serde_json::to_writer(&mut *out, x)),
            opts.nonfinite,
            out,
        ),
        Value::Double(x) => write_float(
            *x,
            x.is_finite().then(|| serde_json::to_writer(&mut *out, x)),
            opts.nonfinite,
            out,
        ),
        Value::Bytes(b) | Value::Fixed(_, b) => {
            write_bytes(b, opts.bytes == BytesMode::OmitAll, out)
        }
        Value::Decimal(d) => {
            let bytes: Vec<u8> = Vec::try_from(d).unwrap_or_default();
            write_bytes(&bytes, opts.bytes == BytesMode::OmitAll, out);
        }
        Value::String(s) | Value::Enum(_, s) => write_str(s, out),
        Value::BigDecimal(d) => write_str(&d.to_string(), out),
        Value::Uuid(u) => write_str(&u.to_string(), out),
        Value::Duration(d) => {
            let (m, dd, ms) = (
                u32::from(d.months()),
                u32::from(d.days()),
                u32::from(d.millis()),
            );
            let _ = write!(out, r#"{{"months":{m},"days":{dd},"millis":{ms}}}"#);
        }
        Value::Union(_, inner) => write_value(inner, opts, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, opts, out);
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                if let Some(v) = entries.get(key) {
                    write_value(v, opts, out);
                }
            }
            out.push(b'}');
        }
        Value::Record(fields) => {
            out.push(b'{');
            for (i, (name, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(name, out);
                out.push(b':');
                if opts.bytes == BytesMode::OmitCutouts && is_cutout_field(name) {
                    out.extend_from_slice(b"null");
                } else {
                    write_value(v, opts, out);
                }
            }
            out.push(b'}');
        }
    }
}

fn write_float(
    x: f64,
    written: Option<serde_json::Result<()>>,
    nonfinite: NonFinite,
    out: &mut Vec<u8>,
) {
    if written.is_none() {
        let token: &[u8] = if x.is_nan() {
            b"NaN"
        } else if x > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        };
        match nonfinite {
            NonFinite::Strings => {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
            }
            NonFinite::Bare => out.extend_from_slice(token),
        }
    }
}

fn write_bytes(bytes: &[u8], omit: bool, out: &mut Vec<u8>) {
    if omit {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        let start = out.len();
        out.resize(
            start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
            0,
        );
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(bytes, &mut out[start..])
            .unwrap_or(0);
        out.truncate(start + n);
        out.push(b'"');
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests;
