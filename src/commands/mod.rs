//! One file per command (after cargo and uv); this module holds what they share: resolving
//! the inputs (config, state, lock), connecting, Ctrl-C handling, running a plan and the
//! exit codes. Each command resolves its inputs, calls the engine and renders. Exit codes
//! are decided here and in `main` only.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::blueprint::{self, ids};
use crate::cli::{Cli, Command};
use crate::cloud::{Cloud, WaitSettings};
use crate::config::{self, Config};
use crate::engine::{self, Cancel, Desired, Plan, Settings};
use crate::state::{Backend, LocalBackend, Paths, State};
use crate::ui::{self, Verbosity};

mod apply;
mod artifacts;
mod completions;
mod destroy;
mod images;
mod init;
mod output;
mod outputs;
mod plan;
mod planfile;
mod show;
mod state;
mod unlock;
mod validate;
mod verify;

pub use outputs::{outputs, Outputs};
pub use verify::DEEP_UNAVAILABLE;

/// Exit codes of the contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const CHANGES: u8 = 2;
    pub const LOCKED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// Run the parsed command line; returns the exit code for non-error outcomes.
pub async fn run(cli: Cli) -> Result<u8> {
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let renew_registry_cert = matches!(
        cli.command,
        Command::Plan {
            renew_registry_cert: true,
            ..
        } | Command::Apply {
            renew_registry_cert: true,
            ..
        }
    );
    let ctx = Ctx {
        config_path: cli.config.clone(),
        state_dir: cli.state_dir.clone(),
        json: cli.json,
        verbosity,
        renew_registry_cert,
        backend: std::sync::OnceLock::new(),
    };
    let result = dispatch(&ctx, cli.command).await;
    // Give back the lock on every way out (an S3 lock would outlive the process).
    if let Some(backend) = ctx.backend.get() {
        backend.release().await;
    }
    result
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<u8> {
    match command {
        Command::Init { topology, force } => init::init(ctx, topology, force),
        Command::Validate => validate::validate(ctx),
        Command::Plan {
            out,
            detailed_exitcode,
            destroy,
            compact,
            replace,
            ..
        } => {
            plan::plan(
                ctx,
                out.as_deref(),
                plan::Flags {
                    detailed: detailed_exitcode,
                    destroy,
                    compact,
                    replace,
                },
            )
            .await
        }
        Command::Apply {
            planfile,
            yes,
            parallelism,
            allow_data_loss,
            adopt,
            replace,
            ..
        } => {
            apply::apply(
                ctx,
                planfile.as_deref(),
                apply::Flags {
                    yes,
                    parallelism: parallelism.into(),
                    allow_data_loss,
                    adopt,
                    replace,
                },
            )
            .await
        }
        Command::Destroy {
            yes,
            skip_final_snapshot,
            keep_automated_backups,
            adopt,
            parallelism,
        } => {
            let delete = crate::cloud::DeleteOptions {
                skip_final_snapshot,
                keep_automated_backups,
            };
            destroy::destroy(ctx, yes, delete, adopt, parallelism.into()).await
        }
        Command::Show { wide } => show::show(ctx, wide).await,
        Command::Output { name } => output::output(ctx, name.as_deref()).await,
        Command::Artifacts { dir } => artifacts::artifacts(ctx, dir).await,
        Command::Verify { deep } => verify::verify(ctx, deep).await,
        Command::Unlock { force } => unlock::unlock(ctx, force).await,
        Command::Images { command } => images::images(ctx, *command).await,
        Command::State { command } => state::state(ctx, command).await,
        Command::Completions { shell } => {
            completions::completions(shell, &mut std::io::stdout().lock())
        }
        Command::Man => completions::man(&mut std::io::stdout().lock()),
    }
}

struct Ctx {
    config_path: PathBuf,
    state_dir: PathBuf,
    json: bool,
    verbosity: Verbosity,
    /// `--renew-registry-cert` of plan/apply.
    renew_registry_cert: bool,
    /// The state backend, once a command opened it (released when the command ends).
    backend: std::sync::OnceLock<Arc<dyn Backend>>,
}

impl Ctx {
    fn say(&self, text: &str) {
        if self.verbosity >= Verbosity::Normal {
            eprintln!("{text}");
        }
    }

    /// Open the state backend of `cfg` (S3: the bucket is checked first). The lock it
    /// takes is released when the command ends, however it ends.
    async fn backend(&self, cfg: &Config) -> Result<Arc<dyn Backend>> {
        if let Some(b) = self.backend.get() {
            return Ok(b.clone());
        }
        let paths = Paths::new(&self.state_dir, &cfg.name);
        let backend: Arc<dyn Backend> = match &cfg.state {
            config::StateBackend::Local => Arc::new(LocalBackend::new(paths, &cfg.name)),
            config::StateBackend::S3(s3) => open_s3(s3, cfg, &self.state_dir).await?,
        };
        Ok(self.backend.get_or_init(|| backend).clone())
    }

    fn load_config(&self) -> Result<Config> {
        let cfg = config::load(&self.config_path)?;
        for w in &cfg.warnings {
            eprintln!("warning: {w}");
        }
        Ok(cfg)
    }
}

/// Everything a cloud-facing command needs, resolved before the first cloud call.
struct Prepared {
    cfg: Config,
    desired: Desired,
    backend: Arc<dyn Backend>,
}

async fn prepare(ctx: &Ctx) -> Result<Prepared> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    let backend = ctx.backend(&cfg).await?;
    pull_shared_secrets(ctx, &cfg, backend.as_ref(), &paths).await?;
    let registry =
        blueprint::registry_plan_renewing(&cfg, &paths.secrets_dir(), ctx.renew_registry_cert)?;
    if let Some(secrets) = registry.secrets.as_ref().filter(|s| s.renewal_due()) {
        eprintln!(
            "warning: the registry's server certificate ends on {}. `provision apply \
             --renew-registry-cert` issues a new one; that replaces the registry host (its \
             image store volume `{}` is kept and attached to the new host).",
            secrets.server_cert_expiry(),
            ids::REGISTRY_DATA
        );
    }
    let mut desired = blueprint::build(&cfg, &registry)?;
    if backend.shares_secrets() {
        if cfg.topology == config::Topology::Rke2 || cfg.k3s_embedded_etcd() {
            crate::render::ensure_cluster_token(&paths.secrets_dir())?;
        }
        if let Some(bundle) = crate::render::secrets_bundle(&paths.secrets_dir())? {
            blueprint::add_shared_secrets(&cfg, bundle, &mut desired);
        }
    }
    desired.order()?;
    Ok(Prepared {
        cfg,
        desired,
        backend,
    })
}

