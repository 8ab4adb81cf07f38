//! The schema: which keys each table accepts, their defaults per topology, and the checks
//! that span several keys. Reads a parsed document and produces a [`Config`] or problems.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

use super::checks::{self, EngineVersion};
use super::reader::{Doc, Located, Table};
use super::types::{
    AccessMode, Config, Datastore, DatastoreEngine, Dns, LoadBalancer, Network, Nodes, Rancher,
    RecordType, Registry, S3State, StateBackend, Timeouts, Topology,
};
use crate::model::{DbEngine, Scheme};
use crate::names;

const TOP_KEYS: &[&str] = &[
    "name",
    "region",
    "topology",
    "hostname",
    "network",
    "nodes",
    "datastore",
    "load_balancer",
    "dns",
    "registry",
    "timeouts",
    "rancher",
    "state",
    "access",
];
const NETWORK_KEYS: &[&str] = &["vpc_cidr", "zones", "admin_cidrs"];
const NODES_KEYS: &[&str] = &[
    "count",
    "instance_type",
    "ami",
    "root_volume_gb",
    "ssh_public_key",
    "ssh_user",
];
const DATASTORE_KEYS: &[&str] = &[
    "engine",
    "engine_version",
    "instance_class",
    "storage_gb",
    "database",
    "username",
    "backup_retention_days",
];
/// The keys that configure an RDS datastore (not embedded etcd).
const DATASTORE_RDS_KEYS: &[&str] = &[
    "engine_version",
    "instance_class",
    "storage_gb",
    "database",
    "username",
    "backup_retention_days",
];
const RANCHER_KEYS: &[&str] = &["version"];
const STATE_KEYS: &[&str] = &["backend", "bucket", "key", "region", "kms_key_id"];
/// The `[state]` keys only the S3 backend reads.
const STATE_S3_KEYS: &[&str] = &["bucket", "key", "region", "kms_key_id"];
const ACCESS_KEYS: &[&str] = &["mode"];
/// The Rancher release the artifacts follow by default: the first 2.14 release (2.14 is the
/// newest released line late 2026; set `[rancher] version` to the newest patch you use).
pub(crate) const DEFAULT_RANCHER_VERSION: &str = "2.14.0";
const LOAD_BALANCER_KEYS: &[&str] = &["scheme", "kube_api", "enabled"];
const DNS_KEYS: &[&str] = &["zone", "private_zone", "ttl", "record_type"];
const REGISTRY_NODE_KEYS: &[&str] = &["instance_type", "volume_gb", "port"];
const REGISTRY_EXTERNAL_KEYS: &[&str] = &["url", "ca_file"];
const TIMEOUT_KEYS: &[&str] = &[
    "poll_seconds",
    "instance_minutes",
    "database_minutes",
    "load_balancer_minutes",
    "dns_minutes",
    "dependency_minutes",
];

/// Longest wait any single timeout may ask for.
const MAX_TIMEOUT_MINUTES: f64 = 1440.0;
const MAX_POLL_SECONDS: f64 = 300.0;
const MAX_NODES: i64 = 9;

pub(crate) const DEFAULT_VPC_CIDR: &str = "10.42.0.0/16";

