//! The checks of `verify`: a [`Snapshot`] and the [`Expect`]ations of the config in, one
//! [`Check`] per thing proven (or broken) out, each naming its resource.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use super::{Expect, Instance, RouteTable, SecurityGroup, SgPeer, SgRule, Snapshot};
use crate::config::AccessMode;
use crate::model::Protocol;

/// How one check came out. `Note` is reported but does not fail `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub resource: String,
    pub outcome: Outcome,
    pub reason: String,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.outcome != Outcome::Fail
    }
}

struct Out(Vec<Check>);

impl Out {
    fn push(&mut self, name: &str, resource: &str, outcome: Outcome, reason: String) {
        self.0.push(Check {
            name: name.into(),
            resource: resource.into(),
            outcome,
            reason,
        });
    }
    fn judge(&mut self, name: &str, resource: &str, ok: bool, pass: String, fail: String) {
        if ok {
            self.push(name, resource, Outcome::Pass, pass);
        } else {
            self.push(name, resource, Outcome::Fail, fail);
        }
    }
}

/// Every check of `snap` against `expect`.
pub fn run(snap: &Snapshot, expect: &Expect) -> Vec<Check> {
    let mut out = Out(Vec::new());
    let Some(vpc) = &snap.vpc else {
        out.push(
            "vpc",
            "vpc",
            Outcome::Fail,
            "no VPC of this env was found".into(),
        );
        return out.0;
    };
    let Ok(vpc_cidr) = vpc.cidr.parse::<Ipv4Net>() else {
        out.push(
            "vpc",
            &vpc.id,
            Outcome::Fail,
            format!("unreadable VPC CIDR {}", vpc.cidr),
        );
        return out.0;
    };
    let v = View {
        snap,
        vpc_cidr,
        nodes: snap.instances.iter().filter(|i| is_node(i)).collect(),
    };
    if v.nodes.is_empty() {
        out.push(
            "nodes",
            &vpc.id,
            Outcome::Fail,
            "no cluster node of this env was found".into(),
        );
    }
    no_way_out(&v, &mut out);
    paths(&v, expect, &mut out);
    if expect.access == AccessMode::Ssm {
        systems_manager(&v, expect, &mut out);
    }
    front_door(&v, expect, &mut out);
    out.0
}

fn is_node(i: &Instance) -> bool {
    i.logical_id
        .as_deref()
        .is_some_and(|l| l.starts_with("node-"))
}

struct View<'a> {
    snap: &'a Snapshot,
    vpc_cidr: Ipv4Net,
    nodes: Vec<&'a Instance>,
}

impl View<'_> {
    fn node_subnets(&self) -> BTreeSet<&str> {
        self.nodes.iter().map(|n| n.subnet.as_str()).collect()
    }

    /// The table that routes `subnet`: its explicit association, else the VPC's main table.
    fn effective_table(&self, subnet: &str) -> Option<&RouteTable> {
        let tables = &self.snap.route_tables;
        tables
            .iter()
            .find(|t| t.subnets.iter().any(|s| s == subnet))
            .or_else(|| tables.iter().find(|t| t.main))
    }

    fn group(&self, id: &str) -> Option<&SecurityGroup> {
        self.snap.security_groups.iter().find(|g| g.id == id)
    }

    fn group_name(&self, id: &str) -> String {
        match self.group(id).and_then(|g| g.logical_id.as_deref()) {
            Some(l) => format!("{id} ({l})"),
            None => id.to_string(),
        }
    }

    fn rules<'b>(&'b self, groups: &'b [String], egress: bool) -> Vec<&'b SgRule> {
        groups
            .iter()
            .filter_map(|g| self.group(g))
            .flat_map(|g| if egress { &g.egress } else { &g.ingress })
            .collect()
    }

    fn by_logical(&self, id: &str) -> Option<&Instance> {
        self.snap
            .instances
            .iter()
            .find(|i| i.logical_id.as_deref() == Some(id))
    }

    fn cidr_inside_vpc(&self, cidr: &str) -> bool {
        cidr.parse::<Ipv4Net>()
            .is_ok_and(|c| self.vpc_cidr.contains(&c))
    }
}

