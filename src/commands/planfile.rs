//! Plan files written by `plan --out` and read by `apply PLANFILE`.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::engine::{self, Desired, Plan};
use crate::state::State;

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct PlanFile {
    pub(super) format: String,
    pub(super) plan: Plan,
}

pub(super) const PLAN_FORMAT: &str = "provision-plan/1";

/// Read a plan file written by `plan --out`: JSON of the expected format.
pub(super) fn load_plan_file(file: &Path) -> Result<Plan> {
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
pub(super) fn check_plan_fits(
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cloud::fake::FakeCloud;
    use crate::engine::PlanInput;
    use crate::model::LogicalId;
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
                replace: &[],
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
