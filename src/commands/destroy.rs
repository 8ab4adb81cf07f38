//! `provision destroy`: delete everything this environment owns, in reverse order.

use anyhow::Result;

use super::{connect, exit, load_state, lock_env, prepare, run_plan, take_over, Ctx, Interrupts};
use crate::cloud::DeleteOptions;
use crate::engine::{self, ActionKind, Plan, PlanInput, Settings};
use crate::model::Kind;
use crate::ui;

pub(super) async fn destroy(
    ctx: &Ctx,
    yes: bool,
    delete: DeleteOptions,
    adopt: bool,
    parallelism: usize,
) -> Result<u8> {
    let skip_final_snapshot = delete.skip_final_snapshot;
    let p = prepare(ctx).await?;
    lock_env(p.backend.as_ref(), "destroy").await?;
    let interrupts = Interrupts::install(p.backend.clone());
    let mut state = load_state(p.backend.as_ref(), &p.cfg.name).await?;
    let cloud = connect(&p.cfg).await?;
    let plan = engine::make_plan(
        cloud.as_ref(),
        PlanInput {
            env: &p.cfg.name,
            desired: &p.desired,
            state: &state,
            destroy: true,
            replace: &[],
        },
    )
    .await?;
    take_over(&plan, adopt, "destroy")?;
    if !plan.has_changes() {
        ctx.say(&format!(
            "Nothing to destroy: env `{}` owns no resources.",
            p.cfg.name
        ));
        return Ok(exit::OK);
    }
    // List what goes (the state may be missing: then these were found by tags) whenever
    // someone is asked, and unless --quiet.
    let snapshot = final_snapshot_note(&plan, skip_final_snapshot).map(|(kept, text)| {
        (
            kept,
            format!(
                "{text}\n{}",
                automated_backups_note(delete.keep_automated_backups)
            ),
        )
    });
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "format_version": ui::json::FORMAT_VERSION,
                "type": "plan",
                "plan": ui::json::plan_document(&plan, &p.desired),
                "final_snapshot": snapshot.as_ref().map(|(kept, _)| *kept),
            })
        );
    } else if !yes || ctx.verbosity >= ui::Verbosity::Normal {
        let view = ui::PlanView {
            compact: false,
            style: ui::Style::stderr(),
        };
        eprint!("{}", ui::render_plan(&plan, &p.desired, view));
        if let Some((_, text)) = &snapshot {
            eprintln!("{text}");
        }
    }
    if !yes {
        ui::confirm(
            "destroy",
            &format!(
                "Delete the {} resource(s) listed above from env `{}`? This cannot be undone.",
                plan.changes().count(),
                p.cfg.name
            ),
        )?;
    }
    let settings = Settings {
        parallelism,
        delete,
        in_use_wait: p.cfg.timeouts.dependency,
        in_use_poll: p.cfg.timeouts.poll_interval,
        ..Settings::default()
    };
    let code = run_plan(
        ctx,
        "destroy",
        &p,
        &plan,
        &mut state,
        cloud,
        settings,
        &interrupts,
    )
    .await?;
    if code == exit::OK && !ctx.json {
        let paths = crate::state::Paths::new(&ctx.state_dir, &p.cfg.name);
        for (dir, what) in [
            (paths.secrets_dir(), "the registry CA, keys and passwords"),
            (paths.artifacts_dir(), "the install files"),
        ] {
            if dir.exists() {
                ctx.say(&format!(
                    "Kept on this machine: {} ({what}); delete it when no longer needed.",
                    dir.display()
                ));
            }
        }
    }
    Ok(code)
}

/// What happens to the database's data, when the plan deletes a database: (snapshot kept,
/// the sentence saying so).
fn final_snapshot_note(plan: &Plan, skip_final_snapshot: bool) -> Option<(bool, String)> {
    let databases: Vec<String> = plan
        .changes()
        .filter(|a| a.kind == Kind::Database && a.action == ActionKind::Delete)
        .map(|a| a.id.to_string())
        .collect();
    if databases.is_empty() {
        return None;
    }
    Some(if skip_final_snapshot {
        (
            false,
            format!(
                "! No final snapshot of {} is taken (--skip-final-snapshot): its data is gone for good.",
                databases.join(", ")
            ),
        )
    } else {
        (
            true,
            format!(
                "A final snapshot of {} is taken and kept after the destroy (delete it in the RDS console when no longer needed; --skip-final-snapshot skips it).",
                databases.join(", ")
            ),
        )
    })
}

/// What happens to a deleted database's automated backups.
fn automated_backups_note(keep: bool) -> &'static str {
    if keep {
        "Its automated backups are kept (--keep-automated-backups): restorable to a point in \
         time, and billed, until their retention period ends."
    } else {
        "Its automated backups are deleted with it (--keep-automated-backups keeps them, \
         restorable and billed until their retention period ends)."
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Action;
    use crate::model::LogicalId;

    fn plan(kinds: &[(&str, Kind)]) -> Plan {
        Plan {
            env: "lab".into(),
            destroy: true,
            lineage: None,
            serial: 1,
            desired_digest: String::new(),
            takeover: None,
            left_alone: Vec::new(),
            actions: kinds
                .iter()
                .map(|(id, kind)| Action {
                    id: LogicalId::new(*id),
                    kind: *kind,
                    action: ActionKind::Delete,
                    reasons: vec!["destroy".into()],
                    current: None,
                    update_after_adopt: false,
                    orphan: false,
                    data_loss: None,
                    record_only: false,
                    claim: false,
                })
                .collect(),
        }
    }

    #[test]
    fn destroy_says_whether_the_final_snapshot_is_kept() {
        let with_db = plan(&[("vpc", Kind::Vpc), ("datastore", Kind::Database)]);
        let (kept, text) = final_snapshot_note(&with_db, false).unwrap();
        assert!(
            kept && text.contains("final snapshot of datastore is taken and kept"),
            "{text}"
        );
        let (kept, text) = final_snapshot_note(&with_db, true).unwrap();
        assert!(
            !kept && text.contains("No final snapshot of datastore"),
            "{text}"
        );
        assert_eq!(
            final_snapshot_note(&plan(&[("vpc", Kind::Vpc)]), false),
            None
        );
    }
}
