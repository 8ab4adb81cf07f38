//! `provision init`: write a commented provision.toml to start from.

use anyhow::{bail, Context, Result};

use super::{exit, Ctx};
use crate::cli::TopologyArg;
use crate::config::{self, Topology};
use crate::state::store;

pub(super) fn init(ctx: &Ctx, topology: TopologyArg, force: bool) -> Result<u8> {
    let topology = match topology {
        TopologyArg::K3s => Topology::K3s,
        TopologyArg::Rke => Topology::Rke,
        TopologyArg::Rke2 => Topology::Rke2,
        TopologyArg::Docker => Topology::Docker,
    };
    if ctx.config_path.exists() && !force {
        bail!(
            "{} already exists; use --force to overwrite it or --config to write another file",
            ctx.config_path.display()
        );
    }
    let text = config::template(topology);
    store::write_atomic(&ctx.config_path, None, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", ctx.config_path.display()))?;
    ctx.say(&format!(
        "wrote {} for topology {}; edit nodes.ami and dns.zone, then run `provision plan`",
        ctx.config_path.display(),
        topology.as_str()
    ));
    Ok(exit::OK)
}
