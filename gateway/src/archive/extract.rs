//! One Kafka record as an archive row: its alert as Subscribe sends it (ref, key, headers,
//! payload, schema), its object id, and the configured columns read from the decoded
//! payload by field path.

use std::sync::Arc;

use alertmesh_alert::apache_avro::types::Value;
use alertmesh_alert::projection::Projection;
use alertmesh_alert::{Decoder, Format, Registry, Subject};
use alertmesh_proto::v1;
use prost::Message as _;
use tokio_postgres::types::ToSql;

use crate::config::{ArchiveColumn, ColumnKind};

/// One extracted value; `None` when the field is missing, null or of another type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

impl Cell {
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Int(v) => v,
            Cell::Float(v) => v,
            Cell::Text(v) => v,
            Cell::Bool(v) => v,
        }
    }

    fn null(kind: ColumnKind) -> Cell {
        match kind {
            ColumnKind::Int8 => Cell::Int(None),
            ColumnKind::Float8 => Cell::Float(None),
            ColumnKind::Text => Cell::Text(None),
            ColumnKind::Bool => Cell::Bool(None),
        }
    }

    /// `v` as a cell of `kind`: integers widen to floats, numbers and enums read as
    /// text; anything else is NULL rather than a guess.
    fn of(kind: ColumnKind, v: &Value) -> Cell {
        match kind {
            ColumnKind::Int8 => Cell::Int(match v {
                Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Some(i64::from(*i)),
                Value::Long(i)
                | Value::TimeMicros(i)
                | Value::TimestampMillis(i)
                | Value::TimestampMicros(i)
                | Value::LocalTimestampMillis(i)
                | Value::LocalTimestampMicros(i) => Some(*i),
                _ => None,
            }),
            ColumnKind::Float8 => Cell::Float(match v {
                Value::Int(i) => Some(f64::from(*i)),
                Value::Long(i) => Some(*i as f64),
                Value::Float(f) => Some(f64::from(*f)),
                Value::Double(f) => Some(*f),
                _ => None,
            }),
            ColumnKind::Text => Cell::Text(match v {
                Value::String(s) | Value::Enum(_, s) => Some(text(s)),
                Value::Uuid(u) => Some(u.to_string()),
                Value::Int(i) => Some(i.to_string()),
                Value::Long(i) => Some(i.to_string()),
                Value::Float(f) => Some(f.to_string()),
                Value::Double(f) => Some(f.to_string()),
                Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            }),
            ColumnKind::Bool => Cell::Bool(match v {
                Value::Boolean(b) => Some(*b),
                _ => None,
            }),
        }
    }
}

/// PostgreSQL text cannot hold NUL: a producer's NUL becomes U+FFFD rather than failing
/// the whole batch forever.
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_owned()
    }
}

/// One row, in the order of `table::copy`.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) object_id: Option<String>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) r#ref: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) schema: Option<String>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Option<Vec<u8>>,
    pub(crate) cells: Vec<Cell>,
}

impl Row {
    /// Bytes the row holds, for batching by size: everything a producer chose (headers
    /// and text extracted from a compressed payload can be far larger than the payload).
    pub(crate) fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
        let cells: usize = self
            .cells
            .iter()
            .map(|c| match c {
                Cell::Text(t) => 24 + text(t),
                _ => 16,
            })
            .sum();
        128 + self.payload.len()
            + bytes(&self.key)
            + bytes(&self.headers)
            + text(&self.schema)
            + text(&self.object_id)
            + self.r#ref.len()
            + cells
    }

    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut out: Vec<&(dyn ToSql + Sync)> = vec![
            &self.object_id,
            &self.partition,
            &self.offset,
            &self.timestamp_ms,
            &self.r#ref,
            &self.payload,
            &self.schema,
            &self.key,
            &self.headers,
        ];
        out.extend(self.cells.iter().map(Cell::as_sql));
        out
    }
}

/// What turns records of one topic into rows.
#[derive(Debug)]
pub(crate) struct Extractor {
    pub(crate) format: Format,
    pub(crate) columns: Vec<ArchiveColumn>,
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) registry: Arc<Registry>,
    /// The extracted paths plus every family's key and position paths: the rest of a
    /// payload (cutouts, history) is skipped, not decoded.
    projection: Projection,
}

impl Extractor {
    pub(crate) fn new(
        format: Format,
        columns: Vec<ArchiveColumn>,
        decoder: Arc<Decoder>,
        registry: Arc<Registry>,
    ) -> Extractor {
        let mut paths: Vec<_> = columns.iter().map(|c| c.path.clone()).collect();
        for f in registry.families() {
            paths.extend(f.key_rules().iter().map(|(_, p)| p.clone()));
            if let Some((ra, dec)) = f.position_paths() {
                paths.extend([ra.clone(), dec.clone()]);
            }
        }
        Extractor {
            format,
            columns,
            decoder,
            registry,
            projection: Projection::new(paths),
        }
    }

