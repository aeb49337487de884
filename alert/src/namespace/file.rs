//! Reading registry TOML (`namespaces.toml` layout) and validating it as a whole.

use serde::Deserialize;

use super::{Family, IdPattern, IdType, Namespace, Registry};
use crate::path::FieldPath;
use crate::{Error, MeshKey, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    namespace: Vec<NamespaceDef>,
    #[serde(default)]
    family: Vec<FamilyDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceDef {
    name: String,
    #[serde(default)]
    description: String,
    id_type: IdType,
    id_pattern: Option<String>,
    #[serde(default)]
    extract: Vec<ExtractDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtractDef {
    family: String,
    paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyDef {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    schemas: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
    ra: Option<String>,
    dec: Option<String>,
}

/// Adds the definitions of `toml` to `registry`, collecting every problem before failing.
pub(super) fn extend(mut registry: Registry, toml: &str) -> Result<Registry> {
    let file: RegistryFile = toml::from_str(toml).map_err(|e| Error::Registry {
        reason: e.message().to_owned()
            + &e.span()
                .map(|s| format!(" (at byte {})", s.start))
                .unwrap_or_default(),
    })?;
    let mut problems = Vec::new();
    let path = |text: &str, what: &str, problems: &mut Vec<String>| match FieldPath::parse(text) {
        Ok(p) => Some(p),
        Err(_) => {
            problems.push(format!(
                "{what}: bad path {text:?}; expected dotted field names like candidate.ra"
            ));
            None
        }
    };
    for def in file.family {
        if registry.family(&def.name).is_some() {
            problems.push(format!("family {}: defined twice", def.name));
            continue;
        }
        if def.schemas.is_empty() && def.fields.is_empty() {
            problems.push(format!(
                "family {}: needs `schemas` or `fields` to be recognised",
                def.name
            ));
        }
        if def.ra.is_some() != def.dec.is_some() {
            problems.push(format!(
                "family {}: give both `ra` and `dec`, or neither",
                def.name
            ));
        }
        let what = format!("family {}", def.name);
        let ra = def.ra.and_then(|p| path(&p, &what, &mut problems));
        let dec = def.dec.and_then(|p| path(&p, &what, &mut problems));
        registry.families.push(Family {
            name: def.name,
            description: def.description,
            schemas: def.schemas,
            fields: def.fields,
            ra,
            dec,
            keys: Vec::new(),
        });
    }
    for def in file.namespace {
        let what = format!("namespace {}", def.name);
        if let Err(e) = MeshKey::new(&def.name, "x") {
            problems.push(format!("{what}: bad name ({e})"));
        }
        if registry.namespace(&def.name).is_some() {
            problems.push(format!("{what}: defined twice"));
            continue;
        }
        let id_pattern = match (&def.id_pattern, def.id_type) {
            (None, _) => None,
            (Some(p), IdType::String) => IdPattern::new(p)
                .map_err(|e| problems.push(format!("{what}: id_pattern: {e}")))
                .ok(),
            (Some(_), _) => {
                problems.push(format!(
                    "{what}: id_pattern is only allowed with id_type = \"string\""
                ));
                None
            }
        };
        for rule in def.extract {
            let paths: Vec<FieldPath> = rule
                .paths
                .iter()
                .filter_map(|p| path(p, &what, &mut problems))
                .collect();
            match registry.families.iter_mut().find(|f| f.name == rule.family) {
                Some(family) => family
                    .keys
                    .extend(paths.into_iter().map(|p| (def.name.clone(), p))),
                None => problems.push(format!(
                    "{what}: extract names unknown family {:?}",
                    rule.family
                )),
            }
        }
        registry.namespaces.push(Namespace {
            name: def.name,
            description: def.description,
            id_type: def.id_type,
            id_pattern,
        });
    }
    if problems.is_empty() {
        Ok(registry)
    } else {
        Err(Error::Registry {
            reason: problems.join("; "),
        })
    }
}
