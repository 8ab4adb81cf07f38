//! The next-step artifacts: what Rancher's air-gap guide asks for after the
//! infrastructure exists, filled in with this environment's facts.
//!
//! Every file comes from a template whose every value goes through a quoting filter; YAML
//! strings are always double-quoted, so YAML 1.1 parsers (Go's, in K3s and RKE) read a
//! password like `yes` or `12:30` as text. Files that carry a
//! password are 0600; nothing else contains one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::files::{ensure_private_dir, write_atomic, PUBLIC_MODE, SECRET_MODE};
use super::templates::render;
use super::user_data::{
    registries_yaml, rke2_config_yaml, rke2_registries_yaml, RegistryAccess, Rke2Config,
};
use super::RenderError;
use crate::model::DbEngine;

/// The RKE2 supervisor port joining servers register on.
const RKE2_SUPERVISOR_PORT: u16 = 9345;

/// What the artifacts are made of: facts about a built environment, password included.
#[derive(Debug, Clone)]
pub struct Facts {
    pub env: String,
    /// `k3s`, `rke2`, `rke` or `docker`.
    pub topology: String,
    /// Rancher's hostname.
    pub hostname: String,
    pub registry: RegistryAccess,
    /// The registry CA; when `None`, `registry.ca_pem` is used.
    pub registry_ca_pem: Option<String>,
    pub nodes: Vec<NodeFact>,
    /// The SSH jump host (bastion access).
    pub bastion: Option<Bastion>,
    /// Systems Manager access (no bastion, no SSH port open).
    pub ssm: Option<SsmAccess>,
    /// Login user of the nodes' AMI.
    pub ssh_user: String,
    /// Private key the user supplies, e.g. `~/.ssh/id_ed25519`.
    pub ssh_key_path: String,
    pub load_balancer_dns: Option<String>,
    /// k3s with an RDS datastore only.
    pub datastore: Option<DatastoreFact>,
    /// The token the servers share: rke2, and k3s with embedded etcd (which is what a k3s
    /// env without `datastore` but with a token is).
    pub cluster_token: Option<String>,
    /// The Rancher release the helm command and image lists follow: `2.14.0`.
    pub rancher_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFact {
    /// `node-1`, `node-2`, ...
    pub id: String,
    pub private_ip: String,
    /// `i-0abc...`: what Systems Manager connects to (ssm access).
    pub instance_id: String,
}

/// `[access] mode = "ssm"`: how the artifacts reach the machines without SSH ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SsmAccess {
    pub region: String,
    /// The registry host's instance id (node registry).
    pub registry_instance_id: Option<String>,
    /// The port forwards of `ssm-port-forward.sh`, through the first node.
    pub forwards: Vec<PortForward>,
}

/// One port a workstation reaches through a node with Session Manager
/// (`AWS-StartPortForwardingSessionToRemoteHost`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortForward {
    /// The argument of `ssm-port-forward.sh`: `kube-api`, `rancher`, `datastore`.
    pub name: &'static str,
    pub about: String,
    /// What the node connects to: the load balancer's or the database's name, a node's IP.
    pub host: String,
    pub port: u16,
    /// The default local port.
    pub local_port: u16,
}

/// The port forwards of an ssm env: the Kubernetes API (6443 through the load balancer
/// when it forwards 6443, else the first server), Rancher's 443 for docker (it has no
/// Kubernetes API of its own to reach), and the datastore when there is an RDS one.
pub fn port_forwards(
    topology: &str,
    load_balancer_dns: Option<&str>,
    load_balancer_has_6443: bool,
    first_node_ip: Option<&str>,
    datastore: Option<(&str, u16)>,
) -> Vec<PortForward> {
    let mut out = Vec::new();
    let via_lb = |forwarded: bool| {
        load_balancer_dns
            .filter(|_| forwarded)
            .or(first_node_ip)
            .map(str::to_string)
    };
    if topology == "docker" {
        if let Some(host) = via_lb(true) {
            out.push(PortForward {
                name: "rancher",
                about: "Rancher's UI and API (https://localhost:8443)".into(),
                host,
                port: 443,
                local_port: 8443,
            });
        }
    } else if let Some(host) = via_lb(load_balancer_has_6443) {
        out.push(PortForward {
            name: "kube-api",
            about: "the Kubernetes API (kubeconfig server https://127.0.0.1:6443)".into(),
            host,
            port: 6443,
            local_port: 6443,
        });
    }
    if let Some((host, port)) = datastore {
        out.push(PortForward {
            name: "datastore",
            about: format!("the datastore (127.0.0.1:{port})"),
            host: host.to_string(),
            port,
            local_port: port,
        });
    }
    out
}

/// The SSH jump host (the registry host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bastion {
    pub public_ip: String,
    pub private_ip: String,
    /// The `LocalForward`s of the `<env>-tunnel` host of `ssh_config` (see
    /// [`bastion_forwards`]); empty when the front door is reachable from outside.
    pub forwards: Vec<PortForward>,
}

/// What a workstation cannot reach directly in bastion mode and reaches through the
/// bastion instead: with an internal load balancer (the default) or none, the Kubernetes
/// API (6443, not for docker) and Rancher's 443 (on local port 8443), each through the
/// load balancer when it forwards the port, else the first node. Empty with an
/// internet-facing load balancer.
pub fn bastion_forwards(
    topology: &str,
    load_balancer_dns: Option<&str>,
    internet_facing: bool,
    load_balancer_has_6443: bool,
    first_node_ip: Option<&str>,
) -> Vec<PortForward> {
    if internet_facing && load_balancer_dns.is_some() {
        return Vec::new();
    }
    let via = |forwarded: bool| {
        load_balancer_dns
            .filter(|_| forwarded)
            .or(first_node_ip)
            .map(str::to_string)
    };
    let mut out = Vec::new();
    if topology != "docker" {
        if let Some(host) = via(load_balancer_has_6443) {
            out.push(PortForward {
                name: "kube-api",
                about: "the Kubernetes API (kubeconfig server https://127.0.0.1:6443)".into(),
                host,
                port: 6443,
                local_port: 6443,
            });
        }
    }
    if let Some(host) = via(true) {
        out.push(PortForward {
            name: "rancher",
            about: "Rancher's UI and API (https://localhost:8443)".into(),
            host,
            port: 443,
            local_port: 8443,
        });
    }
    out
}

#[derive(Clone, PartialEq, Eq)]
pub struct DatastoreFact {
    pub engine: DbEngine,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for DatastoreFact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatastoreFact")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Facts {
    /// The Rancher tag, `v2.14.0`.
    fn rancher_tag(&self) -> String {
        format!("v{}", self.rancher_version.trim_start_matches('v'))
    }

