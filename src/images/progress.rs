//! What `provision images` shows: a live view on a terminal (images done/total, bytes,
//! rate, ETA, transfers in flight), plain lines otherwise, one JSON object per event with
//! `--json`, and the summary. Nothing here ever sees a credential.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::scheduler::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Plain,
    Json,
    Quiet,
    /// Nothing at all: a run inside another one, whose own progress reports.
    Silent,
}

/// Counters of one run.
#[derive(Debug, Default)]
pub struct Counters {
    pub images_done: AtomicUsize,
    pub images_unchanged: AtomicUsize,
    pub images_failed: AtomicUsize,
    /// Bytes that crossed the network (received by pull, sent by push).
    pub bytes_moved: AtomicU64,
    /// Bytes not moved because they were there already (store or destination).
    pub bytes_present: AtomicU64,
    /// Bytes mounted from another repository of the destination.
    pub bytes_mounted: AtomicU64,
    /// Bytes another image of this run moved already.
    pub bytes_deduplicated: AtomicU64,
    pub blobs_moved: AtomicUsize,
    pub in_flight: AtomicUsize,
}

pub struct Progress {
    mode: Mode,
    verb: &'static str,
    total: usize,
    bar: Option<ProgressBar>,
    pub counters: Counters,
    started: Instant,
    failures: Mutex<Vec<(String, String)>>,
}

/// The run's result, printed as the summary and returned to the command.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub images: usize,
    pub done: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub bytes_moved: u64,
    pub bytes_present: u64,
    pub bytes_mounted: u64,
    pub bytes_deduplicated: u64,
    pub requests: u64,
    pub retries: u64,
    pub seconds: f64,
    pub bytes_per_second: f64,
    pub failures: Vec<Failure>,
    pub interrupted: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub image: String,
    pub reason: String,
}

pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

