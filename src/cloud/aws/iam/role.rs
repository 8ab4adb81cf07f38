//! The IAM role: created with its trust policy and tags, then its managed policies
//! attached. Drift: a policy of the spec detached, a policy attached outside provision, a
//! changed description; `update` attaches, detaches and describes it again. Deleting
//! detaches every policy and takes the role out of every instance profile first, as IAM
//! refuses (`DeleteConflict`) otherwise.

use std::collections::BTreeSet;

use aws_sdk_iam::types::Role;

use super::{gone_is_none, gone_is_ok, owner, tags};
use crate::cloud::aws::common::{not_ours, Ownership};
use crate::cloud::aws::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{Attrs, IamRoleSpec, Kind, LogicalId, Observed, TAG_ID};

/// The trust policy that lets `service` (`ec2.amazonaws.com`) assume the role.
pub(super) fn trust_policy(service: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
        }],
    })
    .to_string()
}

async fn get_role(cloud: &AwsCloud, name: &str) -> Result<Option<Role>, CloudError> {
    let out = gone_is_none(
        cloud
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("GetRole", e)),
    )?;
    Ok(out.and_then(|o| o.role().cloned()))
}

/// ARNs of the managed policies attached to the role.
async fn attached(cloud: &AwsCloud, name: &str) -> Result<BTreeSet<String>, CloudError> {
    let policies: Vec<_> = cloud
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("ListAttachedRolePolicies", e))?;
    Ok(policies
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect())
}

/// How the live role differs from the spec, one line each.
pub(super) fn role_drift(
    s: &IamRoleSpec,
    description: Option<&str>,
    have: &BTreeSet<String>,
) -> Vec<String> {
    let want: BTreeSet<String> = s.policies.iter().cloned().collect();
    let mut lines: Vec<String> = want
        .difference(have)
        .map(|p| format!("policy {p} is not attached"))
        .collect();
    lines.extend(
        have.difference(&want)
            .map(|p| format!("policy {p} is attached outside provision")),
    );
    if description.unwrap_or_default() != s.description {
        lines.push("description differs".to_string());
    }
    lines
}

async fn observe(cloud: &AwsCloud, s: &IamRoleSpec, role: &Role) -> Result<Observed, CloudError> {
    let have = attached(cloud, role.role_name()).await?;
    let mut o = Observed::new(
        role.role_name(),
        Attrs::IamRole {
            arn: role.arn().to_string(),
        },
    );
    o.drift = role_drift(s, role.description(), &have);
    Ok(o)
}

pub(super) async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &IamRoleSpec,
) -> Result<Option<Observed>, CloudError> {
    let Some(role) = get_role(cloud, &s.name).await? else {
        return Ok(None);
    };
    match owner(&cloud.region, role.tags(), ctx.env, ctx.id.as_str()) {
        Ownership::Ours => Ok(Some(observe(cloud, s, &role).await?)),
        other => Err(not_ours(
            Kind::IamRole,
            &s.name,
            ctx.env,
            ctx.id.as_str(),
            &other,
        )),
    }
}

pub(super) async fn read(
    cloud: &AwsCloud,
    s: &IamRoleSpec,
    name: &str,
) -> Result<Option<Observed>, CloudError> {
    match get_role(cloud, name).await? {
        Some(role) => Ok(Some(observe(cloud, s, &role).await?)),
        None => Ok(None),
    }
}

pub(super) async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &IamRoleSpec,
) -> Result<Observed, CloudError> {
    let created = cloud
        .iam
        .create_role()
        .role_name(&s.name)
        .path(&s.path)
        .assume_role_policy_document(trust_policy(&s.trusted_service))
        .description(&s.description)
        .set_tags(Some(tags(cloud, ctx)?))
        .send()
        .await
        .map_err(|e| sdk_error("CreateRole", e));
    match created {
        Ok(_) => {}
        // A retried call whose first reply was lost, or a run that stopped before it
        // recorded the role: ours when the tags say so.
        Err(e) if e.code() == Some("EntityAlreadyExists") => {
            let role = get_role(cloud, &s.name)
                .await?
                .ok_or_else(|| CloudError::api("CreateRole", "Conflict", e.to_string()))?;
            let found = owner(&cloud.region, role.tags(), ctx.env, ctx.id.as_str());
            if found != Ownership::Ours {
                return Err(not_ours(
                    Kind::IamRole,
                    &s.name,
                    ctx.env,
                    ctx.id.as_str(),
                    &found,
                ));
            }
        }
        Err(e) => return Err(e),
    }
    converge(cloud, s, &s.name).await?;
    read(cloud, s, &s.name)
        .await?
        .ok_or_else(|| crate::cloud::aws::common::gone(Kind::IamRole, &s.name))
}

