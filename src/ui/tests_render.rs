//! Snapshots of what operators read: plans (full and compact), plain and JSON progress,
//! the JSON documents, and the planner's split of config changes from drift.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::json::{output_document, plan_document, show_document};
use super::plan::{render_plan, PlanView};
use super::progress::{Mode, Progress, RunSummary};
use super::style::Style;
use super::Verbosity;
use crate::cloud::fake::FakeCloud;
use crate::engine::{
    execute, make_plan, Action, ActionKind, Cancel, Desired, Plan, PlanInput, Reporter, Settings,
    StepKind,
};
use crate::model::*;
use crate::state::{Entry, Paths, State, Status};

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn rule(port: u16, peer: Peer) -> Rule {
    Rule {
        protocol: Protocol::Tcp,
        from_port: port,
        to_port: port,
        peer,
        description: String::new(),
    }
}

fn db(class: &str) -> Spec {
    Spec::Database(DatabaseSpec {
        subnet_group: "db-subnets".into(),
        security_group: "sg-datastore".into(),
        engine: crate::model::DbEngine::Mysql,
        engine_version: "8.0".into(),
        instance_class: class.into(),
        storage_gb: 20,
        database: "k3s".into(),
        username: "k3s".into(),
        backup_retention_days: 7,
        password: None,
    })
}

/// A small k3s-like graph: network, security, compute, datastore, front door, DNS.
fn desired(class: &str) -> Desired {
    let mut d = Desired::default();
    d.insert(
        "vpc",
        Spec::Vpc(VpcSpec {
            cidr: "10.42.0.0/16".into(),
        }),
    );
    for (i, cidr) in ["10.42.0.0/20", "10.42.16.0/20"].iter().enumerate() {
        d.insert(
            format!("subnet-private-{}", i + 1).as_str(),
            Spec::Subnet(SubnetSpec {
                vpc: "vpc".into(),
                cidr: (*cidr).into(),
                zone_index: i,
                map_public_ip: false,
                instance_types: vec![],
            }),
        );
    }
    d.insert(
        "sg-nodes",
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: "vpc".into(),
            description: "nodes".into(),
            ingress: vec![
                rule(443, Peer::Cidr("10.42.0.0/16".into())),
                rule(6443, Peer::Itself),
            ],
            egress: vec![],
        }),
    );
    d.insert(
        "sg-datastore",
        Spec::SecurityGroup(SecurityGroupSpec {
            vpc: "vpc".into(),
            description: "datastore".into(),
            ingress: vec![rule(3306, Peer::Group("sg-nodes".into()))],
            egress: vec![],
        }),
    );
    d.insert(
        "node-1",
        Spec::Instance(InstanceSpec {
            role: "server".into(),
            subnet: "subnet-private-1".into(),
            security_groups: vec!["sg-nodes".into()],
            ami: "ami-0123456789abcdef0".into(),
            instance_type: "t3.xlarge".into(),
            root_volume_gb: 50,
            volumes: vec![],
            after: vec![],
            public_ip: false,
            key_pair: None,
            instance_profile: None,
            user_data_sha256: "abc".into(),
            user_data: String::new(),
        }),
    );
    d.insert(
        "db-subnets",
        Spec::DbSubnetGroup(DbSubnetGroupSpec {
            subnets: vec!["subnet-private-1".into(), "subnet-private-2".into()],
        }),
    );
    d.insert("datastore", db(class));
    d.insert(
        "nlb",
        Spec::LoadBalancer(LoadBalancerSpec {
            scheme: Scheme::Internal,
            subnets: vec!["subnet-private-1".into(), "subnet-private-2".into()],
            security_group: "sg-nodes".into(),
            cross_zone: true,
            after: vec![],
        }),
    );
    d.insert(
        "record",
        Spec::DnsRecord(DnsRecordSpec {
            zone: ZoneRef::Existing("lab.example.com".into()),
            name: "rancher.lab.example.com".into(),
            target: RecordTarget::AliasLoadBalancer("nlb".into()),
            ttl: 60,
        }),
    );
    d
}

