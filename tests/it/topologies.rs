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
