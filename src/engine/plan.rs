//! Planning: compare the desired graph with the state and the live cloud, and decide one
//! action per logical resource, each with its reasons.
//!
//! * in config, not in state: look in the cloud by token/tags first — found means
//!   **adopt** (a crashed run or a lost state file created it), otherwise **create**;
//! * in state as a write-ahead intent (`creating`): the same search, so an interrupted
//!   create is never duplicated;
//! * in both: read it live; gone means **create** again ("deleted outside provision"),
//!   changed fields mean **update** or **replace** (per `Spec::updatable_fields`), drift
//!   reported by the cloud means **update**; replacing a resource replaces what lives inside
//!   it (`RefMode::Parent`) and updates what points at it (`RefMode::Attach`);
//! * in state, not in config: **delete**; and anything tagged for this environment that
//!   neither the state nor the config knows (left by a crash) is deleted too.
//!
//! Planning only reads; it never changes the cloud or the state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::graph::DependencyQueue;
use crate::cloud::{Cloud, CloudError, DeleteOptions, OpContext};
use crate::model::{Attrs, Kind, LogicalId, Observed, Owner, RefMode, Resolved, Spec};
use crate::state::{State, Status};

/// The resources the config asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub resources: BTreeMap<LogicalId, Spec>,
}

impl Desired {
    pub fn insert(&mut self, id: impl Into<LogicalId>, spec: Spec) {
        self.resources.insert(id.into(), spec);
    }

    /// Topological order (dependencies first); errors on cycles or unknown references.
    pub fn order(&self) -> Result<Vec<LogicalId>, PlanError> {
        let mut q = DependencyQueue::new();
        for (id, spec) in &self.resources {
            for dep in spec.depends_on() {
                if !self.resources.contains_key(&dep) {
                    return Err(PlanError::UnknownRef {
                        id: id.clone(),
                        dep: dep.clone(),
                    });
                }
            }
            q.queue(id.clone(), spec.depends_on());
        }
        q.queue_finished().map_err(PlanError::Cycle)?;
        Ok(q.order())
    }

    /// A digest of the desired graph, to tell whether a saved plan still fits the config.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (id, spec) in &self.resources {
            h.update(id.as_str().as_bytes());
            h.update(serde_json::to_vec(spec).expect("spec serializes"));
        }
        hex::encode(h.finalize())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Nothing to do.
    NoOp,
    /// Create a new resource.
    Create,
    /// Take over a resource found by token or tags (no cloud change unless it drifted).
    Adopt,
    /// Change the resource in place.
    Update,
    /// Delete, then create again.
    Replace,
    /// Delete the resource.
    Delete,
    /// Drop it from the state: it is already gone from the cloud.
    Forget,
}

impl ActionKind {
    pub fn symbol(self) -> &'static str {
        match self {
            ActionKind::NoOp => " ",
            ActionKind::Create => "+",
            ActionKind::Adopt => "=",
            ActionKind::Update => "~",
            ActionKind::Replace => "-/+",
            ActionKind::Delete => "-",
            ActionKind::Forget => "x",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            ActionKind::NoOp => "unchanged",
            ActionKind::Create => "create",
            ActionKind::Adopt => "adopt",
            ActionKind::Update => "update",
            ActionKind::Replace => "replace",
            ActionKind::Delete => "delete",
            ActionKind::Forget => "forget",
        }
    }

    /// Does this action change the cloud or the state?
    pub fn is_change(self) -> bool {
        !matches!(self, ActionKind::NoOp)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: LogicalId,
    pub kind: Kind,
    pub action: ActionKind,
    pub reasons: Vec<String>,
    /// The live resource (for update/delete/adopt); absent for create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Observed>,
    /// For adopt: update it after adopting, because it drifted.
    #[serde(default)]
    pub update_after_adopt: bool,
    /// For deletes of resources the state does not know: no dependency information, so
    /// teardown order falls back to kind ranks.
    #[serde(default)]
    pub orphan: bool,
    /// What this action destroys for good (a node's disks, the database, the registry's
    /// image store). `apply` refuses such a plan unless the operator allows data loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<String>,
    /// An update that only records the new spec in the state: what changed cannot reach
    /// the live resource without replacing it (a cluster node's user-data or launch key),
    /// and replacing is the operator's explicit choice (`apply --replace ID`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_only: bool,
    /// The live resource has no `provision:lineage` tag (made before lineage tags): tag
    /// it with this state's lineage once the step is done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claim: bool,
}

/// What apply (or destroy) would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub env: String,
    pub destroy: bool,
    /// Lineage and serial of the state the plan was made from (`None`: no state yet).
    pub lineage: Option<String>,
    pub serial: u64,
    pub desired_digest: String,
    pub actions: Vec<Action>,
    /// A fresh state found resources tagged for the env: `apply --adopt` takes them over
    /// (and continues their lineage); without it apply changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<super::ownership::Takeover>,
    /// Resources tagged for the env without a lineage that this state does not record:
    /// never deleted, only named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<String>,
}

impl Plan {
    pub fn changes(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| a.action.is_change())
    }

    pub fn has_changes(&self) -> bool {
        self.changes().next().is_some()
    }

    pub fn count(&self, kind: ActionKind) -> usize {
        self.actions.iter().filter(|a| a.action == kind).count()
    }

    pub fn get(&self, id: &LogicalId) -> Option<&Action> {
        self.actions.iter().find(|a| &a.id == id)
    }

    /// The actions that destroy data for good.
    pub fn data_losses(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| a.data_loss.is_some())
    }
}

