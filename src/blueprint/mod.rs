//! Config -> the desired resource graph.
//!
//! The graph is the same shape for every topology: a network (VPC, private subnets with no
//! route out, one edge subnet with an internet gateway), security groups, the cluster nodes,
//! the registry/bastion host, and the front door (NLB + Route53 record). The topologies
//! differ in node count, the ports open between nodes, the datastore (k3s only) and the
//! load balancer (optional for docker). Ports follow
//! `shared/reference/rancher-airgap-aws.md`, "Ports".

use ipnet::Ipv4Net;

use crate::config::{Config, RecordType, Registry, Topology};
use crate::engine::Desired;
use crate::model::*;
use crate::render::{self, NodeRole, RegistryAccess, RegistrySecrets};

/// Logical ids used by more than one module.
pub mod ids {
    pub const VPC: &str = "vpc";
    pub const IGW: &str = "igw";
    pub const SUBNET_EDGE: &str = "subnet-edge";
    pub const RT_PRIVATE: &str = "rt-private";
    pub const RT_EDGE: &str = "rt-edge";
    pub const SG_NODES: &str = "sg-nodes";
    pub const SG_BASTION: &str = "sg-registry";
    pub const SG_LB: &str = "sg-lb";
    pub const SG_DATASTORE: &str = "sg-datastore";
    pub const KEY_PAIR: &str = "key-pair";
    pub const REGISTRY: &str = "registry";
    pub const REGISTRY_DATA: &str = "registry-data";
    pub const DATASTORE_PASSWORD: &str = "datastore-password";
    pub const DB_SUBNETS: &str = "db-subnets";
    pub const DATASTORE: &str = "datastore";
    pub const NLB: &str = "nlb";
    pub const ZONE: &str = "zone";
    pub const RECORD: &str = "record";
    pub const RECORD_REGISTRY: &str = "record-registry";

    pub fn private_subnet(i: u32) -> String {
        format!("subnet-private-{i}")
    }
    /// Edge subnet of the `i`-th zone: `subnet-edge` for the first (the registry's home),
    /// `subnet-edge-2`, ... for the others (only an internet-facing NLB needs those).
    pub fn edge_subnet(i: u32) -> String {
        if i <= 1 {
            SUBNET_EDGE.to_string()
        } else {
            format!("{SUBNET_EDGE}-{i}")
        }
    }
    pub fn node(i: u32) -> String {
        format!("node-{i}")
    }
    pub fn target_group(port: u16) -> String {
        format!("tg-{port}")
    }
    pub fn listener(port: u16) -> String {
        format!("listener-{port}")
    }
}

/// The registry the nodes pull from, as the blueprint and the artifacts see it.
#[derive(Debug, Clone)]
pub struct RegistryPlan {
    /// DNS name of the registry (node mode: a record this env creates).
    pub host: String,
    /// `access.host_port` is the registry's `host:port`.
    pub access: RegistryAccess,
    /// Secrets of a registry this env runs (node mode).
    pub secrets: Option<RegistrySecrets>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlueprintError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(
        "network.vpc_cidr {cidr} is too small to hold {zones} private subnets and an edge subnet"
    )]
    Cidr { cidr: String, zones: u32 },
}

/// The DNS name of this env's registry host.
pub fn registry_host_name(cfg: &Config) -> String {
    crate::names::registry_record(&cfg.name, &cfg.dns.zone, &cfg.hostname)
}

/// `host:port` of the registry the nodes pull from; needs no secrets.
pub fn registry_host_port(cfg: &Config) -> String {
    match &cfg.registry {
        Registry::Node { port, .. } => format!("{}:{port}", registry_host_name(cfg)),
        Registry::External { url, .. } => url.clone(),
    }
}

/// Work out the registry: for node mode, load or create its secrets under `secrets_dir`.
pub fn registry_plan(
    cfg: &Config,
    secrets_dir: &std::path::Path,
) -> Result<RegistryPlan, BlueprintError> {
    registry_plan_renewing(cfg, secrets_dir, false)
}

