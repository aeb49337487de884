//! The configuration parser and validator on arbitrary text (with and without environment
//! overrides): a broken file is a list of problems, never a panic.
#![no_main]

use alertmesh_gateway::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::parse(text, &[]);
    let env = [("ALERTMESH_KAFKA_BOOTSTRAP".to_owned(), text.to_owned())];
    let _ = Config::parse(text, &env);
});