fn action(id: &str, kind: Kind, action: ActionKind, reasons: &[&str]) -> Action {
    Action {
        id: LogicalId::new(id),
        kind,
        action,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        current: None,
        update_after_adopt: false,
        orphan: false,
        data_loss: None,
        record_only: false,
        claim: false,
    }
}

fn live(mut a: Action, cloud_id: &str, attrs: Attrs) -> Action {
    a.current = Some(Observed::new(cloud_id, attrs));
    a
}

fn plan_of(actions: Vec<Action>, destroy: bool) -> Plan {
    Plan {
        env: "lab".into(),
        destroy,
        lineage: Some("0000".into()),
        serial: 3,
        desired_digest: String::new(),
        takeover: None,
        left_alone: Vec::new(),
        actions,
    }
}

/// Every resource of `desired` created, in its dependency order.
fn create_plan(d: &Desired) -> Plan {
    let actions = d
        .order()
        .unwrap()
        .into_iter()
        .map(|id| {
            let kind = d.resources[&id].kind();
            action(id.as_str(), kind, ActionKind::Create, &[])
        })
        .collect();
    plan_of(actions, false)
}

fn changes_plan() -> Plan {
    let mut replace = live(
        action(
            "node-1",
            Kind::Instance,
            ActionKind::Replace,
            &["ami: ami-1 → ami-2 (cannot change in place)"],
        ),
        "i-0abc",
        Attrs::Instance {
            private_ip: "10.42.0.10".into(),
            public_ip: None,
            availability_zone: "us-east-1a".into(),
        },
    );
    replace.data_loss =
        Some("the node is terminated and launched anew: data on its disks is lost".into());
    plan_of(
        vec![
            live(
                action(
                    "vpc",
                    Kind::Vpc,
                    ActionKind::Adopt,
                    &["not in the state but found in the cloud by its tags"],
                ),
                "vpc-0abc",
                Attrs::None,
            ),
            live(
                action(
                    "sg-nodes",
                    Kind::SecurityGroup,
                    ActionKind::Update,
                    &["drift: ingress: 1 added, 0 removed"],
                ),
                "sg-0abc",
                Attrs::None,
            ),
            replace,
            live(
                action(
                    "datastore",
                    Kind::Database,
                    ActionKind::Update,
                    &["instance_class: db.t3.medium → db.t3.large"],
                ),
                "lab-datastore",
                Attrs::Database {
                    address: "lab-datastore.abc.us-east-1.rds.amazonaws.com".into(),
                    port: 3306,
                    secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1"
                        .into(),
                    status: "available".into(),
                },
            ),
            live(
                action(
                    "subnet-old",
                    Kind::Subnet,
                    ActionKind::Delete,
                    &["no longer in the config"],
                ),
                "subnet-0old",
                Attrs::Subnet {
                    availability_zone: "us-east-1c".into(),
                },
            ),
            action("node-2", Kind::Instance, ActionKind::NoOp, &[]),
        ],
        false,
    )
}

fn plain(compact: bool) -> PlanView {
    PlanView {
        compact,
        style: Style::PLAIN,
    }
}

#[test]
fn plan_of_creates_shows_the_attributes_that_matter() {
    let d = desired("db.t3.medium");
    let text = render_plan(&create_plan(&d), &d, plain(false));
    insta::assert_snapshot!(text);
    assert!(
        text.contains("Plan: 10 to add, 0 to change, 0 to destroy."),
        "{text}"
    );
    assert!(text.contains("RDS: typically 5–15 min"), "{text}");
}

