//! References a create can do without ("late" references): the rules of a security group
//! that name other groups. The group is created without them, so nothing that only needs
//! the group (the database, the instances, other groups) waits for the groups its rules
//! name; an update right after adds them, once those groups exist. The state records what
//! the create applied (the spec without those rules), so a run that stops in between
//! leaves a plain config change ("ingress: N added") for the next plan to finish.

use crate::model::{LogicalId, Peer, Resolved, Spec};

/// The references of `spec` its create does not need.
pub fn late_refs(spec: &Spec) -> Vec<LogicalId> {
    let mut out: Vec<LogicalId> = match spec {
        Spec::SecurityGroup(s) => s
            .ingress
            .iter()
            .chain(&s.egress)
            .filter_map(|r| match &r.peer {
                Peer::Group(g) => Some(g.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

/// `spec` as a create applies it when only `resolved` exists: without the parts that
/// name late references not resolved yet. `None` when nothing is left out.
pub fn applied_part(spec: &Spec, resolved: &Resolved) -> Option<Spec> {
    let missing = |peer: &Peer| matches!(peer, Peer::Group(g) if resolved.get(g).is_none());
    match spec {
        Spec::SecurityGroup(s) if s.ingress.iter().chain(&s.egress).any(|r| missing(&r.peer)) => {
            let mut applied = s.clone();
            applied.ingress.retain(|r| !missing(&r.peer));
            applied.egress.retain(|r| !missing(&r.peer));
            Some(Spec::SecurityGroup(applied))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Observed, Protocol, Rule, SecurityGroupSpec};

    fn rule(peer: Peer) -> Rule {
        Rule {
            protocol: Protocol::Tcp,
            from_port: 443,
            to_port: 443,
            peer,
            description: String::new(),
        }
    }

    fn group() -> Spec {
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: "vpc".into(),
            description: "nodes".into(),
            ingress: vec![
                rule(Peer::Group("sg-lb".into())),
                rule(Peer::Itself),
                rule(Peer::Cidr("10.0.0.0/16".into())),
                rule(Peer::Group("sg-registry".into())),
            ],
            egress: vec![rule(Peer::Group("sg-lb".into()))],
        })
    }

    #[test]
    fn a_group_needs_only_its_vpc_to_be_created() {
        assert_eq!(
            late_refs(&group()),
            vec![LogicalId::new("sg-lb"), LogicalId::new("sg-registry")]
        );
        let Spec::SecurityGroup(s) = group() else {
            unreachable!()
        };
        let vpc_only = Spec::SecurityGroup(SecurityGroupSpec {
            ingress: vec![rule(Peer::Itself)],
            egress: vec![],
            ..s
        });
        assert!(late_refs(&vpc_only).is_empty());
    }

    #[test]
    fn the_applied_part_leaves_out_rules_naming_groups_not_made_yet() {
        let mut resolved = Resolved::default();
        resolved
            .entries
            .insert("sg-lb".into(), Observed::new("sg-1", Default::default()));
        let Some(Spec::SecurityGroup(applied)) = applied_part(&group(), &resolved) else {
            panic!("sg-registry is not made yet")
        };
        assert_eq!(applied.ingress.len(), 3);
        assert!(!applied
            .ingress
            .iter()
            .any(|r| r.peer == Peer::Group("sg-registry".into())));
        assert_eq!(applied.egress.len(), 1);
        resolved.entries.insert(
            "sg-registry".into(),
            Observed::new("sg-2", Default::default()),
        );
        assert_eq!(applied_part(&group(), &resolved), None, "all there");
    }
}
