//! Queries over `[[archives]]` tables: their rows are the original alerts, as Subscribe
//! sends them (payload, key, headers, schema, the ref of the Kafka record), not the JSON
//! of the row's columns.
//!
//! An archive's query selects its client-visible columns (which `where`, `cone` and `ids`
//! work on) followed by the stored parts of the alert, which clients can neither see as
//! columns nor filter on.

use std::sync::Arc;

use alertmesh_alert::filter::Predicate;
use alertmesh_alert::{BytesMode, Decoder, Format, JsonOptions, NonFinite, Registry, Subject};
use alertmesh_proto::tags::batch::ALERTS;
use alertmesh_proto::v1;
use bytes::{Bytes, BytesMut};
use prost::Message as _;
use tokio::sync::OnceCell;

use super::pool::Pool;
use super::sql::{Kind, Param, Statement};
use super::{row, Declared, Described, OrderValue, Queries};
use crate::config::{quote_identifier, ArchiveConfig, Config, QueryConfig, QuerySource};
use crate::error::{Error, Result};

/// The stored parts of an alert, selected after the visible columns, in this order.
const STORED: [&str; 5] = ["ref", "payload", "schema", "kafka_key", "kafka_headers"];

/// What an archive's query needs to turn rows back into alerts.
#[derive(Debug)]
pub(crate) struct Archived {
    topic: String,
    format: Format,
    namespace: String,
    decoder: Arc<Decoder>,
    registry: Arc<Registry>,
    /// Columns clients see; the stored parts follow them.
    visible: usize,
}

/// The query an archive is served as.
fn query_config(a: &ArchiveConfig, namespace: &str) -> QueryConfig {
    let mut columns = a.query_columns();
    columns.extend(STORED.iter().map(|c| (*c).to_owned()));
    QueryConfig {
        name: a.query.clone(),
        database: a.database.clone(),
        source: QuerySource::Table(a.table.clone()),
        namespace: namespace.to_owned(),
        key: "object_id".into(),
        order: "id".into(),
        ra: a.ra.clone(),
        dec: a.dec.clone(),
        columns,
        description: if a.description.is_empty() {
            format!("archive of topic {}", a.topic)
        } else {
            a.description.clone()
        },
        public: a.public,
        poll_interval: a.poll_interval,
    }
}

impl Queries {
    /// Adds the query of every `[[archives]]` entry.
    pub(crate) fn add_archives(&mut self, config: &Config, decoder: &Arc<Decoder>) {
        for a in &config.archives {
            let (Some(topic), Some(db)) = (
                config.topic(&a.topic),
                config.databases.iter().find(|d| d.name == a.database),
            ) else {
                continue;
            };
            let q = query_config(a, &topic.namespace);
            let archived = Archived {
                topic: topic.name.clone(),
                format: topic.format,
                namespace: topic.namespace.clone(),
                decoder: Arc::clone(decoder),
                registry: Arc::clone(&config.alert.registry),
                visible: a.query_columns().len(),
            };
            // One pool per database, shared with its [[queries]] and other archives.
            let pool = self
                .declared
                .values()
                .find(|d| d.config.database == db.name)
                .map_or_else(|| Pool::new(db), |d| Arc::clone(&d.pool));
            self.declared.insert(
                q.name.clone(),
                Arc::new(Declared {
                    config: q,
                    pool,
                    described: OnceCell::new(),
                    archive: Some(archived),
                }),
            );
        }
    }
}

impl Queries {
    /// The archived alert at `partition`/`offset` of `topic`, for a `Fetch` that Kafka
    /// could not answer (removed by retention): `None` when no archive keeps the topic or
    /// it does not hold that record.
    pub(crate) async fn fetch_archived(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<v1::Alert>> {
        for declared in self.declared.values() {
            let Some(a) = &declared.archive else {
                continue;
            };
            if a.topic != topic {
                continue;
            }
            let d = declared.describe().await?;
            let list: Vec<String> = d
                .shape
                .columns
                .iter()
                .map(|(c, k)| match k {
                    Kind::AsText => format!("{}::text", quote_identifier(c)),
                    _ => quote_identifier(c),
                })
                .collect();
            let QuerySource::Table(parts) = &declared.config.source else {
                continue;
            };
            let table: Vec<String> = parts.iter().map(|p| quote_identifier(p)).collect();
            let stmt = Statement {
                sql: format!(
                    "SELECT {} FROM {} WHERE \"kafka_partition\" = $1::int8 AND \"kafka_offset\" = $2::int8",
                    list.join(", "),
                    table.join(".")
                ),
                params: vec![Param::Int(i64::from(partition)), Param::Int(offset)],
                rows: 1,
            };
            let rows = declared.run(&stmt).await?;
            if let Some(r) = rows.first() {
                return a.alert(r, &d).map(|(_, alert)| Some(alert));
            }
        }
        Ok(None)
    }
}

impl Declared {
    /// The columns clients may filter on and receive.
    pub(super) fn visible_columns(&self) -> &[String] {
        match &self.archive {
            Some(a) => &self.config.columns[..a.visible],
            None => &self.config.columns,
        }
    }

