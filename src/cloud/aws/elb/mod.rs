//! Elastic Load Balancing v2: the network load balancer, its TCP target groups and its
//! listeners. Cloud ids are ARNs.
//!
//! Ownership: all three kinds are tagged at creation. `find` looks a load balancer or target
//! group up by its name (unique per region) and a listener by its port on the resolved load
//! balancer, then refuses one whose tags name another environment. `list_owned` covers load
//! balancers and target groups tagged for the environment, and the tagged listeners of those
//! load balancers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
        Spec::LoadBalancer(s) => {
            let listed = surveyed(cloud, ctx.env).await?;
            let lb = match listed.as_ref().and_then(|l| l.load_balancer(cloud_id)) {
                Some(lb) => Some(lb.clone()),
                None => describe_load_balancer(cloud, cloud_id).await?,
            };
            match lb {
                Some(lb) => Ok(Some(observe_load_balancer(cloud, ctx, s, &lb).await?)),
                None => Ok(None),
            }
        }
        Spec::TargetGroup(s) => {
            let listed = surveyed(cloud, ctx.env).await?;
            let tg = match listed.as_ref().and_then(|l| l.target_group(cloud_id)) {
                Some(tg) => Some(tg.clone()),
                None => describe_target_group(cloud, cloud_id).await?,
            };
            match tg {
                Some(tg) => Ok(Some(observe_target_group(cloud, ctx, s, &tg).await?)),
                None => Ok(None),
            }
        }
        Spec::Listener(s) => {
            let listed = surveyed(cloud, ctx.env).await?;
            match listed.as_ref().and_then(|l| l.listener(cloud_id)) {
                Some(l) => Ok(Some(observe_listener(ctx, s, l))),
                None => read_listener(cloud, ctx, s, cloud_id).await,
            }
        }
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
    let listed = match surveyed(cloud, env).await? {
        Some(listed) => listed,
        None => Arc::new(list_env(cloud, env).await?),
    };
    let mut owned = Vec::new();
    for lb in &listed.load_balancers {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        if let Some(id) = owned_id(listed.tags.get(arn), env) {
            owned.push(Owned {
                kind: Kind::LoadBalancer,
                id,
                cloud_id: arn.to_string(),
                attrs: load_balancer_attrs(lb),
                owner: found_owner(listed.tags.get(arn)),
            });
        }
    }
    for l in &listed.listeners {
        let arn = l.listener_arn().unwrap_or_default();
        if let Some(id) = owned_id(listed.tags.get(arn), env) {
            owned.push(Owned {
                kind: Kind::Listener,
                id,
                cloud_id: arn.to_string(),
                attrs: Attrs::None,
                owner: found_owner(listed.tags.get(arn)),
            });
        }
    }
    for tg in &listed.target_groups {
        let arn = tg.target_group_arn().unwrap_or_default();
        if let Some(id) = owned_id(listed.tags.get(arn), env) {
            owned.push(Owned {
                kind: Kind::TargetGroup,
                id,
                cloud_id: arn.to_string(),
                attrs: Attrs::None,
                owner: found_owner(listed.tags.get(arn)),
            });
        }
    }
    Ok(owned)
}

/// The env's ELB resources: its load balancers and target groups (the API has no tag
/// filter: every one is listed and the env's kept by their tags), and the listeners of its
/// load balancers, with the tags of all.
#[derive(Clone, Default)]
struct Listed {
    load_balancers: Vec<LoadBalancer>,
    target_groups: Vec<TargetGroup>,
    listeners: Vec<aws_sdk_elasticloadbalancingv2::types::Listener>,
    tags: BTreeMap<String, Vec<(String, String)>>,
}

