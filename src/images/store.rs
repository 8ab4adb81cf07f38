//! The local content-addressed store: an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`), mode 0700.
//!
//! Blobs are written to `.partial/<hex>`, resumed from its length after a failure,
//! checked against their sha256, then renamed into place: a blob under `blobs/` is always
//! whole. `index.json` and the lock file (`provision-images.lock`: reference → digest) are
//! written to a temporary file and renamed, so a `kill -9` leaves the previous version.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::layout::{digest_hex, DirLayout, LayoutReader};
use crate::state::lock::Holder;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LOCK_FILE: &str = "provision-images.lock";
const PARTIAL_DIR: &str = ".partial";
/// The advisory lock (one pull, or any number of saves), holding a note of who has it.
const LOCK_NOTE: &str = ".lock";

/// A descriptor as in `index.json` and manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// `index.json` of the layout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LayoutIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl LayoutIndex {
    /// The descriptor tagged `name`.
    pub fn get(&self, name: &str) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(name))
    }

    /// Tags `name` with `desc`, replacing what it named before.
    pub fn set(&mut self, name: &str, mut desc: Descriptor) {
        self.manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        desc.annotations.insert(REF_NAME.into(), name.into());
        self.manifests.push(desc);
        self.manifests.sort_by(|a, b| {
            a.annotations
                .get(REF_NAME)
                .cmp(&b.annotations.get(REF_NAME))
        });
    }
}

/// One entry of the lock file: what the source's tag pointed at when it was pulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// What the source answers for the tag (an index when the image is multi-arch).
    pub source_digest: String,
    /// What the store keeps under the reference (the platform's manifest when filtered).
    pub digest: String,
    /// The platform selection it was pulled with (`all` or `linux/amd64,…`).
    pub platforms: String,
}

pub type Lock = BTreeMap<String, LockEntry>;

/// The store directory.
#[derive(Debug, Clone)]
pub struct Store {
    layout: DirLayout,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

fn bad_digest(digest: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("`{digest}` is not a sha256 digest"),
    )
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(unix)]
fn private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
}

impl Store {
    /// Opens the store at `root`, creating the layout (0700) when it does not exist.
    pub fn open(root: &Path) -> io::Result<Self> {
        private_dir(root)?;
        fs::create_dir_all(root.join("blobs").join("sha256"))?;
        fs::create_dir_all(root.join(PARTIAL_DIR))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !root.join("index.json").exists() {
            let idx = LayoutIndex {
                schema_version: 2,
                media_type: Some("application/vnd.oci.image.index.v1+json".into()),
                manifests: vec![],
            };
            write_atomic(&root.join("index.json"), &serde_json::to_vec_pretty(&idx)?)?;
        }
        Ok(Self {
            layout: DirLayout::new(root),
        })
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn layout(&self) -> &DirLayout {
        &self.layout
    }

    pub fn blob_file(&self, digest: &str) -> io::Result<PathBuf> {
        self.layout.blob_file(digest)
    }

    /// Whether blob `digest` is in the store with `size` bytes (a cheap check for layers;
    /// their bytes are checked against the digest when written, again as they are pushed
    /// or saved — a mismatch removes the file — and manifests whenever they are read).
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        matches!(self.layout.blob_size(digest), Ok(Some(s)) if s == size)
    }

    /// Hashes blob `digest`; a blob that does not match is removed (so the next pull
    /// fetches it again) and `false` returned. `Ok(false)` also when it is absent.
    pub fn verify_blob(&self, digest: &str) -> io::Result<bool> {
        let path = self.blob_file(digest)?;
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut h = Sha256::new();
        io::copy(&mut f, &mut HashWriter(&mut h))?;
        let ok = Some(hex::encode(h.finalize()).as_str()) == digest_hex(digest);
        if !ok {
            fs::remove_file(&path)?;
        }
        Ok(ok)
    }

    /// The whole blob (manifests and configs: small).
    pub fn read_blob(&self, digest: &str) -> io::Result<Vec<u8>> {
        fs::read(self.blob_file(digest)?)
    }

