//! `provision images` against real registries: two Debian `docker-registry` (distribution
//! 2.8) on loopback — a plain source seeded with generated images and a TLS + htpasswd
//! destination started with the environment's own certificate, key and htpasswd from
//! `state/<name>/secrets/` — with skopeo as the independent client and a fault proxy.
//! Each test skips loudly when docker-registry or skopeo is missing (`make test`
//! installs them).

mod harness;
mod seed;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use harness::{assert_store_consistent, sha256, skopeo, Proxy, Reg, Tls};

/// An environment folder: `provision.toml` (from `provision init`), and the registry's
/// secrets as `provision plan/apply` makes them.
struct Env {
    dir: tempfile::TempDir,
    password: String,
    secrets: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::cargo_bin("provision")
            .unwrap()
            .current_dir(dir.path())
            .args(["init"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = provision::config::load(&dir.path().join("provision.toml"))
            .expect("the init template loads");
        let registry_name = provision::blueprint::registry_host_name(&cfg);
        let secrets = dir.path().join("state").join(&cfg.name).join("secrets");
        let s = provision::render::ensure_registry_secrets(&secrets, &registry_name).unwrap();
        Env {
            dir,
            password: s.password,
            secrets,
        }
    }

    fn registry(&self) -> Reg {
        Reg::start(Some(Tls {
            cert: &self.secrets.join("registry.crt"),
            key: &self.secrets.join("registry.key"),
            htpasswd: &self.secrets.join("registry-htpasswd"),
        }))
    }

    fn provision(&self) -> Command {
        let mut c = Command::cargo_bin("provision").unwrap();
        c.current_dir(self.dir.path())
            .env("DOCKER_CONFIG", self.dir.path().join("no-docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env("PROVISION_IMAGES_CHUNK_SIZE", (4 << 20).to_string());
        c
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn pull(&self, src: u16, refs: &[&str], extra: &[&str]) -> Output {
        let mut c = self.provision();
        c.args(["images", "pull", "--source-plain-http", "--store"])
            .arg(self.store())
            .arg("--source-registry")
            .arg(format!("127.0.0.1:{src}"))
            .args(extra)
            .args(refs);
        c.output().unwrap()
    }

    fn push(&self, via: u16, extra: &[&str]) -> Output {
        let mut c = self.provision();
        c.args(["images", "push", "--store"])
            .arg(self.store())
            .arg("--via")
            .arg(format!("127.0.0.1:{via}"))
            .args(extra);
        c.output().unwrap()
    }

    /// skopeo's view of the destination (over loopback; skopeo cannot verify the name).
    fn dest_raw(&self, reg: &Reg, repo_tag: &str) -> Vec<u8> {
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("rancher:{}", self.password),
            &format!("docker://{}/{repo_tag}", reg.addr()),
        ])
    }
}

fn ok(o: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{text}",
        o.status
    );
    text
}

fn source_raw(src: &Reg, repo_tag: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/{repo_tag}", src.addr()),
    ])
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn summary(o: &Output) -> serde_json::Value {
    json_lines(o)
        .into_iter()
        .find(|v| v["type"] == "summary" && v["format_version"] == "1.0")
        .expect("a summary event")
}

