//! Instances: RunInstances with a ClientToken, waits, in-place changes and termination.

use super::*;

pub(super) async fn describe_instances(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<Instance>, CloudError> {
    describe_instances_by(&cloud.ec2, lookup.ids(), lookup.filters()).await
}

pub(super) async fn describe_instances_by(
    ec2: &aws_sdk_ec2::Client,
    ids: Option<Vec<String>>,
    filters: Option<Vec<Filter>>,
) -> Result<Vec<Instance>, CloudError> {
    let reservations = ec2
        .describe_instances()
        .set_instance_ids(ids)
        .set_filters(filters)
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

/// What an instance should be, in cloud ids, for drift checks.
pub(super) struct InstanceWants {
    pub groups: BTreeSet<String>,
    pub instance_type: String,
    /// Volumes of the env that must be attached (cloud ids).
    pub volumes: BTreeSet<String>,
    /// The ARN of the instance profile it must run with; `Some("")` for one the spec
    /// names but that is not known yet (not drift yet).
    pub instance_profile: Option<String>,
}

/// The ARN of the instance profile the instance runs with.
pub(super) fn instance_profile_arn(i: &Instance) -> Option<&str> {
    i.iam_instance_profile().and_then(|p| p.arn())
}

/// Volumes attached to the instance besides its root volume.
pub(super) fn attached_volumes(i: &Instance) -> BTreeSet<String> {
    let root = i.root_device_name();
    i.block_device_mappings()
        .iter()
        .filter(|m| m.device_name() != root)
        .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_string))
        .collect()
}

pub(super) fn instance_drift(
    want: &InstanceWants,
    i: &Instance,
    name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let want_groups = &want.groups;
    let have_groups = &instance_groups(i);
    let state = state_of(i);
    let mut lines = Vec::new();
    let have_type = i.instance_type().map(|t| t.as_str()).unwrap_or_default();
    if !have_type.is_empty() && have_type != want.instance_type {
        lines.push(format!(
            "instance type is {have_type}, spec says {}",
            want.instance_type
        ));
    }
    let attached = attached_volumes(i);
    for v in want.volumes.difference(&attached) {
        lines.push(format!("volume {} is not attached", name(v)));
    }
    if want_groups != have_groups {
        let list =
            |set: &BTreeSet<String>| set.iter().map(|g| name(g)).collect::<Vec<_>>().join(", ");
        lines.push(format!(
            "security groups are [{}], spec says [{}]",
            list(have_groups),
            list(want_groups)
        ));
    }
    match (&want.instance_profile, instance_profile_arn(i)) {
        (Some(w), _) if w.is_empty() => {}
        (Some(w), Some(have)) if w == have => {}
        (Some(w), Some(have)) => lines.push(format!("instance profile is {have}, spec says {w}")),
        (Some(w), None) => lines.push(format!("has no instance profile, spec says {w}")),
        (None, Some(have)) => lines.push(format!("has instance profile {have}, spec says none")),
        (None, None) => {}
    }
    if matches!(
        state,
        Some(InstanceStateName::Stopped | InstanceStateName::Stopping)
    ) {
        lines.push("instance is stopped".to_string());
    }
    lines
}

/// The ARN of the instance profile `s` names, `Some("")` while it is not created yet.
fn wanted_profile(ctx: &OpContext<'_>, s: &InstanceSpec) -> Option<String> {
    s.instance_profile
        .as_ref()
        .map(|p| match ctx.resolved.attrs(p) {
            Ok(Attrs::InstanceProfile { arn }) => arn.clone(),
            _ => String::new(),
        })
}

pub(super) fn observe_instance(
    ctx: &OpContext<'_>,
    s: &InstanceSpec,
    i: &Instance,
) -> Result<Observed, CloudError> {
    let want = InstanceWants {
        groups: ctx
            .resolved
            .cloud_ids(&s.security_groups)?
            .into_iter()
            .collect(),
        instance_type: s.instance_type.clone(),
        // A volume not created yet cannot be attached yet: not drift.
        volumes: s
            .volumes
            .iter()
            .filter_map(|v| ctx.resolved.cloud_id(v).ok().map(str::to_string))
            .collect(),
        instance_profile: wanted_profile(ctx, s),
    };
    let mut o = Observed::new(i.instance_id().unwrap_or_default(), instance_attrs(i));
    o.drift = instance_drift(&want, i, &|id| named(ctx, id));
    Ok(o)
}