/// What an action destroys that no later step brings back, if anything. Replacing or
/// deleting a cluster node loses what lives on its disks (etcd, K3s/RKE2 state); replacing
/// or deleting the database or the registry's volume loses their contents — whether the
/// config dropped it, a scale-down removes it, or it is a leftover of an interrupted run
/// (a leftover may have been in use since). The registry host itself keeps nothing (its
/// store is the `registry-data` volume). Only `destroy` deletes without this mark: the
/// operator asked for exactly that.
pub fn data_loss(action: &Action, spec: Option<&Spec>, destroy: bool) -> Option<String> {
    let replaced = action.action == ActionKind::Replace;
    let deleted = action.action == ActionKind::Delete && !destroy;
    let stray = if action.orphan {
        " (a leftover found by its tags; it may hold data since)"
    } else {
        ""
    };
    match (action.kind, spec) {
        (Kind::Instance, Some(Spec::Instance(i))) if replaced && i.is_cluster_node() => Some(
            "the node is terminated and launched anew: data on its disks (etcd, Kubernetes \
             node state, cached images) is lost"
                .into(),
        ),
        (Kind::Instance, Some(Spec::Instance(i))) if deleted && i.is_cluster_node() => {
            Some(format!(
                "the node is terminated: data on its disks (etcd, Kubernetes node state) is \
                 lost{stray}. Drain it first (`kubectl drain {0}`), and for an etcd member \
                 remove it from the cluster (`kubectl delete node {0}` on K3s/RKE2; \
                 `rke up` without it on RKE)",
                action.id
            ))
        }
        // A leftover node the state never knew: only its logical id says what it was.
        (Kind::Instance, None) if deleted && !action.id.as_str().contains("registry") => Some(
            format!("the instance is terminated: data on its disks is lost{stray}"),
        ),
        (Kind::Database, _) if replaced || deleted => Some(format!(
            "the database is deleted (a final snapshot is taken unless \
             --skip-final-snapshot) and its data does not come back by itself{stray}"
        )),
        (Kind::Volume, _) if replaced || deleted => Some(format!(
            "the volume and every image stored on it are deleted{stray}"
        )),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("resource `{id}` refers to `{dep}`, which the blueprint does not define")]
    UnknownRef { id: LogicalId, dep: LogicalId },
    #[error(transparent)]
    Cycle(super::graph::Cycle),
    #[error("while planning `{id}` ({kind}): {source}")]
    Cloud {
        id: LogicalId,
        kind: Kind,
        #[source]
        source: CloudError,
    },
    #[error("listing the resources tagged provision:env={env}: {source}")]
    List {
        env: String,
        #[source]
        source: CloudError,
    },
    /// Resources tagged for this env belong to another environment of the same name.
    #[error(transparent)]
    Foreign(#[from] super::ownership::Foreign),
    /// A change the cloud would refuse, caught before anything changes.
    #[error("`{id}` cannot change as the config asks: {message}")]
    Refused { id: LogicalId, message: String },
}

/// An in-place type change of an instance with a public IP (the registry host, the
/// bastion) stops and starts it: EC2 gives it a new public address, so `ssh_config` and
/// the bastion address go stale. Said in the plan (there is no Elastic IP to keep it).
pub fn public_ip_moves(old: &Spec, new: &Spec) -> Option<String> {
    let (Spec::Instance(old), Spec::Instance(new)) = (old, new) else {
        return None;
    };
    (new.public_ip && old.instance_type != new.instance_type).then(|| {
        "the type change stops and starts the host: its public IP changes (AWS gives a \
         stopped instance a new one), so run `provision artifacts` afterwards for an \
         ssh_config with the new bastion address (`provision output ssh_bastion`)"
            .to_string()
    })
}

/// How long AWS makes a volume wait between two modifications.
pub const VOLUME_COOLDOWN_HOURS: i64 = 6;

/// A volume size change within [`VOLUME_COOLDOWN_HOURS`] of the last one (`modified_at`,
/// RFC 3339): AWS refuses it (`VolumeModificationRateExceeded`), so the plan does, naming
/// when it becomes possible.
pub fn volume_cooldown(
    old: &Spec,
    new: &Spec,
    modified_at: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let (Spec::Volume(old), Spec::Volume(new)) = (old, new) else {
        return None;
    };
    if old.size_gb == new.size_gb {
        return None;
    }
    let last = chrono::DateTime::parse_from_rfc3339(modified_at?)
        .ok()?
        .with_timezone(&chrono::Utc);
    let next = last + chrono::Duration::hours(VOLUME_COOLDOWN_HOURS);
    if now >= next {
        return None;
    }
    let format = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    Some(format!(
        "size {} GiB → {} GiB: the volume was resized at {}, and AWS allows one change of a \
         volume every {VOLUME_COOLDOWN_HOURS} hours; this change becomes possible at {} \
         (keep the size at {} GiB until then)",
        old.size_gb,
        new.size_gb,
        format(last),
        format(next),
        old.size_gb
    ))
}

/// A change of `old` (from the state) into `new` that the cloud refuses, known before any
/// call: RDS storage never shrinks and grows by at least 10% at a time (a smaller increase
/// is refused or silently rounded up, which would leave the config and the cloud apart).
pub fn refused_change(old: &Spec, new: &Spec) -> Option<String> {
    let (Spec::Database(old), Spec::Database(new)) = (old, new) else {
        return None;
    };
    let (from, to) = (u64::from(old.storage_gb), u64::from(new.storage_gb));
    if to < from {
        Some(format!(
            "datastore.storage_gb {from} GB → {to} GB: RDS storage can never shrink; keep \
             storage_gb at {from} or more"
        ))
    } else if to > from && to * 10 < from * 11 {
        let percent = (to - from) as f64 * 100.0 / from as f64;
        Some(format!(
            "datastore.storage_gb {from} GB → {to} GB is an increase of {percent:.1}%; RDS \
             grows storage only by at least 10% at a time: set storage_gb to {} or more, or \
             keep it at {from}",
            (from * 11).div_ceil(10)
        ))
    } else {
        None
    }
}

/// Compare two specs of one resource: (reasons forcing a replace, reasons for an update).
pub fn spec_changes(old: &Spec, new: &Spec) -> (Vec<String>, Vec<String>) {
    if old.kind() != new.kind() {
        return (
            vec![format!(
                "kind changes from {} to {}",
                old.kind(),
                new.kind()
            )],
            vec![],
        );
    }
    let (serde_json::Value::Object(a), serde_json::Value::Object(b)) = (
        serde_json::to_value(old).expect("spec"),
        serde_json::to_value(new).expect("spec"),
    ) else {
        return (vec![], vec![]);
    };
    let updatable = new.updatable_fields();
    let mut replace = Vec::new();
    let mut update = Vec::new();
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let (va, vb) = (a.get(key), b.get(key));
        if va == vb {
            continue;
        }
        // Only an ordering of the first create (an NLB after the internet gateway): no
        // change of the resource.
        if key == "after" && matches!(new, Spec::LoadBalancer(_)) {
            continue;
        }
        // Security-group rules are shown as the rules themselves, one line each.
        if let (Spec::SecurityGroup(o), Spec::SecurityGroup(n)) = (old, new) {
            let rules = match key.as_str() {
                "ingress" => Some((&o.ingress, &n.ingress, "from")),
                "egress" => Some((&o.egress, &n.egress, "to")),
                _ => None,
            };
            if let Some((was, now, direction)) = rules {
                let lines = rule_changes(key, was, now, direction);
                if updatable.contains(&key.as_str()) {
                    update.extend(lines);
                } else {
                    replace.extend(lines);
                }
                continue;
            }
        }
        let text = describe_change(key, va, vb);
        let forced = match (old, new) {
            // RDS cannot go down a version in place.
            (Spec::Database(o), Spec::Database(n)) if key == "engine_version" => {
                version_lt(&n.engine_version, &o.engine_version)
            }
            // EBS volumes grow in place but never shrink.
            (Spec::Volume(o), Spec::Volume(n)) if key == "size_gb" => n.size_gb < o.size_gb,
            (Spec::Instance(o), Spec::Instance(n)) if key == "root_volume_gb" => {
                n.root_volume_gb < o.root_volume_gb
            }
            _ => !updatable.contains(&key.as_str()),
        };
        if forced {
            let why = match (old, new) {
                (Spec::Database(_), _) if key == "engine_version" => {
                    "RDS cannot downgrade in place"
                }
                (Spec::Volume(_), _) if key == "size_gb" => "an EBS volume cannot shrink",
                (Spec::Instance(_), _) if key == "root_volume_gb" => "an EBS volume cannot shrink",
                (Spec::Instance(_), _) if key == "user_data_sha256" => {
                    "user-data is read only at first boot"
                }
                _ => "cannot change in place",
            };
            replace.push(format!("{text} ({why})"));
        } else {
            update.push(text);
        }
    }
    (replace, update)
}

