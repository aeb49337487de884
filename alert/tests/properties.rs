//! Property tests: format round trips, the cone filter against brute force, exact int64
//! predicates, and a parser that never panics.

use std::collections::HashMap;
use std::sync::Arc;

use alertmesh_alert::apache_avro::types::Value;
use alertmesh_alert::apache_avro::Codec;
use alertmesh_alert::filter::{angular_distance, Cone};
use alertmesh_alert::json::from_json;
use alertmesh_alert::schema::SchemaCache;
use alertmesh_alert::{
    decode_bare, decode_bare_projected, encode, Alert, Decoder, FieldPath, Format, JsonOptions,
    Predicate, Projection, SchemaResolver, Target, WriterSchema,
};
use proptest::prelude::*;

const SCHEMA: &str = r#"{"type":"record","name":"alert","namespace":"p","fields":[
  {"name":"id","type":"long"},
  {"name":"n","type":"int"},
  {"name":"f","type":"float"},
  {"name":"d","type":["null","double"]},
  {"name":"s","type":"string"},
  {"name":"b","type":"bytes"},
  {"name":"flag","type":"boolean"},
  {"name":"band","type":{"type":"enum","name":"band","symbols":["u","g","r","i","z","y"]}},
  {"name":"src","type":{"type":"array","items":{"type":"record","name":"src","fields":[
      {"name":"ra","type":"double"},{"name":"obj","type":["null","long"]}]}}},
  {"name":"prv","type":["null",{"type":"array","items":"src"}]},
  {"name":"tags","type":{"type":"map","values":"long"}}]}"#;

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -1e3..1e3f64
    ]
}

fn src() -> impl Strategy<Value = Value> {
    (any_f64(), proptest::option::of(any::<i64>())).prop_map(|(ra, obj)| {
        Value::Record(vec![
            ("ra".into(), Value::Double(ra)),
            (
                "obj".into(),
                obj.map_or(Value::Union(0, Box::new(Value::Null)), |o| {
                    Value::Union(1, Box::new(Value::Long(o)))
                }),
            ),
        ])
    })
}

prop_compose! {
    fn record()(
        id in any::<i64>(), n in any::<i32>(), f in any::<f32>(), d in proptest::option::of(any_f64()),
        s in "\\PC{0,20}", b in proptest::collection::vec(any::<u8>(), 0..64), flag in any::<bool>(),
        band in 0usize..6, srcs in proptest::collection::vec(src(), 0..4),
        prv in proptest::option::of(proptest::collection::vec(src(), 0..3)),
        tags in proptest::collection::hash_map("[a-z]{1,5}", any::<i64>(), 0..4),
    ) -> Value {
        let bands = ["u", "g", "r", "i", "z", "y"];
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            ("n".into(), Value::Int(n)),
            ("f".into(), Value::Float(f)),
            ("d".into(), d.map_or(Value::Union(0, Box::new(Value::Null)), |d| Value::Union(1, Box::new(Value::Double(d))))),
            ("s".into(), Value::String(s)),
            ("b".into(), Value::Bytes(b)),
            ("flag".into(), Value::Boolean(flag)),
            ("band".into(), Value::Enum(band as u32, bands[band].into())),
            ("src".into(), Value::Array(srcs)),
            ("prv".into(), prv.map_or(Value::Union(0, Box::new(Value::Null)), |p| Value::Union(1, Box::new(Value::Array(p))))),
            ("tags".into(), Value::Map(tags.into_iter().map(|(k, v)| (k, Value::Long(v))).collect::<HashMap<_, _>>())),
        ])
    }
}

#[derive(Debug)]
struct Fixed(Arc<alertmesh_alert::apache_avro::Schema>);

impl SchemaResolver for Fixed {
    fn resolve(
        &self,
        _id: u32,
    ) -> alertmesh_alert::Result<Arc<alertmesh_alert::apache_avro::Schema>> {
        Ok(self.0.clone())
    }
}

