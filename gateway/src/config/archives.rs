//! `[[archives]]`: a local Kafka topic kept in a PostgreSQL table, exactly once, and served
//! as a query whose rows are the original alerts.
//!
//! The table's name and every column name end up in SQL text: they are checked as plain
//! identifiers and always quoted. Field paths are checked with the filter language's path
//! parser.

use std::collections::BTreeSet;
use std::time::Duration;

use alertmesh_alert::naming::check_topic;
use alertmesh_alert::path::FieldPath;

use super::queries::check_identifier;
use super::reader::Reader;
use super::{DatabaseConfig, QueryConfig, TopicConfig};

/// The columns every archive table has besides the extracted ones. Extracted columns may
/// not use these names.
pub const ARCHIVE_COLUMNS: [&str; 10] = [
    "id",
    "object_id",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp_ms",
    "ref",
    "payload",
    "schema",
    "kafka_key",
    "kafka_headers",
];

/// `[[archives]]`: one topic kept in one table.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The archive's name; the name of the query it is served as unless `query` says.
    pub name: String,
    /// A topic of `[[topics]]` (local, or the destination of a mirror).
    pub topic: String,
    /// A `[[databases]]` name.
    pub database: String,
    /// The table, optionally `schema.table`: its identifier parts. Created when missing.
    pub table: Vec<String>,
    /// The name of the query it is served as.
    pub query: String,
    /// Columns extracted from each alert.
    pub columns: Vec<ArchiveColumn>,
    /// Extracted columns holding right ascension and declination (degrees), for cones.
    pub ra: Option<String>,
    pub dec: Option<String>,
    pub description: String,
    /// The query is readable without a token.
    pub public: bool,
    /// Rows written per transaction at most.
    pub batch_rows: usize,
    /// A batch is written after this even when it is not full.
    pub batch_wait: Duration,
    /// With `follow`, how often a query stream looks for new rows.
    pub poll_interval: Duration,
}

/// One extracted column.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveColumn {
    pub name: String,
    pub path: FieldPath,
    pub kind: ColumnKind,
}

/// The SQL types an extracted column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Int8,
    Float8,
    Text,
    Bool,
}

impl ColumnKind {
    pub const ALL: [ColumnKind; 4] = [
        ColumnKind::Int8,
        ColumnKind::Float8,
        ColumnKind::Text,
        ColumnKind::Bool,
    ];

    /// The SQL type name, as written in the configuration and in `CREATE TABLE`.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnKind::Int8 => "int8",
            ColumnKind::Float8 => "float8",
            ColumnKind::Text => "text",
            ColumnKind::Bool => "bool",
        }
    }
}

impl ArchiveConfig {
    /// The names of the columns a query on the archive may filter on, in order: the
    /// fixed ones a client can use, then the extracted ones.
    pub fn query_columns(&self) -> Vec<String> {
        ARCHIVE_COLUMNS[..5]
            .iter()
            .map(|c| (*c).to_owned())
            .chain(self.columns.iter().map(|c| c.name.clone()))
            .collect()
    }
}

pub(super) fn read(
    r: &mut Reader,
    root: &mut toml::Table,
    databases: &[DatabaseConfig],
    queries: &[QueryConfig],
    topics: &[TopicConfig],
) -> Vec<ArchiveConfig> {
    let mut out: Vec<ArchiveConfig> = Vec::new();
    for (i, mut t) in r.array_of_tables(root, "archives").into_iter().enumerate() {
        let path = format!("archives[{i}]");
        if let Some(a) = read_one(r, &mut t, &path, databases, topics) {
            if queries.iter().any(|q| q.name == a.query) {
                r.error(
                    &format!("{path}.query"),
                    &format!("{:?} is already declared in [[queries]]", a.query),
                );
            }
            if let Some(j) = out.iter().position(|o| o.name == a.name) {
                r.error(
                    &format!("{path}.name"),
                    &format!("{:?} is already declared by archives[{j}]", a.name),
                );
            } else if let Some(j) = out.iter().position(|o| o.query == a.query) {
                r.error(
                    &format!("{path}.query"),
                    &format!("{:?} is already served by archives[{j}]", a.query),
                );
            }
            if let Some(j) = out
                .iter()
                .position(|o| o.database == a.database && o.table == a.table)
            {
                r.error(
                    &format!("{path}.table"),
                    &format!(
                        "{:?} is already the table of archives[{j}]",
                        a.table.join(".")
                    ),
                );
            }
            out.push(a);
        }
        r.unknown(t, &path);
    }
    out
}

