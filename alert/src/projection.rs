//! Projected decoding: read only the fields a filter and re-keying need.
//!
//! A full ZTF alert is ~60 KB: ~30 previous candidates of ~100 fields each and three
//! cutouts. Filtering and re-keying read a handful of fields. A [`Projection`] names the
//! needed [`FieldPath`]s (the filter's own plus, for each alert family, the registry's key
//! and position paths); [`crate::Decoder::decode_projected`] then decodes those fields
//! and steps over everything else directly on the Avro binary, without allocating:
//! strings and bytes by their length, arrays and maps block by block (whole blocks by byte
//! size when the writer gave one), unions by branch, fixed by size, records field by field.
//!
//! The result is a partial [`Value::Record`](apache_avro::types::Value::Record) holding only
//! the needed fields (maps only the needed keys). For every needed path,
//! [`FieldPath::lookup`] gives the same value as on the fully decoded alert, so
//! [`crate::Subject`] and [`crate::Filter`] work unchanged and give the same verdicts,
//! keys and positions. Other paths look absent (`None`), which the filter treats as null.
//!
//! Plans are compiled once per (writer schema, projection) and cached with the schema, so
//! decoding a record never walks the schema by name.

mod plan;
mod shape;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};

use apache_avro::schema::Schema;

pub(crate) use self::plan::{Plan, Trie};
use crate::{FieldPath, Filter, Registry};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The set of fields to decode; everything else is skipped.
#[derive(Debug, Clone)]
pub struct Projection {
    id: u64,
    paths: Vec<FieldPath>,
    registry: Option<Registry>,
}

impl Projection {
    /// Exactly these paths (no key or position paths are added).
    pub fn new(paths: impl IntoIterator<Item = FieldPath>) -> Projection {
        let mut unique: Vec<FieldPath> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for path in paths {
            if seen.insert(path.clone()) {
                unique.push(path);
            }
        }
        Projection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            paths: unique,
            registry: None,
        }
    }

    /// What `filter` reads plus, for the family of each writer schema in `registry`, its key
    /// and position paths: enough for [`crate::Subject::new`], [`Filter::matches`] and
    /// re-keying with [`Registry::extract_key`].
    pub fn for_filter(filter: &Filter, registry: &Registry) -> Projection {
        let mut projection = Projection::new(filter.fields().into_iter().cloned());
        projection.registry = Some(registry.clone());
        projection
    }

    /// The paths decoded for alerts written with `schema`.
    pub fn paths_for(&self, schema: &Schema) -> Vec<&FieldPath> {
        let mut paths: Vec<&FieldPath> = self.paths.iter().collect();
        let family = self
            .registry
            .as_ref()
            .and_then(|r| r.family_for_schema(schema));
        if let Some(family) = family {
            let position = family
                .position_paths()
                .into_iter()
                .flat_map(|(r, d)| [r, d]);
            for path in family.key_rules().iter().map(|(_, p)| p).chain(position) {
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        paths
    }

    /// Identifies this projection in plan caches (clones share it).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Compiles the plan for `schema`.
    pub(crate) fn compile(&self, schema: &Schema) -> Result<Plan, String> {
        Plan::compile(schema, &Trie::new(self.paths_for(schema)))
    }
}

#[cfg(test)]
mod tests;
