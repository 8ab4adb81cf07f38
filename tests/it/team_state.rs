//! Team use (issue 14): one shared state in S3, locked with S3 conditional writes, the
//! env's generated secrets in Secrets Manager — against moto's S3, which enforces
//! `If-None-Match` and `If-Match` like S3.

use std::time::Duration;

use crate::harness::{wait_until, Fixture, Running, Topology, World, ENV};

const BUCKET: &str = "team-state";
const KEY: &str = "provision/lab.json";
const LOCK: &str = "provision/lab.json.lock";

fn s3_fixture(topology: Topology) -> Fixture {
    let mut f = Fixture::new(topology);
    f.extra = format!("\n[state]\nbackend = \"s3\"\nbucket = \"{BUCKET}\"\n");
    f
}

fn s3_world(topology: Topology) -> World {
    let world = World::new(&s3_fixture(topology));
    world.aws.create_bucket(BUCKET, true);
    world
}

/// An `apply --yes` held by the proxy after its second mutating call (it holds the lock).
fn held_apply(world: &World) -> Running {
    world
        .proxy
        .configure(serde_json::json!({"hold_after_mutations": 2}));
    let run = world.spawn(&["apply", "--yes"]);
    wait_until("the apply to be held", Duration::from_secs(60), || {
        world.proxy.stats().held
    });
    run
}

fn remote_state(world: &World) -> serde_json::Value {
    let (body, _) = world
        .aws
        .object(BUCKET, KEY)
        .unwrap_or_else(|| panic!("no state object s3://{BUCKET}/{KEY}"));
    serde_json::from_slice(&body).expect("the state object is JSON")
}

fn assert_unlocked(world: &World) {
    assert!(
        world.aws.object(BUCKET, LOCK).is_none(),
        "the lock object s3://{BUCKET}/{LOCK} was left behind"
    );
}

#[test]
fn a_second_workstation_plans_no_changes_and_destroy_removes_the_envs_secrets() {
    let world = s3_world(Topology::K3s);
    world.apply();
    assert!(
        !world.state_file().exists(),
        "the S3 backend wrote a local state file"
    );
    let state = remote_state(&world);
    assert_eq!(state["env"], ENV);
    assert!(
        state["resources"]["shared-secrets"]["cloud_id"]
            .as_str()
            .is_some_and(|arn| arn.contains("provision/lab/shared-secrets")),
        "the shared secrets are a resource of the env: {state:#}"
    );
    assert_unlocked(&world);

    // The state object holds no secret: neither the registry password nor any key.
    let (body, _) = world.aws.object(BUCKET, KEY).unwrap();
    let text = String::from_utf8(body).unwrap();
    let password = std::fs::read_to_string(world.secrets_dir().join("registry-password")).unwrap();
    assert!(
        !text.contains(password.trim()),
        "registry password in the S3 state"
    );
    assert!(
        !text.contains("PRIVATE KEY"),
        "a private key in the S3 state"
    );
    let names: Vec<String> = world
        .aws
        .env_secrets()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for want in [
        "provision/lab/shared-secrets",
        "provision/lab/datastore-password",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }

    // A teammate: a fresh state folder, nothing local. Same secrets, nothing to change.
    let (plan, stats) = world.run_recorded(&["--state-dir", "ws2", "plan", "--detailed-exitcode"]);
    plan.code(0);
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
    let theirs = world.path().join("ws2").join(ENV).join("secrets");
    for file in [
        "registry-ca.crt",
        "registry-ca.key",
        "registry-password",
        "registry-htpasswd",
    ] {
        assert_eq!(
            std::fs::read(world.secrets_dir().join(file)).unwrap(),
            std::fs::read(theirs.join(file)).unwrap(),
            "{file} differs between the workstations"
        );
    }

    // The teammate destroys: nothing left, both secrets scheduled for deletion and said so.
    let run = world.run(&["--state-dir", "ws2", "destroy", "--yes"]);
    run.ok();
    assert!(
        world.aws.leftovers().is_empty(),
        "{:?}",
        world.aws.leftovers()
    );
    let deleted = world.aws.deleted_env_secrets();
    for want in [
        "provision/lab/shared-secrets",
        "provision/lab/datastore-password",
    ] {
        assert!(
            deleted.iter().any(|n| n == want),
            "{want} not scheduled: {deleted:?}"
        );
    }
    assert!(
        run.all_output().contains("restorable for 7 days"),
        "destroy should report the recovery window: {}",
        run.describe()
    );
    assert_unlocked(&world);
}

