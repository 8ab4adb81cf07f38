//! Records: alias A / CNAME / A, each with its TXT ownership marker in the same change batch.

use super::*;

/// A record's value, in a form both the spec and the live record can be put in and compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RecordValue {
    record_type: String,
    /// `None` for alias records.
    ttl: Option<i64>,
    /// Alias target `(hosted zone id, dns name)`.
    alias: Option<(String, String)>,
    values: Vec<String>,
}

/// The record the spec asks for, from the resolved attributes of its target.
pub(super) fn wanted_record(
    spec: &DnsRecordSpec,
    resolved: &Resolved,
) -> Result<RecordValue, CloudError> {
    let ttl = Some(i64::from(spec.ttl));
    let bad = |r: &LogicalId, what: &str| {
        CloudError::api(
            "DnsRecord",
            "BadReference",
            format!("record {} points at `{r}`, which is not {what}", spec.name),
        )
    };
    match &spec.target {
        RecordTarget::AliasLoadBalancer(r) => match resolved.attrs(r)? {
            Attrs::LoadBalancer {
                dns_name,
                canonical_zone_id,
            } => Ok(RecordValue {
                record_type: "A".to_string(),
                ttl: None,
                alias: Some((canonical_zone_id.clone(), normalize_target(dns_name))),
                values: Vec::new(),
            }),
            _ => Err(bad(r, "a load balancer")),
        },
        RecordTarget::CnameLoadBalancer(r) => match resolved.attrs(r)? {
            Attrs::LoadBalancer { dns_name, .. } => Ok(RecordValue {
                record_type: "CNAME".to_string(),
                ttl,
                alias: None,
                values: vec![normalize_target(dns_name)],
            }),
            _ => Err(bad(r, "a load balancer")),
        },
        RecordTarget::InstancePrivateIp(r) => match resolved.attrs(r)? {
            Attrs::Instance { private_ip, .. } => Ok(RecordValue {
                record_type: "A".to_string(),
                ttl,
                alias: None,
                values: vec![private_ip.clone()],
            }),
            _ => Err(bad(r, "an instance")),
        },
    }
}

pub(super) fn live_record(set: &ResourceRecordSet) -> RecordValue {
    let record_type = set.r#type().as_str().to_string();
    let mut values: Vec<String> = set
        .resource_records()
        .iter()
        .map(|r| {
            if record_type == "CNAME" {
                normalize_target(r.value())
            } else {
                r.value().to_string()
            }
        })
        .collect();
    values.sort();
    RecordValue {
        record_type,
        ttl: if set.alias_target().is_some() {
            None
        } else {
            set.ttl()
        },
        alias: set.alias_target().map(|a| {
            (
                a.hosted_zone_id().to_string(),
                normalize_target(a.dns_name()),
            )
        }),
        values,
    }
}

/// One line per difference of the live record from the wanted one.
pub(super) fn record_drift(want: &RecordValue, have: &RecordValue) -> Vec<String> {
    let mut out = Vec::new();
    if want.record_type != have.record_type {
        out.push(format!(
            "record type is {}, want {}",
            have.record_type, want.record_type
        ));
    }
    let describe = |v: &RecordValue| match &v.alias {
        Some((zone, name)) => format!("alias {name} (zone {zone})"),
        None => v.values.join(", "),
    };
    if want.alias != have.alias || want.values != have.values {
        out.push(format!(
            "points at {}, want {}",
            describe(have),
            describe(want)
        ));
    }
    if want.ttl != have.ttl && want.alias.is_none() && have.alias.is_none() {
        out.push(format!(
            "TTL is {}, want {}",
            have.ttl.unwrap_or_default(),
            want.ttl.unwrap_or_default()
        ));
    }
    out
}

pub(super) fn to_record_set(
    name: &str,
    value: &RecordValue,
) -> Result<ResourceRecordSet, CloudError> {
    let mut builder = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::from(value.record_type.as_str()));
    if let Some((zone, dns_name)) = &value.alias {
        builder = builder.alias_target(
            AliasTarget::builder()
                .hosted_zone_id(zone)
                .dns_name(dns_name)
                .evaluate_target_health(true)
                .build()
                .map_err(build_error)?,
        );
    } else {
        builder = builder.set_ttl(value.ttl);
        for v in &value.values {
            builder = builder.resource_records(
                ResourceRecord::builder()
                    .value(v)
                    .build()
                    .map_err(build_error)?,
            );
        }
    }
    builder.build().map_err(build_error)
}

