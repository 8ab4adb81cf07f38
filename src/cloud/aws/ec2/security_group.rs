//! Security groups: rules compared as sets of normalized rules; only the difference is revoked or authorized.

use super::*;

pub(super) async fn describe_groups(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<SecurityGroup>, CloudError> {
    cloud
        .ec2
        .describe_security_groups()
        .set_group_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeSecurityGroups", e))
}

/// Who a normalized rule admits or reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum RulePeer {
    Cidr(String),
    CidrV6(String),
    Group(String),
    PrefixList(String),
}

/// One security-group rule in the form AWS compares them: protocol (`tcp`, `udp`, `-1`,
/// ...), port range (none for all protocols) and one peer. Descriptions do not count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct RuleKey {
    protocol: String,
    ports: Option<(i32, i32)>,
    peer: RulePeer,
}

impl RuleKey {
    pub(super) fn all_traffic_anywhere() -> Self {
        RuleKey {
            protocol: "-1".into(),
            ports: None,
            peer: RulePeer::Cidr(ANYWHERE.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub(super) fn label(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The rules of a live group.
pub(super) struct GroupRules {
    ingress: BTreeSet<RuleKey>,
    egress: BTreeSet<RuleKey>,
    /// The descriptions the live rules carry. A revoke sends them back: AWS matches a
    /// revoke without them, moto only with them.
    descriptions: BTreeMap<RuleKey, String>,
}

impl GroupRules {
    pub(super) fn of(g: &SecurityGroup) -> Self {
        let mut descriptions = rule_descriptions(g.ip_permissions());
        descriptions.extend(rule_descriptions(g.ip_permissions_egress()));
        GroupRules {
            ingress: have_rules(g.ip_permissions()),
            egress: have_rules(g.ip_permissions_egress()),
            descriptions,
        }
    }

    /// The permission that revokes `key`, with the description the live rule has.
    fn revoke_permission(&self, key: &RuleKey) -> IpPermission {
        to_permission(key, self.descriptions.get(key).map(String::as_str))
    }
}

/// The description of each live rule that has one.
fn rule_descriptions(perms: &[IpPermission]) -> BTreeMap<RuleKey, String> {
    let mut out = BTreeMap::new();
    for p in perms {
        let one = |peer: &IpPermission| have_rules(std::slice::from_ref(peer));
        let mut add = |single: IpPermission, description: Option<&str>| {
            if let Some(d) = description.filter(|d| !d.is_empty()) {
                for key in one(&single) {
                    out.insert(key, d.to_string());
                }
            }
        };
        let base = || {
            IpPermission::builder()
                .set_ip_protocol(p.ip_protocol().map(str::to_string))
                .set_from_port(p.from_port())
                .set_to_port(p.to_port())
        };
        for r in p.ip_ranges() {
            add(base().ip_ranges(r.clone()).build(), r.description());
        }
        for r in p.ipv6_ranges() {
            add(base().ipv6_ranges(r.clone()).build(), r.description());
        }
        for g in p.user_id_group_pairs() {
            add(
                base().user_id_group_pairs(g.clone()).build(),
                g.description(),
            );
        }
        for l in p.prefix_list_ids() {
            add(base().prefix_list_ids(l.clone()).build(), l.description());
        }
    }
    out
}

pub(super) fn norm_protocol(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "-1" | "all" => "-1".into(),
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        other => other.into(),
    }
}

/// Normalize the spec's rules: `Itself` becomes the group's own id, `Group(ref)` the
/// referenced group's id. Maps each rule to its description.
pub(super) fn want_rules(
    rules: &[Rule],
    self_id: &str,
    resolve: impl Fn(&Ref) -> Result<String, MissingRef>,
) -> Result<BTreeMap<RuleKey, String>, MissingRef> {
    let mut out = BTreeMap::new();
    for rule in rules {
        let (protocol, ports) = match rule.protocol {
            Protocol::Tcp => (
                "tcp",
                Some((i32::from(rule.from_port), i32::from(rule.to_port))),
            ),
            Protocol::Udp => (
                "udp",
                Some((i32::from(rule.from_port), i32::from(rule.to_port))),
            ),
            Protocol::All => ("-1", None),
        };
        let peer = match &rule.peer {
            Peer::Cidr(c) if c.contains(':') => RulePeer::CidrV6(c.clone()),
            Peer::Cidr(c) => RulePeer::Cidr(c.clone()),
            Peer::Group(r) => RulePeer::Group(resolve(r)?),
            Peer::Itself => RulePeer::Group(self_id.to_string()),
        };
        let key = RuleKey {
            protocol: protocol.to_string(),
            ports,
            peer,
        };
        out.entry(key).or_insert_with(|| rule.description.clone());
    }
    Ok(out)
}

/// Flatten AWS permissions (one per protocol and ports, many peers) into one rule per peer.
pub(super) fn have_rules(perms: &[IpPermission]) -> BTreeSet<RuleKey> {
    let mut out = BTreeSet::new();
    for p in perms {
        let protocol = norm_protocol(p.ip_protocol().unwrap_or("-1"));
        let ports = if protocol == "-1" {
            None
        } else {
            Some((p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1)))
        };
        let peers = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(|c| RulePeer::Cidr(c.to_string())))
            .chain(
                p.ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6().map(|c| RulePeer::CidrV6(c.to_string()))),
            )
            .chain(
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id().map(|c| RulePeer::Group(c.to_string()))),
            )
            .chain(p.prefix_list_ids().iter().filter_map(|l| {
                l.prefix_list_id()
                    .map(|c| RulePeer::PrefixList(c.to_string()))
            }));
        for peer in peers {
            out.insert(RuleKey {
                protocol: protocol.clone(),
                ports,
                peer,
            });
        }
    }
    out
}

