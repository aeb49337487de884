//! Projected decoding against full decoding on every real fixture: the same filter
//! verdicts, keys, positions and needed values, in OCF (every codec, several blocks),
//! Confluent wire and bare Avro; truncated input is an error, never a panic.

use std::sync::Arc;

use alertmesh_alert::apache_avro::{Codec, Writer};
use alertmesh_alert::{
    decode_bare, decode_bare_projected, encode, Alert, Decoder, Filter, Format, Projection,
    Registry, SchemaDir, Subject, Target,
};

mod common;

use common::{avro_files, dir};

/// Filters over ZTF and LSST fields, nulls, whole arrays and cutouts, ids and cones.
fn filters(full: &Alert, registry: &Registry) -> Vec<Filter> {
    let texts = [
        "candidate.magpsf < 18.5 && candidate.ndethist >= 1 && candidate.isdiffpos is not null",
        "candidate.drb > 0.5 || candidate.rb is null || !(candidate.fid == 1)",
        "prv_candidates is null || cutoutScience.stampData is not null",
        "candid > 0 && objectId != \"ZTF18aaaaaaa\"",
        "diaSource.psfFlux > 1e4 || diaObject.diaObjectId is null",
        "diaSource.band == \"r\" || ssSource.ssObjectId is not null",
        "diaObject is null || !(diaSource.snr < 5)",
        "cutoutDifference is not null && diaSource.nope.deeper is null",
    ];
    let mut out: Vec<Filter> = texts
        .iter()
        .map(|t| Filter::predicate(t).unwrap())
        .collect();
    let subject = Subject::new(full, registry);
    let (ra, dec) = subject.position.unwrap();
    let key = subject.key.unwrap().to_string();
    out.push(Filter::cone(ra, dec, 1.0 / 3600.0).unwrap());
    out.push(Filter::And(vec![
        Filter::object_ids(&[key.as_str()], registry).unwrap(),
        Filter::cone(ra + 180.0, -dec, 1.0).unwrap(),
    ]));
    out.push(Filter::Or(vec![
        Filter::Not(Box::new(out[0].clone())),
        Filter::object_ids(&[key.as_str()], registry).unwrap(),
    ]));
    out.push(Filter::All);
    out
}

/// Projected and full alerts agree on everything a filter and re-keying look at.
fn assert_same(full: &Alert, part: &Alert, filter: &Filter, projection: &Projection, at: &str) {
    let registry = Registry::builtin();
    let (a, b) = (Subject::new(full, &registry), Subject::new(part, &registry));
    assert_eq!(a.key, b.key, "{at}: key");
    assert!(a.key.is_some(), "{at}: no key");
    assert_eq!(
        a.position.map(|(r, d)| (r.to_bits(), d.to_bits())),
        b.position.map(|(r, d)| (r.to_bits(), d.to_bits())),
        "{at}: position"
    );
    assert_eq!(filter.matches(&a), filter.matches(&b), "{at}: {filter:?}");
    for path in projection.paths_for(full.schema().unwrap().schema()) {
        // Debug text: values may hold NaN, never equal to itself.
        let (x, y) = (path.lookup(full.value()), path.lookup(part.value()));
        assert_eq!(format!("{x:?}"), format!("{y:?}"), "{at}: {path}");
    }
}

