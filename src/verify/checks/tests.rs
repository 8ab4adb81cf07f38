//! The route and rule analysis over hand-built snapshots.

use super::*;
use crate::verify::*;

const PROFILE: &str = "arn:aws:iam::1:instance-profile/provision/lab/lab-us-east-1-ssm-profile";
const SERVICES: [&str; 3] = [
    "com.amazonaws.us-east-1.ec2messages",
    "com.amazonaws.us-east-1.ssm",
    "com.amazonaws.us-east-1.ssmmessages",
];

fn rule(proto: &str, from: i32, to: i32, peer: SgPeer) -> SgRule {
    SgRule {
        protocol: proto.into(),
        from_port: from,
        to_port: to,
        peer,
    }
}

fn cidr(c: &str) -> SgPeer {
    SgPeer::Cidr(c.into())
}

fn grp(g: &str) -> SgPeer {
    SgPeer::Group(g.into())
}

fn route(dest: &str, target: &str) -> Route {
    Route {
        destination: dest.into(),
        target: TargetKind::from_id(target),
        target_id: target.into(),
    }
}

fn node(i: u32, subnet: &str, ip: &str) -> Instance {
    Instance {
        id: format!("i-node{i}"),
        logical_id: Some(format!("node-{i}")),
        subnet: subnet.into(),
        private_ip: Some(ip.into()),
        public_ip: None,
        security_groups: vec!["sg-nodes".into()],
        network_interfaces: vec![format!("eni-node{i}")],
        instance_profile: None,
    }
}

