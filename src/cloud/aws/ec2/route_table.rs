//! Route tables: subnet associations and the default route to the internet gateway.

use super::*;

pub(super) async fn describe_route_tables(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<RouteTable>, CloudError> {
    cloud
        .ec2
        .describe_route_tables()
        .set_route_table_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeRouteTables", e))
}

/// An explicit association of a subnet with a route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Association {
    subnet_id: String,
    association_id: String,
}

/// What to do with the `0.0.0.0/0` route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RouteChange {
    Keep,
    Create(String),
    Replace(String),
    Delete,
}

pub(super) fn associations(t: &RouteTable) -> Vec<Association> {
    t.associations()
        .iter()
        .filter(|a| a.main() != Some(true))
        .filter(|a| {
            !matches!(
                a.association_state().and_then(|s| s.state()),
                Some(
                    RouteTableAssociationStateCode::Disassociated
                        | RouteTableAssociationStateCode::Disassociating
                )
            )
        })
        .filter_map(|a| {
            Some(Association {
                subnet_id: a.subnet_id()?.to_string(),
                association_id: a.route_table_association_id()?.to_string(),
            })
        })
        .collect()
}

/// The target of the table's default route, marked when it is a blackhole.
pub(super) fn default_route_target(t: &RouteTable) -> Option<String> {
    let route = t
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some(ANYWHERE))?;
    let target = route
        .gateway_id()
        .or(route.nat_gateway_id())
        .or(route.instance_id())
        .or(route.network_interface_id())
        .or(route.transit_gateway_id())
        .or(route.vpc_peering_connection_id())
        .unwrap_or("an unknown target");
    Some(if route.state() == Some(&RouteState::Blackhole) {
        format!("{target} (blackhole)")
    } else {
        target.to_string()
    })
}

/// Subnets to associate and associations to remove.
pub(super) fn association_changes(
    want: &BTreeSet<String>,
    have: &[Association],
) -> (Vec<String>, Vec<Association>) {
    let have_subnets: BTreeSet<&str> = have.iter().map(|a| a.subnet_id.as_str()).collect();
    let missing = want
        .iter()
        .filter(|s| !have_subnets.contains(s.as_str()))
        .cloned()
        .collect();
    let extra = have
        .iter()
        .filter(|a| !want.contains(&a.subnet_id))
        .cloned()
        .collect();
    (missing, extra)
}

pub(super) fn default_route_change(want: Option<&str>, have: Option<&str>) -> RouteChange {
    match (want, have) {
        (None, None) => RouteChange::Keep,
        (None, Some(_)) => RouteChange::Delete,
        (Some(w), None) => RouteChange::Create(w.to_string()),
        (Some(w), Some(h)) if w == h => RouteChange::Keep,
        (Some(w), Some(_)) => RouteChange::Replace(w.to_string()),
    }
}

pub(super) fn route_table_drift(
    missing: &[String],
    extra: &[Association],
    route: &RouteChange,
    have_target: Option<&str>,
    name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut lines: Vec<String> = missing
        .iter()
        .map(|s| format!("subnet {} is not associated", name(s)))
        .collect();
    lines.extend(extra.iter().map(|a| {
        format!(
            "subnet {} is associated but not in spec",
            name(&a.subnet_id)
        )
    }));
    let have = have_target.map(name).unwrap_or_default();
    match route {
        RouteChange::Keep => {}
        RouteChange::Create(w) => lines.push(format!(
            "default route {ANYWHERE} -> {} is missing",
            name(w)
        )),
        RouteChange::Replace(w) => lines.push(format!(
            "default route {ANYWHERE} points at {have}, spec says {}",
            name(w)
        )),
        RouteChange::Delete => lines.push(format!(
            "default route {ANYWHERE} -> {have} is present on a private route table"
        )),
    }
    lines
}

/// Desired subnets and gateway of a route table, as cloud ids.
pub(super) fn route_table_wants(
    ctx: &OpContext<'_>,
    s: &RouteTableSpec,
) -> Result<(BTreeSet<String>, Option<String>), MissingRef> {
    let subnets = ctx.resolved.cloud_ids(&s.subnets)?.into_iter().collect();
    let gateway = s
        .internet_gateway
        .as_ref()
        .map(|g| ctx.resolved.cloud_id(g).map(str::to_string))
        .transpose()?;
    Ok((subnets, gateway))
}

