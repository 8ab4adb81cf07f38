//! `images push REF...`: pull and push in one run, overlapped. The pull fills the store
//! as always (verified, resumable, deduplicated, recorded in `index.json` and the lock
//! file); each image goes to the push the moment it is resolved, and each of its blobs is
//! placed in the destination the moment it has landed in the store. The push keeps its
//! own guarantees (HEAD / cross-repository mount / upload, manifests after their blobs,
//! the tag last), so a tag never names incomplete content, and a killed run is completed
//! by running it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::client::Registry;
use super::progress::{Mode, Progress, Summary};
use super::pull::{self, PullOptions, Watcher};
use super::push;
use super::reference::Reference;
use super::store::{Descriptor, Store};

type Landed = Option<Result<(), String>>;

/// Which blobs a pull running alongside has put in the store (or will not).
pub struct Arrivals {
    store: Store,
    slots: Mutex<HashMap<String, Arc<watch::Sender<Landed>>>>,
    /// The pull has ended: a blob not landed by then never will.
    ended: watch::Sender<bool>,
}

impl Arrivals {
    fn new(store: Store) -> Self {
        Self {
            store,
            slots: Mutex::new(HashMap::new()),
            ended: watch::channel(false).0,
        }
    }

    fn slot(&self, digest: &str) -> Arc<watch::Sender<Landed>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.to_string())
            .or_insert_with(|| Arc::new(watch::channel(None).0))
            .clone()
    }

    fn landed(&self, digest: &str, res: Result<(), String>) {
        self.slot(digest).send_replace(Some(res));
    }

    fn end(&self) {
        self.ended.send_replace(true);
    }

    /// Returns once blob `digest` (`size` bytes) is in the store; `Err` with the pull's
    /// reason when it will not be.
    pub async fn wait(&self, digest: &str, size: u64) -> Result<(), String> {
        let mut rx = self.slot(digest).subscribe();
        // In the store before this run (an unchanged image asks the pull for nothing).
        if self.store.has_blob(digest, size) {
            return Ok(());
        }
        let mut ended = self.ended.subscribe();
        tokio::select! {
            r = first(&mut rx) => if let Some(r) = r { return r },
            _ = ended.wait_for(|e| *e) => {}
        }
        let last = rx.borrow().clone();
        match last {
            Some(r) => r,
            None if self.store.has_blob(digest, size) => Ok(()),
            None => Err("the pull did not fetch it into the store".to_string()),
        }
    }
}

async fn first(rx: &mut watch::Receiver<Landed>) -> Landed {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    }
}

/// Hands what the pull resolved to the push, and what landed to [`Arrivals`].
struct Feed {
    images: Mutex<Option<mpsc::UnboundedSender<(String, Descriptor)>>>,
    arrivals: Arc<Arrivals>,
    progress: Arc<Progress>,
}

impl Feed {
    fn close(&self) {
        self.images.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Watcher for Feed {
    fn resolved(&self, name: &str, stored: &Descriptor) {
        if let Some(tx) = &*self.images.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send((name.to_string(), stored.clone()));
        }
    }

    fn failed(&self, name: &str, reason: &str) {
        self.progress.image_failed(name, reason);
    }

    fn blob(&self, digest: &str, res: Result<(), String>) {
        self.arrivals.landed(digest, res);
    }
}

/// Pulls `refs` into `store` and pushes them to `reg` at the same time. `progress` is the
/// push's (one line per image pushed, or failed at either end).
pub async fn copy(
    store: &Store,
    refs: Vec<Reference>,
    opts: PullOptions,
    reg: Arc<Registry>,
    progress: Arc<Progress>,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let (stop, _) = watch::channel(false);
    let stopped = || {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let arrivals = Arc::new(Arrivals::new(store.clone()));
    let feed = Arc::new(Feed {
        images: Mutex::new(Some(tx)),
        arrivals: arrivals.clone(),
        progress: progress.clone(),
    });
    let parallelism = opts.parallelism;
    let pull_progress = Arc::new(Progress::new(Mode::Silent, "pulled", refs.len()));
    let watcher: Arc<dyn Watcher> = feed.clone();
    let pulling = async {
        let r = pull::pull_watched(
            store,
            refs,
            opts,
            pull_progress,
            stopped(),
            Some(watcher),
            "images push",
        )
        .await;
        // Nothing more to push, and a blob that did not land by now never will.
        feed.close();
        arrivals.end();
        r
    };
    let pushing = push::push_arriving(
        store.clone(),
        reg,
        rx,
        arrivals.clone(),
        parallelism,
        progress,
        stopped(),
    );
    let both = async { tokio::join!(pulling, pushing) };
    tokio::pin!(both);
    let (pulled, pushed) = tokio::select! {
        r = &mut both => r,
        _ = interrupt => {
            stop.send_replace(true);
            both.await
        }
    };
    let pulled = pulled?;
    let mut pushed = pushed?;
    pushed.requests += pulled.requests;
    pushed.retries += pulled.retries;
    pushed.interrupted |= pulled.interrupted;
    Ok(pushed)
}
