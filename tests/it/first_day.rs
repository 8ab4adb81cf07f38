//! An operator's first day (issue 21): failures provoked on purpose through the real
//! binary — no credentials, an unreachable endpoint, an unknown region, an endpoint
//! answering 5xx, a usage error — each said in words that name the cause and what to do,
//! never as a debug dump; and the JSON documents as docs/json.md describes them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{run_offline, Fixture, Run, Topology, World};

/// What an SDK type's `Debug` form looks like in a message.
fn assert_no_debug_dump(run: &Run) {
    let all = run.all_output();
    for dump in [
        "DispatchFailure",
        "ConnectorError",
        "ServiceError {",
        "source: ",
        "Some(",
        "kind: ",
        "This is a bug",
    ] {
        assert!(
            !all.contains(dump),
            "a debug dump ({dump:?}): {}",
            run.describe()
        );
    }
}

/// A folder with a valid k3s config and the ssh key it names.
fn project(region: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("provision-it-")
        .tempdir()
        .unwrap();
    let text = Fixture::new(Topology::K3s)
        .render()
        .replace("region = \"us-east-1\"", &format!("region = \"{region}\""));
    std::fs::write(dir.path().join("provision.toml"), text).unwrap();
    std::fs::write(
        dir.path().join("id_ed25519.pub"),
        crate::harness::ssh_public_key(),
    )
    .unwrap();
    dir
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback server answering every request with `status` and `body`; counts requests.
struct Answering {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl Answering {
    fn start(status: &'static str, body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    // Read the head, then as much body as it announces.
                    let mut seen = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&chunk[..n]),
                        }
                        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while seen.len() < head_end + length {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&chunk[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Answering { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

const KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

#[test]
fn no_credentials_says_none_were_found_where_the_chain_looked_and_what_to_set() {
    let dir = project("us-east-1");
    // A listening endpoint: the failure must be the credentials, not the network.
    let server = Answering::start("200 OK", "");
    let url = server.url();
    let run = run_offline(dir.path(), &["plan"], &[("AWS_ENDPOINT_URL", &url)]);
    run.code(1);
    let err = &run.stderr;
    for needle in [
        "no AWS credentials found",
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: not set",
        "profile `default`",
        "/.aws/credentials (no such file)",
        "disabled by AWS_EC2_METADATA_DISABLED=true",
        "Set AWS_PROFILE",
    ] {
        assert!(err.contains(needle), "{needle:?}: {}", run.describe());
    }
    // Not the old advice about the region.
    assert!(!err.contains("check the `region`"), "{}", run.describe());
    assert_no_debug_dump(&run);
    assert_eq!(server.requests.load(Ordering::SeqCst), 0, "a call went out");
}

#[test]
fn an_unreachable_endpoint_fails_within_seconds_naming_it_and_the_likely_causes() {
    let dir = project("us-east-1");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut env = KEYS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &url));
    let started = Instant::now();
    let run = run_offline(dir.path(), &["plan"], &env);
    let took = started.elapsed();
    run.code(1);
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: {}",
        run.describe()
    );
    let named = format!("cannot reach the AWS endpoint {url} (from AWS_ENDPOINT_URL)");
    for needle in [
        named.as_str(),
        "refused",
        "HTTPS_PROXY",
        "AWS_ENDPOINT_URL pointing at a server that is not running",
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?}: {}",
            run.describe()
        );
    }
    assert_no_debug_dump(&run);
}

#[test]
fn an_unknown_region_is_refused_by_validate_before_any_call() {
    let dir = project("us-east-9");
    for args in [&["validate"][..], &["plan"][..]] {
        let run = run_offline(dir.path(), args, &KEYS);
        run.code(1);
        assert!(
            run.stderr.contains("\"us-east-9\" is not an AWS region")
                && run.stderr.contains("did you mean us-east-1 or us-east-2?"),
            "{}",
            run.describe()
        );
        assert!(
            run.stderr.contains("provision.toml:2:"),
            "{}",
            run.describe()
        );
        assert_no_debug_dump(&run);
    }
    // A region opened after this build is accepted when named.
    let run = run_offline(
        dir.path(),
        &["validate"],
        &[("PROVISION_EXTRA_REGIONS", "us-east-9")],
    );
    run.ok();
}

#[test]
fn a_5xx_answer_keeps_its_status_and_body_in_the_message() {
    let dir = project("us-east-1");
    let server = Answering::start(
        "503 Service Unavailable",
        "<html>upstream overloaded</html>",
    );
    let url = server.url();
    let mut env = KEYS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &url));
    let run = run_offline(dir.path(), &["plan"], &env);
    run.code(1);
    assert!(
        run.stderr.contains("HTTP 503 Service Unavailable")
            && run.stderr.contains("upstream overloaded"),
        "{}",
        run.describe()
    );
    assert!(!run.stderr.contains(": Unknown:"), "{}", run.describe());
    assert_no_debug_dump(&run);
    assert!(server.requests.load(Ordering::SeqCst) > 0);
}

#[test]
fn usage_errors_exit_1_and_help_and_version_exit_0() {
    let dir = project("us-east-1");
    for args in [
        &["plan", "--detailed-exitcod"][..],
        &["--bogus"][..],
        &["frobnicate"][..],
        &[][..],
        &["apply", "--parallelism", "0"][..],
    ] {
        let run = run_offline(dir.path(), args, &KEYS);
        run.code(1);
        assert!(!run.stderr.is_empty(), "{}", run.describe());
    }
    for args in [&["--help"][..], &["plan", "--help"][..], &["--version"][..]] {
        run_offline(dir.path(), args, &KEYS).ok();
    }
}

