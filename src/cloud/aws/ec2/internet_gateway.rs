//! The internet gateway and its attachment to the VPC.

use super::*;

pub(super) async fn describe_igws(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<InternetGateway>, CloudError> {
    cloud
        .ec2
        .describe_internet_gateways()
        .set_internet_gateway_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeInternetGateways", e))
}

pub(super) async fn create_igw(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InternetGatewaySpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let out = cloud
        .ec2
        .create_internet_gateway()
        .tag_specifications(tag_spec(ResourceType::InternetGateway, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateInternetGateway", e))?;
    let id = created_id(
        "CreateInternetGateway",
        out.internet_gateway().and_then(|g| g.internet_gateway_id()),
    )?;
    // No idempotency token either: a lost reply leaves a twin (see `remove_vpc_twins`).
    let lookup = Lookup::Filters(owner_filters(ctx.env, ctx.id));
    let found = describe_igws(cloud, &lookup).await?;
    let detached: Vec<InternetGateway> = found
        .into_iter()
        .filter(|g| igw_vpcs(g).is_empty())
        .collect();
    for twin in twins(detached, &id, |g| g.internet_gateway_id()) {
        ctx.progress.status(&format!(
            "deleting {twin}, a twin left by a retried CreateInternetGateway"
        ));
        let _ = gone_is_ok(
            cloud
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(&twin)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteInternetGateway", e)),
        );
    }
    attach_igw(cloud, &id, vpc).await?;
    Ok(Observed::new(id, Attrs::None))
}

pub(super) async fn attach_igw(cloud: &AwsCloud, id: &str, vpc: &str) -> Result<(), CloudError> {
    let result = settle(cloud, || async {
        cloud
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| sdk_error("AttachInternetGateway", e))
    })
    .await;
    match result {
        // A retried call whose first reply was lost: already attached. (Attached to
        // another VPC shows as drift when the gateway is read.)
        Err(e) if e.code() == Some("Resource.AlreadyAssociated") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// VPCs the gateway is attached to (or attaching to).
pub(super) fn igw_vpcs(g: &InternetGateway) -> Vec<String> {
    use aws_sdk_ec2::types::AttachmentStatus;
    g.attachments()
        .iter()
        .filter(|a| {
            !matches!(
                a.state(),
                Some(AttachmentStatus::Detaching | AttachmentStatus::Detached)
            )
        })
        .filter_map(|a| a.vpc_id().map(str::to_string))
        .collect()
}

pub(super) fn observe_igw(
    ctx: &OpContext<'_>,
    s: &InternetGatewaySpec,
    g: &InternetGateway,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let mut o = Observed::new(g.internet_gateway_id().unwrap_or_default(), Attrs::None);
    if !igw_vpcs(g).iter().any(|v| v == vpc) {
        o.drift
            .push(format!("not attached to vpc {}", named(ctx, vpc)));
    }
    Ok(o)
}

pub(super) async fn update_igw(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InternetGatewaySpec,
    id: &str,
) -> Result<(), CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let gateway = describe_igws(cloud, &Lookup::Id(id.to_string()))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| vanished(Kind::InternetGateway, id))?;
    let attached = igw_vpcs(&gateway);
    if attached.iter().any(|v| v == vpc) {
        return Ok(());
    }
    for other in attached {
        detach_igw(cloud, id, &other).await?;
    }
    attach_igw(cloud, id, vpc).await
}

pub(super) async fn detach_igw(cloud: &AwsCloud, id: &str, vpc: &str) -> Result<(), CloudError> {
    let what = format!("internet gateway {id} (attached to {vpc})");
    let ec2 = &cloud.ec2;
    retry_in_use(
        &what,
        cloud.waits.dependency,
        cloud.waits.poll,
        move || async move {
            match ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| sdk_error("DetachInternetGateway", e))
            {
                Err(e) if e.code() == Some("Gateway.NotAttached") => Ok(()),
                other => gone_is_ok(other),
            }
        },
    )
    .await
}

pub(super) async fn delete_igw(cloud: &AwsCloud, id: &str) -> Result<(), CloudError> {
    let Some(gateway) =
        gone_is_none(describe_igws(cloud, &Lookup::Id(id.to_string())).await)?.and_then(first)
    else {
        return Ok(());
    };
    for vpc in igw_vpcs(&gateway) {
        detach_igw(cloud, id, &vpc).await?;
    }
    let ec2 = &cloud.ec2;
    async move {
        gone_is_ok(
            ec2.delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteInternetGateway", e)),
        )
    }
    .await
}