    /// Refuses a filter on an archive's stored parts (they are not columns to clients).
    pub(super) fn check_filter(&self, filter: Option<&Predicate>) -> Result<()> {
        let (Some(a), Some(f)) = (&self.archive, filter) else {
            return Ok(());
        };
        for path in f.fields() {
            if self.config.columns[a.visible..]
                .iter()
                .any(|c| c == path.as_str())
            {
                return Err(Error::InvalidArgument(format!(
                    "where: {:?} is not a column of query {:?}; its columns are: {}",
                    path.as_str(),
                    self.config.name,
                    self.visible_columns().join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Writes a row as the `QueryBatch.alerts` element of the alert it stands for at the
    /// end of `buf`; returns its order value and its size in bytes.
    pub(super) fn write_row(
        &self,
        writer: &mut row::RowWriter,
        r: &tokio_postgres::Row,
        d: &Described,
        (json, bare_nonfinite): (bool, bool),
        buf: &mut BytesMut,
    ) -> Result<(OrderValue, usize)> {
        let Some(a) = &self.archive else {
            return writer.write(r, &d.shape, d.order, d.key, buf);
        };
        let (order, mut alert) = a.alert(r, d)?;
        let order = OrderValue::Int(order);
        if json {
            a.to_json(&mut alert, bare_nonfinite);
        }
        // What the batch carries: JSON output is larger than the payload it decodes.
        let size = alert.payload.len() + alert.json.len();
        prost::encoding::message::encode(ALERTS, &alert, buf);
        Ok((order, size))
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<Option<T>> {
    row.try_get::<_, Option<T>>(i)
        .map_err(|e| Error::Internal(format!("archive row: cannot read column {i}: {e}")))
}

/// `\x0a1b...`, as PostgreSQL writes bytea as text.
fn unhex(text: &str) -> Result<Vec<u8>> {
    let hex = text
        .strip_prefix("\\x")
        .ok_or_else(|| Error::Internal("archive row: bytea not in hex form".into()))?;
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.as_bytes()
        .chunks(2)
        .map(|p| match p {
            [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| Error::Internal("archive row: malformed bytea".into()))
}

impl Archived {
    /// The alert of a row, as native output.
    fn alert(&self, r: &tokio_postgres::Row, d: &Described) -> Result<(i64, v1::Alert)> {
        let order = get::<i64>(r, d.order)?
            .ok_or_else(|| Error::Internal("archive row without an id".into()))?;
        let partition = get::<i32>(r, 2)?.unwrap_or_default();
        let offset = get::<i64>(r, 3)?.unwrap_or_default();
        let timestamp_ms = get::<i64>(r, 4)?;
        let at = self.visible;
        let bytes = |i: usize| -> Result<Option<Vec<u8>>> {
            get::<String>(r, i)?.map(|t| unhex(&t)).transpose()
        };
        let r#ref = get::<String>(r, at)?.unwrap_or_default();
        let payload = bytes(at + 1)?.unwrap_or_default();
        let schema = get::<String>(r, at + 2)?.unwrap_or_default();
        let key = bytes(at + 3)?;
        let headers = match bytes(at + 4)? {
            Some(b) => {
                v1::Alert::decode(b.as_slice())
                    .map_err(|e| Error::Internal(format!("archive row: stored headers: {e}")))?
                    .headers
            }
            None => Vec::new(),
        };
        // As a record is encoded when read: a UTF-8 key is its mesh key.
        let mesh_key = key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .unwrap_or_default()
            .to_owned();
        let alert = v1::Alert {
            r#ref,
            topic: self.topic.clone(),
            partition,
            offset,
            timestamp: timestamp_ms.map(|ms| prost_types::Timestamp {
                seconds: ms.div_euclid(1000),
                nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
            }),
            key: key.map(Bytes::from),
            headers,
            payload: Bytes::from(payload),
            format: self.format.to_string(),
            namespace: self.namespace.clone(),
            schema,
            json: Bytes::new(),
            mesh_key,
            json_bare_nonfinite: false,
        };
        Ok((order, alert))
    }

    /// JSON output, as Subscribe's: the decoded payload in `json`, no payload, and the
    /// mesh key found by decoding when the Kafka key is not one. A payload that does not
    /// decode stays native (as archived).
    fn to_json(&self, alert: &mut v1::Alert, bare_nonfinite: bool) {
        let Ok(decoded) = self.decoder.decode(self.format, &alert.payload) else {
            return;
        };
        alert.json = Bytes::from(decoded.to_json(JsonOptions {
            bytes: BytesMode::Base64,
            nonfinite: if bare_nonfinite {
                NonFinite::Bare
            } else {
                NonFinite::default()
            },
        }));
        alert.json_bare_nonfinite = bare_nonfinite;
        alert.payload = Bytes::new();
        if alert.mesh_key.is_empty() {
            if let Some(k) = Subject::new(&decoded, &self.registry).key {
                alert.mesh_key = k.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_hex_text_decodes_and_junk_is_an_error() {
        assert_eq!(unhex("\\x00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(unhex("\\x").unwrap(), Vec::<u8>::new());
        assert!(unhex("00ff").is_err());
        assert!(unhex("\\x0g").is_err());
        assert!(unhex("\\x0").is_err());
    }
}
