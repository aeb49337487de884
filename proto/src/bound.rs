//! A bound on the memory a received message takes once decoded.
//!
//! tonic bounds a message's encoded size, but decoding multiplies it: an empty `Alert` is
//! two bytes on the wire and a few hundred in memory, so a 64 MiB `AlertBatch` of empty
//! alerts from a hostile peer would decode into ~10 GB. Before decoding, [`check`] walks
//! the message's wire form with its descriptor (from the same `.proto` the code was
//! generated from) and adds up an estimate of what its decoded form holds: every message
//! and repeated element at a generous struct size, every string's bytes, eight bytes per
//! packed number. A message whose estimate passes [`MAX_DECODED_BYTES`] is refused.
//!
//! The walk reads each byte once and allocates nothing; it costs a fraction of decoding.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::encoding::{self, DecodeContext, WireType};
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};

/// The most memory (estimated) a decoded message may take: far above any batch a gateway
/// sends (its largest, 100,000 alerts, estimates near 100 MiB), far below what a
/// machine running gateways has.
pub const MAX_DECODED_BYTES: usize = 256 << 20;

/// Nesting deeper than prost's own recursion limit is refused by its decoder anyway.
const MAX_DEPTH: usize = 100;

/// Why a message is refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "a {message} that would take more than {} MiB once decoded ({bytes} bytes on the wire)",
        .limit >> 20
    )]
    TooLarge {
        message: String,
        bytes: usize,
        limit: usize,
    },
    #[error("a {message} that is not valid protobuf: {reason}")]
    Malformed { message: String, reason: String },
}

/// The wire bytes of a message of type `M` fit in [`MAX_DECODED_BYTES`] once decoded.
pub fn check<M: prost::Name>(wire: &[u8]) -> Result<(), Refused> {
    check_within(&M::full_name(), wire, MAX_DECODED_BYTES)
}

/// [`check`] for the message named `full_name` (`alertmesh.v1.Alert`) with `limit`.
/// A name the descriptors do not have is not bounded (every generated type has one).
pub(crate) fn check_within(full_name: &str, wire: &[u8], limit: usize) -> Result<(), Refused> {
    let shapes = shapes();
    let Some(&shape) = shapes.by_name.get(full_name) else {
        debug_assert!(false, "no descriptor for {full_name}");
        return Ok(());
    };
    let mut left = limit;
    shapes
        .walk(shape, wire, &mut left, 0)
        .map_err(|stop| match stop {
            Stop::Budget => Refused::TooLarge {
                message: short(full_name),
                bytes: wire.len(),
                limit,
            },
            Stop::Malformed(reason) => Refused::Malformed {
                message: short(full_name),
                reason,
            },
        })
}

fn short(full_name: &str) -> String {
    full_name.rsplit('.').next().unwrap_or(full_name).to_owned()
}

enum Stop {
    Budget,
    Malformed(String),
}

impl From<prost::DecodeError> for Stop {
    fn from(e: prost::DecodeError) -> Stop {
        Stop::Malformed(e.to_string())
    }
}

/// What a field holds, as far as its decoded size goes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Message(usize),
    Text,
    Bytes,
    Number,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    kind: Kind,
    repeated: bool,
}

#[derive(Debug, Default)]
struct Shape {
    /// Estimated size of the decoded struct itself.
    own: usize,
    fields: HashMap<u32, Field>,
}

#[derive(Debug, Default)]
struct Shapes {
    shapes: Vec<Shape>,
    by_name: HashMap<String, usize>,
}

/// A struct field is at most a `String`, `Vec` or `Bytes` (24-32 bytes) or a message
/// inline; the message inline is counted when it arrives.
const PER_FIELD: usize = 32;
const PER_MESSAGE: usize = 32;

fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let fds = prost_types::FileDescriptorSet::decode(
            &include_bytes!(concat!(env!("OUT_DIR"), "/alertmesh.fds"))[..],
        )
        .expect("the build wrote the descriptors it compiled");
        Shapes::new(&fds)
    })
}

impl Shapes {
    fn new(fds: &prost_types::FileDescriptorSet) -> Shapes {
        let mut messages = Vec::new();
        for file in &fds.file {
            let package = file.package();
            for m in &file.message_type {
                collect(package, m, &mut messages);
            }
        }
        let mut shapes = Shapes::default();
        for (i, (name, _)) in messages.iter().enumerate() {
            shapes.by_name.insert(name.clone(), i);
        }
        for (_, m) in &messages {
            let fields = m
                .field
                .iter()
                .filter_map(|f| {
                    let kind = match f.r#type() {
                        Type::Message | Type::Group => f
                            .type_name()
                            .strip_prefix('.')
                            .and_then(|n| shapes.by_name.get(n))
                            .map_or(Kind::Bytes, |i| Kind::Message(*i)),
                        Type::String => Kind::Text,
                        Type::Bytes => Kind::Bytes,
                        _ => Kind::Number,
                    };
                    let repeated = f.label() == Label::Repeated;
                    // Field numbers are positive by the language's rules.
                    Some((u32::try_from(f.number()).ok()?, Field { kind, repeated }))
                })
                .collect::<HashMap<_, _>>();
            shapes.shapes.push(Shape {
                own: PER_MESSAGE + PER_FIELD * fields.len(),
                fields,
            });
        }
        shapes
    }

    /// Takes what `wire` (a message of shape `shape`) holds decoded off `left`.
    fn walk(
        &self,
        shape: usize,
        mut wire: &[u8],
        left: &mut usize,
        depth: usize,
    ) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Malformed("nested too deep".into()));
        }
        let shape = &self.shapes[shape];
        take(left, shape.own)?;
        while !wire.is_empty() {
            let (tag, wire_type) = encoding::decode_key(&mut wire)?;
            let field = shape.fields.get(&tag).copied();
            if wire_type != WireType::LengthDelimited {
                encoding::skip_field(wire_type, tag, &mut wire, DecodeContext::default())?;
                if field.is_some_and(|f| f.repeated) {
                    take(left, 8)?;
                }
                continue;
            }
            let len = usize::try_from(encoding::decode_varint(&mut wire)?)
                .ok()
                .filter(|len| *len <= wire.len())
                .ok_or_else(|| Stop::Malformed("a field is longer than its message".into()))?;
            let (value, rest) = wire.split_at(len);
            wire = rest;
            let Some(field) = field else { continue };
            // A repeated element is a slot in a `Vec`; a singular message is inline in its
            // parent, already counted, but counting it again keeps the estimate on the
            // high side.
            if field.repeated {
                take(left, PER_FIELD)?;
            }
            match field.kind {
                Kind::Message(inner) => self.walk(inner, value, left, depth + 1)?,
                Kind::Text => take(left, value.len())?,
                // A slice of the received buffer.
                Kind::Bytes => {}
                // Packed numbers: at most one per byte, at most eight bytes each.
                Kind::Number => take(left, 8 * value.len())?,
            }
        }
        Ok(())
    }
}

