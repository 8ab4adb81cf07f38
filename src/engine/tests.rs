//! The engine end to end: planning and executing against the in-memory fake cloud, which
//! refuses to delete what is still in use (like AWS), can be slow, flaky, refuse a create,
//! or "crash" right after it accepted a mutating call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::executor::{execute, step_graph, Cancel, ExecError, Outcome, Settings, Step};
use super::plan::{make_plan, spec_changes, ActionKind, Desired, Plan, PlanError, PlanInput};
use super::reporter::{Recording, Reporter, StepKind};
use crate::cloud::fake::{FakeCloud, FakeConfig};
use crate::cloud::Cloud;
use crate::model::*;
use crate::state::{store, Paths, State, Status};

const ENV: &str = "lab";

// ---------------------------------------------------------------------------------------
// A realistic blueprint
// ---------------------------------------------------------------------------------------

fn rule(protocol: Protocol, from_port: u16, to_port: u16, peer: Peer, description: &str) -> Rule {
    Rule {
        protocol,
        from_port,
        to_port,
        peer,
        description: description.into(),
    }
}

fn security_group(description: &str, ingress: Vec<Rule>) -> Spec {
    Spec::SecurityGroup(SecurityGroupSpec {
        vpc: "vpc".into(),
        description: description.into(),
        ingress,
        egress: vec![rule(
            Protocol::All,
            0,
            0,
            Peer::Cidr("0.0.0.0/0".into()),
            "anywhere",
        )],
    })
}

fn node_ids(nodes: usize) -> Vec<LogicalId> {
    (1..=nodes)
        .map(|i| LogicalId::new(format!("node-{i}")))
        .collect()
}

fn target_group(port: u16, nodes: usize) -> Spec {
    Spec::TargetGroup(TargetGroupSpec {
        name: format!("{ENV}-tg-{port}"),
        vpc: "vpc".into(),
        port,
        health_check_port: None,
        preserve_client_ip: false,
        healthy_threshold: 3,
        unhealthy_threshold: 3,
        interval_seconds: 10,
        timeout_seconds: 6,
        targets: node_ids(nodes),
    })
}

fn instance(role: &str, subnet: &str, sg: &str, ami: &str) -> Spec {
    let user_data = format!("#cloud-config\n# {role}\n");
    Spec::Instance(InstanceSpec {
        role: role.into(),
        subnet: subnet.into(),
        security_groups: vec![sg.into()],
        ami: ami.into(),
        instance_type: "t3.xlarge".into(),
        root_volume_gb: 50,
        volumes: vec![],
        after: vec![],
        public_ip: role == "registry",
        key_pair: Some("key".into()),
        instance_profile: None,
        user_data_sha256: {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(user_data.as_bytes()))
        },
        user_data,
    })
}

/// The air-gapped Rancher layout with `nodes` server nodes.
fn blueprint(nodes: usize) -> Desired {
    let mut d = Desired::default();
    d.insert(
        "vpc",
        Spec::Vpc(VpcSpec {
            cidr: "10.42.0.0/16".into(),
        }),
    );
    d.insert(
        "igw",
        Spec::InternetGateway(InternetGatewaySpec { vpc: "vpc".into() }),
    );
    for (id, cidr, zone, public) in [
        ("subnet-edge", "10.42.0.0/24", 0, true),
        ("subnet-a", "10.42.1.0/24", 0, false),
        ("subnet-b", "10.42.2.0/24", 1, false),
    ] {
        d.insert(
            id,
            Spec::Subnet(SubnetSpec {
                vpc: "vpc".into(),
                cidr: cidr.into(),
                zone_index: zone,
                map_public_ip: public,
                instance_types: vec![],
            }),
        );
    }
    d.insert(
        "rt-edge",
        Spec::RouteTable(RouteTableSpec {
            vpc: "vpc".into(),
            subnets: vec!["subnet-edge".into()],
            internet_gateway: Some("igw".into()),
        }),
    );
    d.insert(
        "rt-private",
        Spec::RouteTable(RouteTableSpec {
            vpc: "vpc".into(),
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            internet_gateway: None,
        }),
    );
    d.insert(
        "key",
        Spec::KeyPair(KeyPairSpec {
            public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake lab".into(),
        }),
    );
    d.insert(
        "sg-lb",
        security_group(
            "load balancer",
            vec![
                rule(
                    Protocol::Tcp,
                    80,
                    80,
                    Peer::Cidr("10.0.0.0/8".into()),
                    "http",
                ),
                rule(
                    Protocol::Tcp,
                    443,
                    443,
                    Peer::Cidr("10.0.0.0/8".into()),
                    "https",
                ),
            ],
        ),
    );
    d.insert(
        "sg-nodes",
        security_group(
            "rancher nodes",
            vec![
                rule(
                    Protocol::Tcp,
                    80,
                    80,
                    Peer::Group("sg-lb".into()),
                    "http from the nlb",
                ),
                rule(
                    Protocol::Tcp,
                    443,
                    443,
                    Peer::Group("sg-lb".into()),
                    "https from the nlb",
                ),
                rule(Protocol::All, 0, 0, Peer::Itself, "cluster traffic"),
            ],
        ),
    );
    d.insert(
        "sg-registry",
        security_group(
            "registry",
            vec![
                rule(
                    Protocol::Tcp,
                    443,
                    443,
                    Peer::Group("sg-nodes".into()),
                    "pulls",
                ),
                rule(
                    Protocol::Tcp,
                    22,
                    22,
                    Peer::Cidr("198.51.100.0/24".into()),
                    "admin ssh",
                ),
            ],
        ),
    );
    d.insert(
        "sg-datastore",
        security_group(
            "datastore",
            vec![rule(
                Protocol::Tcp,
                3306,
                3306,
                Peer::Group("sg-nodes".into()),
                "mysql",
            )],
        ),
    );
    for (i, id) in node_ids(nodes).into_iter().enumerate() {
        let subnet = if i % 2 == 0 { "subnet-a" } else { "subnet-b" };
        d.insert(id, instance("server", subnet, "sg-nodes", "ami-0rancher"));
    }
    d.insert(
        "registry",
        instance("registry", "subnet-edge", "sg-registry", "ami-0rancher"),
    );
    d.insert(
        "db-subnets",
        Spec::DbSubnetGroup(DbSubnetGroupSpec {
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
        }),
    );
    d.insert(
        "datastore",
        Spec::Database(DatabaseSpec {
            subnet_group: "db-subnets".into(),
            security_group: "sg-datastore".into(),
            engine: crate::model::DbEngine::Mysql,
            engine_version: "8.0.39".into(),
            instance_class: "db.t3.medium".into(),
            storage_gb: 20,
            database: "k3s".into(),
            username: "k3s".into(),
            backup_retention_days: 7,
            password: None,
        }),
    );
    d.insert(
        "nlb",
        Spec::LoadBalancer(LoadBalancerSpec {
            scheme: Scheme::Internal,
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            security_group: "sg-lb".into(),
            cross_zone: true,
            after: vec![],
        }),
    );
    for port in [80, 443] {
        d.insert(format!("tg-{port}").as_str(), target_group(port, nodes));
        d.insert(
            format!("listener-{port}").as_str(),
            Spec::Listener(ListenerSpec {
                load_balancer: "nlb".into(),
                port,
                target_group: LogicalId::new(format!("tg-{port}")),
            }),
        );
    }
    // The private zone this environment creates, with a record for the registry.
    d.insert(
        "zone",
        Spec::HostedZone(HostedZoneSpec {
            name: "lab.internal".into(),
            vpc: "vpc".into(),
        }),
    );
    d.insert(
        "registry-dns",
        Spec::DnsRecord(DnsRecordSpec {
            zone: ZoneRef::Managed("zone".into()),
            name: "registry.lab.internal".into(),
            target: RecordTarget::InstancePrivateIp("registry".into()),
            ttl: 60,
        }),
    );
    d.insert(
        "dns",
        Spec::DnsRecord(DnsRecordSpec {
            zone: ZoneRef::Existing("example.internal".into()),
            name: "rancher.example.internal".into(),
            target: RecordTarget::AliasLoadBalancer("nlb".into()),
            ttl: 300,
        }),
    );
    d
}

fn id(s: &str) -> LogicalId {
    LogicalId::new(s)
}

fn step(s: &str, kind: StepKind) -> Step {
    Step { id: id(s), kind }
}

/// Every resource that (transitively) depends on `root` in `desired`.
fn dependents(desired: &Desired, root: &str) -> BTreeSet<LogicalId> {
    let mut out = BTreeSet::new();
    let mut todo = vec![id(root)];
    while let Some(n) = todo.pop() {
        for (other, spec) in &desired.resources {
            if spec.depends_on().contains(&n) && out.insert(other.clone()) {
                todo.push(other.clone());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A reporter with timestamps
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Start(Step),
    Done(Step, bool),
}

#[derive(Default)]
struct Timeline(Mutex<Vec<(Instant, Ev)>>);

impl Reporter for Timeline {
    fn step_started(&self, id: &LogicalId, step: StepKind, _kind: Kind) {
        let s = Step {
            id: id.clone(),
            kind: step,
        };
        self.0.lock().unwrap().push((Instant::now(), Ev::Start(s)));
    }
    fn step_status(&self, _id: &LogicalId, _status: &str, _elapsed: Duration) {}
    fn step_finished(
        &self,
        id: &LogicalId,
        step: StepKind,
        result: Result<&str, &str>,
        _elapsed: Duration,
    ) {
        let s = Step {
            id: id.clone(),
            kind: step,
        };
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), Ev::Done(s, result.is_ok())));
    }
    fn note(&self, _message: &str) {}
}

impl Timeline {
    fn events(&self) -> Vec<(Instant, Ev)> {
        self.0.lock().unwrap().clone()
    }

    fn pos(&self, ev: &Ev) -> usize {
        self.events()
            .iter()
            .position(|(_, e)| e == ev)
            .unwrap_or_else(|| panic!("no event {ev:?}"))
    }

    fn started(&self) -> Vec<Step> {
        self.events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                Ev::Start(s) => Some(s),
                Ev::Done(..) => None,
            })
            .collect()
    }

    /// `first` finished (successfully) before `then` started.
    fn assert_before(&self, first: &Step, then: &Step) {
        let done = self.pos(&Ev::Done(first.clone(), true));
        let start = self.pos(&Ev::Start(then.clone()));
        assert!(
            done < start,
            "`{first}` must finish before `{then}` starts: {:#?}",
            self.events()
        );
    }

    /// Every started step's `deps` (those that ran at all) finished before it started.
    fn assert_ordered(&self, deps: impl Fn(&Step) -> Vec<Step>) {
        let events = self.events();
        let ran: BTreeSet<Step> = self.started().into_iter().collect();
        for (i, (_, e)) in events.iter().enumerate() {
            let Ev::Start(s) = e else { continue };
            for d in deps(s).into_iter().filter(|d| ran.contains(d)) {
                let done = events
                    .iter()
                    .position(|(_, e)| e == &Ev::Done(d.clone(), true));
                assert!(
                    done.is_some_and(|p| p < i),
                    "`{s}` started before its dependency `{d}` finished"
                );
            }
        }
    }

    /// Most steps ever between their start and finish at once.
    fn max_concurrent(&self) -> usize {
        let (mut now, mut max) = (0usize, 0usize);
        for (_, e) in self.events() {
            match e {
                Ev::Start(_) => now += 1,
                Ev::Done(..) => now -= 1,
            }
            max = max.max(now);
        }
        max
    }

    fn interval(&self, s: &Step) -> (Instant, Instant) {
        let events = self.events();
        let at = |want: &Ev| {
            events
                .iter()
                .find(|(_, e)| e == want)
                .map(|(t, _)| *t)
                .expect("event")
        };
        (at(&Ev::Start(s.clone())), at(&Ev::Done(s.clone(), true)))
    }
}

// ---------------------------------------------------------------------------------------
// Harness: a fake cloud and a state folder
// ---------------------------------------------------------------------------------------

struct Lab {
    fake: FakeCloud,
    _dir: tempfile::TempDir,
    paths: Paths,
}

