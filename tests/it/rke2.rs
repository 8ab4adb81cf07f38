//! The rke2 topology end to end: three servers, the supervisor and API behind the NLB, the
//! artifacts of an RKE2 air-gap install, and a destroy that leaves nothing.

use crate::checks::{
    assert_ingress, destroy_leaves_nothing, groups, node_private_ip, verify_load_balancer_ports,
    verify_network_and_hosts, verify_node_ports, verify_nothing_open_to_the_world, verify_record,
    Source, RKE2_PORTS,
};
use crate::harness::{mode, Fixture, Topology, World, ENV, HOSTNAME};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn rke2_builds_three_servers_behind_the_supervisor_and_api_listeners() {
    let world = World::new(&Fixture::new(Topology::Rke2));
    let validate = world.run(&["validate"]);
    validate.ok();
    assert!(
        !validate.all_output().contains("RKE1"),
        "{}",
        validate.describe()
    );
    world.apply();
    let aws = &world.aws;

    let node_sgs = verify_network_and_hosts(aws, 3, true);
    verify_node_ports(aws, &node_sgs, RKE2_PORTS);
    // NodePorts inside the VPC only; nothing open to the world.
    let node_groups = groups(aws, &node_sgs);
    assert_ingress(
        &node_groups,
        "tcp",
        30080,
        &Source::Cidr("10.42.0.0/16"),
        "nodeports from the VPC",
    );
    verify_nothing_open_to_the_world(aws, &node_sgs);
    assert!(aws.db_instances().is_empty(), "rke2 has no RDS instance");
    assert!(
        aws.db_subnet_groups().is_empty(),
        "rke2 has no DB subnet group"
    );
    // Listeners and target groups 80/443/6443/9345, every server registered, LB -> nodes.
    let lb_dns = verify_load_balancer_ports(aws, &node_sgs, &[80, 443, 6443, 9345]);
    verify_record(aws, Some(&lb_dns), None);

    world.assert_converged();

    // The artifacts of the air-gap install.
    world.run(&["artifacts"]).ok();
    let dir = world.path().join("state").join(ENV).join("artifacts");
    let token_file = world.secrets_dir().join("cluster-token");
    assert_eq!(mode(&token_file), 0o600, "the token is a secret");
    let token = read(&token_file).trim().to_string();
    assert!(token.len() >= 32, "{token:?}");
    let first_ip = node_private_ip(aws, "node-1");
    let first: serde_yaml::Value =
        serde_yaml::from_str(&read(&dir.join("rke2-config-first.yaml"))).unwrap();
    let join: serde_yaml::Value =
        serde_yaml::from_str(&read(&dir.join("rke2-config-join.yaml"))).unwrap();
    for config in [&first, &join] {
        assert_eq!(config["token"].as_str(), Some(token.as_str()));
        let sans: Vec<&str> = config["tls-san"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(sans, [lb_dns.as_str(), HOSTNAME]);
        assert!(config["system-default-registry"]
            .as_str()
            .is_some_and(|r| r.ends_with(":5000")));
    }
    assert!(first.get("server").is_none());
    // Joiners register with the first server's private IP, never through the NLB.
    assert_eq!(
        join["server"].as_str(),
        Some(format!("https://{first_ip}:9345").as_str())
    );
    for secret_file in [
        "rke2-config-first.yaml",
        "rke2-config-join.yaml",
        "registries.yaml",
    ] {
        assert_eq!(mode(&dir.join(secret_file)), 0o600, "{secret_file}");
    }
    let registries: serde_yaml::Value =
        serde_yaml::from_str(&read(&dir.join("registries.yaml"))).unwrap();
    assert!(registries["configs"]
        .as_mapping()
        .unwrap()
        .values()
        .all(|c| c["tls"]["ca_file"] == "/etc/rancher/rke2/registry-ca.crt"));
    assert!(read(&dir.join("rke2-install.sh")).contains("INSTALL_RKE2_ARTIFACT_PATH"));
    let next = read(&dir.join("NEXT-STEPS.md"));
    // The load balancer is internal: the kubeconfig goes through the bastion's tunnel.
    assert!(
        next.contains("127.0.0.1:6443") && next.contains("ssh -F ssh_config -N lab-tunnel"),
        "kubeconfig through the tunnel to the internal LB"
    );
    // Never in the state.
    let state = read(&world.state_file());
    assert!(!state.contains(&token), "the cluster token is in the state");

    destroy_leaves_nothing(&world);
}

#[test]
fn rke2_refuses_an_even_server_count_before_any_cloud_call() {
    let mut fixture = Fixture::new(Topology::Rke2);
    fixture.count = Some(4);
    let world = World::new(&fixture);
    let (run, stats) = world.run_recorded(&["plan"]);
    run.code(1);
    let out = run.all_output();
    assert!(
        out.contains("provision.toml:") && out.contains("nodes.count") && out.contains("odd"),
        "{out}"
    );
    assert!(stats.calls.is_empty(), "{} cloud calls", stats.calls.len());
}

#[test]
fn rke_warns_that_rke1_is_end_of_life() {
    let world = World::new(&Fixture::new(Topology::Rke));
    for command in ["validate", "plan"] {
        let run = world.run(&[command]);
        run.ok();
        let out = run.all_output();
        assert!(
            out.contains("warning:") && out.contains("RKE1") && out.contains("rke2"),
            "{command}: {out}"
        );
    }
}
