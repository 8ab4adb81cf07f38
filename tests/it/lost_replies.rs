//! Lost replies: the cloud did the call but its answer never reached the client (the
//! proxy forwards the call, then answers 500). The SDK retries. A create without an
//! idempotency token then makes a tagged twin (CreateVpc, CreateInternetGateway) or fails
//! with "already exists" although it worked (CreateSecurityGroup: InvalidGroup.Duplicate,
//! CreateSubnet: InvalidSubnet.Conflict). Calls with a ClientToken (RunInstances, and
//! CreateRouteTable whose token the SDK fills in) are answered from the token by the
//! proxy, as AWS does (moto ignores tokens). Checks are made directly against moto.

use crate::checks::verify_no_duplicates;
use crate::harness::{Fixture, Topology, World};

fn lose(ops: &[(&str, u32)]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = ops
        .iter()
        .map(|(op, k)| (op.to_string(), (*k).into()))
        .collect();
    serde_json::json!({ "lose_reply": map })
}

fn destroy_leaves_nothing(world: &World) {
    world.proxy.reset();
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    let left = world.aws.leftovers();
    assert!(left.is_empty(), "destroy left: {left:#?}");
}

/// Creates that leave a twin when their reply is lost, and CreateRouteTable, whose
/// SDK-filled ClientToken makes the retry harmless.
const TWINS: &[(&str, u32)] = &[
    ("CreateVpc", 1),
    ("CreateInternetGateway", 1),
    ("CreateRouteTable", 2),
];

/// Applies with the `TWINS` replies lost: the apply succeeds, leaving a twin VPC and
/// internet gateway (tagged for the env, unknown to the state) and no twin route table.
fn apply_leaving_twins() -> World {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.proxy.configure(lose(TWINS));
    let lossy = world.run(&["apply", "--yes"]);
    let stats = world.proxy.stats();
    world.proxy.reset();
    lossy.ok();
    let mut lost: Vec<&str> = stats
        .faults("lost_reply")
        .iter()
        .map(|c| c.op.as_str())
        .collect();
    lost.sort_unstable();
    assert_eq!(
        lost,
        [
            "CreateInternetGateway",
            "CreateRouteTable",
            "CreateRouteTable",
            "CreateVpc"
        ],
        "the proxy should lose exactly these replies"
    );
    assert_eq!(world.aws.vpcs().len(), 2, "a twin VPC (the SDK retried)");
    assert_eq!(world.aws.internet_gateways().len(), 2, "a twin gateway");
    assert_eq!(
        stats.faults("token_replay").len(),
        2,
        "both retried CreateRouteTable answered from their token"
    );
    assert_eq!(world.aws.route_tables().len(), 2, "no twin route table");
    world
}

#[test]
fn twins_of_lost_create_replies_are_removed_by_the_next_apply() {
    let world = apply_leaving_twins();
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.ok();
    let deletes: Vec<String> = stats
        .mutating()
        .iter()
        .filter(|c| c.op.starts_with("Delete") || c.op == "DetachInternetGateway")
        .map(|c| c.op.clone())
        .collect();
    assert_eq!(
        deletes,
        ["DeleteInternetGateway", "DeleteVpc"],
        "the rerun deletes the twins only: {}",
        run.describe()
    );
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
    destroy_leaves_nothing(&world);
}

#[test]
fn twins_of_lost_create_replies_are_removed_by_destroy() {
    let world = apply_leaving_twins();
    destroy_leaves_nothing(&world);
}

/// A lost CreateSecurityGroup / CreateSubnet reply fails the apply (the retried call
/// says the group / CIDR already exists); the next apply adopts them and converges.
#[test]
fn lost_duplicate_create_replies_fail_the_apply_then_a_rerun_converges() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world
        .proxy
        .configure(lose(&[("CreateSecurityGroup", 1), ("CreateSubnet", 1)]));
    let lossy = world.run(&["apply", "--yes"]);
    world.proxy.reset();
    let text = lossy.all_output();
    assert!(
        text.contains("InvalidGroup.Duplicate") && text.contains("InvalidSubnet.Conflict"),
        "{}",
        lossy.describe()
    );
    world.apply();
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
    destroy_leaves_nothing(&world);
}

