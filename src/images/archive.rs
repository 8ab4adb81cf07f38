//! The archive route: the store written as one tar of its OCI image layout
//! (`images save --archive FILE [--split SIZE]`) and read back by seeking inside that tar
//! (`images push --archive FILE`), never extracting it to disk.
//!
//! # Format
//! A POSIX ustar stream of the layout as stored: `oci-layout`, `index.json`, `blobs/`,
//! `blobs/sha256/`, then every blob `blobs/sha256/<hex>` (sorted), layers byte for byte as
//! they are in the store (no recompression: they are gzip already). Entries larger than
//! ustar's 8 GiB size field get a pax `size` record (and the GNU base-256 size field), as
//! Go's `archive/tar` (skopeo's `oci-archive:`) and GNU tar read them. Times are 0 and
//! owners root, so the same store always gives the same bytes.
//!
//! With `--split SIZE` the same byte stream is cut into volumes `FILE.000`, `FILE.001`, …
//! of at most SIZE bytes each (a header or a blob may span two volumes:
//! `cat FILE.0* > FILE` gives the single archive), and `FILE.sha256` lists each volume's
//! SHA-256 in `sha256sum` format (`sha256sum -c FILE.sha256` checks them in place).
//!
//! # Writing
//! Streamed: every blob is read from the store in 1 MiB pieces, written and hashed on the
//! way (a blob whose content does not match its name stops the save, naming it), never held
//! in memory. Every file is written under a `.partial` name, synced and renamed into
//! place, so a name in the directory is always complete; the `.sha256` list is written
//! last. A save is resumable: the archive is planned before a byte is written (every
//! entry's offset follows from the sizes), and `FILE.save-state` records the plan's digest,
//! each finished volume's SHA-256 and, every 64 MiB, how far the `.partial` file being
//! written is synced to disk. A re-run with the same store (after Ctrl-C, a crash or
//! `kill -9`) keeps the finished volumes, cuts the partial file back to its last checkpoint
//! and goes on from there; a changed store starts over.
//!
//! # Reading
//! [`ArchiveReader::open`] takes the single tar, the base name of a split set, its first
//! volume or its `.sha256` list; verifies every volume against the list when there is one;
//! then scans the tar headers once (seeking over the data) into a map name → (offset,
//! size). [`LayoutReader::open_blob`] then seeks to the blob inside the tar through a reader
//! that chains the volumes, so a blob spanning two volumes reads as one.
//!
//! # Why not the `tar` crate
//! The layout needs only directories and regular files with names under 100 bytes, so the
//! header code is small (one encoder, one parser, both below, with the pax size record).
//! Writing it here gives what the crate does not: the whole archive planned up front with
//! every offset known (what makes volume boundaries and resuming a split save positional),
//! a header scan over a seekable chain of volumes with each entry's data offset, and
//! errors naming the volume where a header is damaged or the archive ends. It also keeps a
//! dependency (and its `filetime`/`xattr` extraction code we would never call) out of the
//! build.

use super::layout::{digest_hex, LayoutReader};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const BLOCK: u64 = 512;
/// Volume names have three digits: `FILE.000` … `FILE.999`.
const MAX_VOLUMES: u64 = 1000;
const COPY_BUFFER: usize = 1 << 20;
/// Largest size ustar's 11 octal digits hold; larger entries get a pax `size` record.
const USTAR_MAX_SIZE: u64 = 0o77777777777;
const SAVE_STATE_VERSION: u32 = 1;
/// Bytes between two checkpoints of a save (the partial file synced, the offset recorded):
/// what an interrupted save may have to write again.
const CHECKPOINT_BYTES: u64 = if cfg!(test) { 256 * 1024 } else { 64 << 20 };

/// What went wrong while saving or opening an archive; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid size `{value}`: {reason} (examples: 4G, 500M, 700MiB, 2GB)")]
    BadSize { value: String, reason: String },
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    NotALayout { path: PathBuf, reason: String },
    #[error("blob {digest} in the store {} is corrupt: {reason}; {}", store.display(), corrupt_advice(.removed))]
    CorruptBlob {
        store: PathBuf,
        digest: String,
        reason: String,
        /// The bad file is gone from the store (so the next pull fetches it again).
        removed: bool,
    },
    #[error("--split {split} would make {volumes} volumes, more than the {MAX_VOLUMES} that names FILE.000 … FILE.999 allow; choose a size of at least {minimum} bytes")]
    TooManyVolumes {
        split: u64,
        volumes: u64,
        minimum: u64,
    },
    #[error("volume {} {reason}", volume.display())]
    BadVolume { volume: PathBuf, reason: String },
    #[error("archive {} is damaged: {reason}", archive.display())]
    Damaged { archive: PathBuf, reason: String },
    #[error("no archive at {} (nor a split set {}.000, …)", path.display(), path.display())]
    Missing { path: PathBuf },
    #[error("saving {} was stopped; the volumes finished so far are kept and a re-run resumes after them", archive.display())]
    Cancelled { archive: PathBuf },
}

/// What to do about a corrupt blob the save found in the store.
fn corrupt_advice(removed: &bool) -> &'static str {
    if *removed {
        "it was removed from the store: run `provision images pull` again (with the same list) \
         to fetch it anew, then `provision images save` again"
    } else {
        "delete that file (`blobs/sha256/<hex>` in the store), run `provision images pull` \
         again (with the same list) to fetch it anew, then `provision images save` again"
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io {
        action,
        path,
        source,
    }
}

/// Parses a volume size: a whole number of bytes with an optional unit, as GNU `split -b`
/// reads them: `K`, `M`, `G`, `T` and `KiB` … `TiB` are powers of 1024, `KB` … `TB`
/// powers of 1000, `B` or nothing bytes (units in any case).
pub fn parse_size(text: &str) -> Result<u64, ArchiveError> {
    let bad = |reason: &str| ArchiveError::BadSize {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let number: u64 = number.parse().map_err(|_| bad("the number is too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(bad(&format!(
                "unknown unit `{}` (use K, M, G, T, KiB … TiB or KB … TB)",
                unit.trim()
            )))
        }
    };
    let size = number
        .checked_mul(multiplier)
        .ok_or_else(|| bad("the size is too large"))?;
    if size == 0 {
        return Err(bad("a volume must hold at least one byte"));
    }
    Ok(size)
}

// ---------------------------------------------------------------------------------------
// tar headers

fn put_octal(field: &mut [u8], value: u64) -> bool {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    if text.len() > width {
        return false;
    }
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
    true
}

fn checksum(header: &[u8; 512]) -> u64 {
    header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum()
}

