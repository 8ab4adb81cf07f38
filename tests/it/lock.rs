//! The state lock: a held lock makes apply exit 3 naming the holder.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use fs4::fs_std::FileExt;

use crate::harness::{wait_until, Fixture, Topology, World, ENV};

#[test]
fn apply_exits_3_while_another_process_holds_the_lock() {
    let world = World::new(&Fixture::new(Topology::Docker));
    let state = world.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let path = state.join(format!("{ENV}.lock"));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(&path)
        .unwrap();
    FileExt::try_lock_exclusive(&file).expect("take the lock");
    let holder = serde_json::json!({
        "pid": std::process::id(),
        "host": hostname(),
        "command": "apply",
        "started": "2024-01-01T00:00:00Z",
    });
    file.write_all(holder.to_string().as_bytes()).unwrap();
    file.flush().unwrap();

    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.code(3);
    assert!(
        run.stderr.contains(&std::process::id().to_string()),
        "the message should name the holder's pid: {}",
        run.describe()
    );
    assert!(
        run.stderr.to_lowercase().contains("lock"),
        "{}",
        run.describe()
    );
    assert!(
        stats.mutating().is_empty(),
        "a locked apply mutated: {:?}",
        stats.mutating_names()
    );
    world.run(&["destroy", "--yes"]).code(3);
    // The holder (this test process) is alive on this machine: --force refuses, naming it.
    let run = world.run(&["unlock", "--force"]);
    run.code(1);
    assert!(
        run.stderr.contains("still running on this machine")
            && run.stderr.contains(&std::process::id().to_string()),
        "{}",
        run.describe()
    );
    assert!(path.exists(), "the lock stays");

    FileExt::unlock(&file).unwrap();
    drop(file);
    let run = world.run(&["plan"]);
    assert_ne!(run.code, 3, "the lock was released: {}", run.describe());
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn second_apply_during_a_running_apply_exits_3() {
    let world = World::new(&Fixture::new(Topology::Docker));
    world
        .proxy
        .configure(serde_json::json!({"hold_after_mutations": 2}));
    let first = world.spawn(&["apply", "--yes"]);
    wait_until(
        "the first apply to be held",
        Duration::from_secs(60),
        || world.proxy.stats().held,
    );
    let second = world.run(&["apply", "--yes"]);
    second.code(3);
    assert!(
        second.stderr.contains(&first.pid().to_string()),
        "the message should name the running apply's pid {}: {}",
        first.pid(),
        second.describe()
    );
    first.signal(libc::SIGKILL);
    let killed = first.wait(Duration::from_secs(10));
    assert_eq!(killed.code, 128 + libc::SIGKILL, "{}", killed.describe());
    world.proxy.reset();
    // The OS released the killed run's lock: the next run proceeds and converges.
    world.apply();
    world.assert_converged();
}
