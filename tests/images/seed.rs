//! Generated images: random, incompressible layers (real gzip streams of stored deflate
//! blocks, so any client reads them as layers), shared base layers and a multi-arch
//! index, written as an OCI layout and copied into the source registry with skopeo.

use std::path::Path;

use rand::{RngCore, SeedableRng};
use serde_json::json;

use super::harness::{sha256, skopeo};

/// Random bytes from `seed` (the same seed gives the same layer, hence a shared layer).
pub fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; n];
    r.fill_bytes(&mut v);
    v
}

/// `data` as a gzip stream of stored (uncompressed) deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65535).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i == chunks.len() - 1));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

pub struct Layout<'a> {
    pub dir: &'a Path,
}

pub struct Written {
    pub digest: String,
    pub size: usize,
    pub media_type: &'static str,
}

impl Layout<'_> {
    pub fn new(dir: &Path) -> Layout<'_> {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    pub fn blob(&self, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        d
    }

    /// An image of `layers` (uncompressed contents) for `arch`.
    pub fn image(&self, layers: &[Vec<u8>], arch: &str) -> Written {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for raw in layers {
            let gz = gzip_stored(raw);
            diff_ids.push(sha256(raw));
            let d = self.blob(&gz);
            descs.push(
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d, "size": gz.len()}),
            );
        }
        let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux",
            "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
        .unwrap();
        let cd = self.blob(&config);
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                "size": config.len()},
            "layers": descs}))
        .unwrap();
        Written {
            digest: self.blob(&manifest),
            size: manifest.len(),
            media_type: "application/vnd.oci.image.manifest.v1+json",
        }
    }

    pub fn index(&self, images: &[(&Written, &str)]) -> Written {
        let manifests: Vec<_> = images
            .iter()
            .map(|(w, arch)| {
                json!({"mediaType": w.media_type, "digest": w.digest,
                "size": w.size, "platform": {"os": "linux", "architecture": arch}})
            })
            .collect();
        let idx = serde_json::to_vec(&json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}))
        .unwrap();
        Written {
            digest: self.blob(&idx),
            size: idx.len(),
            media_type: "application/vnd.oci.image.index.v1+json",
        }
    }

    /// Names the layout's entries (index.json).
    pub fn name(&self, entries: &[(&str, &Written)]) {
        let m: Vec<_> = entries
            .iter()
            .map(|(n, w)| {
                json!({"mediaType": w.media_type, "digest": w.digest, "size": w.size,
                "annotations": {"org.opencontainers.image.ref.name": n}})
            })
            .collect();
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": m})).unwrap(),
        )
        .unwrap();
    }

    /// Copies entry `name` into the plain registry at `addr` as `repo:tag`.
    pub fn copy_to(&self, name: &str, addr: &str, repo_tag: &str) {
        skopeo(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:{name}", self.dir.display()),
            &format!("docker://{addr}/{repo_tag}"),
        ]);
    }
}

/// The standard set in a source registry: what each test pulls.
pub struct Set {
    /// References as a list names them.
    pub refs: Vec<&'static str>,
    /// The multi-arch image's index digest and its amd64 manifest digest.
    pub multi_index: String,
    pub multi_amd64: String,
    pub base_layer: String,
}

/// Seeds `addr` with `library/base:1` (base and one layer), `rancher/app:1` (the same
/// base and one layer), `rancher/multi:1` (an index: amd64 shares the base, arm64 has its
/// own layer) and `rancher/big:1` (one layer of `big` bytes).
pub fn standard(addr: &str, big: usize) -> Set {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let base = random(1, 2_000_000);
    let base_gz = gzip_stored(&base);
    let a = l.image(&[base.clone(), random(2, 1_000_000)], "amd64");
    let b = l.image(&[base.clone(), random(3, 1_500_000)], "amd64");
    let m_amd = l.image(&[base.clone(), random(4, 800_000)], "amd64");
    let m_arm = l.image(&[random(5, 900_000)], "arm64");
    let idx = l.index(&[(&m_amd, "amd64"), (&m_arm, "arm64")]);
    let big_img = l.image(&[random(6, big)], "amd64");
    l.name(&[
        ("base", &a),
        ("app", &b),
        ("multi", &idx),
        ("big", &big_img),
    ]);
    l.copy_to("base", addr, "library/base:1");
    l.copy_to("app", addr, "rancher/app:1");
    l.copy_to("multi", addr, "rancher/multi:1");
    l.copy_to("big", addr, "rancher/big:1");
    Set {
        refs: vec![
            "base:1",
            "rancher/app:1",
            "rancher/multi:1",
            "rancher/big:1",
        ],
        multi_index: idx.digest,
        multi_amd64: m_amd.digest,
        base_layer: sha256(&base_gz),
    }
}