fn read_one(
    r: &mut Reader,
    t: &mut toml::Table,
    path: &str,
    databases: &[DatabaseConfig],
    topics: &[TopicConfig],
) -> Option<ArchiveConfig> {
    let name = r.string(t, path, "name", None);
    if let Some(n) = &name {
        if let Err(e) = check_topic(n) {
            r.error(&format!("{path}.name"), &e.to_string());
        }
    }
    let topic = r.string(t, path, "topic", None);
    if let Some(tp) = &topic {
        if !topics.iter().any(|x| &x.name == tp) {
            r.error(
                &format!("{path}.topic"),
                &format!("{tp:?} is not exposed in [[topics]] (archive a local or mirrored topic listed there)"),
            );
        }
    }
    let database = r.string(t, path, "database", None);
    if let Some(d) = &database {
        if !databases.iter().any(|db| &db.name == d) {
            r.error(
                &format!("{path}.database"),
                &format!("{d:?} is not declared in [[databases]]"),
            );
        }
    }
    let table = r.string(t, path, "table", None).and_then(|tb| {
        let parts: Vec<String> = tb.split('.').map(str::to_owned).collect();
        let mut ok = true;
        if parts.len() > 2 {
            r.error(&format!("{path}.table"), "must be table or schema.table");
            ok = false;
        }
        for p in &parts {
            if let Err(e) = check_identifier(p) {
                r.error(&format!("{path}.table"), &e);
                ok = false;
            }
        }
        ok.then_some(parts)
    });
    let query = r.string(t, path, "query", Some(String::new()));
    if let Some(q) = query.as_deref().filter(|q| !q.is_empty()) {
        if let Err(e) = check_topic(q) {
            r.error(&format!("{path}.query"), &e.to_string());
        }
    }
    let columns = read_columns(r, t, path);
    let mut column = |key: &str| {
        let v = r
            .string(t, path, key, Some(String::new()))
            .filter(|s| !s.is_empty());
        if let (Some(v), Some(cols)) = (&v, &columns) {
            match cols.iter().find(|c| &c.name == v) {
                Some(c) if c.kind == ColumnKind::Float8 => {}
                Some(_) => r.error(
                    &format!("{path}.{key}"),
                    &format!("{v:?} must be a float8 column"),
                ),
                None => r.error(
                    &format!("{path}.{key}"),
                    &format!("{v:?} must be one of the extracted columns"),
                ),
            }
        }
        v
    };
    let ra = column("ra");
    let dec = column("dec");
    if ra.is_some() != dec.is_some() {
        r.error(path, "give both ra and dec (for cone searches) or neither");
    }
    let description = r.string(t, path, "description", Some(String::new()));
    let public = r.bool(t, path, "public", false);
    let batch_rows = r.uint(t, path, "batch_rows", 2_000, 1, 100_000) as usize;
    let batch_wait = r.uint(t, path, "batch_wait_ms", 200, 1, 60_000);
    let poll = r.uint(t, path, "poll_interval_ms", 1_000, 100, 3_600_000);
    let name = name?;
    Some(ArchiveConfig {
        query: match query? {
            q if q.is_empty() => name.clone(),
            q => q,
        },
        name,
        topic: topic?,
        database: database?,
        table: table?,
        columns: columns?,
        ra,
        dec,
        description: description?,
        public,
        batch_rows,
        batch_wait: Duration::from_millis(batch_wait),
        poll_interval: Duration::from_millis(poll),
    })
}

/// `columns = [{ name = "ra", path = "candidate.ra", type = "float8" }, ...]`.
fn read_columns(r: &mut Reader, t: &mut toml::Table, path: &str) -> Option<Vec<ArchiveColumn>> {
    let key = format!("{path}.columns");
    let items = match t.remove("columns") {
        None => return Some(Vec::new()),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            r.error(
                &key,
                &format!(
                    "must be an array of tables like {{ name = \"ra\", path = \"candidate.ra\", type = \"float8\" }}, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    let mut ok = true;
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let p = format!("{key}[{i}]");
        let toml::Value::Table(mut c) = item else {
            r.error(&p, "must be a table { name, path, type }");
            ok = false;
            continue;
        };
        let name = r.string(&mut c, &p, "name", None);
        if let Some(n) = &name {
            if let Err(e) = check_identifier(n) {
                r.error(&format!("{p}.name"), &e);
                ok = false;
            } else if ARCHIVE_COLUMNS.contains(&n.as_str()) {
                r.error(
                    &format!("{p}.name"),
                    &format!(
                        "{n:?} is a column every archive has ({}); choose another name",
                        ARCHIVE_COLUMNS.join(", ")
                    ),
                );
                ok = false;
            } else if !names.insert(n.clone()) {
                r.error(&format!("{p}.name"), &format!("{n:?} is listed twice"));
                ok = false;
            }
        }
        let field = r
            .string(&mut c, &p, "path", None)
            .and_then(|f| match FieldPath::parse(&f) {
                Ok(fp) => Some(fp),
                Err(e) => {
                    r.error(&format!("{p}.path"), &e.to_string());
                    None
                }
            });
        let kind = r.string(&mut c, &p, "type", None).and_then(|k| {
            let found = ColumnKind::ALL.into_iter().find(|c| c.sql() == k);
            if found.is_none() {
                let all: Vec<&str> = ColumnKind::ALL.iter().map(|c| c.sql()).collect();
                r.error(
                    &format!("{p}.type"),
                    &format!(
                        "\"{}\" is not a column type; use one of {}",
                        alertmesh_alert::echo::shown(&k, 40),
                        all.join(", ")
                    ),
                );
            }
            found
        });
        r.unknown(c, &p);
        match (name, field, kind) {
            (Some(name), Some(path), Some(kind)) => out.push(ArchiveColumn { name, path, kind }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}
