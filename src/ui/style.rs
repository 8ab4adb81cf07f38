//! Colours on a terminal; none when the stream is piped or `NO_COLOR` is set.

use std::io::IsTerminal;

/// Whether to colour, decided once per output stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Plain text (files, pipes, tests).
    pub const PLAIN: Style = Style { color: false };

    /// Colour when `is_terminal` and `NO_COLOR` is unset or empty (<https://no-color.org>).
    pub fn new(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: is_terminal && !no_color,
        }
    }

    pub fn stdout() -> Self {
        Self::new(std::io::stdout().is_terminal())
    }

    pub fn stderr() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }
    pub fn bold_red(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    pub fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_style_adds_no_escape_codes_and_colour_does() {
        assert_eq!(Style::PLAIN.red("x"), "x");
        assert_eq!(Style { color: true }.red("x"), "\x1b[31mx\x1b[0m");
        // Not a terminal: never colour, whatever NO_COLOR says.
        assert!(!Style::new(false).color);
    }
}
