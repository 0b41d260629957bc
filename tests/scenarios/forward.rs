//! SCENARIOS.md §3.3: forwarding and commit.

use crate::*;
use traft::core::{Message, Mutations};
use traft::sim::kv::KvOp;
use traft::sim::script::{InFlight, Script, MS};

/// H7a: F installs c's base, then acks c's Z, chosen by {c, F}; F has not
/// learned Z is committed. A duplicate of the base forward arrives. If F
/// drops again what the base dropped, Z is gone; c crashes and the next
/// leader's base lacks Z. c, F, G are nodes 1, 2, 3.
fn h7a(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = Script::new(3, Script::params(), mutations);
    s.advance(t_min + 20 * MS);
    let c = campaign_among(&mut s, 1, &[1, 2, 3]);
    let duplicate = s
        .sent
        .iter()
        .find(|m| {
            m.to == 2 && matches!(&m.msg, traft::core::Message::Forward(f) if f.base.is_some())
        })
        .cloned()
        .expect("the base forward to F");
    assert!(s.run_until_with(
        500 * MS,
        |_| true,
        |s| { [2, 3].iter().all(|&n| s.replica(n).committer() == c) }
    ));
    let z = KvOp::Set { key: 5, value: 61 };
    s.propose(1, z);
    let no_g = |m: &InFlight| m.to != 3 && m.from != 3;
    assert!(s.run_until_with(100 * MS, no_g, |s| s
        .replica(1)
        .committed()
        .contains(lsn_of(s, 1, z))));
    let z_lsn = lsn_of(&s, 1, z);
    s.drop_where(|m| m.from == 1);
    assert!(
        !s.replica(2).committed().contains(z_lsn),
        "F has not learned Z is committed"
    );
    // The duplicate base forward arrives.
    s.pool.push(duplicate);
    s.deliver(|m| m.to == 2);
    s.crash(1);
    s.run_until_with(2 * t_min, |m| m.from != 1, |_| false);
    // F, the freshest, leads next: its base must hold Z.
    campaign_among(&mut s, 2, &[2, 3]);
    if s.violation.is_none() {
        assert_eq!(s.record_at(2, z_lsn).map(|r| r.cmd), Some(z.encode()));
    }
    s
}