/// One ustar header block. `name` must fit in 100 bytes (the caller adds a pax `path`
/// record otherwise); sizes past ustar's octal field use GNU base-256.
fn ustar_block(name: &str, size: u64, kind: u8, mode: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let name = name.as_bytes();
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    put_octal(&mut h[100..108], mode);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    if !put_octal(&mut h[124..136], size) {
        h[124..136].fill(0);
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    put_octal(&mut h[136..148], 0);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    put_octal(&mut h[329..337], 0);
    put_octal(&mut h[337..345], 0);
    let sum = checksum(&h);
    h[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    h[154] = 0;
    h[155] = b' ';
    h
}

/// A pax extended-header record `"<len> key=value\n"`, `len` counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let base = key.len() + value.len() + 3;
    let mut len = base + base.to_string().len();
    if len.to_string().len() != base.to_string().len() {
        len = base + len.to_string().len();
    }
    format!("{len} {key}={value}\n")
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// The header bytes of one entry: a pax header when the name or the size does not fit
/// ustar, then the ustar block.
fn entry_header(name: &str, size: u64, kind: u8, mode: u64) -> Vec<u8> {
    let mut records = String::new();
    if name.len() > 100 {
        records.push_str(&pax_record("path", name));
    }
    if size > USTAR_MAX_SIZE {
        records.push_str(&pax_record("size", &size.to_string()));
    }
    let mut out = Vec::with_capacity(512 * 3);
    if !records.is_empty() {
        let short: String = name
            .chars()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let pax_name = format!("PaxHeaders/{short}");
        out.extend_from_slice(&ustar_block(&pax_name, records.len() as u64, b'x', 0o644));
        out.extend_from_slice(records.as_bytes());
        out.resize(out.len() + padding(records.len() as u64) as usize, 0);
    }
    out.extend_from_slice(&ustar_block(name, size, kind, mode));
    out
}

/// A numeric header field: octal text, or GNU base-256 when the high bit is set.
fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn field_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The pax records of an extended header that matter here.
fn parse_pax(data: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= space || len > rest.len() {
            break;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            out.insert(
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            );
        }
        rest = &rest[len..];
    }
    out
}

// ---------------------------------------------------------------------------------------
// the plan of an archive

enum Segment {
    Bytes(Vec<u8>),
    Blob {
        path: PathBuf,
        digest_hex: String,
        size: u64,
    },
    Zeros(u64),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::Blob { size, .. } => *size,
            Segment::Zeros(n) => *n,
        }
    }
}

struct Plan {
    segments: Vec<Segment>,
    total: u64,
    blobs: usize,
    /// SHA-256 of every entry's name, size and (for the small files) content: two saves
    /// of the same store have the same plan, and so the same bytes.
    digest: String,
}