    /// Stores small `bytes` (a manifest) under their digest, which must be `digest`.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.blob_file(digest)?;
        if digest_of(bytes) != digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("content does not match its digest {digest}"),
            ));
        }
        // Small: compared whole, so a damaged copy of the right size is replaced.
        if fs::read(&path).is_ok_and(|have| have == bytes) {
            return Ok(());
        }
        write_atomic(&path, bytes)
    }

    /// Starts or resumes writing blob `digest`: the partial file's bytes so far are hashed
    /// again, and writing continues at its end ([`PartialBlob::offset`]).
    pub fn begin(&self, digest: &str) -> io::Result<PartialBlob> {
        let hex = digest_hex(digest).ok_or_else(|| bad_digest(digest))?;
        let path = self.root().join(PARTIAL_DIR).join(hex);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut hasher = Sha256::new();
        let len = io::copy(&mut file, &mut HashWriter(&mut hasher))?;
        Ok(PartialBlob {
            file,
            hasher,
            len,
            path,
            digest: digest.to_string(),
            dest: self.blob_file(digest)?,
        })
    }

    pub fn load_index(&self) -> io::Result<LayoutIndex> {
        parse_index(&self.layout.index_json()?)
    }

    pub fn save_index(&self, idx: &LayoutIndex) -> io::Result<()> {
        write_atomic(
            &self.root().join("index.json"),
            &serde_json::to_vec_pretty(idx)?,
        )
    }

    pub fn load_lock(&self) -> io::Result<Lock> {
        match fs::read(self.root().join(LOCK_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.root().join(LOCK_FILE).display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Lock::new()),
            Err(e) => Err(e),
        }
    }

    pub fn save_lock(&self, lock: &Lock) -> io::Result<()> {
        write_atomic(
            &self.root().join(LOCK_FILE),
            &serde_json::to_vec_pretty(lock)?,
        )
    }

    /// Takes the store's lock for a run that writes it (a pull): no other run may read or
    /// write the store meanwhile. Refused, naming the holder, when another run has it.
    /// `command` (`images pull`) is what the refusal of another run names.
    pub fn lock_exclusive(&self, command: &str) -> io::Result<StoreLock> {
        self.lock(command, true)
    }

    /// Takes the store's lock for a run that reads the store and must see it whole (a
    /// save): other readers may run alongside, a pull may not.
    pub fn lock_shared(&self, command: &str) -> io::Result<StoreLock> {
        self.lock(command, false)
    }

    fn lock(&self, command: &str, exclusive: bool) -> io::Result<StoreLock> {
        use fs4::fs_std::FileExt;
        let path = self.root().join(LOCK_NOTE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        let taken = if exclusive {
            FileExt::try_lock_exclusive(&file)
        } else {
            FileExt::try_lock_shared(&file)
        };
        match taken {
            Ok(true) => {}
            Ok(false) => return Err(self.in_use(&path)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(self.in_use(&path)),
            Err(e) => return Err(e),
        }
        // Who holds it, for the refusal of another run (readers overwrite each other's
        // note: it names one of them).
        let note = serde_json::to_vec(&Holder::current(command))?;
        file.set_len(0)?;
        file.seek(io::SeekFrom::Start(0))?;
        file.write_all(&note)?;
        Ok(StoreLock { file, exclusive })
    }

    /// The refusal: who holds the lock, when its note says and that process still runs.
    fn in_use(&self, path: &Path) -> io::Error {
        let holder = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
            .filter(|h| !h.is_dead_here());
        let who = match holder {
            Some(h) => format!(
                "held for `provision {}` by {}; wait for it to finish",
                h.command,
                h.describe()
            ),
            None => "held by another provision run; wait for it to finish".to_string(),
        };
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "the image store {} is in use: {who} (lock {})",
                self.root().display(),
                path.display()
            ),
        )
    }
}

/// The store's lock, held until dropped (and released by the OS if the process dies).
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    exclusive: bool,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        use fs4::fs_std::FileExt;
        // The writer's note goes with it; a reader's may name another reader still running.
        if self.exclusive {
            let _ = self.file.set_len(0);
        }
        let _ = FileExt::unlock(&self.file);
    }
}

/// Parses an `index.json`.
pub fn parse_index(bytes: &[u8]) -> io::Result<LayoutIndex> {
    serde_json::from_slice(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("index.json is not an OCI image index: {e}"),
        )
    })
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blob being written: appends to `.partial/<hex>`, then [`PartialBlob::finish`] checks
/// the digest and renames it into `blobs/sha256/`.
pub struct PartialBlob {
    file: File,
    hasher: Sha256,
    len: u64,
    path: PathBuf,
    digest: String,
    dest: PathBuf,
}

