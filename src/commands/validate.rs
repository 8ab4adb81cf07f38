//! `provision validate`: check the config; no cloud calls.

use anyhow::Result;

use super::{exit, Ctx};

pub(super) fn validate(ctx: &Ctx) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let summary = format!(
        "{}: valid ({} topology, {} node(s), region {}, {})",
        ctx.config_path.display(),
        cfg.topology.as_str(),
        cfg.nodes.count,
        cfg.region,
        cfg.hostname
    );
    println!("{summary}");
    Ok(exit::OK)
}
