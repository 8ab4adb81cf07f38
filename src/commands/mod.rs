//! One function per command: resolve the inputs (config, state, lock), call the engine,
//! render. Exit codes are decided here and in `main` only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::blueprint::{self, ids};
use crate::cli::{Cli, Command, TopologyArg};
use crate::cloud::{Cloud, DeleteOptions, WaitSettings};
use crate::config::{self, Config, Topology};
use crate::engine::{self, Cancel, Desired, Plan, PlanInput, Settings};
use crate::model::{Attrs, LogicalId};
use crate::state::{lock, store, Paths, State};
use crate::ui::{self, TerminalReporter, Verbosity};

mod outputs;

pub use outputs::{outputs, Outputs};

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
    };
    match cli.command {
        Command::Init { topology, force } => init(&ctx, topology, force),
        Command::Validate => validate(&ctx),
        Command::Plan {
            out,
            detailed_exitcode,
            destroy,
            ..
        } => plan(&ctx, out.as_deref(), detailed_exitcode, destroy).await,
        Command::Apply {
            planfile,
            yes,
            parallelism,
            allow_data_loss,
            ..
        } => {
            apply(
                &ctx,
                planfile.as_deref(),
                yes,
                parallelism.into(),
                allow_data_loss,
            )
            .await
        }
        Command::Destroy {
            yes,
            skip_final_snapshot,
            parallelism,
        } => destroy(&ctx, yes, skip_final_snapshot, parallelism.into()).await,
        Command::Show => show(&ctx),
        Command::Output { name } => output(&ctx, name.as_deref()),
        Command::Artifacts { dir } => artifacts(&ctx, dir).await,
        Command::Unlock { force } => unlock(&ctx, force),
    }
}

struct Ctx {
    config_path: PathBuf,
    state_dir: PathBuf,
    json: bool,
    verbosity: Verbosity,
    /// `--renew-registry-cert` of plan/apply.
    renew_registry_cert: bool,
}

impl Ctx {
    fn say(&self, text: &str) {
        if self.verbosity >= Verbosity::Normal {
            eprintln!("{text}");
        }
    }

    fn load_config(&self) -> Result<Config> {
        let cfg = config::load(&self.config_path)?;
        for w in &cfg.warnings {
            eprintln!("warning: {w}");
        }
        Ok(cfg)
    }
}

fn init(ctx: &Ctx, topology: TopologyArg, force: bool) -> Result<u8> {
    let topology = match topology {
        TopologyArg::K3s => Topology::K3s,
        TopologyArg::Rke => Topology::Rke,
        TopologyArg::Docker => Topology::Docker,
    };
    if ctx.config_path.exists() && !force {
        bail!(
            "{} already exists; use --force to overwrite it or --config to write another file",
            ctx.config_path.display()
        );
    }
    let text = config::template(topology);
    store::write_atomic(&ctx.config_path, None, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", ctx.config_path.display()))?;
    ctx.say(&format!(
        "wrote {} for topology {}; edit nodes.ami and dns.zone, then run `provision plan`",
        ctx.config_path.display(),
        topology.as_str()
    ));
    Ok(exit::OK)
}

fn validate(ctx: &Ctx) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let summary = format!(
        "{}: valid ({} topology, {} node(s), region {}, {})",
        ctx.config_path.display(),
        cfg.topology.as_str(),
        cfg.nodes.count,
        cfg.region,
        cfg.hostname
    );
    println!("{summary}");
    Ok(exit::OK)
}

/// Everything a cloud-facing command needs, resolved before the first cloud call.
struct Prepared {
    cfg: Config,
    paths: Paths,
    desired: Desired,
}

fn prepare(ctx: &Ctx) -> Result<Prepared> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
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
    let desired = blueprint::build(&cfg, &registry)?;
    desired.order()?;
    Ok(Prepared {
        cfg,
        paths,
        desired,
    })
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
    Ok(Arc::new(
        crate::cloud::aws::AwsCloud::new(&cfg.region, waits(cfg)).await?,
    ))
}

#[cfg(not(feature = "aws"))]
async fn connect(cfg: &Config) -> Result<Arc<dyn Cloud>> {
    let _ = waits(cfg);
    bail!("this provision was built without the `aws` feature and cannot reach AWS")
}

