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

/// S3a (second mutant): A, B, C committed 0..5, cut snapshots and purged
/// them. C campaigns, and a new leader takes over (C, or A again); B writes
/// its base frame, and its slot write of the new committer stays in flight.
/// The leader commits 5..10, all cut snapshots again, and the floor reaches
/// 10. A purge below 10 may delete the base frame, the only frame naming
/// B's committer: the rule waits for the slot. The mutant purges; B crashes
/// before its slot write lands and restarts with A's first leadership as
/// committer (the slot's copy): its committer fell.
fn s3a(mutations: Mutations) -> Script {
    let mut s = purged_everywhere(mutations);
    let b = 2;
    s.slow_disks.insert(b);
    let old = s.replica(b).committer();
    s.campaign(3);
    // B's WAL writes land as they come; its slot writes land only while
    // its committer is the old one.
    let step = |s: &mut Script| {
        for id in s.wal_in_flight(b) {
            s.complete_wal(b, id);
        }
        if s.replica(b).committer() == old {
            s.complete_slot(b);
        }
    };
    let end = s.now() + 500 * MS;
    while s.now() < end && s.replica(b).committer() == old {
        s.deliver(|_| true);
        step(&mut s);
        s.advance(MS);
    }
    assert_ne!(s.replica(b).committer(), old, "B follows a new base");
    let leader = s.replica(b).committer().node;
    let ids: Vec<u64> = (5..10)
        .map(|v| s.propose(leader, KvOp::Set { key: v, value: v }))
        .collect();
    let end = s.now() + 500 * MS;
    while s.now() < end && !(1..=3).all(|n| s.replica(n).applied().first_unset() >= 10) {
        s.deliver(|_| true);
        step(&mut s);
        s.advance(MS);
    }
    assert!(ids.iter().all(|&id| succeeded(&s, id)));
    for n in 1..=3 {
        s.snapshot(n);
    }
    let end = s.now() + 500 * MS;
    while s.now() < end && s.replica(b).purge_floor() < 10 {
        s.deliver(|_| true);
        step(&mut s);
        s.advance(MS);
    }
    assert!(s.replica(b).purge_floor() >= 10, "the floor reached 10");
    for _ in 0..50 {
        s.deliver(|_| true);
        step(&mut s);
        s.advance(MS);
    }
    s.crash_and_restart(b);
    s
}

#[test]
fn s3a_purge_waits_for_the_slot() {
    let s = s3a(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s.replica(2).purged().first_unset() < 10, "B has not purged");
}

#[test]
fn s3a_mutant_purging_before_the_slot_holds_committer_is_caught() {
    let s = s3a(Mutations {
        purge_ignores_slot: true,
        ..Default::default()
    });
    assert_caught(&s, "I2");
}
