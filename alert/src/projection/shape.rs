//! Compiled value shapes: what a schema looks like on the wire, with names resolved once.
//!
//! A [`Shapes`] arena holds every type of a writer schema as a [`Shape`] addressed by index,
//! so reading a record never looks a name up. [`Shapes::skip`] steps over a value without
//! allocating; [`Shapes::decode`] builds the same [`Value`] apache-avro would.

use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::{Decimal, Duration};

use super::wire::{Fail, Wire};

/// Deepest nesting of values accepted (recursive schemas could otherwise exhaust the stack).
const MAX_DEPTH: u32 = 128;
/// Most items of zero-byte values (such as nulls) one decoded array or map may hold.
const MAX_EMPTY_ITEMS: usize = 1 << 16;

/// The Avro `int` flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntKind {
    Int,
    Date,
    TimeMillis,
}

/// The Avro `long` flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LongKind {
    Long,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalTimestampMillis,
    LocalTimestampMicros,
    LocalTimestampNanos,
}

/// One type of a schema, children by index into [`Shapes`].
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    Null,
    Boolean,
    Int(IntKind),
    Long(LongKind),
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Arc<[String]>),
    Array(usize),
    Map(usize),
    Union(Box<[usize]>),
    Record(Box<[(String, usize)]>),
    Uuid,
    /// `fixed` size, or `None` when written as bytes.
    Decimal(Option<usize>),
    BigDecimal,
    Duration,
}

/// An arena of shapes.
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    pub(crate) all: Vec<Shape>,
}

fn too_deep() -> Fail {
    Fail::from("values nested too deeply")
}

impl Shapes {
    fn get(&self, id: usize) -> Result<&Shape, Fail> {
        self.all.get(id).ok_or_else(|| Fail::from("bad plan index"))
    }

    /// Steps over one value of shape `id`.
    pub(crate) fn skip(&self, id: usize, w: &mut Wire<'_>, depth: u32) -> Result<(), Fail> {
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        match self.get(id)? {
            Shape::Null => Ok(()),
            Shape::Boolean => w.boolean().map(drop),
            Shape::Int(_) | Shape::Long(_) => w.long().map(drop),
            Shape::Float => w.take(4).map(drop),
            Shape::Double => w.take(8).map(drop),
            Shape::Fixed(n) | Shape::Decimal(Some(n)) => w.take(*n).map(drop),
            Shape::Duration => w.take(12).map(drop),
            Shape::Bytes
            | Shape::String
            | Shape::Uuid
            | Shape::Decimal(None)
            | Shape::BigDecimal => w.bytes().map(drop),
            Shape::Enum(symbols) => w.index(symbols.len()).map(drop),
            Shape::Union(branches) => {
                let branch = *branches
                    .get(w.index(branches.len())?)
                    .ok_or_else(|| Fail::from("bad union branch"))?;
                self.skip(branch, w, depth + 1)
            }
            Shape::Record(fields) => fields
                .iter()
                .try_for_each(|(_, f)| self.skip(*f, w, depth + 1)),
            Shape::Array(item) => self.skip_blocks(w, |w| self.skip(*item, w, depth + 1)),
            Shape::Map(value) => self.skip_blocks(w, |w| {
                w.bytes()?;
                self.skip(*value, w, depth + 1)
            }),
        }
    }