impl Progress {
    /// `verb` is what the run does to an image ("pulled", "pushed", "verified").
    pub fn new(mode: Mode, verb: &'static str, total: usize) -> Self {
        let bar = (mode == Mode::Live).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {decimal_bytes} ({decimal_bytes_per_sec}) {elapsed_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let p = Self {
            mode,
            verb,
            total,
            bar,
            counters: Counters::default(),
            started: Instant::now(),
            failures: Mutex::new(Vec::new()),
        };
        p.refresh();
        p
    }

    /// The bytes the run will move, once known: the live view then shows a bar and an ETA.
    pub fn set_total_bytes(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} \
                     ({decimal_bytes_per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn refresh(&self) {
        if let Some(b) = &self.bar {
            let c = &self.counters;
            let done = c.images_done.load(Ordering::Relaxed)
                + c.images_unchanged.load(Ordering::Relaxed)
                + c.images_failed.load(Ordering::Relaxed);
            let moved = c.bytes_moved.load(Ordering::Relaxed);
            b.set_position(moved);
            b.set_message(format!(
                "images {done}/{}, {} in flight,{}",
                self.total,
                c.in_flight.load(Ordering::Relaxed),
                match c.images_failed.load(Ordering::Relaxed) {
                    0 => String::new(),
                    n => format!(" {n} failed,"),
                }
            ));
        }
    }

    /// One event line, in the project's event format (docs/json.md): `format_version`,
    /// `type`, `time`, then the event's fields.
    fn emit_json(&self, mut v: serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            let kind = o.remove("event").unwrap_or(json!("note"));
            let mut out = serde_json::Map::new();
            out.insert(
                "format_version".into(),
                json!(crate::ui::json::FORMAT_VERSION),
            );
            out.insert("type".into(), kind);
            out.insert(
                "time".into(),
                json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
            out.insert("command".into(), json!(self.command()));
            out.extend(std::mem::take(o));
            v = serde_json::Value::Object(out);
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
    }

    fn command(&self) -> &'static str {
        match self.verb {
            "pulled" => "images pull",
            "pushed" => "images push",
            _ => "images verify",
        }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => {
                let _ = writeln!(std::io::stdout().lock(), "{s}");
            }
        }
    }

    /// Bytes moved as they move (for the live rate).
    pub fn moved(&self, n: u64) {
        self.counters.bytes_moved.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn transfer_started(&self) {
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    pub fn transfer_ended(&self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.refresh();
    }

    /// A blob an image needed, and how it got there (bytes moved are counted by
    /// [`Progress::moved`] as they go).
    pub fn blob(&self, image: &str, digest: &str, outcome: Outcome, first: bool) {
        let c = &self.counters;
        let (how, size) = match (outcome, first) {
            (Outcome::Transferred(n), true) => {
                c.blobs_moved.fetch_add(1, Ordering::Relaxed);
                ("transferred", n)
            }
            (Outcome::Present(n), true) => {
                c.bytes_present.fetch_add(n, Ordering::Relaxed);
                ("present", n)
            }
            (Outcome::Mounted(n), true) => {
                c.bytes_mounted.fetch_add(n, Ordering::Relaxed);
                ("mounted", n)
            }
            (Outcome::Transferred(n) | Outcome::Present(n) | Outcome::Mounted(n), false) => {
                c.bytes_deduplicated.fetch_add(n, Ordering::Relaxed);
                ("deduplicated", n)
            }
        };
        if self.mode == Mode::Json {
            self.emit_json(json!({"event": "blob", "image": image, "digest": digest,
                "size": size, "how": how}));
        }
    }

    /// An image is done; `unchanged` when nothing had to move.
    pub fn image_done(&self, image: &str, digest: &str, unchanged: bool) {
        let c = &self.counters;
        if unchanged {
            c.images_unchanged.fetch_add(1, Ordering::Relaxed);
        } else {
            c.images_done.fetch_add(1, Ordering::Relaxed);
        }
        match self.mode {
            Mode::Json => self.emit_json(json!({"event": "image", "image": image,
                "status": if unchanged { "unchanged" } else { self.verb }, "digest": digest})),
            Mode::Plain | Mode::Live => self.line(&format!(
                "{} {image} ({})",
                if unchanged { "unchanged" } else { self.verb },
                short(digest)
            )),
            Mode::Quiet | Mode::Silent => {}
        }
        self.refresh();
    }

    pub fn image_failed(&self, image: &str, reason: &str) {
        self.counters.images_failed.fetch_add(1, Ordering::Relaxed);
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((image.to_string(), reason.to_string()));
        match self.mode {
            Mode::Json => self.emit_json(
                json!({"event": "image", "image": image, "status": "failed", "reason": reason}),
            ),
            Mode::Plain | Mode::Live => self.line(&format!("FAILED {image}: {reason}")),
            Mode::Quiet | Mode::Silent => {}
        }
        self.refresh();
    }

    /// Ends the live view and prints the summary (human or JSON).
    pub fn finish(&self, requests: u64, retries: u64, interrupted: bool) -> Summary {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let c = &self.counters;
        let secs = self.started.elapsed().as_secs_f64();
        let moved = c.bytes_moved.load(Ordering::Relaxed);
        let mut failures: Vec<Failure> = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(i, r)| Failure {
                image: i.clone(),
                reason: r.clone(),
            })
            .collect();
        failures.sort_by(|a, b| a.image.cmp(&b.image));
        let s = Summary {
            images: self.total,
            done: c.images_done.load(Ordering::Relaxed),
            unchanged: c.images_unchanged.load(Ordering::Relaxed),
            failed: c.images_failed.load(Ordering::Relaxed),
            bytes_moved: moved,
            bytes_present: c.bytes_present.load(Ordering::Relaxed),
            bytes_mounted: c.bytes_mounted.load(Ordering::Relaxed),
            bytes_deduplicated: c.bytes_deduplicated.load(Ordering::Relaxed),
            requests,
            retries,
            seconds: secs,
            bytes_per_second: if secs > 0.0 { moved as f64 / secs } else { 0.0 },
            failures,
            interrupted,
        };
        match self.mode {
            Mode::Json => {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["event"] = json!("summary");
                self.emit_json(v);
            }
            Mode::Silent => {}
            Mode::Quiet if s.failed == 0 && !interrupted => {}
            _ => self.line(&self.render(&s)),
        }
        s
    }

    fn render(&self, s: &Summary) -> String {
        let moved_word = match self.verb {
            "pulled" => "fetched",
            "pushed" => "sent",
            _ => "read",
        };
        let mut out = format!(
            "{} {} of {} images ({} unchanged, {} failed) in {:.1}s: {} {moved_word} ({}/s); \
             skipped {} already there, {} mounted, {} deduplicated; {} requests, {} retries",
            self.verb,
            s.done + s.unchanged,
            s.images,
            s.unchanged,
            s.failed,
            s.seconds,
            human_bytes(s.bytes_moved),
            human_bytes(s.bytes_per_second as u64),
            human_bytes(s.bytes_present),
            human_bytes(s.bytes_mounted),
            human_bytes(s.bytes_deduplicated),
            s.requests,
            s.retries,
        );
        if s.interrupted {
            out.push_str("\ninterrupted (Ctrl-C): the store is consistent; run the same command again to finish");
        }
        out
    }
}

fn short(digest: &str) -> &str {
    let end = digest.len().min(19);
    &digest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind_of_skip_apart() {
        let p = Progress::new(Mode::Quiet, "pushed", 2);
        p.moved(100);
        p.blob("a", "sha256:1", Outcome::Transferred(100), true);
        p.blob("b", "sha256:1", Outcome::Transferred(100), false);
        p.blob("b", "sha256:2", Outcome::Present(7), true);
        p.blob("b", "sha256:3", Outcome::Mounted(5), true);
        p.image_done("a", "sha256:x", false);
        p.image_failed("b", "blob sha256:9 is missing");
        let s = p.finish(3, 0, false);
        assert_eq!(
            (
                s.bytes_moved,
                s.bytes_deduplicated,
                s.bytes_present,
                s.bytes_mounted
            ),
            (100, 100, 7, 5)
        );
        assert_eq!((s.done, s.failed), (1, 1));
        assert_eq!(s.failures[0].image, "b");
    }

    #[test]
    fn human_bytes_uses_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