fn schema() -> Arc<WriterSchema> {
    Arc::new(WriterSchema::parse(SCHEMA).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_format_round_trips(value in record()) {
        let ws = schema();
        let alert = Alert::new(value, Some(ws.clone()));
        // Values can hold NaN and maps have no order, so equality is checked on the
        // canonical JSON (sorted map keys, NaN as "NaN"; floats in shortest round-trip form).
        let canonical = |a: &Alert| a.to_json(JsonOptions::default());
        let want = canonical(&alert);
        let decoder = Decoder::with_resolver(Arc::new(Fixed(Arc::new(ws.schema().clone()))));
        for target in [Target::Ocf(Codec::Null), Target::Ocf(Codec::Snappy), Target::Confluent(1100)] {
            let bytes = encode(&alert, target).unwrap();
            let back = decoder.decode(target.format().unwrap(), &bytes).unwrap();
            prop_assert_eq!(&canonical(&back), &want);
        }
        let bare = encode(&alert, Target::Bare).unwrap();
        prop_assert_eq!(&canonical(&decode_bare(&ws, &bare).unwrap()), &want);
        let json: serde_json::Value = serde_json::from_slice(&want).unwrap();
        let back = Alert::new(from_json(&json, ws.schema()).unwrap(), Some(ws.clone()));
        prop_assert_eq!(&canonical(&back), &want);
        prop_assert_eq!(encode(&back, Target::Bare).unwrap().len(), bare.len());
    }

    #[test]
    fn projected_lookups_equal_full_lookups(value in record(), pick in proptest::collection::vec(0usize..14, 0..5)) {
        let all = ["id", "n", "f", "d", "s", "b", "flag", "band", "src", "prv", "tags", "tags.a", "d.x", "nope"];
        let paths: Vec<FieldPath> = pick.iter().map(|&i| FieldPath::parse(all[i]).unwrap()).collect();
        let ws = schema();
        let bare = encode(&Alert::new(value, Some(ws.clone())), Target::Bare).unwrap();
        let full = decode_bare(&ws, &bare).unwrap();
        let projection = Projection::new(paths.iter().cloned());
        let part = decode_bare_projected(&ws, &bare, &projection).unwrap();
        for p in &paths {
            // Canonical JSON: values may hold NaN and maps have no order.
            let json = |v: Option<&Value>| v.map(|v| Alert::new(v.clone(), None).to_json(JsonOptions::default()));
            prop_assert_eq!(json(p.lookup(part.value())), json(p.lookup(full.value())), "{}", p);
        }
        for cut in [0, bare.len() / 2, bare.len().saturating_sub(1)] {
            if cut < bare.len() {
                prop_assert!(decode_bare_projected(&ws, &bare[..cut], &projection).is_err());
            }
        }
    }

    #[test]
    fn cone_agrees_with_brute_force_great_circle_distance(
        ra in -720.0..720.0f64, dec in -90.0..=90.0f64, radius in 0.0..=180.0f64,
        pra in 0.0..360.0f64, pdec in -90.0..=90.0f64,
    ) {
        let cone = Cone::new(ra, dec, radius).unwrap();
        let unit = |ra: f64, dec: f64| {
            let (r, d) = (ra.to_radians(), dec.to_radians());
            [d.cos() * r.cos(), d.cos() * r.sin(), d.sin()]
        };
        let (a, b) = (unit(ra, dec), unit(pra, pdec));
        let chord = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
        let brute = 2.0 * (chord / 2.0).min(1.0).asin().to_degrees();
        prop_assume!((brute - radius).abs() > 1e-9);
        prop_assert_eq!(cone.contains(pra, pdec), brute < radius, "brute {} vincenty {}", brute, angular_distance(ra, dec, pra, pdec));
    }

    #[test]
    fn cone_near_poles_and_ra_wrap(dra in -1.0..1.0f64, ddec in 0.0..2.0f64, radius in 0.0..3.0f64) {
        for (ra, dec) in [(0.0, 90.0 - ddec), (359.9, 0.0), (0.1, -90.0 + ddec)] {
            let cone = Cone::new(ra, dec, radius).unwrap();
            let (pra, pdec) = ((ra + dra * 50.0).rem_euclid(360.0), (dec - ddec / 2.0).clamp(-90.0, 90.0));
            let d = angular_distance(ra, dec, pra, pdec);
            prop_assume!((d - radius).abs() > 1e-9);
            prop_assert_eq!(cone.contains(pra, pdec), d < radius);
        }
    }

    #[test]
    fn int64_predicates_are_exact(a in any::<i64>(), b in any::<i64>(), near in -3i64..3) {
        let b = if near == 0 { b } else { a.saturating_add(near) };
        let v = Value::Record(vec![("x".into(), Value::Long(a))]);
        for (op, want) in [("==", a == b), ("!=", a != b), ("<", a < b), ("<=", a <= b), (">", a > b), (">=", a >= b)] {
            prop_assert_eq!(Predicate::parse(&format!("x {op} {b}")).unwrap().eval(&v), want);
        }
    }

    #[test]
    fn predicate_parser_never_panics(text in "\\PC{0,40}") {
        let _ = Predicate::parse(&text);
    }

    #[test]
    fn decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let decoder = Decoder::new();
        for format in [Format::AvroOcf, Format::AvroConfluent, Format::Json] {
            let _ = decoder.decode_all(format, &bytes);
        }
        let mut ocf = b"Obj\x01".to_vec();
        ocf.extend_from_slice(&bytes);
        let _ = decoder.decode_all(Format::AvroOcf, &ocf);
        let _ = decode_bare(&schema(), &bytes);
        let projection = Projection::new(["id", "tags.a", "prv"].map(|p| FieldPath::parse(p).unwrap()));
        let _ = decode_bare_projected(&schema(), &bytes, &projection);
        let _ = decoder.decode_all_projected(Format::AvroOcf, &ocf, &projection);
        let _ = SchemaCache::default().get_or_parse(&bytes);
    }
}
