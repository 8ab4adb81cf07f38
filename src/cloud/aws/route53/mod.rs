//! Route53: the optional private hosted zone and the record that names the Rancher server.
//!
//! Hosted zones are created with the step's idempotency token as `CallerReference` and
//! tagged; the cloud id is the zone id without `/hostedzone/`.
//!
//! Records cannot carry tags, so ownership is a TXT marker beside each record:
//! `_provision-owner.<name>` = `"provision:env=<env>,provision:id=<id>"`, written and deleted
//! in the same change batch as the record. A record of the same name that exists without our
//! marker is never overwritten or deleted. The cloud id of a record is
//! `<zone id>:<name>:<type>`.
//!
//! `list_owned` covers the private zones tagged for the environment and the marked records
//! inside those zones. Records in zones the environment does not own (the usual existing
//! public zone) are only found by `find`, through their marker, since scanning every zone of
//! the account for markers would be slow and reach into zones the tool was never pointed at.

use std::collections::BTreeMap;

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, HostedZone, HostedZoneConfig,
    ResourceRecord, ResourceRecordSet, RrType, Tag, TagResourceType, Vpc, VpcRegion,
};
use aws_smithy_types::error::operation::BuildError;

use super::common::{
    has_code, missing, owner_tags, ownership, poll_until, retry_in_use, wrong_kind, Ownership, Poll,
};
use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{
    tags_for, Attrs, DnsRecordSpec, HostedZoneSpec, Kind, LogicalId, Observed, RecordTarget,
    Resolved, Spec, ZoneRef, TAG_ENV, TAG_ID,
};

mod hosted_zone;
mod record;

use hosted_zone::*;
pub(super) use record::claim_record;
pub(super) use record::preflight;
use record::*;

const NO_ZONE: &[&str] = &["NoSuchHostedZone"];
const MARKER_PREFIX: &str = crate::names::OWNER_MARKER_PREFIX;
/// ListTagsForResources takes at most 10 zone ids.
const TAGS_BATCH: usize = 10;
/// Record types a name can point with; a CNAME excludes the others.
const ADDRESS_TYPES: &[&str] = &["A", "AAAA", "CNAME"];

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::HostedZone(s) => find_zone(cloud, ctx, s).await,
        Spec::DnsRecord(s) => find_record(cloud, ctx, s).await,
        other => Err(wrong_kind("Route53", other.kind())),
    }
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::HostedZone(s) => read_zone(cloud, ctx, s, cloud_id).await,
        Spec::DnsRecord(s) => read_record(cloud, ctx, s, cloud_id).await,
        other => Err(wrong_kind("Route53", other.kind())),
    }
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::HostedZone(s) => create_zone(cloud, ctx, s).await,
        Spec::DnsRecord(s) => write_record(cloud, ctx, s).await,
        other => Err(wrong_kind("Route53", other.kind())),
    }
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    match spec {
        // Its tags (a run that stopped between CreateHostedZone and the tagging call) and
        // its association with the env's VPC (taken away outside provision) are repaired;
        // its name and privacy are fixed at creation.
        Spec::HostedZone(s) => {
            associate_vpc(cloud, ctx, s, &current.cloud_id).await?;
            tag_zone(cloud, ctx, &current.cloud_id).await?;
            read_zone(cloud, ctx, s, &current.cloud_id)
                .await?
                .ok_or_else(|| super::common::gone(Kind::HostedZone, &current.cloud_id))
        }
        // The batch deletes the record of the old type, if the type changes.
        Spec::DnsRecord(s) => write_record(cloud, ctx, s).await,
        other => Err(wrong_kind("Route53", other.kind())),
    }
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    current: &Observed,
) -> Result<(), CloudError> {
    match kind {
        Kind::HostedZone => delete_zone(cloud, ctx, &current.cloud_id).await,
        Kind::DnsRecord => delete_record(cloud, ctx, &current.cloud_id).await,
        other => Err(wrong_kind("Route53", other)),
    }
}