#[test]
fn pull_push_verify_round_trip_keeps_the_source_digests() {
    if !harness::tools_or_skip("pull_push_verify_round_trip_keeps_the_source_digests") {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 12 << 20);
    let env = Env::new();
    let dst = env.registry();

    // pull: the default platform is linux/amd64; multi is kept whole with --all-platforms
    let o = env.pull(src.port, &set.refs[..2], &["--json"]);
    ok(&o, "pull");
    let o = env.pull(src.port, &set.refs[2..], &["--json", "--all-platforms"]);
    ok(&o, "pull --all-platforms");
    let blobs = assert_store_consistent(&env.store());
    assert!(blobs >= 12, "{blobs} blobs in the store");

    // push through --via: TLS verified as the registry's name, the env's credentials
    let o = env.push(dst.port, &["-vv"]);
    let text = ok(&o, "push");
    assert!(!text.contains(&env.password), "the password was printed");
    // the shared base layer went up once and was mounted into the other repositories
    let log = dst.requests();
    let mounted = log
        .iter()
        .filter(|l| l.contains("mount=") && l.contains("\" 201 "))
        .count();
    assert!(
        mounted >= 1,
        "no cross-repository mount:\n{}",
        log.join("\n")
    );
    let c = commits(&dst);
    assert!(
        c.values().all(|&n| n == 1),
        "a blob was uploaded twice: {c:?}"
    );

    // skopeo reads what provision pushed, with the source's digests
    for (r, path) in [
        ("library/base:1", "library/base:1"),
        ("rancher/app:1", "rancher/app:1"),
        ("rancher/multi:1", "rancher/multi:1"),
        ("rancher/big:1", "rancher/big:1"),
    ] {
        assert_eq!(
            sha256(&env.dest_raw(&dst, path)),
            sha256(&source_raw(&src, r)),
            "{path} differs from the source"
        );
    }
    assert_eq!(
        sha256(&env.dest_raw(&dst, "rancher/multi:1")),
        set.multi_index
    );
    // skopeo can copy every platform of it out of the destination
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--src-creds",
        &format!("rancher:{}", env.password),
        &format!("docker://{}/rancher/multi:1", dst.addr()),
        &format!("oci:{}:m", out.path().display()),
    ]);

    // verify: everything there, --json, no credential
    let mut c = env.provision();
    let o = c
        .args(["--json", "images", "verify", "--store"])
        .arg(env.store())
        .arg("--via")
        .arg(dst.addr())
        .output()
        .unwrap();
    let text = ok(&o, "verify");
    assert!(!text.contains(&env.password));
    let s = summary(&o);
    assert_eq!(s["images"], 4);
    assert_eq!(s["failed"], 0);

    // a re-run with nothing new: one request per image, at the source and the destination
    let before = src.requests().len();
    let o = env.pull(src.port, &set.refs[..2], &["--json"]);
    ok(&o, "pull again");
    let o2 = env.pull(src.port, &set.refs[2..], &["--json", "--all-platforms"]);
    ok(&o2, "pull again");
    let src_reqs = src.requests().len() - before;
    assert!(
        src_reqs <= 4,
        "{src_reqs} requests to the source for 4 unchanged images"
    );
    assert_eq!(summary(&o)["unchanged"], 2);
    let before = dst.requests().len();
    let o = env.push(dst.port, &["--json"]);
    ok(&o, "push again");
    let s = summary(&o);
    assert_eq!(s["unchanged"], 4);
    let dst_reqs = dst.requests().len() - before;
    // one HEAD per image, plus a fixed 2 per run whatever the number of images: the
    // `GET /v2/` that meets distribution's 401 challenge and its answer with credentials
    assert!(
        dst_reqs <= 4 + 2,
        "{dst_reqs} requests to the destination for 4 unchanged images"
    );
}

#[test]
fn a_single_platform_is_pushed_under_the_tag_with_its_own_digest() {
    if !harness::tools_or_skip("a_single_platform_is_pushed_under_the_tag_with_its_own_digest") {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 1 << 20);
    let env = Env::new();
    let dst = env.registry();
    ok(&env.pull(src.port, &["rancher/multi:1"], &[]), "pull");
    ok(&env.push(dst.port, &[]), "push");
    assert_eq!(
        sha256(&env.dest_raw(&dst, "rancher/multi:1")),
        set.multi_amd64
    );
    // a platform the index lacks: exit 1 naming what it has
    let o = env.pull(
        src.port,
        &["rancher/multi:1"],
        &["--platform", "linux/s390x"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no linux/s390x image in it (it has linux/amd64, linux/arm64)"),
        "{err}"
    );
}

#[test]
fn provision_pushes_what_skopeo_wrote() {
    if !harness::tools_or_skip("provision_pushes_what_skopeo_wrote") {
        return;
    }
    let src = Reg::start(None);
    seed::standard(&src.addr(), 1 << 20);
    let env = Env::new();
    let dst = env.registry();
    let layout = env.dir.path().join("skopeo-layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/rancher/app:1", src.addr()),
        &format!("oci:{}:rancher/app:1", layout.display()),
    ]);
    let mut c = env.provision();
    let o = c
        .args(["images", "push", "--store"])
        .arg(&layout)
        .arg("--via")
        .arg(dst.addr())
        .output()
        .unwrap();
    ok(&o, "push of skopeo's layout");
    assert_eq!(
        sha256(&env.dest_raw(&dst, "rancher/app:1")),
        sha256(&source_raw(&src, "rancher/app:1"))
    );
}

