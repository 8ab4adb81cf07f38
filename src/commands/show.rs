//! `provision show`: what the state holds (resources, ids, status, age), as a table
//! grouped like the plan, or one JSON document.

use anyhow::Result;

use super::{exit, Ctx};
use crate::state::{store, Paths};
use crate::ui;

pub(super) fn show(ctx: &Ctx, wide: bool) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    let state = store::load(&paths, &cfg.name)?;
    if ctx.json {
        let doc = ui::json::show_document(&cfg.name, state.as_ref());
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(exit::OK);
    }
    let Some(state) = state else {
        println!(
            "No state for env `{}` ({} does not exist).",
            cfg.name,
            paths.state.display()
        );
        return Ok(exit::OK);
    };
    print!(
        "{}",
        ui::table::render_state(&state, wide, chrono::Utc::now(), ui::Style::stdout())
    );
    Ok(exit::OK)
}
