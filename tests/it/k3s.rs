//! The k3s topology end to end, and node scaling.

use crate::checks::{
    verify_datastore, verify_load_balancer, verify_network_and_hosts, verify_node_ports,
    verify_record, K3S_PORTS,
};
use crate::harness::{Fixture, Topology, World};

#[test]
fn k3s_apply_builds_everything_then_reapply_and_plan_change_nothing() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    let aws = &world.aws;

    let node_sgs = verify_network_and_hosts(aws, 2, true);
    verify_node_ports(aws, &node_sgs, K3S_PORTS);
    verify_datastore(aws, &node_sgs);
    let lb_dns = verify_load_balancer(aws, &node_sgs, true);
    verify_record(aws, Some(&lb_dns), None);

    let state = world.state_json();
    assert!(state.is_object(), "state: {state}");
    assert_eq!(
        crate::harness::mode(&world.state_file()),
        0o600,
        "state file mode"
    );

    world.assert_converged();
}

/// Allowed mutating calls when only `nodes.count` changes.
const SCALING_CALLS: &[&str] = &[
    "ec2:RunInstances",
    "ec2:CreateTags",
    "ec2:TerminateInstances",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:DeregisterTargets",
];

#[test]
fn k3s_scaling_touches_only_instances_and_targets() {
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.count = Some(2);
    let world = World::new(&fixture);
    world.apply();
    let before: Vec<String> = world
        .aws
        .node_instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();

    fixture.count = Some(3);
    world.write_config(&fixture);
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.ok();
    let calls = stats.mutating_names();
    assert!(
        calls.iter().all(|c| SCALING_CALLS.contains(&c.as_str())),
        "scaling up made other mutating calls: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "ec2:RunInstances").count(),
        1,
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "elasticloadbalancing:RegisterTargets"),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c == "ec2:TerminateInstances"),
        "{calls:?}"
    );
    let node_sgs = verify_network_and_hosts(&world.aws, 3, true);
    verify_load_balancer(&world.aws, &node_sgs, true);
    let after: Vec<String> = world
        .aws
        .node_instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    for id in &before {
        assert!(after.contains(id), "scaling up replaced node {id}");
    }

    fixture.count = Some(2);
    world.write_config(&fixture);
    // Scaling down terminates a node and its disks: a plain apply refuses, saying what
    // to do first, and changes nothing.
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.code(1);
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
    for want in ["node-3", "drain", "--allow-data-loss"] {
        assert!(run.stderr.contains(want), "{want:?}: {}", run.describe());
    }
    let (run, stats) = world.run_recorded(&["apply", "--yes", "--allow-data-loss"]);
    run.ok();
    let calls = stats.mutating_names();
    assert!(
        calls.iter().all(|c| SCALING_CALLS.contains(&c.as_str())),
        "scaling down made other mutating calls: {calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| *c == "ec2:TerminateInstances")
            .count(),
        1,
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "elasticloadbalancing:DeregisterTargets"),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c == "ec2:RunInstances"), "{calls:?}");
    let node_sgs = verify_network_and_hosts(&world.aws, 2, true);
    verify_load_balancer(&world.aws, &node_sgs, true);
    let remaining: Vec<String> = world
        .aws
        .node_instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    assert_eq!(
        remaining, before,
        "scaling back down should keep the original nodes"
    );

    world.assert_converged();
}

#[test]
fn k3s_datastore_class_change_is_one_modify_call() {
    let mut fixture = Fixture::new(Topology::K3s);
    let world = World::new(&fixture);
    world.apply();

    fixture.instance_class = Some("db.t3.large".into());
    world.write_config(&fixture);
    let (plan, _) = world.run_recorded(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    let text = plan.all_output();
    let line = text
        .lines()
        .find(|l| l.contains("datastore") && (l.contains("update") || l.contains("replace")))
        .unwrap_or_else(|| panic!("plan should list the datastore: {}", plan.describe()));
    assert!(
        line.contains("update") && !line.contains("replace"),
        "a class change is an in-place update, not a replace: {}",
        plan.describe()
    );
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.ok();
    assert_eq!(
        stats.mutating_names(),
        ["rds:ModifyDBInstance"],
        "{}",
        run.describe()
    );
    let dbs = world.aws.db_instances();
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0].db_instance_class(), Some("db.t3.large"));
    world.assert_converged();
}

/// How many times each operation was called.
fn by_operation(stats: &crate::harness::Stats) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for c in &stats.calls {
        *out.entry(c.op.clone()).or_insert(0) += 1;
    }
    out
}

/// The describe of each kind's list: at most one each in a plan.
const LISTS: &[&str] = &[
    "DescribeVpcs",
    "DescribeInternetGateways",
    "DescribeSubnets",
    "DescribeRouteTables",
    "DescribeSecurityGroups",
    "DescribeKeyPairs",
    "DescribeVolumes",
    "DescribeInstances",
    "DescribeDBInstances",
    "DescribeDBSubnetGroups",
    "DescribeLoadBalancers",
    "DescribeTargetGroups",
    "DescribeListeners",
    "ListSecrets",
    "ListResourceRecordSets",
    "DescribeImages",
    "DescribeInstanceTypeOfferings",
    "DescribeAvailabilityZones",
];

#[test]
fn a_no_op_plan_reads_each_kind_once_whatever_the_node_count() {
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.count = Some(2);
    let world = World::new(&fixture);
    // The first plan checks the image and the instance types once, whatever the number
    // of instances using them.
    let (run, first) = world.run_recorded(&["plan"]);
    run.ok();
    let first = by_operation(&first);
    for op in LISTS {
        assert!(first.get(*op).copied().unwrap_or(0) <= 1, "{op}: {first:?}");
    }
    world.apply();
    let (run, two) = world.run_recorded(&["plan", "--detailed-exitcode"]);
    run.code(0);
    fixture.count = Some(5);
    world.write_config(&fixture);
    world.apply();
    let (run, five) = world.run_recorded(&["plan", "--detailed-exitcode"]);
    run.code(0);
    assert!(five.mutating().is_empty());
    let (two, five) = (by_operation(&two), by_operation(&five));
    assert_eq!(two, five, "a no-op plan's reads do not grow with the nodes");
    for op in LISTS {
        assert!(five.get(*op).copied().unwrap_or(0) <= 1, "{op}: {five:?}");
    }
    // What only a create needs is not asked when nothing is created.
    for op in [
        "DescribeImages",
        "DescribeInstanceTypes",
        "DescribeInstanceTypeOfferings",
        "DescribeAvailabilityZones",
    ] {
        assert!(!five.contains_key(op), "{op}: {five:?}");
    }
}
