//! Drift made out of band shows in `plan` (exit 2, naming each) and `apply` repairs it.

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch};

use crate::checks::{verify_load_balancer, verify_network_and_hosts, verify_record};
use crate::harness::{ec2_tags, Fixture, Topology, World, HOSTNAME, ZONE};

#[test]
fn out_of_band_changes_are_planned_and_repaired() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    let aws = &world.aws;

    // 1. Terminate a node.
    let nodes = aws.node_instances();
    let victim = nodes
        .iter()
        .max_by_key(|i| ec2_tags(i.tags())["provision:id"].clone())
        .unwrap();
    let victim_id = ec2_tags(victim.tags())["provision:id"].clone();
    let survivor = nodes
        .iter()
        .find(|i| i.instance_id() != victim.instance_id())
        .unwrap();
    let survivor_instance = survivor.instance_id().unwrap().to_string();
    aws.block(
        aws.ec2
            .terminate_instances()
            .instance_ids(victim.instance_id().unwrap())
            .send(),
    )
    .unwrap();

    // 2. Revoke the LB -> nodes 443 rule.
    let lb = &aws.load_balancers()[0];
    let lb_sg = lb.security_groups()[0].to_string();
    let node_sg_id = crate::checks::instance_groups(survivor)[0].clone();
    let node_sg = &crate::checks::groups(aws, std::slice::from_ref(&node_sg_id))[0];
    let node_sg_logical = ec2_tags(node_sg.tags())["provision:id"].clone();
    let rule = node_sg
        .ip_permissions()
        .iter()
        .find(|p| {
            p.from_port() == Some(443)
                && p.user_id_group_pairs()
                    .iter()
                    .any(|g| g.group_id() == Some(&lb_sg))
        })
        .expect("LB -> nodes 443 rule")
        .clone();
    // The whole permission as AWS reports it (moto matches revokes exactly).
    let revoke = rule;
    aws.block(
        aws.ec2
            .revoke_security_group_ingress()
            .group_id(&node_sg_id)
            .ip_permissions(revoke)
            .send(),
    )
    .unwrap();

    // 3. Deregister the surviving node from the 80 group.
    let tg = aws
        .target_groups()
        .into_iter()
        .find(|t| t.port() == Some(80))
        .unwrap();
    let tg_arn = tg.target_group_arn().unwrap().to_string();
    let tg_logical = aws.elb_tags(std::slice::from_ref(&tg_arn))[&tg_arn]["provision:id"].clone();
    aws.block(
        aws.elb
            .deregister_targets()
            .target_group_arn(&tg_arn)
            .targets(
                aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                    .id(&survivor_instance)
                    .build(),
            )
            .send(),
    )
    .unwrap();

    // 4. Delete the record.
    let zone = aws.zone_id(ZONE);
    let record = aws
        .records_named(&zone, HOSTNAME)
        .into_iter()
        .find(|r| matches!(r.r#type().as_str(), "A" | "CNAME"))
        .unwrap();
    aws.block(
        aws.route53
            .change_resource_record_sets()
            .hosted_zone_id(&zone)
            .change_batch(
                ChangeBatch::builder()
                    .changes(
                        Change::builder()
                            .action(ChangeAction::Delete)
                            .resource_record_set(record)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send(),
    )
    .unwrap();

    let (plan, stats) = world.run_recorded(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    assert!(
        stats.mutating().is_empty(),
        "plan mutated: {:?}",
        stats.mutating_names()
    );
    let text = plan.all_output();
    for name in [
        victim_id.as_str(),
        node_sg_logical.as_str(),
        tg_logical.as_str(),
        "record",
    ] {
        assert!(
            text.contains(name),
            "plan should name {name}: {}",
            plan.describe()
        );
    }

    world.apply();
    let node_sgs = verify_network_and_hosts(aws, 2, true);
    let lb_dns = verify_load_balancer(aws, &node_sgs, true);
    verify_record(aws, Some(&lb_dns), None);
    world.assert_converged();
}