/// A k3s env as `apply` builds it: everything holds.
fn good() -> (Snapshot, Expect) {
    let vpc = "10.42.0.0/16";
    let snap = Snapshot {
        vpc: Some(Vpc {
            id: "vpc-1".into(),
            cidr: vpc.into(),
        }),
        subnets: vec![
            Subnet {
                id: "subnet-p1".into(),
                cidr: "10.42.0.0/20".into(),
                az: "us-east-1a".into(),
                map_public_ip: false,
                logical_id: Some("subnet-private-1".into()),
            },
            Subnet {
                id: "subnet-p2".into(),
                cidr: "10.42.16.0/20".into(),
                az: "us-east-1b".into(),
                map_public_ip: false,
                logical_id: Some("subnet-private-2".into()),
            },
            Subnet {
                id: "subnet-e".into(),
                cidr: "10.42.240.0/20".into(),
                az: "us-east-1a".into(),
                map_public_ip: true,
                logical_id: Some("subnet-edge".into()),
            },
        ],
        route_tables: vec![
            RouteTable {
                id: "rtb-main".into(),
                main: true,
                subnets: vec![],
                routes: vec![route(vpc, "local")],
            },
            RouteTable {
                id: "rtb-private".into(),
                main: false,
                subnets: vec!["subnet-p1".into(), "subnet-p2".into()],
                routes: vec![route(vpc, "local")],
            },
            RouteTable {
                id: "rtb-edge".into(),
                main: false,
                subnets: vec!["subnet-e".into()],
                routes: vec![route(vpc, "local"), route("0.0.0.0/0", "igw-1")],
            },
        ],
        instances: vec![
            node(1, "subnet-p1", "10.42.0.10"),
            node(2, "subnet-p2", "10.42.16.10"),
            Instance {
                id: "i-reg".into(),
                logical_id: Some("registry".into()),
                subnet: "subnet-e".into(),
                private_ip: Some("10.42.240.10".into()),
                public_ip: Some("54.1.2.3".into()),
                security_groups: vec!["sg-registry".into()],
                network_interfaces: vec!["eni-reg".into()],
                instance_profile: None,
            },
        ],
        security_groups: vec![
            SecurityGroup {
                id: "sg-nodes".into(),
                logical_id: Some("sg-nodes".into()),
                ingress: vec![
                    rule("tcp", 443, 443, grp("sg-nodes")),
                    rule("tcp", 6443, 6443, grp("sg-nodes")),
                    rule("udp", 8472, 8472, grp("sg-nodes")),
                    rule("tcp", 80, 80, grp("sg-lb")),
                    rule("tcp", 443, 443, grp("sg-lb")),
                ],
                egress: vec![rule("-1", -1, -1, cidr(vpc))],
            },
            SecurityGroup {
                id: "sg-registry".into(),
                logical_id: Some("sg-registry".into()),
                ingress: vec![
                    rule("tcp", 5000, 5000, cidr(vpc)),
                    rule("tcp", 22, 22, cidr("203.0.113.0/24")),
                ],
                egress: vec![rule("-1", -1, -1, cidr("0.0.0.0/0"))],
            },
            SecurityGroup {
                id: "sg-lb".into(),
                logical_id: Some("sg-lb".into()),
                ingress: vec![
                    rule("tcp", 80, 80, cidr("203.0.113.0/24")),
                    rule("tcp", 443, 443, cidr("203.0.113.0/24")),
                ],
                egress: vec![rule("-1", -1, -1, cidr(vpc))],
            },
            SecurityGroup {
                id: "sg-db".into(),
                logical_id: Some("sg-datastore".into()),
                ingress: vec![rule("tcp", 3306, 3306, grp("sg-nodes"))],
                egress: vec![],
            },
        ],
        network_acls: vec![NetworkAcl {
            id: "acl-1".into(),
            default: true,
            subnets: vec!["subnet-p1".into(), "subnet-p2".into(), "subnet-e".into()],
            entries: vec![
                AclEntry {
                    rule_number: 100,
                    egress: false,
                    protocol: "-1".into(),
                    cidr: "0.0.0.0/0".into(),
                    allow: true,
                },
                AclEntry {
                    rule_number: 32767,
                    egress: false,
                    protocol: "-1".into(),
                    cidr: "0.0.0.0/0".into(),
                    allow: false,
                },
            ],
        }],
        addresses: vec![],
        load_balancer: Some(LoadBalancer {
            arn: "arn:lb".into(),
            dns_name: "lab-nlb-123.elb.us-east-1.amazonaws.com".into(),
            security_groups: vec!["sg-lb".into()],
            subnets: vec!["subnet-p1".into(), "subnet-p2".into()],
            internal: false,
        }),
        listeners: vec![
            Listener {
                arn: "arn:l80".into(),
                port: 80,
                target_groups: vec!["arn:tg80".into()],
            },
            Listener {
                arn: "arn:l443".into(),
                port: 443,
                target_groups: vec!["arn:tg443".into()],
            },
        ],
        target_groups: vec![
            TargetGroup {
                arn: "arn:tg80".into(),
                name: "lab-80".into(),
                port: 80,
                targets: vec!["i-node1".into(), "i-node2".into()],
            },
            TargetGroup {
                arn: "arn:tg443".into(),
                name: "lab-443".into(),
                port: 443,
                targets: vec!["i-node2".into(), "i-node1".into()],
            },
        ],
        record: Some(Record {
            name: "rancher.lab.example.com".into(),
            record_type: "A".into(),
            values: vec!["dualstack.lab-nlb-123.elb.us-east-1.amazonaws.com.".into()],
        }),
        database: Some(Database {
            id: "lab-datastore".into(),
            port: 3306,
            security_groups: vec!["sg-db".into()],
        }),
        vpc_endpoints: vec![],
    };
    let expect = Expect {
        hostname: "rancher.lab.example.com".into(),
        node_ports: vec![
            (Protocol::Tcp, 443, 443),
            (Protocol::Tcp, 6443, 6443),
            (Protocol::Udp, 8472, 8472),
        ],
        lb_ports: vec![80, 443],
        registry_port: Some(5000),
        datastore_port: Some(3306),
        admin_cidrs: vec!["203.0.113.0/24".into()],
        access: AccessMode::Bastion,
        ssm_services: vec![],
    };
    (snap, expect)
}

