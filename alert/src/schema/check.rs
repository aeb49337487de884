//! Checks a writer schema's JSON before apache-avro sees it.
//!
//! A writer schema comes from the payload, so from anyone, and apache-avro 0.21 panics
//! instead of returning an error on some invalid schemas: a name, namespace or alias that
//! is not an Avro name (`Name::parse`, `fix_aliases_namespace`), and, when fingerprinting,
//! a reserved key (`size`, `items`, …) whose value has the wrong JSON type. This walk
//! rejects those with a clear error, and bounds nesting and size so that parsing, resolving
//! and decoding stay cheap.

use serde_json::{Map, Value as Json};

/// Longest schema text accepted (the largest broker schemas are well under 100 KB).
pub(crate) const MAX_SCHEMA_BYTES: usize = 1 << 20;
/// Deepest nesting of JSON arrays and objects accepted.
const MAX_DEPTH: usize = 64;
/// Largest `fixed` size accepted: decoding one allocates that many bytes.
const MAX_FIXED_SIZE: u64 = 1 << 20;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Keys the parsing canonical form keeps and recurses into (Avro spec, [STRIP] rule).
const CANONICAL: [&str; 10] = [
    "name",
    "type",
    "fields",
    "symbols",
    "items",
    "values",
    "size",
    "order",
    "precision",
    "scale",
];

/// Why `schema` must not be handed to apache-avro, if it must not.
pub(crate) fn check(schema: &Json) -> Result<(), String> {
    depth(schema, 0)?;
    names(schema)?;
    canonical_shape(schema)
}

fn depth(json: &Json, level: usize) -> Result<(), String> {
    if level > MAX_DEPTH {
        return Err(format!("the schema nests deeper than {MAX_DEPTH} levels"));
    }
    match json {
        Json::Array(items) => items.iter().try_for_each(|v| depth(v, level + 1)),
        Json::Object(map) => map.values().try_for_each(|v| depth(v, level + 1)),
        _ => Ok(()),
    }
}

/// Every name, namespace, alias and type reference of the schema `json` is an Avro name.
fn names(json: &Json) -> Result<(), String> {
    match json {
        Json::String(s) if PRIMITIVES.contains(&s.as_str()) => Ok(()),
        Json::String(reference) => full_name("type", reference),
        Json::Array(union) => union.iter().try_for_each(names),
        Json::Object(map) => object_names(map),
        _ => Ok(()),
    }
}

fn object_names(map: &Map<String, Json>) -> Result<(), String> {
    if let Some(Json::String(ns)) = map.get("namespace") {
        if !ns.is_empty() {
            dotted("namespace", ns)?;
        }
    }
    if let Some(Json::String(name)) = map.get("name") {
        full_name("name", name)?;
    }
    if let Some(Json::Array(aliases)) = map.get("aliases") {
        for alias in aliases.iter().filter_map(Json::as_str) {
            full_name("alias", alias)?;
        }
    }
    match map.get("type") {
        Some(Json::String(t)) => match t.as_str() {
            "record" | "error" => match map.get("fields") {
                Some(Json::Array(fields)) => fields.iter().try_for_each(field_names),
                _ => Ok(()),
            },
            "array" => map.get("items").map_or(Ok(()), names),
            "map" => map.get("values").map_or(Ok(()), names),
            "fixed" => fixed_size(map),
            "enum" => Ok(()),
            _ => names(&Json::String(t.clone())),
        },
        Some(nested) => names(nested),
        None => Ok(()),
    }
}

fn field_names(field: &Json) -> Result<(), String> {
    let Json::Object(field) = field else {
        return Ok(());
    };
    if let Some(Json::String(name)) = field.get("name") {
        if !is_simple_name(name) {
            return Err(invalid("field name", name));
        }
    }
    field.get("type").map_or(Ok(()), names)
}

fn fixed_size(map: &Map<String, Json>) -> Result<(), String> {
    match map.get("size").and_then(Json::as_u64) {
        Some(size) if size > MAX_FIXED_SIZE => Err(format!(
            "a fixed type of {size} bytes is larger than the {MAX_FIXED_SIZE} accepted"
        )),
        _ => Ok(()),
    }
}

/// A full name: an optional namespace, then `.` and a simple name (a leading `.` means
/// the null namespace).
fn full_name(what: &str, name: &str) -> Result<(), String> {
    dotted(what, name.strip_prefix('.').unwrap_or(name))
}