/// Rules to authorize (with their descriptions) and rules to revoke.
pub(super) fn diff_rules(
    want: &BTreeMap<RuleKey, String>,
    have: &BTreeSet<RuleKey>,
) -> (Vec<(RuleKey, String)>, Vec<RuleKey>) {
    let missing = want
        .iter()
        .filter(|(k, _)| !have.contains(*k))
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    let extra = have
        .iter()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    (missing, extra)
}

/// "tcp 443 from 10.0.0.0/16", "all traffic to 0.0.0.0/0".
pub(super) fn rule_text(
    key: &RuleKey,
    direction: Direction,
    name: &dyn Fn(&str) -> String,
) -> String {
    let what = match (key.protocol.as_str(), key.ports) {
        ("-1", _) => "all traffic".to_string(),
        (p, Some((from, to))) if from == to => format!("{p} {from}"),
        (p, Some((from, to))) => format!("{p} {from}-{to}"),
        (p, None) => p.to_string(),
    };
    let peer = match &key.peer {
        RulePeer::Cidr(c) | RulePeer::CidrV6(c) => c.clone(),
        RulePeer::Group(g) => format!("group {}", name(g)),
        RulePeer::PrefixList(l) => format!("prefix list {l}"),
    };
    let preposition = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    format!("{what} {preposition} {peer}")
}

pub(super) fn rule_drift(
    direction: Direction,
    missing: &[(RuleKey, String)],
    extra: &[RuleKey],
    name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let label = direction.label();
    missing
        .iter()
        .map(|(k, _)| format!("{label} rule missing: {}", rule_text(k, direction, name)))
        .chain(extra.iter().map(|k| {
            format!(
                "{label} rule not in spec: {}",
                rule_text(k, direction, name)
            )
        }))
        .collect()
}

