//! `[access] mode = "ssm"` against the emulator: the Systems Manager endpoints, the role
//! and instance profile on every machine, no port 22 anywhere; verify holds, a re-apply
//! changes nothing, lost state is adopted, drift is repaired, destroy removes it all.
//! Everything is checked with direct API calls, not with the tool's own reading.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{IpPermission, SecurityGroup};
use aws_sdk_iam::error::ProvideErrorMetadata;

use crate::harness::{ec2_tags, Aws, Fixture, Topology, World, ENV};

const SERVICES: [&str; 3] = ["ec2messages", "ssm", "ssmmessages"];
const ROLE: &str = "lab-us-east-1-ssm-role";
const PROFILE: &str = "lab-us-east-1-ssm-profile";
const POLICY: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";

fn ssm(topology: Topology) -> Fixture {
    let mut fixture = Fixture::new(topology);
    fixture.access = Some("ssm");
    fixture
}

fn logical(tags: &[aws_sdk_ec2::types::Tag]) -> String {
    ec2_tags(tags)
        .get("provision:id")
        .cloned()
        .unwrap_or_default()
}

/// The cloud id of the env's security group `id`.
fn group_id(aws: &Aws, id: &str) -> String {
    aws.security_groups()
        .iter()
        .find(|g| logical(g.tags()) == id)
        .and_then(|g| g.group_id())
        .unwrap_or_else(|| panic!("no security group {id}"))
        .to_string()
}

/// Whether a permission lets tcp/22 in.
fn admits_ssh(p: &IpPermission) -> bool {
    match p.ip_protocol() {
        Some("-1") => true,
        Some("tcp" | "6") => {
            let (from, to) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
            from < 0 || (from <= 22 && 22 <= to)
        }
        _ => false,
    }
}

/// Every ingress permission of the env's groups that lets port 22 in.
fn ssh_rules(groups: &[SecurityGroup]) -> Vec<String> {
    groups
        .iter()
        .flat_map(|g| {
            g.ip_permissions()
                .iter()
                .filter(|p| admits_ssh(p))
                .map(move |p| format!("{}: {p:?}", logical(g.tags())))
        })
        .collect()
}