/// Private zones tagged `provision:env=<env>`, and the records marked for `env` inside them.
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let zones: Vec<HostedZone> = all_zones(cloud)
        .await?
        .into_iter()
        .filter(|z| z.config().is_some_and(|c| c.private_zone()))
        .collect();
    let ids: Vec<String> = zones
        .iter()
        .map(|z| bare_zone_id(z.id()).to_string())
        .collect();
    let tags = zone_tags(cloud, &ids).await?;
    let mut owned = Vec::new();
    for zone in &zones {
        let id = bare_zone_id(zone.id());
        let pairs = tags.get(id).map(Vec::as_slice).unwrap_or_default();
        let (Some(tag_env), Some(logical)) =
            owner_tags(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        else {
            continue;
        };
        if tag_env != env {
            continue;
        }
        owned.push(Owned {
            kind: Kind::HostedZone,
            id: LogicalId::from(logical),
            cloud_id: id.to_string(),
            attrs: Attrs::HostedZone {
                name: normalize(zone.name()),
            },
            owner: crate::model::FoundOwner::from_tags(
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        });
        let records = all_records(cloud, id).await?;
        for marker in records.iter().filter(|r| r.r#type() == &RrType::Txt) {
            let marker_name = normalize(marker.name());
            let Some(name) = marker_name.strip_prefix(MARKER_PREFIX) else {
                continue;
            };
            let Some((marker_env, logical)) = marker
                .resource_records()
                .iter()
                .find_map(|r| parse_marker(r.value()))
            else {
                continue;
            };
            if marker_env != env {
                continue;
            }
            if let Some(record) = records
                .iter()
                .find(|r| normalize(r.name()) == name && is_address(r))
            {
                let record_type = record.r#type().as_str().to_string();
                owned.push(Owned {
                    kind: Kind::DnsRecord,
                    id: LogicalId::from(logical.as_str()),
                    cloud_id: record_cloud_id(id, name, &record_type),
                    attrs: Attrs::DnsRecord {
                        zone_id: id.to_string(),
                        fqdn: name.to_string(),
                        record_type,
                    },
                    owner: marker
                        .resource_records()
                        .iter()
                        .find_map(|r| record::marker_owner(r.value()))
                        .unwrap_or_default(),
                });
            }
        }
    }
    Ok(owned)
}

// ---------------------------------------------------------------------------------------
// Listing and small helpers

async fn all_zones(cloud: &AwsCloud) -> Result<Vec<HostedZone>, CloudError> {
    let mut zones = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .route53
            .list_hosted_zones()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("ListHostedZones", e))?;
        zones.extend(out.hosted_zones().iter().cloned());
        match (out.is_truncated(), out.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(zones)
}

async fn all_records(
    cloud: &AwsCloud,
    zone_id: &str,
) -> Result<Vec<ResourceRecordSet>, CloudError> {
    let mut records = Vec::new();
    let mut next: Option<(String, RrType)> = None;
    loop {
        let mut request = cloud
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id);
        if let Some((name, record_type)) = next.take() {
            request = request
                .start_record_name(name)
                .start_record_type(record_type);
        }
        let out = request
            .send()
            .await
            .map_err(|e| sdk_error("ListResourceRecordSets", e))?;
        records.extend(out.resource_record_sets().iter().cloned());
        match (
            out.is_truncated(),
            out.next_record_name(),
            out.next_record_type(),
        ) {
            (true, Some(name), Some(record_type)) => {
                next = Some((name.to_string(), record_type.clone()))
            }
            _ => break,
        }
    }
    Ok(records)
}

async fn zone_tags(
    cloud: &AwsCloud,
    ids: &[String],
) -> Result<BTreeMap<String, Vec<(String, String)>>, CloudError> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(TAGS_BATCH) {
        let resp = cloud
            .route53
            .list_tags_for_resources()
            .resource_type(TagResourceType::Hostedzone)
            .set_resource_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("ListTagsForResources", e))?;
        for set in resp.resource_tag_sets() {
            let Some(id) = set.resource_id() else {
                continue;
            };
            let tags = set
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect();
            out.insert(bare_zone_id(id).to_string(), tags);
        }
    }
    Ok(out)
}

fn is_address(set: &ResourceRecordSet) -> bool {
    ADDRESS_TYPES.contains(&set.r#type().as_str())
}

/// A DNS name without its trailing dot, in lower case.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A target DNS name as Route53 may echo it back: normalized, without `dualstack.`.
fn normalize_target(name: &str) -> String {
    let name = normalize(name);
    name.strip_prefix("dualstack.")
        .map(str::to_string)
        .unwrap_or(name)
}

/// `Z123` from `/hostedzone/Z123` (and `Z123` unchanged).
fn bare_zone_id(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

/// Zone ids look like `Z0123456789ABCDEFGHIJ` (upper-case letters and digits, or with the
/// `/hostedzone/` prefix); zone names are lower case or have dots.
fn looks_like_zone_id(s: &str) -> bool {
    s.starts_with("/hostedzone/")
        || (s.len() >= 8
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
}

fn build_error(e: BuildError) -> CloudError {
    CloudError::api("Route53", "InvalidRequest", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_are_told_from_names() {
        assert!(looks_like_zone_id("Z0123456789ABCDEFGHIJ"));
        assert!(looks_like_zone_id("/hostedzone/Z0123"));
        assert!(!looks_like_zone_id("example.com"));
        assert!(!looks_like_zone_id("zone"));
        assert!(!looks_like_zone_id("ZONE"));
        assert_eq!(bare_zone_id("/hostedzone/Z1"), "Z1");
        assert_eq!(normalize("Example.COM."), "example.com");
    }
}
