//! The few fields of OCI / Docker v2 manifests and indexes that the transfers need. The
//! bytes themselves are never re-serialised: digests stay those of the source.

use serde_json::Value;

use super::store::Descriptor;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// An index / manifest list: its entries, parsed and as written.
    Index {
        entries: Vec<Descriptor>,
        raw: Vec<Value>,
    },
    /// An image: the blobs it references (config first).
    Image { blobs: Vec<Descriptor> },
}

/// Parses `bytes`; `content_type` is what the registry said (used when the document
/// does not name its own media type).
pub fn parse(bytes: &[u8], content_type: &str) -> Result<Manifest, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if v.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
        return Err(
            "it is a Docker schema 1 manifest, which provision does not copy \
                    (push it again with a current Docker or registry)"
                .into(),
        );
    }
    let declared = v
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            let ct = content_type.split(';').next().unwrap_or("").trim();
            (!ct.is_empty() && ct != "application/json").then(|| ct.to_string())
        });
    let is_index = v.get("manifests").is_some()
        || matches!(declared.as_deref(), Some(OCI_INDEX | DOCKER_LIST));
    let desc = |x: &Value| -> Result<Descriptor, String> {
        serde_json::from_value(x.clone()).map_err(|e| format!("a descriptor is malformed: {e}"))
    };
    if is_index {
        let raw: Vec<Value> = v
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let entries = raw.iter().map(desc).collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest {
            media_type: declared.unwrap_or_else(|| OCI_INDEX.into()),
            kind: Kind::Index { entries, raw },
        })
    } else {
        let config = v
            .get("config")
            .ok_or("the manifest has no config")
            .map_err(str::to_string)
            .and_then(desc)?;
        let mut blobs = vec![config];
        if let Some(layers) = v.get("layers").and_then(Value::as_array) {
            for l in layers {
                // Foreign layers (Windows base images) live elsewhere and are never pushed.
                if l.get("urls").is_some() {
                    continue;
                }
                blobs.push(desc(l)?);
            }
        }
        Ok(Manifest {
            media_type: declared.unwrap_or_else(|| OCI_MANIFEST.into()),
            kind: Kind::Image { blobs },
        })
    }
}

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Self {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(format!(
                "`{s}` is not a platform: write os/arch or os/arch/variant (linux/amd64)"
            )),
        }
    }

    /// Whether an index entry's `platform` is this one (no variant asked: any variant).
    pub fn matches(&self, platform: Option<&Value>) -> bool {
        let Some(p) = platform else { return false };
        let get = |k: &str| p.get(k).and_then(Value::as_str);
        get("os") == Some(self.os.as_str())
            && get("architecture") == Some(self.architecture.as_str())
            && (self.variant.is_none() || get("variant") == self.variant.as_deref())
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platforms an index offers, for messages (`linux/amd64, linux/arm64`).
pub fn offered(entries: &[Descriptor]) -> String {
    let v: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| {
            let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            format!("{}/{}", get("os"), get("architecture"))
        })
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_images_and_indexes_and_refuses_schema1() {
        let img = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"c","digest":"sha256:aa","size":3},
            "layers":[{"mediaType":"l","digest":"sha256:bb","size":5},
                      {"mediaType":"f","digest":"sha256:cc","size":9,"urls":["https://x"]}]}"#;
        let m = parse(img, "").unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        match m.kind {
            Kind::Image { blobs } => {
                assert_eq!(blobs.len(), 2, "config + one layer, foreign layer skipped");
                assert_eq!(blobs[1].size, 5);
            }
            _ => panic!("not an image"),
        }
        let idx = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"m","digest":"sha256:dd","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let m = parse(idx, "application/vnd.oci.image.index.v1+json").unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        let Kind::Index { entries, .. } = m.kind else {
            panic!("not an index")
        };
        assert!(Platform::parse("linux/arm64")
            .unwrap()
            .matches(entries[0].platform.as_ref()));
        assert!(!Platform::parse("linux/arm64/v7")
            .unwrap()
            .matches(entries[0].platform.as_ref()));
        assert!(!Platform::parse("linux/amd64")
            .unwrap()
            .matches(entries[0].platform.as_ref()));
        assert!(parse(br#"{"schemaVersion":1}"#, "").is_err());
        assert!(Platform::parse("linux").is_err());
    }
}
