//! `apply PLANFILE` through the real binary: a saved plan that fits the config and the
//! state is carried out as planned; a stale one (the state changed since), a foreign one
//! (made from another state file) and a hand-edited one are refused before any change.

use crate::harness::{Fixture, Topology, World};

/// Runs `apply FILE` and asserts it is refused, saying `why`, without a mutating call.
#[track_caller]
fn refused(world: &World, file: &str, why: &str) {
    let (run, stats) = world.run_recorded(&["apply", file, "--yes"]);
    assert_ne!(run.code, 0, "{}", run.describe());
    assert!(
        run.all_output().contains(why),
        "`apply {file}` should say {why:?}: {}",
        run.describe()
    );
    assert!(
        stats.mutating().is_empty(),
        "a refused plan changed the cloud: {:?}",
        stats.mutating_names()
    );
}

#[test]
fn a_saved_plan_is_applied_only_while_it_fits() {
    let world = World::new(&Fixture::new(Topology::Docker));
    // A plan from another folder (no state there: another lineage).
    let other = tempfile::Builder::new()
        .prefix("provision-it-other-")
        .tempdir()
        .unwrap();
    for file in ["provision.toml", "id_ed25519.pub"] {
        std::fs::copy(world.path().join(file), other.path().join(file)).unwrap();
    }
    world.run(&["plan", "--out", "plan.json"]).ok();
    std::fs::copy(
        world.path().join("plan.json"),
        world.path().join("stale.json"),
    )
    .unwrap();

    // Fits: carried out, and then nothing is left to do.
    let (run, stats) = world.run_recorded(&["apply", "plan.json", "--yes"]);
    run.ok();
    assert!(!stats.mutating().is_empty(), "{}", run.describe());
    world.assert_converged();

    // Stale: made before that apply changed the state.
    refused(&world, "stale.json", "stale");

    // Foreign: made in another folder, from another state file (none there).
    let run = world.run_in(other.path(), &["plan", "--out", "foreign.json"]);
    run.ok();
    std::fs::copy(
        other.path().join("foreign.json"),
        world.path().join("foreign.json"),
    )
    .unwrap();
    refused(&world, "foreign.json", "another state file");

    world.run(&["plan", "--out", "mine.json"]).ok();
    // Hand-edited: a step the plan's own config and state do not call for.
    let mut edited: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.path().join("mine.json")).unwrap()).unwrap();
    let actions = edited["plan"]["actions"].as_array_mut().expect("actions");
    assert!(!actions.is_empty(), "the plan lists its no-op actions");
    actions[0]["action"] = "delete".into();
    actions[0]["current"] = serde_json::Value::Null;
    std::fs::write(
        world.path().join("edited.json"),
        serde_json::to_vec(&edited).unwrap(),
    )
    .unwrap();
    refused(&world, "edited.json", "edited by hand");

    // Not a plan file at all.
    std::fs::write(world.path().join("junk.json"), b"{\"hello\": 1}").unwrap();
    refused(&world, "junk.json", "not a provision plan file");
}
