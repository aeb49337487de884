//! An owned Kafka record, encoded once as the wire `Alert` it becomes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{self, WireType};
use prost::Message as _;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use alertmesh_alert::headers as am;
use alertmesh_proto::v1;

use crate::config::TopicConfig;

/// One Kafka record, detached from librdkafka's buffers so it can cross threads and be
/// shared by many subscribers.
///
/// Reading a record serialises it at once as the element of `AlertBatch.alerts` this
/// gateway sends: a tag, a length and the `alertmesh.v1.Alert` ([`wire`](Self::wire));
/// key and payload are ranges of it. Records read together are written side by side in
/// one shared block, so a run of them goes out as one slice of it ([`Record::element`]). So
/// a record costs one copy out of librdkafka, and serving it to any number of subscribers
/// costs no further encoding or copy. Cloning it is one reference count, like an `Arc`.
/// Its headers are only in the encoding: nothing on the serving path reads them.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the record has one.
    pub timestamp_ms: Option<i64>,
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
    pub fn from_kafka(m: &BorrowedMessage<'_>, ctx: &AlertContext, arena: &mut Arena) -> Record {
        arena.write_kafka(m, ctx);
        arena.last_written()
    }

    /// The encoded `alertmesh.v1.Alert` (no JSON): what a subscriber that asked for
    /// native output receives, byte for byte.
    pub fn wire(&self) -> &[u8] {
        &self.block[self.layout.alert.range()]
    }

    /// [`wire`](Self::wire) as shared bytes (no copy).
    pub fn wire_bytes(&self) -> Bytes {
        self.block.slice(self.layout.alert.range())
    }

    /// The record's block and where its `AlertBatch.alerts` element (tag, length, alert)
    /// is in it: records written one after another in the same block are adjacent.
    pub fn element(&self) -> (&Bytes, std::ops::Range<usize>) {
        (&self.block, self.layout.element.range())
    }

    /// The Kafka key, if the record has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.layout.key.map(|k| &self.block[k.range()])
    }

    /// Whether the record's key is its mesh key (a UTF-8 key, written as `mesh_key` when
    /// the record was encoded); otherwise a mesh key can only come from decoding it.
    pub fn carries_mesh_key(&self) -> bool {
        self.key().is_some_and(|k| std::str::from_utf8(k).is_ok())
    }

    /// The payload, unchanged.
    pub fn payload(&self) -> &[u8] {
        &self.block[self.layout.payload.range()]
    }

    /// The payload as shared bytes (no copy).
    pub fn payload_bytes(&self) -> Bytes {
        self.block.slice(self.layout.payload.range())
    }

    /// Approximate memory held by the record, used for byte-bounded buffers.
    pub fn size(&self) -> usize {
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

/// A record's headers, in a small array unless there are many.
#[derive(Debug, Default)]
struct HeaderList<'a> {
    inline: [(&'a str, Option<&'a [u8]>); 8],
    count: usize,
    many: Vec<(&'a str, Option<&'a [u8]>)>,
}

impl<'a> HeaderList<'a> {
    fn extend(&mut self, headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) {
        for h in headers {
            if self.count < self.inline.len() {
                self.inline[self.count] = h;
            } else {
                if self.many.is_empty() {
                    self.many.extend_from_slice(&self.inline);
                }
                self.many.push(h);
            }
            self.count += 1;
        }
    }

    fn as_slice(&self) -> &[(&'a str, Option<&'a [u8]>)] {
        if self.many.is_empty() {
            &self.inline[..self.count]
        } else {
            &self.many
        }
    }
}

/// A Kafka record's parts, borrowed from where it was read. `headers` is walked twice (to
/// size the encoding, then to write it), so it must be cheap to clone.
#[derive(Debug, Clone)]
pub struct Parts<'a, H> {
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// Name and value of each Kafka header, in order.
    pub headers: H,
    pub payload: &'a [u8],
}

/// Headers of a record that has none.
pub type NoHeaders<'a> = std::iter::Empty<(&'a str, Option<&'a [u8]>)>;

impl<'a> Parts<'a, NoHeaders<'a>> {
    /// A record with only a position and a payload.
    pub fn plain(partition: i32, offset: i64, payload: &'a [u8]) -> Self {
        Parts {
            partition,
            offset,
            timestamp_ms: None,
            key: None,
            headers: std::iter::empty(),
            payload,
        }
    }
}

