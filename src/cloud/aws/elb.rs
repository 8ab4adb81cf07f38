//! Elastic Load Balancing v2: the network load balancer, its TCP target groups and its
//! listeners. Cloud ids are ARNs.
//!
//! Ownership: all three kinds are tagged at creation. `find` looks a load balancer or target
//! group up by its name (unique per region) and a listener by its port on the resolved load
//! balancer, then refuses one whose tags name another environment. `list_owned` covers load
//! balancers and target groups tagged for the environment, and the tagged listeners of those
//! load balancers.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, IpAddressType, LoadBalancer, LoadBalancerAttribute,
    LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag,
    TargetDescription, TargetGroup, TargetHealthStateEnum, TargetTypeEnum,
};

use super::common::{
    gone, has_code, missing, not_ours, ownership, poll_until, retry_in_use, wrong_kind, Ownership,
    Poll,
};
use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{
    tags_for, Attrs, Kind, ListenerSpec, LoadBalancerSpec, LogicalId, Observed, Resolved, Spec,
    TargetGroupSpec, TAG_ENV, TAG_ID,
};

/// ELB names (load balancers, target groups) are at most 32 characters.
const MAX_NAME: usize = 32;
const CROSS_ZONE: &str = "load_balancing.cross_zone.enabled";
const LB_NOT_FOUND: &[&str] = &["LoadBalancerNotFound"];
const TG_NOT_FOUND: &[&str] = &["TargetGroupNotFound"];
const LISTENER_NOT_FOUND: &[&str] = &["ListenerNotFound"];
/// DescribeTags takes at most 20 ARNs.
const TAGS_BATCH: usize = 20;

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => find_load_balancer(cloud, ctx, s).await,
        Spec::TargetGroup(s) => find_target_group(cloud, ctx, s).await,
        Spec::Listener(s) => find_listener(cloud, ctx, s).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => match describe_load_balancer(cloud, cloud_id).await? {
            Some(lb) => Ok(Some(observe_load_balancer(cloud, ctx, s, &lb).await?)),
            None => Ok(None),
        },
        Spec::TargetGroup(s) => match describe_target_group(cloud, cloud_id).await? {
            Some(tg) => Ok(Some(observe_target_group(cloud, ctx, s, &tg).await?)),
            None => Ok(None),
        },
        Spec::Listener(s) => read_listener(cloud, ctx, s, cloud_id).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => create_load_balancer(cloud, ctx, s).await,
        Spec::TargetGroup(s) => create_target_group(cloud, ctx, s).await,
        Spec::Listener(s) => create_listener(cloud, ctx, s).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => update_load_balancer(cloud, ctx, s, &current.cloud_id).await,
        Spec::TargetGroup(s) => update_target_group(cloud, ctx, s, &current.cloud_id).await,
        Spec::Listener(s) => update_listener(cloud, ctx, s, &current.cloud_id).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    current: &Observed,
) -> Result<(), CloudError> {
    let arn = current.cloud_id.as_str();
    match kind {
        Kind::LoadBalancer => delete_load_balancer(cloud, ctx, arn).await,
        Kind::TargetGroup => {
            retry_in_use(
                cloud,
                ctx.progress,
                &format!("target group {arn}"),
                || async move {
                    match cloud
                        .elb
                        .delete_target_group()
                        .target_group_arn(arn)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) if has_code(&e, TG_NOT_FOUND) => Ok(()),
                        Err(e) => Err(sdk_error("DeleteTargetGroup", e)),
                    }
                },
            )
            .await
        }
        Kind::Listener => match cloud.elb.delete_listener().listener_arn(arn).send().await {
            Ok(_) => Ok(()),
            Err(e) if has_code(&e, LISTENER_NOT_FOUND) => Ok(()),
            Err(e) => Err(sdk_error("DeleteListener", e)),
        },
        other => Err(wrong_kind("ELB", other)),
    }
}

