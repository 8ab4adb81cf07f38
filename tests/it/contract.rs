//! The contract every cloud keeps, resource kind by resource kind — create, find, read,
//! update, drift (repairable and fixed at creation), delete, adopt — run against the fake
//! cloud the engine's tests use **and** the AWS adapter on moto, side by side, on the same
//! resources (a k3s environment with SSM access, as the blueprint builds it, plus a key
//! pair and a private zone with a record in it: all 19 kinds). Each phase goes through the `Cloud` trait directly, one resource at a time, and
//! compares what the two sides report and how many mutating calls each made: the fake
//! counts its own calls, the AWS side is counted by the proxy (its own list of mutating
//! operations, not the tool's). So the fake cannot drift from the adapter: a create or
//! update that takes more calls on AWS than in the fake (crash points the engine's sweeps
//! would miss), a drift the adapter sees and the fake does not (or the other way), or a
//! change the one classes as repairable and the other as fixed fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use provision::cloud::aws::AwsCloud;
use provision::cloud::fake::{FakeCloud, FakeConfig};
use provision::cloud::{Cloud, DeleteOptions, NoProgress, OpContext, WaitSettings};
use provision::model::{Kind, LogicalId, Observed, Owner, Resolved, Spec};

use crate::harness::*;

/// One side of the contract.
struct Side<'a> {
    name: &'static str,
    cloud: &'a dyn Cloud,
    /// Mutating calls since the last `reset`.
    calls: Box<dyn Fn() -> Vec<String> + 'a>,
    reset: Box<dyn Fn() + 'a>,
}

/// What both sides did in one phase for one resource.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn compare(&mut self, phase: &str, id: &str, fake: &[String], aws: &[String]) {
        let line = format!(
            "{phase:<8} {id:<22} fake {:>2} aws {:>2}   aws: {}",
            fake.len(),
            aws.len(),
            aws.join(" ")
        );
        if fake.len() != aws.len() {
            self.failures.push(format!(
                "{phase} of `{id}`: the fake made {} mutating calls ({}), AWS {} ({})",
                fake.len(),
                fake.join(" "),
                aws.len(),
                aws.join(" ")
            ));
        }
        self.lines.push(line);
    }

    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.failures.push(what);
        }
    }

    fn finish(self) {
        eprintln!("{}", self.lines.join("\n"));
        assert!(
            self.failures.is_empty(),
            "the fake and the AWS adapter disagree:\n  {}",
            self.failures.join("\n  ")
        );
    }
}

/// The environment's resources in an order where every reference comes first.
fn in_order(desired: &BTreeMap<LogicalId, Spec>) -> Vec<LogicalId> {
    let mut done: Vec<LogicalId> = Vec::new();
    let mut left: BTreeSet<&LogicalId> = desired.keys().collect();
    while !left.is_empty() {
        let ready: Vec<&LogicalId> = left
            .iter()
            .copied()
            .filter(|id| {
                desired[*id]
                    .refs()
                    .iter()
                    .all(|(r, _)| !desired.contains_key(r) || done.contains(r))
            })
            .collect();
        assert!(!ready.is_empty(), "a reference cycle among {left:?}");
        for id in ready {
            left.remove(id);
            done.push(id.clone());
        }
    }
    done
}

/// The resources of a k3s environment with SSM access, as the blueprint builds them from
/// the fixture's config, plus a key pair (SSM access makes none) and a private hosted
/// zone with a record in it (the private-zone mode's kinds).
fn environment(world: &World) -> BTreeMap<LogicalId, Spec> {
    let cfg = provision::config::load(&world.path().join("provision.toml")).expect("config");
    let registry =
        provision::blueprint::registry_plan(&cfg, &world.secrets_dir()).expect("registry plan");
    let mut desired = provision::blueprint::build(&cfg, &registry)
        .expect("blueprint")
        .resources;
    desired.insert(
        LogicalId::new("contract-key"),
        Spec::KeyPair(provision::model::KeyPairSpec {
            public_key: ssh_public_key().trim().to_string(),
        }),
    );
    desired.insert(
        LogicalId::new("contract-zone"),
        Spec::HostedZone(provision::model::HostedZoneSpec {
            name: "contract.internal".into(),
            vpc: LogicalId::new("vpc"),
        }),
    );
    let node = desired
        .iter()
        .find(|(_, s)| matches!(s, Spec::Instance(_)))
        .map(|(id, _)| id.clone())
        .expect("a node");
    desired.insert(
        LogicalId::new("contract-record"),
        Spec::DnsRecord(provision::model::DnsRecordSpec {
            zone: provision::model::ZoneRef::Managed(LogicalId::new("contract-zone")),
            name: "node.contract.internal".into(),
            target: provision::model::RecordTarget::InstancePrivateIp(node),
            ttl: 60,
        }),
    );
    desired
}

