//! What moto lets pass but real AWS (or the Rancher install on top) would not: the
//! registry's image store survives its host, node types change in place one node at a
//! time, data-losing changes need a flag, target groups keep no client IP, an
//! internet-facing NLB reaches every node's zone, and zones offer the instance types.

use crate::harness::{Fixture, Topology, World, AMI};

fn position(calls: &[String], name: &str, nth: usize) -> usize {
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| *c == name)
        .nth(nth)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no {name} #{nth} in {calls:?}"))
}

#[test]
fn the_registry_store_survives_a_replacement_of_its_host() {
    let world = World::new(&Fixture::new(Topology::Docker));
    world.apply();
    let aws = &world.aws;
    let volumes = aws.volume_tagged("registry-data");
    assert_eq!(volumes.len(), 1, "{volumes:#?}");
    let volume = volumes[0].volume_id().unwrap().to_string();
    let host = aws.registry_instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    assert_eq!(
        volumes[0].attachments()[0].instance_id(),
        Some(host.as_str()),
        "the store is attached to the registry host"
    );

    // A renewed certificate changes the host's user-data: the host is replaced (and only
    // the host: nodes trust the CA, which stays) ...
    let plan = world.run(&["plan", "--renew-registry-cert"]);
    plan.ok();
    let text = plan.all_output();
    assert!(text.contains("registry"), "{text}");
    assert!(
        !text.contains("DATA LOSS"),
        "replacing the registry host loses no data: {text}"
    );
    // ... without --allow-data-loss, and the same volume moves to the new host.
    let (run, stats) = world.run_recorded(&["apply", "--yes", "--renew-registry-cert"]);
    run.ok();
    let calls = stats.mutating_names();
    assert!(
        !calls
            .iter()
            .any(|c| c == "ec2:DeleteVolume" || c == "ec2:CreateVolume"),
        "{calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| *c == "ec2:TerminateInstances")
            .count(),
        1,
        "only the registry host is replaced: {calls:?}"
    );
    assert!(calls.iter().any(|c| c == "ec2:AttachVolume"), "{calls:?}");
    let new_host = aws.registry_instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    assert_ne!(new_host, host, "the host was replaced");
    let after = aws.volume_tagged("registry-data");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].volume_id(), Some(volume.as_str()), "same store");
    assert_eq!(
        after[0].attachments()[0].instance_id(),
        Some(new_host.as_str())
    );
    world.assert_converged();

    let destroy = world.run(&["destroy", "--yes"]);
    destroy.ok();
    world.assert_nothing_left();
}

#[test]
fn an_instance_type_change_is_made_in_place_one_node_at_a_time() {
    let fixture = Fixture::new(Topology::Rke);
    let world = World::new(&fixture);
    world.apply();
    let before: Vec<String> = world
        .aws
        .node_instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    assert_eq!(before.len(), 3);

    let text = fixture
        .render()
        .replace("[nodes]\n", "[nodes]\ninstance_type = \"m5.xlarge\"\n");
    world.write_config_text(&text);
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.ok();
    let calls = stats.mutating_names();
    for forbidden in ["ec2:TerminateInstances", "ec2:RunInstances"] {
        assert!(
            !calls.iter().any(|c| c == forbidden),
            "{forbidden}: {calls:?}"
        );
    }
    // stop, modify, start — and the next node only after the previous one is back.
    for n in 0..2 {
        assert!(
            position(&calls, "ec2:StartInstances", n)
                < position(&calls, "ec2:StopInstances", n + 1),
            "two nodes were down at once: {calls:?}"
        );
    }
    let nodes = world.aws.node_instances();
    let mut after: Vec<String> = nodes
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "the same instances, not new ones");
    for i in &nodes {
        assert_eq!(i.instance_type().map(|t| t.as_str()), Some("m5.xlarge"));
    }
    world.assert_converged();
}

#[test]
fn a_change_that_replaces_nodes_needs_allow_data_loss() {
    // An external registry: the nodes are the only instances, so the calls show their order.
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.external_registry = Some("registry.example.com:5000".into());
    let world = World::new(&fixture);
    world.apply();
    // Another x86_64 image moto knows.
    let images = world
        .aws
        .block(world.aws.ec2.describe_images().send())
        .unwrap();
    let other = images
        .images()
        .iter()
        .filter(|i| i.architecture().map(|a| a.as_str()) == Some("x86_64"))
        .filter_map(|i| i.image_id())
        .find(|id| *id != AMI)
        .expect("a second x86_64 AMI in moto")
        .to_string();
    let text = fixture.render().replace(AMI, &other);
    world.write_config_text(&text);

    let plan = world.run(&["plan"]);
    plan.ok();
    assert!(
        plan.all_output().contains("DATA LOSS"),
        "{}",
        plan.describe()
    );

    let (refused, stats) = world.run_recorded(&["apply", "--yes"]);
    refused.code(1);
    let out = refused.all_output();
    assert!(out.contains("this plan destroys data"), "{out}");
    assert!(out.contains("--allow-data-loss"), "{out}");
    assert!(out.contains("node-1"), "{out}");
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());

    let (run, stats) = world.run_recorded(&["apply", "--yes", "--allow-data-loss"]);
    run.ok();
    let calls = stats.mutating_names();
    // One node at a time: node-2 is terminated only after node-1's successor runs.
    assert!(
        position(&calls, "ec2:RunInstances", 0) < position(&calls, "ec2:TerminateInstances", 1),
        "{calls:?}"
    );
    world.assert_converged();
}

