//! Config -> the desired resource graph.
//!
//! The graph is the same shape for every topology: a network (VPC, private subnets with no
//! route out, one edge subnet with an internet gateway; `network.rs`), security groups, the
//! cluster nodes, the registry/bastion host (`registry.rs`), and the front door (NLB +
//! Route53 records; `front_door.rs`). What a topology adds — the ports between its nodes,
//! the ports its load balancer forwards, resources only it has (the k3s datastore) — lives
//! in its own file (`k3s.rs`, `rke.rs`, `rke2.rs`, `docker.rs`): adding a topology is adding a file
//! and a line in [`topology`]. Ports follow `shared/reference/rancher-airgap-aws.md`,
//! "Ports".

use crate::config::{AccessMode, Config, Topology};
use crate::engine::Desired;
use crate::model::*;
use crate::render::{self, NodeRole};

mod access;
mod docker;
mod front_door;
mod k3s;
mod network;
mod registry;
mod rke;
mod rke2;
mod shared_secrets;

pub use access::{managed_policy_arn, partition, SSM_POLICY};
pub use registry::{
    registry_host_name, registry_host_port, registry_plan, registry_plan_renewing, RegistryPlan,
};
pub use shared_secrets::{add_shared_secrets, shared_secrets_spec};

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
    /// The env's generated secrets (registry CA and password, cluster token) in Secrets
    /// Manager, with the S3 state backend.
    pub const SHARED_SECRETS: &str = "shared-secrets";
    pub const DB_SUBNETS: &str = "db-subnets";
    pub const DATASTORE: &str = "datastore";
    pub const NLB: &str = "nlb";
    pub const ZONE: &str = "zone";
    pub const RECORD: &str = "record";
    pub const RECORD_REGISTRY: &str = "record-registry";
    /// `[access] mode = "ssm"`: the endpoints' security group, the role and profile.
    pub const SG_ENDPOINTS: &str = "sg-endpoints";
    pub const SSM_ROLE: &str = "ssm-role";
    pub const SSM_PROFILE: &str = "ssm-profile";
    /// The services Session Manager needs an interface endpoint for, without internet.
    pub const SSM_SERVICES: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

    /// The interface endpoint of `service`: `vpce-ssm`, ...
    pub fn endpoint(service: &str) -> String {
        format!("vpce-{service}")
    }

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

#[derive(Debug, thiserror::Error)]
pub enum BlueprintError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(
        "network.vpc_cidr {cidr} is too small to hold {zones} private subnets and an edge subnet"
    )]
    Cidr { cidr: String, zones: u32 },
}

pub(super) fn sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub(super) fn tcp(port: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol: Protocol::Tcp,
        from_port: port,
        to_port: port,
        peer,
        description: description.to_string(),
    }
}

pub(super) fn tcp_range(from: u16, to: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol: Protocol::Tcp,
        from_port: from,
        to_port: to,
        peer,
        description: description.to_string(),
    }
}

pub(super) fn udp(port: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol: Protocol::Udp,
        from_port: port,
        to_port: port,
        peer,
        description: description.to_string(),
    }
}

pub(super) fn udp_range(from: u16, to: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol: Protocol::Udp,
        from_port: from,
        to_port: to,
        peer,
        description: description.to_string(),
    }
}

pub(super) fn all_to(cidr: &str, description: &str) -> Rule {
    Rule {
        protocol: Protocol::All,
        from_port: 0,
        to_port: 0,
        peer: Peer::Cidr(cidr.to_string()),
        description: description.to_string(),
    }
}

/// `Peer::Itself`: the rule admits the group's own members.
pub(super) fn me() -> Peer {
    Peer::Itself
}

/// What one topology adds to the shared network, registry and front door.
pub(super) trait TopologyBlueprint {
    /// Traffic the nodes need between each other.
    fn node_rules(&self, cfg: &Config) -> Vec<Rule>;

    /// Ports the load balancer forwards.
    fn lb_ports(&self, cfg: &Config) -> Vec<u16> {
        front_door::default_lb_ports(cfg)
    }

