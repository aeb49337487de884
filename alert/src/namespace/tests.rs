use super::*;

#[test]
fn builtin_registry_has_the_survey_namespaces() {
    let r = Registry::builtin();
    let names: Vec<&str> = r.namespaces().iter().map(|n| n.name()).collect();
    assert_eq!(names, ["ZTF", "LSST:dia", "LSST:ss", "LS4"]);
    assert_eq!(r.namespace("LS4").unwrap().id_type(), IdType::Uuid);
    assert!(r.family("lsst").unwrap().key_rules().len() >= 4);
}

#[test]
fn keys_are_validated_against_their_namespace() {
    let r = Registry::builtin();
    assert_eq!(
        r.parse_key("ZTF:ZTF18aabcdef").unwrap().id(),
        "ZTF18aabcdef"
    );
    let k = r.parse_key("LSST:dia:170587115523932323").unwrap();
    assert_eq!((k.namespace(), k.id()), ("LSST:dia", "170587115523932323"));
    r.parse_key("LS4:0f8c1f2e-1d2b-4c3a-9e8f-0123456789ab")
        .unwrap();
    for bad in [
        "ZTF:ZTF18",
        "LSST:dia:12x",
        "LSST:dia:0",
        "LSST:ss:99999999999999999999",
        "LS4:not-a-uuid",
        "XYZ:1",
    ] {
        assert!(r.parse_key(bad).is_err(), "{bad}");
    }
    let err = r.parse_key("LSST:dia:abc").unwrap_err().to_string();
    assert!(err.contains("non-zero decimal int64"), "{err}");
}

#[test]
fn extra_namespaces_extend_the_builtin_ones() {
    let r = Registry::with_extra(
        r#"
        [[namespace]]
        name = "FINK:cls"
        description = "Fink classifications"
        id_type = "string"
        id_pattern = '\l{2,10}'
        extract = [{ family = "fink", paths = ["class"] }]

        [[family]]
        name = "fink"
        fields = ["class"]
        "#,
    )
    .unwrap();
    assert!(r.parse_key("FINK:cls:sn").is_ok());
    assert!(r.parse_key("ZTF:ZTF18aabcdef").is_ok());
    let alert = Value::Record(vec![("class".into(), Value::String("kn".into()))]);
    let family = r.family_for_value(&alert).unwrap();
    assert_eq!(
        r.extract_key(family, &alert).unwrap().to_string(),
        "FINK:cls:kn"
    );
}

#[test]
fn bad_registry_files_report_every_problem() {
    let err = Registry::with_extra(
        r#"
        [[namespace]]
        name = "ZTF"
        id_type = "string"
        [[namespace]]
        name = "N"
        id_type = "int64"
        id_pattern = '\d'
        extract = [{ family = "nope", paths = ["a..b"] }]
        [[family]]
        name = "f"
        ra = "x"
        "#,
    )
    .unwrap_err()
    .to_string();
    for part in [
        "ZTF: defined twice",
        "only allowed with",
        "unknown family",
        "bad path",
        "needs `schemas`",
        "both `ra` and `dec`",
    ] {
        assert!(err.contains(part), "{part} missing from {err}");
    }
    assert!(Registry::with_extra("[[namespace]]\nname = 1").is_err());
    assert!(Registry::with_extra("[[namespace]]\nname = \"A\"\nid_type = \"float\"").is_err());
}

#[test]
fn globs_match_lsst_schema_names() {
    assert!(glob_match("lsst.v7_*.alert", "lsst.v7_1.alert"));
    assert!(glob_match("lsst.v1*_*.alert", "lsst.v11_0.alert"));
    assert!(!glob_match("lsst.v7_*.alert", "lsst.v7_1.alerts"));
    assert!(glob_match("ztf.alert", "ztf.alert") && !glob_match("ztf.alert", "ztf.alert2"));
    assert!(glob_match("*", "") && glob_match("a*b*c", "abc") && !glob_match("a*b*c", "acb"));
}

#[test]
fn lsst_keys_skip_null_and_zero_ids() {
    let r = Registry::builtin();
    let lsst = r.family("lsst").unwrap();
    let src = |obj: Value, ss: Value| {
        Value::Record(vec![
            ("diaObjectId".into(), Value::Union(1, Box::new(obj))),
            ("ssObjectId".into(), Value::Union(1, Box::new(ss))),
        ])
    };
    let alert = |dia: Value, source: Value| {
        Value::Record(vec![
            ("diaObject".into(), dia),
            ("diaSource".into(), source),
        ])
    };
    let no_obj = Value::Union(0, Box::new(Value::Null));
    let a = alert(no_obj.clone(), src(Value::Long(5), Value::Null));
    assert_eq!(r.extract_key(lsst, &a).unwrap().to_string(), "LSST:dia:5");
    let a = alert(no_obj.clone(), src(Value::Long(0), Value::Long(77)));
    assert_eq!(r.extract_key(lsst, &a).unwrap().to_string(), "LSST:ss:77");
    let a = alert(no_obj, src(Value::Null, Value::Long(0)));
    assert!(matches!(r.extract_key(lsst, &a), Err(Error::NoKey { .. })));
}
