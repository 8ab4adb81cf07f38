//! One global transfer scheduler: every blob moves at most once per run across all images
//! (one transfer per key at any time, later askers share its outcome), at most
//! `parallelism` transfers at once, and Ctrl-C stops anything new from starting.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, Semaphore};

/// How a blob came to be where it is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its bytes crossed the network in this run.
    Transferred(u64),
    /// Already there (in the store, or in the destination repository).
    Present(u64),
    /// Mounted from another repository of the destination.
    Mounted(u64),
}

/// What a caller of [`Scheduler::once`] got: the outcome, and whether this caller was the
/// one that did the work (the others are deduplicated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    pub outcome: Outcome,
    pub first: bool,
}

type Cell = Arc<OnceCell<Result<Outcome, String>>>;

pub struct Scheduler {
    permits: Arc<Semaphore>,
    cells: Mutex<HashMap<String, Cell>>,
    cancelled: AtomicBool,
    parallelism: usize,
}

/// Why a transfer did not happen.
pub const CANCELLED: &str = "interrupted (Ctrl-C)";

impl Scheduler {
    pub fn new(parallelism: usize) -> Arc<Self> {
        let parallelism = parallelism.max(1);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(parallelism)),
            cells: Mutex::new(HashMap::new()),
            cancelled: AtomicBool::new(false),
            parallelism,
        })
    }

    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Stops scheduling: transfers not yet started fail with [`CANCELLED`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.permits.close();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Runs `work` for `key` unless it ran (or runs) already in this run, holding one of the
    /// `parallelism` permits while it runs. Every caller gets the same outcome; a failure
    /// is shared too (the images needing that blob fail with its reason).
    pub async fn once<F, Fut>(&self, key: &str, work: F) -> Result<Shared, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, String>>,
    {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
            cells.entry(key.to_string()).or_default().clone()
        };
        let mut first = false;
        let res = cell
            .get_or_init(|| {
                first = true;
                async {
                    if self.is_cancelled() {
                        return Err(CANCELLED.to_string());
                    }
                    let _permit = match self.permits.acquire().await {
                        Ok(p) => p,
                        Err(_) => return Err(CANCELLED.to_string()),
                    };
                    if self.is_cancelled() {
                        return Err(CANCELLED.to_string());
                    }
                    work().await
                }
            })
            .await
            .clone();
        res.map(|outcome| Shared { outcome, first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_transfer_per_key_and_every_caller_shares_it() {
        let s = Scheduler::new(8);
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = s.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("sha256:{}", i % 3);
                s.once(&key, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Outcome::Transferred(10))
                })
                .await
            }));
        }
        let mut firsts = 0;
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!(r.outcome, Outcome::Transferred(10));
            firsts += r.first as usize;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(firsts, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn never_more_than_parallelism_at_once() {
        let s = Scheduler::new(2);
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (s, now, peak) = (s.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                s.once(&i.to_string(), || async {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok(Outcome::Present(1))
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failure_is_shared_and_cancel_stops_new_work() {
        let s = Scheduler::new(2);
        let e = s
            .once("a", || async { Err::<Outcome, _>("boom".to_string()) })
            .await
            .unwrap_err();
        assert_eq!(e, "boom");
        let e = s
            .once("a", || async { Ok(Outcome::Present(1)) })
            .await
            .unwrap_err();
        assert_eq!(e, "boom");
        s.cancel();
        let ran = AtomicBool::new(false);
        let e = s
            .once("b", || async {
                ran.store(true, Ordering::SeqCst);
                Ok(Outcome::Present(1))
            })
            .await
            .unwrap_err();
        assert_eq!(e, CANCELLED);
        assert!(!ran.load(Ordering::SeqCst));
    }
}