/// Before any change: the image of an instance must exist in the region, be built for an
/// architecture the instance type runs, and the type must be offered in the zone of the
/// instance's subnet (when that subnet exists already).
pub async fn preflight(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<(), CloudError> {
    let Spec::Instance(instance) = spec else {
        return Ok(());
    };
    // All at once, and remembered for the run: the creates of the subnets (their zone)
    // and of the instances (the image's root device) ask the same.
    let (image, archs, offered, _zones) = futures::try_join!(
        image(cloud, &instance.ami),
        type_architectures(cloud, &instance.instance_type),
        zones_offering(cloud, std::slice::from_ref(&instance.instance_type)),
        available_zones(cloud),
    )?;
    root_fits(
        &instance.ami,
        &image,
        instance.root_volume_gb,
        ctx.id.as_str(),
        &instance.role,
    )
    .map_err(CloudError::Refused)?;
    if let Some(arch) = image.architecture() {
        arch_fits(
            &instance.ami,
            arch.as_str(),
            &instance.instance_type,
            &archs,
        )
        .map_err(CloudError::Refused)?;
    }
    if let Ok(Attrs::Subnet { availability_zone }) = ctx.resolved.attrs(&instance.subnet) {
        let here = offered
            .get(&instance.instance_type)
            .is_some_and(|zones| zones.contains(availability_zone));
        if !availability_zone.is_empty() && !here {
            return Err(CloudError::Refused(format!(
                "instance type {} is not offered in {availability_zone}, the zone of `{}` where {} runs; pick a type offered there",
                instance.instance_type, instance.subnet, ctx.id
            )));
        }
    }
    Ok(())
}

/// Architectures an instance type runs (`x86_64`, `arm64`); empty when the cloud does not
/// say (then nothing is checked).
async fn type_architectures(
    cloud: &AwsCloud,
    instance_type: &str,
) -> Result<Vec<String>, CloudError> {
    cloud
        .batches
        .archs
        .get(instance_type, |types| {
            fetch_type_architectures(cloud, types)
        })
        .await
}

/// The architectures of each of `types`, in one call (a type the answer leaves out: none,
/// then nothing is checked).
async fn fetch_type_architectures(
    cloud: &AwsCloud,
    types: Vec<String>,
) -> Result<std::collections::HashMap<String, Vec<String>>, CloudError> {
    let out = cloud
        .ec2
        .describe_instance_types()
        .set_instance_types(Some(
            types
                .iter()
                .map(|t| InstanceType::from(t.as_str()))
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| sdk_error("DescribeInstanceTypes", e));
    let out = match out {
        Err(e)
            if types.len() == 1
                && e.code()
                    .is_some_and(|c| c.starts_with("InvalidInstanceType")) =>
        {
            return Err(CloudError::Refused(format!(
                "instance type {} does not exist in region {}",
                types[0], cloud.region
            )))
        }
        other => other?,
    };
    let mut archs: std::collections::HashMap<String, Vec<String>> =
        types.iter().map(|t| (t.clone(), Vec::new())).collect();
    for t in out.instance_types() {
        if let Some(name) = t.instance_type() {
            archs.insert(
                name.as_str().to_string(),
                t.processor_info()
                    .map(|p| {
                        p.supported_architectures()
                            .iter()
                            .map(|a| a.as_str().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
    }
    Ok(archs)
}

/// The root volume must hold the image's root snapshot: a smaller one makes
/// `RunInstances` fail (`InvalidBlockDeviceMapping`) mid-apply, after the VPC, the
/// database and the load balancer exist. Checked in plan from `DescribeImages`.
pub(super) fn root_fits(
    ami: &str,
    image: &aws_sdk_ec2::types::Image,
    root_gb: u32,
    id: &str,
    role: &str,
) -> Result<(), String> {
    let root = image.root_device_name().unwrap_or(DEFAULT_ROOT_DEVICE);
    let Some(snapshot_gb) = image
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root))
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_size())
        .and_then(|gb| u32::try_from(gb).ok())
    else {
        return Ok(());
    };
    if snapshot_gb <= root_gb {
        return Ok(());
    }
    let setting = if role == "registry" {
        "the registry host's root volume is fixed at 30 GiB: use an image whose root snapshot \
         is at most 30 GiB (a minimal server image), or an external registry"
            .to_string()
    } else {
        format!("set nodes.root_volume_gb = {snapshot_gb} or more, or use a smaller image")
    };
    Err(format!(
        "AMI {ami} has a {snapshot_gb} GiB root snapshot, larger than the {root_gb} GiB root \
         volume of `{id}`; EC2 would refuse the launch (InvalidBlockDeviceMapping): {setting}"
    ))
}

/// An `arm64` image cannot boot on an `x86_64` type, and the other way round.
pub(super) fn arch_fits(
    ami: &str,
    arch: &str,
    instance_type: &str,
    archs: &[String],
) -> Result<(), String> {
    if archs.is_empty() || archs.iter().any(|a| a == arch) {
        return Ok(());
    }
    Err(format!(
        "AMI {ami} is built for {arch}, but instance type {instance_type} runs {}; pick an image and a type of the same architecture",
        archs.join(", ")
    ))
}

/// The image `ami` (asked once per run).
async fn image(cloud: &AwsCloud, ami: &str) -> Result<aws_sdk_ec2::types::Image, CloudError> {
    cloud
        .memo
        .get(format!("image:{ami}"), || fetch_image(cloud, ami))
        .await
}

async fn fetch_image(cloud: &AwsCloud, ami: &str) -> Result<aws_sdk_ec2::types::Image, CloudError> {
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
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidAMIID.")) => return Err(missing()),
        other => other?,
    };
    out.images().first().cloned().ok_or_else(missing)
}

pub(super) async fn root_device(cloud: &AwsCloud, ami: &str) -> Result<String, CloudError> {
    Ok(image(cloud, ami)
        .await?
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
    let profile = match &s.instance_profile {
        Some(r) => Some(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .name(ctx.resolved.cloud_id(r)?)
                .build(),
        ),
        None => None,
    };
    let root = root_device(cloud, &s.ami).await?;
    let volumes = vec![volume(&root, s.root_volume_gb)];
    let data_volumes = ctx.resolved.cloud_ids(&s.volumes)?;
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
    // EC2 answers a reused ClientToken with the instance it launched for it, for at least
    // 24 hours, even when that instance died at launch; and a changed request with the
    // same token gets `IdempotentParameterMismatch`. Either way the next attempt derives a
    // fresh token from the intent's: still deterministic, and every attempt's instance
    // carries the env's tags, so a crash in between is adopted, never duplicated.
    let mut last_error = None;
    for attempt in 0..TOKEN_ATTEMPTS {
        let token = attempt_token(ctx.token, attempt);
        let run = || {
            cloud
                .ec2
                .run_instances()
                .image_id(&s.ami)
                .instance_type(InstanceType::from(s.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .client_token(&token)
                .network_interfaces(interface.clone())
                .set_key_name(key_name.clone())
                .set_iam_instance_profile(profile.clone())
                .set_user_data(user_data.clone())
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_tokens(HttpTokensState::Required)
                        .http_endpoint(InstanceMetadataEndpointState::Enabled)
                        .build(),
                )
                .set_block_device_mappings(Some(volumes.clone()))
                .tag_specifications(tag_spec(ResourceType::Instance, ctx))
                .tag_specifications(tag_spec(ResourceType::Volume, ctx))
                .send()
        };
        let run = launch_when_profile_usable(cloud, ctx, s, || async {
            run().await.map_err(|e| sdk_error("RunInstances", e))
        })
        .await;
        let out = match run {
            Err(e) if e.code() == Some("IdempotentParameterMismatch") => {
                last_error = Some(e);
                continue;
            }
            other => other?,
        };
        let id = created_id(
            "RunInstances",
            out.instances().first().and_then(|i| i.instance_id()),
        )?;
        match wait_instance(cloud, ctx, &id, InstanceStateName::Running).await {
            Ok(Some(instance)) => {
                attach_volumes(cloud, ctx, &id, &data_volumes).await?;
                return Ok(Observed::new(id, instance_attrs(&instance)));
            }
            Ok(None) => {
                last_error = Some(CloudError::api(
                    "RunInstances",
                    "NotFound",
                    format!("instance {id} vanished while starting"),
                ))
            }
            Err(e) if e.code() == Some("InstanceNotRunning") => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| CloudError::api("RunInstances", "NoInstance", "no attempt made")))
}

/// How long a launch keeps retrying while EC2 does not see a new instance profile yet.
const PROFILE_SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// EC2's answer while a new instance profile has not reached it yet (IAM is eventually
/// consistent): `InvalidParameterValue` naming `iamInstanceProfile`.
pub(super) fn profile_not_usable_yet(e: &CloudError) -> bool {
    match e {
        CloudError::Api { code, message, .. } => {
            code == "InvalidParameterValue" && message.contains("iamInstanceProfile")
        }
        _ => false,
    }
}

/// Run `launch` (a RunInstances call) until EC2 accepts the instance profile, for at most
/// [`PROFILE_SETTLE_LIMIT`] (and `timeouts.dependency_minutes`). Nothing is launched by a
/// refused call, so retrying with the same client token is safe.
async fn launch_when_profile_usable<T, F, Fut>(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceSpec,
    launch: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    if s.instance_profile.is_none() {
        let mut launch = launch;
        return launch().await;
    }
    let limit = cloud.waits.dependency.min(PROFILE_SETTLE_LIMIT);
    let mut tries = 0u32;
    let mut launch = launch;
    let result = retry_while(limit, cloud.waits.poll, profile_not_usable_yet, || {
        tries += 1;
        if tries > 1 {
            ctx.progress.status(&format!(
                "waiting for IAM: instance profile not usable yet (try {tries})"
            ));
        }
        launch()
    })
    .await;
    match result {
        Ok(v) => Ok(v),
        Err(super::super::retry::RetryError::Exhausted { last, waited }) => {
            Err(CloudError::Refused(format!(
                "EC2 still refuses the instance profile of {} after {}s (IAM is eventually                  consistent; it usually takes seconds): {last}; run apply again",
                ctx.id,
                waited.as_secs()
            )))
        }
        Err(e) => Err(e.into_inner()),
    }
}

/// Launch attempts of one create, each with its own client token.
const TOKEN_ATTEMPTS: u32 = 3;

/// The client token of the `attempt`-th launch of an intent: the intent's token first,
/// then `<token>-<attempt>` (at most 64 characters, as EC2 requires).
pub(super) fn attempt_token(token: &str, attempt: u32) -> String {
    if attempt == 0 {
        token.to_string()
    } else {
        let suffix = format!("-{attempt}");
        let keep = token.len().min(64 - suffix.len());
        format!("{}{suffix}", &token[..keep])
    }
}

/// Wait until the instance reaches `target`, reporting its state as progress. Waiting for
/// `terminated` also ends when the instance is no longer listed (`Ok(None)`). Every wait
/// of this cloud shares one `DescribeInstances` per round (see [`super::watch`]).
pub(super) async fn wait_instance(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
    target: InstanceStateName,
) -> Result<Option<Instance>, CloudError> {
    let start = Instant::now();
    let _waiting = crate::cloud::Waiting::start(ctx.progress);
    let mut ticket = cloud.instances.watch(&cloud.ec2, cloud.waits.poll, id);
    loop {
        let limit = cloud.waits.instance.saturating_sub(start.elapsed());
        let round = match tokio::time::timeout(limit, ticket.rounds.changed()).await {
            Ok(Ok(())) => ticket.rounds.borrow_and_update().clone(),
            Ok(Err(_)) | Err(_) => {
                return Err(CloudError::Timeout {
                    what: format!("instance {id} to be {}", target.as_str()),
                    waited: start.elapsed(),
                })
            }
        };
        match (&round.error, round.seen.get(id)) {
            // Throttling and the like: the next round tries again.
            (Some(e), _) if e.is_transient() => continue,
            (Some(e), _) => return Err(clone_error(e)),
            // A round that began before this wait did not look at it.
            (None, None) => continue,
            (None, Some(seen)) => {
                let instance = seen.clone();
                match (&instance, instance.as_ref().and_then(state_of)) {
                    // Right after RunInstances the id may not be visible yet: keep polling.
                    (None, _) if target == InstanceStateName::Terminated => return Ok(None),
                    (Some(_), Some(state)) if *state == target => return Ok(instance),
                    (Some(i), Some(state))
                        if target == InstanceStateName::Running && !is_live(i) =>
                    {
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
            }
        }
    }
}

/// A copy of a shared round's error for one waiter.
fn clone_error(e: &CloudError) -> CloudError {
    match e {
        CloudError::Api {
            operation,
            code,
            message,
        } => CloudError::api(operation.clone(), code.clone(), message.clone()),
        other => CloudError::api("DescribeInstances", "Error", other.to_string()),
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
    let have_type = instance
        .instance_type()
        .map(|t| t.as_str().to_string())
        .unwrap_or_default();
    let mut state = state_of(&instance).cloned();
    if !have_type.is_empty() && have_type != s.instance_type {
        // In place, keeping the disks (etcd, K3s state) and the private IP: stop, change
        // the type, start. The engine does one node at a time.
        if !matches!(state, Some(InstanceStateName::Stopped)) {
            ctx.progress.status(&format!(
                "stopping to change type {have_type} → {}",
                s.instance_type
            ));
            cloud
                .ec2
                .stop_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| sdk_error("StopInstances", e))?;
            wait_instance(cloud, ctx, id, InstanceStateName::Stopped).await?;
        }
        cloud
            .ec2
            .modify_instance_attribute()
            .instance_id(id)
            .instance_type(
                aws_sdk_ec2::types::AttributeValue::builder()
                    .value(&s.instance_type)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("ModifyInstanceAttribute", e))?;
        state = Some(InstanceStateName::Stopped);
    }
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
    if let Some(want) = wanted_profile(ctx, s) {
        if instance_profile_arn(&instance) != Some(want.as_str()) {
            let name = ctx
                .resolved
                .cloud_id(s.instance_profile.as_ref().expect("named"))?
                .to_string();
            set_instance_profile(cloud, ctx, s, id, Some(&name)).await?;
        }
    } else if instance_profile_arn(&instance).is_some() {
        set_instance_profile(cloud, ctx, s, id, None).await?;
    }
    grow_root_volume(cloud, ctx, &instance, s.root_volume_gb).await?;
    match state.as_ref() {
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
    let volumes = ctx.resolved.cloud_ids(&s.volumes)?;
    attach_volumes(cloud, ctx, id, &volumes).await?;
    Ok(())
}

/// Grow the instance's root EBS volume to `size_gb` in place (ModifyVolume: no restart,
/// the disks and their data stay). Never shrinks: the plan replaces for that.
async fn grow_root_volume(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    instance: &aws_sdk_ec2::types::Instance,
    size_gb: u32,
) -> Result<(), CloudError> {
    let root = instance.root_device_name().unwrap_or_default();
    let Some(volume) = instance
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root))
        .and_then(|m| m.ebs()?.volume_id())
    else {
        return Ok(());
    };
    let have = super::volume::describe_volumes(cloud, &Lookup::Id(volume.to_string()))
        .await?
        .into_iter()
        .next()
        .and_then(|v| v.size())
        .unwrap_or_default();
    let want = i32::try_from(size_gb).unwrap_or(i32::MAX);
    if have >= want {
        return Ok(());
    }
    ctx.progress
        .status(&format!("growing root volume {volume} {have} → {want} GiB"));
    cloud
        .ec2
        .modify_volume()
        .volume_id(volume)
        .size(want)
        .send()
        .await
        .map_err(|e| sdk_error("ModifyVolume", e))?;
    Ok(())
}

/// Give the running instance the instance profile `name` (replacing the one it has), or
/// take its profile away (`None`).
async fn set_instance_profile(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InstanceSpec,
    id: &str,
    name: Option<&str>,
) -> Result<(), CloudError> {
    let out = cloud
        .ec2
        .describe_iam_instance_profile_associations()
        .filters(filter("instance-id", id))
        .send()
        .await
        .map_err(|e| sdk_error("DescribeIamInstanceProfileAssociations", e))?;
    let current = out
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| {
            matches!(
                a.state(),
                Some(
                    aws_sdk_ec2::types::IamInstanceProfileAssociationState::Associated
                        | aws_sdk_ec2::types::IamInstanceProfileAssociationState::Associating
                )
            )
        })
        .find_map(|a| a.association_id().map(str::to_string));
    let profile = |name: &str| {
        aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
            .name(name)
            .build()
    };
    match (name, current) {
        (Some(name), Some(association)) => {
            launch_when_profile_usable(cloud, ctx, s, || async {
                cloud
                    .ec2
                    .replace_iam_instance_profile_association()
                    .association_id(&association)
                    .iam_instance_profile(profile(name))
                    .send()
                    .await
                    .map_err(|e| sdk_error("ReplaceIamInstanceProfileAssociation", e))
            })
            .await?;
        }
        (Some(name), None) => {
            launch_when_profile_usable(cloud, ctx, s, || async {
                cloud
                    .ec2
                    .associate_iam_instance_profile()
                    .instance_id(id)
                    .iam_instance_profile(profile(name))
                    .send()
                    .await
                    .map_err(|e| sdk_error("AssociateIamInstanceProfile", e))
            })
            .await?;
        }
        (None, Some(association)) => {
            gone_is_ok(
                cloud
                    .ec2
                    .disassociate_iam_instance_profile()
                    .association_id(association)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DisassociateIamInstanceProfile", e)),
            )?;
        }
        (None, None) => {}
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

    #[test]
    fn a_root_volume_smaller_than_the_image_snapshot_is_refused_naming_the_setting() {
        let image = aws_sdk_ec2::types::Image::builder()
            .root_device_name("/dev/sda1")
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(EbsBlockDevice::builder().volume_size(64).build())
                    .build(),
            )
            .build();
        let err = root_fits("ami-1", &image, 50, "node-1", "server").unwrap_err();
        assert!(
            err.contains("AMI ami-1 has a 64 GiB root snapshot, larger than the 50 GiB root volume of `node-1`")
                && err.contains("InvalidBlockDeviceMapping")
                && err.contains("nodes.root_volume_gb = 64 or more"),
            "{err}"
        );
        let err = root_fits("ami-1", &image, 30, "registry", "registry").unwrap_err();
        assert!(err.contains("fixed at 30 GiB"), "{err}");
        assert_eq!(root_fits("ami-1", &image, 64, "node-1", "server"), Ok(()));
        // An image that says nothing of its root snapshot is not checked.
        let bare = aws_sdk_ec2::types::Image::builder().build();
        assert_eq!(root_fits("ami-1", &bare, 20, "node-1", "server"), Ok(()));
    }

    fn ident(s: &str) -> String {
        s.to_string()
    }

    fn instance(groups: &[&str], state: InstanceStateName, ty: &str, vols: &[&str]) -> Instance {
        use aws_sdk_ec2::types::{
            EbsInstanceBlockDevice, GroupIdentifier, InstanceBlockDeviceMapping, InstanceState,
        };
        let mut mappings = vec![InstanceBlockDeviceMapping::builder()
            .device_name("/dev/sda1")
            .ebs(
                EbsInstanceBlockDevice::builder()
                    .volume_id("vol-root")
                    .build(),
            )
            .build()];
        for (n, v) in vols.iter().enumerate() {
            mappings.push(
                InstanceBlockDeviceMapping::builder()
                    .device_name(format!("/dev/sd{}", (b'f' + n as u8) as char))
                    .ebs(EbsInstanceBlockDevice::builder().volume_id(*v).build())
                    .build(),
            );
        }
        Instance::builder()
            .instance_id("i-1")
            .root_device_name("/dev/sda1")
            .instance_type(InstanceType::from(ty))
            .state(InstanceState::builder().name(state).build())
            .set_security_groups(Some(
                groups
                    .iter()
                    .map(|g| GroupIdentifier::builder().group_id(*g).build())
                    .collect(),
            ))
            .set_block_device_mappings(Some(mappings))
            .build()
    }

    fn wants(groups: &[&str], ty: &str, vols: &[&str]) -> InstanceWants {
        InstanceWants {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            instance_type: ty.into(),
            volumes: vols.iter().map(|v| v.to_string()).collect(),
            instance_profile: None,
        }
    }

    #[test]
    fn a_missing_or_other_instance_profile_is_drift() {
        let profile = "arn:aws:iam::1:instance-profile/provision/lab/lab-us-east-1-ssm-profile";
        let bare = instance(&["sg-1"], InstanceStateName::Running, "t3.large", &[]);
        let mut with = bare.clone();
        with.iam_instance_profile = Some(
            aws_sdk_ec2::types::IamInstanceProfile::builder()
                .arn(profile)
                .build(),
        );
        let mut want = wants(&["sg-1"], "t3.large", &[]);
        assert!(instance_drift(&want, &bare, &ident).is_empty());
        assert_eq!(
            instance_drift(&want, &with, &ident),
            vec![format!("has instance profile {profile}, spec says none")]
        );
        want.instance_profile = Some(profile.into());
        assert!(instance_drift(&want, &with, &ident).is_empty());
        assert_eq!(
            instance_drift(&want, &bare, &ident),
            vec![format!("has no instance profile, spec says {profile}")]
        );
        // A profile not created yet: not drift yet.
        want.instance_profile = Some(String::new());
        assert!(instance_drift(&want, &bare, &ident).is_empty());
    }

    #[test]
    fn an_instance_profile_ec2_does_not_see_yet_is_waited_for() {
        let not_yet = CloudError::api(
            "RunInstances",
            "InvalidParameterValue",
            "Value (lab-us-east-1-ssm-profile) for parameter iamInstanceProfile.name is \
             invalid. Invalid IAM Instance Profile name",
        );
        assert!(profile_not_usable_yet(&not_yet));
        let other = CloudError::api(
            "RunInstances",
            "InvalidParameterValue",
            "Invalid value 'x' for instanceType",
        );
        assert!(!profile_not_usable_yet(&other));
        assert!(!profile_not_usable_yet(&CloudError::api(
            "RunInstances",
            "NoSuchEntity",
            "iamInstanceProfile"
        )));
    }

    #[test]
    fn instance_drift_lines() {
        let running = instance(&["sg-1"], InstanceStateName::Running, "t3.large", &[]);
        assert!(instance_drift(&wants(&["sg-1"], "t3.large", &[]), &running, &ident).is_empty());
        let stopped = instance(
            &["sg-1", "sg-2"],
            InstanceStateName::Stopped,
            "t3.large",
            &[],
        );
        assert_eq!(
            instance_drift(&wants(&["sg-1"], "t3.large", &[]), &stopped, &ident),
            vec![
                "security groups are [sg-1, sg-2], spec says [sg-1]",
                "instance is stopped"
            ]
        );
    }

    #[test]
    fn instance_type_and_missing_volumes_are_drift() {
        let i = instance(
            &["sg-1"],
            InstanceStateName::Running,
            "t3.large",
            &["vol-a"],
        );
        assert!(instance_drift(&wants(&["sg-1"], "t3.large", &["vol-a"]), &i, &ident).is_empty());
        assert_eq!(
            instance_drift(
                &wants(&["sg-1"], "t3.xlarge", &["vol-a", "vol-b"]),
                &i,
                &ident
            ),
            vec![
                "instance type is t3.large, spec says t3.xlarge",
                "volume vol-b is not attached"
            ]
        );
        assert_eq!(attached_volumes(&i), BTreeSet::from(["vol-a".to_string()]));
    }

    #[test]
    fn image_architecture_must_match_the_type() {
        let x86 = vec!["i386".to_string(), "x86_64".to_string()];
        assert!(arch_fits("ami-1", "x86_64", "t3.large", &x86).is_ok());
        let err = arch_fits("ami-1", "arm64", "t3.large", &x86).unwrap_err();
        assert!(err.contains("AMI ami-1 is built for arm64"), "{err}");
        assert!(err.contains("t3.large runs i386, x86_64"), "{err}");
        assert!(
            arch_fits("ami-1", "arm64", "m7g.large", &[]).is_ok(),
            "unknown: not checked"
        );
    }

    #[test]
    fn retry_tokens_are_fresh_and_fit_ec2() {
        let t = "0123456789abcdef0123456789abcdef0123";
        assert_eq!(attempt_token(t, 0), t);
        assert_eq!(attempt_token(t, 1), format!("{t}-1"));
        assert_ne!(attempt_token(t, 1), attempt_token(t, 2));
        assert!(attempt_token(&"x".repeat(64), 2).len() <= 64);
    }

    /// What `launch_when_profile_usable` needs besides the launch: a cloud whose waits are
    /// short (poll 5 ms, dependency 200 ms) and an instance spec with a profile.
    fn launch_inputs(profile: bool) -> (AwsCloud, InstanceSpec) {
        let cloud = crate::cloud::aws::rds::testing::Script::new(|_, _| {
            crate::cloud::aws::rds::testing::Reply::error(500, "Unused", "no call expected")
        })
        .cloud(Duration::from_secs(1));
        let spec = InstanceSpec {
            role: "k3s-node".into(),
            subnet: "subnet-private-1".into(),
            security_groups: vec![],
            ami: "ami-1".into(),
            instance_type: "t3.large".into(),
            root_volume_gb: 50,
            volumes: vec![],
            after: vec![],
            public_ip: false,
            key_pair: None,
            instance_profile: profile.then(|| "ssm-profile".into()),
            user_data_sha256: String::new(),
            user_data: String::new(),
        };
        (cloud, spec)
    }

    fn not_yet() -> CloudError {
        CloudError::api(
            "RunInstances",
            "InvalidParameterValue",
            "Value (p) for parameter iamInstanceProfile.name is invalid",
        )
    }

    #[tokio::test]
    async fn a_launch_is_retried_until_ec2_sees_the_profile_and_gives_up_clearly() {
        let (cloud, spec) = launch_inputs(true);
        let id = LogicalId::new("node-1");
        let resolved = crate::model::Resolved::default();
        let ctx = OpContext {
            env: "lab",
            owner: &crate::model::Owner::default(),
            id: &id,
            token: "t",
            resolved: &resolved,
            progress: &crate::cloud::NoProgress,
            delete: &crate::cloud::DeleteOptions::default(),
        };
        // Refused twice, then launched.
        let tries = std::sync::atomic::AtomicU32::new(0);
        let launched = launch_when_profile_usable(&cloud, &ctx, &spec, || async {
            match tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 | 1 => Err(not_yet()),
                _ => Ok("i-1"),
            }
        })
        .await;
        assert_eq!(launched.unwrap(), "i-1");
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Never usable: bounded, and the error says what to do.
        let err =
            launch_when_profile_usable(&cloud, &ctx, &spec, || async { Err::<(), _>(not_yet()) })
                .await
                .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("still refuses the instance profile of node-1")
                && text.contains("run apply again"),
            "{text}"
        );
        // Another error is not waited for; without a profile nothing is retried.
        let other = launch_when_profile_usable(&cloud, &ctx, &spec, || async {
            Err::<(), _>(CloudError::api(
                "RunInstances",
                "InvalidAMIID.NotFound",
                "x",
            ))
        })
        .await
        .unwrap_err();
        assert!(other.to_string().contains("InvalidAMIID.NotFound"));
        let (_, bare) = launch_inputs(false);
        let tries = std::sync::atomic::AtomicU32::new(0);
        let once = launch_when_profile_usable(&cloud, &ctx, &bare, || async {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err::<(), _>(not_yet())
        })
        .await;
        assert!(once.is_err());
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
