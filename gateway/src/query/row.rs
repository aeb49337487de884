//! A row as an alert: its declared columns as one JSON object (64-bit integers exact,
//! NaN and infinities as strings, as JSON output of topics), and its ref.

use alertmesh_proto::v1;
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio_postgres::Row;

use super::sql::{Kind, Shape};
use crate::error::{Error, Result};

/// The parts of a row an alert is made of.
#[derive(Debug)]
pub(crate) struct RowAlert {
    pub(crate) order: i64,
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

/// Converts `row` (selected with `shape`'s columns) given the positions of the order and
/// key columns.
pub(crate) fn convert(row: &Row, shape: &Shape, order: usize, key: usize) -> Result<RowAlert> {
    let mut obj = Map::with_capacity(shape.columns.len());
    let mut order_value = None;
    let mut key_value = String::new();
    for (i, (name, kind)) in shape.columns.iter().enumerate() {
        let v = match kind {
            Kind::Bool => get::<bool>(row, i)?.map(Value::from),
            Kind::Int2 => get::<i16>(row, i)?.map(Value::from),
            Kind::Int4 => get::<i32>(row, i)?.map(Value::from),
            Kind::Int8 => {
                let v = get::<i64>(row, i)?;
                if i == order {
                    order_value = v;
                }
                v.map(Value::from)
            }
            Kind::Float4 => get::<f32>(row, i)?.map(|f| float(f64::from(f))),
            Kind::Float8 => get::<f64>(row, i)?.map(float),
            Kind::Text | Kind::AsText => get::<String>(row, i)?.map(Value::from),
        };
        if i == order && order_value.is_none() {
            order_value = match kind {
                Kind::Int2 => get::<i16>(row, i)?.map(i64::from),
                Kind::Int4 => get::<i32>(row, i)?.map(i64::from),
                _ => None,
            };
        }
        if i == key {
            key_value = match &v {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
        }
        obj.insert(name.clone(), v.unwrap_or(Value::Null));
    }
    let order = order_value.ok_or_else(|| {
        Error::Internal(
            "a row has a null order column; the order column must be unique and not null".into(),
        )
    })?;
    let json = serde_json::to_vec(&Value::Object(obj))
        .map_err(|e| Error::Internal(format!("cannot write a row as JSON: {e}")))?;
    Ok(RowAlert {
        order,
        key: key_value,
        json,
    })
}

/// `am://<gateway>/query:<name>/<order value>`.
pub(crate) fn row_ref(gateway: &str, query: &str, order: i64) -> String {
    format!("am://{gateway}/query:{query}/{order}")
}

/// The gateway, query and order value of a query row ref, or `None` when `text` is not one.
pub(crate) fn parse_ref(text: &str) -> Option<(&str, &str, i64)> {
    let rest = text.strip_prefix("am://")?;
    let (gateway, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("query:")?;
    let (query, order) = rest.split_once('/')?;
    Some((gateway, query, order.parse().ok()?))
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
        r#ref: row_ref(gateway, query, row.order),
        topic: format!("query:{query}"),
        partition: 0,
        offset: row.order,
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
        let r = row_ref("lasair", "objects", i64::MIN);
        assert_eq!(parse_ref(&r), Some(("lasair", "objects", i64::MIN)));
        assert_eq!(parse_ref("am://lasair/ztf.alerts/0/1"), None);
        assert_eq!(parse_ref("am://lasair/query:objects/1x"), None);
        assert_eq!(float(f64::NAN), Value::from("NaN"));
    }
}