/// What AWS calls for: a lost reply must neither fail the apply nor leave twins after it.
#[test]
#[ignore = "tool bug (issue 10 item 3): a lost create reply fails the apply \
            (InvalidGroup.Duplicate, InvalidSubnet.Conflict) or leaves tagged twins \
            (VPC, internet gateway) until the next apply"]
fn lost_create_replies_are_absorbed_by_the_same_apply() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.proxy.configure(lose(&[
        ("CreateVpc", 1),
        ("CreateInternetGateway", 1),
        ("CreateSecurityGroup", 1),
        ("CreateSubnet", 1),
    ]));
    let lossy = world.run(&["apply", "--yes"]);
    world.proxy.reset();
    lossy.ok();
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
    destroy_leaves_nothing(&world);
}

/// Twins of a create that did not finish (its state entry stays `creating`) must not
/// block the environment. Today `find` refuses ("Ambiguous: 2 internet gateways are
/// tagged ...") and both apply and destroy fail while planning: the tool can neither
/// repair nor remove the environment.
#[test]
#[ignore = "tool bug (issue 10 item 3): twins of an unfinished create make plan fail with \
            Ambiguous; apply and destroy are stuck"]
fn twins_of_an_unfinished_create_do_not_block_apply_or_destroy() {
    let world = World::new(&Fixture::new(Topology::K3s));
    // A twin gateway; the lost AttachInternetGateway reply makes the retried call answer
    // Resource.AlreadyAssociated, so the igw step fails and stays `creating`.
    world.proxy.configure(lose(&[
        ("CreateInternetGateway", 1),
        ("AttachInternetGateway", 1),
    ]));
    let first = world.run(&["apply", "--yes"]);
    world.proxy.reset();
    assert_eq!(
        world.aws.internet_gateways().len(),
        2,
        "{}",
        first.describe()
    );
    world.apply();
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
    destroy_leaves_nothing(&world);
}

/// RunInstances carries the step's ClientToken: a lost reply is retried with the same
/// token and AWS (here the proxy) answers with the first reservation, so no twin
/// instance. With the proxy ignoring tokens (like moto) this test fails.
#[test]
fn lost_run_instances_replies_are_absorbed_by_the_client_token() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world
        .proxy
        .configure(serde_json::json!({"lose_reply": {"RunInstances": 3}}));
    let run = world.run(&["apply", "--yes"]);
    let stats = world.proxy.stats();
    world.proxy.reset();
    run.ok();
    assert_eq!(
        stats.faults("lost_reply").len(),
        3,
        "{:?}",
        stats.faults("lost_reply")
    );
    assert!(
        !stats.faults("token_replay").is_empty(),
        "the retried RunInstances should have been answered from the token"
    );
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
    destroy_leaves_nothing(&world);
}

/// Replies lost at random (30% of the mutating calls, retries included; one step at a
/// time so that a seed always loses the same replies): the lossy apply may stop on an
/// "already exists" answer, but at most two more applies must converge to exactly one of
/// each, and destroy must leave nothing. Slow (the SDK backs off on every lost reply):
/// `make test-crash` runs it.
#[test]
#[ignore = "slow: make test-crash"]
fn slow_replies_lost_at_random_converge_within_two_reruns() {
    for seed in [1, 3, 6] {
        let world = World::new(&Fixture::new(Topology::K3s));
        world
            .proxy
            .configure(serde_json::json!({"lose_reply_rate": 0.3, "lose_reply_seed": seed}));
        let lossy = world.run(&["apply", "--yes", "--parallelism", "1"]);
        eprintln!(
            "seed {seed}: lossy apply exited {}, lost {:?}",
            lossy.code,
            world
                .proxy
                .stats()
                .faults("lost_reply")
                .iter()
                .map(|c| c.op.as_str())
                .collect::<Vec<_>>()
        );
        world.proxy.reset();
        let mut last = world.run(&["apply", "--yes"]);
        if last.code != 0 {
            last = world.run(&["apply", "--yes"]);
        }
        assert_eq!(last.code, 0, "seed {seed}: {}", last.describe());
        verify_no_duplicates(&world.aws, 2, true, true);
        world.assert_converged();
        destroy_leaves_nothing(&world);
    }
}
