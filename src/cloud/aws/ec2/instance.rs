//! Instances: RunInstances with a ClientToken, waits, in-place changes and termination.

use super::*;

pub(super) async fn describe_instances(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<Instance>, CloudError> {
    let reservations = cloud
        .ec2
        .describe_instances()
        .set_instance_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeInstances", e))?;
    Ok(reservations
        .into_iter()
        .flat_map(|r| r.instances.unwrap_or_default())
        .collect())
}

// ---------------------------------------------------------------------------------------

pub(super) fn state_of(i: &Instance) -> Option<&InstanceStateName> {
    i.state().and_then(|s| s.name())
}

/// Neither terminated nor on its way there.
pub(super) fn is_live(i: &Instance) -> bool {
    !matches!(
        state_of(i),
        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
    )
}

pub(super) fn instance_attrs(i: &Instance) -> Attrs {
    Attrs::Instance {
        private_ip: i.private_ip_address().unwrap_or_default().to_string(),
        public_ip: i.public_ip_address().map(str::to_string),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
    }
}

/// The groups of the primary network interface, which are the instance's groups. (Read
/// from the interface because moto leaves the instance-level list empty when the
/// instance was launched with an interface specification.)
pub(super) fn instance_groups(i: &Instance) -> BTreeSet<String> {
    let primary = i
        .network_interfaces()
        .iter()
        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0));
    let groups = match primary {
        Some(n) => n.groups(),
        None => i.security_groups(),
    };
    groups
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

pub(super) fn instance_drift(
    want_groups: &BTreeSet<String>,
    have_groups: &BTreeSet<String>,
    state: Option<&InstanceStateName>,
    name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut lines = Vec::new();
    if want_groups != have_groups {
        let list =
            |set: &BTreeSet<String>| set.iter().map(|g| name(g)).collect::<Vec<_>>().join(", ");
        lines.push(format!(
            "security groups are [{}], spec says [{}]",
            list(have_groups),
            list(want_groups)
        ));
    }
    if matches!(
        state,
        Some(InstanceStateName::Stopped | InstanceStateName::Stopping)
    ) {
        lines.push("instance is stopped".to_string());
    }
    lines
}

pub(super) fn observe_instance(
    ctx: &OpContext<'_>,
    s: &InstanceSpec,
    i: &Instance,
) -> Result<Observed, CloudError> {
    let want: BTreeSet<String> = ctx
        .resolved
        .cloud_ids(&s.security_groups)?
        .into_iter()
        .collect();
    let mut o = Observed::new(i.instance_id().unwrap_or_default(), instance_attrs(i));
    o.drift = instance_drift(&want, &instance_groups(i), state_of(i), &|id| {
        named(ctx, id)
    });
    Ok(o)
}

/// Before any change: the image of an instance must exist in the region.
pub async fn preflight(cloud: &AwsCloud, spec: &Spec) -> Result<(), CloudError> {
    match spec {
        Spec::Instance(instance) => root_device(cloud, &instance.ami).await.map(|_| ()),
        _ => Ok(()),
    }
}

pub(super) async fn root_device(cloud: &AwsCloud, ami: &str) -> Result<String, CloudError> {
    let missing = || {
        CloudError::Refused(format!(
            "AMI {ami} does not exist in region {} or is not shared with this account",
            cloud.region
        ))
    };
    let out = cloud
        .ec2
        .describe_images()
        .image_ids(ami)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeImages", e));
    let out = match out {
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("InvalidAMIID.")) => {
            return Err(missing())
        }
        other => other?,
    };
    let image = out.images().first().ok_or_else(missing)?;
    Ok(image
        .root_device_name()
        .unwrap_or(DEFAULT_ROOT_DEVICE)
        .to_string())
}

pub(super) fn volume(device: &str, size_gb: u32) -> BlockDeviceMapping {
    BlockDeviceMapping::builder()
        .device_name(device)
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(i32::try_from(size_gb).unwrap_or(i32::MAX))
                .volume_type(VolumeType::Gp3)
                .encrypted(true)
                .delete_on_termination(true)
                .build(),
        )
        .build()
}

