//! Located configuration problems and the error that carries all of them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One thing wrong with the config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; `0` when the problem concerns the whole file (it cannot be read).
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Dotted key path (`nodes.count`, `network.admin_cidrs[1]`); empty for TOML syntax
    /// errors and unreadable files.
    pub key: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

/// Everything wrong with a config file, one located problem per line when displayed:
/// `provision.toml:12:1: nodes.count: rke needs an odd node count ...`.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    path: PathBuf,
    problems: Vec<Problem>,
}

impl ConfigError {
    /// Sorts the problems by position so they read top to bottom.
    pub(crate) fn new(path: &Path, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.line, p.column));
        ConfigError {
            path: path.to_path_buf(),
            problems,
        }
    }

    /// The file cannot be read at all.
    pub(crate) fn unreadable(path: &Path, error: &std::io::Error) -> Self {
        let message = if error.kind() == std::io::ErrorKind::NotFound {
            "config file not found (run `provision init` to write one, or pass --config FILE)"
                .to_string()
        } else {
            format!("cannot read the config file: {error}")
        };
        ConfigError::new(
            path,
            vec![Problem {
                line: 0,
                column: 0,
                key: String::new(),
                message,
            }],
        )
    }

    /// The file the problems are in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All problems, ordered by position in the file.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                out.push('\n');
            }
            out.push_str(&Located(&self.path, problem).to_string());
        }
        out
    }
}

struct Located<'a>(&'a Path, &'a Problem);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Located(path, problem) = self;
        write!(f, "{}:", path.display())?;
        if problem.line > 0 {
            write!(f, "{}:{}:", problem.line, problem.column)?;
        }
        if !problem.key.is_empty() {
            write!(f, " {}:", problem.key)?;
        }
        write!(f, " {}", problem.message)
    }
}

/// Maps byte offsets of the source text to 1-based line and character column.
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        LineIndex { text, starts }
    }

    /// `(line, column)` of the start of `span`, both 1-based.
    pub(crate) fn locate(&self, span: &Range<usize>) -> (usize, usize) {
        let mut offset = span.start.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_counts_lines_and_characters() {
        let index = LineIndex::new("ab\nc\u{e9}d\n\nx");
        assert_eq!(index.locate(&(0..1)), (1, 1));
        assert_eq!(index.locate(&(1..2)), (1, 2));
        assert_eq!(index.locate(&(3..4)), (2, 1));
        // 'd' sits after a two-byte character: byte 6, character column 3.
        assert_eq!(index.locate(&(6..7)), (2, 3));
        assert_eq!(index.locate(&(9..10)), (4, 1));
        // Past the end clamps to the end.
        assert_eq!(index.locate(&(100..100)), (4, 2));
        // Inside a multi-byte character moves back to its start.
        assert_eq!(index.locate(&(5..5)), (2, 2));
    }

    #[test]
    fn display_is_one_line_per_problem_sorted_by_position() {
        let problem = |line, key: &str, message: &str| Problem {
            line,
            column: 1,
            key: key.to_string(),
            message: message.to_string(),
        };
        let error = ConfigError::new(
            Path::new("provision.toml"),
            vec![
                problem(12, "nodes.count", "too few"),
                problem(3, "", "bad syntax"),
            ],
        );
        assert_eq!(
            error.to_string(),
            "provision.toml:3:1: bad syntax\nprovision.toml:12:1: nodes.count: too few"
        );
        assert_eq!(error.problems()[0].line, 3);
        assert_eq!(error.path(), Path::new("provision.toml"));
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = ConfigError::unreadable(Path::new("/etc/x/provision.toml"), &io);
        let text = error.to_string();
        assert!(
            text.starts_with("/etc/x/provision.toml: config file not found"),
            "{text}"
        );
        assert!(text.contains("provision init"), "{text}");
    }
}
