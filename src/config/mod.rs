//! TOML schema, per-topology defaults and validation.
mod types;
pub use types::*;