fn aws_cloud(world: &World, rt: &tokio::runtime::Runtime) -> AwsCloud {
    let shared = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(world.proxy.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .load(),
    );
    let waits = WaitSettings {
        poll: Duration::from_millis(100),
        ..WaitSettings::default()
    };
    AwsCloud::from_sdk_config(&shared, "us-east-1", waits)
}

struct Contract<'a> {
    sides: [Side<'a>; 2],
    /// Per side: what each resource resolved to.
    resolved: [Resolved; 2],
    owner: Owner,
    rt: &'a tokio::runtime::Runtime,
    /// Side 0, to change by hand.
    fake: &'a FakeCloud,
}

impl<'a> Contract<'a> {
    fn ctx<'c>(
        &'c self,
        side: usize,
        id: &'c LogicalId,
        token: &'c str,
        owner: &'c Owner,
        delete: &'c DeleteOptions,
    ) -> OpContext<'c> {
        OpContext {
            env: ENV,
            owner,
            id,
            token,
            resolved: &self.resolved[side],
            progress: &NoProgress,
            delete,
        }
    }

    /// A create token of the length AWS takes everywhere (Secrets Manager: 32–64).
    fn token(id: &LogicalId) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.as_str().hash(&mut h);
        let a = h.finish();
        "again".hash(&mut h);
        format!("contract-{a:016x}{:016x}", h.finish())
    }

    /// Run `op` on both sides (fake first), each with its calls counted.
    fn both<T>(&self, mut op: impl FnMut(usize, &dyn Cloud) -> T) -> ([T; 2], [Vec<String>; 2]) {
        let mut out = Vec::new();
        let mut calls = Vec::new();
        for (i, side) in self.sides.iter().enumerate() {
            (side.reset)();
            out.push(op(i, side.cloud));
            calls.push((side.calls)());
        }
        let [a, b]: [T; 2] = out.try_into().ok().expect("two sides");
        let [c, d]: [Vec<String>; 2] = calls.try_into().expect("two sides");
        ([a, b], [c, d])
    }

    fn read(&self, side: usize, id: &LogicalId, spec: &Spec) -> Option<Observed> {
        let token = Self::token(id);
        let no = DeleteOptions::default();
        let ctx = self.ctx(side, id, &token, &self.owner, &no);
        let cloud_id = self.resolved[side].cloud_id(id).expect("made").to_string();
        self.rt
            .block_on(self.sides[side].cloud.read(&ctx, spec, &cloud_id))
            .unwrap_or_else(|e| panic!("{}: read `{id}`: {e}", self.sides[side].name))
    }

    fn update(&self, side: usize, id: &LogicalId, spec: &Spec) -> Result<Observed, String> {
        let token = Self::token(id);
        let no = DeleteOptions::default();
        let ctx = self.ctx(side, id, &token, &self.owner, &no);
        let current = self.resolved[side].get(id).expect("made").clone();
        self.rt
            .block_on(self.sides[side].cloud.update(&ctx, spec, &current))
            .map_err(|e| format!("{}: update `{id}`: {e}", self.sides[side].name))
    }

    /// Update `id` to `spec` on both sides: same number of calls, nothing left to repair.
    fn converge(&mut self, report: &mut Report, phase: &str, id: &LogicalId, spec: &Spec) {
        let (results, calls) = self.both(|side, _| self.update(side, id, spec));
        report.compare(phase, id.as_str(), &calls[0], &calls[1]);
        for (side, result) in results.into_iter().enumerate() {
            match result {
                Ok(o) => {
                    let keep = self.resolved[side].entries[id].clone();
                    let mut o = o;
                    if o.attrs == provision::model::Attrs::None {
                        o.attrs = keep.attrs;
                    }
                    o.drift.clear();
                    o.fixed.clear();
                    self.resolved[side].entries.insert(id.clone(), o);
                }
                Err(e) => report.failures.push(e),
            }
        }
        for side in 0..2 {
            let after = self.read(side, id, spec).expect("still there");
            report.check(
                after.drift.is_empty() && after.fixed.is_empty(),
                format!(
                    "{}: `{id}` after its {phase}: drift {:?}, fixed {:?}",
                    self.sides[side].name, after.drift, after.fixed
                ),
            );
        }
    }
}

