//! The buffer a reader writes records into: records go side by side into shared 256 KiB
//! chunks, so a read costs one allocation per chunk rather than one per record, and a run
//! of records goes out as one slice. Chunks are reused once their records are gone.

use std::collections::VecDeque;

use bytes::BytesMut;
use rdkafka::message::{BorrowedMessage, Message};

use super::parts::HeaderList;
use super::pool::{ChunkPool, POOL};
use super::{AlertContext, Layout, Parts, Record};

/// What [`Arena::write`] wrote, for byte accounting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    /// [`Record::size`] of the record.
    pub(crate) size: usize,
    pub(crate) payload_len: usize,
}

/// A record written into the current chunk, not yet frozen into a block.
#[derive(Debug)]
struct Pending {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    layout: Layout,
}

/// The buffer a reader encodes records into. Records are written one after another into
/// shared chunks, so reading costs an allocation per chunk rather than one per record,
/// and a run of records is one slice. A chunk is reused once every record written in it
/// is gone (served and dropped), by this reader or, through [`ChunkPool`], by the next:
/// fresh memory costs a page fault and zeroing per page, as much as the copy into it, and
/// every catch-up subscription starts new readers.
#[derive(Debug)]
pub(crate) struct Arena {
    /// The chunk being written; its written part holds the pending records.
    spare: Option<BytesMut>,
    pending: Vec<Pending>,
    /// Records frozen into blocks, not yet taken.
    ready: Vec<Record>,
    /// Exhausted chunks, oldest first, waiting for their records to go.
    used: VecDeque<BytesMut>,
    pool: &'static ChunkPool,
    /// Size of a new chunk; 0 for records read one at a time, each sized exactly.
    chunk: usize,
    /// Chunks taken from the pool or allocated so far.
    fetched: u64,
    /// How many records the last [`take`](Self::take) returned: the next batch is sized
    /// like it, so filling it rarely reallocates.
    last_len: usize,
}

impl Default for Arena {
    fn default() -> Self {
        Arena::with_pool(&POOL)
    }
}

impl Arena {
    /// Chunk size: small enough that a few records kept long (a slow subscriber, the tail
    /// buffer's oldest) pin little memory, large enough to amortise the allocation.
    pub(super) const CHUNK: usize = 256 << 10;
    /// Exhausted chunks kept for reuse (older ones are left to their records): enough
    /// to cover what a reader has in flight (batches queued to its subscriber, and the
    /// slices HTTP/2 holds until the client's flow-control window lets them out: 8 MiB
    /// per stream for the CLI), or the oldest is never free yet when it is looked at. Only chunks that
    /// were in flight are kept, so this adds no memory beyond that.
    const KEEP: usize = 96;

    pub(super) fn with_pool(pool: &'static ChunkPool) -> Arena {
        Arena {
            spare: None,
            pending: Vec::new(),
            ready: Vec::new(),
            used: VecDeque::new(),
            pool,
            chunk: Self::CHUNK,
            fetched: 0,
            last_len: 0,
        }
    }

    /// For a few records read one by one (`Fetch`): each gets a buffer of its own size,
    /// rather than pinning a chunk (or draining the pool) for one small record.
    pub(crate) fn single() -> Arena {
        let mut arena = Arena::default();
        arena.chunk = 0;
        arena
    }

    /// Copies a librdkafka message after the records written before it, encoding it for
    /// `ctx`'s topic. It is handed out by the next [`take`](Self::take).
    pub(crate) fn write_kafka(&mut self, m: &BorrowedMessage<'_>, ctx: &AlertContext) -> Written {
        // The encoder walks the headers twice (size, then bytes): they are read out of
        // librdkafka once.
        let mut headers = HeaderList::default();
        if let Some(hs) = m.headers() {
            let left_out = alertmesh_mirror::kafka_headers::for_each_readable(hs, |k, v| {
                headers.extend(std::iter::once((k, v)));
            });
            if left_out > 0 {
                if let Some(suppressed) = UNREADABLE_HEADERS.admit() {
                    tracing::warn!(
                        topic = %ctx.topic,
                        partition = m.partition(),
                        offset = m.offset(),
                        left_out,
                        suppressed,
                        "record has header names that are not utf-8; served without them"
                    );
                }
            }
        }
        self.write(
            ctx,
            Parts {
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                key: m.key(),
                headers: headers.as_slice().iter().copied(),
                payload: m.payload().unwrap_or_default(),
            },
        )
    }

