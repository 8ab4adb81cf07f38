//! An in-memory cloud for the engine's tests. Unlike the moto emulator it behaves like AWS
//! where that matters for ordering and safety: deleting a resource something still uses
//! fails with `DependencyViolation` (returned to the caller, as AWS does), create tokens can
//! be honoured or ignored, and it can be made slow, flaky (transient faults at a rate) or
//! "crash" after the N-th mutating call.
//!
//! Creates are several calls, as the AWS adapter makes them: a VPC is created (tagged),
//! then its two DNS attributes are set; a route table is created, associated with each
//! subnet and given its route to the internet gateway; a security group is created (with
//! AWS's default allow-all egress rule), that rule revoked, then ingress and egress
//! authorized; a load balancer is created, then its cross-zone attribute set; a target
//! group is created, its attributes modified and its targets registered; a hosted zone is
//! created *untagged* (Route53 tags are a separate call) and then tagged; an IAM role is
//! created (tagged), then its policies attached; an instance profile is created (tagged),
//! then its role added; an instance is run (tagged) and then waited for. Every one of those calls is a mutating call with its
//! own crash point, throttling and lost reply, and the live object only has the parts done
//! so far: `read` reports the missing ones as drift, and `update` completes them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::{Rng, SeedableRng};

use super::{Cloud, CloudError, OpContext, Owned};
use crate::model::{Attrs, Kind, LogicalId, Observed, RecordTarget, Spec, ZoneRef};

#[derive(Debug, Clone)]
pub struct Obj {
    pub kind: Kind,
    pub env: String,
    pub id: LogicalId,
    pub spec: Spec,
    pub attrs: Attrs,
    pub token: String,
    /// Cloud ids this object uses, and whether that use blocks their deletion.
    pub uses: Vec<(String, bool)>,
    /// Delete calls refused so far because AWS had not released it yet.
    pub delete_refusals: u32,
    /// Carries the ownership tags (`provision:env`, `provision:id`). A hosted zone is
    /// untagged between its create call and its tag call.
    pub tagged: bool,
    /// Parts of the create not done yet that the live spec cannot show (VPC DNS
    /// attributes, target group attributes).
    pub missing: Vec<&'static str>,
    /// Not found by tag or token (`find`, `list_owned`) yet: eventual consistency right
    /// after a create. Reading it by its id still works.
    pub hidden: bool,
    /// Its `provision:lineage` tag (empty: made before lineage tags existed).
    pub lineage: String,
}

impl Obj {
    /// Differences from `want`, one line each, as the AWS adapter's `read` reports them
    /// (by the fake's own rules, [`in_place`]; never the engine's): what AWS lets an update
    /// repair, and what it fixes at creation (only a replacement changes that).
    fn drift(&self, want: &Spec) -> (Vec<String>, Vec<String>) {
        let (mut drift, fixed) = field_drift(&self.spec, want);
        drift.extend(self.missing.iter().map(|m| format!("{m} not set")));
        if !self.tagged {
            drift.push("not tagged provision:env / provision:id".to_string());
        }
        (drift, fixed)
    }

    fn observed(&self, cloud_id: &str, want: &Spec) -> Observed {
        let (drift, fixed) = self.drift(want);
        Observed {
            cloud_id: cloud_id.to_string(),
            attrs: self.attrs.clone(),
            drift,
            fixed,
        }
    }
}

