//! cloud-init user-data for each machine role.
//!
//! The output must be byte-for-byte stable for the same inputs: the engine compares
//! user-data hashes to decide whether an instance must be replaced.

use base64::Engine as _;

use super::secrets::RegistrySecrets;
use super::templates::render;
use super::RenderError;
use crate::config::Topology;

/// EC2's limit on user-data, in bytes, before base64.
pub const USER_DATA_LIMIT: usize = 16384;

/// Where K3s nodes keep the registry CA (`registries.yaml` points at it).
const K3S_CA_FILE: &str = "/etc/rancher/k3s/registry-ca.crt";
/// Where RKE2 servers keep the registry CA.
const RKE2_CA_FILE: &str = "/etc/rancher/rke2/registry-ca.crt";
/// On the docker topology's node: what `docker-run.sh` mounts at
/// `/etc/rancher/k3s/registries.yaml` in Rancher's container …
pub const RANCHER_REGISTRIES_YAML: &str = "/etc/rancher/provision/registries.yaml";
/// … and at `/etc/rancher/k3s/registry-ca.crt` (the `ca_file` it names).
pub const RANCHER_REGISTRY_CA: &str = "/etc/rancher/provision/registry-ca.crt";

/// What a cluster node needs to pull from the private registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    /// `host:port`, no scheme: `lab-registry.lab.example.com:5000`.
    pub host_port: String,
    pub username: String,
    pub password: String,
    /// The CA that signed the registry's certificate; `None` when it is publicly trusted.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("host_port", &self.host_port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ca_pem", &self.ca_pem)
            .finish()
    }
}

/// How a cluster node runs its containers, which decides its user-data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// K3s with its embedded containerd: `registries.yaml`.
    K3s,
    /// Docker (RKE nodes): `certs.d`, login, sysctls.
    Docker,
    /// The docker topology's node: as [`NodeRole::Docker`], plus the `registries.yaml` and
    /// CA that `docker-run.sh` mounts into Rancher's container, whose own K3s pulls the
    /// system images (`CATTLE_SYSTEM_DEFAULT_REGISTRY` only rewrites their names).
    RancherDocker,
    /// RKE2 server: its own `registries.yaml` and `config.yaml` under `/etc/rancher/rke2/`.
    Rke2,
}

impl NodeRole {
    pub fn for_topology(topology: Topology) -> NodeRole {
        match topology {
            Topology::K3s => NodeRole::K3s,
            Topology::Rke => NodeRole::Docker,
            Topology::Docker => NodeRole::RancherDocker,
            Topology::Rke2 => NodeRole::Rke2,
        }
    }
}

/// The user-data of the registry host: mounts the data volume, installs Docker and runs
/// `registry:2` on `port` with the TLS certificate and htpasswd of `secrets`.
pub fn registry_host_user_data(
    secrets: &RegistrySecrets,
    port: u16,
) -> Result<String, RenderError> {
    const TEMPLATE: &str = "registry-host.yaml.j2";
    let user_data = render(
        TEMPLATE,
        minijinja::context! {
            ca_cert_pem => with_final_newline(&secrets.ca_cert_pem),
            server_cert_pem => with_final_newline(&secrets.server_cert_pem),
            server_key_pem => with_final_newline(&secrets.server_key_pem),
            htpasswd => with_final_newline(&secrets.htpasswd_line),
            port => port,
        },
    )?;
    check_size(TEMPLATE, user_data)
}

