//! A config as `init` writes it gives access: the SSH key `init` shows as the default
//! (`~/.ssh/id_ed25519.pub`) is used when it exists; with no key and no SSM access the
//! tool says nobody could log in. (`HOME` is each test's own folder.)

use crate::harness::*;

#[test]
fn the_default_ssh_key_is_used_when_it_exists_and_its_absence_is_said() {
    let world = World::bare();
    let text = Fixture::new(Topology::K3s)
        .render()
        .replace("ssh_public_key = \"id_ed25519.pub\"\n", "");
    world.write_config_text(&text);
    let run = world.run(&["validate"]);
    run.ok();
    assert!(
        run.stderr.contains("no SSH key") && run.stderr.contains("[access] mode"),
        "{}",
        run.describe()
    );
    let plan = world.run(&["plan", "--json"]);
    plan.ok();
    let has_key = |doc: &serde_json::Value| {
        doc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "key_pair")
    };
    assert!(!has_key(&plan.json()), "no key, no key pair");

    std::fs::create_dir_all(world.path().join(".ssh")).unwrap();
    std::fs::write(
        world.path().join(".ssh").join("id_ed25519.pub"),
        ssh_public_key(),
    )
    .unwrap();
    let run = world.run(&["validate"]);
    run.ok();
    assert!(!run.stderr.contains("no SSH key"), "{}", run.describe());
    let plan = world.run(&["plan", "--json"]);
    plan.ok();
    assert!(has_key(&plan.json()), "{}", plan.describe());
}
