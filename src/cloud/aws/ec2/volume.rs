//! Standalone EBS volumes (the registry's image store): created in the zone of their
//! subnet, gp3 and encrypted, attached by the instances that list them, and never deleted
//! with an instance. Root volumes of instances also carry the env's tags; only volumes
//! tagged `provision:kind=volume` are resources of their own.

use super::*;

/// Marks a volume that is a resource of its own (not an instance's root volume).
pub(super) const TAG_KIND: &str = "provision:kind";
/// When provision last changed the volume's size (RFC 3339).
pub(super) const TAG_MODIFIED_AT: &str = "provision:modified-at";
const KIND_VOLUME: &str = "volume";

pub(super) async fn describe_volumes(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<Volume>, CloudError> {
    let mut filters = lookup.filters().unwrap_or_default();
    if matches!(lookup, Lookup::Filters(_)) {
        filters.push(filter(&format!("tag:{TAG_KIND}"), KIND_VOLUME));
    }
    let out: Vec<Volume> = cloud
        .ec2
        .describe_volumes()
        .set_volume_ids(lookup.ids())
        .set_filters((!filters.is_empty()).then_some(filters))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeVolumes", e))?;
    Ok(out.into_iter().filter(volume_is_live).collect())
}

pub(super) fn volume_is_live(v: &Volume) -> bool {
    !matches!(
        v.state(),
        Some(VolumeState::Deleting | VolumeState::Deleted | VolumeState::Error)
    )
}

pub(super) fn volume_attrs(v: &Volume) -> Attrs {
    Attrs::Volume {
        availability_zone: v.availability_zone().unwrap_or_default().to_string(),
        modified_at: v
            .tags()
            .iter()
            .find(|t| t.key() == Some(TAG_MODIFIED_AT))
            .and_then(|t| t.value())
            .map(str::to_string),
    }
}

/// Drift of a volume: only a size below the spec can be repaired (volumes only grow).
pub(super) fn volume_drift(s: &VolumeSpec, v: &Volume) -> Vec<String> {
    let have = v.size().unwrap_or_default();
    if i64::from(have) < i64::from(s.size_gb) {
        vec![format!("size is {have} GiB, spec says {} GiB", s.size_gb)]
    } else {
        vec![]
    }
}

pub(super) fn observe_volume(s: &VolumeSpec, v: &Volume) -> Observed {
    let mut o = Observed::new(v.volume_id().unwrap_or_default(), volume_attrs(v));
    o.drift = volume_drift(s, v);
    o
}

fn size_i32(gb: u32) -> i32 {
    i32::try_from(gb).unwrap_or(i32::MAX)
}

pub(super) async fn create_volume(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &VolumeSpec,
) -> Result<Observed, CloudError> {
    let zone = match ctx.resolved.attrs(&s.subnet)? {
        Attrs::Subnet { availability_zone } if !availability_zone.is_empty() => {
            availability_zone.clone()
        }
        _ => {
            return Err(CloudError::Refused(format!(
                "subnet `{}` has no availability zone in state; plan again before creating {}",
                s.subnet, ctx.id
            )))
        }
    };
    let mut tags = tag_spec(ResourceType::Volume, ctx);
    tags.tags
        .get_or_insert_with(Vec::new)
        .push(Tag::builder().key(TAG_KIND).value(KIND_VOLUME).build());
    let out = cloud
        .ec2
        .create_volume()
        .availability_zone(&zone)
        .size(size_i32(s.size_gb))
        .volume_type(VolumeType::Gp3)
        .encrypted(true)
        .client_token(ctx.token)
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|e| sdk_error("CreateVolume", e))?;
    let id = created_id("CreateVolume", out.volume_id())?;
    let volume = wait_volume(cloud, ctx, &id, |v| {
        matches!(v.state(), Some(VolumeState::Available | VolumeState::InUse))
    })
    .await?;
    Ok(observe_volume(s, &volume))
}

/// Poll the volume until `done` holds, reporting its state.
pub(super) async fn wait_volume(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
    done: impl Fn(&Volume) -> bool,
) -> Result<Volume, CloudError> {
    let start = Instant::now();
    let mut delays = super::super::common::poll_delays(cloud.waits.poll);
    loop {
        let v = settle(cloud, || async {
            describe_volumes(cloud, &Lookup::Id(id.to_string()))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| vanished(Kind::Volume, id))
        })
        .await?;
        if done(&v) {
            return Ok(v);
        }
        if let Some(state) = v.state() {
            ctx.progress.status(state.as_str());
        }
        let waited = start.elapsed();
        if waited >= cloud.waits.instance {
            return Err(CloudError::Timeout {
                what: format!("volume {id}"),
                waited,
            });
        }
        tokio::time::sleep(delays.next().unwrap_or(cloud.waits.poll)).await;
    }
}

