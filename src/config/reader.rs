//! Typed, located access to a parsed TOML document.
//!
//! Every accessor records a [`Problem`] instead of failing, so one pass over the file
//! reports everything that is wrong. Accessors return `None` when the key is absent or its
//! value was unusable; callers fall back to the default and carry on.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{LineIndex, Problem};

/// The span of what is not in the file (the root table, a missing section): problems there
/// are the whole file's (line 0), not line 1's.
pub(crate) const NOWHERE: Range<usize> = usize::MAX..usize::MAX;

/// Collects problems against the source text.
pub(crate) struct Doc<'t> {
    lines: LineIndex<'t>,
    problems: Vec<Problem>,
}

impl<'t> Doc<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Doc {
            lines: LineIndex::new(text),
            problems: Vec::new(),
        }
    }

    pub(crate) fn problem(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        // A table the file does not have (or the root) is no place in it: the problem is
        // the file's, not line 1's.
        let (line, column) = if *span == NOWHERE {
            (0, 0)
        } else {
            self.lines.locate(span)
        };
        // One line per problem, even when a quoted value holds a line break.
        let message = message.into().replace('\r', "\\r").replace('\n', "\\n");
        self.problems.push(Problem {
            line,
            column,
            key: key.to_string(),
            message,
        });
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// A value with the place it was written (the key's position, where messages point).
#[derive(Debug, Clone)]
pub(crate) struct Located<T> {
    pub value: T,
    pub span: Range<usize>,
    /// Dotted key path, for messages.
    pub key: String,
}

/// One TOML table being read.
pub(crate) struct Table<'a, 'i> {
    /// Dotted path of the table (`""` for the document root).
    path: String,
    /// Where the table is introduced (its header key); the place to point at when a key
    /// is missing from it.
    pub span: Range<usize>,
    entries: Option<&'a DeTable<'i>>,
}

type Entry<'a, 'i> = (
    &'a Spanned<toml::de::DeString<'i>>,
    &'a Spanned<DeValue<'i>>,
);

impl<'a, 'i> Table<'a, 'i> {
    pub(crate) fn root(table: &'a DeTable<'i>) -> Self {
        Table {
            path: String::new(),
            span: NOWHERE,
            entries: Some(table),
        }
    }

    /// Whether the table was written in the file at all.
    pub(crate) fn exists(&self) -> bool {
        self.entries.is_some()
    }

    /// Dotted path of the table itself (`""` for the root).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// How the table is called in messages: `[nodes]`, or "the top level".
    pub(crate) fn display_name(&self) -> String {
        if self.path.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in [{}]", self.path)
        }
    }

    fn entry(&self, key: &str) -> Option<Entry<'a, 'i>> {
        self.entries?.iter().find(|(name, _)| name.get_ref() == key)
    }

    /// The string at `path` (nested tables, then a key), if it is written there as a
    /// string; reports nothing.
    pub(crate) fn peek_string(&self, path: &[&str]) -> Option<String> {
        let (key, tables) = path.split_last()?;
        let mut table = self.entries?;
        for name in tables {
            let (_, value) = table.iter().find(|(n, _)| n.get_ref() == name)?;
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => return None,
            }
        }
        let (_, value) = table.iter().find(|(n, _)| n.get_ref() == key)?;
        value.get_ref().as_str().map(str::to_string)
    }

    /// The position of `key` if it is written in this table.
    pub(crate) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.entry(key).map(|(name, _)| name.span())
    }

    /// Reports every key that is not in `accepted`.
    pub(crate) fn check_keys(&self, doc: &mut Doc, accepted: &[&str]) {
        let Some(entries) = self.entries else { return };
        for (name, _) in entries.iter() {
            if !accepted.contains(&name.get_ref().as_ref()) {
                doc.problem(
                    &name.span(),
                    &self.key_path(name.get_ref()),
                    format!(
                        "unknown key; accepted keys {} are: {}",
                        self.display_name(),
                        accepted.join(", ")
                    ),
                );
            }
        }
    }

    /// A sub-table. Absent (or of the wrong type, which is reported) gives an empty table
    /// that points at this one for "missing key" messages.
    pub(crate) fn table(&self, doc: &mut Doc, key: &str) -> Table<'a, 'i> {
        let path = self.key_path(key);
        match self.entry(key) {
            Some((name, value)) => match value.get_ref() {
                DeValue::Table(table) => Table {
                    path,
                    span: name.span(),
                    entries: Some(table),
                },
                other => {
                    wrong_type(doc, &name.span(), &path, "a table", other);
                    Table {
                        path,
                        span: name.span(),
                        entries: None,
                    }
                }
            },
            None => Table {
                path,
                span: NOWHERE,
                entries: None,
            },
        }
    }

    fn typed<T>(
        &self,
        doc: &mut Doc,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a DeValue<'i>) -> Option<T>,
    ) -> Option<Located<T>> {
        let (name, value) = self.entry(key)?;
        let path = self.key_path(key);
        match convert(value.get_ref()) {
            Some(converted) => Some(Located {
                value: converted,
                span: name.span(),
                key: path,
            }),
            None => {
                wrong_type(doc, &name.span(), &path, expected, value.get_ref());
                None
            }
        }
    }

    pub(crate) fn string(&self, doc: &mut Doc, key: &str) -> Option<Located<String>> {
        self.typed(doc, key, "a string", |value| {
            value.as_str().map(str::to_string)
        })
    }

    pub(crate) fn boolean(&self, doc: &mut Doc, key: &str) -> Option<Located<bool>> {
        self.typed(doc, key, "a boolean (true or false)", DeValue::as_bool)
    }

    /// An integer within `range`; out-of-range values are reported.
    pub(crate) fn integer(
        &self,
        doc: &mut Doc,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<Located<i64>> {
        let found = self.typed(doc, key, "an integer", |value| match value {
            DeValue::Integer(integer) => Some(integer_value(integer)),
            _ => None,
        })?;
        match found.value {
            Some(number) if range.contains(&number) => Some(Located {
                value: number,
                span: found.span,
                key: found.key,
            }),
            _ => {
                doc.problem(
                    &found.span,
                    &found.key,
                    format!(
                        "must be between {} and {} (got {})",
                        range.start(),
                        range.end(),
                        self.raw(key)
                    ),
                );
                None
            }
        }
    }

    /// A number (integer or float) with `0 < n <= max`.
    pub(crate) fn positive_number(
        &self,
        doc: &mut Doc,
        key: &str,
        max: f64,
    ) -> Option<Located<f64>> {
        let found = self.typed(doc, key, "a number", |value| match value {
            DeValue::Integer(integer) => Some(integer_value(integer).map(|n| n as f64)),
            DeValue::Float(float) => Some(float.as_str().parse::<f64>().ok()),
            _ => None,
        })?;
        match found.value {
            Some(number) if number > 0.0 && number <= max => Some(Located {
                value: number,
                span: found.span,
                key: found.key,
            }),
            _ => {
                doc.problem(
                    &found.span,
                    &found.key,
                    format!(
                        "must be a number greater than 0 and at most {max} (got {})",
                        self.raw(key)
                    ),
                );
                None
            }
        }
    }

    /// An array of strings, each with its own position and `key[index]` path.
    pub(crate) fn string_array(
        &self,
        doc: &mut Doc,
        key: &str,
    ) -> Option<Located<Vec<Located<String>>>> {
        let found = self.typed(doc, key, "an array of strings", |value| match value {
            DeValue::Array(array) => Some(array),
            _ => None,
        })?;
        let mut items = Vec::new();
        for (index, item) in found.value.iter().enumerate() {
            let path = format!("{}[{index}]", found.key);
            match item.get_ref() {
                DeValue::String(text) => items.push(Located {
                    value: text.to_string(),
                    span: item.span(),
                    key: path,
                }),
                other => wrong_type(doc, &item.span(), &path, "a string", other),
            }
        }
        Some(Located {
            value: items,
            span: found.span,
            key: found.key,
        })
    }

    /// The value of `key` as written, for "got ..." in messages.
    fn raw(&self, key: &str) -> String {
        match self.entry(key).map(|(_, value)| value.get_ref()) {
            Some(DeValue::Integer(integer)) => integer.to_string(),
            Some(DeValue::Float(float)) => float.to_string(),
            Some(DeValue::String(text)) => format!("{text:?}"),
            Some(DeValue::Boolean(flag)) => flag.to_string(),
            Some(other) => other.type_str().to_string(),
            None => String::new(),
        }
    }
}

