//! The network load balancer: scheme, subnets, security group and cross-zone load balancing.

use super::*;

/// `<env>-nlb`, cut to the ELB name limit.
pub fn load_balancer_name(env: &str) -> String {
    elb_name(&crate::names::load_balancer(env))
}

/// An ELB name: at most 32 characters, never ending with a hyphen.
pub fn elb_name(name: &str) -> String {
    let cut: String = name.chars().take(MAX_NAME).collect();
    cut.trim_end_matches('-').to_string()
}

pub(super) async fn find_load_balancer(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &LoadBalancerSpec,
) -> Result<Option<Observed>, CloudError> {
    let name = load_balancer_name(ctx.env);
    let lb = match cloud
        .elb
        .describe_load_balancers()
        .names(&name)
        .send()
        .await
    {
        Ok(out) => out.load_balancers().first().cloned(),
        Err(e) if has_code(&e, LB_NOT_FOUND) => None,
        Err(e) => return Err(sdk_error("DescribeLoadBalancers", e)),
    };
    let Some(lb) = lb else { return Ok(None) };
    let arn = lb
        .load_balancer_arn()
        .ok_or_else(|| missing("DescribeLoadBalancers", "load balancer ARN"))?;
    check_owner(cloud, ctx, Kind::LoadBalancer, &name, arn).await?;
    Ok(Some(observe_load_balancer(cloud, ctx, spec, &lb).await?))
}

pub(super) async fn create_load_balancer(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &LoadBalancerSpec,
) -> Result<Observed, CloudError> {
    let name = load_balancer_name(ctx.env);
    let subnets = ctx.resolved.cloud_ids(&spec.subnets)?;
    let security_group = ctx.resolved.cloud_id(&spec.security_group)?;
    let out = cloud
        .elb
        .create_load_balancer()
        .name(&name)
        .r#type(LoadBalancerTypeEnum::Network)
        .scheme(LoadBalancerSchemeEnum::from(spec.scheme.as_aws()))
        .ip_address_type(IpAddressType::Ipv4)
        .set_subnets(Some(subnets))
        .security_groups(security_group)
        .set_tags(Some(elb_tags(ctx)))
        .send()
        .await
        .map_err(|e| sdk_error("CreateLoadBalancer", e))?;
    let arn = out
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn())
        .ok_or_else(|| missing("CreateLoadBalancer", "load balancer ARN"))?
        .to_string();

    let what = format!("load balancer {name} to become active");
    let arn_ref = arn.as_str();
    // Cross-zone is an attribute: set while the load balancer provisions, not after.
    let wait = poll_until(
        cloud,
        ctx.progress,
        &what,
        cloud.waits.load_balancer,
        || async move {
            let Some(lb) = describe_load_balancer(cloud, arn_ref).await? else {
                return Ok(Poll::Pending("not visible yet".to_string()));
            };
            let state = lb.state();
            match state.and_then(|s| s.code()) {
                Some(LoadBalancerStateEnum::Active) => Ok(Poll::Done(lb)),
                Some(LoadBalancerStateEnum::Failed) => Err(CloudError::api(
                    "CreateLoadBalancer",
                    "Failed",
                    format!(
                        "load balancer {arn_ref} failed: {}",
                        state.and_then(|s| s.reason()).unwrap_or("no reason given")
                    ),
                )),
                Some(other) => Ok(Poll::Pending(other.as_str().to_string())),
                None => Ok(Poll::Pending("unknown".to_string())),
            }
        },
    );
    let (lb, ()) = futures::try_join!(wait, set_cross_zone(cloud, &arn, spec.cross_zone))?;
    Ok(Observed::new(arn.clone(), load_balancer_attrs(&lb)))
}

pub(super) async fn update_load_balancer(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &LoadBalancerSpec,
    arn: &str,
) -> Result<Observed, CloudError> {
    let lb = describe_load_balancer(cloud, arn)
        .await?
        .ok_or_else(|| gone(Kind::LoadBalancer, arn))?;
    let want_subnets = ctx.resolved.cloud_ids(&spec.subnets)?;
    if !same_set(&want_subnets, &load_balancer_subnets(&lb)) {
        cloud
            .elb
            .set_subnets()
            .load_balancer_arn(arn)
            .set_subnets(Some(want_subnets))
            .send()
            .await
            .map_err(|e| sdk_error("SetSubnets", e))?;
    }
    let want_sg = ctx.resolved.cloud_id(&spec.security_group)?.to_string();
    if !same_set(std::slice::from_ref(&want_sg), lb.security_groups()) {
        cloud
            .elb
            .set_security_groups()
            .load_balancer_arn(arn)
            .security_groups(want_sg)
            .send()
            .await
            .map_err(|e| sdk_error("SetSecurityGroups", e))?;
    }
    if cross_zone(cloud, arn).await? != spec.cross_zone {
        set_cross_zone(cloud, arn, spec.cross_zone).await?;
    }
    let lb = describe_load_balancer(cloud, arn)
        .await?
        .ok_or_else(|| gone(Kind::LoadBalancer, arn))?;
    observe_load_balancer(cloud, ctx, spec, &lb).await
}

