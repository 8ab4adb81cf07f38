//! The rke and docker topologies.

use crate::checks::{
    verify_load_balancer, verify_network_and_hosts, verify_node_ports, verify_record, RKE_PORTS,
};
use crate::harness::{Fixture, Topology, World};

#[test]
fn rke_has_three_nodes_a_load_balancer_and_no_datastore() {
    let world = World::new(&Fixture::new(Topology::Rke));
    world.apply();
    let aws = &world.aws;
    let node_sgs = verify_network_and_hosts(aws, 3, true);
    verify_node_ports(aws, &node_sgs, RKE_PORTS);
    assert!(aws.db_instances().is_empty(), "rke has no RDS instance");
    assert!(
        aws.db_subnet_groups().is_empty(),
        "rke has no DB subnet group"
    );
    let lb_dns = verify_load_balancer(aws, &node_sgs, true);
    verify_record(aws, Some(&lb_dns), None);
    world.assert_converged();
}

#[test]
fn docker_with_load_balancer_points_the_record_at_it() {
    let world = World::new(&Fixture::new(Topology::Docker));
    world.apply();
    let aws = &world.aws;
    let node_sgs = verify_network_and_hosts(aws, 1, true);
    assert!(aws.db_instances().is_empty(), "docker has no RDS instance");
    let lbs = aws.load_balancers();
    assert_eq!(lbs.len(), 1);
    let kube_api = !aws.target_groups().iter().all(|t| t.port() != Some(6443));
    let lb_dns = verify_load_balancer(aws, &node_sgs, kube_api);
    verify_record(aws, Some(&lb_dns), None);
    world.assert_converged();
}

#[test]
fn docker_without_load_balancer_points_the_record_at_the_node() {
    let mut fixture = Fixture::new(Topology::Docker);
    fixture.lb_enabled = Some(false);
    let world = World::new(&fixture);
    world.apply();
    let aws = &world.aws;
    verify_network_and_hosts(aws, 1, true);
    assert!(
        aws.load_balancers().is_empty(),
        "no NLB when load_balancer.enabled = false"
    );
    assert!(
        aws.target_groups().is_empty(),
        "no target groups without an NLB"
    );
    let node = &aws.node_instances()[0];
    verify_record(aws, None, node.private_ip_address());
    world.assert_converged();
}

#[test]
fn private_zone_is_created_on_the_vpc_and_removed_by_destroy() {
    let mut fixture = Fixture::new(Topology::Rke);
    fixture.private_zone = true;
    let world = World::new(&fixture);
    world.apply();
    let aws = &world.aws;
    let zones = aws.block(aws.route53.list_hosted_zones().send()).unwrap();
    let private: Vec<_> = zones
        .hosted_zones()
        .iter()
        .filter(|z| z.config().is_some_and(|c| c.private_zone()))
        .collect();
    assert_eq!(private.len(), 1, "one private zone: {zones:#?}");
    let zone_id = private[0].id().to_string();
    assert_eq!(private[0].name().trim_end_matches('.'), "lab.example.com");
    // Attached to the env's VPC.
    let zone = aws
        .block(aws.route53.get_hosted_zone().id(&zone_id).send())
        .unwrap();
    let vpc_ids: Vec<_> = zone.vpcs().iter().filter_map(|v| v.vpc_id()).collect();
    let env_vpcs: Vec<String> = aws
        .block(
            aws.ec2
                .describe_vpcs()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("tag:provision:env")
                        .values("lab")
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    assert_eq!(env_vpcs.len(), 1);
    assert_eq!(vpc_ids, vec![env_vpcs[0].as_str()], "zone on the env VPC");
    // The Rancher record lives in the private zone, not in the public one.
    let in_private = aws.records_named(&zone_id, "rancher.lab.example.com");
    assert!(
        in_private.iter().any(|r| r.alias_target().is_some()),
        "alias record in the private zone: {in_private:#?}"
    );
    let public = aws.zone_id("lab.example.com");
    let in_public: Vec<_> = aws
        .records_named(&public, "rancher.lab.example.com")
        .into_iter()
        .filter(|r| matches!(r.r#type().as_str(), "A" | "CNAME"))
        .collect();
    assert!(
        in_public.is_empty(),
        "nothing in the public zone: {in_public:#?}"
    );
    world.assert_converged();
    world.run(&["destroy", "--yes"]).ok();
    world.assert_nothing_left();
}
