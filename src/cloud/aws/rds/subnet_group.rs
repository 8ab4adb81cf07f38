//! The DB subnet group (`<env>-db-subnets`): the private subnets the datastore lives in.

use aws_sdk_rds::types::DbSubnetGroup;

use super::super::common::{gone, has_code, missing};
use super::super::{sdk_error, AwsCloud};
use super::{check_owner, owned_id, rds_tags, subnet_group_name, tags_of};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{Attrs, DbSubnetGroupSpec, Kind, Observed, Resolved};

const GROUP_NOT_FOUND: &[&str] = &["DBSubnetGroupNotFoundFault", "DBSubnetGroupNotFound"];

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DbSubnetGroupSpec,
) -> Result<Option<Observed>, CloudError> {
    let name = subnet_group_name(ctx.env);
    let Some(group) = describe(cloud, &name).await? else {
        return Ok(None);
    };
    let arn = group
        .db_subnet_group_arn()
        .ok_or_else(|| missing("DescribeDBSubnetGroups", "ARN"))?;
    let tags = tags_of(cloud, arn).await?;
    check_owner(ctx, Kind::DbSubnetGroup, &name, &tags)?;
    Ok(Some(observe(ctx.resolved, spec, &group)))
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DbSubnetGroupSpec,
    name: &str,
) -> Result<Option<Observed>, CloudError> {
    Ok(describe(cloud, name)
        .await?
        .map(|g| observe(ctx.resolved, spec, &g)))
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DbSubnetGroupSpec,
) -> Result<Observed, CloudError> {
    let name = subnet_group_name(ctx.env);
    let subnets = ctx.resolved.cloud_ids(&spec.subnets)?;
    let out = cloud
        .rds
        .create_db_subnet_group()
        .db_subnet_group_name(&name)
        .db_subnet_group_description(format!("provision env {}", ctx.env))
        .set_subnet_ids(Some(subnets))
        .set_tags(Some(rds_tags(ctx)))
        .send()
        .await
        .map_err(|e| sdk_error("CreateDBSubnetGroup", e))?;
    let group = out
        .db_subnet_group()
        .ok_or_else(|| missing("CreateDBSubnetGroup", "subnet group"))?;
    Ok(observe(ctx.resolved, spec, group))
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DbSubnetGroupSpec,
    name: &str,
) -> Result<Observed, CloudError> {
    let group = describe(cloud, name)
        .await?
        .ok_or_else(|| gone(Kind::DbSubnetGroup, name))?;
    let observed = observe(ctx.resolved, spec, &group);
    if observed.drift.is_empty() {
        return Ok(observed);
    }
    let subnets = ctx.resolved.cloud_ids(&spec.subnets)?;
    let out = match cloud
        .rds
        .modify_db_subnet_group()
        .db_subnet_group_name(name)
        .db_subnet_group_description(format!("provision env {}", ctx.env))
        .set_subnet_ids(Some(subnets))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if has_code(&e, GROUP_NOT_FOUND) => return Err(gone(Kind::DbSubnetGroup, name)),
        Err(e) => return Err(sdk_error("ModifyDBSubnetGroup", e)),
    };
    let group = out
        .db_subnet_group()
        .ok_or_else(|| missing("ModifyDBSubnetGroup", "subnet group"))?;
    Ok(observe(ctx.resolved, spec, group))
}

pub async fn delete(cloud: &AwsCloud, name: &str) -> Result<(), CloudError> {
    async move {
        match cloud
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if has_code(&e, GROUP_NOT_FOUND) => Ok(()),
            Err(e) => Err(sdk_error("DeleteDBSubnetGroup", e)),
        }
    }
    .await
}

/// DB subnet groups tagged `provision:env=<env>`.
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let all = match cloud.current_survey() {
        Some(survey) => {
            survey
                .lists
                .get("rds-subnet-groups", || all_groups(cloud))
                .await?
        }
        None => all_groups(cloud).await?,
    };
    let tagged = futures::future::try_join_all(
        all.iter()
            .filter_map(|g| Some((g, g.db_subnet_group_arn()?)))
            .map(|(g, arn)| async move { Ok::<_, CloudError>((g, tags_of(cloud, arn).await?)) }),
    )
    .await?;
    Ok(tagged
        .into_iter()
        .filter_map(|(group, tags)| {
            owned_id(&tags, env).map(|id| Owned {
                kind: Kind::DbSubnetGroup,
                id,
                cloud_id: group.db_subnet_group_name().unwrap_or_default().to_string(),
                attrs: Attrs::None,
                owner: crate::model::FoundOwner::from_tags(
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            })
        })
        .collect())
}

/// Every DB subnet group of the region (one page at a time).
async fn all_groups(cloud: &AwsCloud) -> Result<Vec<DbSubnetGroup>, CloudError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .rds
            .describe_db_subnet_groups()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeDBSubnetGroups", e))?;
        all.extend(out.db_subnet_groups().iter().cloned());
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(all)
}

async fn describe(cloud: &AwsCloud, name: &str) -> Result<Option<DbSubnetGroup>, CloudError> {
    // While `plan` surveys, from the one list of the region's groups.
    if let Some(survey) = cloud.current_survey() {
        let all = survey
            .lists
            .get("rds-subnet-groups", || all_groups(cloud))
            .await?;
        if let Some(g) = all.iter().find(|g| g.db_subnet_group_name() == Some(name)) {
            return Ok(Some(g.clone()));
        }
    }
    match cloud
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_subnet_groups().first().cloned()),
        Err(e) if has_code(&e, GROUP_NOT_FOUND) => Ok(None),
        Err(e) => Err(sdk_error("DescribeDBSubnetGroups", e)),
    }
}

fn observe(resolved: &Resolved, spec: &DbSubnetGroupSpec, group: &DbSubnetGroup) -> Observed {
    let mut drift = Vec::new();
    if let Ok(want) = resolved.cloud_ids(&spec.subnets) {
        let mut have: Vec<String> = group
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_identifier())
            .map(str::to_string)
            .collect();
        have.sort();
        let mut want = want;
        want.sort();
        if have != want {
            drift.push(format!(
                "subnets are [{}], want [{}]",
                have.join(", "),
                want.join(", ")
            ));
        }
    }
    Observed {
        cloud_id: group.db_subnet_group_name().unwrap_or_default().to_string(),
        attrs: Attrs::None,
        drift,
        fixed: Vec::new(),
    }
}