/// Resolves `root` into a [`Config`]; every problem found is recorded in `doc`. The
/// returned value is only meaningful when `doc` holds no problems.
pub(crate) fn resolve(doc: &mut Doc, root: &DeTable, path: &Path) -> Option<Config> {
    let root = Table::root(root);
    root.check_keys(doc, TOP_KEYS);
    let base = path.parent().unwrap_or(Path::new(""));

    let name = required(doc, &root, "name", "\"lab\"")
        .and_then(|name| checked(doc, name, checks::environment_name));
    let region = required(doc, &root, "region", "\"us-east-1\"")
        .and_then(|region| checked(doc, region, checks::region));
    let topology = required(doc, &root, "topology", "\"k3s\"").and_then(|topology| {
        let parsed = match topology.value.as_str() {
            "k3s" => Some(Topology::K3s),
            "rke" => Some(Topology::Rke),
            "docker" => Some(Topology::Docker),
            "rke2" => Some(Topology::Rke2),
            _ => None,
        };
        if parsed.is_none() {
            doc.problem(
                &topology.span,
                &topology.key,
                format!(
                    "expected \"k3s\", \"rke2\", \"rke\" or \"docker\" (got {:?})",
                    topology.value
                ),
            );
        }
        parsed
    });
    let hostname = required(doc, &root, "hostname", "\"rancher.lab.example.com\"")
        .and_then(|host| checked(doc, host, |h| checks::dns_name(h, 2)));

    // The engine shapes the node count and zone checks, which come first in the file's
    // usual order; it is checked (and reported) where [datastore] is read.
    let engine = peek_engine(&root);
    let network = network(doc, &root, topology, engine);
    let nodes = nodes(doc, &root, topology, engine, base);
    let datastore = datastore(doc, &root, topology);
    let load_balancer = load_balancer(doc, &root, topology);
    let dns = dns(doc, &root, hostname.as_ref(), load_balancer.is_some());
    let registry = registry(doc, &root, base);
    let timeouts = timeouts(doc, &root);
    let rancher = rancher(doc, &root);
    let state = state_backend(
        doc,
        &root,
        name.as_ref().map(|n| n.value.as_str()),
        region.as_ref().map(|r| r.value.as_str()),
    );
    let access = access(doc, &root, topology);

    if let (Some(host), Some(dns)) = (&hostname, &dns) {
        let zone = &dns.zone;
        let inside = host.value == *zone || host.value.ends_with(&format!(".{zone}"));
        if !checks::is_hosted_zone_id(zone) && !inside {
            doc.problem(
                &host.span,
                &host.key,
                format!(
                    "{:?} is not inside the DNS zone {zone:?} (dns.zone); use a name ending \
                     in .{zone}",
                    host.value
                ),
            );
        }
    }

    if let (Some(name), Some(_)) = (&name, topology) {
        let inputs = names::Inputs {
            env: &name.value,
            load_balancer_ports: load_balancer.as_ref().map(|lb| {
                let mut ports = names::load_balancer_ports(lb.kube_api);
                if lb.supervisor {
                    ports.push(SUPERVISOR_PORT);
                }
                ports
            }),
            datastore: datastore.is_some(),
            node_registry: matches!(registry, Registry::Node { .. }),
            ssm: (access == AccessMode::Ssm).then_some(
                region
                    .as_ref()
                    .map_or(DEFAULT_REGION_FOR_NAMES, |r| r.value.as_str()),
            ),
            key_pair: nodes
                .as_ref()
                .is_some_and(|n| n.ssh_public_key_text.is_some()),
            dns: dns
                .as_ref()
                .zip(hostname.as_ref())
                .map(|(dns, host)| (dns.zone.as_str(), host.value.as_str())),
        };
        for (generated, message) in names::violations(&inputs) {
            let source = match &hostname {
                Some(host) if generated.key == "hostname" => host,
                _ => name,
            };
            doc.problem(
                &source.span,
                &source.key,
                format!("{:?} {message}", source.value),
            );
        }
    }

    let mut warnings = Vec::new();
    if network.admin_cidrs.iter().any(|c| c.prefix_len() == 0) {
        warnings.push(
            "network.admin_cidrs contains 0.0.0.0/0: SSH on the bastion, the registry (with \
             its password as the only guard) and the load balancer open to the whole \
             internet; list your own addresses instead"
                .to_string(),
        );
    }
    let no_key = nodes
        .as_ref()
        .is_some_and(|n| n.ssh_public_key_text.is_none());
    if no_key && access == AccessMode::Bastion {
        warnings.push(format!(
            "no SSH key: nodes.ssh_public_key is not set and none of {} exists, and \
             [access] mode is \"bastion\": nobody could log in to the machines. Set \
             nodes.ssh_public_key (adding it later does not re-key running nodes: EC2 sets \
             keys at launch) or use [access] mode = \"ssm\"",
            DEFAULT_SSH_KEYS.join(" or ")
        ));
    }
    if network.admin_cidrs.is_empty() {
        warnings.push(
            "network.admin_cidrs is empty: only hosts inside the VPC can reach the bastion, \
             registry and load balancer"
                .to_string(),
        );
    }
    if topology == Some(Topology::Rke) {
        warnings.push(
            "topology \"rke\" is RKE1, end of life since 31 July 2025: Rancher 2.12 and later \
             no longer manage RKE1 clusters and the rke CLI gets no more releases; use \
             topology = \"rke2\" for a new environment"
                .to_string(),
        );
        if rancher.minor >= 12 {
            warnings.push(format!(
                "[rancher] version = \"{}\" cannot run on this RKE1 cluster: Rancher 2.12 \
                 removed RKE1 (its support matrix lists K3s and RKE2 for the cluster Rancher \
                 runs on). Rancher 2.11, 2.10 and 2.9 run on RKE1 (set version to the 2.11 \
                 patch you install, such as \"2.11.0\"), or use topology = \"rke2\" for {}",
                rancher.version, rancher.version
            ));
        }
    }
    if matches!(topology, Some(Topology::Rke | Topology::Docker)) {
        warnings.push(format!(
            "topology \"{}\" runs on Docker, which an air-gapped node cannot install: \
             nodes.ami must be an image that already carries Docker (a version {} \
             supports), with the node user in the docker group",
            topology.map_or("", |t| t.as_str()),
            if topology == Some(Topology::Rke) {
                "RKE1"
            } else {
                "Rancher's single-node install"
            }
        ));
    }
    if let Some(datastore) = &datastore {
        let (checked, default) = match datastore.engine {
            DbEngine::Mysql => (
                checks::mysql_version(&datastore.engine_version),
                checks::DEFAULT_MYSQL_VERSION,
            ),
            DbEngine::Postgres => (
                checks::postgres_version(&datastore.engine_version),
                checks::DEFAULT_POSTGRES_VERSION,
            ),
        };
        let engine = datastore.engine.display_name();
        let version = &datastore.engine_version;
        match checked {
            Ok(EngineVersion::ExtendedSupport(since)) => warnings.push(format!(
                "datastore.engine_version = {version:?}: {engine} {version} left RDS standard \
                 support on {since}; RDS bills it as Extended Support (a surcharge per \
                 vCPU-hour on top of the instance price); prefer {default:?}"
            )),
            Ok(EngineVersion::NotTestedWithK3s) => warnings.push(format!(
                "datastore.engine_version = {version:?}: {engine} {version} is not in K3s's \
                 list of tested datastores (PostgreSQL 12 to 15); {default:?} is"
            )),
            _ => {}
        }
    }

    Some(Config {
        path: path.to_path_buf(),
        name: name?.value,
        region: region?.value,
        topology: topology?,
        hostname: hostname?.value,
        network,
        nodes: nodes?,
        datastore,
        load_balancer,
        dns: dns?,
        registry,
        timeouts,
        rancher,
        state: state?,
        access,
        warnings,
    })
}

