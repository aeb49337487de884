//! A mirror whose source is a peer gateway's database query: `query`, `where`, `cone`,
//! `ids` and `follow` in `[mirrors.source]`.

use alertmesh_alert::filter::{Cone, Predicate};
use alertmesh_alert::naming::check_topic;
use alertmesh_mirror::QuerySource;

use super::reader::Reader;

/// The query keys of `[mirrors.source]` at `sat`: `None` without `query` (the keys that
/// only a query source takes are then errors).
pub(super) fn read(r: &mut Reader, src: &mut toml::Table, sat: &str) -> Option<QuerySource> {
    let name = r
        .string(src, sat, "query", Some(String::new()))
        .filter(|s| !s.is_empty());
    let Some(name) = name else {
        for k in ["cone", "ids", "follow"] {
            if src.remove(k).is_some() {
                r.error(
                    &format!("{sat}.{k}"),
                    "applies to query sources only (set query)",
                );
            }
        }
        return None;
    };
    // The name becomes part of `query:<name>` refs and of the default destination.
    if let Err(e) = check_topic(&name) {
        r.error(&format!("{sat}.query"), &format!("not a query name: {e}"));
    }
    let cone = match src.remove("cone") {
        None => None,
        Some(v) => cone(r, &format!("{sat}.cone"), v),
    };
    let ids = r
        .string_list(src, sat, "ids", Some(Vec::new()))
        .unwrap_or_default();
    for (i, id) in ids.iter().enumerate() {
        if !matches!(id.split_once(':'), Some((ns, key)) if !ns.is_empty() && !key.is_empty()) {
            r.error(
                &format!("{sat}.ids[{i}]"),
                &format!("{id:?} is not a mesh key such as \"ZTF:ZTF20aabaesm\""),
            );
        }
    }
    let follow = r.bool(src, sat, "follow", false);
    Some(QuerySource {
        name,
        cone,
        ids,
        follow,
    })
}

/// `where` of a query source, checked by the filter parser (the source gateway checks the
/// columns); an error on a topic source, which uses `filter`.
pub(super) fn read_where(
    r: &mut Reader,
    src: &mut toml::Table,
    sat: &str,
    is_query: bool,
) -> Option<String> {
    let text = r
        .string(src, sat, "where", Some(String::new()))
        .filter(|s| !s.trim().is_empty())?;
    if !is_query {
        r.error(
            &format!("{sat}.where"),
            "applies to query sources only; a topic source uses filter",
        );
        return None;
    }
    if let Err(e) = Predicate::parse(&text) {
        r.error(&format!("{sat}.where"), &e.to_string());
    }
    Some(text.trim().to_owned())
}

/// `[ra, dec, radius]` in degrees.
fn cone(r: &mut Reader, at: &str, v: toml::Value) -> Option<[f64; 3]> {
    let numbers: Option<Vec<f64>> = match &v {
        toml::Value::Array(items) => items
            .iter()
            .map(|x| match x {
                toml::Value::Float(f) => Some(*f),
                toml::Value::Integer(i) => Some(*i as f64),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    let Some([ra, dec, radius]) = numbers.and_then(|n| <[f64; 3]>::try_from(n).ok()) else {
        r.error(at, "must be [ra, dec, radius] in degrees");
        return None;
    };
    match Cone::new(ra, dec, radius) {
        Ok(_) => Some([ra, dec, radius]),
        Err(e) => {
            r.error(at, &e.to_string());
            None
        }
    }
}