fn with_contract(test: impl FnOnce(&mut Contract, &BTreeMap<LogicalId, Spec>, &World)) {
    let mut fixture = Fixture::new(Topology::K3s);
    fixture.access = Some("ssm");
    let world = World::new(&fixture);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = FakeCloud::new(FakeConfig {
        honor_tokens: true,
        ..Default::default()
    });
    let aws = aws_cloud(&world, &rt);
    let desired = environment(&world);
    let mut contract = Contract {
        sides: [
            Side {
                name: "fake",
                cloud: &fake,
                calls: Box::new(|| {
                    fake.mutating_calls()
                        .into_iter()
                        .map(|c| c.op.to_string())
                        .collect()
                }),
                reset: Box::new(|| fake.clear_calls()),
            },
            Side {
                name: "aws",
                cloud: &aws,
                calls: Box::new(|| world.proxy.stats().mutating_names()),
                reset: Box::new(|| world.proxy.reset()),
            },
        ],
        resolved: [Resolved::default(), Resolved::default()],
        owner: Owner {
            lineage: "contract-lineage".into(),
            origin: "contract 2026-12-05T00:00Z".into(),
        },
        rt: &rt,
        fake: &fake,
    };
    test(&mut contract, &desired, &world);
}

/// Create every resource on both sides, in order; then the security groups' rules that
/// name other groups (EC2 refuses a rule naming a group that does not exist yet).
fn create_all(c: &mut Contract, desired: &BTreeMap<LogicalId, Spec>, report: &mut Report) {
    let owner = c.owner.clone();
    create_all_as(c, desired, report, &owner);
}

/// [`create_all`] by a run of `owner` (no lineage: a run from before lineage tags).
fn create_all_as(
    c: &mut Contract,
    desired: &BTreeMap<LogicalId, Spec>,
    report: &mut Report,
    owner: &Owner,
) {
    let order = in_order(desired);
    for id in &order {
        let spec = &desired[id];
        let token = Contract::token(id);
        let (results, calls) = c.both(|side, cloud| {
            let no = DeleteOptions::default();
            let ctx = c.ctx(side, id, &token, owner, &no);
            c.rt.block_on(cloud.create(&ctx, spec))
        });
        report.compare("create", id.as_str(), &calls[0], &calls[1]);
        for (side, r) in results.into_iter().enumerate() {
            let o = r.unwrap_or_else(|e| panic!("{}: create `{id}`: {e}", c.sides[side].name));
            c.resolved[side].entries.insert(id.clone(), o);
        }
    }
    for id in &order {
        let spec = &desired[id];
        if matches!(spec, Spec::SecurityGroup(_)) {
            let (drift, _) = c.both(|side, _| c.read(side, id, spec).expect("made").drift);
            report.check(
                drift[0].is_empty() == drift[1].is_empty(),
                format!(
                    "`{id}` right after its create: the fake reports {:?}, AWS {:?}",
                    drift[0], drift[1]
                ),
            );
            if !drift[1].is_empty() {
                c.converge(report, "rules", id, spec);
            }
        }
    }
}

