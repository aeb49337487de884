use super::*;
use crate::provenance::header;

const ZTF: &[u8] = include_bytes!(
    "../../../alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01/1095578115815010001.avro"
);

fn converter(gateway: &str) -> Converter {
    Converter::new(
        gateway,
        Arc::new(Registry::builtin()),
        Arc::new(Decoder::new()),
    )
}

fn raw(payload: &[u8]) -> SourceRecord {
    SourceRecord {
        partition: 2,
        offset: 7,
        timestamp: Some(1_577_836_800_000),
        key: None,
        payload: Bytes::copy_from_slice(payload),
        headers: vec![("trace".into(), Some(b"t".to_vec()))],
        source_ref: "kafka://ztf/2/7".into(),
        gateway: None,
        format: Some(Format::AvroOcf),
        namespace: "ZTF".into(),
        schema: None,
        mesh_key: None,
        resume: None,
    }
}

fn copied(outcome: Outcome) -> Outgoing {
    match outcome {
        Outcome::Copy(out) => out,
        other => panic!("expected a copy, got {other:?}"),
    }
}

#[test]
fn keyless_ztf_alert_is_keyed_from_its_payload() {
    let c = converter("lasair");
    let record = raw(ZTF);
    assert!(c.needs_decode(&record));
    let out = copied(c.convert(record));
    let key = String::from_utf8(out.key.clone().unwrap()).unwrap();
    assert!(key.starts_with("ZTF:ZTF"), "{key}");
    assert_eq!(out.payload, ZTF, "payload byte-identical");
    assert_eq!((out.partition, out.timestamp), (2, Some(1_577_836_800_000)));
    assert_eq!(header(&out.headers, "trace"), Some("t"));
    assert_eq!(header(&out.headers, "am-ns"), Some("ZTF"));
    assert_eq!(header(&out.headers, "am-format"), Some("avro-ocf"));
    assert_eq!(header(&out.headers, "am-schema").map(str::len), Some(16));
    assert_eq!(
        header(&out.headers, "am-origin"),
        None,
        "enters the mesh here"
    );
    assert_eq!(header(&out.headers, "am-hops"), Some("lasair"));
    assert_eq!(header(&out.headers, "am-source"), Some("kafka://ztf/2/7"));
}

#[test]
fn a_keyed_record_without_am_schema_gets_one() {
    // What a filtering gateway sends for a keyless survey record: its mesh key, no schema.
    let c = converter("fink");
    let mut record = raw(ZTF);
    record.gateway = Some("lasair".into());
    record.source_ref = "am://lasair/ztf.raw/2/7".into();
    record.mesh_key = Some("ZTF:ZTF20aabaesm".into());
    assert!(
        c.needs_decode(&record),
        "the schema is read off the runtime"
    );
    let out = copied(c.convert(record));
    assert_eq!(header(&out.headers, "am-schema").map(str::len), Some(16));
    let unfiltered = copied(c.convert(raw(ZTF)));
    assert_eq!(
        header(&out.headers, "am-schema"),
        header(&unfiltered.headers, "am-schema")
    );
}

#[test]
fn gateway_record_keeps_its_key_and_gains_origin_and_hops() {
    let c = converter("b");
    let mut record = raw(b"not decoded at all");
    record.key = Some(b"ZTF:ZTF20aabaesm".to_vec());
    record.gateway = Some("a".into());
    record.source_ref = "am://a/ztf/2/7".into();
    record.schema = Some("0011223344556677".into());
    assert!(!c.needs_decode(&record));
    let out = copied(c.convert(record));
    assert_eq!(out.key.as_deref(), Some(&b"ZTF:ZTF20aabaesm"[..]));
    assert_eq!(header(&out.headers, "am-origin"), Some("am://a/ztf/2/7"));
    assert_eq!(header(&out.headers, "am-hops"), Some("a,b"));
    assert_eq!(header(&out.headers, "am-schema"), Some("0011223344556677"));
    assert_eq!(header(&out.headers, "am-source"), Some("am://a/ztf/2/7"));
}

#[test]
fn gateway_reported_mesh_key_is_used_for_a_keyless_record() {
    let c = converter("b");
    let mut record = raw(b"opaque");
    record.gateway = Some("a".into());
    record.mesh_key = Some("ZTF:ZTF20aabaesm".into());
    let out = copied(c.convert(record));
    assert_eq!(out.key.as_deref(), Some(&b"ZTF:ZTF20aabaesm"[..]));
}

#[test]
fn records_that_passed_this_gateway_are_dropped() {
    let c = converter("a");
    let mut record = raw(ZTF);
    record
        .headers
        .push(("am-hops".into(), Some(b"a,b".to_vec())));
    record.gateway = Some("b".into());
    assert_eq!(c.convert(record), Outcome::Cycle);
    let mut record = raw(ZTF);
    record.gateway = Some("a".into());
    assert_eq!(
        c.convert(record),
        Outcome::Cycle,
        "no am-hops: the ref's gateway"
    );
}

#[test]
fn garbage_and_keyless_payloads_become_dead_letters() {
    let c = converter("lasair");
    for (payload, needle) in [
        (&b"garbage"[..], "cannot decode"),
        (&b""[..], "cannot decode"),
        (&ZTF[..ZTF.len() / 2], "cannot decode"),
    ] {
        match c.convert(raw(payload)) {
            Outcome::DeadLetter(out, reason) => {
                assert!(reason.contains(needle), "{reason}");
                assert_eq!(out.payload, payload);
                assert_eq!(header(&out.headers, "am-error"), Some(reason.as_str()));
                assert_eq!(header(&out.headers, "am-source"), Some("kafka://ztf/2/7"));
                assert_eq!(header(&out.headers, "trace"), Some("t"));
            }
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }
    let mut json = raw(br#"{"hello": 1}"#);
    json.format = Some(Format::Json);
    match c.convert(json) {
        Outcome::DeadLetter(_, reason) => assert!(reason.contains("mesh key"), "{reason}"),
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

#[test]
fn an_unknown_format_is_a_dead_letter() {
    let mut record = raw(ZTF);
    record.format = None;
    assert!(matches!(
        converter("lasair").convert(record),
        Outcome::DeadLetter(_, reason) if reason == "unknown payload format"
    ));
}

#[test]
fn a_key_that_is_not_a_mesh_key_is_replaced_by_the_payload_key() {
    let c = converter("lasair");
    let mut record = raw(ZTF);
    record.key = Some(b"some-survey-key".to_vec());
    let out = copied(c.convert(record));
    assert!(out.key.unwrap().starts_with(b"ZTF:ZTF"));
}
