//! Deletes refused as "still in use", as AWS refuses them while ENIs and attachments
//! drain: the proxy answers the first K deletes of each kind with the service's in-use
//! error (never forwarding them). `destroy` retries them within
//! `timeouts.dependency_minutes` and leaves nothing; past that limit it fails naming what
//! still blocks.

use std::collections::BTreeMap;

use crate::harness::{Fixture, Stats, Topology, World};

/// Deletes answered "in use" and how many times each: EC2 DependencyViolation, ELBv2
/// ResourceInUse, RDS InvalidDBSubnetGroupStateFault / InvalidDBInstanceState, Route53
/// HostedZoneNotEmpty.
const IN_USE: &[(&str, u32)] = &[
    ("DeleteSubnet", 2),
    ("DeleteSecurityGroup", 3),
    ("DeleteRouteTable", 2),
    ("DetachInternetGateway", 2),
    ("DeleteInternetGateway", 2),
    ("DeleteVpc", 2),
    ("DeleteTargetGroup", 2),
    ("DeleteLoadBalancer", 2),
    ("DeleteDBSubnetGroup", 2),
    ("DeleteDBInstance", 2),
    ("DeleteHostedZone", 2),
];

fn in_use_config() -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = IN_USE
        .iter()
        .map(|(op, k)| (op.to_string(), (*k).into()))
        .collect();
    serde_json::json!({ "in_use": map })
}

/// Per operation: (answered in use, forwarded).
fn per_op(stats: &Stats) -> BTreeMap<String, (u32, u32)> {
    let mut map: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for call in &stats.calls {
        let entry = map.entry(call.op.clone()).or_default();
        if call.fault.as_deref() == Some("in_use") {
            entry.0 += 1;
        } else if !call.faulted {
            entry.1 += 1;
        }
    }
    map
}

#[test]
fn destroy_retries_in_use_deletes_and_leaves_nothing() {
    // k3s with a private zone: every kind of delete the tool makes.
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.private_zone = true;
    let world = World::new(&fixture);
    world.apply();
    world.proxy.reset();
    world.proxy.configure(in_use_config());
    let run = world.run(&["destroy", "--yes", "--skip-final-snapshot"]);
    let stats = world.proxy.stats();
    run.ok();
    let seen = per_op(&stats);
    for (op, k) in IN_USE {
        let (refused, forwarded) = seen.get(*op).copied().unwrap_or_default();
        assert_eq!(
            refused, *k,
            "{op}: the proxy should have refused the first {k} calls: {seen:?}"
        );
        assert!(
            forwarded >= 1,
            "{op} was never retried after \"in use\": {seen:?}\n{}",
            run.describe()
        );
    }
    world.proxy.reset();
    world.assert_nothing_left();
}

#[test]
fn in_use_past_the_dependency_timeout_fails_naming_the_blocker() {
    let mut fixture = Fixture::new(Topology::K3s);
    // First lines of [timeouts]: give up on "in use" after about a second.
    fixture.extra = "dependency_minutes = 0.02\n".into();
    let world = World::new(&fixture);
    world.apply();
    world
        .proxy
        .configure(serde_json::json!({"in_use": {"DeleteSecurityGroup": 1_000_000}}));
    let run = world.run(&["destroy", "--yes", "--skip-final-snapshot"]);
    run.code(1);
    let text = run.all_output();
    assert!(
        text.contains("still in use") && text.contains("DependencyViolation"),
        "the error should say what still blocks: {}",
        run.describe()
    );
    world.proxy.reset();
    assert!(
        world.state_file().exists(),
        "the failed destroy lost the state"
    );
    world.state_json();
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    world.assert_nothing_left();
}

/// AWS's `DependencyViolation` for a subnet or a group names nothing (the proxy answers
/// as AWS does, from what the emulator holds). An instance someone launched by hand into
/// the env's subnet with the env's group keeps both; destroy gives up after the dependency
/// timeout and names that instance itself (it looks at the interfaces and instances).
#[test]
fn a_foreign_instance_in_the_subnet_is_named_by_the_tool() {
    let mut fixture = Fixture::new(Topology::Docker);
    fixture.extra = "dependency_minutes = 0.02\n".into();
    let world = World::new(&fixture);
    world.apply();
    let aws = &world.aws;
    let node = &aws.node_instances()[0];
    let subnet = node.subnet_id().unwrap().to_string();
    let group = node
        .security_groups()
        .iter()
        .chain(node.network_interfaces().iter().flat_map(|n| n.groups()))
        .find_map(|g| g.group_id())
        .expect("the node has a security group")
        .to_string();
    let foreign = aws
        .block(
            aws.ec2
                .run_instances()
                .image_id(crate::harness::AMI)
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnet)
                .security_group_ids(&group)
                .send(),
        )
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    world.proxy.reset();
    let run = world.run(&["destroy", "--yes", "--skip-final-snapshot"]);
    let stats = world.proxy.stats();
    run.code(1);
    let blocked: Vec<&str> = stats
        .faults("blocked")
        .iter()
        .map(|c| c.op.as_str())
        .collect();
    assert!(
        blocked.contains(&"DeleteSubnet") && blocked.contains(&"DeleteSecurityGroup"),
        "the proxy refused both deletes from what the emulator holds: {blocked:?}"
    );
    let text = run.all_output();
    for held in [&subnet, &group] {
        assert!(
            text.lines()
                .any(|l| l.contains(held.as_str()) && l.contains(&foreign)),
            "the error about {held} names the instance {foreign} that holds it: {}",
            run.describe()
        );
    }
    aws.block(aws.ec2.terminate_instances().instance_ids(&foreign).send())
        .unwrap();
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    let left = world.aws.leftovers();
    assert!(left.is_empty(), "the second destroy left: {left:#?}");
}
