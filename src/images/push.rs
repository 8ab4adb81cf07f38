//! `images push`: every image of a layout (the store or an archive) into a registry. Per
//! blob: `HEAD`, a cross-repository mount when another repository got it in this run,
//! else an upload (monolithic; chunked and resumable above [`CHUNKED_ABOVE`]). A manifest
//! goes only after its blobs, an index after its manifests, and the tag last: a tag never
//! names incomplete content. A blob whose bytes do not match its digest is never
//! committed (the body fails at its end) and is removed from the store.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::client::{reader_body, BodyWatch, Mount, Piece, Registry};
use super::copy::Arrivals;
use super::layout::LayoutReader;
use super::manifest::{self, Kind};
use super::progress::{Progress, Summary};
use super::reference::Reference;
use super::scheduler::{Outcome, Scheduler};
use super::store::{self, Descriptor, Store};

/// Blobs larger than this go in chunks of this size (`PATCH` + `Content-Range`).
pub const CHUNKED_ABOVE: u64 = 64 * 1024 * 1024;

/// [`CHUNKED_ABOVE`], or `$PROVISION_IMAGES_CHUNK_SIZE` (bytes) when set: smaller chunks
/// lose less to a broken connection on a poor link.
pub fn chunk_size() -> u64 {
    std::env::var("PROVISION_IMAGES_CHUNK_SIZE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n >= 1024 * 1024)
        .unwrap_or(CHUNKED_ABOVE)
}
const ATTEMPTS: u32 = 6;

/// Where a push reads its images from: what a failure tells the operator to do.
#[derive(Debug, Clone)]
pub enum Source {
    /// The local store (`images push`): what it lacks or holds corrupt a pull fetches.
    Store(Store),
    /// An archive (`images push --archive FILE`): read-only, and usually far from the
    /// store; what it lacks or holds corrupt means writing it again where the store is.
    Archive(PathBuf),
    /// The store a pull fills during this run (`images push REF...`).
    Copy(Store),
}

impl Source {
    /// The store a corrupt blob is removed from (never the archive).
    fn store(&self) -> Option<&Store> {
        match self {
            Source::Store(s) | Source::Copy(s) => Some(s),
            Source::Archive(_) => None,
        }
    }

    /// Where the content is read from, for a message: `the store` / `the archive FILE`.
    fn name(&self) -> String {
        match self {
            Source::Store(_) | Source::Copy(_) => "the store".to_string(),
            Source::Archive(a) => format!("the archive {}", a.display()),
        }
    }

    /// What to do when the source lacks a blob or manifest, or holds it corrupt.
    fn refetch(&self) -> String {
        match self {
            Source::Store(_) => "run `provision images pull` again (with the same list) to \
                 fetch it anew, then `provision images push` again"
                .to_string(),
            Source::Archive(a) => format!(
                "the archive is damaged or incomplete: write it again where the store is \
                 (`provision images save --archive FILE`; `provision images pull` first if \
                 the store lacks it too), copy it over (check a split one with \
                 `sha256sum -c FILE.sha256`) and run `provision images push --archive {}` again",
                a.display()
            ),
            Source::Copy(_) => "run the same `provision images push` command again: its pull \
                 fetches it anew"
                .to_string(),
        }
    }
}

struct Run {
    layout: Arc<dyn LayoutReader>,
    source: Source,
    reg: Arc<Registry>,
    sched: Arc<Scheduler>,
    progress: Arc<Progress>,
    /// The repository each blob went to in this run (the mount source for the others).
    homes: Mutex<HashMap<String, String>>,
    /// Every destination repository an image of this push puts each blob in: where a
    /// blob may already be from an earlier (interrupted) run, so a mount is tried first.
    candidates: Mutex<HashMap<String, Vec<String>>>,
    /// Set when a pull fills the store during this push: a blob is placed once it landed.
    arrivals: Option<Arc<Arrivals>>,
}

/// The images of a layout: (`ref.name`, descriptor), in order.
pub fn images_of(layout: &dyn LayoutReader) -> anyhow::Result<Vec<(String, Descriptor)>> {
    let idx = store::parse_index(&layout.index_json()?)?;
    Ok(idx
        .manifests
        .into_iter()
        .filter_map(|d| {
            d.annotations
                .get(store::REF_NAME)
                .cloned()
                .map(|name| (name, d))
        })
        .collect())
}

/// Whether an archive's `ref.name` is a bare tag (`v1`: what skopeo's `oci-archive:FILE:TAG`
/// and other tools write) rather than a reference (`images pull` writes
/// `docker.io/rancher/fleet:v1`): no repository, no `:`, no digest.
pub fn is_bare_tag(name: &str) -> bool {
    !name.contains(['/', ':', '@'])
}

/// Names the images of archive `archive` whose `ref.name` is a bare tag after the image of
/// `list` with that tag, when exactly one has it. Refused, naming every archive entry that
/// stays unnamed (its tag and digest) and why, when one does not map; nothing is pushed
/// then. Entries with full references are kept as they are.
pub fn name_bare_tags(
    images: Vec<(String, Descriptor)>,
    list: &[Reference],
    archive: &Path,
) -> anyhow::Result<Vec<(String, Descriptor)>> {
    let mut out = Vec::with_capacity(images.len());
    let mut problems = Vec::new();
    for (name, desc) in images {
        if !is_bare_tag(&name) {
            out.push((name, desc));
            continue;
        }
        let matches: Vec<&Reference> = list
            .iter()
            .filter(|r| r.tag.as_deref() == Some(name.as_str()))
            .collect();
        match matches.as_slice() {
            [one] => out.push((one.to_string(), desc)),
            [] if list.is_empty() => problems.push(format!(
                "`{name}` ({}): no image list was given to name it",
                desc.digest
            )),
            [] => problems.push(format!(
                "`{name}` ({}): no image of the list has the tag `{name}`",
                desc.digest
            )),
            many => problems.push(format!(
                "`{name}` ({}): {} images of the list have that tag ({})",
                desc.digest,
                many.len(),
                many.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    // Two entries named after the same image: which one is it?
    let mut seen = std::collections::HashMap::new();
    for (name, desc) in &out {
        if let Some(other) = seen.insert(name.clone(), desc.digest.clone()) {
            if other != desc.digest {
                problems.push(format!(
                    "two entries ({other} and {}) would both be pushed as {name}",
                    desc.digest
                ));
            }
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "the archive {} names images by a bare tag, without their repository, and these \
             entries of its index.json cannot be named:\n  {}\nGive the image list the \
             archive was made from (`--list FILE` or references) so that each bare tag is the \
             tag of exactly one image of it, or write the archive with full names \
             (`provision images pull` then `provision images save --archive FILE`)",
            archive.display(),
            problems.join("\n  ")
        );
    }
    Ok(out)
}

/// Pushes every image of `layout` to `reg`. `source` says what `layout` is: the store
/// (where a corrupt blob is removed from) or an archive.
pub async fn push(
    layout: Arc<dyn LayoutReader>,
    source: Source,
    reg: Arc<Registry>,
    images: Vec<(String, Descriptor)>,
    parallelism: usize,
    progress: Arc<Progress>,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let candidates = blob_repositories(layout.as_ref(), &images);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for i in images {
        let _ = tx.send(i);
    }
    drop(tx);
    let run = Arc::new(Run {
        layout,
        source,
        reg,
        sched: Scheduler::new(parallelism),
        progress,
        homes: Mutex::new(HashMap::new()),
        candidates: Mutex::new(candidates),
        arrivals: None,
    });
    push_stream(run, rx, parallelism, interrupt).await
}

/// Pushes the images `images` yields while a pull fills `store`: each blob goes as soon
/// as `arrivals` says it landed, manifests after their blobs, the tag last.
pub async fn push_arriving(
    store: Store,
    reg: Arc<Registry>,
    images: tokio::sync::mpsc::UnboundedReceiver<(String, Descriptor)>,
    arrivals: Arc<Arrivals>,
    parallelism: usize,
    progress: Arc<Progress>,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let run = Arc::new(Run {
        layout: Arc::new(store.layout().clone()),
        source: Source::Copy(store),
        reg,
        sched: Scheduler::new(parallelism),
        progress,
        homes: Mutex::new(HashMap::new()),
        candidates: Mutex::new(HashMap::new()),
        arrivals: Some(arrivals),
    });
    push_stream(run, images, parallelism, interrupt).await
}

async fn push_stream(
    run: Arc<Run>,
    mut images: tokio::sync::mpsc::UnboundedReceiver<(String, Descriptor)>,
    parallelism: usize,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    // An image waiting for a pull holds no transfer, so then there is no limit here (the
    // scheduler still bounds the transfers).
    let slots = Arc::new(tokio::sync::Semaphore::new(if run.arrivals.is_some() {
        tokio::sync::Semaphore::MAX_PERMITS
    } else {
        parallelism.max(1) * 2
    }));
    let mut set = tokio::task::JoinSet::new();
    let mut open = true;
    tokio::pin!(interrupt);
    let interrupted = loop {
        if !open && set.is_empty() {
            break false;
        }
        tokio::select! {
            _ = &mut interrupt => break true,
            next = images.recv(), if open => {
                let Some((name, desc)) = next else {
                    open = false;
                    continue;
                };
                if run.arrivals.is_some() {
                    let more = blob_repositories(run.layout.as_ref(), &[(name.clone(), desc.clone())]);
                    let mut c = run.candidates.lock().unwrap_or_else(|p| p.into_inner());
                    for (digest, repos) in more {
                        let v = c.entry(digest).or_default();
                        for r in repos {
                            if !v.contains(&r) {
                                v.push(r);
                            }
                        }
                    }
                }
                let run = run.clone();
                let slots = slots.clone();
                set.spawn(async move {
                    let Ok(_permit) = slots.acquire().await else {
                        return;
                    };
                    if run.sched.is_cancelled() {
                        return;
                    }
                    match push_image(&run, &name, &desc).await {
                        Ok(unchanged) => run.progress.image_done(&name, &desc.digest, unchanged),
                        Err(e) if run.sched.is_cancelled() => tracing::debug!("{name}: {e}"),
                        Err(e) => run.progress.image_failed(&name, &e),
                    }
                });
            }
            Some(_) = set.join_next(), if !set.is_empty() => {}
        }
    };
    if interrupted {
        run.sched.cancel();
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    let s = &run.reg.stats;
    Ok(run.progress.finish(
        s.requests.load(Ordering::Relaxed),
        s.retries.load(Ordering::Relaxed),
        interrupted,
    ))
}

/// digest → the destination repositories whose images reference it (from the manifests
/// in the layout; an unreadable one is skipped here and reported when its image is pushed).
fn blob_repositories(
    layout: &dyn LayoutReader,
    images: &[(String, Descriptor)],
) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut add = |digest: &str, repo: &str| {
        let v = out.entry(digest.to_string()).or_default();
        if !v.iter().any(|r| r == repo) {
            v.push(repo.to_string());
        }
    };
    for (name, desc) in images {
        let Ok(r) = Reference::parse(name) else {
            continue;
        };
        let repo = r.destination_repository();
        let mut manifests = vec![(desc.digest.clone(), desc.media_type.clone())];
        while let Some((digest, media_type)) = manifests.pop() {
            let Ok(bytes) = read_all(layout, &digest) else {
                continue;
            };
            match manifest::parse(&bytes, &media_type).map(|m| m.kind) {
                Ok(Kind::Image { blobs }) => blobs.iter().for_each(|b| add(&b.digest, &repo)),
                Ok(Kind::Index { entries, .. }) if digest == desc.digest => {
                    manifests.extend(entries.into_iter().map(|e| (e.digest, e.media_type)))
                }
                _ => {}
            }
        }
    }
    out
}

/// A manifest's bytes, checked against its digest; `Err` says what is wrong with it.
fn read_all(layout: &dyn LayoutReader, digest: &str) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    layout
        .open_blob(digest, 0)
        .and_then(|mut r| r.read_to_end(&mut v))
        .map_err(|e| format!("manifest {digest} cannot be read: {e}"))?;
    if store::digest_of(&v) != digest {
        return Err(format!(
            "manifest {digest} is corrupt (its bytes do not match its digest)"
        ));
    }
    Ok(v)
}

/// [`read_all`] from the run's source, the failure saying where and what to do. A corrupt
/// manifest is removed from the store, so the pull the message asks for fetches it again.
fn read_manifest(run: &Run, digest: &str) -> Result<Vec<u8>, String> {
    read_all(run.layout.as_ref(), digest).map_err(|e| {
        let removed = match run.source.store() {
            Some(s)
                if s.blob_file(digest).is_ok_and(|p| p.is_file())
                    && matches!(s.verify_blob(digest), Ok(false)) =>
            {
                " (removed from the store)"
            }
            _ => "",
        };
        format!(
            "{e} in {}{removed}; {}",
            run.source.name(),
            run.source.refetch()
        )
    })
}

async fn push_image(run: &Run, name: &str, desc: &Descriptor) -> Result<bool, String> {
    let r = Reference::parse(name).map_err(|e| e.to_string())?;
    let repo = r.destination_repository();
    let tag = r.tag.clone().unwrap_or_else(|| desc.digest.clone());
    // The one request of a re-run.
    if let Some(info) = run
        .reg
        .head_manifest(&repo, &tag)
        .await
        .map_err(|e| e.to_string())?
    {
        if info.digest == desc.digest {
            return Ok(true);
        }
    }
    let bytes = read_manifest(run, &desc.digest)?;
    let m = manifest::parse(&bytes, &desc.media_type).map_err(|e| format!("{name}: {e}"))?;
    match m.kind {
        Kind::Image { blobs } => push_blobs(run, &repo, name, &blobs).await?,
        Kind::Index { entries, .. } => {
            let children = entries.iter().map(|e| {
                let repo = repo.clone();
                async move {
                    if run
                        .layout
                        .blob_size(&e.digest)
                        .map_err(|x| x.to_string())?
                        .is_none()
                    {
                        return Err(format!(
                            "its index lists manifest {} which {} lacks; {}",
                            e.digest,
                            run.source.name(),
                            run.source.refetch()
                        ));
                    }
                    let cb = read_manifest(run, &e.digest)?;
                    let cm = manifest::parse(&cb, &e.media_type)
                        .map_err(|x| format!("{}: {x}", e.digest))?;
                    let Kind::Image { blobs } = cm.kind else {
                        return Err(format!("{} is an index inside an index", e.digest));
                    };
                    push_blobs(run, &repo, name, &blobs).await?;
                    run.reg
                        .put_manifest(&repo, &e.digest, &cm.media_type, Bytes::from(cb))
                        .await
                        .map_err(|x| x.to_string())
                }
            });
            for r in futures::future::join_all(children).await {
                r?;
            }
        }
    }
    // The tag last.
    run.reg
        .put_manifest(&repo, &tag, &m.media_type, Bytes::from(bytes))
        .await
        .map_err(|e| e.to_string())?;
    Ok(false)
}

async fn push_blobs(
    run: &Run,
    repo: &str,
    image: &str,
    blobs: &[Descriptor],
) -> Result<(), String> {
    let futs = blobs.iter().map(|b| push_blob(run, repo, image, b));
    for r in futures::future::join_all(futs).await {
        r?;
    }
    Ok(())
}

async fn push_blob(run: &Run, repo: &str, image: &str, b: &Descriptor) -> Result<(), String> {
    let err = |e: String| format!("blob {}: {e}", b.digest);
    if let Some(a) = &run.arrivals {
        a.wait(&b.digest, b.size).await.map_err(err)?;
    }
    // Once per digest in the run: it goes to the first repository that needs it.
    let shared = run
        .sched
        .once(&b.digest, || async {
            // An earlier run may have put it in another repository: mount it from there.
            let others: Vec<String> = run
                .candidates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&b.digest)
                .map(|v| v.iter().filter(|r| r.as_str() != repo).cloned().collect())
                .unwrap_or_default();
            let out = place_blob(run, repo, b, &others).await?;
            run.homes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(b.digest.clone(), repo.to_string());
            Ok(out)
        })
        .await
        .map_err(err)?;
    let home = run
        .homes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&b.digest)
        .cloned();
    if shared.first || home.as_deref() == Some(repo) {
        run.progress
            .blob(image, &b.digest, shared.outcome, shared.first);
        return Ok(());
    }
    // Another repository has it: mount it here (once per repository and digest).
    let here = run
        .sched
        .once(&format!("{repo}@{}", b.digest), || {
            place_blob(run, repo, b, home.as_slice())
        })
        .await
        .map_err(err)?;
    run.progress
        .blob(image, &b.digest, here.outcome, here.first);
    Ok(())
}

/// The repository to mount `digest` from, of those that may hold it: with one, just try
/// it (when it lacks the blob, the same request opens the upload, so the attempt costs
/// nothing); with several, ask each at once — a mount tried from the wrong one would upload
/// the whole blob again although the registry holds it.
async fn mount_source<'a>(run: &Run, from: &'a [String], digest: &str) -> Option<&'a str> {
    if from.len() <= 1 {
        return from.first().map(String::as_str);
    }
    let asks = from.iter().map(|r| async move {
        matches!(run.reg.head_blob(r, digest).await, Ok(Some(_))).then_some(r.as_str())
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .next()
}

/// Makes blob `b` present in `repo`: already there, mounted from one of `from` (see
/// [`mount_source`]), or uploaded.
async fn place_blob(
    run: &Run,
    repo: &str,
    b: &Descriptor,
    from: &[String],
) -> Result<Outcome, String> {
    if run
        .reg
        .head_blob(repo, &b.digest)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(Outcome::Present(b.size));
    }
    match run.layout.blob_size(&b.digest).map_err(|e| e.to_string())? {
        Some(s) if s == b.size => {}
        Some(s) => {
            return Err(format!(
                "{} holds {s} bytes for it, its manifest says {}; {}",
                run.source.name(),
                b.size,
                run.source.refetch()
            ))
        }
        None => {
            return Err(format!(
                "{} lacks it; {}",
                run.source.name(),
                run.source.refetch()
            ))
        }
    }
    let from = mount_source(run, from, &b.digest).await;
    let first = run
        .reg
        .start_upload(repo, from.map(|f| (b.digest.as_str(), f)))
        .await
        .map_err(|e| e.to_string())?;
    let location = match first {
        Mount::Mounted => return Ok(Outcome::Mounted(b.size)),
        Mount::Upload(l) => l,
    };
    run.progress.transfer_started();
    let res = if b.size > chunk_size() {
        upload_chunked(run, repo, b, location).await
    } else {
        upload_whole(run, repo, b, location).await
    };
    run.progress.transfer_ended();
    res.map(|()| Outcome::Transferred(b.size))
}

/// A new upload session in `repo` after a failed attempt (`None`: the registry has the
/// blob after all).
async fn fresh_upload(run: &Run, repo: &str) -> Result<Option<String>, String> {
    match run
        .reg
        .start_upload(repo, None)
        .await
        .map_err(|e| e.to_string())?
    {
        Mount::Upload(l) => Ok(Some(l)),
        Mount::Mounted => Ok(None),
    }
}

fn watch(run: &Run) -> BodyWatch {
    let progress = run.progress.clone();
    let stats = run.reg.stats.clone();
    BodyWatch {
        hasher: Arc::new(Mutex::new(Sha256::new())),
        corrupt: Arc::new(AtomicBool::new(false)),
        on_sent: Arc::new(move |n| {
            progress.moved(n);
            stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
        }),
    }
}

/// The blob does not match its digest: remove it from the store (never from an archive)
/// so a pull fetches it again, and say so.
fn corrupt(run: &Run, b: &Descriptor) -> String {
    let removed = match run.source.store() {
        Some(s) => match s.verify_blob(&b.digest) {
            Ok(_) => " (removed from the store)".to_string(),
            Err(e) => format!(
                " (and removing it from the store failed: {e}; delete {} by hand)",
                s.blob_file(&b.digest)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        },
        None => String::new(),
    };
    format!(
        "its bytes in {} do not match its digest{removed}; nothing was committed; {}",
        run.source.name(),
        run.source.refetch()
    )
}

async fn upload_whole(
    run: &Run,
    repo: &str,
    b: &Descriptor,
    mut location: String,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(300 << attempt.min(4))).await;
            let Some(l) = fresh_upload(run, repo).await? else {
                return Ok(());
            };
            location = l;
        }
        let w = watch(run);
        let reader = run
            .layout
            .open_blob(&b.digest, 0)
            .map_err(|e| format!("reading it from {}: {e}", run.source.name()))?;
        let body = reader_body(reader, b.size, w.clone(), Some(b.digest.clone()));
        match run
            .reg
            .send_upload(
                repo,
                &location,
                &b.digest,
                Piece {
                    start: 0,
                    len: b.size,
                    whole: true,
                },
                body,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                run.reg.cancel_upload(repo, &location).await;
                if w.corrupt.load(Ordering::SeqCst) {
                    return Err(corrupt(run, b));
                }
                last = e.to_string();
                run.reg.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("blob {}: {last}; uploading again", b.digest);
            }
        }
    }
    Err(format!("gave up after {ATTEMPTS} attempts: {last}"))
}

