//! The predicate parser on arbitrary text, and evaluation of whatever parses.
#![no_main]

use alertmesh_alert::apache_avro::types::Value;
use alertmesh_alert::{Predicate, Registry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Predicate::parse(text) {
        let v = Value::Record(vec![("a".into(), Value::Long(1)), ("b".into(), Value::Double(f64::NAN))]);
        let _ = p.eval(&v);
    }
    let _ = Registry::builtin().parse_key(text);
});
