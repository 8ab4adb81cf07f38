//! How operators reach the machines (`[access] mode`).
//!
//! `bastion` (the default) needs nothing here: the registry host doubles as the SSH
//! bastion (`registry.rs`), and the nodes admit port 22 from it.
//!
//! `ssm`: AWS Systems Manager Session Manager, with no SSH port open anywhere. The nodes
//! have no route out, so the agent on each machine reaches Systems Manager through
//! interface VPC endpoints for `ssm`, `ssmmessages` and `ec2messages` in the private
//! subnets, with private DNS on (the services' public names resolve to the endpoints
//! inside the VPC). Their security group admits 443 from the machines of the env only:
//! the nodes and the registry host (private DNS applies to the whole VPC, so the registry
//! host's agent uses the endpoints too). Every machine runs with an instance profile whose
//! role carries AWS's `AmazonSSMManagedInstanceCore` policy.

use super::ids::*;
use super::{tcp, Shared};
use crate::config::{AccessMode, Config, Registry};
use crate::engine::Desired;
use crate::model::*;

/// The AWS managed policy that lets the SSM agent register and open sessions.
pub const SSM_POLICY: &str = "AmazonSSMManagedInstanceCore";

/// The ARN partition of a region: `aws`, `aws-cn`, `aws-us-gov`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The ARN of an AWS managed policy in the region's partition.
pub fn managed_policy_arn(region: &str, policy: &str) -> String {
    format!("arn:{}:iam::aws:policy/{policy}", partition(region))
}

/// The instance profile every machine runs with, if any.
pub(super) fn instance_profile(cfg: &Config) -> Option<LogicalId> {
    (cfg.access == AccessMode::Ssm).then(|| LogicalId::new(SSM_PROFILE))
}

/// The resources of `[access] mode = "ssm"`: nothing in bastion mode.
pub(super) fn build(cfg: &Config, shared: &Shared, d: &mut Desired) {
    if cfg.access != AccessMode::Ssm {
        return;
    }
    let mut ingress = vec![tcp(
        443,
        Peer::Group(SG_NODES.into()),
        "nodes reach Systems Manager",
    )];
    if matches!(cfg.registry, Registry::Node { .. }) {
        ingress.push(tcp(
            443,
            Peer::Group(SG_BASTION.into()),
            "registry host reaches Systems Manager",
        ));
    }
    d.insert(
        SG_ENDPOINTS,
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: shared.vpc.clone(),
            description: format!(
                "{} Systems Manager endpoints: 443 from the env only",
                cfg.name
            ),
            ingress,
            egress: vec![],
        }),
    );
    for service in SSM_SERVICES {
        d.insert(
            endpoint(service).as_str(),
            Spec::VpcEndpoint(VpcEndpointSpec {
                vpc: shared.vpc.clone(),
                service_name: format!("com.amazonaws.{}.{service}", cfg.region),
                subnets: shared.private.clone(),
                security_groups: vec![SG_ENDPOINTS.into()],
                private_dns: true,
            }),
        );
    }
    let path = crate::names::iam_path(&cfg.name);
    d.insert(
        SSM_ROLE,
        Spec::IamRole(IamRoleSpec {
            name: crate::names::iam_role(&cfg.name, &cfg.region, SSM_ROLE),
            path: path.clone(),
            trusted_service: "ec2.amazonaws.com".into(),
            policies: vec![managed_policy_arn(&cfg.region, SSM_POLICY)],
            description: format!(
                "{} machines in {}: Systems Manager sessions (provision)",
                cfg.name, cfg.region
            ),
        }),
    );
    d.insert(
        SSM_PROFILE,
        Spec::InstanceProfile(InstanceProfileSpec {
            name: crate::names::instance_profile(&cfg.name, &cfg.region, SSM_PROFILE),
            path,
            role: SSM_ROLE.into(),
        }),
    );
}
