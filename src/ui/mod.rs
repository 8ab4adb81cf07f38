//! Everything the terminal sees: the progress reporter, plan rendering and prompts. The
//! engine never prints; it reports through [`crate::engine::Reporter`].

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

pub mod hints;
pub mod json;
pub mod plan;
pub mod progress;
pub mod style;
pub mod table;
#[cfg(test)]
mod tests_render;

pub use plan::{render_plan, summary, PlanView};
pub use progress::{Mode, Progress, RunSummary};
pub use style::Style;

/// How much to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
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
    ask(question, std::io::stdin().lock(), std::io::stderr())
}

/// Ask `question` on `output`, read one line from `input`: only `yes` goes ahead.
pub fn ask(
    question: &str,
    mut input: impl BufRead,
    mut output: impl Write,
) -> Result<(), PromptError> {
    let _ = write!(output, "{question}\n  Only 'yes' will be accepted: ");
    let _ = output.flush();
    let mut answer = String::new();
    input
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
    fn only_yes_confirms() {
        let mut shown = Vec::new();
        assert!(ask("Go?", &b"yes\n"[..], &mut shown).is_ok());
        assert!(String::from_utf8(shown).unwrap().contains("Only 'yes'"));
        for answer in ["y\n", "YES\n", "no\n", "\n", ""] {
            assert!(
                matches!(
                    ask("Go?", answer.as_bytes(), Vec::new()),
                    Err(PromptError::Declined)
                ),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
    }
}