#[test]
fn contract_create_find_read_and_delete_of_every_kind() {
    with_contract(|c, desired, _world| {
        let mut report = Report::default();
        create_all(c, desired, &mut report);
        let kinds: BTreeSet<Kind> = desired.values().map(Spec::kind).collect();
        assert!(
            kinds.len() == 19,
            "the environment covers {} kinds: {kinds:?}",
            kinds.len()
        );
        let order = in_order(desired);
        // Read: nothing differs right after the create (and the rules).
        for id in &order {
            let spec = &desired[id];
            for side in 0..2 {
                let o = c.read(side, id, spec).expect("made");
                report.check(
                    o.drift.is_empty() && o.fixed.is_empty(),
                    format!(
                        "{}: `{id}` read after its create: drift {:?}, fixed {:?}",
                        c.sides[side].name, o.drift, o.fixed
                    ),
                );
            }
        }
        // Find: a run that lost its reply finds what it made, by token or tags.
        for id in &order {
            let spec = &desired[id];
            let token = Contract::token(id);
            let (found, calls) = c.both(|side, cloud| {
                let no = DeleteOptions::default();
                let ctx = c.ctx(side, id, &token, &c.owner, &no);
                c.rt.block_on(cloud.find(&ctx, spec))
            });
            report.check(
                calls[0].is_empty() && calls[1].is_empty(),
                format!("find `{id}` changed something: {calls:?}"),
            );
            for (side, f) in found.into_iter().enumerate() {
                let want = c.resolved[side].cloud_id(id).unwrap().to_string();
                match f {
                    Ok(Some(o)) => report.check(
                        o.cloud_id == want,
                        format!(
                            "{}: find `{id}` found {} instead of {want}",
                            c.sides[side].name, o.cloud_id
                        ),
                    ),
                    Ok(None) => report
                        .failures
                        .push(format!("{}: find `{id}` found nothing", c.sides[side].name)),
                    Err(e) => report
                        .failures
                        .push(format!("{}: find `{id}`: {e}", c.sides[side].name)),
                }
            }
        }
        // Fixed at creation: a spec that wants another CIDR, port, scheme or engine is
        // reported as what only a replacement changes, on both sides.
        for id in &order {
            let Some(other) = fixed_change(&desired[id]) else {
                continue;
            };
            for side in 0..2 {
                let o = c.read(side, id, &other).expect("made");
                report.check(
                    !o.fixed.is_empty(),
                    format!(
                        "{}: `{id}` read against a spec it cannot be changed to: fixed {:?}, \
                         drift {:?}",
                        c.sides[side].name, o.fixed, o.drift
                    ),
                );
            }
        }
        // Delete, dependents first: gone afterwards, and again is success.
        let deletes = DeleteOptions {
            skip_final_snapshot: true,
            keep_automated_backups: false,
        };
        for id in order.iter().rev() {
            let kind = desired[id].kind();
            let token = Contract::token(id);
            let (results, calls) = c.both(|side, cloud| {
                let ctx = c.ctx(side, id, &token, &c.owner, &deletes);
                let current = c.resolved[side].get(id).unwrap().clone();
                c.rt.block_on(async {
                    cloud.delete(&ctx, kind, &current).await?;
                    cloud.delete(&ctx, kind, &current).await
                })
            });
            report.compare("delete", id.as_str(), &calls[0], &calls[1]);
            for (side, r) in results.into_iter().enumerate() {
                if let Err(e) = r {
                    report
                        .failures
                        .push(format!("{}: delete `{id}`: {e}", c.sides[side].name));
                }
                let gone = c.read(side, id, &desired[id]);
                report.check(
                    gone.is_none(),
                    format!(
                        "{}: `{id}` is still there after its delete",
                        c.sides[side].name
                    ),
                );
            }
        }
        report.finish();
    });
}

/// `spec` with a field AWS fixes at creation changed, for the kinds where the adapter
/// reads that field back.
fn fixed_change(spec: &Spec) -> Option<Spec> {
    let mut s = spec.clone();
    match &mut s {
        Spec::Vpc(v) => v.cidr = "10.99.0.0/16".into(),
        Spec::Subnet(x) => x.cidr = "10.99.1.0/24".into(),
        Spec::TargetGroup(t) => t.port += 1,
        Spec::LoadBalancer(l) => {
            l.scheme = match l.scheme {
                provision::model::Scheme::Internal => provision::model::Scheme::InternetFacing,
                provision::model::Scheme::InternetFacing => provision::model::Scheme::Internal,
            }
        }
        Spec::Database(d) => {
            d.engine = match d.engine {
                provision::model::DbEngine::Mysql => provision::model::DbEngine::Postgres,
                provision::model::DbEngine::Postgres => provision::model::DbEngine::Mysql,
            }
        }
        Spec::VpcEndpoint(e) => e.service_name = "com.amazonaws.us-east-1.kms".into(),
        _ => return None,
    }
    Some(s)
}

