//! `[[databases]]` and `[[queries]]`: PostgreSQL databases and the queries over them that
//! clients can stream as alerts.
//!
//! Everything here is operator input, but it still ends up in SQL text, so identifiers
//! (tables, columns) are checked strictly and always quoted, and an operator's `select`
//! must be one read-only statement (it also runs in a read-only transaction).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use alertmesh_alert::naming::check_topic;
use alertmesh_alert::Registry;

use super::database_tls::{self, DatabaseTls};
use super::reader::Reader;

/// `[[databases]]`: one PostgreSQL database.
#[derive(Clone)]
pub struct DatabaseConfig {
    pub name: String,
    /// `postgres://user@host:port/dbname` (no password: see `password`).
    pub url: String,
    pub password: PasswordSource,
    /// Connections the gateway keeps open at most.
    pub pool_size: usize,
    /// Every statement is cancelled by PostgreSQL after this.
    pub statement_timeout: Duration,
    /// Connecting (TCP, TLS and authentication) gives up after this.
    pub connect_timeout: Duration,
    /// `tls`, `ca_file`, `cert_file`, `key_file`.
    pub tls: DatabaseTls,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("password", &self.password)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Where a database password comes from; read at each new connection, never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    /// `password_file`: the file's content, without a trailing newline.
    File(PathBuf),
    /// `password_env`: an environment variable of the gateway process.
    Env(String),
}

/// `[[queries]]`: rows of a table, view or operator SELECT, served as a stream.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// What clients ask for.
    pub name: String,
    /// A `[[databases]]` name.
    pub database: String,
    pub source: QuerySource,
    /// The objectId namespace of `key`.
    pub namespace: String,
    /// The objectId column.
    pub key: String,
    /// A unique column that orders the rows (integer, text, timestamp, date, numeric or
    /// uuid); resumption continues after its value.
    pub order: String,
    /// Right ascension and declination columns (degrees) for cone searches.
    pub ra: Option<String>,
    pub dec: Option<String>,
    /// What clients may filter on and receive, in this order.
    pub columns: Vec<String>,
    pub description: String,
    /// Readable without a token.
    pub public: bool,
    /// With `follow`, how often a stream looks for new rows.
    pub poll_interval: Duration,
}

/// Where the rows of a query come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuerySource {
    /// A table or view, optionally `schema.table`: its identifier parts.
    Table(Vec<String>),
    /// One read-only `SELECT` (or `WITH ... SELECT`) written by the operator.
    Select(String),
}

/// The longest PostgreSQL identifier (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// Whether `name` is a plain SQL identifier: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes.
/// Names are matched exactly as PostgreSQL stores them (they are always quoted).
pub fn check_identifier(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{name:?} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    if name.len() > MAX_IDENT {
        return Err(format!("{name:?} is longer than {MAX_IDENT} bytes"));
    }
    Ok(())
}

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn read(
    r: &mut Reader,
    root: &mut toml::Table,
    base: &Path,
    registry: Option<&Registry>,
) -> (Vec<DatabaseConfig>, Vec<QueryConfig>) {
    let databases = read_databases(r, root, base);
    let mut seen = BTreeMap::new();
    let mut queries = Vec::new();
    for (i, mut t) in r.array_of_tables(root, "queries").into_iter().enumerate() {
        let path = format!("queries[{i}]");
        if let Some(q) = read_query(r, &mut t, &path, &databases, registry) {
            if let Some(first) = seen.insert(q.name.clone(), i) {
                r.error(
                    &format!("{path}.name"),
                    &format!("{:?} is already declared by queries[{first}]", q.name),
                );
            }
            queries.push(q);
        }
        r.unknown(t, &path);
    }
    (databases, queries)
}

