//! Small encodings shared by keys and tokens: unpadded base64url and lowercase hex.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Unpadded base64url, as JOSE uses it.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; padding, whitespace and the standard alphabet are rejected.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `n` random bytes from the operating system, hex-encoded.
pub(crate) fn random_hex(n: usize) -> crate::Result<String> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| crate::Error::Crypto("the system random number generator failed"))?;
    Ok(hex(&buf))
}

/// PEM armour with 64-column lines.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_unpadded_and_strict() {
        assert_eq!(b64url(b"ab"), "YWI");
        assert_eq!(b64url_decode("YWI").unwrap(), b"ab");
        assert!(b64url_decode("YWI=").is_none());
        assert!(b64url_decode("a+b/").is_none());
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(random_hex(16).unwrap().len(), 32);
    }
}
