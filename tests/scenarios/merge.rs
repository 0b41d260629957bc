//! SCENARIOS.md §3.2: merge.

use crate::*;
use traft::core::Mutations;
use traft::sim::kv::KvOp;
use traft::sim::script::{InFlight, Script, MS};

/// H11: L proposes SET k=1 (chosen), SET k=2 (deps on it, only on L), SET
/// k=3 (deps on the second, chosen). L dies; the new leader fills the hole
/// with a no-op. With empty no-op deps, k=3 no longer depends on k=1: the
/// dependency-closure check fails. L, F, G are nodes 1, 2, 3.
fn h11(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = led_by_a(3, mutations);
    let no_f = |m: &InFlight| m.to != 2 && m.from != 2;
    let k1 = KvOp::Set { key: 9, value: 1 };
    s.propose(1, k1);
    assert!(s.run_until_with(100 * MS, no_f, |s| s
        .replica(1)
        .committed()
        .contains(lsn_of(s, 1, k1))));
    // k=2 stays on L.
    let k2 = KvOp::Set { key: 9, value: 2 };
    s.propose(1, k2);
    s.drop_where(|m| m.from == 1);
    let k3 = KvOp::Set { key: 9, value: 3 };
    s.propose(1, k3);
    let (b, c) = (lsn_of(&s, 1, k2), lsn_of(&s, 1, k3));
    assert!(s.replica(1).record(c).unwrap().deps.contains(b));
    assert!(s.run_until_with(5 * MS, no_f, |s| s.replica(1).committed().contains(c)));
    assert!(s.record_at(3, b).is_none());
    s.crash(1);
    s.run_until_with(2 * t_min, |_| false, |_| false);
    elect_among(&mut s, 3, &[2, 3]);
    let inside = |m: &InFlight| m.from != 1 && m.to != 1;
    assert!(s.run_until_with(500 * MS, inside, |s| s.replica(2).applied().contains(c)));
    assert_eq!(s.kv(2).data.get(&9), Some(&3));
    s.final_checks();
    s
}

#[test]
fn h11_noop_depends_on_every_earlier_lsn() {
    let s = h11(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn h11_mutant_noop_without_deps_is_caught() {
    let s = h11(Mutations {
        noop_empty_deps: true,
        ..Default::default()
    });
    assert_caught(&s, "dependency closure");
}

/// T3: {A, B} choose X@5; C lacks it. C raises its vote to (2, C); B
/// refuses it as staler, so C never leads. The mutant forwards at once,
/// before any election or merge: its base (its own log, max 4) makes B,
/// which never learned 5 is committed, drop X, and {B, C} choose Y@5.
fn t3(mutations: Mutations) -> Script {
    let mut s = three_led_by_a(Mutations::default());
    let x = KvOp::Set { key: 7, value: 1 };
    s.propose(1, x);
    let ab = within(&[1, 2]);
    assert!(s.run_until_with(50 * MS, ab, |s| s.replica(1).committed().count() == 6));
    // A is cut off before B learns 5 is committed.
    s.drop_where(|m| m.from == 1);
    s.mutate(3, mutations);
    s.campaign(3);
    let bc = within(&[2, 3]);
    s.run_until_with(50 * MS, &bc, |s| leads(s, 3));
    if leads(&s, 3) {
        s.propose(3, KvOp::Set { key: 7, value: 2 });
        s.run_until_with(50 * MS, &bc, |_| false);
    }
    s
}

#[test]
fn t3_no_forward_before_the_merge() {
    let s = t3(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(!leads(&s, 3), "B refuses the staler C");
}

#[test]
fn t3_mutant_forwarding_before_merging_is_caught() {
    let s = t3(Mutations {
        skip_merge: true,
        ..Default::default()
    });
    let violation = s.violation.expect("the mutant must be caught");
    assert!(
        violation.contains("never wrote a merge frame"),
        "{violation}"
    );
}

/// N8b: A proposes X@0 and X'@1; 1 reaches B and C, 0 only A's disk. B
/// wins with {B, C} and fills 0 with a no-op; A installs that base and
/// applies the no-op at 0. X's client must hear "outcome unknown": the
/// mutant keys pending proposals by LSN alone and answers it OK.
fn n8b(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = led_by_a(3, mutations);
    let x = s.propose(1, KvOp::Set { key: 1, value: 1 });
    s.drop_where(|m| m.from == 1);
    let x2 = s.propose(1, KvOp::Set { key: 2, value: 1 });
    assert!(s.run_until_with(
        5 * MS,
        |m| !is_ack(m) || m.to != 1,
        |s| s.replica(2).accepted().contains(1) && s.replica(3).accepted().contains(1)
    ));
    assert!(!s.replica(2).accepted().contains(0));
    // A is cut off; B wins with C and fills 0 with a no-op.
    s.drop_where(|m| m.from == 1 || m.to == 1);
    let bc = within(&[2, 3]);
    s.run_until_with(t_min + 20 * MS, &bc, |_| false);
    s.campaign(2);
    assert!(s.run_until_with(100 * MS, &bc, |s| leads(s, 2)
        && s.replica(2).applied().contains(0)));
    // A comes back and installs B's base.
    assert!(s.run_until(100 * MS, |s| s.replica(1).applied().contains(0)));
    assert!(s.replies.contains_key(&x), "X's client has an answer");
    let _ = x2;
    s
}

#[test]
fn n8b_replaced_proposal_is_outcome_unknown() {
    let s = n8b(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s
        .replies
        .values()
        .any(|r| matches!(r, Err(traft::core::ProposeError::OutcomeUnknown))));
}

#[test]
fn n8b_mutant_keyed_by_lsn_is_caught() {
    let s = n8b(Mutations {
        proposals_by_lsn: true,
        ..Default::default()
    });
    assert_caught(&s, "lost acknowledged write");
}

/// A7: {A, C} choose X@5. A dies; C wins with B. Its merge frame is one
/// write, so recovery sees all of the base or none. The mutant writes the
/// lower half as a frame of its own: recovered alone, it is a base without
/// X (the checks see that base lack chosen LSNs as soon as it is written).
fn a7(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(Mutations::default());
    let x = s.propose(1, KvOp::Set { key: 7, value: 1 });
    assert!(s.run_until_with(50 * MS, within(&[1, 3]), |s| succeeded(s, x)));
    s.crash(1);
    s.mutate(3, mutations);
    let bc = within(&[2, 3]);
    s.run_until_with(t_min + 20 * MS, &bc, |_| false);
    s.campaign(3);
    s.run_until_with(50 * MS, &bc, |s| leads(s, 3));
    s
}

#[test]
fn a7_merge_frame_is_one_write() {
    let s = a7(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(leads(&s, 3));
}

#[test]
fn a7_mutant_splitting_the_merge_frame_is_caught() {
    let s = a7(Mutations {
        split_merge_frame: true,
        ..Default::default()
    });
    assert_caught(&s, "merged a base without LSN");
}