/// Endpoints, role, profile and every machine's profile are there, as the issue asks.
fn assert_ssm_built(aws: &Aws) {
    // Three interface endpoints, private DNS on, in the private subnets, behind
    // sg-endpoints, tagged for the env.
    let private: BTreeSet<String> = aws
        .subnets()
        .iter()
        .filter(|s| logical(s.tags()).starts_with("subnet-private-"))
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    assert_eq!(private.len(), 2);
    let endpoints = aws.vpc_endpoints();
    let services: BTreeSet<String> = endpoints
        .iter()
        .filter_map(|e| e.service_name().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = SERVICES
        .iter()
        .map(|s| format!("com.amazonaws.us-east-1.{s}"))
        .collect();
    assert_eq!(services, want);
    assert_eq!(endpoints.len(), 3, "one endpoint per service");
    let sg_endpoints = group_id(aws, "sg-endpoints");
    for e in &endpoints {
        let name = e.service_name().unwrap_or_default();
        assert_eq!(
            e.vpc_endpoint_type()
                .map(|t| t.as_str().to_ascii_lowercase()),
            Some("interface".to_string()),
            "{name}"
        );
        assert_eq!(e.private_dns_enabled(), Some(true), "{name}");
        let subnets: BTreeSet<String> = e.subnet_ids().iter().cloned().collect();
        assert_eq!(subnets, private, "{name}");
        let groups: Vec<&str> = e.groups().iter().filter_map(|g| g.group_id()).collect();
        assert_eq!(groups, vec![sg_endpoints.as_str()], "{name}");
        let service = name.rsplit('.').next().unwrap();
        crate::harness::assert_owned("vpc endpoint", &ec2_tags(e.tags()));
        assert_eq!(logical(e.tags()), format!("vpce-{service}"));
    }
    // Its group admits 443 from the env's machines only.
    let groups = aws.security_groups();
    let sg = groups
        .iter()
        .find(|g| g.group_id() == Some(sg_endpoints.as_str()))
        .unwrap();
    let admitted: BTreeSet<(String, i32, i32, String)> = sg
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            assert!(p.ip_ranges().is_empty(), "no CIDR is admitted: {p:?}");
            p.user_id_group_pairs().iter().map(move |g| {
                (
                    p.ip_protocol().unwrap_or_default().to_string(),
                    p.from_port().unwrap_or(-1),
                    p.to_port().unwrap_or(-1),
                    g.group_id().unwrap_or_default().to_string(),
                )
            })
        })
        .collect();
    let expected: BTreeSet<(String, i32, i32, String)> = ["sg-nodes", "sg-registry"]
        .iter()
        .map(|id| ("tcp".to_string(), 443, 443, group_id(aws, id)))
        .collect();
    assert_eq!(admitted, expected);
    // The role: path, tags, trust, the SSM policy.
    let role = aws
        .block(aws.iam.get_role().role_name(ROLE).send())
        .expect("the role exists")
        .role()
        .cloned()
        .unwrap();
    assert_eq!(role.path(), format!("/provision/{ENV}/"));
    let tag = |tags: &[aws_sdk_iam::types::Tag], k: &str| {
        tags.iter()
            .find(|t| t.key() == k)
            .map(|t| t.value().to_string())
    };
    assert_eq!(tag(role.tags(), "provision:env").as_deref(), Some(ENV));
    assert_eq!(
        tag(role.tags(), "provision:id").as_deref(),
        Some("ssm-role")
    );
    assert_eq!(
        tag(role.tags(), "provision:region").as_deref(),
        Some("us-east-1")
    );
    assert!(
        role.assume_role_policy_document()
            .unwrap_or_default()
            .contains("ec2.amazonaws.com"),
        "{:?}",
        role.assume_role_policy_document()
    );
    let attached = aws
        .block(aws.iam.list_attached_role_policies().role_name(ROLE).send())
        .unwrap();
    let arns: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(arns, vec![POLICY]);
    // The profile holds the role; every machine runs with it.
    let profile = aws
        .block(
            aws.iam
                .get_instance_profile()
                .instance_profile_name(PROFILE)
                .send(),
        )
        .expect("the profile exists")
        .instance_profile()
        .cloned()
        .unwrap();
    assert_eq!(profile.path(), format!("/provision/{ENV}/"));
    let roles: Vec<&str> = profile.roles().iter().map(|r| r.role_name()).collect();
    assert_eq!(roles, vec![ROLE]);
    assert_eq!(
        tag(profile.tags(), "provision:id").as_deref(),
        Some("ssm-profile")
    );
    let instances = aws.instances();
    assert_eq!(
        instances.len(),
        aws.node_instances().len() + 1,
        "the nodes and the registry host"
    );
    for i in &instances {
        assert_eq!(
            i.iam_instance_profile().and_then(|p| p.arn()),
            Some(profile.arn()),
            "{} runs with the profile",
            logical(i.tags())
        );
    }
    // No port 22 in any security group of the env.
    assert_eq!(ssh_rules(&groups), Vec::<String>::new());
    // The registry host keeps its route out and address (it pulls images).
    assert_eq!(aws.registry_instances().len(), 1);
    assert!(aws.registry_instances()[0].public_ip_address().is_some());
}

