//! Pure SQL building: a query's columns, a client's filter, cone and ids become one
//! SELECT with bound parameters. Only identifiers from the configuration (checked and
//! quoted) and fixed text are written into the statement; every value a client sends is
//! a parameter.

use alertmesh_alert::filter::{Cone, Expr, Literal, Op};
use tokio_postgres::types::ToSql;

use super::OrderValue;
use crate::config::{quote_identifier, QueryConfig, QuerySource};
use crate::error::{Error, Result};

/// How a column is read from PostgreSQL and written as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    /// Any other type, selected as `::text` (numeric, timestamps, json...).
    AsText,
}

impl Kind {
    pub(crate) fn of(ty: &tokio_postgres::types::Type) -> Kind {
        use tokio_postgres::types::Type;
        match *ty {
            Type::BOOL => Kind::Bool,
            Type::INT2 => Kind::Int2,
            Type::INT4 => Kind::Int4,
            Type::INT8 => Kind::Int8,
            Type::FLOAT4 => Kind::Float4,
            Type::FLOAT8 => Kind::Float8,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Kind::Text,
            _ => Kind::AsText,
        }
    }

    fn integer(self) -> bool {
        matches!(self, Kind::Int2 | Kind::Int4 | Kind::Int8)
    }

    fn float(self) -> bool {
        matches!(self, Kind::Float4 | Kind::Float8)
    }

    fn textual(self) -> bool {
        matches!(self, Kind::Text | Kind::AsText)
    }
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Ints(Vec<i64>),
    Texts(Vec<String>),
}

impl Param {
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Int(v) => v,
            Param::Float(v) => v,
            Param::Text(v) => v,
            Param::Bool(v) => v,
            Param::Ints(v) => v,
            Param::Texts(v) => v,
        }
    }

    /// Its PostgreSQL type (every parameter is cast to it in the statement's text).
    pub(crate) fn sql_type(&self) -> tokio_postgres::types::Type {
        use tokio_postgres::types::Type;
        match self {
            Param::Int(_) => Type::INT8,
            Param::Float(_) => Type::FLOAT8,
            Param::Text(_) => Type::TEXT,
            Param::Bool(_) => Type::BOOL,
            Param::Ints(_) => Type::INT8_ARRAY,
            Param::Texts(_) => Type::TEXT_ARRAY,
        }
    }
}

/// A query's columns as PostgreSQL reports them: the shape of every statement on it.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// Declared columns with their kinds, in declared order.
    pub(crate) columns: Vec<(String, Kind)>,
}

impl Shape {
    fn kind(&self, column: &str) -> Option<Kind> {
        self.columns
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, k)| *k)
    }
}

/// What a client asked for, parsed.
#[derive(Debug, Default)]
pub(crate) struct Selection<'a> {
    pub(crate) filter: Option<&'a Expr>,
    pub(crate) cone: Option<Cone>,
    /// Key values (the part after `<namespace>:`).
    pub(crate) ids: Option<Vec<String>>,
}

/// A statement and its parameters.
#[derive(Debug)]
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) params: Vec<Param>,
    /// Rows it is expected to return at most, to size their buffer (capped).
    pub(crate) rows: usize,
}

/// `FROM` of every statement on `q`.
fn source(q: &QueryConfig) -> String {
    match &q.source {
        QuerySource::Table(parts) => parts
            .iter()
            .map(|p| quote_identifier(p))
            .collect::<Vec<_>>()
            .join("."),
        QuerySource::Select(s) => format!("({s}) AS \"_alertmesh_q\""),
    }
}

/// The statement that describes `q`'s columns (prepared, never run).
pub(crate) fn describe(q: &QueryConfig) -> String {
    let cols: Vec<String> = q.columns.iter().map(|c| quote_identifier(c)).collect();
    format!("SELECT {} FROM {} LIMIT 0", cols.join(", "), source(q))
}