fn plan_layout(store: &Path) -> Result<Plan, ArchiveError> {
    let not_layout = |reason: String| ArchiveError::NotALayout {
        path: store.to_path_buf(),
        reason,
    };
    let read_small = |name: &str| -> Result<Vec<u8>, ArchiveError> {
        let path = store.join(name);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => not_layout(format!("it has no `{name}`")),
            _ => ArchiveError::Io {
                action: "read",
                path,
                source: e,
            },
        })
    };
    let oci_layout = read_small("oci-layout")?;
    let index = read_small("index.json")?;
    let blobs_dir = store.join("blobs").join("sha256");
    let mut blobs = Vec::new();
    match fs::read_dir(&blobs_dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_err("list", &blobs_dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                // Only finished blobs: partial downloads and temp files have other names.
                if digest_hex(&format!("sha256:{name}")).is_none() {
                    continue;
                }
                let meta = entry.metadata().map_err(io_err("read", &entry.path()))?;
                if meta.is_file() {
                    blobs.push((name.to_string(), meta.len()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("list", &blobs_dir)(e)),
    }
    blobs.sort();

    let mut hasher = Sha256::new();
    let mut segments = Vec::new();
    let mut file = |segments: &mut Vec<Segment>, name: &str, data: Vec<u8>| {
        hasher.update(format!(
            "{name}\t{}\t{}\n",
            data.len(),
            hex::encode(Sha256::digest(&data))
        ));
        segments.push(Segment::Bytes(entry_header(
            name,
            data.len() as u64,
            b'0',
            0o644,
        )));
        let pad = padding(data.len() as u64);
        segments.push(Segment::Bytes(data));
        segments.push(Segment::Zeros(pad));
    };
    file(&mut segments, "oci-layout", oci_layout);
    file(&mut segments, "index.json", index);
    for dir in ["blobs/", "blobs/sha256/"] {
        segments.push(Segment::Bytes(entry_header(dir, 0, b'5', 0o755)));
    }
    for (hex, size) in &blobs {
        let name = format!("blobs/sha256/{hex}");
        hasher.update(format!("{name}\t{size}\n"));
        segments.push(Segment::Bytes(entry_header(&name, *size, b'0', 0o644)));
        segments.push(Segment::Blob {
            path: blobs_dir.join(hex),
            digest_hex: hex.clone(),
            size: *size,
        });
        segments.push(Segment::Zeros(padding(*size)));
    }
    segments.push(Segment::Zeros(2 * BLOCK));
    let total = segments.iter().map(Segment::len).sum();
    Ok(Plan {
        segments,
        total,
        blobs: blobs.len(),
        digest: hex::encode(hasher.finalize()),
    })
}

// ---------------------------------------------------------------------------------------
// writing

/// What a save wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveSummary {
    /// The files holding the archive: the single tar, or the volumes in order.
    pub volumes: Vec<PathBuf>,
    /// The `.sha256` list of a split set.
    pub checksums: Option<PathBuf>,
    /// Size of the whole tar stream.
    pub bytes: u64,
    pub blobs: usize,
    /// Volumes kept from an interrupted save of the same store.
    pub resumed_volumes: usize,
    /// Bytes of the tar stream an interrupted save of the same store had written (in the
    /// kept volumes and the partial file it was writing), not written again.
    pub resumed_bytes: u64,
}

/// Where a save is, for a progress view: bytes of the tar stream written of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveProgress {
    pub written: u64,
    pub total: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SaveState {
    version: u32,
    plan: String,
    /// 0 for a single archive.
    volume_size: u64,
    done: Vec<DoneVolume>,
    /// Stream offset up to which the `.partial` file being written is synced to disk.
    #[serde(default)]
    checkpoint: u64,
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct DoneVolume {
    name: String,
    size: u64,
    sha256: String,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn volume_path(base: &Path, index: u64) -> PathBuf {
    with_suffix(base, &format!(".{index:03}"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the renames durable; not every filesystem allows it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `data` to `path` through a `.partial` file, synced, then renamed.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ArchiveError> {
    let temp = with_suffix(path, ".partial");
    let mut f = File::create(&temp).map_err(io_err("create", &temp))?;
    f.write_all(data).map_err(io_err("write", &temp))?;
    f.sync_all().map_err(io_err("write", &temp))?;
    fs::rename(&temp, path).map_err(io_err("rename into place", path))
}

/// The files of the archive being written: one, or volumes of `capacity` bytes.
struct VolumeSink<'a> {
    base: &'a Path,
    split: Option<u64>,
    index: u64,
    current: Option<(File, PathBuf)>,
    in_volume: u64,
    hasher: Sha256,
    state: SaveState,
    state_path: PathBuf,
    since_checkpoint: u64,
}

impl VolumeSink<'_> {
    fn capacity(&self) -> u64 {
        self.split.unwrap_or(u64::MAX)
    }

    fn final_path(&self) -> PathBuf {
        match self.split {
            Some(_) => volume_path(self.base, self.index),
            None => self.base.to_path_buf(),
        }
    }

    /// Stream offset of the first byte of the current volume.
    fn volume_start(&self) -> u64 {
        self.split.map_or(0, |s| s * self.index)
    }

    /// Continues the current volume's `.partial` file from its first `keep` bytes (synced
    /// at the last checkpoint of an interrupted save): cut there, and hashed again for the
    /// volume's SHA-256.
    fn resume_partial(&mut self, keep: u64) -> Result<(), ArchiveError> {
        let temp = with_suffix(&self.final_path(), ".partial");
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&temp)
            .map_err(io_err("open", &temp))?;
        f.set_len(keep).map_err(io_err("write", &temp))?;
        self.hasher = Sha256::new();
        if self.split.is_some() {
            let mut buffer = vec![0u8; COPY_BUFFER];
            let mut left = keep;
            while left > 0 {
                let want = left.min(COPY_BUFFER as u64) as usize;
                f.read_exact(&mut buffer[..want])
                    .map_err(io_err("read", &temp))?;
                self.hasher.update(&buffer[..want]);
                left -= want as u64;
            }
        }
        f.seek(SeekFrom::Start(keep))
            .map_err(io_err("write", &temp))?;
        self.current = Some((f, temp));
        self.in_volume = keep;
        self.state.checkpoint = self.volume_start() + keep;
        Ok(())
    }

    /// Syncs the partial file and records how far it is good.
    fn checkpoint(&mut self) -> Result<(), ArchiveError> {
        if let Some((f, temp)) = &self.current {
            f.sync_data().map_err(io_err("write", temp))?;
            self.state.checkpoint = self.volume_start() + self.in_volume;
            let json = serde_json::to_vec_pretty(&self.state).expect("plain data serializes");
            write_atomic(&self.state_path, &json)?;
        }
        self.since_checkpoint = 0;
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), ArchiveError> {
        while !data.is_empty() {
            if self.current.is_none() {
                let temp = with_suffix(&self.final_path(), ".partial");
                let f = File::create(&temp).map_err(io_err("create", &temp))?;
                self.current = Some((f, temp));
                self.in_volume = 0;
                self.hasher = Sha256::new();
            }
            let room = self.capacity() - self.in_volume;
            let n = (data.len() as u64).min(room) as usize;
            let (f, temp) = self.current.as_mut().expect("opened above");
            f.write_all(&data[..n]).map_err(io_err("write", temp))?;
            if self.split.is_some() {
                self.hasher.update(&data[..n]);
            }
            self.in_volume += n as u64;
            self.since_checkpoint += n as u64;
            data = &data[n..];
            if self.in_volume == self.capacity() {
                self.finish_volume()?;
            } else if self.since_checkpoint >= CHECKPOINT_BYTES {
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    fn finish_volume(&mut self) -> Result<(), ArchiveError> {
        let Some((f, temp)) = self.current.take() else {
            return Ok(());
        };
        f.sync_all().map_err(io_err("write", &temp))?;
        drop(f);
        let path = self.final_path();
        fs::rename(&temp, &path).map_err(io_err("rename into place", &path))?;
        if self.split.is_some() {
            let hasher = std::mem::take(&mut self.hasher);
            self.state.done.push(DoneVolume {
                name: file_name(&path),
                size: self.in_volume,
                sha256: hex::encode(hasher.finalize()),
            });
            self.state.checkpoint = self.volume_start() + self.in_volume;
            let json = serde_json::to_vec_pretty(&self.state).expect("plain data serializes");
            write_atomic(&self.state_path, &json)?;
        }
        self.index += 1;
        self.since_checkpoint = 0;
        Ok(())
    }
}

/// Writes the OCI image layout in `store_dir` as one tar at `archive`, or with `split` as
/// volumes `archive.000`, `archive.001`, … of at most that many bytes plus
/// `archive.sha256`. See the module documentation for the format.
pub fn save(
    store_dir: &Path,
    archive: &Path,
    split: Option<u64>,
) -> Result<SaveSummary, ArchiveError> {
    save_with_progress(store_dir, archive, split, &mut |_| true)
}

/// [`save`], calling `progress` after every piece written; when it returns `false` the
/// save stops with [`ArchiveError::Cancelled`], keeping what it wrote: the next save of
/// the same store resumes at its last checkpoint (as after a crash or `kill -9`).
pub fn save_with_progress(
    store_dir: &Path,
    archive: &Path,
    split: Option<u64>,
    progress: &mut dyn FnMut(SaveProgress) -> bool,
) -> Result<SaveSummary, ArchiveError> {
    let plan = plan_layout(store_dir)?;
    if let Some(size) = split {
        if size == 0 {
            return Err(ArchiveError::BadSize {
                value: "0".into(),
                reason: "a volume must hold at least one byte".into(),
            });
        }
        let volumes = plan.total.div_ceil(size);
        if volumes > MAX_VOLUMES {
            return Err(ArchiveError::TooManyVolumes {
                split: size,
                volumes,
                minimum: plan.total.div_ceil(MAX_VOLUMES),
            });
        }
    }
    if let Some(parent) = archive.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err("create the directory", parent))?;
    }
    let state_path = with_suffix(archive, ".save-state");
    let checksums = with_suffix(archive, ".sha256");

    // An interrupted save of the same plan is resumed: the volumes it finished are kept,
    // and the partial file it was writing from its last checkpoint on.
    let mut state = SaveState {
        version: SAVE_STATE_VERSION,
        plan: plan.digest.clone(),
        volume_size: split.unwrap_or(0),
        done: Vec::new(),
        checkpoint: 0,
    };
    let mut partial_keep = 0;
    if let Some(previous) = fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<SaveState>(&b).ok())
        .filter(|p| {
            p.version == SAVE_STATE_VERSION
                && p.plan == plan.digest
                && p.volume_size == split.unwrap_or(0)
        })
    {
        for (i, v) in previous.done.iter().enumerate() {
            let path = volume_path(archive, i as u64);
            let intact =
                v.name == file_name(&path) && fs::metadata(&path).is_ok_and(|m| m.len() == v.size);
            if !intact {
                break;
            }
            state.done.push(v.clone());
        }
        let kept = state.done.len() as u64;
        let volume_start = split.map_or(0, |s| s * kept);
        let partial = match split {
            Some(_) => with_suffix(&volume_path(archive, kept), ".partial"),
            None => with_suffix(archive, ".partial"),
        };
        if kept == previous.done.len() as u64 && previous.checkpoint > volume_start {
            let keep = previous.checkpoint - volume_start;
            if fs::metadata(&partial).is_ok_and(|m| m.len() >= keep) {
                partial_keep = keep;
            }
        }
    }
    let resumed = state.done.len();
    if resumed == 0 && partial_keep == 0 {
        // A fresh set: the old list and state describe other bytes.
        for stale in [&checksums, &state_path] {
            match fs::remove_file(stale) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove", stale)(e))
                }
                _ => {}
            }
        }
    }
    let start = split.map_or(0, |s| s * resumed as u64) + partial_keep;

    let mut sink = VolumeSink {
        base: archive,
        split,
        index: resumed as u64,
        current: None,
        in_volume: 0,
        hasher: Sha256::new(),
        state,
        state_path: state_path.clone(),
        since_checkpoint: 0,
    };
    if partial_keep > 0 {
        sink.resume_partial(partial_keep)?;
    }
    let result = write_stream(store_dir, archive, &plan, start, &mut sink, progress);
    if let Err(e) = result {
        if matches!(e, ArchiveError::CorruptBlob { .. }) {
            // What was written may hold part of the corrupt blob: never resume from it.
            if let Some((_, temp)) = sink.current.take() {
                let _ = fs::remove_file(temp);
            }
            let _ = fs::remove_file(&state_path);
        } else {
            // Kept for the next run, which resumes at the last checkpoint.
            let _ = sink.checkpoint();
        }
        return Err(e);
    }
    sink.finish_volume()?;

    let dir = archive
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let summary = match split {
        None => {
            let _ = fs::remove_file(&state_path);
            SaveSummary {
                volumes: vec![archive.to_path_buf()],
                checksums: None,
                bytes: plan.total,
                blobs: plan.blobs,
                resumed_volumes: 0,
                resumed_bytes: start.min(plan.total),
            }
        }
        Some(_) => {
            let list: String = sink
                .state
                .done
                .iter()
                .map(|v| format!("{}  {}\n", v.sha256, v.name))
                .collect();
            write_atomic(&checksums, list.as_bytes())?;
            let count = sink.state.done.len() as u64;
            // Volumes left by an older, longer set of the same name.
            let mut extra = count;
            while fs::remove_file(volume_path(archive, extra)).is_ok() {
                extra += 1;
            }
            let _ = fs::remove_file(&state_path);
            SaveSummary {
                volumes: (0..count).map(|i| volume_path(archive, i)).collect(),
                checksums: Some(checksums),
                bytes: plan.total,
                blobs: plan.blobs,
                resumed_volumes: resumed,
                resumed_bytes: start.min(plan.total),
            }
        }
    };
    sync_dir(dir);
    Ok(summary)
}

/// Writes the plan's bytes from stream offset `start` on into `sink`.
fn write_stream(
    store: &Path,
    archive: &Path,
    plan: &Plan,
    start: u64,
    sink: &mut VolumeSink,
    progress: &mut dyn FnMut(SaveProgress) -> bool,
) -> Result<(), ArchiveError> {
    let mut offset = 0u64;
    let mut written = start;
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut report = |written: u64| -> Result<(), ArchiveError> {
        if progress(SaveProgress {
            written,
            total: plan.total,
        }) {
            Ok(())
        } else {
            Err(ArchiveError::Cancelled {
                archive: archive.to_path_buf(),
            })
        }
    };
    for segment in &plan.segments {
        let len = segment.len();
        let seg_start = offset;
        offset += len;
        if offset <= start {
            continue;
        }
        // Bytes of this segment already in finished volumes.
        let skip = start.saturating_sub(seg_start);
        match segment {
            Segment::Bytes(b) => sink.write(&b[skip as usize..])?,
            Segment::Zeros(n) => {
                let mut left = n - skip;
                while left > 0 {
                    let k = left.min(COPY_BUFFER as u64) as usize;
                    buffer[..k].fill(0);
                    sink.write(&buffer[..k])?;
                    left -= k as u64;
                }
            }
            Segment::Blob {
                path,
                digest_hex,
                size,
            } => {
                // A pull takes a blob of the right size as present: remove the bad one so
                // the next pull fetches it again.
                let corrupt = |reason: String| ArchiveError::CorruptBlob {
                    store: store.to_path_buf(),
                    digest: format!("sha256:{digest_hex}"),
                    reason,
                    removed: fs::remove_file(path).is_ok(),
                };
                let mut f = File::open(path).map_err(io_err("read", path))?;
                let mut hasher = Sha256::new();
                let mut read = 0u64;
                while read < *size {
                    let want = (*size - read).min(COPY_BUFFER as u64) as usize;
                    let n = f.read(&mut buffer[..want]).map_err(io_err("read", path))?;
                    if n == 0 {
                        return Err(corrupt(format!(
                            "it ends after {read} of its {size} bytes (did it change during the save?)"
                        )));
                    }
                    hasher.update(&buffer[..n]);
                    // The part before `skip` is only hashed: it is in a finished volume.
                    let from = skip.saturating_sub(read).min(n as u64) as usize;
                    sink.write(&buffer[from..n])?;
                    read += n as u64;
                    written += (n - from) as u64;
                    report(written)?;
                }
                let actual = hex::encode(hasher.finalize());
                if &actual != digest_hex {
                    return Err(corrupt(format!("its content hashes to sha256:{actual}")));
                }
                continue;
            }
        }
        written += len - skip;
        report(written)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// reading

#[derive(Debug)]
struct Volume {
    path: PathBuf,
    /// Offset of its first byte in the tar stream.
    start: u64,
    len: u64,
}

/// A reader of bytes `[pos, end)` of the tar stream across its volumes.
struct Chain {
    volumes: Arc<[Volume]>,
    pos: u64,
    end: u64,
    open: Option<(usize, File)>,
}

impl Chain {
    fn new(volumes: Arc<[Volume]>, pos: u64, end: u64) -> Self {
        Self {
            volumes,
            pos,
            end,
            open: None,
        }
    }

    fn volume_at(&self, pos: u64) -> Option<usize> {
        let i = self.volumes.partition_point(|v| v.start + v.len <= pos);
        (i < self.volumes.len()).then_some(i)
    }
}

impl Read for Chain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let Some(i) = self.volume_at(self.pos) else {
            return Ok(0);
        };
        let volume = &self.volumes[i];
        if self.open.as_ref().is_none_or(|(j, _)| *j != i) {
            let mut f = File::open(&volume.path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open {}: {e}", volume.path.display()),
                )
            })?;
            f.seek(SeekFrom::Start(self.pos - volume.start))?;
            self.open = Some((i, f));
        }
        let (_, f) = self.open.as_mut().expect("opened above");
        let limit = (volume.start + volume.len).min(self.end) - self.pos;
        let want = (buf.len() as u64).min(limit) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "volume {} ends before its {} bytes (was it changed after the archive was opened?)",
                    volume.path.display(),
                    volume.len
                ),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A tar archive of an OCI image layout (single or split), read in place.
