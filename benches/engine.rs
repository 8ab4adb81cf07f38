//! Engine scheduling benchmark: the real k3s blueprint applied to the in-memory fake cloud
//! with a fixed latency per mutating call, at several `--parallelism` settings. Shows what
//! the DAG scheduler buys over a serial apply (cloud latency dominates real applies).
//!
//! `-- scale`: instead, the same blueprint with 3, 10 and 50 nodes (50 is beyond the
//! product's limit of 9 servers; the count is set after validation, for the benchmark only)
//! under the latency model of `make bench` (20 ms per call, instances 2 s, RDS 10 s, NLB
//! 4 s, Route53 2 s) at the default parallelism: wall time, calls, calls per node; exits 1
//! when 50 nodes take more than 1.2x the time of 3.
//!
//! Run: `cargo bench --no-default-features --bench engine [-- scale]` (results go to
//! BENCHMARKS.md by hand).

use std::sync::Arc;
use std::time::{Duration, Instant};

use provision::cloud::fake::{FakeCloud, FakeConfig};
use provision::engine::{self, reporter::Recording, Cancel, PlanInput, Settings};
use provision::state::{LocalBackend, Paths, State};

fn config(nodes: u32) -> provision::config::Config {
    let text = format!(
        "name = \"bench\"\nregion = \"us-east-1\"\ntopology = \"k3s\"\nhostname = \"rancher.lab.example.com\"\n\
         [nodes]\nami = \"ami-0123456789abcdef0\"\ncount = {nodes}\n[dns]\nzone = \"lab.example.com\"\n"
    );
    provision::config::parse_str(&text, std::path::Path::new("bench.toml")).expect("config")
}

/// Apply `nodes` nodes from nothing under the model; (wall time, calls, steps).
fn apply_under_model(rt: &tokio::runtime::Runtime, nodes: u32) -> (Duration, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(nodes.min(9));
    cfg.nodes.count = nodes;
    let paths = Paths::new(dir.path(), &cfg.name);
    let registry = provision::blueprint::registry_plan(&cfg, &paths.secrets_dir()).unwrap();
    let desired = provision::blueprint::build(&cfg, &registry).unwrap();
    use provision::model::Kind;
    let fake = FakeCloud::new(FakeConfig {
        delay: Duration::from_millis(20),
        instance_boot: Duration::from_secs(2),
        ready_after: vec![
            (Kind::Database, Duration::from_secs(10)),
            (Kind::LoadBalancer, Duration::from_secs(4)),
            (Kind::DnsRecord, Duration::from_secs(2)),
        ],
        ..Default::default()
    });
    let cloud: Arc<dyn provision::cloud::Cloud> = Arc::new(fake.clone());
    rt.block_on(async {
        let mut state = State::new(&cfg.name);
        let plan = engine::make_plan(
            cloud.as_ref(),
            PlanInput {
                env: &cfg.name,
                desired: &desired,
                state: &state,
                destroy: false,
                replace: &[],
            },
        )
        .await
        .unwrap();
        let started = Instant::now();
        let outcome = engine::execute(
            cloud.clone(),
            &plan,
            &desired,
            &mut state,
            &LocalBackend::new(paths.clone(), &cfg.name),
            &Settings::default(),
            Arc::new(Recording::default()),
            &Cancel::new(),
        )
        .await
        .unwrap();
        assert!(outcome.ok());
        (started.elapsed(), fake.calls().len(), outcome.succeeded)
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::args().any(|a| a == "scale") {
        println!("| nodes | steps | apply wall time | cloud calls | calls per node |");
        println!("|---:|---:|---:|---:|---:|");
        let mut walls = Vec::new();
        for nodes in [3u32, 10, 50] {
            let (wall, calls, steps) = apply_under_model(&rt, nodes);
            println!(
                "| {nodes} | {steps} | {:.2} s | {calls} | {:.1} |",
                wall.as_secs_f64(),
                calls as f64 / f64::from(nodes)
            );
            walls.push(wall);
        }
        let ratio = walls[2].as_secs_f64() / walls[0].as_secs_f64();
        println!("\n50 nodes take {ratio:.3}x the wall time of 3 (target <= 1.2x).");
        if ratio > 1.2 {
            std::process::exit(1);
        }
        return;
    }
    let latency = Duration::from_millis(50);
    println!("| nodes | resources | parallelism | apply wall time | destroy wall time |");
    println!("|---:|---:|---:|---:|---:|");
    for nodes in [2u32, 5, 9] {
        for parallelism in [1usize, 4, 10] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(nodes);
            let paths = Paths::new(dir.path(), &cfg.name);
            let registry = provision::blueprint::registry_plan(&cfg, &paths.secrets_dir()).unwrap();
            let desired = provision::blueprint::build(&cfg, &registry).unwrap();
            let fake = FakeCloud::new(FakeConfig {
                delay: latency,
                ..Default::default()
            });
            let cloud: Arc<dyn provision::cloud::Cloud> = Arc::new(fake.clone());
            let settings = Settings {
                parallelism,
                ..Settings::default()
            };
            let (apply, destroy) = rt.block_on(async {
                let mut state = State::new(&cfg.name);
                let mut times = Vec::new();
                for destroy in [false, true] {
                    let plan = engine::make_plan(
                        cloud.as_ref(),
                        PlanInput {
                            env: &cfg.name,
                            desired: &desired,
                            state: &state,
                            destroy,
                            replace: &[],
                        },
                    )
                    .await
                    .unwrap();
                    let started = Instant::now();
                    let outcome = engine::execute(
                        cloud.clone(),
                        &plan,
                        &desired,
                        &mut state,
                        &LocalBackend::new(paths.clone(), &cfg.name),
                        &settings,
                        Arc::new(Recording::default()),
                        &Cancel::new(),
                    )
                    .await
                    .unwrap();
                    assert!(outcome.ok());
                    times.push(started.elapsed());
                }
                (times[0], times[1])
            });
            println!(
                "| {nodes} | {} | {parallelism} | {:.2} s | {:.2} s |",
                desired.resources.len(),
                apply.as_secs_f64(),
                destroy.as_secs_f64()
            );
        }
    }
    println!("\n(latency per mutating call: {} ms)", latency.as_millis());
}