pub(super) fn observe_route_table(
    ctx: &OpContext<'_>,
    s: &RouteTableSpec,
    t: &RouteTable,
) -> Result<Observed, CloudError> {
    let (want_subnets, want_gateway) = route_table_wants(ctx, s)?;
    let (missing, extra) = association_changes(&want_subnets, &associations(t));
    let have_target = default_route_target(t);
    let change = default_route_change(want_gateway.as_deref(), have_target.as_deref());
    let mut o = Observed::new(t.route_table_id().unwrap_or_default(), Attrs::None);
    o.drift = route_table_drift(&missing, &extra, &change, have_target.as_deref(), &|id| {
        named(ctx, id)
    });
    Ok(o)
}

pub(super) async fn create_route_table(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &RouteTableSpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let (subnets, gateway) = route_table_wants(ctx, s)?;
    let out = cloud
        .ec2
        .create_route_table()
        .vpc_id(vpc)
        .tag_specifications(tag_spec(ResourceType::RouteTable, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateRouteTable", e))?;
    let id = created_id(
        "CreateRouteTable",
        out.route_table().and_then(|t| t.route_table_id()),
    )?;
    let missing: Vec<String> = subnets.into_iter().collect();
    let route = default_route_change(gateway.as_deref(), None);
    apply_route_table_changes(cloud, &id, &missing, &[], &route).await?;
    Ok(Observed::new(id, Attrs::None))
}

pub(super) async fn update_route_table(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &RouteTableSpec,
    id: &str,
) -> Result<(), CloudError> {
    let table = describe_route_tables(cloud, &Lookup::Id(id.to_string()))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| vanished(Kind::RouteTable, id))?;
    let (want_subnets, want_gateway) = route_table_wants(ctx, s)?;
    let (missing, extra) = association_changes(&want_subnets, &associations(&table));
    let route = default_route_change(
        want_gateway.as_deref(),
        default_route_target(&table).as_deref(),
    );
    apply_route_table_changes(cloud, id, &missing, &extra, &route).await
}

pub(super) async fn apply_route_table_changes(
    cloud: &AwsCloud,
    id: &str,
    missing: &[String],
    extra: &[Association],
    route: &RouteChange,
) -> Result<(), CloudError> {
    let ec2 = &cloud.ec2;
    for a in extra {
        gone_is_ok(
            ec2.disassociate_route_table()
                .association_id(&a.association_id)
                .send()
                .await
                .map_err(|e| sdk_error("DisassociateRouteTable", e)),
        )?;
    }
    for subnet in missing {
        associate_subnet(cloud, id, subnet).await?;
    }
    match route {
        RouteChange::Keep => {}
        RouteChange::Create(gateway) => {
            let created = settle(cloud, || async {
                ec2.create_route()
                    .route_table_id(id)
                    .destination_cidr_block(ANYWHERE)
                    .gateway_id(gateway)
                    .send()
                    .await
                    .map_err(|e| sdk_error("CreateRoute", e))
            })
            .await;
            match created {
                // A retried call whose first reply was lost: the route is there. Point it
                // at the gateway again, whatever the first call did.
                Err(e) if e.code() == Some("RouteAlreadyExists") => {
                    ec2.replace_route()
                        .route_table_id(id)
                        .destination_cidr_block(ANYWHERE)
                        .gateway_id(gateway)
                        .send()
                        .await
                        .map_err(|e| sdk_error("ReplaceRoute", e))?;
                }
                other => {
                    other?;
                }
            }
        }
        RouteChange::Replace(gateway) => {
            ec2.replace_route()
                .route_table_id(id)
                .destination_cidr_block(ANYWHERE)
                .gateway_id(gateway)
                .send()
                .await
                .map_err(|e| sdk_error("ReplaceRoute", e))?;
        }
        RouteChange::Delete => gone_is_ok(
            ec2.delete_route()
                .route_table_id(id)
                .destination_cidr_block(ANYWHERE)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteRoute", e)),
        )?,
    }
    Ok(())
}

/// Associate a subnet, moving it over if another route table holds it explicitly (AWS
/// refuses a second explicit association with `Resource.AlreadyAssociated`).
pub(super) async fn associate_subnet(
    cloud: &AwsCloud,
    table: &str,
    subnet: &str,
) -> Result<(), CloudError> {
    let ec2 = &cloud.ec2;
    let holders = describe_route_tables(
        cloud,
        &Lookup::Filters(vec![filter("association.subnet-id", subnet)]),
    )
    .await?;
    let held = holders
        .iter()
        .flat_map(|t| {
            let table_id = t.route_table_id().unwrap_or_default().to_string();
            associations(t)
                .into_iter()
                .map(move |a| (table_id.clone(), a))
        })
        .find(|(_, a)| a.subnet_id == subnet);
    match held {
        Some((holder, _)) if holder == table => Ok(()),
        Some((_, existing)) => {
            ec2.replace_route_table_association()
                .association_id(existing.association_id)
                .route_table_id(table)
                .send()
                .await
                .map_err(|e| sdk_error("ReplaceRouteTableAssociation", e))?;
            Ok(())
        }
        None => {
            let associated = settle(cloud, || async {
                ec2.associate_route_table()
                    .route_table_id(table)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .map_err(|e| sdk_error("AssociateRouteTable", e))
            })
            .await;
            match associated {
                // A retried call whose first reply was lost: associated already. (To
                // another table it shows as drift on the next read.)
                Err(e) if e.code() == Some("Resource.AlreadyAssociated") => Ok(()),
                other => other.map(|_| ()),
            }
        }
    }
}

pub(super) async fn delete_route_table(cloud: &AwsCloud, id: &str) -> Result<(), CloudError> {
    let Some(table) =
        gone_is_none(describe_route_tables(cloud, &Lookup::Id(id.to_string())).await)?
            .and_then(first)
    else {
        return Ok(());
    };
    apply_route_table_changes(cloud, id, &[], &associations(&table), &RouteChange::Keep).await?;
    let ec2 = &cloud.ec2;
    async move {
        gone_is_ok(
            ec2.delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteRouteTable", e)),
        )
    }
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn association_changes_converge_to_the_spec() {
        let want = BTreeSet::from(["subnet-a".to_string(), "subnet-b".to_string()]);
        let have = vec![
            Association {
                subnet_id: "subnet-b".into(),
                association_id: "rtbassoc-b".into(),
            },
            Association {
                subnet_id: "subnet-c".into(),
                association_id: "rtbassoc-c".into(),
            },
        ];
        let (missing, extra) = association_changes(&want, &have);
        assert_eq!(missing, vec!["subnet-a"]);
        assert_eq!(extra, vec![have[1].clone()]);
    }

    #[test]
    fn default_route_changes() {
        assert_eq!(default_route_change(None, None), RouteChange::Keep);
        assert_eq!(
            default_route_change(Some("igw-1"), Some("igw-1")),
            RouteChange::Keep
        );
        assert_eq!(
            default_route_change(Some("igw-1"), None),
            RouteChange::Create("igw-1".into())
        );
        assert_eq!(
            default_route_change(None, Some("nat-1")),
            RouteChange::Delete
        );
        assert_eq!(
            default_route_change(Some("igw-1"), Some("igw-1 (blackhole)")),
            RouteChange::Replace("igw-1".into())
        );
    }

    #[test]
    fn route_table_drift_lines() {
        let extra = vec![Association {
            subnet_id: "subnet-c".into(),
            association_id: "rtbassoc-c".into(),
        }];
        let lines = route_table_drift(
            &["subnet-a".into()],
            &extra,
            &RouteChange::Delete,
            Some("igw-1"),
            &ident,
        );
        assert_eq!(
            lines,
            vec![
                "subnet subnet-a is not associated",
                "subnet subnet-c is associated but not in spec",
                "default route 0.0.0.0/0 -> igw-1 is present on a private route table",
            ]
        );
        let lines = route_table_drift(&[], &[], &RouteChange::Create("igw-2".into()), None, &ident);
        assert_eq!(lines, vec!["default route 0.0.0.0/0 -> igw-2 is missing"]);
        assert!(route_table_drift(&[], &[], &RouteChange::Keep, Some("igw-1"), &ident).is_empty());
    }
}