fn settings(parallelism: usize) -> Settings {
    Settings {
        parallelism,
        step_retries: 5,
        retry_base: Duration::from_millis(1),
        // Long enough for any machine; the fake releases after a count of refusals.
        in_use_wait: Duration::from_secs(60),
        in_use_poll: Duration::from_millis(1),
        ..Default::default()
    }
}

impl Lab {
    fn new(config: FakeConfig) -> Self {
        // State saves fsync; keep them in memory when possible so the suite stays fast.
        let dir = tempfile::Builder::new()
            .prefix("engine-tests")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("tempdir");
        let paths = Paths::new(dir.path(), ENV);
        Self {
            fake: FakeCloud::new(config),
            _dir: dir,
            paths,
        }
    }

    /// A second folder (its own state directory) in front of the same cloud.
    fn with_cloud(fake: FakeCloud) -> Self {
        let lab = Self::new(FakeConfig::default());
        Self { fake, ..lab }
    }

    fn cloud(&self) -> Arc<dyn Cloud> {
        Arc::new(self.fake.clone())
    }

    fn load(&self) -> State {
        store::load(&self.paths, ENV)
            .expect("state loads")
            .unwrap_or_else(|| State::new(ENV))
    }

    fn forget_state(&self) {
        std::fs::remove_file(&self.paths.state).expect("state file");
        let _ = std::fs::remove_file(&self.paths.backup);
    }

    async fn try_plan(&self, desired: &Desired, destroy: bool) -> Result<Plan, PlanError> {
        let state = self.load();
        make_plan(
            &self.fake,
            PlanInput {
                env: ENV,
                desired,
                state: &state,
                destroy,
                replace: &[],
            },
        )
        .await
    }

    async fn plan(&self, desired: &Desired, destroy: bool) -> Plan {
        self.try_plan(desired, destroy).await.expect("plan")
    }

    async fn run_with(
        &self,
        plan: &Plan,
        desired: &Desired,
        settings: &Settings,
        reporter: Arc<dyn Reporter>,
    ) -> Outcome {
        let mut state = self.load();
        execute(
            self.cloud(),
            plan,
            desired,
            &mut state,
            &crate::state::LocalBackend::new(self.paths.clone(), ENV),
            settings,
            reporter,
            &Cancel::new(),
        )
        .await
        .expect("execute")
    }

    async fn run(&self, plan: &Plan, desired: &Desired) -> Outcome {
        self.run_with(plan, desired, &settings(4), Arc::new(Recording::default()))
            .await
    }

    /// Plan and execute until a plan has no changes (at most a few rounds).
    async fn converge(&self, desired: &Desired, destroy: bool) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for _ in 0..6 {
            let plan = match self.try_plan(desired, destroy).await {
                Ok(p) => p,
                // Injected throttling outlasting the planner's retries: try again.
                Err(PlanError::Cloud { source, .. } | PlanError::List { source, .. })
                    if source.is_transient() =>
                {
                    continue
                }
                Err(e) => panic!("plan: {e}"),
            };
            if !plan.has_changes() {
                return outcomes;
            }
            outcomes.push(self.run(&plan, desired).await);
        }
        panic!("did not converge in 6 rounds: {outcomes:#?}");
    }

    /// Apply `desired` from scratch and check the result.
    async fn apply(&self, desired: &Desired) {
        let outcomes = self.converge(desired, false).await;
        assert!(outcomes.iter().all(Outcome::ok), "{outcomes:#?}");
        self.assert_converged(desired).await;
    }

    /// Each desired resource exists exactly once in the cloud, looks like its spec, points at
    /// the current cloud ids of what it refers to, and the state records exactly that; a
    /// further plan has no changes.
    async fn assert_converged(&self, desired: &Desired) {
        let state = self.load();
        let live: BTreeMap<LogicalId, (String, crate::cloud::fake::Obj)> = self
            .fake
            .live(ENV)
            .into_iter()
            .map(|(cid, o)| (o.id.clone(), (cid, o)))
            .collect();
        for rid in desired.resources.keys() {
            assert_eq!(
                self.fake.count(ENV, rid.as_str()),
                1,
                "`{rid}` must exist exactly once"
            );
        }
        let live_ids: BTreeSet<&LogicalId> = live.keys().collect();
        let want: BTreeSet<&LogicalId> = desired.resources.keys().collect();
        assert_eq!(
            live_ids, want,
            "the cloud holds exactly the desired resources"
        );
        let in_state: BTreeSet<&LogicalId> = state.resources.keys().collect();
        assert_eq!(
            in_state, want,
            "the state holds exactly the desired resources"
        );
        for (rid, spec) in &desired.resources {
            let entry = &state.resources[rid];
            let (cid, obj) = &live[rid];
            assert_eq!(entry.status, Status::Created, "{rid}");
            assert_eq!(&entry.cloud_id, cid, "state and cloud disagree on `{rid}`");
            let json = |s: &Spec| serde_json::to_value(s).unwrap();
            assert_eq!(
                json(&obj.spec),
                json(spec),
                "live `{rid}` differs from its spec"
            );
            assert_eq!(
                json(&entry.spec),
                json(spec),
                "state `{rid}` differs from its spec"
            );
            assert!(
                obj.tagged && obj.missing.is_empty(),
                "live `{rid}` was left half-made: tagged {}, missing {:?}",
                obj.tagged,
                obj.missing
            );
            // What the fake read from the fields (its own rules) is what the model names,
            // orderings aside: an edge missing from `refs()` shows here too.
            let uses: BTreeSet<&str> = obj.uses.iter().map(|(c, _)| c.as_str()).collect();
            let expected: BTreeSet<&str> = spec
                .refs()
                .iter()
                .filter(|(_, mode)| *mode != RefMode::After)
                .map(|(r, _)| state.resources[r].cloud_id.as_str())
                .collect();
            assert_eq!(
                uses, expected,
                "`{rid}` must point at the current cloud ids of its references"
            );
            let mut deps = entry.depends_on.clone();
            deps.sort();
            assert_eq!(deps, spec.depends_on(), "state dependencies of `{rid}`");
        }
        let again = self.plan(desired, false).await;
        assert!(
            !again.has_changes(),
            "a further plan must be clean: {:#?}",
            again.changes().collect::<Vec<_>>()
        );
    }

    async fn assert_destroyed(&self) {
        assert!(
            self.fake.live(ENV).is_empty(),
            "left in the cloud: {:?}",
            self.fake.live(ENV)
        );
        assert!(
            self.load().resources.is_empty(),
            "left in the state: {:?}",
            self.load().resources
        );
        let again = self.plan(&Desired::default(), true).await;
        assert!(!again.has_changes(), "{again:#?}");
    }
}

fn all_kinds(plan: &Plan) -> BTreeMap<LogicalId, ActionKind> {
    plan.actions
        .iter()
        .map(|a| (a.id.clone(), a.action))
        .collect()
}

fn changes(plan: &Plan) -> BTreeMap<String, ActionKind> {
    plan.changes()
        .map(|a| (a.id.to_string(), a.action))
        .collect()
}

fn mutating_ops(fake: &FakeCloud) -> Vec<(String, String)> {
    fake.mutating_calls()
        .into_iter()
        .map(|c| (c.op.to_string(), c.id))
        .collect()
}

fn cloud_id(lab: &Lab, rid: &str) -> String {
    lab.load().resources[&id(rid)].cloud_id.clone()
}

// ---------------------------------------------------------------------------------------
// 1. Ordering and concurrency
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_respects_dependencies_and_runs_independent_steps_concurrently() {
    let delay = Duration::from_millis(15);
    let lab = Lab::new(FakeConfig {
        delay,
        ..Default::default()
    });
    let desired = blueprint(3);
    let plan = lab.plan(&desired, false).await;
    assert_eq!(plan.count(ActionKind::Create), desired.resources.len());
    let parallelism = 3;
    let timeline = Arc::new(Timeline::default());
    let started = Instant::now();
    let steps = step_graph(&plan, &desired, &lab.load()).unwrap().len();
    let outcome = lab
        .run_with(&plan, &desired, &settings(parallelism), timeline.clone())
        .await;
    let elapsed = started.elapsed();
    assert!(outcome.ok(), "{outcome:#?}");
    // One step per resource, and one more per group whose rules name groups made too.
    assert_eq!(steps, desired.resources.len() + 3);
    assert_eq!(outcome.succeeded, steps);

    // Dependencies first, per the blueprint itself (not the executor's own graph): a
    // group's create needs its VPC only, its update (the rules naming other groups) the
    // rest.
    timeline.assert_ordered(|s| {
        let spec = &desired.resources[&s.id];
        let late = super::late::late_refs(spec);
        let mut deps: Vec<Step> = spec
            .depends_on()
            .into_iter()
            .filter(|d| s.kind == StepKind::Update || !late.contains(d))
            .map(|d| Step {
                id: d,
                kind: StepKind::Create,
            })
            .collect();
        if s.kind == StepKind::Update {
            deps.push(step(s.id.as_str(), StepKind::Create));
        }
        deps
    });
    // The cloud calls of independent steps overlapped, and never more than `parallelism`.
    let in_flight = lab.fake.max_in_flight();
    assert!(
        (2..=parallelism).contains(&in_flight),
        "max in flight {in_flight}"
    );
    assert!(
        timeline.max_concurrent() <= parallelism,
        "{}",
        timeline.max_concurrent()
    );
    let (a0, a1) = timeline.interval(&step("node-1", StepKind::Create));
    let (b0, b1) = timeline.interval(&step("node-2", StepKind::Create));
    assert!(a0 < b1 && b0 < a1, "two nodes are created at the same time");
    let serial = delay * desired.resources.len() as u32;
    assert!(
        elapsed < serial,
        "{elapsed:?} is not faster than one at a time ({serial:?})"
    );
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_of_one_runs_one_step_at_a_time() {
    let lab = Lab::new(FakeConfig {
        delay: Duration::from_millis(2),
        ..Default::default()
    });
    let desired = blueprint(2);
    let plan = lab.plan(&desired, false).await;
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &desired, &settings(1), timeline.clone())
        .await;
    assert!(outcome.ok());
    assert_eq!(timeline.max_concurrent(), 1);
    assert_eq!(lab.fake.max_in_flight(), 1);
}

