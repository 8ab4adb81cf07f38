//! Everything `provision` writes for machines and people to read: the private registry's
//! PKI and password (`secrets`), the cloud-init user-data of each role (`user_data`), and
//! the next-step artifacts of the install guide (`artifacts`).
//!
//! The API takes plain structs defined here, not the resolved `Config`, so each renderer
//! can be tested (and snapshot-tested) with fixed inputs. Templates live in the top-level
//! `templates/` folder and are embedded in the binary with `include_str!`.

mod artifacts;
mod error;
mod files;
mod secrets;
mod secrets_bundle;
mod templates;
mod user_data;

pub use artifacts::{
    bastion_forwards, port_forwards, write_artifacts, Bastion, DatastoreFact, Facts, NodeFact,
    PortForward, SsmAccess,
};
pub use error::RenderError;
pub use secrets::{
    ensure_cluster_token, ensure_registry_secrets, ensure_registry_secrets_renewing,
    RegistrySecrets, REGISTRY_USERNAME,
};
pub use secrets_bundle::{secrets_bundle, unpack_secrets_bundle};
pub use user_data::{
    node_user_data, registries_yaml, registry_host_user_data, rke2_config_yaml,
    rke2_registries_yaml, NodeRole, RegistryAccess, Rke2Config, USER_DATA_LIMIT,
};