pub(super) async fn delete_load_balancer(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    arn: &str,
) -> Result<(), CloudError> {
    async move {
        match cloud
            .elb
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if has_code(&e, LB_NOT_FOUND) => Ok(()),
            Err(e) => Err(sdk_error("DeleteLoadBalancer", e)),
        }
    }
    .await?;
    let what = format!("load balancer {arn} to be deleted");
    poll_until(
        cloud,
        ctx.progress,
        &what,
        cloud.waits.load_balancer,
        || async move {
            Ok(match describe_load_balancer(cloud, arn).await? {
                None => Poll::Done(()),
                Some(lb) => Poll::Pending(
                    lb.state()
                        .and_then(|s| s.code())
                        .map_or("deleting", |c| c.as_str())
                        .to_string(),
                ),
            })
        },
    )
    .await
}

pub(super) async fn describe_load_balancer(
    cloud: &AwsCloud,
    arn: &str,
) -> Result<Option<LoadBalancer>, CloudError> {
    match cloud
        .elb
        .describe_load_balancers()
        .load_balancer_arns(arn)
        .send()
        .await
    {
        Ok(out) => Ok(out.load_balancers().first().cloned()),
        Err(e) if has_code(&e, LB_NOT_FOUND) => Ok(None),
        Err(e) => Err(sdk_error("DescribeLoadBalancers", e)),
    }
}

pub(super) async fn observe_load_balancer(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &LoadBalancerSpec,
    lb: &LoadBalancer,
) -> Result<Observed, CloudError> {
    let arn = lb
        .load_balancer_arn()
        .ok_or_else(|| missing("DescribeLoadBalancers", "load balancer ARN"))?;
    let (mut drift, mut fixed) = (Vec::new(), Vec::new());
    // Fixed when the load balancer is made.
    if let Some(scheme) = lb.scheme() {
        if scheme.as_str() != spec.scheme.as_aws() {
            fixed.push(format!(
                "scheme is {}, want {}",
                scheme.as_str(),
                spec.scheme.as_aws()
            ));
        }
    }
    if let Some(LoadBalancerStateEnum::Failed) = lb.state().and_then(|s| s.code()) {
        drift.push("state is failed".to_string());
    }
    let have_subnets = load_balancer_subnets(lb);
    if let Ok(want) = ctx.resolved.cloud_ids(&spec.subnets) {
        if !same_set(&want, &have_subnets) {
            drift.push(format!(
                "subnets are {}, want {}",
                describe_ids(ctx.resolved, &have_subnets),
                describe_ids(ctx.resolved, &want)
            ));
        }
    }
    if let Ok(want) = ctx.resolved.cloud_id(&spec.security_group) {
        let want = [want.to_string()];
        if !same_set(&want, lb.security_groups()) {
            drift.push(format!(
                "security groups are {}, want {}",
                describe_ids(ctx.resolved, lb.security_groups()),
                describe_ids(ctx.resolved, &want)
            ));
        }
    }
    let cross = cross_zone(cloud, arn).await?;
    if cross != spec.cross_zone {
        drift.push(format!(
            "cross-zone load balancing is {}, want {}",
            on_off(cross),
            on_off(spec.cross_zone)
        ));
    }
    Ok(Observed {
        cloud_id: arn.to_string(),
        attrs: load_balancer_attrs(lb),
        drift,
        fixed,
    })
}

pub(super) fn load_balancer_attrs(lb: &LoadBalancer) -> Attrs {
    Attrs::LoadBalancer {
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
        canonical_zone_id: lb
            .canonical_hosted_zone_id()
            .unwrap_or_default()
            .to_string(),
    }
}

pub(super) fn load_balancer_subnets(lb: &LoadBalancer) -> Vec<String> {
    lb.availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .map(str::to_string)
        .collect()
}

pub(super) async fn cross_zone(cloud: &AwsCloud, arn: &str) -> Result<bool, CloudError> {
    let out = cloud
        .elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeLoadBalancerAttributes", e))?;
    Ok(out
        .attributes()
        .iter()
        .any(|a| a.key() == Some(CROSS_ZONE) && a.value() == Some("true")))
}

pub(super) async fn set_cross_zone(
    cloud: &AwsCloud,
    arn: &str,
    enabled: bool,
) -> Result<(), CloudError> {
    cloud
        .elb
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .attributes(
            LoadBalancerAttribute::builder()
                .key(CROSS_ZONE)
                .value(enabled.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("ModifyLoadBalancerAttributes", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_elb_limit() {
        assert_eq!(load_balancer_name("lab"), "lab-nlb");
        let long = "a".repeat(40);
        assert_eq!(elb_name(&long).len(), 32);
        // A cut that lands on a hyphen drops it: ELB names cannot end with one.
        let name = format!("{}-tg", "b".repeat(31));
        assert_eq!(elb_name(&name), "b".repeat(31));
    }
}