/// Load balancers and target groups tagged `provision:env=<env>`, and the tagged listeners
/// of those load balancers.
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let mut owned = Vec::new();

    let mut load_balancers = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .elb
            .describe_load_balancers()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeLoadBalancers", e))?;
        load_balancers.extend(out.load_balancers().iter().cloned());
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let arns: Vec<String> = load_balancers
        .iter()
        .filter_map(|l| l.load_balancer_arn())
        .map(str::to_string)
        .collect();
    let tags = tags_of_many(cloud, &arns).await?;
    for lb in &load_balancers {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let Some(id) = owned_id(tags.get(arn), env) else {
            continue;
        };
        owned.push(Owned {
            kind: Kind::LoadBalancer,
            id,
            cloud_id: arn.to_string(),
            attrs: load_balancer_attrs(lb),
        });
        let listeners = cloud
            .elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeListeners", e))?;
        let listener_arns: Vec<String> = listeners
            .listeners()
            .iter()
            .filter_map(|l| l.listener_arn())
            .map(str::to_string)
            .collect();
        let listener_tags = tags_of_many(cloud, &listener_arns).await?;
        for arn in &listener_arns {
            if let Some(id) = owned_id(listener_tags.get(arn), env) {
                owned.push(Owned {
                    kind: Kind::Listener,
                    id,
                    cloud_id: arn.clone(),
                    attrs: Attrs::None,
                });
            }
        }
    }

    let mut target_groups = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .elb
            .describe_target_groups()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetGroups", e))?;
        target_groups.extend(
            out.target_groups()
                .iter()
                .filter_map(|t| t.target_group_arn())
                .map(str::to_string),
        );
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let tags = tags_of_many(cloud, &target_groups).await?;
    for arn in &target_groups {
        if let Some(id) = owned_id(tags.get(arn), env) {
            owned.push(Owned {
                kind: Kind::TargetGroup,
                id,
                cloud_id: arn.clone(),
                attrs: Attrs::None,
            });
        }
    }
    Ok(owned)
}

// ---------------------------------------------------------------------------------------
// Load balancer

/// `<env>-nlb`, cut to the ELB name limit.
pub fn load_balancer_name(env: &str) -> String {
    elb_name(&crate::names::load_balancer(env))
}

/// An ELB name: at most 32 characters, never ending with a hyphen.
pub fn elb_name(name: &str) -> String {
    let cut: String = name.chars().take(MAX_NAME).collect();
    cut.trim_end_matches('-').to_string()
}

