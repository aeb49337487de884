//! Decoding plans: a writer schema compiled against a set of needed paths.
//!
//! A [`Plan`] is built once per (writer schema, projection). Needed fields are decoded,
//! everything else is skipped on the wire through precompiled [`Shape`]s; records keep only
//! their needed fields, maps only their needed keys, unions their branch index.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::schema::{Name, Schema};
use apache_avro::types::Value;

use super::shape::{IntKind, LongKind, Shape, Shapes};
use super::wire::{Fail, Wire};
use crate::path::SchemaNames;
use crate::FieldPath;

/// The needed paths as a tree of segments; `whole` marks a path that ends here.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    whole: bool,
    children: BTreeMap<String, Trie>,
}

impl Trie {
    /// The whole value: a plan of it is a full decoder.
    pub(crate) fn whole() -> Self {
        Trie {
            whole: true,
            children: BTreeMap::new(),
        }
    }

    pub(crate) fn new<'p>(paths: impl IntoIterator<Item = &'p FieldPath>) -> Self {
        let mut root = Trie::default();
        for path in paths {
            let mut node = &mut root;
            for segment in path.segments() {
                node = node.children.entry(segment.clone()).or_default();
            }
            node.whole = true;
        }
        root
    }
}

/// What to do with one value.
#[derive(Debug)]
enum Step {
    /// Decode it in full (shape index).
    Full(usize),
    /// A record: per field, keep it (name, step) or skip it (shape).
    Record(Box<[Field]>),
    /// A union: the step of each branch.
    Union(Box<[usize]>),
    /// A map: the needed keys with their steps, and the shape of the values to skip.
    Map(Box<[(String, usize)]>, usize),
}

#[derive(Debug)]
enum Field {
    Keep(String, usize),
    Skip(usize),
}

/// A compiled projection of one writer schema.
#[derive(Debug)]
pub(crate) struct Plan {
    shapes: Shapes,
    steps: Vec<Step>,
    root: usize,
}

impl Plan {
    /// Compiles `schema` for the paths of `trie` (the root whole: a full decoder).
    pub(crate) fn compile(schema: &Schema, trie: &Trie) -> Result<Plan, String> {
        let names = SchemaNames::new(schema);
        let mut c = Compiler {
            names: &names,
            named: HashMap::new(),
            shapes: Shapes::default(),
            steps: Vec::new(),
        };
        let root = c.step(schema, trie)?;
        Ok(Plan {
            shapes: c.shapes,
            steps: c.steps,
            root,
        })
    }

    /// Reads one datum from the front of `input`, advancing it.
    pub(crate) fn read(&self, input: &mut &[u8]) -> Result<Value, Fail> {
        let mut w = Wire::new(input);
        let value = self.run(self.root, &mut w)?;
        *input = w.rest();
        Ok(value)
    }

    fn run(&self, step: usize, w: &mut Wire<'_>) -> Result<Value, Fail> {
        let step = self
            .steps
            .get(step)
            .ok_or_else(|| Fail::from("bad plan index"))?;
        match step {
            Step::Full(shape) => self.shapes.decode(*shape, w, 0),
            Step::Record(fields) => {
                let mut kept = Vec::new();
                for field in fields.iter() {
                    match field {
                        Field::Skip(shape) => self.shapes.skip(*shape, w, 0)?,
                        Field::Keep(name, step) => kept.push((name.clone(), self.run(*step, w)?)),
                    }
                }
                Ok(Value::Record(kept))
            }
            Step::Union(branches) => {
                let i = w.index(branches.len())?;
                let branch = *branches
                    .get(i)
                    .ok_or_else(|| Fail::from("bad union branch"))?;
                Ok(Value::Union(i as u32, Box::new(self.run(branch, w)?)))
            }
            Step::Map(keys, values) => {
                let mut entries = HashMap::new();
                super::shape::decode_blocks(w, |w, _| {
                    let key = w.bytes()?;
                    match keys.iter().find(|(k, _)| k.as_bytes() == key) {
                        Some((k, step)) => {
                            entries.insert(k.clone(), self.run(*step, w)?);
                        }
                        None => self.shapes.skip(*values, w, 0)?,
                    }
                    // Skipped entries take bytes (their key's length at least): no cap needed.
                    Ok(entries.len())
                })?;
                Ok(Value::Map(entries))
            }
        }
    }
}

struct Compiler<'s> {
    names: &'s SchemaNames<'s>,
    named: HashMap<Name, usize>,
    shapes: Shapes,
    steps: Vec<Step>,
}

