//! SCENARIOS.md §3.1, leadership transfer: R5a, R5b, S5b, N2.

use crate::*;
use traft::core::{Message, Mutations, Params};
use traft::sim::kv::KvOp;
use traft::sim::script::{InFlight, Script, MS};

fn is_elect_req(m: &InFlight) -> bool {
    matches!(m.msg, Message::ElectReq { .. })
}

/// Five replicas led by A (node 1), with `k = 1` committed and applied.
fn five_led_by_a(params: Params, mutations: Mutations) -> Script {
    let mut s = Script::new(5, params.clone(), mutations);
    s.advance(params.t_min + 20 * MS);
    elect_among(&mut s, 1, &[1, 2, 3, 4, 5]);
    let id = s.propose(1, KvOp::Set { key: 1, value: 1 });
    assert!(s.run_until(100 * MS, |s| s.replies.get(&id).is_some_and(|r| r.is_ok())));
    s
}

/// R5a: A opens a transfer to B; C, D and E are sticky to A and grant B
/// only because A's latest forward carries the mark. Without the mark, the
/// transfer to a live, connected B never completes.
fn r5a(mutations: Mutations) -> Script {
    let params = Script::params();
    let mut s = five_led_by_a(params.clone(), mutations);
    s.transfer(1, 2);
    s.run_until(params.transfer_timeout, |s| leads(s, 2));
    s
}

