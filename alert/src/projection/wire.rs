//! Bounds-checked reading of Avro's binary encoding from a byte slice: varints, lengths,
//! block headers. Every read checks what is left, so malformed input is an error.

use std::borrow::Cow;

/// Why a datum could not be read.
pub(crate) type Fail = Cow<'static, str>;

/// A cursor over the bytes of one or more datums.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire<'a> {
    rest: &'a [u8],
    /// Bytes the values decoded from it may still take (see [`Wire::charge`]).
    budget: usize,
}

/// The least memory the values of one read may take, whatever its size.
const MIN_BUDGET: usize = 64 << 20;
/// Memory the values of one read may take per byte read: a value that takes one byte on
/// the wire (an enum of a long symbol, a record of long field names, an empty array) can
/// take far more decoded, and a hostile datum repeats it.
const BUDGET_PER_BYTE: usize = 64;

fn truncated() -> Fail {
    Fail::from("truncated datum")
}

impl<'a> Wire<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Wire {
            rest: bytes,
            budget: MIN_BUDGET.max(bytes.len().saturating_mul(BUDGET_PER_BYTE)),
        }
    }

    /// Takes `n` bytes of the decoded values' budget, or fails: a datum whose values would
    /// take many times its own size in memory is refused, not built.
    #[inline]
    pub(crate) fn charge(&mut self, n: usize) -> Result<(), Fail> {
        self.budget = self.budget.checked_sub(n).ok_or_else(|| {
            Fail::from("the decoded values would take far more memory than the datum holds")
        })?;
        Ok(())
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// A zig-zag varint `long` (at most 10 bytes).
    #[inline]
    pub(crate) fn long(&mut self) -> Result<i64, Fail> {
        if let Some((&b, rest)) = self.rest.split_first() {
            if b < 0x80 {
                self.rest = rest;
                return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
            }
        }
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.rest.split_first().ok_or_else(truncated)?;
            self.rest = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(Fail::from("varint longer than 10 bytes"))
    }

    /// A non-negative length or index.
    fn len(&mut self) -> Result<usize, Fail> {
        usize::try_from(self.long()?).map_err(|_| Fail::from("negative length"))
    }

    /// An index below `n` (union branch, enum symbol).
    #[inline]
    pub(crate) fn index(&mut self, n: usize) -> Result<usize, Fail> {
        match self.len()? {
            i if i < n => Ok(i),
            i => Err(Fail::from(format!("index {i} out of range (< {n})"))),
        }
    }

    /// The next `n` bytes.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        if n > self.rest.len() {
            return Err(truncated());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn boolean(&mut self) -> Result<bool, Fail> {
        match self.take(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(Fail::from("boolean byte is neither 0 nor 1")),
        }
    }

    /// Length-prefixed `bytes` (or a string's bytes, unchecked).
    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Fail> {
        let n = self.len()?;
        self.take(n)
    }

    /// Length-prefixed `bytes`, the prefix included.
    pub(crate) fn raw_bytes(&mut self) -> Result<&'a [u8], Fail> {
        let start = self.rest;
        self.bytes()?;
        Ok(&start[..start.len() - self.rest.len()])
    }

    /// A UTF-8 string.
    pub(crate) fn string(&mut self) -> Result<&'a str, Fail> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Fail::from("string is not utf-8"))
    }

    /// An array or map block header: the item count and, for a negative count, the
    /// block's byte size.
    #[inline]
    pub(crate) fn block(&mut self) -> Result<(u64, Option<usize>), Fail> {
        let count = self.long()?;
        if count >= 0 {
            return Ok((count.unsigned_abs(), None));
        }
        let size = self.len()?;
        Ok((count.unsigned_abs(), Some(size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_lengths_and_blocks_are_bounds_checked() {
        assert_eq!(Wire::new(&[0x01]).long(), Ok(-1));
        assert_eq!(Wire::new(&[0x96, 0x01]).long(), Ok(75));
        assert_eq!(
            Wire::new(&[0xff; 10]).long().map(drop),
            Err(Fail::from("varint longer than 10 bytes"))
        );
        assert!(Wire::new(&[0x80]).long().is_err());
        assert!(Wire::new(&[0x01]).bytes().is_err());
        assert!(Wire::new(&[0x08, 1, 2]).bytes().is_err());
        assert_eq!(Wire::new(&[0x03, 0x04]).block(), Ok((2, Some(2))));
        assert!(Wire::new(&[0x02]).index(1).is_err());
        assert!(Wire::new(&[0x02]).boolean().is_err());
    }
}
