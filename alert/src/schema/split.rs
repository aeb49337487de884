//! Combining split schema files (one named type per `.avsc`, referring to each other by
//! name, as LSST, ZTF and LS4 publish them) into one self-contained schema.

use std::collections::{HashMap, HashSet};

use apache_avro::schema::Schema;
use serde_json::{Map, Value as Json};

use crate::{Error, Result};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Combines the JSON texts of split schema files into one schema whose root is the record
/// named `root` (full name like `lsst.v11_0.alert`, or just `alert`).
///
/// Files may come in any order: each referenced named type is inlined at its first use,
/// and later uses stay references, as the Avro specification requires. Unreferenced files
/// (e.g. LSST 11.0's `ssObject`) are ignored.
pub fn combine_split_schemas<S: AsRef<str>>(files: &[S], root: &str) -> Result<Schema> {
    let bad = |reason: String| Error::Schema { reason };
    let mut defs: HashMap<String, Json> = HashMap::new();
    for (i, text) in files.iter().enumerate() {
        let json: Json = serde_json::from_str(text.as_ref())
            .map_err(|e| bad(format!("schema file {i}: {e}")))?;
        let name = full_name(&json, None)
            .ok_or_else(|| bad(format!("schema file {i}: not a named type")))?;
        defs.insert(name, json);
    }
    let root_name = defs
        .keys()
        .filter(|k| *k == root || k.rsplit('.').next() == Some(root))
        .min()
        .cloned()
        .ok_or_else(|| bad(format!("no schema file defines {root:?}")))?;
    let mut root_json = defs.get(&root_name).cloned().unwrap_or(Json::Null);
    let mut defined = HashSet::from([root_name.clone()]);
    let namespace = namespace_of(&root_name);
    inline(&mut root_json, namespace.as_deref(), &defs, &mut defined, 0)?;
    super::parse_checked(&root_json)
}

fn namespace_of(full: &str) -> Option<String> {
    full.rsplit_once('.').map(|(ns, _)| ns.to_owned())
}

fn full_name(json: &Json, enclosing: Option<&str>) -> Option<String> {
    let name = json.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    match json.get("namespace").and_then(Json::as_str).or(enclosing) {
        Some(ns) if !ns.is_empty() => Some(format!("{ns}.{name}")),
        _ => Some(name.to_owned()),
    }
}

fn inline(
    json: &mut Json,
    ns: Option<&str>,
    defs: &HashMap<String, Json>,
    defined: &mut HashSet<String>,
    depth: usize,
) -> Result<()> {
    if depth > 64 {
        return Err(Error::Schema {
            reason: "split schemas nest deeper than 64 levels".into(),
        });
    }
    match json {
        Json::String(name) if !PRIMITIVES.contains(&name.as_str()) => {
            let full = if name.contains('.') {
                name.clone()
            } else {
                ns.map_or(name.clone(), |ns| format!("{ns}.{name}"))
            };
            if defined.insert(full.clone()) {
                if let Some(def) = defs.get(&full) {
                    let mut def = def.clone();
                    let inner_ns = namespace_of(&full);
                    inline_type_body(&mut def, inner_ns.as_deref(), defs, defined, depth + 1)?;
                    *json = def;
                }
            }
        }
        Json::Array(branches) => {
            for b in branches {
                inline(b, ns, defs, defined, depth + 1)?;
            }
        }
        Json::Object(obj) => {
            let inner_ns = full_name(&Json::Object(obj.clone()), ns).and_then(|n| namespace_of(&n));
            if let Some(name) = obj
                .contains_key("name")
                .then(|| full_name(&Json::Object(obj.clone()), ns))
                .flatten()
            {
                defined.insert(name);
            }
            let scope = inner_ns.as_deref().or(ns);
            inline_object(obj, scope, defs, defined, depth)?;
        }
        _ => {}
    }
    Ok(())
}

fn inline_type_body(
    def: &mut Json,
    ns: Option<&str>,
    defs: &HashMap<String, Json>,
    defined: &mut HashSet<String>,
    depth: usize,
) -> Result<()> {
    if let Json::Object(obj) = def {
        inline_object(obj, ns, defs, defined, depth)?;
    }
    Ok(())
}

fn inline_object(
    obj: &mut Map<String, Json>,
    ns: Option<&str>,
    defs: &HashMap<String, Json>,
    defined: &mut HashSet<String>,
    depth: usize,
) -> Result<()> {
    if let Some(Json::Array(fields)) = obj.get_mut("fields") {
        for field in fields {
            if let Some(t) = field.get_mut("type") {
                inline(t, ns, defs, defined, depth + 1)?;
            }
        }
    }
    for key in ["items", "values"] {
        if let Some(t) = obj.get_mut(key) {
            inline(t, ns, defs, defined, depth + 1)?;
        }
    }
    if obj.get("type").is_some_and(|t| {
        !t.is_string()
            || !matches!(
                t.as_str(),
                Some("record" | "error" | "enum" | "fixed" | "array" | "map")
            )
    }) {
        if let Some(t) = obj.get_mut("type") {
            inline(t, ns, defs, defined, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_types_are_inlined_once_in_any_file_order() {
        let inner = r#"{"type":"record","name":"src","namespace":"t.v1","fields":[{"name":"ra","type":"double"}]}"#;
        let root = r#"{"type":"record","name":"alert","namespace":"t.v1","fields":[
            {"name":"a","type":"t.v1.src"},
            {"name":"b","type":["null",{"type":"array","items":"t.v1.src"}]},
            {"name":"c","type":["null","src"]}]}"#;
        for files in [[inner, root], [root, inner]] {
            let s = combine_split_schemas(&files, "t.v1.alert").unwrap();
            assert_eq!(s.name().unwrap().fullname(None), "t.v1.alert");
            assert_eq!(s.canonical_form().matches("\"fields\"").count(), 2);
        }
        assert!(combine_split_schemas(&[inner], "alert").is_err());
        assert!(combine_split_schemas(&["{"], "alert").is_err());
    }
}
