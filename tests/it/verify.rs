//! `provision verify` against the emulator: an env as applied holds every check; a way
//! out, a broken path or a public address made out of band fails it, naming the resource.

use aws_sdk_ec2::types::DomainType;

use crate::harness::{ec2_tags, Fixture, Topology, World};

/// The cloud id of the EC2 resource tagged `provision:id=id` among `tags_and_ids`.
fn by_logical<'a>(
    items: impl IntoIterator<Item = (&'a [aws_sdk_ec2::types::Tag], Option<&'a str>)>,
    id: &str,
) -> String {
    items
        .into_iter()
        .find(|(tags, _)| ec2_tags(tags).get("provision:id").map(String::as_str) == Some(id))
        .and_then(|(_, cloud_id)| cloud_id)
        .unwrap_or_else(|| panic!("no {id}"))
        .to_string()
}

/// The failed checks of `verify --json`, as (name, resource).
fn failures(world: &World, want_code: i32) -> Vec<(String, String)> {
    let run = world.run(&["verify", "--json"]);
    run.code(want_code);
    let doc = run.json();
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["ok"], want_code == 0, "{doc:#}");
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn verify_holds_after_apply_and_names_an_internet_route_in_the_node_table() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    let aws = &world.aws;

    let run = world.run(&["verify"]);
    run.ok();
    for check in [
        "no-route-out",
        "no-public-address",
        "egress-inside-vpc",
        "nodes-to-registry",
        "nodes-to-nodes",
        "lb-to-nodes",
        "nodes-to-datastore",
        "datastore-only-nodes",
        "dns-record",
        "target-group",
    ] {
        assert!(run.stdout.contains(check), "no {check}: {}", run.describe());
    }
    assert_eq!(failures(&world, 0), vec![]);
    let deep = world.run(&["verify", "--deep"]);
    deep.ok();
    assert!(deep.stderr.contains("not available"), "{}", deep.describe());

    let tables = aws.route_tables();
    let rt = by_logical(
        tables.iter().map(|t| (t.tags(), t.route_table_id())),
        "rt-private",
    );
    let igws = aws.internet_gateways();
    let igw = igws[0].internet_gateway_id().unwrap().to_string();
    aws.block(
        aws.ec2
            .create_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send(),
    )
    .unwrap();
    let run = world.run(&["verify"]);
    run.code(1);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("no-route-out") && l.contains(&rt)),
        "{}",
        run.describe()
    );
    assert_eq!(
        failures(&world, 1),
        vec![("no-route-out".to_string(), rt.clone())]
    );

    aws.block(
        aws.ec2
            .delete_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .send(),
    )
    .unwrap();
    assert_eq!(failures(&world, 0), vec![]);
}

#[test]
fn verify_names_a_revoked_registry_rule_and_a_node_elastic_ip() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    let aws = &world.aws;

    // Revoke what lets the nodes pull from the registry.
    let groups = aws.security_groups();
    let sg = by_logical(
        groups.iter().map(|g| (g.tags(), g.group_id())),
        "sg-registry",
    );
    let group = groups
        .iter()
        .find(|g| g.group_id() == Some(sg.as_str()))
        .unwrap();
    let pull = group
        .ip_permissions()
        .iter()
        .find(|p| p.from_port() == Some(5000))
        .expect("registry port rule")
        .clone();
    aws.block(
        aws.ec2
            .revoke_security_group_ingress()
            .group_id(&sg)
            .ip_permissions(pull.clone())
            .send(),
    )
    .unwrap();
    let failed = failures(&world, 1);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "nodes-to-registry");
    assert!(failed[0].1.contains(&sg), "{failed:?}");
    let run = world.run(&["verify"]);
    run.code(1);
    assert!(
        run.stdout.contains(&sg) && run.stdout.contains("does not admit"),
        "{}",
        run.describe()
    );

    aws.block(
        aws.ec2
            .authorize_security_group_ingress()
            .group_id(&sg)
            .ip_permissions(pull)
            .send(),
    )
    .unwrap();
    assert_eq!(failures(&world, 0), vec![]);

    // Give a node an Elastic IP.
    let nodes = aws.node_instances();
    let node = nodes[0].instance_id().unwrap().to_string();
    let eip = aws
        .block(aws.ec2.allocate_address().domain(DomainType::Vpc).send())
        .unwrap();
    aws.block(
        aws.ec2
            .associate_address()
            .instance_id(&node)
            .allocation_id(eip.allocation_id().unwrap())
            .send(),
    )
    .unwrap();
    let failed = failures(&world, 1);
    assert!(
        failed
            .iter()
            .any(|(name, resource)| name == "no-public-address" && resource.contains(&node)),
        "{failed:?}"
    );
}

#[test]
fn verify_holds_for_rke2_and_for_docker_without_a_load_balancer() {
    let world = World::new(&Fixture::new(Topology::Rke2));
    world.apply();
    assert_eq!(failures(&world, 0), vec![]);
    let run = world.run(&["verify"]);
    assert!(run.stdout.contains("tcp/9345"), "{}", run.describe());

    let world = world.recycle();
    let mut fixture = Fixture::new(Topology::Docker);
    fixture.lb_enabled = Some(false);
    world.write_config(&fixture);
    world.apply();
    assert_eq!(failures(&world, 0), vec![]);
    let run = world.run(&["verify"]);
    assert!(
        run.stdout.contains("record resolves to the first node")
            && !run.stdout.contains("lb-to-nodes"),
        "{}",
        run.describe()
    );
}
