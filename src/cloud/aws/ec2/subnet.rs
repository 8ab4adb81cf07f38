//! Subnets: one per zone, in the zone the blueprint picks by index.

use super::*;

pub(super) async fn describe_subnets(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<Subnet>, CloudError> {
    cloud
        .ec2
        .describe_subnets()
        .set_subnet_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeSubnets", e))
}

pub(super) async fn create_subnet(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &SubnetSpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let zone = zone_for(cloud, s.zone_index, &s.instance_types).await?;
    let created = cloud
        .ec2
        .create_subnet()
        .vpc_id(vpc)
        .cidr_block(&s.cidr)
        .availability_zone(&zone)
        .tag_specifications(tag_spec(ResourceType::Subnet, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateSubnet", e));
    let id = match created {
        Ok(out) => created_id("CreateSubnet", out.subnet().and_then(|x| x.subnet_id()))?,
        // A retried call whose first reply was lost: the CIDR is taken by the subnet that
        // call made. Take it if it carries our tags.
        Err(e) if e.code() == Some("InvalidSubnet.Conflict") => {
            let lookup =
                Lookup::Filters(vec![filter("vpc-id", vpc), filter("cidr-block", &s.cidr)]);
            let subnet = describe_subnets(cloud, &lookup)
                .await?
                .into_iter()
                .next()
                .ok_or(e)?;
            if tag_value(subnet.tags(), TAG_ENV) != Some(ctx.env)
                || tag_value(subnet.tags(), TAG_ID) != Some(ctx.id.as_str())
            {
                return Err(CloudError::Refused(format!(
                    "{} in {vpc} is taken by subnet {} without the tags {TAG_ENV}={}, {TAG_ID}={}; \
                     change network.vpc_cidr or remove it",
                    s.cidr,
                    subnet.subnet_id().unwrap_or_default(),
                    ctx.env,
                    ctx.id
                )));
            }
            subnet.subnet_id().unwrap_or_default().to_string()
        }
        Err(e) => return Err(e),
    };
    if s.map_public_ip {
        set_map_public_ip(cloud, &id, true).await?;
    }
    Ok(Observed::new(
        id,
        Attrs::Subnet {
            availability_zone: zone,
        },
    ))
}

pub(super) async fn zone_for(
    cloud: &AwsCloud,
    index: usize,
    types: &[String],
) -> Result<String, CloudError> {
    let (names, offered) =
        futures::try_join!(available_zones(cloud), zones_offering(cloud, types))?;
    choose_zone(names, &offered, index, &cloud.region).map_err(CloudError::Refused)
}

/// The available zones of the region (asked once per run).
pub(super) async fn available_zones(cloud: &AwsCloud) -> Result<Vec<String>, CloudError> {
    cloud
        .memo
        .get("zones", || async {
            let out = cloud
                .ec2
                .describe_availability_zones()
                .filters(filter("state", "available"))
                .send()
                .await
                .map_err(|e| sdk_error("DescribeAvailabilityZones", e))?;
            Ok(out
                .availability_zones()
                .iter()
                // Local and Wavelength zones are opt-in extras, not places for a cluster.
                .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
                .filter_map(|z| z.zone_name().map(str::to_string))
                .collect())
        })
        .await
}

/// For each instance type, the zones of the region that offer it (each type asked once
/// per run).
pub(super) async fn zones_offering(
    cloud: &AwsCloud,
    types: &[String],
) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
    let each = futures::future::try_join_all(types.iter().map(|t| async move {
        let zones = cloud
            .batches
            .offered
            .get(t, |types| async move {
                Ok(fetch_zones_offering(cloud, &types)
                    .await?
                    .into_iter()
                    .collect())
            })
            .await?;
        Ok::<_, CloudError>((t.clone(), zones))
    }))
    .await?;
    Ok(each.into_iter().collect())
}

async fn fetch_zones_offering(
    cloud: &AwsCloud,
    types: &[String],
) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
    let mut offered: BTreeMap<String, BTreeSet<String>> =
        types.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    if types.is_empty() {
        return Ok(offered);
    }
    let offerings: Vec<_> = cloud
        .ec2
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .filters(
            Filter::builder()
                .name("instance-type")
                .set_values(Some(types.to_vec()))
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeInstanceTypeOfferings", e))?;
    for o in offerings {
        if let (Some(t), Some(zone)) = (o.instance_type(), o.location()) {
            if let Some(zones) = offered.get_mut(t.as_str()) {
                zones.insert(zone.to_string());
            }
        }
    }
    Ok(offered)
}

/// The `index`-th available zone of the region, by name, among those that offer every
/// instance type in `offered` (not every zone offers every type: us-east-1e has no t3).
pub(super) fn choose_zone(
    mut names: Vec<String>,
    offered: &BTreeMap<String, BTreeSet<String>>,
    index: usize,
    region: &str,
) -> Result<String, String> {
    names.sort();
    names.dedup();
    let (usable, left_out): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|z| offered.values().all(|zones| zones.contains(z)));
    usable.get(index).cloned().ok_or_else(|| {
        let mut msg = format!(
            "region {region} has {} available zone(s) that offer {} ({}), but a subnet wants zone number {} (index {index})",
            usable.len(),
            if offered.is_empty() {
                "anything".to_string()
            } else {
                offered.keys().cloned().collect::<Vec<_>>().join(" and ")
            },
            usable.join(", "),
            index + 1
        );
        if !left_out.is_empty() {
            msg.push_str(&format!(
                "; left out because they lack an instance type: {}",
                left_out.join(", ")
            ));
        }
        msg.push_str("; lower network.zones or pick another instance type");
        msg
    })
}

pub(super) async fn set_map_public_ip(
    cloud: &AwsCloud,
    id: &str,
    on: bool,
) -> Result<(), CloudError> {
    settle(cloud, || async {
        cloud
            .ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(on).build())
            .send()
            .await
            .map_err(|e| sdk_error("ModifySubnetAttribute", e))
    })
    .await?;
    Ok(())
}

