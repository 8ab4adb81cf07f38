//! The values users need next, computed from the state alone (no cloud call, no secret).

use std::collections::BTreeMap;

use crate::blueprint::{self, ids};
use crate::config::{AccessMode, Config};
use crate::model::{Attrs, LogicalId, Spec};
use crate::state::{State, Status};

#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub rancher_url: String,
    pub load_balancer_dns: Option<String>,
    /// (logical id, private ip), in node order.
    pub nodes: Vec<(String, String)>,
    /// Instance ids of the nodes (in node order) and of the registry host: what Systems
    /// Manager connects to.
    pub instance_ids: BTreeMap<String, String>,
    pub registry_url: String,
    /// K3s endpoint with a placeholder naming the secret, never the password.
    pub datastore_endpoint: Option<String>,
    /// (public ip, private ip) of the registry host when it is the bastion (bastion access).
    pub bastion: Option<(String, String)>,
}

pub fn outputs(cfg: &Config, state: &State) -> Outputs {
    let created = |id: &str| {
        state
            .resources
            .get(&LogicalId::new(id))
            .filter(|e| e.status == Status::Created)
    };
    let mut nodes: Vec<(u32, String, String)> = state
        .resources
        .iter()
        .filter(|(id, e)| e.status == Status::Created && id.as_str().starts_with("node-"))
        .filter_map(|(id, e)| match &e.attrs {
            Attrs::Instance { private_ip, .. } => {
                let n = id
                    .as_str()
                    .trim_start_matches("node-")
                    .parse()
                    .unwrap_or(u32::MAX);
                Some((n, id.to_string(), private_ip.clone()))
            }
            _ => None,
        })
        .collect();
    nodes.sort();
    let load_balancer_dns = created(ids::NLB).and_then(|e| match &e.attrs {
        Attrs::LoadBalancer { dns_name, .. } => Some(dns_name.clone()),
        _ => None,
    });
    let datastore_endpoint = created(ids::DATASTORE).and_then(|e| match (&e.attrs, &e.spec) {
        (
            Attrs::Database {
                address,
                port,
                secret_arn,
                ..
            },
            Spec::Database(s),
        ) => Some(match s.engine {
            crate::model::DbEngine::Mysql => format!(
                "mysql://{}:<password from {secret_arn}>@tcp({address}:{port})/{}",
                s.username, s.database
            ),
            crate::model::DbEngine::Postgres => format!(
                "postgres://{}:<password from {secret_arn}>@{address}:{port}/{}",
                s.username, s.database
            ),
        }),
        _ => None,
    });
    let instance_ids: BTreeMap<String, String> = state
        .resources
        .iter()
        .filter(|(id, e)| {
            e.status == Status::Created
                && matches!(e.attrs, Attrs::Instance { .. })
                && (id.as_str().starts_with("node-") || id.as_str() == ids::REGISTRY)
        })
        .map(|(id, e)| (id.to_string(), e.cloud_id.clone()))
        .collect();
    // In ssm mode the registry host keeps its public address (it pulls images) but is no
    // jump host: nothing admits SSH.
    let bastion_host = (cfg.access == AccessMode::Bastion)
        .then(|| created(ids::REGISTRY))
        .flatten();
    let bastion = bastion_host.and_then(|e| match &e.attrs {
        Attrs::Instance {
            private_ip,
            public_ip: Some(public),
            ..
        } => Some((public.clone(), private_ip.clone())),
        _ => None,
    });
    Outputs {
        rancher_url: format!("https://{}", cfg.hostname),
        load_balancer_dns,
        nodes: nodes.into_iter().map(|(_, id, ip)| (id, ip)).collect(),
        instance_ids,
        registry_url: blueprint::registry_host_port(cfg),
        datastore_endpoint,
        bastion,
    }
}

impl Outputs {
    pub fn to_map(&self) -> BTreeMap<String, serde_json::Value> {
        use serde_json::Value;
        let opt = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
        let mut m = BTreeMap::new();
        m.insert(
            "rancher_url".into(),
            Value::String(self.rancher_url.clone()),
        );
        m.insert("load_balancer_dns".into(), opt(&self.load_balancer_dns));
        m.insert(
            "node_private_ips".into(),
            Value::Array(
                self.nodes
                    .iter()
                    .map(|(_, ip)| Value::String(ip.clone()))
                    .collect(),
            ),
        );
        m.insert(
            "registry_url".into(),
            Value::String(self.registry_url.clone()),
        );
        m.insert("datastore_endpoint".into(), opt(&self.datastore_endpoint));
        m.insert(
            "ssh_bastion".into(),
            opt(&self.bastion.as_ref().map(|(p, _)| p.clone())),
        );
        m
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.to_map() {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "-".into(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            out.push_str(&format!("  {k:<20} {text}\n"));
        }
        if self.bastion.is_some() {
            // No Elastic IP: EC2 gives a stopped instance a new public address.
            out.push_str(
                "  (ssh_bastion is the host's current public IP: it changes when the host is \
                 stopped and started, e.g. by a type change; run `provision artifacts` then)\n",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bastion_address_is_said_to_change_on_stop_and_start() {
        let outs = Outputs {
            bastion: Some(("203.0.113.7".into(), "10.0.0.5".into())),
            ..Default::default()
        };
        let text = outs.render_text();
        assert!(
            text.contains("203.0.113.7")
                && text.contains("changes when the host is stopped and started"),
            "{text}"
        );
        assert!(!Outputs::default()
            .render_text()
            .contains("stopped and started"));
    }
}
