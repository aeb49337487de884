//! Reading and writing key and certificate files: secrets are created with mode 0600,
//! replaced atomically, and errors name the path but never the content.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Mode of files holding private keys.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Mode of files holding public material (certificates, manifests, JWKS).
pub(crate) const PUBLIC_MODE: u32 = 0o644;

pub(crate) fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and parents) if missing; a new directory gets mode 0700.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| io_error("set permissions of", dir, e))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see the old
/// or the new content, never a torn one; the file has `mode` from its creation on.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have removed bits; never add any beyond `mode`.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("write", path, e)
    })
}

/// Writes a private key file (mode 0600).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, PRIVATE_MODE)
}

/// Writes a public file (mode 0644).
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, PUBLIC_MODE)
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_error("read", path, e))
}

/// Reads a private key file, refusing one that group or others may read or write.
pub(crate) fn read_private(path: &Path) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(|e| io_error("inspect", path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        });
    }
    read(path)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_group_readable_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.pem");
        write_private(&path, b"x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private(&path).unwrap(), b"x");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_private(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        write_public(&path, b"y").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}
