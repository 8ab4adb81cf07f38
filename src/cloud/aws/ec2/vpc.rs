//! The VPC: created with DNS support and hostnames on (private Route53 zones need both).

use super::*;

pub(super) async fn describe_vpcs(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<Vpc>, CloudError> {
    cloud
        .ec2
        .describe_vpcs()
        .set_vpc_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeVpcs", e))
}

pub(super) async fn create_vpc(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &VpcSpec,
) -> Result<Observed, CloudError> {
    let out = cloud
        .ec2
        .create_vpc()
        .cidr_block(&s.cidr)
        .tag_specifications(tag_spec(ResourceType::Vpc, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateVpc", e))?;
    let id = created_id("CreateVpc", out.vpc().and_then(|v| v.vpc_id()))?;
    futures::try_join!(
        remove_vpc_twins(cloud, ctx, &id),
        enable_vpc_dns(cloud, &id)
    )?;
    Ok(Observed::new(id, Attrs::None))
}

/// CreateVpc takes no idempotency token: when its reply is lost the SDK sends it again
/// and both calls go through. `plan` found no VPC with this env's tags for this id just
/// before, and the lock keeps other runs out, so any other one now is a twin of this very
/// step: delete it (an empty twin always can be; one that cannot is left to the next plan,
/// which lists it for deletion).
async fn remove_vpc_twins(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    keep: &str,
) -> Result<(), CloudError> {
    let lookup = Lookup::Filters(owner_filters(ctx.env, ctx.id));
    for twin in twins(describe_vpcs(cloud, &lookup).await?, keep, |v| v.vpc_id()) {
        ctx.progress.status(&format!(
            "deleting {twin}, a twin left by a retried CreateVpc"
        ));
        let _ = gone_is_ok(
            cloud
                .ec2
                .delete_vpc()
                .vpc_id(&twin)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteVpc", e)),
        );
    }
    Ok(())
}

/// DNS support and DNS hostnames: private Route53 zones only answer inside a VPC with both.
/// EC2 takes one attribute per call.
pub(super) async fn enable_vpc_dns(cloud: &AwsCloud, id: &str) -> Result<(), CloudError> {
    let on = || AttributeBooleanValue::builder().value(true).build();
    // Both at once: each is its own call and neither needs the other.
    let support = settle(cloud, || async {
        cloud
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_support(on())
            .send()
            .await
            .map_err(|e| sdk_error("ModifyVpcAttribute", e))
    });
    let hostnames = settle(cloud, || async {
        cloud
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_hostnames(on())
            .send()
            .await
            .map_err(|e| sdk_error("ModifyVpcAttribute", e))
    });
    futures::try_join!(support, hostnames)?;
    Ok(())
}

pub(super) fn observe_vpc_base(s: &VpcSpec, v: &Vpc) -> Observed {
    let mut o = Observed::new(v.vpc_id().unwrap_or_default(), Attrs::None);
    if let Some(cidr) = v.cidr_block().filter(|c| *c != s.cidr) {
        // Fixed when the VPC is made.
        o.fixed
            .push(format!("cidr is {cidr}, spec says {}", s.cidr));
    }
    o
}

pub(super) async fn observe_vpc(
    cloud: &AwsCloud,
    s: &VpcSpec,
    v: &Vpc,
) -> Result<Observed, CloudError> {
    let mut o = observe_vpc_base(s, v);
    let look = |attribute: VpcAttributeName| {
        let id = o.cloud_id.clone();
        async move {
            let out = cloud
                .ec2
                .describe_vpc_attribute()
                .vpc_id(id)
                .attribute(attribute.clone())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeVpcAttribute", e))?;
            let value = match attribute {
                VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
                _ => out.enable_dns_hostnames(),
            };
            Ok::<_, CloudError>(value.and_then(|v| v.value()) == Some(true))
        }
    };
    // Both at once.
    let (support, hostnames) = futures::try_join!(
        look(VpcAttributeName::EnableDnsSupport),
        look(VpcAttributeName::EnableDnsHostnames)
    )?;
    for (on, label) in [(support, "DNS support"), (hostnames, "DNS hostnames")] {
        if !on {
            o.drift.push(format!("{label} is disabled"));
        }
    }
    Ok(o)
}