#[test]
fn completions_and_man_into_a_closed_pipe_are_quiet() {
    use std::process::{Command, Stdio};
    for args in [
        &["completions", "zsh"][..],
        &["man"][..],
        &["completions", "bash"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_provision"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -0`: the reader is gone before the first write.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.is_empty(),
            "`provision {}`: {stderr}",
            args.join(" ")
        );
        assert_eq!(out.status.code(), Some(0), "`provision {}`", args.join(" "));
    }
}

#[test]
fn validate_json_prints_one_document_valid_or_not() {
    let dir = project("us-east-1");
    let run = run_offline(dir.path(), &["--json", "validate"], &[]);
    run.ok();
    let doc = run.json();
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["topology"], "k3s");
    assert_eq!(doc["region"], "us-east-1");
    let dir = project("us-east-9");
    let run = run_offline(dir.path(), &["--json", "validate"], &[]);
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["valid"], false);
    let problem = &doc["problems"][0];
    assert_eq!(problem["key"], "region");
    assert_eq!(problem["line"], 2);
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("not an AWS region"),
        "{doc}"
    );
}

/// The keys of a JSON object.
fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The first ```json block after `heading` in docs/json.md, parsed (`…` placeholders are
/// strings there).
fn documented(heading: &str) -> serde_json::Value {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let at = docs
        .find(heading)
        .unwrap_or_else(|| panic!("docs/json.md has no {heading:?}"));
    let block = &docs[at..];
    let start = block.find("```json\n").unwrap() + "```json\n".len();
    let end = block[start..].find("```").unwrap() + start;
    serde_json::from_str(&block[start..end])
        .unwrap_or_else(|e| panic!("the example under {heading:?} is not JSON ({e})"))
}

#[test]
fn plan_destroy_state_list_and_output_after_destroy_are_as_documented() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();

    // `plan --destroy --json`: the document of docs/json.md, its delete actions without
    // `config` (nothing is desired), with the final snapshot it will take.
    let run = world.run(&["--json", "plan", "--destroy"]);
    run.ok();
    let doc = run.json();
    let example = documented("## `plan --destroy --json`");
    assert_eq!(keys(&doc), keys(&example), "{doc:#}");
    assert_eq!(doc["destroy"], true);
    let actions = doc["actions"].as_array().unwrap();
    assert!(!actions.is_empty());
    for action in actions {
        assert_eq!(action["action"], "delete", "{action:#}");
        assert!(action.get("config").is_none(), "{action:#}");
        // `attrs` only for kinds that report something beyond their id.
        let mut want = keys(&example["actions"][0]);
        if action.get("attrs").is_none() {
            want.retain(|k| k != "attrs");
        }
        assert_eq!(keys(action), want, "{action:#}");
    }

    // `state list --json`.
    let run = world.run(&["--json", "state", "list"]);
    run.ok();
    let doc = run.json();
    let example = documented("## `state list --json`");
    assert_eq!(keys(&doc), keys(&example), "{doc:#}");
    for row in doc["resources"].as_array().unwrap() {
        assert_eq!(keys(row), keys(&example["resources"][0]), "{row:#}");
        assert_eq!(row["status"], "created", "{row:#}");
    }

    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    // Nothing left to point at: no rancher_url, exit 1, saying why.
    for args in [
        &["output"][..],
        &["output", "rancher_url"][..],
        &["--json", "output"][..],
    ] {
        let run = world.run(args);
        run.code(1);
        assert!(!run.stdout.contains("rancher_url"), "{}", run.describe());
        assert!(!run.stdout.contains("https://"), "{}", run.describe());
        assert!(
            run.stderr.contains("has no resources"),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn after_the_cloud_lost_everything_the_state_names_one_apply_converges() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    // The account cleaned out of band: every resource gone, the state still naming them.
    let (status, body) = crate::harness::http(world.moto.port, "POST", "/moto-api/reset", b"")
        .expect("reset the emulator");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    world.proxy.reset();
    world.aws.create_public_zone(crate::harness::ZONE);
    // One apply re-creates everything (no stale group id from the state reaches a call).
    let run = world.run(&["apply", "--yes"]);
    run.ok();
    assert!(!run.all_output().contains("NotFound"), "{}", run.describe());
    world.assert_converged();
}

#[test]
fn a_second_registry_volume_resize_within_six_hours_is_refused_naming_when() {
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.extra = "\n[registry]\nvolume_gb = 100\n".into();
    let world = World::new(&fixture);
    world.apply();
    fixture.extra = "\n[registry]\nvolume_gb = 120\n".into();
    world.write_config(&fixture);
    world.apply();
    // The resize is recorded on the volume and, through its attrs, in the state.
    let state = world.state_json();
    let at = state["resources"]["registry-data"]["attrs"]["modified_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no modified_at: {:#}", state["resources"]["registry-data"]))
        .to_string();
    fixture.extra = "\n[registry]\nvolume_gb = 150\n".into();
    world.write_config(&fixture);
    let (run, stats) = world.run_recorded(&["plan"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("`registry-data` cannot change as the config asks")
            && run
                .stderr
                .contains("AWS allows one change of a volume every 6 hours")
            && run.stderr.contains("becomes possible at"),
        "{}",
        run.describe()
    );
    // The time named is the one recorded.
    let resized = format!("resized at {} {} UTC", &at[..10], &at[11..16]);
    assert!(
        run.stderr.contains(&resized),
        "{resized:?}: {}",
        run.describe()
    );
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
}
