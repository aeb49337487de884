//! Token verification on untrusted bytes: it must never panic, and never accept a token
//! the gateway did not sign.
//!
//! The first byte picks the mode: even bytes feed the rest to `Verifier::verify` as a
//! token; odd bytes sign the rest as a payload with a trusted key, so the claim checks
//! behind the signature are fuzzed too.
//!
//! Run: `cd auth/fuzz && cargo +nightly fuzz run verify_token`.

#![no_main]

use std::sync::OnceLock;

use alertmesh_auth::{Algorithm, KeyRing, MemoryRevocations, Verifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000;

struct Fixture {
    keys: KeyRing,
    verifier: Verifier,
    revocations: MemoryRevocations,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = KeyRing::ephemeral(Algorithm::EdDsa, NOW).expect("key generation");
        let mut verifier = Verifier::new("lasair");
        verifier.trust_keyring("lasair", &keys);
        let mut revocations = MemoryRevocations::new();
        revocations.revoke_subject("mallory", NOW);
        revocations.revoke_token("00");
        Fixture {
            keys,
            verifier,
            revocations,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let key = f.keys.current();
        let header = format!(
            r#"{{"alg":"{}","kid":"{}"}}"#,
            key.algorithm().jose_name(),
            key.kid()
        );
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(rest)
        );
        let signature = key.sign(input.as_bytes()).expect("signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    let now = NOW + u64::from(mode);
    match f.verifier.verify(&token, now, &f.revocations) {
        Ok(verified) => {
            // Only payloads signed above can verify.
            assert!(mode % 2 == 1, "an unsigned input verified");
            assert!(verified.exp > now.saturating_sub(f.verifier.leeway()));
            let _ = verified.check_still_valid(now, f.verifier.leeway(), &f.revocations);
        }
        Err(err) => {
            let message = err.to_string();
            for segment in token.split('.').filter(|s| s.len() > 16) {
                if message.contains(segment) {
                    // Echoed only if the text goes away with the token's: an input may be
                    // made of the verifier's own words.
                    let other = token.replace(segment, &"x".repeat(segment.len()));
                    let again = match f.verifier.verify(&other, now, &f.revocations) {
                        Ok(_) => String::new(),
                        Err(e) => e.to_string(),
                    };
                    assert!(again.contains(segment), "error echoes the token");
                }
            }
        }
    }
});