pub(super) fn subnet_attrs(x: &Subnet) -> Attrs {
    Attrs::Subnet {
        availability_zone: x.availability_zone().unwrap_or_default().to_string(),
    }
}

pub(super) fn observe_subnet(s: &SubnetSpec, x: &Subnet) -> Observed {
    let mut o = Observed::new(x.subnet_id().unwrap_or_default(), subnet_attrs(x));
    let maps = x.map_public_ip_on_launch().unwrap_or(false);
    if maps != s.map_public_ip {
        o.drift.push(format!(
            "map public IP on launch is {}, spec says {}",
            on_off(maps),
            on_off(s.map_public_ip)
        ));
    }
    if let Some(cidr) = x.cidr_block().filter(|c| *c != s.cidr) {
        // Fixed when the subnet is made.
        o.fixed
            .push(format!("cidr is {cidr}, spec says {}", s.cidr));
    }
    o
}

pub(super) fn on_off(b: bool) -> &'static str {
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
    fn zone_choice_sorts_and_names_the_region() {
        let names = vec![
            "us-east-1c".to_string(),
            "us-east-1a".into(),
            "us-east-1b".into(),
        ];
        let any = BTreeMap::new();
        assert_eq!(
            choose_zone(names.clone(), &any, 0, "us-east-1").unwrap(),
            "us-east-1a"
        );
        assert_eq!(
            choose_zone(names.clone(), &any, 2, "us-east-1").unwrap(),
            "us-east-1c"
        );
        let err = choose_zone(names, &any, 3, "us-east-1").unwrap_err();
        assert!(
            err.contains("region us-east-1 has 3 available zone(s)"),
            "{err}"
        );
        assert!(err.contains("us-east-1a, us-east-1b, us-east-1c"), "{err}");
    }

    #[test]
    fn zones_without_an_instance_type_are_skipped() {
        let names: Vec<String> = ["us-east-1a", "us-east-1b", "us-east-1e", "us-east-1f"]
            .map(String::from)
            .to_vec();
        let offered = BTreeMap::from([
            (
                "t3.large".to_string(),
                BTreeSet::from(["us-east-1a", "us-east-1b", "us-east-1f"].map(String::from)),
            ),
            (
                "t3.medium".to_string(),
                BTreeSet::from(
                    ["us-east-1a", "us-east-1b", "us-east-1e", "us-east-1f"].map(String::from),
                ),
            ),
        ]);
        assert_eq!(
            choose_zone(names.clone(), &offered, 2, "us-east-1").unwrap(),
            "us-east-1f"
        );
        let err = choose_zone(names, &offered, 3, "us-east-1").unwrap_err();
        assert!(
            err.contains("3 available zone(s) that offer t3.large and t3.medium"),
            "{err}"
        );
        assert!(
            err.contains("left out because they lack an instance type: us-east-1e"),
            "{err}"
        );
    }
}
