//! Writer schemas, parsed once and cached.
//!
//! Parsing an Avro schema and resolving its named types costs far more than decoding one
//! alert, so every schema is wrapped once in a [`WriterSchema`] (schema, Rabin fingerprint,
//! and a decoder with its names pre-resolved) and shared through [`SchemaCache`].

mod check;
mod split;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use apache_avro::headers::HeaderBuilder;
use apache_avro::schema::Schema;
use apache_avro::types::Value;
use apache_avro::GenericSingleObjectReader;

pub use self::split::combine_split_schemas;
use crate::projection::{Plan, Projection, Trie};
use crate::{Error, Result};

/// A parsed writer schema with everything needed to decode records written with it.
pub struct WriterSchema {
    schema: Schema,
    fingerprint: u64,
    decoder: GenericSingleObjectReader,
    /// The full decoder on compiled shapes: it builds the values apache-avro would, but
    /// bounds what zero-byte items (nulls, empty records) an array or map may add over all
    /// its blocks, where apache-avro bounds only each block's count (a few hostile bytes,
    /// one block after another announcing 4 Mi nulls, asked it for gigabytes).
    full: Option<Plan>,
    /// Compiled projection plans, by projection id (bounded: cleared when full).
    plans: RwLock<Vec<(u64, Arc<Plan>)>>,
}

/// Most projection plans kept per schema.
const MAX_PLANS: usize = 64;

/// The empty header: records are bare Avro datums.
struct NoHeader;

impl HeaderBuilder for NoHeader {
    fn build_header(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// The most items apache-avro reserves room for at once (the count an array or map block
/// announces), and the longest string, bytes or fixed value it reads.
///
/// apache-avro reserves a block's announced count before reading its items, bounded only
/// by its default of 512 Mi *items*: 19 hostile bytes announcing a map of 2^29 entries made
/// it ask for 43 GB, and the allocation failure aborts the process (found by the `decode`
/// fuzz target). With 4 Mi the worst reservation is a few hundred MB of address space,
/// released as soon as the data runs out; no alert field comes near 4 MiB (cutouts are tens
/// of KB). A record beyond it is an undecodable record, reported as such.
pub const MAX_AVRO_ITEMS: usize = 4 << 20;

/// Sets [`MAX_AVRO_ITEMS`] as apache-avro's limit and returns the limit in force.
/// apache-avro keeps the first value set in the process (its own decoders set its default
/// on first use), so [`WriterSchema::new`] runs it: every decode here needs a
/// [`WriterSchema`]. A program that decodes with apache-avro directly calls it first.
pub fn limit_avro_allocations() -> usize {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ITEMS)
}

impl WriterSchema {
    /// Prepares `schema` for decoding (resolves its named types once).
    pub fn new(schema: Schema) -> Result<Self> {
        limit_avro_allocations();
        let fingerprint = fingerprint(&schema);
        let decoder = GenericSingleObjectReader::new_with_header_builder(schema.clone(), NoHeader)
            .map_err(|e| Error::Schema {
                reason: e.to_string(),
            })?;
        let full = Plan::compile(&schema, &Trie::whole()).ok();
        Ok(WriterSchema {
            schema,
            fingerprint,
            decoder,
            full,
            plans: RwLock::default(),
        })
    }

    /// Parses a JSON schema text.
    ///
    /// The text comes from the payload, so from anyone: it is checked (names, nesting,
    /// size) before apache-avro sees it, because apache-avro panics on some invalid
    /// schemas instead of returning an error.
    pub fn parse(json: &str) -> Result<Self> {
        let bad = |reason: String| Error::Schema { reason };
        if json.len() > check::MAX_SCHEMA_BYTES {
            return Err(bad(format!(
                "the schema text is {} bytes, more than the {} accepted",
                json.len(),
                check::MAX_SCHEMA_BYTES
            )));
        }
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("the schema is not JSON: {e}")))?;
        WriterSchema::new(parse_checked(&value)?)
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The 64-bit Rabin fingerprint of the schema's parsing canonical form (Avro spec),
    /// as used in the `am-schema` header (written as 16 hex digits).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Decodes one bare Avro datum from the front of `input`, advancing it.
    pub(crate) fn decode_datum(&self, input: &mut &[u8]) -> std::result::Result<Value, String> {
        match &self.full {
            Some(plan) => plan.read(input).map_err(String::from),
            None => self.decoder.read_value(input).map_err(|e| e.to_string()),
        }
    }

    /// The plan of `projection` for this schema, compiled on first use.
    pub(crate) fn plan(&self, projection: &Projection) -> Result<Arc<Plan>> {
        let id = projection.id();
        let hit = self.plans.read().ok().and_then(|plans| {
            plans
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, plan)| plan.clone())
        });
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let plan = Arc::new(
            projection
                .compile(&self.schema)
                .map_err(|reason| Error::Schema { reason })?,
        );
        if let Ok(mut plans) = self.plans.write() {
            if plans.len() >= MAX_PLANS {
                plans.clear();
            }
            plans.push((id, plan.clone()));
        }
        Ok(plan)
    }
}

