//! `provision artifacts`: write the files for the next install steps.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{connect, exit, outputs, pull_shared_secrets, read_state, Ctx};
use crate::blueprint::{self, ids};
use crate::config::{AccessMode, Config, Topology};
use crate::model::{Attrs, LogicalId};
use crate::state::Paths;
use crate::ui::Verbosity;

pub(super) async fn artifacts(ctx: &Ctx, dir: Option<PathBuf>) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    let (backend, state) = read_state(ctx, &cfg).await?;
    pull_shared_secrets(ctx, &cfg, backend.as_ref(), &paths).await?;
    let state = state.with_context(|| {
        format!(
            "no state for env `{}` yet: run `provision apply` first",
            cfg.name
        )
    })?;
    let registry = blueprint::registry_plan(&cfg, &paths.secrets_dir())?;
    let outs = outputs(&cfg, &state);
    // The datastore password is fetched now, straight into a 0600 file, never kept.
    let datastore = match state
        .resources
        .get(&LogicalId::new(ids::DATASTORE))
        .map(|e| (&e.attrs, &e.spec))
    {
        Some((
            Attrs::Database {
                address,
                port,
                secret_arn,
                ..
            },
            crate::model::Spec::Database(spec),
        )) => {
            let cloud = connect(&cfg).await?;
            let password = cloud.secret_value(secret_arn).await.with_context(|| {
                format!("fetching the datastore password from Secrets Manager ({secret_arn})")
            })?;
            Some(crate::render::DatastoreFact {
                engine: spec.engine,
                host: address.clone(),
                port: *port,
                database: spec.database.clone(),
                username: spec.username.clone(),
                password,
            })
        }
        _ => None,
    };
    let facts = crate::render::Facts {
        env: cfg.name.clone(),
        topology: cfg.topology.as_str().to_string(),
        hostname: cfg.hostname.clone(),
        registry: registry.access.clone(),
        registry_ca_pem: registry.access.ca_pem.clone(),
        nodes: outs
            .nodes
            .iter()
            .map(|(id, ip)| crate::render::NodeFact {
                id: id.clone(),
                private_ip: ip.clone(),
                instance_id: outs.instance_ids.get(id).cloned().unwrap_or_default(),
            })
            .collect(),
        bastion: outs
            .bastion
            .clone()
            .map(|(public_ip, private_ip)| crate::render::Bastion {
                public_ip,
                private_ip,
                forwards: crate::render::bastion_forwards(
                    cfg.topology.as_str(),
                    outs.load_balancer_dns.as_deref(),
                    cfg.load_balancer
                        .as_ref()
                        .is_some_and(|lb| lb.scheme == crate::model::Scheme::InternetFacing),
                    cfg.load_balancer.as_ref().is_some_and(|lb| lb.kube_api),
                    outs.nodes.first().map(|(_, ip)| ip.as_str()),
                ),
            }),
        ssm: (cfg.access == AccessMode::Ssm).then(|| crate::render::SsmAccess {
            region: cfg.region.clone(),
            registry_instance_id: outs.instance_ids.get(ids::REGISTRY).cloned(),
            forwards: crate::render::port_forwards(
                cfg.topology.as_str(),
                outs.load_balancer_dns.as_deref(),
                cfg.load_balancer.as_ref().is_some_and(|lb| lb.kube_api),
                outs.nodes.first().map(|(_, ip)| ip.as_str()),
                datastore.as_ref().map(|d| (d.host.as_str(), d.port)),
            ),
        }),
        ssh_user: cfg.nodes.ssh_user.clone(),
        ssh_key_path: ssh_private_key_path(&cfg),
        load_balancer_dns: outs.load_balancer_dns.clone(),
        datastore,
        // The servers' shared token: made once in the env's secrets folder, never in state.
        cluster_token: (cfg.topology == Topology::Rke2 || cfg.k3s_embedded_etcd())
            .then(|| crate::render::ensure_cluster_token(&paths.secrets_dir()))
            .transpose()?,
        rancher_version: cfg.rancher.version.clone(),
    };
    let dir = dir.unwrap_or_else(|| paths.artifacts_dir());
    let written = crate::render::write_artifacts(&dir, &facts)?;
    if ctx.verbosity >= Verbosity::Normal {
        eprintln!("wrote {} file(s) to {}:", written.len(), dir.display());
        for f in &written {
            eprintln!("  {}", f.display());
        }
        eprintln!("Start with {}", dir.join("NEXT-STEPS.md").display());
    }
    Ok(exit::OK)
}

/// The private key next to the configured public key (`id_ed25519.pub` -> `id_ed25519`).
/// The private key beside `nodes.ssh_public_key`, as an absolute path: `ssh_config` and
/// NEXT-STEPS are used from the artifacts folder, where a path relative to the config's
/// folder finds nothing. (`~/` stays: ssh expands it itself.)
fn ssh_private_key_path(cfg: &Config) -> String {
    match &cfg.nodes.ssh_public_key {
        Some(p) => {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            let s = p.display().to_string();
            s.strip_suffix(".pub").map(str::to_string).unwrap_or(s)
        }
        None => "~/.ssh/id_ed25519".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_key_path_is_absolute_whatever_folder_ssh_runs_in() {
        let text = "name = \"lab\"\nregion = \"us-east-1\"\ntopology = \"k3s\"\n\
                    hostname = \"rancher.lab.example.com\"\n[nodes]\nami = \"ami-0123456789abcdef0\"\n\
                    [dns]\nzone = \"lab.example.com\"\n";
        let mut cfg =
            crate::config::parse_str(text, std::path::Path::new("provision.toml")).unwrap();
        cfg.nodes.ssh_public_key = Some(std::path::PathBuf::from("keys/id_ed25519.pub"));
        let path = ssh_private_key_path(&cfg);
        assert!(std::path::Path::new(&path).is_absolute(), "{path}");
        assert!(path.ends_with("/keys/id_ed25519"), "{path}");
        cfg.nodes.ssh_public_key = None;
        assert_eq!(ssh_private_key_path(&cfg), "~/.ssh/id_ed25519");
    }
}