pub fn marker_name(name: &str) -> String {
    crate::names::owner_marker(&normalize(name))
}

/// The TXT value of the ownership marker, quoted as Route53 wants TXT values (records
/// take no tags: the marker carries the lineage too).
pub fn marker_value(env: &str, owner: &crate::model::Owner, id: &LogicalId) -> String {
    if owner.lineage.is_empty() {
        format!("\"{TAG_ENV}={env},{TAG_ID}={id}\"")
    } else {
        format!(
            "\"{TAG_ENV}={env},{TAG_ID}={id},{}={}\"",
            crate::model::TAG_LINEAGE,
            owner.lineage
        )
    }
}

/// The lineage a marker value names (`None` for markers written before lineages).
pub(super) fn marker_owner(value: &str) -> Option<crate::model::FoundOwner> {
    parse_marker(value)?;
    let inner = value.trim().trim_matches('"');
    Some(crate::model::FoundOwner::from_tags(
        inner.split(',').filter_map(|part| part.split_once('=')),
    ))
}

/// `(env, id)` from a marker value.
pub(super) fn parse_marker(value: &str) -> Option<(String, String)> {
    let inner = value.trim().trim_matches('"');
    let (mut env, mut id) = (None, None);
    for part in inner.split(',') {
        match part.split_once('=') {
            Some((k, v)) if k == TAG_ENV => env = Some(v.to_string()),
            Some((k, v)) if k == TAG_ID => id = Some(v.to_string()),
            _ => {}
        }
    }
    Some((env?, id?))
}

pub(super) fn marker_set(
    name: &str,
    env: &str,
    owner: &crate::model::Owner,
    id: &LogicalId,
    ttl: u32,
) -> Result<ResourceRecordSet, CloudError> {
    ResourceRecordSet::builder()
        .name(marker_name(name))
        .r#type(RrType::Txt)
        .ttl(i64::from(ttl))
        .resource_records(
            ResourceRecord::builder()
                .value(marker_value(env, owner, id))
                .build()
                .map_err(build_error)?,
        )
        .build()
        .map_err(build_error)
}

/// `<zone id>:<name>:<type>`.
pub fn record_cloud_id(zone_id: &str, name: &str, record_type: &str) -> String {
    format!("{zone_id}:{}:{record_type}", normalize(name))
}

pub(super) fn parse_record_cloud_id(cloud_id: &str) -> Result<(&str, &str, &str), CloudError> {
    let mut parts = cloud_id.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(zone), Some(name), Some(record_type)) if !zone.is_empty() && !name.is_empty() => {
            Ok((zone, name, record_type))
        }
        _ => Err(CloudError::api(
            "DnsRecord",
            "BadCloudId",
            format!("`{cloud_id}` is not a record id of the form <zone id>:<name>:<type>"),
        )),
    }
}