impl fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterSchema")
            .field("name", &self.schema.name().map(|n| n.fullname(None)))
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// Checks `value` (see [`check`]), then parses it with apache-avro.
pub(crate) fn parse_checked(value: &serde_json::Value) -> Result<Schema> {
    check::check(value).map_err(|reason| Error::Schema { reason })?;
    // Last line of defence: a panic apache-avro still has on a checked schema is an error
    // here (the fuzz target still reports it, as libFuzzer aborts on any panic).
    std::panic::catch_unwind(|| Schema::parse(value))
        .map_err(|_| Error::Schema {
            reason: "the schema could not be parsed".into(),
        })?
        .map_err(|e| Error::Schema {
            reason: e.to_string(),
        })
}

/// The Rabin fingerprint (CRC-64-AVRO) of the parsing canonical form.
pub fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    let mut le = [0u8; 8];
    for (dst, src) in le.iter_mut().zip(bytes) {
        *dst = src;
    }
    u64::from_le_bytes(le)
}

/// A bounded, thread-safe cache of writer schemas keyed by their JSON text.
///
/// OCF payloads embed their schema as text; the text is the key, so a cache hit costs one
/// hash of it and no parsing. When full, the cache is cleared (a hostile peer sending an
/// endless stream of distinct schemas cannot grow memory without bound).
#[derive(Debug)]
pub struct SchemaCache {
    capacity: usize,
    by_text: RwLock<Entries>,
}

/// The cached schemas: keyed by a cheap digest of the text (length and its ends), then
/// compared in full, since hashing a 20 KB schema text per payload with SipHash would
/// cost more than decoding.
#[derive(Debug, Default)]
struct Entries {
    buckets: HashMap<(usize, u64), Bucket>,
    /// Schemas over all buckets: the bound is on these, not on buckets, or texts alike
    /// at both ends (a hostile producer varying the middle) would pile up in one bucket.
    len: usize,
    /// Their texts' bytes: a schema may be 1 MiB of text, and its parsed form several
    /// times that, so a count alone would let 256 hostile ones hold gigabytes.
    bytes: usize,
}

/// Schema text the cache holds at most: real alert schemas are 20-60 KB, so 256 of them
/// fit, while hostile megabyte schemas clear the cache every few dozen.
const MAX_CACHED_TEXT_BYTES: usize = 16 << 20;

/// Schemas whose texts share a quick key, with their full texts; at most
/// [`BUCKET_MAX`], so a miss compares a few texts at most.
type Bucket = Vec<(Vec<u8>, Arc<WriterSchema>)>;

/// Schemas kept per quick key: distinct real schemas practically never share one.
const BUCKET_MAX: usize = 4;

fn quick_key(text: &[u8]) -> (usize, u64) {
    let ends = text.iter().take(256).chain(text.iter().rev().take(256));
    let fnv = ends.fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (text.len(), fnv)
}

impl Default for SchemaCache {
    fn default() -> Self {
        SchemaCache::new(256)
    }
}

impl SchemaCache {
    /// A cache holding at most `capacity` schemas.
    pub fn new(capacity: usize) -> Self {
        SchemaCache {
            capacity: capacity.max(1),
            by_text: RwLock::new(Entries::default()),
        }
    }

    /// The schema whose JSON text is `text`, parsed on first use.
    pub fn get_or_parse(&self, text: &[u8]) -> Result<Arc<WriterSchema>> {
        let key = quick_key(text);
        let hit = self.by_text.read().ok().and_then(|m| {
            let bucket = m.buckets.get(&key)?;
            bucket
                .iter()
                .find(|(t, _)| t.as_slice() == text)
                .map(|(_, s)| s.clone())
        });
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let json = std::str::from_utf8(text).map_err(|_| Error::Schema {
            reason: "schema text is not utf-8".into(),
        })?;
        let parsed = Arc::new(WriterSchema::parse(json)?);
        if let Ok(mut entries) = self.by_text.write() {
            if entries.len >= self.capacity || entries.bytes + text.len() > MAX_CACHED_TEXT_BYTES {
                *entries = Entries::default();
            }
            let bucket = entries.buckets.entry(key).or_default();
            // Another thread may have parsed the same text meanwhile.
            if !bucket.iter().any(|(t, _)| t.as_slice() == text) {
                let evicted = if bucket.len() >= BUCKET_MAX {
                    Some(bucket.remove(0).0.len())
                } else {
                    None
                };
                bucket.push((text.to_vec(), parsed.clone()));
                entries.len = entries.len + 1 - usize::from(evicted.is_some());
                entries.bytes = entries.bytes + text.len() - evicted.unwrap_or(0);
            }
        }
        Ok(parsed)
    }

