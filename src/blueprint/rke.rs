//! RKE (RKE1): Docker nodes running etcd, the control plane and workers; the `rke` CLI
//! reaches them over SSH.

use super::{me, tcp, tcp_range, udp, TopologyBlueprint};
use crate::config::Config;
use crate::model::*;

pub(super) struct Rke;

impl TopologyBlueprint for Rke {
    fn node_rules(&self, _cfg: &Config) -> Vec<Rule> {
        vec![
            tcp(443, me(), "rancher between nodes"),
            tcp_range(2379, 2380, me(), "etcd"),
            tcp(6443, me(), "kubernetes api"),
            udp(8472, me(), "canal vxlan (nodes only)"),
            tcp(9099, me(), "canal probes"),
            tcp(10250, me(), "kubelet"),
            tcp(10254, me(), "ingress probes"),
            tcp(22, me(), "rke cli over ssh"),
        ]
    }
}