fn failures(snap: &Snapshot, expect: &Expect) -> Vec<Check> {
    run(snap, expect).into_iter().filter(|c| !c.ok()).collect()
}

/// The one failure of `name`; panics when there is not exactly one failure.
fn only_failure(snap: &Snapshot, expect: &Expect) -> Check {
    let f = failures(snap, expect);
    assert_eq!(f.len(), 1, "{f:#?}");
    f.into_iter().next().unwrap()
}

fn table<'a>(snap: &'a mut Snapshot, id: &str) -> &'a mut RouteTable {
    snap.route_tables.iter_mut().find(|t| t.id == id).unwrap()
}

fn group<'a>(snap: &'a mut Snapshot, id: &str) -> &'a mut SecurityGroup {
    snap.security_groups
        .iter_mut()
        .find(|g| g.id == id)
        .unwrap()
}

#[test]
fn an_env_as_built_passes_every_check() {
    let (snap, expect) = good();
    let checks = run(&snap, &expect);
    assert!(
        checks.iter().all(|c| c.outcome == Outcome::Pass),
        "{checks:#?}"
    );
    for name in [
        "no-route-out",
        "no-public-ip-on-launch",
        "no-public-address",
        "egress-inside-vpc",
        "network-acl",
        "nodes-to-registry",
        "nodes-to-nodes",
        "lb-to-nodes",
        "admins-to-lb",
        "admins-to-bastion",
        "nodes-to-datastore",
        "datastore-only-nodes",
        "dns-record",
        "target-group",
    ] {
        assert!(checks.iter().any(|c| c.name == name), "no {name} check");
    }
    // The edge table's internet route is not a node's concern.
    assert!(!checks.iter().any(|c| c.resource == "rtb-edge"));
}

#[test]
fn an_internet_route_in_the_node_table_fails_naming_it() {
    let (mut snap, expect) = good();
    table(&mut snap, "rtb-private")
        .routes
        .push(route("0.0.0.0/0", "igw-1"));
    let f = only_failure(&snap, &expect);
    assert_eq!(
        (f.name.as_str(), f.resource.as_str()),
        ("no-route-out", "rtb-private")
    );
    assert!(f.reason.contains("0.0.0.0/0 -> igw-1"), "{}", f.reason);
}

#[test]
fn a_subnet_without_association_is_judged_by_the_main_table() {
    let (mut snap, expect) = good();
    table(&mut snap, "rtb-private")
        .subnets
        .retain(|s| s != "subnet-p2");
    assert!(
        failures(&snap, &expect).is_empty(),
        "the main table is clean"
    );
    table(&mut snap, "rtb-main")
        .routes
        .push(route("0.0.0.0/0", "nat-1"));
    let f = only_failure(&snap, &expect);
    assert_eq!(f.resource, "rtb-main");
    assert!(f.reason.contains("main table"), "{}", f.reason);
}

#[test]
fn ipv6_default_route_to_an_egress_only_gateway_fails() {
    let (mut snap, expect) = good();
    table(&mut snap, "rtb-private")
        .routes
        .push(route("::/0", "eigw-1"));
    let f = only_failure(&snap, &expect);
    assert_eq!(f.resource, "rtb-private");
    assert!(f.reason.contains("::/0 -> eigw-1"), "{}", f.reason);
}

