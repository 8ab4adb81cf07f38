//! Assertions about the cloud, made with direct API calls against the emulator.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{IpPermission, SecurityGroup};

use crate::harness::{assert_named, assert_owned, ec2_tags, Aws, HOSTNAME, ZONE};

/// Who a rule admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<'a> {
    Group(&'a str),
    Cidr(&'a str),
}

fn covers(permission: &IpPermission, protocol: &str, port: i32) -> bool {
    let proto = permission.ip_protocol().unwrap_or_default();
    if proto == "-1" {
        return true;
    }
    proto == protocol
        && permission.from_port().unwrap_or(i32::MIN) <= port
        && permission.to_port().unwrap_or(i32::MAX) >= port
}

fn admits(permission: &IpPermission, source: &Source<'_>) -> bool {
    match source {
        Source::Group(id) => permission
            .user_id_group_pairs()
            .iter()
            .any(|p| p.group_id() == Some(id)),
        Source::Cidr(cidr) => permission
            .ip_ranges()
            .iter()
            .any(|r| r.cidr_ip() == Some(cidr)),
    }
}

/// True when one of `groups` lets `source` in on `protocol`/`port`.
pub fn ingress_allows(
    groups: &[SecurityGroup],
    protocol: &str,
    port: i32,
    source: &Source<'_>,
) -> bool {
    groups.iter().any(|g| {
        g.ip_permissions()
            .iter()
            .any(|p| covers(p, protocol, port) && admits(p, source))
    })
}

#[track_caller]
pub fn assert_ingress(
    groups: &[SecurityGroup],
    protocol: &str,
    port: i32,
    source: &Source<'_>,
    what: &str,
) {
    assert!(
        ingress_allows(groups, protocol, port, source),
        "{what}: no ingress rule {protocol}/{port} from {source:?} in {:#?}",
        groups
            .iter()
            .map(|g| (g.group_id(), g.ip_permissions()))
            .collect::<Vec<_>>()
    );
}

/// The security groups with these ids, read live.
pub fn groups(aws: &Aws, ids: &[String]) -> Vec<SecurityGroup> {
    if ids.is_empty() {
        return Vec::new();
    }
    aws.block(
        aws.ec2
            .describe_security_groups()
            .set_group_ids(Some(ids.to_vec()))
            .send(),
    )
    .unwrap()
    .security_groups()
    .to_vec()
}

pub fn instance_groups(instance: &aws_sdk_ec2::types::Instance) -> Vec<String> {
    let mut ids: Vec<String> = instance
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    // moto reports the groups of an instance launched with an explicit network interface
    // only on that interface.
    for eni in instance.network_interfaces() {
        ids.extend(
            eni.groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_string)),
        );
    }
    ids.sort();
    ids.dedup();
    ids
}

