//! Reading less: answers asked once and shared.
//!
//! * [`Memo`]: what does not change during one run of the tool (an image, the zones of the
//!   region, what an instance type runs, the engine versions RDS offers): asked once by
//!   whoever needs it first (`plan`'s preflight, usually), then remembered. Concurrent
//!   askers share the one call; a failed call is not remembered.
//! * [`Survey`]: while `plan` reads an environment (between `Cloud::begin_survey` and
//!   `end_survey`, when nothing changes the cloud), each kind is listed once by the
//!   environment's tag (or, where the API has no tag filter, listed whole and matched by
//!   tags), and `find`, `read` and `list_owned` answer from those lists. A resource the
//!   lists do not hold (its tags were removed, or it is gone) is still read by its id, so
//!   a survey never changes what a plan concludes, only how many calls it takes.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::cloud::CloudError;

type Cell = Arc<OnceCell<Arc<dyn Any + Send + Sync>>>;

/// Answers by key, each fetched at most once (successfully).
#[derive(Default)]
pub struct Memo {
    cells: Mutex<HashMap<String, Cell>>,
}

impl Memo {
    /// The answer for `key`, from `fetch` the first time.
    pub async fn get<T, F, Fut>(&self, key: impl Into<String>, fetch: F) -> Result<T, CloudError>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let key = key.into();
        let cell = self
            .cells
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .clone();
        let value = cell
            .get_or_try_init(|| async {
                fetch()
                    .await
                    .map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>)
            })
            .await?;
        value
            .downcast_ref::<T>()
            .cloned()
            .ok_or_else(|| CloudError::api("Memo", "TypeMismatch", format!("memo key {key}")))
    }
}

/// Answers by key, asked in batches: the keys asked while a call is being prepared go
/// into that one call (the preflight checks of every instance run at once, and ask one
/// `DescribeInstanceTypes` for all their types). Each key is then remembered for the run.
/// When a batch fails, each key is asked again on its own (the error then names it).
pub struct Batched<V> {
    inner: Mutex<BatchState<V>>,
    notify: tokio::sync::Notify,
}

struct BatchState<V> {
    done: HashMap<String, V>,
    queued: Vec<String>,
    flushing: bool,
}

impl<V> Default for Batched<V> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(BatchState {
                done: HashMap::new(),
                queued: Vec::new(),
                flushing: false,
            }),
            notify: tokio::sync::Notify::new(),
        }
    }
}

impl<V: Clone> Batched<V> {
    /// The answer for `key`; `fetch(keys)` answers a batch (every key it is given).
    pub async fn get<F, Fut>(&self, key: &str, fetch: F) -> Result<V, CloudError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: Future<Output = Result<HashMap<String, V>, CloudError>>,
    {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lead = {
                let mut state = self.inner.lock().unwrap();
                if let Some(v) = state.done.get(key) {
                    return Ok(v.clone());
                }
                if !state.queued.iter().any(|k| k == key) {
                    state.queued.push(key.to_string());
                }
                !std::mem::replace(&mut state.flushing, true)
            };
            if !lead {
                notified.await;
                continue;
            }
            // Let the other askers of this moment add their keys.
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            let batch = std::mem::take(&mut self.inner.lock().unwrap().queued);
            let answer = fetch(batch.clone()).await;
            {
                let mut state = self.inner.lock().unwrap();
                state.flushing = false;
                if let Ok(found) = &answer {
                    state.done.extend(found.clone());
                }
                // What the batch did not answer goes again (on its own next time).
                if answer.is_err() {
                    state
                        .queued
                        .retain(|k| k != key && !batch.iter().any(|b| b == k));
                }
            }
            self.notify.notify_waiters();
            match answer {
                Ok(mut found) if batch.len() > 1 || found.contains_key(key) => {
                    if let Some(v) = found.remove(key) {
                        return Ok(v);
                    }
                }
                Ok(_) => {
                    return Err(CloudError::api(
                        "Batch",
                        "NoAnswer",
                        format!("nothing came back for {key}"),
                    ))
                }
                // A batch of several failed: ask for this key alone.
                Err(_) if batch.len() > 1 => {
                    let alone = fetch(vec![key.to_string()]).await?;
                    let v = alone.get(key).cloned().ok_or_else(|| {
                        CloudError::api("Batch", "NoAnswer", format!("nothing came back for {key}"))
                    })?;
                    self.inner
                        .lock()
                        .unwrap()
                        .done
                        .insert(key.to_string(), v.clone());
                    return Ok(v);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The lists of one environment's resources, kind by kind, while `plan` reads it.
pub struct Survey {
    pub env: String,
    pub lists: Memo,
}

/// The survey of `env` on `slot`, if one is running.
pub fn survey_of(slot: &Mutex<Option<Arc<Survey>>>, env: &str) -> Option<Arc<Survey>> {
    slot.lock()
        .unwrap()
        .as_ref()
        .filter(|s| s.env == env)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn keys_asked_together_go_in_one_call() {
        let batched: Batched<usize> = Batched::default();
        let calls = Mutex::new(Vec::new());
        let fetch = |keys: Vec<String>| {
            calls.lock().unwrap().push(keys.clone());
            async move { Ok(keys.into_iter().map(|k| (k.clone(), k.len())).collect()) }
        };
        let asks =
            ["t3.large", "t3.medium", "t3.large", "m7g.xlarge"].map(|k| batched.get(k, fetch));
        let got: Vec<usize> = futures::future::try_join_all(asks).await.unwrap();
        assert_eq!(got, vec![8, 9, 8, 10]);
        assert_eq!(
            calls.lock().unwrap().len(),
            1,
            "{:?}",
            calls.lock().unwrap()
        );
        // Remembered.
        assert_eq!(batched.get("t3.medium", fetch).await.unwrap(), 9);
        assert_eq!(calls.lock().unwrap().len(), 1);
        // A failing batch: each key alone, so the error names it.
        let failing = |keys: Vec<String>| async move {
            if keys.iter().any(|k| k == "bad") {
                Err(CloudError::api(
                    "DescribeInstanceTypes",
                    "InvalidInstanceType",
                    "bad",
                ))
            } else {
                Ok(keys.into_iter().map(|k| (k.clone(), 1)).collect())
            }
        };
        let (good, bad) = tokio::join!(
            batched.get("c5.large", failing),
            batched.get("bad", failing)
        );
        assert_eq!(good.unwrap(), 1);
        assert!(bad.is_err());
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_call_and_failures_are_not_kept() {
        let memo = Memo::default();
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            Ok::<_, CloudError>(vec!["us-east-1a".to_string()])
        };
        let (a, b) = tokio::join!(memo.get("zones", fetch), memo.get("zones", fetch));
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let failing = || async { Err::<u32, _>(CloudError::api("Op", "Throttling", "slow down")) };
        assert!(memo.get("n", failing).await.is_err());
        assert_eq!(memo.get("n", || async { Ok(7u32) }).await.unwrap(), 7);
    }
}