/// Attach the spec's policies, detach the others, set the description.
async fn converge(cloud: &AwsCloud, s: &IamRoleSpec, name: &str) -> Result<(), CloudError> {
    let have = attached(cloud, name).await?;
    for policy in &s.policies {
        if !have.contains(policy) {
            cloud
                .iam
                .attach_role_policy()
                .role_name(name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| sdk_error("AttachRolePolicy", e))?;
        }
    }
    for policy in have.iter().filter(|p| !s.policies.contains(p)) {
        gone_is_ok(
            cloud
                .iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| sdk_error("DetachRolePolicy", e)),
        )?;
    }
    Ok(())
}

pub(super) async fn update(
    cloud: &AwsCloud,
    s: &IamRoleSpec,
    name: &str,
) -> Result<Observed, CloudError> {
    let role = get_role(cloud, name)
        .await?
        .ok_or_else(|| crate::cloud::aws::common::gone(Kind::IamRole, name))?;
    converge(cloud, s, name).await?;
    if role.description().unwrap_or_default() != s.description {
        cloud
            .iam
            .update_role()
            .role_name(name)
            .description(&s.description)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateRole", e))?;
    }
    read(cloud, s, name)
        .await?
        .ok_or_else(|| crate::cloud::aws::common::gone(Kind::IamRole, name))
}

pub(super) async fn delete(cloud: &AwsCloud, name: &str) -> Result<(), CloudError> {
    let have = match gone_is_none(attached(cloud, name).await)? {
        Some(have) => have,
        None => return Ok(()),
    };
    for policy in &have {
        gone_is_ok(
            cloud
                .iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| sdk_error("DetachRolePolicy", e)),
        )?;
    }
    let profiles: Vec<_> = gone_is_none(
        cloud
            .iam
            .list_instance_profiles_for_role()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| sdk_error("ListInstanceProfilesForRole", e)),
    )?
    .unwrap_or_default();
    for profile in &profiles {
        super::remove_role_from_profile(cloud, profile.instance_profile_name(), name).await?;
    }
    // `DeleteConflict` (a profile or policy IAM has not let go of yet) is "in use": the
    // engine waits and tries the whole delete again.
    gone_is_ok(
        cloud
            .iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteRole", e)),
    )
}

pub(super) async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let roles: Vec<Role> = cloud
        .iam
        .list_roles()
        .path_prefix(crate::names::iam_path(env))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("ListRoles", e))?;
    let names = roles.iter().map(|r| r.role_name().to_string()).collect();
    super::owned_of(
        cloud,
        env,
        names,
        |name| async move { get_role(cloud, &name).await },
        |role: Role| {
            let id = super::tag(role.tags(), TAG_ID).unwrap_or(role.role_name());
            Owned {
                kind: Kind::IamRole,
                id: LogicalId::new(id),
                cloud_id: role.role_name().to_string(),
                attrs: Attrs::IamRole {
                    arn: role.arn().to_string(),
                },
                owner: crate::model::FoundOwner::from_tags(
                    role.tags().iter().map(|t| (t.key(), t.value())),
                ),
            }
        },
        Role::tags,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> IamRoleSpec {
        IamRoleSpec {
            name: "lab-us-east-1-ssm-role".into(),
            path: "/provision/lab/".into(),
            trusted_service: "ec2.amazonaws.com".into(),
            policies: vec!["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".into()],
            description: "d".into(),
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_detached_or_foreign_policy_is_drift() {
        let core = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
        let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
        assert!(role_drift(&spec(), Some("d"), &set(&[core])).is_empty());
        assert_eq!(
            role_drift(&spec(), Some("d"), &set(&[])),
            vec![format!("policy {core} is not attached")]
        );
        assert_eq!(
            role_drift(&spec(), Some("other"), &set(&[core, admin])),
            vec![
                format!("policy {admin} is attached outside provision"),
                "description differs".to_string()
            ]
        );
    }

    #[test]
    fn the_trust_policy_lets_the_service_assume_the_role() {
        let doc: serde_json::Value =
            serde_json::from_str(&trust_policy("ec2.amazonaws.com")).unwrap();
        let statement = &doc["Statement"][0];
        assert_eq!(statement["Principal"]["Service"], "ec2.amazonaws.com");
        assert_eq!(statement["Action"], "sts:AssumeRole");
        assert_eq!(statement["Effect"], "Allow");
    }
}