fn load_state(paths: &Paths, env: &str) -> Result<State> {
    Ok(store::load(paths, env)?.unwrap_or_else(|| State::new(env)))
}

fn lock_env(paths: &Paths, command: &str) -> Result<lock::Lock> {
    Ok(lock::Lock::acquire(&paths.lock, command)?)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PlanFile {
    format: String,
    plan: Plan,
}

async fn plan(ctx: &Ctx, out: Option<&Path>, detailed: bool, destroy: bool) -> Result<u8> {
    let p = prepare(ctx)?;
    let _lock = lock_env(&p.paths, "plan")?;
    let state = load_state(&p.paths, &p.cfg.name)?;
    let cloud = connect(&p.cfg).await?;
    let plan = engine::make_plan(
        cloud.as_ref(),
        PlanInput {
            env: &p.cfg.name,
            desired: &p.desired,
            state: &state,
            destroy,
        },
    )
    .await?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", ui::render_plan(&plan));
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
    fn install() -> Self {
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
                    std::process::exit(i32::from(exit::INTERRUPTED));
                }
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!(
                        "interrupted again: exiting now; the state file holds every finished step \
                         and the intent of every running create"
                    );
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

async fn run_plan(
    ctx: &Ctx,
    p: &Prepared,
    plan: &Plan,
    state: &mut State,
    cloud: Arc<dyn Cloud>,
    settings: Settings,
    interrupts: &Interrupts,
) -> Result<u8> {
    let cancel = &interrupts.cancel;
    interrupts
        .executing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let reporter: Arc<dyn engine::Reporter> = Arc::new(TerminalReporter::new(ctx.verbosity));
    let started = std::time::Instant::now();
    let outcome = engine::execute(
        cloud, plan, &p.desired, state, &p.paths, &settings, reporter, cancel,
    )
    .await;
    let outcome = outcome?;
    let took = ui::human_duration(started.elapsed());
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
        }
        msg.push_str(
            "\nFix the cause and run the same command again; finished steps are not repeated.",
        );
        bail!(msg);
    }
    ctx.say(&format!("done in {took}: {} step(s).", outcome.succeeded));
    Ok(exit::OK)
}

async fn apply(
    ctx: &Ctx,
    planfile: Option<&Path>,
    yes: bool,
    parallelism: usize,
    allow_data_loss: bool,
) -> Result<u8> {
    let p = prepare(ctx)?;
    let _lock = lock_env(&p.paths, "apply")?;
    let interrupts = Interrupts::install();
    let mut state = load_state(&p.paths, &p.cfg.name)?;
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
                },
            )
            .await?
        }
    };
    if !plan.has_changes() {
        ctx.say("No changes. The infrastructure matches the config.");
        return Ok(exit::OK);
    }
    if ctx.verbosity >= Verbosity::Normal {
        eprint!("{}", ui::render_plan(&plan));
    }
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
    let code = run_plan(ctx, &p, &plan, &mut state, cloud, settings, &interrupts).await?;
    if code == exit::OK && ctx.verbosity >= Verbosity::Normal {
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

const PLAN_FORMAT: &str = "provision-plan/1";

/// Read a plan file written by `plan --out`: JSON of the expected format.
fn load_plan_file(file: &Path) -> Result<Plan> {
    let text =
        std::fs::read(file).with_context(|| format!("reading plan file {}", file.display()))?;
    let doc: PlanFile = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a provision plan file (damaged or hand-edited?); run `provision plan --out` again",
            file.display()
        )
    })?;
    if doc.format != PLAN_FORMAT {
        bail!(
            "{} has format `{}`; this provision reads `{PLAN_FORMAT}`",
            file.display(),
            doc.format
        );
    }
    Ok(doc.plan)
}

