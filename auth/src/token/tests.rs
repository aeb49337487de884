//! The bad-token matrix and the good paths, at the verifier level.

use serde_json::json;

use super::*;
use crate::encoding::{b64url, b64url_decode};
use crate::keys::{Algorithm, KeyRing, SigningKey};
use crate::revocation::{MemoryRevocations, NoRevocations};
use crate::scope::{Action, Scope};

const NOW: u64 = 1_700_000_000;

struct Mesh {
    lasair: Issuer,
    fink: Issuer,
    verifier: Verifier,
}

/// Gateway `lasair` (EdDSA) verifying its own tokens and those of peer `fink` (ES256, by JWKS).
fn mesh() -> Mesh {
    let lasair = Issuer::new("lasair", KeyRing::ephemeral(Algorithm::EdDsa, NOW).unwrap());
    let fink = Issuer::new("fink", KeyRing::ephemeral(Algorithm::Es256, NOW).unwrap());
    let mut verifier = Verifier::new("lasair");
    verifier.trust_keyring("lasair", lasair.keyring());
    let jwks = crate::keys::Jwks::from_json(fink.keyring().jwks().to_json().as_bytes()).unwrap();
    assert_eq!(verifier.trust_jwks("fink", &jwks), 1);
    Mesh {
        lasair,
        fink,
        verifier,
    }
}

fn request(sub: &str, aud: &str) -> TokenRequest {
    TokenRequest {
        sub: sub.to_owned(),
        aud: aud.to_owned(),
        scopes: vec!["subscribe:ztf.*".parse().unwrap(), Scope::Mirror],
        ttl: 3600,
        not_before: None,
    }
}

/// A token with any header and payload, signed by `key`.
fn forge(key: &SigningKey, header: serde_json::Value, payload: serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64url(&sig))
}

fn claims(now: u64) -> serde_json::Value {
    json!({"iss": "lasair", "sub": "alice", "aud": "lasair", "exp": now + 60, "iat": now,
           "jti": "00ff", "scope": "subscribe:ztf.*"})
}

fn header(key: &SigningKey) -> serde_json::Value {
    json!({"alg": key.algorithm().jose_name(), "kid": key.kid(), "typ": "JWT"})
}

fn verify(m: &Mesh, token: &str) -> Result<VerifiedToken, TokenError> {
    m.verifier.verify(token, NOW, &NoRevocations)
}

fn assert_secret_free(err: &TokenError, token: &str) {
    let text = err.to_string();
    for segment in token.split('.').filter(|s| s.len() > 8) {
        assert!(!text.contains(segment), "{text} echoes a token segment");
    }
    assert!(
        text.chars().next().is_some_and(|c| !c.is_uppercase()),
        "{text}"
    );
}

#[test]
fn good_tokens_of_own_and_peer_issuers_verify() {
    let m = mesh();
    let own = m.lasair.issue(&request("alice", "lasair"), NOW).unwrap();
    let v = verify(&m, &own.token).unwrap();
    assert_eq!(v.principal.name, "alice");
    assert!(v.principal.may(Action::Subscribe, "ztf.alerts"));
    assert!(v.principal.has(&Scope::Mirror));
    assert_eq!((v.issuer.as_str(), v.exp), ("lasair", NOW + 3600));
    assert_eq!(v.jti, own.claims.jti);
    assert_eq!(v.jti.len(), 32);

    let peer = m.fink.issue(&request("fink", "lasair"), NOW).unwrap();
    let v = verify(&m, &peer.token).unwrap();
    assert_eq!(
        (v.principal.name.as_str(), v.issuer.as_str()),
        ("fink", "fink")
    );
    assert!(!format!("{own:?}").contains(&own.token));
}

#[test]
fn audience_arrays_and_unknown_scopes_are_accepted() {
    let m = mesh();
    let key = m.lasair.keyring().current();
    let mut payload = claims(NOW);
    payload["aud"] = json!(["fink", "lasair"]);
    payload["scope"] = json!("archive:x fetch:lsst.* admin");
    let v = verify(&m, &forge(key, header(key), payload)).unwrap();
    assert_eq!(v.ignored_scopes, vec!["archive:x"]);
    assert_eq!(v.principal.scopes.len(), 2);
}