/// A change of the config that AWS makes in place, per kind.
fn config_change(spec: &Spec) -> Option<Spec> {
    let mut s = spec.clone();
    match &mut s {
        Spec::SecurityGroup(g) => {
            let mut rule = g.ingress.first()?.clone();
            rule.from_port = 2222;
            rule.to_port = 2222;
            rule.description = "contract".into();
            g.ingress.push(rule);
        }
        Spec::Instance(i) => i.instance_type = "t3.xlarge".into(),
        Spec::Volume(v) => v.size_gb += 10,
        Spec::Secret(x) => x.description = format!("{} (changed)", x.description),
        Spec::IamRole(r) => r.description = format!("{} (changed)", r.description),
        Spec::TargetGroup(t) => t.healthy_threshold = if t.healthy_threshold == 3 { 4 } else { 3 },
        Spec::LoadBalancer(l) => l.cross_zone = !l.cross_zone,
        Spec::Database(d) => d.backup_retention_days += 1,
        Spec::DnsRecord(r) => r.ttl += 60,
        Spec::Listener(l) => l.port += 1,
        _ => return None,
    }
    Some(s)
}

#[test]
fn contract_updates_and_repairs_of_every_kind_take_the_same_calls() {
    with_contract(|c, desired, world| {
        let mut report = Report::default();
        create_all(c, desired, &mut report);
        let order = in_order(desired);
        // A config change AWS makes in place: the same calls on both sides, and then
        // nothing left to repair.
        let mut current = desired.clone();
        for id in &order {
            if let Some(changed) = config_change(&desired[id]) {
                c.converge(&mut report, "update", id, &changed);
                current.insert(id.clone(), changed);
            }
        }
        // Out-of-band changes an update repairs: seen as drift (not fixed) on both sides,
        // repaired with the same calls.
        for (id, spec) in &current {
            let Some(made) = tamper(c, world, id, spec) else {
                continue;
            };
            for side in 0..2 {
                let o = c.read(side, id, spec).expect("still there");
                report.check(
                    !o.drift.is_empty() && o.fixed.is_empty(),
                    format!(
                        "{}: `{id}` after {made}: drift {:?}, fixed {:?}",
                        c.sides[side].name, o.drift, o.fixed
                    ),
                );
            }
            c.converge(&mut report, "repair", id, spec);
        }
        report.finish();
    });
}