fn select_list(shape: &Shape) -> String {
    shape
        .columns
        .iter()
        .map(|(c, k)| match k {
            Kind::AsText => format!("{}::text", quote_identifier(c)),
            _ => quote_identifier(c),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The type name an order column of type `ty` is cast back to from its text form; `None`
/// for a type that cannot order a query. From this fixed list, never from the database.
pub(crate) fn order_type(ty: &tokio_postgres::types::Type) -> Option<&'static str> {
    use tokio_postgres::types::Type;
    Some(match *ty {
        Type::TEXT => "text",
        Type::VARCHAR => "varchar",
        Type::TIMESTAMP => "timestamp",
        Type::TIMESTAMPTZ => "timestamptz",
        Type::DATE => "date",
        Type::NUMERIC => "numeric",
        Type::UUID => "uuid",
        _ => return None,
    })
}

/// The order column as a reference to the source's column: qualified, so `ORDER BY`
/// never means the select list's text form of it (`"ts"::text` is an output column named
/// `ts` too, and a bare name in `ORDER BY` is an output column first).
fn order_column(q: &QueryConfig) -> String {
    let relation = match &q.source {
        QuerySource::Table(parts) => parts.last().map_or(String::new(), |p| quote_identifier(p)),
        QuerySource::Select(_) => "\"_alertmesh_q\"".to_owned(),
    };
    format!("{relation}.{}", quote_identifier(&q.order))
}

/// `value` as a parameter compared with the order column of type `order_type`.
fn order_param(b: &mut Builder, order_type: Option<&'static str>, value: &OrderValue) -> String {
    match (value, order_type) {
        (OrderValue::Int(i), _) => format!("{}::int8", b.param(Param::Int(*i))),
        (OrderValue::Text(t), ty) => format!(
            "{}::text::{}",
            b.param(Param::Text(t.clone())),
            ty.unwrap_or("text")
        ),
    }
}

/// Rows of `q` matching `sel` with order value after `after`, in order, at most `limit`.
pub(crate) fn rows(
    q: &QueryConfig,
    shape: &Shape,
    sel: &Selection<'_>,
    order_type: Option<&'static str>,
    after: Option<&OrderValue>,
    limit: i64,
) -> Result<Statement> {
    let mut b = Builder::default();
    let order = order_column(q);
    let mut conds = Vec::new();
    if let Some(after) = after {
        let p = order_param(&mut b, order_type, after);
        conds.push(format!("{order} > {p}"));
    }
    if let Some(expr) = sel.filter {
        conds.push(b.expr(q, shape, expr)?);
    }
    if let Some(cone) = &sel.cone {
        conds.push(b.cone(q, cone)?);
    }
    if let Some(ids) = &sel.ids {
        conds.push(b.ids(q, shape, ids)?);
    }
    let mut sql = format!("SELECT {} FROM {}", select_list(shape), source(q));
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let p = b.param(Param::Int(limit));
    sql.push_str(&format!(" ORDER BY {order} LIMIT {p}::int8"));
    // Each literal of the filter is one parameter. PostgreSQL's protocol takes at most
    // 65 535, and a filter that long is a mistake or an attack: refused here, where the
    // client is told why, rather than failing as an unreachable database.
    if b.params.len() > MAX_PARAMS {
        return Err(Error::InvalidArgument(format!(
            "the filter compares more than {MAX_PARAMS} values; narrow it (many keys go in `ids`)"
        )));
    }
    Ok(Statement {
        sql,
        params: b.params,
        rows: usize::try_from(limit).unwrap_or(0).min(1 << 14),
    })
}

/// The greatest order value of `q`'s rows after `after`, whatever the client's filter: a
/// `follow` stream that polled and found nothing new to send has looked at every row up to
/// there, and its next poll starts after it rather than after the last row it sent (a rare
/// filter on a growing table would otherwise have every poll read all the rows since). One
/// row of one column, the order column read as the stream's statements read it.
pub(crate) fn newest(
    q: &QueryConfig,
    order_kind: Kind,
    order_type: Option<&'static str>,
    after: Option<&OrderValue>,
) -> Statement {
    let mut b = Builder::default();
    let order = order_column(q);
    let read = match order_kind {
        Kind::AsText => format!("{order}::text"),
        _ => order.clone(),
    };
    let mut sql = format!("SELECT {read} FROM {}", source(q));
    if let Some(after) = after {
        let p = order_param(&mut b, order_type, after);
        sql.push_str(&format!(" WHERE {order} > {p}"));
    }
    sql.push_str(&format!(" ORDER BY {order} DESC LIMIT 1"));
    Statement {
        sql,
        params: b.params,
        rows: 1,
    }
}

/// The one row of `q` whose order value is `value`.
pub(crate) fn one(
    q: &QueryConfig,
    shape: &Shape,
    order_type: Option<&'static str>,
    value: &OrderValue,
) -> Statement {
    let mut b = Builder::default();
    let p = order_param(&mut b, order_type, value);
    Statement {
        sql: format!(
            "SELECT {} FROM {} WHERE {} = {p}",
            select_list(shape),
            source(q),
            order_column(q)
        ),
        params: b.params,
        rows: 1,
    }
}

/// Most parameters of one statement: the filter's literals, and a few of the query's own.
const MAX_PARAMS: usize = 4096;

#[derive(Debug, Default)]
struct Builder {
    params: Vec<Param>,
}

impl Builder {
    fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    fn column(q: &QueryConfig, shape: &Shape, path: &str) -> Result<(String, Kind)> {
        match shape.kind(path) {
            Some(k) => Ok((quote_identifier(path), k)),
            None => Err(Error::InvalidArgument(format!(
                "field {path:?} is not a column of query {:?}; its columns: {}",
                q.name,
                q.columns.join(", ")
            ))),
        }
    }

    fn expr(&mut self, q: &QueryConfig, shape: &Shape, e: &Expr) -> Result<String> {
        Ok(match e {
            Expr::Compare { path, op, literal } => {
                let (col, kind) = Self::column(q, shape, path.as_str())?;
                let op_sql = match op {
                    Op::Eq => "=",
                    Op::Ne => "<>",
                    Op::Lt => "<",
                    Op::Le => "<=",
                    Op::Gt => ">",
                    Op::Ge => ">=",
                };
                let bad = |what: &str| {
                    Err(Error::InvalidArgument(format!(
                        "field {:?} of query {:?} cannot be compared with {what}",
                        path.as_str(),
                        q.name
                    )))
                };
                let p = match literal {
                    Literal::Int(i) if kind.integer() || kind.float() => {
                        format!("{}::int8", self.param(Param::Int(*i)))
                    }
                    Literal::Float(f) if kind.integer() || kind.float() => {
                        format!("{}::float8", self.param(Param::Float(*f)))
                    }
                    Literal::Str(s) if kind.textual() => {
                        format!("{}::text", self.param(Param::Text(s.clone())))
                    }
                    Literal::Bool(b) if kind == Kind::Bool && matches!(op, Op::Eq | Op::Ne) => {
                        format!("{}::bool", self.param(Param::Bool(*b)))
                    }
                    Literal::Int(_) | Literal::Float(_) => return bad("a number"),
                    Literal::Str(_) => return bad("a string"),
                    Literal::Bool(_) => return bad("a boolean (only == and != on booleans)"),
                };
                let col_sql = if kind == Kind::AsText {
                    format!("{col}::text")
                } else {
                    col.clone()
                };
                if kind.float() {
                    // The filter language: a comparison with NaN is false (PostgreSQL
                    // orders NaN above every number).
                    format!("({col_sql} {op_sql} {p} AND {col} <> 'NaN')")
                } else {
                    format!("({col_sql} {op_sql} {p})")
                }
            }
            Expr::IsNull { path, negated } => {
                let (col, _) = Self::column(q, shape, path.as_str())?;
                let not = if *negated { " NOT" } else { "" };
                format!("({col} IS{not} NULL)")
            }
            Expr::And(items) | Expr::Or(items) => {
                let joiner = if matches!(e, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let parts = items
                    .iter()
                    .map(|i| self.expr(q, shape, i))
                    .collect::<Result<Vec<_>>>()?;
                format!("({})", parts.join(joiner))
            }
            // A comparison with null is false in the filter language, so its negation is
            // true: SQL's unknown is made false before NOT.
            Expr::Not(inner) => format!("(NOT COALESCE({}, false))", self.expr(q, shape, inner)?),
        })
    }

    /// An index-friendly box on ra/dec, then the exact great-circle distance (haversine).
    fn cone(&mut self, q: &QueryConfig, cone: &Cone) -> Result<String> {
        let (Some(ra), Some(dec)) = (&q.ra, &q.dec) else {
            return Err(Error::InvalidArgument(format!(
                "query {:?} has no ra/dec columns: cone searches are not possible",
                q.name
            )));
        };
        let (ra, dec) = (quote_identifier(ra), quote_identifier(dec));
        let (ra0, dec0, r) = (cone.ra(), cone.dec(), cone.radius());
        let mut conds = Vec::new();
        // A small margin so the box never cuts what the exact test keeps.
        let margin = 1e-9;
        let lo = (dec0 - r - margin).max(-90.0);
        let hi = (dec0 + r + margin).min(90.0);
        let (plo, phi) = (self.param(Param::Float(lo)), self.param(Param::Float(hi)));
        conds.push(format!("{dec} BETWEEN {plo}::float8 AND {phi}::float8"));
        // Around a pole the cone covers every RA; elsewhere its RA half-width is
        // asin(sin r / cos dec).
        if dec0.abs() + r < 90.0 {
            let ratio = r.to_radians().sin() / dec0.to_radians().cos();
            if ratio < 1.0 {
                let half = ratio.asin().to_degrees() + margin;
                let (a, b) = (ra0 - half, ra0 + half);
                if a >= 0.0 && b < 360.0 {
                    let (pa, pb) = (self.param(Param::Float(a)), self.param(Param::Float(b)));
                    conds.push(format!("{ra} BETWEEN {pa}::float8 AND {pb}::float8"));
                } else {
                    // Across RA 0/360: two ranges.
                    let (a, b) = (a.rem_euclid(360.0), b.rem_euclid(360.0));
                    let (pa, pb) = (self.param(Param::Float(a)), self.param(Param::Float(b)));
                    conds.push(format!("({ra} >= {pa}::float8 OR {ra} <= {pb}::float8)"));
                }
            }
        }
        let (pr, pd, prad) = (
            self.param(Param::Float(ra0)),
            self.param(Param::Float(dec0)),
            self.param(Param::Float(r)),
        );
        conds.push(format!(
            "degrees(2 * asin(least(1, sqrt(power(sin(radians({dec} - {pd}::float8) / 2), 2) \
             + cos(radians({pd}::float8)) * cos(radians({dec})) \
             * power(sin(radians({ra} - {pr}::float8) / 2), 2))))) <= {prad}::float8"
        ));
        Ok(format!("({})", conds.join(" AND ")))
    }

    fn ids(&mut self, q: &QueryConfig, shape: &Shape, ids: &[String]) -> Result<String> {
        let (key, kind) = Self::column(q, shape, &q.key)?;
        if kind.integer() {
            // Keys that are not integers match no row of an integer key column.
            let ints: Vec<i64> = ids.iter().filter_map(|i| i.parse().ok()).collect();
            let p = self.param(Param::Ints(ints));
            Ok(format!("({key} = ANY({p}::int8[]))"))
        } else {
            let p = self.param(Param::Texts(ids.to_vec()));
            let col = if kind == Kind::AsText {
                format!("{key}::text")
            } else {
                key
            };
            Ok(format!("({col} = ANY({p}::text[]))"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alertmesh_alert::filter::Predicate;

    fn query() -> (QueryConfig, Shape) {
        let text = r#"
            [gateway]
            name = "g"
            listen = "127.0.0.1:1"
            http_listen = "127.0.0.1:2"
            [kafka]
            bootstrap = "127.0.0.1:3"
            [[databases]]
            name = "db"
            url = "postgres://u@127.0.0.1/d"
            [[queries]]
            name = "objects"
            database = "db"
            table = "objects"
            namespace = "ZTF"
            key = "object_id"
            order = "id"
            ra = "ra"
            dec = "dec"
            columns = ["id", "object_id", "ra", "dec", "mag", "ndet"]
        "#;
        let c = crate::Config::parse(text, &[]).unwrap();
        let shape = Shape {
            columns: vec![
                ("id".into(), Kind::Int8),
                ("object_id".into(), Kind::Text),
                ("ra".into(), Kind::Float8),
                ("dec".into(), Kind::Float8),
                ("mag".into(), Kind::Float4),
                ("ndet".into(), Kind::Int4),
            ],
        };
        (c.queries[0].clone(), shape)
    }

    #[test]
    fn client_strings_are_parameters_never_sql() {
        let (q, shape) = query();
        let p =
            Predicate::parse(r#"object_id == "x'); DROP TABLE objects; --" && ndet >= 3"#).unwrap();
        let sel = Selection {
            filter: Some(p.expr()),
            ids: Some(vec!["a'b".into()]),
            ..Selection::default()
        };
        let s = rows(&q, &shape, &sel, None, Some(&OrderValue::Int(5)), 100).unwrap();
        assert!(!s.sql.contains("DROP"), "{}", s.sql);
        assert!(!s.sql.contains("a'b"), "{}", s.sql);
        assert_eq!(
            s.params,
            vec![
                Param::Int(5),
                Param::Text("x'); DROP TABLE objects; --".into()),
                Param::Int(3),
                Param::Texts(vec!["a'b".into()]),
                Param::Int(100),
            ]
        );
        assert!(
            s.sql.starts_with("SELECT \"id\", \"object_id\""),
            "{}",
            s.sql
        );
        assert!(
            s.sql
                .ends_with("ORDER BY \"objects\".\"id\" LIMIT $5::int8"),
            "{}",
            s.sql
        );
    }

    #[test]
    fn a_filter_of_more_values_than_a_statement_takes_is_an_invalid_argument() {
        let (q, shape) = query();
        let many = |n: usize| vec!["ndet < 1"; n].join(" || ");
        let statement = |text: &str| {
            let p = Predicate::parse(text).unwrap();
            let sel = Selection {
                filter: Some(p.expr()),
                ..Selection::default()
            };
            rows(&q, &shape, &sel, None, Some(&OrderValue::Int(5)), 100)
        };
        assert_eq!(
            statement(&many(MAX_PARAMS - 2)).unwrap().params.len(),
            MAX_PARAMS
        );
        // (The parser refuses more than 4096 comparisons, which would not fit
        // PostgreSQL's protocol either past 65 535.)
        for n in [MAX_PARAMS - 1, MAX_PARAMS] {
            match statement(&many(n)) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains("narrow it"), "{m}"),
                other => panic!("{n} values: {other:?}"),
            }
        }
    }

    #[test]
    fn undeclared_fields_and_impossible_comparisons_are_invalid_arguments() {
        let (q, shape) = query();
        for (text, want) in [
            (
                "secret < 1",
                "field \"secret\" is not a column of query \"objects\"",
            ),
            (
                "candidate.magpsf < 1",
                "field \"candidate.magpsf\" is not a column",
            ),
            ("mag == \"x\"", "cannot be compared with a string"),
            ("object_id < 3", "cannot be compared with a number"),
        ] {
            let p = Predicate::parse(text).unwrap();
            let sel = Selection {
                filter: Some(p.expr()),
                ..Selection::default()
            };
            let e = rows(&q, &shape, &sel, None, None, 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_cone_across_ra_zero_is_two_ranges_and_at_a_pole_none() {
        let (q, shape) = query();
        let sel = |c| Selection {
            cone: Some(c),
            ..Selection::default()
        };
        let wrap = rows(
            &q,
            &shape,
            &sel(Cone::new(359.9, 0.0, 0.5).unwrap()),
            None,
            None,
            1,
        )
        .unwrap();
        assert!(wrap
            .sql
            .contains("(\"ra\" >= $3::float8 OR \"ra\" <= $4::float8)"));
        assert!(matches!(wrap.params[2], Param::Float(a) if (a - 359.4).abs() < 1e-6));
        assert!(matches!(wrap.params[3], Param::Float(b) if (b - 0.4).abs() < 1e-6));
        let pole = rows(
            &q,
            &shape,
            &sel(Cone::new(10.0, 89.8, 0.5).unwrap()),
            None,
            None,
            1,
        )
        .unwrap();
        assert!(!pole.sql.contains("\"ra\" BETWEEN"), "{}", pole.sql);
        assert!(!pole.sql.contains("\"ra\" >="), "{}", pole.sql);
        let plain = rows(
            &q,
            &shape,
            &sel(Cone::new(10.0, 60.0, 1.0).unwrap()),
            None,
            None,
            1,
        )
        .unwrap();
        // At dec 60 the RA half-width is about twice the radius.
        assert!(matches!(plain.params[2], Param::Float(a) if (a - 8.0).abs() < 0.01));
    }

    #[test]
    fn a_timestamp_order_value_is_cast_back_and_ordered_by_the_column() {
        let (q, shape) = query();
        let after = OrderValue::Text("2026-12-01 10:00:00.5+00".into());
        let s = rows(
            &q,
            &shape,
            &Selection::default(),
            Some("timestamptz"),
            Some(&after),
            10,
        )
        .unwrap();
        assert!(
            s.sql
                .contains("WHERE \"objects\".\"id\" > $1::text::timestamptz"),
            "{}",
            s.sql
        );
        assert_eq!(s.params[0], Param::Text("2026-12-01 10:00:00.5+00".into()));
        let one = one(&q, &shape, Some("timestamptz"), &after);
        assert!(
            one.sql
                .ends_with("WHERE \"objects\".\"id\" = $1::text::timestamptz"),
            "{}",
            one.sql
        );
    }

    #[test]
    fn the_newest_order_value_ignores_the_filter_and_reads_as_the_rows_do() {
        let (q, _) = query();
        let s = newest(&q, Kind::Int8, None, Some(&OrderValue::Int(41)));
        assert_eq!(
            s.sql,
            "SELECT \"objects\".\"id\" FROM \"objects\" WHERE \"objects\".\"id\" > $1::int8 \
             ORDER BY \"objects\".\"id\" DESC LIMIT 1"
        );
        assert_eq!(s.params, vec![Param::Int(41)]);
        let after = OrderValue::Text("2026-12-01 10:00:00.5+00".into());
        let s = newest(&q, Kind::AsText, Some("timestamptz"), Some(&after));
        assert!(
            s.sql.starts_with("SELECT \"objects\".\"id\"::text FROM")
                && s.sql.contains("> $1::text::timestamptz"),
            "{}",
            s.sql
        );
        let s = newest(&q, Kind::Int8, None, None);
        assert!(!s.sql.contains("WHERE") && s.params.is_empty(), "{}", s.sql);
    }
}
