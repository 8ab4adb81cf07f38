//! Whose resources are these? Every resource carries the lineage of the state that made it
//! (`provision:lineage`). Tags find what an interrupted run or a lost state left behind,
//! but two folders with the same `name` tag their resources with the same env: the lineage
//! tells them apart.
//!
//! * A state with history (saved at least once) owns exactly what carries its lineage.
//!   Anything tagged for the env with **another** lineage belongs to another environment:
//!   the plan is refused before any change, naming that environment.
//! * A fresh state (no file, or nothing recorded yet) owns nothing. What it finds by tags is
//!   shown by `plan`, and `apply --adopt` takes it over: the state then continues the found
//!   lineage. Resources of two lineages at once are refused: there is no one to continue.
//! * Resources tagged for the env with no lineage at all were made before lineage tags
//!   existed. The ones the state records are its own; the others are left alone (never
//!   deleted as leftovers), and with a fresh state they are taken over only by `--adopt`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cloud::Owned;
use crate::model::{Kind, LogicalId, Owner};
use crate::state::State;

/// A fresh state found resources tagged for its env: `apply --adopt` takes them over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    /// The lineage they carry (`None`: made before lineage tags existed).
    pub lineage: Option<String>,
    /// Where and when that lineage began, from their `provision:origin` tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// How many resources were found.
    pub resources: usize,
}

impl Takeover {
    /// One line for the plan and for apply's refusal.
    pub fn describe(&self, env: &str) -> String {
        let whose = match (&self.lineage, &self.origin) {
            (Some(l), Some(o)) => format!("lineage {l}, begun on {}", describe_origin(o)),
            (Some(l), None) => format!("lineage {l}"),
            (None, _) => "no lineage tag: made before lineage tags existed".to_string(),
        };
        format!(
            "this folder has no state for env `{env}`, but {} resource(s) tagged \
             provision:env={env} exist ({whose})",
            self.resources
        )
    }
}

/// Another environment of the same name, as its tags describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub lineage: String,
    pub origin: Option<String>,
    /// `(kind, logical id, cloud id)` of each of its resources.
    pub resources: Vec<(Kind, LogicalId, String)>,
}

/// Resources of another environment with this env's name were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Foreign {
    pub env: String,
    /// This state's lineage (`None`: a fresh state).
    pub ours: Option<String>,
    pub neighbours: Vec<Neighbour>,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env = &self.env;
        match &self.ours {
            Some(ours) => write!(
                f,
                "the cloud holds resources tagged provision:env={env} that belong to another \
                 environment named `{env}`, not to this folder's state (lineage {ours}):"
            )?,
            None => write!(
                f,
                "the cloud holds resources of {} environments named `{env}`; this folder has \
                 no state to tell which one it is:",
                self.neighbours.len()
            )?,
        }
        for n in &self.neighbours {
            let origin = n
                .origin
                .as_deref()
                .map(|o| format!(", begun on {}", describe_origin(o)))
                .unwrap_or_default();
            let sample: Vec<String> = n
                .resources
                .iter()
                .take(6)
                .map(|(_, id, cloud_id)| format!("{id} ({cloud_id})"))
                .collect();
            let more = n.resources.len().saturating_sub(sample.len());
            write!(
                f,
                "\n  - lineage {}{origin}: {} resource(s): {}{}",
                n.lineage,
                n.resources.len(),
                sample.join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            )?;
        }
        write!(
            f,
            "\nprovision never adopts, changes or deletes another environment's resources; \
             nothing was changed. Ways out:\
             \n  - give this environment its own `name` in the config (names prefix every \
             cloud name and tag);\
             \n  - if that environment is yours and its state is in S3, set its [state] \
             bucket and key here and run `provision state pull`;\
             \n  - or run provision from the folder that holds its state file."
        )
    }
}

/// `"ws-9 2026-12-05T08:00Z"` → `"host ws-9 at 2026-12-05T08:00Z"`.
fn describe_origin(origin: &str) -> String {
    match origin.split_once(' ') {
        Some((host, at)) => format!("host {host} at {at}"),
        None => origin.to_string(),
    }
}

/// What the tags say about the env's resources, for one plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The owner this run works as: the state's, or for a fresh state that found one
    /// lineage, that lineage (what `--adopt` continues).
    pub owner: Owner,
    /// A fresh state found resources: they are taken over only with `--adopt`.
    pub takeover: Option<Takeover>,
    /// Cloud ids tagged for the env without a lineage that the state does not record:
    /// left alone, never deleted as leftovers of a crash.
    pub unclaimed: Vec<(Kind, LogicalId, String)>,
}