/// One call of a multi-call create after the first, and what it does to the live object.
enum Part {
    /// A modify-attribute call for something the spec does not show.
    Attribute(&'static str),
    /// Associate the route table with one subnet.
    Associate(LogicalId),
    /// The route table's route to the internet gateway.
    Route,
    /// Revoke the default allow-all egress rule of a new security group.
    RevokeDefaultEgress,
    AuthorizeIngress,
    AuthorizeEgress,
    /// The load balancer's attributes (cross-zone).
    LoadBalancerAttributes,
    RegisterTargets,
    /// Route53 `ChangeTagsForResource`.
    Tag,
    /// IAM `AttachRolePolicy` (one call for all policies here).
    AttachPolicies,
    /// IAM `AddRoleToInstanceProfile`.
    AddRole,
    /// Disassociate the route table from one subnet.
    Disassociate(LogicalId),
    /// Deregister the targets that are not wanted.
    DeregisterTargets,
    /// Revoke the rules of a direction that are not wanted.
    RevokeIngress,
    RevokeEgress,
    /// One call of an update that sets these fields to the wanted values.
    Set(&'static str, &'static [&'static str]),
    /// A call (its operation) that does what the live object lacks (`missing`).
    Missing(&'static str, &'static str),
    /// Before a delete: revoke the group's rules that name other groups (ingress, or
    /// egress).
    RevokeGroupRules {
        egress: bool,
    },
    /// Before a delete: detach the gateway from its VPC.
    DetachGateway,
    /// Before a delete: take the role out of the instance profile.
    RemoveRole,
    /// Before a delete: detach one of the role's policies.
    DetachPolicy,
    /// Before a delete: turn RDS's deletion protection off.
    DeletionProtectionOff,
}

impl Part {
    fn op(&self) -> &'static str {
        match self {
            Part::Attribute(_) => "modify_attribute",
            Part::Associate(_) => "associate_route_table",
            Part::Route => "create_route",
            Part::RevokeDefaultEgress => "revoke_default_egress",
            Part::AuthorizeIngress => "authorize_ingress",
            Part::AuthorizeEgress => "authorize_egress",
            Part::LoadBalancerAttributes => "modify_load_balancer_attributes",
            Part::RegisterTargets => "register_targets",
            Part::Tag => "change_tags_for_resource",
            Part::AttachPolicies => "attach_role_policy",
            Part::AddRole => "add_role_to_instance_profile",
            Part::Disassociate(_) => "disassociate_route_table",
            Part::RevokeIngress => "revoke_ingress",
            Part::DeregisterTargets => "deregister_targets",
            Part::RevokeEgress => "revoke_egress",
            Part::Set(op, _) | Part::Missing(op, _) => op,
            Part::RevokeGroupRules { egress: false } => "revoke_security_group_ingress",
            Part::RevokeGroupRules { egress: true } => "revoke_security_group_egress",
            Part::DetachGateway => "detach_internet_gateway",
            Part::RemoveRole => "remove_role_from_instance_profile",
            Part::DetachPolicy => "detach_role_policy",
            Part::DeletionProtectionOff => "modify_db_instance",
        }
    }

    /// Do this part of a delete to `obj`: let go of what it names.
    fn undo(&self, obj: &mut Obj) {
        match (self, &mut obj.spec) {
            (Part::Disassociate(r), Spec::RouteTable(t)) => t.subnets.retain(|s| s != r),
            (Part::RevokeGroupRules { egress }, Spec::SecurityGroup(g)) => {
                let rules = if *egress {
                    &mut g.egress
                } else {
                    &mut g.ingress
                };
                rules.retain(|r| !names_group(r));
            }
            (Part::DetachGateway, _) => obj.missing.push(IGW_ATTACHED),
            (Part::RemoveRole, _) => obj.missing.push(ROLE_IN_PROFILE),
            (Part::DetachPolicy, Spec::IamRole(r)) => {
                r.policies.pop();
            }
            _ => {}
        }
    }

    /// Do this part to `live`, towards `want`.
    fn apply(&self, obj: &mut Obj, want: &Spec) {
        match (self, &mut obj.spec, want) {
            (Part::Attribute(a), _, _) => obj.missing.retain(|m| m != a),
            (Part::Associate(r), Spec::RouteTable(live), _) => live.subnets.push(r.clone()),
            (Part::Route, Spec::RouteTable(live), Spec::RouteTable(w)) => {
                live.internet_gateway = w.internet_gateway.clone()
            }
            (Part::RevokeDefaultEgress, Spec::SecurityGroup(live), _) => live.egress.clear(),
            (Part::AuthorizeIngress, Spec::SecurityGroup(live), Spec::SecurityGroup(w)) => {
                live.ingress = w.ingress.clone()
            }
            (Part::AuthorizeEgress, Spec::SecurityGroup(live), Spec::SecurityGroup(w)) => {
                live.egress = w.egress.clone()
            }
            (Part::LoadBalancerAttributes, Spec::LoadBalancer(live), Spec::LoadBalancer(w)) => {
                live.cross_zone = w.cross_zone
            }
            (Part::RegisterTargets, Spec::TargetGroup(live), Spec::TargetGroup(w)) => {
                live.targets = w.targets.clone()
            }
            (Part::Tag, _, _) => obj.tagged = true,
            (Part::AttachPolicies, Spec::IamRole(live), Spec::IamRole(w)) => {
                live.policies = w.policies.clone()
            }
            (Part::AddRole, Spec::InstanceProfile(live), Spec::InstanceProfile(w)) => {
                live.role = w.role.clone();
                obj.missing.retain(|m| *m != ROLE_IN_PROFILE)
            }
            (Part::Disassociate(r), Spec::RouteTable(live), _) => live.subnets.retain(|s| s != r),
            (Part::DeregisterTargets, Spec::TargetGroup(live), Spec::TargetGroup(w)) => {
                live.targets.retain(|t| w.targets.contains(t))
            }
            (Part::RevokeIngress, Spec::SecurityGroup(live), Spec::SecurityGroup(w)) => {
                live.ingress.retain(|r| w.ingress.contains(r))
            }
            (Part::RevokeEgress, Spec::SecurityGroup(live), Spec::SecurityGroup(w)) => {
                live.egress.retain(|r| w.egress.contains(r))
            }
            (Part::Set(_, fields), _, _) => obj.spec = with_fields(&obj.spec, want, fields),
            (Part::Missing(_, what), _, _) => obj.missing.retain(|m| m != what),
            _ => unreachable!("a part of another kind"),
        }
    }
}

/// What an internet gateway lacks between its create call and `AttachInternetGateway`.
const IGW_ATTACHED: &str = "attachment to the VPC";

/// AWS's default egress rule (allow all to anywhere), whatever its description.
fn is_default_egress(rule: &crate::model::Rule) -> bool {
    let d = default_egress();
    rule.protocol == d.protocol && rule.peer == d.peer
}

/// What an instance profile lacks between its create call and `AddRoleToInstanceProfile`.
const ROLE_IN_PROFILE: &str = "role in the profile";

/// AWS's default egress rule of a new security group.
fn default_egress() -> crate::model::Rule {
    crate::model::Rule {
        protocol: crate::model::Protocol::All,
        from_port: 0,
        to_port: 0,
        peer: crate::model::Peer::Cidr("0.0.0.0/0".into()),
        description: String::new(),
    }
}

/// What the first call of a create leaves (live spec, tagged, missing attributes), and
/// the further calls that complete it.
fn create_calls(spec: &Spec) -> (Spec, bool, Vec<&'static str>, Vec<Part>) {
    let mut live = spec.clone();
    let mut missing = Vec::new();
    let mut parts = Vec::new();
    let mut tagged = true;
    match (&mut live, spec) {
        (Spec::Vpc(_), _) => {
            missing = vec!["DNS support", "DNS hostnames"];
            parts = vec![
                Part::Attribute("DNS support"),
                Part::Attribute("DNS hostnames"),
            ];
        }
        // CreateInternetGateway, then AttachInternetGateway.
        (Spec::InternetGateway(_), _) => {
            missing = vec![IGW_ATTACHED];
            parts.push(Part::Missing("attach_internet_gateway", IGW_ATTACHED));
        }
        // CreateSubnet, then ModifySubnetAttribute for a public one.
        (Spec::Subnet(l), Spec::Subnet(w)) if w.map_public_ip => {
            l.map_public_ip = false;
            parts.push(Part::Set("modify_subnet_attribute", &["map_public_ip"]));
        }
        // RunInstances, then AttachVolume for each data volume.
        (Spec::Instance(l), Spec::Instance(w)) if !w.volumes.is_empty() => {
            l.volumes.clear();
            parts.extend(
                w.volumes
                    .iter()
                    .map(|_| Part::Set("attach_volume", &["volumes"])),
            );
        }
        (Spec::RouteTable(l), Spec::RouteTable(w)) => {
            l.subnets.clear();
            l.internet_gateway = None;
            parts.extend(w.subnets.iter().cloned().map(Part::Associate));
            if w.internet_gateway.is_some() {
                parts.push(Part::Route);
            }
        }
        (Spec::SecurityGroup(l), Spec::SecurityGroup(w)) => {
            l.ingress.clear();
            l.egress = vec![default_egress()];
            if !w.ingress.is_empty() {
                parts.push(Part::AuthorizeIngress);
            }
            // A group that wants AWS's default egress rule keeps it (only its description
            // is set, if it has one); any other egress replaces it.
            let keeps_default = w.egress.len() == 1 && is_default_egress(&w.egress[0]);
            if keeps_default {
                if !w.egress[0].description.is_empty() {
                    parts.push(Part::Set(
                        "update_security_group_rule_descriptions_egress",
                        &["egress"],
                    ));
                } else {
                    l.egress = w.egress.clone();
                }
            } else {
                parts.push(Part::RevokeDefaultEgress);
                if !w.egress.is_empty() {
                    parts.push(Part::AuthorizeEgress);
                }
            }
        }
        (Spec::LoadBalancer(l), _) => {
            l.cross_zone = false;
            parts.push(Part::LoadBalancerAttributes);
        }
        (Spec::TargetGroup(l), Spec::TargetGroup(w)) => {
            l.targets.clear();
            missing = vec!["target group attributes"];
            parts.push(Part::Attribute("target group attributes"));
            if !w.targets.is_empty() {
                parts.push(Part::RegisterTargets);
            }
        }
        (Spec::HostedZone(_), _) => {
            tagged = false;
            parts.push(Part::Tag);
        }
        // CreateRole (tagged), then AttachRolePolicy.
        (Spec::IamRole(l), Spec::IamRole(w)) => {
            l.policies.clear();
            if !w.policies.is_empty() {
                parts.push(Part::AttachPolicies);
            }
        }
        // CreateInstanceProfile (tagged), then AddRoleToInstanceProfile.
        (Spec::InstanceProfile(_), _) => {
            missing = vec![ROLE_IN_PROFILE];
            parts.push(Part::AddRole);
        }
        _ => {}
    }
    (live, tagged, missing, parts)
}

/// The calls an update makes on AWS to bring `obj` to `want`, one part each, by the fake's
/// own per-kind rules (what the AWS adapter's update sends, call for call): each is a
/// mutating call with its own crash point, lost reply and throttling, and the live object
/// has only the parts done so far.
///
/// `stale`: references whose object was made again (same name, new cloud id): a field
/// naming one differs on AWS (it holds cloud ids) though not in the spec.
fn update_calls(obj: &Obj, want: &Spec, stale: &[LogicalId]) -> Vec<Part> {
    let live = &obj.spec;
    let (a, b) = (
        serde_json::to_value(live).expect("spec"),
        serde_json::to_value(want).expect("spec"),
    );
    let names_stale = |f: &str| {
        b.get(f).is_some_and(|v| {
            let text = v.to_string();
            stale.iter().any(|r| text.contains(&format!("\"{r}\"")))
        })
    };
    let differs = |fields: &[&str]| {
        fields
            .iter()
            .any(|f| !same_value(a.get(*f), b.get(*f)) || names_stale(f))
    };
    let mut parts = Vec::new();
    match (live, want) {
        // ModifyVpcAttribute, once per attribute, both every time.
        (Spec::Vpc(_), _) => {
            parts.push(Part::Attribute("DNS support"));
            parts.push(Part::Attribute("DNS hostnames"));
        }
        // Detach from the VPC it is on, attach to ours.
        (Spec::InternetGateway(_), _) if differs(&["vpc"]) => {
            parts.push(Part::Set("detach_internet_gateway", &[]));
            parts.push(Part::Set("attach_internet_gateway", &["vpc"]));
        }
        // ModifySubnetAttribute, every time.
        (Spec::Subnet(_), _) => {
            parts.push(Part::Set("modify_subnet_attribute", &["map_public_ip"]))
        }
        (Spec::RouteTable(l), Spec::RouteTable(w)) => {
            parts.extend(
                l.subnets
                    .iter()
                    .filter(|s| !w.subnets.contains(s))
                    .cloned()
                    .map(Part::Disassociate),
            );
            parts.extend(
                w.subnets
                    .iter()
                    .filter(|s| !l.subnets.contains(s) || stale.contains(s))
                    .cloned()
                    .map(Part::Associate),
            );
            if l.internet_gateway != w.internet_gateway || names_stale("internet_gateway") {
                parts.push(Part::Route);
            }
        }
        (Spec::SecurityGroup(l), Spec::SecurityGroup(w)) => {
            let extra = |have: &Vec<crate::model::Rule>, want: &Vec<crate::model::Rule>| {
                have.iter().any(|r| !want.contains(r))
            };
            if extra(&l.ingress, &w.ingress) {
                parts.push(Part::RevokeIngress);
            }
            if extra(&w.ingress, &l.ingress) || names_stale("ingress") {
                parts.push(Part::AuthorizeIngress);
            }
            if extra(&l.egress, &w.egress) {
                parts.push(Part::RevokeEgress);
            }
            if extra(&w.egress, &l.egress) || names_stale("egress") {
                parts.push(Part::AuthorizeEgress);
            }
        }
        (Spec::Instance(l), Spec::Instance(w)) => {
            // Stop, change the type, (groups, profile), start again.
            let retype = l.instance_type != w.instance_type;
            if retype {
                parts.push(Part::Set("stop_instances", &[]));
                parts.push(Part::Set("modify_instance_attribute", &["instance_type"]));
            }
            if differs(&["security_groups"]) {
                parts.push(Part::Set("modify_instance_attribute", &["security_groups"]));
            }
            if differs(&["instance_profile"]) {
                parts.push(Part::Set(
                    "associate_iam_instance_profile",
                    &["instance_profile"],
                ));
            }
            if retype {
                parts.push(Part::Set("start_instances", &[]));
            }
            if w.root_volume_gb > l.root_volume_gb {
                parts.push(Part::Set("modify_volume", &["root_volume_gb"]));
            }
            if differs(&["volumes"]) {
                parts.push(Part::Set("attach_volume", &["volumes"]));
            }
        }
        // ModifyVolume, then the tag recording when (AWS allows one change per 6 hours).
        (Spec::Volume(_), _) if differs(&["size_gb"]) => {
            parts.push(Part::Set("modify_volume", &["size_gb"]));
            parts.push(Part::Set("create_tags", &[]));
        }
        // UpdateSecret every time; PutSecretValue when the value changes.
        (Spec::Secret(_), _) => {
            parts.push(Part::Set("update_secret", &["description", "kms_key_id"]));
            if differs(&["value_sha256"]) {
                parts.push(Part::Set("put_secret_value", &["value_sha256"]));
            }
        }
        (Spec::VpcEndpoint(_), _) => parts.push(Part::Set(
            "modify_vpc_endpoint",
            &["subnets", "security_groups", "private_dns"],
        )),
        (Spec::IamRole(l), Spec::IamRole(w)) => {
            if l.description != w.description {
                parts.push(Part::Set("update_role", &["description"]));
            }
            if l.policies != w.policies {
                parts.push(Part::AttachPolicies);
            }
        }
        (Spec::InstanceProfile(_), _) if differs(&["role"]) || !obj.missing.is_empty() => {
            parts.push(Part::AddRole);
        }
        (Spec::DbSubnetGroup(_), _) => {
            parts.push(Part::Set("modify_db_subnet_group", &["subnets"]))
        }
        // ModifyDBInstance takes every field RDS changes in place.
        (Spec::Database(_), _) => {
            parts.push(Part::Set("modify_db_instance", in_place(Kind::Database)))
        }
        (Spec::LoadBalancer(l), Spec::LoadBalancer(w)) => {
            if differs(&["subnets"]) {
                parts.push(Part::Set("set_subnets", &["subnets"]));
            }
            if differs(&["security_group"]) {
                parts.push(Part::Set("set_security_groups", &["security_group"]));
            }
            if l.cross_zone != w.cross_zone {
                parts.push(Part::LoadBalancerAttributes);
            }
        }
        (Spec::TargetGroup(l), Spec::TargetGroup(w)) => {
            const HEALTH: &[&str] = &[
                "health_check_port",
                "healthy_threshold",
                "unhealthy_threshold",
                "interval_seconds",
                "timeout_seconds",
            ];
            if differs(HEALTH) {
                parts.push(Part::Set("modify_target_group", HEALTH));
            }
            if l.preserve_client_ip != w.preserve_client_ip {
                parts.push(Part::Set(
                    "modify_target_group_attributes",
                    &["preserve_client_ip"],
                ));
            }
            if l.targets.iter().any(|t| !w.targets.contains(t)) {
                parts.push(Part::DeregisterTargets);
            }
            if w.targets.iter().any(|t| !l.targets.contains(t)) || names_stale("targets") {
                parts.push(Part::RegisterTargets);
            }
        }
        (Spec::Listener(_), _) => {
            parts.push(Part::Set("modify_listener", &["port", "target_group"]))
        }
        // Associate the VPC again if it was taken away; the tags every time.
        (Spec::HostedZone(_), _) if differs(&["vpc"]) => {
            parts.push(Part::Set("associate_vpc_with_hosted_zone", &["vpc"]));
        }
        (Spec::DnsRecord(_), _) => {
            parts.push(Part::Set("change_resource_record_sets", &["target", "ttl"]))
        }
        _ => {}
    }
    // What a create left undone (attributes the spec does not show), then the tags.
    for m in &obj.missing {
        if *m == IGW_ATTACHED {
            parts.push(Part::Missing("attach_internet_gateway", IGW_ATTACHED));
        } else if !matches!(obj.spec, Spec::Vpc(_)) && *m != ROLE_IN_PROFILE {
            parts.push(Part::Attribute(m));
        }
    }
    if matches!(obj.spec, Spec::HostedZone(_)) {
        parts.push(Part::Tag);
    }
    parts
}

/// Calls the AWS adapter makes before the delete call itself: what must be let go first
/// (rules naming other groups, route-table associations, the gateway's attachment, the
/// profile's role, the role's policies) and RDS's deletion protection turned off.
fn delete_calls(obj: &Obj) -> Vec<Part> {
    match &obj.spec {
        Spec::SecurityGroup(g) => [(false, &g.ingress), (true, &g.egress)]
            .into_iter()
            .filter(|(_, rules)| rules.iter().any(names_group))
            .map(|(egress, _)| Part::RevokeGroupRules { egress })
            .collect(),
        Spec::RouteTable(t) => t.subnets.iter().cloned().map(Part::Disassociate).collect(),
        Spec::InternetGateway(_) if !obj.missing.contains(&IGW_ATTACHED) => {
            vec![Part::DetachGateway]
        }
        Spec::InstanceProfile(_) if !obj.missing.contains(&ROLE_IN_PROFILE) => {
            vec![Part::RemoveRole]
        }
        Spec::IamRole(r) => r.policies.iter().map(|_| Part::DetachPolicy).collect(),
        Spec::Database(_) => vec![Part::DeletionProtectionOff],
        _ => Vec::new(),
    }
}

/// Does the rule name another group (which keeps that group from being deleted)?
fn names_group(rule: &crate::model::Rule) -> bool {
    matches!(rule.peer, crate::model::Peer::Group(_))
}

/// Kinds whose delete the AWS adapter starts by looking the resource up, so that one gone
/// already costs no delete call.
fn looks_before_deleting(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::DnsRecord
            | Kind::RouteTable
            | Kind::Database
            | Kind::InstanceProfile
            | Kind::InternetGateway
            | Kind::IamRole
    )
}

/// `live` with `fields` taken from `want` (what one update call changes).
fn with_fields(live: &Spec, want: &Spec, fields: &[&str]) -> Spec {
    let mut a = serde_json::to_value(live).expect("spec");
    let b = serde_json::to_value(want).expect("spec");
    for f in fields {
        match b.get(*f) {
            Some(v) => a[*f] = v.clone(),
            None => {
                a.as_object_mut().expect("object").remove(*f);
            }
        }
    }
    let mut out: Spec = serde_json::from_value(a).expect("spec");
    // Fields the spec does not serialize stay as they are.
    match (&mut out, live) {
        (Spec::Instance(o), Spec::Instance(l)) => o.user_data = l.user_data.clone(),
        (Spec::Secret(o), Spec::Secret(l)) => o.value = l.value.clone(),
        (Spec::Subnet(o), Spec::Subnet(l)) => o.instance_types = l.instance_types.clone(),
        _ => {}
    }
    out
}

/// One call the engine made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: &'static str,
    pub id: String,
    pub mutating: bool,
}