#[test]
fn bad_token_matrix_gives_distinct_helpful_errors() {
    let m = mesh();
    let key = m.lasair.keyring().current();
    let good = m
        .lasair
        .issue(&request("alice", "lasair"), NOW)
        .unwrap()
        .token;
    let segs: Vec<&str> = good.split('.').collect();
    let public = b64url_decode(key.verifying_key().to_jwk().x.as_deref().unwrap()).unwrap();
    let hs256 = {
        let input = format!(
            "{}.{}",
            b64url(
                json!({"alg": "HS256", "kid": key.kid()})
                    .to_string()
                    .as_bytes()
            ),
            segs[1]
        );
        let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public);
        let tag = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
        format!("{input}.{}", b64url(tag.as_ref()))
    };
    let alg_none = format!(
        "{}.{}.",
        b64url(
            json!({"alg": "none", "kid": key.kid()})
                .to_string()
                .as_bytes()
        ),
        segs[1]
    );
    let es256_header = {
        let mut h = header(key);
        h["alg"] = json!("ES256");
        forge(key, h, claims(NOW))
    };
    let stranger = Issuer::new(
        "mallory",
        KeyRing::ephemeral(Algorithm::EdDsa, NOW).unwrap(),
    );
    let rogue_key = SigningKey::generate(Algorithm::EdDsa, NOW).unwrap();
    let mut tampered_payload = claims(NOW);
    tampered_payload["scope"] = json!("admin");
    let tampered_payload = format!(
        "{}.{}.{}",
        segs[0],
        b64url(tampered_payload.to_string().as_bytes()),
        segs[2]
    );
    let mut sig = segs[2].to_owned().into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let tampered_sig = format!(
        "{}.{}.{}",
        segs[0],
        segs[1],
        String::from_utf8(sig).unwrap()
    );
    let without = |claim: &str| {
        let mut p = claims(NOW);
        p.as_object_mut().unwrap().remove(claim);
        forge(key, header(key), p)
    };
    let with = |claim: &str, value: serde_json::Value| {
        let mut p = claims(NOW);
        p[claim] = value;
        forge(key, header(key), p)
    };
    let mut no_kid = header(key);
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut crit = header(key);
    crit["crit"] = json!(["exp"]);
    let mut unencoded = header(key);
    unencoded["b64"] = json!(false);

    let cases: Vec<(&str, String, TokenError)> = vec![
        ("empty", String::new(), TokenError::Missing),
        (
            "garbage",
            "garbage".into(),
            TokenError::Malformed {
                reason: "expected three base64url segments separated by dots",
            },
        ),
        (
            "not base64",
            "a!.b.c".into(),
            TokenError::Malformed {
                reason: "the header is not base64url",
            },
        ),
        (
            "too large",
            "a".repeat(MAX_TOKEN_BYTES + 1),
            TokenError::TooLarge {
                max: MAX_TOKEN_BYTES,
            },
        ),
        ("alg none", alg_none, TokenError::Unsigned),
        (
            "hs256 with the public key",
            hs256,
            TokenError::UnsupportedAlgorithm {
                alg: "HS256".into(),
            },
        ),
        (
            "alg mismatch",
            es256_header,
            TokenError::AlgorithmMismatch {
                kid: key.kid().into(),
                expected: Algorithm::EdDsa,
                found: Algorithm::Es256,
            },
        ),
        (
            "no kid",
            forge(key, no_kid, claims(NOW)),
            TokenError::MissingKid,
        ),
        (
            "crit",
            forge(key, crit, claims(NOW)),
            TokenError::UnsupportedCritical,
        ),
        (
            "unencoded payload",
            forge(key, unencoded, claims(NOW)),
            TokenError::Malformed {
                reason: "the header has members that are not supported",
            },
        ),
        (
            "signature not base64",
            format!("{}.{}.a!b", segs[0], segs[1]),
            TokenError::Malformed {
                reason: "the signature is not base64url",
            },
        ),
        (
            "wrong iss",
            stranger
                .issue(&request("alice", "lasair"), NOW)
                .unwrap()
                .token,
            TokenError::UnknownIssuer {
                issuer: "mallory".into(),
            },
        ),
        (
            "unknown kid",
            forge(&rogue_key, header(&rogue_key), claims(NOW)),
            TokenError::UnknownKey {
                issuer: "lasair".into(),
                kid: rogue_key.kid().into(),
            },
        ),
        (
            "tampered payload",
            tampered_payload,
            TokenError::BadSignature,
        ),
        ("tampered signature", tampered_sig, TokenError::BadSignature),
        (
            "expired",
            m.lasair
                .issue(&request("alice", "lasair"), NOW - 3600 - 11)
                .unwrap()
                .token,
            TokenError::Expired {
                exp: NOW - 11,
                now: NOW,
            },
        ),
        (
            "nbf in the future",
            with("nbf", json!(NOW + 11)),
            TokenError::NotYetValid {
                nbf: NOW + 11,
                now: NOW,
            },
        ),
        (
            "iat in the future",
            with("iat", json!(NOW + 11)),
            TokenError::IssuedInFuture {
                iat: NOW + 11,
                now: NOW,
            },
        ),
        (
            "wrong aud",
            m.lasair
                .issue(&request("alice", "fink"), NOW)
                .unwrap()
                .token,
            TokenError::WrongAudience {
                expected: "lasair".into(),
                found: "fink".into(),
            },
        ),
        (
            "missing iss",
            without("iss"),
            TokenError::MissingClaim { claim: "iss" },
        ),
        (
            "missing exp",
            without("exp"),
            TokenError::MissingClaim { claim: "exp" },
        ),
        (
            "missing aud",
            without("aud"),
            TokenError::MissingClaim { claim: "aud" },
        ),
        (
            "missing sub",
            without("sub"),
            TokenError::MissingClaim { claim: "sub" },
        ),
        (
            "missing jti",
            without("jti"),
            TokenError::MissingClaim { claim: "jti" },
        ),
        (
            "exp not a number",
            with("exp", json!("tomorrow")),
            TokenError::InvalidClaim {
                claim: "exp",
                reason: "not a number of seconds",
            },
        ),
    ];
    for (name, token, expected) in cases {
        let err = verify(&m, &token).unwrap_err();
        assert_eq!(err, expected, "{name}");
        assert_secret_free(&err, &token);
    }
}

