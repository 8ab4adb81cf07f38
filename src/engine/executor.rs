//! Running a plan.
//!
//! A plan becomes a graph of steps: `create`, `adopt`, `update`, `delete` and `forget` of
//! one logical resource each (a replace is a delete followed by a create). Edges:
//!
//! * a step on a desired resource waits for the steps on the resources it refers to;
//! * the create half of a replace waits for its delete half;
//! * a delete waits for the deletes of everything that depended on the resource in the
//!   state, and — when the resource is going away for good — for the updates of resources
//!   that still point at it (target groups deregister a node before it is terminated);
//! * deletes of resources the state never knew (found by tags) are ordered by kind rank;
//! * a security group created in the same run as groups its rules name is created without
//!   those rules (what needs the group does not wait for them) and gets them in an update
//!   step that waits for those groups (see [`super::late`]).
//!
//! One coordinator loop owns the state: it writes the write-ahead intent before every
//! create, hands steps to at most `parallelism` workers, and saves the state after every
//! finished step. Results that arrive together, and the intents of the steps they let
//! start, go into one save, made before any of those steps starts or is reported. A step
//! that only waits for the cloud (an instance booting, RDS creating) does not hold a
//! worker meanwhile. Among ready steps, the one heading the longest expected chain goes
//! first (the database before the nodes). The loop never returns early: after the first
//! failure (or Ctrl-C) it starts no new step, lets running steps finish, saves, and reports
//! every failure once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::graph::DependencyQueue;
use super::plan::{ActionKind, Desired, Plan};
use super::reporter::{Reporter, StepKind};
use crate::cloud::{Cloud, CloudError, DeleteOptions, OpContext, StepProgress};
use crate::model::{Kind, LogicalId, Observed, Resolved, Spec};
use crate::state::{Backend, Entry, State, StateError, Status};

/// One node of the execution graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Step {
    pub id: LogicalId,
    pub kind: StepKind,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.verb(), self.id)
    }
}

/// Settings of one execution.
pub struct Settings {
    pub parallelism: usize,
    pub delete: DeleteOptions,
    /// Retries of a whole step after a transient error (on top of the SDK's own retries).
    pub step_retries: u32,
    pub retry_base: Duration,
    /// How long a delete keeps trying while the cloud says the resource is still in use
    /// (`DependencyViolation`: ENIs draining after an instance is gone), for every cloud;
    /// `timeouts.dependency_minutes` of the config. At least two tries are always made.
    pub in_use_wait: Duration,
    /// First pause between two tries of an in-use delete; doubles up to 20 s.
    pub in_use_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        let waits = crate::cloud::WaitSettings::default();
        Self {
            parallelism: 10,
            delete: DeleteOptions::default(),
            step_retries: 3,
            retry_base: Duration::from_millis(500),
            in_use_wait: waits.dependency,
            in_use_poll: waits.poll,
        }
    }
}