async fn find_load_balancer(
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

async fn create_load_balancer(
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
    let lb = poll_until(
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
    )
    .await?;
    set_cross_zone(cloud, &arn, spec.cross_zone).await?;
    observe_load_balancer(cloud, ctx, spec, &lb).await
}

async fn update_load_balancer(
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

async fn delete_load_balancer(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    arn: &str,
) -> Result<(), CloudError> {
    retry_in_use(
        cloud,
        ctx.progress,
        &format!("load balancer {arn}"),
        || async move {
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
        },
    )
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

async fn describe_load_balancer(
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

async fn observe_load_balancer(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &LoadBalancerSpec,
    lb: &LoadBalancer,
) -> Result<Observed, CloudError> {
    let arn = lb
        .load_balancer_arn()
        .ok_or_else(|| missing("DescribeLoadBalancers", "load balancer ARN"))?;
    let mut drift = Vec::new();
    if let Some(scheme) = lb.scheme() {
        if scheme.as_str() != spec.scheme.as_aws() {
            drift.push(format!(
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
    })
}

fn load_balancer_attrs(lb: &LoadBalancer) -> Attrs {
    Attrs::LoadBalancer {
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
        canonical_zone_id: lb
            .canonical_hosted_zone_id()
            .unwrap_or_default()
            .to_string(),
    }
}

fn load_balancer_subnets(lb: &LoadBalancer) -> Vec<String> {
    lb.availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .map(str::to_string)
        .collect()
}

async fn cross_zone(cloud: &AwsCloud, arn: &str) -> Result<bool, CloudError> {
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

async fn set_cross_zone(cloud: &AwsCloud, arn: &str, enabled: bool) -> Result<(), CloudError> {
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

// ---------------------------------------------------------------------------------------
// Target group

/// The health check settings of a target group, as ELB reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HealthCheck {
    /// A port number or `traffic-port`.
    port: String,
    healthy: i32,
    unhealthy: i32,
    interval: i32,
    timeout: i32,
}

impl HealthCheck {
    fn wanted(spec: &TargetGroupSpec) -> Self {
        Self {
            port: spec
                .health_check_port
                .map_or_else(|| "traffic-port".to_string(), |p| p.to_string()),
            healthy: i32::from(spec.healthy_threshold),
            unhealthy: i32::from(spec.unhealthy_threshold),
            interval: i32::from(spec.interval_seconds),
            timeout: i32::from(spec.timeout_seconds),
        }
    }

    fn live(tg: &TargetGroup) -> Self {
        Self {
            port: tg.health_check_port().unwrap_or("traffic-port").to_string(),
            healthy: tg.healthy_threshold_count().unwrap_or_default(),
            unhealthy: tg.unhealthy_threshold_count().unwrap_or_default(),
            interval: tg.health_check_interval_seconds().unwrap_or_default(),
            timeout: tg.health_check_timeout_seconds().unwrap_or_default(),
        }
    }

    /// One line per differing setting, `have` against `self` (wanted).
    fn drift(&self, have: &HealthCheck) -> Vec<String> {
        let mut out = Vec::new();
        if self.port != have.port {
            out.push(format!(
                "health check port is {}, want {}",
                have.port, self.port
            ));
        }
        let numbers = [
            ("healthy threshold", have.healthy, self.healthy),
            ("unhealthy threshold", have.unhealthy, self.unhealthy),
            ("health check interval", have.interval, self.interval),
            ("health check timeout", have.timeout, self.timeout),
        ];
        for (label, have, want) in numbers {
            if have != want {
                out.push(format!("{label} is {have}, want {want}"));
            }
        }
        out
    }
}

/// How the registered targets differ from the wanted ones.
#[derive(Debug, Default, PartialEq, Eq)]
struct TargetDiff {
    /// Wanted `(logical id, instance id)` not registered on the port.
    missing: Vec<(LogicalId, String)>,
    /// Registered `(instance id, port)` that are not wanted.
    extra: Vec<(String, i32)>,
}

fn target_diff(want: &[(LogicalId, String)], port: i32, have: &[(String, i32)]) -> TargetDiff {
    let missing = want
        .iter()
        .filter(|(_, id)| !have.iter().any(|(h, p)| h == id && *p == port))
        .cloned()
        .collect();
    let extra = have
        .iter()
        .filter(|(h, p)| *p != port || !want.iter().any(|(_, id)| id == h))
        .cloned()
        .collect();
    TargetDiff { missing, extra }
}

async fn find_target_group(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &TargetGroupSpec,
) -> Result<Option<Observed>, CloudError> {
    let name = elb_name(&spec.name);
    let tg = match cloud.elb.describe_target_groups().names(&name).send().await {
        Ok(out) => out.target_groups().first().cloned(),
        Err(e) if has_code(&e, TG_NOT_FOUND) => None,
        Err(e) => return Err(sdk_error("DescribeTargetGroups", e)),
    };
    let Some(tg) = tg else { return Ok(None) };
    let arn = tg
        .target_group_arn()
        .ok_or_else(|| missing("DescribeTargetGroups", "target group ARN"))?;
    check_owner(cloud, ctx, Kind::TargetGroup, &name, arn).await?;
    Ok(Some(observe_target_group(cloud, ctx, spec, &tg).await?))
}

async fn create_target_group(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &TargetGroupSpec,
) -> Result<Observed, CloudError> {
    let name = elb_name(&spec.name);
    let vpc = ctx.resolved.cloud_id(&spec.vpc)?;
    let targets = wanted_targets(ctx.resolved, spec)?;
    let health = HealthCheck::wanted(spec);
    let out = cloud
        .elb
        .create_target_group()
        .name(&name)
        .protocol(ProtocolEnum::Tcp)
        .port(i32::from(spec.port))
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Instance)
        .health_check_enabled(true)
        .health_check_protocol(ProtocolEnum::Tcp)
        .health_check_port(health.port)
        .healthy_threshold_count(health.healthy)
        .unhealthy_threshold_count(health.unhealthy)
        .health_check_interval_seconds(health.interval)
        .health_check_timeout_seconds(health.timeout)
        .set_tags(Some(elb_tags(ctx)))
        .send()
        .await
        .map_err(|e| sdk_error("CreateTargetGroup", e))?;
    let tg = out
        .target_groups()
        .first()
        .ok_or_else(|| missing("CreateTargetGroup", "target group"))?;
    let arn = tg
        .target_group_arn()
        .ok_or_else(|| missing("CreateTargetGroup", "target group ARN"))?;
    // Before any target: an instance target with client-IP preservation on cannot reach
    // itself through an internal NLB (no hairpin).
    set_preserve_client_ip(cloud, arn, spec.preserve_client_ip).await?;
    let ids: Vec<String> = targets.into_iter().map(|(_, id)| id).collect();
    register_targets(cloud, arn, i32::from(spec.port), &ids).await?;
    observe_target_group(cloud, ctx, spec, tg).await
}

const PRESERVE_CLIENT_IP: &str = "preserve_client_ip.enabled";

/// `preserve_client_ip.enabled` of a target group. AWS turns it on by default for
/// instance targets, so a group that does not report it counts as on.
async fn preserve_client_ip(cloud: &AwsCloud, arn: &str) -> Result<bool, CloudError> {
    let out = cloud
        .elb
        .describe_target_group_attributes()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTargetGroupAttributes", e))?;
    Ok(preserve_client_ip_of(out.attributes().iter().map(|a| {
        (a.key().unwrap_or_default(), a.value().unwrap_or_default())
    })))
}

fn preserve_client_ip_of<'a>(attrs: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    attrs
        .into_iter()
        .find(|(k, _)| *k == PRESERVE_CLIENT_IP)
        .is_none_or(|(_, v)| v.eq_ignore_ascii_case("true"))
}

async fn set_preserve_client_ip(cloud: &AwsCloud, arn: &str, on: bool) -> Result<(), CloudError> {
    cloud
        .elb
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                .key(PRESERVE_CLIENT_IP)
                .value(on.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("ModifyTargetGroupAttributes", e))?;
    Ok(())
}

async fn update_target_group(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &TargetGroupSpec,
    arn: &str,
) -> Result<Observed, CloudError> {
    let tg = describe_target_group(cloud, arn)
        .await?
        .ok_or_else(|| gone(Kind::TargetGroup, arn))?;
    let want = HealthCheck::wanted(spec);
    if want != HealthCheck::live(&tg) {
        cloud
            .elb
            .modify_target_group()
            .target_group_arn(arn)
            .health_check_enabled(true)
            .health_check_protocol(ProtocolEnum::Tcp)
            .health_check_port(want.port)
            .healthy_threshold_count(want.healthy)
            .unhealthy_threshold_count(want.unhealthy)
            .health_check_interval_seconds(want.interval)
            .health_check_timeout_seconds(want.timeout)
            .send()
            .await
            .map_err(|e| sdk_error("ModifyTargetGroup", e))?;
    }
    if preserve_client_ip(cloud, arn).await? != spec.preserve_client_ip {
        set_preserve_client_ip(cloud, arn, spec.preserve_client_ip).await?;
    }
    let port = i32::from(spec.port);
    let diff = target_diff(
        &wanted_targets(ctx.resolved, spec)?,
        port,
        &registered_targets(cloud, arn).await?,
    );
    if !diff.extra.is_empty() {
        let targets = diff
            .extra
            .iter()
            .map(|(id, port)| TargetDescription::builder().id(id).port(*port).build())
            .collect();
        cloud
            .elb
            .deregister_targets()
            .target_group_arn(arn)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(|e| sdk_error("DeregisterTargets", e))?;
    }
    let ids: Vec<String> = diff.missing.into_iter().map(|(_, id)| id).collect();
    register_targets(cloud, arn, port, &ids).await?;
    let tg = describe_target_group(cloud, arn)
        .await?
        .ok_or_else(|| gone(Kind::TargetGroup, arn))?;
    observe_target_group(cloud, ctx, spec, &tg).await
}

async fn register_targets(
    cloud: &AwsCloud,
    arn: &str,
    port: i32,
    ids: &[String],
) -> Result<(), CloudError> {
    if ids.is_empty() {
        return Ok(());
    }
    let targets = ids
        .iter()
        .map(|id| TargetDescription::builder().id(id).port(port).build())
        .collect();
    cloud
        .elb
        .register_targets()
        .target_group_arn(arn)
        .set_targets(Some(targets))
        .send()
        .await
        .map_err(|e| sdk_error("RegisterTargets", e))?;
    Ok(())
}

async fn describe_target_group(
    cloud: &AwsCloud,
    arn: &str,
) -> Result<Option<TargetGroup>, CloudError> {
    match cloud
        .elb
        .describe_target_groups()
        .target_group_arns(arn)
        .send()
        .await
    {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) if has_code(&e, TG_NOT_FOUND) => Ok(None),
        Err(e) => Err(sdk_error("DescribeTargetGroups", e)),
    }
}

/// Registered `(instance id, port)`, leaving out targets already draining away.
async fn registered_targets(cloud: &AwsCloud, arn: &str) -> Result<Vec<(String, i32)>, CloudError> {
    let out = cloud
        .elb
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTargetHealth", e))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            !matches!(
                d.target_health().and_then(|h| h.state()),
                Some(TargetHealthStateEnum::Draining)
            )
        })
        .filter_map(|d| d.target())
        .filter_map(|t| Some((t.id()?.to_string(), t.port().unwrap_or_default())))
        .collect())
}

