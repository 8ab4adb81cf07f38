//! With the S3 state backend, the secrets the tool generates on the workstation (the
//! registry CA, server key and password, the cluster token) live in one Secrets Manager
//! secret of the environment, `shared-secrets`, where a teammate's run finds them. Without
//! it, that teammate's first plan would generate new ones and replace the registry host.
//!
//! The state keeps only the SHA-256 of the value. The secret depends on nothing, so apply
//! stores it in its first wave, long before any host that embeds a secret boots (and a
//! failed store stops the run before those).

use sha2::{Digest, Sha256};

use super::ids::SHARED_SECRETS;
use crate::config::Config;
use crate::engine::Desired;
use crate::model::{SecretSpec, Spec};

/// The spec of the `shared-secrets` resource holding `bundle` (see
/// [`crate::render::secrets_bundle`]).
pub fn shared_secrets_spec(cfg: &Config, bundle: String) -> SecretSpec {
    SecretSpec {
        description: format!(
            "{} registry CA, server key and password, cluster token (provision)",
            cfg.name
        ),
        value_sha256: Some(hex::encode(Sha256::digest(bundle.as_bytes()))),
        kms_key_id: super::secrets_kms_key(cfg),
        value: Some(bundle),
    }
}

/// Add the `shared-secrets` resource holding `bundle`.
pub fn add_shared_secrets(cfg: &Config, bundle: String, d: &mut Desired) {
    d.insert(
        SHARED_SECRETS,
        Spec::Secret(shared_secrets_spec(cfg, bundle)),
    );
}
