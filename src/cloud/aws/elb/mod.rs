//! Elastic Load Balancing v2: the network load balancer, its TCP target groups and its
//! listeners. Cloud ids are ARNs.
//!
//! Ownership: all three kinds are tagged at creation. `find` looks a load balancer or target
//! group up by its name (unique per region) and a listener by its port on the resolved load
//! balancer, then refuses one whose tags name another environment. `list_owned` covers load
//! balancers and target groups tagged for the environment, and the tagged listeners of those
//! load balancers.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, IpAddressType, LoadBalancer, LoadBalancerAttribute,
    LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag,
    TargetDescription, TargetGroup, TargetHealthStateEnum, TargetTypeEnum,
};

use super::common::{
    gone, has_code, missing, not_ours, ownership, poll_until, wrong_kind, Ownership, Poll,
};
use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{
    tags_for, Attrs, Kind, ListenerSpec, LoadBalancerSpec, LogicalId, Observed, Resolved, Spec,
    TargetGroupSpec, TAG_ENV, TAG_ID,
};

mod listener;
mod load_balancer;
mod target_group;

use listener::*;
use load_balancer::*;
use target_group::*;

/// ELB names (load balancers, target groups) are at most 32 characters.
const MAX_NAME: usize = 32;
const CROSS_ZONE: &str = "load_balancing.cross_zone.enabled";
const LB_NOT_FOUND: &[&str] = &["LoadBalancerNotFound"];
const TG_NOT_FOUND: &[&str] = &["TargetGroupNotFound"];
const LISTENER_NOT_FOUND: &[&str] = &["ListenerNotFound"];
/// DescribeTags takes at most 20 ARNs.
const TAGS_BATCH: usize = 20;

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => find_load_balancer(cloud, ctx, s).await,
        Spec::TargetGroup(s) => find_target_group(cloud, ctx, s).await,
        Spec::Listener(s) => find_listener(cloud, ctx, s).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => match describe_load_balancer(cloud, cloud_id).await? {
            Some(lb) => Ok(Some(observe_load_balancer(cloud, ctx, s, &lb).await?)),
            None => Ok(None),
        },
        Spec::TargetGroup(s) => match describe_target_group(cloud, cloud_id).await? {
            Some(tg) => Ok(Some(observe_target_group(cloud, ctx, s, &tg).await?)),
            None => Ok(None),
        },
        Spec::Listener(s) => read_listener(cloud, ctx, s, cloud_id).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => create_load_balancer(cloud, ctx, s).await,
        Spec::TargetGroup(s) => create_target_group(cloud, ctx, s).await,
        Spec::Listener(s) => create_listener(cloud, ctx, s).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    match spec {
        Spec::LoadBalancer(s) => update_load_balancer(cloud, ctx, s, &current.cloud_id).await,
        Spec::TargetGroup(s) => update_target_group(cloud, ctx, s, &current.cloud_id).await,
        Spec::Listener(s) => update_listener(cloud, ctx, s, &current.cloud_id).await,
        other => Err(wrong_kind("ELB", other.kind())),
    }
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    current: &Observed,
) -> Result<(), CloudError> {
    let arn = current.cloud_id.as_str();
    match kind {
        Kind::LoadBalancer => delete_load_balancer(cloud, ctx, arn).await,
        Kind::TargetGroup => {
            async move {
                match cloud
                    .elb
                    .delete_target_group()
                    .target_group_arn(arn)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if has_code(&e, TG_NOT_FOUND) => Ok(()),
                    Err(e) => Err(sdk_error("DeleteTargetGroup", e)),
                }
            }
            .await
        }
        Kind::Listener => match cloud.elb.delete_listener().listener_arn(arn).send().await {
            Ok(_) => Ok(()),
            Err(e) if has_code(&e, LISTENER_NOT_FOUND) => Ok(()),
            Err(e) => Err(sdk_error("DeleteListener", e)),
        },
        other => Err(wrong_kind("ELB", other)),
    }
}

