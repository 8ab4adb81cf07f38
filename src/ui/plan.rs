//! The human rendering of a plan: grouped in dependency order (network → security →
//! compute → datastore → front door → DNS), one block per resource, config changes told
//! apart from drift, data loss standing out, and a summary line.

use crate::engine::{Action, ActionKind, Desired, Plan};
use crate::model::{Attrs, Kind, Peer, Protocol, RecordTarget, Rule, Scheme, Spec, ZoneRef};

use super::style::Style;

/// How to render a plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanView {
    /// One line per resource.
    pub compact: bool,
    pub style: Style,
}

/// The group a kind of resource is shown in, in dependency order.
pub fn group(kind: Kind) -> (usize, &'static str) {
    match kind {
        Kind::Vpc | Kind::InternetGateway | Kind::Subnet | Kind::RouteTable | Kind::VpcEndpoint => {
            (0, "network")
        }
        Kind::SecurityGroup
        | Kind::KeyPair
        | Kind::Secret
        | Kind::IamRole
        | Kind::InstanceProfile => (1, "security"),
        Kind::Instance | Kind::Volume => (2, "compute"),
        Kind::DbSubnetGroup | Kind::Database => (3, "datastore"),
        Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => (4, "front door"),
        Kind::HostedZone | Kind::DnsRecord => (5, "DNS"),
    }
}

pub const GROUPS: [&str; 6] = [
    "network",
    "security",
    "compute",
    "datastore",
    "front door",
    "DNS",
];

/// How an action reads in a plan: `+ create`, `~ update in place`, ...
pub fn action_label(action: ActionKind) -> (&'static str, &'static str) {
    match action {
        ActionKind::NoOp => (" ", "unchanged"),
        ActionKind::Create => ("+", "create"),
        ActionKind::Adopt => ("=", "adopt"),
        ActionKind::Update => ("~", "update in place"),
        ActionKind::Replace => ("-/+", "replace"),
        ActionKind::Delete => ("-", "delete"),
        ActionKind::Forget => ("x", "forget (already gone)"),
    }
}

fn paint_symbol(style: Style, action: ActionKind, text: &str) -> String {
    match action {
        ActionKind::Create => style.green(text),
        ActionKind::Update | ActionKind::Adopt => style.yellow(text),
        ActionKind::Replace | ActionKind::Delete => style.red(text),
        _ => style.dim(text),
    }
}

/// The reasons of an action, sorted into what the config changes, what changed outside
/// the tool (drift) and why else the action happens.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reasons<'a> {
    pub changes: Vec<&'a str>,
    pub drift: Vec<&'a str>,
    pub notes: Vec<&'a str>,
}

/// A config change is `name: old → new` (or `name: N added, M removed`, `user-data
/// changed`); drift is reported as `drift: ...` by the planner.
pub fn sort_reasons(action: &Action) -> Reasons<'_> {
    let mut r = Reasons::default();
    for reason in &action.reasons {
        if let Some(d) = reason.strip_prefix("drift: ") {
            r.drift.push(d);
        } else if reason.contains(" → ")
            || reason.ends_with(" removed") && reason.contains(" added, ")
            || reason.starts_with("user-data changed")
        {
            r.changes.push(reason);
        } else {
            r.notes.push(reason);
        }
    }
    r
}

/// Typical time a create of this kind takes in AWS, for the slowest one in a plan.
pub fn typical_duration(kind: Kind) -> Option<(u8, &'static str)> {
    match kind {
        Kind::Database => Some((4, "RDS: typically 5–15 min")),
        Kind::LoadBalancer => Some((3, "NLB: typically 2–5 min")),
        Kind::Instance => Some((2, "EC2 instance: typically 1–3 min")),
        Kind::HostedZone | Kind::DnsRecord => Some((1, "Route53: typically under 1 min")),
        _ => None,
    }
}

/// The expected duration of the slowest create or replace in the plan.
pub fn slowest(plan: &Plan) -> Option<&'static str> {
    plan.changes()
        .filter(|a| matches!(a.action, ActionKind::Create | ActionKind::Replace))
        .filter_map(|a| typical_duration(a.kind))
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, text)| text)
}

