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