pub(super) async fn create_instance(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceSpec,
) -> Result<Observed, CloudError> {
    let subnet = ctx.resolved.cloud_id(&s.subnet)?;
    let groups = ctx.resolved.cloud_ids(&s.security_groups)?;
    let key_name = match &s.key_pair {
        Some(r) => match ctx.resolved.attrs(r)? {
            Attrs::KeyPair { name } => Some(name.clone()),
            _ => {
                return Err(CloudError::Refused(format!(
                    "key pair `{r}` has no key name in state; read it again before creating {}",
                    ctx.id
                )))
            }
        },
        None => None,
    };
    let root = root_device(cloud, &s.ami).await?;
    let mut volumes = vec![volume(&root, s.root_volume_gb)];
    if let Some(gb) = s.data_volume_gb {
        volumes.push(volume(DATA_DEVICE, gb));
    }
    // The network interface is spelled out so the public address follows the spec, not
    // whatever the subnet maps by default.
    let interface = InstanceNetworkInterfaceSpecification::builder()
        .device_index(0)
        .subnet_id(subnet)
        .set_groups(Some(groups))
        .associate_public_ip_address(s.public_ip)
        .delete_on_termination(true)
        .build();
    let user_data = (!s.user_data.is_empty())
        .then(|| base64::engine::general_purpose::STANDARD.encode(s.user_data.as_bytes()));
    let out = cloud
        .ec2
        .run_instances()
        .image_id(&s.ami)
        .instance_type(InstanceType::from(s.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .client_token(ctx.token)
        .network_interfaces(interface)
        .set_key_name(key_name)
        .set_user_data(user_data)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .set_block_device_mappings(Some(volumes))
        .tag_specifications(tag_spec(ResourceType::Instance, ctx))
        .tag_specifications(tag_spec(ResourceType::Volume, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("RunInstances", e))?;
    let id = created_id(
        "RunInstances",
        out.instances().first().and_then(|i| i.instance_id()),
    )?;
    let instance = wait_instance(cloud, ctx, &id, InstanceStateName::Running)
        .await?
        .ok_or_else(|| {
            CloudError::api(
                "RunInstances",
                "NotFound",
                format!("instance {id} vanished while starting"),
            )
        })?;
    Ok(Observed::new(id, instance_attrs(&instance)))
}

/// Poll until the instance reaches `target`, reporting its state as progress. Waiting for
/// `terminated` also ends when the instance is no longer listed (`Ok(None)`).
pub(super) async fn wait_instance(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
    target: InstanceStateName,
) -> Result<Option<Instance>, CloudError> {
    let start = Instant::now();
    let lookup = Lookup::Id(id.to_string());
    loop {
        // Right after RunInstances the id may not be visible yet: keep polling.
        let instance = gone_is_none(describe_instances(cloud, &lookup).await)?.and_then(first);
        match (&instance, instance.as_ref().and_then(state_of)) {
            (None, _) if target == InstanceStateName::Terminated => return Ok(None),
            (Some(_), Some(state)) if *state == target => return Ok(instance),
            (Some(i), Some(state)) if target == InstanceStateName::Running && !is_live(i) => {
                let reason = i
                    .state_reason()
                    .and_then(|r| r.message())
                    .unwrap_or("no reason given");
                return Err(CloudError::api(
                    "RunInstances",
                    "InstanceNotRunning",
                    format!(
                        "instance {id} is {} instead of running ({reason}); if it was created earlier with \
                         the same client token, AWS returns that instance again",
                        state.as_str()
                    ),
                ));
            }
            (_, Some(state)) => ctx.progress.status(state.as_str()),
            (_, None) => {}
        }
        let waited = start.elapsed();
        if waited >= cloud.waits.instance {
            return Err(CloudError::Timeout {
                what: format!("instance {id} to be {}", target.as_str()),
                waited,
            });
        }
        tokio::time::sleep(cloud.waits.poll).await;
    }
}

pub(super) async fn update_instance(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceSpec,
    id: &str,
) -> Result<(), CloudError> {
    let instance = describe_instances(cloud, &Lookup::Id(id.to_string()))
        .await?
        .into_iter()
        .next()
        .filter(is_live)
        .ok_or_else(|| vanished(Kind::Instance, id))?;
    let want = ctx.resolved.cloud_ids(&s.security_groups)?;
    if want.iter().cloned().collect::<BTreeSet<_>>() != instance_groups(&instance) {
        cloud
            .ec2
            .modify_instance_attribute()
            .instance_id(id)
            .set_groups(Some(want))
            .send()
            .await
            .map_err(|e| sdk_error("ModifyInstanceAttribute", e))?;
    }
    match state_of(&instance) {
        Some(InstanceStateName::Stopped) => {
            cloud
                .ec2
                .start_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| sdk_error("StartInstances", e))?;
            wait_instance(cloud, ctx, id, InstanceStateName::Running).await?;
        }
        Some(InstanceStateName::Stopping) => {
            return Err(CloudError::api(
                "StartInstances",
                "IncorrectInstanceState",
                format!("instance {id} is stopping; run again once it has stopped to start it"),
            ))
        }
        _ => {}
    }
    Ok(())
}

pub(super) async fn delete_instance(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
) -> Result<(), CloudError> {
    let terminated = cloud
        .ec2
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| sdk_error("TerminateInstances", e));
    if gone_is_none(terminated)?.is_none() {
        return Ok(());
    }
    wait_instance(cloud, ctx, id, InstanceStateName::Terminated).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn instance_drift_lines() {
        let want = BTreeSet::from(["sg-1".to_string()]);
        let have = BTreeSet::from(["sg-1".to_string(), "sg-2".to_string()]);
        assert!(instance_drift(&want, &want, Some(&InstanceStateName::Running), &ident).is_empty());
        assert_eq!(
            instance_drift(&want, &have, Some(&InstanceStateName::Stopped), &ident),
            vec![
                "security groups are [sg-1, sg-2], spec says [sg-1]",
                "instance is stopped"
            ]
        );
    }
}
