//! RDS: the DB subnet group ([`subnet_group`]) and the MySQL instance that K3s uses as its
//! datastore ([`database`]), plus reading the master password back from Secrets Manager.
//!
//! Names are fixed per environment (`<env>-db-subnets`, `<env>-datastore`) and are the
//! cloud ids. `find` looks them up by name and refuses a same-named resource whose tags name
//! another environment. `list_owned` covers both kinds by their tags.

use aws_sdk_rds::types::Tag;

use super::common::{not_ours, owner_tags, ownership, wrong_kind, Ownership};
use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{tags_for, Kind, LogicalId, Observed, Spec};

mod database;
mod subnet_group;
#[cfg(test)]
pub(super) mod testing;

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::DbSubnetGroup(s) => subnet_group::find(cloud, ctx, s).await,
        Spec::Database(s) => database::find(cloud, ctx, s).await,
        other => Err(wrong_kind("RDS", other.kind())),
    }
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::DbSubnetGroup(s) => subnet_group::read(cloud, ctx, s, cloud_id).await,
        Spec::Database(s) => database::read(cloud, ctx, s, cloud_id).await,
        other => Err(wrong_kind("RDS", other.kind())),
    }
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::DbSubnetGroup(s) => subnet_group::create(cloud, ctx, s).await,
        Spec::Database(s) => database::create(cloud, ctx, s).await,
        other => Err(wrong_kind("RDS", other.kind())),
    }
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::DbSubnetGroup(s) => subnet_group::update(cloud, ctx, s, &current.cloud_id).await,
        Spec::Database(s) => database::update(cloud, ctx, s, current).await,
        other => Err(wrong_kind("RDS", other.kind())),
    }
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    current: &Observed,
) -> Result<(), CloudError> {
    match kind {
        Kind::DbSubnetGroup => subnet_group::delete(cloud, &current.cloud_id).await,
        Kind::Database => database::delete(cloud, ctx, &current.cloud_id).await,
        other => Err(wrong_kind("RDS", other)),
    }
}

/// Checks `plan` makes before any change: the datastore's engine version must exist.
pub async fn preflight(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<(), CloudError> {
    match spec {
        Spec::Database(s) => database::preflight(cloud, ctx, s).await,
        _ => Ok(()),
    }
}

/// DB instances and DB subnet groups tagged `provision:env=<env>`.
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let (databases, groups) = futures::try_join!(
        database::list_owned(cloud, env),
        subnet_group::list_owned(cloud, env)
    )?;
    Ok([databases, groups].concat())
}

/// The master password held by a secret (read by the Secrets Manager adapter).
pub(super) use super::secretsmanager::secret_value as secret_password;

// ---------------------------------------------------------------------------------------
// Names

pub fn subnet_group_name(env: &str) -> String {
    crate::names::db_subnet_group(env)
}

pub fn database_identifier(env: &str) -> String {
    crate::names::db_instance(env)
}

/// `<env>-final-<YYYYMMDD-HHMMSS>`, unique per second.
pub fn final_snapshot_identifier(env: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    crate::names::final_snapshot(env, now)
}

fn rds_tags(ctx: &OpContext<'_>) -> Vec<Tag> {
    tags_for(ctx.env, ctx.owner, ctx.id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

async fn tags_of(cloud: &AwsCloud, arn: &str) -> Result<Vec<(String, String)>, CloudError> {
    let out = cloud
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| sdk_error("ListTagsForResource", e))?;
    Ok(tag_pairs(out.tag_list()))
}

fn check_owner(
    ctx: &OpContext<'_>,
    kind: Kind,
    name: &str,
    tags: &[(String, String)],
) -> Result<(), CloudError> {
    match ownership(
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ctx.env,
        ctx.id.as_str(),
    ) {
        Ownership::Ours => Ok(()),
        other => Err(not_ours(kind, name, ctx.env, ctx.id.as_str(), &other)),
    }
}

fn owned_id(tags: &[(String, String)], env: &str) -> Option<LogicalId> {
    match owner_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        (Some(e), Some(id)) if e == env => Some(LogicalId::from(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_environment() {
        assert_eq!(subnet_group_name("lab"), "lab-db-subnets");
        assert_eq!(database_identifier("lab"), "lab-datastore");
        let at = chrono::DateTime::parse_from_rfc3339("2025-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            final_snapshot_identifier("lab", at),
            "lab-final-20250304-050607"
        );
    }
}