/// With the S3 backend, unpack the env's shared secrets into the local secrets folder. A
/// teammate's secrets win over whatever this workstation has: every run must embed the
/// same CA, password and token, or it would replace the hosts.
async fn pull_shared_secrets(
    ctx: &Ctx,
    cfg: &Config,
    backend: &dyn Backend,
    paths: &Paths,
) -> Result<()> {
    if !backend.shares_secrets() {
        return Ok(());
    }
    let source = format!(
        "Secrets Manager secret provision/{}/{}",
        cfg.name,
        ids::SHARED_SECRETS
    );
    if let Some(bundle) = backend.shared_secrets().await? {
        let changed = crate::render::unpack_secrets_bundle(&paths.secrets_dir(), &bundle, &source)?;
        if !changed.is_empty() {
            ctx.say(&format!(
                "took {} from {source} into {}",
                changed.join(", "),
                paths.secrets_dir().display()
            ));
        }
    }
    Ok(())
}

/// The state for a command that only reads it (no lock), and the backend it came from.
async fn read_state(ctx: &Ctx, cfg: &Config) -> Result<(Arc<dyn Backend>, Option<State>)> {
    let backend = ctx.backend(cfg).await?;
    let state = backend.load().await?;
    Ok((backend, state))
}

#[cfg(feature = "aws")]
async fn open_s3(
    s3: &config::S3State,
    cfg: &Config,
    state_dir: &std::path::Path,
) -> Result<Arc<dyn Backend>> {
    let (backend, warnings) =
        crate::state::s3::S3Backend::open(s3, &cfg.name, &cfg.region, state_dir).await?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(Arc::new(backend))
}

#[cfg(not(feature = "aws"))]
async fn open_s3(_: &config::S3State, _: &Config, _: &std::path::Path) -> Result<Arc<dyn Backend>> {
    bail!("this provision was built without the `aws` feature and cannot use the S3 state backend")
}

fn waits(cfg: &Config) -> WaitSettings {
    WaitSettings {
        poll: cfg.timeouts.poll_interval,
        instance: cfg.timeouts.instance,
        database: cfg.timeouts.database,
        load_balancer: cfg.timeouts.load_balancer,
        dns: cfg.timeouts.dns,
        dependency: cfg.timeouts.dependency,
    }
}

#[cfg(feature = "aws")]
async fn connect(cfg: &Config) -> Result<Arc<dyn Cloud>> {
    let cloud = crate::cloud::aws::AwsCloud::new(&cfg.region, waits(cfg)).await?;
    cloud.check_reachable().await?;
    Ok(Arc::new(cloud))
}

#[cfg(not(feature = "aws"))]
async fn connect(cfg: &Config) -> Result<Arc<dyn Cloud>> {
    let _ = waits(cfg);
    bail!("this provision was built without the `aws` feature and cannot reach AWS")
}

async fn load_state(backend: &dyn Backend, env: &str) -> Result<State> {
    Ok(backend.load().await?.unwrap_or_else(|| State::new(env)))
}

