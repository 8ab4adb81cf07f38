//! `[access] mode = "ssm"` (issue 15) against moto: SSM endpoints, an IAM role and instance
//! profile on every machine, no port 22 anywhere, verify holds, a no-op re-apply, and a
//! destroy that leaves neither endpoints nor IAM behind.

use crate::harness::{ec2_tags, Fixture, Topology, World};

fn ssm_fixture() -> Fixture {
    let mut f = Fixture::new(Topology::K3s);
    f.extra = "\n[access]\nmode = \"ssm\"\n".to_string();
    f
}

fn endpoints(world: &World) -> Vec<aws_sdk_ec2::types::VpcEndpoint> {
    world
        .aws
        .block(world.aws.ec2.describe_vpc_endpoints().send())
        .unwrap()
        .vpc_endpoints()
        .iter()
        .filter(|e| {
            ec2_tags(e.tags()).get("provision:env").map(String::as_str) == Some("lab")
                && !matches!(
                    e.state()
                        .map(|s| s.as_str().to_ascii_lowercase())
                        .as_deref(),
                    Some("deleted" | "deleting")
                )
        })
        .cloned()
        .collect()
}

#[test]
fn an_ssm_env_has_endpoints_a_profile_on_every_machine_and_no_port_22() {
    let world = World::new(&ssm_fixture());
    world.apply();

    let eps = endpoints(&world);
    let mut services: Vec<String> = eps
        .iter()
        .map(|e| e.service_name().unwrap_or_default().to_string())
        .collect();
    services.sort();
    assert_eq!(
        services,
        [
            "com.amazonaws.us-east-1.ec2messages",
            "com.amazonaws.us-east-1.ssm",
            "com.amazonaws.us-east-1.ssmmessages"
        ],
        "{eps:#?}"
    );
    assert!(eps.iter().all(|e| e.private_dns_enabled() == Some(true)));

    let instances = world.aws.instances();
    assert!(!instances.is_empty());
    for i in &instances {
        assert!(
            i.iam_instance_profile().and_then(|p| p.arn()).is_some(),
            "{} has no instance profile",
            i.instance_id().unwrap_or_default()
        );
    }
    for g in world.aws.security_groups() {
        for p in g.ip_permissions() {
            let (from, to) = (p.from_port().unwrap_or(0), p.to_port().unwrap_or(65535));
            let all = p.ip_protocol() == Some("-1");
            assert!(
                all && p.ip_ranges().is_empty() && p.user_id_group_pairs().is_empty()
                    || !(all || (from..=to).contains(&22)),
                "{} admits port 22: {p:?}",
                g.group_id().unwrap_or_default()
            );
        }
    }
    let roles = world
        .aws
        .block(
            world
                .aws
                .iam
                .list_roles()
                .path_prefix("/provision/lab/")
                .send(),
        )
        .unwrap();
    assert_eq!(roles.roles().len(), 1, "{roles:?}");

    world.run(&["verify"]).ok();
    world.assert_converged();

    // Someone opens ssh on the nodes' group: verify names it, apply takes it back.
    let nodes = world
        .aws
        .security_groups()
        .into_iter()
        .find(|g| ec2_tags(g.tags()).get("provision:id").map(String::as_str) == Some("sg-nodes"))
        .and_then(|g| g.group_id().map(str::to_string))
        .expect("sg-nodes");
    world
        .aws
        .block(
            world
                .aws
                .ec2
                .authorize_security_group_ingress()
                .group_id(&nodes)
                .ip_permissions(
                    aws_sdk_ec2::types::IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(22)
                        .to_port(22)
                        .ip_ranges(
                            aws_sdk_ec2::types::IpRange::builder()
                                .cidr_ip("10.0.0.0/8")
                                .build(),
                        )
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let run = world.run(&["verify"]);
    run.code(1);
    assert!(
        run.all_output().contains(&nodes) || run.all_output().contains("sg-nodes"),
        "verify should name the group that admits 22: {}",
        run.describe()
    );
    world.apply();
    world.run(&["verify"]).ok();

    world.run(&["destroy", "--yes"]).ok();
    assert!(endpoints(&world).is_empty(), "endpoints left behind");
    let roles = world
        .aws
        .block(
            world
                .aws
                .iam
                .list_roles()
                .path_prefix("/provision/lab/")
                .send(),
        )
        .unwrap();
    assert!(roles.roles().is_empty(), "role left behind: {roles:?}");
    let profiles = world
        .aws
        .block(
            world
                .aws
                .iam
                .list_instance_profiles()
                .path_prefix("/provision/lab/")
                .send(),
        )
        .unwrap();
    assert!(
        profiles.instance_profiles().is_empty(),
        "instance profile left behind"
    );
    assert!(
        world.aws.leftovers().is_empty(),
        "{:?}",
        world.aws.leftovers()
    );
}