#[derive(Default)]
struct Inner {
    next: u64,
    objects: BTreeMap<String, Obj>,
    calls: Vec<Call>,
    mutations: usize,
    rng: Option<rand::rngs::StdRng>,
    /// Mutating calls inside their latency window right now, and the most ever seen.
    in_flight: usize,
    max_in_flight: usize,
    /// Delete calls refused with `DependencyViolation`.
    in_use_refusals: usize,
    /// Instances booting right now (see `FakeConfig::instance_boot`), and the most ever.
    booting: usize,
    max_booting: usize,
    /// Every create token ever used and the cloud id it made; like EC2's `ClientToken`,
    /// a token stays bound to its resource after that resource is gone.
    tokens: BTreeMap<String, String>,
}

/// Knobs for the fake's behaviour.
#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    /// Honour create tokens like EC2 `ClientToken` (moto does not).
    pub honor_tokens: bool,
    /// Fraction of calls that fail with a transient (throttling) error.
    pub transient_rate: f64,
    pub seed: u64,
    /// After this many mutating calls went through, every further call hangs: the
    /// process "died" right after the cloud accepted the call.
    pub crash_after_mutations: Option<usize>,
    /// Latency of every mutating call.
    pub delay: Duration,
    /// The first this-many delete calls of every resource are refused with
    /// `DependencyViolation` even when nothing uses it any more, as AWS does while ENIs
    /// drain. Deleting something a live object still uses is refused for as long as that
    /// user exists. Either way the refusal reaches the caller: retrying is the engine's job.
    pub in_use_retries_needed: u32,
    /// Fraction of mutating calls that go through but whose reply is lost: the caller
    /// sees a transient error (a timeout) although the change happened.
    pub lost_reply_rate: f64,
    /// Logical ids whose create fails at once with a permanent API error.
    pub fail_ids: Vec<String>,
    /// Logical ids whose instance dies while starting (once each): `RunInstances` went
    /// through, the wait sees it `terminated` (insufficient capacity, a bad volume).
    pub die_on_start: Vec<String>,
    /// The next call of each operation named here is refused with a permanent error,
    /// once (e.g. `change_tags_for_resource`: a hosted zone stays untagged).
    pub refuse_once: Vec<String>,
    /// The next call of each operation named here is throttled, once (e.g.
    /// `modify_attribute`: a create fails after its first call went through).
    pub throttle_once: Vec<String>,
    /// How long an instance takes to boot after `RunInstances`; the create waits for it
    /// (as a step that only waits for the cloud, see `StepProgress::waiting`).
    pub instance_boot: Duration,
    /// How long a create of these other kinds waits for its resource to be ready (RDS
    /// `creating`, a load balancer `provisioning`, a Route53 change `PENDING`), the same way.
    pub ready_after: Vec<(Kind, Duration)>,
}

