//! The front door every topology shares: the NLB (its security group, target groups and
//! listeners on the topology's ports) and the Route53 records.

use super::ids::*;
use super::{all_to, tcp, Shared};
use crate::config::{Config, RecordType};
use crate::engine::Desired;
use crate::model::*;

/// The ports every load balancer forwards: 80 and 443, plus 6443 with `kube_api`.
pub(super) fn default_lb_ports(cfg: &Config) -> Vec<u16> {
    let mut ports = vec![80, 443];
    if cfg.load_balancer.as_ref().is_some_and(|lb| lb.kube_api) {
        ports.push(6443);
    }
    ports
}

/// `sg-lb`: admins and the VPC reach the forwarded ports.
pub(super) fn security_group(cfg: &Config, shared: &Shared, ports: &[u16], d: &mut Desired) {
    let mut ingress = Vec::new();
    for p in ports {
        for c in shared.admin.iter().chain(std::iter::once(&shared.vpc_cidr)) {
            ingress.push(tcp(
                *p,
                Peer::Cidr(c.clone()),
                "clients to the load balancer",
            ));
        }
    }
    d.insert(
        SG_LB,
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: shared.vpc.clone(),
            description: format!("{} load balancer", cfg.name),
            ingress,
            egress: vec![all_to(&shared.vpc_cidr, "load balancer to the nodes")],
        }),
    );
}

/// The NLB, one target group and one listener per port.
pub(super) fn load_balancer(
    cfg: &Config,
    shared: &Shared,
    ports: &[u16],
    nodes: &[LogicalId],
    d: &mut Desired,
) {
    let Some(lb) = &cfg.load_balancer else {
        return;
    };
    d.insert(
        NLB,
        Spec::LoadBalancer(LoadBalancerSpec {
            scheme: lb.scheme,
            subnets: match lb.scheme {
                Scheme::Internal => shared.private.clone(),
                Scheme::InternetFacing => shared.edge.clone(),
            },
            security_group: SG_LB.into(),
            cross_zone: true,
            after: match lb.scheme {
                Scheme::Internal => vec![],
                Scheme::InternetFacing => vec![IGW.into()],
            },
        }),
    );
    for port in ports {
        let tg = target_group(*port);
        d.insert(
            tg.as_str(),
            Spec::TargetGroup(TargetGroupSpec {
                name: crate::names::target_group(&cfg.name, *port),
                vpc: shared.vpc.clone(),
                port: *port,
                // Rancher's NLB guide: the 443 group is checked on port 80.
                health_check_port: (*port == 443).then_some(80),
                healthy_threshold: 3,
                unhealthy_threshold: 3,
                interval_seconds: 10,
                timeout_seconds: 6,
                // Off: nodes reach the LB themselves (kubeconfig, agents), and an NLB
                // with client-IP preservation drops a connection that lands on its
                // own source.
                preserve_client_ip: false,
                targets: nodes.to_vec(),
            }),
        );
        d.insert(
            listener(*port).as_str(),
            Spec::Listener(ListenerSpec {
                load_balancer: NLB.into(),
                port: *port,
                target_group: tg.into(),
            }),
        );
    }
}

/// The Rancher record (to the NLB, or to the first node without one), the registry's
/// record (node mode) and, with `dns.private_zone`, the zone itself.
pub(super) fn dns(
    cfg: &Config,
    shared: &Shared,
    registry_host: Option<&str>,
    nodes: &[LogicalId],
    d: &mut Desired,
) {
    let zone = if cfg.dns.private_zone {
        d.insert(
            ZONE,
            Spec::HostedZone(HostedZoneSpec {
                name: cfg.dns.zone.trim_end_matches('.').to_string(),
                vpc: shared.vpc.clone(),
            }),
        );
        ZoneRef::Managed(ZONE.into())
    } else {
        ZoneRef::Existing(cfg.dns.zone.clone())
    };
    let target = match (&cfg.load_balancer, cfg.dns.record_type) {
        (Some(_), RecordType::Alias) => RecordTarget::AliasLoadBalancer(NLB.into()),
        (Some(_), RecordType::Cname) => RecordTarget::CnameLoadBalancer(NLB.into()),
        (None, _) => RecordTarget::InstancePrivateIp(nodes[0].clone()),
    };
    d.insert(
        RECORD,
        Spec::DnsRecord(DnsRecordSpec {
            zone: zone.clone(),
            name: cfg.hostname.clone(),
            target,
            ttl: cfg.dns.ttl,
        }),
    );
    if let Some(host) = registry_host {
        d.insert(
            RECORD_REGISTRY,
            Spec::DnsRecord(DnsRecordSpec {
                zone,
                name: host.to_string(),
                target: RecordTarget::InstancePrivateIp(REGISTRY.into()),
                ttl: cfg.dns.ttl,
            }),
        );
    }
}