    /// Encodes a record of `ctx`'s topic from borrowed parts after the ones written before
    /// it (an `AlertBatch.alerts` element whose alert is exactly prost's encoding). It is
    /// handed out by the next [`take`](Self::take).
    pub(crate) fn write<'a, H>(&mut self, ctx: &AlertContext, parts: Parts<'a, H>) -> Written
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let sizes = ctx.sizes(&parts);
        let buf = self.room(sizes.element);
        let (partition, offset, timestamp_ms) = (parts.partition, parts.offset, parts.timestamp_ms);
        let payload_len = parts.payload.len();
        let layout = ctx.encode(buf, &sizes, parts);
        self.pending.push(Pending {
            partition,
            offset,
            timestamp_ms,
            layout,
        });
        Written {
            size: 64 + sizes.element,
            payload_len,
        }
    }

    /// The records written since the last call, in order.
    pub(crate) fn take(&mut self) -> Vec<Record> {
        self.freeze();
        let taken = std::mem::take(&mut self.ready);
        self.last_len = taken.len();
        taken
    }

    /// The record written last, taken alone.
    pub(super) fn last_written(&mut self) -> Record {
        self.freeze();
        self.ready
            .pop()
            .expect("called right after writing a record")
    }

    /// Freezes the written part of the current chunk into a block and makes its pending
    /// records of it.
    fn freeze(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let Some(spare) = self.spare.as_mut() else {
            return;
        };
        let block = spare.split().freeze();
        if self.ready.capacity() == 0 {
            self.ready.reserve(self.last_len.max(16));
        }
        self.ready.extend(self.pending.drain(..).map(|p| Record {
            partition: p.partition,
            offset: p.offset,
            timestamp_ms: p.timestamp_ms,
            block: block.clone(),
            layout: p.layout,
        }));
    }

    /// The current chunk, replaced by one with room for `n` more bytes if it lacks it.
    fn room(&mut self, n: usize) -> &mut BytesMut {
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() - s.len() < n)
        {
            // Records stay in the chunk they were written to.
            self.freeze();
            let reclaimed = self.used.front_mut().is_some_and(|c| c.try_reclaim(n));
            let reused = if reclaimed {
                self.used.pop_front()
            } else {
                None
            };
            let next = reused.unwrap_or_else(|| {
                self.fetched += 1;
                (n <= self.chunk)
                    .then(|| self.pool.take())
                    .flatten()
                    .unwrap_or_else(|| BytesMut::with_capacity(n.max(self.chunk)))
            });
            if let Some(exhausted) = self.spare.replace(next) {
                self.used.push_back(exhausted);
                if self.used.len() > Self::KEEP {
                    if let Some(oldest) = self.used.pop_front() {
                        self.pool.give(oldest);
                    }
                }
            }
        }
        self.spare.get_or_insert_with(BytesMut::new)
    }

    /// Chunks taken from the pool or allocated so far.
    #[cfg(test)]
    pub(super) fn fetched(&self) -> u64 {
        self.fetched
    }
}
impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in self.used.drain(..).chain(self.spare.take()) {
            self.pool.give(chunk);
        }
    }
}

