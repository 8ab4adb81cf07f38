//! The K3s datastores: RDS PostgreSQL, embedded etcd (no RDS), and an engine change, which
//! replaces the database and so needs `--allow-data-loss`.

use crate::checks::{
    destroy_leaves_nothing, node_private_ip, verify_load_balancer, verify_network_and_hosts,
    verify_node_ports, verify_rds_datastore, K3S_PORTS,
};
use crate::harness::{mode, Fixture, Topology, World, ENV};

fn k3s_with_engine(engine: &str) -> Fixture {
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.extra = format!("\n[datastore]\nengine = \"{engine}\"\n");
    fixture
}

fn artifact(world: &World, name: &str) -> String {
    let path = world
        .path()
        .join("state")
        .join(ENV)
        .join("artifacts")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `NAME='value'` of a generated env file.
fn env_value(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim_matches('\'')
        .to_string()
}

#[test]
fn k3s_postgres_builds_an_rds_postgres_reachable_on_5432_from_the_nodes_only() {
    let world = World::new(&k3s_with_engine("postgres"));
    world.apply();
    let aws = &world.aws;
    let node_sgs = verify_network_and_hosts(aws, 2, true);
    verify_node_ports(aws, &node_sgs, K3S_PORTS);
    let secret = verify_rds_datastore(aws, &node_sgs, "postgres", "15", 5432);
    verify_load_balancer(aws, &node_sgs, true);
    world.assert_converged();

    world.run(&["artifacts"]).ok();
    let env = artifact(&world, "k3s-install.env");
    let db = &aws.db_instances()[0];
    let endpoint = db.endpoint().unwrap();
    let password = aws.secret_password(&secret);
    assert_eq!(
        env_value(&env, "K3S_DATASTORE_ENDPOINT"),
        format!(
            "postgres://k3s:{password}@{}:5432/k3s",
            endpoint.address().unwrap()
        )
    );
    let state = std::fs::read_to_string(world.state_file()).unwrap();
    assert!(!state.contains(&password), "the password is in the state");
    let output = world.run(&["output", "datastore_endpoint"]);
    output.ok();
    let shown = output.all_output();
    assert!(
        shown.contains(&format!(
            "postgres://k3s:<password from {secret}>@{}:5432/k3s",
            endpoint.address().unwrap()
        )),
        "{shown}"
    );
    assert!(!shown.contains(&password), "output shows the password");

    destroy_leaves_nothing(&world);
}

#[test]
fn k3s_embedded_etcd_has_three_servers_no_rds_and_a_shared_token() {
    let world = World::new(&k3s_with_engine("embedded-etcd"));
    world.apply();
    let aws = &world.aws;
    let node_sgs = verify_network_and_hosts(aws, 3, true);
    let mut ports = K3S_PORTS.to_vec();
    ports.extend([("tcp", 2379), ("tcp", 2380)]);
    verify_node_ports(aws, &node_sgs, &ports);
    assert!(
        aws.db_instances().is_empty(),
        "embedded etcd: no RDS instance"
    );
    assert!(aws.db_subnet_groups().is_empty(), "no DB subnet group");
    assert!(
        aws.env_secrets().is_empty(),
        "no datastore password secret: {:?}",
        aws.env_secrets()
    );
    let lb_dns = verify_load_balancer(aws, &node_sgs, true);
    world.assert_converged();

    world.run(&["artifacts"]).ok();
    let token_file = world.secrets_dir().join("cluster-token");
    assert_eq!(mode(&token_file), 0o600);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let first = artifact(&world, "k3s-install.env");
    let join = artifact(&world, "k3s-install-join.env");
    assert_eq!(env_value(&first, "K3S_TOKEN"), token);
    assert_eq!(env_value(&join, "K3S_TOKEN"), token);
    assert!(!first.contains("K3S_DATASTORE_ENDPOINT"), "{first}");
    let first_ip = node_private_ip(aws, "node-1");
    assert_eq!(
        env_value(&first, "INSTALL_K3S_EXEC"),
        format!("server --cluster-init --tls-san {lb_dns} --tls-san rancher.lab.example.com")
    );
    assert_eq!(
        env_value(&join, "INSTALL_K3S_EXEC"),
        format!(
            "server --server https://{first_ip}:6443 --tls-san {lb_dns} --tls-san \
             rancher.lab.example.com"
        )
    );
    let state = std::fs::read_to_string(world.state_file()).unwrap();
    assert!(!state.contains(&token), "the cluster token is in the state");

    destroy_leaves_nothing(&world);
}

#[test]
fn an_engine_change_replaces_the_datastore_only_with_allow_data_loss() {
    // The same user and database for both engines: only the engine (and so its version)
    // changes.
    let with_user = |engine: &str| {
        let mut fixture = k3s_with_engine(engine);
        fixture.extra.push_str("username = \"k3s\"\n");
        fixture
    };
    let world = World::new(&with_user("mysql"));
    world.apply();
    let before = world.aws.db_instances();
    assert_eq!(before[0].engine(), Some("mysql"));

    for engine in ["postgres", "embedded-etcd"] {
        let fixture = if engine == "postgres" {
            with_user(engine)
        } else {
            k3s_with_engine(engine)
        };
        world.write_config(&fixture);
        let plan = world.run(&["plan", "--detailed-exitcode"]);
        plan.code(2);
        let out = plan.all_output();
        assert!(
            out.contains("DATA LOSS") && out.contains("datastore"),
            "{engine}: {out}"
        );
        let (refused, stats) = world.run_recorded(&["apply", "--yes"]);
        refused.code(1);
        let out = refused.all_output();
        assert!(out.contains("this plan destroys data"), "{engine}: {out}");
        assert!(out.contains("--allow-data-loss"), "{engine}: {out}");
        assert!(out.contains("datastore"), "{engine}: {out}");
        assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
        assert_eq!(world.aws.db_instances()[0].engine(), Some("mysql"));
    }

    // With the flag, a switch to embedded etcd deletes the database.
    world.run(&["apply", "--yes", "--allow-data-loss"]).ok();
    assert!(world.aws.db_instances().is_empty());
    assert_eq!(world.aws.node_instances().len(), 3);
    world.assert_converged();
}