    /// The minor of the Rancher release (`14` for 2.14.0); 0 when unreadable.
    fn rancher_minor(&self) -> u32 {
        self.rancher_version
            .trim_start_matches('v')
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// The first server: the one that starts the cluster, where the others join.
    fn first_node(&self) -> Option<&NodeFact> {
        self.nodes.first()
    }

    fn ca_pem(&self) -> Option<&str> {
        self.registry_ca_pem
            .as_deref()
            .or(self.registry.ca_pem.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    K3s,
    Rke,
    Docker,
    Rke2,
}

impl Kind {
    fn parse(topology: &str) -> Result<Kind, RenderError> {
        match topology {
            "k3s" => Ok(Kind::K3s),
            "rke" => Ok(Kind::Rke),
            "docker" => Ok(Kind::Docker),
            "rke2" => Ok(Kind::Rke2),
            other => Err(RenderError::UnknownTopology(other.to_string())),
        }
    }
}

/// One file to write.
struct Artifact {
    name: &'static str,
    about: &'static str,
    contents: String,
    mode: u32,
}

/// Writes the artifacts of `facts` into `dir` (created with mode 0700) and returns their
/// paths, in writing order. Everything is rendered before the first file is written, and
/// each file is replaced atomically.
///
/// - all topologies: `registry-ca.crt` (when the CA is known), `ssh_config`, `NEXT-STEPS.md`;
///   with ssm access `ssm-port-forward.sh`;
/// - k3s: `registries.yaml`, `k3s-install.env` (0600 both; with embedded etcd that of the
///   first server, and `k3s-install-join.env` for the others), `helm-template.sh`;
/// - rke2: `registries.yaml`, `rke2-config-first.yaml`, `rke2-config-join.yaml` (0600 all),
///   `rke2-install.sh`, `helm-template.sh`;
/// - rke: `rancher-cluster.yml` (0600), `helm-template.sh`;
/// - docker: `docker-run.sh`.
pub fn write_artifacts(dir: &Path, facts: &Facts) -> Result<Vec<PathBuf>, RenderError> {
    let kind = Kind::parse(&facts.topology)?;
    check_facts(facts)?;

    let mut artifacts = Vec::new();
    if let Some(ca) = facts.ca_pem() {
        artifacts.push(Artifact {
            name: "registry-ca.crt",
            about: "the CA of the registry's certificate",
            contents: format!("{}\n", ca.trim_end()),
            mode: PUBLIC_MODE,
        });
    }
    artifacts.push(Artifact {
        name: "ssh_config",
        about: if facts.ssm.is_some() {
            "SSH hosts for the machines, through AWS Systems Manager (no SSH port is open)"
        } else {
            "SSH hosts for the nodes"
        },
        contents: ssh_config(facts)?,
        mode: PUBLIC_MODE,
    });
    if let Some(ssm) = &facts.ssm {
        if !ssm.forwards.is_empty() {
            artifacts.push(Artifact {
                name: "ssm-port-forward.sh",
                about: "port forwards into the VPC through AWS Systems Manager",
                contents: render(
                    "artifacts/ssm-port-forward.sh.j2",
                    minijinja::context! {
                        env => &facts.env,
                        region => &ssm.region,
                        target => facts.first_node().map(|n| n.instance_id.as_str()),
                        target_name => facts.first_node().map(|n| n.id.as_str()),
                        forwards => &ssm.forwards,
                        names => ssm.forwards.iter().map(|f| f.name).collect::<Vec<_>>().join("|"),
                    },
                )?,
                mode: PUBLIC_MODE,
            });
        }
    }
    match kind {
        Kind::K3s => {
            let access = RegistryAccess {
                ca_pem: facts.ca_pem().map(str::to_string),
                ..facts.registry.clone()
            };
            artifacts.push(Artifact {
                name: "registries.yaml",
                about: "K3s registry configuration (already on the nodes; has the password)",
                contents: registries_yaml(&access)?,
                mode: SECRET_MODE,
            });
            if facts.datastore.is_none() && facts.cluster_token.is_some() {
                artifacts.push(Artifact {
                    name: "k3s-install.env",
                    about: "K3s install environment of the first server: --cluster-init \
                            (has the cluster token)",
                    contents: k3s_install_env(facts, K3sServer::ClusterInit)?,
                    mode: SECRET_MODE,
                });
                artifacts.push(Artifact {
                    name: "k3s-install-join.env",
                    about: "K3s install environment of the other servers: they join the \
                            first (has the cluster token)",
                    contents: k3s_install_env(facts, K3sServer::Join)?,
                    mode: SECRET_MODE,
                });
            } else {
                artifacts.push(Artifact {
                    name: "k3s-install.env",
                    about: "K3s install environment, datastore endpoint included (has the \
                            password)",
                    contents: k3s_install_env(facts, K3sServer::Datastore)?,
                    mode: SECRET_MODE,
                });
            }
            artifacts.push(helm_template(facts)?);
        }
        Kind::Rke2 => {
            let access = RegistryAccess {
                ca_pem: facts.ca_pem().map(str::to_string),
                ..facts.registry.clone()
            };
            artifacts.push(Artifact {
                name: "registries.yaml",
                about: "RKE2 registry configuration, /etc/rancher/rke2/registries.yaml \
                        (already on the nodes; has the password)",
                contents: rke2_registries_yaml(&access)?,
                mode: SECRET_MODE,
            });
            artifacts.push(Artifact {
                name: "rke2-config-first.yaml",
                about: "/etc/rancher/rke2/config.yaml of the first server (has the cluster \
                        token)",
                contents: rke2_config(facts, false)?,
                mode: SECRET_MODE,
            });
            artifacts.push(Artifact {
                name: "rke2-config-join.yaml",
                about: "/etc/rancher/rke2/config.yaml of the other servers: they join the \
                        first server's private IP on 9345 (has the cluster token)",
                contents: rke2_config(facts, true)?,
                mode: SECRET_MODE,
            });
            artifacts.push(Artifact {
                name: "rke2-install.sh",
                about: "installs RKE2 from the air-gap tarballs on a server",
                contents: render(
                    "artifacts/rke2-install.sh.j2",
                    minijinja::context! {
                        env => &facts.env,
                        first_node => facts.first_node().map_or("node-1", |n| n.id.as_str()),
                    },
                )?,
                mode: PUBLIC_MODE,
            });
            artifacts.push(helm_template(facts)?);
        }
        Kind::Rke => {
            artifacts.push(Artifact {
                name: "rancher-cluster.yml",
                about: "RKE cluster configuration (has the registry password)",
                contents: rancher_cluster_yml(facts)?,
                mode: SECRET_MODE,
            });
            artifacts.push(helm_template(facts)?);
        }
        Kind::Docker => {
            artifacts.push(Artifact {
                name: "docker-run.sh",
                about: "starts Rancher on the node",
                contents: render(
                    "artifacts/docker-run.sh.j2",
                    minijinja::context! {
                        env => &facts.env,
                        registry => &facts.registry.host_port,
                        rancher_version => facts.rancher_tag(),
                        has_ca => facts.ca_pem().is_some(),
                        registries_path => super::user_data::RANCHER_REGISTRIES_YAML,
                        ca_path => super::user_data::RANCHER_REGISTRY_CA,
                    },
                )?,
                mode: PUBLIC_MODE,
            });
        }
    }
    let next_steps = next_steps(facts, &artifacts)?;
    artifacts.push(Artifact {
        name: "NEXT-STEPS.md",
        about: "",
        contents: next_steps,
        mode: PUBLIC_MODE,
    });

    ensure_private_dir(dir)?;
    let mut written = Vec::with_capacity(artifacts.len());
    for artifact in artifacts {
        let path = dir.join(artifact.name);
        write_atomic(&path, artifact.contents.as_bytes(), artifact.mode)?;
        written.push(path);
    }
    Ok(written)
}

/// Refuses values that would break out of where the templates put them: names, addresses
/// and users are single tokens; no value holds a control character.
fn check_facts(facts: &Facts) -> Result<(), RenderError> {
    let mut tokens: Vec<(String, &str)> = vec![
        ("env".into(), &facts.env),
        ("hostname".into(), &facts.hostname),
        ("registry".into(), &facts.registry.host_port),
        ("ssh_user".into(), &facts.ssh_user),
    ];
    // An external registry may take anonymous pulls: no credentials at all.
    if !facts.registry.username.is_empty() {
        tokens.push(("registry username".into(), &facts.registry.username));
    }
    for node in &facts.nodes {
        tokens.push((format!("node id {:?}", node.id), &node.id));
        tokens.push((format!("{} private IP", node.id), &node.private_ip));
        if facts.ssm.is_some() {
            tokens.push((format!("{} instance id", node.id), &node.instance_id));
        }
    }
    if let Some(ssm) = &facts.ssm {
        tokens.push(("region".into(), &ssm.region));
        if let Some(id) = &ssm.registry_instance_id {
            tokens.push(("registry instance id".into(), id));
        }
        for f in &ssm.forwards {
            tokens.push((format!("{} forward host", f.name), &f.host));
        }
    }
    if let Some(bastion) = &facts.bastion {
        tokens.push(("bastion public IP".into(), &bastion.public_ip));
        tokens.push(("bastion private IP".into(), &bastion.private_ip));
        for f in &bastion.forwards {
            tokens.push((format!("{} tunnel host", f.name), &f.host));
        }
    }
    if let Some(dns) = &facts.load_balancer_dns {
        tokens.push(("load balancer DNS name".into(), dns));
    }
    if let Some(token) = &facts.cluster_token {
        tokens.push(("cluster token".into(), token));
    }
    tokens.push(("rancher version".into(), &facts.rancher_version));
    if let Some(datastore) = &facts.datastore {
        tokens.push(("datastore host".into(), &datastore.host));
        tokens.push(("datastore database".into(), &datastore.database));
        tokens.push(("datastore username".into(), &datastore.username));
    }
    for (field, value) in tokens {
        if value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
        {
            return Err(RenderError::InvalidFact {
                field,
                value: value.to_string(),
                reason: "must be one word without quotes",
            });
        }
    }
    if facts.ssh_key_path.chars().any(char::is_control) || facts.ssh_key_path.contains('"') {
        return Err(RenderError::InvalidFact {
            field: "ssh_key_path".into(),
            value: facts.ssh_key_path.clone(),
            reason: "must not hold control characters or double quotes",
        });
    }
    Ok(())
}

fn ssh_config(facts: &Facts) -> Result<String, RenderError> {
    render(
        "artifacts/ssh_config.j2",
        minijinja::context! {
            env => &facts.env,
            nodes => &facts.nodes,
            bastion => &facts.bastion,
            ssm => &facts.ssm,
            ssh_user => &facts.ssh_user,
            ssh_key_path => &facts.ssh_key_path,
        },
    )
}

fn helm_template(facts: &Facts) -> Result<Artifact, RenderError> {
    Ok(Artifact {
        name: "helm-template.sh",
        about: "renders the Rancher chart for the registry",
        contents: render(
            "artifacts/helm-template.sh.j2",
            minijinja::context! {
                env => &facts.env,
                hostname => &facts.hostname,
                registry => &facts.registry.host_port,
                rancher_version => facts.rancher_tag(),
            },
        )?,
        mode: PUBLIC_MODE,
    })
}

/// Which K3s server an install environment is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum K3sServer {
    /// Every server, with the external datastore.
    Datastore,
    /// Embedded etcd: the first server starts the cluster.
    ClusterInit,
    /// Embedded etcd: the others join the first.
    Join,
}

/// The complete `/etc/rancher/rke2/config.yaml` of the first server, or (`join`) of the
/// others: the same token, TLS names and registry, plus the first server's supervisor.
fn rke2_config(facts: &Facts, join: bool) -> Result<String, RenderError> {
    let token = facts
        .cluster_token
        .clone()
        .ok_or(RenderError::MissingFact("the cluster token"))?;
    let server = if join {
        let first = facts
            .first_node()
            .ok_or(RenderError::MissingFact("the first server's private IP"))?;
        Some(format!(
            "https://{}:{RKE2_SUPERVISOR_PORT}",
            first.private_ip
        ))
    } else {
        None
    };
    let body = rke2_config_yaml(&Rke2Config {
        server,
        token: Some(token),
        tls_san: facts
            .load_balancer_dns
            .iter()
            .chain([&facts.hostname])
            .cloned()
            .collect(),
        registry: facts.registry.host_port.clone(),
    })?;
    Ok(format!(
        "# RKE2 server configuration of {}, written by provision (has the cluster token).\n\
         # Install it as /etc/rancher/rke2/config.yaml (mode 0600) on {}.\n{body}",
        facts.env,
        if join {
            "every server but the first"
        } else {
            "the first server"
        }
    ))
}

fn k3s_install_env(facts: &Facts, server: K3sServer) -> Result<String, RenderError> {
    let datastore_endpoint = match server {
        K3sServer::Datastore => facts.datastore.as_ref().map(datastore_endpoint),
        K3sServer::ClusterInit | K3sServer::Join => None,
    };
    let token = match server {
        K3sServer::Datastore => None,
        K3sServer::ClusterInit | K3sServer::Join => Some(
            facts
                .cluster_token
                .clone()
                .ok_or(RenderError::MissingFact("the cluster token"))?,
        ),
    };
    let mut install_exec = String::from("server");
    match server {
        K3sServer::Datastore => {}
        K3sServer::ClusterInit => install_exec.push_str(" --cluster-init"),
        K3sServer::Join => {
            let first = facts
                .first_node()
                .ok_or(RenderError::MissingFact("the first server's private IP"))?;
            install_exec.push_str(&format!(" --server https://{}:6443", first.private_ip));
        }
    }
    for san in facts.load_balancer_dns.iter().chain([&facts.hostname]) {
        install_exec.push_str(" --tls-san ");
        install_exec.push_str(san);
    }
    render(
        "artifacts/k3s-install.env.j2",
        minijinja::context! {
            env => &facts.env,
            file_name => if server == K3sServer::Join {
                "k3s-install-join.env"
            } else {
                "k3s-install.env"
            },
            datastore_endpoint,
            token,
            install_exec,
        },
    )
}

/// K3s's `K3S_DATASTORE_ENDPOINT` for the engine.
fn datastore_endpoint(datastore: &DatastoreFact) -> String {
    let DatastoreFact {
        engine,
        host,
        port,
        database,
        username,
        password,
    } = datastore;
    match engine {
        DbEngine::Mysql => format!("mysql://{username}:{password}@tcp({host}:{port})/{database}"),
        DbEngine::Postgres => format!("postgres://{username}:{password}@{host}:{port}/{database}"),
    }
}

fn rancher_cluster_yml(facts: &Facts) -> Result<String, RenderError> {
    #[derive(Serialize)]
    struct Registry<'a> {
        host_port: &'a str,
        username: &'a str,
        password: &'a str,
    }
    render(
        "artifacts/rancher-cluster.yml.j2",
        minijinja::context! {
            env => &facts.env,
            nodes => &facts.nodes,
            bastion => &facts.bastion,
            ssh_user => &facts.ssh_user,
            ssh_key_path => &facts.ssh_key_path,
            registry => Registry {
                host_port: &facts.registry.host_port,
                username: &facts.registry.username,
                password: &facts.registry.password,
            },
        },
    )
}

fn next_steps(facts: &Facts, artifacts: &[Artifact]) -> Result<String, RenderError> {
    #[derive(Serialize)]
    struct File {
        name: &'static str,
        about: &'static str,
    }
    let files: Vec<File> = artifacts
        .iter()
        .map(|artifact| File {
            name: artifact.name,
            about: artifact.about,
        })
        .collect();
    render(
        "artifacts/NEXT-STEPS.md.j2",
        minijinja::context! {
            env => &facts.env,
            topology => &facts.topology,
            hostname => &facts.hostname,
            registry => &facts.registry.host_port,
            username => &facts.registry.username,
            files,
            first_node => facts.first_node().map_or("node-1", |node| node.id.as_str()),
            first_ip => facts.first_node().map_or("", |node| node.private_ip.as_str()),
            embedded_etcd => facts.datastore.is_none() && facts.cluster_token.is_some(),
            datastore_engine => facts.datastore.as_ref().map(|d| d.engine.display_name()),
            has_bastion => facts.bastion.is_some(),
            bastion_public_ip => facts.bastion.as_ref().map_or("", |b| b.public_ip.as_str()),
            registry_host => facts.registry.host_port.rsplit_once(':').map_or(
                facts.registry.host_port.as_str(),
                |(host, _)| host,
            ),
            registry_port => facts.registry.host_port.rsplit_once(':').map_or("443", |(_, port)| port),
            tunnel => facts.bastion.as_ref().map_or(&[][..], |b| b.forwards.as_slice()),
            ssm => &facts.ssm,
            has_ca => facts.ca_pem().is_some(),
            load_balancer_dns => &facts.load_balancer_dns,
            ssh_key_path => &facts.ssh_key_path,
            rancher_version => facts.rancher_tag(),
            rancher_minor => facts.rancher_minor(),
            chart_version => facts.rancher_version.trim_start_matches('v'),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::files::test_support::mode_of;
    use super::super::user_data::tests::{fake_access, FAKE_CA, NASTY_PASSWORD};
    use super::*;
    use serde_yaml::Value;

    const DATASTORE_PASSWORD: &str = "Datastore0Password0000";

    fn facts(topology: &str) -> Facts {
        let node_count = match topology {
            "k3s" => 2,
            "rke" | "rke2" => 3,
            _ => 1,
        };
        Facts {
            env: "lab".to_string(),
            topology: topology.to_string(),
            hostname: "rancher.lab.example.com".to_string(),
            registry: fake_access(),
            registry_ca_pem: Some(FAKE_CA.to_string()),
            nodes: (1..=node_count)
                .map(|n| NodeFact {
                    id: format!("node-{n}"),
                    private_ip: format!("10.0.{n}.10"),
                    instance_id: format!("i-0node{n}"),
                })
                .collect(),
            bastion: Some(Bastion {
                public_ip: "203.0.113.7".to_string(),
                private_ip: "10.0.0.5".to_string(),
                forwards: bastion_forwards(
                    topology,
                    (topology != "docker")
                        .then_some("lab-nlb-0123456789.elb.us-east-1.amazonaws.com"),
                    false,
                    topology != "docker",
                    Some("10.0.1.10"),
                ),
            }),
            ssm: None,
            ssh_user: "ubuntu".to_string(),
            ssh_key_path: "~/.ssh/id_ed25519".to_string(),
            load_balancer_dns: (topology != "docker")
                .then(|| "lab-nlb-0123456789.elb.us-east-1.amazonaws.com".to_string()),
            datastore: (topology == "k3s").then(|| DatastoreFact {
                engine: DbEngine::Mysql,
                host: "lab-db.abc123.us-east-1.rds.amazonaws.com".to_string(),
                port: 3306,
                database: "k3s".to_string(),
                username: "admin".to_string(),
                password: DATASTORE_PASSWORD.to_string(),
            }),
            cluster_token: (topology == "rke2").then(|| CLUSTER_TOKEN.to_string()),
            rancher_version: "2.14.0".to_string(),
        }
    }

    const CLUSTER_TOKEN: &str = "Cluster0Token0For0Snapshots000000000000000000000";

    /// k3s whose servers run etcd themselves: no datastore, a shared token, 3 servers.
    fn k3s_etcd_facts() -> Facts {
        let mut facts = facts("rke2");
        facts.topology = "k3s".to_string();
        facts
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn bash(args: &[&str]) -> std::process::Output {
        std::process::Command::new("bash")
            .args(args)
            .output()
            .unwrap()
    }

    /// The files that may hold a password.
    const SECRET_FILES: [&str; 6] = [
        "registries.yaml",
        "k3s-install.env",
        "k3s-install-join.env",
        "rancher-cluster.yml",
        "rke2-config-first.yaml",
        "rke2-config-join.yaml",
    ];

    /// Checks every written file: YAML parses, shell passes `bash -n`, scripts start as
    /// they must, secret-bearing files are 0600 and no other file (0644) holds a password,
    /// raw or YAML-escaped.
    fn check_files(paths: &[PathBuf], passwords: &[&str]) {
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy();
            let text = std::fs::read_to_string(path).unwrap();
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                serde_yaml::from_str::<Value>(&text)
                    .unwrap_or_else(|error| panic!("{name}: {error}"));
            }
            if name.ends_with(".sh") || name.ends_with(".env") {
                let output = bash(&["-n", path.to_str().unwrap()]);
                assert!(
                    output.status.success(),
                    "{name}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            if name.ends_with(".sh") {
                assert!(
                    text.starts_with("#!/usr/bin/env bash\nset -euo pipefail\n"),
                    "{name}"
                );
            }
            if SECRET_FILES.contains(&name.as_ref()) {
                assert_eq!(mode_of(path), 0o600, "{name} holds a password");
            } else {
                assert_eq!(mode_of(path), 0o644, "{name}");
                for password in passwords {
                    let quoted = super::super::templates::yaml_quote(password);
                    let inner = &quoted[1..quoted.len() - 1];
                    assert!(
                        !text.contains(password) && !text.contains(inner),
                        "{name} holds a password"
                    );
                }
            }
        }
    }

    fn write(topology: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        let paths = write_artifacts(&root.path().join("artifacts"), &facts(topology)).unwrap();
        (root, paths)
    }

    #[test]
    fn k3s_artifacts() {
        let (root, paths) = write("k3s");
        let dir = root.path().join("artifacts");
        assert_eq!(mode_of(&dir), 0o700);
        assert_eq!(
            names(&paths),
            [
                "registry-ca.crt",
                "ssh_config",
                "registries.yaml",
                "k3s-install.env",
                "helm-template.sh",
                "NEXT-STEPS.md"
            ]
        );
        check_files(&paths, &[&fake_access().password, DATASTORE_PASSWORD]);
        assert_eq!(mode_of(&dir.join("registries.yaml")), 0o600);
        assert_eq!(mode_of(&dir.join("k3s-install.env")), 0o600);
        assert_eq!(read(&dir, "registry-ca.crt"), FAKE_CA);

        let registries: Value = serde_yaml::from_str(&read(&dir, "registries.yaml")).unwrap();
        let config = &registries["configs"]["lab-registry.lab.example.com:5000"];
        assert_eq!(config["auth"]["password"], fake_access().password.as_str());
        assert_eq!(config["tls"]["ca_file"], "/etc/rancher/k3s/registry-ca.crt");
        // The same file the nodes get from their user-data.
        assert_eq!(
            read(&dir, "registries.yaml"),
            registries_yaml(&fake_access()).unwrap()
        );

        for name in [
            "ssh_config",
            "registries.yaml",
            "k3s-install.env",
            "helm-template.sh",
            "NEXT-STEPS.md",
        ] {
            insta::assert_snapshot!(format!("k3s_{name}"), read(&dir, name));
        }
    }

    /// Sources `file` as the K3s installer would and prints `vars`.
    fn sourced(file: &Path, vars: &[&str]) -> String {
        let print: Vec<String> = vars.iter().map(|v| format!("\"${v}\"")).collect();
        let output = bash(&[
            "-c",
            &format!(r#"set -a; . "$1"; printf '%s\n' {}"#, print.join(" ")),
            "bash",
            file.to_str().unwrap(),
        ]);
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn rke2_artifacts() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("artifacts");
        let paths = write_artifacts(&dir, &facts("rke2")).unwrap();
        assert_eq!(
            names(&paths),
            [
                "registry-ca.crt",
                "ssh_config",
                "registries.yaml",
                "rke2-config-first.yaml",
                "rke2-config-join.yaml",
                "rke2-install.sh",
                "helm-template.sh",
                "NEXT-STEPS.md"
            ]
        );
        check_files(&paths, &[&fake_access().password, CLUSTER_TOKEN]);

        // registries.yaml: the mirror, auth and CA under /etc/rancher/rke2/.
        let registries: Value = serde_yaml::from_str(&read(&dir, "registries.yaml")).unwrap();
        assert_eq!(
            registries["mirrors"]["docker.io"]["endpoint"][0],
            "https://lab-registry.lab.example.com:5000"
        );
        let config = &registries["configs"]["lab-registry.lab.example.com:5000"];
        assert_eq!(config["auth"]["username"], "rancher");
        assert_eq!(config["auth"]["password"], fake_access().password.as_str());
        assert_eq!(
            config["tls"]["ca_file"],
            "/etc/rancher/rke2/registry-ca.crt"
        );

        // config.yaml: the same token, names and registry on every server; the joiners
        // register with the first server's private IP on 9345, never the load balancer.
        let first: Value = serde_yaml::from_str(&read(&dir, "rke2-config-first.yaml")).unwrap();
        let join: Value = serde_yaml::from_str(&read(&dir, "rke2-config-join.yaml")).unwrap();
        for config in [&first, &join] {
            assert_eq!(config["token"], CLUSTER_TOKEN);
            assert_eq!(
                config["tls-san"],
                serde_yaml::from_str::<Value>(
                    "[lab-nlb-0123456789.elb.us-east-1.amazonaws.com, rancher.lab.example.com]"
                )
                .unwrap()
            );
            assert_eq!(
                config["system-default-registry"],
                "lab-registry.lab.example.com:5000"
            );
        }
        assert!(
            first.get("server").is_none(),
            "the first server starts the cluster"
        );
        assert_eq!(join["server"], "https://10.0.1.10:9345");

        let install = read(&dir, "rke2-install.sh");
        assert!(install
            .contains(r#"INSTALL_RKE2_ARTIFACT_PATH="${ARTIFACTS}" sh "${ARTIFACTS}/install.sh""#));
        assert!(install.contains("/etc/rancher/rke2/config.yaml"));
        let next = read(&dir, "NEXT-STEPS.md");
        // The load balancer is internal: the kubeconfig stays on 127.0.0.1:6443, which the
        // tunnel through the bastion serves.
        assert!(
            next.contains(
                "pointing at 127.0.0.1:6443,\nwhich is where `ssh -F ssh_config -N lab-tunnel`"
            ),
            "{next}"
        );
        assert!(next.contains("https://github.com/rancher/rancher/releases/tag/v2.14.0"));
        assert!(next.contains("rke2-images.linux-amd64.tar.zst"));

        for name in [
            "registries.yaml",
            "rke2-config-first.yaml",
            "rke2-config-join.yaml",
            "rke2-install.sh",
            "helm-template.sh",
            "NEXT-STEPS.md",
        ] {
            insta::assert_snapshot!(format!("rke2_{name}"), read(&dir, name));
        }
    }

    #[test]
    fn rke2_install_script_refuses_a_missing_role() {
        let (root, _) = write("rke2");
        let output = bash(&[root
            .path()
            .join("artifacts/rke2-install.sh")
            .to_str()
            .unwrap()]);
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains("usage"));
    }

    #[test]
    fn rke2_without_a_token_is_refused() {
        let mut facts = facts("rke2");
        facts.cluster_token = None;
        let root = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_artifacts(root.path(), &facts),
            Err(RenderError::MissingFact(_))
        ));
    }

    #[test]
    fn k3s_embedded_etcd_artifacts() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("artifacts");
        let paths = write_artifacts(&dir, &k3s_etcd_facts()).unwrap();
        assert_eq!(
            names(&paths),
            [
                "registry-ca.crt",
                "ssh_config",
                "registries.yaml",
                "k3s-install.env",
                "k3s-install-join.env",
                "helm-template.sh",
                "NEXT-STEPS.md"
            ]
        );
        check_files(&paths, &[&fake_access().password, CLUSTER_TOKEN]);
        let vars = ["K3S_TOKEN", "INSTALL_K3S_EXEC", "K3S_DATASTORE_ENDPOINT"];
        let sans = "--tls-san lab-nlb-0123456789.elb.us-east-1.amazonaws.com --tls-san rancher.lab.example.com";
        assert_eq!(
            sourced(&dir.join("k3s-install.env"), &vars),
            format!("{CLUSTER_TOKEN}\nserver --cluster-init {sans}\n\n")
        );
        assert_eq!(
            sourced(&dir.join("k3s-install-join.env"), &vars),
            format!("{CLUSTER_TOKEN}\nserver --server https://10.0.1.10:6443 {sans}\n\n")
        );
        for name in ["k3s-install.env", "k3s-install-join.env", "NEXT-STEPS.md"] {
            insta::assert_snapshot!(format!("k3s_etcd_{name}"), read(&dir, name));
        }
    }

    #[test]
    fn k3s_postgres_endpoint() {
        let mut facts = facts("k3s");
        let datastore = facts.datastore.as_mut().unwrap();
        datastore.engine = DbEngine::Postgres;
        datastore.port = 5432;
        datastore.username = "k3s".to_string();
        datastore.password = NASTY_PASSWORD.to_string();
        let root = tempfile::tempdir().unwrap();
        write_artifacts(root.path(), &facts).unwrap();
        assert_eq!(
            sourced(&root.path().join("k3s-install.env"), &["K3S_DATASTORE_ENDPOINT", "K3S_TOKEN"]),
            format!(
                "postgres://k3s:{NASTY_PASSWORD}@lab-db.abc123.us-east-1.rds.amazonaws.com:5432/k3s\n\n"
            )
        );
        let env = std::fs::read_to_string(root.path().join("k3s-install.env")).unwrap();
        insta::assert_snapshot!(
            "k3s_postgres_k3s-install.env",
            env.replace(NASTY_PASSWORD, "PASSWORD")
        );
    }

    /// The helm arguments `helm-template.sh` of `facts` passes for `version` (when set,
    /// through `RANCHER_VERSION`).
    fn helm_args(facts: &Facts, version: Option<&str>) -> Vec<String> {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("artifacts");
        write_artifacts(&dir, facts).unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("helm"), "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        super::super::files::set_mode(&bin.join("helm"), 0o755).unwrap();
        let mut command = std::process::Command::new("bash");
        command
            .arg(dir.join("helm-template.sh"))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env_remove("RANCHER_VERSION");
        if let Some(version) = version {
            command.env("RANCHER_VERSION", version);
        }
        let output = command.output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_helm_command_follows_the_rancher_version() {
        let registry = "lab-registry.lab.example.com:5000";
        for topology in ["k3s", "rke2", "rke"] {
            let mut facts = facts(topology);
            // From 2.14: image.registry, the registry once.
            let args = helm_args(&facts, None);
            assert!(
                args.contains(&"./rancher-2.14.0.tgz".to_string()),
                "{args:?}"
            );
            assert!(
                args.contains(&format!("image.registry={registry}")),
                "{args:?}"
            );
            assert!(
                !args.iter().any(|a| a.starts_with("rancherImage")),
                "{args:?}"
            );
            assert!(args.contains(&format!("systemDefaultRegistry={registry}")));
            assert!(args.contains(&"useBundledSystemChart=true".to_string()));
            // The registry is never prefixed twice.
            assert!(
                args.iter().all(|a| a.matches(registry).count() <= 1),
                "{args:?}"
            );
            // Up to 2.13: rancherImage.
            facts.rancher_version = "2.13.2".to_string();
            let args = helm_args(&facts, None);
            assert!(
                args.contains(&"./rancher-2.13.2.tgz".to_string()),
                "{args:?}"
            );
            assert!(args.contains(&format!("rancherImage={registry}/rancher/rancher")));
            assert!(
                !args.iter().any(|a| a.starts_with("image.registry")),
                "{args:?}"
            );
            assert!(args.contains(&format!("systemDefaultRegistry={registry}")));
            // RANCHER_VERSION still overrides, and the flags follow it.
            let args = helm_args(&facts, Some("v2.14.1"));
            assert!(
                args.contains(&format!("image.registry={registry}")),
                "{args:?}"
            );
        }
    }

    #[test]
    fn k3s_install_env_sources_to_the_real_values() {
        let mut facts = facts("k3s");
        facts.datastore.as_mut().unwrap().password = NASTY_PASSWORD.to_string();
        let root = tempfile::tempdir().unwrap();
        write_artifacts(root.path(), &facts).unwrap();
        let env_file = root.path().join("k3s-install.env");
        let output = bash(&[
            "-c",
            r#"set -a; . "$1"; printf '%s\n' "$K3S_DATASTORE_ENDPOINT" "$INSTALL_K3S_SKIP_DOWNLOAD" "$INSTALL_K3S_EXEC""#,
            "bash",
            env_file.to_str().unwrap(),
        ]);
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!(
                "mysql://admin:{NASTY_PASSWORD}@tcp(lab-db.abc123.us-east-1.rds.amazonaws.com:3306)/k3s\n\
                 true\n\
                 server --tls-san lab-nlb-0123456789.elb.us-east-1.amazonaws.com --tls-san rancher.lab.example.com\n"
            )
        );
    }

    #[test]
    fn rke_artifacts() {
        let (root, paths) = write("rke");
        let dir = root.path().join("artifacts");
        assert_eq!(
            names(&paths),
            [
                "registry-ca.crt",
                "ssh_config",
                "rancher-cluster.yml",
                "helm-template.sh",
                "NEXT-STEPS.md"
            ]
        );
        check_files(&paths, &[&fake_access().password]);
        assert_eq!(mode_of(&dir.join("rancher-cluster.yml")), 0o600);

        let cluster: Value = serde_yaml::from_str(&read(&dir, "rancher-cluster.yml")).unwrap();
        let nodes = cluster["nodes"].as_sequence().unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2]["address"], "10.0.3.10");
        assert_eq!(nodes[2]["internal_address"], "10.0.3.10");
        assert_eq!(nodes[0]["user"], "ubuntu");
        assert_eq!(nodes[0]["ssh_key_path"], "~/.ssh/id_ed25519");
        assert_eq!(
            serde_yaml::to_string(&nodes[0]["role"]).unwrap(),
            "- controlplane\n- worker\n- etcd\n"
        );
        let registry = &cluster["private_registries"][0];
        assert_eq!(registry["url"], "lab-registry.lab.example.com:5000");
        assert_eq!(registry["user"], "rancher");
        assert_eq!(registry["password"], fake_access().password.as_str());
        assert_eq!(registry["is_default"], true);
        assert_eq!(cluster["bastion_host"]["address"], "203.0.113.7");

        for name in [
            "ssh_config",
            "rancher-cluster.yml",
            "helm-template.sh",
            "NEXT-STEPS.md",
        ] {
            insta::assert_snapshot!(format!("rke_{name}"), read(&dir, name));
        }
    }

