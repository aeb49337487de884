//! Resume tokens: `amq1.` and, base64url, the order value of the last alert delivered and
//! a digest that binds it to the gateway, the query and the request's filters. An
//! integer order value is 8 bytes; any other (text, a timestamp, a numeric in its text
//! form) is `amq2.` and its UTF-8 bytes, at most [`MAX_TEXT_ORDER`] of them.
//!
//! The digest is not a secret's MAC: a client that forges a token can only choose where
//! the stream starts, which `where <order> > N` already lets it do. What it catches is a
//! token used with another query or other filters (it would skip or repeat rows), and a
//! damaged one.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::OrderValue;
use crate::error::{Error, Result};

const PREFIX: &str = "amq1.";
const TEXT_PREFIX: &str = "amq2.";
/// The longest text order value a token (or a row ref) carries.
pub(crate) const MAX_TEXT_ORDER: usize = 1024;
const DIGEST_LEN: usize = 16;

/// What a token is bound to: the same for every batch of one request.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    digest: [u8; 32],
}

impl Binding {
    /// Binds to `gateway`, `query`, and the request's `filter` text, cone and ids.
    pub(crate) fn new(
        gateway: &str,
        query: &str,
        filter: &str,
        cone: Option<(f64, f64, f64)>,
        ids: &[String],
    ) -> Binding {
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(b"alertmesh query resume v1");
        field(gateway.as_bytes());
        field(query.as_bytes());
        field(filter.as_bytes());
        match cone {
            Some((ra, dec, r)) => {
                let mut b = Vec::with_capacity(24);
                for v in [ra, dec, r] {
                    b.extend_from_slice(&v.to_bits().to_be_bytes());
                }
                field(&b);
            }
            None => field(b"no cone"),
        }
        field(&(ids.len() as u64).to_be_bytes());
        for id in ids {
            field(id.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Binding { digest: out }
    }

    fn check(&self, last: &[u8], text: bool) -> [u8; DIGEST_LEN] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.digest);
        if text {
            // Text values are told apart from integers (never the same 8 bytes).
            ctx.update(b"text");
        }
        ctx.update(last);
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(&ctx.finish().as_ref()[..DIGEST_LEN]);
        out
    }

    /// The token that resumes after the row whose order value is `last`.
    pub(crate) fn token(&self, last: &OrderValue) -> String {
        let (prefix, value, text) = match last {
            OrderValue::Int(i) => (PREFIX, i.to_be_bytes().to_vec(), false),
            OrderValue::Text(t) => (TEXT_PREFIX, t.as_bytes().to_vec(), true),
        };
        let mut bytes = Vec::with_capacity(value.len() + DIGEST_LEN);
        bytes.extend_from_slice(&self.check(&value, text));
        bytes.extend_from_slice(&value);
        if !text {
            // Integer tokens keep their first layout: value, then digest.
            bytes.rotate_left(DIGEST_LEN);
        }
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The order value `token` resumes after, if it was made for this binding.
    pub(crate) fn resume(&self, token: &str) -> Result<OrderValue> {
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "resume_token {why}; use a token from a stream of the same query with the same where, cone and ids"
            )))
        };
        if let Some(body) = token.strip_prefix(TEXT_PREFIX) {
            if body.len() > (MAX_TEXT_ORDER + DIGEST_LEN) * 4 / 3 + 4 {
                return bad("is malformed");
            }
            let Ok(bytes) = URL_SAFE_NO_PAD.decode(body) else {
                return bad("is malformed");
            };
            if bytes.len() < DIGEST_LEN {
                return bad("is malformed");
            }
            let (digest, value) = bytes.split_at(DIGEST_LEN);
            if digest != self.check(value, true) {
                return bad("belongs to another query, filter or gateway, or was altered");
            }
            return match std::str::from_utf8(value) {
                Ok(t) => Ok(OrderValue::Text(t.to_owned())),
                Err(_) => bad("is malformed"),
            };
        }
        self.resume_int(token).map(OrderValue::Int)
    }

    fn resume_int(&self, token: &str) -> Result<i64> {
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "resume_token {why}; use a token from a stream of the same query with the same where, cone and ids"
            )))
        };
        let Some(body) = token.strip_prefix(PREFIX) else {
            return bad("is not an alertmesh query token");
        };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(body) else {
            return bad("is malformed");
        };
        if bytes.len() != 8 + DIGEST_LEN {
            return bad("is malformed");
        }
        let mut last = [0u8; 8];
        last.copy_from_slice(&bytes[..8]);
        let last = i64::from_be_bytes(last);
        if bytes[8..] != self.check(&last.to_be_bytes(), false) {
            return bad("belongs to another query, filter or gateway, or was altered");
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_resumes_only_its_own_query_and_filters() {
        let b = Binding::new("lasair", "objects", "mag < 18", None, &[]);
        let t = b.token(&OrderValue::Int(i64::MAX - 1));
        assert_eq!(b.resume(&t).unwrap(), OrderValue::Int(i64::MAX - 1));
        let text = OrderValue::Text("2026-12-01 10:00:00.123456+00".into());
        let tt = b.token(&text);
        assert!(tt.starts_with(TEXT_PREFIX), "{tt}");
        assert_eq!(b.resume(&tt).unwrap(), text);
        let other = [
            Binding::new("lasair", "objects", "mag < 19", None, &[]),
            Binding::new("fink", "objects", "mag < 18", None, &[]),
            Binding::new("lasair", "sources", "mag < 18", None, &[]),
            Binding::new("lasair", "objects", "mag < 18", Some((1.0, 2.0, 3.0)), &[]),
            Binding::new("lasair", "objects", "mag < 18", None, &["ZTF:a".into()]),
        ];
        for o in other {
            assert!(o.resume(&t).is_err());
            assert!(o.resume(&tt).is_err());
        }
        // A text token whose value was swapped keeps no valid digest.
        let mut raw = URL_SAFE_NO_PAD.decode(&tt[TEXT_PREFIX.len()..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let altered = format!("{TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        assert!(b.resume(&altered).is_err());
        // Altered order value.
        let mut raw = URL_SAFE_NO_PAD.decode(&t[PREFIX.len()..]).unwrap();
        raw[7] ^= 1;
        let altered = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        assert!(b.resume(&altered).is_err());
        for junk in [
            "",
            "amq1.",
            "amq1.!!!",
            "x",
            &"amq1.AAAA".repeat(1000),
            "amq2.",
            "amq2.AAAA",
            &format!("amq2.{}", "A".repeat(5000)),
        ] {
            let e = b.resume(junk).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{junk}");
        }
    }
}