fn read_databases(r: &mut Reader, root: &mut toml::Table, base: &Path) -> Vec<DatabaseConfig> {
    let mut out: Vec<DatabaseConfig> = Vec::new();
    for (i, mut t) in r.array_of_tables(root, "databases").into_iter().enumerate() {
        let path = format!("databases[{i}]");
        let name = r.string(&mut t, &path, "name", None);
        if let Some(n) = &name {
            if let Err(e) = check_topic(n) {
                r.error(&format!("{path}.name"), &e.to_string());
            }
            if out.iter().any(|d| &d.name == n) {
                r.error(&format!("{path}.name"), &format!("{n:?} is declared twice"));
            }
        }
        let url = r.string(&mut t, &path, "url", None);
        let parsed = url
            .as_deref()
            .and_then(|u| check_url(r, &format!("{path}.url"), u));
        let tls = database_tls::read(r, &mut t, &path, base, parsed.as_ref());
        let file = r.string(&mut t, &path, "password_file", Some(String::new()));
        let env = r.string(&mut t, &path, "password_env", Some(String::new()));
        let password = match (file.as_deref(), env.as_deref()) {
            (Some(f), Some(e)) if !f.is_empty() && !e.is_empty() => {
                r.error(
                    &format!("{path}.password_env"),
                    "give password_file or password_env, not both",
                );
                PasswordSource::None
            }
            (Some(f), _) if !f.is_empty() => PasswordSource::File(base.join(f)),
            (_, Some(e)) if !e.is_empty() => PasswordSource::Env(e.to_owned()),
            _ => PasswordSource::None,
        };
        let pool_size = r.uint(&mut t, &path, "pool_size", 4, 1, 256) as usize;
        let statement_timeout =
            r.uint(&mut t, &path, "statement_timeout_ms", 30_000, 10, 3_600_000);
        let connect_timeout = r.uint(&mut t, &path, "connect_timeout_ms", 5_000, 100, 300_000);
        r.unknown(t, &path);
        if let (Some(name), Some(url)) = (name, url) {
            out.push(DatabaseConfig {
                name,
                url,
                password,
                pool_size,
                statement_timeout: Duration::from_millis(statement_timeout),
                connect_timeout: Duration::from_millis(connect_timeout),
                tls,
            });
        }
    }
    out
}

/// Checks a `[[databases]] url`; the parsed URL if it is usable.
fn check_url(r: &mut Reader, path: &str, url: &str) -> Option<tokio_postgres::Config> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        r.error(
            path,
            "must be a URL postgres://user@host:port/dbname (the password goes in password_file or password_env)",
        );
        return None;
    }
    if let Some(msg) = database_tls::url_tls_parameter(url) {
        r.error(path, &msg);
        return None;
    }
    match tokio_postgres::Config::from_str(url) {
        // The parser's message can quote the URL, password included: not repeated.
        Err(_) => r.error(path, "is not a valid postgres:// URL"),
        Ok(c) if c.get_password().is_some() => r.error(
            path,
            "must not contain a password; use password_file or password_env",
        ),
        Ok(c) if c.get_hosts().is_empty() => r.error(path, "must name a host"),
        Ok(c) => return Some(c),
    }
    None
}