/// A saved plan may only run against the config and the state it was made from, and
/// only if it makes sense for them (see [`engine::executor::check_plan`]).
fn check_plan_fits(
    plan: &Plan,
    env: &str,
    desired: &Desired,
    state: &State,
    file: &Path,
) -> Result<()> {
    let stale = |why: String| {
        anyhow::anyhow!(
            "the saved plan {} is stale: {why}; run `provision plan --out` again",
            file.display()
        )
    };
    if plan.env != env {
        return Err(stale(format!(
            "it is for env `{}`, the config names `{env}`",
            plan.env
        )));
    }
    if plan.destroy {
        return Err(stale(
            "it is a destroy plan; use `provision destroy`".into(),
        ));
    }
    let lineage_now =
        (state.serial > 0 || !state.resources.is_empty()).then(|| state.lineage.clone());
    if plan.lineage != lineage_now {
        return Err(stale(format!(
            "it was made from another state file (lineage {} then, {} now)",
            plan.lineage.as_deref().unwrap_or("none"),
            lineage_now.as_deref().unwrap_or("none")
        )));
    }
    if plan.serial != state.serial {
        return Err(stale(format!(
            "the state changed since (serial {} then, {} now)",
            plan.serial, state.serial
        )));
    }
    if plan.desired_digest != desired.digest() {
        return Err(stale("the config changed since".into()));
    }
    engine::executor::check_plan(plan, desired, state).map_err(|e| {
        anyhow::anyhow!(
            "the saved plan {} does not fit the config and the state ({}); was it edited by hand? \
             Run `provision plan --out` again",
            file.display(),
            e.0
        )
    })
}