/// A required string; a missing one is reported at the table that should hold it.
fn required(doc: &mut Doc, table: &Table, key: &str, example: &str) -> Option<Located<String>> {
    if table.key_span(key).is_none() {
        let placement = if table.exists() {
            String::new()
        } else if let Some((section, _)) = table.key_path(key).rsplit_once('.') {
            format!(" under [{section}]")
        } else {
            String::new()
        };
        doc.problem(
            &table.span,
            &table.key_path(key),
            format!("required key is missing; add it{placement}, for example {key} = {example}"),
        );
        return None;
    }
    let value = table.string(doc, key)?;
    if value.value.trim().is_empty() {
        doc.problem(&value.span, &value.key, "must not be empty");
        return None;
    }
    Some(value)
}

/// Keeps `value` if `check` accepts it, else reports the check's message.
fn checked(
    doc: &mut Doc,
    value: Located<String>,
    check: impl FnOnce(&str) -> Result<(), String>,
) -> Option<Located<String>> {
    match check(&value.value) {
        Ok(()) => Some(value),
        Err(message) => {
            doc.problem(&value.span, &value.key, message);
            None
        }
    }
}

/// An optional checked string, or `default`.
fn string_or(
    doc: &mut Doc,
    table: &Table,
    key: &str,
    default: &str,
    check: impl FnOnce(&str) -> Result<(), String>,
) -> String {
    table
        .string(doc, key)
        .and_then(|value| checked(doc, value, check))
        .map_or_else(|| default.to_string(), |value| value.value)
}

fn integer_or(
    doc: &mut Doc,
    table: &Table,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    default: u32,
) -> u32 {
    table
        .integer(doc, key, range)
        .and_then(|value| u32::try_from(value.value).ok())
        .unwrap_or(default)
}

/// One of a fixed set of words.
fn choice<T: Copy>(
    doc: &mut Doc,
    table: &Table,
    key: &str,
    options: &[(&str, T)],
    default: T,
) -> T {
    let Some(value) = table.string(doc, key) else {
        return default;
    };
    if let Some((_, chosen)) = options.iter().find(|(word, _)| *word == value.value) {
        return *chosen;
    }
    let words: Vec<String> = options
        .iter()
        .map(|(word, _)| format!("{word:?}"))
        .collect();
    doc.problem(
        &value.span,
        &value.key,
        format!(
            "expected one of {} (got {:?})",
            words.join(", "),
            value.value
        ),
    );
    default
}

/// Reports each of `keys` written in `table` with `message`.
fn not_applicable(doc: &mut Doc, table: &Table, keys: &[&str], message: &str) {
    for key in keys {
        if let Some(span) = table.key_span(key) {
            doc.problem(&span, &table.key_path(key), message);
        }
    }
}

