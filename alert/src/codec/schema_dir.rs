//! A [`SchemaResolver`] over a local directory of split LSST schemas:
//! `<dir>/<major>/<minor>/*.avsc`, id `major*100 + minor`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use apache_avro::schema::Schema;

use super::confluent::{lsst_schema_id, SchemaResolver};
use crate::schema::combine_split_schemas;
use crate::{Error, Result};

/// Schemas loaded from a directory laid out like `lsst/alert_packet`'s `schema/` folder.
#[derive(Debug, Clone, Default)]
pub struct SchemaDir {
    by_id: BTreeMap<u32, Arc<Schema>>,
}

impl SchemaDir {
    /// Loads every `<major>/<minor>/` folder of `dir` whose `.avsc` files define a record
    /// named `alert`; other entries are skipped.
    pub fn load(dir: &Path) -> Result<Self> {
        let io = |path: &Path, e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut by_id = BTreeMap::new();
        for major in fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let major = major.map_err(|e| io(dir, e))?.path();
            let Some(maj) = number(&major) else { continue };
            for minor in fs::read_dir(&major).map_err(|e| io(&major, e))? {
                let minor = minor.map_err(|e| io(&major, e))?.path();
                let Some(min) = number(&minor).filter(|m| *m < 100) else {
                    continue;
                };
                let mut files = Vec::new();
                for entry in fs::read_dir(&minor).map_err(|e| io(&minor, e))? {
                    let path = entry.map_err(|e| io(&minor, e))?.path();
                    if path.extension().is_some_and(|x| x == "avsc") {
                        files.push(fs::read_to_string(&path).map_err(|e| io(&path, e))?);
                    }
                }
                if files.is_empty() {
                    continue;
                }
                let schema = combine_split_schemas(&files, "alert").map_err(|e| Error::Schema {
                    reason: format!("{}: {e}", minor.display()),
                })?;
                by_id.insert(lsst_schema_id(maj, min), Arc::new(schema));
            }
        }
        Ok(SchemaDir { by_id })
    }

    /// Registers a schema under an id (e.g. one fetched from a schema registry).
    pub fn insert(&mut self, id: u32, schema: Schema) {
        self.by_id.insert(id, Arc::new(schema));
    }

    /// The ids known, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_id.keys().copied()
    }
}

impl SchemaResolver for SchemaDir {
    fn resolve(&self, id: u32) -> Result<Arc<Schema>> {
        self.by_id
            .get(&id)
            .cloned()
            .ok_or(Error::UnknownSchemaId(id))
    }
}

fn number(path: &Path) -> Option<u32> {
    path.is_dir()
        .then(|| path.file_name()?.to_str()?.parse().ok())
        .flatten()
}
