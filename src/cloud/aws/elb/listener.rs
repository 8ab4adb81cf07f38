//! TCP listeners forwarding a port of the load balancer to its target group.

use super::*;

pub(super) async fn find_listener(
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

pub(super) async fn read_listener(
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

pub(super) async fn create_listener(
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

pub(super) async fn update_listener(
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
        .port(i32::from(spec.port))
        .protocol(ProtocolEnum::Tcp)
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

pub(super) fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

pub(super) fn observe_listener(
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
        fixed: Vec::new(),
    }
}
