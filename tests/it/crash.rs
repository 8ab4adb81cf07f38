//! Crash safety: kill -9 right after the cloud accepted a call, lost state, adoption.
//! `make test` kills a k3s apply at a few sampled points; `make test-crash` (the ignored
//! `crash_sweep_*` tests) after every mutating call of an apply, a destroy, a scale-down
//! and a private-zone apply.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::checks::{verify_no_duplicates, verify_no_duplicates_dns};
use crate::harness::{wait_until, Fixture, Topology, World};

/// What a kill interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A k3s apply from nothing.
    Apply,
    /// A destroy of an applied k3s env.
    Destroy,
    /// A k3s apply from 3 nodes to 2.
    ScaleDown,
    /// An rke apply from nothing with `dns.private_zone = true`.
    PrivateZone,
}

const DESTROY: &[&str] = &["destroy", "--yes", "--skip-final-snapshot"];

/// What the env holds after a converged apply.
#[derive(Debug, Clone, Copy)]
struct Expect {
    nodes: usize,
    datastore: bool,
    private_zone: bool,
}

impl Scenario {
    /// A world where the run to interrupt is about to start: a new one, or `spare`
    /// emptied.
    fn world(self, spare: Option<World>) -> World {
        let world = match spare {
            Some(w) => w.recycle(),
            None => World::bare(),
        };
        match self {
            Scenario::Apply => world.write_config(&Fixture::new(Topology::K3s)),
            Scenario::Destroy => {
                world.write_config(&Fixture::new(Topology::K3s));
                world.apply();
            }
            Scenario::ScaleDown => {
                let mut fixture = Fixture::new(Topology::K3s);
                fixture.count = Some(3);
                world.write_config(&fixture);
                world.apply();
                fixture.count = Some(2);
                world.write_config(&fixture);
            }
            Scenario::PrivateZone => {
                let mut fixture = Fixture::new(Topology::Rke);
                fixture.private_zone = true;
                world.write_config(&fixture);
            }
        }
        world
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Scenario::Destroy => DESTROY,
            // Removing a node destroys its disks: the operator says so.
            Scenario::ScaleDown => &["apply", "--yes", "--allow-data-loss"],
            _ => &["apply", "--yes"],
        }
    }

    fn expect(self) -> Expect {
        match self {
            Scenario::Apply | Scenario::Destroy | Scenario::ScaleDown => Expect {
                nodes: 2,
                datastore: true,
                private_zone: false,
            },
            Scenario::PrivateZone => Expect {
                nodes: 3,
                datastore: false,
                private_zone: true,
            },
        }
    }

    /// After a kill: the next run converges to exactly the expected resources (and a
    /// plan then finds nothing to do), and a destroy leaves nothing.
    fn recover(self, world: &World) {
        if world.state_file().exists() {
            world.state_json();
        }
        if self != Scenario::Destroy {
            world.run(self.args()).ok();
            let e = self.expect();
            verify_no_duplicates_dns(&world.aws, e.nodes, e.datastore, true, e.private_zone);
            let (plan, stats) = world.run_recorded(&["plan", "--detailed-exitcode"]);
            assert_eq!(plan.code, 0, "plan after the recovery: {}", plan.describe());
            assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
        }
        world.run(DESTROY).ok();
        world.assert_nothing_left();
    }
}

/// Kills the scenario's run right after the `n`-th mutating call reached the emulator
/// (its answer is held back), then checks the recovery. Returns the world (for reuse) and
/// false when the run finished (successfully) before making `n` mutating calls.
fn kill_after_mutation_in(scenario: Scenario, n: usize, spare: Option<World>) -> (World, bool) {
    let world = scenario.world(spare);
    world
        .proxy
        .configure(serde_json::json!({"hold_after_mutations": n}));
    let mut running = world.spawn(scenario.args());
    wait_until(
        &format!("mutating call {n} to be held"),
        Duration::from_secs(180),
        || world.proxy.stats().held || running.finished(),
    );
    let held = world.proxy.stats().held;
    running.signal(libc::SIGKILL);
    let killed = running.wait(Duration::from_secs(10));
    if !held {
        assert_eq!(killed.code, 0, "{}", killed.describe());
        return (world, false);
    }
    assert_eq!(killed.code, 128 + libc::SIGKILL, "{}", killed.describe());
    world.proxy.reset();
    scenario.recover(&world);
    (world, true)
}

/// Kills `apply` right after the `n`-th mutating call reached the emulator (its answer is
/// held back), then checks that a fresh apply converges to exactly one of everything.
fn kill_after_mutation(n: usize) {
    assert!(
        kill_after_mutation_in(Scenario::Apply, n, None).1,
        "apply made fewer than {n} mutating calls"
    );
}

#[test]
fn kill_9_after_mutating_call_1() {
    kill_after_mutation(1);
}

#[test]
fn kill_9_after_mutating_call_3() {
    kill_after_mutation(3);
}

#[test]
fn kill_9_after_mutating_call_7() {
    kill_after_mutation(7);
}

#[test]
fn kill_9_after_mutating_call_15() {
    kill_after_mutation(15);
}