pub(super) fn to_permission(key: &RuleKey, description: Option<&str>) -> IpPermission {
    let description = description.filter(|d| !d.is_empty()).map(str::to_string);
    let mut p = IpPermission::builder().ip_protocol(&key.protocol);
    if let Some((from, to)) = key.ports {
        p = p.from_port(from).to_port(to);
    }
    p = match &key.peer {
        RulePeer::Cidr(c) => p.ip_ranges(
            IpRange::builder()
                .cidr_ip(c)
                .set_description(description)
                .build(),
        ),
        RulePeer::CidrV6(c) => p.ipv6_ranges(
            Ipv6Range::builder()
                .cidr_ipv6(c)
                .set_description(description)
                .build(),
        ),
        RulePeer::Group(g) => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(g)
                .set_description(description)
                .build(),
        ),
        RulePeer::PrefixList(l) => p.prefix_list_ids(
            PrefixListId::builder()
                .prefix_list_id(l)
                .set_description(description)
                .build(),
        ),
    };
    p.build()
}

/// Desired ingress and egress rules of a group, as normalized rules.
pub(super) type WantedRules = (BTreeMap<RuleKey, String>, BTreeMap<RuleKey, String>);

pub(super) fn group_wants(
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
    group_id: &str,
) -> Result<WantedRules, MissingRef> {
    let resolve = |r: &Ref| ctx.resolved.cloud_id(r).map(str::to_string);
    Ok((
        want_rules(&s.ingress, group_id, resolve)?,
        want_rules(&s.egress, group_id, resolve)?,
    ))
}

/// The rules of a group that can exist with what `ctx` resolves: a rule naming a group
/// not made yet cannot (the engine adds it in an update once that group exists; see
/// `engine::late`), so it is neither created nor reported missing.
pub(super) fn group_wants_possible(
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
    group_id: &str,
) -> Result<WantedRules, MissingRef> {
    let known = |r: &Rule| !matches!(&r.peer, Peer::Group(g) if ctx.resolved.get(g).is_none());
    let possible = SecurityGroupSpec {
        ingress: s.ingress.iter().filter(|r| known(r)).cloned().collect(),
        egress: s.egress.iter().filter(|r| known(r)).cloned().collect(),
        ..s.clone()
    };
    group_wants(ctx, &possible, group_id)
}

pub(super) fn observe_group(
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
    g: &SecurityGroup,
) -> Result<Observed, CloudError> {
    let group_id = g.group_id().unwrap_or_default();
    let (want_in, want_out) = group_wants_possible(ctx, s, group_id)?;
    let have = GroupRules::of(g);
    let name = |id: &str| {
        if id == group_id {
            "itself".to_string()
        } else {
            named(ctx, id)
        }
    };
    let mut o = Observed::new(group_id, Attrs::None);
    let (missing, extra) = diff_rules(&want_in, &have.ingress);
    o.drift
        .extend(rule_drift(Direction::Ingress, &missing, &extra, &name));
    let (missing, extra) = diff_rules(&want_out, &have.egress);
    o.drift
        .extend(rule_drift(Direction::Egress, &missing, &extra, &name));
    Ok(o)
}