#[derive(Debug)]
pub struct ArchiveReader {
    path: PathBuf,
    volumes: Arc<[Volume]>,
    /// Entry name → (offset of its data in the tar stream, size).
    entries: HashMap<String, (u64, u64)>,
}

impl ArchiveReader {
    /// Opens the archive at `path`: a single tar, the base name of a split set, its first
    /// volume (`FILE.000`) or its list (`FILE.sha256`). Volumes are checked against the
    /// list when there is one; the headers are scanned once.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let (base, split) = Self::locate(path)?;
        let checksums = with_suffix(&base, ".sha256");
        let listed = match fs::read_to_string(&checksums) {
            Ok(text) => Some(parse_checksums(&checksums, &text)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", &checksums)(e)),
        };
        let dir = base
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let files: Vec<(PathBuf, Option<String>)> = match (&listed, split) {
            (Some(list), _) => list
                .iter()
                .map(|(sum, name)| (dir.join(name), Some(sum.clone())))
                .collect(),
            (None, true) => (0..MAX_VOLUMES)
                .map(|i| volume_path(&base, i))
                .take_while(|p| p.is_file())
                .map(|p| (p, None))
                .collect(),
            (None, false) => vec![(base.clone(), None)],
        };
        let mut volumes = Vec::with_capacity(files.len());
        let mut start = 0;
        for (file, _) in &files {
            let len = match fs::metadata(file) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ArchiveError::BadVolume {
                        volume: file.clone(),
                        reason: format!("is missing (listed in {})", checksums.display()),
                    })
                }
                Err(e) => return Err(io_err("read", file)(e)),
            };
            volumes.push(Volume {
                path: file.clone(),
                start,
                len,
            });
            start += len;
        }
        verify_volumes(&files, &checksums)?;
        let volumes: Arc<[Volume]> = volumes.into();
        let entries = scan(&base, &volumes)?;
        for required in ["oci-layout", "index.json"] {
            if !entries.contains_key(required) {
                return Err(ArchiveError::NotALayout {
                    path: base,
                    reason: format!("the archive has no `{required}`"),
                });
            }
        }
        Ok(Self {
            path: base,
            volumes,
            entries,
        })
    }

    /// The base path of the archive and whether it is a split set.
    fn locate(path: &Path) -> Result<(PathBuf, bool), ArchiveError> {
        let name = file_name(path);
        if let Some(stem) = name.strip_suffix(".sha256") {
            return Ok((path.with_file_name(stem), true));
        }
        if let Some((stem, number)) = name.rsplit_once('.') {
            if number.len() == 3 && number.bytes().all(|b| b.is_ascii_digit()) {
                let base = path.with_file_name(stem);
                if volume_path(&base, 0).is_file() {
                    return Ok((base, true));
                }
            }
        }
        if path.is_file() {
            return Ok((path.to_path_buf(), false));
        }
        if volume_path(path, 0).is_file() || with_suffix(path, ".sha256").is_file() {
            return Ok((path.to_path_buf(), true));
        }
        Err(ArchiveError::Missing {
            path: path.to_path_buf(),
        })
    }

    /// The archive's base path (the single tar, or the name its volumes extend).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files holding the archive, in order.
    pub fn volumes(&self) -> Vec<PathBuf> {
        self.volumes.iter().map(|v| v.path.clone()).collect()
    }

    /// Every blob digest in the archive, sorted.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .keys()
            .filter_map(|name| name.strip_prefix("blobs/sha256/"))
            .filter(|hex| digest_hex(&format!("sha256:{hex}")).is_some())
            .map(|hex| format!("sha256:{hex}"))
            .collect();
        out.sort();
        out
    }

    fn entry(&self, name: &str) -> Option<(u64, u64)> {
        self.entries.get(name).copied()
    }
}

