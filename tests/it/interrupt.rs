//! Ctrl-C: exit 130 with a valid state and a released lock; the next run converges.

use std::time::Duration;

use crate::checks::verify_no_duplicates;
use crate::harness::{wait_until, Fixture, Topology, World};

fn interrupt(presses: u32) {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.proxy.configure(serde_json::json!({"delay_ms": 100}));
    let running = world.spawn(&["apply", "--yes"]);
    wait_until(
        "apply to make some progress",
        Duration::from_secs(120),
        || world.proxy.stats().mutating().len() >= 6,
    );
    for _ in 0..presses {
        running.signal(libc::SIGINT);
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = running.wait(Duration::from_secs(60));
    assert_eq!(stopped.code, 130, "{}", stopped.describe());
    world.proxy.reset();

    if presses == 1 {
        assert!(
            world.state_file().exists(),
            "the first Ctrl-C should save state"
        );
    }
    if world.state_file().exists() {
        world.state_json();
    }
    let plan = world.run(&["plan"]);
    assert_ne!(
        plan.code,
        3,
        "the lock was not released: {}",
        plan.describe()
    );
    world.apply();
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
}

#[test]
fn ctrl_c_once_saves_state_and_exits_130() {
    interrupt(1);
}

#[test]
fn ctrl_c_twice_exits_at_once_and_the_next_run_converges() {
    interrupt(2);
}