#[test]
fn plan_groups_follow_dependency_order() {
    let d = desired("db.t3.medium");
    let text = render_plan(&create_plan(&d), &d, plain(false));
    let at = |g: &str| {
        text.find(&format!("# {g}\n"))
            .unwrap_or_else(|| panic!("{g}: {text}"))
    };
    let order = [
        "network",
        "security",
        "compute",
        "datastore",
        "front door",
        "DNS",
    ];
    for pair in order.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{} before {}:\n{text}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn plan_of_changes_tells_config_from_drift_and_flags_data_loss() {
    let d = desired("db.t3.large");
    let text = render_plan(&changes_plan(), &d, plain(false));
    insta::assert_snapshot!(text);
    assert!(
        text.contains("! DATA LOSS: the node is terminated"),
        "{text}"
    );
    assert!(
        text.contains("drift (changed outside provision): ingress: 1 added"),
        "{text}"
    );
    // A config change is shown once and not as drift.
    assert_eq!(
        text.matches("instance_class: db.t3.medium → db.t3.large")
            .count(),
        1
    );
    assert!(text.contains("Plan: 1 to add, 2 to change, 2 to destroy (1 replaced), 1 to adopt."));
}

#[test]
fn compact_plan_is_one_line_per_resource() {
    let d = desired("db.t3.large");
    let plan = changes_plan();
    let text = render_plan(&plan, &d, plain(true));
    insta::assert_snapshot!(text);
    let resource_lines = text
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.trim_start().starts_with("<="))
        .count();
    assert_eq!(resource_lines, plan.changes().count(), "{text}");
    // What the plan reads but does not own is shown as `<= read`.
    assert!(text.contains("<= image ami-"), "{text}");
}

#[test]
fn plan_colours_only_when_asked() {
    let d = desired("db.t3.large");
    let plain_text = render_plan(&changes_plan(), &d, plain(false));
    assert!(!plain_text.contains('\x1b'));
    let coloured = render_plan(
        &changes_plan(),
        &d,
        PlanView {
            compact: false,
            style: Style { color: true },
        },
    );
    assert!(coloured.contains("\x1b[31m-/+\x1b[0m"), "{coloured}");
}

#[test]
fn an_empty_plan_says_no_changes() {
    let d = desired("db.t3.large");
    let text = render_plan(&plan_of(vec![], false), &d, plain(false));
    assert_eq!(text, "No changes. The infrastructure matches the config.\n");
}

#[test]
fn plan_json_is_versioned_and_typed() {
    let d = desired("db.t3.large");
    let doc = plan_document(&changes_plan(), &d);
    insta::assert_snapshot!(pretty(&doc));
    let vpc = &doc["actions"][0];
    assert_eq!(vpc["id"], "vpc");
    assert!(vpc.get("attrs").is_none(), "a VPC has no attributes: {vpc}");
    assert_eq!(doc["actions"][3]["attrs"]["port"], 3306);
    assert_eq!(doc["actions"][3]["config"]["instance_class"], "db.t3.large");
    let created = plan_document(&create_plan(&d), &d);
    insta::assert_snapshot!("plan_json_creates", pretty(&created));
}

fn state() -> State {
    let mut s = State::new("lab");
    s.lineage = "0000-lineage".into();
    s.serial = 7;
    let d = desired("db.t3.medium");
    let entries = [
        ("vpc", "vpc-0123456789abcdef0", Attrs::None),
        (
            "nlb",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/lab-nlb/0123456789abcdef",
            Attrs::LoadBalancer {
                dns_name: "lab-nlb-0123.elb.us-east-1.amazonaws.com".into(),
                canonical_zone_id: "Z26RNL4JYFTOTI".into(),
            },
        ),
        (
            "node-1",
            "i-0123456789abcdef0",
            Attrs::Instance {
                private_ip: "10.42.0.10".into(),
                public_ip: None,
                availability_zone: "us-east-1a".into(),
            },
        ),
        (
            "datastore",
            "lab-datastore",
            Attrs::Database {
                address: "lab-datastore.abc.us-east-1.rds.amazonaws.com".into(),
                port: 3306,
                secret_arn: "arn:aws:secretsmanager:us-east-1:1:secret:rds".into(),
                status: "available".into(),
            },
        ),
    ];
    for (id, cloud_id, attrs) in entries {
        let spec = d.resources[&LogicalId::new(id)].clone();
        s.resources.insert(
            LogicalId::new(id),
            Entry {
                kind: spec.kind(),
                status: Status::Created,
                cloud_id: cloud_id.into(),
                token: "t".into(),
                token_spent: false,
                spec,
                attrs,
                depends_on: vec![],
                updated_at: "2026-11-25T06:00:00Z".into(),
            },
        );
    }
    s
}

#[test]
fn show_json_is_versioned_and_typed() {
    let doc = show_document("lab", Some(&state()));
    insta::assert_snapshot!(pretty(&doc));
    assert!(doc["resources"][3].get("attrs").is_none(), "vpc: {doc}");
    insta::assert_snapshot!("show_json_no_state", pretty(&show_document("lab", None)));
}

