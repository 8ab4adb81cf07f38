//! `images pull`: resolve every listed reference, fetch what the store lacks through the
//! global scheduler, then record the image in `index.json` and the lock file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::client::{self, Registry};
use super::manifest::{self, Kind, Platform};
use super::progress::{Progress, Summary};
use super::reference::{Reference, DOCKER_HUB, DOCKER_HUB_API};
use super::scheduler::{Outcome, Scheduler};
use super::store::{Descriptor, LayoutIndex, Lock, LockEntry, Store};

/// Attempts per blob download (each resumes where the last one broke).
const BLOB_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platforms: Vec<Platform>,
    pub all_platforms: bool,
    /// Every docker.io reference is taken from this `host[:port]` instead.
    pub source_registry: Option<String>,
    pub plain_http: bool,
    pub ca_pem: Option<Vec<u8>>,
    pub parallelism: usize,
}

impl PullOptions {
    fn selection(&self) -> String {
        if self.all_platforms {
            "all".into()
        } else {
            self.platforms
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

/// The source registries of a run, one client each.
pub struct Sources {
    opts: PullOptions,
    clients: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Sources {
    pub fn new(opts: PullOptions) -> Self {
        Self {
            opts,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The registry host a reference is fetched from.
    pub fn host_for(&self, r: &Reference) -> String {
        if r.registry == DOCKER_HUB {
            self.opts
                .source_registry
                .clone()
                .unwrap_or_else(|| DOCKER_HUB_API.to_string())
        } else {
            r.registry.clone()
        }
    }

    pub fn client(&self, r: &Reference) -> Result<Arc<Registry>, String> {
        let host = self.host_for(r);
        let mut m = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(&host) {
            return Ok(c.clone());
        }
        let credentials = client::credentials_for(&host).or_else(|| {
            (r.registry == DOCKER_HUB && self.opts.source_registry.is_none())
                .then(|| client::credentials_for(DOCKER_HUB))
                .flatten()
        });
        let c = Arc::new(
            Registry::new(
                &host,
                client::Options {
                    plain_http: self.opts.plain_http,
                    ca_pem: self.opts.ca_pem.clone(),
                    via: None,
                    credentials,
                    attempts: 6,
                },
            )
            .map_err(|e| format!("{host}: {e}"))?,
        );
        m.insert(host, c.clone());
        Ok(c)
    }

    /// (requests, retries) over every client.
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        m.values().fold((0, 0), |(a, b), c| {
            (
                a + c.stats.requests.load(Relaxed),
                b + c.stats.retries.load(Relaxed),
            )
        })
    }
}

/// The store's `index.json` and lock file as the run changes them; written at most once
/// a second while the run goes, and at its end.
pub struct Book {
    store: Store,
    state: Mutex<(LayoutIndex, Lock, Instant, bool)>,
}

impl Book {
    pub fn load(store: &Store) -> std::io::Result<Self> {
        Ok(Self {
            store: store.clone(),
            state: Mutex::new((
                store.load_index()?,
                store.load_lock()?,
                Instant::now(),
                false,
            )),
        })
    }

    fn lock_entry(&self, name: &str) -> Option<LockEntry> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1.get(name).cloned()
    }

    /// What `name` is recorded as in `index.json`.
    fn stored(&self, name: &str) -> Option<Descriptor> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.get(name).cloned()
    }

    fn record(&self, name: &str, desc: Descriptor, entry: LockEntry) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.set(name, desc);
        s.1.insert(name.to_string(), entry);
        s.3 = true;
        if s.2.elapsed() > Duration::from_secs(1) {
            let _ = self.store.save_index(&s.0);
            let _ = self.store.save_lock(&s.1);
            s.2 = Instant::now();
            s.3 = false;
        }
    }

    pub fn flush(&self) -> std::io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.3 {
            self.store.save_index(&s.0)?;
            self.store.save_lock(&s.1)?;
            s.3 = false;
        }
        Ok(())
    }
}

/// Who else wants to know, while a pull runs, what it resolved and which blobs landed
/// (`images push REF...` pushes each blob the moment it is in the store).
pub trait Watcher: Send + Sync {
    /// `name` resolved: its manifests are in the store and `stored` is what it will be
    /// recorded as (unchanged images too).
    fn resolved(&self, name: &str, stored: &Descriptor);
    /// `name` could not be resolved; it gets no blob.
    fn failed(&self, name: &str, reason: &str);
    /// Blob `digest` is in the store (`Ok`), or will not be in this run (`Err`).
    fn blob(&self, digest: &str, res: Result<(), String>);
}

struct Run {
    store: Store,
    sched: Arc<Scheduler>,
    progress: Arc<Progress>,
    sources: Sources,
    book: Book,
    opts: PullOptions,
    watcher: Option<Arc<dyn Watcher>>,
}

/// Pulls `refs` into `store`. Returns when every image is done or failed, or at Ctrl-C
/// (`interrupt` resolves), with the store consistent either way.
pub async fn pull(
    store: &Store,
    refs: Vec<Reference>,
    opts: PullOptions,
    progress: Arc<Progress>,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    pull_watched(store, refs, opts, progress, interrupt, None, "images pull").await
}

/// [`pull`], telling `watcher` what resolved and which blobs landed as it goes. `command`
/// names the run in the store's lock (what another run refused meanwhile is told).
pub async fn pull_watched(
    store: &Store,
    refs: Vec<Reference>,
    opts: PullOptions,
    progress: Arc<Progress>,
    interrupt: impl std::future::Future<Output = ()>,
    watcher: Option<Arc<dyn Watcher>>,
    command: &str,
) -> anyhow::Result<Summary> {
    let _guard = store.lock_exclusive(command)?;
    let run = Arc::new(Run {
        store: store.clone(),
        sched: Scheduler::new(opts.parallelism),
        progress: progress.clone(),
        sources: Sources::new(opts.clone()),
        book: Book::load(store)?,
        opts,
        watcher,
    });
    let work = async {
        // Phase 1: every image resolved to the blobs it needs (manifests fetched into the
        // store), many at once: this part waits on round trips, not bandwidth.
        let resolving = Arc::new(tokio::sync::Semaphore::new(run.sched.parallelism() * 4));
        let mut set = tokio::task::JoinSet::new();
        for r in refs {
            let (run, resolving) = (run.clone(), resolving.clone());
            set.spawn(async move {
                let _permit = resolving.acquire().await.ok()?;
                if run.sched.is_cancelled() {
                    return None;
                }
                let name = r.to_string();
                match resolve_image(&run, &r).await {
                    Ok(Resolved::Unchanged(digest)) => {
                        if let Some(w) = &run.watcher {
                            match run.book.stored(&name) {
                                Some(d) => w.resolved(&name, &d),
                                None => w.failed(&name, "it is not in the store's index.json"),
                            }
                        }
                        run.progress.image_done(&name, &digest, true);
                        None
                    }
                    Ok(Resolved::Todo(t)) => {
                        if let Some(w) = &run.watcher {
                            w.resolved(&name, &t.stored);
                        }
                        Some(*t)
                    }
                    Err(e) => {
                        if let Some(w) = &run.watcher {
                            w.failed(&name, &e);
                        }
                        run.progress.image_failed(&name, &e);
                        None
                    }
                }
            });
        }
        let mut todo = Vec::new();
        while let Some(t) = set.join_next().await {
            if let Ok(Some(t)) = t {
                todo.push(Arc::new(t));
            }
        }
        // Phase 2: the union of their blobs, largest first (the long transfers start
        // early instead of forming the tail), each once, `parallelism` at a time. An image
        // is recorded the moment its last blob lands.
        let mut blobs: HashMap<String, (Descriptor, Vec<Arc<Todo>>)> = HashMap::new();
        for t in &todo {
            if t.blobs.is_empty() {
                finish_image(&run, t);
            }
            for b in &t.blobs {
                blobs
                    .entry(b.digest.clone())
                    .or_insert_with(|| (b.clone(), Vec::new()))
                    .1
                    .push(t.clone());
            }
        }
        let mut order: Vec<(Descriptor, Vec<Arc<Todo>>)> = blobs.into_values().collect();
        run.progress.set_total_bytes(
            order
                .iter()
                .filter(|(d, _)| !run.store.has_blob(&d.digest, d.size))
                .map(|(d, _)| d.size)
                .sum(),
        );
        order.sort_by(|a, b| b.0.size.cmp(&a.0.size).then(a.0.digest.cmp(&b.0.digest)));
        let mut set = tokio::task::JoinSet::new();
        for (desc, users) in order {
            let run = run.clone();
            set.spawn(async move {
                let first = &users[0];
                let res = run
                    .sched
                    .once(&desc.digest, || {
                        fetch_blob(&run, &first.reg, &first.repo, &desc)
                    })
                    .await;
                if let Some(w) = &run.watcher {
                    w.blob(&desc.digest, res.as_ref().map(|_| ()).map_err(Clone::clone));
                }
                for (k, t) in users.iter().enumerate() {
                    match &res {
                        Ok(shared) => {
                            run.progress
                                .blob(&t.name, &desc.digest, shared.outcome, k == 0)
                        }
                        Err(e) => t
                            .failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("blob {}: {e}", desc.digest)),
                    }
                    if t.left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                        finish_image(&run, t);
                    }
                }
            });
            // Let it reach the scheduler's queue before the next (smaller) one.
            tokio::task::yield_now().await;
        }
        while set.join_next().await.is_some() {}
    };
    let interrupted = tokio::select! {
        _ = work => false,
        _ = interrupt => true,
    };
    if interrupted {
        run.sched.cancel();
    }
    run.book.flush()?;
    let (req, retries) = run.sources.totals();
    Ok(progress.finish(req, retries, interrupted))
}