#[test]
fn a_peering_route_outside_the_vpc_fails_and_an_endpoint_route_does_not() {
    let (mut snap, expect) = good();
    table(&mut snap, "rtb-private")
        .routes
        .push(route("pl-63a5400a", "vpce-1"));
    assert!(failures(&snap, &expect).is_empty(), "S3 gateway endpoint");
    table(&mut snap, "rtb-private")
        .routes
        .push(route("172.16.0.0/12", "pcx-1"));
    let f = only_failure(&snap, &expect);
    assert_eq!(f.resource, "rtb-private");
    assert!(f.reason.contains("172.16.0.0/12 -> pcx-1"), "{}", f.reason);
    for (dest, target) in [
        ("0.0.0.0/0", "tgw-1"),
        ("0.0.0.0/0", "vgw-1"),
        ("0.0.0.0/0", "eni-nat"),
        ("192.168.0.0/16", "nat-1"),
    ] {
        let (mut snap, expect) = good();
        table(&mut snap, "rtb-private")
            .routes
            .push(route(dest, target));
        assert_eq!(
            only_failure(&snap, &expect).resource,
            "rtb-private",
            "{target}"
        );
    }
}

#[test]
fn a_node_with_an_elastic_ip_or_public_ip_fails() {
    let (mut snap, expect) = good();
    snap.addresses.push(Address {
        public_ip: "54.9.9.9".into(),
        allocation_id: Some("eipalloc-1".into()),
        instance_id: None,
        network_interface_id: Some("eni-node2".into()),
        private_ip: Some("10.42.16.10".into()),
    });
    let f = only_failure(&snap, &expect);
    assert_eq!(f.name, "no-public-address");
    assert!(f.resource.contains("i-node2"), "{}", f.resource);
    assert!(f.reason.contains("54.9.9.9"), "{}", f.reason);
    // By instance id too; an address of another VPC with the same private IP is not ours.
    snap.addresses[0].network_interface_id = None;
    snap.addresses[0].instance_id = Some("i-node2".into());
    assert_eq!(only_failure(&snap, &expect).name, "no-public-address");
    snap.addresses[0].instance_id = Some("i-elsewhere".into());
    snap.addresses[0].network_interface_id = Some("eni-elsewhere".into());
    assert!(failures(&snap, &expect).is_empty());

    let (mut snap, expect) = good();
    snap.instances[0].public_ip = Some("3.3.3.3".into());
    let f = only_failure(&snap, &expect);
    assert!(f.resource.contains("i-node1") && f.reason.contains("3.3.3.3"));

    let (mut snap, expect) = good();
    snap.subnets[0].map_public_ip = true;
    let f = only_failure(&snap, &expect);
    assert_eq!(
        (f.name.as_str(), f.resource.as_str()),
        ("no-public-ip-on-launch", "subnet-p1")
    );
}

#[test]
fn node_egress_to_the_internet_fails_naming_the_group() {
    let (mut snap, expect) = good();
    group(&mut snap, "sg-nodes")
        .egress
        .push(rule("-1", -1, -1, cidr("0.0.0.0/0")));
    let f = only_failure(&snap, &expect);
    assert_eq!(f.name, "egress-inside-vpc");
    assert!(f.resource.contains("sg-nodes") && f.reason.contains("0.0.0.0/0"));
    // A prefix list (VPC endpoint) is inside.
    let (mut snap, expect) = good();
    group(&mut snap, "sg-nodes").egress.push(rule(
        "tcp",
        443,
        443,
        SgPeer::PrefixList("pl-1".into()),
    ));
    assert!(failures(&snap, &expect).is_empty());
}

#[test]
fn a_revoked_registry_rule_fails_naming_the_groups() {
    let (mut snap, expect) = good();
    group(&mut snap, "sg-registry")
        .ingress
        .retain(|r| r.from_port != 5000);
    let f = only_failure(&snap, &expect);
    assert_eq!(f.name, "nodes-to-registry");
    assert!(f.resource.contains("sg-registry"), "{}", f.resource);
    assert!(f.reason.contains("ingress of sg-registry"), "{}", f.reason);
    // Node egress limited to somewhere else breaks it too.
    let (mut snap, expect) = good();
    group(&mut snap, "sg-nodes").egress = vec![rule("-1", -1, -1, cidr("10.42.0.0/20"))];
    let names: Vec<String> = failures(&snap, &expect)
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        names.contains(&"nodes-to-registry".to_string()),
        "{names:?}"
    );
}