    #[test]
    fn docker_artifacts() {
        let (root, paths) = write("docker");
        let dir = root.path().join("artifacts");
        assert_eq!(
            names(&paths),
            [
                "registry-ca.crt",
                "ssh_config",
                "docker-run.sh",
                "NEXT-STEPS.md"
            ]
        );
        check_files(&paths, &[&fake_access().password]);
        let script = read(&dir, "docker-run.sh");
        assert!(script.contains("REGISTRY='lab-registry.lab.example.com:5000'"));
        assert!(script.contains("\"${REGISTRY}/rancher/rancher:${RANCHER_VERSION}\""));
        for name in ["ssh_config", "docker-run.sh", "NEXT-STEPS.md"] {
            insta::assert_snapshot!(format!("docker_{name}"), read(&dir, name));
        }
    }

    #[test]
    fn scripts_expand_to_the_documented_commands() {
        let (root, _) = write("k3s");
        let dir = root.path().join("artifacts");
        // Run helm-template.sh with a fake `helm` that prints its arguments.
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("helm"), "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        super::super::files::set_mode(&bin.join("helm"), 0o755).unwrap();
        let output = std::process::Command::new("bash")
            .arg(dir.join("helm-template.sh"))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("RANCHER_VERSION", "2.5.9")
            .output()
            .unwrap();
        assert!(output.status.success());
        let args = String::from_utf8(output.stdout).unwrap();
        assert_eq!(
            args.lines().collect::<Vec<_>>(),
            [
                "template",
                "rancher",
                "./rancher-2.5.9.tgz",
                "--output-dir",
                ".",
                "--no-hooks",
                "--namespace",
                "cattle-system",
                "--set",
                "hostname=rancher.lab.example.com",
                "--set",
                "rancherImage=lab-registry.lab.example.com:5000/rancher/rancher",
                "--set",
                "systemDefaultRegistry=lab-registry.lab.example.com:5000",
                "--set",
                "useBundledSystemChart=true",
                "--set",
                "ingress.tls.source=secret",
            ]
        );
    }