    /// Skips the blocks of an array or map: whole blocks by byte size when the writer gave
    /// one, else item by item.
    fn skip_blocks<'a>(
        &self,
        w: &mut Wire<'a>,
        mut item: impl FnMut(&mut Wire<'a>) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        loop {
            let (count, size) = w.block()?;
            if count == 0 {
                return Ok(());
            }
            if let Some(size) = size {
                w.take(size)?;
                continue;
            }
            let before = w.remaining();
            item(w)?;
            if w.remaining() == before {
                // Items of this shape take no bytes at all: the rest of the block neither.
                continue;
            }
            for _ in 1..count {
                item(w)?;
            }
        }
    }

    /// Decodes one value of shape `id`, exactly as apache-avro would.
    pub(crate) fn decode(&self, id: usize, w: &mut Wire<'_>, depth: u32) -> Result<Value, Fail> {
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        w.charge(std::mem::size_of::<Value>())?;
        Ok(match self.get(id)? {
            Shape::Null => Value::Null,
            Shape::Boolean => Value::Boolean(w.boolean()?),
            Shape::Int(kind) => {
                let n = i32::try_from(w.long()?).map_err(|_| Fail::from("int out of range"))?;
                match kind {
                    IntKind::Int => Value::Int(n),
                    IntKind::Date => Value::Date(n),
                    IntKind::TimeMillis => Value::TimeMillis(n),
                }
            }
            Shape::Long(kind) => long_value(*kind, w.long()?),
            Shape::Float => Value::Float(f32::from_le_bytes(w.array()?)),
            Shape::Double => Value::Double(f64::from_le_bytes(w.array()?)),
            Shape::Bytes => {
                let b = w.bytes()?;
                w.charge(b.len())?;
                Value::Bytes(b.to_vec())
            }
            Shape::String => {
                let s = w.string()?;
                w.charge(s.len())?;
                Value::String(s.to_owned())
            }
            Shape::Fixed(n) => Value::Fixed(*n, w.take(*n)?.to_vec()),
            Shape::Enum(symbols) => {
                let i = w.index(symbols.len())?;
                let symbol = symbols.get(i).ok_or_else(|| Fail::from("bad enum index"))?;
                w.charge(symbol.len())?;
                Value::Enum(i as u32, symbol.clone())
            }
            Shape::Union(branches) => {
                let i = w.index(branches.len())?;
                let branch = *branches
                    .get(i)
                    .ok_or_else(|| Fail::from("bad union branch"))?;
                Value::Union(i as u32, Box::new(self.decode(branch, w, depth + 1)?))
            }
            Shape::Record(fields) => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, f) in fields.iter() {
                    w.charge(name.len() + std::mem::size_of::<String>())?;
                    out.push((name.clone(), self.decode(*f, w, depth + 1)?));
                }
                Value::Record(out)
            }
            Shape::Array(item) => {
                let mut items = Vec::new();
                decode_blocks(w, |w, hint| {
                    // Room is charged as it is reserved: nested arrays each reserve their
                    // block's count (up to the bytes left) before any item is read.
                    w.charge(hint.saturating_mul(std::mem::size_of::<Value>()))?;
                    items.reserve(hint);
                    items.push(self.decode(*item, w, depth + 1)?);
                    Ok(items.len())
                })?;
                Value::Array(items)
            }
            Shape::Map(value) => {
                let mut entries = std::collections::HashMap::new();
                let mut n = 0;
                decode_blocks(w, |w, hint| {
                    w.charge(hint.saturating_mul(std::mem::size_of::<(String, Value)>()))?;
                    entries.reserve(hint);
                    let key = w.string()?.to_owned();
                    w.charge(key.len() + std::mem::size_of::<String>())?;
                    entries.insert(key, self.decode(*value, w, depth + 1)?);
                    n += 1;
                    Ok(n)
                })?;
                Value::Map(entries)
            }
            Shape::Uuid => uuid(w.bytes()?)?,
            Shape::Decimal(Some(n)) => Value::Decimal(Decimal::from(w.take(*n)?.to_vec())),
            Shape::Decimal(None) => Value::Decimal(Decimal::from(w.bytes()?.to_vec())),
            Shape::Duration => Value::Duration(Duration::from(w.array::<12>()?)),
            Shape::BigDecimal => {
                let mut raw = w.raw_bytes()?;
                apache_avro::from_avro_datum(&apache_avro::Schema::BigDecimal, &mut raw, None)
                    .map_err(|e| Fail::from(e.to_string()))?
            }
        })
    }
}

/// Reads the blocks of an array or map, calling `item` per item with a capacity hint (the
/// block's count, at most the bytes left, for its first item; else 0); `item` returns the
/// items so far. Zero-byte items are capped so a huge count cannot exhaust memory.
pub(crate) fn decode_blocks<'a>(
    w: &mut Wire<'a>,
    mut item: impl FnMut(&mut Wire<'a>, usize) -> Result<usize, Fail>,
) -> Result<(), Fail> {
    loop {
        let (count, _) = w.block()?;
        if count == 0 {
            return Ok(());
        }
        let mut hint = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(w.remaining());
        for _ in 0..count {
            let before = w.remaining();
            let n = item(w, std::mem::take(&mut hint))?;
            if w.remaining() == before && n > MAX_EMPTY_ITEMS {
                return Err(Fail::from("too many empty items in an array or map"));
            }
        }
    }
}

fn long_value(kind: LongKind, n: i64) -> Value {
    match kind {
        LongKind::Long => Value::Long(n),
        LongKind::TimeMicros => Value::TimeMicros(n),
        LongKind::TimestampMillis => Value::TimestampMillis(n),
        LongKind::TimestampMicros => Value::TimestampMicros(n),
        LongKind::TimestampNanos => Value::TimestampNanos(n),
        LongKind::LocalTimestampMillis => Value::LocalTimestampMillis(n),
        LongKind::LocalTimestampMicros => Value::LocalTimestampMicros(n),
        LongKind::LocalTimestampNanos => Value::LocalTimestampNanos(n),
    }
}

/// A uuid written as 16 raw bytes or as its text (as apache-avro reads it).
fn uuid(bytes: &[u8]) -> Result<Value, Fail> {
    let parsed = if bytes.len() == 16 {
        apache_avro::Uuid::from_slice(bytes).ok()
    } else {
        std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok())
    };
    parsed
        .map(Value::Uuid)
        .ok_or_else(|| Fail::from("bad uuid"))
}
