use std::sync::Arc;

use alertmesh_alert::json_schema::JsonSchema;

use super::*;

fn topic(schema: Option<TopicSchema>) -> TopicConfig {
    TopicConfig {
        name: "fink.class".into(),
        namespace: "ZTF".into(),
        format: Format::Json,
        description: String::new(),
        public: false,
        publish: true,
        schema,
        schema_registry: None,
    }
}

fn class_schema() -> TopicSchema {
    TopicSchema::Json {
        schema: Arc::new(
            JsonSchema::parse(
                r#"{"type":"object","required":["class"],"properties":{"class":{"type":"string"},"score":{"type":"number"}}}"#,
            )
            .unwrap(),
        ),
        fingerprint: "00000000000000aa".into(),
        text: Arc::from("{}"),
    }
}

fn good() -> v1::PublishRecord {
    v1::PublishRecord {
        key: "ZTF:ZTF18aabcdef".into(),
        payload: br#"{"class":"SN Ia","score":0.93}"#.to_vec().into(),
        derived_from: vec![
            "am://lasair/ztf.alerts/0/12".into(),
            "am://fink/ztf.raw/3/7".into(),
        ],
        activity: Some(v1::Activity {
            name: "snclass".into(),
            version: "1.2".into(),
            parameters_json: r#"{"threshold":0.5}"#.into(),
        }),
        used: vec!["catalog:gaia-dr3/4295806720".into()],
        publish_id: "run-1/42".into(),
    }
}

fn run(topic: &TopicConfig, records: &[v1::PublishRecord]) -> Result<Vec<Planned>> {
    let registry = Registry::builtin();
    let decoder = Decoder::new();
    let agent = agent("fink", "lasair");
    plan(
        &Context {
            gateway: "fink",
            topic,
            registry: &registry,
            decoder: &decoder,
            agent: &agent,
            max_record_bytes: 2000,
        },
        records,
    )
}

fn header<'a>(p: &'a Planned, name: &str) -> Option<&'a str> {
    p.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

