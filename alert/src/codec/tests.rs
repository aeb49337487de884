use apache_avro::schema::Schema;

use super::*;
use crate::json::BytesMode;

const SCHEMA: &str = r#"{"type":"record","name":"alert","namespace":"t","fields":[
    {"name":"id","type":"long"},{"name":"ra","type":"double"},{"name":"cutout","type":["null","bytes"]}]}"#;

fn alert(id: i64) -> Alert {
    let schema = Arc::new(WriterSchema::parse(SCHEMA).unwrap());
    let value = Value::Record(vec![
        ("id".into(), Value::Long(id)),
        ("ra".into(), Value::Double(359.99)),
        (
            "cutout".into(),
            Value::Union(1, Box::new(Value::Bytes(vec![7; 100]))),
        ),
    ]);
    Alert::new(value, Some(schema))
}

#[derive(Debug)]
struct One(Arc<Schema>);

impl SchemaResolver for One {
    fn resolve(&self, id: u32) -> Result<Arc<Schema>> {
        if id == 1100 {
            Ok(self.0.clone())
        } else {
            Err(Error::UnknownSchemaId(id))
        }
    }
}

#[test]
fn ocf_round_trips_with_every_codec_and_reuses_the_schema() {
    let decoder = Decoder::new();
    let codecs = [
        Codec::Null,
        Codec::Deflate(Default::default()),
        Codec::Snappy,
        Codec::Zstandard(Default::default()),
        Codec::Bzip2(Default::default()),
        Codec::Xz(Default::default()),
    ];
    let mut first = None;
    for codec in codecs {
        let bytes = encode(&alert(i64::MIN), Target::Ocf(codec)).unwrap();
        let back = decoder.decode(Format::AvroOcf, &bytes).unwrap();
        assert_eq!(back.value(), alert(i64::MIN).value(), "{codec:?}");
        let schema = back.schema().unwrap().clone();
        assert!(
            Arc::ptr_eq(first.get_or_insert(schema.clone()), &schema),
            "schema not cached"
        );
    }
}

#[test]
fn confluent_payloads_resolve_their_schema_once() {
    let schema = Arc::new(Schema::parse_str(SCHEMA).unwrap());
    let decoder = Decoder::with_resolver(Arc::new(One(schema)));
    let bytes = encode(&alert(42), Target::Confluent(1100)).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 4, 0x4c]);
    let a = decoder.decode(Format::AvroConfluent, &bytes).unwrap();
    let b = decoder.decode(Format::AvroConfluent, &bytes).unwrap();
    assert_eq!(a.value(), alert(42).value());
    assert!(Arc::ptr_eq(a.schema().unwrap(), b.schema().unwrap()));
    let other = encode(&alert(42), Target::Confluent(900)).unwrap();
    assert_eq!(
        decoder.decode(Format::AvroConfluent, &other).unwrap_err(),
        Error::UnknownSchemaId(900)
    );
    assert!(Decoder::new()
        .decode(Format::AvroConfluent, &bytes)
        .is_err());
}

#[test]
fn bare_and_json_round_trip() {
    let a = alert(-1);
    let bare = encode(&a, Target::Bare).unwrap();
    let back = decode_bare(a.schema().unwrap(), &bare).unwrap();
    assert_eq!(back.value(), a.value());
    let mut longer = bare.clone();
    longer.push(0);
    assert!(decode_bare(a.schema().unwrap(), &longer).is_err());

    let json = encode(
        &a,
        Target::Json(JsonOptions {
            bytes: BytesMode::OmitCutouts,
            ..JsonOptions::default()
        }),
    )
    .unwrap();
    let decoded = Decoder::new().decode(Format::Json, &json).unwrap();
    assert!(decoded.schema().is_none());
    assert!(encode(&decoded, Target::Bare).is_err());
}

#[test]
fn truncated_and_garbage_payloads_are_errors() {
    let decoder = Decoder::new();
    let bytes = encode(&alert(5), Target::Ocf(Codec::Deflate(Default::default()))).unwrap();
    for n in 0..bytes.len() {
        assert!(
            decoder.decode(Format::AvroOcf, &bytes[..n]).is_err(),
            "prefix {n}"
        );
    }
    assert!(decoder.decode(Format::AvroOcf, b"Obj\x01\x02\x00").is_err());
    assert!(decoder.decode(Format::Json, b"{").is_err());
}