pub(super) async fn create_group(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let name = crate::names::security_group(ctx.env, ctx.id.as_str());
    let created = cloud
        .ec2
        .create_security_group()
        .group_name(&name)
        .description(&s.description)
        .vpc_id(vpc)
        .tag_specifications(tag_spec(ResourceType::SecurityGroup, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateSecurityGroup", e));
    let (id, have) = match created {
        Ok(out) => (
            created_id("CreateSecurityGroup", out.group_id())?,
            // A new VPC group starts with AWS's allow-all egress rule and nothing else.
            GroupRules {
                ingress: BTreeSet::new(),
                egress: BTreeSet::from([RuleKey::all_traffic_anywhere()]),
                descriptions: BTreeMap::new(),
            },
        ),
        // The SDK retried a call whose reply was lost, and the first one went through:
        // the group is there under its name. Take it if it carries our tags.
        Err(e) if e.code() == Some("InvalidGroup.Duplicate") => {
            let lookup = Lookup::Filters(vec![filter("vpc-id", vpc), filter("group-name", &name)]);
            let group = describe_groups(cloud, &lookup)
                .await?
                .into_iter()
                .next()
                .ok_or(e)?;
            let ours = tag_value(group.tags(), TAG_ENV) == Some(ctx.env)
                && tag_value(group.tags(), TAG_ID) == Some(ctx.id.as_str());
            if !ours {
                return Err(CloudError::Refused(format!(
                    "security group `{name}` already exists in {vpc} without the tags \
                     {TAG_ENV}={}, {TAG_ID}={}; rename or remove it",
                    ctx.env, ctx.id
                )));
            }
            let id = group.group_id().unwrap_or_default().to_string();
            (id, GroupRules::of(&group))
        }
        Err(e) => return Err(e),
    };
    // Rules naming groups not made yet come in the engine's update step.
    let (want_in, want_out) = group_wants_possible(ctx, s, &id)?;
    converge_rules(cloud, &id, &want_in, &want_out, &have).await?;
    if let Some(description) = want_out
        .get(&RuleKey::all_traffic_anywhere())
        .filter(|d| !d.is_empty())
    {
        // The default rule was kept rather than re-added; give it the spec's description.
        cloud
            .ec2
            .update_security_group_rule_descriptions_egress()
            .group_id(&id)
            .ip_permissions(to_permission(
                &RuleKey::all_traffic_anywhere(),
                Some(description),
            ))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateSecurityGroupRuleDescriptionsEgress", e))?;
    }
    Ok(Observed::new(id, Attrs::None))
}

/// Revoke the rules the spec does not have, then authorize the missing ones. Only rules
/// change, never the group.
pub(super) async fn converge_group_rules(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
    group_id: &str,
    have: &GroupRules,
) -> Result<(), CloudError> {
    let (want_in, want_out) = group_wants(ctx, s, group_id)?;
    converge_rules(cloud, group_id, &want_in, &want_out, have).await
}

/// Revoke what is not wanted and authorize what is missing; both directions, and in each
/// the revoke and the authorize, at once (the rules they touch differ).
async fn converge_rules(
    cloud: &AwsCloud,
    group_id: &str,
    want_in: &BTreeMap<RuleKey, String>,
    want_out: &BTreeMap<RuleKey, String>,
    have: &GroupRules,
) -> Result<(), CloudError> {
    futures::try_join!(
        converge_direction(
            cloud,
            group_id,
            Direction::Ingress,
            want_in,
            &have.ingress,
            have
        ),
        converge_direction(
            cloud,
            group_id,
            Direction::Egress,
            want_out,
            &have.egress,
            have
        ),
    )?;
    Ok(())
}

async fn converge_direction(
    cloud: &AwsCloud,
    group_id: &str,
    direction: Direction,
    want: &BTreeMap<RuleKey, String>,
    have: &BTreeSet<RuleKey>,
    live: &GroupRules,
) -> Result<(), CloudError> {
    let (missing, extra) = diff_rules(want, have);
    let revoke = async {
        if extra.is_empty() {
            return Ok(());
        }
        // With the live rule's description: AWS matches a revoke without it, moto only
        // with it.
        let perms: Vec<IpPermission> = extra.iter().map(|k| live.revoke_permission(k)).collect();
        revoke_rules(cloud, group_id, direction, perms).await
    };
    let authorize = async {
        if missing.is_empty() {
            return Ok(());
        }
        authorize_missing(cloud, group_id, direction, want, missing).await
    };
    futures::try_join!(revoke, authorize).map(|_| ())
}

/// Authorize `missing`. EC2 refuses a whole batch with `InvalidPermission.Duplicate` when
/// one of its rules exists already (a retried call that went through, someone else's
/// change): then read the group again and authorize what is still missing; as a last
/// resort one rule per call, where a duplicate means that rule is there.
async fn authorize_missing(
    cloud: &AwsCloud,
    group_id: &str,
    direction: Direction,
    want: &BTreeMap<RuleKey, String>,
    mut missing: Vec<(RuleKey, String)>,
) -> Result<(), CloudError> {
    for _ in 0..3 {
        if missing.is_empty() {
            return Ok(());
        }
        let perms: Vec<IpPermission> = missing
            .iter()
            .map(|(k, d)| to_permission(k, Some(d)))
            .collect();
        match authorize_rules(cloud, group_id, direction, perms).await {
            Err(e) if is_duplicate(&e) => {
                let group = describe_groups(cloud, &Lookup::Id(group_id.to_string()))
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| vanished(Kind::SecurityGroup, group_id))?;
                let have = GroupRules::of(&group);
                let have = match direction {
                    Direction::Ingress => &have.ingress,
                    Direction::Egress => &have.egress,
                };
                missing = diff_rules(want, have).0;
            }
            other => return other,
        }
    }
    for (key, description) in missing {
        match authorize_rules(
            cloud,
            group_id,
            direction,
            vec![to_permission(&key, Some(&description))],
        )
        .await
        {
            Err(e) if is_duplicate(&e) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Rules of `group` that name another security group: what makes two groups that point at
/// each other undeletable (each is "in use" by the other's rule).
pub(super) fn references_to_others(group_id: &str, rules: &BTreeSet<RuleKey>) -> Vec<RuleKey> {
    rules
        .iter()
        .filter(|k| matches!(&k.peer, RulePeer::Group(g) if g != group_id))
        .cloned()
        .collect()
}

/// Before deleting a group: revoke its rules that name other groups, so that groups
/// referring to each other can go at any parallelism, even without a state file to order
/// them. Already gone is fine.
pub(super) async fn revoke_group_references(
    cloud: &AwsCloud,
    group_id: &str,
) -> Result<(), CloudError> {
    let Some(group) =
        gone_is_none(describe_groups(cloud, &Lookup::Id(group_id.to_string())).await)?
            .and_then(first)
    else {
        return Ok(());
    };
    let have = GroupRules::of(&group);
    for (direction, rules) in [
        (Direction::Ingress, &have.ingress),
        (Direction::Egress, &have.egress),
    ] {
        let refs = references_to_others(group_id, rules);
        if !refs.is_empty() {
            let perms = refs.iter().map(|k| have.revoke_permission(k)).collect();
            gone_is_ok(revoke_rules(cloud, group_id, direction, perms).await)?;
        }
    }
    Ok(())
}

fn is_duplicate(e: &CloudError) -> bool {
    e.code() == Some("InvalidPermission.Duplicate")
}

pub(super) async fn revoke_rules(
    cloud: &AwsCloud,
    group_id: &str,
    direction: Direction,
    perms: Vec<IpPermission>,
) -> Result<(), CloudError> {
    let perms = Some(perms);
    let result = settle(cloud, || async {
        match direction {
            Direction::Ingress => cloud
                .ec2
                .revoke_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("RevokeSecurityGroupIngress", e))
                .or_else(already_revoked),
            Direction::Egress => cloud
                .ec2
                .revoke_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("RevokeSecurityGroupEgress", e))
                .or_else(already_revoked),
        }
    })
    .await;
    result
}

/// A rule someone else revoked already: the goal is reached. (Decided inside the call, so
/// that `settle`, which waits out "not found" of a group created a moment ago, does not
/// wait on it.)
fn already_revoked(e: CloudError) -> Result<(), CloudError> {
    if e.code() == Some("InvalidPermission.NotFound") {
        Ok(())
    } else {
        Err(e)
    }
}

pub(super) async fn authorize_rules(
    cloud: &AwsCloud,
    group_id: &str,
    direction: Direction,
    perms: Vec<IpPermission>,
) -> Result<(), CloudError> {
    let perms = Some(perms);
    let result = settle(cloud, || async {
        match direction {
            Direction::Ingress => cloud
                .ec2
                .authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("AuthorizeSecurityGroupIngress", e)),
            Direction::Egress => cloud
                .ec2
                .authorize_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("AuthorizeSecurityGroupEgress", e)),
        }
    })
    .await;
    // `InvalidPermission.Duplicate` is passed on: the batch was refused whole, so the
    // caller must find out what is still missing (see `authorize_missing`).
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: Protocol, from: u16, to: u16, peer: Peer) -> Rule {
        Rule {
            protocol,
            from_port: from,
            to_port: to,
            peer,
            description: format!("{protocol:?} {from}"),
        }
    }

    fn resolve(r: &Ref) -> Result<String, MissingRef> {
        match r.as_str() {
            "sg-lb" => Ok("sg-222".into()),
            _ => Err(MissingRef(r.clone())),
        }
    }

    fn key(protocol: &str, ports: Option<(i32, i32)>, peer: RulePeer) -> RuleKey {
        RuleKey {
            protocol: protocol.into(),
            ports,
            peer,
        }
    }

    #[test]
    fn only_rules_naming_other_groups_are_cross_references() {
        let rules = BTreeSet::from([
            key("tcp", Some((22, 22)), RulePeer::Group("sg-other".into())),
            key("tcp", Some((443, 443)), RulePeer::Group("sg-self".into())),
            key("tcp", Some((80, 80)), RulePeer::Cidr("10.0.0.0/16".into())),
        ]);
        assert_eq!(
            references_to_others("sg-self", &rules),
            vec![key(
                "tcp",
                Some((22, 22)),
                RulePeer::Group("sg-other".into())
            )]
        );
    }

    #[test]
    fn spec_rules_normalize_peers_and_ports() {
        let rules = vec![
            rule(Protocol::Tcp, 443, 443, Peer::Cidr("10.0.0.0/16".into())),
            rule(Protocol::All, 0, 65535, Peer::Itself),
            rule(Protocol::Udp, 8472, 8472, Peer::Group("sg-lb".into())),
            rule(Protocol::Tcp, 22, 22, Peer::Cidr("::/0".into())),
        ];
        let want = want_rules(&rules, "sg-111", resolve).unwrap();
        let keys: Vec<&RuleKey> = want.keys().collect();
        assert!(keys.contains(&&key(
            "tcp",
            Some((443, 443)),
            RulePeer::Cidr("10.0.0.0/16".into())
        )));
        assert!(keys.contains(&&key("-1", None, RulePeer::Group("sg-111".into()))));
        assert!(keys.contains(&&key(
            "udp",
            Some((8472, 8472)),
            RulePeer::Group("sg-222".into())
        )));
        assert!(keys.contains(&&key(
            "tcp",
            Some((22, 22)),
            RulePeer::CidrV6("::/0".into())
        )));
        assert_eq!(
            want[&key(
                "tcp",
                Some((443, 443)),
                RulePeer::Cidr("10.0.0.0/16".into())
            )],
            "Tcp 443"
        );
    }

    #[test]
    fn unknown_group_reference_is_an_error() {
        let rules = vec![rule(Protocol::Tcp, 1, 1, Peer::Group("nope".into()))];
        let err = want_rules(&rules, "sg-111", resolve).unwrap_err();
        assert_eq!(err.0.as_str(), "nope");
    }

    #[test]
    fn aws_permissions_flatten_to_one_rule_per_peer() {
        let perms = vec![
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(6443)
                .to_port(6443)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/16").build())
                .ip_ranges(IpRange::builder().cidr_ip("10.1.0.0/16").build())
                .user_id_group_pairs(
                    UserIdGroupPair::builder()
                        .group_id("sg-9")
                        .user_id("123")
                        .build(),
                )
                .build(),
            // AWS omits ports for all-traffic rules; some emulators send -1.
            IpPermission::builder()
                .ip_protocol("-1")
                .from_port(-1)
                .to_port(-1)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("6")
                .from_port(80)
                .to_port(81)
                .prefix_list_ids(PrefixListId::builder().prefix_list_id("pl-1").build())
                .build(),
        ];
        let have = have_rules(&perms);
        assert_eq!(have.len(), 5);
        assert!(have.contains(&RuleKey::all_traffic_anywhere()));
        assert!(have.contains(&key(
            "tcp",
            Some((6443, 6443)),
            RulePeer::Group("sg-9".into())
        )));
        assert!(have.contains(&key(
            "tcp",
            Some((80, 81)),
            RulePeer::PrefixList("pl-1".into())
        )));
    }

    #[test]
    fn diff_finds_missing_and_extra_ignoring_descriptions() {
        let rules = vec![
            rule(Protocol::Tcp, 443, 443, Peer::Cidr("0.0.0.0/0".into())),
            rule(Protocol::Tcp, 80, 80, Peer::Cidr("0.0.0.0/0".into())),
        ];
        let want = want_rules(&rules, "sg-1", resolve).unwrap();
        let have = BTreeSet::from([
            key("tcp", Some((443, 443)), RulePeer::Cidr("0.0.0.0/0".into())),
            RuleKey::all_traffic_anywhere(),
        ]);
        let (missing, extra) = diff_rules(&want, &have);
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].0,
            key("tcp", Some((80, 80)), RulePeer::Cidr("0.0.0.0/0".into()))
        );
        assert_eq!(missing[0].1, "Tcp 80");
        assert_eq!(extra, vec![RuleKey::all_traffic_anywhere()]);
        let (missing, extra) = diff_rules(&want, &want.keys().cloned().collect());
        assert!(missing.is_empty() && extra.is_empty());
    }

    #[test]
    fn rule_drift_reads_well() {
        let missing = vec![(
            key("tcp", Some((30000, 32767)), RulePeer::Group("sg-1".into())),
            String::new(),
        )];
        let extra = vec![RuleKey::all_traffic_anywhere()];
        let name = |id: &str| {
            if id == "sg-1" {
                "itself".to_string()
            } else {
                id.to_string()
            }
        };
        let ingress = rule_drift(Direction::Ingress, &missing, &[], &name);
        assert_eq!(
            ingress,
            vec!["ingress rule missing: tcp 30000-32767 from group itself"]
        );
        let egress = rule_drift(Direction::Egress, &[], &extra, &name);
        assert_eq!(
            egress,
            vec!["egress rule not in spec: all traffic to 0.0.0.0/0"]
        );
    }

    #[test]
    fn permission_round_trips_through_normalization() {
        let keys = [
            key("tcp", Some((22, 22)), RulePeer::Cidr("1.2.3.4/32".into())),
            key("-1", None, RulePeer::Group("sg-5".into())),
            key("udp", Some((53, 53)), RulePeer::CidrV6("::/0".into())),
            key("tcp", Some((1, 2)), RulePeer::PrefixList("pl-7".into())),
        ];
        let perms: Vec<IpPermission> = keys.iter().map(|k| to_permission(k, Some("why"))).collect();
        assert_eq!(have_rules(&perms), keys.iter().cloned().collect());
        assert_eq!(perms[0].ip_ranges()[0].description(), Some("why"));
        assert_eq!(
            to_permission(&keys[0], Some("")).ip_ranges()[0].description(),
            None
        );
        assert_eq!(perms[1].from_port(), None);
    }

    #[test]
    fn a_revoke_carries_the_live_rule_s_description() {
        // moto revokes a group rule only when the description matches too (AWS does not
        // need it): the revoke sends what the live rule has.
        let group = SecurityGroup::builder()
            .group_id("sg-nodes")
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id("sg-reg")
                            .description("ssh from the bastion")
                            .build(),
                    )
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-other").build())
                    .ip_ranges(
                        IpRange::builder()
                            .cidr_ip("10.0.0.0/8")
                            .description("vpc")
                            .build(),
                    )
                    .build(),
            )
            .build();
        let rules = GroupRules::of(&group);
        let key = |peer: RulePeer| RuleKey {
            protocol: "tcp".into(),
            ports: Some((22, 22)),
            peer,
        };
        let revoke = rules.revoke_permission(&key(RulePeer::Group("sg-reg".into())));
        assert_eq!(
            revoke.user_id_group_pairs()[0].description(),
            Some("ssh from the bastion")
        );
        let revoke = rules.revoke_permission(&key(RulePeer::Group("sg-other".into())));
        assert_eq!(revoke.user_id_group_pairs()[0].description(), None);
        let revoke = rules.revoke_permission(&key(RulePeer::Cidr("10.0.0.0/8".into())));
        assert_eq!(revoke.ip_ranges()[0].description(), Some("vpc"));
    }
}