#[test]
fn output_json_is_versioned() {
    let mut map = std::collections::BTreeMap::new();
    map.insert(
        "rancher_url".to_string(),
        serde_json::json!("https://rancher.lab.example.com"),
    );
    map.insert(
        "node_private_ips".to_string(),
        serde_json::json!(["10.42.0.10"]),
    );
    map.insert("datastore_endpoint".to_string(), serde_json::Value::Null);
    insta::assert_snapshot!(pretty(&output_document(&map)));
}

#[test]
fn show_table_stays_aligned_and_shortens_long_ids_unless_wide() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let narrow = super::table::render_state(&state(), false, now, Style::PLAIN);
    insta::assert_snapshot!(narrow);
    assert!(
        !narrow.contains("loadbalancer/net/lab-nlb/0123456789abcdef"),
        "{narrow}"
    );
    assert!(narrow.contains(" 2h "), "age: {narrow}");
    // Every row's STATUS column starts at the same place.
    let columns: Vec<usize> = narrow
        .lines()
        .filter(|l| l.contains("created") || l.contains("STATUS"))
        .map(|l| {
            let at = l.find("created").or_else(|| l.find("STATUS")).unwrap();
            l[..at].chars().count()
        })
        .collect();
    assert!(columns.windows(2).all(|w| w[0] == w[1]), "{narrow}");
    let wide = super::table::render_state(&state(), true, now, Style::PLAIN);
    assert!(
        wide.contains("loadbalancer/net/lab-nlb/0123456789abcdef"),
        "{wide}"
    );
}

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn run_events(mode: Mode, verbosity: Verbosity) -> String {
    let sink = Sink::default();
    let p = Progress::new(
        mode,
        verbosity,
        Box::new(sink.clone()),
        Box::new(|| "2026-11-25T07:00:00Z".to_string()),
    );
    let id = |s: &str| LogicalId::new(s);
    p.step_started(&id("vpc"), StepKind::Create, Kind::Vpc);
    p.step_finished(
        &id("vpc"),
        StepKind::Create,
        Ok("vpc-0abc"),
        Duration::from_millis(1200),
    );
    p.step_started(&id("datastore"), StepKind::Create, Kind::Database);
    p.step_status(&id("datastore"), "creating", Duration::from_secs(10));
    p.step_status(&id("datastore"), "creating", Duration::from_secs(12));
    p.step_status(&id("datastore"), "backing-up", Duration::from_secs(300));
    p.step_finished(
        &id("datastore"),
        StepKind::Create,
        Ok("lab-datastore"),
        Duration::from_secs(320),
    );
    p.step_started(&id("node-1"), StepKind::Create, Kind::Instance);
    p.step_finished(
        &id("node-1"),
        StepKind::Create,
        Err("RunInstances: UnauthorizedOperation: You are not authorized to perform: ec2:RunInstances"),
        Duration::from_secs(2),
    );
    p.note("waiting for running steps to finish");
    p.finish(
        "apply",
        &RunSummary {
            succeeded: 2,
            failed: 1,
            skipped: 3,
            interrupted: false,
            elapsed: Duration::from_secs(322),
        },
    );
    sink.text()
}

fn redact_durations() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d+m\d\ds|\d+\.\ds", "[DURATION]");
    settings.add_filter(
        r#""(elapsed_)?seconds":[0-9.e-]+"#,
        r#""${1}seconds":"[SECONDS]""#,
    );
    settings
}

#[test]
fn plain_progress_is_one_timestamped_line_per_event() {
    let text = run_events(Mode::Plain, Verbosity::Normal);
    redact_durations().bind(|| insta::assert_snapshot!(text));
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(
        text.lines().all(|l| l.starts_with("2026-11-25T07:00:00Z ")),
        "{text}"
    );
    // An unchanged status is not repeated.
    assert_eq!(text.matches("datastore: creating").count(), 1, "{text}");
    assert!(text.contains("Critical path:"), "{text}");
}

