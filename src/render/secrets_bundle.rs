//! The secrets folder as one JSON document, for the S3 state backend: the environment's
//! `shared-secrets` Secrets Manager secret holds it, and every run unpacks it into the
//! local folder before planning, so each workstation embeds the same CA, password and token.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::{ensure_private_dir, read_optional, write_atomic};
use super::secrets::FILES;
use super::RenderError;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Bundle {
    format: u32,
    /// File name → content; sorted, so the same files always make the same text.
    files: BTreeMap<String, String>,
}

/// The files of the secrets folder `dir` that exist, as one document; `None` when there
/// are none (an external registry and no cluster token: nothing to share).
pub fn secrets_bundle(dir: &Path) -> Result<Option<String>, RenderError> {
    let mut files = BTreeMap::new();
    for (name, _) in FILES {
        if let Some(text) = read_optional(&dir.join(name))? {
            files.insert((*name).to_string(), text);
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        serde_json::to_string(&Bundle {
            format: FORMAT,
            files,
        })
        .expect("bundle serializes"),
    ))
}

/// Write the files of `bundle` into `dir` (created 0700), each with its usual mode; files
/// the bundle does not hold are left alone. Returns the names of the files that changed.
/// `source` names where the bundle came from, for messages.
pub fn unpack_secrets_bundle(
    dir: &Path,
    bundle: &str,
    source: &str,
) -> Result<Vec<String>, RenderError> {
    let parsed: Bundle = serde_json::from_str(bundle).map_err(|e| RenderError::InvalidSecret {
        path: source.into(),
        reason: format!("not a provision secrets bundle ({e})"),
    })?;
    if parsed.format != FORMAT {
        return Err(RenderError::InvalidSecret {
            path: source.into(),
            reason: format!(
                "secrets bundle format {} (this provision reads {FORMAT})",
                parsed.format
            ),
        });
    }
    ensure_private_dir(dir)?;
    let mut changed = Vec::new();
    for (name, text) in &parsed.files {
        let Some((_, mode)) = FILES.iter().find(|(n, _)| n == name) else {
            return Err(RenderError::InvalidSecret {
                path: source.into(),
                reason: format!("unknown file {name:?} in the secrets bundle"),
            });
        };
        let path = dir.join(name);
        if read_optional(&path)?.as_deref() != Some(text.as_str()) {
            write_atomic(&path, text.as_bytes(), *mode)?;
            changed.push(name.clone());
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::files::test_support::mode_of;

    #[test]
    fn a_bundle_round_trips_every_secret_with_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let here = root.path().join("a/secrets");
        crate::render::ensure_registry_secrets(&here, "registry.lab.example.com").unwrap();
        let token = crate::render::ensure_cluster_token(&here).unwrap();
        assert_eq!(
            secrets_bundle(&root.path().join("empty")).unwrap(),
            None,
            "no files, nothing to share"
        );
        let bundle = secrets_bundle(&here).unwrap().unwrap();
        assert_eq!(
            bundle,
            secrets_bundle(&here).unwrap().unwrap(),
            "stable text"
        );

        let there = root.path().join("b/secrets");
        let changed = unpack_secrets_bundle(&there, &bundle, "shared-secrets").unwrap();
        assert_eq!(changed.len(), FILES.len(), "{changed:?}");
        for (name, mode) in FILES {
            assert_eq!(
                std::fs::read(here.join(name)).unwrap(),
                std::fs::read(there.join(name)).unwrap(),
                "{name}"
            );
            assert_eq!(mode_of(&there.join(name)), *mode, "{name}");
        }
        // The second workstation now loads the same secrets instead of making new ones.
        let again =
            crate::render::ensure_registry_secrets(&there, "registry.lab.example.com").unwrap();
        let first =
            crate::render::ensure_registry_secrets(&here, "registry.lab.example.com").unwrap();
        assert_eq!(again.password, first.password);
        assert_eq!(crate::render::ensure_cluster_token(&there).unwrap(), token);
        assert_eq!(secrets_bundle(&there).unwrap().unwrap(), bundle);
        assert!(unpack_secrets_bundle(&there, &bundle, "x")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_foreign_document_is_refused_naming_its_source() {
        let root = tempfile::tempdir().unwrap();
        for text in ["{}", "not json", r#"{"format":1,"files":{"../x":"y"}}"#] {
            let e = unpack_secrets_bundle(root.path(), text, "provision/lab/shared-secrets")
                .unwrap_err()
                .to_string();
            assert!(e.contains("provision/lab/shared-secrets"), "{e}");
        }
        assert!(!root.path().join("../x").exists());
    }
}