/// `ingress: + tcp 22 from 203.0.113.0/24` for each rule added, `- …` for each removed.
fn rule_changes(
    key: &str,
    was: &[crate::model::Rule],
    now: &[crate::model::Rule],
    direction: &str,
) -> Vec<String> {
    let removed = was
        .iter()
        .filter(|r| !now.contains(r))
        .map(|r| format!("{key}: - {}", r.text(direction)));
    let added = now
        .iter()
        .filter(|r| !was.contains(r))
        .map(|r| format!("{key}: + {}", r.text(direction)));
    removed.chain(added).collect()
}

fn version_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parse(a) < parse(b)
}

fn describe_change(
    key: &str,
    a: Option<&serde_json::Value>,
    b: Option<&serde_json::Value>,
) -> String {
    let show = |v: Option<&serde_json::Value>| -> String {
        match v {
            None | Some(serde_json::Value::Null) => "none".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => {
                let s = v.to_string();
                if s.chars().count() > 60 {
                    format!("{}…", s.chars().take(59).collect::<String>())
                } else {
                    s
                }
            }
        }
    };
    match (a, b) {
        (Some(serde_json::Value::Array(x)), Some(serde_json::Value::Array(y))) => {
            let added = y.iter().filter(|v| !x.contains(v)).count();
            let removed = x.iter().filter(|v| !y.contains(v)).count();
            format!("{key}: {added} added, {removed} removed")
        }
        (_, _) if key == "user_data_sha256" => "user-data changed".to_string(),
        _ => format!("{key}: {} → {}", show(a), show(b)),
    }
}

/// Read-only inputs of planning.
pub struct PlanInput<'a> {
    pub env: &'a str,
    pub desired: &'a Desired,
    pub state: &'a State,
    /// `destroy`: everything the state and the tags know goes.
    pub destroy: bool,
    /// Resources to replace even where the plan would not (`apply --replace ID`): a
    /// cluster node whose user-data or key pair changed.
    pub replace: &'a [LogicalId],
}

