//! The binary under a pseudo-terminal, as an operator sees it: the confirmation prompt
//! takes only `yes`, and apply shows the live progress view (spinner lines redrawn in
//! place, finished steps above them, a summary with the critical path).

use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Expect, Session};

use crate::harness::{Fixture, Topology, World};

fn in_terminal(world: &World, args: &[&str]) -> expectrl::session::OsSession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provision"));
    cmd.args(args).current_dir(world.path());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("AWS_ENDPOINT_URL", world.proxy.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG");
    let mut session = Session::spawn(cmd).expect("spawn provision in a pty");
    session.set_expect_timeout(Some(Duration::from_secs(180)));
    session
}

/// Everything the program still writes, up to its end.
fn rest_of(session: &mut expectrl::session::OsSession) -> String {
    let found = session.expect(Eof).expect("eof");
    let mut bytes = found.before().to_vec();
    for m in found.matches() {
        bytes.extend_from_slice(m);
    }
    String::from_utf8_lossy(&bytes).to_string()
}

fn exit_code(session: &expectrl::session::OsSession) -> i32 {
    match session.get_process().wait().expect("wait") {
        expectrl::process::unix::WaitStatus::Exited(_, code) => code,
        other => panic!("provision did not exit normally: {other:?}"),
    }
}

#[test]
fn the_prompt_refuses_anything_but_yes_and_changes_nothing() {
    let world = World::new(&Fixture::new(Topology::Docker));
    for answer in ["no", "y", "YES"] {
        world.proxy.reset();
        let mut session = in_terminal(&world, &["apply"]);
        session
            .expect("Only 'yes' will be accepted")
            .unwrap_or_else(|e| panic!("no prompt: {e}"));
        session.send_line(answer).unwrap();
        let text = rest_of(&mut session);
        assert!(text.contains("cancelled"), "{answer}: {text}");
        assert_eq!(exit_code(&session), 1, "{answer}: {text}");
        assert!(
            world.proxy.stats().mutating().is_empty(),
            "{answer}: the cloud was changed"
        );
        assert!(
            !world.state_file().exists(),
            "{answer}: a state file was written"
        );
    }
}

#[test]
fn yes_applies_with_a_live_view_and_a_summary() {
    let world = World::new(&Fixture::new(Topology::Docker));
    let mut session = in_terminal(&world, &["apply"]);
    let before = session
        .expect("Only 'yes' will be accepted")
        .expect("the prompt");
    let plan = String::from_utf8_lossy(before.before()).to_string();
    assert!(plan.contains("Plan: "), "the plan comes first: {plan}");
    // On a terminal the plan is coloured.
    assert!(
        plan.contains("\x1b[32m+\x1b[0m"),
        "no colour on a terminal: {plan:?}"
    );
    session.send_line("yes").unwrap();
    let text = rest_of(&mut session);
    assert_eq!(exit_code(&session), 0, "{text}");
    // The live view: spinner lines naming the running step, redrawn in place (cursor
    // movement / line clearing), finished steps printed above with their durations.
    assert!(
        text.contains("creating vpc"),
        "no live line for a running step: {text}"
    );
    assert!(
        text.contains("\x1b[2K") || text.contains("\x1b[1A"),
        "not redrawn in place: {text:?}"
    );
    assert!(text.contains("✓") && text.contains("vpc created"), "{text}");
    assert!(text.contains("Apply complete"), "{text}");
    assert!(text.contains("Critical path: "), "{text}");
    assert!(world.state_file().exists());
}