fn parse_checksums(list: &Path, text: &str) -> Result<Vec<(String, String)>, ArchiveError> {
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(sum, name)| {
            let name = name.strip_prefix(' ').or_else(|| name.strip_prefix('*'))?;
            (sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) && !name.contains('/'))
                .then(|| (sum.to_ascii_lowercase(), name.to_string()))
        });
        match parsed {
            Some(entry) => out.push(entry),
            None => {
                return Err(ArchiveError::BadVolume {
                    volume: list.to_path_buf(),
                    reason: format!(
                        "line {} is not `<sha256>  <volume name>`: {line:?}",
                        number + 1
                    ),
                })
            }
        }
    }
    if out.is_empty() {
        return Err(ArchiveError::BadVolume {
            volume: list.to_path_buf(),
            reason: "lists no volume".into(),
        });
    }
    Ok(out)
}

/// Hashes every listed volume (several at once) and names the first that does not match.
fn verify_volumes(files: &[(PathBuf, Option<String>)], list: &Path) -> Result<(), ArchiveError> {
    let to_check: Vec<(&PathBuf, &String)> = files
        .iter()
        .filter_map(|(p, sum)| sum.as_ref().map(|s| (p, s)))
        .collect();
    if to_check.is_empty() {
        return Ok(());
    }
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(to_check.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<(), ArchiveError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((path, expected)) = to_check.get(i) else {
                            break;
                        };
                        if let Err(e) = hash_file(path).and_then(|actual| {
                            if &actual == *expected {
                                Ok(())
                            } else {
                                Err(ArchiveError::BadVolume {
                                    volume: (*path).clone(),
                                    reason: format!(
                                        "is corrupt or truncated: its sha256 is {actual}, {} lists {expected}",
                                        list.display()
                                    ),
                                })
                            }
                        }) {
                            failures.push((i, e));
                        }
                    }
                    failures
                })
            })
            .collect();
        let mut failures: Vec<(usize, ArchiveError)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("hashing thread panicked"))
            .collect();
        failures.sort_by_key(|(i, _)| *i);
        failures.into_iter().map(|(_, e)| Err(e)).collect()
    });
    results.into_iter().next().unwrap_or(Ok(()))
}