    #[test]
    fn no_bastion_means_no_proxy_jump() {
        let mut facts = facts("rke");
        facts.bastion = None;
        let root = tempfile::tempdir().unwrap();
        write_artifacts(root.path(), &facts).unwrap();
        let ssh_config = read(root.path(), "ssh_config");
        assert!(!ssh_config.contains("ProxyJump"));
        assert!(!ssh_config.contains("lab-bastion"));
        assert!(ssh_config.contains("Host lab-node-3\n  HostName 10.0.3.10\n"));
        let cluster: Value =
            serde_yaml::from_str(&read(root.path(), "rancher-cluster.yml")).unwrap();
        assert!(cluster.get("bastion_host").is_none());
    }

    #[test]
    fn ssh_config_has_bastion_and_proxy_jumps() {
        let (root, _) = write("k3s");
        let ssh_config = read(&root.path().join("artifacts"), "ssh_config");
        assert!(ssh_config.contains("Host lab-bastion\n  HostName 203.0.113.7\n"));
        assert_eq!(ssh_config.matches("ProxyJump lab-bastion").count(), 2);
        assert!(ssh_config.contains("Host lab-node-2\n  HostName 10.0.2.10\n"));
        assert!(ssh_config.contains("IdentityFile ~/.ssh/id_ed25519\n"));
    }

