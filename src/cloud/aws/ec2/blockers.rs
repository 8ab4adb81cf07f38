//! What still holds a subnet or a security group when EC2 refuses to delete it.
//!
//! AWS's `DependencyViolation` names nothing ("The subnet 'subnet-1' has dependencies and
//! cannot be deleted.", "resource sg-1 has a dependent object"): the tool asks itself, with
//! one `DescribeNetworkInterfaces` and one `DescribeInstances`, and adds what it found to
//! the error, so that the message a user gets after the wait names the blocker.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;

use super::instance::describe_instances_by;
use super::{sdk_error, AwsCloud};
use crate::cloud::CloudError;

/// The resource a delete of which was refused.
#[derive(Debug, Clone, Copy)]
pub(super) enum Held<'a> {
    Subnet(&'a str),
    SecurityGroup(&'a str),
}

/// States in which an instance holds its subnet and groups.
const LIVE: &[&str] = &["pending", "running", "shutting-down", "stopping", "stopped"];

/// `err` with what holds `held` added to its message, when `err` is "in use" and the
/// lookup finds something; `err` unchanged otherwise (the lookup is best effort).
pub(super) async fn name_blockers(cloud: &AwsCloud, held: Held<'_>, err: CloudError) -> CloudError {
    let CloudError::InUse {
        operation,
        code,
        message,
    } = err
    else {
        return err;
    };
    let message = match blockers(cloud, held).await {
        Ok(found) if !found.is_empty() => format!("{message} (still there: {})", found.join(", ")),
        _ => message,
    };
    CloudError::InUse {
        operation,
        code,
        message,
    }
}

/// The interfaces (with what they belong to) and the live instances in the subnet or
/// group, as words.
async fn blockers(cloud: &AwsCloud, held: Held<'_>) -> Result<Vec<String>, CloudError> {
    let (eni_filter, instance_filter, id) = match held {
        Held::Subnet(id) => ("subnet-id", "subnet-id", id),
        Held::SecurityGroup(id) => ("group-id", "instance.group-id", id),
    };
    let filter = |name: &str, values: &[&str]| {
        Filter::builder()
            .name(name)
            .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
            .build()
    };
    let (interfaces, instances) = futures::try_join!(
        async {
            cloud
                .ec2
                .describe_network_interfaces()
                .filters(filter(eni_filter, &[id]))
                .send()
                .await
                .map_err(|e| sdk_error("DescribeNetworkInterfaces", e))
        },
        describe_instances_by(
            &cloud.ec2,
            None,
            Some(vec![
                filter(instance_filter, &[id]),
                filter("instance-state-name", LIVE),
            ]),
        ),
    )?;
    let live: BTreeSet<&str> = instances.iter().filter_map(|i| i.instance_id()).collect();
    let mut found = Vec::new();
    let mut named = BTreeSet::new();
    for eni in interfaces.network_interfaces() {
        let eni_id = eni.network_interface_id().unwrap_or("an interface");
        match eni.attachment().and_then(|a| a.instance_id()) {
            // AWS deletes a terminated instance's own interfaces with it.
            Some(instance) if !live.contains(instance) => continue,
            Some(instance) => {
                named.insert(instance);
                found.push(format!("interface {eni_id} of instance {instance}"));
            }
            None => {
                let what = eni
                    .description()
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .or_else(|| eni.interface_type().map(|t| t.as_str().to_string()));
                found.push(match what {
                    Some(what) => format!("interface {eni_id} ({what})"),
                    None => format!("interface {eni_id}"),
                });
            }
        }
    }
    for instance in &instances {
        let Some(instance_id) = instance.instance_id() else {
            continue;
        };
        if named.contains(instance_id) {
            continue;
        }
        let state = instance
            .state()
            .and_then(|s| s.name())
            .map_or("", |n| n.as_str());
        found.push(format!("instance {instance_id} ({state})"));
    }
    Ok(found)
}
