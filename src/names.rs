//! Every name the tool gives a cloud resource, built in one place and checked against the
//! rules AWS publishes for it.
//!
//! The builders ([`load_balancer`], [`target_group`], [`security_group`], ...) are what the
//! blueprint and the AWS adapters call. [`generated`] lists every name one configuration
//! produces and [`NameRule::check`] says whether AWS accepts it; `provision validate` (and so
//! `plan` and `apply`) runs both before any cloud call, so an environment name that would make
//! an invalid name somewhere — `lab-` gives the RDS identifier `lab--datastore`, `sg` the
//! security group `sg-sg-nodes`, `internal` the load balancer `internal-nlb` — is refused at
//! the `name` key instead of failing halfway through an apply.
//!
//! Only names the configuration really produces are checked: `internal` is a fine name for a
//! docker environment without a load balancer.

use crate::blueprint::ids;
use crate::config::{AccessMode, Config, Registry};

/// Prefix of the TXT record that marks a Route53 record as ours (records cannot be tagged).
pub const OWNER_MARKER_PREFIX: &str = "_provision-owner.";

/// The network load balancer: `<env>-nlb`.
pub fn load_balancer(env: &str) -> String {
    format!("{env}-nlb")
}

/// A target group: `<env>-tg-<port>`.
pub fn target_group(env: &str, port: u16) -> String {
    format!("{env}-tg-{port}")
}

/// A security group: `<env>-<logical id>` (`lab-sg-nodes`).
pub fn security_group(env: &str, id: &str) -> String {
    format!("{env}-{id}")
}

/// The imported key pair: `<env>-<logical id>` (`lab-key-pair`).
pub fn key_pair(env: &str, id: &str) -> String {
    format!("{env}-{id}")
}

/// The `Name` tag of a resource: `<env>-<logical id>`.
pub fn name_tag(env: &str, id: &str) -> String {
    format!("{env}-{id}")
}

/// An IAM role: `<env>-<region>-<logical id>` (`lab-us-east-1-ssm-role`). IAM is global:
/// the region keeps the same env name in two regions apart.
pub fn iam_role(env: &str, region: &str, id: &str) -> String {
    format!("{env}-{region}-{id}")
}

/// An IAM instance profile: `<env>-<region>-<logical id>` (`lab-us-east-1-ssm-profile`).
pub fn instance_profile(env: &str, region: &str, id: &str) -> String {
    format!("{env}-{region}-{id}")
}

/// The IAM path of every role and instance profile of an env: `/provision/<env>/`.
pub fn iam_path(env: &str) -> String {
    format!("/provision/{env}/")
}

/// The RDS instance identifier: `<env>-datastore`.
pub fn db_instance(env: &str) -> String {
    format!("{env}-datastore")
}

/// The DB subnet group: `<env>-db-subnets`.
pub fn db_subnet_group(env: &str) -> String {
    format!("{env}-db-subnets")
}

/// The snapshot RDS takes when the datastore is deleted: `<env>-final-<YYYYMMDD-HHMMSS>`,
/// unique per second.
pub fn final_snapshot(env: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    snapshot_with_stamp(env, &now.format("%Y%m%d-%H%M%S").to_string())
}

/// How a final snapshot identifier is shown before its time is known. It checks the same as
/// every real one: same length, letters and digits alike to every rule.
const SNAPSHOT_STAMP_SHAPE: &str = "YYYYMMDD-HHMMSS";

fn snapshot_with_stamp(env: &str, stamp: &str) -> String {
    format!("{env}-final-{stamp}")
}

/// The registry host's DNS name: `<env>-registry.<zone>`, or `registry.<hostname>` when
/// `dns.zone` is a hosted zone id (its name is unknown until the cloud is asked).
pub fn registry_record(env: &str, zone: &str, hostname: &str) -> String {
    if is_zone_id(zone) {
        format!("registry.{hostname}")
    } else {
        format!("{env}-registry.{}", zone.trim_end_matches('.'))
    }
}

/// The TXT record beside `record` that says which environment owns it.
pub fn owner_marker(record: &str) -> String {
    format!("{OWNER_MARKER_PREFIX}{record}")
}