fn wanted_targets(
    resolved: &Resolved,
    spec: &TargetGroupSpec,
) -> Result<Vec<(LogicalId, String)>, CloudError> {
    spec.targets
        .iter()
        .map(|r| Ok((r.clone(), resolved.cloud_id(r)?.to_string())))
        .collect()
}

async fn observe_target_group(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &TargetGroupSpec,
    tg: &TargetGroup,
) -> Result<Observed, CloudError> {
    let arn = tg
        .target_group_arn()
        .ok_or_else(|| missing("DescribeTargetGroups", "target group ARN"))?;
    let mut drift = Vec::new();
    if tg.port() != Some(i32::from(spec.port)) {
        drift.push(format!(
            "port is {}, want {}",
            tg.port().unwrap_or_default(),
            spec.port
        ));
    }
    if tg.protocol() != Some(&ProtocolEnum::Tcp) {
        drift.push(format!(
            "protocol is {}, want TCP",
            tg.protocol().map_or("unknown", |p| p.as_str())
        ));
    }
    if let (Ok(want), Some(have)) = (ctx.resolved.cloud_id(&spec.vpc), tg.vpc_id()) {
        if want != have {
            drift.push(format!("in VPC {have}, want {want}"));
        }
    }
    drift.extend(HealthCheck::wanted(spec).drift(&HealthCheck::live(tg)));
    let preserve = preserve_client_ip(cloud, arn).await?;
    if preserve != spec.preserve_client_ip {
        drift.push(format!(
            "{PRESERVE_CLIENT_IP} is {preserve}, want {}",
            spec.preserve_client_ip
        ));
    }
    if let Ok(want) = wanted_targets(ctx.resolved, spec) {
        let diff = target_diff(
            &want,
            i32::from(spec.port),
            &registered_targets(cloud, arn).await?,
        );
        for (logical, id) in &diff.missing {
            drift.push(format!("target {logical} ({id}) is not registered"));
        }
        for (id, port) in &diff.extra {
            let who = ctx
                .resolved
                .logical_of(id)
                .map_or_else(|| id.clone(), |l| format!("{l} ({id})"));
            drift.push(format!(
                "target {who} on port {port} is registered but not wanted"
            ));
        }
    }
    Ok(Observed {
        cloud_id: arn.to_string(),
        attrs: Attrs::None,
        drift,
    })
}