/// Every step `s` transitively waits for in `graph`.
fn waits_for_all(graph: &super::graph::DependencyQueue<Step>, s: &Step) -> BTreeSet<Step> {
    let deps = graph.dependencies();
    let mut seen = BTreeSet::new();
    let mut todo = vec![s.clone()];
    while let Some(n) = todo.pop() {
        for d in deps.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[tokio::test]
async fn a_group_is_created_without_waiting_for_the_groups_its_rules_name() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    let plan = lab.plan(&desired, false).await;
    let graph = step_graph(&plan, &desired, &State::new(ENV)).expect("graph");
    let create = |s: &str| step(s, StepKind::Create);
    // The group needs its VPC only; its rules naming sg-lb come in an update after both.
    assert_eq!(
        waits_for_all(&graph, &create("sg-nodes")),
        BTreeSet::from([create("vpc")])
    );
    let rules = waits_for_all(&graph, &step("sg-nodes", StepKind::Update));
    assert!(
        rules.contains(&create("sg-nodes")) && rules.contains(&create("sg-lb")),
        "{rules:?}"
    );
    // The database (the longest step) waits for no group but its own, and that one for
    // nothing but the VPC: not for sg-nodes, which its rule names.
    let db = waits_for_all(&graph, &create("datastore"));
    assert!(db.contains(&create("sg-datastore")), "{db:?}");
    for other in ["sg-nodes", "sg-lb", "sg-registry"] {
        assert!(
            !db.iter().any(|s| s.id.as_str() == other),
            "{other}: {db:?}"
        );
    }
    // A group whose rules name only itself and addresses gets no update step.
    assert!(!graph
        .dependencies()
        .contains_key(&step("sg-lb", StepKind::Update)));

    // Applied, the groups end with every rule, and the state says so.
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    let state = lab.load();
    for sg in ["sg-nodes", "sg-registry", "sg-datastore"] {
        assert_eq!(
            state.resources[&id(sg)].spec,
            desired.resources[&id(sg)],
            "{sg}"
        );
        let live = lab.fake.live(ENV);
        let (_, obj) = live.iter().find(|(_, o)| o.id.as_str() == sg).unwrap();
        assert_eq!(obj.spec, desired.resources[&id(sg)], "{sg} in the cloud");
    }
    lab.assert_converged(&desired).await;
}

#[tokio::test]
async fn a_run_stopped_between_a_group_and_its_rules_adds_them_next_time() {
    // sg-nodes cannot be made this time; sg-datastore, whose rule names it, is made
    // without that rule, and the state says so: the next run adds it once sg-nodes exists
    // (the live group, read while sg-nodes does not exist, cannot show it missing).
    let lab = Lab::new(FakeConfig {
        fail_ids: vec!["sg-nodes".into()],
        ..Default::default()
    });
    let desired = blueprint(1);
    let plan = lab.plan(&desired, false).await;
    let outcome = lab
        .run_with(
            &plan,
            &desired,
            &settings(32),
            Arc::new(Recording::default()),
        )
        .await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:#?}");
    let state = lab.load();
    let Spec::SecurityGroup(applied) = &state.resources[&id("sg-datastore")].spec else {
        panic!("sg-datastore was created")
    };
    assert!(applied.ingress.is_empty(), "{applied:?}");
    lab.fake.set_config(|c| c.fail_ids.clear());
    let plan = lab.plan(&desired, false).await;
    assert_eq!(
        plan.get(&id("sg-datastore")).map(|a| a.action),
        Some(ActionKind::Update)
    );
    assert!(lab.run(&plan, &desired).await.ok());
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_that_wait_for_the_cloud_hold_no_worker() {
    // Two workers, seven instances that take a while to boot: they all boot at once, since
    // a booting instance only waits.
    let lab = Lab::new(FakeConfig {
        instance_boot: Duration::from_millis(300),
        ..Default::default()
    });
    let desired = blueprint(6);
    let plan = lab.plan(&desired, false).await;
    let outcome = lab
        .run_with(
            &plan,
            &desired,
            &settings(2),
            Arc::new(Recording::default()),
        )
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    assert_eq!(lab.fake.max_booting(), 7, "six nodes and the registry");
    // Calls were still made two at a time at most.
    assert!(lab.fake.max_in_flight() <= 2);
}

#[tokio::test]
async fn the_database_starts_before_the_nodes_when_workers_are_scarce() {
    // One worker: among ready steps the one heading the longest expected chain goes first,
    // so the database (minutes of RDS) is not left for after every node.
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(4);
    let plan = lab.plan(&desired, false).await;
    let rec = Arc::new(Recording::default());
    assert!(lab
        .run_with(&plan, &desired, &settings(1), rec.clone())
        .await
        .ok());
    let events = rec.0.lock().unwrap().clone();
    let at = |e: &str| events.iter().position(|x| x == e).expect(e);
    assert!(
        at("start create datastore") < at("start create node-1"),
        "{events:#?}"
    );
}

#[test]
fn step_graph_orders_replace_halves_and_orphans() {
    // A plan with a replace and an orphan delete, checked on the graph alone.
    let desired = blueprint(1);
    let mut state = State::new(ENV);
    for rid in ["vpc", "subnet-a"] {
        let spec = desired.resources[&id(rid)].clone();
        state.resources.insert(
            id(rid),
            crate::state::Entry {
                kind: spec.kind(),
                status: Status::Created,
                cloud_id: format!("c-{rid}"),
                token: "t".into(),
                token_spent: false,
                depends_on: spec.depends_on(),
                spec,
                attrs: Attrs::None,
                updated_at: String::new(),
            },
        );
    }
    let action = |rid: &str, kind: Kind, action: ActionKind, orphan: bool| super::plan::Action {
        id: id(rid),
        kind,
        action,
        reasons: vec![],
        current: Some(Observed::new(format!("c-{rid}"), Attrs::None)),
        update_after_adopt: false,
        orphan,
        data_loss: None,
        record_only: false,
        claim: false,
    };
    let plan = Plan {
        env: ENV.into(),
        destroy: false,
        lineage: None,
        serial: 0,
        desired_digest: String::new(),
        takeover: None,
        left_alone: Vec::new(),
        actions: vec![
            action("vpc", Kind::Vpc, ActionKind::NoOp, false),
            action("subnet-a", Kind::Subnet, ActionKind::Replace, false),
            action("old-instance", Kind::Instance, ActionKind::Delete, true),
        ],
    };
    let order = step_graph(&plan, &desired, &state).unwrap().order();
    let at = |s: Step| {
        order
            .iter()
            .position(|o| o == &s)
            .unwrap_or_else(|| panic!("{s} in {order:?}"))
    };
    assert!(at(step("subnet-a", StepKind::Delete)) < at(step("subnet-a", StepKind::Create)));
    assert!(
        at(step("old-instance", StepKind::Delete)) < at(step("subnet-a", StepKind::Delete)),
        "an orphan instance (rank 5) goes before a subnet (rank 2): {order:?}"
    );
    assert_eq!(order.len(), 3);
}

// ---------------------------------------------------------------------------------------
// 2. Idempotency
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_apply_changes_nothing() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    lab.fake.clear_calls();
    let plan = lab.plan(&desired, false).await;
    assert!(!plan.has_changes(), "{:#?}", changes(&plan));
    assert!(all_kinds(&plan).values().all(|k| *k == ActionKind::NoOp));
    let serial = lab.load().serial;
    let outcome = lab.run(&plan, &desired).await;
    assert!(
        outcome.ok() && outcome.mutated.is_empty() && outcome.succeeded == 0,
        "{outcome:#?}"
    );
    assert!(
        lab.fake.mutating_calls().is_empty(),
        "{:?}",
        lab.fake.mutating_calls()
    );
    assert_eq!(
        lab.load().serial,
        serial,
        "nothing to record, nothing saved"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Scaling
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_then_down_touches_only_the_node_and_target_groups() {
    let lab = Lab::new(FakeConfig::default());
    lab.apply(&blueprint(2)).await;
    let before: BTreeMap<LogicalId, String> = lab
        .load()
        .resources
        .iter()
        .map(|(k, e)| (k.clone(), e.cloud_id.clone()))
        .collect();

    // Up.
    let three = blueprint(3);
    let plan = lab.plan(&three, false).await;
    let expect: BTreeMap<String, ActionKind> = [
        ("node-3".to_string(), ActionKind::Create),
        ("tg-80".to_string(), ActionKind::Update),
        ("tg-443".to_string(), ActionKind::Update),
    ]
    .into();
    assert_eq!(changes(&plan), expect);
    assert!(plan
        .get(&id("tg-80"))
        .unwrap()
        .reasons
        .iter()
        .any(|r| r.contains("targets")));
    lab.fake.clear_calls();
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &three, &settings(4), timeline.clone())
        .await;
    assert!(outcome.ok());
    let mut ops = mutating_ops(&lab.fake);
    ops.sort();
    let mut want = vec![
        ("create".to_string(), "node-3".to_string()),
        ("register_targets".to_string(), before[&id("tg-80")].clone()),
        (
            "register_targets".to_string(),
            before[&id("tg-443")].clone(),
        ),
    ];
    want.sort();
    assert_eq!(
        ops, want,
        "only node-3 is created and the target groups updated"
    );
    timeline.assert_before(
        &step("node-3", StepKind::Create),
        &step("tg-80", StepKind::Update),
    );
    timeline.assert_before(
        &step("node-3", StepKind::Create),
        &step("tg-443", StepKind::Update),
    );
    lab.assert_converged(&three).await;
    for (rid, cid) in &before {
        assert_eq!(
            &cloud_id(&lab, rid.as_str()),
            cid,
            "`{rid}` kept its cloud id"
        );
    }

    // Down.
    let two = blueprint(2);
    let node3 = cloud_id(&lab, "node-3");
    let plan = lab.plan(&two, false).await;
    let expect: BTreeMap<String, ActionKind> = [
        ("node-3".to_string(), ActionKind::Delete),
        ("tg-80".to_string(), ActionKind::Update),
        ("tg-443".to_string(), ActionKind::Update),
    ]
    .into();
    assert_eq!(changes(&plan), expect);
    lab.fake.clear_calls();
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &two, &settings(4), timeline.clone())
        .await;
    assert!(outcome.ok());
    let mut ops = mutating_ops(&lab.fake);
    ops.sort();
    let mut want = vec![
        ("delete".to_string(), node3),
        (
            "deregister_targets".to_string(),
            before[&id("tg-80")].clone(),
        ),
        (
            "deregister_targets".to_string(),
            before[&id("tg-443")].clone(),
        ),
    ];
    want.sort();
    assert_eq!(ops, want);
    // The node is deregistered before it is terminated.
    timeline.assert_before(
        &step("tg-80", StepKind::Update),
        &step("node-3", StepKind::Delete),
    );
    timeline.assert_before(
        &step("tg-443", StepKind::Update),
        &step("node-3", StepKind::Delete),
    );
    lab.assert_converged(&two).await;
}

// ---------------------------------------------------------------------------------------
// 4. Replace
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_target_group_replaces_its_listener_in_order() {
    let lab = Lab::new(FakeConfig::default());
    lab.apply(&blueprint(2)).await;
    let old_tg = cloud_id(&lab, "tg-80");
    let old_listener = cloud_id(&lab, "listener-80");

    let mut desired = blueprint(2);
    let Spec::TargetGroup(tg) = desired.resources.get_mut(&id("tg-80")).unwrap() else {
        unreachable!()
    };
    tg.port = 8080;
    let plan = lab.plan(&desired, false).await;
    let expect: BTreeMap<String, ActionKind> = [
        ("tg-80".to_string(), ActionKind::Replace),
        ("listener-80".to_string(), ActionKind::Replace),
    ]
    .into();
    assert_eq!(changes(&plan), expect);
    let tg_reasons = &plan.get(&id("tg-80")).unwrap().reasons;
    assert!(
        tg_reasons
            .iter()
            .any(|r| r.contains("port: 80 → 8080") && r.contains("cannot change in place")),
        "{tg_reasons:?}"
    );
    let l_reasons = &plan.get(&id("listener-80")).unwrap().reasons;
    assert!(
        l_reasons.iter().any(|r| r.contains("`tg-80` is replaced")),
        "{l_reasons:?}"
    );

    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &desired, &settings(4), timeline.clone())
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    timeline.assert_before(
        &step("listener-80", StepKind::Delete),
        &step("tg-80", StepKind::Delete),
    );
    timeline.assert_before(
        &step("tg-80", StepKind::Delete),
        &step("tg-80", StepKind::Create),
    );
    timeline.assert_before(
        &step("tg-80", StepKind::Create),
        &step("listener-80", StepKind::Create),
    );
    assert_ne!(cloud_id(&lab, "tg-80"), old_tg);
    assert_ne!(cloud_id(&lab, "listener-80"), old_listener);
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_node_repoints_the_target_groups() {
    let lab = Lab::new(FakeConfig::default());
    lab.apply(&blueprint(2)).await;
    let mut desired = blueprint(2);
    let Spec::Instance(node) = desired.resources.get_mut(&id("node-1")).unwrap() else {
        unreachable!()
    };
    node.ami = "ami-0newer".into();
    let plan = lab.plan(&desired, false).await;
    let expect: BTreeMap<String, ActionKind> = [
        ("node-1".to_string(), ActionKind::Replace),
        ("tg-80".to_string(), ActionKind::Update),
        ("tg-443".to_string(), ActionKind::Update),
    ]
    .into();
    assert_eq!(changes(&plan), expect);
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_stopped_between_its_halves_is_finished_and_repointed() {
    // The old node is gone, then another step fails: the new node is never started. The
    // next run must create it and point the target groups at it.
    let lab = Lab::new(FakeConfig::default());
    lab.apply(&blueprint(2)).await;
    let mut desired = blueprint(2);
    let Spec::Instance(node) = desired.resources.get_mut(&id("node-1")).unwrap() else {
        unreachable!()
    };
    node.ami = "ami-0newer".into();
    desired.insert("sg-extra", security_group("extra", vec![]));
    lab.fake.set_config(|c| {
        c.delay = Duration::from_millis(20);
        c.fail_ids = vec!["sg-extra".into()];
    });
    let plan = lab.plan(&desired, false).await;
    assert_eq!(plan.get(&id("node-1")).unwrap().action, ActionKind::Replace);
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &desired, &settings(4), timeline.clone())
        .await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:#?}");
    timeline.pos(&Ev::Done(step("node-1", StepKind::Delete), true));
    assert!(!timeline
        .started()
        .contains(&step("node-1", StepKind::Create)));
    assert_eq!(lab.fake.count(ENV, "node-1"), 0);

    lab.fake.set_config(|c| {
        c.delay = Duration::ZERO;
        c.fail_ids.clear();
    });
    let plan = lab.plan(&desired, false).await;
    assert_eq!(plan.get(&id("node-1")).unwrap().action, ActionKind::Create);
    for tg in ["tg-80", "tg-443"] {
        let a = plan.get(&id(tg)).unwrap();
        assert_eq!(a.action, ActionKind::Update, "{a:?}");
    }
    lab.apply(&desired).await;
}

// ---------------------------------------------------------------------------------------
// 5. Destroy
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_deletes_everything_in_reverse_order() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    let state = lab.load();
    let plan = lab.plan(&desired, true).await;
    assert_eq!(plan.count(ActionKind::Delete), desired.resources.len());
    assert_eq!(plan.changes().count(), desired.resources.len());
    assert!(plan.actions.iter().all(|a| !a.orphan));

    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &Desired::default(), &settings(4), timeline.clone())
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    assert_eq!(outcome.succeeded, desired.resources.len());
    // A resource goes only after everything that depended on it.
    timeline.assert_ordered(|s| {
        state
            .resources
            .iter()
            .filter(|(_, e)| e.depends_on.contains(&s.id))
            .map(|(other, _)| Step {
                id: other.clone(),
                kind: StepKind::Delete,
            })
            .collect()
    });
    assert!(
        timeline.max_concurrent() > 1,
        "independent deletes run together"
    );
    lab.assert_destroyed().await;

    lab.fake.clear_calls();
    let plan = lab.plan(&desired, true).await;
    assert!(!plan.has_changes());
    let outcome = lab.run(&plan, &Desired::default()).await;
    assert!(outcome.ok() && outcome.succeeded == 0);
    assert!(lab.fake.mutating_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_waits_for_in_use_releases() {
    // AWS keeps refusing for a while after the user is gone (ENIs draining).
    let lab = Lab::new(FakeConfig {
        in_use_retries_needed: 2,
        ..Default::default()
    });
    let desired = blueprint(2);
    lab.apply(&desired).await;
    let outcomes = lab.converge(&Desired::default(), true).await;
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].ok(), "{outcomes:#?}");
    lab.assert_destroyed().await;
    // Every refusal reached the engine, which tried again.
    assert!(
        lab.fake.in_use_refusals() >= 2 * desired.resources.len(),
        "{}",
        lab.fake.in_use_refusals()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_use_wait_is_bounded_and_names_the_blocker() {
    let lab = Lab::new(FakeConfig::default());
    let mut desired = Desired::default();
    desired.insert(
        "vpc",
        Spec::Vpc(VpcSpec {
            cidr: "10.42.0.0/16".into(),
        }),
    );
    desired.insert("sg-lb", security_group("load balancer", vec![]));
    lab.apply(&desired).await;
    // Something outside this environment uses the group (an ENI someone attached).
    let sg = cloud_id(&lab, "sg-lb");
    lab.fake.inject(
        "elsewhere",
        "eni",
        Spec::Vpc(VpcSpec {
            cidr: "10.9.0.0/16".into(),
        }),
        vec![(sg.clone(), true)],
    );
    let plan = lab.plan(&desired, true).await;
    lab.fake.clear_calls();
    let s = Settings {
        in_use_wait: Duration::from_millis(30),
        ..settings(4)
    };
    let outcome = lab
        .run_with(
            &plan,
            &Desired::default(),
            &s,
            Arc::new(Recording::default()),
        )
        .await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:#?}");
    let (failed, msg) = &outcome.failed[0];
    assert_eq!(failed, &step("sg-lb", StepKind::Delete));
    assert!(msg.contains("timed out") && msg.contains(&sg), "{msg}");
    assert!(
        msg.contains("still used by eni"),
        "names the blocker: {msg}"
    );
    let tries = lab
        .fake
        .mutating_calls()
        .iter()
        .filter(|c| c.op == "delete" && c.id == sg)
        .count();
    assert!(tries >= 2, "tried again before giving up: {tries}");
    // The vpc was skipped, the group is still recorded.
    assert_eq!(lab.load().resources[&id("sg-lb")].cloud_id, sg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_resources_from_the_config_deletes_only_them() {
    let lab = Lab::new(FakeConfig::default());
    let full = blueprint(2);
    lab.apply(&full).await;
    let mut smaller = full.clone();
    for rid in ["datastore", "db-subnets", "sg-datastore"] {
        smaller.resources.remove(&id(rid));
    }
    let plan = lab.plan(&smaller, false).await;
    let expect: BTreeMap<String, ActionKind> = [
        ("datastore".to_string(), ActionKind::Delete),
        ("db-subnets".to_string(), ActionKind::Delete),
        ("sg-datastore".to_string(), ActionKind::Delete),
    ]
    .into();
    assert_eq!(changes(&plan), expect);
    let outcome = lab.run(&plan, &smaller).await;
    assert!(outcome.ok(), "{outcome:#?}");
    lab.assert_converged(&smaller).await;
}

// ---------------------------------------------------------------------------------------
// 6. Crash recovery
// ---------------------------------------------------------------------------------------

/// Something done to the cloud behind the tool's back before the interrupted run.
type Prep = fn(&FakeCloud);

fn untouched(_: &FakeCloud) {}

/// One run killed right after the cloud accepted its `n`-th mutating call (`None`: not
/// killed). Starts from `before` applied (or nothing), heads for `target` (or destroy),
/// then a fresh process reloads the state from disk and converges. Returns whether the
/// crash happened, how many mutating calls the interrupted run made, and what both runs
/// together created and deleted.
async fn crash_at(
    n: Option<usize>,
    honor_tokens: bool,
    before: Option<&Desired>,
    prep: Prep,
    target: &Desired,
    destroy: bool,
) -> (bool, usize, Vec<(String, String)>) {
    let lab = Lab::new(FakeConfig {
        honor_tokens,
        ..Default::default()
    });
    if let Some(before) = before {
        lab.apply(before).await;
    }
    prep(&lab.fake);
    lab.fake.restart();
    lab.fake.set_config(|c| c.crash_after_mutations = n);
    lab.fake.clear_calls();
    let mut state = lab.load();
    let plan = make_plan(
        &lab.fake,
        PlanInput {
            env: ENV,
            desired: target,
            state: &state,
            destroy,
            replace: &[],
        },
    )
    .await
    .expect("plan");
    let cancel = Cancel::new();
    let settings = settings(4);
    let crashed = {
        let store = crate::state::LocalBackend::new(lab.paths.clone(), ENV);
        let run = execute(
            lab.cloud(),
            &plan,
            target,
            &mut state,
            &store,
            &settings,
            Arc::new(Recording::default()),
            &cancel,
        );
        tokio::select! {
            r = run => {
                assert!(r.expect("execute").ok());
                false
            }
            () = lab.fake.crashed() => true,
        }
    };
    drop(state); // what the dead process had in memory is gone
    let calls = lab.fake.mutating_calls().len();
    lab.fake.restart();
    let outcomes = lab.converge(target, destroy).await;
    assert!(
        outcomes.iter().all(Outcome::ok),
        "crash at {n:?}: {outcomes:#?}"
    );
    // One plan and apply finish the job: nothing half-made was taken for done.
    assert!(
        outcomes.len() <= 1,
        "crash at {n:?} (tokens {honor_tokens}): took {} runs to converge",
        outcomes.len()
    );
    if destroy {
        lab.assert_destroyed().await;
    } else {
        lab.assert_converged(target).await;
    }
    // Creates by logical id, deletes by cloud id; a recovery that re-does work the
    // interrupted run already did (deleting what it made and making it again) shows here.
    let mut work: Vec<(String, String)> = lab
        .fake
        .mutating_calls()
        .into_iter()
        .filter(|c| c.op == "create" || c.op == "delete")
        .map(|c| (c.op.to_string(), c.id))
        .collect();
    work.sort();
    (crashed, calls, work)
}

/// Crash after every possible mutating call of the scenario, once with create tokens
/// ignored (like moto) and once honoured (like AWS).
async fn crash_everywhere(before: Option<&Desired>, prep: Prep, target: &Desired, destroy: bool) {
    for honor in [false, true] {
        crash_everywhere_with(honor, before, prep, target, destroy).await;
    }
}

async fn crash_everywhere_with(
    honor: bool,
    before: Option<&Desired>,
    prep: Prep,
    target: &Desired,
    destroy: bool,
) {
    let (crashed, total, clean) = crash_at(None, honor, before, prep, target, destroy).await;
    assert!(!crashed && total > 0);
    let ops = |w: &[(String, String)]| w.iter().map(|(op, _)| op.clone()).collect::<Vec<_>>();
    for n in 1..=total {
        let (crashed, calls, work) = crash_at(Some(n), honor, before, prep, target, destroy).await;
        assert!(
            crashed,
            "crash point {n} of {total} was reached (tokens {honor})"
        );
        assert_eq!(
            calls, n,
            "no mutating call got through after the crash (tokens {honor})"
        );
        // Cloud ids differ between runs; the logical ids of creates do not.
        let creates = |w: &[(String, String)]| {
            w.iter()
                .filter(|(op, _)| op == "create")
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            creates(&work),
            creates(&clean),
            "crash at {n} (tokens {honor}): each resource created once"
        );
        assert_eq!(
            ops(&work),
            ops(&clean),
            "crash at {n} (tokens {honor}): nothing deleted twice or needlessly"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_apply_at_every_mutation_recovers_without_duplicates() {
    crash_everywhere(None, untouched, &blueprint(2), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_destroy_at_every_mutation_recovers() {
    crash_everywhere(Some(&blueprint(2)), untouched, &Desired::default(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_scale_down_at_every_mutation_recovers() {
    crash_everywhere(Some(&blueprint(3)), untouched, &blueprint(2), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_replace_at_every_mutation_recovers() {
    let mut desired = blueprint(2);
    let Spec::Instance(node) = desired.resources.get_mut(&id("node-1")).unwrap() else {
        unreachable!()
    };
    node.ami = "ami-0newer".into();
    crash_everywhere(Some(&blueprint(2)), untouched, &desired, false).await;
    let Spec::TargetGroup(tg) = desired.resources.get_mut(&id("tg-443")).unwrap() else {
        unreachable!()
    };
    tg.port = 8443;
    crash_everywhere(Some(&blueprint(2)), untouched, &desired, false).await;
}

/// Drift an update repairs in several calls: a rule opened and one revoked on the nodes'
/// group, cross-zone turned off and a target deregistered, the VPC's DNS attributes off.
fn drifted_in_many_calls(fake: &FakeCloud) {
    fake.tamper(ENV, "sg-nodes", |o| {
        let Spec::SecurityGroup(sg) = &mut o.spec else {
            unreachable!()
        };
        sg.ingress.remove(0);
        sg.ingress.push(rule(
            Protocol::Tcp,
            22,
            22,
            Peer::Cidr("0.0.0.0/0".into()),
            "someone opened ssh",
        ));
    });
    fake.tamper(ENV, "nlb", |o| {
        let Spec::LoadBalancer(lb) = &mut o.spec else {
            unreachable!()
        };
        lb.cross_zone = !lb.cross_zone;
    });
    fake.tamper(ENV, "tg-443", |o| {
        let Spec::TargetGroup(tg) = &mut o.spec else {
            unreachable!()
        };
        tg.targets.pop();
    });
    fake.tamper(ENV, "vpc", |o| o.missing = vec!["DNS support"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_updates_and_repairs_at_every_mutation_recovers() {
    // Repairs of drift and a type change of every node (stop, modify, start): updates of
    // several calls each, so crash points fall between the calls of one update.
    let mut desired = blueprint(2);
    for node in ["node-1", "node-2"] {
        let Spec::Instance(n) = desired.resources.get_mut(&id(node)).unwrap() else {
            unreachable!()
        };
        n.instance_type = "t3.2xlarge".into();
    }
    let lab = Lab::new(FakeConfig::default());
    lab.apply(&blueprint(2)).await;
    drifted_in_many_calls(&lab.fake);
    lab.fake.clear_calls();
    lab.apply(&desired).await;
    let calls = lab.fake.mutating_calls();
    let on = |cid: &str| calls.iter().filter(|c| c.id == cid).count();
    let live = lab.fake.live(ENV);
    let cid = |logical: &str| {
        live.iter()
            .find(|(_, o)| o.id.as_str() == logical)
            .map(|(c, _)| c.clone())
            .unwrap()
    };
    // How many calls each update took, as on AWS (the contract suite holds the adapter to
    // the same): the group's revoke and authorize, the node's stop, modify and start.
    assert_eq!(on(&cid("sg-nodes")), 2, "{calls:#?}");
    assert_eq!(on(&cid("node-1")), 3, "{calls:#?}");
    assert_eq!(on(&cid("vpc")), 2, "{calls:#?}");
    crash_everywhere(Some(&blueprint(2)), drifted_in_many_calls, &desired, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_band_change_only_a_replacement_undoes_is_planned_as_one() {
    // Someone re-made the target group's port by hand (AWS fixes a target group's port
    // and the database's engine at creation): an update cannot put them back.
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    lab.fake.tamper(ENV, "tg-443", |o| {
        let Spec::TargetGroup(tg) = &mut o.spec else {
            unreachable!()
        };
        tg.port = 8443;
    });
    let plan = lab.plan(&desired, false).await;
    let tg = plan.get(&id("tg-443")).unwrap();
    assert_eq!(tg.action, ActionKind::Replace, "{tg:?}");
    assert!(
        tg.reasons
            .iter()
            .any(|r| r.contains("port") && r.contains("only a replacement")),
        "{:?}",
        tg.reasons
    );
    assert!(tg.data_loss.is_none(), "a target group holds no data");
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    lab.assert_converged(&desired).await;

    // Where data lives, the same is data loss, and says so.
    lab.fake.tamper(ENV, "datastore", |o| {
        let Spec::Database(db) = &mut o.spec else {
            unreachable!()
        };
        db.engine = DbEngine::Postgres;
    });
    let plan = lab.plan(&desired, false).await;
    let db = plan.get(&id("datastore")).unwrap();
    assert_eq!(db.action, ActionKind::Replace, "{db:?}");
    assert!(db.data_loss.is_some(), "{db:?}");

    // A fresh state that finds it so replaces it too, never adopts it as it is.
    lab.forget_state();
    let plan = lab.plan(&desired, false).await;
    let db = plan.get(&id("datastore")).unwrap();
    assert_eq!(db.action, ActionKind::Replace, "{db:?}");
    assert!(db.current.is_some(), "{db:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_repairing_a_deleted_node_recovers() {
    // node-1 terminated by hand and the load balancer deleted by hand: both re-created,
    // and what points at them (target groups, listeners, the record) must follow.
    fn prep(fake: &FakeCloud) {
        fake.remove(ENV, "node-1");
        fake.remove(ENV, "nlb");
    }
    crash_everywhere(Some(&blueprint(2)), prep, &blueprint(2), false).await;
}

fn vpc_spec() -> Spec {
    Spec::Vpc(VpcSpec {
        cidr: "10.42.0.0/16".into(),
    })
}

/// Run `plan` until the fake crashes; the process is gone, the state on disk is what it saved.
async fn run_until_crash(lab: &Lab, plan: &Plan, desired: &Desired) {
    let mut state = lab.load();
    let (s, cancel) = (settings(1), Cancel::new());
    let store = crate::state::LocalBackend::new(lab.paths.clone(), ENV);
    let run = execute(
        lab.cloud(),
        plan,
        desired,
        &mut state,
        &store,
        &s,
        Arc::new(Recording::default()),
        &cancel,
    );
    tokio::select! {
        r = run => panic!("the run was to crash: {r:?}"),
        () = lab.fake.crashed() => {}
    }
    lab.fake.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_stopped_after_its_first_call_is_finished_not_redone() {
    // A VPC is three calls (create, two DNS attributes); a hosted zone two (create, then
    // the tags: untagged in between). Crash right after the first call of each.
    let mut desired = Desired::default();
    desired.insert("vpc", vpc_spec());
    desired.insert(
        "zone",
        Spec::HostedZone(HostedZoneSpec {
            name: "lab.internal".into(),
            vpc: "vpc".into(),
        }),
    );
    for (crash_after, half_made, drift) in
        [(1, "vpc", "DNS support not set"), (4, "zone", "not tagged")]
    {
        let lab = Lab::new(FakeConfig::default());
        lab.fake
            .set_config(|c| c.crash_after_mutations = Some(crash_after));
        let plan = lab.plan(&desired, false).await;
        run_until_crash(&lab, &plan, &desired).await;
        assert_eq!(
            lab.load().resources[&id(half_made)].status,
            Status::Creating
        );
        let live = lab.fake.live(ENV);
        let (cid, obj) = live
            .iter()
            .find(|(_, o)| o.id.as_str() == half_made)
            .unwrap();
        assert!(!obj.missing.is_empty() || !obj.tagged, "{obj:?}");

        let plan = lab.plan(&desired, false).await;
        let a = plan.get(&id(half_made)).unwrap();
        assert_eq!(a.action, ActionKind::Adopt, "{a:?}");
        assert!(
            a.update_after_adopt,
            "a half-made resource is not done: {a:?}"
        );
        assert!(
            a.reasons.iter().any(|r| r.contains(drift)),
            "{half_made}: {:?}",
            a.reasons
        );
        lab.fake.clear_calls();
        let outcome = lab.run(&plan, &desired).await;
        assert!(outcome.ok(), "{outcome:#?}");
        assert!(
            !mutating_ops(&lab.fake).contains(&("create".to_string(), half_made.to_string())),
            "{half_made} not created again: {:?}",
            mutating_ops(&lab.fake)
        );
        assert!(
            mutating_ops(&lab.fake)
                .iter()
                .any(|(op, c)| c == cid && op != "create"),
            "{half_made} was completed by its update: {:?}",
            mutating_ops(&lab.fake)
        );
        lab.assert_converged(&desired).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_later_call_fails_transiently_is_finished_in_the_same_run() {
    let lab = Lab::new(FakeConfig {
        // The VPC's first DNS attribute call and a security group's ingress call.
        throttle_once: vec!["modify_attribute".into(), "authorize_ingress".into()],
        ..Default::default()
    });
    let desired = blueprint(1);
    let plan = lab.plan(&desired, false).await;
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    assert!(lab.fake.config.lock().unwrap().throttle_once.is_empty());
    // One run, no second round: the retry found the half-made resources and finished them.
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_create_reuses_its_token_when_describe_lags() {
    // The create went through, the process died before recording it, and describe calls
    // do not show the new instance yet. Only the write-ahead token keeps the next run from
    // making a second one.
    let lab = Lab::new(FakeConfig {
        honor_tokens: true,
        ..Default::default()
    });
    let desired = blueprint(2);
    lab.apply(&desired).await;
    let node = cloud_id(&lab, "node-2");
    let mut state = lab.load();
    let e = state.resources.get_mut(&id("node-2")).unwrap();
    e.status = Status::Creating;
    e.cloud_id.clear();
    e.attrs = Attrs::None;
    store::save(&lab.paths, &mut state).unwrap();
    lab.fake.hide(ENV, "node-2");

    let plan = lab.plan(&desired, false).await;
    assert_eq!(plan.get(&id("node-2")).unwrap().action, ActionKind::Create);
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    assert_eq!(lab.fake.count(ENV, "node-2"), 1, "no second instance");
    assert_eq!(cloud_id(&lab, "node-2"), node);
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_deleted_by_hand_is_recreated_with_a_fresh_token() {
    // EC2 keeps a client token bound to its instance after that instance is terminated:
    // re-creating with the old token would get the dead one back.
    let lab = Lab::new(FakeConfig {
        honor_tokens: true,
        ..Default::default()
    });
    let desired = blueprint(2);
    lab.apply(&desired).await;
    let old = lab.load().resources[&id("node-1")].token.clone();
    lab.fake.remove(ENV, "node-1");
    lab.apply(&desired).await;
    assert_ne!(lab.load().resources[&id("node-1")].token, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_died_while_starting_is_recreated_with_a_fresh_token() {
    // RunInstances went through, the instance went to `terminated`: the step fails. The
    // intent keeps its token (the next plan still looks for what it made), but the next
    // create must not send it again: EC2 would return the dead instance.
    let lab = Lab::new(FakeConfig {
        honor_tokens: true,
        die_on_start: vec!["node-1".into()],
        ..Default::default()
    });
    let desired = blueprint(2);
    let plan = lab.plan(&desired, false).await;
    let outcome = lab.run(&plan, &desired).await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:#?}");
    assert_eq!(outcome.failed[0].0, step("node-1", StepKind::Create));
    let intent = lab.load().resources[&id("node-1")].clone();
    assert_eq!(intent.status, Status::Creating);
    assert!(intent.token_spent, "{intent:?}");
    lab.apply(&desired).await;
    let entry = lab.load().resources[&id("node-1")].clone();
    assert_ne!(entry.token, intent.token);
    assert!(!entry.token_spent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_whose_tag_call_was_refused_is_adopted_not_duplicated() {
    // CreateHostedZone went through, ChangeTagsForResource was refused: an untagged zone
    // only its CallerReference (the intent's token, spent or not) can find.
    let lab = Lab::new(FakeConfig {
        refuse_once: vec!["change_tags_for_resource".into()],
        ..Default::default()
    });
    let mut desired = Desired::default();
    desired.insert("vpc", vpc_spec());
    desired.insert(
        "zone",
        Spec::HostedZone(HostedZoneSpec {
            name: "lab.internal".into(),
            vpc: "vpc".into(),
        }),
    );
    let plan = lab.plan(&desired, false).await;
    let outcome = lab.run(&plan, &desired).await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:#?}");
    assert!(outcome.failed[0].1.contains("AccessDenied"), "{outcome:#?}");
    assert!(lab.load().resources[&id("zone")].token_spent);
    let plan = lab.plan(&desired, false).await;
    let zone = plan.get(&id("zone")).unwrap();
    assert!(
        zone.action == ActionKind::Adopt && zone.update_after_adopt,
        "{zone:?}"
    );
    lab.apply(&desired).await;
    assert_eq!(lab.fake.count(ENV, "zone"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cut_off_by_a_timeout_keeps_its_token() {
    // No definite answer (throttled until the retries ran out): the create may have gone
    // through, so the next run sends the same token.
    let lab = Lab::new(FakeConfig {
        honor_tokens: true,
        throttle_once: vec!["create".into(); 6],
        ..Default::default()
    });
    let mut desired = Desired::default();
    desired.insert("vpc", vpc_spec());
    let plan = lab.plan(&desired, false).await;
    let outcome = lab.run(&plan, &desired).await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:#?}");
    let intent = lab.load().resources[&id("vpc")].clone();
    assert!(!intent.token_spent, "{intent:?}");
    lab.apply(&desired).await;
    assert_eq!(lab.load().resources[&id("vpc")].token, intent.token);
}

// ---------------------------------------------------------------------------------------
// Orphans

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_deletes_stray_resources_tagged_for_the_env() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    // Left by some earlier run that neither the state nor the config knows: a security
    // group and an instance in it.
    let (vpc, subnet) = (cloud_id(&lab, "vpc"), cloud_id(&lab, "subnet-a"));
    let sg = lab.fake.inject(
        ENV,
        "sg-old",
        security_group("old", vec![]),
        vec![(vpc, true)],
    );
    let node = lab.fake.inject(
        ENV,
        "node-9",
        instance("server", "subnet-a", "sg-old", "ami-0old"),
        vec![(subnet, true), (sg.clone(), true)],
    );
    // Made by this state's lineage (an interrupted run of this very environment).
    let lineage = lab.load().lineage;
    for stray in ["sg-old", "node-9"] {
        lab.fake.tamper(ENV, stray, |o| o.lineage = lineage.clone());
    }
    let plan = lab.plan(&desired, false).await;
    let expect: BTreeMap<String, ActionKind> = [
        ("sg-old".to_string(), ActionKind::Delete),
        ("node-9".to_string(), ActionKind::Delete),
    ]
    .into();
    assert_eq!(changes(&plan), expect);
    assert!(plan.get(&id("node-9")).unwrap().orphan);
    // A leftover node may hold data since: deleting it is marked, so apply needs
    // --allow-data-loss; the group holds none.
    assert!(plan.get(&id("node-9")).unwrap().data_loss.is_some());
    assert!(plan.get(&id("sg-old")).unwrap().data_loss.is_none());
    lab.fake.clear_calls();
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    let mut ops = mutating_ops(&lab.fake);
    ops.sort();
    assert_eq!(
        ops,
        vec![("delete".to_string(), node), ("delete".to_string(), sg)]
    );
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_owned_finds_what_the_aws_adapter_finds() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(1);
    lab.apply(&desired).await;
    async fn listed(lab: &Lab) -> BTreeSet<String> {
        lab.fake
            .list_owned(ENV)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id.to_string())
            .collect()
    }
    let all = listed(&lab).await;
    // Records cannot be tagged: the one in the private zone of the env is found through
    // its zone, the one in the existing (public) zone only by `find`.
    assert!(all.contains("registry-dns"), "{all:?}");
    assert!(!all.contains("dns"), "{all:?}");
    let want: BTreeSet<String> = desired
        .resources
        .keys()
        .map(|k| k.to_string())
        .filter(|k| k != "dns")
        .collect();
    assert_eq!(all, want);
    // Untagged zone (its tag call never happened): neither it nor its records.
    lab.fake.tamper(ENV, "zone", |o| o.tagged = false);
    let now = listed(&lab).await;
    assert!(
        !now.contains("zone") && !now.contains("registry-dns"),
        "{now:?}"
    );
    lab.fake.tamper(ENV, "zone", |o| o.tagged = true);
    // Listeners are listed under the env's load balancer only.
    lab.fake.tamper(ENV, "nlb", |o| o.env = "other".into());
    let now = listed(&lab).await;
    assert!(
        !now.contains("nlb") && !now.contains("listener-80"),
        "{now:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Lost state
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_state_adopts_everything_and_creates_nothing() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    lab.forget_state();
    let plan = lab.plan(&desired, false).await;
    assert_eq!(
        plan.count(ActionKind::Adopt),
        desired.resources.len(),
        "{:#?}",
        changes(&plan)
    );
    assert_eq!(plan.count(ActionKind::Create), 0);
    assert!(plan.actions.iter().all(|a| a
        .reasons
        .iter()
        .any(|r| r.contains("found in the cloud by its tags"))));
    lab.fake.clear_calls();
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok() && outcome.mutated.is_empty(), "{outcome:#?}");
    assert!(
        lab.fake.mutating_calls().is_empty(),
        "{:?}",
        lab.fake.mutating_calls()
    );
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_state_with_drift_adopts_and_repairs() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    lab.forget_state();
    lab.fake.tamper(ENV, "nlb", |o| {
        let Spec::LoadBalancer(lb) = &mut o.spec else {
            unreachable!()
        };
        lb.cross_zone = false;
    });
    let plan = lab.plan(&desired, false).await;
    let nlb = plan.get(&id("nlb")).unwrap();
    assert_eq!(nlb.action, ActionKind::Adopt);
    assert!(
        nlb.update_after_adopt && nlb.reasons.iter().any(|r| r.contains("drift: cross_zone")),
        "{nlb:?}"
    );
    lab.fake.clear_calls();
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    assert_eq!(
        outcome.mutated,
        BTreeSet::from([id("nlb")]),
        "only the drifted one made a call"
    );
    assert_eq!(
        mutating_ops(&lab.fake),
        vec![(
            "modify_load_balancer_attributes".to_string(),
            cloud_id(&lab, "nlb")
        )]
    );
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_without_state_deletes_what_the_tags_name_by_kind_rank() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    lab.forget_state();
    let plan = lab.plan(&desired, true).await;
    assert_eq!(plan.count(ActionKind::Delete), desired.resources.len());
    assert!(plan.actions.iter().all(|a| a.orphan));
    // Security groups refer to each other and share a rank: the engine waits out
    // "in use" until the other one is gone.
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &Desired::default(), &settings(4), timeline.clone())
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    let kinds: BTreeMap<LogicalId, Kind> = plan
        .actions
        .iter()
        .map(|a| (a.id.clone(), a.kind))
        .collect();
    timeline.assert_ordered(|s| {
        kinds
            .iter()
            .filter(|(_, k)| k.rank() > kinds[&s.id].rank())
            .map(|(other, _)| Step {
                id: other.clone(),
                kind: StepKind::Delete,
            })
            .collect()
    });
    lab.assert_destroyed().await;
}

// ---------------------------------------------------------------------------------------
// 8. Drift
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_found_and_repaired() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;

    lab.fake.remove(ENV, "node-1");
    lab.fake.tamper(ENV, "sg-nodes", |o| {
        let Spec::SecurityGroup(sg) = &mut o.spec else {
            unreachable!()
        };
        sg.ingress.push(rule(
            Protocol::Tcp,
            22,
            22,
            Peer::Cidr("0.0.0.0/0".into()),
            "someone opened ssh",
        ));
    });
    let plan = lab.plan(&desired, false).await;
    let node = plan.get(&id("node-1")).unwrap();
    assert_eq!(node.action, ActionKind::Create);
    assert!(
        node.reasons.iter().any(|r| r.contains("deleted outside")),
        "{:?}",
        node.reasons
    );
    let sg = plan.get(&id("sg-nodes")).unwrap();
    assert_eq!(sg.action, ActionKind::Update);
    assert!(
        sg.reasons
            .iter()
            .any(|r| r.starts_with("drift:") && r.contains("ingress")),
        "{:?}",
        sg.reasons
    );
    // The target groups point at the new node.
    assert_eq!(plan.get(&id("tg-80")).unwrap().action, ActionKind::Update);
    assert_eq!(changes(&plan).len(), 4, "{:#?}", changes(&plan));

    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    lab.assert_converged(&desired).await;
}

// ---------------------------------------------------------------------------------------
// 9. Throttling
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_still_converges_without_duplicates() {
    let lab = Lab::new(FakeConfig {
        transient_rate: 0.2,
        lost_reply_rate: 0.1,
        seed: 7,
        ..Default::default()
    });
    let desired = blueprint(2);
    lab.converge(&desired, false).await;
    let throttled = lab.fake.calls().len();
    // A create whose reply was lost is found again, not made twice (and cleaned up later).
    let deletes: Vec<_> = lab
        .fake
        .mutating_calls()
        .into_iter()
        .filter(|c| c.op == "delete")
        .collect();
    assert!(
        deletes.is_empty(),
        "an apply from scratch deletes nothing: {deletes:?}"
    );
    let calm = |c: &mut FakeConfig| {
        c.transient_rate = 0.0;
        c.lost_reply_rate = 0.0;
    };
    lab.fake.set_config(calm);
    lab.assert_converged(&desired).await;
    lab.fake.set_config(|c| {
        c.transient_rate = 0.2;
        c.lost_reply_rate = 0.1;
    });
    lab.converge(&desired, true).await;
    lab.fake.set_config(calm);
    lab.assert_destroyed().await;
    assert!(throttled > desired.resources.len() * 2, "{throttled} calls");
}

// ---------------------------------------------------------------------------------------
// 10. Failure policy
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_stops_new_steps_and_lets_running_ones_finish() {
    let lab = Lab::new(FakeConfig {
        delay: Duration::from_millis(20),
        fail_ids: vec!["sg-lb".into()],
        ..Default::default()
    });
    let desired = blueprint(2);
    let plan = lab.plan(&desired, false).await;
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &desired, &settings(8), timeline.clone())
        .await;

    assert!(!outcome.ok());
    assert_eq!(outcome.failed.len(), 1, "{outcome:#?}");
    assert_eq!(outcome.failed[0].0, step("sg-lb", StepKind::Create));
    assert!(
        outcome.failed[0].1.contains("refused (injected)"),
        "{}",
        outcome.failed[0].1
    );

    let events = timeline.events();
    let failed_at = timeline.pos(&Ev::Done(step("sg-lb", StepKind::Create), false));
    assert!(
        events[failed_at..]
            .iter()
            .all(|(_, e)| !matches!(e, Ev::Start(_))),
        "no step starts after the failure: {events:#?}"
    );
    let started = timeline.started();
    let running_at_failure: Vec<&Step> = started
        .iter()
        .filter(|s| {
            s.id.as_str() != "sg-lb" && timeline.pos(&Ev::Done((*s).clone(), true)) > failed_at
        })
        .collect();
    assert!(
        !running_at_failure.is_empty(),
        "some steps were running when sg-lb failed: {events:#?}"
    );
    // Every other started step finished and is recorded in the saved state.
    let state = lab.load();
    for s in started.iter().filter(|s| s.id.as_str() != "sg-lb") {
        timeline.pos(&Ev::Done(s.clone(), true));
        let e = &state.resources[&s.id];
        assert_eq!(e.status, Status::Created, "{s}");
        assert_eq!(lab.fake.count(ENV, s.id.as_str()), 1);
    }
    assert_eq!(outcome.succeeded, started.len() - 1);
    // What waits for the failed step was skipped, and nothing skipped ever started.
    let skipped: BTreeSet<LogicalId> = outcome.skipped.iter().map(|s| s.id.clone()).collect();
    let blocked = dependents(&desired, "sg-lb");
    assert!(blocked.len() > 5);
    assert!(blocked.is_subset(&skipped), "{blocked:?} ⊄ {skipped:?}");
    assert!(outcome.skipped.iter().all(|s| !started.contains(s)));
    assert_eq!(
        started.len() + outcome.skipped.len(),
        step_graph(&plan, &desired, &State::new(ENV)).unwrap().len()
    );

    // Once the cloud accepts it again, a re-run finishes the job.
    lab.fake.set_config(|c| {
        c.fail_ids.clear();
        c.delay = Duration::ZERO;
    });
    lab.apply(&desired).await;
}

// ---------------------------------------------------------------------------------------
// 11. Cancel
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_lets_running_steps_finish_and_starts_nothing_new() {
    let lab = Lab::new(FakeConfig {
        delay: Duration::from_millis(30),
        ..Default::default()
    });
    let desired = blueprint(2);
    let plan = lab.plan(&desired, false).await;
    let timeline = Arc::new(Timeline::default());
    let cancel = Cancel::new();
    let mut state = lab.load();
    let s = settings(3);
    let store = crate::state::LocalBackend::new(lab.paths.clone(), ENV);
    let run = execute(
        lab.cloud(),
        &plan,
        &desired,
        &mut state,
        &store,
        &s,
        timeline.clone(),
        &cancel,
    );
    let stop = async {
        tokio::time::sleep(Duration::from_millis(75)).await;
        let at = Instant::now();
        cancel.cancel();
        at
    };
    let (outcome, cancelled_at) = tokio::join!(run, stop);
    let outcome = outcome.expect("execute");
    assert!(outcome.interrupted && !outcome.ok());
    assert!(outcome.failed.is_empty());
    assert!(!outcome.skipped.is_empty());

    let events = timeline.events();
    assert!(
        events
            .iter()
            .all(|(t, e)| !matches!(e, Ev::Start(_)) || *t < cancelled_at),
        "{events:#?}"
    );
    let started = timeline.started();
    let in_flight = events
        .iter()
        .filter(|(t, e)| matches!(e, Ev::Done(..)) && *t > cancelled_at)
        .count();
    assert!(
        in_flight > 0,
        "steps were running when cancelled: {events:#?}"
    );
    let saved = lab.load();
    for s in &started {
        timeline.pos(&Ev::Done(s.clone(), true));
        assert_eq!(
            saved.resources[&s.id].status,
            Status::Created,
            "{s} recorded"
        );
    }
    let started_ids: BTreeSet<&LogicalId> = started.iter().map(|s| &s.id).collect();
    assert_eq!(saved.resources.len(), started_ids.len());
    assert_eq!(
        outcome.succeeded + outcome.skipped.len(),
        step_graph(&plan, &desired, &State::new(ENV)).unwrap().len()
    );

    lab.fake.set_config(|c| c.delay = Duration::ZERO);
    lab.apply(&desired).await;
}

// ---------------------------------------------------------------------------------------
// 12. Plans as files, and spec comparison
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_records_what_it_was_made_from() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    let first = lab.plan(&desired, false).await;
    assert_eq!(first.lineage, None, "no state yet");
    assert_eq!(first.desired_digest, desired.digest());
    // A saved plan reads back identically.
    let text = serde_json::to_string(&first).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&text).unwrap(), first);

    lab.apply(&desired).await;
    let state = lab.load();
    let plan = lab.plan(&desired, false).await;
    assert_eq!(plan.lineage.as_deref(), Some(state.lineage.as_str()));
    assert_eq!(plan.serial, state.serial);

    // The digest follows the config and nothing else.
    assert_eq!(blueprint(2).digest(), desired.digest());
    assert_ne!(blueprint(3).digest(), desired.digest());
    let mut changed = blueprint(2);
    let Spec::Instance(i) = changed.resources.get_mut(&id("registry")).unwrap() else {
        unreachable!()
    };
    i.user_data_sha256 = "0".repeat(64);
    assert_ne!(changed.digest(), desired.digest());
    let destroy = lab.plan(&desired, true).await;
    assert_eq!(destroy.desired_digest, Desired::default().digest());
    assert!(destroy.destroy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_does_not_fit_is_refused_before_any_change() {
    let lab = Lab::new(FakeConfig::default());
    let two = blueprint(2);
    lab.apply(&two).await;
    let three = blueprint(3);
    let plan = lab.plan(&three, false).await;
    let serial = lab.load().serial;
    type Edit = fn(&mut Plan);
    let cases: Vec<(&str, &Desired, Edit, &str)> = vec![
        // Made for three nodes, run with a config of two: a create with no spec.
        (
            "create with no spec",
            &two,
            |_| {},
            "`node-3` is neither in the config",
        ),
        (
            "update of what does not exist",
            &three,
            |p| {
                let a = p
                    .actions
                    .iter_mut()
                    .find(|a| a.id.as_str() == "node-3")
                    .unwrap();
                a.action = ActionKind::Update;
            },
            "`node-3`: update names no live resource",
        ),
        (
            "delete of what the config wants",
            &three,
            |p| {
                let a = p
                    .actions
                    .iter_mut()
                    .find(|a| a.id.as_str() == "vpc")
                    .unwrap();
                a.action = ActionKind::Delete;
            },
            "the config still asks for it",
        ),
        (
            "another environment",
            &three,
            |p| p.env = "prod".into(),
            "it is for env `prod`",
        ),
    ];
    for (case, desired, edit, want) in cases {
        let mut edited = plan.clone();
        edit(&mut edited);
        lab.fake.clear_calls();
        let mut state = lab.load();
        let store = crate::state::LocalBackend::new(lab.paths.clone(), ENV);
        let result = execute(
            lab.cloud(),
            &edited,
            desired,
            &mut state,
            &store,
            &settings(4),
            Arc::new(Recording::default()),
            &Cancel::new(),
        )
        .await;
        match result {
            Err(ExecError::InvalidPlan(e)) => assert!(e.to_string().contains(want), "{case}: {e}"),
            other => panic!("{case}: expected an invalid plan, got {other:?}"),
        }
        assert!(
            lab.fake.mutating_calls().is_empty(),
            "{case}: no cloud change"
        );
        assert_eq!(lab.load().serial, serial, "{case}: no state change");
    }
    let outcome = lab.run(&plan, &three).await;
    assert!(outcome.ok(), "{outcome:#?}");
    lab.assert_converged(&three).await;
}

#[test]
fn desired_order_puts_dependencies_first_and_rejects_cycles() {
    let desired = blueprint(3);
    let order = desired.order().unwrap();
    assert_eq!(order.len(), desired.resources.len());
    let at = |r: &LogicalId| order.iter().position(|o| o == r).unwrap();
    for (rid, spec) in &desired.resources {
        for dep in spec.depends_on() {
            assert!(at(&dep) < at(rid), "{dep} before {rid}");
        }
    }
    let mut cyclic = blueprint(1);
    let Spec::SecurityGroup(lb) = cyclic.resources.get_mut(&id("sg-lb")).unwrap() else {
        unreachable!()
    };
    lb.ingress.push(rule(
        Protocol::Tcp,
        9000,
        9000,
        Peer::Group("sg-nodes".into()),
        "back",
    ));
    match cyclic.order() {
        Err(PlanError::Cycle(c)) => assert!(c.to_string().contains("sg-lb"), "{c}"),
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn spec_changes_classifies_fields() {
    let d = blueprint(2);
    let tg = |port: u16, nodes: usize| target_group(port, nodes);
    let (r, u) = spec_changes(&tg(80, 2), &tg(80, 3));
    assert!(r.is_empty());
    assert_eq!(u, vec!["targets: 1 added, 0 removed".to_string()]);
    let mut moved = tg(80, 2);
    let Spec::TargetGroup(t) = &mut moved else {
        unreachable!()
    };
    t.port = 8080;
    t.health_check_port = Some(80);
    let (r, u) = spec_changes(&tg(80, 2), &moved);
    assert_eq!(
        r,
        vec!["port: 80 → 8080 (cannot change in place)".to_string()]
    );
    assert_eq!(u, vec!["health_check_port: none → 80".to_string()]);

    let (r, _) = spec_changes(&d.resources[&id("vpc")], &d.resources[&id("igw")]);
    assert!(
        r[0].contains("kind changes from vpc to internet gateway"),
        "{r:?}"
    );

    let node = d.resources[&id("node-1")].clone();
    let mut other = node.clone();
    let Spec::Instance(i) = &mut other else {
        unreachable!()
    };
    i.user_data_sha256 = "f".repeat(64);
    i.user_data = "different".into();
    let (r, _) = spec_changes(&node, &other);
    assert_eq!(
        r,
        vec!["user-data changed (user-data is read only at first boot)".to_string()]
    );
    // The user-data text itself never shows (nor counts: only its hash does).
    let mut same = node.clone();
    let Spec::Instance(i) = &mut same else {
        unreachable!()
    };
    i.user_data = "secret text".into();
    assert_eq!(spec_changes(&node, &same), (vec![], vec![]));

    let lb = d.resources[&id("nlb")].clone();
    let mut moved = lb.clone();
    let Spec::LoadBalancer(l) = &mut moved else {
        unreachable!()
    };
    l.scheme = Scheme::InternetFacing;
    l.cross_zone = false;
    let (r, u) = spec_changes(&lb, &moved);
    assert_eq!(
        r,
        vec!["scheme: internal → internet-facing (cannot change in place)".to_string()]
    );
    assert_eq!(u, vec!["cross_zone: true → false".to_string()]);

    let sg = d.resources[&id("sg-nodes")].clone();
    let mut wider = sg.clone();
    let Spec::SecurityGroup(s) = &mut wider else {
        unreachable!()
    };
    s.ingress.remove(0);
    s.ingress
        .push(rule(Protocol::Udp, 8472, 8472, Peer::Itself, "vxlan"));
    let (r, u) = spec_changes(&sg, &wider);
    assert!(r.is_empty());
    assert_eq!(u.len(), 2, "{u:?}");
    assert!(u[0].starts_with("ingress: - "), "{u:?}");
    assert_eq!(u[1], "ingress: + udp 8472 from itself");
}

// ---------------------------------------------------------------------------------------
// Routine changes never lose data silently
// ---------------------------------------------------------------------------------------

fn set_nodes(desired: &mut Desired, f: impl Fn(&mut InstanceSpec)) {
    for (rid, spec) in desired.resources.iter_mut() {
        if let Spec::Instance(i) = spec {
            if rid.as_str().starts_with("node-") {
                f(i);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_type_change_updates_nodes_in_place_one_at_a_time() {
    let lab = Lab::new(FakeConfig {
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    lab.apply(&blueprint(3)).await;
    let mut desired = blueprint(3);
    set_nodes(&mut desired, |i| i.instance_type = "m6i.2xlarge".into());
    let plan = lab.plan(&desired, false).await;
    let expect: BTreeMap<String, ActionKind> = (1..=3)
        .map(|n| (format!("node-{n}"), ActionKind::Update))
        .collect();
    assert_eq!(changes(&plan), expect, "in place, not replaced");
    assert_eq!(plan.data_losses().count(), 0);
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &desired, &settings(10), timeline.clone())
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    let spans: Vec<_> = (1..=3)
        .map(|n| timeline.interval(&step(&format!("node-{n}"), StepKind::Update)))
        .collect();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "node updates overlap: {spans:?}");
    }
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_nodes_is_data_loss_and_goes_one_node_at_a_time() {
    let lab = Lab::new(FakeConfig {
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    lab.apply(&blueprint(3)).await;
    let mut desired = blueprint(3);
    set_nodes(&mut desired, |i| i.ami = "ami-0newer".into());
    let Spec::Instance(registry) = desired.resources.get_mut(&id("registry")).unwrap() else {
        unreachable!()
    };
    registry.ami = "ami-0newer".into();
    let plan = lab.plan(&desired, false).await;
    let lossy: BTreeSet<String> = plan.data_losses().map(|a| a.id.to_string()).collect();
    assert_eq!(
        lossy,
        BTreeSet::from(["node-1".into(), "node-2".into(), "node-3".into()]),
        "every node replace loses its disks; the registry host keeps nothing"
    );
    let timeline = Arc::new(Timeline::default());
    let outcome = lab
        .run_with(&plan, &desired, &settings(10), timeline.clone())
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    for n in 1..3 {
        let (_, created) = timeline.interval(&step(&format!("node-{n}"), StepKind::Create));
        let (next_deleted, _) =
            timeline.interval(&step(&format!("node-{}", n + 1), StepKind::Delete));
        assert!(
            created <= next_deleted,
            "node-{} went down before node-{n} was back",
            n + 1
        );
    }
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_database_or_a_volume_is_data_loss_but_a_destroy_is_not_flagged() {
    let lab = Lab::new(FakeConfig::default());
    let mut desired = blueprint(2);
    desired.insert(
        "registry-data",
        Spec::Volume(VolumeSpec {
            subnet: "subnet-edge".into(),
            size_gb: 200,
        }),
    );
    lab.apply(&desired).await;
    let Spec::Database(db) = desired.resources.get_mut(&id("datastore")).unwrap() else {
        unreachable!()
    };
    db.username = "root".into();
    let Spec::Volume(v) = desired.resources.get_mut(&id("registry-data")).unwrap() else {
        unreachable!()
    };
    v.size_gb = 100;
    let plan = lab.plan(&desired, false).await;
    let lossy: BTreeSet<String> = plan.data_losses().map(|a| a.id.to_string()).collect();
    assert_eq!(
        lossy,
        BTreeSet::from(["datastore".into(), "registry-data".into()])
    );
    // Growing the volume is an update, not a loss.
    let Spec::Volume(v) = desired.resources.get_mut(&id("registry-data")).unwrap() else {
        unreachable!()
    };
    v.size_gb = 300;
    let plan = lab.plan(&desired, false).await;
    assert_eq!(
        plan.get(&id("registry-data")).unwrap().action,
        ActionKind::Update
    );
    assert!(plan.get(&id("registry-data")).unwrap().data_loss.is_none());
    let destroy = lab.plan(&desired, true).await;
    assert_eq!(destroy.data_losses().count(), 0, "destroy asks on its own");
}

// ---------------------------------------------------------------------------------------
// 11. Systems Manager access (`[access] mode = "ssm"`)
// ---------------------------------------------------------------------------------------

const SSM_SERVICES: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

/// [`blueprint`] in ssm mode: the endpoints' group and the three interface endpoints in the
/// private subnets, the role and the instance profile every machine runs with.
fn ssm_blueprint(nodes: usize) -> Desired {
    let mut d = blueprint(nodes);
    d.insert(
        "sg-endpoints",
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: "vpc".into(),
            description: "endpoints".into(),
            ingress: vec![rule(
                Protocol::Tcp,
                443,
                443,
                Peer::Group("sg-nodes".into()),
                "nodes reach Systems Manager",
            )],
            egress: vec![],
        }),
    );
    for service in SSM_SERVICES {
        d.insert(
            format!("vpce-{service}").as_str(),
            Spec::VpcEndpoint(VpcEndpointSpec {
                vpc: "vpc".into(),
                service_name: format!("com.amazonaws.us-east-1.{service}"),
                subnets: vec!["subnet-a".into(), "subnet-b".into()],
                security_groups: vec!["sg-endpoints".into()],
                private_dns: true,
            }),
        );
    }
    d.insert(
        "ssm-role",
        Spec::IamRole(IamRoleSpec {
            name: format!("{ENV}-us-east-1-ssm-role"),
            path: format!("/provision/{ENV}/"),
            trusted_service: "ec2.amazonaws.com".into(),
            policies: vec!["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".into()],
            description: "ssm".into(),
        }),
    );
    d.insert(
        "ssm-profile",
        Spec::InstanceProfile(InstanceProfileSpec {
            name: format!("{ENV}-us-east-1-ssm-profile"),
            path: format!("/provision/{ENV}/"),
            role: "ssm-role".into(),
        }),
    );
    for spec in d.resources.values_mut() {
        if let Spec::Instance(i) = spec {
            i.instance_profile = Some("ssm-profile".into());
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_resources_come_before_the_machines_and_go_after_them() {
    let lab = Lab::new(FakeConfig::default());
    let desired = ssm_blueprint(2);
    let timeline = Arc::new(Timeline::default());
    let plan = lab.plan(&desired, false).await;
    let outcome = lab
        .run_with(&plan, &desired, &settings(4), timeline.clone())
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    for machine in ["node-1", "node-2", "registry"] {
        timeline.assert_before(
            &step("ssm-profile", StepKind::Create),
            &step(machine, StepKind::Create),
        );
    }
    timeline.assert_before(
        &step("ssm-role", StepKind::Create),
        &step("ssm-profile", StepKind::Create),
    );
    lab.assert_converged(&desired).await;

    let destroy = Arc::new(Timeline::default());
    let plan = lab.plan(&desired, true).await;
    let outcome = lab
        .run_with(&plan, &desired, &settings(4), destroy.clone())
        .await;
    assert!(outcome.ok(), "{outcome:#?}");
    destroy.assert_before(
        &step("node-1", StepKind::Delete),
        &step("ssm-profile", StepKind::Delete),
    );
    destroy.assert_before(
        &step("ssm-profile", StepKind::Delete),
        &step("ssm-role", StepKind::Delete),
    );
    for service in SSM_SERVICES {
        let endpoint = step(&format!("vpce-{service}"), StepKind::Delete);
        destroy.assert_before(&endpoint, &step("sg-endpoints", StepKind::Delete));
        destroy.assert_before(&endpoint, &step("subnet-a", StepKind::Delete));
    }
    lab.assert_destroyed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_drift_is_found_and_repaired() {
    let lab = Lab::new(FakeConfig::default());
    let desired = ssm_blueprint(2);
    lab.apply(&desired).await;

    // Behind the tool's back: private DNS off, the SSM policy detached, the role taken out
    // of the profile, a node without its profile.
    lab.fake.tamper(ENV, "vpce-ssmmessages", |o| {
        let Spec::VpcEndpoint(e) = &mut o.spec else {
            unreachable!()
        };
        e.private_dns = false;
    });
    lab.fake.tamper(ENV, "ssm-role", |o| {
        let Spec::IamRole(r) = &mut o.spec else {
            unreachable!()
        };
        r.policies.clear();
    });
    lab.fake.tamper(ENV, "ssm-profile", |o| {
        o.missing.push("role in the profile");
    });
    lab.fake.tamper(ENV, "node-2", |o| {
        let Spec::Instance(i) = &mut o.spec else {
            unreachable!()
        };
        i.instance_profile = None;
    });
    let plan = lab.plan(&desired, false).await;
    let drift = |rid: &str, needle: &str| {
        let a = plan.get(&id(rid)).unwrap();
        assert_eq!(a.action, ActionKind::Update, "{rid}: {a:?}");
        assert!(
            a.reasons
                .iter()
                .any(|r| r.starts_with("drift:") && r.contains(needle)),
            "{rid}: {:?}",
            a.reasons
        );
    };
    drift("vpce-ssmmessages", "private_dns");
    drift("ssm-role", "policies");
    drift("ssm-profile", "role in the profile");
    drift("node-2", "instance_profile");
    assert_eq!(changes(&plan).len(), 4, "{:#?}", changes(&plan));

    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    lab.assert_converged(&desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_or_profile_stopped_after_its_first_call_is_finished_not_redone() {
    // Killed right after CreateRole and after CreateInstanceProfile: each is found by its
    // tags, half-made (no policy, no role), and completed by an update.
    for (rid, part) in [
        ("ssm-role", "attach_role_policy"),
        ("ssm-profile", "add_role_to_instance_profile"),
    ] {
        let lab = Lab::new(FakeConfig::default());
        let desired = ssm_blueprint(1);
        lab.fake
            .set_config(|c| c.refuse_once = vec![part.to_string()]);
        let plan = lab.plan(&desired, false).await;
        let outcome = lab.run(&plan, &desired).await;
        assert!(!outcome.ok(), "{rid}: the part call was refused");
        let plan = lab.plan(&desired, false).await;
        let action = plan.get(&id(rid)).unwrap();
        assert!(
            action.action == ActionKind::Adopt
                && action.update_after_adopt
                && action.reasons.iter().any(|r| r.starts_with("drift:")),
            "{rid}: adopted and finished, not created again: {action:?}"
        );
        lab.fake.clear_calls();
        let outcome = lab.run(&plan, &desired).await;
        assert!(outcome.ok(), "{outcome:#?}");
        assert!(
            !mutating_ops(&lab.fake)
                .iter()
                .any(|(op, cid)| op == "create" && cid == rid),
            "{rid} created twice"
        );
        assert_eq!(lab.fake.count(ENV, rid), 1);
        lab.assert_converged(&desired).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_an_ssm_apply_at_every_mutation_recovers_without_duplicates() {
    crash_everywhere(None, untouched, &ssm_blueprint(1), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_an_ssm_destroy_at_every_mutation_recovers() {
    crash_everywhere(
        Some(&ssm_blueprint(1)),
        untouched,
        &Desired::default(),
        true,
    )
    .await;
}

/// Two folders, one env name: what another lineage made is never adopted, changed or
/// deleted. A saved state refuses the plan naming the other environment; nothing is
/// called that changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_lineage_of_the_same_env_is_refused_and_never_touched() {
    let neighbour = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    neighbour.apply(&desired).await;
    // A second folder: its own state (saved once, nothing in it yet is the "fresh" case
    // below), the same cloud.
    let mine = Lab::with_cloud(neighbour.fake.clone());
    let mut state = State::new(ENV);
    state.serial = 1;
    store::save(&mine.paths, &mut state).expect("save");
    neighbour.fake.clear_calls();
    let err = mine.try_plan(&desired, false).await.unwrap_err();
    let PlanError::Foreign(foreign) = &err else {
        panic!("want a refusal naming the neighbour, got {err}");
    };
    assert_eq!(foreign.neighbours.len(), 1);
    assert_eq!(foreign.neighbours[0].lineage, neighbour.load().lineage);
    assert!(err.to_string().contains("datastore"), "{err}");
    // Destroy is refused the same way.
    assert!(matches!(
        mine.try_plan(&desired, true).await,
        Err(PlanError::Foreign(_))
    ));
    assert!(neighbour.fake.mutating_calls().is_empty());
    neighbour.assert_converged(&desired).await;
}

/// A folder with no state that finds another lineage's resources plans to adopt them
/// and says so (`takeover`); an untagged leftover next to a saved state is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_state_shows_a_takeover_and_untagged_leftovers_are_left_alone() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    let lineage = lab.load().lineage;
    // An untagged (pre-lineage) group next to the saved state: named, never deleted.
    let vpc = cloud_id(&lab, "vpc");
    lab.fake.inject(
        ENV,
        "sg-legacy",
        security_group("legacy", vec![]),
        vec![(vpc, true)],
    );
    let plan = lab.plan(&desired, false).await;
    assert!(!plan.has_changes(), "{:#?}", changes(&plan));
    assert_eq!(plan.left_alone.len(), 1, "{:?}", plan.left_alone);
    assert!(plan.left_alone[0].contains("sg-legacy"));
    // Lost state: a takeover of the one lineage found.
    lab.forget_state();
    let plan = lab.plan(&desired, false).await;
    let takeover = plan.takeover.clone().expect("a takeover");
    assert_eq!(takeover.lineage.as_deref(), Some(lineage.as_str()));
    assert!(takeover.resources >= desired.resources.len());
}

/// A cluster node's user-data or key pair changed (a registry port, a new CA, a key added
/// later): cloud-init ran it once, so replacing would lose the node's disks for files the
/// operator can put there in place. The plan records the change without a call and says
/// how to bring the node up to date; replacing stays explicit (`--replace`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_not_replaced_for_its_user_data_or_key_unless_asked() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    let mut changed = desired.clone();
    let Some(Spec::Instance(node)) = changed.resources.get_mut(&id("node-1")) else {
        panic!("node-1")
    };
    node.user_data = "#cloud-config\n# registry on port 5443\n".into();
    node.user_data_sha256 = "0".repeat(64);
    node.key_pair = Some("key-2".into());
    changed.insert("key-2", desired.resources[&id("key")].clone());
    let plan = lab.plan(&changed, false).await;
    let a = plan.get(&id("node-1")).unwrap();
    assert_eq!(a.action, ActionKind::Update, "{:#?}", a.reasons);
    assert!(a.record_only);
    assert_eq!(a.data_loss, None);
    let text = a.reasons.join("\n");
    for want in [
        "cloud-init ran it once",
        "--replace node-1",
        "authorized key",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    lab.fake.clear_calls();
    let outcome = lab.run(&plan, &changed).await;
    assert!(outcome.ok(), "{outcome:#?}");
    let node_calls: Vec<_> = lab
        .fake
        .mutating_calls()
        .into_iter()
        .filter(|c| c.id == cloud_id(&lab, "node-1"))
        .collect();
    assert!(node_calls.is_empty(), "node-1 was touched: {node_calls:?}");
    assert!(!lab.plan(&changed, false).await.has_changes());

    // Asked for: replaced, and marked as the data loss it is.
    let mut more = changed.clone();
    let Some(Spec::Instance(node)) = more.resources.get_mut(&id("node-1")) else {
        panic!("node-1")
    };
    node.user_data_sha256 = "1".repeat(64);
    let state = lab.load();
    let plan = make_plan(
        &lab.fake,
        PlanInput {
            env: ENV,
            desired: &more,
            state: &state,
            destroy: false,
            replace: &[id("node-1")],
        },
    )
    .await
    .unwrap();
    let a = plan.get(&id("node-1")).unwrap();
    assert_eq!(a.action, ActionKind::Replace);
    assert!(a.data_loss.is_some());
}

/// Resources made before lineage tags existed: the state that records them tags them
/// with its lineage (no other change), and after that the plan has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_made_before_lineage_tags_are_claimed_by_the_state_that_records_them() {
    let lab = Lab::new(FakeConfig::default());
    let desired = blueprint(2);
    lab.apply(&desired).await;
    for (_, o) in lab.fake.live(ENV) {
        let id = o.id.to_string();
        lab.fake.tamper(ENV, &id, |o| o.lineage.clear());
    }
    let plan = lab.plan(&desired, false).await;
    let claimed: Vec<&super::plan::Action> = plan.changes().collect();
    assert!(!claimed.is_empty());
    assert!(
        claimed
            .iter()
            .all(|a| a.claim && a.record_only && a.action == ActionKind::Update),
        "{:#?}",
        changes(&plan)
    );
    lab.fake.clear_calls();
    let outcome = lab.run(&plan, &desired).await;
    assert!(outcome.ok(), "{outcome:#?}");
    let ops: BTreeSet<&str> = lab
        .fake
        .mutating_calls()
        .iter()
        .map(|c| c.op)
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    assert_eq!(ops, BTreeSet::from(["claim"]), "only tags are added");
    // Everything the env's listing finds carries the lineage now (records in a zone the
    // env does not own are found by their marker, not listed: they keep theirs).
    let lineage = lab.load().lineage;
    let listed = lab.fake.list_owned(ENV).await.unwrap();
    assert!(listed.len() > 10);
    for o in &listed {
        assert_eq!(
            o.owner.lineage.as_deref(),
            Some(lineage.as_str()),
            "{}",
            o.id
        );
    }
    lab.assert_converged(&desired).await;
}
