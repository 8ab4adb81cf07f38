//! Crash safety: kill -9 right after the cloud accepted a call, lost state, adoption.

use std::time::Duration;

use crate::checks::verify_no_duplicates;
use crate::harness::{wait_until, Fixture, Topology, World};

/// Kills `apply` right after the `n`-th mutating call reached the emulator (its answer is
/// held back), then checks that a fresh apply converges to exactly one of everything.
fn kill_after_mutation(n: u32) {
    let world = World::new(&Fixture::new(Topology::K3s));
    world
        .proxy
        .configure(serde_json::json!({"hold_after_mutations": n}));
    let mut running = world.spawn(&["apply", "--yes"]);
    wait_until(
        &format!("mutating call {n} to be held"),
        Duration::from_secs(180),
        || world.proxy.stats().held || running.finished(),
    );
    let held = world.proxy.stats().held;
    running.signal(libc::SIGKILL);
    let killed = running.wait(Duration::from_secs(10));
    assert!(
        held,
        "apply made fewer than {n} mutating calls: {}",
        killed.describe()
    );
    assert_eq!(killed.code, 128 + libc::SIGKILL, "{}", killed.describe());
    world.proxy.reset();

    if world.state_file().exists() {
        world.state_json();
    }
    world.apply();
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
}

#[test]
fn kill_9_after_mutating_call_1() {
    kill_after_mutation(1);
}

#[test]
fn kill_9_after_mutating_call_3() {
    kill_after_mutation(3);
}

#[test]
fn kill_9_after_mutating_call_7() {
    kill_after_mutation(7);
}

#[test]
fn kill_9_after_mutating_call_15() {
    kill_after_mutation(15);
}

#[test]
fn kill_9_after_mutating_call_30() {
    kill_after_mutation(30);
}

fn remove_state(world: &World) {
    let state = world.state_file();
    std::fs::remove_file(&state).unwrap();
    let backup = state.with_extension("json.backup");
    if backup.exists() {
        std::fs::remove_file(backup).unwrap();
    }
}

/// Calls that create something.
fn creates(stats: &crate::harness::Stats) -> Vec<String> {
    stats
        .mutating()
        .iter()
        .filter(|c| {
            ["Create", "Run", "Import", "Allocate"]
                .iter()
                .any(|p| c.action.starts_with(p) && c.action != "CreateTags")
                || c.action == "POST /2013-04-01/hostedzone"
        })
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn lost_state_is_adopted_not_recreated() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    remove_state(&world);

    let (plan, stats) = world.run_recorded(&["plan"]);
    plan.ok();
    assert!(
        stats.mutating().is_empty(),
        "plan mutated: {:?}",
        stats.mutating_names()
    );
    let text = plan.all_output().to_lowercase();
    assert!(
        text.contains("adopt"),
        "plan should adopt the tagged resources: {}",
        plan.describe()
    );

    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.ok();
    assert!(
        creates(&stats).is_empty(),
        "apply without state created: {:?}",
        creates(&stats)
    );
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
}

#[test]
fn destroy_without_state_deletes_everything_tagged() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    remove_state(&world);
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    let left = world.aws.leftovers();
    assert!(left.is_empty(), "destroy without state left: {left:#?}");
}