    /// Resources only this topology has.
    fn add_own(&self, _cfg: &Config, _shared: &Shared, _d: &mut Desired) {}
}

/// The file that describes `topology`.
fn topology(topology: Topology) -> &'static dyn TopologyBlueprint {
    match topology {
        Topology::K3s => &k3s::K3s,
        Topology::Rke => &rke::Rke,
        Topology::Docker => &docker::Docker,
        Topology::Rke2 => &rke2::Rke2,
    }
}

/// What every part of the graph needs to know about the network.
pub(super) struct Shared {
    pub vpc: LogicalId,
    pub vpc_cidr: String,
    /// `network.admin_cidrs`, as text.
    pub admin: Vec<String>,
    pub private: Vec<LogicalId>,
    pub edge: Vec<LogicalId>,
}

/// The KMS key of the env's Secrets Manager secrets: `[state] kms_key_id` (S3 backend).
pub(super) fn secrets_kms_key(cfg: &Config) -> Option<String> {
    match &cfg.state {
        crate::config::StateBackend::S3(s3) => s3.kms_key_id.clone(),
        crate::config::StateBackend::Local => None,
    }
}

/// Build the desired graph for `cfg`.
pub fn build(cfg: &Config, registry: &RegistryPlan) -> Result<Desired, BlueprintError> {
    use ids::*;
    let mut d = Desired::default();
    let own = topology(cfg.topology);

    let (private, edge) = network::build(cfg, &mut d)?;
    let shared = Shared {
        vpc: LogicalId::new(VPC),
        vpc_cidr: cfg.network.vpc_cidr.to_string(),
        admin: cfg
            .network
            .admin_cidrs
            .iter()
            .map(|c| c.to_string())
            .collect(),
        private,
        edge,
    };
    let node_mode_registry = matches!(cfg.registry, crate::config::Registry::Node { .. });

    // Security groups.
    let ports = own.lb_ports(cfg);
    if cfg.load_balancer.is_some() {
        front_door::security_group(cfg, &shared, &ports, &mut d);
    }
    let mut node_ingress = own.node_rules(cfg);
    if cfg.load_balancer.is_some() {
        for p in &ports {
            node_ingress.push(tcp(*p, Peer::Group(SG_LB.into()), "load balancer to nodes"));
        }
    } else {
        for p in [80u16, 443] {
            for c in shared.admin.iter().chain(std::iter::once(&shared.vpc_cidr)) {
                node_ingress.push(tcp(p, Peer::Cidr(c.clone()), "clients to Rancher"));
            }
        }
    }
    if node_mode_registry && cfg.access == AccessMode::Bastion {
        node_ingress.push(tcp(
            22,
            Peer::Group(SG_BASTION.into()),
            "ssh from the bastion",
        ));
    }
    d.insert(
        SG_NODES,
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: shared.vpc.clone(),
            description: format!(
                "{} cluster nodes (air-gapped: egress only inside the VPC)",
                cfg.name
            ),
            ingress: node_ingress,
            egress: vec![all_to(&shared.vpc_cidr, "nodes reach only the VPC")],
        }),
    );
    registry::security_group(cfg, &shared, &mut d);

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
    let node_user_data = render::node_user_data(
        NodeRole::for_topology(cfg.topology),
        &registry.access,
        &cfg.hostname,
    )?;
    let mut nodes = Vec::new();
    for i in 1..=cfg.nodes.count {
        let id = node(i);
        d.insert(
            id.as_str(),
            Spec::Instance(InstanceSpec {
                role: format!("{}-node", cfg.topology.as_str()),
                subnet: shared.private[((i - 1) as usize) % shared.private.len()].clone(),
                security_groups: vec![SG_NODES.into()],
                ami: cfg.nodes.ami.clone(),
                instance_type: cfg.nodes.instance_type.clone(),
                root_volume_gb: cfg.nodes.root_volume_gb,
                volumes: vec![],
                after: vec![],
                public_ip: false,
                key_pair: key_pair.clone(),
                instance_profile: access::instance_profile(cfg),
                user_data_sha256: sha256(&node_user_data),
                user_data: node_user_data.clone(),
            }),
        );
        nodes.push(LogicalId::new(id));
    }

    // Registry host (also the ssh bastion in bastion mode).
    registry::host(cfg, registry, key_pair.as_ref(), &mut d)?;

    // Systems Manager access (ssm mode).
    access::build(cfg, &shared, &mut d);

    // What only this topology has (the k3s datastore).
    own.add_own(cfg, &shared, &mut d);

    // Load balancer and DNS.
    front_door::load_balancer(cfg, &shared, &ports, &nodes, &mut d);
    let registry_host = node_mode_registry.then_some(registry.host.as_str());
    front_door::dns(cfg, &shared, registry_host, &nodes, &mut d);
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::network::subnet_cidrs;
    use super::*;
    use crate::model::DbEngine;
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
    fn an_internet_facing_lb_is_created_after_the_internet_gateway_is_attached() {
        let d = build_for(&cfg(
            "[load_balancer]\nscheme = \"internet-facing\"\n",
            "k3s",
        ));
        let nlb = &d.resources[&LogicalId::new(ids::NLB)];
        assert!(
            nlb.refs()
                .contains(&(LogicalId::new(ids::IGW), RefMode::After)),
            "{:?}",
            nlb.refs()
        );
        // The step graph orders it so: the NLB's create waits for the gateway's.
        let order = d.order().unwrap();
        let at = |id: &str| order.iter().position(|x| x.as_str() == id).unwrap();
        assert!(at(ids::IGW) < at(ids::NLB), "{order:?}");
        // Internal: no such link (it needs no gateway).
        let d = build_for(&cfg("", "k3s"));
        assert!(!d.resources[&LogicalId::new(ids::NLB)]
            .depends_on()
            .contains(&LogicalId::new(ids::IGW)));
        // A state written before the link existed plans no change for it.
        let Spec::LoadBalancer(mut old) = nlb.clone() else {
            panic!()
        };
        old.after.clear();
        let (replace, update) = crate::engine::plan::spec_changes(&Spec::LoadBalancer(old), nlb);
        assert!(
            replace.is_empty() && update.is_empty(),
            "{replace:?} {update:?}"
        );
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

    /// The ingress rules of `sg-nodes` as (protocol, from, to, peer).
    fn node_rules(d: &Desired) -> Vec<(Protocol, u16, u16, Peer)> {
        let Spec::SecurityGroup(sg) = &d.resources[&LogicalId::new(ids::SG_NODES)] else {
            panic!()
        };
        sg.ingress
            .iter()
            .map(|r| (r.protocol, r.from_port, r.to_port, r.peer.clone()))
            .collect()
    }

    fn opens(d: &Desired, protocol: Protocol, from: u16, to: u16, peer: &Peer) -> bool {
        node_rules(d).contains(&(protocol, from, to, peer.clone()))
    }

    #[test]
    fn rke2_has_three_servers_their_ports_and_no_datastore() {
        let d = build_for(&cfg("", "rke2"));
        let ids = ids(&d);
        assert!(ids.contains(&"node-3".to_string()));
        assert!(!ids.contains(&"node-4".to_string()));
        assert!(!ids
            .iter()
            .any(|i| i.contains("datastore") || i == "db-subnets"));
        let me = Peer::Itself;
        for (protocol, from, to) in [
            (Protocol::Tcp, 9345, 9345),
            (Protocol::Tcp, 6443, 6443),
            (Protocol::Tcp, 2379, 2381),
            (Protocol::Tcp, 10250, 10250),
            (Protocol::Udp, 8472, 8472),
            (Protocol::Tcp, 9099, 9099),
            (Protocol::Udp, 51820, 51821),
        ] {
            assert!(
                opens(&d, protocol, from, to, &me),
                "{protocol:?} {from}-{to}"
            );
        }
        let vpc = Peer::Cidr("10.42.0.0/16".into());
        assert!(opens(&d, Protocol::Tcp, 30000, 32767, &vpc), "nodeports");
        let lb = Peer::Group(ids::SG_LB.into());
        for port in [80, 443, 6443, 9345] {
            assert!(opens(&d, Protocol::Tcp, port, port, &lb), "lb -> {port}");
        }
        // Nothing of this is open to the world.
        for (_, _, _, peer) in node_rules(&d) {
            assert_ne!(peer, Peer::Cidr("0.0.0.0/0".into()));
        }
        // NLB: TCP listeners and target groups on 80, 443, 6443, 9345, checked as today.
        for port in [80u16, 443, 6443, 9345] {
            let Spec::TargetGroup(tg) = &d.resources[&LogicalId::new(ids::target_group(port))]
            else {
                panic!("no tg-{port}")
            };
            assert_eq!(tg.targets.len(), 3);
            assert_eq!(
                (
                    tg.healthy_threshold,
                    tg.unhealthy_threshold,
                    tg.interval_seconds
                ),
                (3, 3, 10)
            );
            assert!(!tg.preserve_client_ip);
            let Spec::Listener(l) = &d.resources[&LogicalId::new(ids::listener(port))] else {
                panic!("no listener-{port}")
            };
            assert_eq!(l.target_group, LogicalId::new(ids::target_group(port)));
        }
        let Spec::SecurityGroup(sg_lb) = &d.resources[&LogicalId::new(ids::SG_LB)] else {
            panic!()
        };
        assert!(sg_lb.ingress.iter().any(|r| r.from_port == 9345));
        assert!(sg_lb
            .ingress
            .iter()
            .all(|r| r.peer != Peer::Cidr("0.0.0.0/0".into())));
        d.order().expect("acyclic and closed");
    }

    #[test]
    fn rke2_user_data_writes_rke2_files() {
        let d = build_for(&cfg("", "rke2"));
        let Spec::Instance(node) = &d.resources[&LogicalId::new("node-1")] else {
            panic!()
        };
        assert!(node.user_data.contains("/etc/rancher/rke2/registries.yaml"));
        assert!(node.user_data.contains("/etc/rancher/rke2/config.yaml"));
        assert!(!node.user_data.contains("/etc/rancher/k3s/"));
    }

    #[test]
    fn datastore_engines_shape_the_k3s_graph() {
        // MySQL: 3306 from the nodes only.
        let mysql = build_for(&cfg("", "k3s"));
        let Spec::SecurityGroup(sg) = &mysql.resources[&LogicalId::new(ids::SG_DATASTORE)] else {
            panic!()
        };
        assert_eq!(sg.ingress.len(), 1);
        assert_eq!(
            (sg.ingress[0].from_port, &sg.ingress[0].peer),
            (3306, &Peer::Group(ids::SG_NODES.into()))
        );
        let Spec::Database(db) = &mysql.resources[&LogicalId::new(ids::DATASTORE)] else {
            panic!()
        };
        assert_eq!(
            (db.engine, db.engine_version.as_str()),
            (DbEngine::Mysql, "8.4")
        );
        assert!(!opens(&mysql, Protocol::Tcp, 2379, 2380, &Peer::Itself));

        // PostgreSQL: 5432 from the nodes only.
        let postgres = build_for(&cfg("[datastore]\nengine = \"postgres\"\n", "k3s"));
        let Spec::SecurityGroup(sg) = &postgres.resources[&LogicalId::new(ids::SG_DATASTORE)]
        else {
            panic!()
        };
        assert_eq!(sg.ingress.len(), 1);
        assert_eq!(
            (
                sg.ingress[0].from_port,
                sg.ingress[0].to_port,
                &sg.ingress[0].peer
            ),
            (5432, 5432, &Peer::Group(ids::SG_NODES.into()))
        );
        let Spec::Database(db) = &postgres.resources[&LogicalId::new(ids::DATASTORE)] else {
            panic!()
        };
        assert_eq!(
            (db.engine, db.engine_version.as_str()),
            (DbEngine::Postgres, "15")
        );
        assert_eq!(db.password, Some(LogicalId::new(ids::DATASTORE_PASSWORD)));

        // Embedded etcd: no RDS at all, 3 servers, etcd between them.
        let etcd = build_for(&cfg("[datastore]\nengine = \"embedded-etcd\"\n", "k3s"));
        let ids = ids(&etcd);
        for gone in [
            "datastore",
            "db-subnets",
            "sg-datastore",
            "datastore-password",
        ] {
            assert!(!ids.contains(&gone.to_string()), "{gone}: {ids:?}");
        }
        assert!(ids.contains(&"node-3".to_string()));
        assert!(opens(&etcd, Protocol::Tcp, 2379, 2380, &Peer::Itself));
        etcd.order().expect("acyclic and closed");
    }

    #[test]
    fn an_engine_change_replaces_the_database() {
        let spec = |extra: &str| {
            let d = build_for(&cfg(extra, "k3s"));
            d.resources[&LogicalId::new(ids::DATASTORE)].clone()
        };
        let mysql = spec("");
        let postgres = spec("[datastore]\nengine = \"postgres\"\n");
        let (replace, _) = crate::engine::plan::spec_changes(&mysql, &postgres);
        assert!(
            replace.iter().any(|r| r.starts_with("engine")),
            "an engine change must be a replace: {replace:?}"
        );
        // A state file from before the field existed holds a MySQL database.
        let mut old = serde_json::to_value(&mysql).unwrap();
        assert!(old.as_object_mut().unwrap().remove("engine").is_some());
        let old: Spec = serde_json::from_value(old).unwrap();
        assert_eq!(old, mysql);
    }

    const ADMIN: &str = "[network]\nadmin_cidrs = [\"203.0.113.0/24\"]\n";

    /// Every security-group rule of `d` that lets port 22 in (a range or "all" covering it
    /// counts), as `group: rule`.
    fn ssh_ingress(d: &Desired) -> Vec<String> {
        d.resources
            .iter()
            .filter_map(|(id, spec)| match spec {
                Spec::SecurityGroup(sg) => Some((id, sg)),
                _ => None,
            })
            .flat_map(|(id, sg)| {
                sg.ingress
                    .iter()
                    .filter(|r| {
                        r.protocol == Protocol::All
                            || (r.protocol == Protocol::Tcp && r.from_port <= 22 && 22 <= r.to_port)
                    })
                    .map(move |r| format!("{id}: {r:?}"))
            })
            .collect()
    }

    #[test]
    fn ssm_mode_has_endpoints_a_profile_on_every_machine_and_no_ssh() {
        for topology in ["k3s", "rke2", "docker"] {
            let d = build_for(&cfg(
                &format!("{ADMIN}[access]\nmode = \"ssm\"\n"),
                topology,
            ));
            assert_eq!(ssh_ingress(&d), Vec::<String>::new(), "{topology}");
            // The three endpoints, in the private subnets, private DNS on, behind sg-endpoints.
            let private: Vec<LogicalId> = d
                .resources
                .keys()
                .filter(|k| k.as_str().starts_with("subnet-private-"))
                .cloned()
                .collect();
            for service in ids::SSM_SERVICES {
                let Spec::VpcEndpoint(e) = &d.resources[&LogicalId::new(ids::endpoint(service))]
                else {
                    panic!("{topology}: no endpoint for {service}")
                };
                assert_eq!(e.service_name, format!("com.amazonaws.us-east-1.{service}"));
                assert_eq!(e.subnets, private, "{topology} {service}");
                assert!(e.private_dns);
                assert_eq!(e.security_groups, vec![LogicalId::new(ids::SG_ENDPOINTS)]);
            }
            // 443 from the env's machines only.
            let Spec::SecurityGroup(sg) = &d.resources[&LogicalId::new(ids::SG_ENDPOINTS)] else {
                panic!()
            };
            let admitted: Vec<(u16, u16, Peer)> = sg
                .ingress
                .iter()
                .map(|r| (r.from_port, r.to_port, r.peer.clone()))
                .collect();
            assert_eq!(
                admitted,
                vec![
                    (443, 443, Peer::Group(ids::SG_NODES.into())),
                    (443, 443, Peer::Group(ids::SG_BASTION.into())),
                ],
                "{topology}"
            );
            assert!(sg.ingress.iter().all(|r| r.protocol == Protocol::Tcp));
            // The role with the SSM policy under the env's path; every machine has the profile.
            let Spec::IamRole(role) = &d.resources[&LogicalId::new(ids::SSM_ROLE)] else {
                panic!()
            };
            assert_eq!(role.name, "lab-us-east-1-ssm-role");
            assert_eq!(role.path, "/provision/lab/");
            assert_eq!(
                role.policies,
                vec!["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".to_string()]
            );
            let Spec::InstanceProfile(profile) = &d.resources[&LogicalId::new(ids::SSM_PROFILE)]
            else {
                panic!()
            };
            assert_eq!(profile.role, LogicalId::new(ids::SSM_ROLE));
            let machines: Vec<&InstanceSpec> = d
                .resources
                .values()
                .filter_map(|s| match s {
                    Spec::Instance(i) => Some(i),
                    _ => None,
                })
                .collect();
            assert!(machines.iter().any(|i| !i.is_cluster_node()), "{topology}");
            for i in &machines {
                assert_eq!(
                    i.instance_profile,
                    Some(LogicalId::new(ids::SSM_PROFILE)),
                    "{topology} {}",
                    i.role
                );
            }
            // No bastion: the registry host keeps its route out (it pulls images) and its
            // public address, but it is no ssh jump host.
            let Spec::Instance(registry) = &d.resources[&LogicalId::new(ids::REGISTRY)] else {
                panic!()
            };
            assert!(registry.public_ip);
            assert!(registry.after.contains(&LogicalId::new(ids::RT_EDGE)));
            d.order().expect("acyclic and closed");
        }
    }

    #[test]
    fn switching_access_modes_replaces_nothing() {
        for topology in ["k3s", "rke2", "docker"] {
            // The same registry secrets for both, as on one machine.
            let dir = tempfile::tempdir().unwrap();
            let build_with = |c: &Config| {
                let secrets = dir.path().join("lab/secrets");
                build(c, &registry_plan(c, &secrets).unwrap()).unwrap()
            };
            let bastion = build_with(&cfg(ADMIN, topology));
            let ssm = build_with(&cfg(
                &format!("{ADMIN}[access]\nmode = \"ssm\"\n"),
                topology,
            ));
            for (id, before) in &bastion.resources {
                let after = &ssm.resources[id];
                let (replace, _) = crate::engine::plan::spec_changes(before, after);
                assert!(replace.is_empty(), "{topology} {id}: {replace:?}");
            }
        }
    }

    #[test]
    fn bastion_mode_has_no_ssm_resources_and_keeps_ssh() {
        let d = build_for(&cfg(ADMIN, "k3s"));
        for id in [ids::SG_ENDPOINTS, ids::SSM_ROLE, ids::SSM_PROFILE] {
            assert!(!d.resources.contains_key(&LogicalId::new(id)), "{id}");
        }
        assert!(!d
            .resources
            .values()
            .any(|s| matches!(s, Spec::VpcEndpoint(_))));
        assert!(d.resources.values().all(|s| match s {
            Spec::Instance(i) => i.instance_profile.is_none(),
            _ => true,
        }));
        let ssh = ssh_ingress(&d);
        assert!(
            ssh.iter().any(|r| r.starts_with("sg-nodes:"))
                && ssh.iter().any(|r| r.starts_with("sg-registry:")),
            "{ssh:?}"
        );
    }

    #[test]
    fn ssm_mode_with_an_external_registry_admits_only_the_nodes() {
        let d = build_for(&cfg(
            "[registry]\nmode = \"external\"\nurl = \"registry.corp.example:5000\"\n[access]\nmode = \"ssm\"\n",
            "k3s",
        ));
        let Spec::SecurityGroup(sg) = &d.resources[&LogicalId::new(ids::SG_ENDPOINTS)] else {
            panic!()
        };
        assert_eq!(sg.ingress.len(), 1);
        assert_eq!(sg.ingress[0].peer, Peer::Group(ids::SG_NODES.into()));
        d.order().expect("acyclic and closed");
    }

    #[test]
    fn managed_policies_follow_the_partition() {
        assert_eq!(
            managed_policy_arn("cn-north-1", SSM_POLICY),
            "arn:aws-cn:iam::aws:policy/AmazonSSMManagedInstanceCore"
        );
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("eu-west-1"), "aws");
    }
}
