//! `provision destroy`: delete everything this environment owns, in reverse order.

use anyhow::Result;

use super::{connect, exit, load_state, lock_env, prepare, run_plan, Ctx, Interrupts};
use crate::cloud::DeleteOptions;
use crate::engine::{self, PlanInput, Settings};
use crate::ui;

pub(super) async fn destroy(
    ctx: &Ctx,
    yes: bool,
    skip_final_snapshot: bool,
    parallelism: usize,
) -> Result<u8> {
    let p = prepare(ctx)?;
    let _lock = lock_env(&p.paths, "destroy")?;
    let interrupts = Interrupts::install();
    let mut state = load_state(&p.paths, &p.cfg.name)?;
    let cloud = connect(&p.cfg).await?;
    let plan = engine::make_plan(
        cloud.as_ref(),
        PlanInput {
            env: &p.cfg.name,
            desired: &p.desired,
            state: &state,
            destroy: true,
        },
    )
    .await?;
    if !plan.has_changes() {
        ctx.say(&format!(
            "Nothing to destroy: env `{}` owns no resources.",
            p.cfg.name
        ));
        return Ok(exit::OK);
    }
    // Always list what goes (the state may be missing: then these were found by tags).
    eprint!("{}", ui::render_plan(&plan));
    if !yes {
        ui::confirm(
            "destroy",
            &format!(
                "Delete everything listed above from env `{}`? This cannot be undone.",
                p.cfg.name
            ),
        )?;
    }
    let settings = Settings {
        parallelism,
        delete: DeleteOptions {
            skip_final_snapshot,
        },
        in_use_wait: p.cfg.timeouts.dependency,
        in_use_poll: p.cfg.timeouts.poll_interval,
        ..Settings::default()
    };
    run_plan(ctx, &p, &plan, &mut state, cloud, settings, &interrupts).await
}
