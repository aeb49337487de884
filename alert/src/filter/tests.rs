use apache_avro::schema::Schema;
use apache_avro::types::Value;

use super::*;
use crate::Error;

fn schema() -> Schema {
    Schema::parse_str(
        r#"{"type":"record","name":"alert","namespace":"ztf","fields":[
          {"name":"objectId","type":"string"},
          {"name":"candid","type":"long"},
          {"name":"candidate","type":{"type":"record","name":"candidate","fields":[
            {"name":"magpsf","type":"float"},{"name":"ndethist","type":"int"},
            {"name":"isdiffpos","type":"string"},{"name":"drb","type":["null","float"]},
            {"name":"ra","type":"double"},{"name":"dec","type":"double"},
            {"name":"flag","type":"boolean"}]}}]}"#,
    )
    .unwrap()
}

fn alert(mag: f32, ndet: i32, drb: Option<f32>) -> Value {
    let drb = drb.map_or(Value::Union(0, Box::new(Value::Null)), |d| {
        Value::Union(1, Box::new(Value::Float(d)))
    });
    Value::Record(vec![
        ("objectId".into(), Value::String("ZTF18aabcdef".into())),
        ("candid".into(), Value::Long(1_095_578_115_815_010_001)),
        (
            "candidate".into(),
            Value::Record(vec![
                ("magpsf".into(), Value::Float(mag)),
                ("ndethist".into(), Value::Int(ndet)),
                ("isdiffpos".into(), Value::String("t".into())),
                ("drb".into(), drb),
                ("ra".into(), Value::Double(10.0)),
                ("dec".into(), Value::Double(-5.0)),
                ("flag".into(), Value::Boolean(true)),
            ]),
        ),
    ])
}

fn eval(text: &str, v: &Value) -> bool {
    Predicate::parse(text).unwrap().eval(v)
}

#[test]
fn predicates_from_the_issue_evaluate() {
    let v = alert(18.0, 3, Some(0.9));
    assert!(eval(
        "candidate.magpsf < 18.5 && candidate.ndethist >= 3",
        &v
    ));
    assert!(!eval(
        "candidate.magpsf < 18.5 && candidate.ndethist > 3",
        &v
    ));
    assert!(eval(r#"candidate.isdiffpos == "t""#, &v));
    assert!(eval(
        "candidate.magpsf > 20 || !(candidate.ndethist != 3)",
        &v
    ));
    assert!(eval("(candidate.drb >= 0.5) && candidate.flag == true", &v));
    assert!(eval(
        "candidate.magpsf < 1e4 && candidate.magpsf > -1.5E+1",
        &v
    ));
}

#[test]
fn int64_comparisons_are_exact() {
    let v = alert(18.0, 3, None);
    assert!(eval("candid == 1095578115815010001", &v));
    assert!(!eval("candid == 1095578115815010000", &v));
    assert!(eval("candid > 1095578115815010000", &v));
    assert!(eval("candid < 1.1e18 && candid > 1.0955e18", &v));
}

#[test]
fn null_comparisons_are_false_and_is_null_works() {
    let v = alert(18.0, 3, None);
    for text in [
        "candidate.drb > 0",
        "candidate.drb < 0",
        "candidate.drb == 0",
        "candidate.drb != 0",
        "nope.x == 1",
    ] {
        assert!(!eval(text, &v), "{text}");
    }
    assert!(eval("!(candidate.drb == 0)", &v));
    assert!(eval(
        "candidate.drb is null && candidate.magpsf is not null",
        &v
    ));
    assert!(!eval("candidate.drb is not null", &v));
    let nan = alert(f32::NAN, 3, None);
    assert!(!eval("candidate.magpsf < 99", &nan) && !eval("candidate.magpsf >= 99", &nan));
}

#[test]
fn parse_errors_say_where_and_what() {
    let cases = [
        ("candidate.magpsf <", 18, "a number"),
        ("candidate.magpsf 18", 17, "a comparison"),
        ("(a == 1", 7, "`)`"),
        ("a == 1 &&", 9, "a field path"),
        ("a == \"x", 5, "closing"),
        ("a == 1 b", 7, "`&&`, `||`"),
        ("a is nul", 5, "`null`"),
        ("a == tru", 5, "a number"),
        ("a.. == 1", 0, "a field path"),
    ];
    for (text, offset, expected) in cases {
        match Predicate::parse(text) {
            Err(Error::FilterSyntax {
                offset: o,
                expected: e,
                ..
            }) => {
                assert_eq!(o, offset, "{text}");
                assert!(e.contains(expected), "{text}: {e}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let msg = Predicate::parse("x <").unwrap_err().to_string();
    assert!(
        msg.contains("column 4") && msg.contains("expected"),
        "{msg}"
    );
    assert!(Predicate::parse(&"(".repeat(1000)).is_err());
    assert!(Predicate::parse(&"!".repeat(1000)).is_err());
}

#[test]
fn check_schema_names_unknown_fields_and_bad_types() {
    let s = schema();
    let f = Filter::predicate("candidate.magpsf < 18 && candidate.nope > 1").unwrap();
    assert_eq!(
        f.check_schema(&s).unwrap_err(),
        Error::UnknownField {
            field: "candidate.nope".into()
        }
    );
    let f = Filter::predicate(r#"candidate.magpsf == "x""#).unwrap();
    assert!(matches!(f.check_schema(&s), Err(Error::FilterType { .. })));
    assert!(Filter::predicate("candidate.flag < true")
        .unwrap()
        .check_schema(&s)
        .is_err());
    Filter::predicate("candidate.drb is null || objectId == \"ZTF18aabcdef\"")
        .unwrap()
        .check_schema(&s)
        .unwrap();
}

#[test]
fn filters_compose_ids_cones_and_predicates() {
    let registry = Registry::builtin();
    let ws = std::sync::Arc::new(crate::WriterSchema::new(schema()).unwrap());
    let a = Alert::new(alert(17.0, 5, Some(0.99)), Some(ws));
    let ids = Filter::object_ids(&["ZTF:ZTF18aabcdef"], &registry).unwrap();
    let near = Filter::cone(10.0, -5.0, 0.1).unwrap();
    let far = Filter::cone(200.0, 5.0, 1.0).unwrap();
    let bright = Filter::predicate("candidate.magpsf < 18").unwrap();
    assert!(
        Filter::And(vec![ids.clone(), near.clone(), bright.clone()]).matches_alert(&a, &registry)
    );
    assert!(!Filter::And(vec![ids.clone(), far.clone()]).matches_alert(&a, &registry));
    assert!(Filter::Or(vec![far.clone(), bright]).matches_alert(&a, &registry));
    assert!(Filter::Not(Box::new(far)).matches_alert(&a, &registry));
    assert!(
        Filter::All.matches_alert(&a, &registry)
            && !Filter::Or(vec![]).matches_alert(&a, &registry)
    );
    assert!(Filter::object_ids(&["ZTF:bad"], &registry).is_err());
}

/// A filter runs on every alert of a stream: one of more than 4096 comparisons (a request
/// of a megabyte holds 150 000) is a syntax error naming the limit, and collecting the
/// fields of the largest allowed one takes no quadratic time.
#[test]
fn filters_have_at_most_4096_comparisons() {
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("f{i} < 1"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    let ok = Predicate::parse(&many(4096)).unwrap();
    assert_eq!(ok.fields().len(), 4096);
    let err = Predicate::parse(&many(150_000)).unwrap_err().to_string();
    assert!(err.contains("at most 4096 comparisons"), "{err}");
}
