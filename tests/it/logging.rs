//! `-v` shows every AWS API call, one line each; without it, none.

use crate::harness::{Fixture, Topology, World};

#[test]
fn verbose_shows_one_line_per_api_call() {
    let world = World::new(&Fixture::new(Topology::Docker));
    let (quiet, _) = world.run_recorded(&["plan"]);
    quiet.ok();
    assert!(
        !quiet.all_output().contains("DescribeVpcs"),
        "{}",
        quiet.describe()
    );

    let (run, stats) = world.run_recorded(&["-v", "plan"]);
    run.ok();
    let text = run.all_output();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains(" → "))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("DescribeVpcs → 200")),
        "{}",
        run.describe()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ListHostedZones") || l.contains("ListHostedZonesByName")),
        "{lines:#?}"
    );
    // One line per call the proxy saw (retries aside: none here).
    assert_eq!(lines.len(), stats.calls.len(), "{lines:#?}");
}
