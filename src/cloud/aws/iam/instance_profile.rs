//! The IAM instance profile: created with its tags, then its role added (a profile holds
//! at most one). Drift: the role missing or another role in its place; `update` puts the
//! spec's role back. After the role is in, the create waits until IAM shows it there;
//! EC2 may still refuse the profile for some seconds after that (`RunInstances` retries).

use std::time::Duration;

use aws_sdk_iam::types::InstanceProfile;

use super::{gone_is_none, gone_is_ok, owner, tags};
use crate::cloud::aws::common::{not_ours, Ownership};
use crate::cloud::aws::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{Attrs, InstanceProfileSpec, Kind, LogicalId, Observed, TAG_ID};

/// How long a create waits for IAM to show the role in the new profile.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

async fn get(cloud: &AwsCloud, name: &str) -> Result<Option<InstanceProfile>, CloudError> {
    let out = gone_is_none(
        cloud
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("GetInstanceProfile", e)),
    )?;
    Ok(out.and_then(|o| o.instance_profile().cloned()))
}

fn roles(p: &InstanceProfile) -> Vec<String> {
    p.roles()
        .iter()
        .map(|r| r.role_name().to_string())
        .collect()
}

/// How the profile's roles differ from `want` (the spec's role name, when known).
pub(super) fn profile_drift(want: Option<&str>, have: &[String]) -> Vec<String> {
    let Some(want) = want else {
        return Vec::new();
    };
    let mut lines: Vec<String> = have
        .iter()
        .filter(|r| r.as_str() != want)
        .map(|r| format!("holds role {r} instead of {want}"))
        .collect();
    if !have.iter().any(|r| r == want) && lines.is_empty() {
        lines.push(format!("role {want} is not in the profile"));
    }
    lines
}

fn observe(p: &InstanceProfile, want_role: Option<&str>) -> Observed {
    let mut o = Observed::new(
        p.instance_profile_name(),
        Attrs::InstanceProfile {
            arn: p.arn().to_string(),
        },
    );
    o.drift = profile_drift(want_role, &roles(p));
    o
}

/// The role name the spec refers to, once the role exists.
fn want_role<'a>(ctx: &'a OpContext<'_>, s: &InstanceProfileSpec) -> Option<&'a str> {
    ctx.resolved.cloud_id(&s.role).ok()
}

pub(super) async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceProfileSpec,
) -> Result<Option<Observed>, CloudError> {
    let Some(p) = get(cloud, &s.name).await? else {
        return Ok(None);
    };
    match owner(&cloud.region, p.tags(), ctx.env, ctx.id.as_str()) {
        Ownership::Ours => Ok(Some(observe(&p, want_role(ctx, s)))),
        other => Err(not_ours(
            Kind::InstanceProfile,
            &s.name,
            ctx.env,
            ctx.id.as_str(),
            &other,
        )),
    }
}

pub(super) async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceProfileSpec,
    name: &str,
) -> Result<Option<Observed>, CloudError> {
    Ok(get(cloud, name)
        .await?
        .map(|p| observe(&p, want_role(ctx, s))))
}

pub(super) async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceProfileSpec,
) -> Result<Observed, CloudError> {
    let created = cloud
        .iam
        .create_instance_profile()
        .instance_profile_name(&s.name)
        .path(&s.path)
        .set_tags(Some(tags(cloud, ctx)?))
        .send()
        .await
        .map_err(|e| sdk_error("CreateInstanceProfile", e));
    match created {
        Ok(_) => {}
        Err(e) if e.code() == Some("EntityAlreadyExists") => {
            let p = get(cloud, &s.name).await?.ok_or_else(|| {
                CloudError::api("CreateInstanceProfile", "Conflict", e.to_string())
            })?;
            let found = owner(&cloud.region, p.tags(), ctx.env, ctx.id.as_str());
            if found != Ownership::Ours {
                return Err(not_ours(
                    Kind::InstanceProfile,
                    &s.name,
                    ctx.env,
                    ctx.id.as_str(),
                    &found,
                ));
            }
        }
        Err(e) => return Err(e),
    }
    update(cloud, ctx, s, &s.name).await
}

/// Put the spec's role in the profile (taking any other out), then wait until IAM
/// shows it there.
pub(super) async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceProfileSpec,
    name: &str,
) -> Result<Observed, CloudError> {
    let role = ctx.resolved.cloud_id(&s.role)?.to_string();
    let p = get(cloud, name)
        .await?
        .ok_or_else(|| crate::cloud::aws::common::gone(Kind::InstanceProfile, name))?;
    let have = roles(&p);
    for other in have.iter().filter(|r| **r != role) {
        super::remove_role_from_profile(cloud, name, other).await?;
    }
    if !have.contains(&role) {
        let added = cloud
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(&role)
            .send()
            .await
            .map_err(|e| sdk_error("AddRoleToInstanceProfile", e));
        match added {
            // A retried call whose first reply was lost: the role is in already.
            Err(e) if e.code() == Some("LimitExceeded") => {}
            other => {
                other?;
            }
        }
    }
    let what = format!("role {role} to show in instance profile {name}");
    crate::cloud::aws::common::poll_until(cloud, ctx.progress, &what, SETTLE_LIMIT, || async {
        use crate::cloud::aws::common::Poll;
        match get(cloud, name).await? {
            Some(p) if roles(&p).contains(&role) => Ok(Poll::Done(observe(&p, Some(&role)))),
            Some(_) => Ok(Poll::Pending("role not visible yet".into())),
            None => Ok(Poll::Pending("profile not visible yet".into())),
        }
    })
    .await
}

pub(super) async fn delete(cloud: &AwsCloud, name: &str) -> Result<(), CloudError> {
    let Some(p) = get(cloud, name).await? else {
        return Ok(());
    };
    for role in roles(&p) {
        super::remove_role_from_profile(cloud, name, &role).await?;
    }
    gone_is_ok(
        cloud
            .iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteInstanceProfile", e)),
    )
}

pub(super) async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let listed: Vec<InstanceProfile> = cloud
        .iam
        .list_instance_profiles()
        .path_prefix(crate::names::iam_path(env))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("ListInstanceProfiles", e))?;
    let names = listed
        .iter()
        .map(|p| p.instance_profile_name().to_string())
        .collect();
    super::owned_of(
        cloud,
        env,
        names,
        |name| async move { get(cloud, &name).await },
        |p: InstanceProfile| {
            let id = super::tag(p.tags(), TAG_ID).unwrap_or(p.instance_profile_name());
            Owned {
                kind: Kind::InstanceProfile,
                id: LogicalId::new(id),
                cloud_id: p.instance_profile_name().to_string(),
                attrs: Attrs::InstanceProfile {
                    arn: p.arn().to_string(),
                },
                owner: crate::model::FoundOwner::from_tags(
                    p.tags().iter().map(|t| (t.key(), t.value())),
                ),
            }
        },
        InstanceProfile::tags,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_foreign_role_is_drift() {
        let have = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(profile_drift(Some("r"), &have(&["r"])).is_empty());
        assert_eq!(
            profile_drift(Some("r"), &have(&[])),
            vec!["role r is not in the profile"]
        );
        assert_eq!(
            profile_drift(Some("r"), &have(&["x"])),
            vec!["holds role x instead of r"]
        );
        // The role not created yet: nothing to compare with.
        assert!(profile_drift(None, &have(&[])).is_empty());
    }
}
