//! `provision validate`: check the config; no cloud calls.

use anyhow::Result;

use super::{exit, Ctx};

pub(super) fn validate(ctx: &Ctx) -> Result<u8> {
    if !ctx.json {
        let cfg = ctx.load_config()?;
        println!(
            "{}: valid ({} topology, {} node(s), region {}, {})",
            ctx.config_path.display(),
            cfg.topology.as_str(),
            cfg.nodes.count,
            cfg.region,
            cfg.hostname
        );
        return Ok(exit::OK);
    }
    let loaded = crate::config::load(&ctx.config_path);
    let document = crate::ui::json::validate_document(&ctx.config_path, &loaded);
    println!("{}", serde_json::to_string_pretty(&document)?);
    match loaded {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            Ok(exit::OK)
        }
        // Also on stderr, as every failed run.
        Err(e) => Err(e.into()),
    }
}