#[test]
fn faults_429_5xx_and_dropped_connections_are_survived() {
    if !harness::tools_or_skip("faults_429_5xx_and_dropped_connections_are_survived") {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 3 << 20);
    let proxy = Proxy::start(src.port, &["--429", "2", "--503", "2", "--drop", "3"]);
    let env = Env::new();
    let t = Instant::now();
    let o = env.pull(proxy.port, &set.refs, &["--json"]);
    ok(&o, "pull through the fault proxy");
    let fired = proxy.fired();
    assert_eq!(fired["429"], 2, "{fired}");
    assert_eq!(fired["503"], 2, "{fired}");
    assert_eq!(fired["drop"], 3, "{fired}");
    // each dropped blob was resumed with a Range request, not fetched again from zero
    assert!(fired["range"].as_u64().unwrap() >= 3, "{fired}");
    // Retry-After: 1 was honoured (two 429s on possibly parallel requests: at least 1 s)
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(summary(&o)["retries"].as_u64().unwrap() >= 4);
    assert_store_consistent(&env.store());
    let dst = env.registry();
    ok(&env.push(dst.port, &[]), "push");
    assert_eq!(
        sha256(&env.dest_raw(&dst, "rancher/app:1")),
        sha256(&source_raw(&src, "rancher/app:1"))
    );
}