/// The user-data of a cluster node of `role`, pointing its container runtime at the
/// registry described by `access`. `hostname` (Rancher's) is a TLS name of RKE2 servers.
pub fn node_user_data(
    role: NodeRole,
    access: &RegistryAccess,
    hostname: &str,
) -> Result<String, RenderError> {
    let ca_pem = access.ca_pem.as_deref().map(with_final_newline);
    let (template, user_data) = match role {
        NodeRole::K3s => {
            const TEMPLATE: &str = "k3s-node.yaml.j2";
            let registries_yaml = registries_yaml(access)?;
            let user_data = render(TEMPLATE, minijinja::context! { registries_yaml, ca_pem })?;
            (TEMPLATE, user_data)
        }
        NodeRole::Rke2 => {
            const TEMPLATE: &str = "rke2-node.yaml.j2";
            let registries_yaml = rke2_registries_yaml(access)?;
            let config_yaml = rke2_config_yaml(&Rke2Config {
                server: None,
                token: None,
                tls_san: vec![hostname.to_string()],
                registry: access.host_port.clone(),
            })?;
            let user_data = render(
                TEMPLATE,
                minijinja::context! { registries_yaml, config_yaml, ca_pem, ca_file => RKE2_CA_FILE },
            )?;
            (TEMPLATE, user_data)
        }
        NodeRole::Docker | NodeRole::RancherDocker => {
            const TEMPLATE: &str = "docker-node.yaml.j2";
            // Inside Rancher's container the CA sits where K3s's registries.yaml names it.
            let rancher_registries_yaml = (role == NodeRole::RancherDocker)
                .then(|| registries_yaml_with_ca(access, K3S_CA_FILE))
                .transpose()?;
            let user_data = render(
                TEMPLATE,
                minijinja::context! {
                    ca_path => format!("/etc/docker/certs.d/{}/ca.crt", access.host_port),
                    ca_pem,
                    docker_config_json => docker_config_json(access),
                    rancher_registries_yaml,
                    rancher_registries_path => RANCHER_REGISTRIES_YAML,
                    rancher_ca_path => RANCHER_REGISTRY_CA,
                },
            )?;
            (TEMPLATE, user_data)
        }
    };
    check_size(template, user_data)
}

/// K3s's `/etc/rancher/k3s/registries.yaml`: `docker.io` mirrored to the registry, with
/// its credentials and (when known) its CA. Shared by the node user-data and the artifacts.
/// Every string is double-quoted, so YAML 1.1 parsers read a password like `yes` as text.
pub fn registries_yaml(access: &RegistryAccess) -> Result<String, RenderError> {
    registries_yaml_with_ca(access, K3S_CA_FILE)
}

/// RKE2's `/etc/rancher/rke2/registries.yaml` (the same format as K3s's), its CA under
/// `/etc/rancher/rke2/`.
pub fn rke2_registries_yaml(access: &RegistryAccess) -> Result<String, RenderError> {
    registries_yaml_with_ca(access, RKE2_CA_FILE)
}

/// RKE2's `/etc/rancher/rke2/config.yaml` of a server.
#[derive(Clone, PartialEq, Eq)]
pub struct Rke2Config {
    /// `https://<first server>:9345` on joining servers.
    pub server: Option<String>,
    /// The cluster token, the same on every server (a secret).
    pub token: Option<String>,
    /// Names the servers' certificates carry: the load balancer's, Rancher's hostname.
    pub tls_san: Vec<String>,
    /// `host:port` of the private registry (`system-default-registry`).
    pub registry: String,
}

pub fn rke2_config_yaml(config: &Rke2Config) -> Result<String, RenderError> {
    render(
        "rke2-config.yaml.j2",
        minijinja::context! {
            server => &config.server,
            token => &config.token,
            tls_san => &config.tls_san,
            registry => &config.registry,
        },
    )
}

fn registries_yaml_with_ca(access: &RegistryAccess, ca_file: &str) -> Result<String, RenderError> {
    render(
        "registries.yaml.j2",
        minijinja::context! {
            endpoint => format!("https://{}", access.host_port),
            host_port => &access.host_port,
            username => &access.username,
            password => &access.password,
            ca_file => access.ca_pem.as_ref().map(|_| ca_file),
        },
    )
}