impl<'s> Compiler<'s> {
    fn push(&mut self, step: Step) -> usize {
        self.steps.push(step);
        self.steps.len() - 1
    }

    fn step(&mut self, schema: &'s Schema, trie: &Trie) -> Result<usize, String> {
        let schema = self.names.deref(schema);
        if trie.whole {
            let shape = self.shape(schema)?;
            return Ok(self.push(Step::Full(shape)));
        }
        let step = match schema {
            Schema::Record(record) => Step::Record(
                record
                    .fields
                    .iter()
                    .map(|f| match trie.children.get(&f.name) {
                        Some(child) => {
                            Ok(Field::Keep(f.name.clone(), self.step(&f.schema, child)?))
                        }
                        None => Ok(Field::Skip(self.shape(&f.schema)?)),
                    })
                    .collect::<Result<_, String>>()?,
            ),
            Schema::Union(union) => Step::Union(
                union
                    .variants()
                    .iter()
                    .map(|b| self.step(b, trie))
                    .collect::<Result<_, _>>()?,
            ),
            Schema::Map(map) => {
                let keys = trie
                    .children
                    .iter()
                    .map(|(k, child)| Ok((k.clone(), self.step(&map.types, child)?)))
                    .collect::<Result<_, String>>()?;
                Step::Map(keys, self.shape(&map.types)?)
            }
            // A path through a leaf finds nothing either way; decoding it keeps lookups exact.
            other => Step::Full(self.shape(other)?),
        };
        Ok(self.push(step))
    }

    fn add(&mut self, shape: Shape) -> usize {
        self.shapes.all.push(shape);
        self.shapes.all.len() - 1
    }

    fn shape(&mut self, schema: &'s Schema) -> Result<usize, String> {
        let schema = self.names.deref(schema);
        let shape = match schema {
            Schema::Ref { name } => return Err(format!("unresolved type {}", name.fullname(None))),
            Schema::Record(r) => {
                if let Some(&id) = self.named.get(&r.name) {
                    return Ok(id);
                }
                // Reserve the slot first: fields may refer back to this record.
                let id = self.add(Shape::Null);
                self.named.insert(r.name.clone(), id);
                let fields = r
                    .fields
                    .iter()
                    .map(|f| Ok((f.name.clone(), self.shape(&f.schema)?)))
                    .collect::<Result<_, String>>()?;
                self.shapes.all[id] = Shape::Record(fields);
                return Ok(id);
            }
            Schema::Null => Shape::Null,
            Schema::Boolean => Shape::Boolean,
            Schema::Int => Shape::Int(IntKind::Int),
            Schema::Date => Shape::Int(IntKind::Date),
            Schema::TimeMillis => Shape::Int(IntKind::TimeMillis),
            Schema::Long => Shape::Long(LongKind::Long),
            Schema::TimeMicros => Shape::Long(LongKind::TimeMicros),
            Schema::TimestampMillis => Shape::Long(LongKind::TimestampMillis),
            Schema::TimestampMicros => Shape::Long(LongKind::TimestampMicros),
            Schema::TimestampNanos => Shape::Long(LongKind::TimestampNanos),
            Schema::LocalTimestampMillis => Shape::Long(LongKind::LocalTimestampMillis),
            Schema::LocalTimestampMicros => Shape::Long(LongKind::LocalTimestampMicros),
            Schema::LocalTimestampNanos => Shape::Long(LongKind::LocalTimestampNanos),
            Schema::Float => Shape::Float,
            Schema::Double => Shape::Double,
            Schema::Bytes => Shape::Bytes,
            Schema::String => Shape::String,
            Schema::Fixed(f) => Shape::Fixed(f.size),
            Schema::Enum(e) => Shape::Enum(Arc::from(e.symbols.as_slice())),
            Schema::Uuid => Shape::Uuid,
            Schema::BigDecimal => Shape::BigDecimal,
            Schema::Duration => Shape::Duration,
            Schema::Decimal(d) => match self.names.deref(&d.inner) {
                Schema::Fixed(f) => Shape::Decimal(Some(f.size)),
                Schema::Bytes => Shape::Decimal(None),
                _ => return Err("decimal over neither bytes nor fixed".into()),
            },
            Schema::Array(a) => Shape::Array(self.shape(&a.items)?),
            Schema::Map(m) => Shape::Map(self.shape(&m.types)?),
            Schema::Union(u) => Shape::Union(
                u.variants()
                    .iter()
                    .map(|v| self.shape(v))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(self.add(shape))
    }
}
