//! RKE2: an odd number of servers running etcd (3 by default), the Canal CNI, and a load
//! balancer that also forwards the Kubernetes API (6443) and the supervisor (9345). Ports
//! follow the RKE2 requirements (`shared/reference/rancher-airgap-aws.md`, "RKE2").
//! Joining servers register with the first server's private IP, not through the NLB (an
//! NLB does not hairpin a node back to itself).

use super::{me, tcp, tcp_range, udp, udp_range, TopologyBlueprint};
use crate::config::Config;
use crate::model::*;

/// The supervisor port servers and agents register on.
pub(super) const SUPERVISOR: u16 = 9345;

pub(super) struct Rke2;

impl TopologyBlueprint for Rke2 {
    fn node_rules(&self, cfg: &Config) -> Vec<Rule> {
        let vpc = || Peer::Cidr(cfg.network.vpc_cidr.to_string());
        vec![
            tcp(443, me(), "rancher between nodes"),
            tcp(SUPERVISOR, me(), "rke2 supervisor (servers join)"),
            tcp(6443, me(), "kubernetes api"),
            tcp_range(2379, 2381, me(), "etcd client, peer and metrics"),
            tcp(10250, me(), "kubelet"),
            udp(8472, me(), "canal vxlan (nodes only)"),
            tcp(9099, me(), "canal health checks"),
            udp_range(51820, 51821, me(), "canal wireguard (nodes only)"),
            tcp_range(30000, 32767, vpc(), "nodeport range, inside the VPC"),
        ]
    }

    fn lb_ports(&self, cfg: &Config) -> Vec<u16> {
        let mut ports = super::front_door::default_lb_ports(cfg);
        if !ports.contains(&6443) {
            ports.push(6443);
        }
        ports.push(SUPERVISOR);
        ports
    }
}
