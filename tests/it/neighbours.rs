//! Two folders, one env name (`provision init` always writes `name = "lab"`): what one
//! folder's state made is never adopted, changed or deleted from the other. The lineage of
//! each state is tagged on every resource (`provision:lineage`); a fresh folder takes over
//! found resources only with `--adopt`, a folder with a saved state refuses another
//! lineage outright.

use std::path::Path;

use crate::harness::*;

/// A second folder with its own config (same `name`) and the ssh key.
fn folder(fixture: &Fixture) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("provision-neighbour-")
        .tempdir()
        .expect("temp dir");
    std::fs::write(dir.path().join("provision.toml"), fixture.render()).unwrap();
    std::fs::write(dir.path().join("id_ed25519.pub"), ssh_public_key()).unwrap();
    dir
}

fn state_of(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("state").join(format!("{ENV}.json")))
        .expect("a state file");
    serde_json::from_str(&text).unwrap()
}

/// The `provision:lineage` tag of every VPC tagged for the env.
fn vpc_lineages(world: &World) -> Vec<String> {
    let out = world
        .aws
        .block(world.aws.ec2.describe_vpcs().send())
        .unwrap();
    out.vpcs()
        .iter()
        .filter_map(|v| {
            let tags = ec2_tags(v.tags());
            (tags.get("provision:env").map(String::as_str) == Some(ENV))
                .then(|| tags.get("provision:lineage").cloned().unwrap_or_default())
        })
        .collect()
}

#[track_caller]
fn refused_without_change(run: &Run, stats: &Stats, wants: &[&str]) {
    run.code(1);
    assert!(
        stats.mutating().is_empty(),
        "a refusal made mutating calls {:?}\n{}",
        stats.mutating_names(),
        run.describe()
    );
    let text = run.all_output();
    for want in wants {
        assert!(text.contains(want), "{want:?} missing: {}", run.describe());
    }
}

#[test]
fn a_second_folder_with_the_same_name_never_touches_the_first_in_either_order() {
    let world = World::new(&Fixture::new(Topology::Docker));
    // Folder A (the world's own) builds a docker environment named `lab`.
    world.apply();
    let lineage_a = world.state_json()["lineage"].as_str().unwrap().to_string();
    assert_eq!(vpc_lineages(&world), vec![lineage_a.clone()]);

    // Folder B: a k3s environment, also `lab`, no state yet. Its plan shows what it found
    // and that apply would take it over only with --adopt.
    let b = folder(&Fixture::new(Topology::K3s));
    let (plan, stats) = world.run_in_recorded(b.path(), &["plan"]);
    plan.ok();
    assert!(stats.mutating().is_empty());
    for want in ["no state for env `lab`", &lineage_a, "--adopt"] {
        assert!(plan.stdout.contains(want), "{want:?}: {}", plan.describe());
    }
    // Without --adopt apply changes nothing, and says how to go on.
    let (run, stats) = world.run_in_recorded(b.path(), &["apply", "--yes"]);
    refused_without_change(&run, &stats, &["--adopt", "another `name`"]);
    // Nor does destroy.
    let (run, stats) = world.run_in_recorded(b.path(), &["destroy", "--yes"]);
    refused_without_change(&run, &stats, &["--adopt"]);

    // Folder C: a saved state of its own (an environment it destroyed earlier): the other
    // lineage is refused outright, naming it, where and when it began.
    let c = folder(&Fixture::new(Topology::K3s));
    let mut saved = world.state_json();
    saved["lineage"] = "c0ffee00-0000-4000-8000-000000000000".into();
    saved["resources"] = serde_json::json!({});
    std::fs::create_dir_all(c.path().join("state")).unwrap();
    std::fs::write(
        c.path().join("state").join(format!("{ENV}.json")),
        serde_json::to_vec_pretty(&saved).unwrap(),
    )
    .unwrap();
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    for args in [
        &["plan"][..],
        &["apply", "--yes"],
        &["apply", "--yes", "--adopt", "--allow-data-loss"],
        &["destroy", "--yes"],
    ] {
        let (run, stats) = world.run_in_recorded(c.path(), args);
        refused_without_change(
            &run,
            &stats,
            &[
                "another environment named `lab`",
                &lineage_a,
                &format!("host {host}"),
                "resource(s)",
                "`name`",
                "state pull",
            ],
        );
    }

    // Folder A is untouched: nothing to change, everything where it was.
    world.assert_converged();
    assert_eq!(vpc_lineages(&world), vec![lineage_a.clone()]);

    // The other order: A destroys, B builds, and now A (a saved, empty state) is the
    // neighbour and is refused.
    world.run(&["destroy", "--yes"]).ok();
    assert!(vpc_lineages(&world).is_empty());
    world.run_in(b.path(), &["apply", "--yes"]).ok();
    let lineage_b = state_of(b.path())["lineage"].as_str().unwrap().to_string();
    assert_ne!(lineage_a, lineage_b);
    assert_eq!(vpc_lineages(&world), vec![lineage_b.clone()]);
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    refused_without_change(
        &run,
        &stats,
        &[&lineage_b, "another environment named `lab`"],
    );
    let (run, stats) = world.run_recorded(&["destroy", "--yes"]);
    refused_without_change(&run, &stats, &[&lineage_b]);

    // B loses its state file: a takeover, only with --adopt, continuing B's lineage; then
    // nothing is created or replaced.
    let state_b = b.path().join("state").join(format!("{ENV}.json"));
    std::fs::remove_file(&state_b).unwrap();
    let _ = std::fs::remove_file(b.path().join("state").join(format!("{ENV}.json.backup")));
    let (run, stats) = world.run_in_recorded(b.path(), &["apply", "--yes"]);
    refused_without_change(&run, &stats, &["--adopt"]);
    let (run, stats) = world.run_in_recorded(b.path(), &["apply", "--yes", "--adopt"]);
    run.ok();
    let creates: Vec<String> = stats
        .mutating_names()
        .into_iter()
        .filter(|n| n.starts_with("Create") || n.starts_with("Run") || n.starts_with("Delete"))
        .collect();
    assert!(
        creates.is_empty(),
        "an adoption made {creates:?}: {}",
        run.describe()
    );
    assert_eq!(
        state_of(b.path())["lineage"].as_str(),
        Some(lineage_b.as_str())
    );
    let (plan, _) = world.run_in_recorded(b.path(), &["plan", "--detailed-exitcode"]);
    plan.code(0);
    world.run_in(b.path(), &["destroy", "--yes"]).ok();
    assert!(vpc_lineages(&world).is_empty());
}

