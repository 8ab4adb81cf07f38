//! Ctrl-C, as the README promises it: before execution (planning, the confirmation
//! prompt) the first press exits 130 with nothing changed; during execution the first
//! press starts no new step, lets the running ones finish and saves them, exits 130 and
//! releases the lock; a second press exits at once. The proxy holds a response to know
//! exactly what is running when the signal comes.

use std::time::{Duration, Instant};

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
    next_run_converges(&world);
}

/// The state (if any) is valid, the lock is free, and an apply converges to one of each.
fn next_run_converges(world: &World) {
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

#[test]
fn first_ctrl_c_starts_no_new_step_and_saves_the_running_one() {
    let world = World::new(&Fixture::new(Topology::K3s));
    // One step at a time (and those waiting for the cloud): CreateSecurityGroup of the
    // nodes' group is held. Once it exists, the rules of the groups made before it that
    // name it (their update steps) could start; after Ctrl-C they must not.
    world.proxy.configure(
        serde_json::json!({"hold_call": {"op": "CreateSecurityGroup", "id": "sg-nodes"}}),
    );
    let mut running = world.spawn(&["apply", "--yes", "--parallelism", "1"]);
    wait_until(
        "CreateSecurityGroup to be held",
        Duration::from_secs(120),
        || world.proxy.stats().held || running.finished(),
    );
    let before = world.proxy.stats();
    let held = before
        .held_call
        .clone()
        .unwrap_or_else(|| panic!("nothing held; run ended: {}", running.stderr_so_far()));
    let step = held
        .id
        .clone()
        .expect("CreateSecurityGroup carries provision:id");
    // The steps running now: the creates whose intent is saved and not done yet (a step
    // waiting for the cloud frees its worker, so the held one need not be alone).
    let running_steps: Vec<String> = world.state_json()["resources"]
        .as_object()
        .expect("the intent of the held create is saved")
        .iter()
        .filter(|(_, e)| e["status"] == "creating")
        .map(|(id, _)| id.clone())
        .collect();
    assert!(running_steps.contains(&step), "{running_steps:?}");
    running.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !running.finished(),
        "the first Ctrl-C must let the running step finish, not exit: {}",
        running.stderr_so_far()
    );
    world.proxy.release();
    let stopped = running.wait(Duration::from_secs(60));
    assert_eq!(stopped.code, 130, "{}", stopped.describe());

    let state = world.state_json();
    let entry = &state["resources"][step.as_str()];
    assert_eq!(
        entry["status"], "created",
        "the running step `{step}` finished and is saved: {entry}"
    );
    assert!(
        entry["cloud_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sg-")),
        "{entry}"
    );
    // After the signal a call may only act on what a running step makes: each call names
    // the resource it acts on (GroupId, InstanceId, ResourceId.1, ...; a create its
    // provision:id), and that must be one of the running steps'.
    let running_ids: Vec<String> = running_steps
        .iter()
        .filter_map(|id| state["resources"][id.as_str()]["cloud_id"].as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    let after = world.proxy.stats();
    let late: Vec<String> = after.calls[before.calls.len()..]
        .iter()
        .filter(|c| c.mutating)
        .filter(|c| {
            let by_running = c.id.as_ref().is_some_and(|i| running_steps.contains(i))
                || c.target.as_ref().is_some_and(|t| running_ids.contains(t));
            !by_running
        })
        .map(|c| format!("{c} (provision:id {:?}) on {:?}", c.id, c.target))
        .collect();
    assert!(
        late.is_empty(),
        "after Ctrl-C only the running steps {running_steps:?} ({running_ids:?}) may call \
         the cloud; new steps made {late:?}\n{}",
        stopped.describe()
    );
    world.proxy.reset();
    next_run_converges(&world);
}

#[test]
fn second_ctrl_c_exits_within_seconds_while_a_step_hangs() {
    let world = World::new(&Fixture::new(Topology::K3s));
    // The 5th mutating call is never answered: its step cannot finish.
    world
        .proxy
        .configure(serde_json::json!({"hold_after_mutations": 5}));
    let mut running = world.spawn(&["apply", "--yes"]);
    wait_until(
        "the 5th mutating call to be held",
        Duration::from_secs(120),
        || world.proxy.stats().held || running.finished(),
    );
    assert!(world.proxy.stats().held, "{}", running.stderr_so_far());
    running.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !running.finished(),
        "one Ctrl-C waits for the running steps: {}",
        running.stderr_so_far()
    );
    let pressed = Instant::now();
    running.signal(libc::SIGINT);
    let stopped = running.wait(Duration::from_secs(5));
    assert_eq!(stopped.code, 130, "{}", stopped.describe());
    assert!(pressed.elapsed() < Duration::from_secs(5));
    world.proxy.reset();
    next_run_converges(&world);
}

#[test]
fn ctrl_c_while_planning_exits_130_without_a_change() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world
        .proxy
        .configure(serde_json::json!({"hold_call": {"op": "DescribeVpcs", "nth": 1}}));
    let mut running = world.spawn(&["apply", "--yes"]);
    wait_until("planning to read the VPCs", Duration::from_secs(60), || {
        world.proxy.stats().held || running.finished()
    });
    assert!(world.proxy.stats().held, "{}", running.stderr_so_far());
    let pressed = Instant::now();
    running.signal(libc::SIGINT);
    let stopped = running.wait(Duration::from_secs(5));
    assert_eq!(stopped.code, 130, "{}", stopped.describe());
    assert!(pressed.elapsed() < Duration::from_secs(5));
    let stats = world.proxy.stats();
    assert!(
        stats.mutating().is_empty(),
        "Ctrl-C while planning changed the cloud: {:?}",
        stats.mutating_names()
    );
    world.proxy.reset();
    assert!(world.aws.leftovers().is_empty());
    next_run_converges(&world);
}

/// Waits for the confirmation prompt of a command run on a terminal, presses Ctrl-C.
fn ctrl_c_at_the_prompt(world: &World, args: &[&str]) {
    world.proxy.reset();
    let mut running = world.spawn_on_tty(args);
    wait_until("the confirmation prompt", Duration::from_secs(60), || {
        running
            .stderr_so_far()
            .contains("Only 'yes' will be accepted")
            || running.finished()
    });
    assert!(
        !running.finished(),
        "no prompt on a terminal: {}",
        running.stderr_so_far()
    );
    let pressed = Instant::now();
    running.signal(libc::SIGINT);
    let stopped = running.wait(Duration::from_secs(5));
    assert_eq!(stopped.code, 130, "{}", stopped.describe());
    assert!(pressed.elapsed() < Duration::from_secs(5));
    let stats = world.proxy.stats();
    assert!(
        stats.mutating().is_empty(),
        "Ctrl-C at the prompt of `{}` changed the cloud: {:?}",
        args.join(" "),
        stats.mutating_names()
    );
}

#[test]
fn ctrl_c_at_the_confirmation_prompt_exits_130_without_a_change() {
    let world = World::new(&Fixture::new(Topology::K3s));
    ctrl_c_at_the_prompt(&world, &["apply"]);
    assert!(world.aws.leftovers().is_empty());
    world.apply();
    ctrl_c_at_the_prompt(&world, &["destroy"]);
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
}