/// Change `id` behind the tool's back on both sides the same way (on moto with the SDK,
/// in the fake by hand); what was done, or `None` for kinds not tampered with.
fn tamper(c: &Contract, world: &World, id: &LogicalId, spec: &Spec) -> Option<String> {
    let aws_id = c.resolved[1].cloud_id(id).unwrap().to_string();
    let aws = &world.aws;
    let on_fake = |f: &dyn Fn(&mut provision::cloud::fake::Obj)| {
        c.fake.tamper(ENV, id.as_str(), |o| f(o));
    };
    match spec {
        Spec::Vpc(_) => {
            aws.block(
                aws.ec2
                    .modify_vpc_attribute()
                    .vpc_id(&aws_id)
                    .enable_dns_hostnames(
                        aws_sdk_ec2::types::AttributeBooleanValue::builder()
                            .value(false)
                            .build(),
                    )
                    .send(),
            )
            .expect("ModifyVpcAttribute");
            on_fake(&|o| o.missing = vec!["DNS hostnames"]);
            Some("DNS hostnames turned off".into())
        }
        Spec::Subnet(s) => {
            aws.block(
                aws.ec2
                    .modify_subnet_attribute()
                    .subnet_id(&aws_id)
                    .map_public_ip_on_launch(
                        aws_sdk_ec2::types::AttributeBooleanValue::builder()
                            .value(!s.map_public_ip)
                            .build(),
                    )
                    .send(),
            )
            .expect("ModifySubnetAttribute");
            on_fake(&|o| {
                if let Spec::Subnet(x) = &mut o.spec {
                    x.map_public_ip = !x.map_public_ip;
                }
            });
            Some("map public IP toggled".into())
        }
        Spec::LoadBalancer(l) => {
            aws.block(
                aws.elb
                    .modify_load_balancer_attributes()
                    .load_balancer_arn(&aws_id)
                    .attributes(
                        aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                            .key("load_balancing.cross_zone.enabled")
                            .value((!l.cross_zone).to_string())
                            .build(),
                    )
                    .send(),
            )
            .expect("ModifyLoadBalancerAttributes");
            on_fake(&|o| {
                if let Spec::LoadBalancer(x) = &mut o.spec {
                    x.cross_zone = !x.cross_zone;
                }
            });
            Some("cross-zone toggled".into())
        }
        Spec::Listener(l) => {
            aws.block(
                aws.elb
                    .modify_listener()
                    .listener_arn(&aws_id)
                    .port(i32::from(l.port) + 100)
                    .send(),
            )
            .expect("ModifyListener");
            on_fake(&|o| {
                if let Spec::Listener(x) = &mut o.spec {
                    x.port += 100;
                }
            });
            Some("port moved".into())
        }
        Spec::IamRole(_) => {
            aws.block(
                aws.iam
                    .update_role()
                    .role_name(&aws_id)
                    .description("changed by hand")
                    .send(),
            )
            .expect("UpdateRole");
            on_fake(&|o| {
                if let Spec::IamRole(x) = &mut o.spec {
                    x.description = "changed by hand".into();
                }
            });
            Some("description changed".into())
        }
        Spec::Database(d) => {
            aws.block(
                aws.rds
                    .modify_db_instance()
                    .db_instance_identifier(&aws_id)
                    .backup_retention_period(d.backup_retention_days as i32 + 3)
                    .apply_immediately(true)
                    .send(),
            )
            .expect("ModifyDBInstance");
            on_fake(&|o| {
                if let Spec::Database(x) = &mut o.spec {
                    x.backup_retention_days += 3;
                }
            });
            Some("backup retention changed".into())
        }
        Spec::SecurityGroup(g) if !g.ingress.is_empty() => {
            // Revoke the first rule AWS reports, exactly as reported; the same rule in
            // the fake.
            let group = aws
                .block(aws.ec2.describe_security_groups().group_ids(&aws_id).send())
                .expect("DescribeSecurityGroups");
            let perm = group.security_groups()[0].ip_permissions()[0].clone();
            let port = perm.from_port();
            aws.block(
                aws.ec2
                    .revoke_security_group_ingress()
                    .group_id(&aws_id)
                    .ip_permissions(perm)
                    .send(),
            )
            .expect("RevokeSecurityGroupIngress");
            on_fake(&|o| {
                if let Spec::SecurityGroup(x) = &mut o.spec {
                    x.ingress.retain(|r| {
                        Some(i32::from(r.from_port)) != port
                            || r.protocol == provision::model::Protocol::All
                    });
                }
            });
            Some(format!("ingress on port {port:?} revoked"))
        }
        Spec::TargetGroup(t) if !t.targets.is_empty() => {
            let target = c.resolved[1].cloud_id(&t.targets[0]).unwrap().to_string();
            aws.block(
                aws.elb
                    .deregister_targets()
                    .target_group_arn(&aws_id)
                    .targets(
                        aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                            .id(target)
                            .build(),
                    )
                    .send(),
            )
            .expect("DeregisterTargets");
            on_fake(&|o| {
                if let Spec::TargetGroup(x) = &mut o.spec {
                    x.targets.remove(0);
                }
            });
            Some("a target deregistered".into())
        }
        Spec::RouteTable(t) if !t.subnets.is_empty() => {
            let subnet = c.resolved[1].cloud_id(&t.subnets[0]).unwrap().to_string();
            let tables = aws
                .block(
                    aws.ec2
                        .describe_route_tables()
                        .route_table_ids(&aws_id)
                        .send(),
                )
                .expect("DescribeRouteTables");
            let association = tables.route_tables()[0]
                .associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet.as_str()))
                .and_then(|a| a.route_table_association_id())
                .expect("association")
                .to_string();
            aws.block(
                aws.ec2
                    .disassociate_route_table()
                    .association_id(association)
                    .send(),
            )
            .expect("DisassociateRouteTable");
            on_fake(&|o| {
                if let Spec::RouteTable(x) = &mut o.spec {
                    x.subnets.remove(0);
                }
            });
            Some("a subnet disassociated".into())
        }
        // A secret's value and description are not drift on either side: the operator
        // rotates the datastore password by hand, and the tool must not put it back.
        Spec::Instance(i) => {
            // Another type, the way EC2 allows it: stopped, modified, started.
            let other = if i.instance_type == "t3.small" {
                "t3.medium"
            } else {
                "t3.small"
            };
            aws.block(aws.ec2.stop_instances().instance_ids(&aws_id).send())
                .expect("StopInstances");
            aws.block(
                aws.ec2
                    .modify_instance_attribute()
                    .instance_id(&aws_id)
                    .instance_type(
                        aws_sdk_ec2::types::AttributeValue::builder()
                            .value(other)
                            .build(),
                    )
                    .send(),
            )
            .expect("ModifyInstanceAttribute");
            aws.block(aws.ec2.start_instances().instance_ids(&aws_id).send())
                .expect("StartInstances");
            on_fake(&|o| {
                if let Spec::Instance(x) = &mut o.spec {
                    x.instance_type = other.into();
                }
            });
            Some(format!("type changed to {other}"))
        }
        Spec::DnsRecord(r) if matches!(r.zone, provision::model::ZoneRef::Managed(_)) => {
            let zone = c.resolved[1]
                .cloud_id(&LogicalId::new("contract-zone"))
                .unwrap()
                .to_string();
            let mut record = aws
                .records_named(&zone, &r.name)
                .into_iter()
                .find(|x| x.r#type() == &aws_sdk_route53::types::RrType::A)
                .expect("the A record");
            record.ttl = Some(i64::from(r.ttl) + 600);
            aws.change_record(&zone, aws_sdk_route53::types::ChangeAction::Upsert, record);
            on_fake(&|o| {
                if let Spec::DnsRecord(x) = &mut o.spec {
                    x.ttl += 600;
                }
            });
            Some("TTL changed".into())
        }
        _ => None,
    }
}

