//! What AWS changes in place is never a replacement: a bigger root volume grows with
//! ModifyVolume; a change to what a node's user-data carries (the registry's port) leaves
//! the cluster nodes running and says how they get the new files; the registry host that
//! serves on the new port keeps its image store.

use crate::harness::*;

fn ids(instances: &[aws_sdk_ec2::types::Instance]) -> Vec<String> {
    let mut ids: Vec<String> = instances
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The size of each node's root volume, by instance id.
fn root_sizes(aws: &Aws) -> Vec<i32> {
    let roots: Vec<String> = aws
        .node_instances()
        .iter()
        .filter_map(|i| {
            let root = i.root_device_name()?;
            i.block_device_mappings()
                .iter()
                .find(|m| m.device_name() == Some(root))?
                .ebs()?
                .volume_id()
                .map(str::to_string)
        })
        .collect();
    let out = aws
        .block(
            aws.ec2
                .describe_volumes()
                .set_volume_ids(Some(roots))
                .send(),
        )
        .unwrap();
    out.volumes().iter().filter_map(|v| v.size()).collect()
}

#[test]
fn a_bigger_root_volume_grows_in_place_and_a_registry_port_change_replaces_no_node() {
    let fixture = Fixture::new(Topology::K3s);
    let world = World::new(&fixture);
    world.apply();
    let nodes = ids(&world.aws.node_instances());
    assert_eq!(nodes.len(), 2);

    // Root volumes 50 → 80 GiB: ModifyVolume, nothing launched or terminated.
    let text = fixture.render().replace(
        "ssh_public_key = \"id_ed25519.pub\"\n",
        "ssh_public_key = \"id_ed25519.pub\"\nroot_volume_gb = 80\n",
    );
    world.write_config_text(&text);
    let plan = world.run(&["plan"]);
    plan.ok();
    assert!(
        plan.stdout.contains("grows in place"),
        "{}",
        plan.describe()
    );
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.ok();
    let calls = stats.mutating_names();
    assert!(
        calls.iter().all(|c| c == "ec2:ModifyVolume"),
        "growing the root volumes made {calls:?}"
    );
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(ids(&world.aws.node_instances()), nodes);
    assert_eq!(root_sizes(&world.aws), vec![80, 80]);
    world.assert_converged();

    // The registry moves to port 5443: the nodes' user-data changes, the nodes stay.
    let text = text.replace(
        "\n[timeouts]\n",
        "\n[registry]\nport = 5443\n\n[timeouts]\n",
    );
    world.write_config_text(&text);
    let plan = world.run(&["plan"]);
    plan.ok();
    for want in ["cloud-init ran it once", "--replace node-1"] {
        assert!(plan.stdout.contains(want), "{want:?}: {}", plan.describe());
    }
    assert!(
        !plan.stdout.contains("DATA LOSS") && !plan.all_output().contains("destroy data"),
        "{}",
        plan.describe()
    );
    let registry_data = world
        .aws
        .volumes()
        .iter()
        .find(|v| {
            ec2_tags(v.tags()).get("provision:id").map(String::as_str) == Some("registry-data")
        })
        .and_then(|v| v.volume_id().map(str::to_string))
        .expect("the registry's volume");
    world.apply();
    assert_eq!(ids(&world.aws.node_instances()), nodes, "no node replaced");
    let still = world
        .aws
        .volumes()
        .iter()
        .any(|v| v.volume_id() == Some(registry_data.as_str()));
    assert!(still, "the registry's image store is kept");
    world.assert_converged();
}
