//! Dotted field paths (`candidate.magpsf`, `diaSource.ra`) into decoded alerts and schemas.
//!
//! A path names a chain of record fields (or map keys). Nullable unions are looked through
//! at every step: `diaObject.diaObjectId` reaches the id inside `["null", diaObject]`, and a
//! null anywhere along the way makes the whole path null.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use apache_avro::schema::{Name, Schema};
use apache_avro::types::Value;

use crate::{Error, Result};

/// A parsed dotted path such as `candidate.magpsf`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses `a.b.c`; segments must be non-empty and made of `[A-Za-z0-9_]`.
    pub fn parse(text: &str) -> Result<Self> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        let valid =
            |s: &String| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if text.is_empty() || !segments.iter().all(valid) {
            return Err(Error::InvalidPath {
                path: text.chars().take(200).collect(),
            });
        }
        Ok(FieldPath {
            text: text.to_owned(),
            segments,
        })
    }

    /// The segments of the path, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Looks the path up in a decoded value; `None` when a field does not exist.
    ///
    /// The result has unions unwrapped; a null on the way yields `Some(&Value::Null)`.
    pub fn lookup<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        let mut current = unwrap_union(value);
        for segment in &self.segments {
            current = match current {
                Value::Null => return Some(current),
                Value::Record(fields) => fields
                    .iter()
                    .find(|(name, _)| name == segment)
                    .map(|(_, v)| unwrap_union(v))?,
                Value::Map(entries) => unwrap_union(entries.get(segment)?),
                _ => return None,
            };
        }
        Some(current)
    }

    /// Looks the path up in a schema and returns the leaf schema with nullable unions
    /// unwrapped (a union of several non-null types is returned as is).
    ///
    /// Fails with [`Error::UnknownField`] naming the first segment that does not exist.
    pub fn lookup_schema<'s>(
        &self,
        schema: &'s Schema,
        names: &SchemaNames<'s>,
    ) -> Result<&'s Schema> {
        let mut current = names.deref(schema);
        for (i, segment) in self.segments.iter().enumerate() {
            current = match non_null(current, names) {
                Schema::Record(record) => record
                    .fields
                    .iter()
                    .find(|f| &f.name == segment)
                    .map(|f| names.deref(&f.schema)),
                Schema::Map(map) => Some(names.deref(&map.types)),
                _ => None,
            }
            .ok_or_else(|| Error::UnknownField {
                field: self.segments[..=i].join("."),
            })?;
        }
        Ok(non_null(current, names))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for FieldPath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        FieldPath::parse(s)
    }
}

/// Named types of a schema, to follow references (`"lsst.v9_0.diaSource"`) while walking it.
#[derive(Debug, Default)]
pub struct SchemaNames<'s> {
    names: HashMap<Name, &'s Schema>,
}

impl<'s> SchemaNames<'s> {
    /// Collects every named type defined in `schema`.
    pub fn new(schema: &'s Schema) -> Self {
        let mut names = HashMap::new();
        collect_names(schema, &mut names);
        SchemaNames { names }
    }

    /// Follows a reference to its definition; other schemas are returned unchanged.
    pub fn deref(&self, schema: &'s Schema) -> &'s Schema {
        match schema {
            Schema::Ref { name } => self.names.get(name).copied().unwrap_or(schema),
            other => other,
        }
    }
}

fn collect_names<'s>(schema: &'s Schema, names: &mut HashMap<Name, &'s Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.clone(), schema);
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema);
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema);
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

/// The single non-null branch of a nullable union, dereferenced; other schemas unchanged.
pub(crate) fn non_null<'s>(schema: &'s Schema, names: &SchemaNames<'s>) -> &'s Schema {
    let schema = names.deref(schema);
    if let Schema::Union(u) = schema {
        let mut branches = u.variants().iter().filter(|v| !matches!(v, Schema::Null));
        if let (Some(only), None) = (branches.next(), branches.next()) {
            return names.deref(only);
        }
    }
    schema
}

/// Strips union wrappers from a value.
pub(crate) fn unwrap_union(mut value: &Value) -> &Value {
    while let Value::Union(_, inner) = value {
        value = inner;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Schema, Value) {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"a","namespace":"t","fields":[
              {"name":"id","type":"long"},
              {"name":"src","type":{"type":"record","name":"s","fields":[{"name":"ra","type":"double"}]}},
              {"name":"obj","type":["null","s"]}]}"#,
        )
        .unwrap();
        let src = Value::Record(vec![("ra".into(), Value::Double(1.5))]);
        let value = Value::Record(vec![
            ("id".into(), Value::Long(7)),
            ("src".into(), src.clone()),
            ("obj".into(), Value::Union(0, Box::new(Value::Null))),
        ]);
        (schema, value)
    }

    #[test]
    fn lookup_goes_through_records_and_nullable_unions() {
        let (_, v) = sample();
        let p = |s: &str| FieldPath::parse(s).unwrap();
        assert_eq!(p("id").lookup(&v), Some(&Value::Long(7)));
        assert_eq!(p("src.ra").lookup(&v), Some(&Value::Double(1.5)));
        assert_eq!(p("obj.ra").lookup(&v), Some(&Value::Null));
        assert_eq!(p("nope").lookup(&v), None);
        assert_eq!(p("id.x").lookup(&v), None);
    }

    #[test]
    fn schema_lookup_follows_references_and_names_unknown_fields() {
        let (s, _) = sample();
        let names = SchemaNames::new(&s);
        let p = |t: &str| FieldPath::parse(t).unwrap();
        assert_eq!(
            p("obj.ra").lookup_schema(&s, &names).unwrap(),
            &Schema::Double
        );
        let err = p("obj.dec").lookup_schema(&s, &names).unwrap_err();
        assert_eq!(
            err,
            Error::UnknownField {
                field: "obj.dec".into()
            }
        );
    }

    #[test]
    fn malformed_paths_are_rejected() {
        for bad in ["", ".a", "a.", "a..b", "a b", "a.$"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }
}