/// What a plan reads without owning it: the existing DNS zone records go into and the
/// images instances boot from (both checked by `plan` before any change).
pub fn reads(desired: &Desired) -> Vec<(&'static str, String)> {
    let mut out = std::collections::BTreeSet::new();
    for spec in desired.resources.values() {
        match spec {
            Spec::DnsRecord(r) => {
                if let ZoneRef::Existing(zone) = &r.zone {
                    out.insert(("dns zone", zone.clone()));
                }
            }
            Spec::Instance(i) => {
                out.insert(("image", i.ami.clone()));
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}

/// Render a plan; `desired` supplies the attributes shown for creates.
pub fn render_plan(plan: &Plan, desired: &Desired, view: PlanView) -> String {
    let style = view.style;
    let mut out = String::new();
    let changes: Vec<&Action> = plan.changes().collect();
    if changes.is_empty() {
        out.push_str(if plan.destroy {
            "No changes. Nothing owned by this environment exists.\n"
        } else {
            "No changes. The infrastructure matches the config.\n"
        });
        out.push_str(&ownership_notes(plan, style));
        return out;
    }
    let mut order: Vec<usize> = (0..GROUPS.len()).collect();
    if plan.destroy {
        order.reverse();
    }
    let width = changes
        .iter()
        .map(|a| a.id.as_str().len())
        .max()
        .unwrap_or(10);
    // What the plan looked up but the environment does not own: `<= read`.
    let reads = if plan.destroy { vec![] } else { reads(desired) };
    if !reads.is_empty() {
        if !view.compact {
            out.push_str(&format!(
                "{}\n",
                style.bold("# read (not owned by this environment)")
            ));
        }
        for (what, name) in &reads {
            out.push_str(&format!(
                "  <= {:<width$}  read\n",
                format!("{what} {name}")
            ));
        }
        if !view.compact {
            out.push('\n');
        }
    }
    for g in order {
        let members: Vec<&&Action> = changes.iter().filter(|a| group(a.kind).0 == g).collect();
        if members.is_empty() {
            continue;
        }
        if !view.compact {
            out.push_str(&format!("{}\n", style.bold(&format!("# {}", GROUPS[g]))));
        }
        for a in members {
            if view.compact {
                out.push_str(&compact_line(a, width, style));
            } else {
                out.push_str(&block(a, desired.resources.get(&a.id), style));
            }
        }
        if !view.compact {
            out.push('\n');
        }
    }
    if view.compact {
        out.push('\n');
    }
    out.push_str(&style.bold(&summary(plan)));
    out.push('\n');
    if let Some(slow) = slowest(plan) {
        out.push_str(&format!("Slowest step: {slow}.\n"));
    }
    let drifted = plan
        .changes()
        .filter(|a| a.reasons.iter().any(|r| r.starts_with("drift: ")))
        .count();
    if drifted > 0 {
        out.push_str(&format!(
            "{drifted} resource(s) changed outside provision (drift); apply puts them back.\n"
        ));
    }
    let losses = plan.data_losses().count();
    if losses > 0 {
        out.push_str(&style.bold_red(&format!(
            "! {losses} action(s) destroy data; apply needs --allow-data-loss.",
        )));
        out.push('\n');
    }
    out.push_str(&ownership_notes(plan, style));
    out
}

/// A takeover a fresh state would make, and what is left alone: said after the plan,
/// whether or not it has changes.
fn ownership_notes(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if let Some(t) = &plan.takeover {
        let command = if plan.destroy { "destroy" } else { "apply" };
        out.push_str(&style.bold(&format!(
            "! {}.\n  `provision {command}` changes nothing unless `--adopt` takes them over \
             (a lost state file); if they are someone else's, choose another `name`.",
            t.describe(&plan.env)
        )));
        out.push('\n');
    }
    for line in &plan.left_alone {
        out.push_str(&format!("note: {line}\n"));
    }
    out
}

fn cloud_id(a: &Action) -> String {
    a.current
        .as_ref()
        .map(|c| c.cloud_id.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_default()
}

fn compact_line(a: &Action, width: usize, style: Style) -> String {
    let (symbol, verb) = action_label(a.action);
    let reasons = sort_reasons(a);
    let mut detail: Vec<String> = reasons.changes.iter().map(|c| c.to_string()).collect();
    detail.extend(reasons.drift.iter().map(|d| format!("drift: {d}")));
    if detail.is_empty() {
        detail.extend(reasons.notes.iter().map(|n| n.to_string()));
    }
    let id = cloud_id(a);
    let mut line = format!(
        "{} {:<width$}  {:<15} {}",
        paint_symbol(style, a.action, &format!("{symbol:>3}")),
        a.id.as_str(),
        a.kind.label(),
        verb,
    );
    if !id.is_empty() {
        line.push_str(&format!(" [{id}]"));
    }
    if !detail.is_empty() {
        line.push_str(&format!("  {}", style.dim(&detail.join("; "))));
    }
    if a.data_loss.is_some() {
        line.push_str(&format!("  {}", style.bold_red("! DATA LOSS")));
    }
    line.push('\n');
    line
}

fn block(a: &Action, spec: Option<&Spec>, style: Style) -> String {
    let (symbol, verb) = action_label(a.action);
    let id = cloud_id(a);
    let what = if id.is_empty() {
        a.kind.label().to_string()
    } else {
        format!("{} {id}", a.kind.label())
    };
    let mut out = format!(
        "  {} {} ({what}) {}\n",
        paint_symbol(style, a.action, symbol),
        style.bold(a.id.as_str()),
        paint_symbol(style, a.action, verb),
    );
    let indent = "      ";
    let reasons = sort_reasons(a);
    if a.action == ActionKind::Create {
        if let Some(spec) = spec {
            let attrs = create_attributes(spec);
            let w = attrs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in attrs {
                let v = if v == KNOWN_AFTER_APPLY {
                    style.dim(&v)
                } else {
                    v
                };
                out.push_str(&format!("{indent}{k:<w$}  {v}\n"));
            }
        }
    }
    for c in &reasons.changes {
        out.push_str(&format!("{indent}{c}\n"));
    }
    for d in &reasons.drift {
        out.push_str(&format!(
            "{indent}{} {d}\n",
            style.yellow("drift (changed outside provision):")
        ));
    }
    for n in &reasons.notes {
        out.push_str(&format!("{indent}{}\n", style.dim(&format!("# {n}"))));
    }
    if let Some(loss) = &a.data_loss {
        out.push_str(&format!(
            "{indent}{}\n",
            style.bold_red(&format!("! DATA LOSS: {loss}"))
        ));
    }
    out
}

pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// Rules grouped by peer: `tcp 80, 443 from 10.0.0.0/8; tcp 22 from sg-registry`.
fn ports(rules: &[Rule], direction: &str) -> String {
    let mut by_peer: Vec<(String, Vec<String>)> = Vec::new();
    for r in rules {
        let port = match r.protocol {
            Protocol::All => "all".to_string(),
            p => {
                let proto = if p == Protocol::Udp { "udp" } else { "tcp" };
                if r.from_port == r.to_port {
                    format!("{proto} {}", r.from_port)
                } else {
                    format!("{proto} {}-{}", r.from_port, r.to_port)
                }
            }
        };
        let peer = match &r.peer {
            Peer::Cidr(c) => c.clone(),
            Peer::Group(g) => g.to_string(),
            Peer::Itself => "itself".to_string(),
        };
        match by_peer.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, list)) if !list.contains(&port) => list.push(port),
            Some(_) => {}
            None => by_peer.push((peer, vec![port])),
        }
    }
    if by_peer.is_empty() {
        return "none".to_string();
    }
    by_peer
        .into_iter()
        .map(|(peer, list)| format!("{} {direction} {peer}", list.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The few attributes that matter when a resource is created, then what only the cloud
/// will tell.
pub fn create_attributes(spec: &Spec) -> Vec<(&'static str, String)> {
    let later = || KNOWN_AFTER_APPLY.to_string();
    match spec {
        Spec::Vpc(v) => vec![("cidr", v.cidr.clone()), ("id", later())],
        Spec::InternetGateway(g) => vec![("vpc", g.vpc.to_string()), ("id", later())],
        Spec::Subnet(s) => vec![
            ("cidr", s.cidr.clone()),
            ("public ips", yes_no(s.map_public_ip)),
            ("zone", later()),
        ],
        Spec::RouteTable(r) => vec![
            (
                "subnets",
                r.subnets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "route out",
                r.internet_gateway
                    .as_ref()
                    .map(|g| format!("0.0.0.0/0 → {g}"))
                    .unwrap_or_else(|| "none (air gap)".into()),
            ),
        ],
        Spec::SecurityGroup(g) => vec![
            ("ingress", ports(&g.ingress, "from")),
            ("egress", ports(&g.egress, "to")),
            ("id", later()),
        ],
        Spec::KeyPair(_) => vec![("id", later())],
        Spec::Instance(i) => vec![
            ("type", i.instance_type.clone()),
            ("ami", i.ami.clone()),
            ("subnet", i.subnet.to_string()),
            (
                "root volume",
                format!("{} GB gp3 encrypted", i.root_volume_gb),
            ),
            (
                "public ip",
                if i.public_ip { later() } else { "none".into() },
            ),
            ("private ip", later()),
        ]
        .into_iter()
        .chain(
            i.instance_profile
                .as_ref()
                .map(|p| ("instance profile", p.to_string())),
        )
        .collect(),
        Spec::VpcEndpoint(e) => vec![
            ("service", e.service_name.clone()),
            (
                "subnets",
                e.subnets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("private dns", yes_no(e.private_dns)),
            ("id", later()),
        ],
        Spec::IamRole(r) => vec![
            ("name", format!("{}{}", r.path, r.name)),
            ("trusts", r.trusted_service.clone()),
            ("policies", r.policies.join(", ")),
            ("arn", later()),
        ],
        Spec::InstanceProfile(p) => vec![
            ("name", format!("{}{}", p.path, p.name)),
            ("role", p.role.to_string()),
            ("arn", later()),
        ],
        Spec::Volume(v) => vec![
            ("size", format!("{} GB gp3 encrypted", v.size_gb)),
            ("id", later()),
        ],
        Spec::Secret(s) => vec![("description", s.description.clone()), ("arn", later())],
        Spec::DbSubnetGroup(g) => vec![(
            "subnets",
            g.subnets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        )],
        Spec::Database(d) => vec![
            ("engine version", d.engine_version.clone()),
            ("class", d.instance_class.clone()),
            ("storage", format!("{} GB gp3 encrypted", d.storage_gb)),
            ("database", d.database.clone()),
            ("backups", format!("{} day(s)", d.backup_retention_days)),
            ("endpoint", later()),
        ],
        Spec::LoadBalancer(l) => vec![
            (
                "scheme",
                match l.scheme {
                    Scheme::Internal => "internal".to_string(),
                    Scheme::InternetFacing => "internet-facing".to_string(),
                },
            ),
            ("cross-zone", yes_no(l.cross_zone)),
            ("dns name", later()),
        ],
        Spec::TargetGroup(t) => vec![
            ("port", format!("tcp {}", t.port)),
            (
                "health check",
                format!("tcp {}", t.health_check_port.unwrap_or(t.port)),
            ),
            (
                "targets",
                t.targets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ],
        Spec::Listener(l) => vec![
            ("port", format!("tcp {}", l.port)),
            ("forwards to", l.target_group.to_string()),
        ],
        Spec::HostedZone(z) => vec![
            ("name", z.name.clone()),
            ("vpc", z.vpc.to_string()),
            ("id", later()),
        ],
        Spec::DnsRecord(r) => vec![
            ("name", r.name.clone()),
            (
                "zone",
                match &r.zone {
                    ZoneRef::Existing(z) => z.clone(),
                    ZoneRef::Managed(z) => z.to_string(),
                },
            ),
            (
                "target",
                match &r.target {
                    RecordTarget::AliasLoadBalancer(lb) => format!("A alias → {lb}"),
                    RecordTarget::CnameLoadBalancer(lb) => format!("CNAME → {lb}"),
                    RecordTarget::InstancePrivateIp(i) => format!("A → {i} private ip"),
                },
            ),
        ],
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// `Plan: 12 to add, 1 to change, 0 to destroy.` A replace counts as one add and one
/// destroy; adoptions and forgets are named when there are any.
pub fn summary(plan: &Plan) -> String {
    let n = |k| plan.count(k);
    let replace = n(ActionKind::Replace);
    let mut text = format!(
        "Plan: {} to add, {} to change, {} to destroy",
        n(ActionKind::Create) + replace,
        n(ActionKind::Update),
        n(ActionKind::Delete) + replace,
    );
    if replace > 0 {
        text.push_str(&format!(" ({replace} replaced)"));
    }
    if n(ActionKind::Adopt) > 0 {
        text.push_str(&format!(", {} to adopt", n(ActionKind::Adopt)));
    }
    if n(ActionKind::Forget) > 0 {
        text.push_str(&format!(", {} to forget", n(ActionKind::Forget)));
    }
    text.push('.');
    text
}

/// Attributes the cloud reported, as a JSON object without the kind tag; `None` when there
/// are none (a VPC reports nothing beyond its id).
pub fn attrs_json(attrs: &Attrs) -> Option<serde_json::Value> {
    let mut value = serde_json::to_value(attrs).ok()?;
    let object = value.as_object_mut()?;
    object.remove("type");
    object.remove("kind");
    if object.is_empty() {
        None
    } else {
        Some(value)
    }
}
