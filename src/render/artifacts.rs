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
        ("ssh_user".into(), &facts.ssh_user),
    ];
    // An external registry may take anonymous pulls: no credentials at all.
    if !facts.registry.username.is_empty() {
        tokens.push(("registry username".into(), &facts.registry.username));
    }
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
            "rke" => 3,
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
                })
                .collect(),
            bastion: Some(Bastion {
                public_ip: "203.0.113.7".to_string(),
                private_ip: "10.0.0.5".to_string(),
            }),
            ssh_user: "ubuntu".to_string(),
            ssh_key_path: "~/.ssh/id_ed25519".to_string(),
            load_balancer_dns: (topology != "docker")
                .then(|| "lab-nlb-0123456789.elb.us-east-1.amazonaws.com".to_string()),
            datastore: (topology == "k3s").then(|| DatastoreFact {
                host: "lab-db.abc123.us-east-1.rds.amazonaws.com".to_string(),
                port: 3306,
                database: "k3s".to_string(),
                username: "admin".to_string(),
                password: DATASTORE_PASSWORD.to_string(),
            }),
        }
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
    const SECRET_FILES: [&str; 3] = ["registries.yaml", "k3s-install.env", "rancher-cluster.yml"];

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
        let error = write_artifacts(root.path(), &facts("rke2")).unwrap_err();
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
}
