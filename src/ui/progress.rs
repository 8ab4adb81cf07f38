//! Progress of `apply` and `destroy`, rendered from the engine's [`Reporter`] events in
//! one of three ways:
//!
//! * **live** (stderr is a terminal): one spinner line per running step with its elapsed
//!   time and the cloud's own status; finished steps scroll above with their durations;
//! * **plain** (piped, or `-v`, whose log lines would tear a live view): one timestamped
//!   line per event, no control characters;
//! * **json** (`--json`): one JSON object per event on stdout, for CI.
//!
//! Each ends with a summary: total time and the critical path (the chain of steps, each
//! started when the one before it finished, that ends with the last step).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::json::FORMAT_VERSION;
use super::style::Style;
use super::{human_duration, Verbosity};
use crate::engine::{Reporter, Step, StepKind};
use crate::model::{Kind, LogicalId};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Plain,
    Json,
}

/// One finished step, for the summary.
#[derive(Debug, Clone)]
struct Span {
    id: LogicalId,
    step: StepKind,
    start: Duration,
    end: Duration,
}

/// What a run came to, for the summary.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: bool,
    pub elapsed: Duration,
}

/// A clock, so tests can pin timestamps.
pub type Clock = Box<dyn Fn() -> String + Send + Sync>;

fn utc_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub struct Progress {
    mode: Mode,
    verbosity: Verbosity,
    style: Style,
    out: Mutex<Box<dyn Write + Send>>,
    clock: Clock,
    started: Instant,
    live: Option<MultiProgress>,
    bars: Mutex<HashMap<LogicalId, (ProgressBar, Duration)>>,
    spans: Mutex<Vec<Span>>,
    /// What each step waits for (the engine's step graph: a create its dependencies, a
    /// delete its dependents), for the critical path and the JSON `after`.
    waits_for: Mutex<HashMap<Step, Vec<Step>>>,
    last_status: Mutex<HashMap<LogicalId, (String, Duration)>>,
    /// What steps left behind on purpose (final snapshots, secrets in their recovery
    /// window), for the summary.
    kept: Mutex<Vec<String>>,
}

impl Progress {
    /// Progress on this process's stderr (stdout for `--json`).
    pub fn for_terminal(mode: Mode, verbosity: Verbosity) -> Self {
        let out: Box<dyn Write + Send> = match mode {
            Mode::Json => Box::new(std::io::stdout()),
            _ => Box::new(std::io::stderr()),
        };
        let style = if mode == Mode::Live {
            Style::stderr()
        } else {
            Style::PLAIN
        };
        let mut p = Self::new(mode, verbosity, out, Box::new(utc_now));
        p.style = style;
        if mode == Mode::Live {
            p.live = Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        }
        p
    }

