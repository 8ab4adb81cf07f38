//! Where the state document and its lock live: the local file (default) or S3
//! (`[state] backend = "s3"`, see [`super::s3`]). Commands and the engine only see this
//! trait; the document format is the same everywhere.
//!
//! A backend holds the lock it took: [`Backend::release`] gives it back (the commands call
//! it on every way out, Ctrl-C included). The local lock is an OS file lock that also ends
//! with the process; the S3 lock is an object that stays until released or forced.

use std::sync::Mutex;

use async_trait::async_trait;

use super::lock::{self, Lock, LockError, Unlock};
use super::{store, Paths, State, StateError};

#[async_trait]
pub trait Backend: Send + Sync {
    /// `state/lab.json` or `s3://bucket/key`, for messages.
    fn location(&self) -> String;
    /// The state, or `None` when there is none yet.
    async fn load(&self) -> Result<Option<State>, StateError>;
    /// Bump the serial and store `state` (after every step of apply and destroy). On
    /// failure the in-memory serial is left as it was.
    async fn save(&self, state: &mut State) -> Result<(), StateError>;
    /// Store `state` as it is, serial included (`state push` / `state pull`), replacing
    /// what [`Backend::load`] last saw.
    async fn overwrite(&self, state: &State) -> Result<(), StateError>;
    /// Take the environment's lock for `command`.
    async fn lock(&self, command: &str) -> Result<(), LockError>;
    /// Give back the lock this backend took, if any. Never fails: a lock that cannot be
    /// released is reported and left for `provision unlock`.
    async fn release(&self);
    /// `provision unlock [--force]`.
    async fn unlock(&self, force: bool) -> Result<Unlock, LockError>;
    /// Whether the env's generated secrets are shared through Secrets Manager (S3
    /// backend) rather than kept only in the local secrets folder.
    fn shares_secrets(&self) -> bool {
        false
    }
    /// The shared secrets bundle, `None` when there is none (yet).
    async fn shared_secrets(&self) -> Result<Option<String>, StateError> {
        Ok(None)
    }
}

/// `state/<name>.json` under `--state-dir`, with its `.backup` and an OS file lock.
pub struct LocalBackend {
    paths: Paths,
    env: String,
    held: Mutex<Option<Lock>>,
}

impl LocalBackend {
    pub fn new(paths: Paths, env: &str) -> Self {
        Self {
            paths,
            env: env.to_string(),
            held: Mutex::new(None),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.paths.state.display().to_string()
    }

    async fn load(&self) -> Result<Option<State>, StateError> {
        store::load(&self.paths, &self.env)
    }

    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        store::save(&self.paths, state)
    }

    async fn overwrite(&self, state: &State) -> Result<(), StateError> {
        let mut text = serde_json::to_vec_pretty(state).expect("state serializes");
        text.push(b'\n');
        store::write_atomic(&self.paths.state, Some(&self.paths.backup), &text, 0o600).map_err(
            |source| StateError::Write {
                path: self.paths.state.clone(),
                source,
            },
        )
    }

    async fn lock(&self, command: &str) -> Result<(), LockError> {
        let lock = Lock::acquire(&self.paths.lock, command)?;
        *self.held.lock().expect("lock slot") = Some(lock);
        Ok(())
    }

    async fn release(&self) {
        self.held.lock().expect("lock slot").take();
    }

    async fn unlock(&self, force: bool) -> Result<Unlock, LockError> {
        lock::unlock(&self.paths.lock, force)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_backend_locks_saves_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(Paths::new(dir.path(), "lab"), "lab");
        assert!(b.load().await.unwrap().is_none());
        b.lock("apply").await.unwrap();
        let other = LocalBackend::new(Paths::new(dir.path(), "lab"), "lab");
        assert!(matches!(
            other.lock("plan").await,
            Err(LockError::Locked { .. })
        ));
        let mut state = State::new("lab");
        b.save(&mut state).await.unwrap();
        assert_eq!(b.load().await.unwrap().unwrap().serial, 1);
        b.release().await;
        other.lock("plan").await.unwrap();
        assert!(b.location().ends_with("lab.json"));
    }
}