#[derive(Clone)]
pub struct FakeCloud {
    inner: Arc<Mutex<Inner>>,
    pub config: Arc<Mutex<FakeConfig>>,
    crashed: Arc<AtomicBool>,
    crash_notify: Arc<tokio::sync::Notify>,
}

impl Default for FakeCloud {
    fn default() -> Self {
        Self::new(FakeConfig::default())
    }
}

impl FakeCloud {
    pub fn new(config: FakeConfig) -> Self {
        let inner = Inner {
            rng: Some(rand::rngs::StdRng::seed_from_u64(config.seed)),
            ..Default::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            config: Arc::new(Mutex::new(config)),
            crashed: Arc::new(AtomicBool::new(false)),
            crash_notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn set_config(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut self.config.lock().unwrap());
    }

    /// Bring a "crashed" cloud back for the next run (the process restarted).
    pub fn restart(&self) {
        self.crashed.store(false, Ordering::SeqCst);
        let mut c = self.config.lock().unwrap();
        c.crash_after_mutations = None;
        self.inner.lock().unwrap().mutations = 0;
    }

    pub fn has_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Resolves when the fake "crashes".
    pub async fn crashed(&self) {
        loop {
            let notified = self.crash_notify.notified();
            if self.has_crashed() {
                return;
            }
            notified.await;
        }
    }

    pub fn objects(&self) -> Vec<Obj> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .values()
            .cloned()
            .collect()
    }

    pub fn count(&self, env: &str, id: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .objects
            .values()
            .filter(|o| o.env == env && o.id.as_str() == id)
            .count()
    }