fn network(
    doc: &mut Doc,
    root: &Table,
    topology: Option<Topology>,
    engine: Option<DatastoreEngine>,
) -> Network {
    let table = &root.table(doc, "network");
    table.check_keys(doc, NETWORK_KEYS);
    let default_cidr = DEFAULT_VPC_CIDR.parse().expect("valid default CIDR");
    let vpc_cidr = table
        .string(doc, "vpc_cidr")
        .and_then(|cidr| match checks::ipv4_network(&cidr.value) {
            Ok(net) if (16..=24).contains(&net.prefix_len()) => Some(net),
            Ok(net) => {
                doc.problem(
                    &cidr.span,
                    &cidr.key,
                    format!(
                        "the VPC network must be between /16 and /24 (got /{})",
                        net.prefix_len()
                    ),
                );
                None
            }
            Err(message) => {
                doc.problem(&cidr.span, &cidr.key, message);
                None
            }
        })
        .unwrap_or(default_cidr);

    let zones = table.integer(doc, "zones", 1..=6);
    let rds = !matches!(engine, Some(DatastoreEngine::EmbeddedEtcd));
    if let (Some(zones), Some(Topology::K3s), true) = (&zones, topology, rds) {
        if zones.value < 2 {
            doc.problem(
                &zones.span,
                &zones.key,
                format!(
                    "k3s needs at least 2 zones: its RDS subnet group must span two \
                     availability zones (got {})",
                    zones.value
                ),
            );
        }
    }
    let zones = zones.and_then(|z| u32::try_from(z.value).ok()).unwrap_or(2);

    let mut admin_cidrs = Vec::new();
    if let Some(list) = table.string_array(doc, "admin_cidrs") {
        for item in list.value {
            let parsed = item
                .value
                .parse::<std::net::Ipv4Addr>()
                .map(ipnet::Ipv4Net::from)
                .map_err(|_| ())
                .or_else(|()| checks::ipv4_network(&item.value));
            match parsed {
                Ok(net) => admin_cidrs.push(net),
                Err(message) => doc.problem(&item.span, &item.key, message),
            }
        }
    }

    Network {
        vpc_cidr,
        zones,
        admin_cidrs,
    }
}

fn nodes(
    doc: &mut Doc,
    root: &Table,
    topology: Option<Topology>,
    engine: Option<DatastoreEngine>,
    base: &Path,
) -> Option<Nodes> {
    let table = &root.table(doc, "nodes");
    table.check_keys(doc, NODES_KEYS);
    let topo = topology.unwrap_or(Topology::K3s);

    let etcd_k3s = matches!(engine, Some(DatastoreEngine::EmbeddedEtcd));
    let count = table.integer(doc, "count", 0..=i64::from(u32::MAX));
    if let (Some(count), Some(topology)) = (&count, topology) {
        let n = count.value;
        let message = match topology {
            Topology::K3s if etcd_k3s && (n < 3 || n % 2 == 0) => Some(format!(
                "k3s with datastore.engine = \"embedded-etcd\" needs an odd server count of at \
                 least 3 for etcd quorum (got {n})"
            )),
            Topology::Rke2 if n < 3 || n % 2 == 0 => Some(format!(
                "rke2 needs an odd server count of at least 3 for etcd quorum (got {n})"
            )),
            Topology::K3s | Topology::Rke2 if n > MAX_NODES => Some(format!(
                "{} supports at most {MAX_NODES} server nodes (got {n})",
                topology.as_str()
            )),
            Topology::K3s if !(1..=MAX_NODES).contains(&n) => Some(format!(
                "k3s needs between 1 and {MAX_NODES} server nodes (got {n})"
            )),
            Topology::Rke if n < 3 || n % 2 == 0 => Some(format!(
                "rke needs an odd node count of at least 3 for etcd quorum (got {n})"
            )),
            Topology::Rke if n > MAX_NODES => Some(format!(
                "rke supports at most {MAX_NODES} etcd nodes (got {n})"
            )),
            Topology::Docker if n != 1 => Some(format!(
                "docker runs Rancher in a single container on exactly 1 node (got {n})"
            )),
            _ => None,
        };
        if let Some(message) = message {
            doc.problem(&count.span, &count.key, message);
        }
    }
    let default_count = if topo == Topology::K3s && etcd_k3s {
        3
    } else {
        topo.default_node_count()
    };
    let count = count
        .and_then(|c| u32::try_from(c.value).ok())
        .unwrap_or(default_count);

    let default_type = match topo {
        Topology::Docker => "t3.medium",
        Topology::K3s | Topology::Rke | Topology::Rke2 => "t3.large",
    };
    let instance_type = string_or(
        doc,
        table,
        "instance_type",
        default_type,
        checks::instance_type,
    );
    let ami = required(doc, table, "ami", "\"ami-0123456789abcdef0\"")
        .and_then(|ami| checked(doc, ami, checks::ami));
    let root_volume_gb = integer_or(doc, table, "root_volume_gb", 20..=16384, 50);
    let ssh_user = string_or(doc, table, "ssh_user", "ubuntu", checks::login_name);

    let mut ssh_public_key = None;
    let mut ssh_public_key_text = None;
    if let Some(key) = table.string(doc, "ssh_public_key") {
        let resolved = resolve_path(base, &key.value);
        match std::fs::read_to_string(&resolved) {
            Ok(content) => match checks::openssh_public_key(&content) {
                Ok(line) => ssh_public_key_text = Some(line),
                Err(message) => doc.problem(
                    &key.span,
                    &key.key,
                    format!("{}: {message}", resolved.display()),
                ),
            },
            Err(error) => doc.problem(
                &key.span,
                &key.key,
                format!("cannot read {}: {error}", resolved.display()),
            ),
        }
        ssh_public_key = Some(resolved);
    } else {
        // The key `init` shows as the default is used when it exists.
        for default in DEFAULT_SSH_KEYS {
            let path = resolve_path(base, default);
            if let Ok(content) = std::fs::read_to_string(&path) {
                if let Ok(line) = checks::openssh_public_key(&content) {
                    ssh_public_key_text = Some(line);
                    ssh_public_key = Some(path);
                    break;
                }
            }
        }
    }

    Some(Nodes {
        count,
        instance_type,
        ami: ami?.value,
        root_volume_gb,
        ssh_public_key,
        ssh_public_key_text,
        ssh_user,
    })
}

