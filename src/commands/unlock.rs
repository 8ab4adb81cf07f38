//! `provision unlock`: remove a stale lock.

use anyhow::Result;

use super::{exit, Ctx};
use crate::state::{lock, Paths};

pub(super) fn unlock(ctx: &Ctx, force: bool) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    match lock::unlock(&paths.lock, force)? {
        lock::Unlock::WasFree => ctx.say(&format!("env `{}` is not locked.", cfg.name)),
        lock::Unlock::Forced(holder) => ctx.say(&format!(
            "removed the lock of env `{}`{}",
            cfg.name,
            holder
                .map(|h| format!(
                    " (was held by pid {} on {} for `{}`)",
                    h.pid, h.host, h.command
                ))
                .unwrap_or_default()
        )),
    }
    Ok(exit::OK)
}