    /// The live objects of `env` with their cloud ids.
    pub fn live(&self, env: &str) -> Vec<(String, Obj)> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(_, o)| o.env == env)
            .map(|(c, o)| (c.clone(), o.clone()))
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn mutating_calls(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.mutating).collect()
    }

    /// The most mutating calls that were ever in flight at once (needs a `delay`).
    pub fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }

    /// The most instances that were ever booting at once (needs an `instance_boot`).
    pub fn max_booting(&self) -> usize {
        self.inner.lock().unwrap().max_booting
    }

    /// Delete calls refused because the resource was (still) in use.
    pub fn in_use_refusals(&self) -> usize {
        self.inner.lock().unwrap().in_use_refusals
    }

    pub fn clear_calls(&self) {
        self.inner.lock().unwrap().calls.clear();
    }

    /// Change a live object behind the tool's back (drift).
    pub fn tamper(&self, env: &str, id: &str, f: impl FnOnce(&mut Obj)) {
        let mut inner = self.inner.lock().unwrap();
        let obj = inner
            .objects
            .values_mut()
            .find(|o| o.env == env && o.id.as_str() == id)
            .expect("object to tamper with");
        f(obj);
    }

    /// Put an object into the cloud behind the tool's back (a stray resource, or something
    /// of another environment that uses one of ours); returns its cloud id.
    pub fn inject(&self, env: &str, id: &str, spec: Spec, uses: Vec<(String, bool)>) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next += 1;
        let n = inner.next;
        let cloud_id = format!("{}-{n:06}", Self::prefix(spec.kind()));
        inner.objects.insert(
            cloud_id.clone(),
            Obj {
                kind: spec.kind(),
                env: env.to_string(),
                id: LogicalId::new(id),
                spec,
                attrs: Attrs::None,
                token: String::new(),
                uses,
                delete_refusals: 0,
                tagged: true,
                missing: Vec::new(),
                hidden: false,
                lineage: String::new(),
            },
        );
        cloud_id
    }

    /// Make a live object invisible to describe calls for now (eventual consistency: it
    /// was created a moment ago).
    pub fn hide(&self, env: &str, id: &str) {
        self.tamper(env, id, |o| o.hidden = true);
    }

    /// Does `find` match `o` by its create token? Instances (client token among the
    /// env-tagged ones) and hosted zones (`CallerReference`) are matched by the AWS adapter
    /// itself, whatever the server does with tokens; other kinds only when tokens are
    /// honoured.
    fn token_matches(o: &Obj, ctx: &OpContext<'_>, honor: bool) -> bool {
        if ctx.token.is_empty() || o.token != ctx.token {
            return false;
        }
        match o.kind {
            Kind::HostedZone => true,
            Kind::Instance => o.tagged && o.env == ctx.env,
            _ => honor,
        }
    }

    /// Delete a live object behind the tool's back.
    pub fn remove(&self, env: &str, id: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .objects
            .retain(|_, o| !(o.env == env && o.id.as_str() == id));
    }

    async fn enter(&self, op: &'static str, id: &str, mutating: bool) -> Result<(), CloudError> {
        self.enter_with(op, id, mutating, mutating).await
    }

    /// Record a call; `latency`: wait the configured delay first (the first call of a
    /// create; the calls completing it are quick).
    async fn enter_with(
        &self,
        op: &'static str,
        id: &str,
        mutating: bool,
        latency: bool,
    ) -> Result<(), CloudError> {
        if self.has_crashed() {
            std::future::pending::<()>().await;
        }
        let (rate, delay) = {
            let c = self.config.lock().unwrap();
            (c.transient_rate, c.delay)
        };
        if latency && !delay.is_zero() {
            let _gauge = InFlight::enter(&self.inner);
            tokio::time::sleep(delay).await;
        }
        let (throttled, refused) = {
            let mut c = self.config.lock().unwrap();
            let hit = c.throttle_once.iter().position(|o| o == op);
            let throttled = hit.map(|i| c.throttle_once.remove(i)).is_some();
            let hit = c.refuse_once.iter().position(|o| o == op);
            (throttled, hit.map(|i| c.refuse_once.remove(i)).is_some())
        };
        let mut inner = self.inner.lock().unwrap();
        inner.calls.push(Call {
            op,
            id: id.to_string(),
            mutating,
        });
        if refused {
            return Err(CloudError::api(
                op,
                "AccessDenied",
                format!("{op} on {id} was refused (injected once)"),
            ));
        }
        if throttled {
            return Err(CloudError::Transient {
                operation: op.to_string(),
                code: "RequestLimitExceeded".into(),
                message: "Request limit exceeded (injected once)".into(),
            });
        }
        if rate > 0.0 {
            let roll: f64 = inner.rng.as_mut().expect("rng").random();
            if roll < rate {
                return Err(CloudError::Transient {
                    operation: op.to_string(),
                    code: "Throttling".into(),
                    message: "Rate exceeded (injected)".into(),
                });
            }
        }
        Ok(())
    }

    /// Count a mutation that went through; hang forever if this was the crash point.
    async fn after_mutation(&self) {
        let limit = self.config.lock().unwrap().crash_after_mutations;
        let n = {
            let mut inner = self.inner.lock().unwrap();
            inner.mutations += 1;
            inner.mutations
        };
        if limit.is_some_and(|l| n >= l) {
            self.crashed.store(true, Ordering::SeqCst);
            self.crash_notify.notify_waiters();
            std::future::pending::<()>().await;
        }
    }

    /// After a mutation went through: maybe pretend its reply was lost.
    fn reply(&self, op: &str) -> Result<(), CloudError> {
        let rate = self.config.lock().unwrap().lost_reply_rate;
        if rate > 0.0 {
            let roll: f64 = self
                .inner
                .lock()
                .unwrap()
                .rng
                .as_mut()
                .expect("rng")
                .random();
            if roll < rate {
                return Err(CloudError::Transient {
                    operation: op.to_string(),
                    code: "RequestTimeout".into(),
                    message: "the reply was lost (injected); the call went through".into(),
                });
            }
        }
        Ok(())
    }

    fn attrs_for(n: u64, spec: &Spec, ctx: &OpContext<'_>) -> Attrs {
        match spec {
            Spec::Subnet(s) => Attrs::Subnet {
                availability_zone: format!("us-east-1{}", (b'a' + s.zone_index as u8) as char),
            },
            Spec::Instance(s) => Attrs::Instance {
                private_ip: format!("10.42.{}.{}", n / 250, n % 250 + 4),
                public_ip: s.public_ip.then(|| format!("203.0.113.{}", n % 250)),
                availability_zone: "us-east-1a".into(),
            },
            Spec::Database(_) => Attrs::Database {
                address: format!("{}-datastore.fake.rds.local", ctx.env),
                port: 3306,
                secret_arn: format!(
                    "arn:aws:secretsmanager:us-east-1:000000000000:secret:rds!db-{n}"
                ),
                status: "available".into(),
            },
            Spec::LoadBalancer(_) => Attrs::LoadBalancer {
                dns_name: format!("{}-nlb-{n}.elb.fake", ctx.env),
                canonical_zone_id: "ZFAKELB".into(),
            },
            Spec::HostedZone(z) => Attrs::HostedZone {
                name: z.name.clone(),
            },
            Spec::DnsRecord(r) => Attrs::DnsRecord {
                zone_id: match &r.zone {
                    ZoneRef::Managed(z) => ctx
                        .resolved
                        .cloud_id(z)
                        .map(str::to_string)
                        .unwrap_or_else(|_| "ZFAKE".into()),
                    ZoneRef::Existing(_) => "ZFAKE".into(),
                },
                fqdn: r.name.clone(),
                record_type: match r.target {
                    RecordTarget::CnameLoadBalancer(_) => "CNAME".into(),
                    _ => "A".into(),
                },
            },
            Spec::KeyPair(_) => Attrs::KeyPair {
                name: format!("{}-{}", ctx.env, ctx.id),
            },
            Spec::Volume(_) => Attrs::Volume {
                availability_zone: "us-east-1a".into(),
                modified_at: None,
            },
            Spec::Secret(_) => Attrs::Secret {
                arn: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:fake-{n}"),
            },
            Spec::IamRole(r) => Attrs::IamRole {
                arn: format!("arn:aws:iam::000000000000:role{}{}", r.path, r.name),
            },
            Spec::InstanceProfile(p) => Attrs::InstanceProfile {
                arn: format!(
                    "arn:aws:iam::000000000000:instance-profile{}{}",
                    p.path, p.name
                ),
            },
            _ => Attrs::None,
        }
    }

    fn prefix(kind: Kind) -> &'static str {
        match kind {
            Kind::Vpc => "vpc",
            Kind::InternetGateway => "igw",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "rtb",
            Kind::SecurityGroup => "sg",
            Kind::KeyPair => "key",
            Kind::Instance => "i",
            Kind::DbSubnetGroup => "dbsg",
            Kind::Database => "db",
            Kind::LoadBalancer => "lb",
            Kind::TargetGroup => "tg",
            Kind::Listener => "lst",
            Kind::HostedZone => "Z",
            Kind::DnsRecord => "rec",
            Kind::Volume => "vol",
            Kind::Secret => "arn:aws:secretsmanager:us-east-1:000000000000:secret:fake",
            Kind::VpcEndpoint => "vpce",
            Kind::IamRole => "role",
            Kind::InstanceProfile => "profile",
        }
    }

    /// The cloud ids `spec` names, and whether AWS refuses to delete each while this
    /// lives (see [`references`]).
    fn uses(spec: &Spec, ctx: &OpContext<'_>) -> Result<Vec<(String, bool)>, CloudError> {
        let mut out: Vec<(String, bool)> = Vec::new();
        for (r, blocking) in references(spec) {
            let id = ctx.resolved.cloud_id(&r)?.to_string();
            match out.iter_mut().find(|(c, _)| *c == id) {
                Some(seen) => seen.1 |= blocking,
                None => out.push((id, blocking)),
            }
        }
        Ok(out)
    }
}