async fn destroy(
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

fn show(ctx: &Ctx) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    let Some(state) = store::load(&paths, &cfg.name)? else {
        if ctx.json {
            println!("{}", serde_json::json!({"env": cfg.name, "resources": []}));
        } else {
            println!(
                "No state for env `{}` ({} does not exist).",
                cfg.name,
                paths.state.display()
            );
        }
        return Ok(exit::OK);
    };
    if ctx.json {
        let resources: Vec<_> = state
            .resources
            .iter()
            .map(|(id, e)| {
                serde_json::json!({
                    "id": id, "kind": e.kind, "status": e.status, "cloud_id": e.cloud_id,
                    "attrs": e.attrs, "depends_on": e.depends_on, "updated_at": e.updated_at,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "env": state.env, "lineage": state.lineage, "serial": state.serial,
            "format_version": state.format_version, "resources": resources,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(exit::OK);
    }
    println!(
        "env {} (serial {}, lineage {})",
        state.env, state.serial, state.lineage
    );
    let width = state
        .resources
        .keys()
        .map(|k| k.as_str().len())
        .max()
        .unwrap_or(8);
    for (id, e) in &state.resources {
        let status = match e.status {
            crate::state::Status::Created => "created",
            crate::state::Status::Creating => {
                "creating (interrupted; next run adopts or creates it)"
            }
        };
        let detail = match &e.attrs {
            Attrs::Instance {
                private_ip,
                public_ip,
                ..
            } => match public_ip {
                Some(ip) => format!("{private_ip} public {ip}"),
                None => private_ip.clone(),
            },
            Attrs::LoadBalancer { dns_name, .. } => dns_name.clone(),
            Attrs::Database {
                address, status, ..
            } => format!("{address} ({status})"),
            Attrs::DnsRecord {
                fqdn, record_type, ..
            } => format!("{fqdn} {record_type}"),
            _ => String::new(),
        };
        println!(
            "  {:<width$}  {:<15} {:<28} {status} {detail}",
            id.as_str(),
            e.kind.label(),
            e.cloud_id
        );
    }
    Ok(exit::OK)
}

fn output(ctx: &Ctx, name: Option<&str>) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    let state = store::load(&paths, &cfg.name)?.with_context(|| {
        format!(
            "no state for env `{}` yet: run `provision apply` first",
            cfg.name
        )
    })?;
    let outs = outputs(&cfg, &state);
    let map = outs.to_map();
    match name {
        Some(n) => {
            let v = map.get(n).with_context(|| {
                format!(
                    "no output named `{n}`; available: {}",
                    map.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(v)?);
            } else {
                match v {
                    serde_json::Value::String(s) => println!("{s}"),
                    serde_json::Value::Array(a) => {
                        for x in a {
                            println!("{}", x.as_str().unwrap_or_default());
                        }
                    }
                    serde_json::Value::Null => {}
                    other => println!("{other}"),
                }
            }
        }
        None if ctx.json => println!("{}", serde_json::to_string_pretty(&map)?),
        None => print!("{}", outs.render_text()),
    }
    Ok(exit::OK)
}

async fn artifacts(ctx: &Ctx, dir: Option<PathBuf>) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let paths = Paths::new(&ctx.state_dir, &cfg.name);
    let state = store::load(&paths, &cfg.name)?.with_context(|| {
        format!(
            "no state for env `{}` yet: run `provision apply` first",
            cfg.name
        )
    })?;
    let registry = blueprint::registry_plan(&cfg, &paths.secrets_dir())?;
    let outs = outputs(&cfg, &state);
    // The datastore password is fetched now, straight into a 0600 file, never kept.
    let datastore = match state
        .resources
        .get(&LogicalId::new(ids::DATASTORE))
        .map(|e| (&e.attrs, &e.spec))
    {
        Some((
            Attrs::Database {
                address,
                port,
                secret_arn,
                ..
            },
            crate::model::Spec::Database(spec),
        )) => {
            let cloud = connect(&cfg).await?;
            let password = cloud.secret_value(secret_arn).await.with_context(|| {
                format!("fetching the datastore password from Secrets Manager ({secret_arn})")
            })?;
            Some(crate::render::DatastoreFact {
                engine: spec.engine,
                host: address.clone(),
                port: *port,
                database: spec.database.clone(),
                username: spec.username.clone(),
                password,
            })
        }
        _ => None,
    };
    let facts = crate::render::Facts {
        env: cfg.name.clone(),
        topology: cfg.topology.as_str().to_string(),
        hostname: cfg.hostname.clone(),
        registry: registry.access.clone(),
        registry_ca_pem: registry.access.ca_pem.clone(),
        nodes: outs
            .nodes
            .iter()
            .map(|(id, ip)| crate::render::NodeFact {
                id: id.clone(),
                private_ip: ip.clone(),
            })
            .collect(),
        bastion: outs
            .bastion
            .clone()
            .map(|(public_ip, private_ip)| crate::render::Bastion {
                public_ip,
                private_ip,
            }),
        ssh_user: cfg.nodes.ssh_user.clone(),
        ssh_key_path: ssh_private_key_path(&cfg),
        load_balancer_dns: outs.load_balancer_dns.clone(),
        datastore,
        // The servers' shared token: made once in the env's secrets folder, never in state.
        cluster_token: (cfg.topology == Topology::Rke2 || cfg.k3s_embedded_etcd())
            .then(|| crate::render::ensure_cluster_token(&paths.secrets_dir()))
            .transpose()?,
        rancher_version: cfg.rancher.version.clone(),
    };
    let dir = dir.unwrap_or_else(|| paths.artifacts_dir());
    let written = crate::render::write_artifacts(&dir, &facts)?;
    if ctx.verbosity >= Verbosity::Normal {
        eprintln!("wrote {} file(s) to {}:", written.len(), dir.display());
        for f in &written {
            eprintln!("  {}", f.display());
        }
        eprintln!("Start with {}", dir.join("NEXT-STEPS.md").display());
    }
    Ok(exit::OK)
}

/// The private key next to the configured public key (`id_ed25519.pub` -> `id_ed25519`).
fn ssh_private_key_path(cfg: &Config) -> String {
    match &cfg.nodes.ssh_public_key {
        Some(p) => {
            let s = p.display().to_string();
            s.strip_suffix(".pub").map(str::to_string).unwrap_or(s)
        }
        None => "~/.ssh/id_ed25519".to_string(),
    }
}

fn unlock(ctx: &Ctx, force: bool) -> Result<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::fake::FakeCloud;
    use crate::model::{Spec, SubnetSpec, VpcSpec};

    fn desired(subnets: usize) -> Desired {
        let mut d = Desired::default();
        d.insert(
            "vpc",
            Spec::Vpc(VpcSpec {
                cidr: "10.0.0.0/16".into(),
            }),
        );
        for i in 0..subnets {
            d.insert(
                format!("subnet-{i}").as_str(),
                Spec::Subnet(SubnetSpec {
                    vpc: "vpc".into(),
                    cidr: format!("10.0.{i}.0/24"),
                    zone_index: i,
                    map_public_ip: false,
                    instance_types: vec![],
                }),
            );
        }
        d
    }

    async fn make(env: &str, desired: &Desired, state: &State) -> Plan {
        engine::make_plan(
            &FakeCloud::default(),
            PlanInput {
                env,
                desired,
                state,
                destroy: false,
            },
        )
        .await
        .unwrap()
    }

    fn write_plan(dir: &Path, plan: &Plan) -> PathBuf {
        let file = dir.join("plan.json");
        let doc = PlanFile {
            format: PLAN_FORMAT.into(),
            plan: plan.clone(),
        };
        std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        file
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.expect_err("refused"))
    }

    #[tokio::test]
    async fn a_saved_plan_round_trips_and_fits() {
        let dir = tempfile::tempdir().unwrap();
        let (d, state) = (desired(2), State::new("lab"));
        let plan = make("lab", &d, &state).await;
        let file = write_plan(dir.path(), &plan);
        let loaded = load_plan_file(&file).unwrap();
        assert_eq!(loaded, plan);
        check_plan_fits(&loaded, "lab", &d, &state, &file).unwrap();
    }

    #[test]
    fn damaged_plan_files_are_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.json");
        for (text, want) in [
            ("", "is not a provision plan file"),
            (
                "{\"format\": \"provision-plan/1\", \"plan\": {",
                "is not a provision plan file",
            ),
            ("not json at all", "is not a provision plan file"),
            (
                "{\"format\": \"provision-plan/1\", \"plan\": {\"env\": \"lab\"}}",
                "is not a provision plan file",
            ),
            (
                "{\"format\": \"terraform\", \"plan\": {\"env\": \"lab\", \"destroy\": false, \
                 \"lineage\": null, \"serial\": 0, \"desired_digest\": \"\", \"actions\": []}}",
                "has format `terraform`",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = err(load_plan_file(&file));
            assert!(e.contains(want) && e.contains("plan.json"), "{text}: {e}");
        }
        let e = err(load_plan_file(&dir.path().join("missing.json")));
        assert!(e.contains("reading plan file"), "{e}");
    }

    #[tokio::test]
    async fn stale_plans_are_refused() {
        let file = Path::new("plan.json");
        let d = desired(2);
        let mut state = State::new("lab");
        let plan = make("lab", &d, &state).await;

        // Another environment.
        let e = err(check_plan_fits(&plan, "prod", &d, &state, file));
        assert!(e.contains("stale") && e.contains("for env `lab`"), "{e}");
        // The config changed.
        let e = err(check_plan_fits(&plan, "lab", &desired(3), &state, file));
        assert!(e.contains("the config changed"), "{e}");
        // A destroy plan.
        let mut destroy = plan.clone();
        destroy.destroy = true;
        let e = err(check_plan_fits(&destroy, "lab", &d, &state, file));
        assert!(e.contains("destroy plan"), "{e}");
        // The state moved on since.
        state.serial = 3;
        let e = err(check_plan_fits(&plan, "lab", &d, &state, file));
        assert!(e.contains("another state file"), "{e}");
        let plan = make("lab", &d, &state).await;
        check_plan_fits(&plan, "lab", &d, &state, file).unwrap();
        state.serial = 4;
        let e = err(check_plan_fits(&plan, "lab", &d, &state, file));
        assert!(e.contains("serial 3 then, 4 now"), "{e}");
        // Another state file (another lineage).
        let mut other = State::new("lab");
        other.serial = 3;
        let e = err(check_plan_fits(&plan, "lab", &d, &other, file));
        assert!(e.contains("another state file"), "{e}");
    }

    #[tokio::test]
    async fn hand_edited_plans_are_refused() {
        let file = Path::new("plan.json");
        let d = desired(2);
        let state = State::new("lab");
        let plan = make("lab", &d, &state).await;
        type Edit = fn(&mut Plan);
        let edits: Vec<(&str, Edit)> = vec![
            ("neither in the config nor in the state", |p| {
                p.actions[1].id = LogicalId::new("ghost")
            }),
            ("the config still asks for it", |p| {
                p.actions[0].action = engine::ActionKind::Delete
            }),
            ("names no live resource", |p| {
                p.actions[0].action = engine::ActionKind::Update
            }),
            ("is a subnet in the plan but a vpc in the config", |p| {
                p.actions[0].kind = crate::model::Kind::Subnet
            }),
            ("no action for `subnet-1`", |p| {
                p.actions.retain(|a| a.id.as_str() != "subnet-1")
            }),
            ("more than one action", |p| {
                let a = p.actions[0].clone();
                p.actions.push(a)
            }),
        ];
        for (want, edit) in edits {
            let mut edited = plan.clone();
            edit(&mut edited);
            let e = err(check_plan_fits(&edited, "lab", &d, &state, file));
            assert!(
                e.contains(want) && e.contains("edited by hand"),
                "{want}: {e}"
            );
        }
    }
}
