//! §3.5 reads: where a leader's lease may start.

use crate::*;

/// H8: a wins (1,a) with b's grant; b has seen no forward from a, so it is
/// not sticky and also grants c's greater (1,c). c wins with {b, c} and
/// commits k=2. a hears nothing more. The mutant starts a's lease at its
/// election and serves a read from it, returning the k before c's write.
fn h8(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = Script::new(3, Script::params(), mutations);
    s.advance(t_min + 20 * MS);
    s.campaign(1);
    let ab_votes = |m: &InFlight| matches!((m.from, m.to), (1, 2) | (2, 1)) && !is_forward(m);
    assert!(
        s.run_until_with(50 * MS, ab_votes, |s| leads(s, 1)),
        "a won with b"
    );
    let bc = within(&[2, 3]);
    s.campaign(3);
    assert!(
        s.run_until_with(50 * MS, &bc, |s| leads(s, 3)),
        "c won with b"
    );
    assert!(s.replica(2).vote() > s.replica(1).vote(), "b moved on to c");
    let id = s.propose(3, KvOp::Set { key: 1, value: 2 });
    assert!(s.run_until_with(50 * MS, &bc, |s| succeeded(s, id)));
    let read = s.read(1, KvOp::Get { key: 1 });
    s.run_until_with(20 * MS, &bc, |s| s.reads.contains_key(&read));
    s
}

#[test]
fn h8_no_lease_from_an_election() {
    let s = h8(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s.reads.is_empty(), "a cannot confirm its leadership");
}

#[test]
fn h8_mutant_lease_at_election_is_caught() {
    let s = h8(Mutations {
        lease_at_election: true,
        ..Default::default()
    });
    assert_caught(&s, "stale read");
}

/// S4: A's heartbeat h1 reaches B, whose echo of it is held back; from then
/// on everything to and from A is lost. B's stickiness runs out, C wins with
/// B and commits k=2. Then B's echo of h1 reaches A. The lease runs from h1's
/// send time, long past; the mutant credits the echo to A's latest send and
/// serves a read of the old k.
fn s4(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    s.drop_where(|m| m.from == 1 || m.to == 1);
    let mut held: Vec<InFlight> = Vec::new();
    let start = s.now();
    while held.is_empty() && s.now() < start + 200 * MS {
        s.deliver(|m| m.from == 1 && m.to == 2 && is_forward(m));
        held.extend(
            s.pool
                .iter()
                .filter(|m| m.from == 2 && m.to == 1 && is_ack(m))
                .cloned(),
        );
        s.drop_where(|m| m.from == 1 || m.to == 1);
        s.advance(MS);
    }
    assert!(!held.is_empty(), "B echoed A's heartbeat");
    let bc = within(&[2, 3]);
    s.run_until_with(t_min + 20 * MS, &bc, |_| false);
    s.campaign(3);
    assert!(
        s.run_until_with(100 * MS, &bc, |s| leads(s, 3)),
        "C won with B"
    );
    let id = s.propose(3, KvOp::Set { key: 1, value: 2 });
    assert!(s.run_until_with(50 * MS, &bc, |s| succeeded(s, id)));
    // Long after it was sent, B's echo of h1 arrives.
    s.pool.extend(held);
    s.deliver(|m| m.to == 1);
    assert!(leads(&s, 1), "A, cut off, still thinks it leads");
    let read = s.read(1, KvOp::Get { key: 1 });
    s.run_until_with(20 * MS, &bc, |s| s.reads.contains_key(&read));
    s
}

#[test]
fn s4_lease_from_the_echoed_send() {
    let s = s4(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s.reads.is_empty(), "A's lease lapsed long ago");
}

#[test]
fn s4_mutant_lease_from_the_latest_send_is_caught() {
    let s = s4(Mutations {
        lease_from_latest_send: true,
        ..Default::default()
    });
    assert_caught(&s, "stale read");
}