/// What [`Arena::write`] wrote, for byte accounting.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// [`Record::size`] of the record.
    pub size: usize,
    pub payload_len: usize,
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
pub struct Arena {
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
    const CHUNK: usize = 256 << 10;
    /// Exhausted chunks kept for reuse (older ones are left to their records): enough
    /// to cover what a reader has in flight (batches queued to its subscriber, and the
    /// slices HTTP/2 holds until the client's flow-control window lets them out: 8 MiB
    /// per stream for the CLI), or the oldest is never free yet when it is looked at. Only chunks that
    /// were in flight are kept, so this adds no memory beyond that.
    const KEEP: usize = 96;

    fn with_pool(pool: &'static ChunkPool) -> Arena {
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
    pub fn single() -> Arena {
        let mut arena = Arena::default();
        arena.chunk = 0;
        arena
    }

    /// Copies a librdkafka message after the records written before it, encoding it for
    /// `ctx`'s topic. It is handed out by the next [`take`](Self::take).
    pub fn write_kafka(&mut self, m: &BorrowedMessage<'_>, ctx: &AlertContext) -> Written {
        // The encoder walks the headers twice (size, then bytes): they are read out of
        // librdkafka once.
        let mut headers = HeaderList::default();
        if let Some(hs) = m.headers() {
            headers.extend(hs.iter().map(|h| (h.key, h.value)));
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
    pub fn write<'a, H>(&mut self, ctx: &AlertContext, parts: Parts<'a, H>) -> Written
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
    pub fn take(&mut self) -> Vec<Record> {
        self.freeze();
        let taken = std::mem::take(&mut self.ready);
        self.last_len = taken.len();
        taken
    }

    /// The record written last, taken alone.
    fn last_written(&mut self) -> Record {
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
}
impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in self.used.drain(..).chain(self.spare.take()) {
            self.pool.give(chunk);
        }
    }
}

/// Free chunks between readers, bounded: a reader that ends leaves the chunks whose
/// records are all gone for the next one.
#[derive(Debug)]
pub struct ChunkPool {
    free: Mutex<Vec<BytesMut>>,
}

/// The gateway's pool: at most [`ChunkPool::MAX`] chunks (16 MiB) kept idle.
static POOL: ChunkPool = ChunkPool::new();

impl ChunkPool {
    const MAX: usize = 64;

    const fn new() -> ChunkPool {
        ChunkPool {
            free: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BytesMut>> {
        // The list stays valid whatever a panicking holder did.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Option<BytesMut> {
        self.lock().pop()
    }

    /// Keeps `chunk` if nothing else uses it any more and there is room.
    fn give(&self, mut chunk: BytesMut) {
        if chunk.try_reclaim(Arena::CHUNK) && chunk.capacity() == Arena::CHUNK {
            let mut free = self.lock();
            if free.len() < Self::MAX {
                free.push(chunk);
            }
        }
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

use alertmesh_proto::tags::alert::{
    FORMAT, HEADERS, KEY, MESH_KEY, NAMESPACE, OFFSET, PARTITION, PAYLOAD, REF, SCHEMA, TIMESTAMP,
    TOPIC,
};
use alertmesh_proto::tags::header::{KEY as HEADER_KEY, VALUE as HEADER_VALUE};

use alertmesh_proto::tags::batch::ALERTS;

impl AlertContext {
    /// The context of an exposed topic of gateway `gateway`.
    pub fn new(gateway: &str, topic: &TopicConfig) -> Arc<AlertContext> {
        Arc::new(AlertContext {
            gateway: gateway.to_owned(),
            topic: topic.name.clone(),
            format: topic.format.to_string(),
            namespace: topic.namespace.clone(),
        })
    }

    pub fn alert_ref(&self, r: &Record) -> String {
        format!(
            "am://{}/{}/{}/{}",
            self.gateway, self.topic, r.partition, r.offset
        )
    }

    /// One record of this topic from borrowed parts, written into `arena` alone (for
    /// records read one at a time, and tests).
    pub fn record<'a, H>(&self, arena: &mut Arena, parts: Parts<'a, H>) -> Record
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        arena.write(self, parts);
        arena.last_written()
    }

    /// Sizes of a record's encoding, from a first pass over its parts.
    fn sizes<'a, H>(&self, parts: &Parts<'a, H>) -> Sizes<'a>
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let Parts {
            partition,
            offset,
            timestamp_ms,
            key,
            payload,
            ..
        } = *parts;
        let ref_len = "am://".len()
            + self.gateway.len()
            + self.topic.len()
            + 3
            + decimal_len(i64::from(partition))
            + decimal_len(offset);
        let mesh_key = key.and_then(|k| std::str::from_utf8(k).ok());
        let mut schema = None;
        let mut headers_len = 0;
        for (k, v) in parts.headers.clone() {
            if k == am::SCHEMA && schema.is_none() {
                schema = v.map(String::from_utf8_lossy);
            }
            headers_len += field_len(HEADERS, header_len(k, v));
        }
        let str_len = |tag, s: &str| {
            if s.is_empty() {
                0
            } else {
                field_len(tag, s.len())
            }
        };
        let alert = field_len(REF, ref_len)
            + str_len(TOPIC, &self.topic)
            + if partition != 0 {
                encoding::int32::encoded_len(PARTITION, &partition)
            } else {
                0
            }
            + if offset != 0 {
                encoding::int64::encoded_len(OFFSET, &offset)
            } else {
                0
            }
            + timestamp_ms.map_or(0, |ms| {
                encoding::message::encoded_len(TIMESTAMP, &timestamp_from_ms(ms))
            })
            + key.map_or(0, |k| field_len(KEY, k.len()))
            + headers_len
            + if payload.is_empty() {
                0
            } else {
                field_len(PAYLOAD, payload.len())
            }
            + str_len(FORMAT, &self.format)
            + str_len(NAMESPACE, &self.namespace)
            + schema.as_deref().map_or(0, |s| str_len(SCHEMA, s))
            + mesh_key.map_or(0, |k| str_len(MESH_KEY, k));
        Sizes {
            ref_len,
            alert,
            element: field_len(ALERTS, alert),
            schema,
            mesh_key,
        }
    }

