//! Parsing of `--from` and `--until`.

use alertmesh_proto::v1::{self, end, start};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const FROM_HELP: &str =
    "expected earliest, latest, an RFC 3339 time (e.g. 2020-01-01T00:00:00Z) or partition:offset pairs (e.g. 0:120,1:80)";
const UNTIL_HELP: &str = "expected now or an RFC 3339 time (e.g. 2020-01-02T00:00:00Z)";

pub fn parse_from(s: &str) -> Result<v1::Start, String> {
    let position = match s {
        "earliest" => start::Position::Earliest(v1::Earliest {}),
        "latest" => start::Position::Latest(v1::Latest {}),
        _ if s.contains(':') && !s.contains('T') => start::Position::Offsets(parse_offsets(s)?),
        _ => start::Position::Time(
            parse_time(s).ok_or_else(|| format!("invalid --from {s:?}: {FROM_HELP}"))?,
        ),
    };
    Ok(v1::Start {
        position: Some(position),
    })
}

pub fn parse_until(s: &str) -> Result<v1::End, String> {
    let position = match s {
        "now" => end::Position::Now(v1::Now {}),
        _ => end::Position::Time(
            parse_time(s).ok_or_else(|| format!("invalid --until {s:?}: {UNTIL_HELP}"))?,
        ),
    };
    Ok(v1::End {
        position: Some(position),
    })
}

fn parse_offsets(s: &str) -> Result<v1::PartitionOffsets, String> {
    let mut offsets = Vec::new();
    for pair in s.split(',') {
        let parsed = pair
            .split_once(':')
            .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)));
        match parsed {
            Some((partition, offset)) => offsets.push(v1::PartitionOffset { partition, offset }),
            None => {
                return Err(format!(
                    "invalid --from {s:?}: {pair:?} is not partition:offset; {FROM_HELP}"
                ))
            }
        }
    }
    Ok(v1::PartitionOffsets { offsets })
}

/// `RA,DEC,RADIUS` in degrees.
pub fn parse_cone(s: &str) -> Result<v1::Cone, String> {
    let parts: Vec<Option<f64>> = s.split(',').map(|p| p.trim().parse().ok()).collect();
    match parts[..] {
        [Some(ra), Some(dec), Some(radius)] => Ok(v1::Cone { ra, dec, radius }),
        _ => Err(format!(
            "invalid --cone {s:?}: expected RA,DEC,RADIUS in degrees, e.g. 197.5,7.3,0.5"
        )),
    }
}

pub fn parse_time(s: &str) -> Option<prost_types::Timestamp> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some(prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_accepts_every_documented_form() {
        assert!(matches!(
            parse_from("earliest").unwrap().position,
            Some(start::Position::Earliest(_))
        ));
        assert!(matches!(
            parse_from("latest").unwrap().position,
            Some(start::Position::Latest(_))
        ));
        let Some(start::Position::Time(t)) = parse_from("2020-01-01T00:00:00Z").unwrap().position
        else {
            panic!("not a time")
        };
        assert_eq!(t.seconds, 1_577_836_800);
        let Some(start::Position::Time(t)) =
            parse_from("2020-01-01T01:00:00.5+01:00").unwrap().position
        else {
            panic!("not a time")
        };
        assert_eq!((t.seconds, t.nanos), (1_577_836_800, 500_000_000));
        let Some(start::Position::Offsets(o)) = parse_from("0:120,2:8").unwrap().position else {
            panic!("not offsets")
        };
        assert_eq!(o.offsets.len(), 2);
        assert_eq!((o.offsets[1].partition, o.offsets[1].offset), (2, 8));
    }

    #[test]
    fn bad_positions_say_what_is_accepted() {
        for bad in ["yesterday", "0:x", "2020-13-01T00:00:00Z", ""] {
            let e = parse_from(bad).unwrap_err();
            assert!(e.contains("expected earliest, latest"), "{e}");
        }
        assert!(parse_until("later").unwrap_err().contains("expected now"));
        assert!(parse_cone("1,2")
            .unwrap_err()
            .contains("expected RA,DEC,RADIUS"));
        assert_eq!(parse_cone("197.5, 7.3,0.5").unwrap().radius, 0.5);
        assert!(matches!(
            parse_until("now").unwrap().position,
            Some(end::Position::Now(_))
        ));
    }
}