#[test]
fn target_groups_do_not_preserve_client_ip_and_drift_is_repaired() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    let aws = &world.aws;
    let tgs = aws.target_groups();
    assert!(!tgs.is_empty());
    let preserve = |arn: &str| -> Option<String> {
        let out = aws
            .block(
                aws.elb
                    .describe_target_group_attributes()
                    .target_group_arn(arn)
                    .send(),
            )
            .unwrap();
        out.attributes()
            .iter()
            .find(|a| a.key() == Some("preserve_client_ip.enabled"))
            .and_then(|a| a.value())
            .map(str::to_string)
    };
    for tg in &tgs {
        let arn = tg.target_group_arn().unwrap();
        assert_eq!(preserve(arn).as_deref(), Some("false"), "{arn}");
    }
    // Someone turns it back on: drift, repaired by apply.
    let arn = tgs[0].target_group_arn().unwrap().to_string();
    aws.block(
        aws.elb
            .modify_target_group_attributes()
            .target_group_arn(&arn)
            .attributes(
                aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                    .key("preserve_client_ip.enabled")
                    .value("true")
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let plan = world.run(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    assert!(
        plan.all_output()
            .contains("preserve_client_ip.enabled is true"),
        "{}",
        plan.describe()
    );
    world.apply();
    assert_eq!(preserve(&arn).as_deref(), Some("false"));
    world.assert_converged();
}

#[test]
fn an_internet_facing_nlb_has_a_subnet_in_every_zone_with_a_node() {
    let mut fixture = Fixture::new(Topology::Rke);
    fixture.extra = "\n[load_balancer]\nscheme = \"internet-facing\"\n".into();
    let text = fixture
        .render()
        .replace("[network]\n", "[network]\nzones = 3\n");
    let world = World::new(&fixture);
    world.write_config_text(&text);
    world.apply();
    let aws = &world.aws;
    let lbs = aws.load_balancers();
    assert_eq!(lbs.len(), 1);
    let lb_zones: std::collections::BTreeSet<String> = lbs[0]
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    let node_zones: std::collections::BTreeSet<String> = aws
        .node_instances()
        .iter()
        .filter_map(|i| {
            i.placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(node_zones.len(), 3, "rke's 3 nodes over 3 zones");
    assert_eq!(
        lb_zones, node_zones,
        "the NLB reaches every zone with a node"
    );
    // Its subnets are edge subnets: public IPs on launch.
    let lb_subnets: Vec<String> = lbs[0]
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id().map(str::to_string))
        .collect();
    for s in aws.subnets() {
        if lb_subnets
            .iter()
            .any(|id| Some(id.as_str()) == s.subnet_id())
        {
            assert_eq!(s.map_public_ip_on_launch(), Some(true), "{s:#?}");
        }
    }
    world.assert_converged();
}

#[test]
fn subnets_go_only_to_zones_that_offer_the_instance_types() {
    // moto's us-east-1e offers no t3 (the default node and registry types).
    let fixture = Fixture::new(Topology::K3s);
    let text = fixture
        .render()
        .replace("[network]\n", "[network]\nzones = 5\n");
    let world = World::new(&fixture);
    world.write_config_text(&text);
    world.apply();
    let zones: Vec<String> = world
        .aws
        .subnets()
        .iter()
        .filter_map(|s| s.availability_zone().map(str::to_string))
        .collect();
    assert!(zones.len() >= 5, "{zones:?}");
    assert!(
        !zones.iter().any(|z| z == "us-east-1e"),
        "a subnet landed in a zone without t3: {zones:?}"
    );
}

/// EC2 refuses a whole batch of rules with `InvalidPermission.Duplicate` when one of them
/// exists: the first AuthorizeSecurityGroupIngress is answered so (without reaching moto).
/// The tool reads the group again and authorizes what is still missing; taking the refusal
/// for success left the group without its rules.
#[test]
fn a_rule_batch_refused_as_duplicate_is_authorized_again() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.proxy.configure(serde_json::json!({
        "in_use": {"AuthorizeSecurityGroupIngress": {"count": 1, "code": "InvalidPermission.Duplicate"}}
    }));
    let run = world.run(&["apply", "--yes"]);
    let stats = world.proxy.stats();
    world.proxy.reset();
    run.ok();
    assert_eq!(
        stats.faults("in_use").len(),
        1,
        "the proxy refused one batch"
    );
    let node_sgs = crate::checks::verify_network_and_hosts(&world.aws, 2, true);
    crate::checks::verify_node_ports(&world.aws, &node_sgs, crate::checks::K3S_PORTS);
    world.assert_converged();
}

/// A launch refused with `IdempotentParameterMismatch` (the intent's token was used
/// before with other parameters) is tried again with a fresh token derived from it: the
/// first token plus `-1`, for the same node.
#[test]
fn a_client_token_mismatch_launches_with_a_fresh_token() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.proxy.configure(serde_json::json!({
        "in_use": {"RunInstances": {"count": 1, "code": "IdempotentParameterMismatch"}}
    }));
    let run = world.run(&["apply", "--yes"]);
    let stats = world.proxy.stats();
    world.proxy.reset();
    run.ok();
    let launches: Vec<_> = stats
        .calls
        .iter()
        .filter(|c| c.op == "RunInstances")
        .collect();
    let refused: Vec<_> = launches
        .iter()
        .filter(|c| c.fault.as_deref() == Some("in_use"))
        .collect();
    assert_eq!(refused.len(), 1, "the proxy refused one launch");
    let (node, first) = (
        refused[0]
            .id
            .clone()
            .expect("RunInstances carries provision:id"),
        refused[0]
            .token
            .clone()
            .expect("RunInstances carries a ClientToken"),
    );
    let retries: Vec<_> = launches
        .iter()
        .filter(|c| c.id.as_ref() == Some(&node) && !c.faulted)
        .map(|c| c.token.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        retries,
        vec![format!("{first}-1")],
        "the retry of `{node}` carries the first token plus -1"
    );
    crate::checks::verify_network_and_hosts(&world.aws, 2, true);
    world.assert_converged();
}

/// EC2 answers a reused ClientToken with the instance it launched for it, even when that
/// one died at launch: the proxy terminates the first launched instance and keeps answering
/// its token with it. The tool launches again with a fresh token derived from the intent's.
#[test]
fn an_instance_that_died_at_launch_is_launched_again_with_a_fresh_token() {
    let world = World::new(&Fixture::new(Topology::Docker));
    world
        .proxy
        .configure(serde_json::json!({"kill_on_launch": 1}));
    let run = world.run(&["apply", "--yes"]);
    let stats = world.proxy.stats();
    world.proxy.reset();
    run.ok();
    assert_eq!(stats.faults("killed_on_launch").len(), 1);
    crate::checks::verify_network_and_hosts(&world.aws, 1, true);
    world.assert_converged();
}

/// AWS refuses to delete a security group another group's rule names (the proxy does
/// too; moto does not). Two groups naming each other, and no state to order them: destroy
/// revokes each group's references to others first, so both go at any parallelism.
#[test]
fn groups_naming_each_other_are_destroyed_without_state() {
    let fixture = Fixture::new(Topology::K3s);
    let world = World::new(&fixture);
    world.write_config_text(&fixture.render().replace(
        "poll_seconds = 0.1",
        "poll_seconds = 0.1\ndependency_minutes = 0.25",
    ));
    world.apply();
    let aws = &world.aws;
    let group = |id: &str| -> String {
        aws.security_groups()
            .iter()
            .find(|g| {
                g.tags()
                    .iter()
                    .any(|t| t.key() == Some("provision:id") && t.value() == Some(id))
            })
            .and_then(|g| g.group_id())
            .unwrap_or_else(|| panic!("no group {id}"))
            .to_string()
    };
    let (lb, nodes) = (group("sg-lb"), group("sg-nodes"));
    // sg-nodes already admits the load balancer; now sg-lb names sg-nodes too.
    aws.block(
        aws.ec2
            .authorize_security_group_ingress()
            .group_id(&lb)
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(9999)
                    .to_port(9999)
                    .user_id_group_pairs(
                        aws_sdk_ec2::types::UserIdGroupPair::builder()
                            .group_id(&nodes)
                            .build(),
                    )
                    .build(),
            )
            .send(),
    )
    .unwrap();
    std::fs::remove_file(world.state_file()).unwrap();
    let run = world.run(&[
        "destroy",
        "--yes",
        "--skip-final-snapshot",
        "--adopt",
        "--parallelism",
        "10",
    ]);
    run.ok();
    world.assert_nothing_left();
}