/// `images pull` of `refs` through the slow proxy, running, with a blob half-way down.
fn pull_in_the_middle(env: &Env, slow: &Proxy, refs: &[&str]) -> std::process::Child {
    let mut c = env.provision();
    c.args(["images", "pull", "--source-plain-http", "--store"])
        .arg(env.store())
        .arg("--source-registry")
        .arg(format!("127.0.0.1:{}", slow.port))
        .args(refs);
    let child = c.spawn().unwrap();
    wait_for_blobs(&env.store(), true);
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn wait_for_blobs(dir: &Path, partial: bool) {
    let t = Instant::now();
    let sub = if partial { ".partial" } else { "blobs/sha256" };
    while t.elapsed() < Duration::from_secs(20) {
        if std::fs::read_dir(dir.join(sub)).is_ok_and(|d| d.count() > 0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing arrived in {}", dir.join(sub).display());
}

/// Waits until `reg`'s access log has not grown for `still` (at most `limit`).
fn quiet(reg: &Reg, still: Duration, limit: Duration) {
    let t = Instant::now();
    let mut seen = reg.requests().len();
    let mut since = Instant::now();
    while t.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
        let now = reg.requests().len();
        if now != seen {
            seen = now;
            since = Instant::now();
        } else if since.elapsed() >= still {
            return;
        }
    }
}

/// Committed uploads per digest in a registry's access log (`PUT …?digest=…` answered 201).
fn commits(reg: &Reg) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for l in reg.requests() {
        if l.contains("\"PUT /v2/") && l.contains("digest=sha256") && l.contains("\" 201 ") {
            let d = l.split("digest=").nth(1).unwrap();
            let d: String = d
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '%' || *c == ':')
                .collect();
            *m.entry(d).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn kill_9_during_pull_and_push_then_a_rerun_completes() {
    if !harness::tools_or_skip("kill_9_during_pull_and_push_then_a_rerun_completes") {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 8 << 20);
    // 4 MB/s per connection: slow enough to be killed in the middle of a blob
    let slow = Proxy::start(src.port, &["--rate", "4000000"]);
    let env = Env::new();
    let mut child = pull_in_the_middle(&env, &slow, &set.refs);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_store_consistent(&env.store());
    let o = env.pull(src.port, &set.refs, &["--json"]);
    ok(&o, "pull after kill -9");
    assert_store_consistent(&env.store());
    assert_eq!(summary(&o)["failed"], 0);

    let dst = env.registry();
    let slow_dst = Proxy::start(dst.port, &["--tcp", "--rate", "4000000"]);
    let mut c = env.provision();
    c.args(["images", "push", "--store"])
        .arg(env.store())
        .arg("--via")
        .arg(format!("127.0.0.1:{}", slow_dst.port));
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while commits(&dst).is_empty() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    // What the dead process had sent is still on its way (the kernel sends a killed
    // process's queued bytes, and the slow proxy holds some): a commit that lands after the
    // rerun looked would be committed twice, harmlessly (blobs are content-addressed), but
    // not by the rerun's doing. Wait until the registry has heard the last of it.
    quiet(&dst, Duration::from_secs(1), Duration::from_secs(20));
    let committed_before: usize = commits(&dst).values().sum();
    assert!(committed_before > 0);
    let before_rerun = dst.requests().len();
    ok(&env.push(dst.port, &[]), "push after kill -9");
    for (d, n) in commits(&dst) {
        let short = &d[d.len() - 12..];
        let lines: Vec<String> = dst
            .requests()
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(short) || l.contains("PATCH") || l.contains("POST"))
            .map(|(i, l)| format!("{}{i}: {l}", if i >= before_rerun { "rerun " } else { "" }))
            .collect();
        assert_eq!(
            n,
            1,
            "blob {d} was committed {n} times:\n{}",
            lines.join("\n")
        );
    }
    for r in ["library/base:1", "rancher/app:1", "rancher/big:1"] {
        assert_eq!(
            sha256(&env.dest_raw(&dst, r)),
            sha256(&source_raw(&src, r)),
            "{r}"
        );
    }
}

#[test]
fn ctrl_c_exits_130_with_the_store_consistent() {
    if !harness::tools_or_skip("ctrl_c_exits_130_with_the_store_consistent") {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 8 << 20);
    let slow = Proxy::start(src.port, &["--rate", "2000000"]);
    let env = Env::new();
    let mut child = pull_in_the_middle(&env, &slow, &set.refs);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "Ctrl-C did not stop the pull"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert_store_consistent(&env.store());
    ok(&env.pull(src.port, &set.refs, &[]), "pull after Ctrl-C");

    // and in the middle of a push
    let dst = env.registry();
    let slow_dst = Proxy::start(dst.port, &["--tcp", "--rate", "2000000"]);
    let mut c = env.provision();
    c.args(["images", "push", "--store"])
        .arg(env.store())
        .arg("--via")
        .arg(format!("127.0.0.1:{}", slow_dst.port));
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while !dst
        .requests()
        .iter()
        .any(|l| l.contains("PATCH") || l.contains("\"PUT /v2/"))
        && t.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    ok(&env.push(dst.port, &[]), "push after Ctrl-C");
    ok(
        &env.provision()
            .args(["images", "verify", "--store"])
            .arg(env.store())
            .arg("--via")
            .arg(dst.addr())
            .output()
            .unwrap(),
        "verify after Ctrl-C and a re-run",
    );
}

#[test]
fn verify_names_a_missing_image_and_a_missing_blob() {
    if !harness::tools_or_skip("verify_names_a_missing_image_and_a_missing_blob") {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 1 << 20);
    let env = Env::new();
    let dst = env.registry();
    ok(
        &env.pull(src.port, &["base:1", "rancher/app:1"], &[]),
        "pull",
    );
    ok(&env.push(dst.port, &[]), "push");
    let verify = |refs: &[&str]| {
        let mut c = env.provision();
        c.args(["images", "verify", "--store"])
            .arg(env.store())
            .arg("--via")
            .arg(dst.addr())
            .args(refs)
            .output()
            .unwrap()
    };
    ok(&verify(&[]), "verify");
    let o = verify(&["rancher/app:1", "rancher/absent:9"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rancher/absent:9"), "{err}");
    assert!(err.contains("not in the registry"), "{err}");
    assert!(!err.contains("rancher/app:1:"), "{err}");
    // the shared base layer disappears from the registry's storage
    dst.delete_blob_data(&set.base_layer);
    let o = verify(&["base:1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&set.base_layer), "{err}");
}

/// Runs `provision ARGS` under `/usr/bin/time`, returning its peak RSS in bytes.
fn peak_rss(env: &Env, args: &[&str]) -> u64 {
    let report = env.dir.path().join("time.txt");
    let bin = assert_cmd::cargo::cargo_bin("provision");
    let o = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(bin)
        .args(args)
        .current_dir(env.dir.path())
        .env("DOCKER_CONFIG", env.dir.path().join("no-docker-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("PROVISION_IMAGES_CHUNK_SIZE")
        .output()
        .unwrap();
    ok(&o, &format!("{args:?}"));
    let kb: u64 = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
#[ignore = "moves a 300 MB layer: run with --ignored"]
fn a_layer_over_256_mib_is_streamed_through_pull_and_chunked_push() {
    if !harness::tools_or_skip("a_layer_over_256_mib_is_streamed_through_pull_and_chunked_push") {
        return;
    }
    assert!(
        Path::new("/usr/bin/time").exists(),
        "this test measures memory with /usr/bin/time (Debian: apt-get install time)"
    );
    let src = Reg::start(None);
    seed::standard(&src.addr(), 300 << 20);
    let env = Env::new();
    let dst = env.registry();
    let store = env.store().display().to_string();
    let source = format!("127.0.0.1:{}", src.port);
    let pull_rss = peak_rss(
        &env,
        &[
            "images",
            "pull",
            "--source-plain-http",
            "--source-registry",
            &source,
            "--store",
            &store,
            "rancher/big:1",
        ],
    );
    let push_rss = peak_rss(
        &env,
        &["images", "push", "--store", &store, "--via", &dst.addr()],
    );
    eprintln!("peak RSS moving a 300 MB layer: pull {pull_rss} B, push {push_rss} B");
    // streamed, never held in memory
    assert!(pull_rss < 150 << 20, "pull peaked at {pull_rss} bytes");
    assert!(push_rss < 150 << 20, "push peaked at {push_rss} bytes");
    assert_eq!(
        sha256(&env.dest_raw(&dst, "rancher/big:1")),
        sha256(&source_raw(&src, "rancher/big:1"))
    );
}

/// A store naming one image (push resolves the registry once it has something to push).
fn store_naming_one_image(env: &Env) {
    let store = provision::images::store::Store::open(&env.store()).unwrap();
    let mut idx = store.load_index().unwrap();
    idx.set(
        "docker.io/rancher/app:1",
        provision::images::store::Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 2,
            annotations: Default::default(),
            platform: None,
        },
    );
    store.save_index(&idx).unwrap();
}

#[test]
fn ssm_mode_without_a_tunnel_says_how_to_open_one() {
    let env = Env::new();
    let cfg = env.dir.path().join("provision.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replacen("# mode = \"bastion\"", "mode = \"ssm\"", 1);
    std::fs::write(&cfg, text).unwrap();
    store_naming_one_image(&env);
    let mut c = env.provision();
    let o = c
        .args(["images", "push", "--store"])
        .arg(env.store())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "uses ssm access",
        "AWS-StartPortForwardingSessionToRemoteHost",
        "provision images push --via 127.0.0.1:5000",
        "1 MB/s",
        "provision images save --archive",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn tls_is_verified_against_the_registry_name_not_the_address() {
    if !harness::tools_or_skip("tls_is_verified_against_the_registry_name_not_the_address") {
        return;
    }
    let env = Env::new();
    let dst = env.registry();
    store_naming_one_image(&env);
    // the env's certificate names `<env>-registry.<zone>`, not 127.0.0.1: refused, at once
    let t = Instant::now();
    let mut c = env.provision();
    let o = c
        .args(["images", "push", "--store"])
        .arg(env.store())
        .arg("--to")
        .arg(dst.addr())
        .arg("--to-ca")
        .arg(env.secrets.join("registry-ca.crt"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not verify as `127.0.0.1`"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a bad certificate was retried"
    );
    // through --via the same address verifies as the registry's name
    let o = env.push(dst.port, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("does not verify"), "{err}");
}

#[test]
fn the_archive_route_saves_split_volumes_and_pushes_from_them() {
    if !harness::tools_or_skip("the_archive_route_saves_split_volumes_and_pushes_from_them") {
        return;
    }
    let src = Reg::start(None);
    seed::standard(&src.addr(), 4 << 20);
    let env = Env::new();
    let dst = env.registry();
    ok(
        &env.pull(
            src.port,
            &[
                "base:1",
                "rancher/app:1",
                "rancher/multi:1",
                "rancher/big:1",
            ],
            &["--all-platforms"],
        ),
        "pull",
    );
    let archive = env.dir.path().join("carry/images.tar");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let mut c = env.provision();
    let o = c
        .args(["images", "save", "--store"])
        .arg(env.store())
        .arg("--archive")
        .arg(&archive)
        .args(["--split", "3M"])
        .output()
        .unwrap();
    ok(&o, "save --split");
    assert!(env.dir.path().join("carry/images.tar.000").is_file());
    assert!(env.dir.path().join("carry/images.tar.sha256").is_file());
    // the other side has only the volumes
    let moved = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(archive.parent().unwrap()).unwrap() {
        let e = e.unwrap();
        std::fs::rename(e.path(), moved.path().join(e.file_name())).unwrap();
    }
    let mut c = env.provision();
    let o = c
        .args(["images", "push", "--archive"])
        .arg(moved.path().join("images.tar"))
        .arg("--via")
        .arg(dst.addr())
        .output()
        .unwrap();
    ok(&o, "push --archive");
    for r in [
        "library/base:1",
        "rancher/app:1",
        "rancher/multi:1",
        "rancher/big:1",
    ] {
        assert_eq!(
            sha256(&env.dest_raw(&dst, r)),
            sha256(&source_raw(&src, r)),
            "{r}"
        );
    }
    // nothing was extracted next to the volumes
    let names: Vec<String> = std::fs::read_dir(moved.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("images.tar")),
        "{names:?}"
    );
}

#[test]
fn push_with_a_list_pulls_and_pushes_in_one_command_and_a_rerun_asks_the_source_once_per_image() {
    if !harness::tools_or_skip(
        "push_with_a_list_pulls_and_pushes_in_one_command_and_a_rerun_asks_the_source_once_per_image",
    ) {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 12 << 20);
    let env = Env::new();
    let dst = env.registry();
    // 8 MB/s per connection: blobs land over seconds, so a push that did not wait for
    // them to be in the store would find them missing
    let slow = Proxy::start(src.port, &["--rate", "8000000"]);
    let list = env.dir.path().join("images.txt");
    std::fs::write(&list, set.refs.join("\n") + "\n").unwrap();
    let copy = || {
        let mut c = env.provision();
        c.args(["--json", "images", "push", "--all-platforms", "--list"])
            .arg(&list)
            .arg("--source-registry")
            .arg(format!("127.0.0.1:{}", slow.port))
            .arg("--source-plain-http")
            .arg("--store")
            .arg(env.store())
            .arg("--via")
            .arg(dst.addr());
        c.output().unwrap()
    };

    let o = copy();
    let text = ok(&o, "push --list");
    assert!(!text.contains(&env.password), "the password was printed");
    let s = summary(&o);
    assert_eq!(s["images"], 4, "{text}");
    assert_eq!(s["done"], 4, "{text}");
    assert_eq!(s["failed"], 0, "{text}");
    // the store holds what a pull would have left (verified blobs, index.json, lock)
    assert_store_consistent(&env.store());
    let c = commits(&dst);
    assert!(!c.is_empty(), "nothing was uploaded");
    assert!(
        c.values().all(|&n| n == 1),
        "a blob was uploaded twice: {c:?}"
    );
    for r in [
        "library/base:1",
        "rancher/app:1",
        "rancher/multi:1",
        "rancher/big:1",
    ] {
        assert_eq!(
            sha256(&env.dest_raw(&dst, r)),
            sha256(&source_raw(&src, r)),
            "{r} differs from the source"
        );
    }
    assert_eq!(
        sha256(&env.dest_raw(&dst, "rancher/multi:1")),
        set.multi_index
    );

    // a re-run with nothing new: one HEAD per image at the source, nothing uploaded
    let before = src.requests().len();
    let commits_before = commits(&dst);
    let o = copy();
    let text = ok(&o, "push --list again");
    assert_eq!(summary(&o)["unchanged"], 4, "{text}");
    let src_reqs = src.requests().len() - before;
    assert!(
        src_reqs <= 4,
        "{src_reqs} requests to the source for 4 unchanged images"
    );
    assert_eq!(commits(&dst), commits_before, "a re-run uploaded again");
}

/// Flips one byte in the middle of `len` bytes at `offset` of `file`: same size, wrong
/// content.
fn corrupt_in_place(file: &Path, offset: u64, len: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = (offset + len / 2) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn a_corrupt_blob_in_the_archive_says_to_write_the_archive_again_not_to_pull() {
    if !harness::tools_or_skip(
        "a_corrupt_blob_in_the_archive_says_to_write_the_archive_again_not_to_pull",
    ) {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 1 << 20);
    let env = Env::new();
    let dst = env.registry();
    ok(&env.pull(src.port, &["base:1"], &[]), "pull");
    let archive = env.dir.path().join("images.tar");
    let mut c = env.provision();
    let o = c
        .args(["images", "save", "--store"])
        .arg(env.store())
        .arg("--archive")
        .arg(&archive)
        .output()
        .unwrap();
    ok(&o, "save");
    // the shared base layer, damaged inside the tar (a bad copy to the other side)
    let layer = std::fs::read(
        env.store()
            .join("blobs/sha256")
            .join(&set.base_layer["sha256:".len()..]),
    )
    .unwrap();
    let tar = std::fs::read(&archive).unwrap();
    let at = tar
        .windows(4096)
        .position(|w| w == &layer[..4096])
        .expect("the layer is in the archive");
    corrupt_in_place(&archive, at as u64, layer.len() as u64);

    let mut c = env.provision();
    let o = c
        .args(["images", "push", "--archive"])
        .arg(&archive)
        .arg("--via")
        .arg(dst.addr())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "a corrupt archive was pushed:\n{err}");
    assert!(
        err.contains(&set.base_layer),
        "the blob is not named:\n{err}"
    );
    assert!(
        err.contains(&format!("the archive {}", archive.display())),
        "the archive is not named:\n{err}"
    );
    assert!(
        err.contains("provision images save --archive")
            && err.contains(&format!(
                "provision images push --archive {}",
                archive.display()
            )),
        "no advice to write the archive again and push it:\n{err}"
    );
    // there is no pull on this side, and no store to remove the blob from
    assert!(
        !err.contains("run `provision images pull` again")
            && !err.contains("removed from the store"),
        "advice for the store route:\n{err}"
    );
    // nothing committed: the registry holds no copy of the bad layer
    assert!(
        !commits(&dst)
            .keys()
            .any(|k| k.contains(&set.base_layer["sha256:".len()..])),
        "the corrupt layer was committed"
    );
    assert!(archive.is_file(), "the archive was removed");
}

#[test]
fn save_is_refused_while_a_pull_holds_the_store_and_a_pull_while_a_save_does() {
    if !harness::tools_or_skip(
        "save_is_refused_while_a_pull_holds_the_store_and_a_pull_while_a_save_does",
    ) {
        return;
    }
    let src = Reg::start(None);
    seed::standard(&src.addr(), 1 << 20);
    let env = Env::new();
    ok(&env.pull(src.port, &["base:1"], &[]), "pull");
    let archive = env.dir.path().join("images.tar");
    let save = || {
        let mut c = env.provision();
        c.args(["images", "save", "--store"])
            .arg(env.store())
            .arg("--archive")
            .arg(&archive);
        c.output().unwrap()
    };
    // a pull holds the store (this process stands in for it)
    let store = provision::images::store::Store::open(&env.store()).unwrap();
    let held = store.lock_exclusive("images pull").unwrap();
    let o = save();
    let err = stderr(&o);
    assert!(!o.status.success(), "save ran while a pull held the store");
    assert!(
        err.contains("is in use")
            && err.contains("held for `provision images pull`")
            && err.contains(&format!("pid {}", std::process::id())),
        "the refusal does not name the holder:\n{err}"
    );
    assert!(!archive.exists(), "an archive was written");
    // and a pull meanwhile is refused the same way
    drop(held);
    let reader = store.lock_shared("images save").unwrap();
    let o = env.pull(src.port, &["base:1"], &[]);
    assert!(
        !o.status.success(),
        "a pull ran while a save held the store"
    );
    assert!(
        stderr(&o).contains("held for `provision images save`"),
        "{}",
        stderr(&o)
    );
    drop(reader);
    ok(&save(), "save once the store is free");
    assert!(archive.is_file());
}

/// The digest `index.json` of the store records for `name`.
fn stored_digest(store: &Path, name: &str) -> String {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in index.json"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn same_size_corrupt_blobs_in_the_store_are_never_pushed_and_a_pull_fetches_them_again() {
    if !harness::tools_or_skip(
        "same_size_corrupt_blobs_in_the_store_are_never_pushed_and_a_pull_fetches_them_again",
    ) {
        return;
    }
    let src = Reg::start(None);
    let set = seed::standard(&src.addr(), 8 << 20);
    let env = Env::new();
    let dst = env.registry();
    let refs = ["base:1", "rancher/app:1", "rancher/big:1"];
    ok(&env.pull(src.port, &refs, &[]), "pull");
    let blobs = env.store().join("blobs/sha256");
    let file = |digest: &str| blobs.join(&digest["sha256:".len()..]);
    // the shared base layer (a whole upload), the big layer (chunked: over the 4 MiB chunk
    // size of these tests) and app's manifest, each with one byte changed, same size
    let big = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap())
        .max_by_key(|e| e.metadata().unwrap().len())
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .unwrap();
    let manifest = stored_digest(&env.store(), "docker.io/rancher/app:1");
    for d in [&set.base_layer, &big] {
        let len = std::fs::metadata(file(d)).unwrap().len();
        corrupt_in_place(&file(d), 0, len);
    }
    // a manifest that still parses: one hex digit of a digest in it changed
    let text = std::fs::read_to_string(file(&manifest)).unwrap();
    let at = text.find("sha256:").unwrap() + "sha256:".len();
    let swapped = if &text[at..=at] == "0" { "1" } else { "0" };
    std::fs::write(
        file(&manifest),
        format!("{}{swapped}{}", &text[..at], &text[at + 1..]),
    )
    .unwrap();

    let o = env.push(dst.port, &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "corrupt blobs were pushed:\n{err}");
    for (what, d) in [
        ("base layer", &set.base_layer),
        ("big layer", &big),
        ("manifest", &manifest),
    ] {
        assert!(err.contains(d.as_str()), "the {what} is not named:\n{err}");
        assert!(!file(d).exists(), "the corrupt {what} stayed in the store");
    }
    assert!(
        err.contains("docker.io/library/base:1")
            && err.contains("docker.io/rancher/big:1")
            && err.contains("docker.io/rancher/app:1"),
        "an image is not named:\n{err}"
    );
    assert!(
        err.contains("removed from the store") && err.contains("run `provision images pull` again"),
        "no advice to pull again:\n{err}"
    );
    let c = commits(&dst);
    for d in [&set.base_layer, &big] {
        assert!(
            !c.keys().any(|k| k.contains(&d["sha256:".len()..])),
            "corrupt blob {d} was committed"
        );
    }

    // what the message says works: pull again, push again
    ok(&env.pull(src.port, &refs, &[]), "pull again");
    assert_store_consistent(&env.store());
    ok(&env.push(dst.port, &[]), "push again");
    for r in ["library/base:1", "rancher/app:1", "rancher/big:1"] {
        assert_eq!(
            sha256(&env.dest_raw(&dst, r)),
            sha256(&source_raw(&src, r)),
            "{r}"
        );
    }
}

#[test]
fn verify_checks_every_manifest_of_an_index_and_names_each_incomplete_one() {
    if !harness::tools_or_skip(
        "verify_checks_every_manifest_of_an_index_and_names_each_incomplete_one",
    ) {
        return;
    }
    let src = Reg::start(None);
    seed::standard(&src.addr(), 1 << 20);
    let env = Env::new();
    let dst = env.registry();
    ok(
        &env.pull(src.port, &["rancher/multi:1"], &["--all-platforms"]),
        "pull",
    );
    ok(&env.push(dst.port, &[]), "push");
    let verify = || {
        let mut c = env.provision();
        c.args(["images", "verify", "--parallelism", "2", "--store"])
            .arg(env.store())
            .arg("--via")
            .arg(dst.addr())
            .output()
            .unwrap()
    };
    ok(&verify(), "verify");
    // each platform's own layer (see seed::standard) disappears from the registry
    let amd64 = sha256(&seed::gzip_stored(&seed::random(4, 800_000)));
    let arm64 = sha256(&seed::gzip_stored(&seed::random(5, 900_000)));
    dst.delete_blob_data(&amd64);
    dst.delete_blob_data(&arm64);
    let o = verify();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&amd64) && err.contains(&arm64),
        "not every incomplete manifest of the index is named:\n{err}"
    );
}

#[test]
fn an_archive_naming_images_by_a_bare_tag_is_pushed_under_the_lists_names() {
    if !harness::tools_or_skip(
        "an_archive_naming_images_by_a_bare_tag_is_pushed_under_the_lists_names",
    ) {
        return;
    }
    let src = Reg::start(None);
    seed::standard(&src.addr(), 1 << 20);
    let env = Env::new();
    let dst = env.registry();
    // skopeo's way: an OCI layout whose ref.name is the tag alone, tarred
    let layout = env.dir.path().join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/rancher/app:1", src.addr()),
        &format!("oci:{}:1", layout.display()),
    ]);
    let archive = env.dir.path().join("app.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let push = |list: &[&str]| {
        let mut c = env.provision();
        c.args(["images", "push", "--archive"])
            .arg(&archive)
            .arg("--via")
            .arg(dst.addr())
            .args(list);
        c.output().unwrap()
    };
    // no list: refused, naming the entry, nothing pushed under a made-up name
    let o = push(&[]);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "pushed without knowing its name:\n{err}"
    );
    assert!(
        err.contains(&archive.display().to_string()) && err.contains("`1` (sha256:"),
        "the entry is not named:\n{err}"
    );
    assert!(commits(&dst).is_empty(), "something was pushed");
    // a list where two images have the tag: refused as ambiguous
    let o = push(&["rancher/app:1", "base:1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("2 images of the list have that tag"),
        "{}",
        stderr(&o)
    );
    // the list it was made from names it
    ok(
        &push(&["rancher/app:1", "rancher/multi:2"]),
        "push --archive with a list",
    );
    assert_eq!(
        sha256(&env.dest_raw(&dst, "rancher/app:1")),
        sha256(&source_raw(&src, "rancher/app:1"))
    );
}
