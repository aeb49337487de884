//! A peer's JWKS document is untrusted input: parsing it must never panic.
//!
//! Run: `cd auth/fuzz && cargo +nightly fuzz run parse_jwks`.

#![no_main]

use alertmesh_auth::{Jwks, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jwks) = Jwks::from_json(data) {
        let mut verifier = Verifier::new("lasair");
        let usable = verifier.trust_jwks("peer", &jwks);
        assert!(usable <= jwks.keys.len());
        let _ = jwks.to_json();
    }
});