/// Make a plan. Only read calls reach the cloud.
pub async fn make_plan(cloud: &dyn Cloud, input: PlanInput<'_>) -> Result<Plan, PlanError> {
    let PlanInput {
        env,
        desired,
        state,
        destroy,
        replace: replace_asked,
    } = input;
    let empty = Desired::default();
    // For destroy the config's graph still helps: it names resources (DNS records in an
    // existing zone) that only `find` can locate when the state is missing.
    let configured = desired;
    let desired = if destroy { &empty } else { desired };
    let order = desired.order()?;
    let no_delete = DeleteOptions::default();

    // Planning reads a lot and changes nothing: the cloud may answer from one bulk read
    // per kind until the plan is made.
    let _survey = Survey::begin(cloud, env);

    // 1b. What a create would trip over (a DNS zone that does not exist, a missing
    // image), checked before any change, for what the run may create or change: what the
    // state does not hold as made, or holds with another spec. (A resource found deleted
    // outside provision is checked once the reads tell, below.) Each distinct check runs
    // once; all of them at once, with 1, 2 and 5.
    let needs_check = |id: &LogicalId| match state.resources.get(id) {
        None => true,
        Some(e) => {
            let (replace, update) = spec_changes(&e.spec, &desired.resources[id]);
            e.status != Status::Created || !replace.is_empty() || !update.is_empty()
        }
    };
    let mut checked = BTreeSet::new();
    let first_checks: Vec<&LogicalId> = order
        .iter()
        .filter(|id| needs_check(id))
        .filter(|id| check_key(&desired.resources[*id]).is_some_and(|k| checked.insert(k)))
        .collect();
    let state_resolved = state.resolved();
    let state_owner = state.owner();
    let checks = preflight_all(
        cloud,
        env,
        &state_owner,
        desired,
        &first_checks,
        &state_resolved,
    );

    // 5. (used below) what is tagged for this env.
    let owned = async {
        retry_transient(|| cloud.list_owned(env))
            .await
            .map_err(|source| PlanError::List {
                env: env.to_string(),
                source,
            })
    };

    // 1. What is live, for everything the state knows about; 2. the desired resources,
    // dependencies first so adoptions resolve for later finds: level by level (a
    // resource's level is one more than its deepest dependency's), the finds of one level
    // at once.
    let work = async {
        // 0. Whose is what is tagged for this env: another environment's is refused
        // before anything else is read; a fresh state works as the lineage it found.
        let owned = owned.await?;
        let assessment = super::ownership::assess(state, &owned)?;
        let owner = &assessment.owner;
        let mut resolved = state.resolved();
        let mut live: BTreeMap<LogicalId, Option<Observed>> = BTreeMap::new();
        let reads = {
            let resolved = &resolved;
            let no_delete = &no_delete;
            futures::future::join_all(state.resources.iter().map(|(id, entry)| async move {
                let spec = desired.resources.get(id).unwrap_or(&entry.spec);
                let c = OpContext::quiet(env, owner, id, &entry.token, resolved, no_delete);
                let r = match entry.status {
                    Status::Created => {
                        retry_transient(|| cloud.read(&c, spec, &entry.cloud_id)).await
                    }
                    Status::Creating => match retry_transient(|| cloud.find(&c, spec)).await {
                        Err(CloudError::MissingRef(_)) => Ok(None),
                        other => other,
                    },
                };
                (id.clone(), entry.kind, r)
            }))
            .await
        };
        for (id, kind, r) in reads {
            let observed = r.map_err(|source| PlanError::Cloud {
                id: id.clone(),
                kind,
                source,
            })?;
            live.insert(id, observed);
        }

        let mut actions: BTreeMap<LogicalId, Action> = BTreeMap::new();
        let mut level: BTreeMap<&LogicalId, usize> = BTreeMap::new();
        for id in &order {
            let deepest = desired.resources[id]
                .depends_on()
                .iter()
                .filter_map(|d| level.get(d).copied())
                .max();
            level.insert(id, deepest.map_or(0, |l| l + 1));
        }
        let levels = level.values().copied().max().map_or(0, |l| l + 1);
        for this_level in 0..levels {
            let ids: Vec<&LogicalId> = order.iter().filter(|id| level[id] == this_level).collect();
            // The finds of this level: resources the state does not know, whose
            // dependencies exist (with one missing, this cannot exist either).
            let found: BTreeMap<LogicalId, Option<Observed>> = {
                let resolved = &resolved;
                let no_delete = &no_delete;
                let finds = ids
                    .iter()
                    .filter(|id| !state.resources.contains_key(**id))
                    .map(|id| (*id, &desired.resources[*id]))
                    .filter(|(_, spec)| spec.depends_on().iter().all(|d| resolved.get(d).is_some()))
                    .map(|(id, spec)| async move {
                        let token = String::new();
                        let c = OpContext::quiet(env, owner, id, &token, resolved, no_delete);
                        retry_transient(|| cloud.find(&c, spec))
                            .await
                            .map(|f| (id.clone(), f))
                            .map_err(|source| PlanError::Cloud {
                                id: id.clone(),
                                kind: spec.kind(),
                                source,
                            })
                    });
                futures::future::join_all(finds)
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?
            };
            for id in ids {
                let spec = &desired.resources[id];
                let kind = spec.kind();
                let action = match state.resources.get(id) {
                    None => match found.get(id).cloned().flatten() {
                        Some(obs) => {
                            adopt_action(
                                cloud,
                                env,
                                owner,
                                id,
                                spec,
                                obs,
                                &mut resolved,
                                "not in the state but found in the cloud by its tags",
                            )
                            .await?
                        }
                        None => new_action(id, kind, ActionKind::Create, vec![]),
                    },
                    Some(entry) if entry.status == Status::Creating => {
                        match live.get(id).cloned().flatten() {
                            Some(obs) => {
                                adopt_action(
                                    cloud,
                                    env,
                                    owner,
                                    id,
                                    spec,
                                    obs,
                                    &mut resolved,
                                    "an interrupted run created it; found by its token/tags",
                                )
                                .await?
                            }
                            None => new_action(
                                id,
                                kind,
                                ActionKind::Create,
                                vec![
                                    "an interrupted run recorded the intent but it was never created"
                                        .into(),
                                ],
                            ),
                        }
                    }
                    Some(entry) => match live.get(id).cloned().flatten() {
                        None => new_action(
                            id,
                            kind,
                            ActionKind::Create,
                            vec!["deleted outside provision".into()],
                        ),
                        Some(obs) => {
                            changed_action(
                                cloud,
                                env,
                                owner,
                                id,
                                spec,
                                entry,
                                obs,
                                state,
                                &resolved,
                                replace_asked.contains(id),
                            )
                            .await?
                        }
                    },
                };
                actions.insert(id.clone(), action);
            }
        }
        Ok::<_, PlanError>((resolved, live, actions, owned, assessment))
    };
    let (work, checks) = futures::join!(work, checks);
    let (resolved, live, mut actions, owned, assessment) = work?;
    checks?;
    let owner = &assessment.owner;
    // Resources the reads found gone are created again: check those too.
    let late_checks: Vec<&LogicalId> = order
        .iter()
        .filter(|id| !needs_check(id))
        .filter(|id| {
            actions
                .get(*id)
                .is_some_and(|a| matches!(a.action, ActionKind::Create | ActionKind::Replace))
        })
        .filter(|id| check_key(&desired.resources[*id]).is_some_and(|k| checked.insert(k)))
        .collect();
    preflight_all(cloud, env, owner, desired, &late_checks, &resolved).await?;

    // 3. Cascade replacements along the graph (in topological order).
    for id in &order {
        let spec = &desired.resources[id];
        for (dep, mode) in spec.refs() {
            let dep_action = actions.get(&dep).map(|a| a.action);
            let recreated = matches!(dep_action, Some(ActionKind::Replace))
                || (matches!(dep_action, Some(ActionKind::Create))
                    && state.resources.contains_key(&dep));
            if !recreated {
                continue;
            }
            let a = actions.get_mut(id).expect("planned");
            match (a.action, mode) {
                (ActionKind::NoOp | ActionKind::Update | ActionKind::Adopt, RefMode::Parent)
                    if a.current.is_some() =>
                {
                    a.action = ActionKind::Replace;
                    a.reasons
                        .push(format!("`{dep}` is replaced and this lives inside it"));
                }
                (ActionKind::NoOp, RefMode::Attach) => {
                    a.action = ActionKind::Update;
                    a.reasons
                        .push(format!("`{dep}` is replaced; point at the new one"));
                }
                (ActionKind::Update, RefMode::Attach) => {
                    a.reasons
                        .push(format!("`{dep}` is replaced; point at the new one"));
                }
                (ActionKind::Adopt, RefMode::Attach) => {
                    a.update_after_adopt = true;
                    a.reasons
                        .push(format!("`{dep}` is replaced; point at the new one"));
                }
                _ => {}
            }
        }
    }

    // 4. In the state but not desired.
    for (id, entry) in &state.resources {
        if desired.resources.contains_key(id) {
            continue;
        }
        let why = if destroy {
            "destroy"
        } else {
            "no longer in the config"
        };
        let a = match live.get(id).cloned().flatten() {
            Some(obs) => {
                let mut a = new_action(id, entry.kind, ActionKind::Delete, vec![why.into()]);
                a.current = Some(obs);
                a
            }
            None => new_action(
                id,
                entry.kind,
                ActionKind::Forget,
                vec!["already gone from the cloud".into()],
            ),
        };
        actions.insert(id.clone(), a);
    }

    // 4b. Destroy without (complete) state: look for the configured resources the state
    // does not know, the way apply would adopt them.
    if destroy {
        if let Ok(config_order) = configured.order() {
            let mut found_resolved = resolved.clone();
            for id in config_order {
                if state.resources.contains_key(&id) {
                    continue;
                }
                let spec = &configured.resources[&id];
                let token = String::new();
                let c = OpContext::quiet(env, owner, &id, &token, &found_resolved, &no_delete);
                match retry_transient(|| cloud.find(&c, spec)).await {
                    Ok(Some(obs)) => {
                        found_resolved.entries.insert(id.clone(), obs.clone());
                        let mut a = new_action(
                            &id,
                            spec.kind(),
                            ActionKind::Delete,
                            vec!["found in the cloud by its tags (not in the state)".into()],
                        );
                        a.current = Some(obs);
                        a.orphan = true;
                        actions.insert(id, a);
                    }
                    Ok(None) | Err(CloudError::MissingRef(_)) => {}
                    Err(source) => {
                        return Err(PlanError::Cloud {
                            id,
                            kind: spec.kind(),
                            source,
                        })
                    }
                }
            }
        }
    }

    // Resources of this env found without a lineage tag, which this run keeps.
    let untagged: BTreeSet<String> = owned
        .iter()
        .filter(|o| o.owner.lineage.is_none())
        .filter(|o| {
            !assessment
                .unclaimed
                .iter()
                .any(|(_, _, cloud_id)| cloud_id == &o.cloud_id)
        })
        .map(|o| o.cloud_id.clone())
        .collect();

    // 5. Tagged for this env (and this lineage, or none when a fresh state takes over
    // resources made before lineage tags), known to neither state nor config: left by a
    // crashed run (listed above, with the reads). Untagged ones a saved state does not
    // record are left alone.
    for o in owned {
        if assessment
            .unclaimed
            .iter()
            .any(|(_, _, cloud_id)| cloud_id == &o.cloud_id)
        {
            continue;
        }
        let known_here = state
            .resources
            .get(&o.id)
            .is_some_and(|e| e.cloud_id == o.cloud_id)
            || actions
                .get(&o.id)
                .and_then(|a| a.current.as_ref())
                .is_some_and(|c| c.cloud_id == o.cloud_id);
        if known_here {
            continue;
        }
        // Same logical id, another cloud id: a duplicate (e.g. moto ignored a ClientToken,
        // or someone copied the tags). Key it uniquely so both show.
        let key = if actions.contains_key(&o.id) {
            LogicalId::new(format!("{}#{}", o.id, o.cloud_id))
        } else {
            o.id.clone()
        };
        let mut a = new_action(
            &key,
            o.kind,
            ActionKind::Delete,
            vec![if destroy {
                "tagged for this environment (not in the state)".into()
            } else {
                "tagged for this environment but not in the state or the config (left by an interrupted run)".into()
            }],
        );
        a.current = Some(Observed::new(o.cloud_id, o.attrs));
        a.orphan = true;
        actions.insert(key, a);
    }

    // Order: desired in topological order, then deletions.
    let mut list: Vec<Action> = Vec::new();
    for id in &order {
        if let Some(a) = actions.remove(id) {
            list.push(a);
        }
    }
    let mut rest: Vec<Action> = actions.into_values().collect();
    rest.sort_by_key(|a| (std::cmp::Reverse(a.kind.rank()), a.id.clone()));
    list.extend(rest);
    for a in &mut list {
        let spec = desired
            .resources
            .get(&a.id)
            .or_else(|| state.resources.get(&a.id).map(|e| &e.spec));
        a.data_loss = data_loss(a, spec, destroy);
        // What this state keeps and that carries no lineage yet is tagged with it.
        let live_untagged = a
            .current
            .as_ref()
            .is_some_and(|c| untagged.contains(&c.cloud_id));
        if !destroy && live_untagged {
            match a.action {
                ActionKind::Adopt | ActionKind::Update => a.claim = true,
                ActionKind::NoOp => {
                    a.action = ActionKind::Update;
                    a.record_only = true;
                    a.claim = true;
                    a.reasons.push(format!(
                        "tag with provision:lineage={} (made before lineage tags)",
                        owner.lineage
                    ));
                }
                _ => {}
            }
        }
    }

    let left_alone = assessment
        .unclaimed
        .iter()
        .map(|(kind, id, cloud_id)| {
            format!(
                "{kind} {id} ({cloud_id}): tagged provision:env={env} without a lineage and \
                 not in this state; left alone (`provision:lineage` tells whose it is)"
            )
        })
        .collect();
    Ok(Plan {
        env: env.to_string(),
        destroy,
        lineage: if state.serial == 0 && state.resources.is_empty() {
            None
        } else {
            Some(state.lineage.clone())
        },
        takeover: assessment.takeover.clone(),
        left_alone,
        serial: state.serial,
        desired_digest: desired.digest(),
        actions: list,
    })
}

