//! Docker: Rancher in a single container on one node; the load balancer is optional.

use super::TopologyBlueprint;
use crate::config::Config;
use crate::model::*;

pub(super) struct Docker;

impl TopologyBlueprint for Docker {
    fn node_rules(&self, _cfg: &Config) -> Vec<Rule> {
        vec![]
    }
}
