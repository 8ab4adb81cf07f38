//! Real registries, a seeded source, the environment's secrets and the fault proxy for the
//! `images` tests. Everything listens on 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether docker-registry and skopeo are installed; when not, say so loudly (the test
/// then returns without asserting: `make test` installs them).
pub fn tools_or_skip(test: &str) -> bool {
    let skopeo = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let registry = Path::new(REGISTRY_BIN).exists();
    if skopeo && registry {
        return true;
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED {test}: needs {}{} (Debian: apt-get install -y docker-registry skopeo; \
         `make test` installs them) !!!!!!!!\n",
        if registry { "" } else { "docker-registry " },
        if skopeo { "" } else { "skopeo" }
    );
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, child: &mut Child, what: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("{what} exited early: {s}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port}");
}

/// A Debian `docker-registry` (distribution 2.8) on loopback.
pub struct Reg {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct Tls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub htpasswd: &'a Path,
}

impl Reg {
    pub fn start(tls: Option<Tls<'_>>) -> Reg {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \
             127.0.0.1:{port}\n  secret: images-test-fixed-secret\n",
            root.display()
        );
        if let Some(t) = &tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: \
                 basic-realm\n    path: {}\n",
                t.cert.display(),
                t.key.display(),
                t.htpasswd.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        wait_port(port, &mut child, "docker-registry");
        Reg {
            child,
            port,
            root,
            log,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Access-log lines of requests to `/v2/…` so far.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("\"GET /v2/")
                    || l.contains("\"HEAD /v2/")
                    || l.contains("\"PUT /v2/")
                    || l.contains("\"POST /v2/")
                    || l.contains("\"PATCH /v2/")
            })
            .map(str::to_string)
            .collect()
    }

    /// Removes blob `digest`'s data from the registry's storage.
    pub fn delete_blob_data(&self, digest: &str) {
        let hex = digest.trim_start_matches("sha256:");
        let p = self
            .root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex);
        std::fs::remove_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

impl Drop for Reg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fault proxy (tests/images/fault_proxy.py) in front of `upstream`.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub report: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub fn start(upstream: u16, args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let portfile = dir.path().join("port");
        let report = dir.path().join("report.json");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/fault_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&portfile)
            .arg(upstream.to_string())
            .arg("--report")
            .arg(&report)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the fault proxy");
        let t = Instant::now();
        let port = loop {
            if let Ok(s) = std::fs::read_to_string(&portfile) {
                break s.trim().parse::<u16>().unwrap();
            }
            if let Ok(Some(s)) = child.try_wait() {
                panic!("fault proxy exited: {s}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "fault proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(30));
        };
        wait_port(port, &mut child, "fault proxy");
        Proxy {
            child,
            port,
            report,
            _dir: dir,
        }
    }

    pub fn fired(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&self.report).unwrap()).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Every blob of an OCI layout directory hashes to its name; returns how many there are.
pub fn assert_store_consistent(store: &Path) -> usize {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap())
            .expect("index.json parses");
    assert!(idx["manifests"].is_array());
    let mut n = 0;
    for e in std::fs::read_dir(store.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{name}"),
            "blob {name} in the store is corrupt"
        );
        n += 1;
    }
    n
}

/// Runs skopeo with `args`, returning stdout; panics naming the command on failure.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