/// Whether everything `digest` (a manifest or index in the store) references is there.
pub fn complete(store: &Store, digest: &str) -> bool {
    let Ok(bytes) = store.read_blob(digest) else {
        return false;
    };
    // A manifest is small: its bytes are checked, a damaged one fetched again.
    if super::store::digest_of(&bytes) != digest {
        return false;
    }
    match manifest::parse(&bytes, "") {
        Ok(m) => match m.kind {
            Kind::Image { blobs } => blobs.iter().all(|b| store.has_blob(&b.digest, b.size)),
            Kind::Index { entries, .. } => entries.iter().all(|e| complete(store, &e.digest)),
        },
        Err(_) => false,
    }
}

/// An image whose blobs are still to fetch, and what to record once they are there.
struct Todo {
    name: String,
    reg: Arc<Registry>,
    repo: String,
    blobs: Vec<Descriptor>,
    stored: Descriptor,
    lock: LockEntry,
    /// Blobs not yet settled; the image is finished when it reaches 0.
    left: std::sync::atomic::AtomicUsize,
    failures: Mutex<Vec<String>>,
}

enum Resolved {
    Unchanged(String),
    Todo(Box<Todo>),
}

/// Records a finished image (or reports why it failed).
fn finish_image(run: &Run, t: &Todo) {
    if run.sched.is_cancelled() {
        return;
    }
    let failures = t.failures.lock().unwrap_or_else(|p| p.into_inner());
    if failures.is_empty() {
        run.book.record(&t.name, t.stored.clone(), t.lock.clone());
        run.progress.image_done(&t.name, &t.stored.digest, false);
    } else {
        run.progress.image_failed(&t.name, &failures.join("; "));
    }
}

