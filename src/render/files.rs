//! Small filesystem helpers: private directories and atomic writes with a given mode.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::RenderError;

/// Mode of files that carry a secret (keys, passwords, files embedding them).
pub const SECRET_MODE: u32 = 0o600;
/// Mode of everything else.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of the folders holding secrets and artifacts.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700, and tightens an existing `dir`
/// to 0700. Parents that already exist are left alone.
pub fn ensure_private_dir(dir: &Path) -> Result<(), RenderError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|source| io_error("create the folder", dir, source))?;
    set_mode(dir, PRIVATE_DIR_MODE)
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), RenderError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|source| io_error("set the permissions of", path, source))
}

/// Writes `contents` to `path` atomically with `mode` (set before any byte is written),
/// through the same routine as the state file: a reader never sees a half-written file,
/// and a secret is never readable by others.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), RenderError> {
    crate::state::store::write_atomic(path, None, contents, mode)
        .map_err(|source| io_error("write", path, source))
}

/// Reads `path` as UTF-8, `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, RenderError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error("read", path, source)),
    }
}

pub fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> RenderError {
    RenderError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
pub mod test_support {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// The permission bits of `path`.
    pub fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::mode_of;
    use super::*;

    #[test]
    fn write_atomic_sets_mode_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        write_atomic(&path, b"one", PUBLIC_MODE).unwrap();
        assert_eq!(mode_of(&path), 0o644);
        write_atomic(&path, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(mode_of(&path), 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn ensure_private_dir_creates_parents_and_tightens() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("env").join("secrets");
        ensure_private_dir(&nested).unwrap();
        assert_eq!(mode_of(&nested), 0o700);
        set_mode(&nested, 0o755).unwrap();
        ensure_private_dir(&nested).unwrap();
        assert_eq!(mode_of(&nested), 0o700);
    }

    #[test]
    fn read_optional_distinguishes_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&dir.path().join("none")).unwrap(), None);
    }
}
