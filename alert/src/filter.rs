//! Composable alert filters: object ids, cones, and field predicates.
//!
//! # Predicates
//!
//! Text like `candidate.magpsf < 18.5 && candidate.ndethist >= 3`,
//! `diaSource.psfFlux > 1e4`, `candidate.isdiffpos == "t"`, combined with `&&`, `||`, `!`
//! and parentheses; operators `==` `!=` `<` `<=` `>` `>=`, plus `is null` / `is not null`.
//! Paths look through nullable unions.
//!
//! Null rules: a comparison whose field is null, absent, NaN, or of a kind the literal
//! cannot be compared with is **false** — for every operator, `!=` included — so
//! `!(x == 1)` and `x != 1` differ on a null `x`. `is null` is true for null and for
//! absent fields. Integer fields compared with integer literals are compared exactly as
//! `i64` (never through `f64`); integer–float comparisons are exact too. Strings compare
//! byte-wise; booleans only with `==`/`!=`.
//!
//! [`Filter::check_schema`] rejects unknown fields and impossible comparisons up front, so
//! a gateway can answer INVALID_ARGUMENT naming the field.

mod cone;
mod expr;
mod parse;

use std::collections::HashSet;

use apache_avro::schema::Schema;
use apache_avro::types::Value;

pub use self::cone::{angular_distance, Cone};
pub use self::expr::{Expr, Literal, Op};
use crate::path::{FieldPath, SchemaNames};
use crate::{Alert, MeshKey, Registry, Result};

/// A parsed field predicate, keeping its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    text: String,
    expr: Expr,
}

impl Predicate {
    /// Parses predicate text; errors give the byte offset, column and what was expected.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(Predicate {
            text: text.to_owned(),
            expr: parse::parse(text)?,
        })
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The field paths it reads, each once, in order of appearance.
    pub fn fields(&self) -> Vec<&FieldPath> {
        let mut out = Vec::new();
        self.expr.fields(&mut out);
        out
    }

    /// Evaluates on an alert value.
    pub fn eval(&self, value: &Value) -> bool {
        self.expr.eval(value)
    }
}

/// What a filter looks at: the alert's value, mesh key and position.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The decoded alert.
    pub value: &'a Value,
    /// Its mesh key, if one could be extracted.
    pub key: Option<MeshKey>,
    /// Its `(ra, dec)` in degrees, if its family has a position.
    pub position: Option<(f64, f64)>,
}

impl<'a> Subject<'a> {
    /// Finds the family of `alert` in `registry` and extracts its key and position.
    pub fn new(alert: &'a Alert, registry: &Registry) -> Self {
        let family = match alert.schema() {
            Some(s) => registry.family_for_schema(s.schema()),
            None => registry.family_for_value(alert.value()),
        };
        Subject {
            value: alert.value(),
            key: family.and_then(|f| registry.extract_key(f, alert.value()).ok()),
            position: family.and_then(|f| f.position(alert.value())),
        }
    }
}

/// A composable filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Matches every alert.
    All,
    /// Alerts whose mesh key is one of these.
    ObjectIds(HashSet<MeshKey>),
    /// Alerts positioned inside the cone.
    Cone(Cone),
    /// Alerts satisfying the predicate.
    Predicate(Predicate),
    /// Every part must match (empty: matches all).
    And(Vec<Filter>),
    /// Some part must match (empty: matches none).
    Or(Vec<Filter>),
    /// The part must not match.
    Not(Box<Filter>),
}

impl Filter {
    /// Parses predicate text into a filter.
    pub fn predicate(text: &str) -> Result<Filter> {
        Predicate::parse(text).map(Filter::Predicate)
    }

    /// A cone filter (`ra`, `dec`, `radius` in degrees).
    pub fn cone(ra: f64, dec: f64, radius: f64) -> Result<Filter> {
        Cone::new(ra, dec, radius).map(Filter::Cone)
    }

    /// Mesh keys parsed and validated against `registry`.
    pub fn object_ids<S: AsRef<str>>(keys: &[S], registry: &Registry) -> Result<Filter> {
        let keys = keys
            .iter()
            .map(|k| registry.parse_key(k.as_ref()))
            .collect::<Result<_>>()?;
        Ok(Filter::ObjectIds(keys))
    }

    /// The field paths its predicates read, each once, in order of appearance (object-id
    /// and cone filters read the subject's key and position, not fields).
    pub fn fields(&self) -> Vec<&FieldPath> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a FieldPath>) {
        match self {
            Filter::Predicate(p) => p.expr.fields(out),
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter().for_each(|f| f.collect_fields(out))
            }
            Filter::Not(inner) => inner.collect_fields(out),
            Filter::All | Filter::ObjectIds(_) | Filter::Cone(_) => {}
        }
    }

    /// Whether the subject passes.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        match self {
            Filter::All => true,
            Filter::ObjectIds(keys) => subject.key.as_ref().is_some_and(|k| keys.contains(k)),
            Filter::Cone(cone) => subject
                .position
                .is_some_and(|(ra, dec)| cone.contains(ra, dec)),
            Filter::Predicate(p) => p.eval(subject.value),
            Filter::And(parts) => parts.iter().all(|f| f.matches(subject)),
            Filter::Or(parts) => parts.iter().any(|f| f.matches(subject)),
            Filter::Not(inner) => !inner.matches(subject),
        }
    }

    /// Convenience: builds the [`Subject`] of `alert` and tests it.
    pub fn matches_alert(&self, alert: &Alert, registry: &Registry) -> bool {
        self.matches(&Subject::new(alert, registry))
    }

    /// Checks every predicate against the writer schema: an unknown field yields
    /// [`crate::Error::UnknownField`] naming it, an impossible comparison
    /// [`crate::Error::FilterType`].
    pub fn check_schema(&self, schema: &Schema) -> Result<()> {
        let names = SchemaNames::new(schema);
        self.check_with(schema, &names)
    }

    fn check_with(&self, schema: &Schema, names: &SchemaNames<'_>) -> Result<()> {
        match self {
            Filter::Predicate(p) => p.expr.check(schema, names),
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter().try_for_each(|f| f.check_with(schema, names))
            }
            Filter::Not(inner) => inner.check_with(schema, names),
            Filter::All | Filter::ObjectIds(_) | Filter::Cone(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