/// Resolves `r`: unchanged since the lock (one HEAD), or the manifests fetched into the
/// store and the blobs it needs listed.
async fn resolve_image(run: &Run, r: &Reference) -> Result<Resolved, String> {
    let name = r.to_string();
    let reg = run.sources.client(r)?;
    let repo = r.repository.clone();
    let selection = run.opts.selection();
    let lock = run.book.lock_entry(&name);
    // The one request of a re-run: what does the tag point at now? (A HEAD: Docker Hub
    // does not count it against the pull limit.)
    let source_digest = match &r.digest {
        Some(d) => d.clone(),
        None => {
            reg.head_manifest(&repo, r.manifest_ref())
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!("{}/{repo}:{} does not exist", reg.host(), r.manifest_ref())
                })?
                .digest
        }
    };
    if let Some(l) = &lock {
        if l.source_digest == source_digest
            && l.platforms == selection
            && complete(&run.store, &l.digest)
        {
            return Ok(Resolved::Unchanged(l.digest.clone()));
        }
    }
    let top = get_manifest(run, &reg, &repo, &source_digest).await?;
    let (top_bytes, top_type) = top;
    let parsed = manifest::parse(&top_bytes, &top_type).map_err(|e| format!("{name}: {e}"))?;
    let mut needed: Vec<Descriptor> = Vec::new();
    let stored: Descriptor = match parsed.kind {
        Kind::Image { blobs } => {
            needed.extend(blobs);
            descriptor(&parsed.media_type, &source_digest, top_bytes.len() as u64)
        }
        Kind::Index { entries, raw } => {
            let chosen: Vec<usize> = if run.opts.all_platforms {
                (0..entries.len()).collect()
            } else {
                let mut v = Vec::new();
                for p in &run.opts.platforms {
                    match entries.iter().position(|e| p.matches(e.platform.as_ref())) {
                        Some(i) if !v.contains(&i) => v.push(i),
                        Some(_) => {}
                        None => {
                            return Err(format!(
                                "no {p} image in it (it has {})",
                                manifest::offered(&entries)
                            ))
                        }
                    }
                }
                v
            };
            for &i in &chosen {
                let e = &entries[i];
                let (bytes, ct) = get_manifest(run, &reg, &repo, &e.digest).await?;
                let m = manifest::parse(&bytes, &ct).map_err(|x| format!("{}: {x}", e.digest))?;
                match m.kind {
                    Kind::Image { blobs } => needed.extend(blobs),
                    Kind::Index { .. } => {
                        return Err(format!("{} is an index inside an index", e.digest))
                    }
                }
            }
            if run.opts.all_platforms {
                descriptor(&parsed.media_type, &source_digest, top_bytes.len() as u64)
            } else if chosen.len() == 1 {
                // One platform: the tag names that platform's manifest (its own digest).
                let e = &entries[chosen[0]];
                descriptor(&e.media_type, &e.digest, e.size)
            } else {
                // Several: a new index of just those (the platform manifests keep their
                // digests; the index's is new).
                let doc = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": parsed.media_type,
                    "manifests": chosen.iter().map(|&i| raw[i].clone()).collect::<Vec<_>>(),
                });
                let bytes = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
                let d = super::store::digest_of(&bytes);
                run.store
                    .put_blob(&d, &bytes)
                    .map_err(|e| format!("writing to the store: {e}"))?;
                descriptor(&parsed.media_type, &d, bytes.len() as u64)
            }
        }
    };
    let mut seen = std::collections::HashSet::new();
    needed.retain(|b| seen.insert(b.digest.clone()));
    let lock = LockEntry {
        source_digest,
        digest: stored.digest.clone(),
        platforms: selection,
    };
    Ok(Resolved::Todo(Box::new(Todo {
        name,
        reg,
        repo,
        left: std::sync::atomic::AtomicUsize::new(needed.len()),
        blobs: needed,
        stored,
        lock,
        failures: Mutex::new(Vec::new()),
    })))
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size,
        annotations: Default::default(),
        platform: None,
    }
}

