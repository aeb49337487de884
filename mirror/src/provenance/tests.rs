use super::*;

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
        .collect()
}

#[test]
fn hops_come_from_the_header_else_from_the_source_gateway() {
    let with = h(&[("am-hops", "survey, lasair,,")]);
    assert_eq!(source_hops(&with, Some("x")), ["survey", "lasair"]);
    assert_eq!(source_hops(&[], Some("survey")), ["survey"]);
    assert!(source_hops(&[], None).is_empty(), "raw kafka: no hops");
    let null: Headers = vec![("am-hops".into(), None)];
    assert_eq!(source_hops(&null, Some("survey")), ["survey"]);
}

#[test]
fn a_record_that_already_passed_this_gateway_is_a_cycle() {
    // Active-active: A copies B's mirror of A's topic.
    let hops = source_hops(&h(&[("am-hops", "a,b")]), Some("b"));
    assert!(is_cycle(&hops, "a"));
    assert!(!is_cycle(&hops, "c"));
    // A ring of three a → b → c → a: c's copy carries a,b,c and a drops it.
    let hops = source_hops(&h(&[("am-hops", "a,b,c")]), Some("c"));
    assert!(is_cycle(&hops, "a"));
    // No header: the source gateway itself counts.
    assert!(is_cycle(&source_hops(&[], Some("a")), "a"));
    // Names match exactly, not by prefix.
    assert!(!is_cycle(&source_hops(&h(&[("am-hops", "ab")]), None), "a"));
}

#[test]
fn origin_is_kept_else_the_gateway_ref_else_none() {
    let src = h(&[("am-origin", "am://survey/ztf/0/1")]);
    assert_eq!(
        origin(&src, Some("am://lasair/ztf/2/9")).as_deref(),
        Some("am://survey/ztf/0/1")
    );
    assert_eq!(
        origin(&[], Some("am://lasair/ztf/2/9")).as_deref(),
        Some("am://lasair/ztf/2/9")
    );
    assert_eq!(origin(&[], None), None);
}

#[test]
fn copies_keep_foreign_headers_and_rewrite_every_am_header() {
    let src = h(&[
        ("trace", "t1"),
        ("am-ns", "OLD"),
        ("am-hops", "survey"),
        ("am-source", "kafka://x/0/0"),
        ("am-derived-from", "am://x/y/0/0"),
        ("other", "o"),
    ]);
    let stamp = Stamp {
        namespace: "ZTF".into(),
        format: Format::AvroOcf,
        schema: Some("00112233aabbccdd".into()),
        origin: Some("am://survey/ztf/0/1".into()),
        hops: vec!["survey".into(), "lasair".into()],
        source: "am://survey/ztf/0/1".into(),
    };
    let out = copy_headers(src, &stamp);
    let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "trace",
            "am-derived-from",
            "other",
            "am-ns",
            "am-format",
            "am-schema",
            "am-origin",
            "am-hops",
            "am-source"
        ]
    );
    assert_eq!(header(&out, "am-hops"), Some("survey,lasair"));
    assert_eq!(header(&out, "am-derived-from"), Some("am://x/y/0/0"));
    assert_eq!(header(&out, "am-format"), Some("avro-ocf"));
    assert_eq!(header(&out, "am-ns"), Some("ZTF"));

    let raw = Stamp {
        schema: None,
        origin: None,
        hops: vec!["lasair".into()],
        ..stamp
    };
    let out = copy_headers(vec![], &raw);
    assert_eq!(header(&out, "am-origin"), None);
    assert_eq!(header(&out, "am-schema"), None);
    assert_eq!(header(&out, "am-hops"), Some("lasair"));
}

#[test]
fn dead_letters_keep_every_source_header_and_say_why() {
    let src = h(&[("am-ns", "ZTF"), ("x", "1"), ("am-error", "stale")]);
    let out = dead_letter_headers(src, "kafka://t/0/3", "malformed avro-ocf payload");
    assert_eq!(header(&out, "am-ns"), Some("ZTF"));
    assert_eq!(header(&out, "x"), Some("1"));
    assert_eq!(header(&out, "am-source"), Some("kafka://t/0/3"));
    assert_eq!(header(&out, "am-error"), Some("malformed avro-ocf payload"));
    assert_eq!(out.iter().filter(|(k, _)| k == "am-error").count(), 1);
}

#[test]
fn a_derived_records_provenance_is_copied_untouched() {
    let derived = vec![
        (
            "am-derived-from".to_string(),
            Some(b"am://a/t/0/1,am://b/u/2/3".to_vec()),
        ),
        (
            "am-activity".into(),
            Some(br#"{"name":"fit","version":"1.2","parameters":{"k":1}}"#.to_vec()),
        ),
        (
            "am-used".into(),
            Some(br#"["catalog:gaia-dr3/4295806720"]"#.to_vec()),
        ),
        (
            "am-agent".into(),
            Some(br#"{"sub":"fink","iss":"fink"}"#.to_vec()),
        ),
        ("am-publish-id".into(), None),
        (
            "am-origin".into(),
            Some(b"am://fink/fink.class/0/4".to_vec()),
        ),
        ("am-hops".into(), Some(b"fink".to_vec())),
    ];
    let stamp = Stamp {
        namespace: "ZTF".into(),
        format: Format::Json,
        schema: None,
        origin: Some("am://fink/fink.class/0/4".into()),
        hops: vec!["fink".into(), "lasair".into()],
        source: "am://fink/fink.class/0/4".into(),
    };
    let out = copy_headers(derived.clone(), &stamp);
    for name in KEPT {
        let before = derived.iter().find(|(k, _)| k == name);
        let after: Vec<_> = out.iter().filter(|(k, _)| k == name).collect();
        assert_eq!(after.len(), 1, "{name}");
        assert_eq!(Some(after[0]), before, "{name}");
    }
    assert_eq!(header(&out, "am-origin"), Some("am://fink/fink.class/0/4"));
    assert_eq!(header(&out, "am-hops"), Some("fink,lasair"));
}
