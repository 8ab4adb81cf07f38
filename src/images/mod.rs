//! `provision images`: fill the environment's private registry from public ones.
//!
//! One file per concern: `reference` (names as Docker parses them), `layout` (read access
//! to an OCI image layout, shared with the archive route), `store` (the local
//! content-addressed store), `client` (the registry HTTP client), `scheduler` (one global
//! transfer queue), `pull`/`push`/`verify`, `copy` (pull and push at once) and `progress`.
//! Nothing here imports the AWS SDK or the engine: it builds with `--no-default-features`.

pub mod archive;
pub mod client;
pub mod copy;
pub mod layout;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod scheduler;
pub mod store;
pub mod verify;