#[test]
fn node_lb_and_datastore_paths_are_checked_per_port() {
    let (mut snap, expect) = good();
    group(&mut snap, "sg-nodes")
        .ingress
        .retain(|r| r.from_port != 8472);
    let f = only_failure(&snap, &expect);
    assert_eq!(f.name, "nodes-to-nodes");
    assert!(f.reason.starts_with("udp/8472"), "{}", f.reason);

    let (mut snap, expect) = good();
    group(&mut snap, "sg-nodes")
        .ingress
        .retain(|r| r.from_port != 80);
    let f = only_failure(&snap, &expect);
    assert_eq!(f.name, "lb-to-nodes");
    assert!(f.reason.starts_with("tcp/80"), "{}", f.reason);

    let (mut snap, expect) = good();
    group(&mut snap, "sg-db")
        .ingress
        .push(rule("tcp", 3306, 3306, cidr("10.0.0.0/8")));
    let f = only_failure(&snap, &expect);
    assert_eq!(f.name, "datastore-only-nodes");
    assert!(f.reason.contains("10.0.0.0/8"));

    let (mut snap, expect) = good();
    group(&mut snap, "sg-db").ingress.clear();
    let names: Vec<String> = failures(&snap, &expect)
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["nodes-to-datastore"]);

    let (mut snap, expect) = good();
    group(&mut snap, "sg-lb")
        .ingress
        .retain(|r| r.from_port != 443);
    let f = only_failure(&snap, &expect);
    assert_eq!(f.name, "admins-to-lb");
    assert!(f.reason.contains("tcp/443"));
}

#[test]
fn admins_to_an_internal_lb_says_it_proves_the_rule_only() {
    let (mut snap, expect) = good();
    let passes = |snap: &crate::verify::Snapshot| -> Vec<String> {
        super::run(snap, &expect)
            .into_iter()
            .filter(|c| c.name == "admins-to-lb")
            .map(|c| c.reason)
            .collect()
    };
    for reason in passes(&snap) {
        assert!(reason.ends_with("reaches every listener port"), "{reason}");
    }
    snap.load_balancer.as_mut().unwrap().internal = true;
    let reasons = passes(&snap);
    assert!(!reasons.is_empty());
    for reason in reasons {
        assert!(
            reason.contains("the load balancer is internal, so this proves the rule only")
                && reason.contains("through the bastion"),
            "{reason}"
        );
        assert!(!reason.contains("reaches every listener port"), "{reason}");
    }
}

#[test]
fn the_front_door_points_at_this_lb_and_groups_hold_every_node_only() {
    let (mut snap, expect) = good();
    snap.record.as_mut().unwrap().values = vec!["other.elb.amazonaws.com".into()];
    let f = only_failure(&snap, &expect);
    assert_eq!(
        (f.name.as_str(), f.resource.as_str()),
        ("dns-record", "rancher.lab.example.com")
    );

    let (mut snap, expect) = good();
    snap.target_groups[0].targets = vec!["i-node1".into(), "i-stranger".into()];
    let f = only_failure(&snap, &expect);
    assert_eq!(f.resource, "lab-80");
    assert!(f.reason.contains("missing i-node2") && f.reason.contains("strangers i-stranger"));
}

#[test]
fn a_custom_network_acl_is_noted_without_failing() {
    let (mut snap, expect) = good();
    snap.network_acls[0].entries.push(AclEntry {
        rule_number: 50,
        egress: true,
        protocol: "6".into(),
        cidr: "0.0.0.0/0".into(),
        allow: false,
    });
    let checks = run(&snap, &expect);
    assert!(checks.iter().all(|c| c.ok()));
    let acl = checks.iter().find(|c| c.name == "network-acl").unwrap();
    assert_eq!(acl.outcome, Outcome::Note);
    assert!(
        acl.reason.contains("#50 out deny 0.0.0.0/0"),
        "{}",
        acl.reason
    );
}