    #[test]
    fn nasty_registry_password_stays_valid_and_private() {
        for topology in ["k3s", "rke", "docker"] {
            let mut facts = facts(topology);
            facts.registry.password = NASTY_PASSWORD.to_string();
            let root = tempfile::tempdir().unwrap();
            let paths = write_artifacts(root.path(), &facts).unwrap();
            check_files(&paths, &[NASTY_PASSWORD, DATASTORE_PASSWORD]);
            let secret_file = match topology {
                "k3s" => Some("registries.yaml"),
                "rke" => Some("rancher-cluster.yml"),
                _ => None,
            };
            if let Some(file) = secret_file {
                assert!(read(root.path(), file).contains("[x]"));
                let parsed: Value = serde_yaml::from_str(&read(root.path(), file)).unwrap();
                let text = serde_yaml::to_string(&parsed).unwrap();
                assert!(text.contains("w{{o}}"), "{text}");
            }
        }
    }

    #[test]
    fn yaml_1_1_lookalike_passwords_are_quoted() {
        for topology in ["k3s", "rke"] {
            let mut facts = facts(topology);
            facts.registry.password = "yes".to_string();
            let root = tempfile::tempdir().unwrap();
            let paths = write_artifacts(root.path(), &facts).unwrap();
            let file = &paths[2];
            let text = std::fs::read_to_string(file).unwrap();
            assert!(text.contains("password: \"yes\"\n"), "{text}");
        }
    }

