//! The simulator over thousands of seeds, with network, disk and crash
//! faults on: no check of DESIGN.md §3.8 may fail, and liveness must show
//! once faults stop. A failure prints the command that replays it.

use traft::sim::{run_seeds, Sim, SimConfig};

fn seeds(replicas: usize, start: u64, count: u64) {
    if let Err(failure) = run_seeds(replicas, start, count, |_| {}) {
        panic!("{failure}");
    }
}

#[test]
fn three_replicas_seeds_0_to_600() {
    seeds(3, 0, 600);
}

#[test]
fn three_replicas_seeds_600_to_1200() {
    seeds(3, 600, 600);
}

#[test]
fn five_replicas_seeds_0_to_400() {
    seeds(5, 0, 400);
}

#[test]
fn five_replicas_seeds_400_to_800() {
    seeds(5, 400, 400);
}

#[test]
fn strict_mode_seeds() {
    if let Err(failure) = run_seeds(3, 0, 100, |cfg| cfg.strict = true) {
        panic!("{failure}");
    }
}

#[test]
fn same_seed_same_trace() {
    for seed in [3, 17, 1234] {
        let a = Sim::new(SimConfig::new(3, seed)).run().expect("passes");
        let b = Sim::new(SimConfig::new(3, seed)).run().expect("passes");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.steps, b.steps);
        let c = Sim::new(SimConfig::new(3, seed + 1)).run().expect("passes");
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "different seeds, different runs"
        );
    }
}

/// Snapshot cuts asked of random replicas every ~50 ms of simulated time,
/// under every fault: each finds no apply in flight and a state equal to the
/// serial apply of its applied set (checked in the simulator), restarts
/// start from the last cut (the state checks then cover the restore), and
/// each durable cut lets replicas purge their records and WAL below the
/// purge floor (the checker then accepts an LSN held without its record only
/// if it was chosen).
#[test]
fn snapshot_cuts_seeds() {
    let reports = run_seeds(3, 0, 200, |cfg| cfg.snapshot_every = 50_000_000)
        .unwrap_or_else(|failure| panic!("{failure}"));
    let cuts: u64 = reports.iter().map(|r| r.snapshots).sum();
    let restored: u64 = reports.iter().map(|r| r.restarts_from_snapshot).sum();
    assert!(cuts > 20_000, "{cuts} cuts checked");
    assert!(restored > 500, "{restored} restarts from a cut");
    let purges: u64 = reports.iter().map(|r| r.purges).sum();
    assert!(purges > 20_000, "{purges} WAL purges");
    let from_purged: u64 = reports.iter().map(|r| r.restarts_purged).sum();
    assert!(
        from_purged > 200,
        "{from_purged} restarts from a purged log"
    );
}