#[test]
fn kill_9_after_mutating_call_30() {
    kill_after_mutation(30);
}

/// How many mutating calls the scenario's run makes, uninterrupted.
fn mutating_calls(scenario: Scenario) -> usize {
    let world = scenario.world(None);
    let (run, stats) = world.run_recorded(scenario.args());
    run.ok();
    stats.mutating().len()
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Kills the scenario's run after EVERY one of its mutating calls, each in its own world;
/// up to `IT_MAX_EMULATORS` kill points run at once. Reports every failing point.
fn crash_sweep(scenario: Scenario) {
    let started = Instant::now();
    let points = mutating_calls(scenario);
    let workers = std::env::var("IT_MAX_EMULATORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .clamp(1, points.max(1));
    let next = AtomicUsize::new(1);
    let failures = Mutex::new(Vec::<(usize, String)>::new());
    let unreached = Mutex::new(Vec::<usize>::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                // One emulator per worker, emptied between kill points; a failed point
                // drops its world (and keeps its log).
                let mut spare = None;
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n > points {
                        break;
                    }
                    let point = std::panic::AssertUnwindSafe(|| {
                        kill_after_mutation_in(scenario, n, spare.take())
                    });
                    match std::panic::catch_unwind(point) {
                        Ok((world, reached)) => {
                            if !reached {
                                unreached.lock().unwrap().push(n);
                            }
                            spare = Some(world);
                        }
                        Err(payload) => {
                            failures.lock().unwrap().push((n, panic_text(&*payload)));
                        }
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(n, _)| *n);
    let unreached = unreached.into_inner().unwrap();
    eprintln!(
        "crash sweep {scenario:?}: {points} kill points, {} failed, {} not reached, {:.0?} \
         ({workers} at once)",
        failures.len(),
        unreached.len(),
        started.elapsed()
    );
    assert!(
        unreached.len() <= 2,
        "{scenario:?}: the run ended before these kill points: {unreached:?}"
    );
    assert!(
        failures.is_empty(),
        "{scenario:?}: {} of {points} kill points failed: {:?}\n\n{}",
        failures.len(),
        failures.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        failures
            .iter()
            .map(|(n, text)| format!("--- killed after mutating call {n} ---\n{text}"))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

// The full sweeps are slow: `make test-crash` runs them (and CI does).

#[test]
#[ignore = "slow: make test-crash"]
fn crash_sweep_k3s_apply() {
    crash_sweep(Scenario::Apply);
}

#[test]
#[ignore = "slow: make test-crash"]
fn crash_sweep_k3s_destroy() {
    crash_sweep(Scenario::Destroy);
}

#[test]
#[ignore = "slow: make test-crash"]
fn crash_sweep_k3s_scale_down() {
    crash_sweep(Scenario::ScaleDown);
}

#[test]
#[ignore = "slow: make test-crash"]
fn crash_sweep_rke_private_zone_apply() {
    crash_sweep(Scenario::PrivateZone);
}

fn remove_state(world: &World) {
    let state = world.state_file();
    std::fs::remove_file(&state).unwrap();
    let backup = state.with_extension("json.backup");
    if backup.exists() {
        std::fs::remove_file(backup).unwrap();
    }
}

/// Calls that create something.
fn creates(stats: &crate::harness::Stats) -> Vec<String> {
    stats
        .mutating()
        .iter()
        .filter(|c| {
            ["Create", "Run", "Import", "Allocate"]
                .iter()
                .any(|p| c.action.starts_with(p) && c.action != "CreateTags")
                || c.action == "POST /2013-04-01/hostedzone"
        })
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn lost_state_is_adopted_not_recreated() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    remove_state(&world);

    let (plan, stats) = world.run_recorded(&["plan"]);
    plan.ok();
    assert!(
        stats.mutating().is_empty(),
        "plan mutated: {:?}",
        stats.mutating_names()
    );
    let text = plan.all_output().to_lowercase();
    assert!(
        text.contains("adopt"),
        "plan should adopt the tagged resources: {}",
        plan.describe()
    );

    // Without --adopt a folder with no state takes nothing over and changes nothing.
    let (run, stats) = world.run_recorded(&["apply", "--yes"]);
    run.code(1);
    assert!(run.stderr.contains("--adopt"), "{}", run.describe());
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
    let (run, stats) = world.run_recorded(&["apply", "--yes", "--adopt"]);
    run.ok();
    assert!(
        creates(&stats).is_empty(),
        "apply without state created: {:?}",
        creates(&stats)
    );
    verify_no_duplicates(&world.aws, 2, true, true);
    world.assert_converged();
}

#[test]
fn destroy_without_state_deletes_everything_tagged() {
    let world = World::new(&Fixture::new(Topology::K3s));
    world.apply();
    remove_state(&world);
    let (run, stats) = world.run_recorded(&["destroy", "--yes", "--skip-final-snapshot"]);
    run.code(1);
    assert!(stats.mutating().is_empty(), "{:?}", stats.mutating_names());
    world
        .run(&["destroy", "--yes", "--skip-final-snapshot", "--adopt"])
        .ok();
    world.assert_nothing_left();
}