/// [`registry_plan`]; with `renew_cert` the registry's server certificate is issued anew
/// (`apply --renew-registry-cert`), which replaces the registry host (its store is kept).
pub fn registry_plan_renewing(
    cfg: &Config,
    secrets_dir: &std::path::Path,
    renew_cert: bool,
) -> Result<RegistryPlan, BlueprintError> {
    match &cfg.registry {
        Registry::Node { .. } => {
            let host = registry_host_name(cfg);
            let secrets = render::ensure_registry_secrets_renewing(secrets_dir, &host, renew_cert)?;
            Ok(RegistryPlan {
                access: RegistryAccess {
                    host_port: registry_host_port(cfg),
                    username: secrets.username.clone(),
                    password: secrets.password.clone(),
                    ca_pem: Some(secrets.ca_cert_pem.clone()),
                },
                host,
                secrets: Some(secrets),
            })
        }
        Registry::External { url, ca_pem, .. } => Ok(RegistryPlan {
            host: url.split(':').next().unwrap_or(url).to_string(),
            access: RegistryAccess {
                host_port: url.clone(),
                username: String::new(),
                password: String::new(),
                ca_pem: ca_pem.clone(),
            },
            secrets: None,
        }),
    }
}

fn sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn tcp(port: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol: Protocol::Tcp,
        from_port: port,
        to_port: port,
        peer,
        description: description.to_string(),
    }
}

fn tcp_range(from: u16, to: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol: Protocol::Tcp,
        from_port: from,
        to_port: to,
        peer,
        description: description.to_string(),
    }
}

fn udp(port: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol: Protocol::Udp,
        from_port: port,
        to_port: port,
        peer,
        description: description.to_string(),
    }
}

fn all_to(cidr: &str, description: &str) -> Rule {
    Rule {
        protocol: Protocol::All,
        from_port: 0,
        to_port: 0,
        peer: Peer::Cidr(cidr.to_string()),
        description: description.to_string(),
    }
}

/// Subnet CIDRs: the VPC split in 16; private subnets take the first `zones` blocks, edge
/// subnets the last `edges` blocks, counting down (the first edge subnet is the last block).
fn subnet_cidrs(
    vpc: Ipv4Net,
    zones: u32,
    edges: u32,
) -> Result<(Vec<String>, Vec<String>), BlueprintError> {
    let err = || BlueprintError::Cidr {
        cidr: vpc.to_string(),
        zones,
    };
    let subnets: Vec<Ipv4Net> = vpc
        .subnets((vpc.prefix_len() + 4).min(28))
        .map_err(|_| err())?
        .collect();
    if subnets.len() < (zones + edges) as usize {
        return Err(err());
    }
    let private = subnets
        .iter()
        .take(zones as usize)
        .map(|s| s.to_string())
        .collect();
    let edge = subnets
        .iter()
        .rev()
        .take(edges as usize)
        .map(|s| s.to_string())
        .collect();
    Ok((private, edge))
}