fn take(left: &mut usize, bytes: usize) -> Result<(), Stop> {
    *left = left.checked_sub(bytes).ok_or(Stop::Budget)?;
    Ok(())
}

/// Every message of `m`'s tree, by full name without the leading dot.
fn collect<'a>(
    scope: &str,
    m: &'a prost_types::DescriptorProto,
    out: &mut Vec<(String, &'a prost_types::DescriptorProto)>,
) {
    let name = if scope.is_empty() {
        m.name().to_owned()
    } else {
        format!("{scope}.{}", m.name())
    };
    for nested in &m.nested_type {
        collect(&name, nested, out);
    }
    out.push((name, m));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Alert, AlertBatch, GatewayDescription, Header, ListTopicsResponse, TopicInfo};
    use prost::bytes::Bytes;
    use prost::Name as _;

    /// A mirrored alert: the view tests' alert with the five headers a mirror stamps.
    fn real_alert(offset: i64) -> Alert {
        let headers = ["am-source", "am-origin", "am-format", "am-schema", "am-key"]
            .iter()
            .map(|k| Header {
                key: (*k).into(),
                value: Some(Bytes::from_static(b"am://lasair/ztf/2/12345")),
            })
            .collect();
        crate::view::tests::alert(offset, headers)
    }

    /// The largest batch a gateway sends (100,000 alerts, here of small payloads with
    /// five headers each) passes; the same bytes spent on empty alerts, empty headers or
    /// empty topics do not.
    #[test]
    fn real_batches_pass_and_empty_elements_by_the_million_do_not() {
        let batch = AlertBatch {
            alerts: (0..100_000).map(real_alert).collect(),
            ..AlertBatch::default()
        };
        let wire = batch.encode_to_vec();
        check::<AlertBatch>(&wire).unwrap();
        // Estimate against reality, roughly: the struct sizes the estimate assumes are
        // not below Rust's.
        assert!(std::mem::size_of::<Alert>() <= PER_MESSAGE + PER_FIELD * 14);
        assert!(std::mem::size_of::<Header>() <= PER_MESSAGE + PER_FIELD * 2);

        // Two bytes per empty alert: 16 MiB of them.
        let empty_alerts = [0x0a_u8, 0x00].repeat(8 << 20);
        let e = check::<AlertBatch>(&empty_alerts).unwrap_err().to_string();
        assert!(e.contains("AlertBatch") && e.contains("256 MiB"), "{e}");

        // One alert of empty headers.
        let mut headers = [0x3a_u8, 0x00].repeat(8 << 20);
        let mut alert = vec![0x0a_u8];
        encoding::encode_varint(headers.len() as u64, &mut alert);
        alert.append(&mut headers);
        assert!(check::<AlertBatch>(&alert).is_err());
        assert!(check::<Alert>(&alert[1 + 4..]).is_err());

        // A directory of empty topics, in both messages that carry one.
        let topics = [0x0a_u8, 0x00].repeat(8 << 20);
        assert!(check::<ListTopicsResponse>(&topics).is_err());
        let described = [0x22_u8, 0x00].repeat(8 << 20);
        assert!(check::<GatewayDescription>(&described).is_err());
        // A real one passes.
        let listing = ListTopicsResponse {
            topics: (0..1000)
                .map(|i| TopicInfo {
                    name: format!("ztf.{i}"),
                    partitions: 16,
                    ..TopicInfo::default()
                })
                .collect(),
            ..ListTopicsResponse::default()
        };
        check::<ListTopicsResponse>(&listing.encode_to_vec()).unwrap();
    }

    #[test]
    fn damaged_messages_are_refused_not_walked_past() {
        let wire = real_alert(1).encode_to_vec();
        let e = check::<Alert>(&wire[..wire.len() - 3]).unwrap_err();
        assert!(matches!(e, Refused::Malformed { .. }), "{e}");
        // Every generated message has a descriptor.
        for name in [
            Alert::full_name(),
            AlertBatch::full_name(),
            Header::full_name(),
        ] {
            assert!(shapes().by_name.contains_key(&name), "{name}");
        }
    }

    #[test]
    fn the_limit_is_a_parameter() {
        let wire = real_alert(1).encode_to_vec();
        assert!(check_within("alertmesh.v1.Alert", &wire, 1 << 20).is_ok());
        assert!(check_within("alertmesh.v1.Alert", &wire, 100).is_err());
    }
}