/// The action for a resource the state holds and the cloud still has: update or replace
/// for config changes and drift, no-op otherwise.
#[allow(clippy::too_many_arguments)]
async fn changed_action(
    cloud: &dyn Cloud,
    env: &str,
    owner: &Owner,
    id: &LogicalId,
    spec: &Spec,
    entry: &crate::state::Entry,
    obs: Observed,
    state: &State,
    resolved: &Resolved,
    replace_asked: bool,
) -> Result<Action, PlanError> {
    let kind = spec.kind();
    let (mut replace, mut update) = spec_changes(&entry.spec, spec);
    let launch_only = if replace_asked {
        replace.push("replacement asked for (--replace)".into());
        Vec::new()
    } else {
        launch_only_changes(&entry.spec, spec, id, &mut replace)
    };
    // A replacement starts afresh; an in-place change must be one AWS takes.
    let modified_at = match (&obs.attrs, &entry.attrs) {
        (
            Attrs::Volume {
                modified_at: Some(at),
                ..
            },
            _,
        )
        | (
            _,
            Attrs::Volume {
                modified_at: Some(at),
                ..
            },
        ) => Some(at.as_str()),
        _ => None,
    };
    let refused = refused_change(&entry.spec, spec)
        .or_else(|| volume_cooldown(&entry.spec, spec, modified_at, chrono::Utc::now()));
    match refused {
        Some(message) if replace.is_empty() => {
            return Err(PlanError::Refused {
                id: id.clone(),
                message,
            })
        }
        _ => {}
    }
    // The cloud reports drift against the spec it was read with (the config's); a config
    // change shows there too. Drift is what changed outside the tool: the live resource
    // against the spec last applied.
    let (drift, fixed) = if entry.spec == *spec {
        (obs.drift.clone(), obs.fixed.clone())
    } else {
        let changed: Vec<&String> = replace.iter().chain(&update).collect();
        drift_from_applied(cloud, env, owner, id, entry, resolved, &obs, &changed).await
    };
    update.extend(drift.iter().map(|d| format!("drift: {d}")));
    // A config that now asks for what was changed outside (a version RDS cannot go back
    // from, written into the config) leaves nothing only a replacement could do.
    let fixed = if obs.fixed.is_empty() {
        Vec::new()
    } else {
        fixed
    };
    // Changed outside the tool where the cloud allows no update: only a replacement
    // brings it back to the spec (and says so, with its data loss where data lives).
    replace.extend(
        fixed
            .iter()
            .map(|d| format!("drift: {d} (only a replacement changes it)")),
    );
    // `depends_on` lists the references whose current object this resource was last
    // pointed at; the executor drops a reference from it when the object behind it is
    // re-created. Same reference, new object: follow it (even if the run that re-created it
    // stopped before doing so).
    let old_refs = entry.spec.depends_on();
    for (r, mode) in spec.refs() {
        if old_refs.contains(&r)
            && state.resources.contains_key(&r)
            && !entry.depends_on.contains(&r)
        {
            match mode {
                RefMode::Parent => {
                    replace.push(format!("`{r}` was re-created and this lives inside it"))
                }
                RefMode::Attach => {
                    update.push(format!("`{r}` was re-created; point at the new one"))
                }
                RefMode::After => {}
            }
        }
    }
    if replace.is_empty() {
        if let Some(note) = public_ip_moves(&entry.spec, spec) {
            update.push(note);
        }
    }
    let mut a = if !replace.is_empty() {
        let mut r = replace;
        r.extend(update);
        new_action(id, kind, ActionKind::Replace, r)
    } else if !update.is_empty() {
        let mut a = new_action(id, kind, ActionKind::Update, update);
        a.reasons.extend(launch_only);
        a
    } else if !launch_only.is_empty() {
        let mut a = new_action(id, kind, ActionKind::Update, launch_only);
        a.record_only = true;
        a
    } else {
        new_action(id, kind, ActionKind::NoOp, vec![])
    };
    a.current = Some(obs);
    Ok(a)
}