// ---------------------------------------------------------------------------------------
// Listener

async fn find_listener(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &ListenerSpec,
) -> Result<Option<Observed>, CloudError> {
    let lb_arn = ctx.resolved.cloud_id(&spec.load_balancer)?;
    let listeners = match cloud
        .elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
    {
        Ok(out) => out.listeners().to_vec(),
        Err(e) if has_code(&e, LB_NOT_FOUND) => return Ok(None),
        Err(e) => return Err(sdk_error("DescribeListeners", e)),
    };
    let Some(listener) = listeners
        .iter()
        .find(|l| l.port() == Some(i32::from(spec.port)))
    else {
        return Ok(None);
    };
    let arn = listener
        .listener_arn()
        .ok_or_else(|| missing("DescribeListeners", "listener ARN"))?;
    check_owner(
        cloud,
        ctx,
        Kind::Listener,
        &format!("port {} of {lb_arn}", spec.port),
        arn,
    )
    .await?;
    Ok(Some(observe_listener(ctx, spec, listener)))
}

async fn read_listener(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &ListenerSpec,
    arn: &str,
) -> Result<Option<Observed>, CloudError> {
    match cloud
        .elb
        .describe_listeners()
        .listener_arns(arn)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .listeners()
            .first()
            .map(|l| observe_listener(ctx, spec, l))),
        Err(e) if has_code(&e, LISTENER_NOT_FOUND) || has_code(&e, LB_NOT_FOUND) => Ok(None),
        Err(e) => Err(sdk_error("DescribeListeners", e)),
    }
}