/// An OCF file of `schema` (codec null) whose blocks are given as (record count, data).
fn ocf_with_blocks(schema: &str, blocks: &[(i64, Vec<u8>)]) -> Vec<u8> {
    fn long(out: &mut Vec<u8>, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let sync = [7u8; 16];
    let mut out = b"Obj\x01".to_vec();
    long(&mut out, 1);
    long(&mut out, "avro.schema".len() as i64);
    out.extend(b"avro.schema");
    long(&mut out, schema.len() as i64);
    out.extend(schema.as_bytes());
    long(&mut out, 0);
    out.extend(sync);
    for (count, data) in blocks {
        long(&mut out, *count);
        long(&mut out, data.len() as i64);
        out.extend(data);
        out.extend(sync);
    }
    out
}

/// Tiny hostile payloads (anyone who may produce to a topic writes them) that once made a
/// decode take memory until the process died: records of an empty schema (no bytes each),
/// counted 2^62 in one block; an array of nulls spread over blocks of 4 Mi each (apache-avro
/// bounds only each block's count). Both are errors now, at once.
#[test]
fn records_and_items_that_take_no_bytes_are_bounded() {
    let decoder = Decoder::new();
    let empty = r#"{"type":"record","name":"r","fields":[]}"#;
    let bomb = ocf_with_blocks(empty, &[(1 << 62, vec![])]);
    assert!(bomb.len() < 120, "{} bytes", bomb.len());
    let err = decoder
        .decode_all(Format::AvroOcf, &bomb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("announces"), "{err}");
    // One such record is a record.
    let one = ocf_with_blocks(empty, &[(1, vec![])]);
    assert_eq!(decoder.decode_all(Format::AvroOcf, &one).unwrap().len(), 1);

    let nulls = r#"{"type":"record","name":"r","fields":[
        {"name":"xs","type":{"type":"array","items":"null"}}]}"#;
    // 4 Mi - 1 nulls per block (varint 0xfe 0xff 0xff 0x03), 250 blocks, then the end.
    let mut datum = Vec::new();
    for _ in 0..250 {
        datum.extend([0xfe, 0xff, 0xff, 0x03]);
    }
    datum.push(0);
    let bomb = ocf_with_blocks(nulls, &[(1, datum)]);
    assert!(bomb.len() < 1200);
    let err = decoder
        .decode(Format::AvroOcf, &bomb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty items"), "{err}");
}

/// A payload that must hold one alert is not decoded past its second record.
#[test]
fn a_single_alert_decode_stops_at_the_second_record() {
    let decoder = Decoder::new();
    let schema = r#"{"type":"record","name":"r","fields":[{"name":"id","type":"long"}]}"#;
    // A million one-byte records.
    let bomb = ocf_with_blocks(schema, &[(1 << 20, vec![2; 1 << 20])]);
    let err = decoder
        .decode(Format::AvroOcf, &bomb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than one record"), "{err}");
    assert_eq!(
        decoder.decode_all(Format::AvroOcf, &bomb).unwrap().len(),
        1 << 20
    );
}

/// A container file with `codec` named in its header (`avro.codec`).
fn ocf_with_codec(schema: &str, codec: &str, blocks: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let plain = ocf_with_blocks(schema, blocks);
    // The header's map of one entry becomes a map of two: the codec goes in after it.
    let schema_entry_end = plain
        .windows(schema.len())
        .position(|w| w == schema.as_bytes())
        .unwrap()
        + schema.len();
    let mut out = plain[..4].to_vec();
    out.push(4); // two entries (zigzag)
    out.extend(&plain[5..schema_entry_end]);
    out.push((("avro.codec".len() as u8) << 1) & 0x7f);
    out.extend(b"avro.codec");
    out.push(((codec.len() as u8) << 1) & 0x7f);
    out.extend(codec.as_bytes());
    out.extend(&plain[schema_entry_end..]);
    out
}

/// A block that inflates past 64 MiB is refused whatever its codec, without inflating
/// all of it (80 MiB of zeros are a few KB of zstandard); a damaged bzip2, xz or
/// zstandard block is an error, never a panic.
#[test]
fn compressed_blocks_are_bounded_and_damaged_ones_are_errors() {
    let decoder = Decoder::new();
    let zeros = vec![0u8; 80 << 20];
    let block = zstd::stream::encode_all(&zeros[..], 1).unwrap();
    assert!(block.len() < 64 << 10, "{} bytes", block.len());
    let bomb = ocf_with_codec(SCHEMA, "zstandard", &[(1, block)]);
    let e = decoder
        .decode(Format::AvroOcf, &bomb)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("zstandard block decompresses past 64 MiB"),
        "{e}"
    );

    for codec in ["bzip2", "xz", "zstandard"] {
        let damaged = ocf_with_codec(SCHEMA, codec, &[(1, vec![0x42; 100])]);
        let e = decoder
            .decode(Format::AvroOcf, &damaged)
            .unwrap_err()
            .to_string();
        assert!(e.contains(codec), "{codec}: {e}");
    }
    // The bound holds for any reader, however much it would give.
    let e = super::ocf::bounded(std::io::repeat(0), "endless")
        .unwrap_err()
        .to_string();
    assert!(e.contains("past 64 MiB"), "{e}");

    // A block of each codec that stays within the bound still decodes.
    let bytes = encode(&alert(3), Target::Ocf(Codec::Xz(Default::default()))).unwrap();
    assert_eq!(
        decoder.decode(Format::AvroOcf, &bytes).unwrap().value(),
        alert(3).value()
    );
}