    /// Progress written to `out` (tests); live mode draws nothing here.
    pub fn new(mode: Mode, verbosity: Verbosity, out: Box<dyn Write + Send>, clock: Clock) -> Self {
        Progress {
            mode,
            verbosity,
            style: Style::PLAIN,
            out: Mutex::new(out),
            clock,
            started: Instant::now(),
            live: None,
            bars: Mutex::new(HashMap::new()),
            spans: Mutex::new(Vec::new()),
            waits_for: Mutex::new(HashMap::new()),
            last_status: Mutex::new(HashMap::new()),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The mode for this terminal: JSON when asked, live on a terminal unless `-v` (its
    /// log lines would tear the live view), plain otherwise.
    pub fn pick_mode(json: bool, stderr_is_terminal: bool, verbosity: Verbosity) -> Mode {
        if json {
            Mode::Json
        } else if stderr_is_terminal && verbosity == Verbosity::Normal {
            Mode::Live
        } else {
            Mode::Plain
        }
    }

    fn line(&self, text: &str) {
        if let Some(mp) = &self.live {
            let _ = mp.println(text);
        } else {
            let mut out = self.out.lock().unwrap();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    fn plain(&self, tag: &str, text: &str) {
        self.line(&format!("{} {tag:<7} {text}", (self.clock)()));
    }

    fn event(&self, mut value: serde_json::Value) {
        if let Some(o) = value.as_object_mut() {
            o.insert("format_version".into(), json!(FORMAT_VERSION));
            o.insert("time".into(), json!((self.clock)()));
        }
        self.line(&value.to_string());
    }

    /// Emit a JSON event from outside the engine (the plan, a refusal).
    pub fn json_event(&self, value: serde_json::Value) {
        if self.mode == Mode::Json {
            self.event(value);
        }
    }

    fn shows_progress(&self) -> bool {
        self.mode == Mode::Json || self.verbosity >= Verbosity::Normal
    }

    /// Tell the critical path what each step waits for. Without it, the path follows
    /// timing alone (the step that ended last before this one started).
    pub fn set_waits_for(&self, waits_for: HashMap<Step, Vec<Step>>) {
        *self.waits_for.lock().unwrap() = waits_for;
    }

    /// The critical path: from the step that ended last, back through what it waited for
    /// that ended last, and so on.
    fn critical_path(&self) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        let waits_for = self.waits_for.lock().unwrap();
        let slack = Duration::from_millis(250);
        let mut path: Vec<Span> = Vec::new();
        let mut current = spans.iter().max_by_key(|s| s.end).cloned();
        while let Some(span) = current {
            let deps = waits_for.get(&Step {
                id: span.id.clone(),
                kind: span.step,
            });
            current = spans
                .iter()
                .filter(|s| s.end <= span.start + slack && s.end < span.end)
                .filter(|s| {
                    waits_for.is_empty()
                        || deps.is_some_and(|d| d.iter().any(|d| d.id == s.id && d.kind == s.step))
                })
                .filter(|s| !path.iter().any(|p| p.id == s.id && p.step == s.step))
                .max_by_key(|s| s.end)
                .cloned();
            path.push(span);
        }
        path.reverse();
        path
    }

    /// The closing summary: total time and the critical path.
    pub fn finish(&self, what: &str, summary: &RunSummary) {
        if let Some(mp) = &self.live {
            let _ = mp.clear();
        }
        let path = self.critical_path();
        match self.mode {
            Mode::Json => self.event(json!({
                "type": "summary",
                "command": what,
                "succeeded": summary.succeeded,
                "failed": summary.failed,
                "skipped": summary.skipped,
                "interrupted": summary.interrupted,
                "elapsed_seconds": summary.elapsed.as_secs_f64(),
                "critical_path": path.iter().map(|s| json!({
                    "id": s.id,
                    "step": s.step,
                    "seconds": (s.end - s.start).as_secs_f64(),
                })).collect::<Vec<_>>(),
            })),
            _ if self.verbosity < Verbosity::Normal => {}
            _ => {
                let outcome = if summary.interrupted {
                    "interrupted"
                } else if summary.failed > 0 {
                    "failed"
                } else {
                    "complete"
                };
                let title = match what {
                    "destroy" => "Destroy",
                    _ => "Apply",
                };
                let mut text = format!(
                    "{title} {outcome}: {} step(s) done, {} failed, {} not started, in {}.",
                    summary.succeeded,
                    summary.failed,
                    summary.skipped,
                    human_duration(summary.elapsed)
                );
                if !path.is_empty() {
                    text.push_str(&format!(
                        "\nCritical path: {}",
                        path.iter()
                            .map(|s| format!(
                                "{} {} ({})",
                                s.step.verb(),
                                s.id,
                                human_duration(s.end - s.start)
                            ))
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ));
                }
                if self.mode == Mode::Plain {
                    self.plain("summary", &text.replace('\n', " "));
                } else {
                    self.line(&self.style.bold(&text));
                }
                let kept = self.kept.lock().unwrap().clone();
                if !kept.is_empty() {
                    let mut list = String::from("Kept (not deleted):");
                    for k in &kept {
                        list.push_str(&format!("\n  - {k}"));
                    }
                    if self.mode == Mode::Plain {
                        for k in &kept {
                            self.plain("kept", k);
                        }
                    } else {
                        self.line(&list);
                    }
                }
            }
        }
    }
}

impl Reporter for Progress {
    fn step_started(&self, id: &LogicalId, step: StepKind, kind: Kind) {
        let at = self.started.elapsed();
        if !self.shows_progress() {
            return;
        }
        match self.mode {
            Mode::Json => {
                let mut event = json!({
                    "type": "step_started", "id": id, "step": step, "kind": kind,
                });
                let waits_for = self.waits_for.lock().unwrap();
                let me = Step {
                    id: id.clone(),
                    kind: step,
                };
                if let Some(after) = waits_for.get(&me) {
                    event["after"] = after
                        .iter()
                        .map(|s| json!({"id": s.id, "step": s.kind}))
                        .collect();
                }
                drop(waits_for);
                self.event(event)
            }
            Mode::Plain => self.plain("start", &format!("{} {id} ({kind})", step.verb())),
            Mode::Live => {
                let Some(mp) = &self.live else { return };
                let bar = mp.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} {prefix} {elapsed:>4} {wide_msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{} {id}", step_verb_ing(step)));
                bar.set_message(format!("({kind})"));
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars.lock().unwrap().insert(id.clone(), (bar, at));
            }
        }
    }

    fn step_status(&self, id: &LogicalId, status: &str, elapsed: Duration) {
        if !self.shows_progress() {
            return;
        }
        match self.mode {
            Mode::Live => {
                if let Some((bar, _)) = self.bars.lock().unwrap().get(id) {
                    bar.set_message(status.to_string());
                }
            }
            _ => {
                // Plain and JSON: only when the status changes, or every 30 s.
                let mut last = self.last_status.lock().unwrap();
                let show = match last.get(id) {
                    Some((s, at)) => {
                        s != status || elapsed.saturating_sub(*at) >= Duration::from_secs(30)
                    }
                    None => true,
                };
                if !show {
                    return;
                }
                last.insert(id.clone(), (status.to_string(), elapsed));
                drop(last);
                if self.mode == Mode::Json {
                    self.event(json!({
                        "type": "step_status", "id": id, "status": status,
                        "elapsed_seconds": elapsed.as_secs_f64(),
                    }));
                } else {
                    self.plain(
                        "status",
                        &format!("{id}: {status} ({})", human_duration(elapsed)),
                    );
                }
            }
        }
    }

    fn step_finished(
        &self,
        id: &LogicalId,
        step: StepKind,
        result: Result<&str, &str>,
        elapsed: Duration,
    ) {
        let end = self.started.elapsed();
        let start = match self.bars.lock().unwrap().remove(id) {
            Some((bar, start)) => {
                bar.finish_and_clear();
                start
            }
            None => end.saturating_sub(elapsed),
        };
        self.spans.lock().unwrap().push(Span {
            id: id.clone(),
            step,
            start,
            end,
        });
        let took = human_duration(elapsed);
        match (self.mode, result) {
            (Mode::Json, Ok(cloud_id)) => self.event(json!({
                "type": "step_finished", "id": id, "step": step, "cloud_id": cloud_id,
                "elapsed_seconds": elapsed.as_secs_f64(),
            })),
            (Mode::Json, Err(e)) => self.event(json!({
                "type": "step_failed", "id": id, "step": step, "error": e,
                "hint": super::hints::hint(e),
                "elapsed_seconds": elapsed.as_secs_f64(),
            })),
            (_, Ok(_)) if self.verbosity < Verbosity::Normal => {}
            (Mode::Plain, Ok(cloud_id)) => {
                let cloud = shown_cloud_id(step, cloud_id);
                self.plain("done", &format!("{} {id}{cloud} ({took})", step.verb()));
            }
            (Mode::Live, Ok(cloud_id)) => {
                let cloud = shown_cloud_id(step, cloud_id);
                self.line(&format!(
                    "  {} {id} {}{cloud} {}",
                    self.style.green("✓"),
                    step_done(step),
                    self.style.dim(&format!("({took})"))
                ));
            }
            // Failures are always shown, even with --quiet.
            (Mode::Plain, Err(e)) => {
                self.plain("FAILED", &format!("{} {id} after {took}: {e}", step.verb()))
            }
            (Mode::Live, Err(e)) => self.line(&format!(
                "  {} {id}: {} failed after {took}: {e}",
                self.style.red("✗"),
                step.verb()
            )),
        }
    }

    fn note(&self, message: &str) {
        match self.mode {
            Mode::Json => self.event(json!({"type": "note", "message": message})),
            Mode::Plain => self.plain("note", message),
            Mode::Live => self.line(message),
        }
    }

    fn kept(&self, id: &LogicalId, what: &str) {
        let text = format!("{id}: {what}");
        if self.mode == Mode::Json {
            self.event(json!({"type": "kept", "id": id, "what": what}));
        }
        self.kept.lock().unwrap().push(text);
    }
}

fn shown_cloud_id(step: StepKind, cloud_id: &str) -> String {
    if cloud_id.is_empty() || matches!(step, StepKind::Delete | StepKind::Forget) {
        String::new()
    } else {
        format!(" {cloud_id}")
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

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish()
    }
}