/// One end of a connection, as security groups see it.
struct End<'a> {
    ip: Option<Ipv4Addr>,
    /// A range the end's address lies in, when its exact address is not known (an LB).
    nets: Vec<Ipv4Net>,
    groups: &'a [String],
}

impl<'a> End<'a> {
    fn instance(i: &'a Instance) -> Self {
        End {
            ip: i.private_ip.as_deref().and_then(|s| s.parse().ok()),
            nets: vec![],
            groups: &i.security_groups,
        }
    }
}

fn proto_matches(rule: &str, want: Protocol) -> bool {
    match (rule, want) {
        ("-1" | "all", _) => true,
        (_, Protocol::All) => false,
        ("tcp" | "6", Protocol::Tcp) | ("udp" | "17", Protocol::Udp) => true,
        _ => false,
    }
}

fn ports_cover(rule: &SgRule, from: u16, to: u16) -> bool {
    rule.protocol == "-1"
        || rule.from_port < 0
        || (rule.from_port <= i32::from(from) && i32::from(to) <= rule.to_port)
}

/// Whether `rule` lets `peer` through on `proto` `from..=to`.
fn rule_admits(rule: &SgRule, proto: Protocol, from: u16, to: u16, peer: &End) -> bool {
    if !proto_matches(&rule.protocol, proto) || !ports_cover(rule, from, to) {
        return false;
    }
    match &rule.peer {
        SgPeer::Group(g) => peer.groups.contains(g),
        SgPeer::Cidr(c) => match c.parse::<Ipv4Net>() {
            Ok(net) => {
                peer.ip.is_some_and(|ip| net.contains(&ip))
                    || (!peer.nets.is_empty() && peer.nets.iter().all(|n| net.contains(n)))
            }
            Err(_) => false,
        },
        SgPeer::PrefixList(_) => false,
    }
}

fn admits(rules: &[&SgRule], proto: Protocol, from: u16, to: u16, peer: &End) -> bool {
    rules.iter().any(|r| rule_admits(r, proto, from, to, peer))
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::All => "all",
    }
}

fn port_text(p: Protocol, from: u16, to: u16) -> String {
    if from == to {
        format!("{}/{from}", proto_name(p))
    } else {
        format!("{}/{from}-{to}", proto_name(p))
    }
}