#[test]
fn a_good_record_carries_its_provenance_in_headers() {
    let planned = run(&topic(Some(class_schema())), &[good()]).unwrap();
    let p = &planned[0];
    assert_eq!(p.key, "ZTF:ZTF18aabcdef");
    assert_eq!(header(p, "am-ns"), Some("ZTF"));
    assert_eq!(header(p, "am-format"), Some("json"));
    assert_eq!(header(p, "am-schema"), Some("00000000000000aa"));
    assert_eq!(header(p, "am-hops"), Some("fink"));
    assert_eq!(header(p, "am-origin"), None);
    assert_eq!(
        header(p, "am-derived-from"),
        Some("am://lasair/ztf.alerts/0/12,am://fink/ztf.raw/3/7")
    );
    assert_eq!(
        header(p, "am-activity"),
        Some(r#"{"name":"snclass","version":"1.2","parameters":{"threshold":0.5}}"#)
    );
    assert_eq!(
        header(p, "am-used"),
        Some(r#"["catalog:gaia-dr3/4295806720"]"#)
    );
    assert_eq!(
        header(p, "am-agent"),
        Some(r#"{"sub":"fink","iss":"lasair"}"#)
    );
    assert_eq!(header(p, "am-publish-id"), Some("run-1/42"));
}

#[test]
fn each_bad_record_refuses_the_batch_naming_record_and_field() {
    let schema = topic(Some(class_schema()));
    let plain = topic(None);
    type Change = Box<dyn Fn(&mut v1::PublishRecord)>;
    let cases: Vec<(&TopicConfig, Change, &str)> = vec![
        (
            &schema,
            Box::new(|r| r.payload = br#"{"class":3}"#.to_vec().into()),
            "records[1].payload: class: expected string, found number",
        ),
        (
            &schema,
            Box::new(|r| r.payload = br#"{"score":1}"#.to_vec().into()),
            "records[1].payload: class: required field is missing",
        ),
        (
            &plain,
            Box::new(|r| r.payload = b"[1,2]".to_vec().into()),
            "records[1].payload: topic \"fink.class\" holds JSON objects",
        ),
        (
            &plain,
            Box::new(|r| r.payload = b"{nope".to_vec().into()),
            "records[1].payload: not a JSON document",
        ),
        (
            &plain,
            Box::new(|r| r.derived_from.clear()),
            "records[1].derived_from: empty",
        ),
        (
            &plain,
            Box::new(|r| r.derived_from[1] = "lasair/ztf/0/1".into()),
            "records[1].derived_from[1]: invalid alert ref",
        ),
        (
            &plain,
            Box::new(|r| {
                r.derived_from = vec!["am://lasair/ztf/0/1".into(); 1001];
            }),
            "records[1].derived_from and .used: at most 1000 entries each (got 1001 and 1)",
        ),
        (
            &plain,
            Box::new(|r| r.key = "GAIA:123".into()),
            "records[1].key: namespace \"GAIA\" is not registered",
        ),
        (
            &plain,
            Box::new(|r| r.key = "nokey".into()),
            "records[1].key: invalid mesh key",
        ),
        (
            &plain,
            Box::new(|r| r.activity = None),
            "records[1].activity: missing",
        ),
        (
            &plain,
            Box::new(|r| r.activity.as_mut().unwrap().name.clear()),
            "records[1].activity.name: empty",
        ),
        (
            &plain,
            Box::new(|r| r.activity.as_mut().unwrap().parameters_json = "[1]".into()),
            "records[1].activity.parameters_json: must be a JSON object",
        ),
        (
            &plain,
            Box::new(|r| r.used = vec![String::new()]),
            "records[1].used[0]",
        ),
        (
            &plain,
            Box::new(|r| r.publish_id.clear()),
            "records[1].publish_id",
        ),
        (
            &plain,
            Box::new(|r| r.publish_id = "run-1/42".into()),
            "records[1].publish_id: \"run-1/42\" is also the publish id of records[0]",
        ),
        (
            &plain,
            Box::new(|r| {
                r.payload = format!(r#"{{"class":"{}"}}"#, "x".repeat(3000))
                    .into_bytes()
                    .into()
            }),
            "records[1]: 3",
        ),
    ];
    for (t, change, needle) in cases {
        let mut second = good();
        second.publish_id = "run-1/43".into();
        change(&mut second);
        let err = run(t, &[good(), second]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().starts_with(needle), "{needle}: {err}");
    }
    let err = run(&plain, &[]).unwrap_err().to_string();
    assert!(err.contains("at least one record"), "{err}");
}

#[test]
fn an_oversized_record_says_how_large_and_the_limit() {
    let mut r = good();
    r.payload = format!(r#"{{"class":"{}"}}"#, "x".repeat(3000))
        .into_bytes()
        .into();
    let err = run(&topic(None), &[r]).unwrap_err().to_string();
    assert!(err.contains("payload 3012"), "{err}");
    assert!(
        err.contains("limits.max_publish_record_bytes (2000)"),
        "{err}"
    );
}

#[test]
fn partitions_follow_kafkas_default_partitioner() {
    // Kafka's murmur2 test vectors (org.apache.kafka.common.utils.UtilsTest).
    for (input, want) in [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        ("abc", 479470107),
    ] {
        assert_eq!(murmur2(input.as_bytes()) as i32, want, "{input}");
    }
    assert!(partition("ZTF:ZTF18aabcdef", 3) < 3);
    assert_eq!(partition("ZTF:x", 0), 0);
}

fn ocf(schema: &str, fields: Vec<(&str, alertmesh_alert::apache_avro::types::Value)>) -> Vec<u8> {
    use alertmesh_alert::apache_avro::{types::Value, Schema, Writer};
    let schema = Schema::parse_str(schema).unwrap();
    let mut w = Writer::new(&schema, Vec::new());
    w.append(Value::Record(
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    ))
    .unwrap();
    w.into_inner().unwrap()
}

#[test]
fn avro_payloads_must_resolve_to_the_topics_schema() {
    use alertmesh_alert::apache_avro::types::Value;
    use alertmesh_alert::WriterSchema;
    const DECLARED: &str = r#"{"type":"record","name":"Class","fields":[
        {"name":"class","type":"string"},{"name":"score","type":"double"}]}"#;
    // Another writer schema that resolves: an extra field, ignored by the reader.
    const WIDER: &str = r#"{"type":"record","name":"Class","fields":[
        {"name":"class","type":"string"},{"name":"score","type":"double"},
        {"name":"note","type":"string"}]}"#;
    const NARROW: &str =
        r#"{"type":"record","name":"Class","fields":[{"name":"class","type":"string"}]}"#;
    let mut t = topic(Some(TopicSchema::Avro(Arc::new(
        WriterSchema::parse(DECLARED).unwrap(),
    ))));
    t.format = Format::AvroOcf;
    let record = |payload: Vec<u8>| {
        let mut r = good();
        r.payload = payload.into();
        r
    };
    let same = ocf(
        DECLARED,
        vec![
            ("class", Value::String("SN".into())),
            ("score", Value::Double(0.5)),
        ],
    );
    let planned = run(&t, &[record(same)]).unwrap();
    let fp = header(&planned[0], "am-schema").unwrap().to_owned();
    assert_eq!(fp.len(), 16, "the writer schema's fingerprint");
    assert_eq!(header(&planned[0], "am-format"), Some("avro-ocf"));
    let wider = ocf(
        WIDER,
        vec![
            ("class", Value::String("SN".into())),
            ("score", Value::Double(0.5)),
            ("note", Value::String("x".into())),
        ],
    );
    run(&t, &[record(wider)]).unwrap();
    let narrow = ocf(NARROW, vec![("class", Value::String("SN".into()))]);
    let err = run(&t, &[record(narrow)]).unwrap_err().to_string();
    assert!(
        err.starts_with("records[0].payload: does not match the topic's schema"),
        "{err}"
    );
    assert!(err.contains("score"), "names the field: {err}");
    let err = run(&t, &[record(b"not avro".to_vec())])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("records[0].payload: cannot be decoded as avro-ocf"),
        "{err}"
    );
}

#[test]
fn refusals_are_counted_under_the_field_they_name() {
    let schema = topic(Some(class_schema()));
    type Change = Box<dyn Fn(&mut v1::PublishRecord)>;
    let cases: Vec<(Change, PublishRejection)> = vec![
        (
            Box::new(|r| r.payload = br#"{"class":3}"#.to_vec().into()),
            PublishRejection::payload,
        ),
        (
            Box::new(|r| r.derived_from[1] = "lasair/ztf/0/1".into()),
            PublishRejection::derived_from,
        ),
        (
            Box::new(|r| r.key = "GAIA:123".into()),
            PublishRejection::key,
        ),
        (
            Box::new(|r| r.activity.as_mut().unwrap().name.clear()),
            PublishRejection::activity,
        ),
        (
            Box::new(|r| r.used = vec![String::new()]),
            PublishRejection::used,
        ),
        (
            Box::new(|r| r.publish_id = "run-1/42".into()),
            PublishRejection::publish_id,
        ),
        (
            Box::new(|r| {
                r.payload = format!(r#"{{"class":"{}"}}"#, "x".repeat(3000))
                    .into_bytes()
                    .into()
            }),
            PublishRejection::size,
        ),
    ];
    for (change, reason) in cases {
        let mut second = good();
        second.publish_id = "run-1/43".into();
        change(&mut second);
        let err = run(&schema, &[good(), second]).unwrap_err().to_string();
        assert_eq!(rejection(&err), reason, "{err}");
    }
    let err = run(&schema, &[]).unwrap_err().to_string();
    assert_eq!(rejection(&err), PublishRejection::invalid, "{err}");
}
