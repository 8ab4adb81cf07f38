//! Machine-readable documents (`plan --json`, `show --json`, `output --json`) and the
//! event stream of `apply --json` / `destroy --json`. Field names are a contract:
//! documented in `docs/json.md`, versioned by `format_version`, snapshot-tested. Add
//! fields freely; renaming or removing one bumps the major version.

use serde_json::{json, Map, Value};

use super::plan::{attrs_json, group, sort_reasons};
use crate::engine::{Desired, Plan};
use crate::state::{State, Status};

/// The version of every JSON document and event this build writes.
pub const FORMAT_VERSION: &str = "1.0";

/// The spec of a resource as JSON, without the kind tag (it is the action's `kind`).
fn spec_json(spec: &crate::model::Spec) -> Option<Value> {
    let mut value = serde_json::to_value(spec).ok()?;
    value.as_object_mut()?.remove("kind");
    Some(value)
}

fn kind_name(kind: crate::model::Kind) -> Value {
    serde_json::to_value(kind).unwrap_or(Value::Null)
}

/// `plan --json`.
pub fn plan_document(plan: &Plan, desired: &Desired) -> Value {
    let actions: Vec<Value> = plan
        .actions
        .iter()
        .filter(|a| a.action.is_change())
        .map(|a| {
            let reasons = sort_reasons(a);
            let mut o = Map::new();
            o.insert("id".into(), json!(a.id));
            o.insert("kind".into(), kind_name(a.kind));
            o.insert("group".into(), json!(group(a.kind).1));
            o.insert("action".into(), json!(a.action));
            if let Some(current) = &a.current {
                o.insert("cloud_id".into(), json!(current.cloud_id));
                if let Some(attrs) = attrs_json(&current.attrs) {
                    o.insert("attrs".into(), attrs);
                }
            }
            // A delete (of a plan or a destroy) has nothing desired to show.
            if a.action != crate::engine::ActionKind::Delete {
                if let Some(spec) = desired.resources.get(&a.id).and_then(spec_json) {
                    o.insert("config".into(), spec);
                }
            }
            o.insert("changes".into(), json!(reasons.changes));
            o.insert("drift".into(), json!(reasons.drift));
            o.insert("notes".into(), json!(reasons.notes));
            o.insert("data_loss".into(), json!(a.data_loss));
            // Only recorded in the state (no call): the change reaches the resource only
            // through a replacement the operator did not ask for.
            o.insert("record_only".into(), json!(a.record_only));
            // Tagged with the state's lineage (made before lineage tags).
            o.insert("claim".into(), json!(a.claim));
            Value::Object(o)
        })
        .collect();
    let count = |k| plan.count(k);
    use crate::engine::ActionKind::*;
    json!({
        "format_version": FORMAT_VERSION,
        "env": plan.env,
        "destroy": plan.destroy,
        "state": {"lineage": plan.lineage, "serial": plan.serial},
        "takeover": plan.takeover,
        "left_alone": plan.left_alone,
        "summary": {
            "create": count(Create),
            "update": count(Update),
            "replace": count(Replace),
            "delete": count(Delete),
            "adopt": count(Adopt),
            "forget": count(Forget),
            "data_loss": plan.data_losses().count(),
        },
        "actions": actions,
    })
}

/// `state list --json`: one row per resource of the state at `location`.
pub fn state_list_document(state: &State, location: &str) -> Value {
    let rows: Vec<Value> = state
        .resources
        .iter()
        .map(|(id, e)| {
            json!({
                "id": id.as_str(),
                "kind": kind_name(e.kind),
                "status": match e.status {
                    Status::Created => "created",
                    Status::Creating => "creating",
                },
                "cloud_id": e.cloud_id,
            })
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "env": state.env,
        "lineage": state.lineage,
        "serial": state.serial,
        "location": location,
        "resources": rows,
    })
}

/// `show --json`: the state, without specs' internals beyond what the kind carries.
pub fn show_document(env: &str, state: Option<&State>) -> Value {
    let Some(state) = state else {
        return json!({
            "format_version": FORMAT_VERSION,
            "env": env,
            "state": null,
            "resources": [],
        });
    };
    let resources: Vec<Value> = state
        .resources
        .iter()
        .map(|(id, e)| {
            let mut o = Map::new();
            o.insert("id".into(), json!(id));
            o.insert("kind".into(), kind_name(e.kind));
            o.insert("group".into(), json!(group(e.kind).1));
            o.insert(
                "status".into(),
                json!(match e.status {
                    Status::Created => "created",
                    Status::Creating => "creating",
                }),
            );
            o.insert("cloud_id".into(), json!(e.cloud_id));
            if let Some(attrs) = attrs_json(&e.attrs) {
                o.insert("attrs".into(), attrs);
            }
            o.insert("depends_on".into(), json!(e.depends_on));
            o.insert("updated_at".into(), json!(e.updated_at));
            Value::Object(o)
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "env": state.env,
        "state": {
            "lineage": state.lineage,
            "serial": state.serial,
            "format_version": state.format_version,
        },
        "resources": resources,
    })
}

/// `output --json`: every output by name, plus `format_version`.
pub fn output_document(outputs: &std::collections::BTreeMap<String, Value>) -> Value {
    let mut o = Map::new();
    o.insert("format_version".into(), json!(FORMAT_VERSION));
    for (k, v) in outputs {
        o.insert(k.clone(), v.clone());
    }
    Value::Object(o)
}

/// `validate --json`: whether the config is valid, what it describes, its warnings, and
/// each problem with its place (line 0: the whole file).
pub fn validate_document(
    path: &std::path::Path,
    loaded: &Result<crate::config::Config, crate::config::ConfigError>,
) -> Value {
    match loaded {
        Ok(cfg) => json!({
            "format_version": FORMAT_VERSION,
            "config": path.display().to_string(),
            "valid": true,
            "env": cfg.name,
            "topology": cfg.topology.as_str(),
            "nodes": cfg.nodes.count,
            "region": cfg.region,
            "hostname": cfg.hostname,
            "warnings": cfg.warnings,
            "problems": [],
        }),
        Err(e) => json!({
            "format_version": FORMAT_VERSION,
            "config": path.display().to_string(),
            "valid": false,
            "warnings": [],
            "problems": e.problems().iter().map(|p| json!({
                "line": p.line,
                "column": p.column,
                "key": p.key,
                "message": p.message,
            })).collect::<Vec<_>>(),
        }),
    }
}

/// `verify --json`: every check with its status, and whether all hold.
pub fn verify_document(env: &str, checks: &[crate::verify::Check], deep: Option<&str>) -> Value {
    use crate::verify::Outcome;
    let count = |o: Outcome| checks.iter().filter(|c| c.outcome == o).count();
    json!({
        "format_version": FORMAT_VERSION,
        "env": env,
        "ok": checks.iter().all(|c| c.ok()),
        "summary": {
            "pass": count(Outcome::Pass),
            "fail": count(Outcome::Fail),
            "note": count(Outcome::Note),
        },
        "deep": deep.map(|message| json!({"ran": false, "message": message})),
        "checks": checks
            .iter()
            .map(|c| json!({
                "name": c.name,
                "resource": c.resource,
                "status": c.outcome,
                "reason": c.reason,
            }))
            .collect::<Vec<_>>(),
    })
}