fn no_way_out(v: &View, out: &mut Out) {
    // Routes.
    let mut seen = BTreeSet::new();
    for subnet in v.node_subnets() {
        let Some(table) = v.effective_table(subnet) else {
            out.push(
                "no-route-out",
                subnet,
                Outcome::Fail,
                "no route table (explicit or main) routes this node subnet".into(),
            );
            continue;
        };
        if !seen.insert(table.id.clone()) {
            continue;
        }
        let bad: Vec<String> = table
            .routes
            .iter()
            .filter(|r| r.target.leads_out() && !v.cidr_inside_vpc(&r.destination))
            .map(|r| format!("{} -> {}", r.destination, r.target_id))
            .collect();
        let how = if table.subnets.iter().any(|s| s == subnet) {
            "explicitly associated"
        } else {
            "the VPC's main table"
        };
        out.judge(
            "no-route-out",
            &table.id,
            bad.is_empty(),
            format!("routes node subnets ({how}); no route leaves the VPC"),
            format!(
                "routes node subnets ({how}) and has a route out of the VPC: {}",
                bad.join(", ")
            ),
        );
    }
    // Subnets.
    for subnet in v.node_subnets() {
        let map = v
            .snap
            .subnets
            .iter()
            .find(|s| s.id == subnet)
            .is_some_and(|s| s.map_public_ip);
        out.judge(
            "no-public-ip-on-launch",
            subnet,
            !map,
            "node subnet does not map public IPs on launch".into(),
            "node subnet maps a public IP to every instance launched in it".into(),
        );
    }
    // Nodes.
    for n in &v.nodes {
        let name = node_name(n);
        let eip = v.snap.addresses.iter().find(|a| {
            a.instance_id.as_deref() == Some(n.id.as_str())
                || a.network_interface_id
                    .as_ref()
                    .is_some_and(|eni| n.network_interfaces.contains(eni))
        });
        let (ok, reason) = match (&n.public_ip, eip) {
            (_, Some(a)) => (
                false,
                format!(
                    "has the Elastic IP {}{}",
                    a.public_ip,
                    a.allocation_id
                        .as_deref()
                        .map(|id| format!(" ({id})"))
                        .unwrap_or_default()
                ),
            ),
            (Some(ip), None) => (false, format!("has the public IP {ip}")),
            (None, None) => (true, "no public IP, no Elastic IP".into()),
        };
        out.push(
            "no-public-address",
            &name,
            if ok { Outcome::Pass } else { Outcome::Fail },
            reason,
        );
    }
    // Node security groups: egress only inside the VPC (or to VPC endpoints).
    let groups: BTreeSet<&str> = v
        .nodes
        .iter()
        .flat_map(|n| n.security_groups.iter().map(|s| s.as_str()))
        .collect();
    for g in groups {
        let Some(sg) = v.group(g) else {
            out.push(
                "egress-inside-vpc",
                g,
                Outcome::Fail,
                "security group of a node not found".into(),
            );
            continue;
        };
        let bad: Vec<String> = sg
            .egress
            .iter()
            .filter(|r| match &r.peer {
                SgPeer::Cidr(c) => !v.cidr_inside_vpc(c),
                SgPeer::Group(g) => v.group(g).is_none(),
                SgPeer::PrefixList(_) => false,
            })
            .map(|r| format!("{} {}", rule_ports(r), r.peer.text()))
            .collect();
        out.judge(
            "egress-inside-vpc",
            &v.group_name(g),
            bad.is_empty(),
            format!("node egress only to {}", v.vpc_cidr),
            format!("node egress leaves the VPC: {}", bad.join(", ")),
        );
    }
    // Network ACLs: reported when not the default allow-all.
    let subnets = v.node_subnets();
    for acl in &v.snap.network_acls {
        let applies = acl.subnets.iter().any(|s| subnets.contains(s.as_str()))
            || (acl.default && acl.subnets.is_empty());
        if !applies {
            continue;
        }
        let custom: Vec<String> = acl
            .entries
            .iter()
            .filter(|e| {
                !(e.rule_number == 32767
                    || (e.rule_number == 100
                        && e.allow
                        && e.protocol == "-1"
                        && (e.cidr == "0.0.0.0/0" || e.cidr == "::/0")))
            })
            .map(|e| {
                format!(
                    "#{} {} {} {}",
                    e.rule_number,
                    if e.egress { "out" } else { "in" },
                    if e.allow { "allow" } else { "deny" },
                    e.cidr
                )
            })
            .collect();
        if custom.is_empty() {
            out.push(
                "network-acl",
                &acl.id,
                Outcome::Pass,
                "default rules (security groups decide)".into(),
            );
        } else {
            out.push(
                "network-acl",
                &acl.id,
                Outcome::Note,
                format!(
                    "deviates from the default: {} (not judged; check it by hand)",
                    custom.join(", ")
                ),
            );
        }
    }
}

fn rule_ports(r: &SgRule) -> String {
    if r.protocol == "-1" {
        "all".into()
    } else if r.from_port == r.to_port {
        format!("{}/{}", r.protocol, r.from_port)
    } else {
        format!("{}/{}-{}", r.protocol, r.from_port, r.to_port)
    }
}

fn node_name(n: &Instance) -> String {
    match &n.logical_id {
        Some(l) => format!("{} ({l})", n.id),
        None => n.id.clone(),
    }
}

