//! The test harness: one moto server per test behind a recording, fault-injecting proxy
//! (`tests/support/proxy.py`), the real `provision` binary run in a temporary folder, and
//! SDK clients that check the cloud directly (not through the proxy).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How long moto may take to answer its first request.
const MOTO_START: Duration = Duration::from_secs(20);
/// Longest any single `provision` run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(240);

pub const ENV: &str = "lab";
pub const ZONE: &str = "lab.example.com";
pub const HOSTNAME: &str = "rancher.lab.example.com";
pub const AMI: &str = "ami-785db401";
pub const ADMIN_CIDR: &str = "203.0.113.0/24";

// ---------------------------------------------------------------------------------------
// A counting semaphore so that a many-core machine does not start dozens of emulators.

struct Slots {
    free: Mutex<usize>,
    changed: Condvar,
}

static SLOTS: Slots = Slots {
    free: Mutex::new(0),
    changed: Condvar::new(),
};
static SLOTS_INIT: std::sync::Once = std::sync::Once::new();

pub struct Slot;

impl Slot {
    fn acquire() -> Self {
        SLOTS_INIT.call_once(|| {
            let n = std::env::var("IT_MAX_EMULATORS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3);
            *SLOTS.free.lock().unwrap() = n;
        });
        let mut free = SLOTS.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = SLOTS.changed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        SLOTS.changed.notify_one();
    }
}

// ---------------------------------------------------------------------------------------
// Processes

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    repo_root().join(".venv/bin/moto_server")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Moto {
    _child: Killed,
    pub port: u16,
    /// moto's stderr (one line per request, and its tracebacks). Kept when the test fails
    /// (every failure of a `provision` run names it), removed otherwise.
    pub log: PathBuf,
}

/// Where the emulators' logs go: `target/tmp/moto-logs/`.
fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moto-logs");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Prints, once per test binary, which moto the tests run against (the pin is in
/// tests/support/requirements.txt).
fn announce_moto(exe: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let python = exe.with_file_name("python");
        let version = Command::new(&python)
            .args(["-c", "import moto; print(moto.__version__)"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map_or_else(
                || "unknown (no python next to it)".to_string(),
                |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
            );
        // Straight to the stderr stream: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr().lock(),
            "integration tests: moto {version} ({}); emulator logs of failed tests in {}",
            exe.display(),
            log_dir().display()
        );
    });
}

