//! The vocabulary shared by the blueprint, the engine, the state file and the cloud
//! adapters: logical ids, typed resource specs (what we want) and typed attributes (what
//! the cloud told us). Nothing in here knows about AWS SDK types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, readable name for one resource of an environment (`vpc`, `node-1`, `tg-443`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogicalId(pub String);

impl LogicalId {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LogicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for LogicalId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&String> for LogicalId {
    fn from(s: &String) -> Self {
        Self(s.clone())
    }
}

impl From<&str> for LogicalId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// The kind of a resource; decides which adapter handles it and the teardown rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Vpc,
    InternetGateway,
    Subnet,
    RouteTable,
    SecurityGroup,
    KeyPair,
    Instance,
    DbSubnetGroup,
    Database,
    LoadBalancer,
    TargetGroup,
    Listener,
    HostedZone,
    DnsRecord,
    /// An EBS volume that outlives the instances it is attached to (the registry's store).
    Volume,
    /// A Secrets Manager secret holding a value the tool generated (the datastore password).
    Secret,
    /// An interface VPC endpoint (SSM access: `ssm`, `ssmmessages`, `ec2messages`).
    VpcEndpoint,
    /// An IAM role (global, eventually consistent; named per env and region).
    IamRole,
    /// An IAM instance profile holding one role, given to instances at launch.
    InstanceProfile,
}

impl Kind {
    pub const ALL: [Kind; 19] = [
        Kind::Vpc,
        Kind::InternetGateway,
        Kind::Subnet,
        Kind::RouteTable,
        Kind::SecurityGroup,
        Kind::KeyPair,
        Kind::Instance,
        Kind::DbSubnetGroup,
        Kind::Database,
        Kind::LoadBalancer,
        Kind::TargetGroup,
        Kind::Listener,
        Kind::HostedZone,
        Kind::DnsRecord,
        Kind::Volume,
        Kind::Secret,
        Kind::VpcEndpoint,
        Kind::IamRole,
        Kind::InstanceProfile,
    ];

    /// Creation rank: a resource of a lower rank never depends on one of a higher rank.
    /// Used to order teardown of resources whose dependencies are unknown (no state).
    pub fn rank(self) -> u8 {
        match self {
            Kind::Vpc => 0,
            Kind::InternetGateway | Kind::HostedZone | Kind::Secret | Kind::IamRole => 1,
            Kind::Subnet | Kind::InstanceProfile => 2,
            Kind::SecurityGroup | Kind::KeyPair | Kind::Volume => 3,
            Kind::RouteTable | Kind::DbSubnetGroup | Kind::VpcEndpoint => 4,
            Kind::Instance | Kind::LoadBalancer => 5,
            Kind::Database | Kind::TargetGroup => 6,
            Kind::Listener => 7,
            Kind::DnsRecord => 8,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::InternetGateway => "internet gateway",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "route table",
            Kind::SecurityGroup => "security group",
            Kind::KeyPair => "key pair",
            Kind::Instance => "instance",
            Kind::DbSubnetGroup => "db subnet group",
            Kind::Database => "rds instance",
            Kind::LoadBalancer => "load balancer",
            Kind::TargetGroup => "target group",
            Kind::Listener => "listener",
            Kind::HostedZone => "hosted zone",
            Kind::DnsRecord => "dns record",
            Kind::Volume => "ebs volume",
            Kind::Secret => "secret",
            Kind::VpcEndpoint => "vpc endpoint",
            Kind::IamRole => "iam role",
            Kind::InstanceProfile => "instance profile",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A reference to another logical resource of the same environment. The cloud id behind it
/// is only known at execution time (see [`Resolved`]).
pub type Ref = LogicalId;

/// How a resource depends on one of its references, which decides what happens to it when
/// the referenced resource is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefMode {
    /// Lives inside the referenced resource (a subnet in a VPC): replaced with it.
    Parent,
    /// Merely points at it (targets of a target group, an alias record): updated in place.
    Attach,
    /// Only waits for it (the registry host boots after its route to the internet exists):
    /// a replacement of the other resource changes nothing here.
    After,
}

/// Network protocol of a security-group rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// All protocols (`-1`).
    All,
}

/// Who a security-group rule admits (ingress) or reaches (egress).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    Cidr(String),
    /// Another security group of this environment.
    Group(Ref),
    /// The security group itself (members talk to each other).
    Itself,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub protocol: Protocol,
    pub from_port: u16,
    pub to_port: u16,
    pub peer: Peer,
    pub description: String,
}

