//! EC2 resources: VPC, internet gateway, subnets, route tables, security groups, key pairs,
//! instances, volumes and interface VPC endpoints.
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
    UserIdGroupPair, Volume, VolumeAttachmentState, VolumeState, VolumeType, Vpc, VpcAttributeName,
    VpcEndpoint,
};
use base64::Engine as _;

use super::retry::{retry_in_use, retry_while};
use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{
    tags_for, Attrs, FoundOwner, InstanceSpec, InternetGatewaySpec, Kind, LogicalId, MissingRef,
    Observed, Peer, Protocol, Ref, RouteTableSpec, Rule, SecurityGroupSpec, Spec, SubnetSpec,
    VolumeSpec, VpcSpec, TAG_ENV, TAG_ID,
};

mod blockers;
mod instance;
mod internet_gateway;
mod key_pair;
mod route_table;
mod security_group;
mod subnet;
mod volume;
mod vpc;
mod vpc_endpoint;
pub(super) mod watch;

pub(super) use instance::preflight;
use instance::*;
use internet_gateway::*;
use key_pair::*;
use route_table::*;
use security_group::*;
use subnet::*;
use volume::*;
use vpc::*;
use vpc_endpoint::*;

/// The destination of the default route.
const ANYWHERE: &str = "0.0.0.0/0";
/// Root device name when the image does not say.
const DEFAULT_ROOT_DEVICE: &str = "/dev/sda1";
/// How long a call on a resource created a moment ago may keep answering "not found".
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Entry points, called from `aws/mod.rs`.

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    let env = ctx.env;
    let want = || Want::Owner(ctx.id);
    let found = match spec {
        // With its DNS attributes: a VPC whose create stopped before they were set is
        // found half-made (drift), never adopted as done.
        Spec::Vpc(s) => match pick(vpcs(cloud, env, want()).await?, |v| v.vpc_id()) {
            Some(v) => Some(observe_vpc(cloud, s, &v).await?),
            None => None,
        },
        Spec::InternetGateway(s) => {
            let mut igws = igws(cloud, env, want()).await?;
            // Of twins, the one attached to this env's VPC is the one in use.
            if let Ok(vpc) = ctx.resolved.cloud_id(&s.vpc) {
                if igws.iter().any(|g| igw_vpcs(g).iter().any(|v| v == vpc)) {
                    igws.retain(|g| igw_vpcs(g).iter().any(|v| v == vpc));
                }
            }
            pick(igws, |g| g.internet_gateway_id())
                .map(|g| observe_igw(ctx, s, &g))
                .transpose()?
        }
        Spec::Subnet(s) => pick(subnets(cloud, env, want()).await?, |x| x.subnet_id())
            .map(|x| observe_subnet(s, &x)),
        Spec::RouteTable(s) => pick(route_tables(cloud, env, want()).await?, |t| {
            t.route_table_id()
        })
        .map(|t| observe_route_table(ctx, s, &t))
        .transpose()?,
        Spec::SecurityGroup(s) => pick(groups(cloud, env, want()).await?, |g| g.group_id())
            .map(|g| observe_group(ctx, s, &g))
            .transpose()?,
        Spec::KeyPair(_) => pick(key_pairs(cloud, env, want()).await?, |k| {
            k.key_pair_id().or(k.key_name())
        })
        .map(|k| observe_key_pair(&k)),
        Spec::Volume(s) => pick(volumes(cloud, env, want()).await?, |v| v.volume_id())
            .map(|v| observe_volume(s, &v)),
        Spec::VpcEndpoint(s) => pick(endpoints(cloud, env, want()).await?, |e| {
            e.vpc_endpoint_id()
        })
        .map(|e| observe_endpoint(ctx, s, &e)),
        Spec::Instance(s) => {
            // RunInstances tags atomically, so every instance of ours carries the env
            // tag; among those, match the logical id or this step's client token. (Done
            // here rather than with a `client-token` filter, which moto does not support.)
            let all: Vec<Instance> = instances(cloud, env, Want::Env)
                .await?
                .into_iter()
                .filter(is_live)
                .filter(|i| {
                    tag_value(i.tags(), TAG_ID) == Some(ctx.id.as_str())
                        || i.client_token() == Some(ctx.token)
                })
                .collect();
            pick(all, |i| i.instance_id())
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
    let env = ctx.env;
    let want = || Want::Id(cloud_id);
    let observed = match spec {
        Spec::Vpc(s) => match gone_is_none(vpcs(cloud, env, want()).await)?.and_then(first) {
            Some(v) => Some(observe_vpc(cloud, s, &v).await?),
            None => None,
        },
        Spec::InternetGateway(s) => gone_is_none(igws(cloud, env, want()).await)?
            .and_then(first)
            .map(|g| observe_igw(ctx, s, &g))
            .transpose()?,
        Spec::Subnet(s) => gone_is_none(subnets(cloud, env, want()).await)?
            .and_then(first)
            .map(|x| observe_subnet(s, &x)),
        Spec::RouteTable(s) => gone_is_none(route_tables(cloud, env, want()).await)?
            .and_then(first)
            .map(|t| observe_route_table(ctx, s, &t))
            .transpose()?,
        Spec::SecurityGroup(s) => gone_is_none(groups(cloud, env, want()).await)?
            .and_then(first)
            .map(|g| observe_group(ctx, s, &g))
            .transpose()?,
        Spec::KeyPair(_) => gone_is_none(key_pairs(cloud, env, want()).await)?
            .and_then(first)
            .map(|k| observe_key_pair(&k)),
        Spec::Volume(s) => gone_is_none(volumes(cloud, env, want()).await)?
            .and_then(first)
            .map(|v| observe_volume(s, &v)),
        Spec::VpcEndpoint(s) => gone_is_none(endpoints(cloud, env, want()).await)?
            .and_then(first)
            .map(|e| observe_endpoint(ctx, s, &e)),
        Spec::Instance(s) => gone_is_none(instances(cloud, env, want()).await)?
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
        Spec::Volume(s) => create_volume(cloud, ctx, s).await,
        Spec::VpcEndpoint(s) => create_endpoint(cloud, ctx, s).await,
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
        Spec::Volume(s) => update_volume(cloud, s, id).await?,
        Spec::VpcEndpoint(s) => update_endpoint(cloud, ctx, s, id).await?,
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
    // "Still in use" (ENIs draining) comes back as `CloudError::InUse`: the engine waits
    // and tries the whole delete again, for every cloud alike.
    let ec2 = &cloud.ec2;
    match kind {
        Kind::Vpc => {
            async move {
                gone_is_ok(
                    ec2.delete_vpc()
                        .vpc_id(id)
                        .send()
                        .await
                        .map_err(|e| sdk_error("DeleteVpc", e)),
                )
            }
            .await
        }
        Kind::InternetGateway => delete_igw(cloud, id).await,
        Kind::Subnet => {
            let result = ec2
                .delete_subnet()
                .subnet_id(id)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteSubnet", e));
            named_blockers(cloud, blockers::Held::Subnet(id), result).await
        }
        Kind::RouteTable => delete_route_table(cloud, id).await,
        Kind::SecurityGroup => {
            revoke_group_references(cloud, id).await?;
            let result = ec2
                .delete_security_group()
                .group_id(id)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteSecurityGroup", e));
            named_blockers(cloud, blockers::Held::SecurityGroup(id), result).await
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
        Kind::Volume => delete_volume(cloud, id).await,
        Kind::VpcEndpoint => delete_endpoint(cloud, ctx, id).await,
        other => Err(not_ec2(other)),
    }
}

pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    // One DescribeTags says which kinds hold anything of the env; only those are listed
    // (a new environment costs one call, not eight).
    let present = tagged_types(cloud, env).await?;
    let all = |kind: &str| present.contains(kind).then_some(Want::Env);
    let (v, g, sn, rt, sg, kp, vol, inst, ep) = futures::try_join!(
        when(all("vpc"), |w| vpcs(cloud, env, w)),
        when(all("internet-gateway"), |w| igws(cloud, env, w)),
        when(all("subnet"), |w| subnets(cloud, env, w)),
        when(all("route-table"), |w| route_tables(cloud, env, w)),
        when(all("security-group"), |w| groups(cloud, env, w)),
        when(all("key-pair"), |w| key_pairs(cloud, env, w)),
        when(all("volume"), |w| volumes(cloud, env, w)),
        when(all("instance"), |w| instances(cloud, env, w)),
        // Endpoints live in a VPC; listed whenever the env has one, whatever DescribeTags
        // says of their own resource type.
        when(all("vpc-endpoint").or(all("vpc")), |w| endpoints(
            cloud, env, w
        )),
    )?;
    let mut out = Vec::new();
    let mut push = |kind: Kind, cloud_id: Option<&str>, tags: &[Tag], attrs: Attrs| {
        if let Some(cloud_id) = cloud_id {
            let id = tag_value(tags, TAG_ID).unwrap_or(cloud_id);
            out.push(Owned {
                kind,
                id: LogicalId::new(id),
                cloud_id: cloud_id.to_string(),
                attrs,
                owner: FoundOwner::from_tags(
                    tags.iter()
                        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
                ),
            });
        }
    };
    for v in v {
        push(Kind::Vpc, v.vpc_id(), v.tags(), Attrs::None);
    }
    for g in g {
        push(
            Kind::InternetGateway,
            g.internet_gateway_id(),
            g.tags(),
            Attrs::None,
        );
    }
    for s in sn {
        push(Kind::Subnet, s.subnet_id(), s.tags(), subnet_attrs(&s));
    }
    for t in rt {
        push(Kind::RouteTable, t.route_table_id(), t.tags(), Attrs::None);
    }
    for g in sg {
        push(Kind::SecurityGroup, g.group_id(), g.tags(), Attrs::None);
    }
    for k in kp {
        push(
            Kind::KeyPair,
            k.key_pair_id().or(k.key_name()),
            k.tags(),
            key_pair_attrs(&k),
        );
    }
    for v in vol {
        push(Kind::Volume, v.volume_id(), v.tags(), volume_attrs(&v));
    }
    for e in ep {
        push(
            Kind::VpcEndpoint,
            e.vpc_endpoint_id(),
            e.tags(),
            Attrs::None,
        );
    }
    for i in inst {
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

/// `list(want)` when there is something to list, else nothing.
async fn when<'a, T, F, Fut>(want: Option<Want<'a>>, list: F) -> Result<Vec<T>, CloudError>
where
    F: FnOnce(Want<'a>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, CloudError>>,
{
    match want {
        Some(w) => list(w).await,
        None => Ok(Vec::new()),
    }
}

/// The EC2 resource types (`vpc`, `subnet`, `instance`, ...) that hold something tagged
/// `provision:env=<env>` (once per survey).
async fn tagged_types(cloud: &AwsCloud, env: &str) -> Result<BTreeSet<String>, CloudError> {
    let fetch = || async {
        let tags: Vec<_> = cloud
            .ec2
            .describe_tags()
            .filters(filter("key", TAG_ENV))
            .filters(filter("value", env))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| sdk_error("DescribeTags", e))?;
        Ok(tags
            .iter()
            .filter_map(|t| t.resource_type().map(|r| r.as_str().to_string()))
            .collect())
    };
    match cloud.survey(env) {
        Some(survey) => survey.lists.get("ec2-tagged", fetch).await,
        None => fetch().await,
    }
}

// ---------------------------------------------------------------------------------------
// Reading by kind, from the survey when `plan` runs one (see `memo::Survey`).

/// What `find`, `read` and `list_owned` want of one kind.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// Tagged for the env and this logical id.
    Owner(&'a LogicalId),
    /// This cloud id.
    Id(&'a str),
    /// Everything tagged for the env.
    Env,
}

impl Want<'_> {
    fn lookup(self, env: &str) -> Lookup {
        match self {
            Want::Owner(id) => Lookup::Filters(owner_filters(env, id)),
            Want::Id(id) => Lookup::Id(id.to_string()),
            Want::Env => Lookup::Filters(vec![filter(&format!("tag:{TAG_ENV}"), env)]),
        }
    }
}

/// How to get a resource's cloud id and its tags.
type Access<T> = (fn(&T) -> Option<&str>, fn(&T) -> &[Tag]);

/// The resources of one kind `want` names: during a survey of `env` from its one list of
/// the kind (an id it does not hold is still described by itself: its tags may have been
/// removed, or it is gone); otherwise by a describe call.
async fn surveyed<T, F, Fut>(
    cloud: &AwsCloud,
    env: &str,
    key: &'static str,
    want: Want<'_>,
    (id_of, tags_of): Access<T>,
    describe: F,
) -> Result<Vec<T>, CloudError>
where
    T: Clone + Send + Sync + 'static,
    F: Fn(Lookup) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, CloudError>>,
{
    if let Some(survey) = cloud.survey(env) {
        let all: Vec<T> = survey
            .lists
            .get(key, || describe(Want::Env.lookup(env)))
            .await?;
        let hits: Vec<T> = match want {
            Want::Env => return Ok(all),
            Want::Owner(id) => {
                return Ok(all
                    .into_iter()
                    .filter(|x| tag_value(tags_of(x), TAG_ID) == Some(id.as_str()))
                    .collect())
            }
            Want::Id(id) => all.into_iter().filter(|x| id_of(x) == Some(id)).collect(),
        };
        if !hits.is_empty() {
            return Ok(hits);
        }
    }
    describe(want.lookup(env)).await
}

async fn vpcs(cloud: &AwsCloud, env: &str, want: Want<'_>) -> Result<Vec<Vpc>, CloudError> {
    let access = (
        Vpc::vpc_id as fn(&Vpc) -> Option<&str>,
        Vpc::tags as fn(&Vpc) -> &[Tag],
    );
    surveyed(cloud, env, "vpcs", want, access, |l| async move {
        describe_vpcs(cloud, &l).await
    })
    .await
}

async fn igws(
    cloud: &AwsCloud,
    env: &str,
    want: Want<'_>,
) -> Result<Vec<InternetGateway>, CloudError> {
    let access = (
        InternetGateway::internet_gateway_id as fn(&InternetGateway) -> Option<&str>,
        InternetGateway::tags as fn(&InternetGateway) -> &[Tag],
    );
    surveyed(cloud, env, "igws", want, access, |l| async move {
        describe_igws(cloud, &l).await
    })
    .await
}

async fn subnets(cloud: &AwsCloud, env: &str, want: Want<'_>) -> Result<Vec<Subnet>, CloudError> {
    let access = (
        Subnet::subnet_id as fn(&Subnet) -> Option<&str>,
        Subnet::tags as fn(&Subnet) -> &[Tag],
    );
    surveyed(cloud, env, "subnets", want, access, |l| async move {
        describe_subnets(cloud, &l).await
    })
    .await
}

async fn route_tables(
    cloud: &AwsCloud,
    env: &str,
    want: Want<'_>,
) -> Result<Vec<RouteTable>, CloudError> {
    let access = (
        RouteTable::route_table_id as fn(&RouteTable) -> Option<&str>,
        RouteTable::tags as fn(&RouteTable) -> &[Tag],
    );
    surveyed(cloud, env, "route-tables", want, access, |l| async move {
        describe_route_tables(cloud, &l).await
    })
    .await
}

async fn groups(
    cloud: &AwsCloud,
    env: &str,
    want: Want<'_>,
) -> Result<Vec<SecurityGroup>, CloudError> {
    let access = (
        SecurityGroup::group_id as fn(&SecurityGroup) -> Option<&str>,
        SecurityGroup::tags as fn(&SecurityGroup) -> &[Tag],
    );
    surveyed(cloud, env, "groups", want, access, |l| async move {
        describe_groups(cloud, &l).await
    })
    .await
}

fn key_pair_id(k: &KeyPairInfo) -> Option<&str> {
    k.key_pair_id().or(k.key_name())
}

async fn key_pairs(
    cloud: &AwsCloud,
    env: &str,
    want: Want<'_>,
) -> Result<Vec<KeyPairInfo>, CloudError> {
    // A key pair is read by its id or by its name (older states).
    let access = (
        key_pair_id as fn(&KeyPairInfo) -> Option<&str>,
        KeyPairInfo::tags as fn(&KeyPairInfo) -> &[Tag],
    );
    let want = match want {
        Want::Id(id) if !id.starts_with("key-") => {
            return describe_key_pairs(cloud, &want.lookup(env)).await
        }
        other => other,
    };
    surveyed(cloud, env, "key-pairs", want, access, |l| async move {
        describe_key_pairs(cloud, &l).await
    })
    .await
}

async fn volumes(cloud: &AwsCloud, env: &str, want: Want<'_>) -> Result<Vec<Volume>, CloudError> {
    let access = (
        Volume::volume_id as fn(&Volume) -> Option<&str>,
        Volume::tags as fn(&Volume) -> &[Tag],
    );
    surveyed(cloud, env, "volumes", want, access, |l| async move {
        describe_volumes(cloud, &l).await
    })
    .await
}

async fn instances(
    cloud: &AwsCloud,
    env: &str,
    want: Want<'_>,
) -> Result<Vec<Instance>, CloudError> {
    let access = (
        Instance::instance_id as fn(&Instance) -> Option<&str>,
        Instance::tags as fn(&Instance) -> &[Tag],
    );
    surveyed(cloud, env, "instances", want, access, |l| async move {
        describe_instances(cloud, &l).await
    })
    .await
}

async fn endpoints(
    cloud: &AwsCloud,
    env: &str,
    want: Want<'_>,
) -> Result<Vec<VpcEndpoint>, CloudError> {
    let access = (
        VpcEndpoint::vpc_endpoint_id as fn(&VpcEndpoint) -> Option<&str>,
        VpcEndpoint::tags as fn(&VpcEndpoint) -> &[Tag],
    );
    surveyed(cloud, env, "vpc-endpoints", want, access, |l| async move {
        describe_endpoints(cloud, &l).await
    })
    .await
}

/// Per-type answers asked in batches (see `memo::Batched`): the instance types of every
/// instance checked at once go in one call.
#[derive(Default)]
pub struct Batches {
    archs: super::memo::Batched<Vec<String>>,
    offered: super::memo::Batched<BTreeSet<String>>,
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
    let tags = tags_for(ctx.env, ctx.owner, ctx.id)
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

/// `InvalidVpcID.NotFound`, `InvalidGroup.NotFound`, `InvalidKeyPair.NotFound`, ...
fn is_not_found(e: &CloudError) -> bool {
    e.code().is_some_and(|c| c.ends_with("NotFound"))
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

/// A delete's outcome: gone already is done; refused as in use, with what still holds
/// `held` named by the tool itself (AWS's message names nothing).
async fn named_blockers<T>(
    cloud: &AwsCloud,
    held: blockers::Held<'_>,
    result: Result<T, CloudError>,
) -> Result<(), CloudError> {
    match result {
        Err(e) if e.is_in_use() => Err(blockers::name_blockers(cloud, held, e).await),
        other => gone_is_ok(other),
    }
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

/// One resource of those tagged for an env and logical id. Several are twins (a create
/// without idempotency token retried after a lost reply, or an interrupted run): adopt the
/// one with the lowest id, so every run picks the same; `plan` lists the others (they are
/// tagged for the env but not in the state) and `apply`/`destroy` delete them. Failing
/// instead would leave the env stuck: neither apply nor destroy could plan.
fn pick<T>(items: Vec<T>, id: impl Fn(&T) -> Option<&str>) -> Option<T> {
    items
        .into_iter()
        .filter(|i| id(i).is_some())
        .min_by(|a, b| id(a).cmp(&id(b)))
}

/// The ids of `items` other than `keep`.
fn twins<T>(items: Vec<T>, keep: &str, id: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    items
        .iter()
        .filter_map(&id)
        .filter(|i| *i != keep)
        .map(str::to_string)
        .collect()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::delete;
    use crate::cloud::aws::rds::testing::{Reply, Script};
    use crate::cloud::{DeleteOptions, OpContext};
    use crate::model::{Kind, LogicalId, Observed, Owner, Resolved};

    /// EC2's answer for an id it does not know (any call).
    fn not_found(code: &'static str) -> Script {
        Script::new(move |call, _| {
            Reply(
                400,
                "text/xml",
                format!(
                    "<Response><Errors><Error><Code>{code}</Code><Message>{} of an id that \
                     does not exist</Message></Error></Errors><RequestID>r-1</RequestID>\
                     </Response>",
                    call.action
                ),
            )
        })
    }

    #[tokio::test]
    async fn deletes_of_what_is_already_gone_succeed_and_other_refusals_do_not() {
        let id = LogicalId::new("x");
        let resolved = Resolved::default();
        let owner = Owner::default();
        let options = DeleteOptions::default();
        let ctx = OpContext::quiet("lab", &owner, &id, "", &resolved, &options);
        for (kind, cloud_id, code) in [
            (Kind::Vpc, "vpc-1", "InvalidVpcID.NotFound"),
            (Kind::Subnet, "subnet-1", "InvalidSubnetID.NotFound"),
            (Kind::SecurityGroup, "sg-1", "InvalidGroup.NotFound"),
            (Kind::KeyPair, "key-1", "InvalidKeyPair.NotFound"),
            (
                Kind::InternetGateway,
                "igw-1",
                "InvalidInternetGatewayID.NotFound",
            ),
            (Kind::RouteTable, "rtb-1", "InvalidRouteTableID.NotFound"),
            (Kind::Volume, "vol-1", "InvalidVolume.NotFound"),
            (Kind::Instance, "i-1", "InvalidInstanceID.NotFound"),
            (Kind::VpcEndpoint, "vpce-1", "InvalidVpcEndpointId.NotFound"),
        ] {
            let script = not_found(code);
            let cloud = script.cloud(Duration::from_secs(1));
            let current = Observed::new(cloud_id, crate::model::Attrs::None);
            let gone = delete(&cloud, &ctx, kind, &current).await;
            assert!(
                gone.is_ok(),
                "{kind} {cloud_id} already gone: {gone:?} after {:?}",
                script.actions()
            );
            assert!(!script.actions().is_empty(), "{kind}: no call at all");
            // Any other refusal is an error.
            let script = not_found("UnauthorizedOperation");
            let cloud = script.cloud(Duration::from_secs(1));
            let refused = delete(&cloud, &ctx, kind, &current).await;
            assert!(refused.is_err(), "{kind} {cloud_id}: {refused:?}");
        }
    }
}
