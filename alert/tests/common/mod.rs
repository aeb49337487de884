//! The real fixture alerts, shared by the integration tests.

use std::path::{Path, PathBuf};

/// `tests/fixtures`.
pub(crate) fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every `.avro` file under the fixtures, sorted; fails if some are missing.
pub(crate) fn avro_files() -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "avro") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir(), &mut out);
    out.sort();
    assert!(out.len() >= 72, "fixtures missing: {}", out.len());
    out
}