/// `/root/.docker/config.json` logged in to the registry, so `docker run` of the Rancher
/// image works on a Docker install.
/// Docker's login file for the registry; `None` for an anonymous registry.
fn docker_config_json(access: &RegistryAccess) -> Option<String> {
    if access.username.is_empty() {
        return None;
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", access.username, access.password));
    let config = serde_json::json!({ "auths": { &access.host_port: { "auth": auth } } });
    Some(format!("{config:#}\n"))
}

fn with_final_newline(text: &str) -> String {
    let mut text = text.trim_end().to_string();
    text.push('\n');
    text
}

fn check_size(template: &'static str, user_data: String) -> Result<String, RenderError> {
    if user_data.len() > USER_DATA_LIMIT {
        return Err(RenderError::UserDataTooLarge {
            template,
            size: user_data.len(),
            limit: USER_DATA_LIMIT,
        });
    }
    Ok(user_data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_yaml::Value;

    const HOSTNAME: &str = "rancher.lab.example.com";

    pub(crate) const FAKE_CA: &str =
        "-----BEGIN CERTIFICATE-----\nRkFLRSBDQQ==\n-----END CERTIFICATE-----\n";

    pub(crate) fn fake_secrets() -> RegistrySecrets {
        RegistrySecrets {
            ca_cert_pem: FAKE_CA.to_string(),
            ca_key_pem: "-----BEGIN TEST KEY-----\nRkFLRSBDQSBLRVk=\n-----END TEST KEY-----\n"
                .to_string(),
            server_cert_pem:
                "-----BEGIN CERTIFICATE-----\nRkFLRSBTRVJWRVI=\n-----END CERTIFICATE-----\n"
                    .to_string(),
            server_key_pem:
                "-----BEGIN TEST KEY-----\nRkFLRSBTRVJWRVIgS0VZ\n-----END TEST KEY-----\n"
                    .to_string(),
            username: "rancher".to_string(),
            password: "Fixed0Password0For0Snapshots0000".to_string(),
            htpasswd_line: "rancher:$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
                .to_string(),
            server_cert_not_after: 1_900_000_000,
        }
    }

    pub(crate) fn fake_access() -> RegistryAccess {
        RegistryAccess {
            host_port: "lab-registry.lab.example.com:5000".to_string(),
            username: "rancher".to_string(),
            password: "Fixed0Password0For0Snapshots0000".to_string(),
            ca_pem: Some(FAKE_CA.to_string()),
        }
    }

    /// A password that breaks naive YAML, JSON and shell quoting.
    pub(crate) const NASTY_PASSWORD: &str = r#"p"a:s's #w{{o}}\r\d - [x]: &y *z"#;

    fn parse(user_data: &str) -> Value {
        assert!(user_data.starts_with("#cloud-config\n"));
        serde_yaml::from_str(user_data).unwrap()
    }

    fn write_file<'a>(doc: &'a Value, path: &str) -> &'a Value {
        doc["write_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|file| file["path"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("{path} not written"))
    }

    fn content<'a>(doc: &'a Value, path: &str) -> &'a str {
        write_file(doc, path)["content"].as_str().unwrap()
    }

    #[test]
    fn registry_host_snapshot() {
        let user_data = registry_host_user_data(&fake_secrets(), 5000).unwrap();
        insta::assert_snapshot!(user_data);
    }

    #[test]
    fn k3s_node_snapshot() {
        let user_data = node_user_data(NodeRole::K3s, &fake_access(), HOSTNAME).unwrap();
        insta::assert_snapshot!(user_data);
    }

    #[test]
    fn rke2_node_snapshot() {
        let user_data = node_user_data(NodeRole::Rke2, &fake_access(), HOSTNAME).unwrap();
        insta::assert_snapshot!(user_data);
    }

    #[test]
    fn rke2_node_writes_registries_and_config_but_no_token_or_server() {
        let mut access = fake_access();
        access.password = NASTY_PASSWORD.to_string();
        let doc = parse(&node_user_data(NodeRole::Rke2, &access, HOSTNAME).unwrap());
        let registries: Value =
            serde_yaml::from_str(content(&doc, "/etc/rancher/rke2/registries.yaml")).unwrap();
        assert_eq!(
            registries["mirrors"]["docker.io"]["endpoint"][0],
            "https://lab-registry.lab.example.com:5000"
        );
        let config = &registries["configs"]["lab-registry.lab.example.com:5000"];
        assert_eq!(config["auth"]["password"], NASTY_PASSWORD);
        assert_eq!(config["tls"]["ca_file"], RKE2_CA_FILE);
        assert_eq!(content(&doc, RKE2_CA_FILE), FAKE_CA);
        assert_eq!(
            write_file(&doc, "/etc/rancher/rke2/config.yaml")["permissions"],
            "0600"
        );
        let config: Value =
            serde_yaml::from_str(content(&doc, "/etc/rancher/rke2/config.yaml")).unwrap();
        assert_eq!(
            config["system-default-registry"],
            "lab-registry.lab.example.com:5000"
        );
        assert_eq!(config["tls-san"][0], HOSTNAME);
        assert_eq!(config["disable-default-registry-endpoint"], true);
        assert!(
            config.get("token").is_none(),
            "the token is not in user-data"
        );
        assert!(
            config.get("server").is_none(),
            "not known before the first server"
        );
    }

    #[test]
    fn k3s_and_docker_user_data_ignore_the_hostname() {
        // Their user-data is hashed into the state: a change would replace every node.
        for role in [NodeRole::K3s, NodeRole::Docker] {
            assert_eq!(
                node_user_data(role, &fake_access(), HOSTNAME).unwrap(),
                node_user_data(role, &fake_access(), "other.example.com").unwrap()
            );
        }
    }

    #[test]
    fn docker_node_snapshot() {
        let user_data = node_user_data(NodeRole::Docker, &fake_access(), HOSTNAME).unwrap();
        insta::assert_snapshot!(user_data);
    }

    #[test]
    fn registry_host_writes_files_and_runs_registry() {
        let secrets = fake_secrets();
        let doc = parse(&registry_host_user_data(&secrets, 5443).unwrap());
        assert_eq!(content(&doc, "/etc/registry/certs/ca.crt"), FAKE_CA);
        assert_eq!(
            content(&doc, "/etc/registry/certs/registry.key"),
            secrets.server_key_pem
        );
        assert_eq!(
            write_file(&doc, "/etc/registry/certs/registry.key")["permissions"],
            "0600"
        );
        assert_eq!(
            content(&doc, "/etc/registry/auth/htpasswd"),
            format!("{}\n", secrets.htpasswd_line)
        );
        let commands: Vec<Vec<&str>> = doc["runcmd"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| {
                c.as_sequence()
                    .unwrap()
                    .iter()
                    .map(|arg| arg.as_str().unwrap())
                    .collect()
            })
            .collect();
        // Docker is installed and the image pulled through the retrying wrapper, before
        // the registry runs.
        let retry = "/usr/local/sbin/provision-retry";
        let install = commands
            .iter()
            .position(|c| c[0] == retry && c.join(" ").contains("apt-get install -y docker.io"))
            .expect("docker install with retries");
        let pull = commands
            .iter()
            .position(|c| c == &vec![retry, "docker", "pull", "registry:2"])
            .expect("image pull with retries");
        let run = commands
            .iter()
            .position(|c| c.len() > 2 && c[..2] == ["docker", "run"])
            .expect("docker run");
        assert!(install < pull && pull < run, "{commands:?}");
        assert!(
            doc.get("packages").is_none(),
            "cloud-init's package module never retries"
        );
        let docker_run = &commands[run];
        // Quoted, so YAML 1.1 (cloud-init) does not read 5443:5000 as a base-60 number.
        assert!(docker_run.windows(2).any(|w| w == ["-p", "5443:5000"]));
        assert_eq!(docker_run.last(), Some(&"registry:2"));
        assert!(docker_run.contains(&"REGISTRY_AUTH=htpasswd"));
    }

    /// Run the retry wrapper from the registry host's user-data with `sh`.
    fn run_retry(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
        let doc = parse(&registry_host_user_data(&fake_secrets(), 5000).unwrap());
        let script = dir.join("provision-retry");
        std::fs::write(&script, content(&doc, "/usr/local/sbin/provision-retry")).unwrap();
        std::process::Command::new("sh")
            .arg(&script)
            .args(args)
            .current_dir(dir)
            .env("PROVISION_RETRY_ATTEMPTS", "3")
            .env("PROVISION_RETRY_DELAY", "0")
            .env("PROVISION_RETRY_LOG", dir.join("retry.log"))
            .output()
            .unwrap()
    }

    /// Run the registry host's filesystem grower with `sh` against stub tools in `dir/bin`:
    /// `/var/lib/registry` mounted from `source` as `fstype`, `df` saying 100 KiB before the
    /// grow and 200 KiB after. Returns the run and the grow commands called.
    fn run_grow(source: &str, fstype: &str, parent: &str) -> (std::process::Output, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let doc = parse(&registry_host_user_data(&fake_secrets(), 5000).unwrap());
        let script = dir.path().join("provision-registry-grow");
        std::fs::write(
            &script,
            content(&doc, "/usr/local/sbin/provision-registry-grow"),
        )
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let calls = dir.path().join("calls");
        let grown = dir.path().join("grown");
        let stubs = [
            ("mountpoint", "exit 0".to_string()),
            (
                "findmnt",
                format!(
                    "case \"$*\" in *SOURCE*) echo {source} ;; *FSTYPE*) echo {fstype} ;; esac"
                ),
            ),
            ("lsblk", format!("echo {parent}")),
            (
                "df",
                format!(
                    "echo 'Filesystem 1024-blocks Used Available Capacity Mounted'; \
                     if [ -f {g} ]; then echo 'x 200 0 200 0% /'; else echo 'x 100 0 100 0% /'; fi",
                    g = grown.display()
                ),
            ),
            (
                "resize2fs",
                format!(
                    "echo \"resize2fs $*\" >> {c}; touch {g}",
                    c = calls.display(),
                    g = grown.display()
                ),
            ),
            (
                "xfs_growfs",
                format!(
                    "echo \"xfs_growfs $*\" >> {c}; touch {g}",
                    c = calls.display(),
                    g = grown.display()
                ),
            ),
            (
                "growpart",
                format!("echo \"growpart $*\" >> {c}", c = calls.display()),
            ),
        ];
        for (name, body) in stubs {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // A partition number where the script looks for it.
        let sys = dir.path().join("sys");
        let name = source.trim_start_matches("/dev/");
        std::fs::create_dir_all(sys.join("class/block").join(name)).unwrap();
        if !parent.is_empty() {
            std::fs::write(sys.join("class/block").join(name).join("partition"), "1\n").unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .arg(&script)
            .env("PATH", path)
            .env("PROVISION_GROW_LOG", dir.path().join("grow.log"))
            .env("PROVISION_GROW_SYS", &sys)
            .output()
            .unwrap();
        let called = std::fs::read_to_string(&calls).unwrap_or_default();
        (out, called)
    }

    #[test]
    fn the_docker_topology_node_writes_what_rancher_mounts() {
        let doc =
            parse(&node_user_data(NodeRole::RancherDocker, &fake_access(), HOSTNAME).unwrap());
        let registries: Value =
            serde_yaml::from_str(content(&doc, RANCHER_REGISTRIES_YAML)).unwrap();
        let host = fake_access().host_port;
        let config = &registries["configs"][host.as_str()];
        assert_eq!(config["auth"]["username"], fake_access().username.as_str());
        assert_eq!(config["auth"]["password"], fake_access().password.as_str());
        // The CA where the file names it inside the container.
        assert_eq!(config["tls"]["ca_file"], "/etc/rancher/k3s/registry-ca.crt");
        assert!(content(&doc, RANCHER_REGISTRY_CA).contains("BEGIN CERTIFICATE"));
        let mode = doc["write_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|f| f["path"] == RANCHER_REGISTRIES_YAML)
            .map(|f| f["permissions"].as_str().unwrap().to_string());
        assert_eq!(mode.as_deref(), Some("0600"), "it holds the password");
        // An RKE node runs no Rancher container: none of it.
        let rke = node_user_data(NodeRole::Docker, &fake_access(), HOSTNAME).unwrap();
        assert!(!rke.contains(RANCHER_REGISTRIES_YAML), "{rke}");
    }

    #[test]
    fn the_registry_filesystem_grows_to_its_volume() {
        // ext4 on the whole disk, as provision formats it.
        let (out, calls) = run_grow("/dev/nvme1n1", "ext4", "");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(calls, "resize2fs /dev/nvme1n1\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("grew /var/lib/registry (/dev/nvme1n1, ext4) from 100 KiB to 200 KiB"),
            "{stderr}"
        );
        // xfs grows through its mount point; a partition is grown first.
        let (out, calls) = run_grow("/dev/xvdb1", "xfs", "xvdb");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            calls,
            "growpart /dev/xvdb 1\nxfs_growfs /var/lib/registry\n"
        );
        // At every boot, when a disk is resized, and every 10 minutes.
        let doc = parse(&registry_host_user_data(&fake_secrets(), 5000).unwrap());
        let service = content(&doc, "/etc/systemd/system/provision-registry-grow.service");
        assert!(service.contains("ExecStart=/usr/local/sbin/provision-registry-grow"));
        assert!(service.contains("WantedBy=multi-user.target"));
        let timer = content(&doc, "/etc/systemd/system/provision-registry-grow.timer");
        assert!(timer.contains("OnUnitActiveSec=10min"), "{timer}");
        let rule = content(&doc, "/etc/udev/rules.d/90-provision-registry-grow.rules");
        assert!(
            rule.contains("ENV{RESIZE}==\"1\"") && rule.contains("provision-registry-grow.service")
        );
        let runcmd = serde_yaml::to_string(&doc["runcmd"]).unwrap();
        assert!(
            runcmd.contains("provision-registry-grow.service")
                && runcmd.contains("provision-registry-grow.timer"),
            "{runcmd}"
        );
    }

    #[test]
    fn registry_retry_wrapper_retries_then_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        // Fails the first time (no marker yet), succeeds the second.
        let out = run_retry(
            dir.path(),
            &["sh", "-c", "test -f marker || { touch marker; exit 1; }"],
        );
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("(try 1 of 3); retrying"), "{stderr}");
        assert!(stderr.contains("succeeded on try 2"), "{stderr}");
    }

    #[test]
    fn registry_retry_wrapper_gives_up_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_retry(dir.path(), &["false"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("giving up on 'false' after 3 tries"),
            "{stderr}"
        );
        let log = std::fs::read_to_string(dir.path().join("retry.log")).unwrap();
        assert_eq!(log.lines().count(), 3, "{log}");
    }

    #[test]
    fn registry_volume_script_is_valid_sh() {
        let doc = parse(&registry_host_user_data(&fake_secrets(), 5000).unwrap());
        let script = content(&doc, "/usr/local/sbin/provision-registry-volume");
        assert!(script.starts_with("#!/bin/sh\n"));
        let output = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn k3s_node_registries_yaml_round_trips() {
        let mut access = fake_access();
        access.password = NASTY_PASSWORD.to_string();
        let doc = parse(&node_user_data(NodeRole::K3s, &access, HOSTNAME).unwrap());
        let registries: Value =
            serde_yaml::from_str(content(&doc, "/etc/rancher/k3s/registries.yaml")).unwrap();
        assert_eq!(
            registries["mirrors"]["docker.io"]["endpoint"][0],
            "https://lab-registry.lab.example.com:5000"
        );
        let config = &registries["configs"]["lab-registry.lab.example.com:5000"];
        assert_eq!(config["auth"]["username"], "rancher");
        assert_eq!(config["auth"]["password"], NASTY_PASSWORD);
        assert_eq!(config["tls"]["ca_file"], K3S_CA_FILE);
        assert_eq!(content(&doc, K3S_CA_FILE), FAKE_CA);
        assert_eq!(
            write_file(&doc, "/etc/rancher/k3s/registries.yaml")["permissions"],
            "0600"
        );
        assert!(doc["runcmd"][0]
            .as_str()
            .unwrap()
            .contains("update-ca-certificates"));
    }

    #[test]
    fn k3s_node_without_ca_has_no_tls_section() {
        let mut access = fake_access();
        access.ca_pem = None;
        let doc = parse(&node_user_data(NodeRole::K3s, &access, HOSTNAME).unwrap());
        let registries: Value =
            serde_yaml::from_str(content(&doc, "/etc/rancher/k3s/registries.yaml")).unwrap();
        assert!(registries["configs"]["lab-registry.lab.example.com:5000"]
            .get("tls")
            .is_none());
        assert_eq!(doc["write_files"].as_sequence().unwrap().len(), 1);
        assert!(doc.get("runcmd").is_none());
    }

    #[test]
    fn docker_node_trusts_ca_logs_in_and_sets_sysctls() {
        let mut access = fake_access();
        access.password = NASTY_PASSWORD.to_string();
        let doc = parse(&node_user_data(NodeRole::Docker, &access, HOSTNAME).unwrap());
        assert_eq!(
            content(
                &doc,
                "/etc/docker/certs.d/lab-registry.lab.example.com:5000/ca.crt"
            ),
            FAKE_CA
        );
        let config: serde_json::Value =
            serde_json::from_str(content(&doc, "/root/.docker/config.json")).unwrap();
        let auth = config["auths"]["lab-registry.lab.example.com:5000"]["auth"]
            .as_str()
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            format!("rancher:{NASTY_PASSWORD}")
        );
        let sysctl = content(&doc, "/etc/sysctl.d/90-provision-rancher.conf");
        assert!(sysctl.contains("net.bridge.bridge-nf-call-iptables = 1"));
        assert!(sysctl.contains("net.ipv4.ip_forward = 1"));
        let runcmd = serde_yaml::to_string(&doc["runcmd"]).unwrap();
        assert!(runcmd.contains("sysctl"), "{runcmd}");
    }

    #[test]
    fn nasty_values_in_secrets_stay_valid_yaml() {
        let mut secrets = fake_secrets();
        secrets.htpasswd_line = format!("rancher:{NASTY_PASSWORD}");
        secrets.server_key_pem = format!("  {NASTY_PASSWORD}\n\t'\"\n");
        let doc = parse(&registry_host_user_data(&secrets, 5000).unwrap());
        assert_eq!(
            content(&doc, "/etc/registry/auth/htpasswd"),
            format!("rancher:{NASTY_PASSWORD}\n")
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        let access = fake_access();
        assert_eq!(
            node_user_data(NodeRole::K3s, &access, HOSTNAME).unwrap(),
            node_user_data(NodeRole::K3s, &access, HOSTNAME).unwrap()
        );
        assert_eq!(
            registry_host_user_data(&fake_secrets(), 5000).unwrap(),
            registry_host_user_data(&fake_secrets(), 5000).unwrap()
        );
    }

    #[test]
    fn too_large_user_data_is_an_error() {
        let mut access = fake_access();
        access.ca_pem = Some("A".repeat(USER_DATA_LIMIT));
        let error = node_user_data(NodeRole::Docker, &access, HOSTNAME).unwrap_err();
        assert!(
            matches!(error, RenderError::UserDataTooLarge { template: "docker-node.yaml.j2", size, .. } if size > USER_DATA_LIMIT),
            "{error}"
        );
    }

    #[test]
    fn node_role_follows_topology() {
        assert_eq!(NodeRole::for_topology(Topology::K3s), NodeRole::K3s);
        assert_eq!(NodeRole::for_topology(Topology::Rke), NodeRole::Docker);
        assert_eq!(
            NodeRole::for_topology(Topology::Docker),
            NodeRole::RancherDocker
        );
        assert_eq!(NodeRole::for_topology(Topology::Rke2), NodeRole::Rke2);
    }
}