fn hash_file(path: &Path) -> Result<String, ArchiveError> {
    let mut f = File::open(path).map_err(io_err("read", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = f.read(&mut buffer).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Reads the tar headers once, seeking over the data: entry name → (data offset, size).
fn scan(base: &Path, volumes: &Arc<[Volume]>) -> Result<HashMap<String, (u64, u64)>, ArchiveError> {
    let total: u64 = volumes.iter().map(|v| v.len).sum();
    let volume_of = |pos: u64| -> String {
        let i = volumes.partition_point(|v| v.start + v.len <= pos);
        volumes
            .get(i)
            .or(volumes.last())
            .map(|v| v.path.display().to_string())
            .unwrap_or_default()
    };
    let damaged = |reason: String| ArchiveError::Damaged {
        archive: base.to_path_buf(),
        reason,
    };
    let read_at = |pos: u64, len: u64| -> Result<Vec<u8>, ArchiveError> {
        let mut out = vec![0u8; len as usize];
        let mut chain = Chain::new(volumes.clone(), pos, pos + len);
        chain.read_exact(&mut out).map_err(|e| {
            damaged(format!(
                "cannot read {len} bytes at byte {pos} ({}): {e}",
                volume_of(pos)
            ))
        })?;
        Ok(out)
    };
    let truncated = |what: String| {
        damaged(format!(
            "it ends inside {what}: the archive is truncated after {} (a missing or short volume?)",
            volume_of(total.saturating_sub(1))
        ))
    };

    let mut entries = HashMap::new();
    let mut pos = 0u64;
    let mut pax: HashMap<String, String> = HashMap::new();
    let mut long_name: Option<String> = None;
    loop {
        if pos + BLOCK > total {
            return Err(truncated(format!("the header at byte {pos}")));
        }
        let block = read_at(pos, BLOCK)?;
        let header: [u8; 512] = block.try_into().expect("512 bytes read");
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let stored = parse_numeric(&header[148..156]);
        if stored != Some(checksum(&header)) {
            return Err(damaged(format!(
                "the header at byte {pos} ({}) has a wrong checksum: not a tar archive, or damaged there",
                volume_of(pos)
            )));
        }
        let kind = header[156];
        let mut size = parse_numeric(&header[124..136]).ok_or_else(|| {
            damaged(format!(
                "the header at byte {pos} ({}) has an unreadable size",
                volume_of(pos)
            ))
        })?;
        let mut name = field_text(&header[0..100]);
        if &header[257..262] == b"ustar" {
            let prefix = field_text(&header[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        if let Some(p) = pax.get("path") {
            name = p.clone();
        }
        if let Some(s) = pax.get("size").and_then(|s| s.parse().ok()) {
            size = s;
        }
        let data = pos + BLOCK;
        let next = data
            .checked_add(size)
            .and_then(|e| e.checked_add(padding(size)))
            .ok_or_else(|| damaged(format!("the header at byte {pos} has an impossible size")))?;
        if data + size > total {
            return Err(truncated(format!("`{name}`")));
        }
        match kind {
            b'x' => {
                pax = parse_pax(&read_at(data, size.min(1 << 20))?);
                pos = next;
                continue;
            }
            b'L' => {
                let raw = read_at(data, size.min(1 << 20))?;
                long_name = Some(field_text(&raw));
                pos = next;
                continue;
            }
            b'0' | 0 | b'7' => {
                let name = name.trim_start_matches("./").to_string();
                entries.insert(name, (data, size));
            }
            // Directories, global pax headers, links: nothing to read.
            _ => {}
        }
        pax.clear();
        pos = next;
    }
    Ok(entries)
}

impl LayoutReader for ArchiveReader {
    fn index_json(&self) -> io::Result<Vec<u8>> {
        let (offset, size) = self.entry("index.json").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} has no index.json", self.path.display()),
            )
        })?;
        let mut out = Vec::with_capacity(size as usize);
        Chain::new(self.volumes.clone(), offset, offset + size).read_to_end(&mut out)?;
        Ok(out)
    }

    fn blob_size(&self, digest: &str) -> io::Result<Option<u64>> {
        let path = super::layout::blob_path(digest)?;
        let name = path.to_string_lossy().replace('\\', "/");
        Ok(self.entry(&name).map(|(_, size)| size))
    }

    fn open_blob(&self, digest: &str, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let path = super::layout::blob_path(digest)?;
        let name = path.to_string_lossy().replace('\\', "/");
        let (start, size) = self.entry(&name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "blob {digest} is not in the archive {}",
                    self.path.display()
                ),
            )
        })?;
        if offset > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is past the end of blob {digest} ({size} bytes)"),
            ));
        }
        Ok(Box::new(Chain::new(
            self.volumes.clone(),
            start + offset,
            start + size,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn digest_of(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    /// Incompressible-looking bytes without a random number generator: a SHA-256 chain.
    fn noise(len: usize, seed: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        let mut block = Sha256::digest([seed]);
        while out.len() < len {
            out.extend_from_slice(&block);
            block = Sha256::digest(block);
        }
        out.truncate(len);
        out
    }

    fn put_blob(store: &Path, data: &[u8]) -> String {
        let digest = digest_of(data);
        let dir = store.join("blobs/sha256");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(digest_hex(&digest).unwrap()), data).unwrap();
        digest
    }

    /// A layout with blobs of awkward sizes (empty, one block, around a block boundary).
    fn small_layout(store: &Path) -> Vec<(String, Vec<u8>)> {
        fs::create_dir_all(store).unwrap();
        fs::write(
            store.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        fs::write(
            store.join("index.json"),
            br#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
        let blobs: Vec<Vec<u8>> = vec![
            Vec::new(),
            noise(1, 1),
            noise(511, 2),
            noise(512, 3),
            noise(513, 4),
            noise(10_000, 5),
            noise(3 * 1024 * 1024 + 7, 6),
        ];
        let out: Vec<_> = blobs
            .into_iter()
            .map(|b| (put_blob(store, &b), b))
            .collect();
        // Not finished blobs: never archived.
        fs::write(store.join("blobs/sha256/partial-download.tmp"), b"x").unwrap();
        out
    }

    fn read_blob(reader: &ArchiveReader, digest: &str, offset: u64) -> Vec<u8> {
        let mut out = Vec::new();
        reader
            .open_blob(digest, offset)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn assert_reads_back(reader: &ArchiveReader, store: &Path, blobs: &[(String, Vec<u8>)]) {
        assert_eq!(
            reader.index_json().unwrap(),
            fs::read(store.join("index.json")).unwrap()
        );
        for (digest, data) in blobs {
            let size = data.len() as u64;
            assert_eq!(reader.blob_size(digest).unwrap(), Some(size), "{digest}");
            for offset in [0, 1, size / 2, size.saturating_sub(1), size] {
                let offset = offset.min(size);
                assert!(
                    read_blob(reader, digest, offset) == data[offset as usize..],
                    "blob {digest} ({size} bytes) differs from offset {offset}"
                );
            }
        }
        let mut expected: Vec<String> = blobs.iter().map(|(d, _)| d.clone()).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(reader.blob_digests(), expected);
    }

    #[test]
    fn parse_size_reads_units_and_names_bad_values() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("700MiB").unwrap(), 700 << 20);
        assert_eq!(parse_size("700mib").unwrap(), 700 << 20);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("10B").unwrap(), 10);
        for bad in [
            "",
            "G",
            "4X",
            "-1G",
            "0",
            "1.5G",
            "99999999999999999999T",
            "16777216T",
        ] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        assert!(parse_size("4X")
            .unwrap_err()
            .to_string()
            .contains("unknown unit `X`"));
    }

    #[test]
    fn headers_round_trip_including_sizes_past_ustar() {
        for size in [0, 1, 511, USTAR_MAX_SIZE, USTAR_MAX_SIZE + 1, 40 << 30] {
            let name = format!("blobs/sha256/{}", "a".repeat(64));
            let header = entry_header(&name, size, b'0', 0o644);
            // The last block is the file's own header, after a pax header when needed.
            let own: [u8; 512] = header[header.len() - 512..].try_into().unwrap();
            assert_eq!(parse_numeric(&own[148..156]), Some(checksum(&own)));
            assert_eq!(parse_numeric(&own[124..136]), Some(size), "size {size}");
            if size > USTAR_MAX_SIZE {
                assert_eq!(header[156], b'x');
                let records = parse_pax(&header[512..header.len() - 512]);
                assert_eq!(records.get("size"), Some(&size.to_string()));
            } else {
                assert_eq!(header.len(), 512);
            }
        }
        for (key, value) in [
            ("size", "9"),
            ("size", "1234567"),
            ("path", &"p".repeat(95)),
        ] {
            let record = pax_record(key, value);
            let len: usize = record.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, record.len(), "{record:?}");
        }
    }

    #[test]
    fn round_trip_reads_every_blob_by_digest_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        let archive = dir.path().join("out/images.tar");
        let summary = save(&store, &archive, None).unwrap();
        assert_eq!(summary.volumes, vec![archive.clone()]);
        assert_eq!(summary.blobs, blobs.len());
        assert_eq!(fs::metadata(&archive).unwrap().len(), summary.bytes);
        assert_eq!(summary.bytes % BLOCK, 0);
        assert!(!with_suffix(&archive, ".partial").exists());

        let reader = ArchiveReader::open(&archive).unwrap();
        assert_reads_back(&reader, &store, &blobs);
        let missing = digest_of(b"not there");
        assert_eq!(reader.blob_size(&missing).unwrap(), None);
        let err = reader.open_blob(&missing, 0).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&missing));
        assert!(
            reader.open_blob(&blobs[2].0, 512).is_err(),
            "offset past the end"
        );
        assert!(reader.blob_size("sha256:../../etc/passwd").is_err());

        // The same store gives the same bytes.
        let again = dir.path().join("again.tar");
        save(&store, &again, None).unwrap();
        assert!(fs::read(&again).unwrap() == fs::read(&archive).unwrap());
    }

    #[test]
    fn gnu_tar_lists_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        let archive = dir.path().join("images.tar");
        save(&store, &archive, None).unwrap();
        let Ok(out) = Command::new("tar").arg("-tvf").arg(&archive).output() else {
            eprintln!("SKIPPED gnu_tar_lists_the_archive: no `tar` on PATH");
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (digest, data) in &blobs {
            let line = listing
                .lines()
                .find(|l| l.ends_with(digest_hex(digest).unwrap()))
                .unwrap_or_else(|| panic!("{digest} not listed:\n{listing}"));
            assert!(line.contains(&format!(" {} ", data.len())), "{line}");
        }
    }

    #[test]
    fn split_round_trip_with_blobs_spanning_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        let archive = dir.path().join("images.tar");
        // Not a multiple of 512: headers span volumes too.
        let size = 1_000_003;
        let summary = save(&store, &archive, Some(size)).unwrap();
        assert_eq!(summary.volumes.len() as u64, summary.bytes.div_ceil(size));
        assert!(summary.volumes.len() >= 4);
        for (i, v) in summary.volumes.iter().enumerate() {
            assert_eq!(v, &volume_path(&archive, i as u64));
            let len = fs::metadata(v).unwrap().len();
            assert!(len <= size, "{} has {len} bytes", v.display());
        }
        assert!(!archive.exists());
        assert!(!with_suffix(&archive, ".save-state").exists());
        let list = fs::read_to_string(with_suffix(&archive, ".sha256")).unwrap();
        assert_eq!(list.lines().count(), summary.volumes.len());
        assert!(list.starts_with(&format!(
            "{}  images.tar.000\n",
            hex::encode(Sha256::digest(fs::read(&summary.volumes[0]).unwrap()))
        )));

        // The big blob runs across at least one boundary.
        let reader = ArchiveReader::open(&archive).unwrap();
        let big = &blobs.last().unwrap().0;
        let name = format!("blobs/sha256/{}", digest_hex(big).unwrap());
        let (start, len) = reader.entries[&name];
        assert_ne!(
            start / size,
            (start + len - 1) / size,
            "the blob spans no volumes"
        );
        assert_reads_back(&reader, &store, &blobs);

        // Opened by its first volume or its list, the same.
        for alias in [volume_path(&archive, 0), with_suffix(&archive, ".sha256")] {
            let r = ArchiveReader::open(&alias).unwrap();
            assert_eq!(r.path(), archive);
            assert_eq!(r.volumes(), summary.volumes);
        }

        // The volumes joined are the single archive, and sha256sum checks the list.
        let single = dir.path().join("single.tar");
        save(&store, &single, None).unwrap();
        let joined: Vec<u8> = summary
            .volumes
            .iter()
            .flat_map(|v| fs::read(v).unwrap())
            .collect();
        assert!(joined == fs::read(&single).unwrap());
        if let Ok(out) = Command::new("sha256sum")
            .current_dir(dir.path())
            .args(["-c", "images.tar.sha256"])
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }

        // Saving again with a larger size leaves no stale volume behind.
        let summary2 = save(&store, &archive, Some(4 * size)).unwrap();
        assert!(summary2.volumes.len() < summary.volumes.len());
        assert!(!volume_path(&archive, summary2.volumes.len() as u64).exists());
        assert_reads_back(&ArchiveReader::open(&archive).unwrap(), &store, &blobs);
    }

    #[test]
    fn a_corrupt_or_truncated_volume_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        small_layout(&store);
        let archive = dir.path().join("images.tar");
        let summary = save(&store, &archive, Some(1_000_000)).unwrap();
        let second = &summary.volumes[1];
        let original = fs::read(second).unwrap();

        let mut flipped = original.clone();
        flipped[100] ^= 1;
        fs::write(second, &flipped).unwrap();
        let err = ArchiveReader::open(&archive).unwrap_err().to_string();
        assert!(
            err.contains("images.tar.001") && err.contains("corrupt"),
            "{err}"
        );

        fs::write(second, &original[..original.len() - 10]).unwrap();
        let err = ArchiveReader::open(&archive).unwrap_err().to_string();
        assert!(
            err.contains("images.tar.001") && err.contains("truncated"),
            "{err}"
        );

        fs::write(second, &original).unwrap();
        ArchiveReader::open(&archive).unwrap();
        fs::remove_file(second).unwrap();
        let err = ArchiveReader::open(&archive).unwrap_err().to_string();
        assert!(
            err.contains("images.tar.001") && err.contains("missing"),
            "{err}"
        );

        // Without the list: the scan finds where the archive ends early.
        fs::write(second, &original).unwrap();
        fs::remove_file(with_suffix(&archive, ".sha256")).unwrap();
        let last = summary.volumes.last().unwrap();
        fs::remove_file(last).unwrap();
        let err = ArchiveReader::open(&archive).unwrap_err().to_string();
        let before_last = summary.volumes[summary.volumes.len() - 2]
            .display()
            .to_string();
        assert!(
            err.contains("truncated") && err.contains(&before_last),
            "{err}"
        );

        // A damaged header.
        fs::write(volume_path(&archive, 0), vec![7u8; 2048]).unwrap();
        let err = ArchiveReader::open(&archive).unwrap_err().to_string();
        assert!(
            err.contains("checksum") && err.contains("images.tar.000"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_blob_in_the_store_stops_the_save_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        let (digest, data) = &blobs[5];
        let mut bad = data.clone();
        bad[9] ^= 0xff;
        fs::write(
            store.join("blobs/sha256").join(digest_hex(digest).unwrap()),
            bad,
        )
        .unwrap();
        let archive = dir.path().join("images.tar");
        let err = save(&store, &archive, None).unwrap_err().to_string();
        assert!(err.contains(digest) && err.contains("corrupt"), "{err}");
        // removed, so that the pull the message asks for fetches it again
        assert!(
            err.contains("removed from the store") && err.contains("images pull"),
            "{err}"
        );
        assert!(!store
            .join("blobs/sha256")
            .join(digest_hex(digest).unwrap())
            .exists());
        assert!(!archive.exists());
        assert!(!with_suffix(&archive, ".partial").exists());

        let empty = dir.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        let err = save(&empty, &archive, None).unwrap_err().to_string();
        assert!(
            err.contains("not an OCI image layout") && err.contains("oci-layout"),
            "{err}"
        );
    }

    #[test]
    fn too_many_volumes_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        small_layout(&store);
        let archive = dir.path().join("images.tar");
        let err = save(&store, &archive, Some(1024)).unwrap_err().to_string();
        assert!(
            err.contains("--split 1024") && err.contains("at least"),
            "{err}"
        );
        assert!(!volume_path(&archive, 0).exists());
    }

    #[test]
    fn an_interrupted_split_save_resumes_after_its_finished_volumes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        let archive = dir.path().join("images.tar");
        let size = 1_000_003;
        let mut calls = 0;
        let err = save_with_progress(&store, &archive, Some(size), &mut |p| {
            calls += 1;
            p.written < 2 * size + 10
        })
        .unwrap_err();
        assert!(matches!(err, ArchiveError::Cancelled { .. }), "{err}");
        assert!(calls > 0);
        assert!(volume_path(&archive, 1).exists());
        assert!(!with_suffix(&archive, ".sha256").exists());
        // The volume being written is kept for the next run.
        assert!(with_suffix(&volume_path(&archive, 2), ".partial").exists());
        let inode = fs::metadata(volume_path(&archive, 0)).unwrap().ino();

        let summary = save(&store, &archive, Some(size)).unwrap();
        assert_eq!(summary.resumed_volumes, 2);
        assert_eq!(fs::metadata(volume_path(&archive, 0)).unwrap().ino(), inode);
        let reader = ArchiveReader::open(&archive).unwrap();
        assert_reads_back(&reader, &store, &blobs);

        // A changed store is not resumed from the old volumes.
        let _ = save_with_progress(&store, &archive, Some(size), &mut |p| p.written < size + 10);
        put_blob(&store, &noise(777, 9));
        let summary = save(&store, &archive, Some(size)).unwrap();
        assert_eq!(summary.resumed_volumes, 0);
        ArchiveReader::open(&archive).unwrap();
    }

    #[test]
    fn an_interrupted_single_save_resumes_from_its_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        let fresh = dir.path().join("fresh.tar");
        save(&store, &fresh, None).unwrap();

        let archive = dir.path().join("images.tar");
        let stop_at = 5 * CHECKPOINT_BYTES / 2;
        let err =
            save_with_progress(&store, &archive, None, &mut |p| p.written < stop_at).unwrap_err();
        assert!(matches!(err, ArchiveError::Cancelled { .. }), "{err}");
        assert!(
            !archive.exists(),
            "an unfinished archive under its final name"
        );
        let partial = with_suffix(&archive, ".partial");
        // What a crash leaves past the last checkpoint: bytes that may be wrong.
        let mut f = fs::OpenOptions::new().append(true).open(&partial).unwrap();
        f.write_all(&[0xee; 3000]).unwrap();
        drop(f);

        let mut first_written = None;
        let summary = save_with_progress(&store, &archive, None, &mut |p| {
            first_written.get_or_insert(p.written);
            true
        })
        .unwrap();
        assert!(summary.resumed_bytes >= 2 * CHECKPOINT_BYTES, "{summary:?}");
        assert!(summary.resumed_bytes <= stop_at + COPY_BUFFER as u64);
        assert!(
            first_written.unwrap() >= summary.resumed_bytes,
            "started from zero"
        );
        assert!(fs::read(&archive).unwrap() == fs::read(&fresh).unwrap());
        assert!(!partial.exists());
        assert!(!with_suffix(&archive, ".save-state").exists());
        assert_reads_back(&ArchiveReader::open(&archive).unwrap(), &store, &blobs);
    }

    #[test]
    fn an_interrupted_split_save_resumes_inside_a_volume() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        let size = 2_000_003;
        let archive = dir.path().join("images.tar");
        // Stopped in the middle of the second volume, past a checkpoint in it.
        let stop_at = size + 3 * CHECKPOINT_BYTES / 2;
        let _ = save_with_progress(&store, &archive, Some(size), &mut |p| p.written < stop_at);
        assert!(volume_path(&archive, 0).exists());
        assert!(with_suffix(&volume_path(&archive, 1), ".partial").exists());

        let summary = save(&store, &archive, Some(size)).unwrap();
        assert_eq!(summary.resumed_volumes, 1);
        assert!(summary.resumed_bytes > size, "{summary:?}");
        // The list's SHA-256 of the resumed volume is of all its bytes: open verifies it.
        let reader = ArchiveReader::open(&archive).unwrap();
        assert_reads_back(&reader, &store, &blobs);
        let fresh = dir.path().join("fresh.tar");
        save(&store, &fresh, None).unwrap();
        let joined: Vec<u8> = summary
            .volumes
            .iter()
            .flat_map(|v| fs::read(v).unwrap())
            .collect();
        assert!(joined == fs::read(&fresh).unwrap());
    }

    #[test]
    fn reads_a_layout_tarred_by_gnu_tar() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let blobs = small_layout(&store);
        fs::remove_file(store.join("blobs/sha256/partial-download.tmp")).unwrap();
        let archive = dir.path().join("gnu.tar");
        // `./` prefixes, GNU format, a directory entry first: not what `save` writes.
        let Ok(out) = Command::new("tar")
            .args(["--format=gnu", "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(&store)
            .arg(".")
            .output()
        else {
            eprintln!("SKIPPED reads_a_layout_tarred_by_gnu_tar: no `tar` on PATH");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reader = ArchiveReader::open(&archive).unwrap();
        assert_reads_back(&reader, &store, &blobs);
    }

    /// A one-layer image built by hand: an uncompressed tar layer holding one file, its
    /// config, its manifest and an index naming it `v1`.
    fn image_layout(store: &Path) -> String {
        fs::create_dir_all(store).unwrap();
        fs::write(
            store.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let content = b"hello from the archive\n";
        let mut layer = entry_header("hello.txt", content.len() as u64, b'0', 0o644);
        layer.extend_from_slice(content);
        layer.resize(layer.len() + padding(content.len() as u64) as usize, 0);
        layer.resize(layer.len() + 1024, 0);
        let layer_digest = put_blob(store, &layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .unwrap();
        let config_digest = put_blob(store, &config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))
        .unwrap();
        let manifest_digest = put_blob(store, &manifest);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }],
        }))
        .unwrap();
        fs::write(store.join("index.json"), index).unwrap();
        manifest_digest
    }

    #[test]
    fn skopeo_reads_the_archive() {
        if Command::new("skopeo").arg("--version").output().is_err() {
            eprintln!(
                "SKIPPED skopeo_reads_the_archive: `skopeo` is not installed \
                 (apt-get install skopeo); the archive's interop is NOT checked"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let manifest_digest = image_layout(&store);
        let archive = dir.path().join("image.tar");
        save(&store, &archive, None).unwrap();

        let out = skopeo(&["inspect", &format!("oci-archive:{}:v1", archive.display())]);
        let inspect: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(inspect["Digest"], manifest_digest.as_str());
        assert_eq!(inspect["Architecture"], "amd64");

        let copy = dir.path().join("copy");
        skopeo(&[
            "copy",
            "--quiet",
            "--preserve-digests",
            &format!("oci-archive:{}:v1", archive.display()),
            &format!("oci:{}:v1", copy.display()),
        ]);
        // Every blob arrives unchanged (the layer is not recompressed), the manifest under
        // its own digest.
        for entry in fs::read_dir(store.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let copied = copy.join("blobs/sha256").join(entry.file_name());
            assert!(
                fs::read(&copied).unwrap() == fs::read(entry.path()).unwrap(),
                "{} differs after skopeo copy",
                entry.file_name().to_string_lossy()
            );
        }

        // And the other way: an archive skopeo wrote is read in place.
        let written = dir.path().join("skopeo.tar");
        skopeo(&[
            "copy",
            "--quiet",
            "--preserve-digests",
            &format!("oci:{}:v1", store.display()),
            &format!("oci-archive:{}:v1", written.display()),
        ]);
        let reader = ArchiveReader::open(&written).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&reader.index_json().unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], manifest_digest.as_str());
        for entry in fs::read_dir(store.join("blobs/sha256")).unwrap() {
            let digest = format!(
                "sha256:{}",
                entry.as_ref().unwrap().file_name().to_string_lossy()
            );
            assert!(
                read_blob(&reader, &digest, 0) == fs::read(entry.unwrap().path()).unwrap(),
                "{digest} differs in skopeo's archive"
            );
        }

        // A split set joined is the same archive to skopeo.
        let split = dir.path().join("split.tar");
        let summary = save(&store, &split, Some(1000)).unwrap();
        assert!(summary.volumes.len() > 1);
        let joined = dir.path().join("joined.tar");
        let bytes: Vec<u8> = summary
            .volumes
            .iter()
            .flat_map(|v| fs::read(v).unwrap())
            .collect();
        fs::write(&joined, bytes).unwrap();
        skopeo(&["inspect", &format!("oci-archive:{}:v1", joined.display())]);
    }

    /// Runs skopeo with `args` (policy checks off), returning stdout; panics with its
    /// stderr on failure.
    fn skopeo(args: &[&str]) -> Vec<u8> {
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}
