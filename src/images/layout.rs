//! Read access to an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`),
//! shared by the directory store and the tar archive route (`archive.rs`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Read access to an OCI image layout: a directory store or a tar archive of one.
pub trait LayoutReader: Send + Sync {
    /// The bytes of the layout's `index.json`.
    fn index_json(&self) -> std::io::Result<Vec<u8>>;
    /// Size of blob `digest` ("sha256:<hex>"); `None` when the layout lacks it.
    fn blob_size(&self, digest: &str) -> std::io::Result<Option<u64>>;
    /// A reader of blob `digest` starting at byte `offset`.
    fn open_blob(
        &self,
        digest: &str,
        offset: u64,
    ) -> std::io::Result<Box<dyn std::io::Read + Send>>;
}

/// The relative path of blob `digest` inside a layout: `blobs/sha256/<hex>`.
/// Rejects anything but `sha256:` followed by 64 lowercase hex digits, so a digest read
/// from a manifest can never name a path outside the layout.
pub fn blob_path(digest: &str) -> std::io::Result<PathBuf> {
    let hex = digest_hex(digest).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{digest}` is not a sha256 digest (sha256:<64 hex digits>)"),
        )
    })?;
    Ok(Path::new("blobs").join("sha256").join(hex))
}

/// The hex part of a well-formed `sha256:<64 lowercase hex>` digest.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// An OCI image layout directory on disk.
#[derive(Debug, Clone)]
pub struct DirLayout {
    root: PathBuf,
}

impl DirLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of blob `digest` in this layout.
    pub fn blob_file(&self, digest: &str) -> std::io::Result<PathBuf> {
        Ok(self.root.join(blob_path(digest)?))
    }
}

impl LayoutReader for DirLayout {
    fn index_json(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.root.join("index.json"))
    }

    fn blob_size(&self, digest: &str) -> std::io::Result<Option<u64>> {
        match std::fs::metadata(self.blob_file(digest)?) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_blob(
        &self,
        digest: &str,
        offset: u64,
    ) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let mut f = File::open(self.blob_file(digest)?)?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))?;
        }
        Ok(Box::new(f) as Box<dyn Read + Send>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_path_rejects_anything_but_sha256_hex() {
        let hex = "a".repeat(64);
        assert_eq!(
            blob_path(&format!("sha256:{hex}")).unwrap(),
            Path::new("blobs/sha256").join(&hex)
        );
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha512:{hex}"),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
        ] {
            assert!(blob_path(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn dir_layout_reads_index_and_blobs_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "b".repeat(64);
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(dir.path().join("blobs/sha256").join(&hex), b"0123456789").unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        let l = DirLayout::new(dir.path());
        assert_eq!(l.index_json().unwrap(), b"{}");
        let d = format!("sha256:{hex}");
        assert_eq!(l.blob_size(&d).unwrap(), Some(10));
        assert_eq!(
            l.blob_size(&format!("sha256:{}", "c".repeat(64))).unwrap(),
            None
        );
        let mut s = String::new();
        l.open_blob(&d, 4).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "456789");
    }
}