async fn create_listener(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &ListenerSpec,
) -> Result<Observed, CloudError> {
    let lb_arn = ctx.resolved.cloud_id(&spec.load_balancer)?;
    let tg_arn = ctx.resolved.cloud_id(&spec.target_group)?;
    let out = cloud
        .elb
        .create_listener()
        .load_balancer_arn(lb_arn)
        .protocol(ProtocolEnum::Tcp)
        .port(i32::from(spec.port))
        .default_actions(forward(tg_arn))
        .set_tags(Some(elb_tags(ctx)))
        .send()
        .await
        .map_err(|e| sdk_error("CreateListener", e))?;
    let listener = out
        .listeners()
        .first()
        .ok_or_else(|| missing("CreateListener", "listener"))?;
    Ok(observe_listener(ctx, spec, listener))
}

async fn update_listener(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &ListenerSpec,
    arn: &str,
) -> Result<Observed, CloudError> {
    let tg_arn = ctx.resolved.cloud_id(&spec.target_group)?;
    let out = match cloud
        .elb
        .modify_listener()
        .listener_arn(arn)
        .default_actions(forward(tg_arn))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if has_code(&e, LISTENER_NOT_FOUND) => return Err(gone(Kind::Listener, arn)),
        Err(e) => return Err(sdk_error("ModifyListener", e)),
    };
    let listener = out
        .listeners()
        .first()
        .ok_or_else(|| missing("ModifyListener", "listener"))?;
    Ok(observe_listener(ctx, spec, listener))
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