/// Build the desired graph for `cfg`.
pub fn build(cfg: &Config, registry: &RegistryPlan) -> Result<Desired, BlueprintError> {
    use ids::*;
    let mut d = Desired::default();
    let vpc = LogicalId::new(VPC);
    let vpc_cidr = cfg.network.vpc_cidr.to_string();
    let admin: Vec<String> = cfg
        .network
        .admin_cidrs
        .iter()
        .map(|c| c.to_string())
        .collect();
    let lb = cfg.load_balancer.as_ref();
    let node_mode_registry = matches!(cfg.registry, Registry::Node { .. });

    // Network.
    d.insert(
        VPC,
        Spec::Vpc(VpcSpec {
            cidr: vpc_cidr.clone(),
        }),
    );
    d.insert(
        IGW,
        Spec::InternetGateway(InternetGatewaySpec { vpc: vpc.clone() }),
    );
    // An internet-facing NLB only sends traffic to targets in zones where it has a subnet:
    // it gets an edge subnet in every zone that holds a node.
    let internet_facing = lb.is_some_and(|lb| lb.scheme == Scheme::InternetFacing);
    let edge_count = if internet_facing {
        cfg.network.zones.min(cfg.nodes.count).max(1)
    } else {
        1
    };
    let (private_cidrs, edge_cidrs) =
        subnet_cidrs(cfg.network.vpc_cidr, cfg.network.zones, edge_count)?;
    // Every subnet's zone must offer the node type and the registry host's type, so that
    // private subnet N and edge subnet N share a zone whatever lands where.
    let mut zone_types = vec![cfg.nodes.instance_type.clone()];
    if let Registry::Node { instance_type, .. } = &cfg.registry {
        zone_types.push(instance_type.clone());
    }
    zone_types.sort();
    zone_types.dedup();
    let mut private = Vec::new();
    for (i, cidr) in private_cidrs.into_iter().enumerate() {
        let id = private_subnet(i as u32 + 1);
        d.insert(
            id.as_str(),
            Spec::Subnet(SubnetSpec {
                vpc: vpc.clone(),
                cidr,
                zone_index: i,
                map_public_ip: false,
                instance_types: zone_types.clone(),
            }),
        );
        private.push(LogicalId::new(id));
    }
    let mut edge = Vec::new();
    for (i, cidr) in edge_cidrs.into_iter().enumerate() {
        let id = edge_subnet(i as u32 + 1);
        d.insert(
            id.as_str(),
            Spec::Subnet(SubnetSpec {
                vpc: vpc.clone(),
                cidr,
                zone_index: i,
                map_public_ip: true,
                instance_types: zone_types.clone(),
            }),
        );
        edge.push(LogicalId::new(id));
    }
    d.insert(
        RT_PRIVATE,
        Spec::RouteTable(RouteTableSpec {
            vpc: vpc.clone(),
            subnets: private.clone(),
            internet_gateway: None,
        }),
    );
    d.insert(
        RT_EDGE,
        Spec::RouteTable(RouteTableSpec {
            vpc: vpc.clone(),
            subnets: edge.clone(),
            internet_gateway: Some(IGW.into()),
        }),
    );

    // Security groups.
    let ports = lb_ports(cfg);
    if lb.is_some() {
        let mut ingress = Vec::new();
        for p in &ports {
            for c in admin.iter().chain(std::iter::once(&vpc_cidr)) {
                ingress.push(tcp(
                    *p,
                    Peer::Cidr(c.clone()),
                    "clients to the load balancer",
                ));
            }
        }
        d.insert(
            SG_LB,
            Spec::SecurityGroup(SecurityGroupSpec {
                vpc: vpc.clone(),
                description: format!("{} load balancer", cfg.name),
                ingress,
                egress: vec![all_to(&vpc_cidr, "load balancer to the nodes")],
            }),
        );
    }
    let mut node_ingress = node_to_node_rules(cfg.topology);
    if lb.is_some() {
        for p in &ports {
            node_ingress.push(tcp(*p, Peer::Group(SG_LB.into()), "load balancer to nodes"));
        }
    } else {
        for p in [80u16, 443] {
            for c in admin.iter().chain(std::iter::once(&vpc_cidr)) {
                node_ingress.push(tcp(p, Peer::Cidr(c.clone()), "clients to Rancher"));
            }
        }
    }
    if node_mode_registry {
        node_ingress.push(tcp(
            22,
            Peer::Group(SG_BASTION.into()),
            "ssh from the bastion",
        ));
    }
    d.insert(
        SG_NODES,
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: vpc.clone(),
            description: format!(
                "{} cluster nodes (air-gapped: egress only inside the VPC)",
                cfg.name
            ),
            ingress: node_ingress,
            egress: vec![all_to(&vpc_cidr, "nodes reach only the VPC")],
        }),
    );
    if let Registry::Node { port, .. } = &cfg.registry {
        // From the VPC rather than from sg-nodes: sg-nodes already admits ssh from this
        // group, and two groups naming each other would be a dependency cycle.
        let mut ingress = vec![tcp(
            *port,
            Peer::Cidr(vpc_cidr.clone()),
            "nodes pull images",
        )];
        for c in &admin {
            ingress.push(tcp(22, Peer::Cidr(c.clone()), "admin ssh"));
            ingress.push(tcp(*port, Peer::Cidr(c.clone()), "admin pushes images"));
        }
        d.insert(
            SG_BASTION,
            Spec::SecurityGroup(SecurityGroupSpec {
                vpc: vpc.clone(),
                description: format!("{} registry and ssh bastion", cfg.name),
                ingress,
                egress: vec![all_to(
                    "0.0.0.0/0",
                    "registry host fetches packages and images",
                )],
            }),
        );
    }

    // Key pair.
    let key_pair = cfg.nodes.ssh_public_key_text.as_ref().map(|key| {
        d.insert(
            KEY_PAIR,
            Spec::KeyPair(KeyPairSpec {
                public_key: key.trim().to_string(),
            }),
        );
        LogicalId::new(KEY_PAIR)
    });

    // Nodes.
    let node_user_data =
        render::node_user_data(NodeRole::for_topology(cfg.topology), &registry.access)?;
    let mut nodes = Vec::new();
    for i in 1..=cfg.nodes.count {
        let id = node(i);
        d.insert(
            id.as_str(),
            Spec::Instance(InstanceSpec {
                role: format!("{}-node", cfg.topology.as_str()),
                subnet: private[((i - 1) as usize) % private.len()].clone(),
                security_groups: vec![SG_NODES.into()],
                ami: cfg.nodes.ami.clone(),
                instance_type: cfg.nodes.instance_type.clone(),
                root_volume_gb: cfg.nodes.root_volume_gb,
                volumes: vec![],
                after: vec![],
                public_ip: false,
                key_pair: key_pair.clone(),
                user_data_sha256: sha256(&node_user_data),
                user_data: node_user_data.clone(),
            }),
        );
        nodes.push(LogicalId::new(id));
    }

    // Registry host (also the ssh bastion).
    if let (
        Registry::Node {
            instance_type,
            volume_gb,
            port,
        },
        Some(secrets),
    ) = (&cfg.registry, &registry.secrets)
    {
        let user_data = render::registry_host_user_data(secrets, *port)?;
        // The image store is its own volume: replacing the host (a new AMI, port or
        // certificate) attaches the same volume to the new host.
        d.insert(
            REGISTRY_DATA,
            Spec::Volume(VolumeSpec {
                subnet: SUBNET_EDGE.into(),
                size_gb: *volume_gb,
            }),
        );
        d.insert(
            REGISTRY,
            Spec::Instance(InstanceSpec {
                role: "registry".into(),
                subnet: SUBNET_EDGE.into(),
                security_groups: vec![SG_BASTION.into()],
                ami: cfg.nodes.ami.clone(),
                instance_type: instance_type.clone(),
                root_volume_gb: 30,
                volumes: vec![REGISTRY_DATA.into()],
                // cloud-init installs Docker and pulls registry:2 at first boot: the route
                // to the internet must be there before the host starts.
                after: vec![RT_EDGE.into()],
                public_ip: true,
                key_pair: key_pair.clone(),
                user_data_sha256: sha256(&user_data),
                user_data,
            }),
        );
    }

    // Datastore (k3s).
    if let Some(ds) = &cfg.datastore {
        d.insert(
            SG_DATASTORE,
            Spec::SecurityGroup(SecurityGroupSpec {
                vpc: vpc.clone(),
                description: format!("{} datastore: MySQL from the nodes only", cfg.name),
                ingress: vec![tcp(3306, Peer::Group(SG_NODES.into()), "nodes to MySQL")],
                egress: vec![],
            }),
        );
        d.insert(
            DB_SUBNETS,
            Spec::DbSubnetGroup(DbSubnetGroupSpec {
                subnets: private.clone(),
            }),
        );
        // The master password: generated by the tool into a Secrets Manager secret of
        // this env. Not RDS-managed: RDS rotates those every 7 days, and K3s keeps the
        // password it was installed with.
        d.insert(
            DATASTORE_PASSWORD,
            Spec::Secret(SecretSpec {
                description: format!("{} datastore master password (K3s endpoint)", cfg.name),
            }),
        );
        d.insert(
            DATASTORE,
            Spec::Database(DatabaseSpec {
                subnet_group: DB_SUBNETS.into(),
                security_group: SG_DATASTORE.into(),
                engine_version: ds.engine_version.clone(),
                instance_class: ds.instance_class.clone(),
                storage_gb: ds.storage_gb,
                database: ds.database.clone(),
                username: ds.username.clone(),
                backup_retention_days: ds.backup_retention_days,
                password: Some(DATASTORE_PASSWORD.into()),
            }),
        );
    }

    // Load balancer.
    if let Some(lb) = lb {
        d.insert(
            NLB,
            Spec::LoadBalancer(LoadBalancerSpec {
                scheme: lb.scheme,
                subnets: match lb.scheme {
                    Scheme::Internal => private.clone(),
                    Scheme::InternetFacing => edge.clone(),
                },
                security_group: SG_LB.into(),
                cross_zone: true,
            }),
        );
        for port in &ports {
            let tg = target_group(*port);
            d.insert(
                tg.as_str(),
                Spec::TargetGroup(TargetGroupSpec {
                    name: crate::names::target_group(&cfg.name, *port),
                    vpc: vpc.clone(),
                    port: *port,
                    // Rancher's NLB guide: the 443 group is checked on port 80.
                    health_check_port: (*port == 443).then_some(80),
                    healthy_threshold: 3,
                    unhealthy_threshold: 3,
                    interval_seconds: 10,
                    timeout_seconds: 6,
                    // Off: nodes reach the LB themselves (kubeconfig, agents), and an NLB
                    // with client-IP preservation drops a connection that lands on its
                    // own source.
                    preserve_client_ip: false,
                    targets: nodes.clone(),
                }),
            );
            d.insert(
                listener(*port).as_str(),
                Spec::Listener(ListenerSpec {
                    load_balancer: NLB.into(),
                    port: *port,
                    target_group: tg.into(),
                }),
            );
        }
    }

    // DNS.
    let zone = if cfg.dns.private_zone {
        d.insert(
            ZONE,
            Spec::HostedZone(HostedZoneSpec {
                name: cfg.dns.zone.trim_end_matches('.').to_string(),
                vpc: vpc.clone(),
            }),
        );
        ZoneRef::Managed(ZONE.into())
    } else {
        ZoneRef::Existing(cfg.dns.zone.clone())
    };
    let target = match (lb, cfg.dns.record_type) {
        (Some(_), RecordType::Alias) => RecordTarget::AliasLoadBalancer(NLB.into()),
        (Some(_), RecordType::Cname) => RecordTarget::CnameLoadBalancer(NLB.into()),
        (None, _) => RecordTarget::InstancePrivateIp(nodes[0].clone()),
    };
    d.insert(
        RECORD,
        Spec::DnsRecord(DnsRecordSpec {
            zone: zone.clone(),
            name: cfg.hostname.clone(),
            target,
            ttl: cfg.dns.ttl,
        }),
    );
    if node_mode_registry {
        d.insert(
            RECORD_REGISTRY,
            Spec::DnsRecord(DnsRecordSpec {
                zone,
                name: registry.host.clone(),
                target: RecordTarget::InstancePrivateIp(REGISTRY.into()),
                ttl: cfg.dns.ttl,
            }),
        );
    }
    Ok(d)
}