/// What `spec` names, read from its fields by the fake's own rules (never the model's
/// `Spec::refs()`, so that an edge missing there shows as a delete AWS refuses), and
/// whether AWS refuses to delete the named resource while this one lives: a VPC with a
/// subnet, group, attached gateway, endpoint, target group or private zone in it; a subnet
/// with an instance's, a load balancer's or an endpoint's interfaces; a security group an
/// instance, load balancer, endpoint or database uses or another group's rule names; a
/// volume attached to an instance; a target group behind a listener; a DB subnet group in
/// use; a zone with records; a role in an instance profile. What never blocks: a key pair
/// (instances keep running), an instance profile (the instance loses its credentials), a
/// route table's associations and route (removed with the subnet, left blackholed), a DB
/// subnet group's subnets, the database's password secret, targets (AWS deregisters them),
/// a record's target, a volume's subnet (a volume lives in a zone), a listener's load
/// balancer (deleted with it). An instance's or load balancer's `after` is only an order.
fn references(spec: &Spec) -> Vec<(LogicalId, bool)> {
    let mut out: Vec<(LogicalId, bool)> = Vec::new();
    let mut add = |ids: &[&LogicalId], blocking: bool| {
        out.extend(ids.iter().map(|r| ((*r).clone(), blocking)));
    };
    match spec {
        Spec::Vpc(_) | Spec::KeyPair(_) | Spec::Secret(_) | Spec::IamRole(_) => {}
        Spec::InternetGateway(g) => add(&[&g.vpc], true),
        Spec::Subnet(x) => add(&[&x.vpc], true),
        Spec::RouteTable(t) => {
            add(&[&t.vpc], true);
            add(&t.subnets.iter().collect::<Vec<_>>(), false);
            add(&t.internet_gateway.iter().collect::<Vec<_>>(), false);
        }
        Spec::SecurityGroup(g) => {
            add(&[&g.vpc], true);
            let peers: Vec<&LogicalId> = g
                .ingress
                .iter()
                .chain(&g.egress)
                .filter_map(|r| match &r.peer {
                    crate::model::Peer::Group(p) => Some(p),
                    _ => None,
                })
                .collect();
            add(&peers, true);
        }
        Spec::Instance(i) => {
            add(&[&i.subnet], true);
            add(&i.security_groups.iter().collect::<Vec<_>>(), true);
            add(&i.volumes.iter().collect::<Vec<_>>(), true);
            add(&i.key_pair.iter().collect::<Vec<_>>(), false);
            add(&i.instance_profile.iter().collect::<Vec<_>>(), false);
        }
        Spec::Volume(v) => add(&[&v.subnet], false),
        Spec::VpcEndpoint(e) => {
            add(&[&e.vpc], true);
            add(&e.subnets.iter().collect::<Vec<_>>(), true);
            add(&e.security_groups.iter().collect::<Vec<_>>(), true);
        }
        Spec::InstanceProfile(p) => add(&[&p.role], true),
        Spec::DbSubnetGroup(g) => add(&g.subnets.iter().collect::<Vec<_>>(), false),
        Spec::Database(d) => {
            add(&[&d.subnet_group, &d.security_group], true);
            add(&d.password.iter().collect::<Vec<_>>(), false);
        }
        Spec::LoadBalancer(l) => {
            add(&l.subnets.iter().collect::<Vec<_>>(), true);
            add(&[&l.security_group], true);
        }
        Spec::TargetGroup(t) => {
            add(&[&t.vpc], true);
            add(&t.targets.iter().collect::<Vec<_>>(), false);
        }
        Spec::Listener(l) => {
            add(&[&l.load_balancer], false);
            add(&[&l.target_group], true);
        }
        Spec::HostedZone(z) => add(&[&z.vpc], true),
        Spec::DnsRecord(r) => {
            if let ZoneRef::Managed(z) = &r.zone {
                add(&[z], true);
            }
            match &r.target {
                RecordTarget::AliasLoadBalancer(t)
                | RecordTarget::CnameLoadBalancer(t)
                | RecordTarget::InstancePrivateIp(t) => add(&[t], false),
            }
        }
    }
    out
}

/// What of `spec` can exist with what `ctx` resolves: EC2 refuses a rule naming a group
/// that does not exist, so a security group made before the groups its rules name has
/// none of those rules (the fake's own rule; the engine's is `engine::late`).
fn possible(spec: &Spec, ctx: &OpContext<'_>) -> Spec {
    let mut spec = spec.clone();
    if let Spec::SecurityGroup(group) = &mut spec {
        let exists = |rule: &crate::model::Rule| match &rule.peer {
            crate::model::Peer::Group(g) => ctx.resolved.get(g).is_some(),
            _ => true,
        };
        group.ingress.retain(exists);
        group.egress.retain(exists);
    }
    spec
}

/// The fields of each kind AWS changes on a live resource, the API that does it in
/// brackets; any other field is fixed at creation. The fake's own list, so that a change
/// to the engine's `Spec::updatable_fields` cannot change what the fake reports.
fn in_place(kind: Kind) -> &'static [&'static str] {
    match kind {
        // CIDR, name, key material: fixed.
        Kind::Vpc | Kind::KeyPair => &[],
        // Detach/AttachInternetGateway.
        Kind::InternetGateway => &["vpc"],
        // ModifySubnetAttribute; its CIDR and zone are fixed.
        Kind::Subnet => &["map_public_ip"],
        // AssociateVPCWithHostedZone; its name is fixed.
        Kind::HostedZone => &["vpc"],
        // (Dis)associateRouteTable, CreateRoute / DeleteRoute.
        Kind::RouteTable => &["subnets", "internet_gateway"],
        // Authorize / Revoke SecurityGroupIngress / Egress.
        Kind::SecurityGroup => &["ingress", "egress"],
        // ModifyInstanceAttribute (groups; type while stopped), ModifyVolume (grow),
        // AttachVolume, AssociateIamInstanceProfile. `after` is ordering only.
        Kind::Instance => &[
            "security_groups",
            "instance_type",
            "root_volume_gb",
            "volumes",
            "after",
            "instance_profile",
        ],
        // ModifyVolume.
        Kind::Volume => &["size_gb"],
        // UpdateSecret, PutSecretValue.
        Kind::Secret => &["description", "value_sha256", "kms_key_id"],
        // ModifyVpcEndpoint.
        Kind::VpcEndpoint => &["subnets", "security_groups", "private_dns"],
        // Attach/DetachRolePolicy, UpdateRole.
        Kind::IamRole => &["policies", "description"],
        // Add/RemoveRoleFromInstanceProfile.
        Kind::InstanceProfile => &["role"],
        // ModifyDBSubnetGroup.
        Kind::DbSubnetGroup => &["subnets"],
        // ModifyDBInstance.
        Kind::Database => &[
            "security_group",
            "engine_version",
            "instance_class",
            "storage_gb",
            "backup_retention_days",
            "password",
        ],
        // SetSubnets, SetSecurityGroups, ModifyLoadBalancerAttributes.
        Kind::LoadBalancer => &["subnets", "security_group", "cross_zone"],
        // ModifyTargetGroup(Attributes), Register/DeregisterTargets.
        Kind::TargetGroup => &[
            "health_check_port",
            "healthy_threshold",
            "unhealthy_threshold",
            "interval_seconds",
            "timeout_seconds",
            "preserve_client_ip",
            "targets",
        ],
        // ModifyListener (port, protocol, default action).
        Kind::Listener => &["port", "target_group"],
        // ChangeResourceRecordSets UPSERT.
        Kind::DnsRecord => &["target", "ttl"],
    }
}

