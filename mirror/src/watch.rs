//! Noticing that files changed, by polling: a `failed` mirror waits for its configuration
//! or credential files to change before it tries again.
//!
//! A [`Stamps`] is each file's modification time, length and a hash of its content, so a
//! file rewritten in place, replaced by a rename, deleted or re-created all count, and so
//! does a `touch` (a way to ask for a retry). Polling a handful of small files every few
//! seconds costs nothing, needs no platform notification API, and works on any filesystem.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Files larger than this are hashed on their first bytes only (with their full length):
/// tokens, certificates and configs are a few KB.
const MAX_HASHED: u64 = 1 << 20;

/// What one file looks like now; `None` if it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        let read = || -> std::io::Result<(SystemTime, u64, u64)> {
            let file = std::fs::File::open(path)?;
            let meta = file.metadata()?;
            let mut content = Vec::new();
            file.take(MAX_HASHED).read_to_end(&mut content)?;
            let mut hasher = DefaultHasher::new();
            content.hash(&mut hasher);
            Ok((meta.modified()?, meta.len(), hasher.finish()))
        };
        Stamp(read().ok())
    }
}

/// A set of files and how they looked when last stamped.
#[derive(Debug, Clone)]
pub struct Stamps {
    files: Vec<PathBuf>,
    stamps: Vec<Stamp>,
}

impl Stamps {
    /// Stamps `files` as they are now.
    pub fn new(files: Vec<PathBuf>) -> Stamps {
        let stamps = files.iter().map(|f| Stamp::of(f)).collect();
        Stamps { files, stamps }
    }

    /// Whether any file differs from when it was stamped (without re-stamping).
    pub fn changed(&self) -> bool {
        self.files
            .iter()
            .zip(&self.stamps)
            .any(|(f, s)| Stamp::of(f) != *s)
    }

    /// Whether the set watches no file at all.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_deletions_and_recreations_are_changes() {
        let dir = std::env::temp_dir().join(format!("am-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "one").unwrap();
        let stamps = Stamps::new(vec![token.clone(), dir.join("absent")]);
        assert!(!stamps.changed());
        // Same length, same modification time granularity: the content hash tells.
        std::fs::write(&token, "two").unwrap();
        assert!(stamps.changed());
        let stamps = Stamps::new(vec![token.clone()]);
        std::fs::remove_file(&token).unwrap();
        assert!(stamps.changed());
        let gone = Stamps::new(vec![token.clone()]);
        std::fs::write(&token, "three").unwrap();
        assert!(gone.changed());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Stamps::new(Vec::new()).is_empty());
    }
}
