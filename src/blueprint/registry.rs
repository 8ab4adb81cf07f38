//! The private registry: where the nodes pull from, and (node mode) the registry host that
//! doubles as the SSH bastion (bastion access), with its image store on its own volume.

use super::ids::*;
use super::{all_to, sha256, tcp, BlueprintError, Shared};
use crate::config::{AccessMode, Config, Registry};
use crate::engine::Desired;
use crate::model::*;
use crate::render::{self, RegistryAccess, RegistrySecrets};

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

/// `sg-registry`: admins reach ssh and the registry port, the VPC pulls images.
pub(super) fn security_group(cfg: &Config, shared: &Shared, d: &mut Desired) {
    let Registry::Node { port, .. } = &cfg.registry else {
        return;
    };
    // From the VPC rather than from sg-nodes: sg-nodes already admits ssh from this
    // group, and two groups naming each other would be a dependency cycle.
    let mut ingress = vec![tcp(
        *port,
        Peer::Cidr(shared.vpc_cidr.clone()),
        "nodes pull images",
    )];
    let bastion = cfg.access == AccessMode::Bastion;
    for c in &shared.admin {
        if bastion {
            ingress.push(tcp(22, Peer::Cidr(c.clone()), "admin ssh"));
        }
        ingress.push(tcp(*port, Peer::Cidr(c.clone()), "admin pushes images"));
    }
    d.insert(
        SG_BASTION,
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: shared.vpc.clone(),
            // The same in both access modes: a security group's description cannot
            // change in place, and switching modes must not replace the group.
            description: format!("{} registry and ssh bastion", cfg.name),
            ingress,
            egress: vec![all_to(
                "0.0.0.0/0",
                "registry host fetches packages and images",
            )],
        }),
    );
}

/// The registry host (also the ssh bastion) and its image volume.
pub(super) fn host(
    cfg: &Config,
    registry: &RegistryPlan,
    key_pair: Option<&LogicalId>,
    d: &mut Desired,
) -> Result<(), BlueprintError> {
    let (
        Registry::Node {
            instance_type,
            volume_gb,
            port,
        },
        Some(secrets),
    ) = (&cfg.registry, &registry.secrets)
    else {
        return Ok(());
    };
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
            key_pair: key_pair.cloned(),
            instance_profile: super::access::instance_profile(cfg),
            user_data_sha256: sha256(&user_data),
            user_data,
        }),
    );
    Ok(())
}
