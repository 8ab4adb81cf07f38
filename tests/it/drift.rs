//! Drift made out of band shows in `plan` (exit 2, naming each) and `apply` repairs it.

use aws_sdk_route53::types::ChangeAction;

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
    aws.change_record(&zone, ChangeAction::Delete, record);

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

/// What the cloud fixes at creation and someone changed anyway: a major version upgrade
/// of the database made outside provision (RDS cannot go back). `plan` shows it as a
/// replacement, marked as data loss, with the way to keep the database; `apply` refuses
/// it before any change unless `--allow-data-loss`, and a config that follows the cloud
/// plans nothing.
#[test]
fn a_change_only_a_replacement_undoes_is_planned_as_data_loss_with_the_way_to_keep_it() {
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.extra = "\n[datastore]\nengine_version = \"8.0\"\n".into();
    let world = World::new(&fixture);
    world.apply();
    let aws = &world.aws;
    let db = aws.db_instances().remove(0);
    let have = db.engine_version().unwrap().to_string();
    assert!(
        have.starts_with("8.0"),
        "the fixture's MySQL is 8.0: {have}"
    );
    aws.block(
        aws.rds
            .modify_db_instance()
            .db_instance_identifier(db.db_instance_identifier().unwrap())
            .engine_version("8.4.3")
            .allow_major_version_upgrade(true)
            .apply_immediately(true)
            .send(),
    )
    .unwrap();
    assert_eq!(
        aws.db_instances()[0].engine_version(),
        Some("8.4.3"),
        "the emulator took the upgrade"
    );

    let (plan, stats) = world.run_recorded(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
    let text = plan.all_output();
    for want in [
        "datastore",
        "engine version is 8.4.3",
        "RDS cannot downgrade",
        "engine_version = \"8.4.3\"",
        "only a replacement changes it",
        "DATA LOSS",
    ] {
        assert!(
            text.contains(want),
            "plan should say {want:?}: {}",
            plan.describe()
        );
    }

    let (apply, stats) = world.run_recorded(&["apply", "--yes"]);
    assert_ne!(apply.code, 0, "{}", apply.describe());
    assert!(
        apply.all_output().contains("--allow-data-loss"),
        "{}",
        apply.describe()
    );
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
    assert_eq!(aws.db_instances()[0].engine_version(), Some("8.4.3"));

    // Following the cloud in the config keeps the database: an update that records the
    // version (no new database, no data lost), then nothing to do.
    fixture.extra = "\n[datastore]\nengine_version = \"8.4.3\"\n".into();
    world.write_config(&fixture);
    let (apply, stats) = world.run_recorded(&["apply", "--yes"]);
    apply.ok();
    let names = stats.mutating_names();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("DeleteDBInstance") || n.contains("CreateDBInstance")),
        "{names:?}"
    );
    assert_eq!(
        aws.db_instances()[0].db_instance_identifier(),
        db.db_instance_identifier()
    );
    world.run(&["plan", "--detailed-exitcode"]).code(0);
}
