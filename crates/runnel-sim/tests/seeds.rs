//! Hundreds of seeded histories of crashes, power cuts and isolation; every one must keep
//! every acknowledged record. `RUNNEL_SIM_SEED=N` replays one seed (with its trace on
//! failure); `RUNNEL_SIM_SEEDS=N` runs more.

use std::time::Instant;

use runnel_sim::{World, WorldConfig};

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("RUNNEL_SIM_SEED") {
        return vec![seed.parse().expect("RUNNEL_SIM_SEED is a number")];
    }
    let count = std::env::var("RUNNEL_SIM_SEEDS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(300);
    (0..count).collect()
}

fn run_all(name: &str, config: WorldConfig) {
    let started = Instant::now();
    let mut totals = (0usize, 0usize, 0usize, 0usize);
    let mut offline = 0usize;
    let seeds = seeds();
    for &seed in &seeds {
        match World::new(seed, config).run() {
            Ok(outcome) => {
                totals.0 += outcome.acknowledged;
                totals.1 += outcome.leader_changes;
                totals.2 += outcome.crashes;
                totals.3 += outcome.truncated_entries;
                offline += usize::from(outcome.left_offline);
            }
            Err(violation) => panic!(
                "{name}: {violation}\nreplay: RUNNEL_SIM_SEED={seed} cargo test -p runnel-sim --test seeds {name}"
            ),
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{name}: {} seeds in {elapsed:?} ({:.0} seeds/min): {} acknowledged, {} leader changes, {} crashes, {} entries truncated, {offline} left offline",
        seeds.len(),
        seeds.len() as f64 / elapsed.as_secs_f64() * 60.0,
        totals.0,
        totals.1,
        totals.2,
        totals.3
    );
    assert!(
        totals.0 > 0 || seeds.len() < 10,
        "nothing was ever acknowledged"
    );
}

#[test]
fn three_replicas_min_isr_two() {
    run_all("three_replicas_min_isr_two", WorldConfig::default());
}

#[test]
fn three_replicas_min_isr_one() {
    run_all(
        "three_replicas_min_isr_one",
        WorldConfig {
            min_insync_replicas: 1,
            ..WorldConfig::default()
        },
    );
}

#[test]
fn five_brokers_three_replicas_heavy_faults() {
    run_all(
        "five_brokers_three_replicas_heavy_faults",
        WorldConfig {
            brokers: 5,
            crash_per_mille: 40,
            isolate_per_mille: 40,
            ..WorldConfig::default()
        },
    );
}

#[test]
fn page_cache_mode_with_independent_power_cuts() {
    run_all(
        "page_cache_mode_with_independent_power_cuts",
        WorldConfig {
            durable: false,
            crash_per_mille: 4,
            ..WorldConfig::default()
        },
    );
}

#[test]
fn five_brokers_with_reassignments() {
    run_all(
        "five_brokers_with_reassignments",
        WorldConfig {
            brokers: 5,
            reassign_per_mille: 30,
            ..WorldConfig::default()
        },
    );
}
