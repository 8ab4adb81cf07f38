//! `provision state push|pull|list|show`: move the state between the local file and the
//! S3 backend, or read it from whichever backend the config names.
//!
//! Moving never loses work silently: both ends are locked, and a destination holding
//! another lineage (another environment's history) or a newer serial (work the source
//! has not seen) is replaced only with `--force`.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{exit, lock_env, pull_shared_secrets, read_state, Ctx};
use crate::cli::StateCommand;
use crate::config::{Config, StateBackend};
use crate::state::{store, Backend, LocalBackend, Paths, State};

pub(super) async fn state(ctx: &Ctx, command: StateCommand) -> Result<u8> {
    let cfg = ctx.load_config()?;
    match command {
        StateCommand::Push { from, force } => push(ctx, &cfg, from.as_deref(), force).await,
        StateCommand::Pull { force } => pull(ctx, &cfg, force).await,
        StateCommand::List => list(ctx, &cfg).await,
        StateCommand::Show { id } => show(ctx, &cfg, &id).await,
    }
}

fn require_s3(cfg: &Config, what: &str) -> Result<()> {
    if cfg.state == StateBackend::Local {
        bail!(
            "`provision state {what}` moves the state between the local file and S3, but {} \
             has no S3 backend: add [state] backend = \"s3\" and bucket = \"...\" first",
            cfg.path.display()
        );
    }
    Ok(())
}

/// Why `incoming` may not replace `existing` without `--force`, if it may not.
fn refusal(existing: &State, incoming: &State) -> Option<String> {
    if existing.lineage != incoming.lineage {
        return Some(format!(
            "it holds another lineage ({}, serial {}) than the state being copied ({}, serial \
             {}): they are different histories, perhaps of another environment",
            existing.lineage, existing.serial, incoming.lineage, incoming.serial
        ));
    }
    if existing.serial > incoming.serial {
        return Some(format!(
            "it is newer (serial {} > {}): it holds steps the state being copied has not seen",
            existing.serial, incoming.serial
        ));
    }
    None
}

fn local(ctx: &Ctx, cfg: &Config) -> LocalBackend {
    LocalBackend::new(Paths::new(&ctx.state_dir, &cfg.name), &cfg.name)
}

fn read_file(path: &Path, env: &str) -> Result<State> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let state = store::parse(&bytes).map_err(|reason| {
        anyhow::anyhow!("{} is not a state document: {reason}", path.display())
    })?;
    if state.env != env {
        bail!(
            "{} belongs to environment `{}`, but the config names `{env}`",
            path.display(),
            state.env
        );
    }
    Ok(state)
}

async fn push(ctx: &Ctx, cfg: &Config, from: Option<&Path>, force: bool) -> Result<u8> {
    require_s3(cfg, "push")?;
    let here = local(ctx, cfg);
    let mut incoming = match from {
        Some(file) => read_file(file, &cfg.name)?,
        None => {
            lock_env(&here, "state push").await?;
            here.load().await?.with_context(|| {
                format!("no local state to push: {} does not exist", here.location())
            })?
        }
    };
    let remote = ctx.backend(cfg).await?;
    lock_env(remote.as_ref(), "state push").await?;
    if let Some(existing) = remote.load().await? {
        if let Some(why) = refusal(&existing, &incoming) {
            if !force {
                bail!(
                    "refusing to replace {}: {why}. Nothing was changed; `provision state push \
                     --force` replaces it (with bucket versioning on, the old one stays in the \
                     bucket's version history)",
                    remote.location()
                );
            }
            eprintln!("warning: replacing {} (--force): {why}", remote.location());
        }
    }
    push_secrets(ctx, cfg, remote.as_ref(), force, &mut incoming).await?;
    remote.overwrite(&incoming).await?;
    ctx.say(&format!(
        "pushed the state of env `{}` (lineage {}, serial {}, {} resource(s)) to {}",
        cfg.name,
        incoming.lineage,
        incoming.serial,
        incoming.resources.len(),
        remote.location()
    ));
    Ok(exit::OK)
}