/// A cluster node is never replaced for what only reaches it at launch: its user-data
/// (cloud-init runs it once, at first boot) and its EC2 key pair. Replacing would lose its
/// disks (etcd, node state) for files the operator can put there in place. Those changes
/// leave `replace` and come back as notes saying which node holds stale files and how to
/// bring them up to date, or to replace it explicitly.
fn launch_only_changes(
    old: &Spec,
    new: &Spec,
    id: &LogicalId,
    replace: &mut Vec<String>,
) -> Vec<String> {
    let (Spec::Instance(o), Spec::Instance(n)) = (old, new) else {
        return Vec::new();
    };
    if !n.is_cluster_node() {
        return Vec::new();
    }
    let mut notes = Vec::new();
    if n.root_volume_gb > o.root_volume_gb {
        notes.push(format!(
            "note: the root volume grows in place to {} GiB (ModifyVolume, no restart); its \
             filesystem follows at the next boot (cloud-init growpart/resizefs), or at once \
             on {id}: `sudo growpart /dev/nvme0n1 1 && sudo resize2fs /dev/nvme0n1p1` \
             (xfs: `sudo xfs_growfs /`)",
            n.root_volume_gb
        ));
    }
    if o.user_data_sha256 != n.user_data_sha256 {
        replace.retain(|r| !r.starts_with("user-data changed"));
        notes.push(format!(
            "note: user-data changed (registry address or port, registry CA, registries.yaml \
             or install settings), but cloud-init ran it once at first boot: {id} keeps the \
             old files. Bring them up to date in place: `provision artifacts`, copy \
             registries.yaml and registry-ca.crt to /etc/rancher/<k3s|rke2>/ on {id} (`scp \
             -F ssh_config`, or `aws ssm send-command` in ssm mode) and restart the service; \
             or replace the node with `provision apply --replace {id} --allow-data-loss` \
             (its disks are lost)"
        ));
    }
    if o.key_pair != n.key_pair {
        replace.retain(|r| !r.starts_with("key_pair"));
        notes.push(format!(
            "note: the key pair changed, but EC2 sets it only at launch: {id} keeps its old \
             authorized key. Add the new public key to ~/.ssh/authorized_keys on {id} \
             through the access you have (`ssh-copy-id -F ssh_config -i <key> {id}`, or \
             Session Manager), or replace the node with `provision apply --replace {id} \
             --allow-data-loss`"
        ));
    }
    notes
}

/// What makes two preflight checks the same check.
fn check_key(spec: &Spec) -> Option<String> {
    match spec {
        Spec::DnsRecord(r) => Some(format!("zone {:?}", r.zone)),
        Spec::Instance(i) => Some(format!(
            "ami {} type {} in {}",
            i.ami, i.instance_type, i.subnet
        )),
        Spec::Database(d) => Some(format!("engine {}", d.engine_version)),
        _ => None,
    }
}

/// The cloud's preflight checks of `ids`, all at once; the first failure (in `ids` order).
async fn preflight_all(
    cloud: &dyn Cloud,
    env: &str,
    owner: &Owner,
    desired: &Desired,
    ids: &[&LogicalId],
    resolved: &Resolved,
) -> Result<(), PlanError> {
    let no_delete = DeleteOptions::default();
    let checks = ids.iter().map(|id| {
        let spec = &desired.resources[*id];
        let no_delete = &no_delete;
        async move {
            let token = String::new();
            let c = OpContext::quiet(env, owner, id, &token, resolved, no_delete);
            match retry_transient(|| cloud.preflight(&c, spec)).await {
                Ok(()) | Err(CloudError::MissingRef(_)) => Ok(()),
                Err(source) => Err(PlanError::Cloud {
                    id: (*id).clone(),
                    kind: spec.kind(),
                    source,
                }),
            }
        }
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

/// Between [`Survey::begin`] and its drop the cloud may answer reads from bulk reads.
struct Survey<'a>(&'a dyn Cloud);

impl<'a> Survey<'a> {
    fn begin(cloud: &'a dyn Cloud, env: &str) -> Self {
        cloud.begin_survey(env);
        Self(cloud)
    }
}

impl Drop for Survey<'_> {
    fn drop(&mut self) {
        self.0.end_survey();
    }
}

/// Retries of one planning read after a transient error, on top of the SDK's own.
const READ_RETRIES: u32 = 4;

/// Run a read, trying again a few times (50 ms, 100 ms, ...) while the cloud throttles, so
/// one unlucky describe call does not abort a whole plan.
async fn retry_transient<T, F, Fut>(mut op: F) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < READ_RETRIES => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
            }
            other => return other,
        }
    }
}

/// What changed outside the tool on a resource whose config also changed: the live
/// resource read against the spec last applied (from the state), as drift an update repairs
/// and differences only a replacement does. Should that read fail, the lines read against
/// the config are kept, less those that only repeat a config change.
#[allow(clippy::too_many_arguments)]
async fn drift_from_applied(
    cloud: &dyn Cloud,
    env: &str,
    owner: &Owner,
    id: &LogicalId,
    entry: &crate::state::Entry,
    resolved: &Resolved,
    observed: &Observed,
    config_changes: &[&String],
) -> (Vec<String>, Vec<String>) {
    let no_delete = DeleteOptions::default();
    let c = OpContext::quiet(env, owner, id, &entry.token, resolved, &no_delete);
    match retry_transient(|| cloud.read(&c, &entry.spec, &entry.cloud_id)).await {
        Ok(Some(applied)) => (applied.drift, applied.fixed),
        _ => {
            let not_config = |lines: &[String]| {
                lines
                    .iter()
                    .filter(|d| !config_changes.iter().any(|c| c.starts_with(d.as_str())))
                    .cloned()
                    .collect()
            };
            (not_config(&observed.drift), not_config(&observed.fixed))
        }
    }
}