fn datastore(doc: &mut Doc, root: &Table, topology: Option<Topology>) -> Option<Datastore> {
    let table = &root.table(doc, "datastore");
    match topology {
        Some(Topology::K3s) => {}
        Some(other) => {
            if table.exists() {
                doc.problem(
                    &table.span,
                    table.path(),
                    format!(
                        "[datastore] is only used by topology k3s (this file has topology {:?}); \
                         remove the section",
                        other.as_str()
                    ),
                );
            }
            return None;
        }
        // Unknown topology: still check the keys so every problem shows at once.
        None => {}
    }
    table.check_keys(doc, DATASTORE_KEYS);
    let engine = choice(
        doc,
        table,
        "engine",
        &[
            ("mysql", DatastoreEngine::Rds(DbEngine::Mysql)),
            ("postgres", DatastoreEngine::Rds(DbEngine::Postgres)),
            ("embedded-etcd", DatastoreEngine::EmbeddedEtcd),
        ],
        DatastoreEngine::Rds(DbEngine::Mysql),
    );
    let engine = match engine {
        DatastoreEngine::Rds(engine) => engine,
        DatastoreEngine::EmbeddedEtcd => {
            not_applicable(
                doc,
                table,
                DATASTORE_RDS_KEYS,
                "has no effect with engine = \"embedded-etcd\" (no RDS database); remove it",
            );
            return None;
        }
    };

    let (version_check, default_version): (VersionCheck, _) = match engine {
        DbEngine::Mysql => (checks::mysql_version, checks::DEFAULT_MYSQL_VERSION),
        DbEngine::Postgres => (checks::postgres_version, checks::DEFAULT_POSTGRES_VERSION),
    };
    let engine_version = table
        .string(doc, "engine_version")
        .and_then(|v| checked(doc, v, |text| version_check(text).map(drop)))
        .map_or_else(|| default_version.to_string(), |v| v.value);
    let instance_class = string_or(
        doc,
        table,
        "instance_class",
        "db.t3.medium",
        checks::db_instance_class,
    );
    let storage_gb = integer_or(doc, table, "storage_gb", 20..=65536, 20);
    // MySQL names are at most 64 (database) and 16 (user) long, PostgreSQL's 63.
    let (database_max, user_max, default_user, reserved): (_, _, _, &[&str]) = match engine {
        DbEngine::Mysql => (64, 16, "admin", &["rdsadmin"]),
        // RDS refuses "admin" as a PostgreSQL master user (a word the engine reserves).
        DbEngine::Postgres => (63, 63, "k3s", &["rdsadmin", "admin", "rdsrepladmin"]),
    };
    let database = string_or(doc, table, "database", "k3s", |text| {
        checks::mysql_identifier(text, database_max)
    });
    let username = string_or(doc, table, "username", default_user, |text| {
        checks::mysql_identifier(text, user_max)?;
        if let Some(word) = reserved.iter().find(|w| text.eq_ignore_ascii_case(w)) {
            return Err(format!(
                "{word:?} is reserved by RDS for {}; choose another user name",
                engine.display_name()
            ));
        }
        Ok(())
    });
    let backup_retention_days = integer_or(doc, table, "backup_retention_days", 1..=35, 7);

    Some(Datastore {
        engine,
        engine_version,
        instance_class,
        storage_gb,
        database,
        username,
        backup_retention_days,
    })
}