#[test]
fn an_ssm_apply_builds_endpoints_and_profiles_verify_holds_and_destroy_removes_them() {
    let world = World::new(&ssm(Topology::K3s));
    let (apply, stats) = world.run_recorded(&["apply", "--yes"]);
    apply.ok();
    // IAM is a global endpoint: with AWS_ENDPOINT_URL set it goes through the proxy too,
    // and the proxy sees the tag of what it creates.
    let iam: Vec<(String, Option<String>)> = stats
        .calls
        .iter()
        .filter(|c| c.service == "iam" && c.mutating)
        .map(|c| (c.op.clone(), c.id.clone()))
        .collect();
    for (op, id) in [
        ("CreateRole", Some("ssm-role")),
        ("AttachRolePolicy", None),
        ("CreateInstanceProfile", Some("ssm-profile")),
        ("AddRoleToInstanceProfile", None),
    ] {
        assert!(
            iam.contains(&(op.to_string(), id.map(str::to_string))),
            "{op} through the proxy: {iam:?}"
        );
    }
    assert_ssm_built(&world.aws);

    // verify holds, with the ssm checks and without a bastion check.
    let verify = world.run(&["verify", "--json"]);
    verify.ok();
    let doc = verify.json();
    let names: BTreeSet<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["ssm-endpoint", "instance-profile", "no-ssh-ingress"] {
        assert!(names.contains(name), "no {name}: {doc:#}");
    }
    assert!(!names.contains("admins-to-bastion"), "{doc:#}");

    // A re-apply is a no-op.
    let plan = world.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.describe());
    world.assert_converged();

    // Artifacts: ssh through Session Manager to instance ids, port forwards.
    world.run(&["artifacts"]).ok();
    let dir = world.path().join("state").join(ENV).join("artifacts");
    let config = std::fs::read_to_string(dir.join("ssh_config")).unwrap();
    for i in world.aws.node_instances() {
        assert!(
            config.contains(&format!("  HostName {}\n", i.instance_id().unwrap())),
            "{config}"
        );
    }
    assert!(config.contains(
        "ProxyCommand aws ssm start-session --region us-east-1 --target %h \
         --document-name AWS-StartSSHSession --parameters portNumber=%p"
    ));
    assert!(!config.contains("ProxyJump"), "{config}");
    let forward = std::fs::read_to_string(dir.join("ssm-port-forward.sh")).unwrap();
    let nlb = world.aws.load_balancers()[0]
        .dns_name()
        .unwrap()
        .to_string();
    assert!(
        forward.contains(&format!("kube-api) forward '{nlb}' 6443")),
        "{forward}"
    );
    assert!(forward.contains("datastore) forward '"), "{forward}");
    let output = world.run(&["output", "--json"]);
    output.ok();
    assert!(
        output.json()["ssh_bastion"].is_null(),
        "no bastion in ssm mode: {}",
        output.describe()
    );

    // Lost state: everything is adopted, nothing created.
    std::fs::remove_file(world.state_file()).unwrap();
    let _ = std::fs::remove_file(world.state_file().with_extension("json.backup"));
    let plan = world.run(&["plan", "--json"]);
    plan.ok();
    let doc = plan.json();
    let actions: Vec<(String, String)> = doc["actions"]
        .as_array()
        .expect("plan actions")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_string(),
                a["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for id in [
        "ssm-role",
        "ssm-profile",
        "sg-endpoints",
        "vpce-ssm",
        "vpce-ssmmessages",
        "vpce-ec2messages",
    ] {
        assert!(
            actions.contains(&(id.to_string(), "adopt".to_string())),
            "{id} adopted: {actions:?}"
        );
    }
    assert!(
        !actions.iter().any(|(_, a)| a == "create"),
        "nothing created: {actions:?}"
    );
    world.run(&["apply", "--yes", "--adopt"]).ok();
    world.assert_converged();

    // Destroy removes the endpoints, the profile and the role.
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    let aws = &world.aws;
    assert!(aws.vpc_endpoints().is_empty(), "{:?}", aws.vpc_endpoints());
    let role = aws.block(aws.iam.get_role().role_name(ROLE).send());
    assert_eq!(
        role.err()
            .as_ref()
            .and_then(|e| e.as_service_error())
            .and_then(|e| e.code()),
        Some("NoSuchEntity"),
        "the role is gone"
    );
    let profile = aws.block(
        aws.iam
            .get_instance_profile()
            .instance_profile_name(PROFILE)
            .send(),
    );
    assert_eq!(
        profile
            .err()
            .as_ref()
            .and_then(|e| e.as_service_error())
            .and_then(|e| e.code()),
        Some("NoSuchEntity"),
        "the profile is gone"
    );
    world.assert_nothing_left();
}

#[test]
fn ssm_drift_and_an_ssh_rule_fail_verify_and_apply_repairs_them() {
    let world = World::new(&ssm(Topology::Rke2));
    world.apply();
    let aws = &world.aws;
    // Behind the tool's back: the endpoints' group taken off an endpoint, the SSM policy
    // detached, the role taken out of the profile, a node's profile disassociated, and
    // ssh opened on the registry's group.
    let endpoint = aws
        .vpc_endpoints()
        .into_iter()
        .find(|e| logical(e.tags()) == "vpce-ssmmessages")
        .unwrap();
    let endpoint_id = endpoint.vpc_endpoint_id().unwrap().to_string();
    let sg_endpoints = group_id(aws, "sg-endpoints");
    aws.block(
        aws.ec2
            .modify_vpc_endpoint()
            .vpc_endpoint_id(&endpoint_id)
            .remove_security_group_ids(&sg_endpoints)
            .send(),
    )
    .unwrap();
    aws.block(
        aws.iam
            .detach_role_policy()
            .role_name(ROLE)
            .policy_arn(POLICY)
            .send(),
    )
    .unwrap();
    aws.block(
        aws.iam
            .remove_role_from_instance_profile()
            .instance_profile_name(PROFILE)
            .role_name(ROLE)
            .send(),
    )
    .unwrap();
    let node = aws
        .node_instances()
        .into_iter()
        .find(|i| logical(i.tags()) == "node-2")
        .unwrap();
    let node_id = node.instance_id().unwrap().to_string();
    let associations = aws
        .block(
            aws.ec2
                .describe_iam_instance_profile_associations()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-id")
                        .values(&node_id)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let association = associations.iam_instance_profile_associations()[0]
        .association_id()
        .unwrap()
        .to_string();
    aws.block(
        aws.ec2
            .disassociate_iam_instance_profile()
            .association_id(association)
            .send(),
    )
    .unwrap();
    let sg_registry = group_id(aws, "sg-registry");
    aws.block(
        aws.ec2
            .authorize_security_group_ingress()
            .group_id(&sg_registry)
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .cidr_ip("0.0.0.0/0")
            .send(),
    )
    .unwrap();

    // verify names each violation.
    let verify = world.run(&["verify", "--json"]);
    verify.code(1);
    let doc = verify.json();
    let failed: Vec<(String, String)> = doc["checks"]
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
        .collect();
    let has =
        |name: &str, needle: &str| failed.iter().any(|(n, r)| n == name && r.contains(needle));
    assert!(has("no-ssh-ingress", &sg_registry), "{failed:?}");
    assert!(has("ssm-endpoint", &endpoint_id), "{failed:?}");
    assert!(has("instance-profile", &node_id), "{failed:?}");

    // plan sees the drift; apply repairs it.
    let plan = world.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.describe());
    for needle in [
        "vpce-ssmmessages",
        "ssm-role",
        "ssm-profile",
        "node-2",
        "sg-registry",
    ] {
        assert!(
            plan.stdout.contains(needle),
            "{needle}: {}",
            plan.describe()
        );
    }
    let apply = world.apply();
    assert!(
        !apply.all_output().contains("replace"),
        "repairs are in place: {}",
        apply.describe()
    );
    assert_ssm_built(aws);
    assert_eq!(
        aws.node_instances()
            .iter()
            .find(|i| logical(i.tags()) == "node-2")
            .and_then(|i| i.instance_id())
            .map(str::to_string),
        Some(node_id),
        "node-2 kept (its profile was associated again, not the node replaced)"
    );
    world.run(&["verify"]).ok();
    let plan = world.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.describe());
}