    /// The row of `alert` (the wire alert of a record, as Subscribe's native output).
    /// The row of `alert`, and why its payload did not decode when it did not (the row is
    /// written all the same: its bytes and Kafka metadata, with NULL columns).
    pub(crate) fn row(&self, alert: v1::Alert) -> (Row, Option<String>) {
        let decoded = self
            .decoder
            .decode_projected(self.format, &alert.payload, &self.projection)
            .or_else(|_| self.decoder.decode(self.format, &alert.payload));
        // A payload that does not decode is still archived: its bytes and Kafka metadata,
        // with NULL columns.
        let (cells, object_id) = match &decoded {
            Ok(a) => {
                let cells = self
                    .columns
                    .iter()
                    .map(|c| match c.path.lookup(a.value()) {
                        Some(v) => Cell::of(c.kind, v),
                        None => Cell::null(c.kind),
                    })
                    .collect();
                let key = Subject::new(a, &self.registry).key;
                (cells, key.map(|k| text(k.id())))
            }
            Err(_) => (
                self.columns.iter().map(|c| Cell::null(c.kind)).collect(),
                None,
            ),
        };
        let undecodable = decoded.as_ref().err().map(ToString::to_string);
        // A record keyed by its mesh key (`ZTF:ZTF18...`) names its object even when its
        // payload does not decode.
        let object_id = object_id.or_else(|| {
            let k = std::str::from_utf8(alert.key.as_deref()?).ok()?;
            self.registry.parse_key(k).ok().map(|k| text(k.id()))
        });
        let headers = (!alert.headers.is_empty()).then(|| {
            v1::Alert {
                headers: alert.headers,
                ..v1::Alert::default()
            }
            .encode_to_vec()
        });
        let row = Row {
            object_id,
            partition: alert.partition,
            offset: alert.offset,
            timestamp_ms: alert.timestamp.and_then(|t| {
                t.seconds
                    .checked_mul(1000)?
                    .checked_add(i64::from(t.nanos) / 1_000_000)
            }),
            r#ref: text(&alert.r#ref),
            payload: alert.payload.to_vec(),
            schema: (!alert.schema.is_empty()).then(|| text(&alert.schema)),
            key: alert.key.map(|k| k.to_vec()),
            headers,
            cells,
        };
        (row, undecodable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_cells_of_their_column_type_or_null() {
        assert_eq!(
            Cell::of(ColumnKind::Float8, &Value::Int(3)),
            Cell::Float(Some(3.0))
        );
        assert_eq!(
            Cell::of(ColumnKind::Int8, &Value::Double(3.5)),
            Cell::Int(None)
        );
        assert_eq!(
            Cell::of(ColumnKind::Int8, &Value::Long(i64::MAX)),
            Cell::Int(Some(i64::MAX))
        );
        assert_eq!(
            Cell::of(ColumnKind::Text, &Value::String("a\0b".into())),
            Cell::Text(Some("a\u{fffd}b".into()))
        );
        assert_eq!(Cell::of(ColumnKind::Bool, &Value::Null), Cell::Bool(None));
    }

    /// A batch is bounded by what its rows hold: a record of no payload and 1 MB of
    /// headers, or a small payload whose text column inflated to megabytes, counts as such.
    #[test]
    fn a_row_counts_its_headers_and_extracted_text() {
        let row = |headers: usize, text: usize| Row {
            object_id: None,
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            r#ref: "am://g/t/0/0".into(),
            payload: Vec::new(),
            schema: None,
            key: None,
            headers: Some(vec![0; headers]),
            cells: vec![Cell::Text(Some("x".repeat(text))), Cell::Int(Some(1))],
        };
        let small = row(0, 0).size();
        assert!(small < 512, "{small}");
        assert!(row(1 << 20, 0).size() > 1 << 20);
        assert!(row(0, 4 << 20).size() > 4 << 20);
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use alertmesh_alert::path::FieldPath;

    fn fixture() -> Vec<u8> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01"
        );
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "avro"))
            .collect();
        files.sort();
        std::fs::read(&files[0]).unwrap()
    }

    #[test]
    fn a_ztf_alert_decodes_projected_into_its_columns() {
        let payload = fixture();
        let col = |name: &str, path: &str, kind| ArchiveColumn {
            name: name.into(),
            path: FieldPath::parse(path).unwrap(),
            kind,
        };
        let ex = Extractor::new(
            Format::AvroOcf,
            vec![
                col("candid", "candidate.candid", ColumnKind::Int8),
                col("magpsf", "candidate.magpsf", ColumnKind::Float8),
                col("nope", "candidate.nope", ColumnKind::Bool),
            ],
            Arc::new(Decoder::new()),
            Arc::new(Registry::builtin()),
        );
        assert!(ex
            .decoder
            .decode_projected(ex.format, &payload, &ex.projection)
            .is_ok());
        let started = std::time::Instant::now();
        let (row, undecodable) = ex.row(v1::Alert {
            payload: payload.into(),
            ..v1::Alert::default()
        });
        assert_eq!(undecodable, None);
        eprintln!("one row in {:?}", started.elapsed());
        assert!(matches!(row.cells[0], Cell::Int(Some(_))));
        assert!(matches!(row.cells[1], Cell::Float(Some(_))));
        assert_eq!(row.cells[2], Cell::Bool(None));
        assert!(row.object_id.is_some_and(|o| o.starts_with("ZTF")));
    }
}
