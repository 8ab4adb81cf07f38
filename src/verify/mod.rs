//! `provision verify`: prove the air gap from the live cloud. The AWS side reads a
//! [`Snapshot`] (plain data, no SDK types; `cloud::aws::snapshot`), [`checks`] judges it
//! against what the config asks for ([`Expect`]). Everything here is pure so it unit-tests
//! without an emulator.

use serde::Serialize;

use crate::config::{AccessMode, Config};
use crate::engine::Desired;
use crate::model::{Peer, Protocol, Spec};

pub mod checks;

pub use checks::{run, Check, Outcome};

/// What `snapshot` needs to find the env's resources.
#[derive(Debug, Clone)]
pub struct SnapshotQuery {
    pub env: String,
    pub hostname: String,
    pub zone: String,
    pub private_zone: bool,
}

/// The live network of one env, as plain data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub vpc: Option<Vpc>,
    pub subnets: Vec<Subnet>,
    pub route_tables: Vec<RouteTable>,
    pub instances: Vec<Instance>,
    pub security_groups: Vec<SecurityGroup>,
    pub network_acls: Vec<NetworkAcl>,
    pub addresses: Vec<Address>,
    pub load_balancer: Option<LoadBalancer>,
    pub listeners: Vec<Listener>,
    pub target_groups: Vec<TargetGroup>,
    /// The Route53 record of the hostname, when there is one.
    pub record: Option<Record>,
    pub database: Option<Database>,
    /// The VPC's endpoints that are not deleted (ssm mode: Systems Manager's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpc_endpoints: Vec<VpcEndpoint>,
}

/// A VPC endpoint, interface or gateway.
#[derive(Debug, Clone, Serialize)]
pub struct VpcEndpoint {
    pub id: String,
    /// `com.amazonaws.us-east-1.ssm`.
    pub service_name: String,
    /// `interface` or `gateway` (lower case).
    pub endpoint_type: String,
    /// `available`, `pending`, ... (lower case).
    pub state: String,
    pub private_dns: bool,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subnet {
    pub id: String,
    pub cidr: String,
    pub az: String,
    pub map_public_ip: bool,
    pub logical_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteTable {
    pub id: String,
    pub main: bool,
    /// Subnets explicitly associated.
    pub subnets: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// An IPv4 or IPv6 CIDR, or a prefix list id.
    pub destination: String,
    pub target: TargetKind,
    pub target_id: String,
}

/// What a route sends traffic to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Local,
    InternetGateway,
    EgressOnlyGateway,
    NatGateway,
    TransitGateway,
    Peering,
    VirtualPrivateGateway,
    VpcEndpoint,
    /// A network interface or instance (a NAT instance, an appliance).
    Interface,
    Other,
}

impl TargetKind {
    /// Whether traffic sent there can leave the VPC's private address space. Anything
    /// but the local route and a VPC endpoint counts: a route to an interface or instance
    /// (a NAT instance, an appliance) or to an unknown target is a way out until proven
    /// otherwise.
    pub fn leads_out(self) -> bool {
        !matches!(self, TargetKind::Local | TargetKind::VpcEndpoint)
    }

    /// The kind of a route target from its id's prefix (`igw-`, `nat-`, ...).
    pub fn from_id(id: &str) -> Self {
        match id.split('-').next().unwrap_or("") {
            "local" => TargetKind::Local,
            "igw" => TargetKind::InternetGateway,
            "eigw" => TargetKind::EgressOnlyGateway,
            "nat" => TargetKind::NatGateway,
            "tgw" => TargetKind::TransitGateway,
            "pcx" => TargetKind::Peering,
            "vgw" => TargetKind::VirtualPrivateGateway,
            "vpce" => TargetKind::VpcEndpoint,
            "eni" | "i" => TargetKind::Interface,
            _ => TargetKind::Other,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub logical_id: Option<String>,
    pub subnet: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub security_groups: Vec<String>,
    /// Its network interfaces (an Elastic IP may be associated with one).
    pub network_interfaces: Vec<String>,
    /// The ARN of the IAM instance profile it runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub logical_id: Option<String>,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
}

/// One permission with one peer (AWS permissions with several peers are split).
#[derive(Debug, Clone, Serialize)]
pub struct SgRule {
    /// `tcp`, `udp`, `icmp` or `-1` (everything).
    pub protocol: String,
    /// -1 (or absent in AWS) for all ports.
    pub from_port: i32,
    pub to_port: i32,
    pub peer: SgPeer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SgPeer {
    Cidr(String),
    Group(String),
    PrefixList(String),
}

impl SgPeer {
    /// The CIDR, group id or prefix list id, for messages.
    pub fn text(&self) -> &str {
        match self {
            SgPeer::Cidr(c) | SgPeer::Group(c) | SgPeer::PrefixList(c) => c,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkAcl {
    pub id: String,
    pub default: bool,
    pub subnets: Vec<String>,
    pub entries: Vec<AclEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AclEntry {
    pub rule_number: i32,
    pub egress: bool,
    pub protocol: String,
    pub cidr: String,
    pub allow: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Address {
    pub public_ip: String,
    pub allocation_id: Option<String>,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub private_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub dns_name: String,
    pub security_groups: Vec<String>,
    pub subnets: Vec<String>,
    /// `internal` scheme: reachable only from inside the VPC (and what is peered to it).
    #[serde(default)]
    pub internal: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    pub arn: String,
    pub port: u16,
    pub target_groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub port: u16,
    /// Registered target ids (instance ids).
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub name: String,
    pub record_type: String,
    /// Alias DNS name, CNAME value or A values.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub id: String,
    pub port: u16,
    pub security_groups: Vec<String>,
}

/// What the config asks of the network: the paths the install needs.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub hostname: String,
    /// Protocol and port range the nodes need between each other.
    pub node_ports: Vec<(Protocol, u16, u16)>,
    /// Ports the load balancer forwards (empty without a load balancer).
    pub lb_ports: Vec<u16>,
    /// The registry port (node mode: this env's registry host).
    pub registry_port: Option<u16>,
    /// The datastore port (k3s with RDS).
    pub datastore_port: Option<u16>,
    pub admin_cidrs: Vec<String>,
    /// How operators reach the machines: the bastion's ssh, or Systems Manager.
    pub access: AccessMode,
    /// ssm mode: the services that need an interface endpoint (full names).
    pub ssm_services: Vec<String>,
}

impl Expect {
    /// The expectations of `cfg`, taken from its desired graph (the config's intent, not
    /// the state's idea of the cloud).
    pub fn new(cfg: &Config, desired: &Desired) -> Self {
        let mut e = Expect {
            hostname: cfg.hostname.clone(),
            registry_port: cfg.registry.port(),
            admin_cidrs: cfg
                .network
                .admin_cidrs
                .iter()
                .map(|c| c.to_string())
                .collect(),
            access: cfg.access,
            ..Default::default()
        };
        for (id, spec) in &desired.resources {
            match spec {
                Spec::SecurityGroup(sg) if id.as_str() == crate::blueprint::ids::SG_NODES => {
                    for r in &sg.ingress {
                        if r.peer == Peer::Itself {
                            e.node_ports.push((r.protocol, r.from_port, r.to_port));
                        }
                    }
                }
                Spec::Listener(l) => e.lb_ports.push(l.port),
                Spec::Database(db) => e.datastore_port = Some(db.engine.port()),
                Spec::VpcEndpoint(v) => e.ssm_services.push(v.service_name.clone()),
                _ => {}
            }
        }
        e.lb_ports.sort();
        e.ssm_services.sort();
        e
    }
}
