//! `provision artifacts`: the files for the next install steps, with real values.

use std::process::Command;

use crate::harness::{mode, Fixture, Topology, World, ENV};

fn artifacts_dir(world: &World) -> std::path::PathBuf {
    world.path().join("state").join(ENV).join("artifacts")
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn bash_syntax_ok(path: &std::path::Path) {
    let out = Command::new("bash")
        .arg("-n")
        .arg(path)
        .output()
        .expect("run bash -n");
    assert!(
        out.status.success(),
        "{} is not valid shell: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn k3s_artifacts_carry_the_real_values() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    world.run(&["artifacts"]).ok();
    let dir = artifacts_dir(&world);

    let output = world.run(&["--json", "output"]);
    output.ok();
    let outputs = output.json();
    let registry_url = outputs["registry_url"]
        .as_str()
        .or_else(|| outputs["registry_url"]["value"].as_str())
        .unwrap_or_else(|| panic!("output registry_url: {outputs}"))
        .to_string();
    let host_port = registry_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    assert!(
        host_port.ends_with(":5000"),
        "registry host:port {host_port}"
    );

    let registries: serde_yaml::Value = serde_yaml::from_str(&read(&dir.join("registries.yaml")))
        .expect("registries.yaml parses as YAML");
    let endpoints = &registries["mirrors"]["docker.io"]["endpoint"];
    assert!(
        endpoints.as_sequence().is_some_and(|s| s
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains(&host_port)))),
        "docker.io mirror should point at {host_port}: {registries:?}"
    );
    let config = &registries["configs"][host_port.as_str()];
    assert!(
        !config.is_null(),
        "configs should be keyed by {host_port}: {registries:?}"
    );
    assert!(
        config["tls"]["ca_file"].as_str().is_some(),
        "ca_file: {config:?}"
    );

    let env_file = dir.join("k3s-install.env");
    assert_eq!(mode(&env_file), 0o600, "k3s-install.env mode");
    let arn = world.aws.datastore_secret_arn();
    let password = world.aws.secret_password(&arn);
    let env_text = read(&env_file);
    assert!(env_text.contains("K3S_DATASTORE_ENDPOINT"), "{env_text}");
    assert!(
        env_text.contains(&password),
        "the env file should hold the real password"
    );
    let db_host = world.aws.db_instances()[0]
        .endpoint()
        .and_then(|e| e.address())
        .unwrap()
        .to_string();
    assert!(
        env_text.contains(&format!("tcp({db_host}:3306)")),
        "{db_host} in the endpoint"
    );
    let lb_dns = world.aws.load_balancers()[0]
        .dns_name()
        .unwrap()
        .to_string();
    assert!(env_text.contains(&lb_dns), "--tls-san for the LB name");

    let helm = dir.join("helm-template.sh");
    bash_syntax_ok(&helm);
    let helm_text = read(&helm);
    for needle in [
        crate::harness::HOSTNAME,
        "systemDefaultRegistry",
        "useBundledSystemChart",
        host_port.as_str(),
    ] {
        assert!(
            helm_text.contains(needle),
            "helm-template.sh lacks {needle}: {helm_text}"
        );
    }
    let ca = read(&dir.join("registry-ca.crt"));
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let ssh = read(&dir.join("ssh_config"));
    assert!(ssh.contains("ProxyJump"), "{ssh}");
    for node in world.aws.node_instances() {
        let ip = node.private_ip_address().unwrap();
        assert!(ssh.contains(ip), "ssh_config lacks node {ip}: {ssh}");
    }
    assert!(dir.join("NEXT-STEPS.md").exists());
}

#[test]
fn rke_cluster_file_lists_the_nodes_and_the_registry() {
    let world = World::new(&Fixture::new(Topology::Rke));
    world.apply();
    let target = world.path().join("out");
    world
        .run(&["artifacts", "--dir", target.to_str().unwrap()])
        .ok();
    let cluster: serde_yaml::Value =
        serde_yaml::from_str(&read(&target.join("rancher-cluster.yml")))
            .expect("rancher-cluster.yml parses");
    let nodes = cluster["nodes"].as_sequence().expect("nodes list");
    assert_eq!(nodes.len(), 3, "{cluster:?}");
    let mut listed: Vec<String> = nodes
        .iter()
        .map(|n| {
            n["internal_address"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    listed.sort();
    let mut ips: Vec<String> = world
        .aws
        .node_instances()
        .iter()
        .map(|i| i.private_ip_address().unwrap().to_string())
        .collect();
    ips.sort();
    assert_eq!(listed, ips, "internal addresses");
    for n in nodes {
        for key in ["address", "user", "role", "ssh_key_path"] {
            assert!(!n[key].is_null(), "node lacks {key}: {n:?}");
        }
    }
    let registries = cluster["private_registries"]
        .as_sequence()
        .expect("private_registries");
    assert_eq!(registries[0]["is_default"].as_bool(), Some(true));
    assert!(registries[0]["url"]
        .as_str()
        .is_some_and(|u| u.ends_with(":5000") && !u.contains("://")));
    assert!(
        !artifacts_dir(&world).join("rancher-cluster.yml").exists(),
        "--dir was ignored"
    );
}

#[test]
fn external_registry_creates_no_registry_host() {
    let mut fixture = Fixture::new(Topology::Docker);
    fixture.lb_enabled = Some(false);
    fixture.external_registry = Some("registry.example.net:5443".into());
    let world = World::new(&fixture);
    world.apply();
    assert!(
        world.aws.registry_instances().is_empty(),
        "external mode created a registry host"
    );
    assert_eq!(world.aws.node_instances().len(), 1);
    world.run(&["artifacts"]).ok();
    let script = artifacts_dir(&world).join("docker-run.sh");
    bash_syntax_ok(&script);
    let text = read(&script);
    assert!(text.contains("registry.example.net:5443"), "{text}");
    world.assert_converged();
}