pub(super) async fn update_volume(
    cloud: &AwsCloud,
    s: &VolumeSpec,
    id: &str,
) -> Result<(), CloudError> {
    let v = describe_volumes(cloud, &Lookup::Id(id.to_string()))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| vanished(Kind::Volume, id))?;
    if volume_drift(s, &v).is_empty() {
        return Ok(());
    }
    cloud
        .ec2
        .modify_volume()
        .volume_id(id)
        .size(size_i32(s.size_gb))
        .send()
        .await
        .map_err(|e| sdk_error("ModifyVolume", e))?;
    // Recorded on the volume (and through its attrs in the state): the next plan refuses
    // another change until AWS takes one.
    cloud
        .ec2
        .create_tags()
        .resources(id)
        .tags(
            Tag::builder()
                .key(TAG_MODIFIED_AT)
                .value(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("CreateTags", e))?;
    Ok(())
}

pub(super) async fn delete_volume(cloud: &AwsCloud, id: &str) -> Result<(), CloudError> {
    let ec2 = &cloud.ec2;
    // Attached to an instance that is still terminating: `VolumeInUse` until it is gone.
    async move {
        gone_is_ok(
            ec2.delete_volume()
                .volume_id(id)
                .send()
                .await
                .map_err(|e| in_use_code(sdk_error("DeleteVolume", e), "VolumeInUse")),
        )
    }
    .await
}

/// Attach `volumes` (cloud ids, in order) to the instance where they are not attached yet,
/// as `/dev/sdf`, `/dev/sdg`, ... A volume still attached to an instance on its way out
/// (the host this one replaces) is waited for.
pub(super) async fn attach_volumes(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    instance: &str,
    volumes: &[String],
) -> Result<(), CloudError> {
    for (n, vol) in volumes.iter().enumerate() {
        let device = format!("/dev/sd{}", (b'f' + n as u8) as char);
        let current = describe_volumes(cloud, &Lookup::Id(vol.clone()))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| vanished(Kind::Volume, vol))?;
        if attached_to(&current).contains(&instance.to_string()) {
            continue;
        }
        let what = format!("attaching volume {vol} to {instance}");
        let (limit, poll) = (cloud.waits.dependency, cloud.waits.poll);
        let ec2 = &cloud.ec2;
        let device = device.as_str();
        retry_in_use(&what, limit, poll, move || async move {
            ec2.attach_volume()
                .volume_id(vol)
                .instance_id(instance)
                .device(device)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| in_use_code(sdk_error("AttachVolume", e), "VolumeInUse"))
        })
        .await?;
        wait_volume(cloud, ctx, vol, |v| {
            v.attachments().iter().any(|a| {
                a.instance_id() == Some(instance)
                    && a.state() == Some(&VolumeAttachmentState::Attached)
            })
        })
        .await?;
    }
    Ok(())
}

/// Instances the volume is attached to (or attaching to).
pub(super) fn attached_to(v: &Volume) -> Vec<String> {
    v.attachments()
        .iter()
        .filter(|a| {
            matches!(
                a.state(),
                Some(VolumeAttachmentState::Attached | VolumeAttachmentState::Attaching)
            )
        })
        .filter_map(|a| a.instance_id().map(str::to_string))
        .collect()
}

/// EC2 answers `VolumeInUse` for a volume still attached: worth waiting for, like
/// `DependencyViolation`.
fn in_use_code(e: CloudError, code: &str) -> CloudError {
    match e {
        CloudError::Api {
            operation,
            code: c,
            message,
        } if c == code => CloudError::InUse {
            operation,
            code: c,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::VolumeAttachment;

    fn vol(size: i32, attached: &[(&str, VolumeAttachmentState)]) -> Volume {
        Volume::builder()
            .volume_id("vol-1")
            .size(size)
            .state(VolumeState::InUse)
            .set_attachments(Some(
                attached
                    .iter()
                    .map(|(i, s)| {
                        VolumeAttachment::builder()
                            .instance_id(*i)
                            .state(s.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build()
    }

    fn spec(size_gb: u32) -> VolumeSpec {
        VolumeSpec {
            subnet: "subnet-edge".into(),
            size_gb,
        }
    }

    #[test]
    fn only_a_smaller_volume_drifts() {
        assert!(volume_drift(&spec(200), &vol(200, &[])).is_empty());
        assert!(volume_drift(&spec(200), &vol(300, &[])).is_empty());
        assert_eq!(
            volume_drift(&spec(300), &vol(200, &[])),
            vec!["size is 200 GiB, spec says 300 GiB"]
        );
    }

    #[test]
    fn detaching_volumes_are_not_attached() {
        let v = vol(
            10,
            &[
                ("i-old", VolumeAttachmentState::Detaching),
                ("i-new", VolumeAttachmentState::Attaching),
            ],
        );
        assert_eq!(attached_to(&v), vec!["i-new".to_string()]);
    }

    #[test]
    fn volume_in_use_is_waited_for() {
        let e = in_use_code(
            CloudError::api("DeleteVolume", "VolumeInUse", "vol-1 is attached"),
            "VolumeInUse",
        );
        assert!(e.is_in_use());
        let e = in_use_code(
            CloudError::api("DeleteVolume", "InvalidVolume.NotFound", "gone"),
            "VolumeInUse",
        );
        assert!(!e.is_in_use());
    }
}
