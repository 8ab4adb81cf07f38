//! `provision plan`: read state and the live cloud, print what apply would do.

use std::path::Path;

use anyhow::{Context, Result};

use super::planfile::{PlanFile, PLAN_FORMAT};
use super::{connect, exit, load_state, lock_env, prepare, Ctx};
use crate::engine::{self, PlanInput};
use crate::state::store;
use crate::ui;

/// The flags of `plan`.
pub(super) struct Flags {
    pub detailed: bool,
    pub destroy: bool,
    pub compact: bool,
    pub replace: Vec<String>,
}

pub(super) async fn plan(ctx: &Ctx, out: Option<&Path>, flags: Flags) -> Result<u8> {
    let Flags {
        detailed,
        destroy,
        compact,
        replace,
    } = flags;
    let p = prepare(ctx).await?;
    let replace = super::replace_ids(&p.desired, &replace)?;
    lock_env(p.backend.as_ref(), "plan").await?;
    let state = load_state(p.backend.as_ref(), &p.cfg.name).await?;
    let cloud = connect(&p.cfg).await?;
    let plan = engine::make_plan(
        cloud.as_ref(),
        PlanInput {
            env: &p.cfg.name,
            desired: &p.desired,
            state: &state,
            destroy,
            replace: &replace,
        },
    )
    .await?;
    if ctx.json {
        let doc = ui::json::plan_document(&plan, &p.desired);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let view = ui::PlanView {
            compact,
            style: ui::Style::stdout(),
        };
        print!("{}", ui::render_plan(&plan, &p.desired, view));
    }
    if let Some(out) = out {
        let doc = PlanFile {
            format: PLAN_FORMAT.into(),
            plan: plan.clone(),
        };
        store::write_atomic(out, None, &serde_json::to_vec_pretty(&doc)?, 0o600)
            .with_context(|| format!("writing plan file {}", out.display()))?;
        ctx.say(&format!(
            "saved the plan to {}; run `provision apply {}`",
            out.display(),
            out.display()
        ));
    }
    Ok(if detailed && plan.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