/// The env's generated secrets follow the state into Secrets Manager, and the pushed state
/// records that secret as the resource `shared-secrets`, so a teammate's first plan finds
/// them and changes nothing.
async fn push_secrets(
    ctx: &Ctx,
    cfg: &Config,
    remote: &dyn Backend,
    force: bool,
    state: &mut State,
) -> Result<()> {
    use crate::blueprint::ids::SHARED_SECRETS;
    let dir = Paths::new(&ctx.state_dir, &cfg.name).secrets_dir();
    let Some(bundle) = crate::render::secrets_bundle(&dir)? else {
        return Ok(());
    };
    let name = format!("provision/{}/{SHARED_SECRETS}", cfg.name);
    if let Some(theirs) = remote.shared_secrets().await? {
        if theirs != bundle && !force {
            bail!(
                "Secrets Manager secret {name} already holds other secrets than {} (another \
                 workstation's registry CA, password or token). Nothing was changed. Pull them \
                 instead (`provision state pull`), or `state push --force` to replace them with \
                 the local ones",
                dir.display()
            );
        }
    }
    // Through the Secret adapter, as `apply` would create it: tags, KMS key, a secret of
    // ours left from before (also in its recovery window) given this value.
    let spec = crate::model::Spec::Secret(crate::blueprint::shared_secrets_spec(cfg, bundle));
    let id = crate::model::LogicalId::new(SHARED_SECRETS);
    let cloud = super::connect(cfg).await?;
    let made = cloud
        .create(
            &crate::cloud::OpContext {
                env: &cfg.name,
                owner: &state.owner(),
                id: &id,
                token: &uuid::Uuid::new_v4().to_string(),
                resolved: &Default::default(),
                progress: &crate::cloud::NoProgress,
                delete: &Default::default(),
            },
            &spec,
        )
        .await
        .with_context(|| format!("storing the secrets of {} in {name}", dir.display()))?;
    state.resources.insert(
        id,
        crate::state::Entry {
            kind: crate::model::Kind::Secret,
            status: crate::state::Status::Created,
            cloud_id: made.cloud_id,
            token: String::new(),
            token_spent: false,
            spec,
            attrs: made.attrs,
            depends_on: Vec::new(),
            updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
    );
    ctx.say(&format!(
        "stored the secrets of {} in Secrets Manager secret {name}",
        dir.display()
    ));
    Ok(())
}

async fn pull(ctx: &Ctx, cfg: &Config, force: bool) -> Result<u8> {
    require_s3(cfg, "pull")?;
    let remote = ctx.backend(cfg).await?;
    lock_env(remote.as_ref(), "state pull").await?;
    let incoming = remote
        .load()
        .await?
        .with_context(|| format!("no state to pull: {} does not exist", remote.location()))?;
    let here = local(ctx, cfg);
    lock_env(&here, "state pull").await?;
    if let Some(existing) = here.load().await? {
        if let Some(why) = refusal(&existing, &incoming) {
            if !force {
                bail!(
                    "refusing to replace {}: {why}. Nothing was changed; `provision state pull \
                     --force` replaces it (the old file is kept as .backup)",
                    here.location()
                );
            }
            eprintln!("warning: replacing {} (--force): {why}", here.location());
        }
    }
    here.overwrite(&incoming).await?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    pull_shared_secrets(ctx, cfg, remote.as_ref(), &paths).await?;
    ctx.say(&format!(
        "pulled the state of env `{}` (lineage {}, serial {}, {} resource(s)) from {} into {}",
        cfg.name,
        incoming.lineage,
        incoming.serial,
        incoming.resources.len(),
        remote.location(),
        here.location()
    ));
    Ok(exit::OK)
}

async fn list(ctx: &Ctx, cfg: &Config) -> Result<u8> {
    let (backend, state) = read_state(ctx, cfg).await?;
    let Some(state) = state else {
        ctx.say(&format!(
            "No state for env `{}` at {}.",
            cfg.name,
            backend.location()
        ));
        return Ok(exit::OK);
    };
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::ui::json::state_list_document(
                &state,
                &backend.location()
            ))?
        );
        return Ok(exit::OK);
    }
    for (id, e) in &state.resources {
        let status = match e.status {
            crate::state::Status::Created => "",
            crate::state::Status::Creating => " (creating)",
        };
        println!("{id}\t{}\t{}{status}", e.kind, e.cloud_id);
    }
    Ok(exit::OK)
}

async fn show(ctx: &Ctx, cfg: &Config, id: &str) -> Result<u8> {
    let (backend, state) = read_state(ctx, cfg).await?;
    let state = state
        .with_context(|| format!("no state for env `{}` at {}", cfg.name, backend.location()))?;
    let Some(entry) = state.resources.get(&crate::model::LogicalId::new(id)) else {
        bail!(
            "no resource `{id}` in the state at {}; it holds: {}",
            backend.location(),
            state
                .resources
                .keys()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut doc = serde_json::to_value(entry)?;
    doc["id"] = serde_json::Value::String(id.to_string());
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_lineage_or_a_newer_serial_needs_force() {
        let mut a = State::new("lab");
        a.serial = 5;
        let mut same = a.clone();
        assert_eq!(refusal(&a, &same), None, "same state");
        same.serial = 6;
        assert_eq!(refusal(&a, &same), None, "the copy is newer");
        same.serial = 4;
        assert!(refusal(&a, &same).unwrap().contains("newer (serial 5 > 4)"));
        let other = State::new("lab");
        assert!(refusal(&a, &other).unwrap().contains("another lineage"));
    }
}