fn observe_listener(
    ctx: &OpContext<'_>,
    spec: &ListenerSpec,
    listener: &aws_sdk_elasticloadbalancingv2::types::Listener,
) -> Observed {
    let mut drift = Vec::new();
    if listener.port() != Some(i32::from(spec.port)) {
        drift.push(format!(
            "port is {}, want {}",
            listener.port().unwrap_or_default(),
            spec.port
        ));
    }
    if listener.protocol() != Some(&ProtocolEnum::Tcp) {
        drift.push(format!(
            "protocol is {}, want TCP",
            listener.protocol().map_or("unknown", |p| p.as_str())
        ));
    }
    let forwards: Vec<String> = listener
        .default_actions()
        .iter()
        .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .flat_map(|a| {
            let direct = a.target_group_arn().map(str::to_string);
            let weighted = a
                .forward_config()
                .map(|f| {
                    f.target_groups()
                        .iter()
                        .filter_map(|t| t.target_group_arn())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_else(Vec::new);
            direct.into_iter().chain(weighted)
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Ok(want) = ctx.resolved.cloud_id(&spec.target_group) {
        if forwards.len() != 1 || forwards[0] != want {
            drift.push(format!(
                "forwards to {}, want {}",
                describe_ids(ctx.resolved, &forwards),
                describe_ids(ctx.resolved, &[want.to_string()])
            ));
        }
    }
    Observed {
        cloud_id: listener.listener_arn().unwrap_or_default().to_string(),
        attrs: Attrs::None,
        drift,
    }
}

// ---------------------------------------------------------------------------------------
// Tags and small helpers

fn elb_tags(ctx: &OpContext<'_>) -> Vec<Tag> {
    tags_for(ctx.env, ctx.id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Refuse a same-named resource whose tags do not name this environment and logical id.
async fn check_owner(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    name: &str,
    arn: &str,
) -> Result<(), CloudError> {
    let tags = tags_of_many(cloud, &[arn.to_string()]).await?;
    let pairs = tags.get(arn).map(Vec::as_slice).unwrap_or_default();
    match ownership(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ctx.env,
        ctx.id.as_str(),
    ) {
        Ownership::Ours => Ok(()),
        other => Err(not_ours(kind, name, ctx.env, ctx.id.as_str(), &other)),
    }
}

async fn tags_of_many(
    cloud: &AwsCloud,
    arns: &[String],
) -> Result<BTreeMap<String, Vec<(String, String)>>, CloudError> {
    let mut out = BTreeMap::new();
    for chunk in arns.chunks(TAGS_BATCH) {
        let resp = cloud
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTags", e))?;
        for description in resp.tag_descriptions() {
            let Some(arn) = description.resource_arn() else {
                continue;
            };
            let tags = description
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect();
            out.insert(arn.to_string(), tags);
        }
    }
    Ok(out)
}

/// The logical id of a resource tagged for `env`.
fn owned_id(tags: Option<&Vec<(String, String)>>, env: &str) -> Option<LogicalId> {
    let tags = tags?;
    let get = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    (get(TAG_ENV) == Some(env)).then(|| get(TAG_ID).map(LogicalId::from))?
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// `[subnet-private-1 (subnet-0abc), subnet-0def]`: cloud ids with their logical id where known.
fn describe_ids(resolved: &Resolved, ids: &[String]) -> String {
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    let parts: Vec<String> = sorted
        .into_iter()
        .map(|id| {
            resolved
                .logical_of(id)
                .map_or_else(|| id.clone(), |l| format!("{l} ({id})"))
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
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

    fn tg_spec() -> TargetGroupSpec {
        TargetGroupSpec {
            name: "lab-tcp-443".into(),
            vpc: "vpc".into(),
            port: 443,
            health_check_port: Some(80),
            healthy_threshold: 3,
            unhealthy_threshold: 3,
            interval_seconds: 10,
            timeout_seconds: 6,
            preserve_client_ip: false,
            targets: vec!["node-1".into(), "node-2".into()],
        }
    }

    #[test]
    fn health_check_drift_lists_each_setting() {
        let want = HealthCheck::wanted(&tg_spec());
        assert_eq!(want.port, "80");
        let mut have = want.clone();
        assert!(want.drift(&have).is_empty());
        have.port = "traffic-port".into();
        have.timeout = 10;
        assert_eq!(
            want.drift(&have),
            vec![
                "health check port is traffic-port, want 80",
                "health check timeout is 10, want 6"
            ]
        );
        let spec = TargetGroupSpec {
            health_check_port: None,
            ..tg_spec()
        };
        assert_eq!(HealthCheck::wanted(&spec).port, "traffic-port");
    }

    #[test]
    fn client_ip_preservation_counts_as_on_unless_reported_off() {
        assert!(preserve_client_ip_of([]));
        assert!(preserve_client_ip_of([(PRESERVE_CLIENT_IP, "true")]));
        assert!(!preserve_client_ip_of([(PRESERVE_CLIENT_IP, "false")]));
        assert!(preserve_client_ip_of([(
            "deregistration_delay.timeout_seconds",
            "300"
        )]));
    }

    #[test]
    fn target_diff_finds_missing_and_extra() {
        let want = vec![
            ("node-1".into(), "i-1".to_string()),
            ("node-2".into(), "i-2".to_string()),
        ];
        let have = vec![
            ("i-1".to_string(), 443),
            ("i-3".to_string(), 443),
            ("i-2".to_string(), 80),
        ];
        let diff = target_diff(&want, 443, &have);
        assert_eq!(
            diff.missing,
            vec![(LogicalId::from("node-2"), "i-2".to_string())]
        );
        assert_eq!(
            diff.extra,
            vec![("i-3".to_string(), 443), ("i-2".to_string(), 80)]
        );
        let exact = vec![("i-1".to_string(), 443), ("i-2".to_string(), 443)];
        assert_eq!(target_diff(&want, 443, &exact), TargetDiff::default());
    }

    #[test]
    fn owned_id_needs_the_env_tag() {
        let tags = vec![
            (TAG_ENV.to_string(), "lab".to_string()),
            (TAG_ID.to_string(), "nlb".to_string()),
        ];
        assert_eq!(owned_id(Some(&tags), "lab"), Some(LogicalId::from("nlb")));
        assert_eq!(owned_id(Some(&tags), "prod"), None);
        assert_eq!(owned_id(None, "lab"), None);
    }

    #[test]
    fn ids_are_described_with_their_logical_names() {
        let mut resolved = Resolved::default();
        resolved
            .entries
            .insert("subnet-a".into(), Observed::new("subnet-1", Attrs::None));
        assert_eq!(
            describe_ids(&resolved, &["subnet-2".to_string(), "subnet-1".to_string()]),
            "[subnet-a (subnet-1), subnet-2]"
        );
    }
}
