//! `verify`'s read of the live network: describe calls filtered by the env's VPC, turned
//! into the plain [`Snapshot`] (no SDK type leaves this file). Read-only.

use aws_sdk_ec2::types::{Filter, Tag};

use super::{sdk_error, AwsCloud};
use crate::cloud::CloudError;
use crate::model::{TAG_ENV, TAG_ID};
use crate::verify::*;

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_string()
}

pub(super) async fn snapshot(cloud: &AwsCloud, q: &SnapshotQuery) -> Result<Snapshot, CloudError> {
    let mut snap = Snapshot::default();
    let vpcs = cloud
        .ec2
        .describe_vpcs()
        .filters(filter(&format!("tag:{TAG_ENV}"), &q.env))
        .filters(filter(&format!("tag:{TAG_ID}"), crate::blueprint::ids::VPC))
        .send()
        .await
        .map_err(|e| sdk_error("DescribeVpcs", e))?;
    let Some(vpc) = vpcs.vpcs().first() else {
        return Ok(snap);
    };
    let vpc_id = s(vpc.vpc_id());
    snap.vpc = Some(Vpc {
        id: vpc_id.clone(),
        cidr: s(vpc.cidr_block()),
    });
    let in_vpc = || filter("vpc-id", &vpc_id);

    let out = cloud
        .ec2
        .describe_subnets()
        .filters(in_vpc())
        .send()
        .await
        .map_err(|e| sdk_error("DescribeSubnets", e))?;
    snap.subnets = out
        .subnets()
        .iter()
        .map(|x| Subnet {
            id: s(x.subnet_id()),
            cidr: s(x.cidr_block()),
            az: s(x.availability_zone()),
            map_public_ip: x.map_public_ip_on_launch().unwrap_or(false),
            logical_id: tag(x.tags(), TAG_ID),
        })
        .collect();

    let out = cloud
        .ec2
        .describe_route_tables()
        .filters(in_vpc())
        .send()
        .await
        .map_err(|e| sdk_error("DescribeRouteTables", e))?;
    snap.route_tables = out
        .route_tables()
        .iter()
        .map(|t| RouteTable {
            id: s(t.route_table_id()),
            main: t.associations().iter().any(|a| a.main() == Some(true)),
            subnets: t
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id().map(str::to_string))
                .collect(),
            routes: t
                .routes()
                .iter()
                .map(|r| {
                    let destination = r
                        .destination_cidr_block()
                        .or(r.destination_ipv6_cidr_block())
                        .or(r.destination_prefix_list_id())
                        .unwrap_or_default()
                        .to_string();
                    let target_id = r
                        .gateway_id()
                        .or(r.egress_only_internet_gateway_id())
                        .or(r.nat_gateway_id())
                        .or(r.transit_gateway_id())
                        .or(r.vpc_peering_connection_id())
                        .or(r.network_interface_id())
                        .or(r.instance_id())
                        .or(r.local_gateway_id())
                        .or(r.carrier_gateway_id())
                        .or(r.core_network_arn())
                        .unwrap_or_default()
                        .to_string();
                    Route {
                        destination,
                        target: TargetKind::from_id(&target_id),
                        target_id,
                    }
                })
                .collect(),
        })
        .collect();

    let out = cloud
        .ec2
        .describe_instances()
        .filters(in_vpc())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("DescribeInstances", e))?;
    snap.instances = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Instance {
            id: s(i.instance_id()),
            logical_id: tag(i.tags(), TAG_ID),
            subnet: s(i.subnet_id()),
            private_ip: i.private_ip_address().map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
            network_interfaces: i
                .network_interfaces()
                .iter()
                .filter_map(|n| n.network_interface_id().map(str::to_string))
                .collect(),
            // The instance's groups and its interfaces' (the emulator may report only
            // the latter).
            security_groups: i
                .security_groups()
                .iter()
                .chain(i.network_interfaces().iter().flat_map(|n| n.groups()))
                .filter_map(|g| g.group_id().map(str::to_string))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            instance_profile: i
                .iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_string),
        })
        .collect();

    let out = cloud
        .ec2
        .describe_vpc_endpoints()
        .filters(in_vpc())
        .send()
        .await
        .map_err(|e| sdk_error("DescribeVpcEndpoints", e))?;
    // EC2 spells states and types in lower case, the SDK's enums capitalised.
    let lower = |t: Option<&str>| t.unwrap_or_default().to_ascii_lowercase();
    snap.vpc_endpoints = out
        .vpc_endpoints()
        .iter()
        .map(|e| VpcEndpoint {
            id: s(e.vpc_endpoint_id()),
            service_name: s(e.service_name()),
            endpoint_type: lower(e.vpc_endpoint_type().map(|t| t.as_str())),
            state: lower(e.state().map(|t| t.as_str())),
            private_dns: e.private_dns_enabled().unwrap_or(false),
            subnets: e.subnet_ids().to_vec(),
            security_groups: e
                .groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_string))
                .collect(),
        })
        .filter(|e| {
            !matches!(
                e.state.as_str(),
                "deleted" | "deleting" | "failed" | "rejected" | "expired"
            )
        })
        .collect();

    let out = cloud
        .ec2
        .describe_security_groups()
        .filters(in_vpc())
        .send()
        .await
        .map_err(|e| sdk_error("DescribeSecurityGroups", e))?;
    let rules = |perms: &[aws_sdk_ec2::types::IpPermission]| -> Vec<SgRule> {
        let mut rules = Vec::new();
        for p in perms {
            let protocol = s(p.ip_protocol());
            let (from_port, to_port) = if protocol == "-1" {
                (-1, -1)
            } else {
                (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1))
            };
            let mut push = |peer| {
                rules.push(SgRule {
                    protocol: protocol.clone(),
                    from_port,
                    to_port,
                    peer,
                })
            };
            for r in p.ip_ranges() {
                push(SgPeer::Cidr(s(r.cidr_ip())));
            }
            for r in p.ipv6_ranges() {
                push(SgPeer::Cidr(s(r.cidr_ipv6())));
            }
            for g in p.user_id_group_pairs() {
                push(SgPeer::Group(s(g.group_id())));
            }
            for l in p.prefix_list_ids() {
                push(SgPeer::PrefixList(s(l.prefix_list_id())));
            }
        }
        rules
    };
    snap.security_groups = out
        .security_groups()
        .iter()
        .map(|g| SecurityGroup {
            id: s(g.group_id()),
            logical_id: tag(g.tags(), TAG_ID),
            ingress: rules(g.ip_permissions()),
            egress: rules(g.ip_permissions_egress()),
        })
        .collect();

    let out = cloud
        .ec2
        .describe_network_acls()
        .filters(in_vpc())
        .send()
        .await
        .map_err(|e| sdk_error("DescribeNetworkAcls", e))?;
    snap.network_acls = out
        .network_acls()
        .iter()
        .map(|a| NetworkAcl {
            id: s(a.network_acl_id()),
            default: a.is_default().unwrap_or(false),
            subnets: a
                .associations()
                .iter()
                .filter_map(|x| x.subnet_id().map(str::to_string))
                .collect(),
            entries: a
                .entries()
                .iter()
                .map(|e| AclEntry {
                    rule_number: e.rule_number().unwrap_or(0),
                    egress: e.egress().unwrap_or(false),
                    protocol: s(e.protocol()),
                    cidr: s(e.cidr_block().or(e.ipv6_cidr_block())),
                    allow: e.rule_action().map(|a| a.as_str()) == Some("allow"),
                })
                .collect(),
        })
        .collect();

    let out = cloud
        .ec2
        .describe_addresses()
        .send()
        .await
        .map_err(|e| sdk_error("DescribeAddresses", e))?;
    snap.addresses = out
        .addresses()
        .iter()
        .map(|a| Address {
            public_ip: s(a.public_ip()),
            allocation_id: a.allocation_id().map(str::to_string),
            instance_id: a.instance_id().map(str::to_string),
            network_interface_id: a.network_interface_id().map(str::to_string),
            private_ip: a.private_ip_address().map(str::to_string),
        })
        .collect();

    load_balancer(cloud, &vpc_id, &mut snap).await?;
    snap.record = record(cloud, q).await?;
    snap.database = database(cloud, &vpc_id).await?;
    Ok(snap)
}