    #[test]
    fn ca_falls_back_to_the_access_ca_and_can_be_absent() {
        let mut facts = facts("k3s");
        facts.registry_ca_pem = None;
        let root = tempfile::tempdir().unwrap();
        let paths = write_artifacts(root.path(), &facts).unwrap();
        assert_eq!(names(&paths)[0], "registry-ca.crt");

        facts.registry.ca_pem = None;
        let root = tempfile::tempdir().unwrap();
        let paths = write_artifacts(root.path(), &facts).unwrap();
        assert!(!names(&paths).contains(&"registry-ca.crt".to_string()));
        let registries: Value =
            serde_yaml::from_str(&read(root.path(), "registries.yaml")).unwrap();
        assert!(registries["configs"]["lab-registry.lab.example.com:5000"]
            .get("tls")
            .is_none());
        assert!(!read(root.path(), "NEXT-STEPS.md").contains("certs.d"));
    }

    #[test]
    fn rewriting_replaces_files_and_tightens_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("artifacts");
        let first = write_artifacts(&dir, &facts("rke")).unwrap();
        super::super::files::set_mode(&dir, 0o755).unwrap();
        let mut changed = facts("rke");
        changed.registry.password = "Changed0".to_string();
        let second = write_artifacts(&dir, &changed).unwrap();
        assert_eq!(first, second);
        assert_eq!(mode_of(&dir), 0o700);
        assert!(read(&dir, "rancher-cluster.yml").contains("Changed0"));
    }

    #[test]
    fn unknown_topology_and_unsafe_facts_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let error = write_artifacts(root.path(), &facts("rke3")).unwrap_err();
        assert!(matches!(error, RenderError::UnknownTopology(_)), "{error}");

        let mut bad = facts("k3s");
        bad.hostname = "rancher.example.com\nHost evil".to_string();
        let error = write_artifacts(root.path(), &bad).unwrap_err();
        assert!(error.to_string().contains("hostname"), "{error}");

        let mut bad = facts("k3s");
        bad.ssh_key_path = "/keys/\"id".to_string();
        assert!(write_artifacts(root.path(), &bad).is_err());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn ssh_key_path_with_spaces_is_quoted() {
        let mut facts = facts("docker");
        facts.ssh_key_path = "/home/me/my keys/id_ed25519".to_string();
        let root = tempfile::tempdir().unwrap();
        write_artifacts(root.path(), &facts).unwrap();
        assert!(read(root.path(), "ssh_config")
            .contains("IdentityFile \"/home/me/my keys/id_ed25519\"\n"));
    }

    #[test]
    fn debug_output_redacts_passwords() {
        let debug = format!("{:?}", facts("k3s"));
        assert!(!debug.contains(DATASTORE_PASSWORD));
        assert!(!debug.contains(&fake_access().password));
    }

    /// `facts(topology)` with Systems Manager access: no bastion, instance ids, forwards.
    fn ssm_facts(topology: &str) -> Facts {
        let mut facts = facts(topology);
        facts.bastion = None;
        let datastore = facts.datastore.as_ref().map(|d| (d.host.as_str(), d.port));
        let forwards = port_forwards(
            topology,
            facts.load_balancer_dns.as_deref(),
            topology != "docker",
            facts.nodes.first().map(|n| n.private_ip.as_str()),
            datastore,
        );
        facts.ssm = Some(SsmAccess {
            region: "eu-west-1".into(),
            registry_instance_id: Some("i-0reg".into()),
            forwards,
        });
        facts
    }

    #[test]
    fn ssm_ssh_config_goes_through_session_manager_to_instance_ids() {
        let root = tempfile::tempdir().unwrap();
        let paths = write_artifacts(root.path(), &ssm_facts("k3s")).unwrap();
        assert!(names(&paths).contains(&"ssm-port-forward.sh".to_string()));
        check_files(&paths, &[&fake_access().password, DATASTORE_PASSWORD]);
        let config = read(root.path(), "ssh_config");
        let proxy = "  ProxyCommand aws ssm start-session --region eu-west-1 --target %h \
                     --document-name AWS-StartSSHSession --parameters portNumber=%p";
        for (host, instance) in [
            ("lab-node-1", "i-0node1"),
            ("lab-node-2", "i-0node2"),
            ("lab-registry", "i-0reg"),
        ] {
            let block = config
                .split("\n\n")
                .find(|b| b.starts_with(&format!("Host {host}\n")))
                .unwrap_or_else(|| panic!("no Host {host}:\n{config}"));
            assert!(
                block.contains(&format!("  HostName {instance}\n")),
                "{block}"
            );
            assert!(block.contains(proxy), "{block}");
            assert!(block.contains("  User ubuntu\n  IdentityFile ~/.ssh/id_ed25519\n"));
        }
        assert!(
            !config.contains("bastion") && !config.contains("ProxyJump"),
            "{config}"
        );
        // ssh reads it: every ProxyCommand line is one line, HostName an instance id.
        let parsed = std::process::Command::new("ssh")
            .args(["-G", "-F"])
            .arg(root.path().join("ssh_config"))
            .arg("lab-node-2")
            .output();
        if let Ok(out) = parsed {
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("hostname i-0node2"), "{text}");
                assert!(
                    text.contains("proxycommand aws ssm start-session"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn ssm_port_forward_script_runs_the_documented_aws_command() {
        let root = tempfile::tempdir().unwrap();
        write_artifacts(root.path(), &ssm_facts("k3s")).unwrap();
        let script = root.path().join("ssm-port-forward.sh");
        // A fake `aws` that prints its arguments, one per line.
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("aws"), "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        std::fs::set_permissions(
            bin.join("aws"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let run = |args: &[&str]| {
            let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
            std::process::Command::new("bash")
                .arg(&script)
                .args(args)
                .env("PATH", path)
                .output()
                .unwrap()
        };
        let out = run(&["kube-api"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "ssm\nstart-session\n--region\neu-west-1\n--target\ni-0node1\n--document-name\n\
             AWS-StartPortForwardingSessionToRemoteHost\n--parameters\n\
             host=lab-nlb-0123456789.elb.us-east-1.amazonaws.com,portNumber=6443,localPortNumber=6443\n"
        );
        let out = run(&["datastore", "13306"]);
        assert!(
            String::from_utf8(out.stdout).unwrap().contains(
                "host=lab-db.abc123.us-east-1.rds.amazonaws.com,portNumber=3306,localPortNumber=13306\n"
            ),
            "the local port is the second argument"
        );
        let out = run(&[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("kube-api|datastore"));
    }

    #[test]
    fn ssm_next_steps_explain_session_manager_and_the_local_api() {
        for topology in ["k3s", "rke2", "docker"] {
            let root = tempfile::tempdir().unwrap();
            write_artifacts(root.path(), &ssm_facts(topology)).unwrap();
            let text = read(root.path(), "NEXT-STEPS.md");
            assert!(text.contains("(through AWS Systems Manager)"), "{topology}");
            assert!(text.contains("no security group admits SSH"), "{topology}");
            assert!(!text.contains("through the bastion"), "{topology}: {text}");
            if topology == "docker" {
                assert!(text.contains("bash ssm-port-forward.sh rancher"), "{text}");
                assert!(text.contains("https://localhost:8443"), "{text}");
            } else {
                assert!(text.contains("bash ssm-port-forward.sh kube-api"), "{text}");
                assert!(!text.contains(":6443`{"), "{text}");
            }
            if topology == "k3s" {
                assert!(text.contains("`https://127.0.0.1:6443`"), "{text}");
                assert!(
                    text.contains("bash ssm-port-forward.sh datastore"),
                    "{text}"
                );
            }
        }
        // Bastion mode says nothing of it.
        let root = tempfile::tempdir().unwrap();
        let paths = write_artifacts(root.path(), &facts("k3s")).unwrap();
        assert!(!names(&paths).contains(&"ssm-port-forward.sh".to_string()));
        assert!(!read(root.path(), "NEXT-STEPS.md").contains("Systems Manager"));
    }

    #[test]
    fn docker_run_mounts_the_registries_and_refuses_to_start_without_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_artifacts(dir.path(), &facts("docker")).unwrap();
        let script = std::fs::read_to_string(dir.path().join("docker-run.sh")).unwrap();
        assert!(
            script.contains(
                "-v '/etc/rancher/provision/registries.yaml':/etc/rancher/k3s/registries.yaml:ro"
            ),
            "{script}"
        );
        assert!(
            script.contains(
                "-v '/etc/rancher/provision/registry-ca.crt':/etc/rancher/k3s/registry-ca.crt:ro"
            ),
            "{script}"
        );
        // Run it where the node's files are missing (this machine): it stops before
        // `docker run`, naming the file.
        if std::path::Path::new(super::super::user_data::RANCHER_REGISTRIES_YAML).exists() {
            return;
        }
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let docker = bin.join("docker");
        std::fs::write(
            &docker,
            format!("#!/bin/sh\ntouch {}/ran\n", dir.path().display()),
        )
        .unwrap();
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("bash")
            .arg(dir.path().join("docker-run.sh"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("/etc/rancher/provision/registries.yaml is missing"),
            "{stderr}"
        );
        assert!(
            !dir.path().join("ran").exists(),
            "docker ran without the registries"
        );
    }

    /// Step 1 fills the registry with `provision images` from where the operator sits:
    /// the lists of the topology, the bastion's public address (or a tunnel) in bastion
    /// mode, an SSM port forward to the registry host in ssm mode, and a Docker route that
    /// reaches the registry under the name its certificate carries.
    #[test]
    fn next_steps_fill_the_registry_with_provision_images_from_the_workstation() {
        let step1 = |facts: &Facts| {
            let next = next_steps(facts, &[]).unwrap();
            let at = next
                .find("## 1. Fill the private registry")
                .expect("step 1");
            let end = next.find("## 2.").unwrap();
            next[at..end].to_string()
        };
        let k3s = step1(&facts("k3s"));
        for want in [
            "provision images pull --list rancher-images.txt --list k3s-images.txt",
            "provision images push   # to the registry host's public address",
            "provision images verify --list rancher-images.txt --list k3s-images.txt",
            "-L 5000:localhost:5000 lab-bastion",
            "echo \"203.0.113.7 lab-registry.lab.example.com\" | sudo tee -a /etc/hosts",
            "/etc/docker/certs.d/lab-registry.lab.example.com:5000/ca.crt",
            "provision images save --archive images.tar --split 4G",
        ] {
            assert!(k3s.contains(want), "{want:?} in:\n{k3s}");
        }
        let rke2 = step1(&facts("rke2"));
        assert!(
            rke2.contains("--list rke2-images-all.linux-amd64.txt"),
            "{rke2}"
        );
        let ssm = step1(&ssm_facts("rke2"));
        for want in [
            "aws ssm start-session --region",
            "--target i-0reg",
            "AWS-StartPortForwardingSessionToRemoteHost",
            "provision images push --via 127.0.0.1:5000",
            "~1 MB/s",
            "127.0.0.1 lab-registry.lab.example.com",
            "docker login lab-registry.lab.example.com:5000",
        ] {
            assert!(ssm.contains(want), "{want:?} in:\n{ssm}");
        }
        assert!(!ssm.contains("public address"), "{ssm}");
    }

    #[test]
    fn rke_steps_push_its_system_images_and_refuse_rancher_2_12() {
        let dir = tempfile::tempdir().unwrap();
        write_artifacts(dir.path(), &facts("rke")).unwrap();
        let next = std::fs::read_to_string(dir.path().join("NEXT-STEPS.md")).unwrap();
        assert!(
            next.contains("rke config --system-images > rke-system-images.txt"),
            "{next}"
        );
        assert!(
            next.contains("provision images pull --list rke-system-images.txt"),
            "{next}"
        );
        assert!(
            next.contains("Docker must be in the nodes' image"),
            "{next}"
        );
        assert!(next.contains("does not run on RKE1"), "{next}");
        let mut f = facts("rke");
        f.rancher_version = "2.11.0".into();
        let dir = tempfile::tempdir().unwrap();
        write_artifacts(dir.path(), &f).unwrap();
        let next = std::fs::read_to_string(dir.path().join("NEXT-STEPS.md")).unwrap();
        assert!(!next.contains("does not run on RKE1"), "{next}");
        assert!(next.contains("rke config --system-images"), "{next}");
    }

    #[test]
    fn bastion_mode_tunnels_what_an_internal_load_balancer_hides() {
        let lb = Some("lb.internal");
        let hosts = |forwards: Vec<PortForward>| -> Vec<(String, u16, u16)> {
            forwards
                .into_iter()
                .map(|f| (f.host, f.port, f.local_port))
                .collect()
        };
        // Internal load balancer forwarding 6443: both through it.
        assert_eq!(
            hosts(bastion_forwards("rke2", lb, false, true, Some("10.0.1.10"))),
            vec![
                ("lb.internal".to_string(), 6443, 6443),
                ("lb.internal".to_string(), 443, 8443)
            ]
        );
        // Without 6443 on the load balancer: the API of the first node.
        assert_eq!(
            hosts(bastion_forwards("k3s", lb, false, false, Some("10.0.1.10")))[0],
            ("10.0.1.10".to_string(), 6443, 6443)
        );
        // Docker without a load balancer: Rancher on the node, no API.
        assert_eq!(
            hosts(bastion_forwards(
                "docker",
                None,
                false,
                false,
                Some("10.0.1.10")
            )),
            vec![("10.0.1.10".to_string(), 443, 8443)]
        );
        // Internet-facing: reachable as it is, no tunnel; the steps point at it.
        assert!(bastion_forwards("rke2", lb, true, true, Some("10.0.1.10")).is_empty());
        let mut f = facts("rke2");
        if let Some(b) = f.bastion.as_mut() {
            b.forwards.clear();
        }
        let dir = tempfile::tempdir().unwrap();
        write_artifacts(dir.path(), &f).unwrap();
        let next = std::fs::read_to_string(dir.path().join("NEXT-STEPS.md")).unwrap();
        assert!(next.contains(
            "sed 's#https://127.0.0.1:6443#https://lab-nlb-0123456789.elb.us-east-1.amazonaws.com:6443#'"
        ), "{next}");
        assert!(!next.contains("lab-tunnel"), "{next}");
        let ssh = std::fs::read_to_string(dir.path().join("ssh_config")).unwrap();
        assert!(!ssh.contains("LocalForward"), "{ssh}");
    }

    /// `ssh -G` reads the config as ssh would and prints the options of a host, without
    /// connecting: the tunnel's forwards and key are what ssh itself will use.
    #[test]
    fn ssh_reads_the_tunnel_as_written() {
        let Ok(probe) = std::process::Command::new("ssh").arg("-V").output() else {
            eprintln!("no ssh here: the tunnel is checked by the snapshot only");
            return;
        };
        assert!(probe.status.success() || !probe.stderr.is_empty());
        let mut f = facts("k3s");
        f.ssh_key_path = "/home/me/.ssh/id_ed25519".to_string();
        let dir = tempfile::tempdir().unwrap();
        write_artifacts(dir.path(), &f).unwrap();
        let out = std::process::Command::new("ssh")
            .args(["-F", "ssh_config", "-G", "lab-tunnel"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let options = String::from_utf8_lossy(&out.stdout).to_lowercase();
        for line in [
            "hostname 203.0.113.7",
            // `ssh -G` prints the addresses bracketed.
            "localforward [127.0.0.1]:6443 [lab-nlb-0123456789.elb.us-east-1.amazonaws.com]:6443",
            "localforward [127.0.0.1]:8443 [lab-nlb-0123456789.elb.us-east-1.amazonaws.com]:443",
            "exitonforwardfailure yes",
            "identityfile /home/me/.ssh/id_ed25519",
        ] {
            assert!(
                options.lines().any(|l| l == line),
                "{line:?} not in\n{options}"
            );
        }
    }

    #[test]
    fn port_forwards_follow_the_topology_and_the_load_balancer() {
        let lb = Some("lab-nlb.elb");
        let node = Some("10.42.0.4");
        let hosts = |f: Vec<PortForward>| -> Vec<(&'static str, String, u16, u16)> {
            f.into_iter()
                .map(|f| (f.name, f.host, f.port, f.local_port))
                .collect()
        };
        assert_eq!(
            hosts(port_forwards("k3s", lb, true, node, Some(("db.rds", 5432)))),
            vec![
                ("kube-api", "lab-nlb.elb".to_string(), 6443, 6443),
                ("datastore", "db.rds".to_string(), 5432, 5432),
            ]
        );
        // No 6443 listener (kube_api = false): the first server itself.
        assert_eq!(
            hosts(port_forwards("k3s", lb, false, node, None)),
            vec![("kube-api", "10.42.0.4".to_string(), 6443, 6443)]
        );
        assert_eq!(
            hosts(port_forwards("docker", None, false, node, None)),
            vec![("rancher", "10.42.0.4".to_string(), 443, 8443)]
        );
        assert_eq!(
            hosts(port_forwards("docker", lb, false, node, None)),
            vec![("rancher", "lab-nlb.elb".to_string(), 443, 8443)]
        );
    }
}