/// Hashes the first `n` bytes of the blob (to resume the running hash at an offset).
async fn hash_prefix(run: &Run, digest: &str, n: u64) -> Result<Sha256, String> {
    let layout = run.layout.clone();
    let digest = digest.to_string();
    tokio::task::spawn_blocking(move || {
        let mut h = Sha256::new();
        let mut r = layout.open_blob(&digest, 0)?.take(n);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = r.read(&mut buf)?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
        }
        Ok::<_, std::io::Error>(h)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading it from {}: {e}", run.source.name()))
}

async fn upload_chunked(
    run: &Run,
    repo: &str,
    b: &Descriptor,
    mut location: String,
) -> Result<(), String> {
    let mut offset = 0u64;
    let mut failures = 0;
    let w = watch(run);
    while offset < b.size {
        let len = chunk_size().min(b.size - offset);
        let reader = run
            .layout
            .open_blob(&b.digest, offset)
            .map_err(|e| format!("reading it from {}: {e}", run.source.name()))?;
        let body = reader_body(reader, len, w.clone(), None);
        match run
            .reg
            .send_upload(
                repo,
                &location,
                &b.digest,
                Piece {
                    start: offset,
                    len,
                    whole: false,
                },
                body,
            )
            .await
        {
            Ok(next) => {
                location = next.unwrap_or(location);
                offset += len;
            }
            Err(e) => {
                failures += 1;
                run.reg.stats.retries.fetch_add(1, Ordering::Relaxed);
                if failures >= ATTEMPTS {
                    run.reg.cancel_upload(repo, &location).await;
                    return Err(format!("gave up after {failures} attempts: {e}"));
                }
                tracing::debug!("blob {}: chunk at {offset} failed: {e}", b.digest);
                tokio::time::sleep(Duration::from_millis(300 << failures.min(4))).await;
                // Where does the upload stand? Resume there, or start over when the
                // registry dropped it.
                match run.reg.upload_offset(repo, &location).await {
                    Ok(Some((l, at))) if at <= b.size => {
                        location = l;
                        offset = at;
                    }
                    _ => {
                        let Some(l) = fresh_upload(run, repo).await? else {
                            return Ok(());
                        };
                        location = l;
                        offset = 0;
                    }
                }
                let h = hash_prefix(run, &b.digest, offset).await?;
                *w.hasher.lock().unwrap_or_else(|p| p.into_inner()) = h;
            }
        }
    }
    let got = format!(
        "sha256:{}",
        hex::encode(
            w.hasher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .finalize()
        )
    );
    if got != b.digest {
        run.reg.cancel_upload(repo, &location).await;
        return Err(corrupt(run, b));
    }
    run.reg
        .finish_upload(repo, &location, &b.digest)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(n: u8) -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 100,
            annotations: Default::default(),
            platform: None,
        }
    }

    fn refs(names: &[&str]) -> Vec<Reference> {
        names.iter().map(|n| Reference::parse(n).unwrap()).collect()
    }

    #[test]
    fn bare_tags_are_named_after_the_one_image_of_the_list_with_that_tag() {
        let images = vec![
            ("v1".to_string(), desc(1)),
            ("docker.io/rancher/app:1".to_string(), desc(2)),
            ("2.9".to_string(), desc(3)),
        ];
        let list = refs(&["rancher/fleet:v1", "rancher/rancher:2.9", "busybox:1"]);
        let named = name_bare_tags(images, &list, Path::new("a.tar")).unwrap();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker.io/rancher/fleet:v1",
                "docker.io/rancher/app:1",
                "docker.io/rancher/rancher:2.9"
            ]
        );
        assert_eq!(named[0].1, desc(1));
        assert!(!is_bare_tag("docker.io/rancher/app:1") && !is_bare_tag("busybox:1"));
    }

    #[test]
    fn a_bare_tag_that_does_not_map_to_one_image_is_refused_naming_the_entry() {
        let images = || {
            vec![
                ("v1".to_string(), desc(1)),
                ("latest".to_string(), desc(2)),
                ("docker.io/rancher/app:1".to_string(), desc(3)),
            ]
        };
        let list = refs(&["rancher/a:v1", "rancher/b:v1", "rancher/app:1"]);
        let e = name_bare_tags(images(), &list, Path::new("/m/images.tar"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/m/images.tar"), "{e}");
        assert!(
            e.contains(&format!("`v1` ({})", desc(1).digest))
                && e.contains("docker.io/rancher/a:v1, docker.io/rancher/b:v1"),
            "{e}"
        );
        assert!(
            e.contains(&format!("`latest` ({})", desc(2).digest))
                && e.contains("no image of the list has the tag `latest`"),
            "{e}"
        );
        assert!(!e.contains(&desc(3).digest), "{e}");
        // without a list: each named, and what to give
        let e = name_bare_tags(images(), &[], Path::new("/m/images.tar"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no image list was given") && e.contains("--list FILE"),
            "{e}"
        );
        // an archive of full names needs no list
        let full = vec![("docker.io/rancher/app:1".to_string(), desc(3))];
        assert_eq!(
            name_bare_tags(full.clone(), &[], Path::new("a.tar")).unwrap(),
            full
        );
    }
}
