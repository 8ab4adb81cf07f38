//! Destroy removes everything (the emulator's whole inventory, tagged or not, is what it
//! was before the apply), never sends a delete AWS would refuse for what is still there,
//! takes (or skips) the final snapshot, and is idempotent.

use crate::harness::{inventory_added, Fixture, Topology, World};

/// What takes AWS minutes to delete, held a while by the proxy before it reaches the
/// emulator: meanwhile it is still there, and a delete of what it uses meets it.
pub fn slow_deletes() -> serde_json::Value {
    serde_json::json!({"slow_ops": {
        "TerminateInstances": 1500,
        "DeleteDBInstance": 1500,
        "DeleteLoadBalancer": 1000,
        "DeleteVpcEndpoints": 1000,
    }})
}

fn destroy_k3s(skip_snapshot: bool) {
    let world = World::new(&Fixture::new(Topology::K3s));
    let before = world.proxy.inventory();
    world.apply();
    assert!(
        inventory_added(&before, &world.proxy.inventory()).len() > 20,
        "the inventory sees what apply made"
    );
    let db_id = world.aws.db_instances()[0]
        .db_instance_identifier()
        .unwrap()
        .to_string();
    let snapshots_before = world.aws.db_snapshots().len();

    let mut args = vec!["destroy", "--yes"];
    if skip_snapshot {
        args.push("--skip-final-snapshot");
    }
    world.proxy.reset();
    world.proxy.configure(slow_deletes());
    let destroyed = world.run(&args);
    let stats = world.proxy.stats();
    destroyed.ok();
    let left = world.aws.leftovers();
    assert!(left.is_empty(), "destroy left: {left:#?}");
    world.assert_inventory_back_to(&before);
    // Every delete came after what AWS requires gone first: none was refused for what the
    // emulator still held (the proxy reads it; the tool's own graph plays no part).
    let blocked: Vec<String> = stats
        .faults("blocked")
        .iter()
        .map(|c| format!("{} blocked by {:?}", c.op, c.blockers))
        .collect();
    assert!(blocked.is_empty(), "deletes sent too early: {blocked:#?}");

    let finals: Vec<_> = world
        .aws
        .db_snapshots()
        .into_iter()
        .filter(|s| s.db_instance_identifier() == Some(db_id.as_str()))
        .filter(|s| s.snapshot_type() != Some("automated"))
        .collect();
    if skip_snapshot {
        assert!(
            finals.is_empty(),
            "--skip-final-snapshot took a snapshot: {finals:#?}"
        );
    } else {
        assert_eq!(
            finals.len(),
            1,
            "one final snapshot (had {snapshots_before} before): {finals:#?}"
        );
        let name = finals[0].db_snapshot_identifier().unwrap_or_default();
        assert!(
            name.contains(crate::harness::ENV),
            "snapshot named after the env: {name}"
        );
        // The summary names what was kept: the snapshot by its id.
        assert!(
            destroyed.stderr.contains(&format!("final snapshot {name}")),
            "{}",
            destroyed.describe()
        );
    }
    // ... the secrets in their recovery window and the local folders.
    for want in [
        "kept",
        "recovery window",
        "datastore-password",
        "secrets",
        "Kept on this machine",
    ] {
        assert!(
            destroyed.stderr.contains(want),
            "{want:?}: {}",
            destroyed.describe()
        );
    }

    let (run, stats) = world.run_recorded(&["destroy", "--yes"]);
    run.ok();
    assert!(
        stats.mutating().is_empty(),
        "second destroy mutated: {:?}",
        stats.mutating_names()
    );
}

#[test]
fn destroy_takes_a_final_snapshot_and_leaves_nothing() {
    destroy_k3s(false);
}

#[test]
fn destroy_skip_final_snapshot_leaves_nothing() {
    destroy_k3s(true);
}