#[test]
fn verify_json_is_versioned_and_names_each_violation() {
    let (mut snap, expect) = good();
    table(&mut snap, "rtb-private")
        .routes
        .push(route("0.0.0.0/0", "igw-1"));
    let checks = run(&snap, &expect);
    let doc =
        crate::ui::json::verify_document("lab", &checks, Some(crate::commands::DEEP_UNAVAILABLE));
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["summary"]["fail"], 1);
    insta::assert_snapshot!(serde_json::to_string_pretty(&doc).unwrap());
}

// ---- ssm mode ------------------------------------------------------------------------------

/// The k3s env of [`good`] built with `[access] mode = "ssm"`: the three endpoints in the
/// private subnets behind sg-endpoints, a profile on every machine, no port 22 anywhere.
fn ssm_good() -> (Snapshot, Expect) {
    let (mut snap, mut expect) = good();
    expect.access = AccessMode::Ssm;
    expect.ssm_services = SERVICES.iter().map(|s| s.to_string()).collect();
    for i in &mut snap.instances {
        i.instance_profile = Some(PROFILE.into());
    }
    group(&mut snap, "sg-registry")
        .ingress
        .retain(|r| r.from_port != 22);
    snap.security_groups.push(SecurityGroup {
        id: "sg-endpoints".into(),
        logical_id: Some("sg-endpoints".into()),
        ingress: vec![
            rule("tcp", 443, 443, grp("sg-nodes")),
            rule("tcp", 443, 443, grp("sg-registry")),
        ],
        egress: vec![],
    });
    snap.vpc_endpoints = SERVICES
        .iter()
        .enumerate()
        .map(|(n, service)| VpcEndpoint {
            id: format!("vpce-{n}"),
            service_name: service.to_string(),
            endpoint_type: "interface".into(),
            state: "available".into(),
            private_dns: true,
            subnets: vec!["subnet-p1".into(), "subnet-p2".into()],
            security_groups: vec!["sg-endpoints".into()],
        })
        .collect();
    (snap, expect)
}

#[test]
fn an_ssm_env_as_built_passes_every_check_and_has_no_bastion_check() {
    let (snap, expect) = ssm_good();
    let checks = run(&snap, &expect);
    assert!(
        checks.iter().all(|c| c.outcome == Outcome::Pass),
        "{checks:#?}"
    );
    let count = |name: &str| checks.iter().filter(|c| c.name == name).count();
    assert_eq!(count("ssm-endpoint"), 3);
    assert_eq!(
        count("instance-profile"),
        3,
        "two nodes and the registry host"
    );
    assert_eq!(count("no-ssh-ingress"), 5, "every group of the env");
    assert_eq!(count("admins-to-bastion"), 0);
    // The same env judged as a bastion env misses its ssh.
    let (snap, mut expect) = ssm_good();
    expect.access = AccessMode::Bastion;
    assert_eq!(only_failure(&snap, &expect).name, "admins-to-bastion");
}

