//! Interface VPC endpoints (`[access] mode = "ssm"`): created in the private subnets with
//! their security group and private DNS in one call (tagged, with a ClientToken), then
//! waited for until `available`. Drift: a subnet or security group added or taken away,
//! private DNS turned off; `update` puts them back with `ModifyVpcEndpoint`. Deleting waits
//! until the endpoint (and with it its network interfaces) is gone, so the subnets and the
//! security group can go next.

use aws_sdk_ec2::types::{VpcEndpoint, VpcEndpointType};

use super::*;
use crate::model::VpcEndpointSpec;

pub(super) async fn describe_endpoints(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<VpcEndpoint>, CloudError> {
    let out: Vec<VpcEndpoint> = cloud
        .ec2
        .describe_vpc_endpoints()
        .set_vpc_endpoint_ids(lookup.ids())
        .set_filters(lookup.filters())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error("DescribeVpcEndpoints", e))?;
    Ok(out.into_iter().filter(endpoint_is_live).collect())
}

/// The endpoint's state in lower case. EC2 answers `available`, `pending`, `deleted`, ...
/// while the SDK's enum spells them `Available`, ...: compare the text, whatever its case.
pub(super) fn endpoint_state(e: &VpcEndpoint) -> String {
    e.state()
        .map(|s| s.as_str().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Neither deleted nor on its way there (EC2 lists deleted endpoints for a while).
pub(super) fn endpoint_is_live(e: &VpcEndpoint) -> bool {
    !matches!(
        endpoint_state(e).as_str(),
        "deleting" | "deleted" | "rejected" | "failed" | "expired"
    )
}

/// What the endpoint should be, in cloud ids.
pub(super) struct EndpointWants {
    pub subnets: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub private_dns: bool,
}

fn endpoint_subnets(e: &VpcEndpoint) -> BTreeSet<String> {
    e.subnet_ids().iter().cloned().collect()
}

fn endpoint_groups(e: &VpcEndpoint) -> BTreeSet<String> {
    e.groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

pub(super) fn endpoint_drift(
    want: &EndpointWants,
    e: &VpcEndpoint,
    name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut lines = Vec::new();
    let (have_subnets, have_groups) = (endpoint_subnets(e), endpoint_groups(e));
    for s in want.subnets.difference(&have_subnets) {
        lines.push(format!("not in subnet {}", name(s)));
    }
    for s in have_subnets.difference(&want.subnets) {
        lines.push(format!("in subnet {} outside the spec", name(s)));
    }
    for g in want.groups.difference(&have_groups) {
        lines.push(format!("security group {} is not attached", name(g)));
    }
    for g in have_groups.difference(&want.groups) {
        lines.push(format!(
            "security group {} is attached outside the spec",
            name(g)
        ));
    }
    let dns = e.private_dns_enabled().unwrap_or(false);
    if dns != want.private_dns {
        lines.push(format!(
            "private DNS is {}, spec says {}",
            on_off(dns),
            on_off(want.private_dns)
        ));
    }
    lines
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The spec in cloud ids; references not created yet are left out (not drift yet).
fn wants(ctx: &OpContext<'_>, s: &VpcEndpointSpec) -> EndpointWants {
    let ids = |refs: &[Ref]| -> BTreeSet<String> {
        refs.iter()
            .filter_map(|r| ctx.resolved.cloud_id(r).ok().map(str::to_string))
            .collect()
    };
    EndpointWants {
        subnets: ids(&s.subnets),
        groups: ids(&s.security_groups),
        private_dns: s.private_dns,
    }
}

pub(super) fn observe_endpoint(
    ctx: &OpContext<'_>,
    s: &VpcEndpointSpec,
    e: &VpcEndpoint,
) -> Observed {
    let mut o = Observed::new(e.vpc_endpoint_id().unwrap_or_default(), Attrs::None);
    o.drift = endpoint_drift(&wants(ctx, s), e, &|id| named(ctx, id));
    // Fixed when the endpoint is made.
    if e.service_name() != Some(s.service_name.as_str()) {
        o.fixed.push(format!(
            "service is {}, spec says {}",
            e.service_name().unwrap_or("unknown"),
            s.service_name
        ));
    }
    o
}

pub(super) async fn create_endpoint(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &VpcEndpointSpec,
) -> Result<Observed, CloudError> {
    let vpc = ctx.resolved.cloud_id(&s.vpc)?;
    let out = cloud
        .ec2
        .create_vpc_endpoint()
        .vpc_id(vpc)
        .vpc_endpoint_type(VpcEndpointType::Interface)
        .service_name(&s.service_name)
        .set_subnet_ids(Some(ctx.resolved.cloud_ids(&s.subnets)?))
        .set_security_group_ids(Some(ctx.resolved.cloud_ids(&s.security_groups)?))
        .private_dns_enabled(s.private_dns)
        .client_token(ctx.token)
        .tag_specifications(tag_spec(ResourceType::VpcEndpoint, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("CreateVpcEndpoint", e))?;
    let id = created_id(
        "CreateVpcEndpoint",
        out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()),
    )?;
    let endpoint = wait_endpoint(cloud, ctx, &id, |e| {
        e.is_some_and(|e| endpoint_state(e) == "available")
    })
    .await?
    .ok_or_else(|| vanished(Kind::VpcEndpoint, &id))?;
    Ok(observe_endpoint(ctx, s, &endpoint))
}

/// Poll the endpoint (`None`: gone) until `done` holds, reporting its state.
async fn wait_endpoint(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
    done: impl Fn(Option<&VpcEndpoint>) -> bool,
) -> Result<Option<VpcEndpoint>, CloudError> {
    let what = format!("vpc endpoint {id}");
    super::super::common::poll_until(cloud, ctx.progress, &what, cloud.waits.instance, || async {
        use super::super::common::Poll;
        // Listed with its state, deleted or not: the raw answer.
        let found = gone_is_none(
            cloud
                .ec2
                .describe_vpc_endpoints()
                .vpc_endpoint_ids(id)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeVpcEndpoints", e)),
        )?
        .and_then(|out| out.vpc_endpoints().first().cloned());
        let live = found.filter(endpoint_is_live);
        if done(live.as_ref()) {
            return Ok(Poll::Done(live));
        }
        Ok(Poll::Pending(
            live.as_ref().map_or("gone".to_string(), endpoint_state),
        ))
    })
    .await
}

pub(super) async fn update_endpoint(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    s: &VpcEndpointSpec,
    id: &str,
) -> Result<(), CloudError> {
    let e = describe_endpoints(cloud, &Lookup::Id(id.to_string()))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| vanished(Kind::VpcEndpoint, id))?;
    let want = EndpointWants {
        subnets: ctx.resolved.cloud_ids(&s.subnets)?.into_iter().collect(),
        groups: ctx
            .resolved
            .cloud_ids(&s.security_groups)?
            .into_iter()
            .collect(),
        private_dns: s.private_dns,
    };
    if endpoint_drift(&want, &e, &|id| id.to_string()).is_empty() {
        return Ok(());
    }
    let (have_subnets, have_groups) = (endpoint_subnets(&e), endpoint_groups(&e));
    let list = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> Option<Vec<String>> {
        let d: Vec<String> = a.difference(b).cloned().collect();
        (!d.is_empty()).then_some(d)
    };
    let dns = e.private_dns_enabled().unwrap_or(false);
    cloud
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(id)
        .set_add_subnet_ids(list(&want.subnets, &have_subnets))
        .set_remove_subnet_ids(list(&have_subnets, &want.subnets))
        .set_add_security_group_ids(list(&want.groups, &have_groups))
        .set_remove_security_group_ids(list(&have_groups, &want.groups))
        .set_private_dns_enabled((dns != s.private_dns).then_some(s.private_dns))
        .send()
        .await
        .map_err(|e| sdk_error("ModifyVpcEndpoint", e))?;
    Ok(())
}

pub(super) async fn delete_endpoint(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    id: &str,
) -> Result<(), CloudError> {
    let out = gone_is_none(
        cloud
            .ec2
            .delete_vpc_endpoints()
            .vpc_endpoint_ids(id)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteVpcEndpoints", e)),
    )?;
    // The call answers per endpoint; "not found" is success.
    if let Some(failure) = out
        .iter()
        .flat_map(|o| o.unsuccessful())
        .filter_map(|u| u.error())
        .find(|e| !e.code().unwrap_or_default().ends_with("NotFound"))
    {
        return Err(crate::cloud::classify(
            "DeleteVpcEndpoints",
            failure.code().unwrap_or("Unknown"),
            failure.message().unwrap_or_default(),
        ));
    }
    wait_endpoint(cloud, ctx, id, |e| e.is_none()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{SecurityGroupIdentifier, State};

    fn endpoint(subnets: &[&str], groups: &[&str], dns: bool, state: &str) -> VpcEndpoint {
        VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-1")
            .state(State::from(state))
            .private_dns_enabled(dns)
            .set_subnet_ids(Some(subnets.iter().map(|s| s.to_string()).collect()))
            .set_groups(Some(
                groups
                    .iter()
                    .map(|g| SecurityGroupIdentifier::builder().group_id(*g).build())
                    .collect(),
            ))
            .build()
    }

    fn want(subnets: &[&str], groups: &[&str]) -> EndpointWants {
        EndpointWants {
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            private_dns: true,
        }
    }

    fn ident(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn private_dns_off_and_a_missing_group_are_drift() {
        let w = want(&["subnet-a", "subnet-b"], &["sg-e"]);
        let good = endpoint(&["subnet-a", "subnet-b"], &["sg-e"], true, "available");
        assert!(endpoint_drift(&w, &good, &ident).is_empty());
        let bad = endpoint(&["subnet-a", "subnet-x"], &[], false, "available");
        assert_eq!(
            endpoint_drift(&w, &bad, &ident),
            vec![
                "not in subnet subnet-b",
                "in subnet subnet-x outside the spec",
                "security group sg-e is not attached",
                "private DNS is off, spec says on",
            ]
        );
    }

    #[test]
    fn deleted_endpoints_are_not_live_whatever_the_case_of_their_state() {
        // EC2 (and moto) answer in lower case; the SDK's enum is capitalised.
        for state in ["pending", "available", "Pending", "Available"] {
            assert!(
                endpoint_is_live(&endpoint(&[], &[], true, state)),
                "{state}"
            );
        }
        for state in ["deleted", "deleting", "Deleted", "failed", "rejected"] {
            assert!(
                !endpoint_is_live(&endpoint(&[], &[], true, state)),
                "{state}"
            );
        }
        let available = endpoint(&[], &[], true, "available");
        assert_eq!(endpoint_state(&available), "available");
        let capitalised = endpoint(&[], &[], true, "Available");
        assert_eq!(endpoint_state(&capitalised), "available");
    }
}