#[test]
fn leeway_is_honoured_and_capped_at_30_seconds() {
    let m = mesh();
    let token = m
        .lasair
        .issue(&request("alice", "lasair"), NOW - 3600 - 5)
        .unwrap()
        .token;
    assert!(verify(&m, &token).is_ok());
    let strict = m.verifier.clone().with_leeway(0);
    assert!(matches!(
        strict.verify(&token, NOW, &NoRevocations),
        Err(TokenError::Expired { .. })
    ));
    assert_eq!(m.verifier.clone().with_leeway(300).leeway(), MAX_LEEWAY);
}

#[test]
fn revoked_tokens_and_subjects_are_refused_also_on_open_streams() {
    let m = mesh();
    let issued = m.lasair.issue(&request("alice", "lasair"), NOW).unwrap();
    let mut revoked = MemoryRevocations::new();
    let open = m.verifier.verify(&issued.token, NOW, &revoked).unwrap();

    revoked.revoke_token(issued.claims.jti.clone());
    let err = m.verifier.verify(&issued.token, NOW, &revoked).unwrap_err();
    assert_eq!(
        err,
        TokenError::Revoked {
            jti: issued.claims.jti.clone()
        }
    );
    assert_eq!(open.check_still_valid(NOW + 1, 10, &revoked), Err(err));

    let mut revoked = MemoryRevocations::new();
    revoked.revoke_subject("alice", NOW);
    let err = m.verifier.verify(&issued.token, NOW, &revoked).unwrap_err();
    assert_eq!(
        err,
        TokenError::SubjectRevoked {
            sub: "alice".into(),
            at: NOW
        }
    );
    let later = m
        .lasair
        .issue(&request("alice", "lasair"), NOW + 1)
        .unwrap();
    assert!(m.verifier.verify(&later.token, NOW + 1, &revoked).is_ok());
    assert!(matches!(
        open.check_still_valid(NOW + 3600 + 10, 10, &NoRevocations),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn scope_not_covering_the_topic_is_permission_denied() {
    let m = mesh();
    let token = m
        .lasair
        .issue(&request("alice", "lasair"), NOW)
        .unwrap()
        .token;
    let v = verify(&m, &token).unwrap();
    assert!(v.principal.require(Action::Subscribe, "ztf.alerts").is_ok());
    let err = v
        .principal
        .require(Action::Subscribe, "lsst.alerts")
        .unwrap_err();
    assert!(matches!(err, crate::Error::NotPermitted { .. }));
    assert_eq!(
        err.to_string(),
        "alice may not do this: it needs the scope subscribe:lsst.alerts; ask the gateway admin for a token with it"
    );
}

#[test]
fn rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_kid() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::init(tmp.path(), Algorithm::EdDsa, NOW).unwrap();
    let old_kid = ring.current().kid().to_owned();
    let old = Issuer::new("lasair", ring)
        .issue(&request("alice", "lasair"), NOW)
        .unwrap();

    let rotated = Issuer::new(
        "lasair",
        KeyRing::rotate(tmp.path(), Algorithm::EdDsa, NOW + 10).unwrap(),
    );
    let new = rotated
        .issue(&request("alice", "lasair"), NOW + 10)
        .unwrap();
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_eq!(kid_of(&old.token), old_kid);
    assert_eq!(kid_of(&new.token), rotated.keyring().current().kid());
    assert_ne!(kid_of(&new.token), old_kid);

    let mut verifier = Verifier::new("lasair");
    verifier.trust_keyring("lasair", rotated.keyring());
    assert!(verifier
        .verify(&old.token, NOW + 10, &NoRevocations)
        .is_ok());
    assert!(verifier
        .verify(&new.token, NOW + 10, &NoRevocations)
        .is_ok());

    let pruned = KeyRing::prune(tmp.path(), NOW + 10 + DEFAULT_MAX_TTL, DEFAULT_MAX_TTL).unwrap();
    verifier.trust_keyring("lasair", &pruned);
    let err = verifier
        .verify(&old.token, NOW + 20, &NoRevocations)
        .unwrap_err();
    assert!(err.is_unknown_key(), "{err}");
}

#[test]
fn issue_refuses_bad_requests_and_bearer_values_are_parsed() {
    let m = mesh();
    let mut r = request("alice", "lasair");
    r.ttl = DEFAULT_MAX_TTL + 1;
    assert!(m.lasair.issue(&r, NOW).is_err());
    assert!(m.lasair.issue(&request(" ", "lasair"), NOW).is_err());
    assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
    assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
    assert_eq!(bearer_token(None), Err(TokenError::Missing));
    assert_eq!(bearer_token(Some("Bearer ")), Err(TokenError::Missing));
    assert!(matches!(
        bearer_token(Some("Basic abc")),
        Err(TokenError::Malformed { .. })
    ));
}