#[test]
fn r5a_transfer_completes() {
    let s = r5a(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(leads(&s, 2), "B leads within the transfer timeout");
}

#[test]
fn r5a_mutant_without_mark_stalls() {
    let s = r5a(Mutations {
        no_transfer_mark: true,
        ..Default::default()
    });
    assert!(
        !leads(&s, 2),
        "liveness bound: the transfer must not complete"
    );
}

/// R5a, second mutant: B crashes once A opened the transfer. A cancels at
/// the transfer timeout and proposes again; without the cancel it never does.
fn r5a_target_crashes(mutations: Mutations) -> (Script, bool) {
    let params = Script::params();
    let mut s = five_led_by_a(params.clone(), mutations);
    s.transfer(1, 2);
    let marked = |m: &InFlight| match &m.msg {
        Message::Forward(f) => f.transfer_to == Some(2),
        _ => false,
    };
    assert!(s.run_until(50 * MS, |s| s.pool.iter().any(marked)));
    s.crash(2);
    s.run_until(params.transfer_timeout, |_| false);
    let id = s.propose(1, KvOp::Set { key: 1, value: 2 });
    let answered = s.run_until(200 * MS, |s| s.replies.get(&id).is_some_and(|r| r.is_ok()));
    (s, answered)
}

#[test]
fn r5a_transfer_to_a_dead_target_is_cancelled() {
    let (s, answered) = r5a_target_crashes(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(answered, "A proposes again after the cancel");
}

#[test]
fn r5a_mutant_without_cancel_stalls() {
    let (_, answered) = r5a_target_crashes(Mutations {
        no_transfer_cancel: true,
        ..Default::default()
    });
    assert!(!answered, "liveness bound: the mutant must stall");
}

/// S5b: A opens a transfer to B and is then cut off. B wins with the
/// voters' stickiness lifted by the mark and commits `k = 2`. A's lease has
/// not run out, but it must not serve lease reads while a transfer is open.
fn s5b(mutations: Mutations) -> Script {
    let mut s = five_led_by_a(Script::params(), mutations);
    s.transfer(1, 2);
    // The marked forwards reach everyone; then A is cut off.
    s.deliver(|m| m.from == 1);
    assert_eq!(s.replica(2).vote().node, 2, "B campaigned");
    let without_a = |m: &InFlight| m.from != 1 && m.to != 1;
    assert!(s.run_until_with(100 * MS, without_a, |s| leads(s, 2)));
    let id = s.propose(2, KvOp::Set { key: 1, value: 2 });
    assert!(s.run_until_with(50 * MS, without_a, |s| s
        .replies
        .get(&id)
        .is_some_and(|r| r.is_ok())));
    let read = s.read(1, KvOp::Get { key: 1 });
    s.run_until_with(50 * MS, without_a, |s| s.reads.contains_key(&read));
    s
}

#[test]
fn s5b_no_lease_reads_during_a_transfer() {
    let s = s5b(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn s5b_mutant_serving_lease_reads_is_caught() {
    let s = s5b(Mutations {
        lease_reads_in_transfer: true,
        ..Default::default()
    });
    assert_caught(&s, "stale read");
}

/// R5b: A opens a transfer to B; B's requests to C and D are held back. A
/// cancels, and C and D echo forwards sent after the cancel: A has a new
/// lease. The held requests arrive; C and D, whose latest forward from A has
/// no mark, must refuse. Cut off from A, the mutant grants, B commits
/// `k = 2`, and A serves a lease read of `k = 1`.
fn r5b(mutations: Mutations) -> Script {
    let mut params = Script::params();
    // Short enough that B is still a candidate when its requests arrive.
    params.transfer_timeout = 60 * MS;
    let mut s = five_led_by_a(params, mutations);
    s.transfer(1, 2);
    let from_b_req = |m: &InFlight| m.from == 2 && is_elect_req(m);
    s.deliver(|m| !from_b_req(m));
    assert_eq!(s.replica(2).vote().node, 2, "B campaigned");
    let held: Vec<InFlight> = s
        .pool
        .iter()
        .filter(|m| from_b_req(m) && (m.to == 3 || m.to == 4))
        .cloned()
        .collect();
    assert_eq!(held.len(), 2);
    s.drop_where(from_b_req);
    // A cancels and renews its lease; B stays silent.
    s.run_until_with(100 * MS, |m| m.from != 2, |_| false);
    // The held requests arrive; A is cut off from here on.
    s.pool.extend(held);
    let bcd = |m: &InFlight| [2, 3, 4].contains(&m.from) && [2, 3, 4].contains(&m.to);
    if s.run_until_with(50 * MS, bcd, |s| leads(s, 2)) {
        let id = s.propose(2, KvOp::Set { key: 1, value: 2 });
        s.run_until_with(50 * MS, bcd, |s| s.replies.contains_key(&id));
    }
    let read = s.read(1, KvOp::Get { key: 1 });
    s.run_until_with(20 * MS, bcd, |s| s.reads.contains_key(&read));
    s
}

#[test]
fn r5b_cancelled_transfer_lifts_no_stickiness() {
    let s = r5b(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(!leads(&s, 2));
}

#[test]
fn r5b_mutant_granting_on_transfer_from_alone_is_caught() {
    let s = r5b(Mutations {
        transfer_from_alone: true,
        ..Default::default()
    });
    assert_caught(&s, "stale read");
}

/// N2: A opens a transfer to B (three replicas). B's slot write of its
/// vote is slow; meanwhile A's heartbeat reaches B and is refused with B's
/// vote. A must not take this for a failed candidate's refusal: the mutant
/// re-elects as (3,A) with C (same-node exemption) and the transfer never
/// completes.
fn n2(mutations: Mutations) -> Script {
    let params = Script::params();
    let mut s = Script::new(3, params.clone(), mutations);
    s.advance(params.t_min + 20 * MS);
    elect_among(&mut s, 1, &[1, 2, 3]);
    let id = s.propose(1, KvOp::Set { key: 1, value: 1 });
    assert!(s.run_until(100 * MS, |s| s.replies.get(&id).is_some_and(|r| r.is_ok())));
    s.auto_disk = false;
    s.transfer(1, 2);
    assert!(s.run_until(50 * MS, |s| s.replica(2).vote().node == 2));
    // B's slot write hangs for longer than A's re-election delay could be.
    for _ in 0..params.t_min / MS {
        s.complete_disk(1);
        s.complete_disk(3);
        s.deliver(|_| true);
        s.advance(MS);
    }
    s.auto_disk = true;
    s.complete_disk(1);
    s.complete_disk(2);
    s.complete_disk(3);
    s.run_until(params.transfer_timeout, |s| leads(s, 2));
    s
}

#[test]
fn n2_target_refusal_does_not_reelect() {
    let s = n2(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(leads(&s, 2), "B leads");
}

#[test]
fn n2_mutant_reelecting_stalls_the_transfer() {
    let s = n2(Mutations {
        transfer_refusal_reelects: true,
        ..Default::default()
    });
    assert!(
        !leads(&s, 2),
        "liveness bound: the transfer must not complete"
    );
}
