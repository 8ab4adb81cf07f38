//! The state file: what this environment owns in the cloud.
//!
//! `state/<name>.json` holds a format version, a lineage (fixed when the file is first
//! written), a serial (bumped on every save) and one entry per logical resource. It never
//! holds a password, private key or token; specs keep only hashes of user-data.
//! Writes go through [`store::write_atomic`]; [`lock`] keeps two runs apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Attrs, Kind, LogicalId, Observed, Spec};

pub mod backend;
pub mod lock;
#[cfg(feature = "aws")]
pub mod s3;
pub mod store;

pub use backend::{Backend, LocalBackend};

pub const FORMAT_VERSION: u32 = 1;

/// Where a resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Write-ahead intent: a create call is about to be (or was) sent with `token`; the
    /// cloud id is not known yet. The next run looks for it before creating anything.
    Creating,
    /// Exists in the cloud with `cloud_id`.
    Created,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub status: Status,
    /// Empty while `Creating`.
    #[serde(default)]
    pub cloud_id: String,
    /// Idempotency token of the create call (EC2 ClientToken, Route53 CallerReference).
    pub token: String,
    /// The create sent with `token` came back with a definite failure (an instance that
    /// died while starting, a refused call). The next run still looks for what the token
    /// made, but a new create gets a new token: the cloud would answer the old one with
    /// the same failed resource.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_spent: bool,
    /// The spec the resource was last created or updated to.
    pub spec: Spec,
    #[serde(default)]
    pub attrs: Attrs,
    #[serde(default)]
    pub depends_on: Vec<LogicalId>,
    /// When the step recorded here finished (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

impl Entry {
    pub fn observed(&self) -> Observed {
        Observed::new(self.cloud_id.clone(), self.attrs.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    pub lineage: String,
    /// Where and when this lineage began (`<host> <UTC minute>`), tagged on every resource
    /// as `provision:origin` so another folder's refusal can name it. Empty in states
    /// written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    pub serial: u64,
    pub env: String,
    pub resources: BTreeMap<LogicalId, Entry>,
}

impl State {
    pub fn new(env: &str) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            origin: origin_here(),
            serial: 0,
            env: env.to_string(),
            resources: BTreeMap::new(),
        }
    }

    /// A state with nothing recorded yet (never saved, or saved before its first change).
    pub fn is_fresh(&self) -> bool {
        self.serial == 0 && self.resources.is_empty()
    }

    /// The owner every resource of this state is tagged with.
    pub fn owner(&self) -> crate::model::Owner {
        crate::model::Owner {
            lineage: self.lineage.clone(),
            origin: self.origin.clone(),
        }
    }

    /// Created resources as a [`crate::model::Resolved`] map for the cloud adapters.
    pub fn resolved(&self) -> crate::model::Resolved {
        crate::model::Resolved {
            entries: self
                .resources
                .iter()
                .filter(|(_, e)| e.status == Status::Created)
                .map(|(id, e)| (id.clone(), e.observed()))
                .collect(),
        }
    }
}

/// `<host> <UTC minute>`, in the characters every AWS tag value accepts.
fn origin_here() -> String {
    let host: String = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    format!("{host} {}", chrono::Utc::now().format("%Y-%m-%dT%H:%MZ"))
}

/// Paths of one environment's files under the state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub backup: PathBuf,
    pub lock: PathBuf,
    /// `state/<name>/` — secrets and artifacts live below.
    pub env_dir: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path, env: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            state: dir.join(format!("{env}.json")),
            backup: dir.join(format!("{env}.json.backup")),
            lock: dir.join(format!("{env}.lock")),
            env_dir: dir.join(env),
        }
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.env_dir.join("secrets")
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.env_dir.join("artifacts")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file {path} is damaged ({reason}); it was left untouched. The previous version is in {backup}{backup_note}: \
         check it and copy it over the damaged file to use it"
    )]
    Corrupt {
        path: PathBuf,
        reason: String,
        backup: PathBuf,
        backup_note: String,
    },
    #[error(
        "state file {path} belongs to environment `{found}`, but the config names `{expected}`"
    )]
    WrongEnv {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("state file {path} has format version {found}; this provision reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    /// A remote state document that does not parse; left untouched.
    #[error(
        "{location} is not a provision state document ({reason}); it was left untouched. \
         Earlier versions are in the bucket's version history \
         (aws s3api list-object-versions --bucket {bucket} --prefix {key})"
    )]
    RemoteCorrupt {
        location: String,
        bucket: String,
        key: String,
        reason: String,
    },
    /// The remote store refused or failed a read or write.
    #[error("{location}: {message}{}", rescue_note(.rescue))]
    Remote {
        location: String,
        message: String,
        rescue: Option<PathBuf>,
    },
    /// Someone else wrote the state since this run read it (`If-Match` failed).
    #[error(
        "{location} was changed by another run since this one read it (its ETag is no longer \
         {etag}); stopped before any further change{}",
        rescue_note(.rescue)
    )]
    Conflict {
        location: String,
        etag: String,
        rescue: Option<PathBuf>,
    },
    /// The lock this run took is gone or belongs to someone else now.
    #[error(
        "this run no longer holds the lock {location} ({why}): someone ran `provision unlock \
         --force`. Stopped before writing the state again{}",
        rescue_note(.rescue)
    )]
    LockLost {
        location: String,
        why: String,
        rescue: Option<PathBuf>,
    },
    #[error(
        "state file {path} was replaced while this run held it (lineage {found}, expected {expected}); refusing to overwrite it"
    )]
    Lineage {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

fn rescue_note(rescue: &Option<PathBuf>) -> String {
    match rescue {
        Some(path) => format!(
            ". This run's state (every step it finished) is saved in {}: check who else ran, \
             then `provision state push --from {} --force` to make it the shared state",
            path.display(),
            path.display()
        ),
        None => String::new(),
    }
}