/// The logical ids of `--replace`, each checked against the config.
fn replace_ids(
    desired: &engine::Desired,
    asked: &[String],
) -> Result<Vec<crate::model::LogicalId>> {
    asked
        .iter()
        .map(|id| {
            let id = crate::model::LogicalId::new(id.as_str());
            if desired.resources.contains_key(&id) {
                Ok(id)
            } else {
                bail!(
                    "--replace {id}: the config has no resource `{id}` (`provision show` lists \
                     the ids; nodes are node-1, node-2, …)"
                )
            }
        })
        .collect()
}

/// A fresh state found resources of its env by their tags: only `--adopt` takes them
/// over (the engine then continues their lineage, so they stay its own).
fn take_over(plan: &engine::Plan, adopt: bool, command: &str) -> Result<()> {
    let Some(takeover) = &plan.takeover else {
        return Ok(());
    };
    if !adopt {
        bail!(
            "{}.
Nothing was changed. If they are this environment's (its state file was lost), run \
             `provision {command} --adopt` to take them over; if they belong to someone else, \
             give this environment another `name` in the config.",
            takeover.describe(&plan.env)
        );
    }
    Ok(())
}

async fn lock_env(backend: &dyn Backend, command: &str) -> Result<()> {
    Ok(backend.lock(command).await?)
}

/// Ctrl-C handling of `apply` and `destroy`, installed before planning. Before execution
/// starts nothing has changed, so the first press exits 130 at once (even at the
/// confirmation prompt). During execution the first press cancels (no new steps; running
/// ones finish and are saved), the second exits at once.
struct Interrupts {
    cancel: Cancel,
    executing: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Interrupts {
    /// `backend`'s lock is released before any exit here.
    fn install(backend: Arc<dyn Backend>) -> Self {
        let cancel = Cancel::new();
        let executing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (cancel, executing) = (cancel.clone(), executing.clone());
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                if !executing.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("\ninterrupted before any change was made");
                    backend.release().await;
                    std::process::exit(i32::from(exit::INTERRUPTED));
                }
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!(
                        "interrupted again: exiting now; the state file holds every finished step \
                         and the intent of every running create"
                    );
                    backend.release().await;
                    std::process::exit(i32::from(exit::INTERRUPTED));
                }
            })
        };
        Self {
            cancel,
            executing,
            task,
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What each step of `plan` waits for: the engine's step graph (a create or update its
/// dependencies, a delete what depends on it).
fn waits_for(
    plan: &Plan,
    desired: &Desired,
    state: &State,
) -> std::collections::HashMap<engine::Step, Vec<engine::Step>> {
    match engine::executor::step_graph(plan, desired, state) {
        Ok(graph) => graph
            .dependencies()
            .iter()
            .map(|(step, deps)| (step.clone(), deps.iter().cloned().collect()))
            .collect(),
        // `execute` refuses such a plan itself.
        Err(_) => Default::default(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_plan(
    ctx: &Ctx,
    what: &str,
    p: &Prepared,
    plan: &Plan,
    state: &mut State,
    cloud: Arc<dyn Cloud>,
    settings: Settings,
    interrupts: &Interrupts,
) -> Result<u8> {
    use std::io::IsTerminal;
    let cancel = &interrupts.cancel;
    interrupts
        .executing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mode = ui::Progress::pick_mode(ctx.json, std::io::stderr().is_terminal(), ctx.verbosity);
    let progress = Arc::new(ui::Progress::for_terminal(mode, ctx.verbosity));
    progress.set_waits_for(waits_for(plan, &p.desired, state));
    let reporter: Arc<dyn engine::Reporter> = progress.clone();
    let started = std::time::Instant::now();
    let outcome = engine::execute(
        cloud,
        plan,
        &p.desired,
        state,
        p.backend.as_ref(),
        &settings,
        reporter,
        cancel,
    )
    .await;
    let outcome = outcome?;
    let elapsed = started.elapsed();
    progress.finish(
        what,
        &ui::RunSummary {
            succeeded: outcome.succeeded,
            failed: outcome.failed.len(),
            skipped: outcome.skipped.len(),
            interrupted: outcome.interrupted,
            elapsed,
        },
    );
    let took = ui::human_duration(elapsed);
    if outcome.interrupted {
        eprintln!(
            "interrupted after {took}: {} step(s) finished and saved, {} not started. Run the same command again to continue.",
            outcome.succeeded,
            outcome.skipped.len()
        );
        return Ok(exit::INTERRUPTED);
    }
    if !outcome.failed.is_empty() {
        let mut msg = format!(
            "{} step(s) failed ({} succeeded and are saved in the state",
            outcome.failed.len(),
            outcome.succeeded
        );
        if !outcome.skipped.is_empty() {
            msg.push_str(&format!(", {} not started", outcome.skipped.len()));
        }
        msg.push_str("):");
        for (step, e) in &outcome.failed {
            msg.push_str(&format!("\n  - {step}: {e}"));
            if let Some(hint) = ui::hints::hint(e) {
                msg.push_str(&format!("\n    hint: {hint}"));
            }
        }
        msg.push_str(
            "\nFix the cause and run the same command again; finished steps are not repeated.",
        );
        bail!(msg);
    }
    Ok(exit::OK)
}