/// Resources made before lineage tags existed (here: their lineage tags removed) and a
/// lost state: taken over only with --adopt, and tagged with the lineage then.
#[test]
fn resources_made_before_lineage_tags_are_adopted_explicitly_and_tagged_then() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    let aws = &world.aws;
    // Strip the lineage and origin tags: EC2 (every kind), ELB, RDS.
    let tagged = aws
        .block(
            aws.ec2
                .describe_tags()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("key")
                        .values("provision:lineage")
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let ids: Vec<String> = tagged
        .tags()
        .iter()
        .filter_map(|t| t.resource_id().map(str::to_string))
        .collect();
    assert!(ids.len() > 10, "{ids:?}");
    for id in &ids {
        aws.block(
            aws.ec2
                .delete_tags()
                .resources(id)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("provision:lineage")
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("provision:origin")
                        .build(),
                )
                .send(),
        )
        .unwrap();
    }
    let lbs = aws.block(aws.elb.describe_load_balancers().send()).unwrap();
    let tgs = aws.block(aws.elb.describe_target_groups().send()).unwrap();
    let arns: Vec<String> = lbs
        .load_balancers()
        .iter()
        .filter_map(|l| l.load_balancer_arn().map(str::to_string))
        .chain(
            tgs.target_groups()
                .iter()
                .filter_map(|t| t.target_group_arn().map(str::to_string)),
        )
        .collect();
    for arn in &arns {
        aws.block(
            aws.elb
                .remove_tags()
                .resource_arns(arn)
                .tag_keys("provision:lineage")
                .tag_keys("provision:origin")
                .send(),
        )
        .unwrap();
    }
    let dbs = aws.block(aws.rds.describe_db_instances().send()).unwrap();
    for db in dbs.db_instances() {
        aws.block(
            aws.rds
                .remove_tags_from_resource()
                .resource_name(db.db_instance_arn().unwrap())
                .tag_keys("provision:lineage")
                .tag_keys("provision:origin")
                .send(),
        )
        .unwrap();
    }
    std::fs::remove_file(world.state_file()).unwrap();
    let _ = std::fs::remove_file(world.state_file().with_extension("json.backup"));

    let (plan, _) = world.run_recorded(&["plan"]);
    plan.ok();
    // (The secrets kept their lineage tags: the takeover continues that lineage.)
    assert!(
        plan.stdout.contains("no state for env `lab`") && plan.stdout.contains("--adopt"),
        "{}",
        plan.describe()
    );
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    refused_without_change(&run, &stats, &["--adopt"]);
    let (run, stats) = world.run_recorded(&["apply", "--yes", "--adopt"]);
    run.ok();
    let names = stats.mutating_names();
    assert!(
        names.iter().all(|n| n.ends_with("CreateTags")
            || n.ends_with("AddTags")
            || n.ends_with("AddTagsToResource")
            || n.ends_with("TagResource")
            || n.ends_with("ChangeTagsForResource")
            || n.contains("hostedzone")),
        "an adoption only tags: {names:?}"
    );
    let lineage = world.state_json()["lineage"].as_str().unwrap().to_string();
    assert_eq!(vpc_lineages(&world), vec![lineage.clone()]);
    for arn in &arns {
        let out = aws
            .block(aws.elb.describe_tags().resource_arns(arn).send())
            .unwrap();
        let has = out.tag_descriptions().iter().any(|d| {
            d.tags().iter().any(|t| {
                t.key() == Some("provision:lineage") && t.value() == Some(lineage.as_str())
            })
        });
        assert!(has, "{arn} tagged with the lineage");
    }
    world.assert_converged();
}
