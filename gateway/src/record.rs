//! An owned Kafka record, encoded once as the wire `Alert` it becomes.
//!
//! Readers write every record they read, once, as the `AlertBatch` element it is sent as;
//! `Subscribe` then sends slices of those bytes to any number of subscribers. The parts:
//!
//! - [`Record`] (here): one record, a shared block and where its parts are in it.
//! - `parts`: a record's parts as borrowed from where it was read, and its header list.
//! - `arena`: the chunks a reader writes records into, reused once their records are gone;
//!   `pool`: the free chunks handed from a reader that ends to the next.
//! - `context`: `AlertContext`, what every alert of one topic shares, and the wire alert
//!   of a record.
//! - `encode`: the hand-written protobuf encoder that writes a record as an
//!   `AlertBatch.alerts` element, byte for byte as prost would; `field`: its field writers.
//! - `timestamp`: Kafka millisecond timestamps to and from protobuf ones.

use bytes::Bytes;
use rdkafka::message::BorrowedMessage;

mod arena;
mod context;
mod encode;
mod field;
mod parts;
mod pool;
mod timestamp;

pub(crate) use arena::{Arena, Written};
pub(crate) use context::AlertContext;
pub(crate) use field::push_decimal;
pub(crate) use parts::Parts;
pub(crate) use timestamp::ms_from_timestamp;

/// One Kafka record, detached from librdkafka's buffers so it can cross threads and be
/// shared by many subscribers.
///
/// Reading a record serialises it at once as the element of `AlertBatch.alerts` this
/// gateway sends: a tag, a length and the `alertmesh.v1.Alert` (`wire_bytes`); key and
/// payload are ranges of it. Records read together are written side by side in one
/// shared block, so a run of them goes out as one slice of it (`element`). So
/// a record costs one copy out of librdkafka, and serving it to any number of subscribers
/// costs no further encoding or copy. Cloning it is one reference count, like an `Arc`.
/// Its headers are only in the encoding: nothing on the serving path reads them.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the record has one.
    pub(crate) timestamp_ms: Option<i64>,
    /// The buffer the record was written into, shared with the records written with it.
    block: Bytes,
    layout: Layout,
}

/// Where a record's parts are in its block.
#[derive(Debug, Clone, Copy, Default)]
struct Layout {
    /// The whole `AlertBatch.alerts` element: tag, length, alert.
    element: Span,
    /// The encoded alert.
    alert: Span,
    key: Option<Span>,
    payload: Span,
}

/// A range of a record's block.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    at: u32,
    len: u32,
}

impl Span {
    // Offsets fit in u32: a block holds records far below 4 GiB.
    fn new(at: usize, len: usize) -> Span {
        Span {
            at: at as u32,
            len: len as u32,
        }
    }

    fn range(self) -> std::ops::Range<usize> {
        self.at as usize..(self.at + self.len) as usize
    }
}

impl Record {
    /// One librdkafka message, copied into `arena` alone and encoded for `ctx`'s topic
    /// (for records read one at a time).
    pub(crate) fn from_kafka(
        m: &BorrowedMessage<'_>,
        ctx: &AlertContext,
        arena: &mut Arena,
    ) -> Record {
        arena.write_kafka(m, ctx);
        arena.last_written()
    }

    /// [`wire_bytes`](Self::wire_bytes) as a slice.
    #[cfg(test)]
    pub(crate) fn wire(&self) -> &[u8] {
        &self.block[self.layout.alert.range()]
    }

    /// The encoded `alertmesh.v1.Alert` (no JSON): what a subscriber that asked for
    /// native output receives, byte for byte, as shared bytes (no copy).
    pub(crate) fn wire_bytes(&self) -> Bytes {
        self.block.slice(self.layout.alert.range())
    }

    /// The record's block and where its `AlertBatch.alerts` element (tag, length, alert)
    /// is in it: records written one after another in the same block are adjacent.
    pub(crate) fn element(&self) -> (&Bytes, std::ops::Range<usize>) {
        (&self.block, self.layout.element.range())
    }

    /// The Kafka key, if the record has one.
    pub(crate) fn key(&self) -> Option<&[u8]> {
        self.layout.key.map(|k| &self.block[k.range()])
    }

    /// Whether the record's key is its mesh key (a UTF-8 key, written as `mesh_key` when
    /// the record was encoded); otherwise a mesh key can only come from decoding it.
    pub(crate) fn carries_mesh_key(&self) -> bool {
        self.key().is_some_and(|k| std::str::from_utf8(k).is_ok())
    }

    /// The payload, unchanged.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.block[self.layout.payload.range()]
    }

    /// The payload as shared bytes (no copy).
    pub(crate) fn payload_bytes(&self) -> Bytes {
        self.block.slice(self.layout.payload.range())
    }

    /// Approximate memory held by the record, used for byte-bounded buffers.
    pub(crate) fn size(&self) -> usize {
        64 + self.layout.element.len as usize
    }

    /// A record with no key, payload or encoding, for bookkeeping tests.
    #[cfg(test)]
    pub(crate) fn bare(partition: i32, offset: i64, timestamp_ms: Option<i64>) -> Record {
        Record {
            partition,
            offset,
            timestamp_ms,
            block: Bytes::new(),
            layout: Layout::default(),
        }
    }
}