impl PartialBlob {
    /// Bytes already written (where a ranged GET resumes).
    pub fn offset(&self) -> u64 {
        self.len
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Starts over from zero (the source ignored the range, or the bytes were wrong).
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Checks the digest and moves the blob into place. On a mismatch the partial file is
    /// removed and an `InvalidData` error returned.
    pub fn finish(self) -> io::Result<()> {
        let got = hex::encode(self.hasher.finalize());
        if Some(got.as_str()) != digest_hex(&self.digest) {
            let _ = fs::remove_file(&self.path);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} arrived with sha256:{got} ({} bytes): corrupt, discarded",
                    self.digest, self.len
                ),
            ));
        }
        self.file.sync_all()?;
        fs::rename(&self.path, &self.dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize) -> (Vec<u8>, String) {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let d = digest_of(&bytes);
        (bytes, d)
    }

    #[test]
    fn open_creates_a_private_oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("images");
        let s = Store::open(&root).unwrap();
        assert!(root.join("oci-layout").is_file());
        assert!(root.join("blobs/sha256").is_dir());
        assert_eq!(s.load_index().unwrap().manifests.len(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
    }

    #[test]
    fn partial_blob_resumes_from_its_length_and_lands_verified() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (bytes, d) = blob(100_000);
        let mut p = s.begin(&d).unwrap();
        assert_eq!(p.offset(), 0);
        p.write(&bytes[..40_000]).unwrap();
        drop(p); // the process dies here
        assert!(!s.has_blob(&d, bytes.len() as u64));
        let mut p = s.begin(&d).unwrap();
        assert_eq!(p.offset(), 40_000);
        p.write(&bytes[40_000..]).unwrap();
        p.finish().unwrap();
        assert!(s.has_blob(&d, bytes.len() as u64));
        assert_eq!(s.read_blob(&d).unwrap(), bytes);
        assert!(!dir.path().join(".partial").join(&d[7..]).exists());
    }

    #[test]
    fn wrong_bytes_never_land_in_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (mut bytes, d) = blob(1000);
        bytes[10] ^= 1;
        let mut p = s.begin(&d).unwrap();
        p.write(&bytes).unwrap();
        let e = p.finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!s.blob_file(&d).unwrap().exists());
        // and the next attempt starts from zero
        assert_eq!(s.begin(&d).unwrap().offset(), 0);
    }

    #[test]
    fn verify_removes_a_corrupt_blob_and_keeps_a_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (bytes, d) = blob(5000);
        s.put_blob(&d, &bytes).unwrap();
        assert!(s.verify_blob(&d).unwrap());
        let mut bad = bytes.clone();
        bad[0] ^= 0xff;
        fs::write(s.blob_file(&d).unwrap(), &bad).unwrap();
        assert!(!s.verify_blob(&d).unwrap());
        assert!(!s.blob_file(&d).unwrap().exists());
        assert!(s.put_blob(&d, &bad).is_err());
    }

    #[test]
    fn saves_share_the_lock_and_a_pull_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = s.lock_shared("images save").unwrap();
        let b = s.lock_shared("images save").unwrap();
        let e = s.lock_exclusive("images pull").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let text = e.to_string();
        assert!(
            text.contains("in use")
                && text.contains("held for `provision images save`")
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop((a, b));
        let w = s.lock_exclusive("images pull").unwrap();
        for e in [
            s.lock_shared("images save").unwrap_err(),
            s.lock_exclusive("images pull").unwrap_err(),
        ] {
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            assert!(
                e.to_string().contains("held for `provision images pull`"),
                "{e}"
            );
        }
        drop(w);
        s.lock_shared("images save").unwrap();
    }

    #[test]
    fn put_blob_replaces_a_damaged_copy_of_the_same_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (bytes, d) = blob(300);
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        fs::write(s.blob_file(&d).unwrap(), &bad).unwrap();
        assert!(
            s.has_blob(&d, bytes.len() as u64),
            "size alone says present"
        );
        s.put_blob(&d, &bytes).unwrap();
        assert_eq!(s.read_blob(&d).unwrap(), bytes);
    }

    #[test]
    fn index_and_lock_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (_, d) = blob(10);
        let mut idx = s.load_index().unwrap();
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: d.clone(),
            size: 10,
            annotations: BTreeMap::new(),
            platform: None,
        };
        idx.set("docker.io/library/a:1", desc.clone());
        idx.set("docker.io/library/a:1", desc.clone());
        idx.set("docker.io/library/b:1", desc);
        s.save_index(&idx).unwrap();
        let back = s.load_index().unwrap();
        assert_eq!(back.manifests.len(), 2);
        assert_eq!(back.get("docker.io/library/a:1").unwrap().digest, d);
        let mut lock = Lock::new();
        lock.insert(
            "docker.io/library/a:1".into(),
            LockEntry {
                source_digest: d.clone(),
                digest: d.clone(),
                platforms: "linux/amd64".into(),
            },
        );
        s.save_lock(&lock).unwrap();
        assert_eq!(s.load_lock().unwrap(), lock);
    }
}