/// Equal, lists taken as sets (AWS keeps a route table's associations, a group's rules,
/// an instance's groups in no order of ours).
fn same_value(a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> bool {
    match (a, b) {
        (Some(serde_json::Value::Array(x)), Some(serde_json::Value::Array(y))) => {
            let sorted = |v: &Vec<serde_json::Value>| {
                let mut v: Vec<String> = v.iter().map(|e| e.to_string()).collect();
                v.sort();
                v
            };
            sorted(x) == sorted(y)
        }
        _ => a == b,
    }
}

/// Fields a read does not compare, per kind: orderings of the first create (`after`),
/// what the cloud returns only when asked or not at all (user-data, a key pair's key), and
/// what identifies the resource (found by it) or only reaches it at launch. What the AWS
/// adapter's `read` compares, the fake compares; the contract suite (`it contract::*`)
/// holds the two to the same.
fn unseen(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Instance => &[
            "after",
            "user_data_sha256",
            "key_pair",
            "ami",
            "subnet",
            "public_ip",
            "role",
        ],
        Kind::LoadBalancer => &["after"],
        Kind::Subnet => &["zone_index"],
        Kind::Volume => &["subnet"],
        Kind::KeyPair => &["public_key"],
        Kind::IamRole => &["path", "trusted_service"],
        Kind::InstanceProfile => &["path"],
        Kind::Database => &["database", "username"],
        // A secret's value is the operator's once made (they rotate the datastore password
        // by hand): the adapter never reads it back, nor its description or key.
        Kind::Secret => &["description", "value_sha256", "kms_key_id"],
        _ => &[],
    }
}

/// `field: live → wanted` for each field that differs, split by [`in_place`]: what an
/// update can repair, and what AWS fixes at creation; [`unseen`] fields are never drift.
fn field_drift(live: &Spec, want: &Spec) -> (Vec<String>, Vec<String>) {
    let (serde_json::Value::Object(a), serde_json::Value::Object(b)) = (
        serde_json::to_value(live).expect("spec serializes"),
        serde_json::to_value(want).expect("spec serializes"),
    ) else {
        return (Vec::new(), Vec::new());
    };
    let short = |v: Option<&serde_json::Value>| {
        let text = v.map_or("none".to_string(), |v| v.to_string());
        if text.len() > 60 {
            format!(
                "{}…",
                &text[..text.char_indices().nth(57).map_or(text.len(), |(i, _)| i)]
            )
        } else {
            text
        }
    };
    let unseen = unseen(want.kind());
    let same = |x: Option<&serde_json::Value>, y: Option<&serde_json::Value>| same_value(x, y);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let (mut repairable, mut fixed) = (Vec::new(), Vec::new());
    for field in keys {
        if field == "kind" || unseen.contains(&field.as_str()) || same(a.get(field), b.get(field)) {
            continue;
        }
        let line = format!("{field}: {} → {}", short(a.get(field)), short(b.get(field)));
        if in_place(want.kind()).contains(&field.as_str()) {
            repairable.push(line);
        } else {
            fixed.push(line);
        }
    }
    (repairable, fixed)
}

