//! Claiming: tag a resource made before lineage tags existed with this state's
//! `provision:lineage` and `provision:origin`, once the operator adopted it (`--adopt`) or
//! the state already records it. One call per resource, in each service's own tagging API;
//! DNS records take no tags: their ownership marker is rewritten with the lineage.

use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext};
use crate::model::{Kind, Observed, TAG_LINEAGE, TAG_ORIGIN};

/// The owner tags of `ctx` (origin only when the state knows it).
fn owner_pairs(ctx: &OpContext<'_>) -> Vec<(&'static str, String)> {
    let mut pairs = vec![(TAG_LINEAGE, ctx.owner.lineage.clone())];
    if !ctx.owner.origin.is_empty() {
        pairs.push((TAG_ORIGIN, ctx.owner.origin.clone()));
    }
    pairs
}

pub async fn claim(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    current: &Observed,
) -> Result<(), CloudError> {
    let id = current.cloud_id.as_str();
    let pairs = owner_pairs(ctx);
    match kind {
        Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => {
            let mut req = cloud.elb.add_tags().resource_arns(id);
            for (k, v) in &pairs {
                req = req.tags(
                    aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                        .key(*k)
                        .value(v)
                        .build(),
                );
            }
            req.send().await.map_err(|e| sdk_error("AddTags", e))?;
        }
        Kind::Database | Kind::DbSubnetGroup => {
            let arn = rds_arn(cloud, kind, id).await?;
            let mut req = cloud.rds.add_tags_to_resource().resource_name(arn);
            for (k, v) in &pairs {
                req = req.tags(aws_sdk_rds::types::Tag::builder().key(*k).value(v).build());
            }
            req.send()
                .await
                .map_err(|e| sdk_error("AddTagsToResource", e))?;
        }
        Kind::HostedZone => {
            let mut req = cloud
                .route53
                .change_tags_for_resource()
                .resource_type(aws_sdk_route53::types::TagResourceType::Hostedzone)
                .resource_id(id.trim_start_matches("/hostedzone/"));
            for (k, v) in &pairs {
                req = req.add_tags(
                    aws_sdk_route53::types::Tag::builder()
                        .key(*k)
                        .value(v)
                        .build(),
                );
            }
            req.send()
                .await
                .map_err(|e| sdk_error("ChangeTagsForResource", e))?;
        }
        Kind::DnsRecord => super::route53::claim_record(cloud, ctx, id).await?,
        Kind::Secret => {
            let mut req = cloud.secrets.tag_resource().secret_id(id);
            for (k, v) in &pairs {
                req = req.tags(
                    aws_sdk_secretsmanager::types::Tag::builder()
                        .key(*k)
                        .value(v)
                        .build(),
                );
            }
            req.send().await.map_err(|e| sdk_error("TagResource", e))?;
        }
        Kind::IamRole | Kind::InstanceProfile => {
            let tags = pairs
                .iter()
                .map(|(k, v)| {
                    aws_sdk_iam::types::Tag::builder()
                        .key(*k)
                        .value(v)
                        .build()
                        .map_err(|e| CloudError::api("TagRole", "BuildError", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if kind == Kind::IamRole {
                cloud
                    .iam
                    .tag_role()
                    .role_name(id)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| sdk_error("TagRole", e))?;
            } else {
                cloud
                    .iam
                    .tag_instance_profile()
                    .instance_profile_name(id)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| sdk_error("TagInstanceProfile", e))?;
            }
        }
        // Every EC2 kind: one CreateTags on its id (a key pair by its `key-…` id).
        _ => {
            let resource = if kind == Kind::KeyPair && !id.starts_with("key-") {
                key_pair_id(cloud, id).await?
            } else {
                id.to_string()
            };
            let mut req = cloud.ec2.create_tags().resources(resource);
            for (k, v) in &pairs {
                req = req.tags(aws_sdk_ec2::types::Tag::builder().key(*k).value(v).build());
            }
            req.send().await.map_err(|e| sdk_error("CreateTags", e))?;
        }
    }
    Ok(())
}

async fn rds_arn(cloud: &AwsCloud, kind: Kind, name: &str) -> Result<String, CloudError> {
    let arn = if kind == Kind::Database {
        cloud
            .rds
            .describe_db_instances()
            .db_instance_identifier(name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeDBInstances", e))?
            .db_instances()
            .first()
            .and_then(|d| d.db_instance_arn())
            .map(str::to_string)
    } else {
        cloud
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeDBSubnetGroups", e))?
            .db_subnet_groups()
            .first()
            .and_then(|g| g.db_subnet_group_arn())
            .map(str::to_string)
    };
    arn.ok_or_else(|| {
        CloudError::api(
            "AddTagsToResource",
            "NotFound",
            format!("{name} has no ARN"),
        )
    })
}

async fn key_pair_id(cloud: &AwsCloud, name: &str) -> Result<String, CloudError> {
    cloud
        .ec2
        .describe_key_pairs()
        .key_names(name)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeKeyPairs", e))?
        .key_pairs()
        .first()
        .and_then(|k| k.key_pair_id())
        .map(str::to_string)
        .ok_or_else(|| {
            CloudError::api(
                "CreateTags",
                "NotFound",
                format!("key pair {name} has no id"),
            )
        })
}