    /// How many schemas are cached.
    pub fn len(&self) -> usize {
        self.by_text.read().map(|m| m.len).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_the_avro_spec_value_for_a_primitive() {
        // CRC-64-AVRO of the canonical form `"int"` (from the Avro spec test suite).
        assert_eq!(fingerprint(&Schema::Int), 0x7275d51a3f395c8f);
    }

    #[test]
    fn cache_parses_once_and_stays_bounded() {
        let cache = SchemaCache::new(2);
        let a = cache.get_or_parse(br#""long""#).unwrap();
        let b = cache.get_or_parse(br#""long""#).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        cache.get_or_parse(br#""int""#).unwrap();
        cache.get_or_parse(br#""string""#).unwrap();
        assert!(cache.len() <= 2);
        assert!(cache.get_or_parse(b"{nope").is_err());
        assert!(cache.get_or_parse(&[0xff]).is_err());
    }

    /// Distinct schema texts of one length whose first and last 256 bytes agree share a
    /// bucket; the bound used to count buckets, so such texts (a hostile producer varying
    /// a doc string's middle; the decode fuzz target mutating the fixtures' schemas) piled
    /// up without limit, until the fuzz target ran out of memory.
    #[test]
    fn schemas_alike_at_both_ends_stay_bounded() {
        let cache = SchemaCache::new(8);
        let text = |i: usize| {
            format!(
                r#"{{"type":"record","name":"a","doc":"{}{i:04}{}","fields":[{{"name":"x","type":"long"}}]}}"#,
                "p".repeat(300),
                "q".repeat(300)
            )
        };
        assert_eq!(quick_key(text(1).as_bytes()), quick_key(text(2).as_bytes()));
        for i in 0..100 {
            let parsed = cache.get_or_parse(text(i).as_bytes()).unwrap();
            assert!(
                cache.len() <= 8,
                "{} schemas cached after {}",
                cache.len(),
                i + 1
            );
            // The newest is a hit, returned as cached.
            let again = cache.get_or_parse(text(i).as_bytes()).unwrap();
            assert!(Arc::ptr_eq(&parsed, &again));
        }
        let buckets = cache.by_text.read().unwrap();
        assert!(buckets.buckets.values().all(|b| b.len() <= BUCKET_MAX));
    }

    /// 256 distinct schemas of nearly 1 MiB each (the largest accepted) would be 256 MiB
    /// of text and several times that parsed: the cache holds at most 16 MiB of text.
    #[test]
    fn large_schemas_are_bounded_in_bytes() {
        let cache = SchemaCache::default();
        let doc = "d".repeat(900 << 10);
        for i in 0..40 {
            let text = format!(r#"{{"type":"record","name":"a{i}","doc":"{doc}","fields":[]}}"#);
            cache.get_or_parse(text.as_bytes()).unwrap();
            let bytes = cache.by_text.read().unwrap().bytes;
            assert!(bytes <= MAX_CACHED_TEXT_BYTES, "{bytes} bytes cached");
            assert!(cache.len() <= MAX_CACHED_TEXT_BYTES / doc.len());
        }
        assert!(!cache.is_empty());
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;

    /// The decode fuzz target's first find: a mutated Rubin schema whose record name holds
    /// a `|`, on which apache-avro panics. It must be an error, not a panic.
    #[test]
    fn a_schema_name_apache_avro_panics_on_is_an_error() {
        let json = r#"{"type":"record","name":"lss|.v9_0.diaSource","fields":[{"name":"a","type":"long"}]}"#;
        let err = WriterSchema::parse(json).unwrap_err().to_string();
        assert!(err.contains("is not an Avro name"), "{err}");
    }

    /// The crash input itself, a whole OCF file, decodes to an error without any panic
    /// (not even a caught one: the hook counts them).
    #[test]
    fn the_decode_fuzz_crash_input_is_an_error_without_a_panic() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static PANICS: AtomicUsize = AtomicUsize::new(0);
        let input = include_bytes!("../fuzz/crashes/decode-ocf-mutated-rubin-v9");
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }));
        let result = crate::Decoder::new().decode_all(crate::Format::AvroOcf, input);
        std::panic::set_hook(previous);
        let Err(err) = result else {
            panic!("the input has an invalid schema")
        };
        let err = err.to_string();
        assert!(err.contains("lss|.v9_0.diaSource"), "{err}");
        assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_oversized_schema_text_is_refused_before_parsing() {
        let json = format!("\"{}\"", " ".repeat(check::MAX_SCHEMA_BYTES));
        let err = WriterSchema::parse(&json).unwrap_err().to_string();
        assert!(err.contains("accepted"), "{err}");
    }
}