/// Longest pause between two tries of an in-use delete, whatever the poll interval.
const MAX_IN_USE_PAUSE: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
pub struct Outcome {
    pub succeeded: usize,
    pub failed: Vec<(Step, String)>,
    /// Steps never started because of a failure or an interruption.
    pub skipped: Vec<Step>,
    pub interrupted: bool,
    /// Ids of resources whose update/create made a cloud call.
    pub mutated: BTreeSet<LogicalId>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && !self.interrupted
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cycle(#[from] super::graph::Cycle),
    #[error(transparent)]
    InvalidPlan(#[from] InvalidPlan),
}

/// How long a step on a resource of `kind` typically takes on AWS, in seconds: the
/// scheduling weight of the step (see [`DependencyQueue::queue_weighted`]).
fn typical_seconds(kind: Kind, step: StepKind) -> u64 {
    if matches!(step, StepKind::Forget | StepKind::Adopt) {
        return 0;
    }
    match kind {
        Kind::Database => 600,
        Kind::LoadBalancer => 180,
        Kind::Instance => 60,
        Kind::HostedZone | Kind::DnsRecord => 30,
        _ => 1,
    }
}

/// Build the step graph for a plan.
pub fn step_graph(
    plan: &Plan,
    desired: &Desired,
    state: &State,
) -> Result<DependencyQueue<Step>, super::graph::Cycle> {
    let mut steps: BTreeMap<LogicalId, Vec<StepKind>> = BTreeMap::new();
    for a in &plan.actions {
        let kinds = match a.action {
            ActionKind::NoOp => vec![],
            ActionKind::Create => vec![StepKind::Create],
            ActionKind::Adopt => vec![StepKind::Adopt],
            ActionKind::Update => vec![StepKind::Update],
            ActionKind::Replace => vec![StepKind::Delete, StepKind::Create],
            ActionKind::Delete => vec![StepKind::Delete],
            ActionKind::Forget => vec![StepKind::Forget],
        };
        if !kinds.is_empty() {
            steps.insert(a.id.clone(), kinds);
        }
    }
    // Creates that can do without some references made in this same run: they get an
    // update step once those exist.
    let late: BTreeMap<LogicalId, Vec<LogicalId>> = steps
        .iter()
        .filter(|(_, kinds)| kinds.contains(&StepKind::Create))
        .filter_map(|(id, _)| {
            let refs: Vec<LogicalId> = super::late::late_refs(desired.resources.get(id)?)
                .into_iter()
                .filter(|r| {
                    r != id
                        && steps.get(r).is_some_and(|k| {
                            k.iter()
                                .any(|k| !matches!(k, StepKind::Delete | StepKind::Forget))
                        })
                })
                .collect();
            (!refs.is_empty()).then(|| (id.clone(), refs))
        })
        .collect();
    for id in late.keys() {
        steps.get_mut(id).expect("planned").push(StepKind::Update);
    }
    let step = |id: &LogicalId, kind: StepKind| Step {
        id: id.clone(),
        kind,
    };
    let mut deps: BTreeMap<Step, BTreeSet<Step>> = BTreeMap::new();
    for (id, kinds) in &steps {
        for k in kinds {
            deps.entry(step(id, *k)).or_default();
        }
    }
    let non_delete = |id: &LogicalId| -> Option<Step> {
        steps
            .get(id)?
            .iter()
            .find(|k| !matches!(k, StepKind::Delete | StepKind::Forget))
            .map(|k| step(id, *k))
    };
    let has = |id: &LogicalId, k: StepKind| steps.get(id).is_some_and(|v| v.contains(&k));

    for (id, kinds) in &steps {
        // Replace: create after delete.
        if kinds.contains(&StepKind::Delete) && kinds.contains(&StepKind::Create) {
            deps.get_mut(&step(id, StepKind::Create))
                .unwrap()
                .insert(step(id, StepKind::Delete));
        }
        // Desired resources wait for what they refer to; a create with late references
        // not for those: its update step waits for them (and for the create).
        if let (Some(me), Some(spec)) = (non_delete(id), desired.resources.get(id)) {
            let later = late.get(id);
            for dep in spec.depends_on() {
                if let Some(d) = non_delete(&dep) {
                    if later.is_some_and(|l| l.contains(&dep)) {
                        deps.get_mut(&step(id, StepKind::Update)).unwrap().insert(d);
                    } else {
                        deps.get_mut(&me).unwrap().insert(d);
                    }
                }
            }
            if later.is_some() {
                deps.get_mut(&step(id, StepKind::Update))
                    .unwrap()
                    .insert(me.clone());
            }
        }
        // Deletes wait for the old dependents.
        if kinds.contains(&StepKind::Delete) {
            let going_for_good = !kinds.contains(&StepKind::Create);
            for (other, entry) in &state.resources {
                if !entry.depends_on.contains(id) {
                    continue;
                }
                if has(other, StepKind::Delete) {
                    deps.get_mut(&step(id, StepKind::Delete))
                        .unwrap()
                        .insert(step(other, StepKind::Delete));
                } else if going_for_good {
                    if let Some(d) = non_delete(other) {
                        deps.get_mut(&step(id, StepKind::Delete)).unwrap().insert(d);
                    }
                }
            }
        }
    }
    // Orphans (no dependency information): order deletes by kind rank against all deletes.
    let delete_kinds: Vec<(LogicalId, Kind, bool)> = plan
        .actions
        .iter()
        .filter(|a| matches!(a.action, ActionKind::Delete | ActionKind::Replace))
        .map(|a| (a.id.clone(), a.kind, a.orphan))
        .collect();
    for (id, kind, orphan) in &delete_kinds {
        for (other, other_kind, other_orphan) in &delete_kinds {
            if (*orphan || *other_orphan) && other_kind.rank() > kind.rank() {
                deps.get_mut(&step(id, StepKind::Delete))
                    .unwrap()
                    .insert(step(other, StepKind::Delete));
            }
        }
    }
    // Cluster nodes change one at a time: a node's replace (or in-place update, such as an
    // instance-type change that stops it) starts only once the previous node's is done, so
    // etcd keeps its quorum and the cluster keeps serving.
    let mut rolling: Vec<(&LogicalId, &Vec<StepKind>)> = steps
        .iter()
        .filter(|(id, kinds)| {
            // A scale-down removes etcd members one at a time too (the plan said to drain
            // and remove each first); a destroy takes the whole cluster down at once.
            let spec = desired
                .resources
                .get(*id)
                .or_else(|| (!plan.destroy).then(|| state.resources.get(*id).map(|e| &e.spec))?);
            matches!(spec, Some(Spec::Instance(i)) if i.is_cluster_node())
                && kinds
                    .iter()
                    .any(|k| matches!(k, StepKind::Update | StepKind::Delete))
        })
        .collect();
    rolling.sort_by_key(|(id, _)| (id.as_str().len(), id.as_str().to_string()));
    for pair in rolling.windows(2) {
        let (prev, prev_kinds) = pair[0];
        let (next, next_kinds) = pair[1];
        let prev_last = step(prev, *prev_kinds.last().expect("nonempty"));
        let next_first = step(next, next_kinds[0]);
        deps.get_mut(&next_first).unwrap().insert(prev_last);
    }
    let kind_of: BTreeMap<&LogicalId, Kind> =
        plan.actions.iter().map(|a| (&a.id, a.kind)).collect();
    let mut q = DependencyQueue::new();
    for (s, d) in deps {
        let weight = kind_of
            .get(&s.id)
            .map_or(0, |k| typical_seconds(*k, s.kind));
        q.queue_weighted(s, d, weight);
    }
    q.queue_finished()?;
    Ok(q)
}

/// A cancellation signal: the first Ctrl-C sets it; the coordinator stops scheduling.
#[derive(Clone, Default)]
pub struct Cancel(Arc<tokio::sync::watch::Sender<bool>>);

impl Cancel {
    pub fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

struct Progress {
    reporter: Arc<dyn Reporter>,
    id: LogicalId,
    started: Instant,
    waits: Arc<Waiting>,
    waiting: std::sync::atomic::AtomicBool,
}

impl StepProgress for Progress {
    fn status(&self, status: &str) {
        self.reporter
            .step_status(&self.id, status, self.started.elapsed());
    }

    fn kept(&self, what: &str) {
        self.reporter.kept(&self.id, what);
    }

    fn waiting(&self, waiting: bool) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.waiting.swap(waiting, SeqCst) == waiting {
            return;
        }
        if waiting {
            self.waits.count.fetch_add(1, SeqCst);
            // A worker is free: the coordinator may start another step.
            self.waits.changed.notify_one();
        } else {
            self.waits.count.fetch_sub(1, SeqCst);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.waiting(false);
    }
}

/// What a finished step hands back to the coordinator.
enum Done {
    Created(Observed),
    Updated(Observed),
    Deleted,
    /// Adopted; `Some` when it was also updated.
    Adopted(Observed, bool),
}

/// The retry settings a step needs (a copy, so the job can run on its own).
#[derive(Clone)]
struct Retries {
    delete: DeleteOptions,
    transient: u32,
    base: Duration,
    in_use_wait: Duration,
    in_use_poll: Duration,
}

impl Retries {
    fn from(settings: &Settings) -> Self {
        Self {
            delete: settings.delete.clone(),
            transient: settings.step_retries,
            base: settings.retry_base,
            in_use_wait: settings.in_use_wait,
            in_use_poll: settings.in_use_poll,
        }
    }
}

/// Delete `current`, trying again while the cloud says it is still in use, until
/// `in_use_wait` has passed (at least two tries); then the error names what blocks it.
async fn delete_waiting_for_release(
    cloud: &dyn Cloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    current: &Observed,
    retries: &Retries,
) -> Result<(), CloudError> {
    let started = tokio::time::Instant::now();
    let mut pause = retries.in_use_poll.max(Duration::from_millis(1));
    let mut tries = 0u32;
    loop {
        tries += 1;
        let e = match cloud.delete(ctx, kind, current).await {
            Err(e) if e.is_in_use() => e,
            other => return other,
        };
        let waited = started.elapsed();
        if waited >= retries.in_use_wait && tries >= 2 {
            let cause = match &e {
                CloudError::InUse { code, message, .. } => format!("{code}: {message}"),
                other => other.to_string(),
            };
            return Err(CloudError::Timeout {
                what: format!(
                    "{kind} {} to be released ({tries} tries); still in use ({cause})",
                    current.cloud_id
                ),
                waited,
            });
        }
        ctx.progress
            .status(&format!("still in use, trying again ({e})"));
        // The last try happens at the deadline, not a pause before it.
        let left = retries.in_use_wait.saturating_sub(waited);
        tokio::time::sleep(pause.min(left).max(Duration::from_millis(1))).await;
        pause = (pause * 2).min(MAX_IN_USE_PAUSE.max(retries.in_use_poll));
    }
}

struct Job {
    step: Step,
    kind: Kind,
    spec: Option<Spec>,
    current: Option<Observed>,
    token: String,
    resolved: Resolved,
    update_after_adopt: bool,
    /// An update that only records the new spec (see `Action::record_only`).
    record_only: bool,
    /// Tag the resource with this state's lineage once the step is done.
    claim: bool,
}

async fn run_job(
    cloud: Arc<dyn Cloud>,
    env: String,
    owner: crate::model::Owner,
    job: Job,
    reporter: Arc<dyn Reporter>,
    retries: Retries,
    waits: Arc<Waiting>,
) -> Result<Done, CloudError> {
    let progress = Progress {
        reporter,
        id: job.step.id.clone(),
        started: Instant::now(),
        waits,
        waiting: std::sync::atomic::AtomicBool::new(false),
    };
    let ctx = OpContext {
        env: &env,
        owner: &owner,
        id: &job.step.id,
        token: &job.token,
        resolved: &job.resolved,
        progress: &progress,
        delete: &retries.delete,
    };
    let mut attempt = 0;
    loop {
        let result = match job.step.kind {
            StepKind::Create => {
                let Some(spec) = job.spec.as_ref() else {
                    return Err(not_in_plan(&job.step, "a spec"));
                };
                // After a transient failure the first call may have gone through: look first.
                let found = if attempt > 0 {
                    cloud.find(&ctx, spec).await
                } else {
                    Ok(None)
                };
                match found {
                    // A create is several calls; one after the first failed: finish it.
                    Ok(Some(obs)) if !obs.drift.is_empty() => {
                        cloud.update(&ctx, spec, &obs).await.map(Done::Created)
                    }
                    Ok(Some(obs)) => Ok(Done::Created(obs)),
                    Ok(None) => cloud.create(&ctx, spec).await.map(Done::Created),
                    Err(e) => Err(e),
                }
            }
            StepKind::Update => {
                let (Some(spec), Some(current)) = (job.spec.as_ref(), job.current.as_ref()) else {
                    return Err(not_in_plan(&job.step, "a spec and a live resource"));
                };
                if job.record_only {
                    // Nothing to send: the change reaches the resource only through a
                    // replacement the operator did not ask for (the plan said how).
                    Ok(Done::Updated(current.clone()))
                } else {
                    cloud.update(&ctx, spec, current).await.map(Done::Updated)
                }
            }
            StepKind::Adopt => {
                let Some(current) = job.current.clone() else {
                    return Err(not_in_plan(&job.step, "a found resource"));
                };
                if job.update_after_adopt {
                    let Some(spec) = job.spec.as_ref() else {
                        return Err(not_in_plan(&job.step, "a spec"));
                    };
                    cloud
                        .update(&ctx, spec, &current)
                        .await
                        .map(|o| Done::Adopted(o, true))
                } else {
                    Ok(Done::Adopted(current, false))
                }
            }
            StepKind::Delete => {
                let Some(current) = job.current.as_ref() else {
                    return Err(not_in_plan(&job.step, "a live resource"));
                };
                delete_waiting_for_release(cloud.as_ref(), &ctx, job.kind, current, &retries)
                    .await
                    .map(|_| Done::Deleted)
            }
            StepKind::Forget => Ok(Done::Deleted),
        };
        match result {
            Err(e) if e.is_transient() && attempt < retries.transient => {
                attempt += 1;
                let jitter = rand::random::<f64>() * 0.5 + 0.75;
                let wait = retries
                    .base
                    .mul_f64(f64::from(2u32.pow(attempt - 1)) * jitter);
                progress.status(&format!(
                    "retrying after transient error ({e}), attempt {}",
                    attempt + 1
                ));
                tokio::time::sleep(wait).await;
            }
            Ok(done) if job.claim => {
                if let Done::Updated(o) | Done::Adopted(o, _) = &done {
                    cloud.claim(&ctx, job.kind, o).await?;
                }
                return Ok(done);
            }
            other => return other,
        }
    }
}

/// Did a create come back with a definite answer, so that sending its token again would
/// only get the same failure? Not after a timeout, throttling or a cancel: the create may
/// still be going through, and only the same token keeps it from being made twice.
fn token_spent_by(e: &CloudError) -> bool {
    matches!(
        e,
        CloudError::Api { .. } | CloudError::Refused(_) | CloudError::MissingRef(_)
    )
}

/// A step the plan cannot carry out (only a hand-edited plan gets here).
fn not_in_plan(step: &Step, what: &str) -> CloudError {
    CloudError::Refused(format!(
        "`{step}`: the plan gives no {what} for it; make a new plan"
    ))
}

/// Why a plan cannot be executed against this config and state.
#[derive(Debug, thiserror::Error)]
#[error("the plan cannot be applied: {0}")]
pub struct InvalidPlan(pub String);

/// Check that `plan` fits `desired` and `state` (a plan file may be stale or hand-edited):
/// one action per resource of the config and the state, each of a kind that makes sense
/// for where the resource is, with the live resource a delete/update/adopt needs.
/// `execute` calls it before anything else, so an unfit plan changes nothing.
pub fn check_plan(plan: &Plan, desired: &Desired, state: &State) -> Result<(), InvalidPlan> {
    let bad = |m: String| Err(InvalidPlan(m));
    if plan.env != state.env {
        return bad(format!(
            "it is for env `{}`, the state is env `{}`",
            plan.env, state.env
        ));
    }
    let empty = Desired::default();
    let desired = if plan.destroy { &empty } else { desired };
    let mut seen = BTreeSet::new();
    for a in &plan.actions {
        let id = &a.id;
        if !seen.insert(id) {
            return bad(format!("`{id}` has more than one action"));
        }
        let verb = a.action.verb();
        use ActionKind as A;
        if let Some(spec) = desired.resources.get(id) {
            if spec.kind() != a.kind {
                return bad(format!(
                    "`{id}` is a {} in the plan but a {} in the config",
                    a.kind,
                    spec.kind()
                ));
            }
            let live = a.current.is_some()
                || state
                    .resources
                    .get(id)
                    .is_some_and(|e| e.status == Status::Created);
            match a.action {
                A::NoOp | A::Create => {}
                A::Adopt | A::Replace if a.current.is_some() => {}
                A::Update if live => {}
                A::Adopt | A::Replace | A::Update => {
                    return bad(format!("`{id}`: {verb} names no live resource"))
                }
                A::Delete | A::Forget => {
                    return bad(format!("`{id}`: {verb}, but the config still asks for it"))
                }
            }
        } else if let Some(entry) = state.resources.get(id) {
            if entry.kind != a.kind {
                return bad(format!(
                    "`{id}` is a {} in the plan but a {} in the state",
                    a.kind, entry.kind
                ));
            }
            match a.action {
                A::Delete if a.current.is_some() => {}
                A::Forget => {}
                A::Delete => return bad(format!("`{id}`: delete names no live resource")),
                _ => {
                    return bad(format!(
                        "`{id}`: {verb}, but it is not in the config (only delete or forget)"
                    ))
                }
            }
        } else {
            // Found by tags only: the one thing a plan may do with it is delete it.
            if !(a.action == A::Delete && a.orphan && a.current.is_some()) {
                return bad(format!(
                    "`{id}` is neither in the config nor in the state; a plan can only delete \
                     such a resource (found by its tags), not {verb} it"
                ));
            }
        }
    }
    let missing: Vec<String> = desired
        .resources
        .keys()
        .chain(state.resources.keys())
        .filter(|id| !seen.contains(id))
        .map(|id| format!("`{id}`"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        return bad(format!("it has no action for {}", missing.join(", ")));
    }
    Ok(())
}

/// Execute `plan`, saving `state` after every step. A plan that does not fit `desired`
/// and `state` (see [`check_plan`]) is refused before any change.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    cloud: Arc<dyn Cloud>,
    plan: &Plan,
    desired: &Desired,
    state: &mut State,
    store: &dyn Backend,
    settings: &Settings,
    reporter: Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<Outcome, ExecError> {
    check_plan(plan, desired, state)?;
    // A fresh state taking over what it found (the command asked the operator first:
    // `--adopt`) continues their lineage, so what it adopts stays its own.
    if let Some(lineage) = plan.takeover.as_ref().and_then(|t| t.lineage.as_ref()) {
        if state.is_fresh() {
            state.lineage = lineage.clone();
            state.origin = plan
                .takeover
                .as_ref()
                .and_then(|t| t.origin.clone())
                .unwrap_or_default();
        }
    }
    let mut queue = step_graph(plan, desired, state)?;
    // What the plan creates again because the cloud lost it ("deleted outside provision")
    // is still named in the state by an id that no longer exists: no step may resolve
    // that id (a group created meanwhile would send rules naming the old group:
    // `InvalidGroup.NotFound`, and only a second run would converge). Its create records
    // the new id (which may be the old one again: a name-keyed DB subnet group).
    let mut lost: BTreeMap<LogicalId, String> = plan
        .actions
        .iter()
        .filter(|a| a.action == ActionKind::Create && a.current.is_none())
        .filter_map(|a| {
            state
                .resources
                .get(&a.id)
                .filter(|e| e.status == Status::Created)
                .map(|e| (a.id.clone(), e.cloud_id.clone()))
        })
        .collect();
    let actions: BTreeMap<&LogicalId, &super::plan::Action> =
        plan.actions.iter().map(|a| (&a.id, a)).collect();
    let mut outcome = Outcome::default();
    let mut running = FuturesUnordered::new();
    let mut stop = false;
    let parallelism = settings.parallelism.max(1);
    let waits = Arc::new(Waiting::default());
    // What a create applied when it left out late references (recorded in the state).
    let mut applied: BTreeMap<Step, Spec> = BTreeMap::new();
    // Finished steps not reported yet: they are, once the state holding them is saved.
    let mut finished: Vec<(Step, Result<String, String>, Duration)> = Vec::new();
    let mut dirty = false;

    loop {
        if cancel.is_cancelled() && !outcome.interrupted {
            outcome.interrupted = true;
            stop = true;
            reporter.note("interrupted: no new steps will start; waiting for running steps (Ctrl-C again to quit at once)");
        }
        // Pick what is ready, writing the intent of each create into the state.
        let mut starting: Vec<(Step, Kind, Job)> = Vec::new();
        while !stop && running.len() + starting.len() < parallelism + waits.count() {
            let Some(step) = queue.dequeue() else { break };
            let spec = desired.resources.get(&step.id).cloned();
            let needs_spec = matches!(
                step.kind,
                StepKind::Create | StepKind::Update | StepKind::Adopt
            );
            let action = match actions.get(&step.id) {
                Some(a) if spec.is_some() || !needs_spec => *a,
                _ => {
                    // Unreachable after `check_plan`; fail the step rather than panic.
                    let msg = not_in_plan(&step, "a spec").to_string();
                    finished.push((step.clone(), Err(msg.clone()), Duration::ZERO));
                    outcome.failed.push((step, msg));
                    stop = true;
                    continue;
                }
            };
            let mut token = String::new();
            if let (StepKind::Create, Some(spec)) = (step.kind, spec.clone()) {
                // Write-ahead intent, saved before the create call leaves this process.
                // The intent's token again after a crash (the create may have gone through),
                // a new one after a definite failure or for a new object.
                token = match state.resources.get(&step.id) {
                    Some(e)
                        if e.status == Status::Creating
                            && !e.token.is_empty()
                            && !e.token_spent =>
                    {
                        e.token.clone()
                    }
                    _ => new_token(),
                };
                state.resources.insert(
                    step.id.clone(),
                    Entry {
                        kind: spec.kind(),
                        status: Status::Creating,
                        cloud_id: String::new(),
                        token: token.clone(),
                        token_spent: false,
                        depends_on: spec
                            .depends_on()
                            .into_iter()
                            .filter(|d| state.resources.contains_key(d))
                            .collect(),
                        spec,
                        attrs: Default::default(),
                        updated_at: now(),
                    },
                );
                // Whatever pointed at an earlier object of this id no longer points at the
                // current one; the next plan updates it even if this run stops early.
                forget_dependents_link(state, &step.id);
                dirty = true;
            } else if let Some(e) = state.resources.get(&step.id) {
                token = e.token.clone();
            }
            let current = if step.kind == StepKind::Update {
                // After a replaced dependency the live object is the one we recorded.
                state
                    .resources
                    .get(&step.id)
                    .filter(|e| e.status == Status::Created)
                    .map(|e| {
                        let mut o = e.observed();
                        if let Some(c) = &action.current {
                            o.drift = c.drift.clone();
                        }
                        o
                    })
                    .or_else(|| action.current.clone())
            } else {
                action.current.clone()
            };
            let mut resolved = state.resolved();
            resolved
                .entries
                .retain(|id, o| lost.get(id) != Some(&o.cloud_id));
            if let (StepKind::Create, Some(spec)) = (step.kind, spec.as_ref()) {
                if let Some(part) = super::late::applied_part(spec, &resolved) {
                    applied.insert(step.clone(), part);
                }
            }
            let job = Job {
                step: step.clone(),
                kind: action.kind,
                spec,
                current,
                token,
                resolved,
                update_after_adopt: action.update_after_adopt,
                record_only: action.record_only && action.action == ActionKind::Update,
                claim: action.claim && matches!(step.kind, StepKind::Adopt | StepKind::Update),
            };
            starting.push((step, action.kind, job));
        }

        // One save for the results that came in and the intents of what starts now.
        if dirty {
            store.save(state).await?;
            dirty = false;
        }
        for (step, result, elapsed) in finished.drain(..) {
            match result {
                Ok(cloud_id) => reporter.step_finished(&step.id, step.kind, Ok(&cloud_id), elapsed),
                Err(msg) => reporter.step_finished(&step.id, step.kind, Err(&msg), elapsed),
            }
        }
        for (step, kind, job) in starting {
            reporter.step_started(&step.id, step.kind, kind);
            let started = Instant::now();
            let fut = run_job(
                cloud.clone(),
                plan.env.clone(),
                state.owner(),
                job,
                reporter.clone(),
                Retries::from(settings),
                waits.clone(),
            );
            running.push(async move { (step, fut.await, started.elapsed()) });
        }

        if running.is_empty() {
            break;
        }

        // The next result, or a step that starts waiting for the cloud (a free worker).
        let first = tokio::select! {
            n = running.next() => n,
            _ = waits.changed.notified() => continue,
            _ = cancel.cancelled(), if !outcome.interrupted => continue,
        };
        let mut results = Vec::from_iter(first);
        // Whatever else finished meanwhile goes into the same save.
        while let Some(Some(more)) = futures::FutureExt::now_or_never(running.next()) {
            results.push(more);
        }
        for (step, result, elapsed) in results {
            match result {
                Ok(done) => {
                    let replacing = step.kind == StepKind::Delete
                        && actions
                            .get(&step.id)
                            .is_some_and(|a| a.action == ActionKind::Replace);
                    let spec_applied = applied.remove(&step);
                    if step.kind == StepKind::Create {
                        lost.remove(&step.id);
                    }
                    apply_done(
                        state,
                        &step,
                        desired,
                        done,
                        replacing,
                        spec_applied,
                        &mut outcome,
                    );
                    dirty = true;
                    queue.finish(&step);
                    outcome.succeeded += 1;
                    let cloud_id = state
                        .resources
                        .get(&step.id)
                        .map(|e| e.cloud_id.clone())
                        .unwrap_or_default();
                    finished.push((step, Ok(cloud_id), elapsed));
                }
                Err(e) => {
                    if step.kind == StepKind::Create && token_spent_by(&e) {
                        if let Some(entry) = state.resources.get_mut(&step.id) {
                            if entry.status == Status::Creating && !entry.token_spent {
                                entry.token_spent = true;
                                dirty = true;
                            }
                        }
                    }
                    let msg = e.to_string();
                    finished.push((step.clone(), Err(msg.clone()), elapsed));
                    outcome.failed.push((step, msg));
                    stop = true;
                }
            }
        }
    }
    outcome.skipped = queue.remaining();
    Ok(outcome)
}

/// Steps that wait for the cloud right now (they hold no worker), and a signal when one
/// starts waiting.
#[derive(Default)]
struct Waiting {
    count: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Waiting {
    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn apply_done(
    state: &mut State,
    step: &Step,
    desired: &Desired,
    done: Done,
    replacing: bool,
    applied: Option<Spec>,
    outcome: &mut Outcome,
) {
    let id = &step.id;
    let done_kind = match &done {
        Done::Adopted(_, false) => DoneKind::AdoptedOnly,
        _ => DoneKind::Changed,
    };
    let deps_of = |spec: &Spec, state: &State| -> Vec<LogicalId> {
        spec.depends_on()
            .into_iter()
            .filter(|d| state.resources.contains_key(d))
            .collect()
    };
    match done {
        Done::Created(obs) | Done::Updated(obs) | Done::Adopted(obs, _) => {
            let changed_cloud = !matches!(done_kind, DoneKind::AdoptedOnly);
            // The step was only started with a spec; the intent holds it too. A create
            // that left out late references records what it applied.
            let Some(spec) = applied.or_else(|| {
                desired
                    .resources
                    .get(id)
                    .or_else(|| state.resources.get(id).map(|e| &e.spec))
                    .cloned()
            }) else {
                return;
            };
            let depends_on = deps_of(&spec, state);
            let prior = state.resources.get(id);
            let token = prior
                .map(|e| e.token.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(new_token);
            state.resources.insert(
                id.clone(),
                Entry {
                    kind: spec.kind(),
                    status: Status::Created,
                    cloud_id: obs.cloud_id,
                    token,
                    token_spent: false,
                    spec,
                    attrs: obs.attrs,
                    depends_on,
                    updated_at: now(),
                },
            );
            if changed_cloud {
                outcome.mutated.insert(id.clone());
            }
        }
        Done::Deleted if replacing => {
            // The old half of a replace is gone; keep the entry as an intent for the new
            // one (no cloud id). If the run stops here, the next plan creates it as a
            // re-creation, so what points at it (target groups, records) is repointed.
            if let Some(e) = state.resources.get_mut(id) {
                e.status = Status::Creating;
                e.cloud_id.clear();
                e.token.clear();
                e.token_spent = false;
                e.attrs = Default::default();
                e.updated_at = now();
            }
            forget_dependents_link(state, id);
            outcome.mutated.insert(id.clone());
        }
        Done::Deleted => {
            state.resources.remove(id);
            // Keep the file self-consistent: nobody depends on a removed entry.
            for e in state.resources.values_mut() {
                e.depends_on.retain(|d| d != id);
            }
            if step.kind == StepKind::Delete {
                outcome.mutated.insert(id.clone());
            }
        }
    }
}

/// Drop `id` from the `depends_on` of every other entry: they no longer point at the
/// object behind `id` (see the planner, which updates them).
fn forget_dependents_link(state: &mut State, id: &LogicalId) {
    for (other, e) in state.resources.iter_mut() {
        if other != id {
            e.depends_on.retain(|d| d != id);
        }
    }
}

enum DoneKind {
    AdoptedOnly,
    Changed,
}

fn new_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
