//! How the engine tells the world what it is doing, without printing anything itself
//! (after uv's `Reporter`). The terminal implementation lives in `ui`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Kind, LogicalId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Delete,
    Forget,
    Adopt,
    Create,
    Update,
}

impl StepKind {
    pub fn verb(self) -> &'static str {
        match self {
            StepKind::Create => "create",
            StepKind::Adopt => "adopt",
            StepKind::Update => "update",
            StepKind::Delete => "delete",
            StepKind::Forget => "forget",
        }
    }
}

pub trait Reporter: Send + Sync {
    fn step_started(&self, id: &LogicalId, step: StepKind, kind: Kind);
    /// A long-running step's live status (e.g. RDS `creating`), with the time so far.
    fn step_status(&self, id: &LogicalId, status: &str, elapsed: Duration);
    /// `Ok(cloud id)` or `Err(message)`.
    fn step_finished(
        &self,
        id: &LogicalId,
        step: StepKind,
        result: Result<&str, &str>,
        elapsed: Duration,
    );
    fn note(&self, message: &str);
    /// A step left `what` behind on purpose (a final snapshot, a secret in its recovery
    /// window): the summary names it.
    fn kept(&self, id: &LogicalId, what: &str) {
        self.note(&format!("{id}: kept {what}"));
    }
}

/// A reporter that records events, for tests.
#[derive(Default)]
pub struct Recording(pub std::sync::Mutex<Vec<String>>);

impl Reporter for Recording {
    fn step_started(&self, id: &LogicalId, step: StepKind, _kind: Kind) {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {} {id}", step.verb()));
    }
    fn step_status(&self, id: &LogicalId, status: &str, _elapsed: Duration) {
        self.0.lock().unwrap().push(format!("status {id} {status}"));
    }
    fn step_finished(
        &self,
        id: &LogicalId,
        step: StepKind,
        result: Result<&str, &str>,
        _elapsed: Duration,
    ) {
        let r = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error {e}"),
        };
        self.0
            .lock()
            .unwrap()
            .push(format!("done {} {id} {r}", step.verb()));
    }
    fn note(&self, message: &str) {
        self.0.lock().unwrap().push(format!("note {message}"));
    }
    fn kept(&self, id: &LogicalId, what: &str) {
        self.0.lock().unwrap().push(format!("kept {id} {what}"));
    }
}