#[test]
fn projected_and_full_decoding_agree_on_every_fixture_and_filter() {
    let registry = Registry::builtin();
    let decoder = Decoder::new();
    let mut checked = 0;
    for path in avro_files() {
        let bytes = std::fs::read(&path).unwrap();
        let fulls = decoder.decode_all(Format::AvroOcf, &bytes).unwrap();
        for filter in filters(&fulls[0], &registry) {
            let projection = Projection::for_filter(&filter, &registry);
            let parts = decoder
                .decode_all_projected(Format::AvroOcf, &bytes, &projection)
                .unwrap();
            assert_eq!(fulls.len(), parts.len());
            for (full, part) in fulls.iter().zip(&parts) {
                assert_same(
                    full,
                    part,
                    &filter,
                    &projection,
                    &path.display().to_string(),
                );
                let bare = encode(full, Target::Bare).unwrap();
                let schema = full.schema().unwrap();
                let from_bare = decode_bare_projected(schema, &bare, &projection).unwrap();
                assert_same(full, &from_bare, &filter, &projection, "bare");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 81 * 12);
}

#[test]
fn projected_ocf_works_with_every_codec_and_several_blocks() {
    let registry = Registry::builtin();
    let decoder = Decoder::new();
    let codecs = [
        Codec::Null,
        Codec::Deflate(Default::default()),
        Codec::Snappy,
        Codec::Zstandard(Default::default()),
        Codec::Bzip2(Default::default()),
        Codec::Xz(Default::default()),
    ];
    for file in [
        "ztf/fink-ztf-public-2020-01-01/1095578116015010001.avro",
        "lsst/ampel_usdf_dev_v7_1/schema_701.avro",
        "fink/rubin_v9_0/169298432623116306_169298432623116306.avro",
    ] {
        let fulls = decoder
            .decode_all(Format::AvroOcf, &std::fs::read(dir().join(file)).unwrap())
            .unwrap();
        let schema = fulls[0].schema().unwrap().clone();
        for codec in codecs {
            let mut writer = Writer::with_codec(schema.schema(), Vec::new(), codec);
            for (i, alert) in fulls.iter().cycle().take(fulls.len() * 3).enumerate() {
                writer.append_value_ref(alert.value()).unwrap();
                if i % 2 == 0 {
                    writer.flush().unwrap(); // a new block
                }
            }
            let ocf = writer.into_inner().unwrap();
            let expected = decoder.decode_all(Format::AvroOcf, &ocf).unwrap();
            for filter in filters(&fulls[0], &registry) {
                let projection = Projection::for_filter(&filter, &registry);
                let parts = decoder
                    .decode_all_projected(Format::AvroOcf, &ocf, &projection)
                    .unwrap();
                assert_eq!(parts.len(), fulls.len() * 3);
                for (full, part) in expected.iter().zip(&parts) {
                    assert_same(
                        full,
                        part,
                        &filter,
                        &projection,
                        &format!("{file} {codec:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn projected_confluent_wire_agrees_with_full_decoding() {
    let registry = Registry::builtin();
    let schemas = SchemaDir::load(&dir().join("lsst/schema")).unwrap();
    let decoder = Decoder::with_resolver(Arc::new(schemas));
    for (file, id) in [
        ("lsst/sample_data/7/1/fakeAlert.avro", 701),
        ("lsst/sample_data/9/0/fakeAlert.avro", 900),
        ("lsst/sample_data/11/0/fakeAlert.avro", 1100),
        ("lsst/ampel_usdf_dev_v7_1/schema_701.avro", 701),
    ] {
        let ocf = std::fs::read(dir().join(file)).unwrap();
        for alert in decoder.decode_all(Format::AvroOcf, &ocf).unwrap() {
            let wire = encode(&alert, Target::Confluent(id)).unwrap();
            let full = decoder.decode(Format::AvroConfluent, &wire).unwrap();
            for filter in filters(&full, &registry) {
                let projection = Projection::for_filter(&filter, &registry);
                let part = decoder
                    .decode_projected(Format::AvroConfluent, &wire, &projection)
                    .unwrap();
                assert_same(&full, &part, &filter, &projection, file);
                let mut longer = wire.clone();
                longer.push(0);
                assert!(decoder
                    .decode_projected(Format::AvroConfluent, &longer, &projection)
                    .is_err());
            }
        }
    }
}

#[test]
fn truncated_fixtures_are_errors_not_panics_when_projected() {
    let registry = Registry::builtin();
    let decoder = Decoder::new();
    let filter = Filter::predicate("candidate.magpsf < 18.5 || diaSource.psfFlux > 1e4").unwrap();
    let projection = Projection::for_filter(&filter, &registry);
    for path in avro_files() {
        let bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        for cut in [0, 1, 3, 4, 10, 100, n / 4, n / 2, n - 17, n - 16, n - 1] {
            assert!(
                decoder
                    .decode_all_projected(Format::AvroOcf, &bytes[..cut], &projection)
                    .is_err(),
                "{} cut at {cut}",
                path.display()
            );
        }
        for at in [n / 3, n / 2, n - 40] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xff;
            let _ = decoder.decode_all_projected(Format::AvroOcf, &flipped, &projection);
        }
        let full = decoder.decode_all(Format::AvroOcf, &bytes).unwrap();
        let bare = encode(&full[0], Target::Bare).unwrap();
        let schema = full[0].schema().unwrap();
        for cut in (0..bare.len()).step_by(97) {
            assert!(decode_bare_projected(schema, &bare[..cut], &projection).is_err());
            let _ = decode_bare(schema, &bare[..cut]);
        }
        let _ = decoder.decode_projected(Format::Json, &bytes[..n / 2], &projection);
    }
}