#[test]
fn h7a_repeated_base_forward_drops_nothing() {
    let s = h7a(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn h7a_mutant_dropping_again_is_caught() {
    let s = h7a(Mutations {
        redo_base_drop: true,
        ..Default::default()
    });
    assert_caught(&s, "without LSN");
}

/// L2: five replicas; one batch is lost on all four links, with no broken
/// connection; later batches commit. Without retransmission the lost batch
/// never commits, nor does anything that depends on it.
fn l2(mutations: Mutations) -> (Script, bool) {
    let mut s = Script::new(5, Script::params(), mutations);
    s.advance(Script::params().t_min + 20 * MS);
    elect_among(&mut s, 1, &[1, 2, 3, 4, 5]);
    let lost = KvOp::Set { key: 8, value: 20 };
    s.propose(1, lost);
    s.drop_where(|m| m.from == 1);
    let lost_lsn = lsn_of(&s, 1, lost);
    s.propose(1, KvOp::Set { key: 2, value: 30 });
    let dependent = s.propose(1, KvOp::Get { key: 8 });
    let committed = s.run_until(1_000 * MS, |s| {
        s.replica(1).committed().contains(lost_lsn) && s.replies.contains_key(&dependent)
    });
    s.final_checks();
    (s, committed)
}

#[test]
fn l2_lost_batch_is_resent() {
    let (s, committed) = l2(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(committed);
}

#[test]
fn l2_mutant_without_retransmission_stalls() {
    let (s, committed) = l2(Mutations {
        no_retransmit: true,
        ..Default::default()
    });
    assert_eq!(s.violation, None);
    assert!(
        !committed,
        "liveness bound: the lost batch must stall without resends"
    );
}

/// T1: C grants (2, B); B's forwards to C are held past C's stickiness.
/// A's delayed forward of X@5 then reaches C: `c < vote`, so C refuses it
/// whatever its lease says. The mutant accepts and acks it (caught by I1;
/// left alone, {A, C} choose X and B's base makes C drop it).
fn t1(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    s.propose(1, KvOp::Set { key: 7, value: 1 });
    let to_c: Vec<InFlight> = s
        .pool
        .iter()
        .filter(|m| m.from == 1 && m.to == 3)
        .cloned()
        .collect();
    s.drop_where(|m| m.from == 1 || m.to == 1);
    let bc = within(&[2, 3]);
    s.run_until_with(t_min + 20 * MS, &bc, |_| false);
    s.campaign(2);
    let no_forward_to_c =
        |m: &InFlight| bc(m) && !(m.from == 2 && matches!(m.msg, Message::Forward(_)));
    assert!(s.run_until_with(50 * MS, no_forward_to_c, |s| leads(s, 2)));
    assert_eq!(s.replica(3).vote(), s.replica(2).vote());
    // A's delayed forward with X arrives at C.
    s.pool.extend(to_c);
    s.deliver(|m| m.to == 3);
    s
}

#[test]
fn t1_forward_below_the_vote_is_refused() {
    let s = t1(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(!s.replica(3).accepted().contains(5));
}

#[test]
fn t1_mutant_accepting_old_forwards_is_caught() {
    let s = t1(Mutations {
        accept_old_forwards: true,
        ..Default::default()
    });
    assert_caught(&s, "I1");
}

/// S1: X@5 reaches B only; B's write is slow, and A is cut off. C
/// campaigns; B grants, reporting ≤ 4; C wins with B. B's write then
/// completes: B's vote is C's now, so it must not ack X to A. The mutant
/// decided to ack when the forward arrived (caught by I1; left alone,
/// {A, B} choose X and C's base makes B drop it).
fn s1(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    s.slow_disks.insert(2);
    s.propose(1, KvOp::Set { key: 7, value: 1 });
    s.deliver(|m| m.from == 1 && m.to == 2);
    assert!(!s.replica(2).accepted().contains(5), "B's write is slow");
    s.drop_where(|m| m.from == 1 || m.to == 1);
    let bc = within(&[2, 3]);
    s.run_until_with(t_min + 20 * MS, &bc, |_| false);
    s.campaign(3);
    let start = s.now();
    while !leads(&s, 3) && s.now() < start + 100 * MS {
        s.complete_slot(2);
        s.deliver(&bc);
        s.drop_where(|m| !bc(m));
        s.advance(MS);
    }
    assert!(leads(&s, 3), "C won with B");
    s.slow_disks.clear();
    s.complete_disk(2);
    s
}

#[test]
fn s1_ack_checked_when_produced() {
    let s = s1(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn s1_mutant_acking_on_receipt_is_caught() {
    let s = s1(Mutations {
        ack_checked_at_receipt: true,
        ..Default::default()
    });
    assert_caught(&s, "I1");
}

/// H1: A (R0) sends 5, 6, 7: R0 holds 5–7, R1 6–7, R2 7. (2, R2) wins with
/// R1 and fills 5 with a no-op that only R2 persists. (3, R1) wins with R0;
/// its base has L1's 5; its base forward to R0 is lost. Acks from different
/// leaderships never add up: the mutant seeds `acked[R0]` from R0's vote
/// reply, counts 5 as chosen and applies it.
fn h1(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    s.propose(1, KvOp::Set { key: 5, value: 5 });
    s.drop_where(|m| m.from == 1);
    s.propose(1, KvOp::Set { key: 6, value: 6 });
    s.deliver(|m| m.from == 1 && m.to == 2);
    s.drop_where(|m| m.from == 1);
    s.propose(1, KvOp::Set { key: 7, value: 7 });
    s.deliver(|m| m.from == 1);
    s.drop_where(|m| m.from == 1 || m.to == 1);
    let held = |n: u64| s.replica(n).accepted().iter().filter(|&l| l >= 5).count();
    assert_eq!((held(1), held(2), held(3)), (3, 2, 1));
    // (2, R2) wins with R1; its forwards never leave.
    let r1r2 = within(&[2, 3]);
    s.run_until_with(t_min + 20 * MS, &r1r2, |_| false);
    s.campaign(3);
    let no_forward = |m: &InFlight| r1r2(m) && !is_forward(m);
    assert!(s.run_until_with(50 * MS, no_forward, |s| leads(s, 3)));
    // (3, R1) wins with R0; its base forward to R0 is lost.
    let r0r1 = |m: &InFlight| within(&[1, 2])(m) && !is_forward(m);
    s.run_until_with(t_min + 20 * MS, r0r1, |_| false);
    s.campaign(2);
    assert!(s.run_until_with(50 * MS, r0r1, |s| leads(s, 2)));
    s.run_until_with(20 * MS, r0r1, |_| false);
    s
}

#[test]
fn h1_acks_of_different_leaderships_never_add_up() {
    let s = h1(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(!s.replica(2).committed().contains(5));
}

#[test]
fn h1_mutant_seeding_acks_from_votes_is_caught() {
    let s = h1(Mutations {
        seed_acked_from_votes: true,
        ..Default::default()
    });
    assert_caught(&s, "never chosen");
}

/// S2: X@5 is acked by all and committed; B learns it, not durably; C
/// does not; A crashes, losing its own `committed` write too. C wins with B;
/// B reports its durable `committed`, so C's base forward carries X. The
/// mutant reports `committed` from memory, and installs a base forward
/// whatever `committed` it assumed: B restarts (5 no longer known
/// committed), installs C's base without 5 and drops X. C dies, A restarts
/// and grants B: B's base lacks 5. (I3 sees B lack C's base LSN 5 first.)
fn s2(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    let x = s.propose(1, KvOp::Set { key: 7, value: 1 });
    s.slow_disks.insert(1);
    s.deliver(|m| m.from == 1);
    s.deliver(|m| m.to == 1);
    assert!(succeeded(&s, x), "X committed and applied on A");
    // A's next forward tells B that 5 is committed; B's disk is slow.
    s.slow_disks.insert(2);
    s.advance(Script::params().heartbeat);
    s.deliver(|m| m.from == 1 && m.to == 2);
    assert!(s.replica(2).committed().contains(5));
    s.crash(1);
    s.slow_disks.remove(&1);
    // C wins with B (B's slot writes land, its WAL writes do not).
    s.drop_where(|_| true);
    let bc = within(&[2, 3]);
    let start = s.now();
    while s.now() < start + t_min + 20 * MS {
        s.complete_slot(2);
        s.deliver(&bc);
        s.advance(MS);
    }
    s.campaign(3);
    let start = s.now();
    while !leads(&s, 3) && s.now() < start + 50 * MS {
        s.complete_slot(2);
        s.deliver(&bc);
        s.advance(MS);
    }
    assert!(leads(&s, 3), "C won with B");
    // B restarts before C's base forward arrives, then installs what it can.
    s.crash_and_restart(2);
    s.slow_disks.clear();
    s.run_until_with(50 * MS, &bc, |_| false);
    // C dies; A returns and B campaigns with it.
    s.crash(3);
    s.restart(1);
    let ab = within(&[1, 2]);
    s.run_until_with(t_min + 40 * MS, &ab, |_| false);
    s.campaign(2);
    s.run_until_with(50 * MS, &ab, |s| leads(s, 2));
    s
}

#[test]
fn s2_committed_is_reported_only_once_durable() {
    let s = s2(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn s2_mutant_with_volatile_committed_is_caught() {
    let s = s2(Mutations {
        volatile_committed: true,
        ..Default::default()
    });
    assert_caught(&s, "lacks base LSN 5");
}

/// A follower that did not vote for the new leader gets a base holding only
/// what it lacks: the leader first sends empty forwards, which the follower
/// answers with "need base" and its `committed`. A base built on nothing
/// carries the whole log, and was resent every retransmit interval: behind
/// a link full of such copies, all stale by the time they arrived, a
/// lagging replica refused each one and never caught up (found by the
/// fault test on real processes).
#[test]
fn base_for_a_follower_that_did_not_vote_holds_only_what_it_lacks() {
    let t_min = Script::params().t_min;
    let mut s = led_by_a(3, Mutations::default());
    let ids: Vec<u64> = (0..40)
        .map(|v| s.propose(1, KvOp::Set { key: v, value: v }))
        .collect();
    assert!(
        s.run_until(300 * MS, |s| ids.iter().all(|&id| succeeded(s, id))
            && [2, 3]
                .iter()
                .all(|&n| s.replica(n).committed().count() == 40))
    );
    // B is cut off; A restarts (leadership is volatile), and C wins with A.
    let no_b = |m: &InFlight| m.from != 2 && m.to != 2;
    s.drop_where(|m| !no_b(m));
    s.crash_and_restart(1);
    s.run_until_with(t_min + 50 * MS, no_b, |_| false);
    let c = elect_among(&mut s, 3, &[1, 3]);
    let healed_at = s.sent.len();
    assert!(s.run_until(t_min, |s| s.replica(2).committer() == c));
    assert_eq!(s.violation, None);
    let to_b: Vec<_> = s.sent[healed_at..]
        .iter()
        .filter_map(|m| match &m.msg {
            Message::Forward(f) if m.from == 3 && m.to == 2 => Some(f),
            _ => None,
        })
        .collect();
    assert!(
        to_b.first()
            .is_some_and(|f| f.base.is_none() && f.records.is_empty()),
        "the leader asks before it sends a base"
    );
    let base_records: usize = to_b
        .iter()
        .filter(|f| f.base.is_some())
        .map(|f| f.records.len())
        .sum();
    assert!(
        base_records < 10,
        "B holds the 40 records committed: the base carried {base_records}"
    );
}

/// A forward whose record lies `LSN_REACH` or more past what the follower
/// holds is dropped as invalid: taken, the follower's sets would grow by
/// the whole gap (one record at LSN 2^60 asks for 2^54 words). The same
/// forward within reach is taken.
#[test]
fn a_forward_beyond_reach_is_dropped() {
    let mut s = three_led_by_a(Mutations::default());
    let forward = s
        .sent
        .iter()
        .rev()
        .find(|m| {
            m.from == 1
                && m.to == 2
                && matches!(&m.msg, Message::Forward(f) if !f.records.is_empty())
        })
        .cloned()
        .expect("a forward with records to B");
    let mut far = forward.clone();
    let Message::Forward(f) = &mut far.msg else {
        unreachable!()
    };
    let lsn = f.records[0].lsn + traft::bitmap::LSN_REACH;
    f.records[0].lsn = lsn;
    f.records[0].deps = traft::TailBitmap::new();
    s.pool.push(far);
    s.deliver(|m| m.to == 2);
    s.complete_disk(2);
    assert!(!s.replica(2).accepted().contains(lsn), "dropped");
    assert!(s.replica(2).status().contains("dropped out of reach 1"));
    assert_eq!(s.violation, None);
}