/// A manifest by digest: from the store when it is there, else fetched and stored.
async fn get_manifest(
    run: &Run,
    reg: &Registry,
    repo: &str,
    digest: &str,
) -> Result<(Vec<u8>, String), String> {
    if let Ok(b) = run.store.read_blob(digest) {
        if super::store::digest_of(&b) == digest {
            return Ok((b, String::new()));
        }
    }
    let (info, bytes) = reg
        .get_manifest(repo, digest)
        .await
        .map_err(|e| e.to_string())?;
    run.store
        .put_blob(&info.digest, &bytes)
        .map_err(|e| format!("writing manifest {digest} to the store: {e}"))?;
    Ok((bytes.to_vec(), info.media_type))
}

struct InFlight<'a>(&'a Progress);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.transfer_ended();
    }
}

/// Downloads one blob into the store, resuming with `Range` after a broken connection.
async fn fetch_blob(
    run: &Run,
    reg: &Registry,
    repo: &str,
    desc: &Descriptor,
) -> Result<Outcome, String> {
    if run.store.has_blob(&desc.digest, desc.size) {
        return Ok(Outcome::Present(desc.size));
    }
    run.progress.transfer_started();
    let _in_flight = InFlight(&run.progress);
    let io = |e: std::io::Error| format!("the store: {e}");
    let mut failures = 0;
    let mut restarted = false;
    let mut last = String::new();
    while failures < BLOB_ATTEMPTS {
        let mut part = run.store.begin(&desc.digest).map_err(io)?;
        if part.offset() > desc.size {
            part.reset().map_err(io)?;
        }
        if part.offset() == desc.size {
            match part.finish() {
                Ok(()) => return Ok(Outcome::Transferred(desc.size)),
                Err(_) => continue,
            }
        }
        let offset = part.offset();
        let stream = match reg.get_blob(repo, &desc.digest, offset).await {
            Ok(s) => s,
            Err(e) => return Err(e.to_string()),
        };
        if offset > 0 && !stream.partial {
            part.reset().map_err(io)?;
        }
        let mut body = stream.body;
        let mut broke = None;
        loop {
            // A connection that stalls without closing is a broken one: resume from here.
            let frame = match tokio::time::timeout(
                crate::images::client::STALL_TIMEOUT,
                body.frame(),
            )
            .await
            {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    broke = Some(format!(
                        "no data for {} s",
                        crate::images::client::STALL_TIMEOUT.as_secs()
                    ));
                    break;
                }
            };
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        part.write(&data).map_err(io)?;
                        reg.stats
                            .bytes_received
                            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        run.progress.moved(data.len() as u64);
                    }
                }
                Err(e) => {
                    broke = Some(e.to_string());
                    break;
                }
            }
            if part.offset() > desc.size {
                break;
            }
        }
        if let Some(e) = broke {
            failures += 1;
            last = format!("the connection broke at byte {}: {e}", part.offset());
            tracing::debug!("blob {}: {last}; resuming", desc.digest);
            tokio::time::sleep(Duration::from_millis(200 * failures as u64)).await;
            continue;
        }
        if part.offset() < desc.size {
            failures += 1;
            last = format!("the registry sent {} of {} bytes", part.offset(), desc.size);
            continue;
        }
        match part.finish() {
            Ok(()) => return Ok(Outcome::Transferred(desc.size)),
            Err(e) if !restarted => {
                // Wrong bytes: the partial file is gone; fetch it once more from zero.
                restarted = true;
                last = e.to_string();
                tracing::warn!("{last}; fetching it again");
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("gave up after {BLOB_ATTEMPTS} attempts: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::store::digest_of;

    #[test]
    fn an_image_with_a_damaged_manifest_is_not_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = b"layer bytes".to_vec();
        let config = b"{}".to_vec();
        let (ld, cd) = (digest_of(&layer), digest_of(&config));
        store.put_blob(&ld, &layer).unwrap();
        store.put_blob(&cd, &config).unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": ld, "size": layer.len()}],
        }))
        .unwrap();
        let md = digest_of(&manifest);
        store.put_blob(&md, &manifest).unwrap();
        assert!(complete(&store, &md));
        // still a valid manifest naming the same blobs, but not these bytes
        let text = String::from_utf8(manifest).unwrap().replacen(",", " ,", 1);
        std::fs::write(store.blob_file(&md).unwrap(), text).unwrap();
        assert!(!complete(&store, &md));
    }
}
