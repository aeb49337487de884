//! Kafka timestamps (milliseconds since the epoch) to and from protobuf `Timestamp`s: the
//! alert's `timestamp` field, and the times a subscription starts or ends at.

/// A Kafka timestamp as a protobuf one.
pub(crate) fn timestamp_from_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the epoch, rounding sub-millisecond times up so that "at or after
/// T" never admits a record from before T.
pub(crate) fn ms_from_timestamp(t: &prost_types::Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    let ms = t.seconds.checked_mul(1000)?;
    ms.checked_add((i64::from(t.nanos) + 999_999) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_both_ways() {
        for ms in [0, 1, 999, 1_577_836_800_123, -1, -1001] {
            assert_eq!(ms_from_timestamp(&timestamp_from_ms(ms)), Some(ms));
        }
        let t = prost_types::Timestamp {
            seconds: 1,
            nanos: 1,
        };
        assert_eq!(ms_from_timestamp(&t), Some(1001));
        let bad = prost_types::Timestamp {
            seconds: 1,
            nanos: -5,
        };
        assert_eq!(ms_from_timestamp(&bad), None);
    }
}