#[test]
fn two_concurrent_applies_one_proceeds_and_the_other_exits_3_naming_the_holder() {
    let world = s3_world(Topology::Docker);
    let first = held_apply(&world);
    let second = world.run(&["--state-dir", "ws2", "apply", "--yes"]);
    second.code(3);
    assert!(
        second.stderr.contains(&first.pid().to_string()) && second.stderr.contains(" ago"),
        "the refusal names the holder and its age: {}",
        second.describe()
    );
    world.proxy.release();
    first.wait(Duration::from_secs(120)).ok();
    assert_unlocked(&world);
    world.assert_converged();
}

#[test]
fn a_stale_lock_is_reported_with_its_holder_and_unlock_force_clears_it() {
    let world = s3_world(Topology::Docker);
    let started = chrono::Utc::now() - chrono::Duration::hours(2);
    let holder = serde_json::json!({
        "owner": "bob",
        "pid": 4242,
        "host": "ws-9",
        "command": "apply",
        "started": started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    world
        .aws
        .put_object(BUCKET, LOCK, holder.to_string().as_bytes());
    let (plan, stats) = world.run_recorded(&["plan"]);
    plan.code(3);
    for needle in ["bob", "ws-9", "4242", "120m", " ago)", "unlock --force"] {
        assert!(
            plan.stderr.contains(needle),
            "{needle}: {}",
            plan.describe()
        );
    }
    assert!(stats.mutating().is_empty());
    // Without --force the lock stays.
    let run = world.run(&["unlock"]);
    assert_ne!(run.code, 0, "{}", run.describe());
    assert!(world.aws.object(BUCKET, LOCK).is_some());
    let run = world.run(&["unlock", "--force"]);
    run.ok();
    assert!(run.stderr.contains("bob"), "{}", run.describe());
    assert_unlocked(&world);
    world.run(&["plan"]).ok();
}

#[test]
fn a_save_over_a_state_someone_else_wrote_is_refused_and_the_run_stops() {
    let world = s3_world(Topology::Docker);
    let first = held_apply(&world);
    // Another writer that ignored the lock.
    let mut theirs = remote_state(&world);
    theirs["serial"] = serde_json::json!(theirs["serial"].as_u64().unwrap() + 100);
    let theirs = serde_json::to_vec_pretty(&theirs).unwrap();
    world.aws.put_object(BUCKET, KEY, &theirs);
    world.proxy.release();
    let run = first.wait(Duration::from_secs(120));
    run.code(1);
    assert!(
        run.stderr.contains("changed by another run") && run.stderr.contains("rescue.json"),
        "{}",
        run.describe()
    );
    let stats = world.proxy.stats();
    assert!(
        !stats.mutating_names().iter().any(|n| n == "RunInstances"),
        "the run went on after the refused save: {:?}",
        stats.mutating_names()
    );
    assert_eq!(
        world.aws.object(BUCKET, KEY).unwrap().0,
        theirs,
        "the other writer's state was overwritten"
    );
    assert_unlocked(&world);
    // The rescue file knows what this run made; pushing it needs --force (the remote is
    // "newer"), then apply converges and destroy leaves nothing behind.
    let rescue = world
        .path()
        .join("state")
        .join(format!("{ENV}.rescue.json"));
    let rescue = rescue.to_str().unwrap();
    let refused = world.run(&["state", "push", "--from", rescue]);
    assert_ne!(refused.code, 0, "{}", refused.describe());
    assert!(refused.stderr.contains("newer"), "{}", refused.describe());
    world
        .run(&["state", "push", "--from", rescue, "--force"])
        .ok();
    world.apply();
    world.assert_converged();
    world.run(&["destroy", "--yes"]).ok();
    assert!(
        world.aws.leftovers().is_empty(),
        "{:?}",
        world.aws.leftovers()
    );
}

#[test]
fn a_run_whose_lock_was_forced_away_stops_before_its_next_write() {
    let world = s3_world(Topology::Docker);
    let first = held_apply(&world);
    // From this machine, forcing the lock of a run that is still going is refused.
    let refused = world.run(&["--state-dir", "ws2", "unlock", "--force"]);
    refused.code(1);
    assert!(
        refused.stderr.contains("still running on this machine"),
        "{}",
        refused.describe()
    );
    // A teammate on another machine forces it away (it cannot see the process).
    world
        .aws
        .block(
            world
                .aws
                .s3
                .delete_object()
                .bucket(BUCKET)
                .key(format!("{KEY}.lock"))
                .send(),
        )
        .unwrap();
    // A write that checked the lock just before it went may still land; none after.
    std::thread::sleep(Duration::from_secs(2));
    let before = world.aws.object(BUCKET, KEY).unwrap();
    world.proxy.release();
    let run = first.wait(Duration::from_secs(120));
    run.code(1);
    assert!(
        run.stderr.contains("no longer holds the lock"),
        "{}",
        run.describe()
    );
    assert!(
        !world
            .proxy
            .stats()
            .mutating_names()
            .iter()
            .any(|n| n == "RunInstances"),
        "the run went on without its lock"
    );
    assert_eq!(
        world.aws.object(BUCKET, KEY).unwrap().1,
        before.1,
        "the state was written without the lock"
    );
}

#[test]
fn ctrl_c_saves_state_and_releases_the_s3_lock() {
    let world = s3_world(Topology::Docker);
    let first = held_apply(&world);
    assert!(
        world.aws.object(BUCKET, LOCK).is_some(),
        "the run holds the lock"
    );
    first.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    world.proxy.release();
    let run = first.wait(Duration::from_secs(120));
    run.code(130);
    assert_unlocked(&world);
    let state = remote_state(&world);
    assert!(
        state["resources"]["vpc"]["cloud_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("vpc-")),
        "finished steps are saved in S3: {state:#}"
    );
    world.apply();
    world.assert_converged();
}

#[test]
fn ctrl_c_at_the_confirmation_prompt_releases_the_s3_lock() {
    let world = s3_world(Topology::Docker);
    let mut running = world.spawn_on_tty(&["apply"]);
    wait_until("the confirmation prompt", Duration::from_secs(60), || {
        running
            .stderr_so_far()
            .contains("Only 'yes' will be accepted")
            || running.finished()
    });
    assert!(
        world.aws.object(BUCKET, LOCK).is_some(),
        "the run holds the lock at the prompt: {}",
        running.stderr_so_far()
    );
    running.signal(libc::SIGINT);
    let stopped = running.wait(Duration::from_secs(10));
    assert_eq!(stopped.code, 130, "{}", stopped.describe());
    assert_unlocked(&world);
}

#[test]
fn push_and_pull_round_trip_and_a_foreign_lineage_is_refused() {
    // Built with the local backend first.
    let world = World::new(&Fixture::new(Topology::Docker));
    world.apply();
    let local = world.state_json();
    let lineage = local["lineage"].as_str().unwrap().to_string();
    world.aws.create_bucket(BUCKET, true);
    world.write_config(&s3_fixture(Topology::Docker));

    let run = world.run(&["state", "push"]);
    run.ok();
    let remote = remote_state(&world);
    assert_eq!(remote["lineage"], lineage.as_str());
    assert_eq!(remote["serial"], local["serial"]);
    assert!(
        remote["resources"]["shared-secrets"].is_object(),
        "{remote:#}"
    );
    assert_unlocked(&world);

    // A teammate (fresh folder) sees no changes: the pushed secrets are found.
    world
        .run(&["--state-dir", "ws2", "plan", "--detailed-exitcode"])
        .code(0);

    // Pull into another folder: the same document.
    world.run(&["--state-dir", "ws3", "state", "pull"]).ok();
    let pulled: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.path().join("ws3").join(format!("{ENV}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(pulled, remote);

    // A state of another lineage is refused both ways without --force.
    let ws4 = world.path().join("ws4");
    std::fs::create_dir_all(&ws4).unwrap();
    let mut foreign = local.clone();
    foreign["lineage"] = serde_json::json!("00000000-0000-4000-8000-000000000000");
    foreign["serial"] = serde_json::json!(999);
    let foreign_file = ws4.join(format!("{ENV}.json"));
    std::fs::write(&foreign_file, serde_json::to_vec_pretty(&foreign).unwrap()).unwrap();
    let etag = world.aws.object(BUCKET, KEY).unwrap().1;
    let run = world.run(&["--state-dir", "ws4", "state", "push"]);
    assert_ne!(run.code, 0, "{}", run.describe());
    assert!(run.stderr.contains("another lineage"), "{}", run.describe());
    assert_eq!(world.aws.object(BUCKET, KEY).unwrap().1, etag, "S3 changed");
    let run = world.run(&["--state-dir", "ws4", "state", "pull"]);
    assert_ne!(run.code, 0, "{}", run.describe());
    assert!(run.stderr.contains("another lineage"), "{}", run.describe());
    world
        .run(&["--state-dir", "ws4", "state", "pull", "--force"])
        .ok();
    let replaced: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&foreign_file).unwrap()).unwrap();
    assert_eq!(replaced["lineage"], lineage.as_str());

    // list / show read the S3 backend.
    let list = world.run(&["state", "list"]);
    list.ok();
    assert!(
        list.stdout.contains("shared-secrets") && list.stdout.contains("vpc"),
        "{}",
        list.describe()
    );
    let show = world.run(&["state", "show", "vpc"]);
    show.ok();
    let entry: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert!(entry["cloud_id"].as_str().unwrap().starts_with("vpc-"));

    world.run(&["destroy", "--yes"]).ok();
    assert!(
        world.aws.leftovers().is_empty(),
        "{:?}",
        world.aws.leftovers()
    );
}

#[test]
fn bad_backends_fail_before_any_cloud_change_and_leave_the_state_alone() {
    let world = World::new(&s3_fixture(Topology::Docker));
    // No bucket.
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.code(1);
    assert!(
        run.stderr.contains("team-state does not exist"),
        "{}",
        run.describe()
    );
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());

    // A bucket in another region than [state] region.
    world
        .aws
        .block(
            world
                .aws
                .s3
                .create_bucket()
                .bucket(BUCKET)
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let run = world.run(&["plan"]);
    run.code(1);
    assert!(
        run.stderr.contains("is in eu-west-1") && run.stderr.contains("region = \"eu-west-1\""),
        "{}",
        run.describe()
    );

    // With the right region: versioning off is a warning; a foreign object is refused
    // and left untouched.
    let mut f = s3_fixture(Topology::Docker);
    f.extra.push_str("region = \"eu-west-1\"\n");
    world.write_config(&f);
    world.aws.put_object(BUCKET, KEY, b"hello, not a state");
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.code(1);
    assert!(
        run.stderr.contains("versioning off")
            && run.stderr.contains("is not a provision state document"),
        "{}",
        run.describe()
    );
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
    assert_eq!(
        world.aws.object(BUCKET, KEY).unwrap().0,
        b"hello, not a state".to_vec()
    );
}

/// S3 took the lock and the state writes but the replies were lost (the SDK retried):
/// the retry finds the run's own lock (its nonce) and its own state (the same bytes),
/// neither "locked by another run" nor a conflict. The lock is released at the end.
#[test]
fn lock_and_state_writes_whose_replies_were_lost_are_recognised_as_our_own() {
    let world = s3_world(Topology::Docker);
    world.proxy.reset();
    world.proxy.configure(serde_json::json!({
        "lose_reply": {"PutObject(lock)": 1, "PutObject": 3}
    }));
    let run = world.run(&["apply", "--yes"]);
    let stats = world.proxy.stats();
    run.ok();
    let lost: Vec<String> = stats
        .faults("lost_reply")
        .iter()
        .map(|c| c.op.clone())
        .collect();
    assert_eq!(
        lost.iter().filter(|o| *o == "PutObject(lock)").count(),
        1,
        "the lock write's reply was lost: {lost:?}"
    );
    assert_eq!(
        lost.iter().filter(|o| *o == "PutObject").count(),
        3,
        "three state writes' replies were lost: {lost:?}"
    );
    assert_unlocked(&world);
    world.proxy.configure(serde_json::json!({"lose_reply": {}}));
    world.assert_converged();
    assert_eq!(remote_state(&world)["env"], "lab");
}