fn new_action(id: &LogicalId, kind: Kind, action: ActionKind, reasons: Vec<String>) -> Action {
    Action {
        record_only: false,
        claim: false,
        id: id.clone(),
        kind,
        action,
        reasons,
        current: None,
        update_after_adopt: false,
        orphan: false,
        data_loss: None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn adopt_action(
    cloud: &dyn Cloud,
    env: &str,
    owner: &Owner,
    id: &LogicalId,
    spec: &Spec,
    found: Observed,
    resolved: &mut Resolved,
    why: &str,
) -> Result<Action, PlanError> {
    // Read it to learn how it differs from the spec.
    let no_delete = DeleteOptions::default();
    let token = String::new();
    let live = {
        let c = OpContext::quiet(env, owner, id, &token, resolved, &no_delete);
        retry_transient(|| cloud.read(&c, spec, &found.cloud_id))
            .await
            .map_err(|source| PlanError::Cloud {
                id: id.clone(),
                kind: spec.kind(),
                source,
            })?
            .unwrap_or(found)
    };
    resolved.entries.insert(id.clone(), live.clone());
    let mut a = new_action(
        id,
        spec.kind(),
        ActionKind::Adopt,
        vec![format!("{why} ({})", live.cloud_id)],
    );
    if !live.fixed.is_empty() {
        // Found, but made with what the cloud cannot change and the spec does not want:
        // replaced (the found one deleted, a new one made), never adopted as it is.
        a.action = ActionKind::Replace;
        a.reasons.extend(
            live.fixed
                .iter()
                .map(|d| format!("drift: {d} (only a replacement changes it)")),
        );
        a.reasons
            .extend(live.drift.iter().map(|d| format!("drift: {d}")));
        a.current = Some(live);
        return Ok(a);
    }
    if !live.drift.is_empty() {
        a.update_after_adopt = true;
        a.reasons
            .extend(live.drift.iter().map(|d| format!("drift: {d}")));
    }
    // A part that names what does not exist yet (a group's rules naming a group not made
    // yet) cannot be there; the adopt step, which waits for those, adds it.
    let unmade: Vec<String> = super::late::late_refs(spec)
        .into_iter()
        .filter(|r| resolved.get(r).is_none())
        .map(|r| format!("`{r}`"))
        .collect();
    if !unmade.is_empty() {
        a.update_after_adopt = true;
        a.reasons.push(format!(
            "what names {} is added once that exists",
            unmade.join(", ")
        ));
    }
    a.current = Some(live);
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn inst(ami: &str, sgs: &[&str]) -> Spec {
        Spec::Instance(InstanceSpec {
            role: "node".into(),
            subnet: "subnet-1".into(),
            security_groups: sgs.iter().map(|s| LogicalId::new(*s)).collect(),
            ami: ami.into(),
            instance_type: "t3.large".into(),
            root_volume_gb: 50,
            volumes: vec![],
            after: vec![],
            public_ip: false,
            key_pair: None,
            instance_profile: None,
            user_data_sha256: "abc".into(),
            user_data: String::new(),
        })
    }

    #[test]
    fn unchanged_spec_has_no_changes() {
        let (r, u) = spec_changes(&inst("ami-1", &["sg"]), &inst("ami-1", &["sg"]));
        assert!(r.is_empty() && u.is_empty());
    }

    #[test]
    fn ami_change_forces_replace_and_names_field() {
        let (r, u) = spec_changes(&inst("ami-1", &["sg"]), &inst("ami-2", &["sg"]));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].contains("ami: ami-1 → ami-2"), "{r:?}");
        assert!(u.is_empty());
    }

    #[test]
    fn security_group_change_is_an_update() {
        let (r, u) = spec_changes(&inst("ami-1", &["sg"]), &inst("ami-1", &["sg", "sg2"]));
        assert!(r.is_empty());
        assert_eq!(u, vec!["security_groups: 1 added, 0 removed".to_string()]);
    }

    #[test]
    fn rule_changes_are_shown_as_the_rules_themselves() {
        use crate::model::{Peer, Protocol, Rule, SecurityGroupSpec};
        let rule = |port: u16, peer: Peer| Rule {
            protocol: Protocol::Tcp,
            from_port: port,
            to_port: port,
            peer,
            description: String::new(),
        };
        let group = |ingress: Vec<Rule>| {
            Spec::SecurityGroup(SecurityGroupSpec {
                vpc: "vpc".into(),
                description: "nodes".into(),
                ingress,
                egress: vec![Rule {
                    protocol: Protocol::All,
                    from_port: 0,
                    to_port: 0,
                    peer: Peer::Cidr("0.0.0.0/0".into()),
                    description: String::new(),
                }],
            })
        };
        let (r, u) = spec_changes(
            &group(vec![rule(22, Peer::Cidr("0.0.0.0/0".into()))]),
            &group(vec![
                rule(22, Peer::Cidr("203.0.113.0/24".into())),
                rule(6443, Peer::Group("sg-lb".into())),
            ]),
        );
        assert!(r.is_empty());
        assert_eq!(
            u,
            vec![
                "ingress: - tcp 22 from 0.0.0.0/0",
                "ingress: + tcp 22 from 203.0.113.0/24",
                "ingress: + tcp 6443 from sg-lb",
            ]
        );
    }

    fn db(version: &str, class: &str, user: &str) -> Spec {
        Spec::Database(DatabaseSpec {
            subnet_group: "db-subnets".into(),
            security_group: "sg-datastore".into(),
            engine: crate::model::DbEngine::Mysql,
            engine_version: version.into(),
            instance_class: class.into(),
            storage_gb: 20,
            database: "k3s".into(),
            username: user.into(),
            backup_retention_days: 7,
            password: None,
        })
    }

    #[test]
    fn database_rules() {
        let (r, u) = spec_changes(
            &db("8.0", "db.t3.medium", "admin"),
            &db("8.0", "db.t3.large", "admin"),
        );
        assert!(r.is_empty() && u.len() == 1, "{r:?} {u:?}");
        let (r, u) = spec_changes(
            &db("5.7", "db.t3.medium", "admin"),
            &db("8.0", "db.t3.medium", "admin"),
        );
        assert!(
            r.is_empty() && u.len() == 1,
            "upgrade in place: {r:?} {u:?}"
        );
        let (r, _) = spec_changes(
            &db("8.0", "db.t3.medium", "admin"),
            &db("5.7", "db.t3.medium", "admin"),
        );
        assert!(r[0].contains("downgrade"), "{r:?}");
        let (r, _) = spec_changes(
            &db("8.0", "db.t3.medium", "admin"),
            &db("8.0", "db.t3.medium", "root"),
        );
        assert!(r[0].contains("username"), "{r:?}");
    }

    fn db_with_storage(storage_gb: u32) -> Spec {
        let Spec::Database(mut spec) = db("8.0", "db.t3.medium", "admin") else {
            unreachable!()
        };
        spec.storage_gb = storage_gb;
        Spec::Database(spec)
    }

    #[test]
    fn a_type_change_of_the_bastion_says_its_public_ip_changes() {
        let host = |instance_type: &str, public_ip: bool| {
            let Spec::Instance(mut i) = inst("ami-1", &[]) else {
                unreachable!()
            };
            i.instance_type = instance_type.into();
            i.public_ip = public_ip;
            Spec::Instance(i)
        };
        let note =
            public_ip_moves(&host("t3.small", true), &host("t3.medium", true)).expect("a note");
        assert!(
            note.contains("public IP changes") && note.contains("provision artifacts"),
            "{note}"
        );
        // A private node keeps its address; no type change, nothing to say.
        assert_eq!(
            public_ip_moves(&host("t3.small", false), &host("t3.medium", false)),
            None
        );
        assert_eq!(
            public_ip_moves(&host("t3.small", true), &host("t3.small", true)),
            None
        );
    }

    #[test]
    fn a_volume_resized_less_than_six_hours_ago_cannot_change_until_then() {
        let volume = |size_gb| {
            Spec::Volume(crate::model::VolumeSpec {
                subnet: "subnet-edge".into(),
                size_gb,
            })
        };
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let last = Some("2026-12-05T08:10:00Z");
        let message = volume_cooldown(&volume(300), &volume(400), last, at("2026-12-05T13:00:00Z"))
            .expect("refused within 6 hours");
        assert!(
            message.contains("resized at 2026-12-05 08:10 UTC")
                && message.contains("becomes possible at 2026-12-05 14:10 UTC")
                && message.contains("keep the size at 300 GiB"),
            "{message}"
        );
        // From then on, or never resized, or no size change: nothing to refuse.
        assert_eq!(
            volume_cooldown(&volume(300), &volume(400), last, at("2026-12-05T14:10:00Z")),
            None
        );
        assert_eq!(
            volume_cooldown(&volume(300), &volume(400), None, at("2026-12-05T09:00:00Z")),
            None
        );
        assert_eq!(
            volume_cooldown(&volume(300), &volume(300), last, at("2026-12-05T09:00:00Z")),
            None
        );
    }

    #[test]
    fn rds_storage_only_grows_and_by_at_least_ten_percent() {
        let refused = |from, to| refused_change(&db_with_storage(from), &db_with_storage(to));
        for (from, to) in [(20, 20), (20, 22), (20, 100), (100, 110), (1000, 1100)] {
            assert_eq!(refused(from, to), None, "{from} -> {to}");
        }
        let small = refused(20, 21).expect("a 5% increase is refused");
        assert_eq!(
            small,
            "datastore.storage_gb 20 GB → 21 GB is an increase of 5.0%; RDS grows storage only \
             by at least 10% at a time: set storage_gb to 22 or more, or keep it at 20"
        );
        let just_under = refused(100, 109).expect("9% is refused");
        assert!(just_under.contains("110 or more"), "{just_under}");
        // The smallest allowed size rounds up.
        assert!(refused(25, 27).unwrap().contains("28 or more"));
        assert_eq!(refused(25, 28), None);
        let shrink = refused(100, 50).expect("a decrease is refused");
        assert!(
            shrink.contains("datastore.storage_gb 100 GB → 50 GB")
                && shrink.contains("never shrink")
                && shrink.contains("100 or more"),
            "{shrink}"
        );
        // Only the datastore's storage is concerned.
        assert_eq!(
            refused_change(&inst("ami-1", &[]), &inst("ami-2", &[])),
            None
        );
        let (mut old, mut new) = (db("8.0", "db.t3.medium", "admin"), db_with_storage(40));
        assert_eq!(refused_change(&old, &new), None);
        std::mem::swap(&mut old, &mut new);
        assert!(refused_change(&old, &new).is_some());
    }

    /// A datastore with what it needs, `storage_gb` of storage.
    fn datastore_graph(storage_gb: u32) -> Desired {
        let mut d = Desired::default();
        d.insert(
            "vpc",
            Spec::Vpc(VpcSpec {
                cidr: "10.42.0.0/16".into(),
            }),
        );
        for (id, cidr, zone_index) in [
            ("subnet-a", "10.42.1.0/24", 0),
            ("subnet-b", "10.42.2.0/24", 1),
        ] {
            d.insert(
                id,
                Spec::Subnet(SubnetSpec {
                    vpc: "vpc".into(),
                    cidr: cidr.into(),
                    zone_index,
                    map_public_ip: false,
                    instance_types: vec![],
                }),
            );
        }
        d.insert(
            "sg-datastore",
            Spec::SecurityGroup(SecurityGroupSpec {
                vpc: "vpc".into(),
                description: "datastore".into(),
                ingress: vec![],
                egress: vec![],
            }),
        );
        d.insert(
            "db-subnets",
            Spec::DbSubnetGroup(DbSubnetGroupSpec {
                subnets: vec!["subnet-a".into(), "subnet-b".into()],
            }),
        );
        d.insert("datastore", db_with_storage(storage_gb));
        d
    }

    #[tokio::test]
    async fn a_storage_change_rds_refuses_fails_the_plan_before_any_change() {
        use crate::cloud::fake::{FakeCloud, FakeConfig};
        use crate::engine::executor::{execute, Cancel, Settings};
        use crate::engine::reporter::Recording;
        use crate::state::Paths;

        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let fake = FakeCloud::new(FakeConfig::default());
        let mut state = State::new("lab");
        let plan_for = |desired: &Desired, state: &State| {
            let (fake, desired, state) = (fake.clone(), desired.clone(), state.clone());
            async move {
                make_plan(
                    &fake,
                    PlanInput {
                        env: "lab",
                        desired: &desired,
                        state: &state,
                        destroy: false,
                        replace: &[],
                    },
                )
                .await
            }
        };
        let built = datastore_graph(100);
        let plan = plan_for(&built, &state).await.expect("first plan");
        execute(
            std::sync::Arc::new(fake.clone()),
            &plan,
            &built,
            &mut state,
            &crate::state::LocalBackend::new(paths.clone(), "lab"),
            &Settings::default(),
            std::sync::Arc::new(Recording::default()),
            &Cancel::new(),
        )
        .await
        .expect("apply");
        assert_eq!(state.resources.len(), 6);

        fake.clear_calls();
        for (storage_gb, rule) in [(105, "at least 10%"), (50, "never shrink")] {
            let error = plan_for(&datastore_graph(storage_gb), &state)
                .await
                .expect_err("RDS would refuse this change");
            let text = error.to_string();
            assert!(
                matches!(&error, PlanError::Refused { id, .. } if id.as_str() == "datastore"),
                "{text}"
            );
            assert!(
                text.contains(&format!("datastore.storage_gb 100 GB → {storage_gb} GB"))
                    && text.contains(rule),
                "{text}"
            );
        }
        assert!(
            fake.mutating_calls().is_empty(),
            "{:?}",
            fake.mutating_calls()
        );

        // 10% is enough: an update in place.
        let plan = plan_for(&datastore_graph(110), &state).await.expect("plan");
        let action = plan.get(&LogicalId::new("datastore")).unwrap();
        assert_eq!(action.action, ActionKind::Update, "{action:?}");
        // A change that replaces the datastore anyway starts afresh at any size.
        let mut replaced = datastore_graph(50);
        let Some(Spec::Database(spec)) = replaced.resources.get_mut(&LogicalId::new("datastore"))
        else {
            unreachable!()
        };
        spec.username = "root".into();
        let plan = plan_for(&replaced, &state).await.expect("plan");
        let action = plan.get(&LogicalId::new("datastore")).unwrap();
        assert_eq!(action.action, ActionKind::Replace, "{action:?}");
    }

    #[test]
    fn desired_order_rejects_unknown_refs() {
        let mut d = Desired::default();
        d.insert("node-1", inst("ami-1", &["sg"]));
        assert!(matches!(d.order(), Err(PlanError::UnknownRef { .. })));
    }
}