/// `None` when it does not fit in an `i64`.
fn integer_value(integer: &toml::de::DeInteger) -> Option<i64> {
    i64::from_str_radix(integer.as_str(), integer.radix()).ok()
}

fn wrong_type(doc: &mut Doc, span: &Range<usize>, key: &str, expected: &str, found: &DeValue) {
    let article = match found.type_str() {
        "integer" | "array" => "an",
        _ => "a",
    };
    let mut message = format!("expected {expected}, found {article} {}", found.type_str());
    if let DeValue::String(text) = found {
        let looks_numeric = text.parse::<f64>().is_ok();
        let looks_boolean = text.as_ref() == "true" || text.as_ref() == "false";
        if (looks_numeric && (expected == "an integer" || expected == "a number"))
            || (looks_boolean && expected.starts_with("a boolean"))
        {
            message.push_str(&format!(" (write {text} without quotes)"));
        }
    }
    doc.problem(span, key, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_table(text: &str, check: impl FnOnce(&mut Doc, Table)) -> Vec<Problem> {
        let parsed = DeTable::parse(text).expect("valid TOML");
        let mut doc = Doc::new(text);
        check(&mut doc, Table::root(parsed.get_ref()));
        doc.into_problems()
    }

    #[test]
    fn integer_out_of_range_and_wrong_type_are_located() {
        let problems = with_table("a = 5\nb = \"7\"\nc = 0x10\n", |doc, table| {
            assert!(table.integer(doc, "a", 1..=4).is_none());
            assert!(table.integer(doc, "b", 1..=9).is_none());
            assert_eq!(table.integer(doc, "c", 0..=100).unwrap().value, 16);
            assert!(table.integer(doc, "missing", 0..=1).is_none());
        });
        assert_eq!(problems.len(), 2);
        assert_eq!((problems[0].line, problems[0].key.as_str()), (1, "a"));
        assert_eq!(problems[0].message, "must be between 1 and 4 (got 5)");
        assert_eq!((problems[1].line, problems[1].key.as_str()), (2, "b"));
        assert_eq!(
            problems[1].message,
            "expected an integer, found a string (write 7 without quotes)"
        );
    }

    #[test]
    fn huge_integer_is_out_of_range_not_a_panic() {
        let problems = with_table("a = 9223372036854775807\n", |doc, table| {
            assert!(table.integer(doc, "a", 0..=10).is_none());
        });
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn positive_number_accepts_integers_and_floats_but_not_nan() {
        let problems = with_table("a = 2\nb = 0.5\nc = nan\nd = -1\ne = inf\n", |doc, t| {
            assert_eq!(t.positive_number(doc, "a", 10.0).unwrap().value, 2.0);
            assert_eq!(t.positive_number(doc, "b", 10.0).unwrap().value, 0.5);
            assert!(t.positive_number(doc, "c", 10.0).is_none());
            assert!(t.positive_number(doc, "d", 10.0).is_none());
            assert!(t.positive_number(doc, "e", 10.0).is_none());
        });
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
    }

    #[test]
    fn nested_table_paths_and_unknown_keys() {
        let problems = with_table("[outer]\nx = 1\n[outer.inner]\ny = true\n", |doc, t| {
            let outer = t.table(doc, "outer");
            outer.check_keys(doc, &["x"]);
            assert_eq!(outer.key_path("x"), "outer.x");
            assert!(outer.exists());
            assert!(!t.table(doc, "absent").exists());
        });
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "outer.inner");
        assert_eq!(problems[0].line, 3);
        assert_eq!(
            problems[0].message,
            "unknown key; accepted keys in [outer] are: x"
        );
    }

    #[test]
    fn string_array_reports_bad_items_by_index() {
        let problems = with_table("a = [\"x\",\n  3, \"y\"]\n", |doc, t| {
            let items = t.string_array(doc, "a").unwrap().value;
            let values: Vec<&str> = items.iter().map(|i| i.value.as_str()).collect();
            assert_eq!(values, vec!["x", "y"]);
            assert_eq!(items[1].key, "a[2]");
        });
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "a[1]");
        assert_eq!((problems[0].line, problems[0].column), (2, 3));
    }
}
