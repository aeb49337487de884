//! A row as an alert: its declared columns as one JSON object (64-bit integers exact,
//! NaN and infinities as strings, as JSON output of topics), and its ref.

use alertmesh_proto::tags::alert::{
    FORMAT, JSON, JSON_BARE_NONFINITE, KEY, MESH_KEY, NAMESPACE, OFFSET, PAYLOAD, REF, TOPIC,
};
use alertmesh_proto::tags::batch::ALERTS;
use alertmesh_proto::v1;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use prost::encoding::{self, WireType};
#[cfg(test)]
use serde_json::Value;
use tokio_postgres::Row;

use super::sql::{Kind, Shape};
use super::token::MAX_TEXT_ORDER;
use super::OrderValue;
use crate::error::{Error, Result};
use crate::record::push_decimal;

/// The parts of a row an alert is made of.
#[derive(Debug)]
pub(crate) struct RowAlert {
    pub(crate) order: OrderValue,
    pub(crate) key: String,
    pub(crate) json: Vec<u8>,
}

/// A float as a JSON value: what [`put_float`] writes.
#[cfg(test)]
fn float(f: f64) -> Value {
    if f.is_nan() {
        Value::from("NaN")
    } else if f.is_infinite() {
        Value::from(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// Appends `f` as [`float`]'s value serializes, without building the value. A `real`
/// (`f32`) is written in its own shortest form, as psql prints it and as the gateway writes
/// an Avro `float` (`0.1`, not the `0.10000000149011612` of the double nearest it).
/// With `bare`, a non-finite value is the bare token (`NaN`, not `"NaN"`), as asked for
/// with `QueryRequest.json_bare_nonfinite`.
fn put_float<F: serde::Serialize + Into<f64> + Copy>(out: &mut Vec<u8>, f: Option<F>, bare: bool) {
    let token: &[u8] = match f.map(|v| (v, v.into())) {
        // A finite number: serde_json writes it as its `Number` would be.
        Some((v, x)) if x.is_finite() => return put(out, Some(v)),
        Some((_, x)) if x.is_nan() => b"NaN",
        Some((_, x)) if x > 0.0 => b"Infinity",
        Some(_) => b"-Infinity",
        None => return out.extend_from_slice(b"null"),
    };
    if bare {
        out.extend_from_slice(token);
    } else {
        out.push(b'"');
        out.extend_from_slice(token);
        out.push(b'"');
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>> {
    row.try_get::<_, Option<T>>(i)
        .map_err(|e| Error::Internal(format!("cannot read column {i}: {e}")))
}

/// Appends `v` as JSON (`null` for `None`).
fn put<T: serde::Serialize>(out: &mut Vec<u8>, v: Option<T>) {
    match v {
        // Writing a number or a string into a Vec cannot fail.
        Some(v) => serde_json::to_writer(&mut *out, &v).unwrap_or_default(),
        None => out.extend_from_slice(b"null"),
    }
}

/// Where a row's key is: the text of a text column (empty when null), or the JSON text of
/// any other column in the row's JSON (empty when null).
enum KeyAt<'a> {
    Text(&'a str),
    Json(std::ops::Range<usize>),
}

/// Writes `row` (selected with `shape`'s columns) as one JSON object into `json` (cleared
/// first), given the positions of the order and key columns; returns the row's order
/// value and where its key is. The JSON object is written straight from the row's fields
/// (no intermediate map: this is the per-row cost of every query stream), with the same
/// text as serializing a `serde_json::Value` would give.
fn write_json<'a>(
    row: &'a Row,
    shape: &Shape,
    (order, key): (usize, usize),
    bare_nonfinite: bool,
    json: &mut Vec<u8>,
) -> Result<(OrderValue, KeyAt<'a>)> {
    json.clear();
    let mut order_value = None;
    let mut key_at = KeyAt::Json(0..0);
    json.push(b'{');
    for (i, (name, kind)) in shape.columns.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            // A plain identifier (what the configuration accepts) needs no escaping.
            json.push(b'"');
            json.extend_from_slice(name.as_bytes());
            json.extend_from_slice(b"\":");
        } else {
            put(json, Some(name));
            json.push(b':');
        }
        let at = json.len();
        match kind {
            Kind::Bool => put(json, get::<bool>(row, i)?),
            Kind::Int2 => {
                let v = get::<i16>(row, i)?;
                if i == order {
                    order_value = v.map(|v| OrderValue::Int(v.into()));
                }
                put(json, v);
            }
            Kind::Int4 => {
                let v = get::<i32>(row, i)?;
                if i == order {
                    order_value = v.map(|v| OrderValue::Int(v.into()));
                }
                put(json, v);
            }
            Kind::Int8 => {
                let v = get::<i64>(row, i)?;
                if i == order {
                    order_value = v.map(OrderValue::Int);
                }
                put(json, v);
            }
            Kind::Float4 => put_float(json, get::<f32>(row, i)?, bare_nonfinite),
            Kind::Float8 => put_float(json, get::<f64>(row, i)?, bare_nonfinite),
            Kind::Text | Kind::AsText => {
                let v = get::<&str>(row, i)?;
                if i == key {
                    key_at = KeyAt::Text(v.unwrap_or_default());
                }
                if i == order {
                    order_value = v.map(|t| OrderValue::Text(t.to_owned()));
                }
                put(json, v);
            }
        }
        if i == key && !matches!(kind, Kind::Text | Kind::AsText) && &json[at..] != b"null" {
            // A non-text key: its JSON text (none for `null`).
            key_at = KeyAt::Json(at..json.len());
        }
    }
    json.push(b'}');
    let order = order_value.ok_or_else(|| {
        Error::Internal(
            "a row has a null order column; the order column must be unique and not null".into(),
        )
    })?;
    if matches!(&order, OrderValue::Text(t) if t.len() > MAX_TEXT_ORDER) {
        return Err(Error::Internal(format!(
            "a row's order value is longer than {MAX_TEXT_ORDER} bytes; choose a shorter \
             order column"
        )));
    }
    Ok((order, key_at))
}

/// Converts `row` (selected with `shape`'s columns) given the positions of the order and
/// key columns.
pub(crate) fn convert(row: &Row, shape: &Shape, order: usize, key: usize) -> Result<RowAlert> {
    let mut json = Vec::with_capacity(16 * shape.columns.len() + 16);
    // Fetch of a row ref has no output options: non-finite doubles as strings.
    let (order, key_at) = write_json(row, shape, (order, key), false, &mut json)?;
    let key = match key_at {
        KeyAt::Text(t) => t.to_owned(),
        KeyAt::Json(r) => String::from_utf8_lossy(&json[r]).into_owned(),
    };
    Ok(RowAlert { order, key, json })
}

/// Writes the rows of one query stream as the `QueryBatch.alerts` elements they are sent
/// as, byte for byte what prost writes for [`alert`]'s `Alert`, without building one:
/// an `Alert` is five strings and two buffers per row, allocated, encoded field by field
/// and freed, which cost about as much as reading the row. Buffers are reused from row to
/// row, so a row costs no allocation here.
#[derive(Debug)]
pub(crate) struct RowWriter {
    /// `am://<gateway>/query:<name>/`: every row ref starts with it.
    ref_prefix: String,
    /// `query:<name>`.
    topic: String,
    namespace: String,
    json_output: bool,
    /// Non-finite doubles as bare tokens (`QueryRequest.json_bare_nonfinite`).
    bare_nonfinite: bool,
    /// The row being written: its JSON, its ref.
    json: Vec<u8>,
    r#ref: Vec<u8>,
}

impl RowWriter {
    pub(crate) fn new(
        gateway: &str,
        query: &str,
        namespace: &str,
        (json_output, bare_nonfinite): (bool, bool),
    ) -> Self {
        RowWriter {
            ref_prefix: format!("am://{gateway}/query:{query}/"),
            topic: format!("query:{query}"),
            namespace: namespace.to_owned(),
            json_output,
            bare_nonfinite,
            json: Vec::new(),
            r#ref: Vec::new(),
        }
    }

    /// Writes `row` at the end of `buf`; returns its order value and the size of its JSON.
    pub(crate) fn write(
        &mut self,
        row: &Row,
        shape: &Shape,
        order: usize,
        key: usize,
        buf: &mut BytesMut,
    ) -> Result<(OrderValue, usize)> {
        let mut json = std::mem::take(&mut self.json);
        let written = write_json(row, shape, (order, key), self.bare_nonfinite, &mut json).map(
            |(order, key_at)| {
                let key = match key_at {
                    KeyAt::Text(t) => t.as_bytes(),
                    KeyAt::Json(r) => &json[r],
                };
                self.put_element(&order, key, &json, buf);
                (order, json.len())
            },
        );
        self.json = json;
        written
    }

    /// Writes the element of the row with order value `order`, key `key` (empty: none)
    /// and JSON `json`.
    fn put_element(&mut self, order: &OrderValue, key: &[u8], json: &[u8], buf: &mut BytesMut) {
        self.r#ref.clear();
        self.r#ref.extend_from_slice(self.ref_prefix.as_bytes());
        let offset = match order {
            OrderValue::Int(i) => {
                push_decimal(*i, &mut self.r#ref);
                *i
            }
            OrderValue::Text(t) => {
                self.r#ref.push(b'~');
                self.r#ref
                    .extend_from_slice(URL_SAFE_NO_PAD.encode(t.as_bytes()).as_bytes());
                0
            }
        };
        // `<namespace>:<key>`, as the key and the mesh key, when the row has a key.
        let mesh_key_len = if key.is_empty() {
            0
        } else {
            self.namespace.len() + 1 + key.len()
        };
        let str_len = |tag, len| if len == 0 { 0 } else { field_len(tag, len) };
        let (payload_len, json_len) = if self.json_output {
            (0, json.len())
        } else {
            (json.len(), 0)
        };
        let alert_len = field_len(REF, self.r#ref.len())
            + str_len(TOPIC, self.topic.len())
            + if offset != 0 {
                encoding::int64::encoded_len(OFFSET, &offset)
            } else {
                0
            }
            + if mesh_key_len != 0 {
                field_len(KEY, mesh_key_len)
            } else {
                0
            }
            + str_len(PAYLOAD, payload_len)
            + field_len(FORMAT, "json".len())
            + str_len(NAMESPACE, self.namespace.len())
            + str_len(JSON, json_len)
            + str_len(MESH_KEY, mesh_key_len)
            + if self.bare_nonfinite {
                encoding::bool::encoded_len(JSON_BARE_NONFINITE, &true)
            } else {
                0
            };
        buf.reserve(field_len(ALERTS, alert_len));
        // Fields in field order, defaults omitted, as prost writes them.
        put_header(ALERTS, alert_len, buf);
        put_header(REF, self.r#ref.len(), buf);
        buf.extend_from_slice(&self.r#ref);
        put_bytes(TOPIC, self.topic.as_bytes(), buf);
        if offset != 0 {
            encoding::int64::encode(OFFSET, &offset, buf);
        }
        let put_mesh_key = |tag, buf: &mut BytesMut| {
            if mesh_key_len != 0 {
                put_header(tag, mesh_key_len, buf);
                buf.extend_from_slice(self.namespace.as_bytes());
                buf.extend_from_slice(b":");
                buf.extend_from_slice(key);
            }
        };
        put_mesh_key(KEY, buf);
        if !self.json_output {
            put_bytes(PAYLOAD, json, buf);
        }
        put_bytes(FORMAT, b"json", buf);
        put_bytes(NAMESPACE, self.namespace.as_bytes(), buf);
        if self.json_output {
            put_bytes(JSON, json, buf);
        }
        put_mesh_key(MESH_KEY, buf);
        if self.bare_nonfinite {
            encoding::bool::encode(JSON_BARE_NONFINITE, &true, buf);
        }
    }
}

/// Bytes of a length-delimited field holding `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// The tag and length of a length-delimited field of `len` bytes.
fn put_header(tag: u32, len: usize, buf: &mut BytesMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(len as u64, buf);
}

/// A length-delimited field, omitted when empty as prost omits empty strings and bytes.
fn put_bytes(tag: u32, value: &[u8], buf: &mut BytesMut) {
    if !value.is_empty() {
        put_header(tag, value.len(), buf);
        buf.extend_from_slice(value);
    }
}

/// The order value of `row` alone (column `order` of `shape`), as [`convert`] reads it.
pub(crate) fn order_of(row: &Row, shape: &Shape, order: usize) -> Result<Option<OrderValue>> {
    order_value(row, shape.columns[order].1, order)
}

/// Column `i` of `row`, of kind `kind`, as an order value.
pub(crate) fn order_value(row: &Row, kind: Kind, i: usize) -> Result<Option<OrderValue>> {
    Ok(match kind {
        Kind::Int2 => get::<i16>(row, i)?.map(|v| OrderValue::Int(v.into())),
        Kind::Int4 => get::<i32>(row, i)?.map(|v| OrderValue::Int(v.into())),
        Kind::Int8 => get::<i64>(row, i)?.map(OrderValue::Int),
        Kind::Text | Kind::AsText => get::<&str>(row, i)?.map(|t| OrderValue::Text(t.into())),
        Kind::Bool | Kind::Float4 | Kind::Float8 => None,
    })
}

/// `am://<gateway>/query:<name>/<order value>`: an integer as it is, any other value as
/// `~` and its UTF-8 bytes in base64url (a timestamp or a text holds `/`, spaces, ...).
pub(crate) fn row_ref(gateway: &str, query: &str, order: &OrderValue) -> String {
    match order {
        OrderValue::Int(i) => format!("am://{gateway}/query:{query}/{i}"),
        OrderValue::Text(t) => format!(
            "am://{gateway}/query:{query}/~{}",
            URL_SAFE_NO_PAD.encode(t.as_bytes())
        ),
    }
}

/// The gateway, query and order value of a query row ref, or `None` when `text` is not one.
pub(crate) fn parse_ref(text: &str) -> Option<(&str, &str, OrderValue)> {
    let rest = text.strip_prefix("am://")?;
    let (gateway, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("query:")?;
    let (query, order) = rest.split_once('/')?;
    let order = match order.strip_prefix('~') {
        Some(b64) if b64.len() <= MAX_TEXT_ORDER * 4 / 3 + 4 => {
            let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
            OrderValue::Text(String::from_utf8(bytes).ok()?)
        }
        Some(_) => return None,
        None => OrderValue::Int(order.parse().ok()?),
    };
    Some((gateway, query, order))
}

/// The alert of a converted row.
pub(crate) fn alert(
    gateway: &str,
    query: &str,
    namespace: &str,
    row: RowAlert,
    json_output: bool,
) -> v1::Alert {
    let mesh_key = if row.key.is_empty() {
        String::new()
    } else {
        format!("{namespace}:{}", row.key)
    };
    let body = Bytes::from(row.json);
    v1::Alert {
        r#ref: row_ref(gateway, query, &row.order),
        topic: format!("query:{query}"),
        partition: 0,
        // The order value when it is an integer.
        offset: match row.order {
            OrderValue::Int(i) => i,
            OrderValue::Text(_) => 0,
        },
        timestamp: None,
        key: (!mesh_key.is_empty()).then(|| Bytes::from(mesh_key.clone())),
        headers: Vec::new(),
        payload: if json_output {
            Bytes::new()
        } else {
            body.clone()
        },
        format: "json".into(),
        namespace: namespace.to_owned(),
        schema: String::new(),
        json: if json_output { body } else { Bytes::new() },
        mesh_key,
        json_bare_nonfinite: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_refs_round_trip_and_junk_is_not_one() {
        let r = row_ref("lasair", "objects", &OrderValue::Int(i64::MIN));
        assert_eq!(
            parse_ref(&r),
            Some(("lasair", "objects", OrderValue::Int(i64::MIN)))
        );
        let ts = OrderValue::Text("2026-12-01 10:00:00.5+00 / x".into());
        let r = row_ref("lasair", "objects", &ts);
        assert!(
            !r["am://lasair/query:objects/".len()..].contains('/'),
            "{r}"
        );
        assert_eq!(parse_ref(&r), Some(("lasair", "objects", ts)));
        assert_eq!(parse_ref("am://lasair/query:objects/~!!"), None);
        assert_eq!(parse_ref("am://lasair/ztf.alerts/0/1"), None);
        assert_eq!(parse_ref("am://lasair/query:objects/1x"), None);
        assert_eq!(float(f64::NAN), Value::from("NaN"));
    }

    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for v in [0, 7, 10, 12345, i64::MAX, -1, -10, i64::MIN] {
            let mut out = b"x".to_vec();
            push_decimal(v, &mut out);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
    }

    #[test]
    fn floats_are_written_as_their_json_values_serialize() {
        for f in [
            0.0,
            -0.0,
            1.5,
            f64::from(0.1f32),
            1e300,
            -2.5e-308,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut out = Vec::new();
            put_float(&mut out, Some(f), false);
            assert_eq!(out, serde_json::to_vec(&float(f)).unwrap(), "{f}");
        }
        let mut out = Vec::new();
        put_float::<f64>(&mut out, None, false);
        assert_eq!(out, b"null");
        for (f, text) in [
            (0.1f32, "0.1"),
            (18.25f32, "18.25"),
            (f32::MAX, "3.4028235e+38"),
            (f32::NAN, "\"NaN\""),
            (f32::NEG_INFINITY, "\"-Infinity\""),
        ] {
            let mut out = Vec::new();
            put_float(&mut out, Some(f), false);
            assert_eq!(String::from_utf8(out).unwrap(), text, "{f}");
        }
        // Bare tokens when asked for; finite values and null as before.
        for (f, text) in [
            (Some(f64::NAN), "NaN"),
            (Some(f64::INFINITY), "Infinity"),
            (Some(f64::NEG_INFINITY), "-Infinity"),
            (Some(1.5), "1.5"),
            (None, "null"),
        ] {
            let mut out = Vec::new();
            put_float(&mut out, f, true);
            assert_eq!(String::from_utf8(out).unwrap(), text, "{f:?}");
        }
    }

    #[test]
    fn written_rows_are_prosts_encoding_of_their_alerts() {
        use prost::Message as _;
        let json = br#"{"id":-7,"object_id":"ZTF18abc","mag":"NaN"}"#;
        for (namespace, json_output, bare) in [
            ("ZTF", false, false),
            ("ZTF", true, false),
            ("", false, false),
            ("ZTF", true, true),
            ("", false, true),
        ] {
            let mut w = RowWriter::new("lasair", "objects", namespace, (json_output, bare));
            for (order, key) in [
                (OrderValue::Int(-7), &b"ZTF18abc"[..]),
                (OrderValue::Int(0), b""),
                (OrderValue::Int(i64::MAX), b"12"),
                (
                    OrderValue::Text("2026-12-01 10:00:00+00 / x".into()),
                    b"\"NaN\"",
                ),
            ] {
                let mut buf = BytesMut::from(&b"before"[..]);
                w.put_element(&order, key, json, &mut buf);
                let mut alert = alert(
                    "lasair",
                    "objects",
                    namespace,
                    RowAlert {
                        order: order.clone(),
                        key: String::from_utf8(key.to_vec()).unwrap(),
                        json: json.to_vec(),
                    },
                    json_output,
                );
                alert.json_bare_nonfinite = bare;
                let batch = v1::QueryBatch {
                    alerts: vec![alert],
                    ..v1::QueryBatch::default()
                };
                assert_eq!(
                    &buf[b"before".len()..],
                    batch.encode_to_vec().as_slice(),
                    "{order:?} {key:?} {namespace:?} json {json_output} bare {bare}"
                );
            }
        }
    }
}