/// What every topology shares: tags and names on EC2 resources, one of each logical id,
/// nodes without public IPs in subnets without an internet route, the registry host in
/// the edge subnet, and the node/bastion security-group rules. Returns the node SG ids.
pub fn verify_network_and_hosts(aws: &Aws, nodes: usize, registry_host: bool) -> Vec<String> {
    let vpcs = aws.vpcs();
    assert_eq!(vpcs.len(), 1, "one VPC per env: {vpcs:#?}");
    let vpc_id = vpcs[0].vpc_id().unwrap().to_string();
    assert_named("vpc", &ec2_tags(vpcs[0].tags()));

    let mut seen = BTreeSet::new();
    let mut unique = |what: &str, id: String| {
        assert!(
            seen.insert(id.clone()),
            "two resources share provision:id={id} ({what})"
        );
    };
    for s in aws.subnets() {
        assert_named("subnet", &ec2_tags(s.tags()));
        unique("subnet", assert_owned("subnet", &ec2_tags(s.tags())));
        assert_eq!(s.vpc_id(), Some(vpc_id.as_str()));
    }
    for r in aws.route_tables() {
        assert_named("route table", &ec2_tags(r.tags()));
        unique(
            "route table",
            assert_owned("route table", &ec2_tags(r.tags())),
        );
    }
    let igws = aws.internet_gateways();
    assert_eq!(igws.len(), 1, "one internet gateway: {igws:#?}");
    assert_named("internet gateway", &ec2_tags(igws[0].tags()));
    let igw_id = igws[0].internet_gateway_id().unwrap().to_string();
    for g in aws.security_groups() {
        assert_named("security group", &ec2_tags(g.tags()));
        unique("security group", assert_owned("sg", &ec2_tags(g.tags())));
    }
    for k in aws.key_pairs() {
        assert_owned("key pair", &ec2_tags(k.tags()));
    }

    let by_id = aws.instances_by_id();
    for (id, list) in &by_id {
        assert_eq!(
            list.len(),
            1,
            "{} instances tagged provision:id={id}",
            list.len()
        );
        assert_named("instance", &ec2_tags(list[0].tags()));
    }
    let node_list = aws.node_instances();
    assert_eq!(
        node_list.len(),
        nodes,
        "node instances: {:?}",
        by_id.keys().collect::<Vec<_>>()
    );
    let registry = aws.registry_instances();
    assert_eq!(
        registry.len(),
        usize::from(registry_host),
        "registry host instances"
    );
    assert_eq!(
        by_id.len(),
        nodes + usize::from(registry_host),
        "unexpected instances: {:?}",
        by_id.keys().collect::<Vec<_>>()
    );

    // Route tables of the VPC, live (the main one is untagged).
    let all_tables = aws
        .block(
            aws.ec2
                .describe_route_tables()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("vpc-id")
                        .values(&vpc_id)
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .route_tables()
        .to_vec();
    let table_of = |subnet: &str| {
        all_tables
            .iter()
            .find(|t| {
                t.associations()
                    .iter()
                    .any(|a| a.subnet_id() == Some(subnet))
            })
            .or_else(|| {
                all_tables
                    .iter()
                    .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
            })
            .unwrap_or_else(|| panic!("no route table for {subnet}"))
            .clone()
    };
    let default_route = |t: &aws_sdk_ec2::types::RouteTable| {
        t.routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .cloned()
    };

    let mut node_subnets = BTreeSet::new();
    for node in &node_list {
        let id = ec2_tags(node.tags())["provision:id"].clone();
        assert!(
            node.public_ip_address().is_none(),
            "{id} has a public IP {:?}",
            node.public_ip_address()
        );
        for eni in node.network_interfaces() {
            let public = eni.association().and_then(|a| a.public_ip());
            assert!(
                public.is_none(),
                "{id} has a public IP {public:?} on {eni:?}"
            );
        }
        let subnet = node.subnet_id().unwrap().to_string();
        let table = table_of(&subnet);
        assert!(
            default_route(&table).is_none(),
            "{id}'s subnet {subnet} routes 0.0.0.0/0: {:?}",
            table.routes()
        );
        assert!(
            table.routes().iter().all(
                |r| r.gateway_id().is_none_or(|g| g == "local") && r.nat_gateway_id().is_none()
            ),
            "{id}'s route table leads out of the VPC: {:?}",
            table.routes()
        );
        node_subnets.insert(subnet);
    }
    if nodes > 1 {
        assert!(
            node_subnets.len() > 1,
            "nodes are not spread across subnets: {node_subnets:?}"
        );
    }
    for t in aws.route_tables() {
        let is_node_table = t
            .associations()
            .iter()
            .any(|a| a.subnet_id().is_some_and(|s| node_subnets.contains(s)));
        if is_node_table {
            assert!(
                default_route(&t).is_none(),
                "private route table routes out: {:?}",
                t.routes()
            );
        }
    }

    let node_sgs: Vec<String> = node_list
        .iter()
        .flat_map(instance_groups)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(!node_sgs.is_empty(), "nodes have no security group");
    let node_groups = groups(aws, &node_sgs);
    for g in &node_groups {
        for p in g.ip_permissions_egress() {
            assert!(
                p.ip_ranges()
                    .iter()
                    .all(|r| r.cidr_ip() != Some("0.0.0.0/0")),
                "node egress must stay inside the VPC: {:?}",
                g.ip_permissions_egress()
            );
        }
    }

    if registry_host {
        let host = &registry[0];
        let subnet = host.subnet_id().unwrap();
        let table = table_of(subnet);
        let route = default_route(&table).unwrap_or_else(|| {
            panic!(
                "the registry/bastion subnet has no internet route: {:?}",
                table.routes()
            )
        });
        assert_eq!(
            route.gateway_id(),
            Some(igw_id.as_str()),
            "edge default route"
        );
        assert!(
            !node_subnets.contains(subnet),
            "the registry shares a subnet with nodes"
        );
        let bastion_sgs = instance_groups(host);
        let bastion_groups = groups(aws, &bastion_sgs);
        assert_ingress(
            &bastion_groups,
            "tcp",
            22,
            &Source::Cidr(crate::harness::ADMIN_CIDR),
            "admin -> bastion 22",
        );
        for sg in &bastion_sgs {
            assert_ingress(
                &node_groups,
                "tcp",
                22,
                &Source::Group(sg),
                "bastion -> nodes 22",
            );
        }
    }
    node_sgs
}

/// Node-to-node rules of a topology.
pub fn verify_node_ports(aws: &Aws, node_sgs: &[String], ports: &[(&str, i32)]) {
    let node_groups = groups(aws, node_sgs);
    for (protocol, port) in ports {
        let ok = node_sgs
            .iter()
            .any(|sg| ingress_allows(&node_groups, protocol, *port, &Source::Group(sg)));
        assert!(
            ok,
            "nodes <-> nodes {protocol}/{port} missing: {node_groups:#?}"
        );
    }
}

/// The NLB, its listeners and target groups, and registrations. Returns the LB DNS name.
pub fn verify_load_balancer(aws: &Aws, node_sgs: &[String], kube_api: bool) -> String {
    let ports: &[i32] = if kube_api {
        &[80, 443, 6443]
    } else {
        &[80, 443]
    };
    verify_load_balancer_ports(aws, node_sgs, ports)
}

/// [`verify_load_balancer`] with exactly `ports` as listeners and target groups.
pub fn verify_load_balancer_ports(aws: &Aws, node_sgs: &[String], ports: &[i32]) -> String {
    let lbs = aws.load_balancers();
    assert_eq!(lbs.len(), 1, "one load balancer: {lbs:#?}");
    let lb = &lbs[0];
    let arn = lb.load_balancer_arn().unwrap();
    let tags = aws.elb_tags(&[arn.to_string()]);
    assert_named("load balancer", &tags[arn]);
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("network"));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internal"));
    let attrs = aws
        .block(
            aws.elb
                .describe_load_balancer_attributes()
                .load_balancer_arn(arn)
                .send(),
        )
        .unwrap();
    let cross_zone = attrs
        .attributes()
        .iter()
        .find(|a| a.key() == Some("load_balancing.cross_zone.enabled"))
        .and_then(|a| a.value());
    assert_eq!(
        cross_zone,
        Some("true"),
        "cross-zone load balancing: {:?}",
        attrs.attributes()
    );

    let want_ports: BTreeSet<i32> = ports.iter().copied().collect();
    let target_groups = aws.target_groups();
    let tg_tags = aws.elb_tags(
        &target_groups
            .iter()
            .map(|t| t.target_group_arn().unwrap().to_string())
            .collect::<Vec<_>>(),
    );
    let mut tg_by_port = BTreeMap::new();
    for tg in &target_groups {
        let tg_arn = tg.target_group_arn().unwrap();
        assert_owned("target group", &tg_tags[tg_arn]);
        let name = tg.target_group_name().unwrap();
        assert!(name.len() <= 32, "target group name too long: {name}");
        assert_eq!(tg.protocol().map(|p| p.as_str()), Some("TCP"), "{name}");
        assert_eq!(
            tg.target_type().map(|t| t.as_str()),
            Some("instance"),
            "{name}"
        );
        assert_eq!(
            tg.healthy_threshold_count(),
            Some(3),
            "{name} healthy threshold"
        );
        assert_eq!(
            tg.unhealthy_threshold_count(),
            Some(3),
            "{name} unhealthy threshold"
        );
        assert_eq!(
            tg.health_check_interval_seconds(),
            Some(10),
            "{name} interval"
        );
        assert_eq!(
            tg.health_check_protocol().map(|p| p.as_str()),
            Some("TCP"),
            "{name}"
        );
        let port = tg.port().unwrap();
        let check_port = tg.health_check_port().unwrap_or("traffic-port");
        if port == 443 {
            assert_eq!(check_port, "80", "the 443 group checks port 80");
        } else {
            assert!(
                check_port == "traffic-port" || check_port == port.to_string(),
                "{name} health check port {check_port}"
            );
        }
        assert!(
            tg_by_port.insert(port, tg_arn.to_string()).is_none(),
            "two target groups for {port}"
        );
    }
    assert_eq!(
        tg_by_port.keys().copied().collect::<BTreeSet<_>>(),
        want_ports,
        "target group ports"
    );

    let listeners = aws.listeners(arn);
    let mut listener_ports = BTreeSet::new();
    for l in &listeners {
        let port = l.port().unwrap();
        assert_eq!(
            l.protocol().map(|p| p.as_str()),
            Some("TCP"),
            "listener {port}"
        );
        let forward = l
            .default_actions()
            .iter()
            .find(|a| a.r#type().map(|t| t.as_str()) == Some("forward"))
            .and_then(|a| a.target_group_arn())
            .unwrap_or_else(|| panic!("listener {port} does not forward: {l:?}"));
        assert_eq!(
            Some(&forward.to_string()),
            tg_by_port.get(&port),
            "listener {port} target"
        );
        listener_ports.insert(port);
    }
    assert_eq!(listener_ports, want_ports, "listener ports");

    let mut node_ids: Vec<String> = aws
        .node_instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    node_ids.sort();
    for (port, tg_arn) in &tg_by_port {
        assert_eq!(
            aws.registered_targets(tg_arn),
            node_ids,
            "targets of the {port} group"
        );
    }

    // LB SG -> nodes on every listener port.
    let lb_sgs: Vec<String> = lb.security_groups().iter().map(|s| s.to_string()).collect();
    if !lb_sgs.is_empty() {
        let node_groups = groups(aws, node_sgs);
        for port in &want_ports {
            let ok = lb_sgs
                .iter()
                .any(|sg| ingress_allows(&node_groups, "tcp", *port, &Source::Group(sg)));
            assert!(ok, "LB SG -> nodes {port} missing: {node_groups:#?}");
        }
    } else {
        panic!("the NLB has no security group of its own");
    }
    lb.dns_name().unwrap().to_string()
}

/// The Route53 record for `HOSTNAME`: an alias to `lb_dns`, or an A record to `ip`.
pub fn verify_record(aws: &Aws, lb_dns: Option<&str>, ip: Option<&str>) {
    let zone = aws.zone_id(ZONE);
    let records = aws.records_named(&zone, HOSTNAME);
    let main: Vec<_> = records
        .iter()
        .filter(|r| matches!(r.r#type().as_str(), "A" | "CNAME"))
        .collect();
    assert_eq!(
        main.len(),
        1,
        "one A/CNAME record for {HOSTNAME}: {records:#?}"
    );
    let record = main[0];
    let norm = |s: &str| s.trim_end_matches('.').to_lowercase();
    if let Some(lb_dns) = lb_dns {
        let target = record
            .alias_target()
            .map(|a| a.dns_name().to_string())
            .or_else(|| {
                record
                    .resource_records()
                    .first()
                    .map(|r| r.value().to_string())
            })
            .unwrap_or_default();
        let target = norm(&target);
        let target = target.strip_prefix("dualstack.").unwrap_or(&target);
        assert_eq!(target, norm(lb_dns), "record target: {record:#?}");
    }
    if let Some(ip) = ip {
        assert_eq!(record.r#type().as_str(), "A");
        let values: Vec<&str> = record
            .resource_records()
            .iter()
            .map(|r| r.value())
            .collect();
        assert_eq!(values, [ip], "record values");
    }
}

/// The RDS instance of a k3s env, checked in full. Returns its secret ARN.
pub fn verify_datastore(aws: &Aws, node_sgs: &[String]) -> String {
    // MySQL 8.4 by default: the newest major K3s supports and RDS sells in standard support.
    verify_rds_datastore(aws, node_sgs, "mysql", "8.4", 3306)
}

/// The RDS datastore of `engine`, its version starting with `version`, reachable on `port`
/// from the nodes only. Returns the ARN of its password secret.
pub fn verify_rds_datastore(
    aws: &Aws,
    node_sgs: &[String],
    engine: &str,
    version: &str,
    port: i32,
) -> String {
    let dbs = aws.db_instances();
    assert_eq!(dbs.len(), 1, "one RDS instance: {dbs:#?}");
    let db = &dbs[0];
    let tags: crate::harness::Tags = db
        .tag_list()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_owned("rds instance", &tags);
    assert_eq!(db.engine(), Some(engine));
    assert!(
        db.engine_version().unwrap_or_default().starts_with(version),
        "engine {:?}",
        db.engine_version()
    );
    assert_eq!(db.db_instance_class(), Some("db.t3.medium"));
    assert_eq!(db.storage_encrypted(), Some(true), "storage encrypted");
    assert_eq!(db.publicly_accessible(), Some(false), "publicly accessible");
    assert_eq!(db.deletion_protection(), Some(true), "deletion protection");
    assert!(
        db.backup_retention_period().unwrap_or(0) > 0,
        "automated backups"
    );
    // The master password is the tool's own secret, not one RDS manages (RDS rotates
    // those every 7 days; K3s keeps the password it was installed with).
    assert!(
        db.master_user_secret().is_none(),
        "the master password must not be managed (rotated) by RDS: {db:#?}"
    );
    let secrets = aws.env_secrets();
    let secret = secrets
        .iter()
        .find(|(name, _)| name == &format!("provision/{}/datastore-password", crate::harness::ENV))
        .unwrap_or_else(|| panic!("no datastore-password secret among {secrets:?}"))
        .1
        .clone();
    let password = aws.secret_password(&secret);
    assert!(
        password.len() >= 16,
        "a real password is kept in the secret"
    );
    let subnet_group = db
        .db_subnet_group()
        .and_then(|g| g.db_subnet_group_name())
        .unwrap_or_default();
    assert!(
        aws.db_subnet_groups().iter().any(|g| g == subnet_group),
        "subnet group {subnet_group} is not ours"
    );

    let db_sgs: Vec<String> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
        .collect();
    assert!(!db_sgs.is_empty(), "the datastore has no security group");
    assert!(
        db_sgs.iter().all(|s| !node_sgs.contains(s)),
        "the datastore shares the node SG"
    );
    let db_groups = groups(aws, &db_sgs);
    let node_sg_set: BTreeSet<&str> = node_sgs.iter().map(String::as_str).collect();
    let mut from_nodes = false;
    for g in &db_groups {
        for p in g.ip_permissions() {
            assert!(
                p.ip_ranges().is_empty(),
                "the datastore admits CIDRs: {p:?}"
            );
            assert_eq!(p.ip_protocol(), Some("tcp"), "{p:?}");
            assert_eq!(
                (p.from_port(), p.to_port()),
                (Some(port), Some(port)),
                "{p:?}"
            );
            for pair in p.user_id_group_pairs() {
                assert!(
                    node_sg_set.contains(pair.group_id().unwrap_or_default()),
                    "{port} from a non-node group: {p:?}"
                );
                from_nodes = true;
            }
        }
    }
    assert!(from_nodes, "nodes cannot reach {port}: {db_groups:#?}");
    secret
}

pub const K3S_PORTS: &[(&str, i32)] = &[("tcp", 6443), ("udp", 8472), ("tcp", 10250)];
pub const RKE_PORTS: &[(&str, i32)] = &[
    ("tcp", 443),
    ("tcp", 2379),
    ("tcp", 2380),
    ("tcp", 6443),
    ("udp", 8472),
    ("tcp", 9099),
    ("tcp", 10250),
    ("tcp", 10254),
];

pub const RKE2_PORTS: &[(&str, i32)] = &[
    ("tcp", 443),
    ("tcp", 9345),
    ("tcp", 6443),
    ("tcp", 2379),
    ("tcp", 2380),
    ("tcp", 2381),
    ("tcp", 10250),
    ("udp", 8472),
    ("tcp", 9099),
    ("udp", 51820),
    ("udp", 51821),
];

/// No ingress rule of `sgs` admits the whole internet.
pub fn verify_nothing_open_to_the_world(aws: &Aws, sgs: &[String]) {
    for g in groups(aws, sgs) {
        for p in g.ip_permissions() {
            assert!(
                p.ip_ranges()
                    .iter()
                    .all(|r| r.cidr_ip() != Some("0.0.0.0/0")),
                "{:?} admits 0.0.0.0/0: {p:?}",
                g.group_id()
            );
        }
    }
}

/// The private IP of the cluster node tagged `provision:id=<id>`.
pub fn node_private_ip(aws: &Aws, id: &str) -> String {
    aws.node_instances()
        .iter()
        .find(|i| ec2_tags(i.tags()).get("provision:id").map(String::as_str) == Some(id))
        .and_then(|i| i.private_ip_address())
        .unwrap_or_else(|| panic!("no node {id}"))
        .to_string()
}

/// `destroy --yes` leaves nothing of the env in the cloud.
pub fn destroy_leaves_nothing(world: &crate::harness::World) {
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot"])
        .ok();
    let left = world.aws.leftovers();
    assert!(left.is_empty(), "destroy left {left:?}");
}

/// Exactly one resource per logical id of every kind, and the expected counts.
pub fn verify_no_duplicates(aws: &Aws, nodes: usize, datastore: bool, load_balancer: bool) {
    verify_no_duplicates_dns(aws, nodes, datastore, load_balancer, false);
}

/// As [`verify_no_duplicates`]; with `private_zone` the env has exactly one private hosted
/// zone (named `ZONE`) holding the one `HOSTNAME` record, and the public zone none.
pub fn verify_no_duplicates_dns(
    aws: &Aws,
    nodes: usize,
    datastore: bool,
    load_balancer: bool,
    private_zone: bool,
) {
    let by_id = aws.instances_by_id();
    for (id, list) in &by_id {
        assert_eq!(
            list.len(),
            1,
            "{} instances for provision:id={id}",
            list.len()
        );
    }
    assert_eq!(
        aws.node_instances().len(),
        nodes,
        "nodes: {:?}",
        by_id.keys().collect::<Vec<_>>()
    );
    assert_eq!(aws.registry_instances().len(), 1, "registry hosts");
    assert_eq!(aws.vpcs().len(), 1, "VPCs");
    assert_eq!(aws.internet_gateways().len(), 1, "internet gateways");
    let mut ids = BTreeMap::<String, usize>::new();
    for s in aws.subnets() {
        *ids.entry(format!(
            "subnet {}",
            assert_owned("subnet", &ec2_tags(s.tags()))
        ))
        .or_default() += 1;
    }
    for g in aws.security_groups() {
        *ids.entry(format!("sg {}", assert_owned("sg", &ec2_tags(g.tags()))))
            .or_default() += 1;
    }
    for r in aws.route_tables() {
        *ids.entry(format!("rt {}", assert_owned("rt", &ec2_tags(r.tags()))))
            .or_default() += 1;
    }
    for k in aws.key_pairs() {
        *ids.entry(format!("key {}", assert_owned("key", &ec2_tags(k.tags()))))
            .or_default() += 1;
    }
    let dups: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated resources: {dups:?}");
    assert_eq!(
        aws.db_instances().len(),
        usize::from(datastore),
        "RDS instances"
    );
    assert_eq!(
        aws.load_balancers().len(),
        usize::from(load_balancer),
        "load balancers"
    );
    let tgs = aws.target_groups();
    let mut ports: Vec<i32> = tgs.iter().filter_map(|t| t.port()).collect();
    ports.sort_unstable();
    let len = ports.len();
    ports.dedup();
    assert_eq!(len, ports.len(), "duplicate target groups: {tgs:#?}");
    let public = aws.zone_id(ZONE);
    let zones = aws.block(aws.route53.list_hosted_zones().send()).unwrap();
    let private: Vec<String> = zones
        .hosted_zones()
        .iter()
        .filter(|z| z.config().is_some_and(|c| c.private_zone()))
        .map(|z| z.id().to_string())
        .collect();
    assert_eq!(
        private.len(),
        usize::from(private_zone),
        "private hosted zones: {zones:#?}"
    );
    let host_records = |zone: &str| {
        aws.records_named(zone, HOSTNAME)
            .into_iter()
            .filter(|r| matches!(r.r#type().as_str(), "A" | "CNAME"))
            .count()
    };
    if private_zone {
        assert_eq!(
            host_records(&private[0]),
            1,
            "records for {HOSTNAME} (private zone)"
        );
        assert_eq!(
            host_records(&public),
            0,
            "records for {HOSTNAME} (public zone)"
        );
    } else {
        assert_eq!(host_records(&public), 1, "records for {HOSTNAME}");
    }
    verify_no_duplicates_beyond_ec2(aws, datastore);
}

/// One of each logical id among the env's own volumes, secrets, VPC endpoints, IAM roles
/// and instance profiles (by their `provision:id` tag), one listener per port of each load
/// balancer, and one DB subnet group with a datastore (none without).
fn verify_no_duplicates_beyond_ec2(aws: &Aws, datastore: bool) {
    fn id_of<'a>(tags: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>) -> String {
        tags.into_iter()
            .find(|(k, _)| *k == Some("provision:id"))
            .and_then(|(_, v)| v)
            .unwrap_or("(no provision:id)")
            .to_string()
    }
    let mut ids = BTreeMap::<String, Vec<String>>::new();
    let mut add = |what: &str, id: String, cloud_id: &str| {
        ids.entry(format!("{what} {id}"))
            .or_default()
            .push(cloud_id.to_string());
    };
    for v in aws.volumes() {
        // Root volumes carry their instance's tags; the env's own volumes a kind.
        if v.tags().iter().any(|t| t.key() == Some("provision:kind")) {
            let id = id_of(v.tags().iter().map(|t| (t.key(), t.value())));
            add("volume", id, v.volume_id().unwrap_or_default());
        }
    }
    for e in aws.vpc_endpoints() {
        let id = id_of(e.tags().iter().map(|t| (t.key(), t.value())));
        add("vpc endpoint", id, e.vpc_endpoint_id().unwrap_or_default());
    }
    let secrets = aws.block(aws.secrets.list_secrets().send()).unwrap();
    for s in secrets.secret_list() {
        let tags: Vec<_> = s.tags().iter().map(|t| (t.key(), t.value())).collect();
        let ours = tags
            .iter()
            .any(|(k, v)| *k == Some("provision:env") && *v == Some(crate::harness::ENV));
        if ours && s.deleted_date().is_none() {
            add("secret", id_of(tags), s.name().unwrap_or_default());
        }
    }
    for role in aws.iam_roles() {
        let full = aws
            .block(aws.iam.get_role().role_name(role.role_name()).send())
            .unwrap();
        let tags = full.role().map(|r| r.tags()).unwrap_or_default();
        let id = id_of(tags.iter().map(|t| (Some(t.key()), Some(t.value()))));
        add("iam role", id, role.role_name());
    }
    for profile in aws.instance_profiles() {
        let name = profile.instance_profile_name();
        let full = aws
            .block(
                aws.iam
                    .get_instance_profile()
                    .instance_profile_name(name)
                    .send(),
            )
            .unwrap();
        let tags = full
            .instance_profile()
            .map(|p| p.tags())
            .unwrap_or_default();
        let id = id_of(tags.iter().map(|t| (Some(t.key()), Some(t.value()))));
        add("instance profile", id, name);
    }
    let dups: Vec<_> = ids.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(dups.is_empty(), "duplicated resources: {dups:?}");
    for lb in aws.load_balancers() {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let mut ports: Vec<i32> = aws.listeners(arn).iter().filter_map(|l| l.port()).collect();
        ports.sort_unstable();
        let len = ports.len();
        ports.dedup();
        assert_eq!(len, ports.len(), "two listeners on one port of {arn}");
    }
    assert_eq!(
        aws.db_subnet_groups().len(),
        usize::from(datastore),
        "DB subnet groups: {:?}",
        aws.db_subnet_groups()
    );
}
