//! §3.5 reads: where a leader's lease may start.

use crate::*;
use traft::core::Params;

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

/// N7: A's clock runs slow (1 − ρ), B's and C's fast (1 + ρ). A confirms
/// its leadership with a round at T0 (B and C echo at once) and is then cut
/// off. B's and C's stickiness ends `T_min / (1 + ρ)` of real time after
/// T0; one tick later C wins with B and commits k=2, and A is asked to read
/// k. The lease `T_min (1 − ρ) / (1 + ρ)` of A's clock ended before that;
/// the mutant's `T_min (1 − ρ)` lasts ≈ `T_min` of real time and serves the
/// old k.
fn n7(mutations: Mutations) -> Script {
    // ρ = 5%: the gap the mutant opens is then wide enough for a commit and
    // a later read.
    let t_min = Script::params().t_min;
    let params = Params {
        rho_ppm: 50_000,
        drift_allowance: 2 * t_min * 50_000 / 1_000_000 + 10 * MS,
        ..Script::params()
    };
    let rho = params.rho_ppm as i64;
    let mut s = Script::new(3, params.clone(), mutations);
    s.clock_ppm.insert(1, -rho);
    s.clock_ppm.insert(2, rho);
    s.clock_ppm.insert(3, rho);
    s.advance(params.t_min + 40 * MS);
    elect_among(&mut s, 1, &[1, 2, 3]);
    let id = s.propose(1, KvOp::Set { key: 1, value: 1 });
    assert!(s.run_until(50 * MS, |s| succeeded(s, id)));
    s.run_until(30 * MS, |_| false);
    // T0: a round, delivered at once; then A is cut off.
    let confirm = s.read(1, KvOp::Get { key: 1 });
    s.deliver(|_| true);
    assert!(s.reads.contains_key(&confirm), "the round confirmed A");
    s.drop_where(|_| true);
    let t0 = s.now();
    let sticky_real = params.t_min * 1_000_000 / (1_000_000 + params.rho_ppm);
    let no_a = |m: &InFlight| m.from != 1 && m.to != 1;
    while s.now() <= t0 + sticky_real {
        s.advance(MS);
        s.deliver(no_a);
        s.drop_where(|m| !no_a(m));
    }
    s.campaign(3);
    s.deliver(no_a);
    assert!(leads(&s, 3), "C won with B as soon as B's stickiness ended");
    let id = s.propose(3, KvOp::Set { key: 1, value: 2 });
    s.deliver(no_a);
    assert!(succeeded(&s, id), "k=2 committed at once");
    assert!(leads(&s, 1), "A, cut off, still thinks it leads");
    s.drop_where(|m| !no_a(m));
    s.advance(MS);
    s.read(1, KvOp::Get { key: 1 });
    s.drop_where(|m| !no_a(m));
    assert!(
        s.now() < t0 + params.t_min,
        "still inside the mutant's lease"
    );
    s
}

#[test]
fn n7_lease_allows_for_clock_drift() {
    let s = n7(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn n7_mutant_lease_ignoring_drift_is_caught() {
    let s = n7(Mutations {
        lease_ignores_drift: true,
        ..Default::default()
    });
    assert_caught(&s, "stale read");
}

/// R4: k=1, j=1 applied at leader A. A read of both keys is handed out and
/// reads k; while it runs, A commits a write of k=2, j=2. The rule holds
/// that write's apply until the read ends, so the read returns (1, 1); the
/// mutant applies it at once and the read returns (1, 2), a state that
/// never existed.
fn r4(mutations: Mutations) -> Script {
    let mut s = three_led_by_a(mutations);
    let (k, j) = (7, 8);
    let set = s.propose(
        1,
        KvOp::Set2 {
            keys: [k, j],
            value: 1,
        },
    );
    assert!(s.run_until(100 * MS, |s| succeeded(s, set)));
    s.slow_reads = true;
    let read = s.read(1, KvOp::Get2 { keys: [k, j] });
    assert!(
        s.run_until(100 * MS, |s| s.running_reads() > 0),
        "the read is handed out"
    );
    let write = s.propose(
        1,
        KvOp::Set2 {
            keys: [k, j],
            value: 2,
        },
    );
    // Committed on a quorum either way; applied only if nothing holds it.
    s.run_until(50 * MS, |s| s.replica(1).committed().count() >= 7);
    assert!(
        s.replica(1).committed().count() >= 7,
        "the write is committed"
    );
    s.finish_read(read);
    assert!(s.run_until(100 * MS, |s| succeeded(s, write)));
    s
}

fn pair(value: &[u8]) -> (u64, u64) {
    let word = |i: usize| u64::from_le_bytes(value[i * 8..i * 8 + 8].try_into().unwrap());
    (word(0), word(1))
}

#[test]
fn r4_a_read_is_atomic_with_respect_to_one_apply() {
    let s = r4(Mutations::default());
    assert_eq!(s.violation, None);
    let value = s.reads.values().next().expect("served");
    assert_eq!(pair(value), (1, 1));
}

#[test]
fn r4_mutant_applying_under_a_running_read_is_caught() {
    let s = r4(Mutations {
        reads_dont_hold_writes: true,
        ..Default::default()
    });
    assert_caught(&s, "torn read");
    let value = s.reads.values().next().expect("served");
    assert_eq!(pair(value), (1, 2));
}
