//! A small reader over a TOML table that records every problem with its key path instead
//! of stopping at the first one, and reports keys nobody asked for.

use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Default)]
pub(super) struct Reader {
    pub(super) errors: Vec<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    v.type_str()
}

impl Reader {
    pub(super) fn error(&mut self, path: &str, msg: &str) {
        self.errors.push(format!("{path}: {msg}"));
    }

    pub(super) fn table(
        &mut self,
        t: &mut toml::Table,
        path: &str,
        key: &str,
        required: bool,
    ) -> toml::Table {
        match t.remove(key) {
            Some(toml::Value::Table(inner)) => inner,
            Some(other) => {
                self.error(
                    &join(path, key),
                    &format!("must be a table, found {}", type_name(&other)),
                );
                toml::Table::new()
            }
            None => {
                if required {
                    self.error(&join(path, key), "missing section");
                }
                toml::Table::new()
            }
        }
    }

    pub(super) fn string(
        &mut self,
        t: &mut toml::Table,
        path: &str,
        key: &str,
        default: Option<String>,
    ) -> Option<String> {
        match t.remove(key) {
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => {
                self.error(
                    &join(path, key),
                    &format!("must be a string, found {}", type_name(&other)),
                );
                None
            }
            None if default.is_some() => default,
            None => {
                self.error(&join(path, key), "missing key");
                None
            }
        }
    }

    pub(super) fn addr(
        &mut self,
        t: &mut toml::Table,
        path: &str,
        key: &str,
        default: Option<String>,
    ) -> Option<SocketAddr> {
        let s = self.string(t, path, key, default)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    &join(path, key),
                    &format!("{s:?} is not an ip:port address, e.g. 127.0.0.1:50051"),
                );
                None
            }
        }
    }

    pub(super) fn uint(
        &mut self,
        t: &mut toml::Table,
        path: &str,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        match t.remove(key) {
            None => default,
            Some(toml::Value::Integer(i)) if i >= 0 && (min..=max).contains(&(i as u64)) => {
                i as u64
            }
            Some(toml::Value::Integer(i)) => {
                self.error(
                    &join(path, key),
                    &format!("{i} is out of range {min}..={max}"),
                );
                default
            }
            Some(other) => {
                self.error(
                    &join(path, key),
                    &format!("must be an integer, found {}", type_name(&other)),
                );
                default
            }
        }
    }

    pub(super) fn bool(
        &mut self,
        t: &mut toml::Table,
        path: &str,
        key: &str,
        default: bool,
    ) -> bool {
        match t.remove(key) {
            None => default,
            Some(toml::Value::Boolean(b)) => b,
            Some(other) => {
                self.error(
                    &join(path, key),
                    &format!("must be true or false, found {}", type_name(&other)),
                );
                default
            }
        }
    }

    pub(super) fn string_map(
        &mut self,
        t: &mut toml::Table,
        path: &str,
        key: &str,
    ) -> BTreeMap<String, String> {
        let here = join(path, key);
        let table = self.table(t, path, key, false);
        let mut out = BTreeMap::new();
        for (k, v) in table {
            match v {
                toml::Value::String(s) => {
                    out.insert(k, s);
                }
                // librdkafka takes every property as a string; numbers and booleans are
                // written the way it expects them.
                toml::Value::Integer(i) => {
                    out.insert(k, i.to_string());
                }
                toml::Value::Boolean(b) => {
                    out.insert(k, b.to_string());
                }
                other => self.error(
                    &join(&here, &k),
                    &format!("must be a string, found {}", type_name(&other)),
                ),
            }
        }
        out
    }

    pub(super) fn array_of_tables(&mut self, t: &mut toml::Table, key: &str) -> Vec<toml::Table> {
        match t.remove(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    toml::Value::Table(t) => Some(t),
                    other => {
                        self.error(
                            &format!("{key}[{i}]"),
                            &format!("must be a table, found {}", type_name(&other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                self.error(
                    key,
                    &format!(
                        "must be an array of tables ([[{key}]]), found {}",
                        type_name(&other)
                    ),
                );
                Vec::new()
            }
        }
    }

    /// An array of strings; `default` when absent.
    pub(super) fn string_list(
        &mut self,
        t: &mut toml::Table,
        path: &str,
        key: &str,
        default: Option<Vec<String>>,
    ) -> Option<Vec<String>> {
        match t.remove(key) {
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.into_iter().enumerate() {
                    match v {
                        toml::Value::String(s) => out.push(s),
                        other => self.error(
                            &format!("{}[{i}]", join(path, key)),
                            &format!("must be a string, found {}", type_name(&other)),
                        ),
                    }
                }
                Some(out)
            }
            Some(other) => {
                self.error(
                    &join(path, key),
                    &format!("must be an array of strings, found {}", type_name(&other)),
                );
                None
            }
            None if default.is_some() => default,
            None => {
                self.error(&join(path, key), "missing key");
                None
            }
        }
    }

    /// Reports every key left in `t`: they were not recognised.
    pub(super) fn unknown(&mut self, t: toml::Table, path: &str) {
        for key in t.keys() {
            self.error(&join(path, key), "unknown key");
        }
    }
}
