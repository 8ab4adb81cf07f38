//! Image references as Docker parses them, the destination path rancher-load-images.sh
//! gives them, and image lists in the `rancher-images.txt` format.

use std::fmt;
use std::path::Path;

/// Docker Hub's registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API really lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host (and port), `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path, with `library/` for a single Docker Hub name.
    pub repository: String,
    /// Tag; `latest` when the reference gives neither tag nor digest.
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins a digest.
    pub digest: Option<String>,
    /// The path as written after the registry (no `library/` added): what
    /// rancher-load-images.sh uses for the destination.
    written_path: String,
    /// Whether the reference named its registry.
    explicit_registry: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an image reference: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parses `input` the way Docker does.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(err(input, "it is empty"));
        }
        if s.chars().any(|c| c.is_whitespace()) {
            return Err(err(input, "it contains white space"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if crate::images::layout::digest_hex(d).is_none() {
                    return Err(err(
                        input,
                        format!("digest `{d}` is not sha256:<64 lowercase hex digits>"),
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is what follows the last `:` when no `/` follows it (a `:` before a `/` is a
        // registry port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(err(input, format!("tag `{t}` is not a valid tag")));
            }
        }
        if name.is_empty() {
            return Err(err(input, "it names no repository"));
        }
        let (registry, path, explicit_registry) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string(), true)
            }
            _ => (DOCKER_HUB.to_string(), name.to_string(), false),
        };
        if path.is_empty() {
            return Err(err(input, "it names no repository"));
        }
        for component in path.split('/') {
            let ok = !component.is_empty()
                && component
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && component.starts_with(|c: char| c.is_ascii_alphanumeric())
                && component.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(err(
                    input,
                    format!(
                        "path component `{component}` must be lowercase letters, digits and \
                         `._-`, starting and ending with a letter or digit"
                    ),
                ));
            }
        }
        let registry = if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.clone()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
            written_path: path,
            explicit_registry,
        })
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The repository at the destination, as rancher-load-images.sh makes it: the path as
    /// written (`rancher/fleet`), a single name gets `library/`, and a reference naming
    /// another registry than Docker Hub keeps that registry as a prefix
    /// (`quay.io/jetstack/x`).
    pub fn destination_repository(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository.clone()
        } else if self.explicit_registry {
            format!("{}/{}", self.registry, self.written_path)
        } else {
            self.repository.clone()
        }
    }

    /// The full destination reference at registry `dest` (`host:port`).
    pub fn destination(&self, dest: &str) -> String {
        format!("{dest}/{}{}", self.destination_repository(), self.suffix())
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// The canonical form: `docker.io/library/busybox:latest`. Used as the store's
/// `org.opencontainers.image.ref.name` and as the key of the lock file.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.suffix())
    }
}

/// A list-file error naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read image list {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {source}")]
    Bad {
        path: String,
        line: usize,
        source: ReferenceError,
    },
}

/// Parses a list in the `rancher-images.txt` format: one reference per line, `#` starts a
/// comment (whole line or after the reference), blank lines ignored.
pub fn parse_list(path: &Path, text: &str) -> Result<Vec<Reference>, ListError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(Reference::parse(line).map_err(|source| ListError::Bad {
            path: path.display().to_string(),
            line: i + 1,
            source,
        })?);
    }
    Ok(out)
}

/// Reads and parses a list file.
pub fn read_list(path: &Path) -> Result<Vec<Reference>, ListError> {
    let text = std::fs::read_to_string(path).map_err(|source| ListError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_list(path, &text)
}

/// The references of every list and argument, in order, each once.
pub fn collect(lists: &[std::path::PathBuf], args: &[String]) -> anyhow::Result<Vec<Reference>> {
    let mut out: Vec<Reference> = Vec::new();
    for l in lists {
        out.extend(read_list(l)?);
    }
    for a in args {
        out.push(Reference::parse(a)?);
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.to_string()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_as_docker_does() {
        let d = format!("sha256:{}", "a".repeat(64));
        type Row<'a> = (String, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let table: Vec<Row> = vec![
            (
                "busybox".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "rancher/fleet:v1".into(),
                "docker.io",
                "rancher/fleet",
                Some("v1"),
                None,
            ),
            (
                "docker.io/rancher/fleet:v1".into(),
                "docker.io",
                "rancher/fleet",
                Some("v1"),
                None,
            ),
            (
                "index.docker.io/library/nginx".into(),
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "quay.io/jetstack/cert-manager-controller:v1.14.4".into(),
                "quay.io",
                "jetstack/cert-manager-controller",
                Some("v1.14.4"),
                None,
            ),
            ("localhost/x".into(), "localhost", "x", Some("latest"), None),
            (
                "127.0.0.1:5000/a/b:t".into(),
                "127.0.0.1:5000",
                "a/b",
                Some("t"),
                None,
            ),
            (
                "registry.rancher.com/rancher/rancher:v2.12.2".into(),
                "registry.rancher.com",
                "rancher/rancher",
                Some("v2.12.2"),
                None,
            ),
            (
                format!("alpine@{d}"),
                "docker.io",
                "library/alpine",
                None,
                Some(d.as_str()),
            ),
            (
                format!("alpine:3@{d}"),
                "docker.io",
                "library/alpine",
                Some("3"),
                Some(d.as_str()),
            ),
            // A first component without `.`/`:` and not `localhost` is a namespace.
            (
                "myhost/app:1".into(),
                "docker.io",
                "myhost/app",
                Some("1"),
                None,
            ),
        ];
        for (input, reg, repo, tag, digest) in table {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, reg, "{input}");
            assert_eq!(r.repository, repo, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
        }
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in [
            "",
            "Rancher/Fleet",
            "a b",
            "rancher/fleet:",
            "rancher/fleet@sha256:abc",
            "rancher//fleet",
            "quay.io/",
            "rancher/fleet:-x",
        ] {
            assert!(Reference::parse(bad).is_err(), "`{bad}` accepted");
        }
    }

    #[test]
    fn destination_paths_follow_rancher_load_images() {
        let table = [
            ("rancher/fleet:v1", "reg:5000/rancher/fleet:v1"),
            ("docker.io/rancher/fleet:v1", "reg:5000/rancher/fleet:v1"),
            ("busybox", "reg:5000/library/busybox:latest"),
            ("quay.io/jetstack/x:v1", "reg:5000/quay.io/jetstack/x:v1"),
            (
                "registry.k8s.io/pause:3.9",
                "reg:5000/registry.k8s.io/pause:3.9",
            ),
        ];
        for (input, want) in table {
            assert_eq!(
                Reference::parse(input).unwrap().destination("reg:5000"),
                want
            );
        }
    }

    #[test]
    fn canonical_form_names_registry_and_library() {
        assert_eq!(
            Reference::parse("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            Reference::parse("quay.io/a/b:1").unwrap().to_string(),
            "quay.io/a/b:1"
        );
    }

    #[test]
    fn list_parsing_skips_comments_and_names_file_and_line() {
        let text = "# Rancher images\n\nrancher/fleet:v1  # pinned\n  busybox\n";
        let refs = parse_list(Path::new("l.txt"), text).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1].repository, "library/busybox");
        let e = parse_list(Path::new("l.txt"), "busybox\n\nBad Ref\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("l.txt:3: `Bad Ref`"), "{msg}");
    }
}