impl Moto {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// `managed_policies`: load AWS's managed IAM policies (`arn:aws:iam::aws:policy/...`,
    /// needed to attach `AmazonSSMManagedInstanceCore`); it costs the emulator about a
    /// second at its first IAM call, so only the worlds that need it ask for it.
    pub fn start_with(managed_policies: bool) -> Self {
        let exe = moto_server_path();
        assert!(
            exe.exists(),
            "the AWS emulator is missing: {} does not exist. Run `make venv` (it installs \
             the pinned tests/support/requirements.txt into .venv), or set MOTO_SERVER to a \
             moto_server executable",
            exe.display()
        );
        announce_moto(&exe);
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let thread = std::thread::current();
            let name: String = thread
                .name()
                .unwrap_or("test")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let log = log_dir().join(format!("{name}-{port}.log"));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
            let mut command = Command::new(&exe);
            if managed_policies {
                command.env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true");
            }
            let child = command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_file))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
            let mut child = Killed(child);
            let deadline = Instant::now() + MOTO_START;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.0.try_wait() {
                    last_error = format!(
                        "moto_server exited with {status} (port {port}); its log: {}",
                        log.display()
                    );
                    break;
                }
                if let Ok((status, _)) = http(port, "GET", "/moto-api/", b"") {
                    if status > 0 {
                        return Moto {
                            _child: child,
                            port,
                            log,
                        };
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if last_error.is_empty() {
                last_error = format!(
                    "moto_server did not answer on port {port} within {MOTO_START:?}; its log: {}",
                    log.display()
                );
            }
        }
        panic!("the AWS emulator did not start: {last_error}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the emulator's log is kept in {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// One plain HTTP/1.0 exchange with 127.0.0.1:`port`: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    Ok((status, response[start..].to_vec()))
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Call {
    pub service: String,
    pub action: String,
    /// The API operation (for Route53 the one its REST path maps to).
    #[serde(default)]
    pub op: String,
    pub mutating: bool,
    /// Answered by the proxy without reaching the emulator.
    #[serde(default)]
    pub faulted: bool,
    /// throttle, in_use, blocked, caller_reference_reused, token_replay, token_mismatch
    /// (not forwarded) or lost_reply (forwarded, answered with a 500 or no answer).
    #[serde(default)]
    pub fault: Option<String>,
    /// The `provision:id` tag a create carries.
    #[serde(default)]
    pub id: Option<String>,
    /// The EC2 `ClientToken` the call carries.
    #[serde(default)]
    pub token: Option<String>,
    /// What a Query/EC2 call acts on: its GroupId, InstanceId, ResourceId.1, ... (the
    /// first the proxy finds).
    #[serde(default)]
    pub target: Option<String>,
    /// What the emulator holds that made the proxy refuse a delete (`fault`: blocked).
    #[serde(default)]
    pub blockers: Vec<String>,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.service, self.action)
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Stats {
    pub calls: Vec<Call>,
    pub held: bool,
    #[serde(default)]
    pub held_call: Option<Call>,
}

impl Stats {
    /// Calls the proxy answered with this fault.
    pub fn faults(&self, fault: &str) -> Vec<&Call> {
        self.calls
            .iter()
            .filter(|c| c.fault.as_deref() == Some(fault))
            .collect()
    }

    /// Mutating calls that reached the emulator.
    pub fn mutating(&self) -> Vec<&Call> {
        self.calls
            .iter()
            .filter(|c| c.mutating && !c.faulted)
            .collect()
    }

    pub fn mutating_names(&self) -> Vec<String> {
        self.mutating().iter().map(|c| c.to_string()).collect()
    }
}

pub struct Proxy {
    _child: Killed,
    pub port: u16,
}

impl Proxy {
    pub fn start(upstream: u16) -> Self {
        let script = repo_root().join("tests/support/proxy.py");
        // The emulator's venv holds the pinned boto3 the proxy reads the emulator with.
        let python = moto_server_path().with_file_name("python");
        let python = if python.exists() {
            python
        } else {
            PathBuf::from("python3")
        };
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(upstream.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} {}: {e}",
                    python.display(),
                    script.display()
                )
            });
        let stdout = child.stdout.take().unwrap();
        let child = Killed(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the proxy's port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the proxy printed {line:?} instead of its port"));
        Proxy {
            _child: child,
            port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn control(&self, method: &str, path: &str, body: &str) -> Vec<u8> {
        let (status, body) = http(self.port, method, path, body.as_bytes())
            .unwrap_or_else(|e| panic!("proxy control {path}: {e}"));
        assert_eq!(
            status,
            200,
            "proxy control {path}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    pub fn reset(&self) {
        self.control("POST", "/__proxy/reset", "");
    }

    /// Delivers the held response to the client after all.
    pub fn release(&self) {
        self.control("POST", "/__proxy/release", "");
    }

    pub fn configure(&self, config: serde_json::Value) {
        self.control("POST", "/__proxy/config", &config.to_string());
    }

    pub fn stats(&self) -> Stats {
        serde_json::from_slice(&self.control("GET", "/__proxy/stats", ""))
            .expect("proxy stats JSON")
    }

    /// Everything the emulator holds, tagged or not, one "kind id" line each, sorted
    /// (read by the proxy with boto3, not by the tool's code).
    pub fn inventory(&self) -> Vec<String> {
        serde_json::from_slice(&self.control("GET", "/__proxy/inventory", ""))
            .expect("proxy inventory JSON")
    }
}

/// What `after` holds that `before` did not, except what a destroy keeps on purpose (DB
/// snapshots, secrets in their recovery window).
pub fn inventory_added(before: &[String], after: &[String]) -> Vec<String> {
    after
        .iter()
        .filter(|line| !before.contains(line))
        .filter(|line| {
            !line.starts_with("db snapshot (kept) ")
                && !line.starts_with("secret (scheduled for deletion) ")
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------
// The binary

#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The log of the emulator the run talked to.
    pub emulator_log: Option<PathBuf>,
}

impl Run {
    pub fn describe(&self) -> String {
        format!(
            "`provision {}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- emulator log: {} ---",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr,
            self.emulator_log
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| p.display().to_string())
        )
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{}", self.describe());
        self
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit {code}: {}", self.describe());
        self
    }

    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A running `provision` whose output is collected in the background.
pub struct Running {
    child: Option<Child>,
    args: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    stderr_so_far: Shared,
    emulator_log: Option<PathBuf>,
    /// The pty master when stdin is a terminal (kept open for the run).
    _tty: Option<std::fs::File>,
}

impl Running {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().unwrap().id()).unwrap()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sends a signal to our own child process.
        let r = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(r, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// What the run wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr_so_far.lock().unwrap_or_else(|e| e.into_inner()))
            .into_owned()
    }

    pub fn finished(&mut self) -> bool {
        !matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Waits for the exit, failing the test after `limit`.
    pub fn wait(mut self, limit: Duration) -> Run {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for provision") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
                panic!(
                    "`provision {}` did not finish within {limit:?}; stderr:\n{stderr}\n\
                     emulator log: {:?}",
                    self.args.join(" "),
                    self.emulator_log
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            args: self.args.clone(),
            code: exit_code(status),
            stdout: self.stdout.take().unwrap().join().unwrap_or_default(),
            stderr: self.stderr.take().unwrap().join().unwrap_or_default(),
            emulator_log: self.emulator_log.clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

type Shared = std::sync::Arc<Mutex<Vec<u8>>>;

/// Reads a pipe to its end in the background; what arrived so far is in the shared buffer.
fn collect(mut pipe: impl Read + Send + 'static) -> (std::thread::JoinHandle<String>, Shared) {
    let shared: Shared = Default::default();
    let buffer = shared.clone();
    let handle = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buffer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
        let out = buffer.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&out).into_owned()
    });
    (handle, shared)
}

// ---------------------------------------------------------------------------------------
// Config fixtures

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    K3s,
    Rke,
    Docker,
    Rke2,
}

impl Topology {
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::K3s => "k3s",
            Topology::Rke => "rke",
            Topology::Docker => "docker",
            Topology::Rke2 => "rke2",
        }
    }
}

/// A `provision.toml`; fields left `None` are not written (the tool's default applies).
#[derive(Debug, Clone)]
pub struct Fixture {
    pub topology: Topology,
    pub count: Option<u32>,
    pub lb_enabled: Option<bool>,
    pub instance_class: Option<String>,
    /// `Some(host:port)` switches to an external registry.
    pub external_registry: Option<String>,
    /// `[access] mode`: `Some("ssm")` for Systems Manager access.
    pub access: Option<&'static str>,
    /// `[dns] private_zone = true`: the env's own private hosted zone.
    pub private_zone: bool,
    /// Extra lines appended at the end: first lines of the `[timeouts]` table (which comes
    /// last), then whole new sections.
    pub extra: String,
}

impl Fixture {
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            count: None,
            lb_enabled: None,
            instance_class: None,
            external_registry: None,
            access: None,
            private_zone: false,
            extra: String::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "name = \"{ENV}\"\nregion = \"us-east-1\"\ntopology = \"{}\"\nhostname = \"{HOSTNAME}\"\n\n\
             [network]\nadmin_cidrs = [\"{ADMIN_CIDR}\"]\n\n\
             [nodes]\nami = \"{AMI}\"\nssh_public_key = \"id_ed25519.pub\"\n",
            self.topology.as_str()
        );
        if let Some(count) = self.count {
            s.push_str(&format!("count = {count}\n"));
        }
        if let Some(class) = &self.instance_class {
            s.push_str(&format!("\n[datastore]\ninstance_class = \"{class}\"\n"));
        }
        if let Some(enabled) = self.lb_enabled {
            s.push_str(&format!("\n[load_balancer]\nenabled = {enabled}\n"));
        }
        s.push_str(&format!("\n[dns]\nzone = \"{ZONE}\"\n"));
        if self.private_zone {
            s.push_str("private_zone = true\n");
        }
        if let Some(url) = &self.external_registry {
            s.push_str(&format!(
                "\n[registry]\nmode = \"external\"\nurl = \"{url}\"\n"
            ));
        }
        if let Some(mode) = self.access {
            s.push_str(&format!("\n[access]\nmode = \"{mode}\"\n"));
        }
        s.push_str("\n[timeouts]\npoll_seconds = 0.1\n");
        s.push_str(&self.extra);
        s
    }
}

