//! The basic keywords of JSON Schema, for checking published JSON payloads: `type`,
//! `required`, `properties` and `items`, nested to any depth. Other keywords are ignored
//! (a schema using them still loads; the payload is checked against the keywords above).

use serde_json::Value;

/// A JSON type name of the `type` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Object,
    Array,
    String,
    Number,
    Integer,
    Boolean,
    Null,
}

impl Type {
    fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "number" => Type::Number,
            "integer" => Type::Integer,
            "boolean" => Type::Boolean,
            "null" => Type::Null,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Number => "number",
            Type::Integer => "integer",
            Type::Boolean => "boolean",
            Type::Null => "null",
        }
    }

    fn admits(self, v: &Value) -> bool {
        match self {
            Type::Object => v.is_object(),
            Type::Array => v.is_array(),
            Type::String => v.is_string(),
            Type::Number => v.is_number(),
            Type::Integer => {
                v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            Type::Boolean => v.is_boolean(),
            Type::Null => v.is_null(),
        }
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    }
}

/// A loaded schema: the keywords this module checks, at every level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonSchema {
    /// Empty means any type.
    types: Vec<Type>,
    required: Vec<String>,
    properties: Vec<(String, JsonSchema)>,
    items: Option<Box<JsonSchema>>,
}

/// Schemas nest at most this deep (a hostile or broken file must not exhaust the stack).
const MAX_DEPTH: usize = 64;

impl JsonSchema {
    /// Parses a JSON Schema document. Errors name the keyword's path.
    pub fn parse(text: &str) -> Result<JsonSchema, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        JsonSchema::from_value(&doc, "", 0)
    }

    fn from_value(v: &Value, at: &str, depth: usize) -> Result<JsonSchema, String> {
        let here = if at.is_empty() { "the schema" } else { at };
        if depth > MAX_DEPTH {
            return Err(format!("{here}: nested more than {MAX_DEPTH} levels"));
        }
        let obj = match v {
            // `true` admits anything.
            Value::Bool(true) => return Ok(JsonSchema::default()),
            Value::Object(o) => o,
            _ => return Err(format!("{here}: a schema must be a JSON object")),
        };
        let mut out = JsonSchema::default();
        match obj.get("type") {
            None => {}
            Some(Value::String(t)) => out.types.push(parse_type(t, here)?),
            Some(Value::Array(ts)) => {
                for t in ts {
                    let t = t
                        .as_str()
                        .ok_or_else(|| format!("{here}: \"type\" entries must be strings"))?;
                    out.types.push(parse_type(t, here)?);
                }
            }
            Some(_) => return Err(format!("{here}: \"type\" must be a string or an array")),
        }
        if let Some(req) = obj.get("required") {
            let req = req
                .as_array()
                .ok_or_else(|| format!("{here}: \"required\" must be an array of names"))?;
            for r in req {
                let r = r
                    .as_str()
                    .ok_or_else(|| format!("{here}: \"required\" must be an array of names"))?;
                out.required.push(r.to_owned());
            }
        }
        if let Some(props) = obj.get("properties") {
            let props = props
                .as_object()
                .ok_or_else(|| format!("{here}: \"properties\" must be an object"))?;
            for (name, p) in props {
                let path = join(at, name);
                out.properties
                    .push((name.clone(), JsonSchema::from_value(p, &path, depth + 1)?));
            }
        }
        if let Some(items) = obj.get("items") {
            let path = format!("{}[]", if at.is_empty() { "" } else { at });
            out.items = Some(Box::new(JsonSchema::from_value(items, &path, depth + 1)?));
        }
        Ok(out)
    }

    /// Checks `value`; the error names the first field that does not match, e.g.
    /// `class.score: expected number, found string`.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        self.check_at(value, "")
    }

    fn check_at(&self, v: &Value, at: &str) -> Result<(), String> {
        let here = if at.is_empty() { "the document" } else { at };
        if !self.types.is_empty() && !self.types.iter().any(|t| t.admits(v)) {
            let want: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
            return Err(format!(
                "{here}: expected {}, found {}",
                want.join(" or "),
                type_of(v)
            ));
        }
        if let Value::Object(o) = v {
            for r in &self.required {
                if !o.contains_key(r) {
                    return Err(format!("{}: required field is missing", join(at, r)));
                }
            }
            for (name, schema) in &self.properties {
                if let Some(field) = o.get(name) {
                    schema.check_at(field, &join(at, name))?;
                }
            }
        }
        if let (Value::Array(a), Some(items)) = (v, &self.items) {
            for (i, item) in a.iter().enumerate() {
                items.check_at(item, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

fn parse_type(name: &str, here: &str) -> Result<Type, String> {
    Type::parse(name).ok_or_else(|| {
        format!(
            "{here}: unknown type {}; expected object, array, string, number, integer, boolean or null",
            crate::echo::quoted(name)
        )
    })
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLASS: &str = r#"{
        "type": "object",
        "required": ["class", "score"],
        "properties": {
            "class": {"type": "string"},
            "score": {"type": "number"},
            "n": {"type": "integer"},
            "fit": {"type": ["object", "null"], "properties": {"rate": {"type": "number"}}},
            "bands": {"type": "array", "items": {"type": "string"}}
        },
        "additionalProperties": false
    }"#;

    #[test]
    fn matching_documents_pass() {
        let s = JsonSchema::parse(CLASS).unwrap();
        s.check(&json!({"class": "SN", "score": 0.9})).unwrap();
        s.check(&json!({"class": "SN", "score": 1, "n": 3, "fit": null, "bands": ["g", "r"]}))
            .unwrap();
        s.check(&json!({"class": "SN", "score": 1, "fit": {"rate": 0.1}}))
            .unwrap();
    }

    #[test]
    fn mismatches_name_the_field() {
        let s = JsonSchema::parse(CLASS).unwrap();
        for (doc, needle) in [
            (json!([1]), "the document: expected object, found array"),
            (json!({"class": "SN"}), "score: required field is missing"),
            (
                json!({"class": "SN", "score": "high"}),
                "score: expected number, found string",
            ),
            (
                json!({"class": "SN", "score": 1, "n": 1.5}),
                "n: expected integer, found number",
            ),
            (
                json!({"class": "SN", "score": 1, "fit": {"rate": "x"}}),
                "fit.rate: expected number, found string",
            ),
            (
                json!({"class": "SN", "score": 1, "bands": ["g", 2]}),
                "bands[1]: expected string, found number",
            ),
        ] {
            let err = s.check(&doc).unwrap_err();
            assert_eq!(err, needle, "{doc}");
        }
    }

    #[test]
    fn malformed_schemas_say_where() {
        for (text, needle) in [
            ("[]", "the schema: a schema must be a JSON object"),
            (r#"{"type": "float"}"#, "unknown type"),
            (r#"{"required": "a"}"#, "\"required\" must be an array"),
            (
                r#"{"properties": {"a": {"type": 3}}}"#,
                "a: \"type\" must be a string",
            ),
            ("{", "not JSON"),
        ] {
            let err = JsonSchema::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let deep = format!(
            "{}{}",
            r#"{"items":"#.repeat(100),
            "{}".to_owned() + &"}".repeat(100)
        );
        assert!(JsonSchema::parse(&deep).unwrap_err().contains("nested"));
    }
}