    /// Writes a record as an `AlertBatch.alerts` element at the end of `buf`, which has
    /// room for `sizes.element` more bytes. Fields are written as prost writes them (in
    /// field order, default values omitted), so the alert's bytes are exactly prost's
    /// encoding of it. `headers` lists the Kafka headers.
    fn encode<'a, H>(&self, buf: &mut BytesMut, sizes: &Sizes<'_>, parts: Parts<'a, H>) -> Layout
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let Parts {
            partition,
            offset,
            timestamp_ms,
            key,
            headers,
            payload,
        } = parts;
        let element_at = buf.len();
        encoding::encode_key(ALERTS, WireType::LengthDelimited, buf);
        encoding::encode_varint(sizes.alert as u64, buf);
        let alert_at = buf.len();

        // ref: written in place, so it needs its length first.
        encoding::encode_key(REF, WireType::LengthDelimited, buf);
        encoding::encode_varint(sizes.ref_len as u64, buf);
        buf.extend_from_slice(b"am://");
        buf.extend_from_slice(self.gateway.as_bytes());
        buf.put_u8(b'/');
        buf.extend_from_slice(self.topic.as_bytes());
        buf.put_u8(b'/');
        push_decimal(i64::from(partition), buf);
        buf.put_u8(b'/');
        push_decimal(offset, buf);
        put_str(TOPIC, &self.topic, buf);
        if partition != 0 {
            encoding::int32::encode(PARTITION, &partition, buf);
        }
        if offset != 0 {
            encoding::int64::encode(OFFSET, &offset, buf);
        }
        if let Some(ms) = timestamp_ms {
            encoding::message::encode(TIMESTAMP, &timestamp_from_ms(ms), buf);
        }
        let key_at = key.map(|k| put_field(KEY, k, buf));
        for (k, v) in headers {
            encoding::encode_key(HEADERS, WireType::LengthDelimited, buf);
            encoding::encode_varint(header_len(k, v) as u64, buf);
            put_str(HEADER_KEY, k, buf);
            if let Some(v) = v {
                put_field(HEADER_VALUE, v, buf);
            }
        }
        let payload_at = (!payload.is_empty()).then(|| put_field(PAYLOAD, payload, buf));
        put_str(FORMAT, &self.format, buf);
        put_str(NAMESPACE, &self.namespace, buf);
        if let Some(schema) = &sizes.schema {
            put_str(SCHEMA, schema, buf);
        }
        if let Some(mesh_key) = sizes.mesh_key {
            put_str(MESH_KEY, mesh_key, buf);
        }
        debug_assert_eq!(buf.len() - alert_at, sizes.alert, "alert size");
        // Positions in `buf` are positions in the block it is frozen into.
        let span = |(at, len): (usize, usize)| Span::new(at, len);
        Layout {
            element: Span::new(element_at, buf.len() - element_at),
            alert: Span::new(alert_at, sizes.alert),
            key: key_at.map(span),
            payload: payload_at.map(span).unwrap_or_default(),
        }
    }

