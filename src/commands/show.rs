//! `provision show`: what the state holds (resources, ids, status).

use anyhow::Result;

use super::{exit, Ctx};
use crate::model::Attrs;
use crate::state::{store, Paths};

pub(super) fn show(ctx: &Ctx) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    let Some(state) = store::load(&paths, &cfg.name)? else {
        if ctx.json {
            println!("{}", serde_json::json!({"env": cfg.name, "resources": []}));
        } else {
            println!(
                "No state for env `{}` ({} does not exist).",
                cfg.name,
                paths.state.display()
            );
        }
        return Ok(exit::OK);
    };
    if ctx.json {
        let resources: Vec<_> = state
            .resources
            .iter()
            .map(|(id, e)| {
                serde_json::json!({
                    "id": id, "kind": e.kind, "status": e.status, "cloud_id": e.cloud_id,
                    "attrs": e.attrs, "depends_on": e.depends_on, "updated_at": e.updated_at,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "env": state.env, "lineage": state.lineage, "serial": state.serial,
            "format_version": state.format_version, "resources": resources,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(exit::OK);
    }
    println!(
        "env {} (serial {}, lineage {})",
        state.env, state.serial, state.lineage
    );
    let width = state
        .resources
        .keys()
        .map(|k| k.as_str().len())
        .max()
        .unwrap_or(8);
    for (id, e) in &state.resources {
        let status = match e.status {
            crate::state::Status::Created => "created",
            crate::state::Status::Creating => {
                "creating (interrupted; next run adopts or creates it)"
            }
        };
        let detail = match &e.attrs {
            Attrs::Instance {
                private_ip,
                public_ip,
                ..
            } => match public_ip {
                Some(ip) => format!("{private_ip} public {ip}"),
                None => private_ip.clone(),
            },
            Attrs::LoadBalancer { dns_name, .. } => dns_name.clone(),
            Attrs::Database {
                address, status, ..
            } => format!("{address} ({status})"),
            Attrs::DnsRecord {
                fqdn, record_type, ..
            } => format!("{fqdn} {record_type}"),
            _ => String::new(),
        };
        println!(
            "  {:<width$}  {:<15} {:<28} {status} {detail}",
            id.as_str(),
            e.kind.label(),
            e.cloud_id
        );
    }
    Ok(exit::OK)
}