fn load_balancer(doc: &mut Doc, root: &Table, topology: Option<Topology>) -> Option<LoadBalancer> {
    let table = &root.table(doc, "load_balancer");
    table.check_keys(doc, LOAD_BALANCER_KEYS);
    let scheme = choice(
        doc,
        table,
        "scheme",
        &[
            ("internal", Scheme::Internal),
            ("internet-facing", Scheme::InternetFacing),
        ],
        Scheme::Internal,
    );
    let kube_api = table.boolean(doc, "kube_api");
    let enabled = table.boolean(doc, "enabled");

    match topology {
        Some(Topology::Docker) => {
            let enabled = enabled.is_none_or(|e| e.value);
            if let Some(kube_api) = kube_api.as_ref().filter(|k| k.value) {
                doc.problem(
                    &kube_api.span,
                    &kube_api.key,
                    "topology docker has no Kubernetes API to expose; remove kube_api or set \
                     it to false",
                );
            }
            if !enabled {
                not_applicable(
                    doc,
                    table,
                    &["scheme", "kube_api"],
                    "has no effect when load_balancer.enabled = false; remove it",
                );
                return None;
            }
            Some(LoadBalancer {
                scheme,
                kube_api: false,
                supervisor: false,
            })
        }
        Some(Topology::Rke2) => {
            not_applicable(
                doc,
                table,
                &["enabled"],
                "only applies to topology docker; rke2 always has a load balancer",
            );
            if let Some(kube_api) = kube_api.as_ref().filter(|k| !k.value) {
                doc.problem(
                    &kube_api.span,
                    &kube_api.key,
                    "rke2 always forwards the Kubernetes API (6443) and the supervisor (9345): \
                     the kubeconfig points at the load balancer; remove kube_api",
                );
            }
            Some(LoadBalancer {
                scheme,
                kube_api: true,
                supervisor: true,
            })
        }
        Some(Topology::K3s | Topology::Rke) | None => {
            if topology.is_some() {
                not_applicable(
                    doc,
                    table,
                    &["enabled"],
                    "only applies to topology docker; k3s and rke always have a load balancer",
                );
            }
            Some(LoadBalancer {
                scheme,
                kube_api: kube_api.is_none_or(|k| k.value),
                supervisor: false,
            })
        }
    }
}

/// `hostname` (when valid) and whether a load balancer exists are needed for the one rule
/// that spans both: no CNAME at the zone apex.
fn dns(
    doc: &mut Doc,
    root: &Table,
    hostname: Option<&Located<String>>,
    has_load_balancer: bool,
) -> Option<Dns> {
    let table = &root.table(doc, "dns");
    table.check_keys(doc, DNS_KEYS);
    let private_zone = table.boolean(doc, "private_zone");
    let zone = required(doc, table, "zone", "\"lab.example.com\"").and_then(|zone| {
        if checks::is_hosted_zone_id(&zone.value) {
            if private_zone.as_ref().is_some_and(|p| p.value) {
                doc.problem(
                    &zone.span,
                    &zone.key,
                    "with private_zone = true the tool creates the zone, so give its name \
                     (such as lab.example.com), not a hosted zone id",
                );
                return None;
            }
            return Some(zone.value);
        }
        let name = zone.value.trim_end_matches('.').to_ascii_lowercase();
        match checks::dns_name(&name, 1) {
            Ok(()) => Some(name),
            Err(message) => {
                doc.problem(
                    &zone.span,
                    &zone.key,
                    format!("expected a domain name or a hosted zone id (Z...): {message}"),
                );
                None
            }
        }
    });
    let ttl = integer_or(doc, table, "ttl", 1..=86400, 60);
    let record_type = choice(
        doc,
        table,
        "record_type",
        &[("alias", RecordType::Alias), ("cname", RecordType::Cname)],
        RecordType::Alias,
    );
    // Without a load balancer the record is an A record to the node whatever record_type says.
    if let (RecordType::Cname, true, Some(zone), Some(host), Some(span)) = (
        record_type,
        has_load_balancer,
        &zone,
        hostname,
        table.key_span("record_type"),
    ) {
        if !checks::is_hosted_zone_id(zone) && host.value == *zone {
            doc.problem(
                &span,
                &table.key_path("record_type"),
                format!(
                    "a CNAME cannot be at the zone apex: hostname {:?} is the zone {zone:?} \
                     itself, whose apex already holds its SOA and NS records, so Route53 \
                     refuses it; use record_type = \"alias\" (the default) or a hostname \
                     inside the zone such as \"rancher.{zone}\"",
                    host.value
                ),
            );
        }
    }
    Some(Dns {
        zone: zone?,
        private_zone: private_zone.is_some_and(|p| p.value),
        ttl,
        record_type,
    })
}