/// Logs of records with header names that are not UTF-8, which a producer can repeat.
static UNREADABLE_HEADERS: alertmesh_mirror::limit::RateLimit =
    alertmesh_mirror::limit::RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;
    use alertmesh_alert::headers as am;

    #[test]
    fn records_cut_from_one_arena_stay_whole() {
        let ctx = AlertContext::lasair();
        let mut arena = Arena::default();
        // Enough to fill several chunks, with one record larger than a chunk and some
        // whose headers outgrow the room reserved for them.
        let payloads: Vec<Vec<u8>> = (0..600u32)
            .map(|i| {
                let len = if i == 300 { Arena::CHUNK + 1 } else { 1000 };
                vec![(i % 251) as u8; len]
            })
            .collect();
        let big = vec![b'h'; 3000];
        let headers = |i: usize| -> Vec<(&str, Option<&[u8]>)> {
            if i % 50 == 7 {
                vec![
                    ("am-source", Some(&big[..])),
                    (am::SCHEMA, Some(b"ztf-4.02")),
                ]
            } else {
                vec![]
            }
        };
        let records: Vec<Record> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let key = format!("ZTF:{i}");
                let parts = Parts {
                    partition: 0,
                    offset: i as i64,
                    timestamp_ms: None,
                    key: Some(key.as_bytes()),
                    headers: headers(i),
                    payload: p,
                };
                ctx.record(&mut arena, parts)
            })
            .collect();
        for (i, (r, p)) in records.iter().zip(&payloads).enumerate() {
            assert_eq!(r.payload(), &p[..], "record {i}");
            assert_eq!(r.key(), Some(format!("ZTF:{i}").as_bytes()));
            let alert = ctx.alert(r);
            assert_eq!(alert.offset, i as i64);
            assert_eq!(alert.payload.as_ref(), &p[..]);
            let hs: Vec<(&str, Option<&[u8]>)> = alert
                .headers
                .iter()
                .map(|h| (h.key.as_str(), h.value.as_deref()))
                .collect();
            assert_eq!(hs, headers(i), "record {i}");
            let schema = if headers(i).is_empty() {
                ""
            } else {
                "ztf-4.02"
            };
            assert_eq!(alert.schema, schema);
            assert_eq!(alert.r#ref, format!("am://lasair/ztf.alerts/0/{i}"));
        }
    }

    #[test]
    fn an_arena_reuses_a_chunk_once_its_records_are_gone() {
        let ctx = AlertContext::lasair();
        let mut arena = Arena::with_pool(Box::leak(Box::new(ChunkPool::new())));
        let payload = vec![7u8; 1000];
        let cut = |arena: &mut Arena| ctx.record(arena, Parts::plain(0, 1, &payload));
        // Records kept alive pin their chunks: each chunk's worth needs a new one.
        let per_chunk = Arena::CHUNK / cut(&mut Arena::default()).wire().len();
        let kept: Vec<Record> = (0..3 * per_chunk).map(|_| cut(&mut arena)).collect();
        let fetched = arena.fetched;
        assert!(fetched >= 3, "{fetched} chunks for three chunks' worth");
        let first = kept[0].wire().as_ptr();
        assert!(kept.iter().all(|r| r.payload() == &payload[..]));
        drop(kept);
        // Once they are gone, the same chunks serve again.
        let again: Vec<Record> = (0..2 * per_chunk).map(|_| cut(&mut arena)).collect();
        assert_eq!(
            arena.fetched, fetched,
            "chunks were allocated instead of reused"
        );
        assert!(again.iter().any(|r| r.wire().as_ptr() == first));
        assert!(again.iter().all(|r| r.payload() == &payload[..]));
    }

    #[test]
    fn a_single_record_arena_sizes_each_record_exactly() {
        let ctx = AlertContext::lasair();
        let mut arena = Arena::single();
        let payload = vec![3u8; 500];
        let r = ctx.record(&mut arena, Parts::plain(0, 9, &payload));
        assert_eq!(r.payload(), &payload[..]);
        assert!(arena
            .spare
            .as_ref()
            .is_some_and(|s| s.capacity() < Arena::CHUNK));
        assert_eq!(ctx.alert(&r).offset, 9);
    }
}