#[test]
fn quiet_progress_shows_only_failures() {
    let text = run_events(Mode::Plain, Verbosity::Quiet);
    assert_eq!(
        text.lines().filter(|l| !l.contains("note")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("FAILED  create node-1"), "{text}");
}

#[test]
fn json_progress_is_one_object_per_event() {
    let text = run_events(Mode::Json, Verbosity::Normal);
    redact_durations().bind(|| insta::assert_snapshot!(text));
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "step_started",
            "step_finished",
            "step_started",
            "step_status",
            "step_status",
            "step_finished",
            "step_started",
            "step_failed",
            "note",
            "summary"
        ]
    );
    assert!(events.iter().all(|e| e["format_version"] == "1.0"));
    assert!(events[7]["hint"]
        .as_str()
        .unwrap()
        .contains("ec2:RunInstances"));
}

#[tokio::test]
async fn a_config_change_is_not_also_reported_as_drift() {
    let fake = FakeCloud::default();
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path(), "lab");
    let mut state = State::new("lab");
    let plan = |d: &Desired, state: &State| {
        let (fake, d, state) = (fake.clone(), d.clone(), state.clone());
        async move {
            make_plan(
                &fake,
                PlanInput {
                    env: "lab",
                    desired: &d,
                    state: &state,
                    destroy: false,
                    replace: &[],
                },
            )
            .await
            .unwrap()
        }
    };
    let before = desired("db.t3.medium");
    let first = plan(&before, &state).await;
    let outcome = execute(
        Arc::new(fake.clone()),
        &first,
        &before,
        &mut state,
        &crate::state::LocalBackend::new(paths.clone(), "lab"),
        &Settings::default(),
        Arc::new(crate::engine::reporter::Recording::default()),
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(outcome.ok(), "{outcome:?}");

    let after = desired("db.t3.large");
    let changed = plan(&after, &state).await;
    let db = changed.get(&LogicalId::new("datastore")).unwrap();
    assert_eq!(db.action, ActionKind::Update);
    assert_eq!(db.reasons, ["instance_class: db.t3.medium → db.t3.large"]);

    // Real drift on top of the config change is still reported, once, as drift.
    fake.tamper("lab", "datastore", |o| {
        if let Spec::Database(s) = &mut o.spec {
            s.backup_retention_days = 1;
        }
    });
    let both = plan(&after, &state).await;
    let db = both.get(&LogicalId::new("datastore")).unwrap();
    assert_eq!(db.reasons.len(), 2, "{:?}", db.reasons);
    assert_eq!(db.reasons[0], "instance_class: db.t3.medium → db.t3.large");
    assert!(
        db.reasons[1].starts_with("drift: backup_retention_days"),
        "{:?}",
        db.reasons
    );
}

#[test]
fn the_critical_path_follows_what_each_step_waits_for() {
    let run = |with_dependencies: bool| {
        let sink = Sink::default();
        let p = Progress::new(
            Mode::Plain,
            Verbosity::Normal,
            Box::new(sink.clone()),
            Box::new(|| "T".to_string()),
        );
        let id = |s: &str| crate::engine::Step {
            id: LogicalId::new(s),
            kind: StepKind::Create,
        };
        if with_dependencies {
            p.set_waits_for(
                [
                    (id("vpc"), vec![]),
                    (id("key-pair"), vec![]),
                    (id("subnet"), vec![id("vpc")]),
                ]
                .into_iter()
                .collect(),
            );
        }
        let id = |s: &str| LogicalId::new(s);
        // The key pair ends just before the subnet starts, but the subnet waits for the vpc.
        for step in ["vpc", "key-pair", "subnet"] {
            p.step_started(&id(step), StepKind::Create, Kind::Subnet);
            std::thread::sleep(Duration::from_millis(5));
            p.step_finished(&id(step), StepKind::Create, Ok(""), Duration::ZERO);
        }
        p.finish("apply", &RunSummary::default());
        sink.text()
    };
    let text = run(true);
    assert!(
        text.contains("Critical path: create vpc (0.0s) → create subnet (0.0s)"),
        "{text}"
    );
    let text = run(false);
    assert!(
        text.contains("create key-pair (0.0s) → create subnet"),
        "{text}"
    );
}