/// A syntactically valid OpenSSH ed25519 public key line.
pub fn ssh_public_key() -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend((0u8..32).map(|i| i.wrapping_mul(7).wrapping_add(3)));
    format!(
        "ssh-ed25519 {} test@provision\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

// ---------------------------------------------------------------------------------------
// The per-test world

pub struct World {
    // Field order is drop order: the proxy before the emulator, the slot last.
    pub proxy: Proxy,
    pub moto: Moto,
    pub dir: tempfile::TempDir,
    pub aws: Aws,
    /// The emulator's inventory when the world was made (see [`Proxy::inventory`]).
    pub baseline: Vec<String>,
    _slot: Slot,
}

impl World {
    /// An emulator with the public zone `ZONE`, a proxy in front, and `provision.toml`
    /// written from `fixture`.
    pub fn new(fixture: &Fixture) -> Self {
        // Only ssm access attaches an AWS managed policy.
        let world = Self::bare_with(fixture.access == Some("ssm"));
        world.write_config(fixture);
        world
    }

    /// An emulator and proxy, the zone and the ssh key, but no config file.
    pub fn bare() -> Self {
        Self::bare_with(false)
    }

    /// [`World::bare`]; `managed_policies` as in [`Moto::start_with`].
    pub fn bare_with(managed_policies: bool) -> Self {
        let slot = Slot::acquire();
        let moto = Moto::start_with(managed_policies);
        let proxy = Proxy::start(moto.port);
        let dir = tempfile::Builder::new()
            .prefix("provision-it-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("id_ed25519.pub"), ssh_public_key()).unwrap();
        let aws = Aws::new(&moto.endpoint());
        aws.create_public_zone(ZONE);
        let baseline = proxy.inventory();
        World {
            proxy,
            moto,
            dir,
            aws,
            baseline,
            _slot: slot,
        }
    }

    /// This world's emulator and proxy, emptied (moto's `/moto-api/reset`, the proxy's
    /// reset), with a new folder, the zone and the ssh key: as `bare()` but without
    /// starting processes. Long sweeps use it.
    pub fn recycle(self) -> Self {
        let World {
            proxy,
            moto,
            dir,
            aws,
            baseline: _,
            _slot,
        } = self;
        drop(dir);
        let (status, body) = http(moto.port, "POST", "/moto-api/reset", b"")
            .unwrap_or_else(|e| panic!("reset the emulator: {e}"));
        assert_eq!(
            status,
            200,
            "moto reset: {}",
            String::from_utf8_lossy(&body)
        );
        proxy.reset();
        let dir = tempfile::Builder::new()
            .prefix("provision-it-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("id_ed25519.pub"), ssh_public_key()).unwrap();
        aws.create_public_zone(ZONE);
        let baseline = proxy.inventory();
        World {
            proxy,
            moto,
            dir,
            aws,
            baseline,
            _slot,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, fixture: &Fixture) {
        std::fs::write(self.path().join("provision.toml"), fixture.render()).unwrap();
    }

    pub fn write_config_text(&self, text: &str) {
        std::fs::write(self.path().join("provision.toml"), text).unwrap();
    }

    pub fn state_file(&self) -> PathBuf {
        self.path().join("state").join(format!("{ENV}.json"))
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.path().join("state").join(ENV).join("secrets")
    }

    fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        // PROVISION_BIN: a copy of the binary, so a long run survives rebuilds meanwhile.
        let bin = std::env::var_os("PROVISION_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_provision").into());
        let mut cmd = Command::new(bin);
        cmd.args(args).current_dir(dir);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&key);
            }
        }
        // `~` is the test's folder: the tool looks for a default SSH key there.
        cmd.env("HOME", dir)
            .env("AWS_ENDPOINT_URL", self.proxy.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts `provision ARGS` and returns at once.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, None)
    }

    /// Starts `provision ARGS` with standard input on a terminal (a pty nobody types
    /// into), so that it asks for confirmation.
    pub fn spawn_on_tty(&self, args: &[&str]) -> Running {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two descriptors we then own.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty failed");
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                std::fs::File::from_raw_fd(slave),
            )
        };
        self.spawn_with(args, Some((master, slave)))
    }

    fn spawn_with(&self, args: &[&str], tty: Option<(std::fs::File, std::fs::File)>) -> Running {
        self.spawn_in(self.path(), args, tty)
    }

    fn spawn_in(
        &self,
        dir: &Path,
        args: &[&str],
        tty: Option<(std::fs::File, std::fs::File)>,
    ) -> Running {
        let mut command = self.command_in(dir, args);
        let tty = tty.map(|(master, slave)| {
            command.stdin(Stdio::from(slave));
            master
        });
        let mut child = command.spawn().expect("start the provision binary");
        let (stdout, _) = collect(child.stdout.take().unwrap());
        let (stderr, stderr_so_far) = collect(child.stderr.take().unwrap());
        Running {
            child: Some(child),
            args: args.iter().map(|s| s.to_string()).collect(),
            stdout: Some(stdout),
            stderr: Some(stderr),
            stderr_so_far,
            emulator_log: Some(self.moto.log.clone()),
            _tty: tty,
        }
    }

    /// Runs `provision ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        self.spawn(args).wait(RUN_LIMIT)
    }

    /// Runs `provision ARGS` to the end in another folder (its own config and state),
    /// against this world's cloud: a neighbour.
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Run {
        self.spawn_in(dir, args, None).wait(RUN_LIMIT)
    }

    /// [`World::run_in`] with the proxy's log cleared first, and the calls it made.
    pub fn run_in_recorded(&self, dir: &Path, args: &[&str]) -> (Run, Stats) {
        self.proxy.reset();
        let run = self.run_in(dir, args);
        (run, self.proxy.stats())
    }

    /// Runs `provision ARGS` with the proxy's log cleared first; returns the run and the
    /// calls it made.
    pub fn run_recorded(&self, args: &[&str]) -> (Run, Stats) {
        self.proxy.reset();
        let run = self.run(args);
        (run, self.proxy.stats())
    }

    pub fn apply(&self) -> Run {
        let run = self.run(&["apply", "--yes"]);
        run.ok();
        run
    }

    /// Asserts that `provision apply` changes nothing: exit 0, says so, zero mutating calls.
    #[track_caller]
    pub fn assert_converged(&self) {
        let (run, stats) = self.run_recorded(&["apply", "--yes"]);
        run.ok();
        assert!(
            run.all_output().to_lowercase().contains("no changes"),
            "a converged apply should say \"no changes\": {}",
            run.describe()
        );
        assert!(
            stats.mutating().is_empty(),
            "a converged apply made mutating calls {:?}\n{}",
            stats.mutating_names(),
            run.describe()
        );
        let (plan, stats) = self.run_recorded(&["plan", "--detailed-exitcode"]);
        plan.code(0);
        assert!(
            stats.mutating().is_empty(),
            "plan mutated: {:?}",
            stats.mutating_names()
        );
    }

    /// Asserts that the emulator holds nothing `before` (its inventory before the apply)
    /// did not, tagged or not, besides what destroy keeps on purpose.
    #[track_caller]
    pub fn assert_inventory_back_to(&self, before: &[String]) {
        let added = inventory_added(before, &self.proxy.inventory());
        assert!(
            added.is_empty(),
            "the emulator holds what it did not before: {added:#?}"
        );
    }

    /// Asserts that nothing of the env is left (tagged or named for it) and that the
    /// emulator holds nothing it did not hold when the world was made, tagged or not,
    /// besides what destroy keeps on purpose.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        let left = self.aws.leftovers();
        assert!(left.is_empty(), "destroy left: {left:#?}");
        self.assert_inventory_back_to(&self.baseline);
    }

    /// The state file as JSON (panics when it is missing or invalid).
    pub fn state_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_file())
            .unwrap_or_else(|e| panic!("read {}: {e}", self.state_file().display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("state file is not valid JSON ({e}):\n{text}"))
    }
}

