//! Protobuf field writers and their sizes for the encoder: length-delimited fields, and the
//! decimal numbers of an alert ref written without formatter machinery.

use bytes::{BufMut, BytesMut};
use prost::encoding::{self, WireType};

use alertmesh_proto::tags::header::{KEY as HEADER_KEY, VALUE as HEADER_VALUE};

/// Bytes of an encoded `Header` message (its fields, without tag and length).
pub(super) fn header_len(k: &str, v: Option<&[u8]>) -> usize {
    (if k.is_empty() {
        0
    } else {
        field_len(HEADER_KEY, k.len())
    }) + v.map_or(0, |v| field_len(HEADER_VALUE, v.len()))
}

/// Bytes of a length-delimited field holding `len` bytes.
pub(super) fn field_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// Writes a length-delimited field; returns where its value starts and its length.
pub(super) fn put_field(tag: u32, value: &[u8], buf: &mut BytesMut) -> (usize, usize) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(value.len() as u64, buf);
    let at = buf.len();
    buf.extend_from_slice(value);
    (at, value.len())
}

/// Writes a proto3 string field, omitted when empty as prost does.
pub(super) fn put_str(tag: u32, value: &str, buf: &mut BytesMut) {
    if !value.is_empty() {
        put_field(tag, value.as_bytes(), buf);
    }
}

/// Appends `v` in decimal, as `format!` writes it (the refs' numbers, once per record or
/// row: without formatter machinery).
pub(crate) fn push_decimal(v: i64, buf: &mut impl BufMut) {
    if v < 0 {
        buf.put_u8(b'-');
    }
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

/// Characters of `v` in decimal.
pub(super) fn decimal_len(v: i64) -> usize {
    let sign = usize::from(v < 0);
    sign + v
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for v in [0, 1, 9, 10, 99, 100, 12345, i64::MAX, -1, -10, i64::MIN] {
            assert_eq!(decimal_len(v), v.to_string().len(), "{v}");
            let mut buf = BytesMut::from(&b"x"[..]);
            push_decimal(v, &mut buf);
            assert_eq!(buf.as_ref(), format!("x{v}").as_bytes());
        }
    }
}
