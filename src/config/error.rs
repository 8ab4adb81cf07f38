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

    /// Every problem as its `file:line:col: key: problem` line followed by the source line
    /// and a caret under the offending key (as rustc and cargo print), from `source`, the
    /// text of the file. `color` adds terminal colours.
    pub fn render_with_source(&self, source: &str, color: bool) -> String {
        use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let lines: Vec<&str> = source.split('\n').collect();
        let mut out = String::new();
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                out.push('\n');
            }
            let title = Located(&self.path, problem).to_string();
            let Some(line) = problem
                .line
                .checked_sub(1)
                .and_then(|i| lines.get(i))
                .map(|l| l.trim_end_matches('\r'))
            else {
                out.push_str(&format!("error: {title}\n"));
                continue;
            };
            let span = key_span(line, problem);
            let path = self.path.display().to_string();
            let report = &[Level::ERROR.primary_title(&title).element(
                Snippet::source(line)
                    .line_start(problem.line)
                    .path(&path)
                    .annotation(AnnotationKind::Primary.span(span)),
            )];
            out.push_str(&renderer.render(report));
            out.push('\n');
        }
        out
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

/// The byte range to underline in `line`: from the problem's column, the key (or value,
/// or section header) that starts there; at least one character.
fn key_span(line: &str, problem: &Problem) -> Range<usize> {
    let start = line
        .char_indices()
        .nth(problem.column.saturating_sub(1))
        .map_or(line.len(), |(at, _)| at);
    let rest = &line[start..];
    let len = if rest.starts_with('[') {
        rest.find(']').map_or(rest.len(), |end| end + 1)
    } else if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').map_or(rest.len(), |end| end + 2)
    } else {
        rest.find(|c: char| c.is_whitespace() || matches!(c, '=' | ',' | ']'))
            .unwrap_or(rest.len())
    };
    let len = if len == 0 {
        rest.chars().next().map_or(0, char::len_utf8)
    } else {
        len
    };
    start..start + len
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
    fn rendered_with_source_a_caret_points_at_the_key_under_the_located_line() {
        let source = "name = \"lab\"\n[network]\nvpc_cidr = \"10.42.0.0/33\"\nzones = 9\n";
        let error = ConfigError::new(
            Path::new("provision.toml"),
            vec![
                Problem {
                    line: 3,
                    column: 1,
                    key: "network.vpc_cidr".into(),
                    message: "expected an IPv4 network".into(),
                },
                Problem {
                    line: 4,
                    column: 9,
                    key: "network.zones".into(),
                    message: "at most 6".into(),
                },
            ],
        );
        let text = error.render_with_source(source, false);
        insta::assert_snapshot!(text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "error: provision.toml:3:1: network.vpc_cidr: expected an IPv4 network"
        );
        let code = lines
            .iter()
            .position(|l| l.ends_with("vpc_cidr = \"10.42.0.0/33\""))
            .unwrap();
        let caret = lines[code + 1];
        let bar = lines[code].find('|').unwrap();
        // The caret sits under `vpc_cidr` exactly: same column, same width.
        assert_eq!(caret.find('^').unwrap(), bar + 2, "{text}");
        assert_eq!(caret.matches('^').count(), "vpc_cidr".len(), "{text}");
        // Both problems at once; the second underlines the value at its column.
        assert!(
            text.contains("provision.toml:4:9: network.zones: at most 6"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
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