fn read_query(
    r: &mut Reader,
    t: &mut toml::Table,
    path: &str,
    databases: &[DatabaseConfig],
    registry: Option<&Registry>,
) -> Option<QueryConfig> {
    let ident = |r: &mut Reader, key: &str, v: &Option<String>| {
        if let Some(v) = v {
            if let Err(e) = check_identifier(v) {
                r.error(&format!("{path}.{key}"), &e);
            }
        }
    };
    let name = r.string(t, path, "name", None);
    if let Some(n) = &name {
        if let Err(e) = check_topic(n) {
            r.error(&format!("{path}.name"), &e.to_string());
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
    let table = r.string(t, path, "table", Some(String::new()));
    let select = r.string(t, path, "select", Some(String::new()));
    let source = match (table.as_deref(), select.as_deref()) {
        (Some(tb), Some(s)) if !tb.is_empty() && !s.is_empty() => {
            r.error(&format!("{path}.select"), "give table or select, not both");
            None
        }
        (Some(tb), _) if !tb.is_empty() => {
            let parts: Vec<String> = tb.split('.').map(str::to_owned).collect();
            let mut ok = parts.len() <= 2;
            for p in &parts {
                if let Err(e) = check_identifier(p) {
                    r.error(&format!("{path}.table"), &e);
                    ok = false;
                }
            }
            if parts.len() > 2 {
                r.error(&format!("{path}.table"), "must be table or schema.table");
            }
            ok.then_some(QuerySource::Table(parts))
        }
        (_, Some(s)) if !s.is_empty() => match check_select(s) {
            Ok(s) => Some(QuerySource::Select(s)),
            Err(e) => {
                r.error(&format!("{path}.select"), &e);
                None
            }
        },
        (Some(_), Some(_)) => {
            r.error(
                path,
                "needs table (a table or view) or select (a SELECT statement)",
            );
            None
        }
        _ => None,
    };
    let namespace = r.string(t, path, "namespace", None);
    if let (Some(ns), Some(reg)) = (&namespace, registry) {
        if reg.namespace(ns).is_none() {
            r.error(
                &format!("{path}.namespace"),
                &format!("unknown namespace {ns:?} (add it with alert.namespaces_file)"),
            );
        }
    }
    let key = r.string(t, path, "key", None);
    ident(r, "key", &key);
    let order = r.string(t, path, "order", None);
    ident(r, "order", &order);
    let ra = r
        .string(t, path, "ra", Some(String::new()))
        .filter(|s| !s.is_empty());
    ident(r, "ra", &ra);
    let dec = r
        .string(t, path, "dec", Some(String::new()))
        .filter(|s| !s.is_empty());
    ident(r, "dec", &dec);
    if ra.is_some() != dec.is_some() {
        r.error(path, "give both ra and dec (for cone searches) or neither");
    }
    let columns = r.string_list(t, path, "columns", None);
    if let Some(cols) = &columns {
        if cols.is_empty() {
            r.error(&format!("{path}.columns"), "must list at least one column");
        }
        for (i, c) in cols.iter().enumerate() {
            if let Err(e) = check_identifier(c) {
                r.error(&format!("{path}.columns[{i}]"), &e);
            }
            if cols[..i].contains(c) {
                r.error(
                    &format!("{path}.columns[{i}]"),
                    &format!("{c:?} is listed twice"),
                );
            }
        }
        for (k, v) in [("key", &key), ("order", &order), ("ra", &ra), ("dec", &dec)] {
            if let Some(v) = v {
                if !cols.contains(v) {
                    r.error(
                        &format!("{path}.{k}"),
                        &format!("{v:?} must also be listed in columns"),
                    );
                }
            }
        }
    }
    let description = r.string(t, path, "description", Some(String::new()));
    let public = r.bool(t, path, "public", false);
    let poll = r.uint(t, path, "poll_interval_ms", 1_000, 100, 3_600_000);
    Some(QueryConfig {
        name: name?,
        database: database?,
        source: source?,
        namespace: namespace?,
        key: key?,
        order: order?,
        ra,
        dec,
        columns: columns?,
        description: description?,
        public,
        poll_interval: Duration::from_millis(poll),
    })
}

/// The operator's SELECT, trimmed: one statement that starts with SELECT or WITH.
fn check_select(text: &str) -> Result<String, String> {
    let s = text.trim().trim_end_matches(';').trim_end();
    let first = s
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if first != "select" && first != "with" {
        return Err("must be one SELECT statement (or WITH ... SELECT)".into());
    }
    if s.contains(';') {
        return Err("must be one statement: no ';' inside".into());
    }
    // The gateway numbers its own parameters ($1, $2, ...) around this text.
    if s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
    {
        return Err("must not use $n parameters (the gateway binds its own)".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain_and_quoted() {
        assert!(check_identifier("object_id").is_ok());
        assert!(check_identifier("_x9").is_ok());
        for bad in ["", "9a", "a b", "a\"b", "a;drop", "ä", &"x".repeat(64)] {
            assert!(check_identifier(bad).is_err(), "{bad:?}");
        }
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn an_operator_select_is_one_select_statement() {
        assert_eq!(
            check_select(" SELECT * FROM t; ").as_deref(),
            Ok("SELECT * FROM t")
        );
        assert!(check_select("with x as (select 1) select * from x").is_ok());
        assert!(check_select("delete from t").is_err());
        assert!(check_select("select 1; delete from t").is_err());
        assert!(check_select("select * from t where id > $1").is_err());
    }
}
