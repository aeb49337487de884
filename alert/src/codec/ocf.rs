//! Avro Object Container Files (ZTF style): header, embedded schema, blocks.
//!
//! The header is read here rather than by `apache_avro::Reader`, which would re-parse the
//! embedded schema for every payload; the schema text is looked up in a [`SchemaCache`].

use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::Codec;

use crate::projection::Projection;
use crate::schema::{SchemaCache, WriterSchema};
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"Obj\x01";
/// Decompressed blocks larger than this are refused (a defence against compression bombs).
pub(crate) const MAX_BLOCK_BYTES: usize = 64 << 20;

fn malformed(reason: impl Into<String>) -> Error {
    Error::Decode {
        format: "avro-ocf",
        reason: reason.into(),
    }
}

/// A bounds-checked reader of Avro's primitive encodings.
pub(crate) struct Bytes<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub(crate) fn long(&mut self) -> Result<i64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .rest
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            self.rest = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            return Err(malformed(format!(
                "truncated: needs {n} bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.long()?).map_err(|_| malformed("negative length"))
    }
}

/// The parsed header of a container file.
struct Header<'a> {
    schema: &'a [u8],
    codec: Codec,
    sync: &'a [u8],
}

fn read_header<'a>(input: &mut Bytes<'a>) -> Result<Header<'a>> {
    if input
        .take(4)
        .map_err(|_| malformed("too short for an OCF header"))?
        != MAGIC
    {
        return Err(malformed("bad magic; expected Obj\\x01"));
    }
    let (mut schema, mut codec) = (None, Codec::Null);
    loop {
        let mut count = input.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count
                .checked_neg()
                .ok_or_else(|| malformed("bad metadata block count"))?;
            input.long()?; // block size in bytes, unused
        }
        for _ in 0..count {
            let klen = input.len()?;
            let key = input.take(klen)?;
            let vlen = input.len()?;
            let value = input.take(vlen)?;
            match key {
                b"avro.schema" => schema = Some(value),
                b"avro.codec" => {
                    let name = std::str::from_utf8(value)
                        .map_err(|_| malformed("codec name is not utf-8"))?;
                    codec = name.parse().map_err(|_| {
                        malformed(format!("unsupported codec {name:?}; supported: null, deflate, snappy, zstandard, bzip2, xz"))
                    })?;
                }
                _ => {}
            }
        }
    }
    let sync = input.take(16)?;
    let schema = schema.ok_or_else(|| malformed("header has no avro.schema"))?;
    Ok(Header {
        schema,
        codec,
        sync,
    })
}

/// Decodes the records of a container file (at most `at_most`: a caller that wants one
/// stops at the second), in full or (with a projection) only the projected fields.
pub(crate) fn decode(
    payload: &[u8],
    cache: &SchemaCache,
    projection: Option<&Projection>,
    at_most: usize,
) -> Result<(Arc<WriterSchema>, Vec<Value>)> {
    let mut input = Bytes { rest: payload };
    let header = read_header(&mut input)?;
    let schema = cache.get_or_parse(header.schema)?;
    let plan = projection.map(|p| schema.plan(p)).transpose()?;
    let mut records = Vec::new();
    while !input.rest.is_empty() {
        let count =
            usize::try_from(input.long()?).map_err(|_| malformed("negative record count"))?;
        let size = input.len()?;
        let block = input.take(size)?;
        if input.take(16)? != header.sync {
            return Err(malformed("sync marker mismatch after a block"));
        }
        let data = decompress(header.codec, block)?;
        // Every record of an alert schema takes at least a byte, so a block cannot hold
        // more records than bytes (one of an empty schema); the count is the writer's word,
        // and records that take no bytes would otherwise be added until memory runs out.
        if count > data.len().max(1) {
            return Err(malformed(format!(
                "a block announces {count} records in {} bytes",
                data.len()
            )));
        }
        let mut rest: &[u8] = &data;
        for _ in 0..count {
            if records.len() == at_most {
                return Ok((schema, records));
            }
            records.push(match &plan {
                Some(plan) => plan.read(&mut rest).map_err(malformed)?,
                None => schema.decode_datum(&mut rest).map_err(malformed)?,
            });
        }
        if !rest.is_empty() {
            return Err(malformed(format!(
                "{} bytes left over in a block",
                rest.len()
            )));
        }
    }
    Ok((schema, records))
}

fn decompress(codec: Codec, block: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    match codec {
        Codec::Null => Ok(block.into()),
        Codec::Deflate(_) => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(block, MAX_BLOCK_BYTES)
                .map(Into::into)
                .map_err(|e| malformed(format!("bad deflate block: {:?}", e.status)))
        }
        Codec::Snappy if snappy_len(block).is_none_or(|n| n > MAX_BLOCK_BYTES) => Err(malformed(
            "snappy block is malformed or decompresses past 64 MiB",
        )),
        // apache-avro inflates these without a bound (and panics on a damaged bzip2 or xz
        // block): read here through the same libraries, stopping past the limit.
        Codec::Zstandard(_) => {
            let reader = zstd::stream::read::Decoder::new(block)
                .map_err(|e| malformed(format!("bad zstandard block: {e}")))?;
            bounded(reader, "zstandard")
        }
        Codec::Bzip2(_) => bounded(bzip2::read::BzDecoder::new(block), "bzip2"),
        Codec::Xz(_) => bounded(liblzma::read::XzDecoder::new(block), "xz"),
        other => {
            let mut buf = block.to_vec();
            other
                .decompress(&mut buf)
                .map_err(|e| malformed(format!("bad compressed block: {e}")))?;
            if buf.len() > MAX_BLOCK_BYTES {
                return Err(malformed("decompressed block exceeds 64 MiB"));
            }
            Ok(buf.into())
        }
    }
}

/// What `reader` inflates to, refused past [`MAX_BLOCK_BYTES`] without reading further.
pub(super) fn bounded(
    reader: impl std::io::Read,
    codec: &str,
) -> Result<std::borrow::Cow<'static, [u8]>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    reader
        .take(MAX_BLOCK_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(format!("bad {codec} block: {e}")))?;
    if out.len() > MAX_BLOCK_BYTES {
        return Err(malformed(format!(
            "{codec} block decompresses past {} MiB",
            MAX_BLOCK_BYTES >> 20
        )));
    }
    Ok(out.into())
}

/// The decompressed length a snappy block announces (a plain varint at its start).
fn snappy_len(block: &[u8]) -> Option<usize> {
    let mut n: u64 = 0;
    for (i, &b) in block.iter().take(5).enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return usize::try_from(n).ok();
        }
    }
    None
}

/// Writes records as a container file with the given codec.
pub(crate) fn encode(schema: &WriterSchema, records: &[&Value], codec: Codec) -> Result<Vec<u8>> {
    let fail = |e: apache_avro::Error| Error::Encode {
        reason: e.to_string(),
    };
    let mut writer = apache_avro::Writer::with_codec(schema.schema(), Vec::new(), codec);
    for record in records {
        writer.append_value_ref(record).map_err(fail)?;
    }
    writer.into_inner().map_err(fail)
}