async fn load_balancer(
    cloud: &AwsCloud,
    vpc_id: &str,
    snap: &mut Snapshot,
) -> Result<(), CloudError> {
    let out = cloud
        .elb
        .describe_load_balancers()
        .send()
        .await
        .map_err(|e| sdk_error("DescribeLoadBalancers", e))?;
    let Some(lb) = out
        .load_balancers()
        .iter()
        .find(|l| l.vpc_id() == Some(vpc_id))
    else {
        return Ok(());
    };
    let arn = s(lb.load_balancer_arn());
    snap.load_balancer = Some(LoadBalancer {
        arn: arn.clone(),
        dns_name: s(lb.dns_name()),
        security_groups: lb.security_groups().to_vec(),
        subnets: lb
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id().map(str::to_string))
            .collect(),
        internal: lb.scheme()
            == Some(&aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::Internal),
    });
    let out = cloud
        .elb
        .describe_listeners()
        .load_balancer_arn(&arn)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeListeners", e))?;
    snap.listeners = out
        .listeners()
        .iter()
        .map(|l| Listener {
            arn: s(l.listener_arn()),
            port: l.port().unwrap_or(0) as u16,
            target_groups: l
                .default_actions()
                .iter()
                .flat_map(|a| {
                    let mut arns: Vec<String> = a
                        .target_group_arn()
                        .map(str::to_string)
                        .into_iter()
                        .collect();
                    if let Some(f) = a.forward_config() {
                        arns.extend(
                            f.target_groups()
                                .iter()
                                .filter_map(|t| t.target_group_arn().map(str::to_string)),
                        );
                    }
                    arns
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
        .collect();
    let out = cloud
        .elb
        .describe_target_groups()
        .load_balancer_arn(&arn)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTargetGroups", e))?;
    for tg in out.target_groups() {
        let tg_arn = s(tg.target_group_arn());
        let health = cloud
            .elb
            .describe_target_health()
            .target_group_arn(&tg_arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetHealth", e))?;
        snap.target_groups.push(TargetGroup {
            arn: tg_arn,
            name: s(tg.target_group_name()),
            port: tg.port().unwrap_or(0) as u16,
            targets: health
                .target_health_descriptions()
                .iter()
                .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
                .collect(),
        });
    }
    Ok(())
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn record(cloud: &AwsCloud, q: &SnapshotQuery) -> Result<Option<Record>, CloudError> {
    let zone = q.zone.trim_start_matches("/hostedzone/");
    let zone_ids: Vec<String> = if !zone.contains('.') {
        vec![zone.to_string()]
    } else {
        let wanted = normalize(zone);
        let out = cloud
            .route53
            .list_hosted_zones_by_name()
            .dns_name(format!("{wanted}."))
            .max_items(100)
            .send()
            .await
            .map_err(|e| sdk_error("ListHostedZonesByName", e))?;
        out.hosted_zones()
            .iter()
            .filter(|h| normalize(h.name()) == wanted)
            .filter(|h| h.config().is_some_and(|c| c.private_zone()) == q.private_zone)
            .map(|h| h.id().trim_start_matches("/hostedzone/").to_string())
            .collect()
    };
    let wanted = normalize(&q.hostname);
    for id in zone_ids {
        let out = cloud
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&id)
            .start_record_name(format!("{wanted}."))
            .max_items(20)
            .send()
            .await
            .map_err(|e| sdk_error("ListResourceRecordSets", e))?;
        let found = out.resource_record_sets().iter().find(|r| {
            normalize(r.name()) == wanted && matches!(r.r#type().as_str(), "A" | "AAAA" | "CNAME")
        });
        if let Some(r) = found {
            let values = match r.alias_target() {
                Some(a) => vec![a.dns_name().to_string()],
                None => r
                    .resource_records()
                    .iter()
                    .map(|v| v.value().to_string())
                    .collect(),
            };
            return Ok(Some(Record {
                name: wanted,
                record_type: r.r#type().as_str().to_string(),
                values,
            }));
        }
    }
    Ok(None)
}

async fn database(cloud: &AwsCloud, vpc_id: &str) -> Result<Option<Database>, CloudError> {
    let out = cloud
        .rds
        .describe_db_instances()
        .send()
        .await
        .map_err(|e| sdk_error("DescribeDBInstances", e))?;
    Ok(out
        .db_instances()
        .iter()
        .find(|d| d.db_subnet_group().and_then(|g| g.vpc_id()) == Some(vpc_id))
        .map(|d| Database {
            id: s(d.db_instance_identifier()),
            port: d
                .endpoint()
                .and_then(|e| e.port())
                .or(d.db_instance_port())
                .unwrap_or(0) as u16,
            security_groups: d
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                .collect(),
        }))
}
