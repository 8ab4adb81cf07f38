//! `provision unlock`: remove a stale lock.

use anyhow::Result;

use super::{exit, Ctx};
use crate::state::lock;

pub(super) async fn unlock(ctx: &Ctx, force: bool) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let backend = ctx.backend(&cfg).await?;
    match backend.unlock(force).await? {
        lock::Unlock::WasFree => ctx.say(&format!("env `{}` is not locked.", cfg.name)),
        lock::Unlock::Forced(holder) => ctx.say(&format!(
            "removed the lock of env `{}`{}",
            cfg.name,
            holder
                .map(|h| format!(
                    " (was held for `provision {}` by {})",
                    h.command,
                    h.describe()
                ))
                .unwrap_or_default()
        )),
    }
    Ok(exit::OK)
}
