//! A row as an alert: its declared columns as one JSON object (64-bit integers exact,
//! NaN and infinities as strings, as JSON output of topics), and its ref.

use alertmesh_proto::v1;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use tokio_postgres::Row;

use super::sql::{Kind, Shape};
use super::token::MAX_TEXT_ORDER;
use super::OrderValue;
use crate::error::{Error, Result};

/// The parts of a row an alert is made of.
#[derive(Debug)]
pub(crate) struct RowAlert {
    pub(crate) order: OrderValue,
    pub(crate) key: String,
    pub(crate) json: Vec<u8>,
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        Value::from("NaN")
    } else if f.is_infinite() {
        Value::from(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
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

/// Converts `row` (selected with `shape`'s columns) given the positions of the order and
/// key columns. The JSON object is written straight from the row's fields (no
/// intermediate map: this is the per-row cost of every query stream), with the same
/// text as serializing a `serde_json::Value` would give.
pub(crate) fn convert(row: &Row, shape: &Shape, order: usize, key: usize) -> Result<RowAlert> {
    let mut json = Vec::with_capacity(16 * shape.columns.len() + 16);
    let mut order_value = None;
    let mut key_value = String::new();
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
            put(&mut json, Some(name));
            json.push(b':');
        }
        let at = json.len();
        match kind {
            Kind::Bool => put(&mut json, get::<bool>(row, i)?),
            Kind::Int2 => {
                let v = get::<i16>(row, i)?;
                if i == order {
                    order_value = v.map(|v| OrderValue::Int(v.into()));
                }
                put(&mut json, v);
            }
            Kind::Int4 => {
                let v = get::<i32>(row, i)?;
                if i == order {
                    order_value = v.map(|v| OrderValue::Int(v.into()));
                }
                put(&mut json, v);
            }
            Kind::Int8 => {
                let v = get::<i64>(row, i)?;
                if i == order {
                    order_value = v.map(OrderValue::Int);
                }
                put(&mut json, v);
            }
            Kind::Float4 => put(&mut json, get::<f32>(row, i)?.map(|f| float(f64::from(f)))),
            Kind::Float8 => put(&mut json, get::<f64>(row, i)?.map(float)),
            Kind::Text | Kind::AsText => {
                let v = get::<&str>(row, i)?;
                if i == key {
                    key_value = v.unwrap_or_default().to_owned();
                }
                if i == order {
                    order_value = v.map(|t| OrderValue::Text(t.to_owned()));
                }
                put(&mut json, v);
            }
        }
        if i == key && !matches!(kind, Kind::Text | Kind::AsText) {
            // A non-text key: its JSON text (`null` for none).
            let text = &json[at..];
            if text != b"null" {
                key_value = String::from_utf8_lossy(text).into_owned();
            }
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
    Ok(RowAlert {
        order,
        key: key_value,
        json,
    })
}

/// The order value of `row` alone (column `order` of `shape`), as [`convert`] reads it.
pub(crate) fn order_of(row: &Row, shape: &Shape, order: usize) -> Result<Option<OrderValue>> {
    Ok(match shape.columns[order].1 {
        Kind::Int2 => get::<i16>(row, order)?.map(|v| OrderValue::Int(v.into())),
        Kind::Int4 => get::<i32>(row, order)?.map(|v| OrderValue::Int(v.into())),
        Kind::Int8 => get::<i64>(row, order)?.map(OrderValue::Int),
        Kind::Text | Kind::AsText => get::<&str>(row, order)?.map(|t| OrderValue::Text(t.into())),
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
}