#[test]
fn switching_access_modes_changes_machines_in_place() {
    // bastion -> ssm: the ssm resources are added, ssh rules revoked, the profile associated
    // with the running machines; ssm -> bastion: all of it goes again.
    let mut fixture = Fixture::new(Topology::Docker);
    let world = World::bare_with(true);
    world.write_config(&fixture);
    world.apply();
    let aws = &world.aws;
    let before: BTreeSet<String> = aws
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert!(
        !ssh_rules(&aws.security_groups()).is_empty(),
        "bastion mode has ssh"
    );

    fixture.access = Some("ssm");
    world.write_config(&fixture);
    world.apply();
    let after: BTreeSet<String> = aws
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert_eq!(before, after, "no machine replaced");
    assert_eq!(ssh_rules(&aws.security_groups()), Vec::<String>::new());
    assert_eq!(aws.vpc_endpoints().len(), 3);
    for i in aws.instances() {
        assert!(i.iam_instance_profile().is_some(), "{}", logical(i.tags()));
    }
    world.run(&["verify"]).ok();
    world.assert_converged();

    fixture.access = None;
    world.write_config(&fixture);
    world.apply();
    assert!(aws.vpc_endpoints().is_empty());
    assert!(aws.iam_roles().is_empty() && aws.instance_profiles().is_empty());
    for i in aws.instances() {
        assert!(i.iam_instance_profile().is_none(), "{}", logical(i.tags()));
    }
    assert!(!ssh_rules(&aws.security_groups()).is_empty());
    world.run(&["verify"]).ok();
    world.assert_converged();
}

/// Kills an ssm apply right after the emulator accepted `op` (its answer held back), then
/// checks that the next apply converges to exactly one role, one profile and one endpoint
/// per service, and that destroy leaves nothing.
fn kill_9_after(op: &str) {
    let world = World::new(&ssm(Topology::Docker));
    world
        .proxy
        .configure(serde_json::json!({"hold_call": {"op": op, "nth": 1}}));
    let mut running = world.spawn(&["apply", "--yes"]);
    crate::harness::wait_until(
        &format!("{op} to be held"),
        std::time::Duration::from_secs(120),
        || world.proxy.stats().held || running.finished(),
    );
    assert!(world.proxy.stats().held, "{op} was never called");
    running.signal(libc::SIGKILL);
    let killed = running.wait(std::time::Duration::from_secs(10));
    assert_eq!(killed.code, 128 + libc::SIGKILL, "{}", killed.describe());
    world.proxy.reset();

    world.apply();
    let aws = &world.aws;
    assert_eq!(aws.iam_roles().len(), 1, "{op}: one role");
    assert_eq!(aws.instance_profiles().len(), 1, "{op}: one profile");
    assert_eq!(
        aws.vpc_endpoints().len(),
        3,
        "{op}: one endpoint per service"
    );
    assert_ssm_built(aws);
    world.run(&["verify"]).ok();
    world.assert_converged();
    world.run(&["destroy", "--yes"]).ok();
    world.assert_nothing_left();
}

#[test]
fn kill_9_after_create_role_or_profile_or_endpoint_converges() {
    for op in ["CreateRole", "CreateInstanceProfile", "CreateVpcEndpoint"] {
        kill_9_after(op);
    }
}
