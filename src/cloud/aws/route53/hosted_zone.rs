//! The private hosted zone on the VPC: created with the step token as CallerReference, tagged in a call of its own (a zone missing its tags is drift and gets them).

use super::*;

pub(super) async fn find_zone(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &HostedZoneSpec,
) -> Result<Option<Observed>, CloudError> {
    let zones = all_zones(cloud).await?;
    if let Some(zone) = zones.iter().find(|z| z.caller_reference() == ctx.token) {
        return read_zone(cloud, ctx, spec, bare_zone_id(zone.id())).await;
    }
    let candidates: Vec<String> = zones
        .iter()
        .filter(|z| {
            normalize(z.name()) == normalize(&spec.name)
                && z.config().is_some_and(|c| c.private_zone())
        })
        .map(|z| bare_zone_id(z.id()).to_string())
        .collect();
    let tags = zone_tags(cloud, &candidates).await?;
    let our_vpc = ctx.resolved.cloud_id(&spec.vpc).ok();
    let mut ours: Vec<&String> = Vec::new();
    for id in &candidates {
        let pairs = tags.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
        match ownership(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ctx.env,
            ctx.id.as_str(),
        ) {
            Ownership::Ours => ours.push(id),
            // Created by a run that stopped before tagging it (and whose token is lost):
            // an untagged private zone of this name on this env's own VPC.
            Ownership::Untagged if our_vpc.is_some() => {
                let out = cloud
                    .route53
                    .get_hosted_zone()
                    .id(id.as_str())
                    .send()
                    .await
                    .map_err(|e| sdk_error("GetHostedZone", e))?;
                if out.vpcs().iter().any(|v| v.vpc_id() == our_vpc) {
                    ours.push(id);
                }
            }
            _ => {}
        }
    }
    match ours.as_slice() {
        [] => Ok(None),
        [id] => read_zone(cloud, ctx, spec, id).await,
        many => Err(CloudError::Refused(format!(
            "{} private zones named `{}` are tagged for env `{}` and id `{}` ({}); delete the extra ones",
            many.len(),
            spec.name,
            ctx.env,
            ctx.id,
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

pub(super) async fn create_zone(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &HostedZoneSpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&spec.vpc)?;
    let result = cloud
        .route53
        .create_hosted_zone()
        .name(&spec.name)
        .caller_reference(ctx.token)
        .vpc(
            Vpc::builder()
                .vpc_region(VpcRegion::from(cloud.region.as_str()))
                .vpc_id(vpc)
                .build(),
        )
        .hosted_zone_config(
            HostedZoneConfig::builder()
                .comment(format!("provision env {}", ctx.env))
                .private_zone(true)
                .build(),
        )
        .send()
        .await;
    let (id, change) = match result {
        Ok(out) => {
            let zone = out
                .hosted_zone()
                .ok_or_else(|| missing("CreateHostedZone", "hosted zone"))?;
            (
                bare_zone_id(zone.id()).to_string(),
                out.change_info().map(|c| c.id().to_string()),
            )
        }
        // The same CallerReference: an earlier attempt of this step went through.
        Err(e) if has_code(&e, &["HostedZoneAlreadyExists"]) => {
            let zones = all_zones(cloud).await?;
            let zone = zones
                .iter()
                .find(|z| z.caller_reference() == ctx.token)
                .ok_or_else(|| sdk_error("CreateHostedZone", e))?;
            (bare_zone_id(zone.id()).to_string(), None)
        }
        Err(e) => return Err(sdk_error("CreateHostedZone", e)),
    };
    tag_zone(cloud, ctx, &id).await?;
    if let Some(change) = change {
        wait_insync(
            cloud,
            ctx,
            &change,
            &format!("hosted zone {} ({id})", spec.name),
        )
        .await?;
    }
    read_zone(cloud, ctx, spec, &id)
        .await?
        .ok_or_else(|| super::super::common::gone(Kind::HostedZone, &id))
}

/// Associate the env's VPC with the zone again if something took it away (a private zone
/// answers only inside the VPCs it is associated with).
pub(super) async fn associate_vpc(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &HostedZoneSpec,
    id: &str,
) -> Result<(), CloudError> {
    let vpc = ctx.resolved.cloud_id(&spec.vpc)?;
    let out = cloud
        .route53
        .get_hosted_zone()
        .id(id)
        .send()
        .await
        .map_err(|e| sdk_error("GetHostedZone", e))?;
    if out.vpcs().iter().any(|v| v.vpc_id() == Some(vpc)) {
        return Ok(());
    }
    cloud
        .route53
        .associate_vpc_with_hosted_zone()
        .hosted_zone_id(id)
        .vpc(
            Vpc::builder()
                .vpc_region(VpcRegion::from(cloud.region.as_str()))
                .vpc_id(vpc)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("AssociateVPCWithHostedZone", e))?;
    Ok(())
}

/// Route53 tags a zone in a call of its own, after CreateHostedZone.
pub(super) async fn tag_zone(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
) -> Result<(), CloudError> {
    let tags: Vec<Tag> = tags_for(ctx.env, ctx.owner, ctx.id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    cloud
        .route53
        .change_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(id)
        .set_add_tags(Some(tags))
        .send()
        .await
        .map_err(|e| sdk_error("ChangeTagsForResource", e))?;
    Ok(())
}

pub(super) async fn read_zone(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &HostedZoneSpec,
    id: &str,
) -> Result<Option<Observed>, CloudError> {
    let out = match cloud.route53.get_hosted_zone().id(id).send().await {
        Ok(out) => out,
        Err(e) if has_code(&e, NO_ZONE) => return Ok(None),
        Err(e) => return Err(sdk_error("GetHostedZone", e)),
    };
    let zone = out
        .hosted_zone()
        .ok_or_else(|| missing("GetHostedZone", "hosted zone"))?;
    // The name and privacy are fixed when the zone is made.
    let (mut drift, mut fixed) = (Vec::new(), Vec::new());
    let name = normalize(zone.name());
    if name != normalize(&spec.name) {
        fixed.push(format!(
            "zone name is {name}, want {}",
            normalize(&spec.name)
        ));
    }
    if !zone.config().is_some_and(|c| c.private_zone()) {
        fixed.push("zone is public, want private".to_string());
    }
    if let Ok(vpc) = ctx.resolved.cloud_id(&spec.vpc) {
        if !out.vpcs().iter().any(|v| v.vpc_id() == Some(vpc)) {
            drift.push(format!("zone is not associated with VPC {vpc}"));
        }
    }
    let zone_id = bare_zone_id(zone.id()).to_string();
    let tags = zone_tags(cloud, std::slice::from_ref(&zone_id)).await?;
    let pairs = tags.get(&zone_id).map(Vec::as_slice).unwrap_or_default();
    if ownership(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ctx.env,
        ctx.id.as_str(),
    ) != Ownership::Ours
    {
        drift.push(format!(
            "zone is not tagged {TAG_ENV}={}, {TAG_ID}={}",
            ctx.env, ctx.id
        ));
    }
    Ok(Some(Observed {
        cloud_id: bare_zone_id(zone.id()).to_string(),
        attrs: Attrs::HostedZone { name },
        drift,
        fixed,
    }))
}

pub(super) async fn delete_zone(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
) -> Result<(), CloudError> {
    let result = retry_in_use(
        cloud,
        ctx.progress,
        &format!("hosted zone {id}"),
        || async move {
            match cloud.route53.delete_hosted_zone().id(id).send().await {
                Ok(_) => Ok(()),
                Err(e) if has_code(&e, NO_ZONE) => Ok(()),
                Err(e) => Err(sdk_error("DeleteHostedZone", e)),
            }
        },
    )
    .await;
    match result {
        // Name the records that keep the zone from being deleted.
        Err(CloudError::Timeout { what, waited }) => {
            let blocking: Vec<String> = all_records(cloud, id)
                .await
                .unwrap_or_default()
                .iter()
                .filter(|r| !matches!(r.r#type(), RrType::Soa | RrType::Ns))
                .map(|r| format!("{} {}", normalize(r.name()), r.r#type().as_str()))
                .collect();
            Err(CloudError::Timeout {
                what: format!("{what}; records left in the zone: {}", blocking.join(", ")),
                waited,
            })
        }
        other => other,
    }
}
