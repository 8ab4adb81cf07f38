//! The per-environment lock: an advisory OS file lock on `state/<name>.lock`, so a run that
//! crashes or is killed never blocks the next one. The file's content (pid, host, command,
//! start time) only says who holds it.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Who ran it: the login name (`$USER`), for a lock teammates share.
    #[serde(default)]
    pub owner: String,
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started: String,
    /// The process's start time on its host (Linux: clock ticks since boot, from
    /// `/proc/<pid>/stat`), so a reused pid is not taken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
    /// A value only this run knows: a lock write whose reply was lost, found in place by
    /// the retry, is recognised as this run's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl Holder {
    pub fn current(command: &str) -> Self {
        Self {
            owner: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            pid: std::process::id(),
            host: this_host(),
            command: command.to_string(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            process_start: process_start(std::process::id()),
            nonce: Some(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// `alice (pid 42 on ws-1), since 2026-11-25T10:00:00Z (12 min ago)`.
    pub fn describe(&self) -> String {
        let who = if self.owner.is_empty() {
            String::new()
        } else {
            format!("{} ", self.owner)
        };
        format!(
            "{who}(pid {} on {}), since {}{}",
            self.pid,
            self.host,
            self.started,
            self.age()
                .map(|a| format!(" ({} ago)", crate::ui::human_duration(a)))
                .unwrap_or_default()
        )
    }

    /// How long ago the lock was taken, when `started` parses.
    pub fn age(&self) -> Option<std::time::Duration> {
        let started = chrono::DateTime::parse_from_rfc3339(&self.started).ok()?;
        (chrono::Utc::now() - started.with_timezone(&chrono::Utc))
            .to_std()
            .ok()
    }

    /// True when the holder ran on this host and its process no longer exists.
    pub fn is_dead_here(&self) -> bool {
        self.host == this_host() && !self.process_alive()
    }

    /// True when the holder runs on this host right now: its pid exists and (where the
    /// start time is known) is the same process, not a later one with a reused pid.
    pub fn is_alive_here(&self) -> bool {
        self.host == this_host() && self.process_alive()
    }

    fn process_alive(&self) -> bool {
        pid_alive(self.pid)
            && match (self.process_start, process_start(self.pid)) {
                (Some(recorded), Some(now)) => recorded == now,
                _ => true,
            }
    }
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`), where the OS says.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn this_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", locked_message(.path, .holder))]
    Locked {
        path: PathBuf,
        holder: Option<Box<Holder>>,
    },
    /// `unlock --force` while the holder is still running on this machine.
    #[error(
        "refusing to remove the lock {}: `provision {}` by {} is still running on this \
         machine. Stop it with Ctrl-C (it saves the state and exits) or wait for it; \
         `unlock --force` is for a lock whose run is gone",
        .path.display(), .holder.command, .holder.describe()
    )]
    HolderRunning { path: PathBuf, holder: Box<Holder> },
    #[error("cannot use lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn locked_message(path: &Path, holder: &Option<Box<Holder>>) -> String {
    match holder.as_deref() {
        Some(h) if h.is_dead_here() => format!(
            "the state is locked ({}): held for `provision {}` by {}, but that process is gone \
             (a child it started may still hold the lock). If no provision run is active, run `provision unlock --force`",
            path.display(),
            h.command,
            h.describe(),
        ),
        Some(h) => format!(
            "the state is locked by another run: `provision {}` by {}; wait for it to finish \
             (lock {}; `provision unlock --force` removes a lock whose run is gone)",
            h.command,
            h.describe(),
            path.display()
        ),
        None => format!("the state is locked by another run (lock {})", path.display()),
    }
}

/// A held lock; released when dropped (and by the OS if the process dies).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    pub fn acquire(path: &Path, command: &str) -> Result<Lock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(LockError::Locked {
                    path: path.to_path_buf(),
                    holder: read_holder(path).map(Box::new),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(LockError::Locked {
                    path: path.to_path_buf(),
                    holder: read_holder(path).map(Box::new),
                })
            }
            Err(e) => return Err(io(e)),
        }
        let holder = Holder::current(command);
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(
            serde_json::to_string(&holder)
                .expect("holder serializes")
                .as_bytes(),
        )
        .map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Lock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Empty the holder info, then release; the file itself stays (removing it would
        // race with a run that already opened it).
        let _ = self.file.set_len(0);
        let _ = FileExt::unlock(&self.file);
    }
}

pub fn read_holder(path: &Path) -> Option<Holder> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Outcome of `provision unlock`.
#[derive(Debug, PartialEq, Eq)]
pub enum Unlock {
    /// Nothing held the lock; the holder note (if any) was cleared.
    WasFree,
    /// The lock file was removed although a process still held it (`--force`).
    Forced(Option<Holder>),
}

/// Remove a stale lock. Without `force` a lock that is really held is refused.
pub fn unlock(path: &Path, force: bool) -> Result<Unlock, LockError> {
    if !path.exists() {
        return Ok(Unlock::WasFree);
    }
    match Lock::acquire(path, "unlock") {
        Ok(lock) => {
            drop(lock);
            Ok(Unlock::WasFree)
        }
        Err(LockError::Locked {
            holder: Some(holder),
            ..
        }) if force && holder.is_alive_here() => Err(LockError::HolderRunning {
            path: path.to_path_buf(),
            holder,
        }),
        Err(LockError::Locked { holder, .. }) if force => {
            fs::remove_file(path).map_err(|source| LockError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Unlock::Forced(holder.map(|h| *h)))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_holder_info_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.lock");
        let lock = Lock::acquire(&path, "apply").unwrap();
        let err = Lock::acquire(&path, "plan").unwrap_err();
        match &err {
            LockError::Locked {
                holder: Some(h), ..
            } => {
                assert_eq!(h.command, "apply");
                assert_eq!(h.pid, std::process::id());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("provision apply"), "{err}");
        drop(lock);
        Lock::acquire(&path, "plan").unwrap();
    }

    #[test]
    fn unlock_force_refuses_while_the_holder_runs_here() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.lock");
        let _lock = Lock::acquire(&path, "apply").unwrap();
        let err = unlock(&path, true).unwrap_err();
        assert!(matches!(err, LockError::HolderRunning { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("still running") && text.contains("provision apply"),
            "{text}"
        );
        assert!(path.exists());
        // The same pid with another start time is a reused pid: not the holder.
        let mut reused = Holder::current("apply");
        reused.process_start = reused.process_start.map(|t| t + 1);
        assert!(!reused.is_alive_here());
        assert!(Holder::current("apply").is_alive_here());
    }

    #[test]
    fn unlock_refuses_a_held_lock_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.lock");
        let lock = Lock::acquire(&path, "apply").unwrap();
        // The run that took it is gone (a child it started still holds the OS lock).
        let mut gone = Holder::current("apply");
        gone.pid = 0x3fff_fff0;
        let mut f = &lock.file;
        f.set_len(0).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(serde_json::to_string(&gone).unwrap().as_bytes())
            .unwrap();
        assert!(unlock(&path, false).is_err());
        assert!(matches!(
            unlock(&path, true).unwrap(),
            Unlock::Forced(Some(_))
        ));
        assert!(!path.exists());
        // A new lock works on a new file even though the old holder still has its fd.
        Lock::acquire(&path, "apply").unwrap();
    }

    #[test]
    fn dead_holder_on_this_host_is_detected() {
        let h = Holder {
            owner: "alice".into(),
            pid: 0x3fff_fff0,
            host: this_host(),
            command: "apply".into(),
            started: "x".into(),
            process_start: None,
            nonce: None,
        };
        assert!(h.is_dead_here());
        let msg = locked_message(Path::new("s.lock"), &Some(Box::new(h)));
        assert!(
            msg.contains("that process is gone") && msg.contains("provision unlock --force"),
            "{msg}"
        );
        // A holder that runs is not said to be gone.
        let alive = locked_message(
            Path::new("s.lock"),
            &Some(Box::new(Holder::current("apply"))),
        );
        assert!(!alive.contains("that process is gone"), "{alive}");
        assert!(!Holder::current("x").is_dead_here());
    }
}
