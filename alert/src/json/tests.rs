use apache_avro::schema::Schema;

use super::*;

fn schema() -> Schema {
    Schema::parse_str(
        r#"{"type":"record","name":"a","fields":[
          {"name":"id","type":"long"},
          {"name":"f","type":"float"},
          {"name":"d","type":["null","double"]},
          {"name":"cutoutScience","type":["null","bytes"]},
          {"name":"raw","type":"bytes"},
          {"name":"s","type":"string"},
          {"name":"extra","type":["null","string"],"default":null}]}"#,
    )
    .unwrap()
}

fn record(d: f64) -> Value {
    Value::Record(vec![
        ("id".into(), Value::Long(i64::MAX - 7)),
        ("f".into(), Value::Float(0.1)),
        ("d".into(), Value::Union(1, Box::new(Value::Double(d)))),
        (
            "cutoutScience".into(),
            Value::Union(1, Box::new(Value::Bytes(vec![1, 2, 3]))),
        ),
        ("raw".into(), Value::Bytes(vec![255])),
        ("s".into(), Value::String("é\"\n".into())),
        ("extra".into(), Value::Union(0, Box::new(Value::Null))),
    ])
}

#[test]
fn int64_is_exact_and_floats_are_shortest() {
    let json = String::from_utf8(to_json(&record(1e300), JsonOptions::default())).unwrap();
    assert!(json.contains(r#""id":9223372036854775800"#), "{json}");
    assert!(json.contains(r#""f":0.1,"#), "{json}");
    assert!(json.contains(r#""d":1e+300"#), "{json}");
    assert!(json.contains(r#""cutoutScience":"AQID""#), "{json}");
    assert!(json.contains(r#""s":"é\"\n""#), "{json}");
}

#[test]
fn non_finite_floats_become_strings_and_come_back() {
    let s = schema();
    for (x, text) in [
        (f64::NAN, "\"NaN\""),
        (f64::INFINITY, "\"Infinity\""),
        (f64::NEG_INFINITY, "\"-Infinity\""),
    ] {
        let json = to_json(&record(x), JsonOptions::default());
        assert!(String::from_utf8_lossy(&json).contains(&format!(r#""d":{text}"#)));
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let back = from_json(&parsed, &s).unwrap();
        let d = crate::FieldPath::parse("d").unwrap();
        let Some(Value::Double(y)) = d.lookup(&back) else {
            panic!("no d")
        };
        assert!(y.is_nan() && x.is_nan() || *y == x);
    }
}

#[test]
fn non_finite_floats_can_be_bare_tokens_and_a_string_stays_a_string() {
    let options = JsonOptions {
        nonfinite: NonFinite::Bare,
        ..JsonOptions::default()
    };
    for (x, token) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
    ] {
        let mut v = record(x);
        let Value::Record(fields) = &mut v else {
            unreachable!()
        };
        // A genuine string holding the same word is still written as a string.
        fields[5].1 = Value::String(token.into());
        let json = String::from_utf8(to_json(&v, options)).unwrap();
        assert!(json.contains(&format!(r#""d":{token},"#)), "{json}");
        assert!(json.contains(&format!(r#""s":"{token}","#)), "{json}");
    }
    // Finite values are written as always.
    let json = String::from_utf8(to_json(&record(-2.5), options)).unwrap();
    assert_eq!(
        json,
        String::from_utf8(to_json(&record(-2.5), JsonOptions::default())).unwrap()
    );
}

#[test]
fn round_trip_through_json_is_lossless() {
    let s = schema();
    let v = record(-2.5);
    let parsed: serde_json::Value =
        serde_json::from_slice(&to_json(&v, JsonOptions::default())).unwrap();
    assert_eq!(from_json(&parsed, &s).unwrap(), v);
}

#[test]
fn cutouts_can_be_omitted() {
    let json = to_json(
        &record(1.0),
        JsonOptions {
            bytes: BytesMode::OmitCutouts,
            ..JsonOptions::default()
        },
    );
    let text = String::from_utf8(json).unwrap();
    assert!(
        text.contains(r#""cutoutScience":null"#) && text.contains(r#""raw":"/w==""#),
        "{text}"
    );
    let text = String::from_utf8(to_json(
        &record(1.0),
        JsonOptions {
            bytes: BytesMode::OmitAll,
            ..JsonOptions::default()
        },
    ))
    .unwrap();
    assert!(text.contains(r#""raw":null"#), "{text}");
}

#[test]
fn from_json_names_the_bad_field() {
    let bad: serde_json::Value = serde_json::from_str(r#"{"id":1.5}"#).unwrap();
    let err = from_json(&bad, &schema()).unwrap_err().to_string();
    assert!(err.contains("at id: expected an integer"), "{err}");
    let big: serde_json::Value = serde_json::from_str(r#"{"id":9223372036854775808}"#).unwrap();
    assert!(from_json(&big, &schema()).is_err());
}

#[test]
fn untyped_json_keeps_big_integers_exact() {
    let v: serde_json::Value =
        serde_json::from_str(r#"{"diaObjectId":313637921267122191,"ra":9.05705}"#).unwrap();
    let value = from_json_untyped(&v);
    let id = crate::FieldPath::parse("diaObjectId").unwrap();
    assert_eq!(id.lookup(&value), Some(&Value::Long(313637921267122191)));
}
