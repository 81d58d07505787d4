//! Times seeding all nine services at one scale, concurrently as `spawn_all`
//! does, and prints each service's rows and time plus the peak memory.
//!
//! `cargo run -p tessera-subgraphs --release --example seed_timing -- 1000000`

use std::time::Instant;

use tessera_subgraphs::{prepare, seed_counts, Service, ServiceOptions};

fn main() {
    let scale = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let opts = ServiceOptions {
        scale,
        ..ServiceOptions::default()
    };
    let started = Instant::now();
    let seeds: Vec<_> = Service::ALL
        .into_iter()
        .map(|service| {
            let opts = opts.clone();
            std::thread::spawn(move || prepare(service, &opts))
        })
        .collect();
    let mut rows = 0;
    let mut prepared = Vec::new();
    for seed in seeds {
        let p = seed.join().expect("seeding thread");
        println!(
            "{:<11} {:>9} rows  {:>8.2?}",
            p.service.name(),
            p.rows,
            p.seed_time
        );
        rows += p.rows;
        prepared.push(p);
    }
    let elapsed = started.elapsed();
    assert_eq!(rows, seed_counts(scale).total(), "rows match seed_counts");
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .unwrap_or_default();
    println!(
        "scale {scale}: {rows} rows in {elapsed:.2?} wall ({} cpus); {peak}",
        num_cpus()
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}