/// Load balancers and target groups tagged `provision:env=<env>`, and the tagged listeners
/// of those load balancers.
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let mut owned = Vec::new();

    let mut load_balancers = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .elb
            .describe_load_balancers()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeLoadBalancers", e))?;
        load_balancers.extend(out.load_balancers().iter().cloned());
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let arns: Vec<String> = load_balancers
        .iter()
        .filter_map(|l| l.load_balancer_arn())
        .map(str::to_string)
        .collect();
    let tags = tags_of_many(cloud, &arns).await?;
    for lb in &load_balancers {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let Some(id) = owned_id(tags.get(arn), env) else {
            continue;
        };
        owned.push(Owned {
            kind: Kind::LoadBalancer,
            id,
            cloud_id: arn.to_string(),
            attrs: load_balancer_attrs(lb),
        });
        let listeners = cloud
            .elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeListeners", e))?;
        let listener_arns: Vec<String> = listeners
            .listeners()
            .iter()
            .filter_map(|l| l.listener_arn())
            .map(str::to_string)
            .collect();
        let listener_tags = tags_of_many(cloud, &listener_arns).await?;
        for arn in &listener_arns {
            if let Some(id) = owned_id(listener_tags.get(arn), env) {
                owned.push(Owned {
                    kind: Kind::Listener,
                    id,
                    cloud_id: arn.clone(),
                    attrs: Attrs::None,
                });
            }
        }
    }

    let mut target_groups = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .elb
            .describe_target_groups()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetGroups", e))?;
        target_groups.extend(
            out.target_groups()
                .iter()
                .filter_map(|t| t.target_group_arn())
                .map(str::to_string),
        );
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let tags = tags_of_many(cloud, &target_groups).await?;
    for arn in &target_groups {
        if let Some(id) = owned_id(tags.get(arn), env) {
            owned.push(Owned {
                kind: Kind::TargetGroup,
                id,
                cloud_id: arn.clone(),
                attrs: Attrs::None,
            });
        }
    }
    Ok(owned)
}

// ---------------------------------------------------------------------------------------
// Tags and small helpers

fn elb_tags(ctx: &OpContext<'_>) -> Vec<Tag> {
    tags_for(ctx.env, ctx.id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Refuse a same-named resource whose tags do not name this environment and logical id.
async fn check_owner(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    kind: Kind,
    name: &str,
    arn: &str,
) -> Result<(), CloudError> {
    let tags = tags_of_many(cloud, &[arn.to_string()]).await?;
    let pairs = tags.get(arn).map(Vec::as_slice).unwrap_or_default();
    match ownership(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ctx.env,
        ctx.id.as_str(),
    ) {
        Ownership::Ours => Ok(()),
        other => Err(not_ours(kind, name, ctx.env, ctx.id.as_str(), &other)),
    }
}

async fn tags_of_many(
    cloud: &AwsCloud,
    arns: &[String],
) -> Result<BTreeMap<String, Vec<(String, String)>>, CloudError> {
    let mut out = BTreeMap::new();
    for chunk in arns.chunks(TAGS_BATCH) {
        let resp = cloud
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTags", e))?;
        for description in resp.tag_descriptions() {
            let Some(arn) = description.resource_arn() else {
                continue;
            };
            let tags = description
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect();
            out.insert(arn.to_string(), tags);
        }
    }
    Ok(out)
}

/// The logical id of a resource tagged for `env`.
fn owned_id(tags: Option<&Vec<(String, String)>>, env: &str) -> Option<LogicalId> {
    let tags = tags?;
    let get = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    (get(TAG_ENV) == Some(env)).then(|| get(TAG_ID).map(LogicalId::from))?
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// `[subnet-private-1 (subnet-0abc), subnet-0def]`: cloud ids with their logical id where known.
fn describe_ids(resolved: &Resolved, ids: &[String]) -> String {
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    let parts: Vec<String> = sorted
        .into_iter()
        .map(|id| {
            resolved
                .logical_of(id)
                .map_or_else(|| id.clone(), |l| format!("{l} ({id})"))
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn on_off(b: bool) -> &'static str {
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
    fn owned_id_needs_the_env_tag() {
        let tags = vec![
            (TAG_ENV.to_string(), "lab".to_string()),
            (TAG_ID.to_string(), "nlb".to_string()),
        ];
        assert_eq!(owned_id(Some(&tags), "lab"), Some(LogicalId::from("nlb")));
        assert_eq!(owned_id(Some(&tags), "prod"), None);
        assert_eq!(owned_id(None, "lab"), None);
    }

    #[test]
    fn ids_are_described_with_their_logical_names() {
        let mut resolved = Resolved::default();
        resolved
            .entries
            .insert("subnet-a".into(), Observed::new("subnet-1", Attrs::None));
        assert_eq!(
            describe_ids(&resolved, &["subnet-2".to_string(), "subnet-1".to_string()]),
            "[subnet-a (subnet-1), subnet-2]"
        );
    }
}