/// Before any change: the existing zone a record goes into must be there (and be one).
pub(in crate::cloud::aws) async fn preflight(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<(), CloudError> {
    match spec {
        Spec::DnsRecord(DnsRecordSpec {
            zone: zone @ ZoneRef::Existing(_),
            ..
        }) => resolve_zone(cloud, ctx, zone).await.map(|_| ()),
        _ => Ok(()),
    }
}

/// A hosted zone as found for a record.
#[derive(Clone)]
pub(super) struct Zone {
    id: String,
    name: String,
}

/// Find the zone a record goes into: the managed zone's id, a zone id, or an exact name.
pub(super) async fn resolve_zone(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    zone: &ZoneRef,
) -> Result<Zone, CloudError> {
    let not_found = |z: &str| CloudError::Refused(format!("Route53 zone `{z}` not found"));
    let by_id = |id: String| async move {
        match cloud.route53.get_hosted_zone().id(&id).send().await {
            Ok(out) => {
                let zone = out
                    .hosted_zone()
                    .ok_or_else(|| missing("GetHostedZone", "hosted zone"))?;
                Ok(Some(Zone {
                    id: bare_zone_id(zone.id()).to_string(),
                    name: normalize(zone.name()),
                }))
            }
            Err(e) if has_code(&e, NO_ZONE) => Ok(None),
            Err(e) => Err(sdk_error("GetHostedZone", e)),
        }
    };
    match zone {
        ZoneRef::Managed(r) => {
            let id = ctx.resolved.cloud_id(r)?.to_string();
            if let Ok(Attrs::HostedZone { name }) = ctx.resolved.attrs(r) {
                return Ok(Zone {
                    id,
                    name: name.clone(),
                });
            }
            by_id(id.clone()).await?.ok_or_else(|| not_found(&id))
        }
        // An existing zone stays where it is during a run: looked up once.
        ZoneRef::Existing(z) => {
            cloud
                .memo
                .get(format!("zone:{z}"), || existing_zone(cloud, z))
                .await
        }
    }
}

/// An existing zone, by its id or its exact name.
async fn existing_zone(cloud: &AwsCloud, z: &str) -> Result<Zone, CloudError> {
    let not_found = |z: &str| CloudError::Refused(format!("Route53 zone `{z}` not found"));
    match z {
        z if looks_like_zone_id(z) => {
            let id = bare_zone_id(z).to_string();
            match cloud.route53.get_hosted_zone().id(&id).send().await {
                Ok(out) => {
                    let zone = out
                        .hosted_zone()
                        .ok_or_else(|| missing("GetHostedZone", "hosted zone"))?;
                    Ok(Zone {
                        id: bare_zone_id(zone.id()).to_string(),
                        name: normalize(zone.name()),
                    })
                }
                Err(e) if has_code(&e, NO_ZONE) => Err(not_found(z)),
                Err(e) => Err(sdk_error("GetHostedZone", e)),
            }
        }
        z => {
            let wanted = normalize(z);
            let out = cloud
                .route53
                .list_hosted_zones_by_name()
                .dns_name(format!("{wanted}."))
                .max_items(100)
                .send()
                .await
                .map_err(|e| sdk_error("ListHostedZonesByName", e))?;
            let matches: Vec<&HostedZone> = out
                .hosted_zones()
                .iter()
                .filter(|h| normalize(h.name()) == wanted)
                .collect();
            match matches.as_slice() {
                [] => Err(not_found(z)),
                [one] => Ok(Zone {
                    id: bare_zone_id(one.id()).to_string(),
                    name: wanted,
                }),
                many => Err(CloudError::Refused(format!(
                    "{} Route53 zones are named `{wanted}` ({}); set the zone by its id instead of its name",
                    many.len(),
                    many.iter()
                        .map(|h| {
                            let kind = if h.config().is_some_and(|c| c.private_zone()) { "private" } else { "public" };
                            format!("{} {kind}", bare_zone_id(h.id()))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

/// What a name holds in a zone: its address record and our marker, if any.
pub(super) struct AtName {
    records: Vec<ResourceRecordSet>,
    marker: Option<ResourceRecordSet>,
}

impl AtName {
    pub(super) fn owner(&self) -> Option<(String, String)> {
        self.marker
            .as_ref()?
            .resource_records()
            .iter()
            .find_map(|r| parse_marker(r.value()))
    }

    /// The lineage the marker names, if any.
    fn lineage(&self) -> Option<String> {
        self.marker
            .as_ref()?
            .resource_records()
            .iter()
            .find_map(|r| marker_owner(r.value()))?
            .lineage
    }

    /// Marked for this env and id, and for this lineage (a marker written before
    /// lineages counts; it is rewritten with the lineage on the next write).
    pub(super) fn owned_by(&self, ctx: &OpContext<'_>) -> bool {
        self.owner()
            .is_some_and(|(e, i)| e == ctx.env && i == ctx.id.as_str())
            && match self.lineage() {
                Some(l) => ctx.owner.lineage.is_empty() || l == ctx.owner.lineage,
                None => true,
            }
    }

    pub(super) fn describe_owner(&self) -> String {
        match (self.owner(), self.lineage()) {
            (Some((e, i)), Some(l)) => format!(
                "its marker {} names env `{e}`, id `{i}`, lineage {l}",
                MARKER_PREFIX.trim_end_matches('.')
            ),
            (Some((e, i)), None) => format!(
                "its marker {} names env `{e}`, id `{i}`",
                MARKER_PREFIX.trim_end_matches('.')
            ),
            (None, _) => "it has no ownership marker".to_string(),
        }
    }
}

pub(super) async fn at_name(
    cloud: &AwsCloud,
    zone_id: &str,
    name: &str,
) -> Result<AtName, CloudError> {
    // The name and its marker, at once.
    let marker = marker_name(name);
    let (records, markers) = futures::try_join!(
        records_named(cloud, zone_id, name),
        records_named(cloud, zone_id, &marker)
    )?;
    let records = records.into_iter().filter(is_address).collect();
    let marker = markers.into_iter().find(|r| r.r#type() == &RrType::Txt);
    Ok(AtName { records, marker })
}

/// The record sets with exactly this name.
pub(super) async fn records_named(
    cloud: &AwsCloud,
    zone_id: &str,
    name: &str,
) -> Result<Vec<ResourceRecordSet>, CloudError> {
    let wanted = normalize(name);
    // While `plan` surveys: a zone whose records fit one page is listed once for every
    // name asked (a big zone is still asked name by name).
    if let Some(survey) = cloud.current_survey() {
        let page = survey
            .lists
            .get(format!("zone-records:{zone_id}"), || {
                whole_zone_in_one_page(cloud, zone_id)
            })
            .await;
        match page {
            Ok(Some(all)) => {
                return Ok(all
                    .into_iter()
                    .filter(|r| normalize(r.name()) == wanted)
                    .collect())
            }
            Ok(None) => {}
            Err(CloudError::Api { code, .. }) if code == "NoSuchHostedZone" => {}
            Err(e) => return Err(e),
        }
    }
    let out = cloud
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(format!("{wanted}."))
        .max_items(20)
        .send()
        .await
        .map_err(|e| sdk_error("ListResourceRecordSets", e))?;
    Ok(out
        .resource_record_sets()
        .iter()
        .filter(|r| normalize(r.name()) == wanted)
        .cloned()
        .collect())
}

/// Every record set of the zone when they fit the first page (`None` when they do not).
async fn whole_zone_in_one_page(
    cloud: &AwsCloud,
    zone_id: &str,
) -> Result<Option<Vec<ResourceRecordSet>>, CloudError> {
    let out = cloud
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .max_items(300)
        .send()
        .await
        .map_err(|e| sdk_error("ListResourceRecordSets", e))?;
    Ok((!out.is_truncated()).then(|| out.resource_record_sets().to_vec()))
}

pub(super) async fn find_record(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DnsRecordSpec,
) -> Result<Option<Observed>, CloudError> {
    let zone = resolve_zone(cloud, ctx, &spec.zone).await?;
    let here = at_name(cloud, &zone.id, &spec.name).await?;
    if !here.owned_by(ctx) {
        return Ok(None);
    }
    Ok(here
        .records
        .first()
        .map(|r| observe_record(ctx, spec, &zone.id, r, &here)))
}

pub(super) async fn read_record(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DnsRecordSpec,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    let (zone_id, name, record_type) = parse_record_cloud_id(cloud_id)?;
    let here = match at_name(cloud, zone_id, name).await {
        Ok(here) => here,
        Err(CloudError::Api { code, .. }) if code == "NoSuchHostedZone" => return Ok(None),
        Err(e) => return Err(e),
    };
    let record = here
        .records
        .iter()
        .find(|r| r.r#type().as_str() == record_type)
        .or_else(|| here.records.first());
    Ok(record.map(|r| observe_record(ctx, spec, zone_id, r, &here)))
}

pub(super) fn observe_record(
    ctx: &OpContext<'_>,
    spec: &DnsRecordSpec,
    zone_id: &str,
    record: &ResourceRecordSet,
    here: &AtName,
) -> Observed {
    let live = live_record(record);
    let mut drift = match wanted_record(spec, ctx.resolved) {
        Ok(want) => record_drift(&want, &live),
        Err(_) => Vec::new(),
    };
    if !here.owned_by(ctx) {
        drift.push(format!(
            "not marked as owned by env {}: {}",
            ctx.env,
            here.describe_owner()
        ));
    }
    let name = normalize(record.name());
    Observed {
        fixed: Vec::new(),
        cloud_id: record_cloud_id(zone_id, &name, &live.record_type),
        attrs: Attrs::DnsRecord {
            zone_id: zone_id.to_string(),
            fqdn: name,
            record_type: live.record_type,
        },
        drift,
    }
}

/// Create or converge the record: one batch that removes an owned record of another type,
/// upserts the wanted record and upserts the marker.
pub(super) async fn write_record(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DnsRecordSpec,
) -> Result<Observed, CloudError> {
    let zone = resolve_zone(cloud, ctx, &spec.zone).await?;
    let name = normalize(&spec.name);
    if name != zone.name && !name.ends_with(&format!(".{}", zone.name)) {
        return Err(CloudError::Refused(format!(
            "record {name} does not belong in zone {} ({})",
            zone.name, zone.id
        )));
    }
    let want = wanted_record(spec, ctx.resolved)?;
    let here = at_name(cloud, &zone.id, &name).await?;
    let foreign_marker = here.marker.is_some() && !here.owned_by(ctx);
    if (!here.records.is_empty() && !here.owned_by(ctx)) || foreign_marker {
        return Err(CloudError::Refused(format!(
            "record {name} already exists in zone {} and was not created by env {} ({}); \
             remove it by hand or choose another hostname",
            zone.name,
            ctx.env,
            here.describe_owner()
        )));
    }
    let mut changes = Vec::new();
    for old in here
        .records
        .iter()
        .filter(|r| r.r#type().as_str() != want.record_type)
    {
        changes.push(change(ChangeAction::Delete, old.clone())?);
    }
    changes.push(change(ChangeAction::Upsert, to_record_set(&name, &want)?)?);
    changes.push(change(
        ChangeAction::Upsert,
        marker_set(&name, ctx.env, ctx.owner, ctx.id, spec.ttl)?,
    )?);
    submit(cloud, ctx, &zone.id, changes, &format!("record {name}")).await?;
    Ok(Observed::new(
        record_cloud_id(&zone.id, &name, &want.record_type),
        Attrs::DnsRecord {
            zone_id: zone.id.clone(),
            fqdn: name,
            record_type: want.record_type,
        },
    ))
}

pub(super) async fn delete_record(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    cloud_id: &str,
) -> Result<(), CloudError> {
    let (zone_id, name, record_type) = parse_record_cloud_id(cloud_id)?;
    let here = match at_name(cloud, zone_id, name).await {
        Ok(here) => here,
        Err(CloudError::Api { code, .. }) if code == "NoSuchHostedZone" => return Ok(()),
        Err(e) => return Err(e),
    };
    let record = here
        .records
        .iter()
        .find(|r| r.r#type().as_str() == record_type);
    let ours = here.owned_by(ctx);
    if record.is_some() && !ours {
        return Err(CloudError::Refused(format!(
            "record {name} in zone {zone_id} is no longer marked as created by env {} ({}); \
             not deleting it",
            ctx.env,
            here.describe_owner()
        )));
    }
    let mut changes = Vec::new();
    if let Some(record) = record {
        changes.push(change(ChangeAction::Delete, record.clone())?);
    }
    if let (true, Some(marker)) = (ours, &here.marker) {
        changes.push(change(ChangeAction::Delete, marker.clone())?);
    }
    if changes.is_empty() {
        return Ok(());
    }
    submit(
        cloud,
        ctx,
        zone_id,
        changes,
        &format!("deletion of record {name}"),
    )
    .await
}

pub(super) fn change(action: ChangeAction, set: ResourceRecordSet) -> Result<Change, CloudError> {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(build_error)
}

/// Rewrite the ownership marker of a record made before lineage tags with this state's
/// lineage (records take no tags). Only a marker for this env and id is rewritten.
pub(in crate::cloud::aws) async fn claim_record(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    cloud_id: &str,
) -> Result<(), CloudError> {
    let (zone_id, name, _) = parse_record_cloud_id(cloud_id)?;
    let here = at_name(cloud, zone_id, name).await?;
    if !here.owned_by(ctx) {
        return Err(CloudError::Refused(format!(
            "record {name} is not marked as created by env {} ({}); not claiming it",
            ctx.env,
            here.describe_owner()
        )));
    }
    let ttl = here
        .marker
        .as_ref()
        .and_then(|m| m.ttl())
        .and_then(|t| u32::try_from(t).ok())
        .unwrap_or(300);
    let change = change(
        ChangeAction::Upsert,
        marker_set(name, ctx.env, ctx.owner, ctx.id, ttl)?,
    )?;
    submit(
        cloud,
        ctx,
        zone_id,
        vec![change],
        &format!("marker of {name}"),
    )
    .await
}

/// Send one change batch and wait until Route53 reports it in sync.
pub(super) async fn submit(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    zone_id: &str,
    changes: Vec<Change>,
    what: &str,
) -> Result<(), CloudError> {
    let batch = ChangeBatch::builder()
        .comment(format!("provision env {}", ctx.env))
        .set_changes(Some(changes))
        .build()
        .map_err(build_error)?;
    let out = cloud
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| sdk_error("ChangeResourceRecordSets", e))?;
    let change_id = out
        .change_info()
        .ok_or_else(|| missing("ChangeResourceRecordSets", "change info"))?
        .id();
    wait_insync(cloud, ctx, change_id, what).await
}

pub(super) async fn wait_insync(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    change_id: &str,
    what: &str,
) -> Result<(), CloudError> {
    let id = change_id.trim_start_matches("/change/");
    poll_until(
        cloud,
        ctx.progress,
        &format!("{what} to be in sync"),
        cloud.waits.dns,
        || async move {
            let out = cloud
                .route53
                .get_change()
                .id(id)
                .send()
                .await
                .map_err(|e| sdk_error("GetChange", e))?;
            let status = out.change_info().map(|c| c.status().clone());
            Ok(match status {
                Some(ChangeStatus::Insync) => Poll::Done(()),
                Some(other) => Poll::Pending(other.as_str().to_lowercase()),
                None => Poll::Pending("unknown".to_string()),
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved() -> Resolved {
        let mut r = Resolved::default();
        r.entries.insert(
            "nlb".into(),
            Observed::new(
                "arn:lb",
                Attrs::LoadBalancer {
                    dns_name: "lab-nlb-123.elb.us-east-1.amazonaws.com".into(),
                    canonical_zone_id: "Z26RNL4JYFTOTI".into(),
                },
            ),
        );
        r.entries.insert(
            "node-1".into(),
            Observed::new(
                "i-1",
                Attrs::Instance {
                    private_ip: "10.42.1.10".into(),
                    public_ip: None,
                    availability_zone: "us-east-1a".into(),
                },
            ),
        );
        r
    }

    fn spec(target: RecordTarget) -> DnsRecordSpec {
        DnsRecordSpec {
            zone: ZoneRef::Existing("example.com".into()),
            name: "rancher.example.com".into(),
            target,
            ttl: 30,
        }
    }

    #[test]
    fn wanted_records_follow_the_target() {
        let alias = wanted_record(
            &spec(RecordTarget::AliasLoadBalancer("nlb".into())),
            &resolved(),
        )
        .unwrap();
        assert_eq!(alias.record_type, "A");
        assert_eq!(alias.ttl, None);
        assert_eq!(
            alias.alias,
            Some((
                "Z26RNL4JYFTOTI".into(),
                "lab-nlb-123.elb.us-east-1.amazonaws.com".into()
            ))
        );
        let cname = wanted_record(
            &spec(RecordTarget::CnameLoadBalancer("nlb".into())),
            &resolved(),
        )
        .unwrap();
        assert_eq!(cname.record_type, "CNAME");
        assert_eq!(cname.ttl, Some(30));
        assert_eq!(
            cname.values,
            vec!["lab-nlb-123.elb.us-east-1.amazonaws.com"]
        );
        let a = wanted_record(
            &spec(RecordTarget::InstancePrivateIp("node-1".into())),
            &resolved(),
        )
        .unwrap();
        assert_eq!(
            (a.record_type.as_str(), a.values.as_slice()),
            ("A", &["10.42.1.10".to_string()][..])
        );
        assert!(wanted_record(
            &spec(RecordTarget::InstancePrivateIp("nlb".into())),
            &resolved()
        )
        .is_err());
        assert!(matches!(
            wanted_record(
                &spec(RecordTarget::AliasLoadBalancer("missing".into())),
                &resolved()
            ),
            Err(CloudError::MissingRef(_))
        ));
    }

    #[test]
    fn live_records_round_trip_and_normalize() {
        let want = wanted_record(
            &spec(RecordTarget::AliasLoadBalancer("nlb".into())),
            &resolved(),
        )
        .unwrap();
        let mut set = to_record_set("rancher.example.com", &want).unwrap();
        assert!(record_drift(&want, &live_record(&set)).is_empty());
        // Route53 answers with a trailing dot and may add `dualstack.`.
        set.alias_target = Some(
            AliasTarget::builder()
                .hosted_zone_id("Z26RNL4JYFTOTI")
                .dns_name("dualstack.LAB-nlb-123.elb.us-east-1.amazonaws.com.")
                .evaluate_target_health(true)
                .build()
                .unwrap(),
        );
        assert!(record_drift(&want, &live_record(&set)).is_empty());
        let cname = wanted_record(
            &spec(RecordTarget::CnameLoadBalancer("nlb".into())),
            &resolved(),
        )
        .unwrap();
        let set = to_record_set("rancher.example.com", &cname).unwrap();
        assert_eq!(set.ttl(), Some(30));
        assert!(record_drift(&cname, &live_record(&set)).is_empty());
    }

    #[test]
    fn drift_names_type_target_and_ttl() {
        let want = wanted_record(
            &spec(RecordTarget::InstancePrivateIp("node-1".into())),
            &resolved(),
        )
        .unwrap();
        let have = RecordValue {
            record_type: "A".into(),
            ttl: Some(300),
            alias: None,
            values: vec!["10.42.1.11".into()],
        };
        assert_eq!(
            record_drift(&want, &have),
            vec![
                "points at 10.42.1.11, want 10.42.1.10",
                "TTL is 300, want 30"
            ]
        );
        let cname = RecordValue {
            record_type: "CNAME".into(),
            ttl: Some(30),
            alias: None,
            values: vec!["10.42.1.10".into()],
        };
        assert_eq!(
            record_drift(&want, &cname),
            vec!["record type is CNAME, want A"]
        );
    }

    #[test]
    fn markers_round_trip() {
        let id = LogicalId::from("record");
        assert_eq!(
            marker_name("Rancher.Example.com."),
            "_provision-owner.rancher.example.com"
        );
        let value = marker_value("lab", &crate::model::Owner::default(), &id);
        assert_eq!(value, "\"provision:env=lab,provision:id=record\"");
        assert_eq!(parse_marker(&value), Some(("lab".into(), "record".into())));
        assert_eq!(marker_owner(&value).unwrap().lineage, None);
        let owner = crate::model::Owner {
            lineage: "l-1".into(),
            origin: "ws 2026-12-05T08:00Z".into(),
        };
        let value = marker_value("lab", &owner, &id);
        assert_eq!(
            value,
            "\"provision:env=lab,provision:id=record,provision:lineage=l-1\""
        );
        assert_eq!(parse_marker(&value), Some(("lab".into(), "record".into())));
        assert_eq!(
            marker_owner(&value).unwrap().lineage.as_deref(),
            Some("l-1")
        );
        assert_eq!(parse_marker("\"v=spf1 -all\""), None);
    }

    #[test]
    fn record_ids_round_trip() {
        let id = record_cloud_id("Z123", "Rancher.example.com.", "A");
        assert_eq!(id, "Z123:rancher.example.com:A");
        assert_eq!(
            parse_record_cloud_id(&id).unwrap(),
            ("Z123", "rancher.example.com", "A")
        );
        assert!(parse_record_cloud_id("Z123").is_err());
    }
}