/// Runs `provision ARGS` in `dir` with no emulator: every `AWS_*` and proxy variable
/// removed, `HOME` = `dir` (so no ~/.aws files), the EC2 metadata service off (it is not
/// on loopback), then `env` set. For failures that happen before or instead of a cloud
/// answer.
pub fn run_offline(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provision"));
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy().to_ascii_uppercase();
        if key_text.starts_with("AWS_") || key_text.ends_with("_PROXY") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("PROVISION_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("start the provision binary");
    let (stdout, _) = collect(child.stdout.take().unwrap());
    let (stderr, stderr_so_far) = collect(child.stderr.take().unwrap());
    Running {
        child: Some(child),
        args: args.iter().map(|s| s.to_string()).collect(),
        stdout: Some(stdout),
        stderr: Some(stderr),
        stderr_so_far,
        emulator_log: None,
        _tty: None,
    }
    .wait(RUN_LIMIT)
}

/// Every regular file under `dir` (recursively) with its path.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Waits until `condition` holds, failing after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Direct cloud checks

pub type Tags = BTreeMap<String, String>;

pub fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Asserts the contract's tags on one resource and returns its logical id.
#[track_caller]
pub fn assert_owned(what: &str, tags: &Tags) -> String {
    assert_eq!(
        tags.get("provision:env").map(String::as_str),
        Some(ENV),
        "{what} lacks provision:env={ENV}: {tags:?}"
    );
    let id = tags
        .get("provision:id")
        .unwrap_or_else(|| panic!("{what} lacks provision:id: {tags:?}"))
        .clone();
    assert!(!id.is_empty(), "{what} has an empty provision:id");
    id
}

#[track_caller]
pub fn assert_named(what: &str, tags: &Tags) {
    let id = assert_owned(what, tags);
    assert_eq!(
        tags.get("Name"),
        Some(&format!("{ENV}-{id}")),
        "{what} ({id}) should be named {ENV}-{id}: {tags:?}"
    );
}

pub struct Aws {
    pub rt: tokio::runtime::Runtime,
    pub ec2: aws_sdk_ec2::Client,
    pub rds: aws_sdk_rds::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub route53: aws_sdk_route53::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
}

impl Aws {
    pub fn new(endpoint: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shared = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "test", "test", None, None, "static",
                ))
                .load(),
        );
        Aws {
            ec2: aws_sdk_ec2::Client::new(&shared),
            rds: aws_sdk_rds::Client::new(&shared),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&shared),
            route53: aws_sdk_route53::Client::new(&shared),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(true)
                    .build(),
            ),
            iam: aws_sdk_iam::Client::new(&shared),
            rt,
        }
    }

    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn create_public_zone(&self, name: &str) -> String {
        let out = self
            .block(
                self.route53
                    .create_hosted_zone()
                    .name(name)
                    .caller_reference(format!("it-{name}"))
                    .send(),
            )
            .expect("create the test's hosted zone in moto");
        out.hosted_zone().unwrap().id().to_string()
    }

    pub fn zone_id(&self, name: &str) -> String {
        let zones = self.block(self.route53.list_hosted_zones().send()).unwrap();
        zones
            .hosted_zones()
            .iter()
            .find(|z| z.name().trim_end_matches('.') == name && !private(z))
            .map(|z| z.id().to_string())
            .unwrap_or_else(|| panic!("no public zone {name}"))
    }

    fn env_filter() -> aws_sdk_ec2::types::Filter {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:provision:env")
            .values(ENV)
            .build()
    }

    /// Instances of the env that are not terminated (or shutting down).
    pub fn instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        let out = self
            .block(
                self.ec2
                    .describe_instances()
                    .filters(Self::env_filter())
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("instance-state-name")
                            .values("pending")
                            .values("running")
                            .values("stopping")
                            .values("stopped")
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .collect()
    }

    /// Live instances per `provision:id`.
    pub fn instances_by_id(&self) -> BTreeMap<String, Vec<aws_sdk_ec2::types::Instance>> {
        let mut map: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for instance in self.instances() {
            let id = assert_owned("instance", &ec2_tags(instance.tags()));
            map.entry(id).or_default().push(instance);
        }
        map
    }

    pub fn node_instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        self.instances()
            .into_iter()
            .filter(|i| {
                let id = ec2_tags(i.tags())
                    .get("provision:id")
                    .cloned()
                    .unwrap_or_default();
                id.starts_with("node")
            })
            .collect()
    }

    pub fn registry_instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        self.instances()
            .into_iter()
            .filter(|i| {
                let id = ec2_tags(i.tags())
                    .get("provision:id")
                    .cloned()
                    .unwrap_or_default();
                id.contains("registry")
            })
            .collect()
    }

    pub fn vpcs(&self) -> Vec<aws_sdk_ec2::types::Vpc> {
        self.block(self.ec2.describe_vpcs().filters(Self::env_filter()).send())
            .unwrap()
            .vpcs()
            .to_vec()
    }

    pub fn subnets(&self) -> Vec<aws_sdk_ec2::types::Subnet> {
        self.block(
            self.ec2
                .describe_subnets()
                .filters(Self::env_filter())
                .send(),
        )
        .unwrap()
        .subnets()
        .to_vec()
    }

    pub fn route_tables(&self) -> Vec<aws_sdk_ec2::types::RouteTable> {
        self.block(
            self.ec2
                .describe_route_tables()
                .filters(Self::env_filter())
                .send(),
        )
        .unwrap()
        .route_tables()
        .to_vec()
    }

    pub fn internet_gateways(&self) -> Vec<aws_sdk_ec2::types::InternetGateway> {
        self.block(
            self.ec2
                .describe_internet_gateways()
                .filters(Self::env_filter())
                .send(),
        )
        .unwrap()
        .internet_gateways()
        .to_vec()
    }

    pub fn security_groups(&self) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
        self.block(
            self.ec2
                .describe_security_groups()
                .filters(Self::env_filter())
                .send(),
        )
        .unwrap()
        .security_groups()
        .to_vec()
    }

    pub fn key_pairs(&self) -> Vec<aws_sdk_ec2::types::KeyPairInfo> {
        self.block(
            self.ec2
                .describe_key_pairs()
                .filters(Self::env_filter())
                .send(),
        )
        .unwrap()
        .key_pairs()
        .to_vec()
    }

    pub fn db_instances(&self) -> Vec<aws_sdk_rds::types::DbInstance> {
        let out = self.block(self.rds.describe_db_instances().send()).unwrap();
        out.db_instances()
            .iter()
            .filter(|db| {
                db.tag_list()
                    .iter()
                    .any(|t| t.key() == Some("provision:env") && t.value() == Some(ENV))
            })
            .cloned()
            .collect()
    }

    pub fn db_subnet_groups(&self) -> Vec<String> {
        let out = self
            .block(self.rds.describe_db_subnet_groups().send())
            .unwrap();
        let mut owned = Vec::new();
        for group in out.db_subnet_groups() {
            let Some(arn) = group.db_subnet_group_arn() else {
                continue;
            };
            let tags = self
                .block(self.rds.list_tags_for_resource().resource_name(arn).send())
                .unwrap();
            if tags
                .tag_list()
                .iter()
                .any(|t| t.key() == Some("provision:env") && t.value() == Some(ENV))
            {
                owned.push(group.db_subnet_group_name().unwrap_or_default().to_string());
            }
        }
        owned
    }

    pub fn db_snapshots(&self) -> Vec<aws_sdk_rds::types::DbSnapshot> {
        self.block(self.rds.describe_db_snapshots().send())
            .unwrap()
            .db_snapshots()
            .to_vec()
    }

    /// ELBv2 resource tags by ARN.
    pub fn elb_tags(&self, arns: &[String]) -> BTreeMap<String, Tags> {
        let mut map = BTreeMap::new();
        for chunk in arns.chunks(20) {
            let out = self
                .block(
                    self.elb
                        .describe_tags()
                        .set_resource_arns(Some(chunk.to_vec()))
                        .send(),
                )
                .unwrap();
            for desc in out.tag_descriptions() {
                let tags = desc
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_string(),
                            t.value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                map.insert(desc.resource_arn().unwrap_or_default().to_string(), tags);
            }
        }
        map
    }

    pub fn load_balancers(&self) -> Vec<aws_sdk_elasticloadbalancingv2::types::LoadBalancer> {
        let all = self
            .block(self.elb.describe_load_balancers().send())
            .unwrap()
            .load_balancers()
            .to_vec();
        let arns: Vec<String> = all
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(str::to_string))
            .collect();
        let tags = self.elb_tags(&arns);
        all.into_iter()
            .filter(|l| {
                tags.get(l.load_balancer_arn().unwrap_or_default())
                    .and_then(|t| t.get("provision:env"))
                    .map(String::as_str)
                    == Some(ENV)
            })
            .collect()
    }

    pub fn target_groups(&self) -> Vec<aws_sdk_elasticloadbalancingv2::types::TargetGroup> {
        let all = self
            .block(self.elb.describe_target_groups().send())
            .unwrap()
            .target_groups()
            .to_vec();
        let arns: Vec<String> = all
            .iter()
            .filter_map(|t| t.target_group_arn().map(str::to_string))
            .collect();
        let tags = self.elb_tags(&arns);
        all.into_iter()
            .filter(|t| {
                tags.get(t.target_group_arn().unwrap_or_default())
                    .and_then(|t| t.get("provision:env"))
                    .map(String::as_str)
                    == Some(ENV)
            })
            .collect()
    }

    pub fn listeners(&self, lb_arn: &str) -> Vec<aws_sdk_elasticloadbalancingv2::types::Listener> {
        self.block(
            self.elb
                .describe_listeners()
                .load_balancer_arn(lb_arn)
                .send(),
        )
        .unwrap()
        .listeners()
        .to_vec()
    }

    pub fn registered_targets(&self, tg_arn: &str) -> Vec<String> {
        let out = self
            .block(
                self.elb
                    .describe_target_health()
                    .target_group_arn(tg_arn)
                    .send(),
            )
            .unwrap();
        let mut ids: Vec<String> = out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// Record sets of `zone_id` with the given name (any type).
    /// Change one record set of `zone` behind the tool's back (`Upsert`, `Delete`).
    pub fn change_record(
        &self,
        zone_id: &str,
        action: aws_sdk_route53::types::ChangeAction,
        record: aws_sdk_route53::types::ResourceRecordSet,
    ) {
        use aws_sdk_route53::types::{Change, ChangeBatch};
        let change = Change::builder()
            .action(action)
            .resource_record_set(record)
            .build()
            .unwrap();
        self.block(
            self.route53
                .change_resource_record_sets()
                .hosted_zone_id(zone_id)
                .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
                .send(),
        )
        .expect("ChangeResourceRecordSets");
    }

    pub fn records_named(
        &self,
        zone_id: &str,
        name: &str,
    ) -> Vec<aws_sdk_route53::types::ResourceRecordSet> {
        let out = self
            .block(
                self.route53
                    .list_resource_record_sets()
                    .hosted_zone_id(zone_id)
                    .send(),
            )
            .unwrap();
        let want = format!("{}.", name.trim_end_matches('.'));
        out.resource_record_sets()
            .iter()
            .filter(|r| r.name() == want || r.name() == name)
            .cloned()
            .collect()
    }

    /// All record sets of every zone other than SOA/NS, as "zone name type".
    pub fn all_records(&self) -> Vec<String> {
        let zones = self.block(self.route53.list_hosted_zones().send()).unwrap();
        let mut out = Vec::new();
        for zone in zones.hosted_zones() {
            let records = self
                .block(
                    self.route53
                        .list_resource_record_sets()
                        .hosted_zone_id(zone.id())
                        .send(),
                )
                .unwrap();
            for r in records.resource_record_sets() {
                let kind = r.r#type().as_str();
                if kind != "SOA" && kind != "NS" {
                    out.push(format!("{} {} {kind}", zone.name(), r.name()));
                }
            }
        }
        out
    }

    /// The current value of a Secrets Manager secret (RDS keeps JSON with a password).
    pub fn secret_password(&self, arn: &str) -> String {
        let out = self
            .block(self.secrets.get_secret_value().secret_id(arn).send())
            .unwrap_or_else(|e| panic!("get secret {arn}: {e:?}"));
        let text = out.secret_string().unwrap_or_default().to_string();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => v
                .get("password")
                .and_then(|p| p.as_str())
                .map_or(text.clone(), str::to_string),
            Err(_) => text,
        }
    }

    /// EBS volumes tagged for the env that are not deleted (root volumes included).
    pub fn volumes(&self) -> Vec<aws_sdk_ec2::types::Volume> {
        let out = self
            .block(
                self.ec2
                    .describe_volumes()
                    .filters(Self::env_filter())
                    .send(),
            )
            .unwrap();
        out.volumes()
            .iter()
            .filter(|v| {
                !matches!(
                    v.state(),
                    Some(
                        aws_sdk_ec2::types::VolumeState::Deleted
                            | aws_sdk_ec2::types::VolumeState::Deleting
                    )
                )
            })
            .cloned()
            .collect()
    }

    /// The env's own volume with logical id `id` (not a root volume).
    pub fn volume_tagged(&self, id: &str) -> Vec<aws_sdk_ec2::types::Volume> {
        self.volumes()
            .into_iter()
            .filter(|v| {
                v.tags()
                    .iter()
                    .any(|t| t.key() == Some("provision:id") && t.value() == Some(id))
                    && v.tags().iter().any(|t| t.key() == Some("provision:kind"))
            })
            .collect()
    }

    /// The env's VPC endpoints that are not deleted (EC2 lists deleted ones a while).
    pub fn vpc_endpoints(&self) -> Vec<aws_sdk_ec2::types::VpcEndpoint> {
        let out = self
            .block(
                self.ec2
                    .describe_vpc_endpoints()
                    .filters(Self::env_filter())
                    .send(),
            )
            .unwrap();
        out.vpc_endpoints()
            .iter()
            .filter(|e| {
                !matches!(
                    e.state()
                        .map(|s| s.as_str().to_ascii_lowercase())
                        .as_deref(),
                    Some("deleted" | "deleting")
                )
            })
            .cloned()
            .collect()
    }

    /// IAM roles under the env's path `/provision/<env>/`.
    pub fn iam_roles(&self) -> Vec<aws_sdk_iam::types::Role> {
        let out = self
            .block(
                self.iam
                    .list_roles()
                    .path_prefix(format!("/provision/{ENV}/"))
                    .send(),
            )
            .unwrap();
        out.roles().to_vec()
    }

    /// IAM instance profiles under the env's path `/provision/<env>/`.
    pub fn instance_profiles(&self) -> Vec<aws_sdk_iam::types::InstanceProfile> {
        let out = self
            .block(
                self.iam
                    .list_instance_profiles()
                    .path_prefix(format!("/provision/{ENV}/"))
                    .send(),
            )
            .unwrap();
        out.instance_profiles().to_vec()
    }

    /// Secrets tagged for the env that are not scheduled for deletion: (name, arn).
    pub fn env_secrets(&self) -> Vec<(String, String)> {
        let out = self.block(self.secrets.list_secrets().send()).unwrap();
        out.secret_list()
            .iter()
            .filter(|s| s.deleted_date().is_none())
            .filter(|s| {
                s.tags()
                    .iter()
                    .any(|t| t.key() == Some("provision:env") && t.value() == Some(ENV))
            })
            .map(|s| {
                (
                    s.name().unwrap_or_default().to_string(),
                    s.arn().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The ARN of the env's `datastore-password` secret (the RDS master password).
    pub fn datastore_secret_arn(&self) -> String {
        let name = format!("provision/{ENV}/datastore-password");
        self.env_secrets()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no secret {name}"))
            .1
    }

    /// Secrets of the env scheduled for deletion: (name, days they stay restorable).
    pub fn deleted_env_secrets(&self) -> Vec<String> {
        let out = self
            .block(
                self.secrets
                    .list_secrets()
                    .include_planned_deletion(true)
                    .send(),
            )
            .unwrap();
        out.secret_list()
            .iter()
            .filter(|s| s.deleted_date().is_some())
            .filter(|s| {
                s.tags()
                    .iter()
                    .any(|t| t.key() == Some("provision:env") && t.value() == Some(ENV))
            })
            .map(|s| s.name().unwrap_or_default().to_string())
            .collect()
    }

    /// A bucket for the S3 state backend, with versioning on unless `versioned` is false.
    pub fn create_bucket(&self, name: &str, versioned: bool) {
        self.block(self.s3.create_bucket().bucket(name).send())
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        if versioned {
            self.block(
                self.s3
                    .put_bucket_versioning()
                    .bucket(name)
                    .versioning_configuration(
                        aws_sdk_s3::types::VersioningConfiguration::builder()
                            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
        }
    }

    /// The object `key` of `bucket` (body and ETag), `None` when it does not exist.
    pub fn object(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
        let out = self
            .block(self.s3.get_object().bucket(bucket).key(key).send())
            .ok()?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = self
            .block(out.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec();
        Some((body, etag))
    }

    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        self.block(
            self.s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body.to_vec().into())
                .send(),
        )
        .unwrap();
    }

    /// Everything still tagged with (or named for) the env, as readable lines.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for v in self.volumes() {
            left.push(format!("volume {}", v.volume_id().unwrap_or_default()));
        }
        for (name, _) in self.env_secrets() {
            left.push(format!("secret {name}"));
        }
        for e in self.vpc_endpoints() {
            left.push(format!(
                "vpc endpoint {}",
                e.vpc_endpoint_id().unwrap_or_default()
            ));
        }
        for r in self.iam_roles() {
            left.push(format!("iam role {}", r.role_name()));
        }
        for p in self.instance_profiles() {
            left.push(format!("instance profile {}", p.instance_profile_name()));
        }
        for i in self.instances() {
            left.push(format!("instance {}", i.instance_id().unwrap_or_default()));
        }
        for v in self.vpcs() {
            left.push(format!("vpc {}", v.vpc_id().unwrap_or_default()));
        }
        for s in self.subnets() {
            left.push(format!("subnet {}", s.subnet_id().unwrap_or_default()));
        }
        for r in self.route_tables() {
            left.push(format!(
                "route table {}",
                r.route_table_id().unwrap_or_default()
            ));
        }
        for g in self.internet_gateways() {
            left.push(format!(
                "igw {}",
                g.internet_gateway_id().unwrap_or_default()
            ));
        }
        for g in self.security_groups() {
            left.push(format!(
                "security group {}",
                g.group_id().unwrap_or_default()
            ));
        }
        for k in self.key_pairs() {
            left.push(format!("key pair {}", k.key_name().unwrap_or_default()));
        }
        for db in self.db_instances() {
            left.push(format!(
                "db {} ({})",
                db.db_instance_identifier().unwrap_or_default(),
                db.db_instance_status().unwrap_or_default()
            ));
        }
        for g in self.db_subnet_groups() {
            left.push(format!("db subnet group {g}"));
        }
        for l in self.load_balancers() {
            left.push(format!(
                "load balancer {}",
                l.load_balancer_name().unwrap_or_default()
            ));
        }
        for t in self.target_groups() {
            left.push(format!(
                "target group {}",
                t.target_group_name().unwrap_or_default()
            ));
        }
        for r in self.all_records() {
            left.push(format!("record {r}"));
        }
        let zones = self.block(self.route53.list_hosted_zones().send()).unwrap();
        for z in zones.hosted_zones() {
            // The public test zone is the test's own; any other (or a private twin) is ours.
            if z.name().trim_end_matches('.') != ZONE || private(z) {
                left.push(format!("hosted zone {} ({})", z.name(), z.id()));
            }
        }
        left
    }
}

fn private(zone: &aws_sdk_route53::types::HostedZone) -> bool {
    zone.config().is_some_and(|c| c.private_zone())
}
