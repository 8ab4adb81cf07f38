//! Throttling at 20% of calls: apply and destroy still converge without duplicates.

use crate::checks::verify_no_duplicates;
use crate::harness::{Fixture, Topology, World};

#[test]
fn apply_and_destroy_converge_under_throttling() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world
        .proxy
        .configure(serde_json::json!({"fault_rate": 0.2, "seed": 7}));
    world.apply();
    let stats = world.proxy.stats();
    assert!(
        stats.calls.iter().any(|c| c.faulted),
        "no fault was injected"
    );
    world.proxy.reset();
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();

    world
        .proxy
        .configure(serde_json::json!({"fault_rate": 0.2, "seed": 11}));
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    world.proxy.reset();
    world.assert_nothing_left();
}