/// Counts a mutating call as in flight until dropped (also when the caller is dropped).
struct InFlight<'a>(&'a Mutex<Inner>);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Mutex<Inner>) -> Self {
        let mut i = inner.lock().unwrap();
        i.in_flight += 1;
        i.max_in_flight = i.max_in_flight.max(i.in_flight);
        Self(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

#[async_trait]
impl Cloud for FakeCloud {
    async fn find(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Option<Observed>, CloudError> {
        self.enter("find", ctx.id.as_str(), false).await?;
        let inner = self.inner.lock().unwrap();
        let honor = self.config.lock().unwrap().honor_tokens;
        let found: Vec<_> = inner
            .objects
            .iter()
            .filter(|(_, o)| {
                !o.hidden
                    && o.kind == spec.kind()
                    && ((o.tagged && o.env == ctx.env && &o.id == ctx.id)
                        || Self::token_matches(o, ctx, honor))
            })
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [(cid, o)] => Ok(Some(o.observed(cid, &possible(spec, ctx)))),
            many => Err(CloudError::api(
                "find",
                "Ambiguous",
                format!(
                    "{} resources tagged {}: {}",
                    many.len(),
                    ctx.id,
                    many.iter()
                        .map(|(c, _)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    async fn read(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        cloud_id: &str,
    ) -> Result<Option<Observed>, CloudError> {
        self.enter("read", cloud_id, false).await?;
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .objects
            .get(cloud_id)
            .map(|o| o.observed(cloud_id, &possible(spec, ctx))))
    }

    async fn create(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Observed, CloudError> {
        if self
            .config
            .lock()
            .unwrap()
            .fail_ids
            .iter()
            .any(|f| f == ctx.id.as_str())
        {
            // Refused at once (no latency), so steps started with it are still running.
            self.inner.lock().unwrap().calls.push(Call {
                op: "create",
                id: ctx.id.to_string(),
                mutating: true,
            });
            return Err(CloudError::api(
                "create",
                "InvalidParameterValue",
                format!("{} was refused (injected)", ctx.id),
            ));
        }
        self.enter("create", ctx.id.as_str(), true).await?;
        // Rules naming groups not made yet come later, in an update (as in the adapter).
        let spec = &possible(spec, ctx);
        let (live, tagged, missing, parts) = create_calls(spec);
        let uses = Self::uses(&live, ctx)?;
        let (cloud_id, attrs) = {
            let mut inner = self.inner.lock().unwrap();
            let honor = self.config.lock().unwrap().honor_tokens || spec.kind() == Kind::HostedZone;
            if honor && !ctx.token.is_empty() {
                if let Some(cid) = inner.tokens.get(ctx.token).cloned() {
                    // The same token again: the cloud answers with what it made then.
                    return match inner.objects.get_mut(&cid) {
                        Some(o) => {
                            o.hidden = false;
                            Ok(Observed::new(cid, o.attrs.clone()))
                        }
                        None => Err(CloudError::api(
                            "create",
                            "InstanceNotRunning",
                            format!(
                                "{cid} was created earlier with the token of {} and is gone; \
                                 the same token returns it again",
                                ctx.id
                            ),
                        )),
                    };
                }
            }
            inner.next += 1;
            let n = inner.next;
            let cloud_id = format!("{}-{n:06}", Self::prefix(spec.kind()));
            let attrs = Self::attrs_for(n, spec, ctx);
            if !ctx.token.is_empty() {
                inner.tokens.insert(ctx.token.to_string(), cloud_id.clone());
            }
            inner.objects.insert(
                cloud_id.clone(),
                Obj {
                    kind: spec.kind(),
                    env: ctx.env.to_string(),
                    id: ctx.id.clone(),
                    spec: live,
                    attrs: attrs.clone(),
                    token: ctx.token.to_string(),
                    uses,
                    delete_refusals: 0,
                    tagged,
                    missing,
                    hidden: false,
                    lineage: ctx.owner.lineage.clone(),
                },
            );
            (cloud_id, attrs)
        };
        self.after_mutation().await;
        self.reply("create")?;
        for part in parts {
            self.enter_with(part.op(), &cloud_id, true, false).await?;
            {
                let mut inner = self.inner.lock().unwrap();
                let Some(o) = inner.objects.get_mut(&cloud_id) else {
                    return Err(CloudError::api(
                        part.op(),
                        "NotFound",
                        format!("{cloud_id} does not exist"),
                    ));
                };
                part.apply(o, spec);
                let live = o.spec.clone();
                o.uses = Self::uses(&live, ctx)?;
            }
            self.after_mutation().await;
            self.reply(part.op())?;
        }
        let ready = self
            .config
            .lock()
            .unwrap()
            .ready_after
            .iter()
            .find(|(k, _)| *k == spec.kind())
            .map(|(_, d)| *d);
        if let Some(ready) = ready.filter(|_| spec.kind() != Kind::Instance) {
            let _waiting = super::Waiting::start(ctx.progress);
            tokio::time::sleep(ready).await;
        }
        if spec.kind() == Kind::Instance {
            // RunInstances returns at once; the adapter then waits for `running`.
            self.enter("wait_instance", &cloud_id, false).await?;
            let boot = self.config.lock().unwrap().instance_boot;
            if !boot.is_zero() {
                let _waiting = super::Waiting::start(ctx.progress);
                {
                    let mut i = self.inner.lock().unwrap();
                    i.booting += 1;
                    i.max_booting = i.max_booting.max(i.booting);
                }
                tokio::time::sleep(boot).await;
                self.inner.lock().unwrap().booting -= 1;
            }
            let dies = {
                let mut c = self.config.lock().unwrap();
                let hit = c.die_on_start.iter().position(|i| i == ctx.id.as_str());
                hit.map(|i| c.die_on_start.remove(i)).is_some()
            };
            if dies {
                // Terminated instances are not found by describe calls any more.
                self.inner.lock().unwrap().objects.remove(&cloud_id);
                return Err(CloudError::api(
                    "RunInstances",
                    "InstanceNotRunning",
                    format!("instance {cloud_id} is terminated instead of running (injected)"),
                ));
            }
        }
        Ok(Observed::new(cloud_id, attrs))
    }

    async fn update(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        current: &Observed,
    ) -> Result<Observed, CloudError> {
        // Rules naming groups not made yet come later (as in the adapter).
        let want = &possible(spec, ctx);
        // The describe the adapter starts with, then one mutating call per part.
        self.enter("update", &current.cloud_id, false).await?;
        let parts = {
            let inner = self.inner.lock().unwrap();
            inner.objects.get(&current.cloud_id).map(|o| {
                let stale: Vec<LogicalId> = want
                    .refs()
                    .into_iter()
                    .map(|(r, _)| r)
                    .filter(|r| {
                        ctx.resolved
                            .cloud_id(r)
                            .is_ok_and(|c| !o.uses.iter().any(|(u, _)| u == c))
                    })
                    .collect();
                update_calls(o, want, &stale)
            })
        };
        let Some(parts) = parts else {
            return Err(CloudError::api(
                "update",
                "NotFound",
                format!("{} does not exist", current.cloud_id),
            ));
        };
        let mut first = true;
        for part in parts {
            self.enter_with(part.op(), &current.cloud_id, true, first)
                .await?;
            first = false;
            {
                let mut inner = self.inner.lock().unwrap();
                let Some(o) = inner.objects.get_mut(&current.cloud_id) else {
                    return Err(CloudError::api(
                        part.op(),
                        "NotFound",
                        format!("{} does not exist", current.cloud_id),
                    ));
                };
                part.apply(o, want);
                let live = o.spec.clone();
                o.uses = Self::uses(&live, ctx)?;
            }
            self.after_mutation().await;
            self.reply(part.op())?;
        }
        let inner = self.inner.lock().unwrap();
        let o = inner
            .objects
            .get(&current.cloud_id)
            .ok_or_else(|| CloudError::api("update", "NotFound", "gone"))?;
        Ok(Observed::new(current.cloud_id.clone(), o.attrs.clone()))
    }

    async fn delete(
        &self,
        ctx: &OpContext<'_>,
        kind: Kind,
        current: &Observed,
    ) -> Result<(), CloudError> {
        let needed = self.config.lock().unwrap().in_use_retries_needed;
        let before = {
            let inner = self.inner.lock().unwrap();
            inner.objects.get(&current.cloud_id).map(delete_calls)
        };
        match before {
            // Gone already: the adapter looks first for these, the rest ask AWS to delete
            // and take "not found" for done.
            None if looks_before_deleting(kind) => {
                self.enter("describe", &current.cloud_id, false).await?;
                return Ok(());
            }
            None => {}
            Some(parts) => {
                for part in parts {
                    self.enter(part.op(), &current.cloud_id, true).await?;
                    {
                        let mut inner = self.inner.lock().unwrap();
                        let Some(o) = inner.objects.get_mut(&current.cloud_id) else {
                            return Ok(());
                        };
                        // What it names stays in use until the delete itself (the
                        // engine deletes users first either way).
                        part.undo(o);
                    }
                    self.after_mutation().await;
                    self.reply(part.op())?;
                }
            }
        }
        self.enter("delete", &current.cloud_id, true).await?;
        {
            let mut inner = self.inner.lock().unwrap();
            if !inner.objects.contains_key(&current.cloud_id) {
                return Ok(());
            }
            let blocked: Vec<String> = inner
                .objects
                .iter()
                .filter(|(_, o)| {
                    o.uses
                        .iter()
                        .any(|(u, blocking)| *blocking && u == &current.cloud_id)
                })
                .map(|(c, o)| format!("{} ({})", o.id, c))
                .collect();
            if !blocked.is_empty() {
                inner.in_use_refusals += 1;
                return Err(CloudError::InUse {
                    operation: "delete".into(),
                    code: "DependencyViolation".into(),
                    message: format!(
                        "{} ({}) is still used by {}",
                        ctx.id,
                        current.cloud_id,
                        blocked.join(", ")
                    ),
                });
            }
            let obj = inner.objects.get_mut(&current.cloud_id).expect("checked");
            if obj.delete_refusals < needed {
                // AWS has not released the resource yet (ENIs draining).
                obj.delete_refusals += 1;
                inner.in_use_refusals += 1;
                return Err(CloudError::InUse {
                    operation: "delete".into(),
                    code: "DependencyViolation".into(),
                    message: format!(
                        "{} ({}) has a dependent object (network interfaces still draining)",
                        ctx.id, current.cloud_id
                    ),
                });
            }
            inner.objects.remove(&current.cloud_id);
            if kind == Kind::LoadBalancer {
                // Its listeners go with it.
                let gone = current.cloud_id.clone();
                inner.objects.retain(|_, o| {
                    !(o.kind == Kind::Listener && o.uses.iter().any(|(u, _)| *u == gone))
                });
            }
        }
        if kind == Kind::Database && !ctx.delete.skip_final_snapshot {
            ctx.progress.kept(&format!(
                "final snapshot {}-final of {}",
                ctx.env, current.cloud_id
            ));
        }
        self.after_mutation().await;
        self.reply("delete")
    }

    /// What the AWS adapter's `list_owned` finds, no more: resources carrying the env
    /// tag; listeners only under a load balancer of the env; DNS records (which cannot be
    /// tagged) only inside a hosted zone of the env, never in an existing (public) zone;
    /// nothing untagged (a hosted zone between its create and tag calls).
    async fn list_owned(&self, env: &str) -> Result<Vec<Owned>, CloudError> {
        self.enter("list_owned", env, false).await?;
        let inner = self.inner.lock().unwrap();
        let ours = |o: &Obj| o.tagged && !o.hidden && o.env == env;
        let ours_of_kind = |cloud_id: &str, kind: Kind| {
            inner
                .objects
                .get(cloud_id)
                .is_some_and(|p| p.kind == kind && ours(p))
        };
        Ok(inner
            .objects
            .iter()
            .filter(|(_, o)| ours(o))
            .filter(|(_, o)| match (&o.spec, &o.attrs) {
                (Spec::Listener(_), _) => o
                    .uses
                    .iter()
                    .any(|(u, _)| ours_of_kind(u, Kind::LoadBalancer)),
                (Spec::DnsRecord(r), Attrs::DnsRecord { zone_id, .. }) => {
                    matches!(r.zone, ZoneRef::Managed(_)) && ours_of_kind(zone_id, Kind::HostedZone)
                }
                (Spec::DnsRecord(_), _) => false,
                _ => true,
            })
            .map(|(cid, o)| Owned {
                kind: o.kind,
                id: o.id.clone(),
                cloud_id: cid.clone(),
                attrs: o.attrs.clone(),
                owner: crate::model::FoundOwner {
                    lineage: (!o.lineage.is_empty()).then(|| o.lineage.clone()),
                    origin: None,
                },
            })
            .collect())
    }

    async fn claim(
        &self,
        ctx: &OpContext<'_>,
        _kind: Kind,
        current: &Observed,
    ) -> Result<(), CloudError> {
        self.enter("claim", &current.cloud_id, true).await?;
        if let Some(o) = self
            .inner
            .lock()
            .unwrap()
            .objects
            .get_mut(&current.cloud_id)
        {
            o.lineage = ctx.owner.lineage.clone();
        }
        self.after_mutation().await;
        self.reply("claim")
    }

    async fn secret_value(&self, arn: &str) -> Result<String, CloudError> {
        self.enter("secret_value", arn, false).await?;
        Ok(format!(
            "fake-password-for-{}",
            arn.rsplit(':').next().unwrap_or("x")
        ))
    }
}