#[derive(Clone, Copy)]
enum RegistryMode {
    Node,
    External,
}

fn registry(doc: &mut Doc, root: &Table, base: &Path) -> Registry {
    let table = &root.table(doc, "registry");
    let mut accepted = vec!["mode"];
    accepted.extend_from_slice(REGISTRY_NODE_KEYS);
    accepted.extend_from_slice(REGISTRY_EXTERNAL_KEYS);
    table.check_keys(doc, &accepted);
    let mode = choice(
        doc,
        table,
        "mode",
        &[
            ("node", RegistryMode::Node),
            ("external", RegistryMode::External),
        ],
        RegistryMode::Node,
    );
    match mode {
        RegistryMode::Node => {
            not_applicable(
                doc,
                table,
                REGISTRY_EXTERNAL_KEYS,
                "only applies to mode = \"external\"",
            );
            let instance_type = string_or(
                doc,
                table,
                "instance_type",
                "t3.medium",
                checks::instance_type,
            );
            let volume_gb = integer_or(doc, table, "volume_gb", 20..=16384, 200);
            let port = table.integer(doc, "port", 1..=65535);
            if let Some(port) = port.as_ref().filter(|p| p.value == 22) {
                doc.problem(
                    &port.span,
                    &port.key,
                    "port 22 is SSH on the registry host (it doubles as the bastion); choose \
                     another port",
                );
            }
            Registry::Node {
                instance_type,
                volume_gb,
                port: port
                    .and_then(|p| u16::try_from(p.value).ok())
                    .unwrap_or(5000),
            }
        }
        RegistryMode::External => {
            not_applicable(
                doc,
                table,
                REGISTRY_NODE_KEYS,
                "only applies to mode = \"node\"",
            );
            let url = match table.key_span("url") {
                Some(_) => table
                    .string(doc, "url")
                    .and_then(|url| checked(doc, url, checks::registry_address))
                    .map(|url| url.value),
                None => {
                    doc.problem(
                        &table.span,
                        &table.key_path("url"),
                        "required with mode = \"external\": the registry's host:port, such as \
                         registry.example.com:5000",
                    );
                    None
                }
            };
            let mut ca_file = None;
            let mut ca_pem = None;
            if let Some(file) = table.string(doc, "ca_file") {
                let resolved = resolve_path(base, &file.value);
                match std::fs::read_to_string(&resolved) {
                    Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => ca_pem = Some(pem),
                    Ok(_) => doc.problem(
                        &file.span,
                        &file.key,
                        format!(
                            "{} holds no PEM certificate (no \"BEGIN CERTIFICATE\" line)",
                            resolved.display()
                        ),
                    ),
                    Err(error) => doc.problem(
                        &file.span,
                        &file.key,
                        format!("cannot read {}: {error}", resolved.display()),
                    ),
                }
                ca_file = Some(resolved);
            }
            Registry::External {
                url: url.unwrap_or_default(),
                ca_file,
                ca_pem,
            }
        }
    }
}

fn timeouts(doc: &mut Doc, root: &Table) -> Timeouts {
    let table = &root.table(doc, "timeouts");
    table.check_keys(doc, TIMEOUT_KEYS);
    let mut minutes = |key: &str, default: f64| {
        let value = table
            .positive_number(doc, key, MAX_TIMEOUT_MINUTES)
            .map_or(default, |v| v.value);
        Duration::from_secs_f64(value * 60.0)
    };
    let instance = minutes("instance_minutes", 10.0);
    let database = minutes("database_minutes", 60.0);
    let load_balancer = minutes("load_balancer_minutes", 15.0);
    let dns = minutes("dns_minutes", 5.0);
    let dependency = minutes("dependency_minutes", 10.0);
    let poll = table
        .positive_number(doc, "poll_seconds", MAX_POLL_SECONDS)
        .map_or(5.0, |v| v.value);
    Timeouts {
        poll_interval: Duration::from_secs_f64(poll),
        instance,
        database,
        load_balancer,
        dns,
        dependency,
    }
}

