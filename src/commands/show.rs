//! `provision show`: what the state holds (resources, ids, status, age), as a table
//! grouped like the plan, or one JSON document.

use anyhow::Result;

use super::{exit, read_state, Ctx};
use crate::ui;

pub(super) async fn show(ctx: &Ctx, wide: bool) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let (backend, state) = read_state(ctx, &cfg).await?;
    if ctx.json {
        let doc = ui::json::show_document(&cfg.name, state.as_ref());
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(exit::OK);
    }
    let Some(state) = state else {
        println!(
            "No state for env `{}` ({} does not exist).",
            cfg.name,
            backend.location()
        );
        return Ok(exit::OK);
    };
    print!(
        "{}",
        ui::table::render_state(&state, wide, chrono::Utc::now(), ui::Style::stdout())
    );
    Ok(exit::OK)
}
