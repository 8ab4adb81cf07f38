//! Engine scheduling benchmark: the real k3s blueprint applied to the in-memory fake cloud
//! with a fixed latency per mutating call, at several `--parallelism` settings. Shows what
//! the DAG scheduler buys over a serial apply (cloud latency dominates real applies).
//!
//! Run: `cargo bench --bench engine` (results go to BENCHMARKS.md by hand).

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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
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