    /// The record as a wire alert, for the paths that change it (JSON output, keys found
    /// by decoding) or read it field by field. Decoded from [`Record::wire`], so it is
    /// what native output sends; bytes fields share the buffer, nothing is copied.
    pub fn alert(&self, r: &Record) -> v1::Alert {
        // The bytes were written by `record` above; a failure would be a bug there, and an
        // alert that names its record is still the most useful answer.
        v1::Alert::decode(r.wire_bytes()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot decode an encoded alert");
            v1::Alert {
                r#ref: self.alert_ref(r),
                topic: self.topic.clone(),
                partition: r.partition,
                offset: r.offset,
                payload: r.payload_bytes(),
                ..v1::Alert::default()
            }
        })
    }
}

/// Sizes of one record's encoding.
#[derive(Debug)]
struct Sizes<'a> {
    ref_len: usize,
    /// The encoded alert.
    alert: usize,
    /// The `AlertBatch.alerts` element: tag, length, alert.
    element: usize,
    /// The `am-schema` header's value, as the `schema` field.
    schema: Option<std::borrow::Cow<'a, str>>,
    /// The key, if it is UTF-8.
    mesh_key: Option<&'a str>,
}

/// Bytes of an encoded `Header` message (its fields, without tag and length).
fn header_len(k: &str, v: Option<&[u8]>) -> usize {
    (if k.is_empty() {
        0
    } else {
        field_len(HEADER_KEY, k.len())
    }) + v.map_or(0, |v| field_len(HEADER_VALUE, v.len()))
}

/// Bytes of a length-delimited field holding `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// Writes a length-delimited field; returns where its value starts and its length.
fn put_field(tag: u32, value: &[u8], buf: &mut BytesMut) -> (usize, usize) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(value.len() as u64, buf);
    let at = buf.len();
    buf.extend_from_slice(value);
    (at, value.len())
}

/// Writes a proto3 string field, omitted when empty as prost does.
fn put_str(tag: u32, value: &str, buf: &mut BytesMut) {
    if !value.is_empty() {
        put_field(tag, value.as_bytes(), buf);
    }
}

/// Appends `v` in decimal (the alert ref's numbers, without formatter machinery).
fn push_decimal(v: i64, buf: &mut BytesMut) {
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
    buf.extend_from_slice(&digits[i..]);
}