/// Checks an engine version as written.
type VersionCheck = fn(&str) -> Result<EngineVersion, String>;

/// The RKE2 supervisor port servers join on (and the load balancer forwards).
pub(crate) const SUPERVISOR_PORT: u16 = 9345;

/// `[datastore] engine` as written, without reporting anything (that happens where
/// [datastore] is read): the node count and zone checks depend on it.
fn peek_engine(root: &Table) -> Option<DatastoreEngine> {
    match root.peek_string(&["datastore", "engine"])?.as_str() {
        "mysql" => Some(DatastoreEngine::Rds(DbEngine::Mysql)),
        "postgres" => Some(DatastoreEngine::Rds(DbEngine::Postgres)),
        "embedded-etcd" => Some(DatastoreEngine::EmbeddedEtcd),
        _ => None,
    }
}

/// The region the IAM name check assumes when `region` itself is unusable (its own
/// problem is reported where it is read).
const DEFAULT_REGION_FOR_NAMES: &str = "us-east-1";

fn access(doc: &mut Doc, root: &Table, topology: Option<Topology>) -> AccessMode {
    let table = &root.table(doc, "access");
    table.check_keys(doc, ACCESS_KEYS);
    let mode = choice(
        doc,
        table,
        "mode",
        &[("bastion", AccessMode::Bastion), ("ssm", AccessMode::Ssm)],
        AccessMode::Bastion,
    );
    if let (AccessMode::Ssm, Some(Topology::Rke), Some(span)) =
        (mode, topology, table.key_span("mode"))
    {
        doc.problem(
            &span,
            &table.key_path("mode"),
            "topology \"rke\" needs SSH (port 22) from where `rke up` runs to every node, and \
             ssm mode admits no SSH anywhere; use topology = \"rke2\", or mode = \"bastion\"",
        );
    }
    mode
}

fn rancher(doc: &mut Doc, root: &Table) -> Rancher {
    let table = &root.table(doc, "rancher");
    table.check_keys(doc, RANCHER_KEYS);
    let (version, minor) = table
        .string(doc, "version")
        .and_then(|v| match checks::rancher_version(&v.value) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                doc.problem(&v.span, &v.key, message);
                None
            }
        })
        .unwrap_or_else(|| {
            checks::rancher_version(DEFAULT_RANCHER_VERSION).expect("valid default version")
        });
    Rancher { version, minor }
}

/// `[state]`: `None` when a problem was reported.
fn state_backend(
    doc: &mut Doc,
    root: &Table,
    name: Option<&str>,
    region: Option<&str>,
) -> Option<StateBackend> {
    let table = &root.table(doc, "state");
    table.check_keys(doc, STATE_KEYS);
    #[derive(Clone, Copy, PartialEq)]
    enum Which {
        Local,
        S3,
    }
    let which = choice(
        doc,
        table,
        "backend",
        &[("local", Which::Local), ("s3", Which::S3)],
        Which::Local,
    );
    if which == Which::Local {
        not_applicable(
            doc,
            table,
            STATE_S3_KEYS,
            "only used with backend = \"s3\" (the local state lives under --state-dir)",
        );
        return Some(StateBackend::Local);
    }
    let bucket = required(doc, table, "bucket", "\"my-team-provision-state\"")
        .and_then(|b| checked(doc, b, checks::s3_bucket));
    let default_key = format!("provision/{}.json", name.unwrap_or("env"));
    let key = table
        .string(doc, "key")
        .and_then(|k| checked(doc, k, checks::s3_key))
        .map(|k| k.value);
    let state_region = table
        .string(doc, "region")
        .and_then(|r| checked(doc, r, checks::region))
        .map(|r| r.value);
    let kms_key_id = table
        .string(doc, "kms_key_id")
        .and_then(|k| checked(doc, k, checks::kms_key_id))
        .map(|k| k.value);
    Some(StateBackend::S3(S3State {
        bucket: bucket?.value,
        key: key.unwrap_or(default_key),
        region: state_region.or(region.map(str::to_string))?,
        kms_key_id,
    }))
}

/// `~/` expands to the home folder; other relative paths are taken from the config
/// file's folder.
/// Keys used when `nodes.ssh_public_key` is not set, first found first (what `init`
/// shows as the default, then the older RSA default of ssh-keygen).
const DEFAULT_SSH_KEYS: &[&str] = &["~/.ssh/id_ed25519.pub", "~/.ssh/id_rsa.pub"];

fn resolve_path(base: &Path, written: &str) -> PathBuf {
    if let Some(rest) = written.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    base.join(written)
}
