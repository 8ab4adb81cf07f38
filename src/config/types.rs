//! The resolved configuration: every default filled in, every value checked. The rest of
//! the program only ever sees this, never the raw TOML.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::{DbEngine, Scheme};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    K3s,
    Rke,
    Docker,
    Rke2,
}

impl Topology {
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::K3s => "k3s",
            Topology::Rke => "rke",
            Topology::Docker => "docker",
            Topology::Rke2 => "rke2",
        }
    }

    pub fn default_node_count(self) -> u32 {
        match self {
            Topology::K3s => 2,
            Topology::Rke | Topology::Rke2 => 3,
            Topology::Docker => 1,
        }
    }

    /// Every topology, for help texts and tests.
    pub const ALL: [Topology; 4] = [
        Topology::K3s,
        Topology::Rke,
        Topology::Docker,
        Topology::Rke2,
    ];
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and relative paths).
    pub path: PathBuf,
    pub name: String,
    pub region: String,
    pub topology: Topology,
    pub hostname: String,
    pub network: Network,
    pub nodes: Nodes,
    /// `Some` only for k3s with an RDS engine (`mysql`, `postgres`); `None` for k3s with
    /// `engine = "embedded-etcd"` (see [`Config::k3s_embedded_etcd`]) and other topologies.
    pub datastore: Option<Datastore>,
    /// `None` when the topology has no load balancer (docker with `enabled = false`).
    pub load_balancer: Option<LoadBalancer>,
    pub dns: Dns,
    pub registry: Registry,
    pub timeouts: Timeouts,
    pub rancher: Rancher,
    /// `[state]`: where the state document and its lock live.
    pub state: StateBackend,
    /// `[access] mode`: how operators reach the machines.
    pub access: AccessMode,
    /// Non-fatal remarks to show the user (e.g. MySQL 5.7 extended support).
    pub warnings: Vec<String>,
}

impl Config {
    /// K3s servers that run etcd themselves (`[datastore] engine = "embedded-etcd"`).
    pub fn k3s_embedded_etcd(&self) -> bool {
        self.topology == Topology::K3s && self.datastore.is_none()
    }
}

/// `[access] mode`: how operators reach the machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessMode {
    /// SSH through the registry host, which doubles as the bastion (port 22 from
    /// `network.admin_cidrs`).
    #[default]
    Bastion,
    /// AWS Systems Manager: interface VPC endpoints for `ssm`, `ssmmessages` and
    /// `ec2messages`, an instance profile on every instance, no SSH ingress anywhere.
    Ssm,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Bastion => "bastion",
            AccessMode::Ssm => "ssm",
        }
    }
}

/// `[datastore] engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatastoreEngine {
    Rds(DbEngine),
    EmbeddedEtcd,
}

/// `[rancher]`: the version the artifacts' helm command and image lists follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rancher {
    /// `2.14.0` (no leading `v`).
    pub version: String,
    pub minor: u32,
}

impl Rancher {
    /// The release tag, `v2.14.0`.
    pub fn tag(&self) -> String {
        format!("v{}", self.version)
    }
}

#[derive(Debug, Clone)]
pub struct Network {
    pub vpc_cidr: ipnet::Ipv4Net,
    /// Number of availability zones (= private subnets), 1..=6.
    pub zones: u32,
    /// Who may reach SSH on the bastion, the registry and the load balancer.
    pub admin_cidrs: Vec<ipnet::Ipv4Net>,
}

#[derive(Debug, Clone)]
pub struct Nodes {
    pub count: u32,
    pub instance_type: String,
    pub ami: String,
    pub root_volume_gb: u32,
    /// Path to an OpenSSH public key (resolved against the config file's folder).
    pub ssh_public_key: Option<PathBuf>,
    /// The key's content, read at load time.
    pub ssh_public_key_text: Option<String>,
    /// Login user of the AMI, for artifacts (`ubuntu` by default).
    pub ssh_user: String,
}

#[derive(Debug, Clone)]
pub struct Datastore {
    pub engine: DbEngine,
    pub engine_version: String,
    pub instance_class: String,
    pub storage_gb: u32,
    pub database: String,
    pub username: String,
    pub backup_retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub scheme: Scheme,
    pub kube_api: bool,
    /// Forward the RKE2 supervisor port 9345 (rke2).
    pub supervisor: bool,
}

#[derive(Debug, Clone)]
pub struct Dns {
    /// Existing zone, by name (`lab.example.com`) or id (`Z123...`). With `private_zone`
    /// it is the name of the private zone the tool creates.
    pub zone: String,
    pub private_zone: bool,
    pub ttl: u32,
    /// `alias` (A alias to the LB, default) or `cname`.
    pub record_type: RecordType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    Alias,
    Cname,
}

#[derive(Debug, Clone)]
pub enum Registry {
    Node {
        instance_type: String,
        volume_gb: u32,
        port: u16,
    },
    External {
        /// `host:port` (no scheme).
        url: String,
        ca_file: Option<PathBuf>,
        ca_pem: Option<String>,
    },
}

impl Registry {
    pub fn port(&self) -> Option<u16> {
        match self {
            Registry::Node { port, .. } => Some(*port),
            Registry::External { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub poll_interval: Duration,
    pub instance: Duration,
    pub database: Duration,
    pub load_balancer: Duration,
    pub dns: Duration,
    pub dependency: Duration,
}

/// `[state] backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    /// `state/<name>.json` under `--state-dir` (the default).
    Local,
    S3(S3State),
}

/// `[state] backend = "s3"`: the state document in S3, locked with `<key>.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3State {
    pub bucket: String,
    /// Object key of the state document (default `provision/<name>.json`).
    pub key: String,
    /// The bucket's region; the environment's `region` when not set.
    pub region: String,
    /// SSE-KMS key for the state object and the environment's shared secrets.
    pub kms_key_id: Option<String>,
}

impl S3State {
    pub fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    /// `s3://bucket/key`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}