#[test]
fn ssm_mode_fails_on_any_ssh_rule_naming_the_group() {
    for rule_ in [
        rule("tcp", 22, 22, cidr("0.0.0.0/0")),
        rule("tcp", 0, 65535, cidr("10.42.0.0/16")),
        rule("-1", -1, -1, grp("sg-nodes")),
    ] {
        let (mut snap, expect) = ssm_good();
        group(&mut snap, "sg-nodes").ingress.push(rule_.clone());
        let f = only_failure(&snap, &expect);
        assert_eq!(
            (f.name.as_str(), f.resource.as_str()),
            ("no-ssh-ingress", "sg-nodes (sg-nodes)"),
            "{rule_:?}"
        );
        assert!(f.reason.starts_with("admits ssh: "), "{}", f.reason);
    }
    // A group nobody tagged but a machine uses counts too.
    let (mut snap, expect) = ssm_good();
    snap.security_groups.push(SecurityGroup {
        id: "sg-stranger".into(),
        logical_id: None,
        ingress: vec![rule("tcp", 22, 22, cidr("198.51.100.0/24"))],
        egress: vec![rule("-1", -1, -1, cidr("10.42.0.0/16"))],
    });
    snap.instances[0].security_groups.push("sg-stranger".into());
    let f = only_failure(&snap, &expect);
    assert_eq!(
        (f.name.as_str(), f.resource.as_str()),
        ("no-ssh-ingress", "sg-stranger")
    );
    assert!(
        f.reason.contains("tcp/22 from 198.51.100.0/24"),
        "{}",
        f.reason
    );
}

#[test]
fn ssm_mode_fails_on_a_missing_endpoint_private_dns_off_or_a_closed_group() {
    // Missing.
    let (mut snap, expect) = ssm_good();
    snap.vpc_endpoints
        .retain(|e| !e.service_name.ends_with(".ssmmessages"));
    let f = only_failure(&snap, &expect);
    assert_eq!(
        (f.name.as_str(), f.resource.as_str()),
        ("ssm-endpoint", "com.amazonaws.us-east-1.ssmmessages")
    );
    // Private DNS off.
    let (mut snap, expect) = ssm_good();
    snap.vpc_endpoints[1].private_dns = false;
    let f = only_failure(&snap, &expect);
    assert_eq!(f.resource, "vpce-1 (com.amazonaws.us-east-1.ssm)");
    assert!(f.reason.contains("private DNS is off"), "{}", f.reason);
    // The endpoints' group no longer admits the registry host.
    let (mut snap, expect) = ssm_good();
    group(&mut snap, "sg-endpoints")
        .ingress
        .retain(|r| r.peer != grp("sg-registry"));
    let f = failures(&snap, &expect);
    assert_eq!(f.len(), 3, "one per endpoint: {f:#?}");
    assert!(f.iter().all(|c| c.name == "ssm-endpoint"
        && c.reason
            .contains("i-reg (registry): ingress of sg-endpoints (sg-endpoints)")));
    // Node egress that stops at 443 would not reach it either.
    let (mut snap, expect) = ssm_good();
    group(&mut snap, "sg-nodes").egress = vec![rule("tcp", 80, 80, cidr("10.42.0.0/16"))];
    assert!(failures(&snap, &expect)
        .iter()
        .any(|c| c.name == "ssm-endpoint" && c.reason.contains("egress of sg-nodes")));
}

#[test]
fn ssm_mode_fails_on_a_machine_without_its_instance_profile() {
    let (mut snap, expect) = ssm_good();
    snap.instances[2].instance_profile = None;
    let f = only_failure(&snap, &expect);
    assert_eq!(
        (f.name.as_str(), f.resource.as_str()),
        ("instance-profile", "i-reg (registry)")
    );
}

#[test]
fn node_egress_to_the_endpoints_stays_inside_the_vpc() {
    // Egress to the endpoints' group (or to a gateway endpoint's prefix list) is not a way
    // out; the endpoints themselves add no route.
    let (mut snap, expect) = ssm_good();
    group(&mut snap, "sg-nodes").egress = vec![
        rule("tcp", 443, 443, grp("sg-endpoints")),
        rule("tcp", 443, 443, SgPeer::PrefixList("pl-63a5400a".into())),
        rule("-1", -1, -1, cidr("10.42.0.0/16")),
    ];
    let checks = run(&snap, &expect);
    assert!(checks.iter().all(|c| c.ok()), "{checks:#?}");
    assert!(checks
        .iter()
        .any(|c| c.name == "egress-inside-vpc" && c.outcome == Outcome::Pass));
}