impl Rule {
    /// `tcp 22 from 203.0.113.0/24`, `udp 8472 from itself`, `all to 0.0.0.0/0`;
    /// `direction` is "from" (ingress) or "to" (egress).
    pub fn text(&self, direction: &str) -> String {
        let protocol = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::All => "all",
        };
        let ports = match (self.protocol, self.from_port, self.to_port) {
            (Protocol::All, _, _) => String::new(),
            (_, a, b) if a == b => format!(" {a}"),
            (_, a, b) => format!(" {a}-{b}"),
        };
        let peer = match &self.peer {
            Peer::Cidr(c) => c.clone(),
            Peer::Group(g) => g.to_string(),
            Peer::Itself => "itself".to_string(),
        };
        format!("{protocol}{ports} {direction} {peer}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    Internal,
    InternetFacing,
}

impl Scheme {
    pub fn as_aws(self) -> &'static str {
        match self {
            Scheme::Internal => "internal",
            Scheme::InternetFacing => "internet-facing",
        }
    }
}

/// Where a DNS record lives: a zone that already exists (looked up by name or id) or the
/// private zone this environment creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneRef {
    Existing(String),
    Managed(Ref),
}

/// What a DNS record points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordTarget {
    /// Alias A record to a load balancer.
    AliasLoadBalancer(Ref),
    /// CNAME to a load balancer's DNS name.
    CnameLoadBalancer(Ref),
    /// A record to an instance's private IP.
    InstancePrivateIp(Ref),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcSpec {
    pub cidr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGatewaySpec {
    pub vpc: Ref,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub vpc: Ref,
    pub cidr: String,
    /// Index into the region's available zones (sorted by name) that offer every type in
    /// `instance_types`.
    pub zone_index: usize,
    pub map_public_ip: bool,
    /// Instance types that will run in this subnet's zone. Only the zone choice at creation
    /// looks at them (not in state, never a reason to replace the subnet).
    #[serde(skip)]
    pub instance_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableSpec {
    pub vpc: Ref,
    pub subnets: Vec<Ref>,
    /// `Some` adds `0.0.0.0/0 -> igw`; private route tables have none.
    pub internet_gateway: Option<Ref>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupSpec {
    pub vpc: Ref,
    pub description: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPairSpec {
    /// The OpenSSH public key line (public material, safe in state).
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub role: String,
    pub subnet: Ref,
    pub security_groups: Vec<Ref>,
    pub ami: String,
    pub instance_type: String,
    pub root_volume_gb: u32,
    /// Volumes of this environment attached after launch, in order (`/dev/sdf`, `/dev/sdg`,
    /// ...). They are separate resources, so replacing the instance keeps them.
    #[serde(default)]
    pub volumes: Vec<Ref>,
    /// Resources that must exist before the instance boots, without any other link (the
    /// registry host needs its route to the internet for cloud-init).
    #[serde(default)]
    pub after: Vec<Ref>,
    pub public_ip: bool,
    pub key_pair: Option<Ref>,
    /// The IAM instance profile the instance runs with (`[access] mode = "ssm"`). Changed
    /// in place (associate / replace the association).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<Ref>,
    /// SHA-256 of the rendered user-data; the text itself is never stored in state
    /// because node user-data carries the registry credentials.
    pub user_data_sha256: String,
    #[serde(skip)]
    pub user_data: String,
}

impl InstanceSpec {
    /// A member of the cluster (its disks hold etcd / node state), as opposed to the
    /// registry host, whose data lives on its own volume.
    pub fn is_cluster_node(&self) -> bool {
        self.role != "registry"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// The volume is created in this subnet's availability zone.
    pub subnet: Ref,
    pub size_gb: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// What the secret is for, shown in the console.
    pub description: String,
    /// SHA-256 of a value the tool made elsewhere (the env's shared secrets); `None` for
    /// a value the adapter generates itself (the datastore password). The value itself is
    /// never stored in the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_sha256: Option<String>,
    /// Customer managed KMS key (`[state] kms_key_id`); `None`: Secrets Manager's own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The value behind `value_sha256`, for the create/update call only.
    #[serde(skip)]
    pub value: Option<String>,
}

/// An interface VPC endpoint: its network interfaces in `subnets`, guarded by
/// `security_groups`, with private DNS so the service's public name resolves to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcEndpointSpec {
    pub vpc: Ref,
    /// The full service name, `com.amazonaws.<region>.ssm`.
    pub service_name: String,
    pub subnets: Vec<Ref>,
    pub security_groups: Vec<Ref>,
    pub private_dns: bool,
}

/// An IAM role that a service (EC2) may assume, with AWS managed policies attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamRoleSpec {
    /// The role name (see `names::iam_role`).
    pub name: String,
    /// `/provision/<env>/`.
    pub path: String,
    /// The service principal trusted to assume the role, `ec2.amazonaws.com`.
    pub trusted_service: String,
    /// ARNs of the managed policies attached to it.
    pub policies: Vec<String>,
    pub description: String,
}

/// An IAM instance profile holding exactly one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceProfileSpec {
    /// The instance profile name (see `names::instance_profile`).
    pub name: String,
    /// `/provision/<env>/`.
    pub path: String,
    pub role: Ref,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSubnetGroupSpec {
    pub subnets: Vec<Ref>,
}

/// The RDS engine of a K3s datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbEngine {
    #[default]
    Mysql,
    Postgres,
}

impl DbEngine {
    /// The RDS `Engine` value (and the config's word).
    pub fn as_str(self) -> &'static str {
        match self {
            DbEngine::Mysql => "mysql",
            DbEngine::Postgres => "postgres",
        }
    }

    /// The port the engine listens on.
    pub fn port(self) -> u16 {
        match self {
            DbEngine::Mysql => 3306,
            DbEngine::Postgres => 5432,
        }
    }

    /// The name people read.
    pub fn display_name(self) -> &'static str {
        match self {
            DbEngine::Mysql => "MySQL",
            DbEngine::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    pub subnet_group: Ref,
    pub security_group: Ref,
    /// The RDS engine. A change replaces the database (its data is lost). State files from
    /// before the field existed hold MySQL databases.
    #[serde(default)]
    pub engine: DbEngine,
    pub engine_version: String,
    pub instance_class: String,
    pub storage_gb: u32,
    pub database: String,
    pub username: String,
    pub backup_retention_days: u32,
    /// The secret holding the master password (generated by the tool, never rotated on its
    /// own: K3s keeps the password it was installed with).
    #[serde(default)]
    pub password: Option<Ref>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerSpec {
    pub scheme: Scheme,
    pub subnets: Vec<Ref>,
    pub security_group: Ref,
    pub cross_zone: bool,
    /// Resources that must exist first, without any other link: an internet-facing NLB
    /// waits for the internet gateway's attachment (else `CreateLoadBalancer` answers
    /// `InvalidSubnet: VPC … has no internet gateway`). Ordering only: never a change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Ref>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupSpec {
    /// AWS name, at most 32 characters.
    pub name: String,
    pub vpc: Ref,
    pub port: u16,
    /// `None` = health check on the traffic port.
    pub health_check_port: Option<u16>,
    pub healthy_threshold: u8,
    pub unhealthy_threshold: u8,
    pub interval_seconds: u8,
    pub timeout_seconds: u8,
    /// Client-IP preservation. Off: an internal NLB with instance targets cannot hairpin a
    /// node's connection back to itself when it is on.
    #[serde(default)]
    pub preserve_client_ip: bool,
    /// Instances registered on `port`.
    pub targets: Vec<Ref>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    pub load_balancer: Ref,
    pub port: u16,
    pub target_group: Ref,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedZoneSpec {
    pub name: String,
    pub vpc: Ref,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordSpec {
    pub zone: ZoneRef,
    /// Fully qualified name without the trailing dot.
    pub name: String,
    pub target: RecordTarget,
    pub ttl: u32,
}

/// What one logical resource should look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    Vpc(VpcSpec),
    InternetGateway(InternetGatewaySpec),
    Subnet(SubnetSpec),
    RouteTable(RouteTableSpec),
    SecurityGroup(SecurityGroupSpec),
    KeyPair(KeyPairSpec),
    Instance(InstanceSpec),
    DbSubnetGroup(DbSubnetGroupSpec),
    Database(DatabaseSpec),
    LoadBalancer(LoadBalancerSpec),
    TargetGroup(TargetGroupSpec),
    Listener(ListenerSpec),
    HostedZone(HostedZoneSpec),
    DnsRecord(DnsRecordSpec),
    Volume(VolumeSpec),
    Secret(SecretSpec),
    VpcEndpoint(VpcEndpointSpec),
    IamRole(IamRoleSpec),
    InstanceProfile(InstanceProfileSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Vpc(_) => Kind::Vpc,
            Spec::InternetGateway(_) => Kind::InternetGateway,
            Spec::Subnet(_) => Kind::Subnet,
            Spec::RouteTable(_) => Kind::RouteTable,
            Spec::SecurityGroup(_) => Kind::SecurityGroup,
            Spec::KeyPair(_) => Kind::KeyPair,
            Spec::Instance(_) => Kind::Instance,
            Spec::DbSubnetGroup(_) => Kind::DbSubnetGroup,
            Spec::Database(_) => Kind::Database,
            Spec::LoadBalancer(_) => Kind::LoadBalancer,
            Spec::TargetGroup(_) => Kind::TargetGroup,
            Spec::Listener(_) => Kind::Listener,
            Spec::HostedZone(_) => Kind::HostedZone,
            Spec::DnsRecord(_) => Kind::DnsRecord,
            Spec::Volume(_) => Kind::Volume,
            Spec::Secret(_) => Kind::Secret,
            Spec::VpcEndpoint(_) => Kind::VpcEndpoint,
            Spec::IamRole(_) => Kind::IamRole,
            Spec::InstanceProfile(_) => Kind::InstanceProfile,
        }
    }

    /// Every other resource this one refers to, and how.
    pub fn refs(&self) -> Vec<(Ref, RefMode)> {
        use RefMode::{After, Attach, Parent};
        let mut out: Vec<(Ref, RefMode)> = Vec::new();
        match self {
            Spec::Vpc(_) | Spec::KeyPair(_) | Spec::Secret(_) | Spec::IamRole(_) => {}
            Spec::VpcEndpoint(s) => {
                out.push((s.vpc.clone(), Parent));
                out.extend(s.subnets.iter().map(|r| (r.clone(), Attach)));
                out.extend(s.security_groups.iter().map(|r| (r.clone(), Attach)));
            }
            Spec::InstanceProfile(s) => out.push((s.role.clone(), Attach)),
            Spec::Volume(s) => out.push((s.subnet.clone(), Parent)),
            Spec::InternetGateway(s) => out.push((s.vpc.clone(), Parent)),
            Spec::Subnet(s) => out.push((s.vpc.clone(), Parent)),
            Spec::RouteTable(s) => {
                out.push((s.vpc.clone(), Parent));
                out.extend(s.subnets.iter().map(|r| (r.clone(), Attach)));
                out.extend(s.internet_gateway.iter().map(|r| (r.clone(), Attach)));
            }
            Spec::SecurityGroup(s) => {
                out.push((s.vpc.clone(), Parent));
                for rule in s.ingress.iter().chain(&s.egress) {
                    if let Peer::Group(g) = &rule.peer {
                        out.push((g.clone(), Attach));
                    }
                }
            }
            Spec::Instance(s) => {
                out.push((s.subnet.clone(), Parent));
                out.extend(s.security_groups.iter().map(|r| (r.clone(), Attach)));
                out.extend(s.key_pair.iter().map(|r| (r.clone(), Parent)));
                out.extend(s.volumes.iter().map(|r| (r.clone(), Attach)));
                out.extend(s.after.iter().map(|r| (r.clone(), After)));
                out.extend(s.instance_profile.iter().map(|r| (r.clone(), Attach)));
            }
            Spec::DbSubnetGroup(s) => out.extend(s.subnets.iter().map(|r| (r.clone(), Attach))),
            Spec::Database(s) => {
                out.push((s.subnet_group.clone(), Parent));
                out.push((s.security_group.clone(), Attach));
                out.extend(s.password.iter().map(|r| (r.clone(), Attach)));
            }
            Spec::LoadBalancer(s) => {
                out.extend(s.subnets.iter().map(|r| (r.clone(), Attach)));
                out.push((s.security_group.clone(), Attach));
                out.extend(s.after.iter().map(|r| (r.clone(), After)));
            }
            Spec::TargetGroup(s) => {
                out.push((s.vpc.clone(), Parent));
                out.extend(s.targets.iter().map(|r| (r.clone(), Attach)));
            }
            Spec::Listener(s) => {
                out.push((s.load_balancer.clone(), Parent));
                out.push((s.target_group.clone(), Parent));
            }
            Spec::HostedZone(s) => out.push((s.vpc.clone(), Parent)),
            Spec::DnsRecord(s) => {
                if let ZoneRef::Managed(z) = &s.zone {
                    out.push((z.clone(), Parent));
                }
                match &s.target {
                    RecordTarget::AliasLoadBalancer(r)
                    | RecordTarget::CnameLoadBalancer(r)
                    | RecordTarget::InstancePrivateIp(r) => out.push((r.clone(), Attach)),
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// The logical ids this resource depends on.
    pub fn depends_on(&self) -> Vec<Ref> {
        self.refs().into_iter().map(|(r, _)| r).collect()
    }

    /// Fields that the cloud can change in place. Any other changed field forces a replace.
    pub fn updatable_fields(&self) -> &'static [&'static str] {
        match self {
            Spec::Vpc(_) | Spec::InternetGateway(_) | Spec::Subnet(_) | Spec::KeyPair(_) => &[],
            Spec::RouteTable(_) => &["subnets", "internet_gateway"],
            Spec::SecurityGroup(_) => &["ingress", "egress"],
            // The type changes in place (stop, modify, start); volumes attach to the
            // running instance; `after` is only an ordering.
            // The instance profile is associated with the running instance.
            Spec::Instance(_) => &[
                "security_groups",
                "instance_type",
                // Grows in place (ModifyVolume); a smaller size is a replacement.
                "root_volume_gb",
                "volumes",
                "after",
                "instance_profile",
            ],
            // Grows in place (ModifyVolume); shrinking needs a new volume.
            Spec::Volume(_) => &["size_gb"],
            Spec::Secret(_) => &["description", "value_sha256", "kms_key_id"],
            Spec::VpcEndpoint(_) => &["subnets", "security_groups", "private_dns"],
            // Name, path and trusted service are fixed at creation.
            Spec::IamRole(_) => &["policies", "description"],
            Spec::InstanceProfile(_) => &["role"],
            Spec::DbSubnetGroup(_) => &["subnets"],
            Spec::Database(_) => &[
                "security_group",
                "engine_version",
                "instance_class",
                "storage_gb",
                "backup_retention_days",
                "password",
            ],
            Spec::LoadBalancer(_) => &["subnets", "security_group", "cross_zone"],
            Spec::TargetGroup(_) => &[
                "health_check_port",
                "healthy_threshold",
                "unhealthy_threshold",
                "interval_seconds",
                "timeout_seconds",
                "preserve_client_ip",
                "targets",
            ],
            // ModifyListener takes the port, protocol and default action.
            Spec::Listener(_) => &["port", "target_group"],
            Spec::HostedZone(_) => &[],
            Spec::DnsRecord(_) => &["target", "ttl"],
        }
    }
}

/// Attributes learned from the cloud, kept in state and handed to dependents and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Attrs {
    #[default]
    None,
    Subnet {
        availability_zone: String,
    },
    Instance {
        private_ip: String,
        public_ip: Option<String>,
        availability_zone: String,
    },
    Database {
        address: String,
        port: u16,
        /// ARN of the Secrets Manager secret RDS keeps the master password in.
        secret_arn: String,
        status: String,
    },
    LoadBalancer {
        dns_name: String,
        /// Route53 zone id of the load balancer, for alias records.
        canonical_zone_id: String,
    },
    HostedZone {
        name: String,
    },
    DnsRecord {
        zone_id: String,
        fqdn: String,
        record_type: String,
    },
    KeyPair {
        name: String,
    },
    Volume {
        availability_zone: String,
        /// When the size was last changed (RFC 3339; the `provision:modified-at` tag): AWS
        /// takes one modification per volume every 6 hours.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        modified_at: Option<String>,
    },
    Secret {
        arn: String,
    },
    IamRole {
        arn: String,
    },
    InstanceProfile {
        arn: String,
    },
}

/// A resource as read from the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub cloud_id: String,
    pub attrs: Attrs,
    /// Differences between the spec and the live resource, one readable line each
    /// (empty when it matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Differences in what the cloud fixes when the resource is made (a CIDR, a zone's
    /// privacy, a key pair's key, a load balancer's scheme): an update cannot repair them,
    /// only a replacement, and `plan` says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
}

impl Observed {
    pub fn new(cloud_id: impl Into<String>, attrs: Attrs) -> Self {
        Self {
            cloud_id: cloud_id.into(),
            attrs,
            drift: Vec::new(),
            fixed: Vec::new(),
        }
    }
}

/// Cloud ids and attributes of the resources a step may refer to.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub entries: BTreeMap<LogicalId, Observed>,
}

impl Resolved {
    pub fn get(&self, id: &LogicalId) -> Option<&Observed> {
        self.entries.get(id)
    }

    /// The cloud id behind a reference; an error names the missing reference.
    pub fn cloud_id(&self, id: &LogicalId) -> Result<&str, MissingRef> {
        self.entries
            .get(id)
            .map(|o| o.cloud_id.as_str())
            .ok_or_else(|| MissingRef(id.clone()))
    }

    pub fn cloud_ids(&self, ids: &[LogicalId]) -> Result<Vec<String>, MissingRef> {
        ids.iter()
            .map(|i| self.cloud_id(i).map(str::to_string))
            .collect()
    }

    pub fn attrs(&self, id: &LogicalId) -> Result<&Attrs, MissingRef> {
        self.entries
            .get(id)
            .map(|o| &o.attrs)
            .ok_or_else(|| MissingRef(id.clone()))
    }

    /// Reverse lookup: which logical id owns this cloud id.
    pub fn logical_of(&self, cloud_id: &str) -> Option<&LogicalId> {
        self.entries
            .iter()
            .find(|(_, o)| o.cloud_id == cloud_id)
            .map(|(id, _)| id)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("resource `{0}` is referenced but has not been created yet")]
pub struct MissingRef(pub LogicalId);

/// The tags every resource carries.
pub const TAG_ENV: &str = "provision:env";
pub const TAG_ID: &str = "provision:id";

/// The state (lineage) a resource belongs to; see [`Owner`].
pub const TAG_LINEAGE: &str = "provision:lineage";
/// Where and when that state began (`<host> <UTC time>`), to name another environment.
pub const TAG_ORIGIN: &str = "provision:origin";

/// Whose a resource is: the lineage of the state that made it, and where that state began.
/// Two folders with the same `name` have two lineages: neither may adopt, change or delete
/// what the other made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Owner {
    pub lineage: String,
    pub origin: String,
}

/// The ownership tags found on a live resource (absent on resources made before lineage
/// tags existed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FoundOwner {
    pub lineage: Option<String>,
    pub origin: Option<String>,
}

impl FoundOwner {
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut found = Self::default();
        for (k, v) in tags {
            match k {
                TAG_LINEAGE => found.lineage = Some(v.to_string()),
                TAG_ORIGIN => found.origin = Some(v.to_string()),
                _ => {}
            }
        }
        found
    }
}

pub fn tags_for(env: &str, owner: &Owner, id: &LogicalId) -> Vec<(String, String)> {
    let mut tags = vec![
        (TAG_ENV.to_string(), env.to_string()),
        (TAG_ID.to_string(), id.to_string()),
        ("Name".to_string(), format!("{env}-{id}")),
    ];
    if !owner.lineage.is_empty() {
        tags.push((TAG_LINEAGE.to_string(), owner.lineage.clone()));
    }
    if !owner.origin.is_empty() {
        tags.push((TAG_ORIGIN.to_string(), owner.origin.clone()));
    }
    tags
}
