//! An owned Kafka record, and its conversion to the wire `Alert`.

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use alertmesh_alert::headers as am;
use alertmesh_proto::v1;

/// One Kafka record, detached from librdkafka's buffers so it can cross threads and be
/// shared by many subscribers (payload and key are reference-counted).
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub payload: Bytes,
}

impl Record {
    pub fn from_kafka(m: &BorrowedMessage<'_>) -> Record {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(Bytes::copy_from_slice)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(Bytes::copy_from_slice),
            headers,
            payload: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        }
    }

    /// Approximate memory held by the record, used for byte-bounded buffers.
    pub fn size(&self) -> usize {
        64 + self.payload.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 32)
                .sum::<usize>()
    }

    fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
    }
}

/// What every alert of one exposed topic shares on the wire.
#[derive(Debug, Clone)]
pub struct AlertContext {
    pub gateway: String,
    pub topic: String,
    pub format: String,
    pub namespace: String,
}

impl AlertContext {
    pub fn alert_ref(&self, r: &Record) -> String {
        format!(
            "am://{}/{}/{}/{}",
            self.gateway, self.topic, r.partition, r.offset
        )
    }

    /// Builds the wire alert; the payload and key are shared, not copied.
    /// Builds the wire alert from a record this subscription alone holds by moving its
    /// key, headers and payload (no copy, no reference-count promotion); a record shared
    /// with other subscribers (the live tail) is shared, not copied.
    pub fn alert_owned(&self, r: std::sync::Arc<Record>) -> v1::Alert {
        let r = match std::sync::Arc::try_unwrap(r) {
            Ok(r) => r,
            Err(shared) => return self.alert(&shared),
        };
        let mut alert = v1::Alert {
            r#ref: self.alert_ref(&r),
            topic: self.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp_ms.map(timestamp_from_ms),
            schema: r
                .header(am::SCHEMA)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            mesh_key: r
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_owned)
                .unwrap_or_default(),
            key: None,
            headers: Vec::new(),
            payload: Bytes::new(),
            format: self.format.clone(),
            namespace: self.namespace.clone(),
            json: Bytes::new(),
        };
        alert.key = r.key;
        alert.payload = r.payload;
        alert.headers = r
            .headers
            .into_iter()
            .map(|(key, value)| v1::Header { key, value })
            .collect();
        alert
    }

    pub fn alert(&self, r: &Record) -> v1::Alert {
        let schema = r
            .header(am::SCHEMA)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        v1::Alert {
            r#ref: format!(
                "am://{}/{}/{}/{}",
                self.gateway, self.topic, r.partition, r.offset
            ),
            topic: self.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp_ms.map(timestamp_from_ms),
            key: r.key.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| v1::Header {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            payload: r.payload.clone(),
            format: self.format.clone(),
            namespace: self.namespace.clone(),
            schema,
            json: Bytes::new(),
            // Inside the mesh the Kafka key is the mesh key.
            mesh_key: r
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_owned)
                .unwrap_or_default(),
        }
    }
}

pub fn timestamp_from_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the epoch, rounding sub-millisecond times up so that "at or after
/// T" never admits a record from before T.
pub fn ms_from_timestamp(t: &prost_types::Timestamp) -> Option<i64> {
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
