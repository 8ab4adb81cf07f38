//! Bad configs are refused before any cloud call, naming the file, the line and the key.

use crate::harness::{Fixture, Topology, World};

struct Case {
    name: &'static str,
    text: String,
    /// The line (1-based) the error must point at, found by this marker.
    marker: &'static str,
    key: &'static str,
}

fn with(topology: Topology, edit: impl FnOnce(String) -> String) -> String {
    edit(Fixture::new(topology).render())
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "unknown_key",
            text: with(Topology::K3s, |t| {
                t.replace("[nodes]\n", "[nodes]\ncolour = \"blue\"\n")
            }),
            marker: "colour",
            key: "colour",
        },
        Case {
            name: "wrong_type",
            text: with(Topology::K3s, |t| {
                t.replace("[nodes]\n", "[nodes]\ncount = \"two\"\n")
            }),
            marker: "count = \"two\"",
            key: "nodes.count",
        },
        Case {
            name: "bad_cidr",
            text: with(Topology::K3s, |t| {
                t.replace("[network]\n", "[network]\nvpc_cidr = \"10.42.0.0/33\"\n")
            }),
            marker: "vpc_cidr",
            key: "network.vpc_cidr",
        },
        Case {
            name: "rke_two_nodes",
            text: with(Topology::Rke, |t| {
                t.replace("[nodes]\n", "[nodes]\ncount = 2\n")
            }),
            marker: "count = 2",
            key: "nodes.count",
        },
        Case {
            name: "missing_ami",
            text: with(Topology::K3s, |t| {
                t.replace(&format!("ami = \"{}\"\n", crate::harness::AMI), "")
            }),
            marker: "[nodes]",
            key: "nodes.ami",
        },
        Case {
            name: "datastore_in_rke",
            text: with(Topology::Rke, |t| {
                format!("{t}\n[datastore]\ninstance_class = \"db.t3.medium\"\n")
            }),
            marker: "[datastore]",
            key: "datastore",
        },
    ]
}

fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("marker {marker:?} not in\n{text}"))
        + 1
}

#[test]
fn bad_configs_are_refused_before_any_cloud_call() {
    let world = World::bare();
    for case in cases() {
        world.write_config_text(&case.text);
        let line = line_of(&case.text, case.marker);
        for args in [&["validate"][..], &["plan"], &["apply", "--yes"]] {
            let (run, stats) = world.run_recorded(args);
            run.code(1);
            let location = format!("provision.toml:{line}");
            assert!(
                run.stderr.contains(&location),
                "{}: stderr should name {location}: {}",
                case.name,
                run.describe()
            );
            assert!(
                run.stderr.contains(case.key),
                "{}: stderr should name the key {}: {}",
                case.name,
                case.key,
                run.describe()
            );
            assert!(
                stats.calls.is_empty(),
                "{}: `{}` reached the cloud: {:?}",
                case.name,
                args.join(" "),
                stats.calls
            );
            if args == ["plan"] {
                let mut settings = insta::Settings::clone_current();
                settings.set_snapshot_suffix(case.name);
                settings.add_filter(r"/[^\s:]*/provision-it-[A-Za-z0-9]+", "[TMP]");
                settings.bind(|| insta::assert_snapshot!("bad_config_stderr", run.stderr));
            }
        }
        assert!(
            !world.state_file().exists(),
            "{}: a refused config wrote state",
            case.name
        );
    }
}

/// What only the cloud can tell (a DNS zone or an image that does not exist) is still
/// caught by planning, before apply's first mutating call.
#[test]
fn missing_zone_or_image_fails_before_any_change() {
    let world = World::bare();
    for (what, text) in [
        (
            "not found",
            with(Topology::K3s, |t| {
                t.replace(
                    "zone = \"lab.example.com\"",
                    "zone = \"missing.example.com\"",
                )
                .replace("rancher.lab.example.com", "rancher.missing.example.com")
            }),
        ),
        (
            "ami-0123456789abcdef0",
            with(Topology::K3s, |t| {
                let ami = t
                    .lines()
                    .find(|l| l.starts_with("ami = "))
                    .expect("fixture has an ami")
                    .to_string();
                t.replace(&ami, "ami = \"ami-0123456789abcdef0\"")
            }),
        ),
    ] {
        world.write_config_text(&text);
        let (run, stats) = world.run_recorded(&["apply", "--yes"]);
        run.code(1);
        assert!(run.all_output().contains(what), "{}", run.describe());
        assert!(
            stats.mutating().is_empty(),
            "no change may reach the cloud: {:?}",
            stats.mutating_names()
        );
    }
}