/// Sort the resources tagged for `state.env` by lineage; refuse another environment's.
pub fn assess(state: &State, owned: &[Owned]) -> Result<Assessment, Foreign> {
    let known = |o: &Owned| {
        state
            .resources
            .values()
            .any(|e| e.kind == o.kind && e.cloud_id == o.cloud_id)
    };
    let mut lineages: BTreeMap<&str, Neighbour> = BTreeMap::new();
    let mut untagged = Vec::new();
    for o in owned {
        match o.owner.lineage.as_deref() {
            Some(l) => {
                let n = lineages.entry(l).or_insert_with(|| Neighbour {
                    lineage: l.to_string(),
                    origin: None,
                    resources: Vec::new(),
                });
                if n.origin.is_none() {
                    n.origin = o.owner.origin.clone();
                }
                n.resources.push((o.kind, o.id.clone(), o.cloud_id.clone()));
            }
            None => untagged.push(o),
        }
    }
    if !state.is_fresh() {
        lineages.remove(state.lineage.as_str());
        if !lineages.is_empty() {
            return Err(Foreign {
                env: state.env.clone(),
                ours: Some(state.lineage.clone()),
                neighbours: lineages.into_values().collect(),
            });
        }
        return Ok(Assessment {
            owner: state.owner(),
            takeover: None,
            unclaimed: untagged
                .into_iter()
                .filter(|o| !known(o))
                .map(|o| (o.kind, o.id.clone(), o.cloud_id.clone()))
                .collect(),
        });
    }
    if lineages.len() > 1 {
        return Err(Foreign {
            env: state.env.clone(),
            ours: None,
            neighbours: lineages.into_values().collect(),
        });
    }
    let found = lineages.into_values().next();
    let takeover = (!owned.is_empty()).then(|| Takeover {
        lineage: found.as_ref().map(|n| n.lineage.clone()),
        origin: found.as_ref().and_then(|n| n.origin.clone()),
        resources: owned.len(),
    });
    let owner = match &found {
        Some(n) => Owner {
            lineage: n.lineage.clone(),
            origin: n.origin.clone().unwrap_or_default(),
        },
        None => state.owner(),
    };
    Ok(Assessment {
        owner,
        takeover,
        unclaimed: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attrs, FoundOwner};

    fn owned(id: &str, cloud_id: &str, lineage: Option<&str>) -> Owned {
        Owned {
            kind: Kind::Vpc,
            id: LogicalId::new(id),
            cloud_id: cloud_id.into(),
            attrs: Attrs::None,
            owner: FoundOwner {
                lineage: lineage.map(str::to_string),
                origin: lineage.map(|_| "ws-9 2026-12-01T10:00Z".to_string()),
            },
        }
    }

    fn saved_state() -> State {
        let mut s = State::new("lab");
        s.lineage = "mine".into();
        s.serial = 3;
        s
    }

    #[test]
    fn another_lineage_is_refused_naming_it_where_and_when_it_began() {
        let err = assess(
            &saved_state(),
            &[
                owned("vpc", "vpc-1", Some("mine")),
                owned("vpc", "vpc-2", Some("theirs")),
                owned("datastore", "lab-datastore", Some("theirs")),
            ],
        )
        .unwrap_err();
        assert_eq!(err.neighbours.len(), 1);
        assert_eq!(err.neighbours[0].resources.len(), 2);
        let text = err.to_string();
        for want in [
            "lineage theirs",
            "host ws-9 at 2026-12-01T10:00Z",
            "2 resource(s)",
            "datastore (lab-datastore)",
            "this folder's state (lineage mine)",
            "`name`",
            "state pull",
        ] {
            assert!(text.contains(want), "{want:?} missing from: {text}");
        }
        assert!(!text.contains("vpc-1"), "our own resources are not listed");
    }

    #[test]
    fn a_saved_state_owns_its_lineage_and_leaves_untagged_strays_alone() {
        let mut state = saved_state();
        state.resources.insert(
            LogicalId::new("vpc"),
            crate::state::Entry {
                kind: Kind::Vpc,
                status: crate::state::Status::Created,
                cloud_id: "vpc-old".into(),
                token: String::new(),
                token_spent: false,
                spec: crate::model::Spec::Vpc(crate::model::VpcSpec {
                    cidr: "10.42.0.0/16".into(),
                }),
                attrs: Attrs::None,
                depends_on: Vec::new(),
                updated_at: String::new(),
            },
        );
        let a = assess(
            &state,
            &[
                owned("vpc", "vpc-old", None),
                owned("subnet-edge", "subnet-9", None),
                owned("igw", "igw-1", Some("mine")),
            ],
        )
        .unwrap();
        assert_eq!(a.owner.lineage, "mine");
        assert_eq!(a.takeover, None);
        assert_eq!(
            a.unclaimed,
            vec![(Kind::Vpc, LogicalId::new("subnet-edge"), "subnet-9".into())],
            "the recorded vpc is ours; the untagged unknown one is left alone"
        );
    }

    #[test]
    fn a_fresh_state_continues_the_one_lineage_it_finds_only_as_a_takeover() {
        let fresh = State::new("lab");
        let a = assess(&fresh, &[]).unwrap();
        assert_eq!(a.takeover, None);
        assert_eq!(a.owner.lineage, fresh.lineage);

        let a = assess(
            &fresh,
            &[
                owned("vpc", "vpc-2", Some("theirs")),
                owned("igw", "igw-2", Some("theirs")),
            ],
        )
        .unwrap();
        let t = a.takeover.expect("a takeover");
        assert_eq!(t.lineage.as_deref(), Some("theirs"));
        assert_eq!(t.resources, 2);
        assert_eq!(a.owner.lineage, "theirs");
        assert!(t.describe("lab").contains("2 resource(s)"));

        let legacy = assess(&fresh, &[owned("vpc", "vpc-3", None)]).unwrap();
        assert_eq!(legacy.takeover.unwrap().lineage, None);
        assert_eq!(legacy.owner.lineage, fresh.lineage);
    }

    #[test]
    fn a_fresh_state_facing_two_lineages_is_refused() {
        let err = assess(
            &State::new("lab"),
            &[
                owned("vpc", "vpc-2", Some("a")),
                owned("vpc", "vpc-3", Some("b")),
            ],
        )
        .unwrap_err();
        assert_eq!(err.neighbours.len(), 2);
        assert!(err.to_string().contains("2 environments named `lab`"));
    }
}
