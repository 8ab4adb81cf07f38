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
    let zone = zone_for(cloud, s.zone_index).await?;
    let out = cloud
        .ec2
        .create_subnet()
        .vpc_id(vpc)
        .cidr_block(&s.cidr)
        .availability_zone(&zone)
        .tag_specifications(tag_spec(ResourceType::Subnet, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateSubnet", e))?;
    let id = created_id("CreateSubnet", out.subnet().and_then(|x| x.subnet_id()))?;
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

pub(super) async fn zone_for(cloud: &AwsCloud, index: usize) -> Result<String, CloudError> {
    let out = cloud
        .ec2
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .send()
        .await
        .map_err(|e| sdk_error("DescribeAvailabilityZones", e))?;
    let names = out
        .availability_zones()
        .iter()
        // Local and Wavelength zones are opt-in extras, not places for a cluster.
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    choose_zone(names, index, &cloud.region).map_err(CloudError::Refused)
}

/// The `index`-th available zone of the region, by name.
pub(super) fn choose_zone(
    mut names: Vec<String>,
    index: usize,
    region: &str,
) -> Result<String, String> {
    names.sort();
    names.dedup();
    names.get(index).cloned().ok_or_else(|| {
        format!(
            "region {region} has {} available zone(s) ({}), but a subnet wants zone number {} (index {index})",
            names.len(),
            names.join(", "),
            index + 1
        )
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
        o.drift
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
        assert_eq!(
            choose_zone(names.clone(), 0, "us-east-1").unwrap(),
            "us-east-1a"
        );
        assert_eq!(
            choose_zone(names.clone(), 2, "us-east-1").unwrap(),
            "us-east-1c"
        );
        let err = choose_zone(names, 3, "us-east-1").unwrap_err();
        assert!(
            err.contains("region us-east-1 has 3 available zone(s)"),
            "{err}"
        );
        assert!(err.contains("us-east-1a, us-east-1b, us-east-1c"), "{err}");
    }
}
