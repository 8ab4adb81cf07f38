//! Everything the terminal sees: the progress reporter, plan rendering and prompts. The
//! engine never prints; it reports through [`crate::engine::Reporter`].

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::{Action, ActionKind, Plan, Reporter, StepKind};
use crate::model::{Kind, LogicalId};

/// How much to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Line-oriented progress on stderr: one line when a step starts, one when it ends, and
/// status lines for long waits (only when the status changes, or every 30 s).
pub struct TerminalReporter {
    verbosity: Verbosity,
    last_status: Mutex<HashMap<LogicalId, (String, Duration)>>,
}

impl TerminalReporter {
    pub fn new(verbosity: Verbosity) -> Self {
        Self {
            verbosity,
            last_status: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: &str) {
        if self.verbosity >= Verbosity::Normal {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        }
    }
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Reporter for TerminalReporter {
    fn step_started(&self, id: &LogicalId, step: StepKind, kind: Kind) {
        self.line(&format!("  {} {id} ({kind}) ...", step_verb_ing(step)));
    }

    fn step_status(&self, id: &LogicalId, status: &str, elapsed: Duration) {
        let mut last = self.last_status.lock().unwrap();
        let show = match last.get(id) {
            Some((s, at)) => s != status || elapsed.saturating_sub(*at) >= Duration::from_secs(30),
            None => true,
        };
        if show {
            last.insert(id.clone(), (status.to_string(), elapsed));
            drop(last);
            self.line(&format!("    {id}: {status} ({})", human_duration(elapsed)));
        }
    }

    fn step_finished(
        &self,
        id: &LogicalId,
        step: StepKind,
        result: Result<&str, &str>,
        elapsed: Duration,
    ) {
        match result {
            Ok(cloud_id)
                if cloud_id.is_empty() || step == StepKind::Delete || step == StepKind::Forget =>
            {
                self.line(&format!(
                    "  ✓ {id} {} ({})",
                    step_done(step),
                    human_duration(elapsed)
                ))
            }
            Ok(cloud_id) => self.line(&format!(
                "  ✓ {id} {} {cloud_id} ({})",
                step_done(step),
                human_duration(elapsed)
            )),
            // Failures are always shown, even with --quiet.
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "  ✗ {id}: {} failed after {}: {e}",
                    step.verb(),
                    human_duration(elapsed)
                );
            }
        }
    }

    fn note(&self, message: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{message}");
    }
}

fn step_verb_ing(step: StepKind) -> &'static str {
    match step {
        StepKind::Create => "creating",
        StepKind::Adopt => "adopting",
        StepKind::Update => "updating",
        StepKind::Delete => "deleting",
        StepKind::Forget => "forgetting",
    }
}

fn step_done(step: StepKind) -> &'static str {
    match step {
        StepKind::Create => "created",
        StepKind::Adopt => "adopted",
        StepKind::Update => "updated",
        StepKind::Delete => "deleted",
        StepKind::Forget => "forgotten (already gone)",
    }
}

/// The human rendering of a plan.
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    let changes: Vec<&Action> = plan.changes().collect();
    if changes.is_empty() {
        out.push_str(if plan.destroy {
            "No changes. Nothing owned by this environment exists.\n"
        } else {
            "No changes. The infrastructure matches the config.\n"
        });
        return out;
    }
    let width = changes
        .iter()
        .map(|a| a.id.as_str().len())
        .max()
        .unwrap_or(10);
    for a in &changes {
        let cloud = a
            .current
            .as_ref()
            .map(|c| format!(" [{}]", c.cloud_id))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:>3} {:<width$}  {:<15} {}{}\n",
            a.action.symbol(),
            a.id.as_str(),
            a.kind.label(),
            a.action.verb(),
            cloud,
        ));
        for r in &a.reasons {
            out.push_str(&format!("        {:width$}  - {r}\n", ""));
        }
        if let Some(loss) = &a.data_loss {
            out.push_str(&format!("        {:width$}  ! DATA LOSS: {loss}\n", ""));
        }
    }
    out.push('\n');
    out.push_str(&summary(plan));
    out.push('\n');
    let losses = plan.data_losses().count();
    if losses > 0 {
        out.push_str(&format!(
            "! {losses} action(s) destroy data; apply needs --allow-data-loss.\n"
        ));
    }
    out
}

pub fn summary(plan: &Plan) -> String {
    let n = |k| plan.count(k);
    let mut parts = vec![
        format!("{} to create", n(ActionKind::Create)),
        format!("{} to update", n(ActionKind::Update)),
        format!("{} to replace", n(ActionKind::Replace)),
        format!("{} to delete", n(ActionKind::Delete)),
    ];
    if n(ActionKind::Adopt) > 0 {
        parts.push(format!("{} to adopt", n(ActionKind::Adopt)));
    }
    if n(ActionKind::Forget) > 0 {
        parts.push(format!("{} to forget", n(ActionKind::Forget)));
    }
    format!("Plan: {}.", parts.join(", "))
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{what} needs confirmation, but standard input is not a terminal; run again with --yes to {what} without asking")]
    NotATerminal { what: String },
    #[error("cancelled: you did not answer `yes`")]
    Declined,
}

/// Ask for `yes` on a terminal; refuse (never hang) without one.
pub fn confirm(what: &str, question: &str) -> Result<(), PromptError> {
    if !std::io::stdin().is_terminal() {
        return Err(PromptError::NotATerminal {
            what: what.to_string(),
        });
    }
    eprint!("{question}\n  Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|_| PromptError::Declined)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(PromptError::Declined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
    }
}