/// Characters of `v` in decimal.
fn decimal_len(v: i64) -> usize {
    let sign = usize::from(v < 0);
    sign + v
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1)
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

    fn ctx() -> AlertContext {
        AlertContext {
            gateway: "lasair".into(),
            topic: "ztf.alerts".into(),
            format: "avro-ocf".into(),
            namespace: "ZTF".into(),
        }
    }

    /// partition, offset, timestamp, key, headers, payload
    type Case<'a> = (
        i32,
        i64,
        Option<i64>,
        Option<&'a [u8]>,
        Vec<(&'a str, Option<&'a [u8]>)>,
        &'a [u8],
    );

    #[test]
    fn wire_bytes_decode_to_the_alert() {
        let ctx = ctx();
        let big = vec![0xabu8; 70_000];
        let cases: Vec<Case<'_>> = vec![
            (0, 0, None, None, vec![], b""),
            (
                2,
                1_234_567,
                Some(1_577_836_800_123),
                Some(b"ZTF:ZTF18abc"),
                vec![],
                b"payload",
            ),
            (
                1,
                i64::MAX,
                Some(-1),
                Some(b""),
                vec![
                    (am::SCHEMA, Some(b"ztf-3.3")),
                    ("am-source", Some(b"")),
                    ("", None),
                    ("bin", Some(&[0xff, 0xfe])),
                ],
                &big,
            ),
            (
                9,
                5,
                Some(0),
                Some(&[0xc3, 0x28]),
                vec![(am::SCHEMA, Some(&[0xff]))],
                b"x",
            ),
        ];
        for (p, o, ts, key, headers, payload) in cases {
            let parts = Parts {
                partition: p,
                offset: o,
                timestamp_ms: ts,
                key,
                headers: headers.iter().copied(),
                payload,
            };
            let r = ctx.record(&mut Arena::default(), parts);
            // The alert as the generated code builds it, field by field.
            let expected = v1::Alert {
                r#ref: format!("am://lasair/ztf.alerts/{p}/{o}"),
                topic: "ztf.alerts".into(),
                partition: p,
                offset: o,
                timestamp: ts.map(timestamp_from_ms),
                key: key.map(Bytes::copy_from_slice),
                headers: headers
                    .iter()
                    .map(|(k, v)| v1::Header {
                        key: (*k).to_owned(),
                        value: v.map(Bytes::copy_from_slice),
                    })
                    .collect(),
                payload: Bytes::copy_from_slice(payload),
                format: "avro-ocf".into(),
                namespace: "ZTF".into(),
                schema: headers
                    .iter()
                    .find(|(k, _)| *k == am::SCHEMA)
                    .and_then(|(_, v)| *v)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
                json: Bytes::new(),
                mesh_key: key
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or_default()
                    .to_owned(),
            };
            assert_eq!(
                r.wire().to_vec(),
                expected.encode_to_vec(),
                "prost's bytes, partition {p} offset {o}"
            );
            assert_eq!(ctx.alert(&r), expected);
            assert_eq!(r.payload(), payload);
            assert_eq!(r.payload_bytes().as_ref(), payload);
            assert_eq!(r.key(), key);
            assert_eq!(
                r.carries_mesh_key(),
                !expected.mesh_key.is_empty() || key == Some(&b""[..])
            );
            assert!(r.wire().len() <= r.size());
            // The element is the alert as a one-alert batch encodes it.
            let (block, element) = r.element();
            let batch = v1::AlertBatch {
                alerts: vec![expected.clone()],
                ..v1::AlertBatch::default()
            };
            assert_eq!(block[element].to_vec(), batch.encode_to_vec());
        }
    }

    #[test]
    fn records_cut_from_one_arena_stay_whole() {
        let ctx = ctx();
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
        let ctx = ctx();
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
    fn a_new_arena_takes_the_free_chunks_an_ended_one_left() {
        let ctx = ctx();
        let pool: &'static ChunkPool = Box::leak(Box::new(ChunkPool::new()));
        let payload = vec![1u8; 1000];
        let cut = |arena: &mut Arena| ctx.record(arena, Parts::plain(0, 1, &payload));
        let mut first = Arena::with_pool(pool);
        let kept: Vec<Record> = (0..1000).map(|_| cut(&mut first)).collect();
        let chunks = first.fetched as usize;
        assert!(chunks >= 3);
        drop(first);
        assert_eq!(pool.lock().len(), 0, "chunks still in use are not pooled");
        let mut second = Arena::with_pool(pool);
        drop(cut(&mut second));
        drop(second);
        let pooled = pool.lock().len();
        assert_eq!(pooled, 1, "a free chunk goes back");
        drop(kept);

        let mut third = Arena::with_pool(pool);
        let r = cut(&mut third);
        assert_eq!(pool.lock().len(), 0, "the new arena took the pooled chunk");
        assert_eq!(r.payload(), &payload[..]);
        // Never more than the bound.
        let many: Vec<Arena> = (0..ChunkPool::MAX + 5)
            .map(|_| {
                let mut a = Arena::with_pool(pool);
                drop(cut(&mut a));
                a
            })
            .collect();
        drop(many);
        assert_eq!(pool.lock().len(), ChunkPool::MAX);
    }

    #[test]
    fn a_single_record_arena_sizes_each_record_exactly() {
        let ctx = ctx();
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

    #[test]
    fn header_lists_keep_every_header_in_order() {
        for n in [0usize, 1, 8, 9, 20] {
            let names: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
            let headers: Vec<(&str, Option<&[u8]>)> = names
                .iter()
                .map(|k| (k.as_str(), (k.len() % 2 == 0).then_some(k.as_bytes())))
                .collect();
            let mut list = HeaderList::default();
            list.extend(headers.iter().copied());
            assert_eq!(list.as_slice(), &headers[..], "{n} headers");
        }
    }

    #[test]
    fn decimals() {
        for v in [0, 1, 9, 10, 99, 100, 12345, i64::MAX, -1, -10, i64::MIN] {
            assert_eq!(decimal_len(v), v.to_string().len(), "{v}");
            let mut buf = BytesMut::from(&b"x"[..]);
            push_decimal(v, &mut buf);
            assert_eq!(buf.as_ref(), format!("x{v}").as_bytes());
        }
    }

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
