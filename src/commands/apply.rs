//! `provision apply`: make the cloud match the config; resumable.

use std::path::Path;

use anyhow::{bail, Result};

use super::planfile::{check_plan_fits, load_plan_file};
use super::{
    connect, exit, load_state, lock_env, outputs, prepare, run_plan, take_over, Ctx, Interrupts,
};
use crate::engine::{self, Plan, PlanInput, Settings};
use crate::ui::{self, Verbosity};

/// The flags of `apply`.
pub(super) struct Flags {
    pub yes: bool,
    pub parallelism: usize,
    pub allow_data_loss: bool,
    pub adopt: bool,
    pub replace: Vec<String>,
}

pub(super) async fn apply(ctx: &Ctx, planfile: Option<&Path>, flags: Flags) -> Result<u8> {
    let Flags {
        yes,
        parallelism,
        allow_data_loss,
        adopt,
        replace,
    } = flags;
    let p = prepare(ctx).await?;
    let replace = super::replace_ids(&p.desired, &replace)?;
    lock_env(p.backend.as_ref(), "apply").await?;
    let interrupts = Interrupts::install(p.backend.clone());
    let mut state = load_state(p.backend.as_ref(), &p.cfg.name).await?;
    let cloud = connect(&p.cfg).await?;
    let plan = match planfile {
        Some(file) => {
            let plan = load_plan_file(file)?;
            check_plan_fits(&plan, &p.cfg.name, &p.desired, &state, file)?;
            plan
        }
        None => {
            engine::make_plan(
                cloud.as_ref(),
                PlanInput {
                    env: &p.cfg.name,
                    desired: &p.desired,
                    state: &state,
                    destroy: false,
                    replace: &replace,
                },
            )
            .await?
        }
    };
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "format_version": ui::json::FORMAT_VERSION,
                "type": "plan",
                "plan": ui::json::plan_document(&plan, &p.desired),
            })
        );
    }
    if !plan.has_changes() {
        ctx.say("No changes. The infrastructure matches the config.");
        return Ok(exit::OK);
    }
    if !ctx.json && ctx.verbosity >= Verbosity::Normal {
        let view = ui::PlanView {
            compact: false,
            style: ui::Style::stderr(),
        };
        eprint!("{}", ui::render_plan(&plan, &p.desired, view));
    }
    take_over(&plan, adopt, "apply")?;
    refuse_data_loss(&plan, allow_data_loss)?;
    if !yes && planfile.is_none() {
        ui::confirm(
            "apply",
            &format!("Apply these changes to env `{}`?", p.cfg.name),
        )?;
    }
    let settings = Settings {
        parallelism,
        in_use_wait: p.cfg.timeouts.dependency,
        in_use_poll: p.cfg.timeouts.poll_interval,
        ..Settings::default()
    };
    let code = run_plan(
        ctx,
        "apply",
        &p,
        &plan,
        &mut state,
        cloud,
        settings,
        &interrupts,
    )
    .await?;
    if code == exit::OK && ctx.verbosity >= Verbosity::Normal && !ctx.json {
        let outs = outputs(&p.cfg, &state);
        eprintln!("\nOutputs:\n{}", outs.render_text());
        eprintln!("Next: `provision artifacts` writes the files for the install steps.");
    }
    Ok(code)
}

/// Routine changes never lose data silently: a plan that destroys data (a node's disks,
/// the database, the registry's volume) runs only with `--allow-data-loss`.
fn refuse_data_loss(plan: &Plan, allowed: bool) -> Result<()> {
    let losses: Vec<String> = plan
        .data_losses()
        .map(|a| {
            format!(
                "  - {} {}: {}",
                a.action.verb(),
                a.id,
                a.data_loss.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if losses.is_empty() || allowed {
        return Ok(());
    }
    bail!(
        "this plan destroys data:\n{}\nNothing was changed. Run `provision apply --allow-data-loss` \
         to go ahead, or change the config back.",
        losses.join("\n")
    )
}
