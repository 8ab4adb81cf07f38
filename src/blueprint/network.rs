//! The network every topology shares: the VPC, one private subnet per zone with no route
//! out, the edge subnet(s) with a route to the internet gateway.

use ipnet::Ipv4Net;

use super::ids::*;
use super::BlueprintError;
use crate::config::{Config, Registry};
use crate::engine::Desired;
use crate::model::*;

/// The subnets [`build`] made: (private, edge).
pub(super) fn build(
    cfg: &Config,
    d: &mut Desired,
) -> Result<(Vec<LogicalId>, Vec<LogicalId>), BlueprintError> {
    let vpc = LogicalId::new(VPC);
    d.insert(
        VPC,
        Spec::Vpc(VpcSpec {
            cidr: cfg.network.vpc_cidr.to_string(),
        }),
    );
    d.insert(
        IGW,
        Spec::InternetGateway(InternetGatewaySpec { vpc: vpc.clone() }),
    );
    // An internet-facing NLB only sends traffic to targets in zones where it has a subnet:
    // it gets an edge subnet in every zone that holds a node.
    let internet_facing = cfg
        .load_balancer
        .as_ref()
        .is_some_and(|lb| lb.scheme == Scheme::InternetFacing);
    let edge_count = if internet_facing {
        cfg.network.zones.min(cfg.nodes.count).max(1)
    } else {
        1
    };
    let (private_cidrs, edge_cidrs) =
        subnet_cidrs(cfg.network.vpc_cidr, cfg.network.zones, edge_count)?;
    // Every subnet's zone must offer the node type and the registry host's type, so that
    // private subnet N and edge subnet N share a zone whatever lands where.
    let mut zone_types = vec![cfg.nodes.instance_type.clone()];
    if let Registry::Node { instance_type, .. } = &cfg.registry {
        zone_types.push(instance_type.clone());
    }
    zone_types.sort();
    zone_types.dedup();
    let mut private = Vec::new();
    for (i, cidr) in private_cidrs.into_iter().enumerate() {
        let id = private_subnet(i as u32 + 1);
        d.insert(
            id.as_str(),
            Spec::Subnet(SubnetSpec {
                vpc: vpc.clone(),
                cidr,
                zone_index: i,
                map_public_ip: false,
                instance_types: zone_types.clone(),
            }),
        );
        private.push(LogicalId::new(id));
    }
    let mut edge = Vec::new();
    for (i, cidr) in edge_cidrs.into_iter().enumerate() {
        let id = edge_subnet(i as u32 + 1);
        d.insert(
            id.as_str(),
            Spec::Subnet(SubnetSpec {
                vpc: vpc.clone(),
                cidr,
                zone_index: i,
                map_public_ip: true,
                instance_types: zone_types.clone(),
            }),
        );
        edge.push(LogicalId::new(id));
    }
    d.insert(
        RT_PRIVATE,
        Spec::RouteTable(RouteTableSpec {
            vpc: vpc.clone(),
            subnets: private.clone(),
            internet_gateway: None,
        }),
    );
    d.insert(
        RT_EDGE,
        Spec::RouteTable(RouteTableSpec {
            vpc,
            subnets: edge.clone(),
            internet_gateway: Some(IGW.into()),
        }),
    );
    Ok((private, edge))
}

/// Subnet CIDRs: the VPC split in 16; private subnets take the first `zones` blocks, edge
/// subnets the last `edges` blocks, counting down (the first edge subnet is the last block).
pub(super) fn subnet_cidrs(
    vpc: Ipv4Net,
    zones: u32,
    edges: u32,
) -> Result<(Vec<String>, Vec<String>), BlueprintError> {
    let err = || BlueprintError::Cidr {
        cidr: vpc.to_string(),
        zones,
    };
    let subnets: Vec<Ipv4Net> = vpc
        .subnets((vpc.prefix_len() + 4).min(28))
        .map_err(|_| err())?
        .collect();
    if subnets.len() < (zones + edges) as usize {
        return Err(err());
    }
    let private = subnets
        .iter()
        .take(zones as usize)
        .map(|s| s.to_string())
        .collect();
    let edge = subnets
        .iter()
        .rev()
        .take(edges as usize)
        .map(|s| s.to_string())
        .collect();
    Ok((private, edge))
}
