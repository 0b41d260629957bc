//! §3.7 compaction: what a snapshot lets a replica purge, and the read row
//! that needs purged records (A3).

use crate::*;

/// A, B, C with A leading and LSNs 0..5 committed everywhere; each replica
/// cuts a snapshot, and once the purge floor passes 0..5 (every member holds
/// them durably as committed) each purges their records.
fn purged_everywhere(mutations: Mutations) -> Script {
    let mut s = three_led_by_a(mutations);
    assert!(s.run_until(100 * MS, |s| (1..=3).all(|n| s
        .replica(n)
        .applied()
        .first_unset()
        >= 5)));
    for n in 1..=3 {
        s.snapshot(n);
    }
    assert!(
        s.run_until(500 * MS, |s| (1..=3).all(|n| s
            .replica(n)
            .purged()
            .first_unset()
            >= 5)),
        "every replica purged 0..5"
    );
    for n in 1..=3 {
        assert!(s.replica(n).log().range(..5).next().is_none());
    }
    s
}

/// A3: A crashes; B wins with C. B's base holds 0..5 in its snapshot alone:
/// no write of B's holds them, so with A down no quorum of B's leadership
/// ever acks them. They are in `committed_base` (B's own durable
/// `committed`), which the rule counts; the mutant waits for each base LSN
/// to be committed under B's leadership and never serves a read.
fn a3(mutations: Mutations) -> (Script, u64) {
    let mut s = purged_everywhere(mutations);
    s.crash(1);
    elect_among(&mut s, 2, &[2, 3]);
    let read = s.read(2, KvOp::Get { key: 3 });
    s.run_until_with(500 * MS, within(&[2, 3]), |s| s.reads.contains_key(&read));
    (s, read)
}

#[test]
fn a3_reads_count_the_committed_base() {
    let (s, read) = a3(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s.reads.contains_key(&read), "B serves the read");
}

#[test]
fn a3_mutant_waiting_to_commit_purged_lsns_stalls() {
    let (s, read) = a3(Mutations {
        reads_need_own_commit: true,
        ..Default::default()
    });
    assert_eq!(s.violation, None);
    assert!(
        !s.reads.contains_key(&read),
        "liveness bound: the mutant must stall"
    );
}

/// F1: C is down while A and B commit 0..5 and cut snapshots. C holds none
/// of it, so the purge floor stays at 0 and A keeps the records; C restarts
/// and catches up from them. The mutant purges whatever its snapshot holds:
/// C then needs records no replica has, and never applies 0..5.
fn f1(mutations: Mutations) -> Script {
    let mut s = led_by_a(3, mutations);
    s.crash(3);
    let ids: Vec<u64> = (0..5)
        .map(|v| s.propose(1, KvOp::Set { key: v, value: v }))
        .collect();
    assert!(
        s.run_until(100 * MS, |s| ids.iter().all(|&id| succeeded(s, id))
            && (1..=2).all(|n| s.replica(n).applied().first_unset() >= 5))
    );
    s.snapshot(1);
    s.snapshot(2);
    s.run_until(200 * MS, |_| false);
    s.restart(3);
    s.run_until(1_000 * MS, |s| s.replica(3).applied().first_unset() >= 5);
    s
}

#[test]
fn f1_purge_waits_for_every_member() {
    let mut s = f1(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s.replica(3).applied().first_unset() >= 5, "C caught up");
    assert!(
        s.run_until(500 * MS, |s| s.replica(1).purged().first_unset() >= 5),
        "then A purged 0..5"
    );
    assert_eq!(s.violation, None);
}

#[test]
fn f1_mutant_purging_below_its_snapshot_alone_stalls() {
    let s = f1(Mutations {
        purge_below_snapshot_alone: true,
        ..Default::default()
    });
    assert_eq!(s.violation, None);
    assert!(s.replica(1).purged().first_unset() >= 5, "A purged 0..5");
    assert!(
        s.replica(3).applied().first_unset() < 5,
        "liveness bound: C never gets 0..5"
    );
}
