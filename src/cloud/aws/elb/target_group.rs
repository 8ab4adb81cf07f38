//! TCP target groups: health checks per the NLB guide, client-IP preservation off, registered instances.

use super::*;

/// The health check settings of a target group, as ELB reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HealthCheck {
    /// A port number or `traffic-port`.
    port: String,
    healthy: i32,
    unhealthy: i32,
    interval: i32,
    timeout: i32,
}

impl HealthCheck {
    pub(super) fn wanted(spec: &TargetGroupSpec) -> Self {
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

    pub(super) fn live(tg: &TargetGroup) -> Self {
        Self {
            port: tg.health_check_port().unwrap_or("traffic-port").to_string(),
            healthy: tg.healthy_threshold_count().unwrap_or_default(),
            unhealthy: tg.unhealthy_threshold_count().unwrap_or_default(),
            interval: tg.health_check_interval_seconds().unwrap_or_default(),
            timeout: tg.health_check_timeout_seconds().unwrap_or_default(),
        }
    }

    /// One line per differing setting, `have` against `self` (wanted).
    pub(super) fn drift(&self, have: &HealthCheck) -> Vec<String> {
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
pub(super) struct TargetDiff {
    /// Wanted `(logical id, instance id)` not registered on the port.
    missing: Vec<(LogicalId, String)>,
    /// Registered `(instance id, port)` that are not wanted.
    extra: Vec<(String, i32)>,
}

pub(super) fn target_diff(
    want: &[(LogicalId, String)],
    port: i32,
    have: &[(String, i32)],
) -> TargetDiff {
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

pub(super) async fn find_target_group(
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

pub(super) async fn create_target_group(
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

pub(super) const PRESERVE_CLIENT_IP: &str = "preserve_client_ip.enabled";

/// `preserve_client_ip.enabled` of a target group. AWS turns it on by default for
/// instance targets, so a group that does not report it counts as on.
pub(super) async fn preserve_client_ip(cloud: &AwsCloud, arn: &str) -> Result<bool, CloudError> {
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

pub(super) fn preserve_client_ip_of<'a>(
    attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> bool {
    attrs
        .into_iter()
        .find(|(k, _)| *k == PRESERVE_CLIENT_IP)
        .is_none_or(|(_, v)| v.eq_ignore_ascii_case("true"))
}

pub(super) async fn set_preserve_client_ip(
    cloud: &AwsCloud,
    arn: &str,
    on: bool,
) -> Result<(), CloudError> {
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

pub(super) async fn update_target_group(
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

pub(super) async fn register_targets(
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

pub(super) async fn describe_target_group(
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
pub(super) async fn registered_targets(
    cloud: &AwsCloud,
    arn: &str,
) -> Result<Vec<(String, i32)>, CloudError> {
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

pub(super) fn wanted_targets(
    resolved: &Resolved,
    spec: &TargetGroupSpec,
) -> Result<Vec<(LogicalId, String)>, CloudError> {
    spec.targets
        .iter()
        .map(|r| Ok((r.clone(), resolved.cloud_id(r)?.to_string())))
        .collect()
}

pub(super) async fn observe_target_group(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &TargetGroupSpec,
    tg: &TargetGroup,
) -> Result<Observed, CloudError> {
    let arn = tg
        .target_group_arn()
        .ok_or_else(|| missing("DescribeTargetGroups", "target group ARN"))?;
    // Port, protocol and VPC are fixed when the target group is made.
    let (mut drift, mut fixed) = (Vec::new(), Vec::new());
    if tg.port() != Some(i32::from(spec.port)) {
        fixed.push(format!(
            "port is {}, want {}",
            tg.port().unwrap_or_default(),
            spec.port
        ));
    }
    if tg.protocol() != Some(&ProtocolEnum::Tcp) {
        fixed.push(format!(
            "protocol is {}, want TCP",
            tg.protocol().map_or("unknown", |p| p.as_str())
        ));
    }
    if let (Ok(want), Some(have)) = (ctx.resolved.cloud_id(&spec.vpc), tg.vpc_id()) {
        if want != have {
            fixed.push(format!("in VPC {have}, want {want}"));
        }
    }
    drift.extend(HealthCheck::wanted(spec).drift(&HealthCheck::live(tg)));
    let wanted = wanted_targets(ctx.resolved, spec);
    // The attributes and the targets at once.
    let (preserve, registered) = futures::try_join!(preserve_client_ip(cloud, arn), async {
        match &wanted {
            Ok(_) => registered_targets(cloud, arn).await.map(Some),
            Err(_) => Ok(None),
        }
    })?;
    if preserve != spec.preserve_client_ip {
        drift.push(format!(
            "{PRESERVE_CLIENT_IP} is {preserve}, want {}",
            spec.preserve_client_ip
        ));
    }
    if let (Ok(want), Some(registered)) = (&wanted, registered) {
        let diff = target_diff(want, i32::from(spec.port), &registered);
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
        fixed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
