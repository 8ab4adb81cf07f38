//! The next-step artifacts: what Rancher's air-gap guide asks for after the
//! infrastructure exists, filled in with this environment's facts.
//!
//! YAML files are serialized with serde_yaml; shell scripts, ssh_config and NEXT-STEPS.md
//! come from templates whose every value is quoted by a filter. Files that carry a
//! password are 0600; nothing else contains one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::files::{ensure_private_dir, write_atomic, PUBLIC_MODE, SECRET_MODE};
use super::templates::render;
use super::user_data::{registries_yaml, RegistryAccess};
use super::RenderError;

/// Rancher version the scripts default to (`RANCHER_VERSION` overrides it).
pub const DEFAULT_RANCHER_VERSION: &str = "v2.5.16";

/// What the artifacts are made of: facts about a built environment, password included.
#[derive(Debug, Clone)]
pub struct Facts {
    pub env: String,
    /// `k3s`, `rke` or `docker`.
    pub topology: String,
    /// Rancher's hostname.
    pub hostname: String,
    pub registry: RegistryAccess,
    /// The registry CA; when `None`, `registry.ca_pem` is used.
    pub registry_ca_pem: Option<String>,
    pub nodes: Vec<NodeFact>,
    pub bastion: Option<Bastion>,
    /// Login user of the nodes' AMI.
    pub ssh_user: String,
    /// Private key the user supplies, e.g. `~/.ssh/id_ed25519`.
    pub ssh_key_path: String,
    pub load_balancer_dns: Option<String>,
    /// k3s only.
    pub datastore: Option<DatastoreFact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFact {
    /// `node-1`, `node-2`, ...
    pub id: String,
    pub private_ip: String,
}

/// The SSH jump host (the registry host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bastion {
    pub public_ip: String,
    pub private_ip: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct DatastoreFact {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for DatastoreFact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatastoreFact")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Facts {
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
}

impl Kind {
    fn parse(topology: &str) -> Result<Kind, RenderError> {
        match topology {
            "k3s" => Ok(Kind::K3s),
            "rke" => Ok(Kind::Rke),
            "docker" => Ok(Kind::Docker),
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
/// - k3s: `registries.yaml`, `k3s-install.env` (0600 both), `helm-template.sh`;
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
        about: "SSH hosts for the nodes",
        contents: ssh_config(facts)?,
        mode: PUBLIC_MODE,
    });
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
            artifacts.push(Artifact {
                name: "k3s-install.env",
                about: "K3s install environment, datastore endpoint included (has the password)",
                contents: k3s_install_env(facts)?,
                mode: SECRET_MODE,
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
                        rancher_version => DEFAULT_RANCHER_VERSION,
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
        ("registry username".into(), &facts.registry.username),
        ("ssh_user".into(), &facts.ssh_user),
    ];
    for node in &facts.nodes {
        tokens.push((format!("node id {:?}", node.id), &node.id));
        tokens.push((format!("{} private IP", node.id), &node.private_ip));
    }
    if let Some(bastion) = &facts.bastion {
        tokens.push(("bastion public IP".into(), &bastion.public_ip));
        tokens.push(("bastion private IP".into(), &bastion.private_ip));
    }
    if let Some(dns) = &facts.load_balancer_dns {
        tokens.push(("load balancer DNS name".into(), dns));
    }
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
                rancher_version => DEFAULT_RANCHER_VERSION,
            },
        )?,
        mode: PUBLIC_MODE,
    })
}

fn k3s_install_env(facts: &Facts) -> Result<String, RenderError> {
    let datastore_endpoint = facts.datastore.as_ref().map(|datastore| {
        format!(
            "mysql://{}:{}@tcp({}:{})/{}",
            datastore.username,
            datastore.password,
            datastore.host,
            datastore.port,
            datastore.database
        )
    });
    let mut install_exec = String::from("server");
    for san in facts.load_balancer_dns.iter().chain([&facts.hostname]) {
        install_exec.push_str(" --tls-san ");
        install_exec.push_str(san);
    }
    render(
        "artifacts/k3s-install.env.j2",
        minijinja::context! { env => &facts.env, datastore_endpoint, install_exec },
    )
}

fn rancher_cluster_yml(facts: &Facts) -> Result<String, RenderError> {
    #[derive(Serialize)]
    struct Cluster<'a> {
        nodes: Vec<Node<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bastion_host: Option<BastionHost<'a>>,
        private_registries: Vec<PrivateRegistry<'a>>,
    }
    #[derive(Serialize)]
    struct Node<'a> {
        address: &'a str,
        internal_address: &'a str,
        user: &'a str,
        role: [&'static str; 3],
        ssh_key_path: &'a str,
    }
    #[derive(Serialize)]
    struct BastionHost<'a> {
        address: &'a str,
        port: u16,
        user: &'a str,
        ssh_key_path: &'a str,
    }
    #[derive(Serialize)]
    struct PrivateRegistry<'a> {
        url: &'a str,
        user: &'a str,
        password: &'a str,
        is_default: bool,
    }

    let cluster = Cluster {
        nodes: facts
            .nodes
            .iter()
            .map(|node| Node {
                address: &node.private_ip,
                internal_address: &node.private_ip,
                user: &facts.ssh_user,
                role: ["controlplane", "worker", "etcd"],
                ssh_key_path: &facts.ssh_key_path,
            })
            .collect(),
        bastion_host: facts.bastion.as_ref().map(|bastion| BastionHost {
            address: &bastion.public_ip,
            port: 22,
            user: &facts.ssh_user,
            ssh_key_path: &facts.ssh_key_path,
        }),
        private_registries: vec![PrivateRegistry {
            url: &facts.registry.host_port,
            user: &facts.registry.username,
            password: &facts.registry.password,
            is_default: true,
        }],
    };
    let yaml = serde_yaml::to_string(&cluster).map_err(|source| RenderError::Yaml {
        file: "rancher-cluster.yml",
        source,
    })?;
    Ok(format!(
        "# RKE cluster of {}, written by provision. Holds the registry password.\n\
         # Use: rke up --config ./rancher-cluster.yml\n{yaml}",
        facts.env
    ))
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
            first_node => facts.nodes.first().map_or("node-1", |node| node.id.as_str()),
            has_bastion => facts.bastion.is_some(),
            has_ca => facts.ca_pem().is_some(),
            load_balancer_dns => &facts.load_balancer_dns,
            ssh_key_path => &facts.ssh_key_path,
            rancher_version => DEFAULT_RANCHER_VERSION,
            chart_version => DEFAULT_RANCHER_VERSION.trim_start_matches('v'),
        },
    )
}