/// Ports the load balancer forwards.
fn lb_ports(cfg: &Config) -> Vec<u16> {
    let mut ports = vec![80, 443];
    if cfg.load_balancer.as_ref().is_some_and(|lb| lb.kube_api) {
        ports.push(6443);
    }
    ports
}

/// Traffic the nodes of a topology need between each other.
fn node_to_node_rules(topology: Topology) -> Vec<Rule> {
    let me = || Peer::Itself;
    match topology {
        Topology::K3s => vec![
            tcp(443, me(), "rancher between nodes"),
            tcp(6443, me(), "k3s api between servers"),
            udp(8472, me(), "flannel vxlan (nodes only)"),
            tcp(10250, me(), "kubelet"),
        ],
        Topology::Rke => vec![
            tcp(443, me(), "rancher between nodes"),
            tcp_range(2379, 2380, me(), "etcd"),
            tcp(6443, me(), "kubernetes api"),
            udp(8472, me(), "canal vxlan (nodes only)"),
            tcp(9099, me(), "canal probes"),
            tcp(10250, me(), "kubelet"),
            tcp(10254, me(), "ingress probes"),
            tcp(22, me(), "rke cli over ssh"),
        ],
        Topology::Docker => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn cfg(extra: &str, topology: &str) -> Config {
        let text = format!(
            "name = \"lab\"\nregion = \"us-east-1\"\ntopology = \"{topology}\"\nhostname = \"rancher.lab.example.com\"\n\
             [nodes]\nami = \"ami-0123456789abcdef0\"\n[dns]\nzone = \"lab.example.com\"\n{extra}"
        );
        crate::config::parse_str(&text, std::path::Path::new("provision.toml")).unwrap()
    }

    fn build_for(c: &Config) -> Desired {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry_plan(c, &dir.path().join("lab/secrets")).unwrap();
        build(c, &reg).unwrap()
    }

    fn ids(d: &Desired) -> Vec<String> {
        d.resources.keys().map(|k| k.to_string()).collect()
    }

    #[test]
    fn k3s_has_two_nodes_datastore_lb_and_registry() {
        let d = build_for(&cfg("", "k3s"));
        let ids = ids(&d);
        for want in [
            "vpc",
            "igw",
            "subnet-private-1",
            "subnet-private-2",
            "subnet-edge",
            "rt-private",
            "rt-edge",
            "sg-nodes",
            "sg-registry",
            "sg-lb",
            "sg-datastore",
            "node-1",
            "node-2",
            "registry",
            "db-subnets",
            "datastore",
            "nlb",
            "tg-80",
            "tg-443",
            "tg-6443",
            "listener-80",
            "listener-443",
            "listener-6443",
            "record",
            "record-registry",
        ] {
            assert!(ids.contains(&want.to_string()), "missing {want}: {ids:?}");
        }
        assert!(!ids.contains(&"node-3".to_string()));
        d.order().expect("acyclic and closed");
    }

    #[test]
    fn private_route_table_has_no_internet_route_and_nodes_no_public_ip() {
        let d = build_for(&cfg("", "k3s"));
        let Spec::RouteTable(rt) = &d.resources[&LogicalId::new("rt-private")] else {
            panic!()
        };
        assert!(rt.internet_gateway.is_none());
        for i in 1..=2 {
            let Spec::Instance(n) = &d.resources[&LogicalId::new(format!("node-{i}"))] else {
                panic!()
            };
            assert!(!n.public_ip);
            assert!(n.subnet.as_str().starts_with("subnet-private-"));
        }
        let Spec::SecurityGroup(sg) = &d.resources[&LogicalId::new("sg-nodes")] else {
            panic!()
        };
        assert!(
            sg.egress
                .iter()
                .all(|r| r.peer == Peer::Cidr("10.42.0.0/16".into())),
            "{:?}",
            sg.egress
        );
    }

    #[test]
    fn rke_has_three_nodes_and_etcd_ports_but_no_datastore() {
        let d = build_for(&cfg("", "rke"));
        let ids = ids(&d);
        assert!(ids.contains(&"node-3".to_string()));
        assert!(!ids.contains(&"datastore".to_string()));
        let Spec::SecurityGroup(sg) = &d.resources[&LogicalId::new("sg-nodes")] else {
            panic!()
        };
        assert!(sg
            .ingress
            .iter()
            .any(|r| r.from_port == 2379 && r.to_port == 2380));
    }

    #[test]
    fn docker_without_lb_points_record_at_the_node() {
        let d = build_for(&cfg("[load_balancer]\nenabled = false\n", "docker"));
        assert!(!ids(&d).contains(&"nlb".to_string()));
        let Spec::DnsRecord(r) = &d.resources[&LogicalId::new("record")] else {
            panic!()
        };
        assert_eq!(r.target, RecordTarget::InstancePrivateIp("node-1".into()));
    }

    #[test]
    fn registry_host_boots_after_its_route_and_keeps_its_store_on_a_volume() {
        let d = build_for(&cfg("[registry]\nvolume_gb = 300\n", "k3s"));
        let host_spec = &d.resources[&LogicalId::new(ids::REGISTRY)];
        let Spec::Instance(host) = host_spec else {
            panic!()
        };
        assert!(host_spec
            .depends_on()
            .contains(&LogicalId::new(ids::RT_EDGE)));
        assert_eq!(host.volumes, vec![LogicalId::new(ids::REGISTRY_DATA)]);
        let Spec::Volume(v) = &d.resources[&LogicalId::new(ids::REGISTRY_DATA)] else {
            panic!()
        };
        assert_eq!(v.size_gb, 300);
        assert_eq!(
            v.subnet,
            LogicalId::new(ids::SUBNET_EDGE),
            "same zone as the host"
        );
        // An ordering-only link: replacing the route table does not touch the host.
        assert!(host_spec
            .refs()
            .contains(&(LogicalId::new(ids::RT_EDGE), RefMode::After)));
    }

    #[test]
    fn datastore_password_is_a_secret_of_the_env() {
        let d = build_for(&cfg("", "k3s"));
        let Spec::Database(db) = &d.resources[&LogicalId::new(ids::DATASTORE)] else {
            panic!()
        };
        assert_eq!(db.password, Some(LogicalId::new(ids::DATASTORE_PASSWORD)));
        assert!(matches!(
            d.resources[&LogicalId::new(ids::DATASTORE_PASSWORD)],
            Spec::Secret(_)
        ));
    }

    #[test]
    fn internet_facing_lb_has_a_subnet_in_every_zone_with_a_node() {
        let d = build_for(&cfg(
            "[network]\nzones = 3\n[load_balancer]\nscheme = \"internet-facing\"\n",
            "rke",
        ));
        let Spec::LoadBalancer(lb) = &d.resources[&LogicalId::new(ids::NLB)] else {
            panic!()
        };
        let zones = |refs: &[LogicalId]| -> BTreeSet<usize> {
            refs.iter()
                .map(|r| match &d.resources[r] {
                    Spec::Subnet(s) => s.zone_index,
                    _ => panic!(),
                })
                .collect()
        };
        let node_subnets: Vec<LogicalId> = d
            .resources
            .values()
            .filter_map(|s| match s {
                Spec::Instance(i) if i.is_cluster_node() => Some(i.subnet.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(zones(&lb.subnets), zones(&node_subnets));
        assert_eq!(lb.subnets.len(), 3);
        // Every edge subnet routes to the internet gateway.
        let Spec::RouteTable(rt) = &d.resources[&LogicalId::new(ids::RT_EDGE)] else {
            panic!()
        };
        assert_eq!(rt.subnets, lb.subnets);
        // Internal: private subnets, one edge subnet for the registry.
        let d = build_for(&cfg("[network]\nzones = 3\n", "rke"));
        assert!(!d.resources.contains_key(&LogicalId::new("subnet-edge-2")));
    }

    #[test]
    fn target_groups_follow_the_nlb_guide() {
        let d = build_for(&cfg("", "k3s"));
        let Spec::TargetGroup(tg) = &d.resources[&LogicalId::new("tg-443")] else {
            panic!()
        };
        assert_eq!(
            (
                tg.health_check_port,
                tg.healthy_threshold,
                tg.unhealthy_threshold,
                tg.interval_seconds
            ),
            (Some(80), 3, 3, 10)
        );
        assert!(tg.name.len() <= 32);
        assert_eq!(tg.targets.len(), 2);
        let Spec::TargetGroup(tg) = &d.resources[&LogicalId::new("tg-80")] else {
            panic!()
        };
        assert_eq!(tg.health_check_port, None);
        assert!(
            !tg.preserve_client_ip,
            "an internal NLB does not hairpin with it on"
        );
    }

    #[test]
    fn external_registry_has_no_registry_host() {
        let d = build_for(&cfg(
            "[registry]\nmode = \"external\"\nurl = \"registry.corp.example:5000\"\n",
            "k3s",
        ));
        let ids = ids(&d);
        assert!(!ids.iter().any(|i| i.contains("registry")), "{ids:?}");
    }

    #[test]
    fn user_data_is_hashed_and_stable() {
        let c = cfg("", "k3s");
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("lab/secrets");
        let a = build(&c, &registry_plan(&c, &secrets).unwrap()).unwrap();
        let b = build(&c, &registry_plan(&c, &secrets).unwrap()).unwrap();
        assert_eq!(a.digest(), b.digest(), "same secrets, same user-data");
    }

    #[test]
    fn subnets_are_split_from_the_vpc() {
        let (p, e) = subnet_cidrs("10.42.0.0/16".parse().unwrap(), 3, 1).unwrap();
        assert_eq!(p, vec!["10.42.0.0/20", "10.42.16.0/20", "10.42.32.0/20"]);
        assert_eq!(e, vec!["10.42.240.0/20"]);
    }
}