#[test]
fn contract_adopt_lists_every_kind_by_tags_and_claims_what_has_no_lineage() {
    with_contract(|c, desired, _world| {
        let mut report = Report::default();
        // Made by a run from before lineage tags existed (no lineage): listed by its env
        // tags without one, then claimed (tagged, or a record's marker rewritten) and listed
        // with this state's lineage, on both sides, with the same calls.
        let legacy = Owner::default();
        create_all_as(c, desired, &mut report, &legacy);
        let order = in_order(desired);
        let lineages = |c: &Contract, side: usize| -> BTreeMap<String, Option<String>> {
            c.rt.block_on(c.sides[side].cloud.list_owned(ENV))
                .expect("list_owned")
                .into_iter()
                .map(|o| (o.id.to_string(), o.owner.lineage))
                .collect()
        };
        // What `list_owned` finds: everything the env tags reach. A DNS record in an
        // existing (public) zone is found only by `find`, from the config.
        let listable = |id: &LogicalId| match &desired[id] {
            Spec::DnsRecord(r) => matches!(r.zone, provision::model::ZoneRef::Managed(_)),
            _ => true,
        };
        for side in 0..2 {
            let listed = lineages(c, side);
            for id in order.iter().filter(|id| listable(id)) {
                report.check(
                    listed.get(id.as_str()) == Some(&None),
                    format!(
                        "{}: `{id}` made without lineage is listed as {:?}",
                        c.sides[side].name,
                        listed.get(id.as_str())
                    ),
                );
            }
        }
        for id in &order {
            let kind = desired[id].kind();
            let token = Contract::token(id);
            let (results, calls) = c.both(|side, cloud| {
                let no = DeleteOptions::default();
                let ctx = c.ctx(side, id, &token, &c.owner, &no);
                let current = c.resolved[side].get(id).unwrap().clone();
                c.rt.block_on(cloud.claim(&ctx, kind, &current))
            });
            report.compare("claim", id.as_str(), &calls[0], &calls[1]);
            for (side, r) in results.into_iter().enumerate() {
                if let Err(e) = r {
                    report
                        .failures
                        .push(format!("{}: claim `{id}`: {e}", c.sides[side].name));
                }
            }
        }
        for side in 0..2 {
            let listed = lineages(c, side);
            for id in order.iter().filter(|id| listable(id)) {
                report.check(
                    listed.get(id.as_str()) == Some(&Some(c.owner.lineage.clone())),
                    format!(
                        "{}: `{id}` after its claim is listed as {:?}",
                        c.sides[side].name,
                        listed.get(id.as_str())
                    ),
                );
            }
        }
        report.finish();
    });
}
