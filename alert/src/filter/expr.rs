//! Field predicates: evaluation on decoded alerts and checking against schemas.

use std::cmp::Ordering;

use apache_avro::schema::Schema;
use apache_avro::types::Value;

use crate::path::{FieldPath, SchemaNames};
use crate::{Error, Result};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// An integer, compared exactly with int and long fields.
    Int(i64),
    /// A finite float.
    Float(f64),
    /// A string, compared with string, enum and uuid fields.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
}

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `path op literal`.
    Compare {
        /// The field.
        path: FieldPath,
        /// The operator.
        op: Op,
        /// The literal.
        literal: Literal,
    },
    /// `path is null` (`negated`: `path is not null`).
    IsNull {
        /// The field.
        path: FieldPath,
        /// Whether this is `is not null`.
        negated: bool,
    },
    /// All must hold.
    And(Vec<Expr>),
    /// Any must hold.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
}

impl Op {
    fn test(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        }
    }
}

impl Expr {
    /// Evaluates on a decoded alert (see [`super::Filter`] for the null rules).
    pub fn eval(&self, alert: &Value) -> bool {
        match self {
            Expr::Compare { path, op, literal } => match path.lookup(alert) {
                Some(v) => compare(v, literal).is_some_and(|ord| op.test(ord)),
                None => false,
            },
            Expr::IsNull { path, negated } => {
                let null = matches!(path.lookup(alert), None | Some(Value::Null));
                null != *negated
            }
            Expr::And(items) => items.iter().all(|e| e.eval(alert)),
            Expr::Or(items) => items.iter().any(|e| e.eval(alert)),
            Expr::Not(inner) => !inner.eval(alert),
        }
    }

    /// Appends the field paths it reads to `out`, skipping those already there.
    pub fn fields<'a>(&'a self, out: &mut Vec<&'a FieldPath>) {
        let mut seen: std::collections::HashSet<&FieldPath> = out.iter().copied().collect();
        self.collect_fields(out, &mut seen);
    }

    fn collect_fields<'a>(
        &'a self,
        out: &mut Vec<&'a FieldPath>,
        seen: &mut std::collections::HashSet<&'a FieldPath>,
    ) {
        match self {
            Expr::Compare { path, .. } | Expr::IsNull { path, .. } => {
                if seen.insert(path) {
                    out.push(path);
                }
            }
            Expr::And(items) | Expr::Or(items) => {
                items.iter().for_each(|e| e.collect_fields(out, seen))
            }
            Expr::Not(inner) => inner.collect_fields(out, seen),
        }
    }

    /// Checks every field path and literal type against `schema`.
    pub fn check(&self, schema: &Schema, names: &SchemaNames<'_>) -> Result<()> {
        match self {
            Expr::Compare { path, op, literal } => {
                let leaf = path.lookup_schema(schema, names)?;
                check_literal(path, *op, literal, leaf)
            }
            Expr::IsNull { path, .. } => path.lookup_schema(schema, names).map(|_| ()),
            Expr::And(items) | Expr::Or(items) => {
                items.iter().try_for_each(|e| e.check(schema, names))
            }
            Expr::Not(inner) => inner.check(schema, names),
        }
    }
}

/// Orders a field value against a literal; `None` when they cannot be compared (null,
/// NaN, or different kinds).
fn compare(value: &Value, literal: &Literal) -> Option<Ordering> {
    let int = match value {
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => Some(i64::from(*n)),
        Value::Long(n)
        | Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => Some(*n),
        _ => None,
    };
    match (value, literal) {
        (_, Literal::Int(l)) if int.is_some() => int.map(|i| i.cmp(l)),
        (_, Literal::Float(l)) if int.is_some() => int.and_then(|i| int_vs_float(i, *l)),
        (Value::Float(x), Literal::Int(l)) => float_vs_int(f64::from(*x), *l),
        (Value::Double(x), Literal::Int(l)) => float_vs_int(*x, *l),
        (Value::Float(x), Literal::Float(l)) => f64::from(*x).partial_cmp(l),
        (Value::Double(x), Literal::Float(l)) => x.partial_cmp(l),
        (Value::String(s) | Value::Enum(_, s), Literal::Str(l)) => Some(s.as_str().cmp(l)),
        (Value::Uuid(u), Literal::Str(l)) => Some(u.to_string().as_str().cmp(l)),
        (Value::Boolean(b), Literal::Bool(l)) => Some(b.cmp(l)),
        _ => None,
    }
}

/// Exact comparison of an integer with a float (no rounding of large integers).
fn int_vs_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // i64 range is [-2^63, 2^63): both bounds are exact in f64.
    if f >= 9_223_372_036_854_775_808.0 {
        return Some(Ordering::Less);
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // `t` is integral and in range, so the cast is exact.
    match i.cmp(&(t as i64)) {
        Ordering::Equal if f > t => Some(Ordering::Less),
        Ordering::Equal if f < t => Some(Ordering::Greater),
        ord => Some(ord),
    }
}

fn float_vs_int(f: f64, i: i64) -> Option<Ordering> {
    int_vs_float(i, f).map(Ordering::reverse)
}

fn check_literal(path: &FieldPath, op: Op, literal: &Literal, leaf: &Schema) -> Result<()> {
    let numeric = matches!(
        leaf,
        Schema::Int
            | Schema::Long
            | Schema::Float
            | Schema::Double
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
    );
    let ok = match literal {
        Literal::Int(_) | Literal::Float(_) => numeric,
        Literal::Str(_) => matches!(leaf, Schema::String | Schema::Enum(_) | Schema::Uuid),
        Literal::Bool(_) => matches!(leaf, Schema::Boolean) && matches!(op, Op::Eq | Op::Ne),
    };
    if ok {
        return Ok(());
    }
    let kind = match literal {
        Literal::Int(_) | Literal::Float(_) => "a number",
        Literal::Str(_) => "a string",
        Literal::Bool(_) => "a boolean (with == or != only)",
    };
    Err(Error::FilterType {
        field: path.to_string(),
        reason: format!("it cannot be compared with {kind}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_float_comparison_is_exact_for_large_ids() {
        let big = 9_007_199_254_740_993_i64; // 2^53 + 1: not representable as f64
        assert_eq!(
            int_vs_float(big, 9_007_199_254_740_992.0),
            Some(Ordering::Greater)
        );
        assert_eq!(int_vs_float(3, 3.5), Some(Ordering::Less));
        assert_eq!(int_vs_float(-3, -3.5), Some(Ordering::Greater));
        assert_eq!(int_vs_float(i64::MAX, 9.3e18), Some(Ordering::Less));
        assert_eq!(int_vs_float(i64::MIN, -9.3e18), Some(Ordering::Greater));
        assert_eq!(int_vs_float(1, f64::NAN), None);
    }
}