/// Whether `src` may send to `dst` on `proto` `from..=to`: egress of `src`'s groups and
/// ingress of `dst`'s groups. The reason names the group that is in the way.
fn path(v: &View, src: &End, dst: &End, proto: Protocol, from: u16, to: u16) -> Result<(), String> {
    if !admits(&v.rules(dst.groups, false), proto, from, to, src) {
        return Err(format!(
            "ingress of {} does not admit it",
            dst.groups
                .iter()
                .map(|g| v.group_name(g))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !admits(&v.rules(src.groups, true), proto, from, to, dst) {
        return Err(format!(
            "egress of {} does not allow it",
            src.groups
                .iter()
                .map(|g| v.group_name(g))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// A route for `ip` from `subnet` that stays in the VPC (the local route).
fn routed_locally(v: &View, subnet: &str, ip: Option<Ipv4Addr>) -> bool {
    let Some(ip) = ip else { return false };
    v.effective_table(subnet).is_some_and(|t| {
        t.routes.iter().any(|r| {
            r.target == super::TargetKind::Local
                && r.destination
                    .parse::<IpNet>()
                    .is_ok_and(|n| n.contains(&std::net::IpAddr::V4(ip)))
        })
    })
}

fn paths(v: &View, expect: &Expect, out: &mut Out) {
    // Nodes -> registry.
    if let Some(port) = expect.registry_port {
        match v.by_logical(crate::blueprint::ids::REGISTRY) {
            None => out.push(
                "nodes-to-registry",
                "registry",
                Outcome::Fail,
                "the registry host was not found".into(),
            ),
            Some(reg) => {
                let dst = End::instance(reg);
                let mut problems = Vec::new();
                for n in &v.nodes {
                    if let Err(e) = path(v, &End::instance(n), &dst, Protocol::Tcp, port, port) {
                        problems.push(format!("{}: {e}", node_name(n)));
                    } else if !routed_locally(v, &n.subnet, dst.ip) {
                        problems.push(format!(
                            "{}: no local route to the registry's address",
                            node_name(n)
                        ));
                    }
                }
                let mut groups: Vec<String> = reg.security_groups.clone();
                for n in &v.nodes {
                    groups.extend(n.security_groups.iter().cloned());
                }
                groups.sort();
                groups.dedup();
                let resource = groups
                    .iter()
                    .map(|g| v.group_name(g))
                    .collect::<Vec<_>>()
                    .join(", ");
                out.judge(
                    "nodes-to-registry",
                    &resource,
                    problems.is_empty(),
                    format!("every node reaches the registry on tcp/{port}"),
                    format!("tcp/{port}: {}", problems.join("; ")),
                );
            }
        }
    }
    // Nodes <-> nodes.
    for (proto, from, to) in &expect.node_ports {
        let mut problems = Vec::new();
        for a in &v.nodes {
            for b in &v.nodes {
                if a.id == b.id {
                    continue;
                }
                if let Err(e) = path(v, &End::instance(a), &End::instance(b), *proto, *from, *to) {
                    problems.push(format!("{} -> {}: {e}", node_name(a), node_name(b)));
                }
            }
        }
        let resource = node_groups_name(v);
        out.judge(
            "nodes-to-nodes",
            &resource,
            problems.is_empty(),
            format!(
                "nodes reach each other on {}",
                port_text(*proto, *from, *to)
            ),
            format!("{}: {}", port_text(*proto, *from, *to), problems.join("; ")),
        );
    }
    // LB -> nodes.
    if !expect.lb_ports.is_empty() {
        match &v.snap.load_balancer {
            None => out.push(
                "lb-to-nodes",
                "nlb",
                Outcome::Fail,
                "the load balancer was not found".into(),
            ),
            Some(lb) => {
                let nets = lb
                    .subnets
                    .iter()
                    .filter_map(|s| v.snap.subnets.iter().find(|x| &x.id == s))
                    .filter_map(|s| s.cidr.parse().ok())
                    .collect();
                let src = End {
                    ip: None,
                    nets,
                    groups: &lb.security_groups,
                };
                for port in &expect.lb_ports {
                    let problems: Vec<String> = v
                        .nodes
                        .iter()
                        .filter_map(|n| {
                            path(v, &src, &End::instance(n), Protocol::Tcp, *port, *port)
                                .err()
                                .map(|e| format!("{}: {e}", node_name(n)))
                        })
                        .collect();
                    out.judge(
                        "lb-to-nodes",
                        &node_groups_name(v),
                        problems.is_empty(),
                        format!("the load balancer reaches every node on tcp/{port}"),
                        format!("tcp/{port}: {}", problems.join("; ")),
                    );
                }
                // Admins -> LB.
                let ingress = v.rules(&lb.security_groups, false);
                for cidr in &expect.admin_cidrs {
                    let Ok(net) = cidr.parse::<Ipv4Net>() else {
                        continue;
                    };
                    let admin = End {
                        ip: None,
                        nets: vec![net],
                        groups: &[],
                    };
                    let missing: Vec<String> = expect
                        .lb_ports
                        .iter()
                        .filter(|p| !admits(&ingress, Protocol::Tcp, **p, **p, &admin))
                        .map(|p| format!("tcp/{p}"))
                        .collect();
                    // An internal load balancer has no address outside the VPC: the rule
                    // is all this proves, not that the admins reach it from where they are.
                    let pass = if lb.internal {
                        format!(
                            "{cidr} is admitted on every listener port by the load balancer's \
                             security group; the load balancer is internal, so this proves the \
                             rule only: from outside the VPC it is reached through the bastion \
                             (ssh_config's tunnel) or Systems Manager (ssm-port-forward.sh)"
                        )
                    } else {
                        format!("{cidr} reaches every listener port")
                    };
                    out.judge(
                        "admins-to-lb",
                        &lb.security_groups.join(", "),
                        missing.is_empty(),
                        pass,
                        format!("{cidr} is not admitted on {}", missing.join(", ")),
                    );
                }
            }
        }
    }
    // Admins -> bastion (ssm mode has none: no ssh anywhere, see `systems_manager`).
    if expect.registry_port.is_some() && expect.access == AccessMode::Bastion {
        if let Some(reg) = v.by_logical(crate::blueprint::ids::REGISTRY) {
            let ingress = v.rules(&reg.security_groups, false);
            for cidr in &expect.admin_cidrs {
                let Ok(net) = cidr.parse::<Ipv4Net>() else {
                    continue;
                };
                let admin = End {
                    ip: None,
                    nets: vec![net],
                    groups: &[],
                };
                out.judge(
                    "admins-to-bastion",
                    &reg.security_groups
                        .iter()
                        .map(|g| v.group_name(g))
                        .collect::<Vec<_>>()
                        .join(", "),
                    admits(&ingress, Protocol::Tcp, 22, 22, &admin),
                    format!("{cidr} reaches ssh on the bastion"),
                    format!("{cidr} is not admitted on tcp/22"),
                );
            }
        }
    }
    // Nodes -> datastore, and nothing else.
    if let Some(port) = expect.datastore_port {
        match &v.snap.database {
            None => out.push(
                "nodes-to-datastore",
                "datastore",
                Outcome::Fail,
                "the datastore was not found".into(),
            ),
            Some(db) => {
                let ingress = v.rules(&db.security_groups, false);
                let problems: Vec<String> = v
                    .nodes
                    .iter()
                    .filter_map(|n| {
                        let src = End::instance(n);
                        let dst_ok = admits(&ingress, Protocol::Tcp, db.port, db.port, &src);
                        let out_ok = v.rules(&n.security_groups, true).iter().any(|r| {
                            proto_matches(&r.protocol, Protocol::Tcp)
                                && ports_cover(r, db.port, db.port)
                                && match &r.peer {
                                    SgPeer::Cidr(c) => v.cidr_inside_vpc(c),
                                    SgPeer::Group(g) => db.security_groups.contains(g),
                                    SgPeer::PrefixList(_) => false,
                                }
                        });
                        match (dst_ok, out_ok) {
                            (true, true) => None,
                            (false, _) => Some(format!(
                                "{}: the datastore's groups do not admit it",
                                node_name(n)
                            )),
                            (true, false) => {
                                Some(format!("{}: node egress does not allow it", node_name(n)))
                            }
                        }
                    })
                    .collect();
                let resource = format!("{} ({})", db.id, db.security_groups.join(", "));
                out.judge(
                    "nodes-to-datastore",
                    &resource,
                    problems.is_empty(),
                    format!("every node reaches the datastore on tcp/{}", db.port),
                    problems.join("; "),
                );
                let node_groups: BTreeSet<&String> =
                    v.nodes.iter().flat_map(|n| &n.security_groups).collect();
                let strangers: Vec<String> = ingress
                    .iter()
                    .filter(|r| match &r.peer {
                        SgPeer::Group(g) => {
                            let only_the_port = r.protocol != "-1"
                                && proto_matches(&r.protocol, Protocol::Tcp)
                                && r.from_port == i32::from(port)
                                && r.to_port == i32::from(port);
                            !(node_groups.contains(g) && only_the_port)
                        }
                        _ => true,
                    })
                    .map(|r| format!("{} from {}", rule_ports(r), r.peer.text()))
                    .collect();
                out.judge(
                    "datastore-only-nodes",
                    &resource,
                    strangers.is_empty(),
                    format!("only the nodes' group is admitted, on tcp/{port} only"),
                    format!("admits more than the nodes: {}", strangers.join(", ")),
                );
            }
        }
    }
}

/// ssm mode: each Systems Manager endpoint exists as an interface endpoint with private
/// DNS and admits every machine on 443; every machine runs with an instance profile; no
/// security group of the env (or used by its machines and endpoints) admits port 22.
fn systems_manager(v: &View, expect: &Expect, out: &mut Out) {
    let registry = v.by_logical(crate::blueprint::ids::REGISTRY);
    let machines: Vec<&Instance> = v.nodes.iter().copied().chain(registry).collect();
    for service in &expect.ssm_services {
        let found = v
            .snap
            .vpc_endpoints
            .iter()
            .filter(|e| &e.service_name == service)
            .min_by_key(|e| e.endpoint_type != "interface" || !e.private_dns);
        let Some(e) = found else {
            out.push(
                "ssm-endpoint",
                service,
                Outcome::Fail,
                "no endpoint for this service in the VPC: the SSM agents cannot reach it".into(),
            );
            continue;
        };
        let resource = format!("{} ({service})", e.id);
        let mut problems = Vec::new();
        if e.endpoint_type != "interface" {
            problems.push(format!(
                "is a {} endpoint, not an interface one",
                e.endpoint_type
            ));
        }
        if !e.private_dns {
            problems.push(
                "private DNS is off: the service's name does not resolve to the endpoint".into(),
            );
        }
        let nets: Vec<Ipv4Net> = e
            .subnets
            .iter()
            .filter_map(|s| v.snap.subnets.iter().find(|x| &x.id == s))
            .filter_map(|s| s.cidr.parse().ok())
            .collect();
        if nets.is_empty() {
            problems.push("has no subnet of the VPC".into());
        }
        let dst = End {
            ip: None,
            nets,
            groups: &e.security_groups,
        };
        for m in &machines {
            if let Err(why) = path(v, &End::instance(m), &dst, Protocol::Tcp, 443, 443) {
                problems.push(format!("{}: {why}", node_name(m)));
            }
        }
        out.judge(
            "ssm-endpoint",
            &resource,
            problems.is_empty(),
            "interface endpoint, private DNS on, every machine reaches it on tcp/443".into(),
            problems.join("; "),
        );
    }
    for m in &machines {
        out.judge(
            "instance-profile",
            &node_name(m),
            m.instance_profile.is_some(),
            format!(
                "runs with {}",
                m.instance_profile.as_deref().unwrap_or_default()
            ),
            "runs without an instance profile: its SSM agent cannot register".into(),
        );
    }
    // Every group of the env, and every group its machines and endpoints use.
    let mut groups: BTreeSet<&str> = v
        .snap
        .security_groups
        .iter()
        .filter(|g| g.logical_id.is_some())
        .map(|g| g.id.as_str())
        .collect();
    groups.extend(
        v.snap
            .instances
            .iter()
            .flat_map(|i| &i.security_groups)
            .chain(v.snap.vpc_endpoints.iter().flat_map(|e| &e.security_groups))
            .map(String::as_str),
    );
    for g in groups {
        let Some(sg) = v.group(g) else { continue };
        let ssh: Vec<String> = sg
            .ingress
            .iter()
            .filter(|r| proto_matches(&r.protocol, Protocol::Tcp) && ports_cover(r, 22, 22))
            .map(|r| format!("{} from {}", rule_ports(r), r.peer.text()))
            .collect();
        out.judge(
            "no-ssh-ingress",
            &v.group_name(g),
            ssh.is_empty(),
            "no rule admits tcp/22".into(),
            format!("admits ssh: {}", ssh.join(", ")),
        );
    }
}

fn node_groups_name(v: &View) -> String {
    let groups: BTreeSet<&String> = v.nodes.iter().flat_map(|n| &n.security_groups).collect();
    groups
        .into_iter()
        .map(|g| v.group_name(g))
        .collect::<Vec<_>>()
        .join(", ")
}

fn norm(name: &str) -> String {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    n.strip_prefix("dualstack.")
        .map(str::to_string)
        .unwrap_or(n)
}

fn front_door(v: &View, expect: &Expect, out: &mut Out) {
    // DNS.
    let record = v.snap.record.as_ref();
    match (record, &v.snap.load_balancer, expect.lb_ports.is_empty()) {
        (None, _, _) => out.push(
            "dns-record",
            &expect.hostname,
            Outcome::Fail,
            "no Route53 record for the hostname".into(),
        ),
        (Some(r), Some(lb), false) => {
            let ok = r.values.iter().any(|x| norm(x) == norm(&lb.dns_name));
            out.judge(
                "dns-record",
                &expect.hostname,
                ok,
                format!(
                    "{} record resolves to this env's load balancer",
                    r.record_type
                ),
                format!(
                    "{} record points at {} instead of this env's load balancer {}",
                    r.record_type,
                    r.values.join(", "),
                    lb.dns_name
                ),
            );
        }
        (Some(r), None, false) => out.push(
            "dns-record",
            &expect.hostname,
            Outcome::Fail,
            format!(
                "{} record points at {} but this env's load balancer was not found",
                r.record_type,
                r.values.join(", ")
            ),
        ),
        (Some(r), _, true) => {
            let first = v.by_logical(&crate::blueprint::ids::node(1));
            let ok = first
                .and_then(|n| n.private_ip.as_ref())
                .is_some_and(|ip| r.values.contains(ip));
            out.judge(
                "dns-record",
                &expect.hostname,
                ok,
                "record resolves to the first node".into(),
                format!(
                    "record points at {} instead of the first node",
                    r.values.join(", ")
                ),
            );
        }
    }
    // Target groups.
    if expect.lb_ports.is_empty() {
        return;
    }
    let want: BTreeSet<&str> = v.nodes.iter().map(|n| n.id.as_str()).collect();
    for port in &expect.lb_ports {
        let listener = v.snap.listeners.iter().find(|l| l.port == *port);
        let Some(listener) = listener else {
            out.push(
                "target-group",
                &format!("listener {port}"),
                Outcome::Fail,
                format!("the load balancer has no listener on {port}"),
            );
            continue;
        };
        for tg_arn in &listener.target_groups {
            let Some(tg) = v.snap.target_groups.iter().find(|t| &t.arn == tg_arn) else {
                out.push(
                    "target-group",
                    tg_arn,
                    Outcome::Fail,
                    format!("listener {port} forwards to a target group that was not found"),
                );
                continue;
            };
            let have: BTreeSet<&str> = tg.targets.iter().map(|s| s.as_str()).collect();
            let missing: Vec<&str> = want.difference(&have).copied().collect();
            let strangers: Vec<&str> = have.difference(&want).copied().collect();
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("missing {}", missing.join(", ")));
            }
            if !strangers.is_empty() {
                why.push(format!("strangers {}", strangers.join(", ")));
            }
            out.judge(
                "target-group",
                &tg.name,
                why.is_empty(),
                format!("listener {port}: every node and no stranger"),
                format!("listener {port}: {}", why.join("; ")),
            );
        }
    }
}

#[cfg(test)]
mod tests;
