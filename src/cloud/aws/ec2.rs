//! EC2 resources: VPC, internet gateway, subnets, route tables, security groups, key pairs
//! and instances.
//!
//! Every create tags the resource atomically (`TagSpecifications`) with `provision:env`,
//! `provision:id` and `Name`, so that [`find`] adopts what an interrupted run created and
//! [`list_owned`] sees everything an environment owns even without a state file.
//!
//! [`read`] reports drift the way [`update`] can repair it: security-group rules are
//! compared as sets of normalized rules, route tables by their subnet associations and
//! default route, instances by their security groups and run state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, Instance,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceStateName, InstanceType, InternetGateway,
    IpPermission, IpRange, Ipv6Range, KeyPairInfo, PrefixListId, ResourceType, RouteState,
    RouteTable, RouteTableAssociationStateCode, SecurityGroup, Subnet, Tag, TagSpecification,
    UserIdGroupPair, VolumeType, Vpc, VpcAttributeName,
};
use base64::Engine as _;

use super::retry::{retry_in_use, retry_while};
use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{
    tags_for, Attrs, InstanceSpec, InternetGatewaySpec, Kind, LogicalId, MissingRef, Observed,
    Peer, Protocol, Ref, RouteTableSpec, Rule, SecurityGroupSpec, Spec, SubnetSpec, VpcSpec,
    TAG_ENV, TAG_ID,
};

/// The destination of the default route.
const ANYWHERE: &str = "0.0.0.0/0";
/// Root device name when the image does not say.
const DEFAULT_ROOT_DEVICE: &str = "/dev/sda1";
/// Device name of the extra data volume.
const DATA_DEVICE: &str = "/dev/sdf";
/// How long a call on a resource created a moment ago may keep answering "not found".
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Entry points, called from `aws/mod.rs`.

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    let lookup = Lookup::Filters(owner_filters(ctx.env, ctx.id));
    let kind = spec.kind();
    let found = match spec {
        Spec::Vpc(s) => pick(kind, ctx, describe_vpcs(cloud, &lookup).await?, |v| {
            v.vpc_id()
        })?
        .map(|v| observe_vpc_base(s, &v)),
        Spec::InternetGateway(s) => {
            let igws = describe_igws(cloud, &lookup).await?;
            pick(kind, ctx, igws, |g| g.internet_gateway_id())?
                .map(|g| observe_igw(ctx, s, &g))
                .transpose()?
        }
        Spec::Subnet(s) => pick(kind, ctx, describe_subnets(cloud, &lookup).await?, |x| {
            x.subnet_id()
        })?
        .map(|x| observe_subnet(s, &x)),
        Spec::RouteTable(s) => pick(
            kind,
            ctx,
            describe_route_tables(cloud, &lookup).await?,
            |t| t.route_table_id(),
        )?
        .map(|t| observe_route_table(ctx, s, &t))
        .transpose()?,
        Spec::SecurityGroup(s) => pick(kind, ctx, describe_groups(cloud, &lookup).await?, |g| {
            g.group_id()
        })?
        .map(|g| observe_group(ctx, s, &g))
        .transpose()?,
        Spec::KeyPair(_) => pick(kind, ctx, describe_key_pairs(cloud, &lookup).await?, |k| {
            k.key_pair_id().or(k.key_name())
        })?
        .map(|k| observe_key_pair(&k)),
        Spec::Instance(s) => {
            // RunInstances tags atomically, so every instance of ours carries the env
            // tag; among those, match the logical id or this step's client token. (Done
            // here rather than with a `client-token` filter, which moto does not support.)
            let env_only = Lookup::Filters(vec![filter(&format!("tag:{TAG_ENV}"), ctx.env)]);
            let all: Vec<Instance> = describe_instances(cloud, &env_only)
                .await?
                .into_iter()
                .filter(is_live)
                .filter(|i| {
                    tag_value(i.tags(), TAG_ID) == Some(ctx.id.as_str())
                        || i.client_token() == Some(ctx.token)
                })
                .collect();
            pick(kind, ctx, all, |i| i.instance_id())?
                .map(|i| observe_instance(ctx, s, &i))
                .transpose()?
        }
        other => return Err(not_ec2(other.kind())),
    };
    Ok(found)
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    let lookup = Lookup::Id(cloud_id.to_string());
    let observed = match spec {
        Spec::Vpc(s) => match gone_is_none(describe_vpcs(cloud, &lookup).await)?.and_then(first) {
            Some(v) => Some(observe_vpc(cloud, s, &v).await?),
            None => None,
        },
        Spec::InternetGateway(s) => gone_is_none(describe_igws(cloud, &lookup).await)?
            .and_then(first)
            .map(|g| observe_igw(ctx, s, &g))
            .transpose()?,
        Spec::Subnet(s) => gone_is_none(describe_subnets(cloud, &lookup).await)?
            .and_then(first)
            .map(|x| observe_subnet(s, &x)),
        Spec::RouteTable(s) => gone_is_none(describe_route_tables(cloud, &lookup).await)?
            .and_then(first)
            .map(|t| observe_route_table(ctx, s, &t))
            .transpose()?,
        Spec::SecurityGroup(s) => gone_is_none(describe_groups(cloud, &lookup).await)?
            .and_then(first)
            .map(|g| observe_group(ctx, s, &g))
            .transpose()?,
        Spec::KeyPair(_) => gone_is_none(describe_key_pairs(cloud, &lookup).await)?
            .and_then(first)
            .map(|k| observe_key_pair(&k)),
        Spec::Instance(s) => gone_is_none(describe_instances(cloud, &lookup).await)?
            .and_then(first)
            .filter(is_live)
            .map(|i| observe_instance(ctx, s, &i))
            .transpose()?,
        other => return Err(not_ec2(other.kind())),
    };
    Ok(observed)
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::Vpc(s) => create_vpc(cloud, ctx, s).await,
        Spec::InternetGateway(s) => create_igw(cloud, ctx, s).await,
        Spec::Subnet(s) => create_subnet(cloud, ctx, s).await,
        Spec::RouteTable(s) => create_route_table(cloud, ctx, s).await,
        Spec::SecurityGroup(s) => create_group(cloud, ctx, s).await,
        Spec::KeyPair(s) => create_key_pair(cloud, ctx, &s.public_key).await,
        Spec::Instance(s) => create_instance(cloud, ctx, s).await,
        other => Err(not_ec2(other.kind())),
    }
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    let id = current.cloud_id.as_str();
    match spec {
        Spec::Vpc(_) => enable_vpc_dns(cloud, id).await?,
        Spec::InternetGateway(s) => update_igw(cloud, ctx, s, id).await?,
        Spec::Subnet(s) => set_map_public_ip(cloud, id, s.map_public_ip).await?,
        Spec::RouteTable(s) => update_route_table(cloud, ctx, s, id).await?,
        Spec::SecurityGroup(s) => {
            let group = describe_groups(cloud, &Lookup::Id(id.to_string()))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| vanished(Kind::SecurityGroup, id))?;
            let have = GroupRules::of(&group);
            converge_group_rules(cloud, ctx, s, id, &have).await?;
        }
        Spec::KeyPair(_) => {}
        Spec::Instance(s) => update_instance(cloud, ctx, s, id).await?,
        other => return Err(not_ec2(other.kind())),
    }
    read(cloud, ctx, spec, id)
        .await?
        .ok_or_else(|| vanished(spec.kind(), id))
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    current: &Observed,
) -> Result<(), CloudError> {
    let id = current.cloud_id.as_str();
    let what = format!("{kind} {id}");
    let (limit, poll) = (cloud.waits.dependency, cloud.waits.poll);
    let ec2 = &cloud.ec2;
    match kind {
        Kind::Vpc => {
            retry_in_use(&what, limit, poll, move || async move {
                gone_is_ok(
                    ec2.delete_vpc()
                        .vpc_id(id)
                        .send()
                        .await
                        .map_err(|e| sdk_error("DeleteVpc", e)),
                )
            })
            .await
        }
        Kind::InternetGateway => delete_igw(cloud, id, &what).await,
        Kind::Subnet => {
            retry_in_use(&what, limit, poll, move || async move {
                gone_is_ok(
                    ec2.delete_subnet()
                        .subnet_id(id)
                        .send()
                        .await
                        .map_err(|e| sdk_error("DeleteSubnet", e)),
                )
            })
            .await
        }
        Kind::RouteTable => delete_route_table(cloud, id, &what).await,
        Kind::SecurityGroup => {
            retry_in_use(&what, limit, poll, move || async move {
                gone_is_ok(
                    ec2.delete_security_group()
                        .group_id(id)
                        .send()
                        .await
                        .map_err(|e| sdk_error("DeleteSecurityGroup", e)),
                )
            })
            .await
        }
        Kind::KeyPair => {
            // By name when known: every EC2 (and moto, which ignores `KeyPairId`) takes it.
            let req = ec2.delete_key_pair();
            let req = match &current.attrs {
                Attrs::KeyPair { name } if !name.is_empty() => req.key_name(name),
                _ if id.starts_with("key-") => req.key_pair_id(id),
                _ => req.key_name(id),
            };
            gone_is_ok(req.send().await.map_err(|e| sdk_error("DeleteKeyPair", e)))
        }
        Kind::Instance => delete_instance(cloud, ctx, id).await,
        other => Err(not_ec2(other)),
    }
}

pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let lookup = Lookup::Filters(vec![filter(&format!("tag:{TAG_ENV}"), env)]);
    let mut out = Vec::new();
    let mut push = |kind: Kind, cloud_id: Option<&str>, tags: &[Tag], attrs: Attrs| {
        if let Some(cloud_id) = cloud_id {
            let id = tag_value(tags, TAG_ID).unwrap_or(cloud_id);
            out.push(Owned {
                kind,
                id: LogicalId::new(id),
                cloud_id: cloud_id.to_string(),
                attrs,
            });
        }
    };
    for v in describe_vpcs(cloud, &lookup).await? {
        push(Kind::Vpc, v.vpc_id(), v.tags(), Attrs::None);
    }
    for g in describe_igws(cloud, &lookup).await? {
        push(
            Kind::InternetGateway,
            g.internet_gateway_id(),
            g.tags(),
            Attrs::None,
        );
    }
    for s in describe_subnets(cloud, &lookup).await? {
        push(Kind::Subnet, s.subnet_id(), s.tags(), subnet_attrs(&s));
    }
    for t in describe_route_tables(cloud, &lookup).await? {
        push(Kind::RouteTable, t.route_table_id(), t.tags(), Attrs::None);
    }
    for g in describe_groups(cloud, &lookup).await? {
        push(Kind::SecurityGroup, g.group_id(), g.tags(), Attrs::None);
    }
    for k in describe_key_pairs(cloud, &lookup).await? {
        push(
            Kind::KeyPair,
            k.key_pair_id().or(k.key_name()),
            k.tags(),
            key_pair_attrs(&k),
        );
    }
    for i in describe_instances(cloud, &lookup).await? {
        if is_live(&i) {
            push(
                Kind::Instance,
                i.instance_id(),
                i.tags(),
                instance_attrs(&i),
            );
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Shared plumbing.

/// How to select resources in a describe call.
enum Lookup {
    Id(String),
    Filters(Vec<Filter>),
}

impl Lookup {
    fn ids(&self) -> Option<Vec<String>> {
        match self {
            Lookup::Id(id) => Some(vec![id.clone()]),
            Lookup::Filters(_) => None,
        }
    }
    fn filters(&self) -> Option<Vec<Filter>> {
        match self {
            Lookup::Id(_) => None,
            Lookup::Filters(f) => Some(f.clone()),
        }
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn owner_filters(env: &str, id: &LogicalId) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{TAG_ENV}"), env),
        filter(&format!("tag:{TAG_ID}"), id.as_str()),
    ]
}

fn tag_spec(resource: ResourceType, ctx: &OpContext<'_>) -> TagSpecification {
    let tags = tags_for(ctx.env, ctx.id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build());
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags.collect()))
        .build()
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn error_code(e: &CloudError) -> Option<&str> {
    match e {
        CloudError::Api { code, .. }
        | CloudError::InUse { code, .. }
        | CloudError::Transient { code, .. } => Some(code),
        _ => None,
    }
}

/// `InvalidVpcID.NotFound`, `InvalidGroup.NotFound`, `InvalidKeyPair.NotFound`, ...
fn is_not_found(e: &CloudError) -> bool {
    error_code(e).is_some_and(|c| c.ends_with("NotFound"))
}

fn gone_is_none<T>(r: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn gone_is_ok<T>(r: Result<T, CloudError>) -> Result<(), CloudError> {
    gone_is_none(r).map(|_| ())
}

fn first<T>(items: Vec<T>) -> Option<T> {
    items.into_iter().next()
}

fn not_ec2(kind: Kind) -> CloudError {
    CloudError::Refused(format!("the EC2 adapter does not handle {kind} resources"))
}

fn vanished(kind: Kind, id: &str) -> CloudError {
    CloudError::api(
        "update",
        "NotFound",
        format!("{kind} {id} no longer exists"),
    )
}

/// At most one resource may carry an environment's tags for one logical id; several mean
/// someone copied tags or an old run leaked, and guessing would adopt the wrong one.
fn pick<T>(
    kind: Kind,
    ctx: &OpContext<'_>,
    items: Vec<T>,
    id: impl Fn(&T) -> Option<&str>,
) -> Result<Option<T>, CloudError> {
    if items.len() > 1 {
        let ids: Vec<&str> = items.iter().filter_map(&id).collect();
        return Err(CloudError::api(
            format!("find {kind} `{}`", ctx.id),
            "Ambiguous",
            format!(
                "{} {kind}s are tagged {TAG_ENV}={} {TAG_ID}={}: {}; delete the extra ones or fix their tags",
                items.len(),
                ctx.env,
                ctx.id,
                ids.join(", ")
            ),
        ));
    }
    Ok(items.into_iter().next())
}

/// "private-a (subnet-123)" when the cloud id belongs to a known logical resource.
fn named(ctx: &OpContext<'_>, cloud_id: &str) -> String {
    match ctx.resolved.logical_of(cloud_id) {
        Some(logical) => format!("{logical} ({cloud_id})"),
        None => cloud_id.to_string(),
    }
}

/// Retry a call on a resource created a moment ago while EC2 still answers "not found"
/// (its APIs are eventually consistent).
async fn settle<T, F, Fut>(cloud: &AwsCloud, op: F) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    let limit = cloud.waits.dependency.min(SETTLE_LIMIT);
    retry_while(limit, cloud.waits.poll, is_not_found, op)
        .await
        .map_err(super::retry::RetryError::into_inner)
}

fn created_id(op: &str, id: Option<&str>) -> Result<String, CloudError> {
    id.map(str::to_string)
        .ok_or_else(|| CloudError::api(op, "NoId", "the response carried no resource id"))
}

// ---------------------------------------------------------------------------------------
// Describe calls.

async fn describe_vpcs(cloud: &AwsCloud, lookup: &Lookup) -> Result<Vec<Vpc>, CloudError> {
    cloud
        .ec2
        .describe_vpcs()
        .set_vpc_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeVpcs", e))
}

async fn describe_igws(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<InternetGateway>, CloudError> {
    cloud
        .ec2
        .describe_internet_gateways()
        .set_internet_gateway_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeInternetGateways", e))
}

async fn describe_subnets(cloud: &AwsCloud, lookup: &Lookup) -> Result<Vec<Subnet>, CloudError> {
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

async fn describe_route_tables(
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

async fn describe_groups(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<SecurityGroup>, CloudError> {
    cloud
        .ec2
        .describe_security_groups()
        .set_group_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeSecurityGroups", e))
}

async fn describe_key_pairs(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<KeyPairInfo>, CloudError> {
    let req = cloud.ec2.describe_key_pairs().set_filters(lookup.filters());
    let req = match lookup {
        // Key pairs imported before 2019 or by emulators may only have a name.
        Lookup::Id(id) if id.starts_with("key-") => req.key_pair_ids(id),
        Lookup::Id(id) => req.key_names(id),
        Lookup::Filters(_) => req,
    };
    let out = req
        .send()
        .await
        .map_err(|e| sdk_error("DescribeKeyPairs", e))?;
    // Checked again here because moto ignores `KeyPairIds` and lists every key.
    Ok(out
        .key_pairs()
        .iter()
        .filter(|k| match lookup {
            Lookup::Id(id) => k.key_pair_id() == Some(id) || k.key_name() == Some(id),
            Lookup::Filters(_) => true,
        })
        .cloned()
        .collect())
}

async fn describe_instances(
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
// VPC.

async fn create_vpc(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &VpcSpec,
) -> Result<Observed, CloudError> {
    let out = cloud
        .ec2
        .create_vpc()
        .cidr_block(&s.cidr)
        .tag_specifications(tag_spec(ResourceType::Vpc, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateVpc", e))?;
    let id = created_id("CreateVpc", out.vpc().and_then(|v| v.vpc_id()))?;
    enable_vpc_dns(cloud, &id).await?;
    Ok(Observed::new(id, Attrs::None))
}

/// DNS support and DNS hostnames: private Route53 zones only answer inside a VPC with both.
/// EC2 takes one attribute per call.
async fn enable_vpc_dns(cloud: &AwsCloud, id: &str) -> Result<(), CloudError> {
    let on = || AttributeBooleanValue::builder().value(true).build();
    settle(cloud, || async {
        cloud
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_support(on())
            .send()
            .await
            .map_err(|e| sdk_error("ModifyVpcAttribute", e))
    })
    .await?;
    cloud
        .ec2
        .modify_vpc_attribute()
        .vpc_id(id)
        .enable_dns_hostnames(on())
        .send()
        .await
        .map_err(|e| sdk_error("ModifyVpcAttribute", e))?;
    Ok(())
}

fn observe_vpc_base(s: &VpcSpec, v: &Vpc) -> Observed {
    let mut o = Observed::new(v.vpc_id().unwrap_or_default(), Attrs::None);
    if let Some(cidr) = v.cidr_block().filter(|c| *c != s.cidr) {
        o.drift
            .push(format!("cidr is {cidr}, spec says {}", s.cidr));
    }
    o
}

async fn observe_vpc(cloud: &AwsCloud, s: &VpcSpec, v: &Vpc) -> Result<Observed, CloudError> {
    let mut o = observe_vpc_base(s, v);
    for (attribute, label) in [
        (VpcAttributeName::EnableDnsSupport, "DNS support"),
        (VpcAttributeName::EnableDnsHostnames, "DNS hostnames"),
    ] {
        let out = cloud
            .ec2
            .describe_vpc_attribute()
            .vpc_id(&o.cloud_id)
            .attribute(attribute.clone())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeVpcAttribute", e))?;
        let value = match attribute {
            VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
            _ => out.enable_dns_hostnames(),
        };
        if value.and_then(|v| v.value()) != Some(true) {
            o.drift.push(format!("{label} is disabled"));
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// Internet gateway.

async fn create_igw(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InternetGatewaySpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let out = cloud
        .ec2
        .create_internet_gateway()
        .tag_specifications(tag_spec(ResourceType::InternetGateway, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateInternetGateway", e))?;
    let id = created_id(
        "CreateInternetGateway",
        out.internet_gateway().and_then(|g| g.internet_gateway_id()),
    )?;
    attach_igw(cloud, &id, vpc).await?;
    Ok(Observed::new(id, Attrs::None))
}

async fn attach_igw(cloud: &AwsCloud, id: &str, vpc: &str) -> Result<(), CloudError> {
    settle(cloud, || async {
        cloud
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| sdk_error("AttachInternetGateway", e))
    })
    .await?;
    Ok(())
}

/// VPCs the gateway is attached to (or attaching to).
fn igw_vpcs(g: &InternetGateway) -> Vec<String> {
    use aws_sdk_ec2::types::AttachmentStatus;
    g.attachments()
        .iter()
        .filter(|a| {
            !matches!(
                a.state(),
                Some(AttachmentStatus::Detaching | AttachmentStatus::Detached)
            )
        })
        .filter_map(|a| a.vpc_id().map(str::to_string))
        .collect()
}

fn observe_igw(
    ctx: &OpContext<'_>,
    s: &InternetGatewaySpec,
    g: &InternetGateway,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let mut o = Observed::new(g.internet_gateway_id().unwrap_or_default(), Attrs::None);
    if !igw_vpcs(g).iter().any(|v| v == vpc) {
        o.drift
            .push(format!("not attached to vpc {}", named(ctx, vpc)));
    }
    Ok(o)
}

async fn update_igw(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &InternetGatewaySpec,
    id: &str,
) -> Result<(), CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let gateway = describe_igws(cloud, &Lookup::Id(id.to_string()))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| vanished(Kind::InternetGateway, id))?;
    let attached = igw_vpcs(&gateway);
    if attached.iter().any(|v| v == vpc) {
        return Ok(());
    }
    for other in attached {
        detach_igw(cloud, id, &other).await?;
    }
    attach_igw(cloud, id, vpc).await
}

async fn detach_igw(cloud: &AwsCloud, id: &str, vpc: &str) -> Result<(), CloudError> {
    let what = format!("internet gateway {id} (attached to {vpc})");
    let ec2 = &cloud.ec2;
    retry_in_use(
        &what,
        cloud.waits.dependency,
        cloud.waits.poll,
        move || async move {
            match ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| sdk_error("DetachInternetGateway", e))
            {
                Err(e) if error_code(&e) == Some("Gateway.NotAttached") => Ok(()),
                other => gone_is_ok(other),
            }
        },
    )
    .await
}

async fn delete_igw(cloud: &AwsCloud, id: &str, what: &str) -> Result<(), CloudError> {
    let Some(gateway) =
        gone_is_none(describe_igws(cloud, &Lookup::Id(id.to_string())).await)?.and_then(first)
    else {
        return Ok(());
    };
    for vpc in igw_vpcs(&gateway) {
        detach_igw(cloud, id, &vpc).await?;
    }
    let ec2 = &cloud.ec2;
    retry_in_use(
        what,
        cloud.waits.dependency,
        cloud.waits.poll,
        move || async move {
            gone_is_ok(
                ec2.delete_internet_gateway()
                    .internet_gateway_id(id)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DeleteInternetGateway", e)),
            )
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Subnet.

async fn create_subnet(
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

async fn zone_for(cloud: &AwsCloud, index: usize) -> Result<String, CloudError> {
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
fn choose_zone(mut names: Vec<String>, index: usize, region: &str) -> Result<String, String> {
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

async fn set_map_public_ip(cloud: &AwsCloud, id: &str, on: bool) -> Result<(), CloudError> {
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

fn subnet_attrs(x: &Subnet) -> Attrs {
    Attrs::Subnet {
        availability_zone: x.availability_zone().unwrap_or_default().to_string(),
    }
}

fn observe_subnet(s: &SubnetSpec, x: &Subnet) -> Observed {
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

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

// ---------------------------------------------------------------------------------------
// Route table.

/// An explicit association of a subnet with a route table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Association {
    subnet_id: String,
    association_id: String,
}

/// What to do with the `0.0.0.0/0` route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RouteChange {
    Keep,
    Create(String),
    Replace(String),
    Delete,
}

fn associations(t: &RouteTable) -> Vec<Association> {
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
fn default_route_target(t: &RouteTable) -> Option<String> {
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
fn association_changes(
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

fn default_route_change(want: Option<&str>, have: Option<&str>) -> RouteChange {
    match (want, have) {
        (None, None) => RouteChange::Keep,
        (None, Some(_)) => RouteChange::Delete,
        (Some(w), None) => RouteChange::Create(w.to_string()),
        (Some(w), Some(h)) if w == h => RouteChange::Keep,
        (Some(w), Some(_)) => RouteChange::Replace(w.to_string()),
    }
}

fn route_table_drift(
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
fn route_table_wants(
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

fn observe_route_table(
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

async fn create_route_table(
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

async fn update_route_table(
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

async fn apply_route_table_changes(
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
            settle(cloud, || async {
                ec2.create_route()
                    .route_table_id(id)
                    .destination_cidr_block(ANYWHERE)
                    .gateway_id(gateway)
                    .send()
                    .await
                    .map_err(|e| sdk_error("CreateRoute", e))
            })
            .await?;
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
async fn associate_subnet(cloud: &AwsCloud, table: &str, subnet: &str) -> Result<(), CloudError> {
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
            settle(cloud, || async {
                ec2.associate_route_table()
                    .route_table_id(table)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .map_err(|e| sdk_error("AssociateRouteTable", e))
            })
            .await?;
            Ok(())
        }
    }
}

async fn delete_route_table(cloud: &AwsCloud, id: &str, what: &str) -> Result<(), CloudError> {
    let Some(table) =
        gone_is_none(describe_route_tables(cloud, &Lookup::Id(id.to_string())).await)?
            .and_then(first)
    else {
        return Ok(());
    };
    apply_route_table_changes(cloud, id, &[], &associations(&table), &RouteChange::Keep).await?;
    let ec2 = &cloud.ec2;
    retry_in_use(
        what,
        cloud.waits.dependency,
        cloud.waits.poll,
        move || async move {
            gone_is_ok(
                ec2.delete_route_table()
                    .route_table_id(id)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DeleteRouteTable", e)),
            )
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Security group.

/// Who a normalized rule admits or reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum RulePeer {
    Cidr(String),
    CidrV6(String),
    Group(String),
    PrefixList(String),
}

/// One security-group rule in the form AWS compares them: protocol (`tcp`, `udp`, `-1`,
/// ...), port range (none for all protocols) and one peer. Descriptions do not count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RuleKey {
    protocol: String,
    ports: Option<(i32, i32)>,
    peer: RulePeer,
}

impl RuleKey {
    fn all_traffic_anywhere() -> Self {
        RuleKey {
            protocol: "-1".into(),
            ports: None,
            peer: RulePeer::Cidr(ANYWHERE.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The rules of a live group.
struct GroupRules {
    ingress: BTreeSet<RuleKey>,
    egress: BTreeSet<RuleKey>,
}

impl GroupRules {
    fn of(g: &SecurityGroup) -> Self {
        GroupRules {
            ingress: have_rules(g.ip_permissions()),
            egress: have_rules(g.ip_permissions_egress()),
        }
    }
}

fn norm_protocol(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "-1" | "all" => "-1".into(),
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        other => other.into(),
    }
}

/// Normalize the spec's rules: `Itself` becomes the group's own id, `Group(ref)` the
/// referenced group's id. Maps each rule to its description.
fn want_rules(
    rules: &[Rule],
    self_id: &str,
    resolve: impl Fn(&Ref) -> Result<String, MissingRef>,
) -> Result<BTreeMap<RuleKey, String>, MissingRef> {
    let mut out = BTreeMap::new();
    for rule in rules {
        let (protocol, ports) = match rule.protocol {
            Protocol::Tcp => (
                "tcp",
                Some((i32::from(rule.from_port), i32::from(rule.to_port))),
            ),
            Protocol::Udp => (
                "udp",
                Some((i32::from(rule.from_port), i32::from(rule.to_port))),
            ),
            Protocol::All => ("-1", None),
        };
        let peer = match &rule.peer {
            Peer::Cidr(c) if c.contains(':') => RulePeer::CidrV6(c.clone()),
            Peer::Cidr(c) => RulePeer::Cidr(c.clone()),
            Peer::Group(r) => RulePeer::Group(resolve(r)?),
            Peer::Itself => RulePeer::Group(self_id.to_string()),
        };
        let key = RuleKey {
            protocol: protocol.to_string(),
            ports,
            peer,
        };
        out.entry(key).or_insert_with(|| rule.description.clone());
    }
    Ok(out)
}

/// Flatten AWS permissions (one per protocol and ports, many peers) into one rule per peer.
fn have_rules(perms: &[IpPermission]) -> BTreeSet<RuleKey> {
    let mut out = BTreeSet::new();
    for p in perms {
        let protocol = norm_protocol(p.ip_protocol().unwrap_or("-1"));
        let ports = if protocol == "-1" {
            None
        } else {
            Some((p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1)))
        };
        let peers = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(|c| RulePeer::Cidr(c.to_string())))
            .chain(
                p.ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6().map(|c| RulePeer::CidrV6(c.to_string()))),
            )
            .chain(
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id().map(|c| RulePeer::Group(c.to_string()))),
            )
            .chain(p.prefix_list_ids().iter().filter_map(|l| {
                l.prefix_list_id()
                    .map(|c| RulePeer::PrefixList(c.to_string()))
            }));
        for peer in peers {
            out.insert(RuleKey {
                protocol: protocol.clone(),
                ports,
                peer,
            });
        }
    }
    out
}

/// Rules to authorize (with their descriptions) and rules to revoke.
fn diff_rules(
    want: &BTreeMap<RuleKey, String>,
    have: &BTreeSet<RuleKey>,
) -> (Vec<(RuleKey, String)>, Vec<RuleKey>) {
    let missing = want
        .iter()
        .filter(|(k, _)| !have.contains(*k))
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    let extra = have
        .iter()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    (missing, extra)
}

/// "tcp 443 from 10.0.0.0/16", "all traffic to 0.0.0.0/0".
fn rule_text(key: &RuleKey, direction: Direction, name: &dyn Fn(&str) -> String) -> String {
    let what = match (key.protocol.as_str(), key.ports) {
        ("-1", _) => "all traffic".to_string(),
        (p, Some((from, to))) if from == to => format!("{p} {from}"),
        (p, Some((from, to))) => format!("{p} {from}-{to}"),
        (p, None) => p.to_string(),
    };
    let peer = match &key.peer {
        RulePeer::Cidr(c) | RulePeer::CidrV6(c) => c.clone(),
        RulePeer::Group(g) => format!("group {}", name(g)),
        RulePeer::PrefixList(l) => format!("prefix list {l}"),
    };
    let preposition = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    format!("{what} {preposition} {peer}")
}

fn rule_drift(
    direction: Direction,
    missing: &[(RuleKey, String)],
    extra: &[RuleKey],
    name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let label = direction.label();
    missing
        .iter()
        .map(|(k, _)| format!("{label} rule missing: {}", rule_text(k, direction, name)))
        .chain(extra.iter().map(|k| {
            format!(
                "{label} rule not in spec: {}",
                rule_text(k, direction, name)
            )
        }))
        .collect()
}

fn to_permission(key: &RuleKey, description: Option<&str>) -> IpPermission {
    let description = description.filter(|d| !d.is_empty()).map(str::to_string);
    let mut p = IpPermission::builder().ip_protocol(&key.protocol);
    if let Some((from, to)) = key.ports {
        p = p.from_port(from).to_port(to);
    }
    p = match &key.peer {
        RulePeer::Cidr(c) => p.ip_ranges(
            IpRange::builder()
                .cidr_ip(c)
                .set_description(description)
                .build(),
        ),
        RulePeer::CidrV6(c) => p.ipv6_ranges(
            Ipv6Range::builder()
                .cidr_ipv6(c)
                .set_description(description)
                .build(),
        ),
        RulePeer::Group(g) => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(g)
                .set_description(description)
                .build(),
        ),
        RulePeer::PrefixList(l) => p.prefix_list_ids(
            PrefixListId::builder()
                .prefix_list_id(l)
                .set_description(description)
                .build(),
        ),
    };
    p.build()
}

/// Desired ingress and egress rules of a group, as normalized rules.
type WantedRules = (BTreeMap<RuleKey, String>, BTreeMap<RuleKey, String>);

fn group_wants(
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
    group_id: &str,
) -> Result<WantedRules, MissingRef> {
    let resolve = |r: &Ref| ctx.resolved.cloud_id(r).map(str::to_string);
    Ok((
        want_rules(&s.ingress, group_id, resolve)?,
        want_rules(&s.egress, group_id, resolve)?,
    ))
}

fn observe_group(
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
    g: &SecurityGroup,
) -> Result<Observed, CloudError> {
    let group_id = g.group_id().unwrap_or_default();
    let (want_in, want_out) = group_wants(ctx, s, group_id)?;
    let have = GroupRules::of(g);
    let name = |id: &str| {
        if id == group_id {
            "itself".to_string()
        } else {
            named(ctx, id)
        }
    };
    let mut o = Observed::new(group_id, Attrs::None);
    let (missing, extra) = diff_rules(&want_in, &have.ingress);
    o.drift
        .extend(rule_drift(Direction::Ingress, &missing, &extra, &name));
    let (missing, extra) = diff_rules(&want_out, &have.egress);
    o.drift
        .extend(rule_drift(Direction::Egress, &missing, &extra, &name));
    Ok(o)
}

async fn create_group(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let out = cloud
        .ec2
        .create_security_group()
        .group_name(crate::names::security_group(ctx.env, ctx.id.as_str()))
        .description(&s.description)
        .vpc_id(vpc)
        .tag_specifications(tag_spec(ResourceType::SecurityGroup, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateSecurityGroup", e))?;
    let id = created_id("CreateSecurityGroup", out.group_id())?;
    // A new VPC group starts with AWS's allow-all egress rule and nothing else.
    let have = GroupRules {
        ingress: BTreeSet::new(),
        egress: BTreeSet::from([RuleKey::all_traffic_anywhere()]),
    };
    converge_group_rules(cloud, ctx, s, &id, &have).await?;
    let (_, want_out) = group_wants(ctx, s, &id)?;
    if let Some(description) = want_out
        .get(&RuleKey::all_traffic_anywhere())
        .filter(|d| !d.is_empty())
    {
        // The default rule was kept rather than re-added; give it the spec's description.
        cloud
            .ec2
            .update_security_group_rule_descriptions_egress()
            .group_id(&id)
            .ip_permissions(to_permission(
                &RuleKey::all_traffic_anywhere(),
                Some(description),
            ))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateSecurityGroupRuleDescriptionsEgress", e))?;
    }
    Ok(Observed::new(id, Attrs::None))
}

/// Revoke the rules the spec does not have, then authorize the missing ones. Only rules
/// change, never the group.
async fn converge_group_rules(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &SecurityGroupSpec,
    group_id: &str,
    have: &GroupRules,
) -> Result<(), CloudError> {
    let (want_in, want_out) = group_wants(ctx, s, group_id)?;
    for (direction, want, have) in [
        (Direction::Ingress, &want_in, &have.ingress),
        (Direction::Egress, &want_out, &have.egress),
    ] {
        let (missing, extra) = diff_rules(want, have);
        if !extra.is_empty() {
            let perms: Vec<IpPermission> = extra.iter().map(|k| to_permission(k, None)).collect();
            revoke_rules(cloud, group_id, direction, perms).await?;
        }
        if !missing.is_empty() {
            let perms: Vec<IpPermission> = missing
                .iter()
                .map(|(k, d)| to_permission(k, Some(d)))
                .collect();
            authorize_rules(cloud, group_id, direction, perms).await?;
        }
    }
    Ok(())
}

async fn revoke_rules(
    cloud: &AwsCloud,
    group_id: &str,
    direction: Direction,
    perms: Vec<IpPermission>,
) -> Result<(), CloudError> {
    let perms = Some(perms);
    let result = settle(cloud, || async {
        match direction {
            Direction::Ingress => cloud
                .ec2
                .revoke_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("RevokeSecurityGroupIngress", e)),
            Direction::Egress => cloud
                .ec2
                .revoke_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("RevokeSecurityGroupEgress", e)),
        }
    })
    .await;
    match result {
        // Already revoked by someone else: the goal is reached.
        Err(e) if error_code(&e) == Some("InvalidPermission.NotFound") => Ok(()),
        other => other,
    }
}

async fn authorize_rules(
    cloud: &AwsCloud,
    group_id: &str,
    direction: Direction,
    perms: Vec<IpPermission>,
) -> Result<(), CloudError> {
    let perms = Some(perms);
    let result = settle(cloud, || async {
        match direction {
            Direction::Ingress => cloud
                .ec2
                .authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("AuthorizeSecurityGroupIngress", e)),
            Direction::Egress => cloud
                .ec2
                .authorize_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(perms.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("AuthorizeSecurityGroupEgress", e)),
        }
    })
    .await;
    match result {
        Err(e) if error_code(&e) == Some("InvalidPermission.Duplicate") => Ok(()),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// Key pair.

async fn create_key_pair(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    public_key: &str,
) -> Result<Observed, CloudError> {
    let name = crate::names::key_pair(ctx.env, ctx.id.as_str());
    let out = cloud
        .ec2
        .import_key_pair()
        .key_name(&name)
        .public_key_material(Blob::new(public_key.trim().as_bytes()))
        .tag_specifications(tag_spec(ResourceType::KeyPair, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("ImportKeyPair", e))?;
    let id = out.key_pair_id().unwrap_or(&name).to_string();
    let name = out.key_name().unwrap_or(&name).to_string();
    Ok(Observed::new(id, Attrs::KeyPair { name }))
}

fn key_pair_attrs(k: &KeyPairInfo) -> Attrs {
    Attrs::KeyPair {
        name: k.key_name().unwrap_or_default().to_string(),
    }
}

fn observe_key_pair(k: &KeyPairInfo) -> Observed {
    Observed::new(
        k.key_pair_id().or(k.key_name()).unwrap_or_default(),
        key_pair_attrs(k),
    )
}

// ---------------------------------------------------------------------------------------
// Instance.

fn state_of(i: &Instance) -> Option<&InstanceStateName> {
    i.state().and_then(|s| s.name())
}

/// Neither terminated nor on its way there.
fn is_live(i: &Instance) -> bool {
    !matches!(
        state_of(i),
        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
    )
}

fn instance_attrs(i: &Instance) -> Attrs {
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
fn instance_groups(i: &Instance) -> BTreeSet<String> {
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

fn instance_drift(
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

fn observe_instance(
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

async fn root_device(cloud: &AwsCloud, ami: &str) -> Result<String, CloudError> {
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

fn volume(device: &str, size_gb: u32) -> BlockDeviceMapping {
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

async fn create_instance(
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
async fn wait_instance(
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

async fn update_instance(
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

async fn delete_instance(
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

    fn rule(protocol: Protocol, from: u16, to: u16, peer: Peer) -> Rule {
        Rule {
            protocol,
            from_port: from,
            to_port: to,
            peer,
            description: format!("{protocol:?} {from}"),
        }
    }

    fn resolve(r: &Ref) -> Result<String, MissingRef> {
        match r.as_str() {
            "sg-lb" => Ok("sg-222".into()),
            _ => Err(MissingRef(r.clone())),
        }
    }

    fn key(protocol: &str, ports: Option<(i32, i32)>, peer: RulePeer) -> RuleKey {
        RuleKey {
            protocol: protocol.into(),
            ports,
            peer,
        }
    }

    fn ident(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn spec_rules_normalize_peers_and_ports() {
        let rules = vec![
            rule(Protocol::Tcp, 443, 443, Peer::Cidr("10.0.0.0/16".into())),
            rule(Protocol::All, 0, 65535, Peer::Itself),
            rule(Protocol::Udp, 8472, 8472, Peer::Group("sg-lb".into())),
            rule(Protocol::Tcp, 22, 22, Peer::Cidr("::/0".into())),
        ];
        let want = want_rules(&rules, "sg-111", resolve).unwrap();
        let keys: Vec<&RuleKey> = want.keys().collect();
        assert!(keys.contains(&&key(
            "tcp",
            Some((443, 443)),
            RulePeer::Cidr("10.0.0.0/16".into())
        )));
        assert!(keys.contains(&&key("-1", None, RulePeer::Group("sg-111".into()))));
        assert!(keys.contains(&&key(
            "udp",
            Some((8472, 8472)),
            RulePeer::Group("sg-222".into())
        )));
        assert!(keys.contains(&&key(
            "tcp",
            Some((22, 22)),
            RulePeer::CidrV6("::/0".into())
        )));
        assert_eq!(
            want[&key(
                "tcp",
                Some((443, 443)),
                RulePeer::Cidr("10.0.0.0/16".into())
            )],
            "Tcp 443"
        );
    }

    #[test]
    fn unknown_group_reference_is_an_error() {
        let rules = vec![rule(Protocol::Tcp, 1, 1, Peer::Group("nope".into()))];
        let err = want_rules(&rules, "sg-111", resolve).unwrap_err();
        assert_eq!(err.0.as_str(), "nope");
    }

    #[test]
    fn aws_permissions_flatten_to_one_rule_per_peer() {
        let perms = vec![
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(6443)
                .to_port(6443)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/16").build())
                .ip_ranges(IpRange::builder().cidr_ip("10.1.0.0/16").build())
                .user_id_group_pairs(
                    UserIdGroupPair::builder()
                        .group_id("sg-9")
                        .user_id("123")
                        .build(),
                )
                .build(),
            // AWS omits ports for all-traffic rules; some emulators send -1.
            IpPermission::builder()
                .ip_protocol("-1")
                .from_port(-1)
                .to_port(-1)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("6")
                .from_port(80)
                .to_port(81)
                .prefix_list_ids(PrefixListId::builder().prefix_list_id("pl-1").build())
                .build(),
        ];
        let have = have_rules(&perms);
        assert_eq!(have.len(), 5);
        assert!(have.contains(&RuleKey::all_traffic_anywhere()));
        assert!(have.contains(&key(
            "tcp",
            Some((6443, 6443)),
            RulePeer::Group("sg-9".into())
        )));
        assert!(have.contains(&key(
            "tcp",
            Some((80, 81)),
            RulePeer::PrefixList("pl-1".into())
        )));
    }

    #[test]
    fn diff_finds_missing_and_extra_ignoring_descriptions() {
        let rules = vec![
            rule(Protocol::Tcp, 443, 443, Peer::Cidr("0.0.0.0/0".into())),
            rule(Protocol::Tcp, 80, 80, Peer::Cidr("0.0.0.0/0".into())),
        ];
        let want = want_rules(&rules, "sg-1", resolve).unwrap();
        let have = BTreeSet::from([
            key("tcp", Some((443, 443)), RulePeer::Cidr("0.0.0.0/0".into())),
            RuleKey::all_traffic_anywhere(),
        ]);
        let (missing, extra) = diff_rules(&want, &have);
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].0,
            key("tcp", Some((80, 80)), RulePeer::Cidr("0.0.0.0/0".into()))
        );
        assert_eq!(missing[0].1, "Tcp 80");
        assert_eq!(extra, vec![RuleKey::all_traffic_anywhere()]);
        let (missing, extra) = diff_rules(&want, &want.keys().cloned().collect());
        assert!(missing.is_empty() && extra.is_empty());
    }

    #[test]
    fn rule_drift_reads_well() {
        let missing = vec![(
            key("tcp", Some((30000, 32767)), RulePeer::Group("sg-1".into())),
            String::new(),
        )];
        let extra = vec![RuleKey::all_traffic_anywhere()];
        let name = |id: &str| {
            if id == "sg-1" {
                "itself".to_string()
            } else {
                id.to_string()
            }
        };
        let ingress = rule_drift(Direction::Ingress, &missing, &[], &name);
        assert_eq!(
            ingress,
            vec!["ingress rule missing: tcp 30000-32767 from group itself"]
        );
        let egress = rule_drift(Direction::Egress, &[], &extra, &name);
        assert_eq!(
            egress,
            vec!["egress rule not in spec: all traffic to 0.0.0.0/0"]
        );
    }

    #[test]
    fn permission_round_trips_through_normalization() {
        let keys = [
            key("tcp", Some((22, 22)), RulePeer::Cidr("1.2.3.4/32".into())),
            key("-1", None, RulePeer::Group("sg-5".into())),
            key("udp", Some((53, 53)), RulePeer::CidrV6("::/0".into())),
            key("tcp", Some((1, 2)), RulePeer::PrefixList("pl-7".into())),
        ];
        let perms: Vec<IpPermission> = keys.iter().map(|k| to_permission(k, Some("why"))).collect();
        assert_eq!(have_rules(&perms), keys.iter().cloned().collect());
        assert_eq!(perms[0].ip_ranges()[0].description(), Some("why"));
        assert_eq!(
            to_permission(&keys[0], Some("")).ip_ranges()[0].description(),
            None
        );
        assert_eq!(perms[1].from_port(), None);
    }

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
