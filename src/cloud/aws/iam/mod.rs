//! IAM: the role and instance profile every machine runs with in `[access] mode = "ssm"`.
//!
//! IAM is global while the rest of an environment lives in one region: names carry the
//! region (`lab-us-east-1-ssm-role`, see `names::iam_role`), every role and profile sits
//! under the path `/provision/<env>/` and carries, besides `provision:env`, `provision:id`
//! and `Name`, the tag `provision:region`. [`list_owned`] lists the env's path and keeps
//! only what is tagged for this env *and region*, so an env of the same name in another
//! region is never taken for a stray and deleted.
//!
//! Names are fixed, so [`find`] asks for the name and checks the tags (a same-named role of
//! someone else is refused, never adopted). Creates are several calls (the role, then its
//! policies; the profile, then its role): a create cut short is found half-made, its
//! missing parts read as drift, and [`update`] completes them. IAM is eventually
//! consistent: a profile is only usable by `RunInstances` some seconds after it was made
//! (the instance create retries, see `ec2::instance`).

use aws_sdk_iam::types::Tag;

use super::common::{ownership, wrong_kind, Ownership};
use super::AwsCloud;
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{tags_for, Kind, Observed, Spec};

mod instance_profile;
mod role;

/// The tag that keeps environments of the same name in different regions apart.
pub const TAG_REGION: &str = "provision:region";

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::IamRole(s) => role::find(cloud, ctx, s).await,
        Spec::InstanceProfile(s) => instance_profile::find(cloud, ctx, s).await,
        other => Err(wrong_kind("iam", other.kind())),
    }
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::IamRole(s) => role::read(cloud, s, cloud_id).await,
        Spec::InstanceProfile(s) => instance_profile::read(cloud, ctx, s, cloud_id).await,
        other => Err(wrong_kind("iam", other.kind())),
    }
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::IamRole(s) => role::create(cloud, ctx, s).await,
        Spec::InstanceProfile(s) => instance_profile::create(cloud, ctx, s).await,
        other => Err(wrong_kind("iam", other.kind())),
    }
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::IamRole(s) => role::update(cloud, s, &current.cloud_id).await,
        Spec::InstanceProfile(s) => {
            instance_profile::update(cloud, ctx, s, &current.cloud_id).await
        }
        other => Err(wrong_kind("iam", other.kind())),
    }
}

pub async fn delete(cloud: &AwsCloud, kind: Kind, current: &Observed) -> Result<(), CloudError> {
    match kind {
        Kind::IamRole => role::delete(cloud, &current.cloud_id).await,
        Kind::InstanceProfile => instance_profile::delete(cloud, &current.cloud_id).await,
        other => Err(wrong_kind("iam", other)),
    }
}

/// The env's roles and instance profiles: both lists at once (one after the other cost a
/// plan a round trip before its first find; `make bench` reports the plan's reads in
/// waves).
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let (mut all, profiles) = futures::try_join!(
        role::list_owned(cloud, env),
        instance_profile::list_owned(cloud, env)
    )?;
    all.extend(profiles);
    Ok(all)
}

/// The tags of a role or profile of `ctx`: the env's, plus the region.
fn tags(cloud: &AwsCloud, ctx: &OpContext<'_>) -> Result<Vec<Tag>, CloudError> {
    tags_for(ctx.env, ctx.owner, ctx.id)
        .into_iter()
        .chain([(TAG_REGION.to_string(), cloud.region.clone())])
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| CloudError::api("Tag", "BuildError", e.to_string()))
        })
        .collect()
}

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == key).map(|t| t.value())
}

/// Whose a role or profile is: ours only when tagged for this env, id *and* region.
fn owner(region: &str, tags: &[Tag], env: &str, id: &str) -> Ownership {
    let found = ownership(tags.iter().map(|t| (t.key(), t.value())), env, id);
    match (found, tag(tags, TAG_REGION)) {
        (Ownership::Ours, Some(tagged)) if tagged == region => Ownership::Ours,
        (Ownership::Ours, tagged) => Ownership::Other {
            env: format!("{env} in region {}", tagged.unwrap_or("(none)")),
            id: id.to_string(),
        },
        (other, _) => other,
    }
}

/// Whether the tags say: this env, this region (any logical id).
fn of_env_here(region: &str, tags: &[Tag], env: &str) -> bool {
    tag(tags, crate::model::TAG_ENV) == Some(env) && tag(tags, TAG_REGION) == Some(region)
}

fn is_no_such_entity(e: &CloudError) -> bool {
    e.code() == Some("NoSuchEntity")
}

/// Take `role` out of `profile`; done when either is gone already.
async fn remove_role_from_profile(
    cloud: &AwsCloud,
    profile: &str,
    role: &str,
) -> Result<(), CloudError> {
    gone_is_ok(
        cloud
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map_err(|e| super::sdk_error("RemoveRoleFromInstanceProfile", e)),
    )
}

/// The owned entries of `listed` (ListRoles / ListInstanceProfiles leave tags out): each
/// read by `get`, all at once, kept when tagged for this env and region.
async fn owned_of<T, F, Fut>(
    cloud: &AwsCloud,
    env: &str,
    names: Vec<String>,
    get: F,
    owned: impl Fn(T) -> Owned,
    tags_of: impl Fn(&T) -> &[Tag],
) -> Result<Vec<Owned>, CloudError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, CloudError>>,
{
    let read = futures::future::try_join_all(names.into_iter().map(get)).await?;
    Ok(read
        .into_iter()
        .flatten()
        .filter(|x| of_env_here(&cloud.region, tags_of(x), env))
        .map(owned)
        .collect())
}

/// `Ok(None)` for IAM's "not found".
fn gone_is_none<T>(r: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_no_such_entity(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn gone_is_ok<T>(r: Result<T, CloudError>) -> Result<(), CloudError> {
    gone_is_none(r).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build().unwrap()
    }

    #[test]
    fn a_role_of_the_same_env_in_another_region_is_not_ours() {
        let here = "us-east-1";
        let tags = |region: &str| {
            vec![
                t("provision:env", "lab"),
                t("provision:id", "ssm-role"),
                t(TAG_REGION, region),
            ]
        };
        assert_eq!(
            owner(here, &tags("us-east-1"), "lab", "ssm-role"),
            Ownership::Ours
        );
        assert!(matches!(
            owner(here, &tags("eu-west-1"), "lab", "ssm-role"),
            Ownership::Other { .. }
        ));
        assert!(of_env_here(here, &tags("us-east-1"), "lab"));
        assert!(!of_env_here(here, &tags("eu-west-1"), "lab"));
        assert!(!of_env_here(here, &tags("us-east-1"), "prod"));
        // Without the region tag: not made by this tool for this region.
        let untagged_region = vec![t("provision:env", "lab"), t("provision:id", "ssm-role")];
        assert!(matches!(
            owner(here, &untagged_region, "lab", "ssm-role"),
            Ownership::Other { .. }
        ));
    }
}