fn is_zone_id(zone: &str) -> bool {
    !zone.contains('.')
        && zone
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// The kinds of names AWS constrains, each with its published rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Elastic Load Balancing `CreateLoadBalancer` `Name`.
    LoadBalancer,
    /// `CreateTargetGroup` `Name` (the same as a load balancer's, without the `internal-` rule).
    TargetGroup,
    /// EC2 `CreateSecurityGroup` `GroupName` (VPC).
    SecurityGroup,
    /// RDS `DBInstanceIdentifier`.
    DbInstance,
    /// RDS `FinalDBSnapshotIdentifier` / `DBSnapshotIdentifier`.
    DbSnapshot,
    /// RDS `DBSubnetGroupName`.
    DbSubnetGroup,
    /// EC2 `ImportKeyPair` `KeyName`.
    KeyPair,
    /// A tag value (`Name`).
    NameTag,
    /// A Route53 record name.
    DnsRecord,
    /// IAM `CreateRole` `RoleName`.
    IamRole,
    /// IAM `CreateInstanceProfile` `InstanceProfileName`.
    InstanceProfile,
    /// IAM `Path` of a role or instance profile.
    IamPath,
}

impl NameRule {
    /// What the name is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            NameRule::LoadBalancer => "load balancer name",
            NameRule::TargetGroup => "target group name",
            NameRule::SecurityGroup => "security group name",
            NameRule::DbInstance => "RDS instance identifier",
            NameRule::DbSnapshot => "RDS final snapshot identifier",
            NameRule::DbSubnetGroup => "DB subnet group name",
            NameRule::KeyPair => "key pair name",
            NameRule::NameTag => "Name tag",
            NameRule::DnsRecord => "Route53 record name",
            NameRule::IamRole => "IAM role name",
            NameRule::InstanceProfile => "IAM instance profile name",
            NameRule::IamPath => "IAM path",
        }
    }

    /// AWS's rule, in words.
    pub fn rule(self) -> &'static str {
        match self {
            NameRule::LoadBalancer => {
                "at most 32 letters, digits and hyphens, not beginning or ending with a hyphen, \
                 not beginning with \"internal-\""
            }
            NameRule::TargetGroup => {
                "at most 32 letters, digits and hyphens, not beginning or ending with a hyphen"
            }
            NameRule::SecurityGroup => {
                "at most 255 letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*, not beginning \
                 with \"sg-\""
            }
            NameRule::DbInstance => {
                "1 to 63 letters, digits and hyphens, beginning with a letter, with no two \
                 consecutive hyphens and no hyphen at the end"
            }
            NameRule::DbSnapshot => {
                "1 to 255 letters, digits and hyphens, beginning with a letter, with no two \
                 consecutive hyphens and no hyphen at the end"
            }
            NameRule::DbSubnetGroup => {
                "1 to 255 letters, digits, periods, underscores, spaces and hyphens, and not \
                 \"default\""
            }
            NameRule::KeyPair => "1 to 255 ASCII characters",
            NameRule::NameTag => "at most 256 characters",
            NameRule::DnsRecord => {
                "at most 253 characters, in dot-separated labels of 1 to 63 characters"
            }
            NameRule::IamRole => "1 to 64 letters, digits and _+=,.@-",
            NameRule::InstanceProfile => "1 to 128 letters, digits and _+=,.@-",
            NameRule::IamPath => {
                "1 to 512 printable ASCII characters without spaces, beginning and ending \
                 with \"/\""
            }
        }
    }

    /// `Ok` when AWS accepts `name`, else what breaks the rule (`contains "--"`).
    pub fn check(self, name: &str) -> Result<(), String> {
        let length = name.chars().count();
        let longer_than = |max: usize| -> Result<(), String> {
            if length > max {
                Err(format!("is {length} characters long (at most {max})"))
            } else {
                Ok(())
            }
        };
        let only = |allowed: &dyn Fn(char) -> bool| -> Result<(), String> {
            match name.chars().find(|&c| !allowed(c)) {
                Some(c) => Err(format!("contains {c:?}")),
                None => Ok(()),
            }
        };
        let fail = |broken: bool, reason: &str| -> Result<(), String> {
            if broken {
                Err(reason.to_string())
            } else {
                Ok(())
            }
        };
        let alnum_or =
            |extra: &'static str| move |c: char| c.is_ascii_alphanumeric() || extra.contains(c);

        if name.is_empty() && self != NameRule::NameTag {
            return Err("is empty".to_string());
        }
        match self {
            NameRule::LoadBalancer | NameRule::TargetGroup => {
                longer_than(32)?;
                only(&alnum_or("-"))?;
                fail(name.starts_with('-'), "begins with a hyphen")?;
                fail(name.ends_with('-'), "ends with a hyphen")?;
                fail(
                    self == NameRule::LoadBalancer && name.starts_with("internal-"),
                    "begins with \"internal-\"",
                )
            }
            NameRule::SecurityGroup => {
                longer_than(255)?;
                only(&alnum_or(" ._-:/()#,@[]+=&;{}!$*"))?;
                fail(
                    name.to_ascii_lowercase().starts_with("sg-"),
                    "begins with \"sg-\"",
                )
            }
            NameRule::DbInstance | NameRule::DbSnapshot => {
                longer_than(if self == NameRule::DbInstance {
                    63
                } else {
                    255
                })?;
                fail(
                    !name.starts_with(|c: char| c.is_ascii_alphabetic()),
                    "does not begin with a letter",
                )?;
                only(&alnum_or("-"))?;
                fail(
                    name.contains("--"),
                    "contains two consecutive hyphens \"--\"",
                )?;
                fail(name.ends_with('-'), "ends with a hyphen")
            }
            NameRule::DbSubnetGroup => {
                longer_than(255)?;
                only(&alnum_or("._ -"))?;
                fail(
                    name.eq_ignore_ascii_case("default"),
                    "is the reserved name \"default\"",
                )
            }
            NameRule::KeyPair => {
                longer_than(255)?;
                only(&|c: char| c.is_ascii())
            }
            NameRule::NameTag => longer_than(256),
            NameRule::IamRole | NameRule::InstanceProfile => {
                longer_than(if self == NameRule::IamRole { 64 } else { 128 })?;
                only(&alnum_or("_+=,.@-"))
            }
            NameRule::IamPath => {
                longer_than(512)?;
                only(&|c: char| ('\u{21}'..='\u{7e}').contains(&c))?;
                fail(
                    !name.starts_with('/') || !name.ends_with('/'),
                    "does not begin and end with \"/\"",
                )
            }
            NameRule::DnsRecord => {
                longer_than(253)?;
                match name.split('.').find(|l| l.is_empty() || l.len() > 63) {
                    Some("") => Err("has an empty label (\"..\" or a dot at an end)".to_string()),
                    Some(label) => Err(format!(
                        "has the label {label:?} of {} characters (at most 63)",
                        label.len()
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

/// One name a configuration makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub rule: NameRule,
    pub name: String,
    /// The config key the name is built from: `name`, or `hostname` for the names built
    /// around the Rancher hostname.
    pub key: &'static str,
}

impl Generated {
    /// `Some(message)` when AWS would refuse the name: the name, what breaks and the rule.
    pub fn violation(&self) -> Option<String> {
        let reason = self.rule.check(&self.name).err()?;
        Some(format!(
            "makes the {} {:?}, which AWS refuses: it {reason}; {}s must be {}",
            self.rule.what(),
            self.name,
            self.rule.what(),
            self.rule.rule()
        ))
    }
}

/// What a configuration decides about the names it makes. Built by the config check from
/// the values it has read so far, and from a resolved [`Config`] by [`Inputs::of`].
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub env: &'a str,
    /// Listener / target group ports; `None` without a load balancer.
    pub load_balancer_ports: Option<Vec<u16>>,
    /// k3s: RDS instance, DB subnet group, datastore security group, final snapshot.
    pub datastore: bool,
    /// A registry host of this env: its security group and DNS record.
    pub node_registry: bool,
    /// `[access] mode = "ssm"`, with the region: the endpoints' security group, the IAM
    /// role and instance profile.
    pub ssm: Option<&'a str>,
    /// `nodes.ssh_public_key` is set: a key pair is imported.
    pub key_pair: bool,
    /// `(dns.zone, hostname)`.
    pub dns: Option<(&'a str, &'a str)>,
}

impl<'a> Inputs<'a> {
    pub fn of(cfg: &'a Config) -> Self {
        Inputs {
            env: &cfg.name,
            load_balancer_ports: cfg.load_balancer.as_ref().map(|lb| {
                let mut ports = load_balancer_ports(lb.kube_api);
                if lb.supervisor {
                    ports.push(crate::config::SUPERVISOR_PORT);
                }
                ports
            }),
            datastore: cfg.datastore.is_some(),
            node_registry: matches!(cfg.registry, Registry::Node { .. }),
            ssm: (cfg.access == AccessMode::Ssm).then_some(cfg.region.as_str()),
            key_pair: cfg.nodes.ssh_public_key_text.is_some(),
            dns: Some((&cfg.dns.zone, &cfg.hostname)),
        }
    }
}

/// The ports a load balancer forwards (the blueprint's listeners and target groups).
pub fn load_balancer_ports(kube_api: bool) -> Vec<u16> {
    let mut ports = vec![80, 443];
    if kube_api {
        ports.push(6443);
    }
    ports
}

/// Every constrained name the configuration makes.
pub fn generated(inputs: &Inputs) -> Vec<Generated> {
    let env = inputs.env;
    let mut out = Vec::new();
    let mut add = |rule, name: String, key| out.push(Generated { rule, name, key });

    let mut tagged: Vec<String> = vec![ids::VPC.to_string(), ids::SG_NODES.to_string()];
    add(
        NameRule::SecurityGroup,
        security_group(env, ids::SG_NODES),
        "name",
    );
    if inputs.node_registry {
        add(
            NameRule::SecurityGroup,
            security_group(env, ids::SG_BASTION),
            "name",
        );
        tagged.extend([ids::SG_BASTION.to_string(), ids::REGISTRY.to_string()]);
    }
    if inputs.key_pair {
        add(NameRule::KeyPair, key_pair(env, ids::KEY_PAIR), "name");
        tagged.push(ids::KEY_PAIR.to_string());
    }
    if let Some(ports) = &inputs.load_balancer_ports {
        add(
            NameRule::SecurityGroup,
            security_group(env, ids::SG_LB),
            "name",
        );
        add(NameRule::LoadBalancer, load_balancer(env), "name");
        tagged.extend([ids::SG_LB.to_string(), ids::NLB.to_string()]);
        for port in ports {
            add(NameRule::TargetGroup, target_group(env, *port), "name");
            tagged.extend([ids::target_group(*port), ids::listener(*port)]);
        }
    }
    if inputs.datastore {
        add(
            NameRule::SecurityGroup,
            security_group(env, ids::SG_DATASTORE),
            "name",
        );
        add(NameRule::DbInstance, db_instance(env), "name");
        add(NameRule::DbSubnetGroup, db_subnet_group(env), "name");
        add(
            NameRule::DbSnapshot,
            snapshot_with_stamp(env, SNAPSHOT_STAMP_SHAPE),
            "name",
        );
        tagged.extend([ids::SG_DATASTORE.to_string(), ids::DB_SUBNETS.to_string()]);
        tagged.push(ids::DATASTORE.to_string());
    }
    if let Some(region) = inputs.ssm {
        add(
            NameRule::SecurityGroup,
            security_group(env, ids::SG_ENDPOINTS),
            "name",
        );
        add(
            NameRule::IamRole,
            iam_role(env, region, ids::SSM_ROLE),
            "name",
        );
        add(
            NameRule::InstanceProfile,
            instance_profile(env, region, ids::SSM_PROFILE),
            "name",
        );
        add(NameRule::IamPath, iam_path(env), "name");
        tagged.push(ids::SG_ENDPOINTS.to_string());
        tagged.extend(ids::SSM_SERVICES.iter().map(|s| ids::endpoint(s)));
    }
    for id in &tagged {
        add(NameRule::NameTag, name_tag(env, id), "name");
    }
    if let Some((zone, hostname)) = inputs.dns {
        add(NameRule::DnsRecord, owner_marker(hostname), "hostname");
        if inputs.node_registry {
            let record = registry_record(env, zone, hostname);
            let key = if is_zone_id(zone) { "hostname" } else { "name" };
            add(NameRule::DnsRecord, owner_marker(&record), key);
            add(NameRule::DnsRecord, record, key);
        }
    }
    out
}

/// The generated names AWS would refuse, each with its message.
pub fn violations(inputs: &Inputs) -> Vec<(Generated, String)> {
    generated(inputs)
        .into_iter()
        .filter_map(|g| g.violation().map(|message| (g, message)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything a configuration can make: k3s with a key pair and a node registry.
    fn all(env: &str) -> Inputs<'_> {
        Inputs {
            env,
            load_balancer_ports: Some(load_balancer_ports(true)),
            datastore: true,
            node_registry: true,
            ssm: Some("us-east-1"),
            key_pair: true,
            dns: Some(("lab.example.com", "rancher.lab.example.com")),
        }
    }

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2025-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn builders_make_the_documented_names() {
        assert_eq!(load_balancer("lab"), "lab-nlb");
        assert_eq!(target_group("lab", 443), "lab-tg-443");
        assert_eq!(security_group("lab", "sg-nodes"), "lab-sg-nodes");
        assert_eq!(key_pair("lab", "key-pair"), "lab-key-pair");
        assert_eq!(name_tag("lab", "node-1"), "lab-node-1");
        assert_eq!(db_instance("lab"), "lab-datastore");
        assert_eq!(db_subnet_group("lab"), "lab-db-subnets");
        assert_eq!(final_snapshot("lab", at()), "lab-final-20250304-050607");
        assert_eq!(
            registry_record("lab", "lab.example.com.", "rancher.lab.example.com"),
            "lab-registry.lab.example.com"
        );
        assert_eq!(
            registry_record("lab", "Z0123456789ABCDEFGHIJ", "rancher.lab.example.com"),
            "registry.rancher.lab.example.com"
        );
        assert_eq!(
            owner_marker("rancher.lab.example.com"),
            "_provision-owner.rancher.lab.example.com"
        );
    }

    fn assert_rule(rule: NameRule, good: &[&str], bad: &[(&str, &str)]) {
        for name in good {
            assert_eq!(rule.check(name), Ok(()), "{rule:?} {name:?}");
        }
        for (name, reason) in bad {
            let error = rule.check(name).expect_err(&format!("{rule:?} {name:?}"));
            assert!(error.contains(reason), "{rule:?} {name:?}: {error}");
        }
    }

    #[test]
    fn load_balancer_rule() {
        assert_rule(
            NameRule::LoadBalancer,
            &[
                "lab-nlb",
                "A1-b2",
                &"a".repeat(32),
                "internal",
                "my-internal-nlb",
            ],
            &[
                (&"a".repeat(33), "33 characters"),
                ("-lab", "begins with a hyphen"),
                ("lab-", "ends with a hyphen"),
                ("internal-nlb", "internal-"),
                ("lab_nlb", "'_'"),
                ("lab.nlb", "'.'"),
                ("", "empty"),
            ],
        );
    }

    #[test]
    fn target_group_rule() {
        assert_rule(
            NameRule::TargetGroup,
            // CreateTargetGroup has no `internal-` rule.
            &["lab-tg-443", &"b".repeat(32), "internal-tg-80"],
            &[
                (&"b".repeat(33), "33 characters"),
                ("-tg", "begins with a hyphen"),
                ("tg-", "ends with a hyphen"),
                ("lab tg", "' '"),
            ],
        );
    }

    #[test]
    fn security_group_rule() {
        assert_rule(
            NameRule::SecurityGroup,
            &[
                "lab-sg-nodes",
                "a b._-:/()#,@[]+=&;{}!$*",
                &"s".repeat(255),
                "xsg-",
            ],
            &[
                ("sg-sg-nodes", "begins with \"sg-\""),
                ("SG-nodes", "begins with \"sg-\""),
                (&"s".repeat(256), "256 characters"),
                ("lab\u{e9}", "'\u{e9}'"),
                ("lab%", "'%'"),
            ],
        );
    }

    #[test]
    fn rds_identifier_rules() {
        assert_rule(
            NameRule::DbInstance,
            &["lab-datastore", "a", "A1-b", &"d".repeat(63)],
            &[
                ("lab--datastore", "\"--\""),
                ("a--b-datastore", "\"--\""),
                ("lab-", "ends with a hyphen"),
                ("1lab", "begin with a letter"),
                ("-lab", "begin with a letter"),
                ("lab_db", "'_'"),
                (&"d".repeat(64), "64 characters"),
                ("", "empty"),
            ],
        );
        assert_rule(
            NameRule::DbSnapshot,
            &["lab-final-20250304-050607", &"s".repeat(255)],
            &[
                (&"s".repeat(256), "256 characters"),
                ("lab--final-20250304-050607", "\"--\""),
                ("9lab", "begin with a letter"),
                ("lab-final-", "ends with a hyphen"),
            ],
        );
    }

    #[test]
    fn db_subnet_group_rule() {
        assert_rule(
            NameRule::DbSubnetGroup,
            &[
                "lab-db-subnets",
                "a.b_c d-e",
                &"g".repeat(255),
                "lab--db-subnets",
            ],
            &[
                ("default", "reserved"),
                ("Default", "reserved"),
                ("lab/db", "'/'"),
                (&"g".repeat(256), "256 characters"),
                ("", "empty"),
            ],
        );
    }

    #[test]
    fn key_pair_name_tag_and_dns_rules() {
        assert_rule(
            NameRule::KeyPair,
            &["lab-key-pair", "any ascii !@#", &"k".repeat(255)],
            &[
                (&"k".repeat(256), "256 characters"),
                ("lab-\u{e9}", "'\u{e9}'"),
            ],
        );
        assert_rule(
            NameRule::NameTag,
            &["lab-vpc", "", &"n".repeat(256)],
            &[(&"n".repeat(257), "257 characters")],
        );
        let long_label = format!("{}.example.com", "l".repeat(64));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert_rule(
            NameRule::DnsRecord,
            &[
                "_provision-owner.rancher.lab.example.com",
                &format!("{}.example.com", "l".repeat(63)),
            ],
            &[
                (&long_label, "64 characters"),
                (&long_name, "characters long (at most 253)"),
                ("a..b", "empty label"),
            ],
        );
    }

    #[test]
    fn iam_rules() {
        assert_rule(
            NameRule::IamRole,
            &["lab-us-east-1-ssm-role", "a_b+c=d,e.f@g-h", &"r".repeat(64)],
            &[
                (&"r".repeat(65), "65 characters"),
                ("lab/role", "'/'"),
                ("lab role", "' '"),
                ("", "empty"),
            ],
        );
        assert_rule(
            NameRule::InstanceProfile,
            &["lab-us-east-1-ssm-profile", &"p".repeat(128)],
            &[(&"p".repeat(129), "129 characters"), ("lab:p", "':'")],
        );
        assert_rule(
            NameRule::IamPath,
            &["/provision/lab/", "/"],
            &[
                ("provision/lab/", "begin and end"),
                ("/provision/lab", "begin and end"),
                ("/provision lab/", "' '"),
                (&format!("/{}/", "p".repeat(511)), "513 characters"),
            ],
        );
        assert_eq!(
            iam_role("lab", "us-east-1", "ssm-role"),
            "lab-us-east-1-ssm-role"
        );
        assert_eq!(
            instance_profile("lab", "eu-west-1", "ssm-profile"),
            "lab-eu-west-1-ssm-profile"
        );
        assert_eq!(iam_path("lab"), "/provision/lab/");
        // The longest env name in the longest region name still fits.
        let longest = iam_role(&"e".repeat(21), "ap-southeast-4", ids::SSM_PROFILE);
        assert_eq!(NameRule::IamRole.check(&longest), Ok(()), "{longest}");
    }

    fn violating(inputs: &Inputs) -> Vec<(NameRule, String)> {
        violations(inputs)
            .into_iter()
            .map(|(g, _)| (g.rule, g.name))
            .collect()
    }

    #[test]
    fn the_issue_examples_are_caught() {
        assert_eq!(
            violating(&all("lab-")),
            vec![
                (NameRule::DbInstance, "lab--datastore".to_string()),
                (
                    NameRule::DbSnapshot,
                    "lab--final-YYYYMMDD-HHMMSS".to_string()
                ),
            ]
        );
        assert_eq!(
            violating(&all("a--b")),
            vec![
                (NameRule::DbInstance, "a--b-datastore".to_string()),
                (
                    NameRule::DbSnapshot,
                    "a--b-final-YYYYMMDD-HHMMSS".to_string()
                ),
            ]
        );
        let sg: Vec<_> = violating(&all("sg"));
        assert_eq!(sg.len(), 5, "{sg:?}");
        assert!(sg
            .iter()
            .all(|(rule, name)| *rule == NameRule::SecurityGroup && name.starts_with("sg-sg-")));
        assert_eq!(
            violating(&all("internal")),
            vec![(NameRule::LoadBalancer, "internal-nlb".to_string())]
        );
        assert!(violating(&all("lab")).is_empty());
    }

    #[test]
    fn only_the_names_a_config_makes_are_checked() {
        // Docker without a load balancer makes no load balancer name.
        let mut docker = all("internal");
        docker.load_balancer_ports = None;
        docker.datastore = false;
        assert!(violating(&docker).is_empty());
        // rke has no datastore: "lab-" makes no RDS identifier.
        let mut rke = all("lab-");
        rke.datastore = false;
        assert!(violating(&rke).is_empty());
        // No node registry, no sg-registry; no load balancer, no sg-lb.
        let mut bare = all("sg");
        bare.load_balancer_ports = None;
        bare.datastore = false;
        bare.node_registry = false;
        bare.ssm = None;
        assert_eq!(
            violating(&bare),
            vec![(NameRule::SecurityGroup, "sg-sg-nodes".to_string())]
        );
    }

    #[test]
    fn every_kind_of_name_is_generated_once_all_features_are_on() {
        let names = generated(&all("lab"));
        let has =
            |rule: NameRule, name: &str| names.iter().any(|g| g.rule == rule && g.name == name);
        assert!(has(NameRule::LoadBalancer, "lab-nlb"));
        for port in [80, 443, 6443] {
            assert!(has(NameRule::TargetGroup, &format!("lab-tg-{port}")));
        }
        for sg in ["sg-nodes", "sg-registry", "sg-lb", "sg-datastore"] {
            assert!(has(NameRule::SecurityGroup, &format!("lab-{sg}")));
        }
        assert!(has(NameRule::DbInstance, "lab-datastore"));
        assert!(has(NameRule::DbSubnetGroup, "lab-db-subnets"));
        assert!(has(NameRule::DbSnapshot, "lab-final-YYYYMMDD-HHMMSS"));
        assert!(has(NameRule::KeyPair, "lab-key-pair"));
        assert!(has(NameRule::SecurityGroup, "lab-sg-endpoints"));
        assert!(has(NameRule::IamRole, "lab-us-east-1-ssm-role"));
        assert!(has(NameRule::InstanceProfile, "lab-us-east-1-ssm-profile"));
        assert!(has(NameRule::IamPath, "/provision/lab/"));
        assert!(has(NameRule::NameTag, "lab-vpce-ssmmessages"));
        assert!(has(NameRule::NameTag, "lab-vpc"));
        assert!(has(NameRule::DnsRecord, "lab-registry.lab.example.com"));
        assert!(has(
            NameRule::DnsRecord,
            "_provision-owner.lab-registry.lab.example.com"
        ));
        assert!(has(
            NameRule::DnsRecord,
            "_provision-owner.rancher.lab.example.com"
        ));
    }

    #[test]
    fn dns_names_are_attributed_to_the_key_they_come_from() {
        let mut inputs = all("lab");
        // 248 characters: a valid hostname, but its owner marker is 265.
        let long_host = format!(
            "{}.{}.lab.example.com",
            vec!["h".repeat(63); 3].join("."),
            "h".repeat(40)
        );
        inputs.dns = Some(("lab.example.com", &long_host));
        let found = violations(&inputs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0.key, "hostname");
        assert!(found[0].0.name.starts_with("_provision-owner."));
        // With a zone id the registry record hangs off the hostname.
        inputs.dns = Some(("Z0123456789ABCDEFGHIJ", &long_host));
        let keys: Vec<&str> = violations(&inputs).iter().map(|(g, _)| g.key).collect();
        assert_eq!(keys, vec!["hostname"; 3]);
    }

    #[test]
    fn violation_message_names_the_generated_name_and_the_rule() {
        let (_, message) = violations(&all("internal")).remove(0);
        assert_eq!(
            message,
            "makes the load balancer name \"internal-nlb\", which AWS refuses: it begins with \
             \"internal-\"; load balancer names must be at most 32 letters, digits and \
             hyphens, not beginning or ending with a hyphen, not beginning with \"internal-\""
        );
        let snapshot = violations(&all("lab-")).remove(1).1;
        assert!(
            snapshot.contains("\"lab--final-YYYYMMDD-HHMMSS\"")
                && snapshot.contains("RDS final snapshot identifiers must be 1 to 255"),
            "{snapshot}"
        );
    }

    // ---- the blueprint's own resources ---------------------------------------------------

    /// The names the AWS adapters give the resources of `cfg`'s blueprint, read off the
    /// resource graph itself (not off [`generated`]), so a resource the blueprint gains
    /// is not silently left unchecked. Needs no real registry secrets.
    fn names_from_blueprint(cfg: &Config) -> Vec<(NameRule, String)> {
        use crate::blueprint::{self, RegistryPlan};
        use crate::model::Spec;
        use crate::render::{RegistryAccess, RegistrySecrets};
        let placeholder = || "x".to_string();
        let secrets = RegistrySecrets {
            ca_cert_pem: placeholder(),
            ca_key_pem: placeholder(),
            server_cert_pem: placeholder(),
            server_key_pem: placeholder(),
            username: placeholder(),
            password: placeholder(),
            htpasswd_line: placeholder(),
            server_cert_not_after: 0,
        };
        let plan = RegistryPlan {
            host: blueprint::registry_host_name(cfg),
            access: RegistryAccess {
                host_port: blueprint::registry_host_port(cfg),
                username: placeholder(),
                password: placeholder(),
                ca_pem: None,
            },
            secrets: matches!(cfg.registry, Registry::Node { .. }).then_some(secrets),
        };
        let desired = blueprint::build(cfg, &plan).expect("blueprint builds");
        let env = cfg.name.as_str();
        let mut out = Vec::new();
        for (id, spec) in &desired.resources {
            let id = id.as_str();
            out.push((NameRule::NameTag, name_tag(env, id)));
            match spec {
                Spec::SecurityGroup(_) => {
                    out.push((NameRule::SecurityGroup, security_group(env, id)));
                }
                Spec::KeyPair(_) => out.push((NameRule::KeyPair, key_pair(env, id))),
                Spec::LoadBalancer(_) => out.push((NameRule::LoadBalancer, load_balancer(env))),
                Spec::TargetGroup(tg) => out.push((NameRule::TargetGroup, tg.name.clone())),
                Spec::Database(_) => {
                    out.push((NameRule::DbInstance, db_instance(env)));
                    out.push((
                        NameRule::DbSnapshot,
                        final_snapshot(env, chrono::Utc::now()),
                    ));
                }
                Spec::DbSubnetGroup(_) => {
                    out.push((NameRule::DbSubnetGroup, db_subnet_group(env)));
                }
                Spec::DnsRecord(record) => {
                    out.push((NameRule::DnsRecord, record.name.clone()));
                    out.push((NameRule::DnsRecord, owner_marker(&record.name)));
                }
                Spec::IamRole(role) => {
                    out.push((NameRule::IamRole, role.name.clone()));
                    out.push((NameRule::IamPath, role.path.clone()));
                }
                Spec::InstanceProfile(profile) => {
                    out.push((NameRule::InstanceProfile, profile.name.clone()));
                    out.push((NameRule::IamPath, profile.path.clone()));
                }
                _ => {}
            }
        }
        out
    }

    fn config(
        name: &str,
        topology: &str,
        rest: &str,
    ) -> Result<Config, crate::config::ConfigError> {
        let text = format!(
            "name = {name:?}\nregion = \"us-east-1\"\ntopology = \"{topology}\"\n\
             hostname = \"rancher.lab.example.com\"\n[nodes]\nami = \"ami-0123456789abcdef0\"\n\
             {rest}[dns]\nzone = \"lab.example.com\"\n"
        );
        crate::config::parse_str(&text, std::path::Path::new("provision.toml"))
    }

    #[test]
    fn the_config_check_covers_every_name_the_blueprint_makes() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id.pub");
        std::fs::write(
            &key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq1xK3cCjZ9gmCGY1e7lqf0K9dH5qN0oY1Qm0Cj9n7c",
        )
        .unwrap();
        let with_key = format!("ssh_public_key = {:?}\n", key.display().to_string());
        let external = "[registry]\nmode = \"external\"\nurl = \"registry.corp.example:5000\"\n";
        for (topology, rest) in [
            ("k3s", with_key.as_str()),
            ("k3s", "[load_balancer]\nkube_api = false\n"),
            ("rke", ""),
            ("docker", ""),
            ("docker", "[load_balancer]\nenabled = false\n"),
            (
                "docker",
                &format!("[load_balancer]\nenabled = false\n{external}"),
            ),
            ("k3s", "[access]\nmode = \"ssm\"\n"),
            ("rke2", "[access]\nmode = \"ssm\"\n"),
            ("docker", &format!("{external}[access]\nmode = \"ssm\"\n")),
        ] {
            let cfg = config("lab", topology, rest).unwrap();
            let checked = generated(&Inputs::of(&cfg));
            for (rule, name) in names_from_blueprint(&cfg) {
                if rule == NameRule::NameTag || name == cfg.hostname {
                    // Name tags of every resource are checked below; the hostname is
                    // checked as a DNS name where it is read.
                    continue;
                }
                let name = if rule == NameRule::DbSnapshot {
                    snapshot_with_stamp(&cfg.name, SNAPSHOT_STAMP_SHAPE)
                } else {
                    name
                };
                assert!(
                    checked.iter().any(|g| g.rule == rule && g.name == name),
                    "{topology} {rest:?}: the blueprint makes the {} {name:?}, which the \
                     config check does not look at",
                    rule.what()
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// For any environment name the config accepts, every name the blueprint's
        /// resources get is one AWS accepts.
        #[test]
        fn accepted_env_names_make_valid_names_for_every_blueprint_resource(
            name in proptest::prop_oneof![
                "[a-z][a-z0-9-]{1,20}",
                "(sg|internal|ab)-{0,2}[a-z0-9-]{0,8}-{0,2}",
            ],
            topology in proptest::prop_oneof!["k3s", "rke", "docker"],
            lb in proptest::prelude::any::<bool>(),
            ssm in proptest::prelude::any::<bool>(),
        ) {
            let rest = if lb { "" } else { "[load_balancer]\nenabled = false\n" };
            let rest = if topology == "docker" { rest } else { "" };
            let access = if ssm && topology != "rke" { "[access]\nmode = \"ssm\"\n" } else { "" };
            let rest = format!("{rest}{access}");
            let rest = rest.as_str();
            if let Ok(cfg) = config(&name, &topology, rest) {
                for (rule, made) in names_from_blueprint(&cfg) {
                    proptest::prop_assert_eq!(rule.check(&made), Ok(()), "{:?} {}", rule, made);
                }
            }
        }
    }
}
