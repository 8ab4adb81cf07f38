//! TOML schema, per-topology defaults and validation.
//!
//! [`load`] / [`parse_str`] turn a `provision.toml` into a resolved [`Config`]: every
//! default filled in for the chosen topology, every value checked, relative paths resolved
//! against the file's folder and referenced files (SSH public key, registry CA) read. The
//! rest of the program never sees raw TOML.
//!
//! Validation does not stop at the first mistake: [`ConfigError`] carries every problem
//! found, each with its line, column and dotted key (`nodes.count`), so one `validate` run
//! shows everything to fix. Only a TOML syntax error stops early, since nothing after it can
//! be trusted.
//!
//! Layout: `reader` gives typed, located access to the parsed document; `resolve` holds the
//! schema (accepted keys, defaults, cross-key rules); `checks` holds the single-value
//! checks; `template` is the file `provision init` writes.

mod checks;
mod error;
mod reader;
mod resolve;
mod template;
#[cfg(test)]
mod tests;
mod types;

use std::path::Path;

pub use error::{ConfigError, Problem};
pub(crate) use resolve::SUPERVISOR_PORT;
pub use template::template;
pub use types::*;

/// Reads and resolves the config file at `path`. A missing file is an error naming it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
    parse_str(&text, path)
}

/// Resolves config `text` as if read from `path` (used for messages and to resolve the
/// relative paths `nodes.ssh_public_key` and `registry.ca_file`).
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let parsed = match toml::de::DeTable::parse(text) {
        Ok(parsed) => parsed,
        Err(error) => {
            let mut doc = reader::Doc::new(text);
            let span = error.span().unwrap_or(0..0);
            let message = error
                .message()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            doc.problem(&span, "", format!("invalid TOML: {message}"));
            return Err(ConfigError::new(path, doc.into_problems()));
        }
    };
    let mut doc = reader::Doc::new(text);
    let config = resolve::resolve(&mut doc, parsed.get_ref(), path);
    let problems = doc.into_problems();
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::new(path, problems)),
    }
}