fn dotted(what: &str, name: &str) -> Result<(), String> {
    if name.split('.').all(is_simple_name) {
        Ok(())
    } else {
        Err(invalid(what, name))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*` (Avro spec, Names).
pub(crate) fn is_simple_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn invalid(what: &str, name: &str) -> String {
    // The name comes from the payload: shown escaped and cut short.
    let shown: String = name.chars().take(64).collect();
    format!(
        "{what} {shown:?} is not an Avro name (letters, digits and `_`, not starting with a digit; \
         namespaces are such names joined by `.`)"
    )
}

/// The values the parsing canonical form (used for the fingerprint) walks into are
/// strings, arrays and objects, and its integers are integers: apache-avro assumes so and
/// panics otherwise, also on unknown attributes it keeps as they were written.
fn canonical_shape(json: &Json) -> Result<(), String> {
    match json {
        Json::String(_) => Ok(()),
        Json::Array(items) => items.iter().try_for_each(canonical_shape),
        Json::Object(map) => {
            let named = matches!(
                map.get("type").and_then(Json::as_str),
                Some("record" | "error" | "enum" | "fixed")
            );
            for (key, value) in map {
                match key.as_str() {
                    "size" | "precision" | "scale" => {
                        let integer = value.as_i64().is_some()
                            || value.as_str().is_some_and(|s| s.parse::<i64>().is_ok());
                        if !integer {
                            return Err(format!("{key:?} must be an integer"));
                        }
                    }
                    "name" if named => {}
                    k if CANONICAL.contains(&k) => canonical_shape(value)
                        .map_err(|_| format!("{key:?} has a value of the wrong type"))?,
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Err("a schema must be a string, an array or an object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> Result<(), String> {
        check(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn names_follow_the_avro_spec() {
        assert!(is_simple_name("diaSource_2"));
        assert!(is_simple_name("_x"));
        for bad in ["", "2x", "a|b", "a.b", "a-b", "é"] {
            assert!(!is_simple_name(bad), "{bad:?}");
        }
        assert!(full_name("name", "lsst.v9_0.alert").is_ok());
        assert!(full_name("name", ".alert").is_ok());
        for bad in ["lss|.v9_0.diaSource", "a..b", "a.", "a.2b", ""] {
            assert!(full_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn real_schemas_pass() {
        let lsst = r#"{"type":"record","name":"alert","namespace":"lsst.v9_0","aliases":["old.alert"],
          "fields":[{"name":"diaSourceId","type":"long","doc":"x","default":{"size":1.5}},
            {"name":"s","type":["null",{"type":"record","name":"diaSource","fields":[
              {"name":"f","type":{"type":"fixed","name":"md5","size":16}},
              {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}},
              {"name":"e","type":{"type":"enum","name":"band","symbols":["g","r"]}},
              {"name":"m","type":{"type":"map","values":{"type":"array","items":"lsst.v9_0.md5"}}}]}]}]}"#;
        checked(lsst).unwrap();
    }

    #[test]
    fn hostile_names_are_refused() {
        for (text, what) in [
            (r#"{"type":"record","name":"lss|.a","fields":[]}"#, "name"),
            (
                r#"{"type":"enum","name":"e","namespace":"a b","symbols":["x"]}"#,
                "namespace",
            ),
            (
                r#"{"type":"fixed","name":"f","aliases":["x|y"],"size":1}"#,
                "alias",
            ),
            (
                r#"{"type":"record","name":"r","fields":[{"name":"a.b","type":"int"}]}"#,
                "field name",
            ),
            (
                r#"{"type":"record","name":"r","fields":[{"name":"a","type":"x|y"}]}"#,
                "type",
            ),
            (r#"{"type":"array","items":{"type":"q q"}}"#, "type"),
            (
                r#"{"type":"map","values":{"type":"record","name":"1","fields":[]}}"#,
                "name",
            ),
        ] {
            let err = checked(text).unwrap_err();
            assert!(err.starts_with(what), "{text}: {err}");
        }
    }

    #[test]
    fn reserved_keys_of_the_wrong_type_are_refused() {
        for text in [
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":"int","size":"x"}]}"#,
            r#"{"type":"fixed","name":"f","size":4,"items":5}"#,
            r#"{"type":"string","precision":1.5}"#,
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":"int","order":7}]}"#,
            r#"{"type":"fixed","name":"f","size":99999999999}"#,
            "5",
        ] {
            assert!(checked(text).is_err(), "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}\"int\"{}", "[".repeat(100), "]".repeat(100));
        assert!(checked(&deep).unwrap_err().contains("deeper"));
    }
}