impl Listed {
    fn load_balancer(&self, arn: &str) -> Option<&LoadBalancer> {
        self.load_balancers
            .iter()
            .find(|l| l.load_balancer_arn() == Some(arn))
    }
    fn target_group(&self, arn: &str) -> Option<&TargetGroup> {
        self.target_groups
            .iter()
            .find(|t| t.target_group_arn() == Some(arn))
    }
    fn listener(&self, arn: &str) -> Option<&aws_sdk_elasticloadbalancingv2::types::Listener> {
        self.listeners
            .iter()
            .find(|l| l.listener_arn() == Some(arn))
    }
}

/// [`Listed`] once per survey of `env` (`None` when `plan` is not surveying it).
async fn surveyed(cloud: &AwsCloud, env: &str) -> Result<Option<Arc<Listed>>, CloudError> {
    match cloud.survey(env) {
        Some(survey) => survey
            .lists
            .get("elb", || async {
                Ok(Arc::new(list_env(cloud, env).await?))
            })
            .await
            .map(Some),
        None => Ok(None),
    }
}

async fn list_env(cloud: &AwsCloud, env: &str) -> Result<Listed, CloudError> {
    let all_load_balancers = async {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = cloud
                .elb
                .describe_load_balancers()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeLoadBalancers", e))?;
            all.extend(out.load_balancers().iter().cloned());
            match out.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok::<_, CloudError>(all)
    };
    let all_target_groups = async {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = cloud
                .elb
                .describe_target_groups()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTargetGroups", e))?;
            all.extend(out.target_groups().iter().cloned());
            match out.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok::<_, CloudError>(all)
    };
    let (all_lbs, all_tgs) = futures::try_join!(all_load_balancers, all_target_groups)?;
    // The tags of both kinds in one DescribeTags (20 ARNs a call).
    let arns: Vec<String> = all_lbs
        .iter()
        .filter_map(|l| l.load_balancer_arn())
        .chain(all_tgs.iter().filter_map(|t| t.target_group_arn()))
        .map(str::to_string)
        .collect();
    let tags = tags_of_many(cloud, &arns).await?;
    let (lb_tags, tg_tags) = (&tags, &tags);
    let ours = |tags: &BTreeMap<String, Vec<(String, String)>>, arn: Option<&str>| {
        arn.is_some_and(|a| {
            tags.get(a)
                .is_some_and(|t| t.iter().any(|(k, v)| k == TAG_ENV && v == env))
        })
    };
    let load_balancers: Vec<LoadBalancer> = all_lbs
        .into_iter()
        .filter(|l| ours(lb_tags, l.load_balancer_arn()))
        .collect();
    let target_groups: Vec<TargetGroup> = all_tgs
        .into_iter()
        .filter(|t| ours(tg_tags, t.target_group_arn()))
        .collect();
    let listener_lists = futures::future::try_join_all(load_balancers.iter().map(|lb| async {
        let out = cloud
            .elb
            .describe_listeners()
            .load_balancer_arn(lb.load_balancer_arn().unwrap_or_default())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeListeners", e))?;
        Ok::<_, CloudError>(out.listeners().to_vec())
    }))
    .await?;
    let listeners: Vec<_> = listener_lists.into_iter().flatten().collect();
    let listener_arns: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.listener_arn())
        .map(str::to_string)
        .collect();
    let mut tags = tags.clone();
    tags.extend(tags_of_many(cloud, &listener_arns).await?);
    Ok(Listed {
        load_balancers,
        target_groups,
        listeners,
        tags,
    })
}

// ---------------------------------------------------------------------------------------
// Tags and small helpers

fn elb_tags(ctx: &OpContext<'_>) -> Vec<Tag> {
    tags_for(ctx.env, ctx.owner, ctx.id)
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
    let answers = futures::future::try_join_all(arns.chunks(TAGS_BATCH).map(|chunk| async {
        cloud
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTags", e))
    }))
    .await?;
    for resp in answers {
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

/// The lineage and origin tags of a listed resource.
fn found_owner(tags: Option<&Vec<(String, String)>>) -> crate::model::FoundOwner {
    crate::model::FoundOwner::from_tags(
        tags.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
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
