//! Scripted scenarios: fixed losses, delays, disk completion orders and
//! crashes. Each passes with the protocol's rules in place; where a rule has
//! a test-only switch, its mutant must be caught by the simulator's checks.

use traft::core::Mutations;
use traft::sim::kv::KvOp;
use traft::sim::script::{InFlight, Script, MS};
use traft::{LeaderId, Lsn, NodeId};

fn is_ack(m: &InFlight) -> bool {
    matches!(m.msg, traft::core::Message::Ack { .. })
}

/// Lets `node` campaign with every message delivered among `group`, until it
/// leads and every live member of `group` follows its base.
fn elect_among(s: &mut Script, node: NodeId, group: &[NodeId]) -> LeaderId {
    let c = campaign_among(s, node, group);
    let inside = |m: &InFlight| group.contains(&m.from) && group.contains(&m.to);
    let followers: Vec<NodeId> = group.iter().copied().filter(|&n| n != node).collect();
    assert!(s.run_until_with(2_000 * MS, inside, |s| {
        followers
            .iter()
            .all(|&f| !s.is_up(f) || s.replica(f).committer() == c)
    }));
    c
}

/// Lets `node` campaign (again after a refusal) with messages delivered
/// among `group` until it is an established leader.
fn campaign_among(s: &mut Script, node: NodeId, group: &[NodeId]) -> LeaderId {
    let inside = |m: &InFlight| group.contains(&m.from) && group.contains(&m.to);
    for _ in 0..5 {
        s.campaign(node);
        let won = s.run_until_with(2 * Script::params().t_min, inside, |s| {
            s.replica(node).established_leader().is_some()
        });
        if won {
            return s.replica(node).established_leader().unwrap();
        }
    }
    panic!("node {node} was not elected: {:?}", s.violation);
}

fn lsn_of(s: &Script, node: NodeId, op: KvOp) -> Lsn {
    let cmd = op.encode();
    *s.replica(node)
        .log()
        .iter()
        .find(|(_, r)| r.cmd == cmd)
        .expect("proposed record")
        .0
}

/// The seed README's scenario: L1 writes A to R0–R2; L2 on R3 sees A,
/// writes B, crashes; L3, elected via {R2,R3} or via {R0,R1}, holds A.
/// R0..R4 are nodes 1..5.
fn seed_scenario(l3_via_r0_r1: bool) -> Script {
    let mut s = Script::new(5, Script::params(), Mutations::default());
    s.advance(Script::params().t_min + 20 * MS);
    let all = [1, 2, 3, 4, 5];
    let l1 = elect_among(&mut s, 1, &all);
    // L1 writes A to R0–R2 (and R3 sees it, its ack lost); R4 gets nothing.
    let a = KvOp::Set { key: 7, value: 1 };
    s.propose(1, a);
    let reach = |m: &InFlight| m.to != 5 && m.from != 5 && !(m.from == 4 && is_ack(m));
    assert!(s.run_until_with(200 * MS, reach, |s| {
        [1, 2, 3, 4]
            .iter()
            .all(|&n| s.replica(n).log().values().any(|r| r.cmd == a.encode()))
            && s.replica(1).committed().contains(lsn_of(s, 1, a))
    }));
    let a_lsn = lsn_of(&s, 1, a);
    assert_eq!(s.replica(1).established_leader(), Some(l1));
    // R0, R1 are cut off; L2 on R3 is elected by {R2, R3, R4} and sees A.
    let right = [3, 4, 5];
    let within = |m: &InFlight| right.contains(&m.from) == right.contains(&m.to);
    s.run_until_with(3 * Script::params().t_min, within, |_| false);
    // L2's forwards never leave R3.
    s.campaign(4);
    let no_forward = |m: &InFlight| {
        within(m) && !(m.from == 4 && matches!(m.msg, traft::core::Message::Forward(_)))
    };
    assert!(s.run_until_with(500 * MS, no_forward, |s| s
        .replica(4)
        .established_leader()
        .is_some()));
    let l2 = s.replica(4).established_leader().unwrap();
    assert!(l2 > l1);
    assert_eq!(s.record_at(4, a_lsn).map(|r| r.cmd), Some(a.encode()));
    // L2 writes B and crashes before any of it reaches another replica.
    s.drop_where(|m| m.from == 4);
    s.propose(4, KvOp::Set { key: 7, value: 2 });
    s.drop_where(|m| m.from == 4);
    s.crash(4);
    s.run_until_with(3 * Script::params().t_min, |_| false, |_| false);
    let (l3_node, group): (NodeId, Vec<NodeId>) = if l3_via_r0_r1 {
        (2, vec![1, 2, 5])
    } else {
        s.restart(4);
        s.run_until_with(3 * Script::params().t_min, |_| false, |_| false);
        (4, vec![3, 4, 5])
    };
    let l3 = campaign_among(&mut s, l3_node, &group);
    assert!(l3 > l2);
    assert_eq!(
        s.record_at(l3_node, a_lsn).map(|r| r.cmd),
        Some(a.encode()),
        "L3 lost A"
    );
    s.final_checks();
    s
}

#[test]
fn seed_readme_l3_via_r2_r3_holds_a() {
    let s = seed_scenario(false);
    assert_eq!(s.violation, None);
}

#[test]
fn seed_readme_l3_via_r0_r1_holds_a() {
    let s = seed_scenario(true);
    assert_eq!(s.violation, None);
}

/// N8a: C grants (1,A) but the reply is delayed; A's campaign times out. B
/// wins with {B,C} and chooses X. A campaigns again; the delayed grant of its
/// earlier campaign arrives. Counting it, A wins {A,C} with a base that lacks
/// X. A, B, C are nodes 1, 2, 3.
fn n8a(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = Script::new(3, Script::params(), mutations);
    s.advance(t_min + 20 * MS);
    s.campaign(1);
    let first = s.replica(1).vote();
    // A's request reaches C only; C's grant is held back.
    s.deliver(|m| m.from == 1 && m.to == 3);
    s.drop_where(|m| m.from == 1);
    let held: Vec<InFlight> = s
        .pool
        .iter()
        .filter(|m| m.from == 3 && m.to == 1)
        .cloned()
        .collect();
    assert_eq!(held.len(), 1, "C granted A's first campaign");
    s.drop_where(|m| m.from == 3 && m.to == 1);
    // A is cut off from here on. B wins with {B, C} and chooses X.
    let without_a = |m: &InFlight| m.from != 1 && m.to != 1;
    let b = elect_among(&mut s, 2, &[2, 3]);
    assert!(b > first);
    s.propose(2, KvOp::Set { key: 1, value: 42 });
    assert!(s.run_until_with(200 * MS, without_a, |s| !s
        .replica(2)
        .committed()
        .is_empty()));
    // A's campaign times out; it campaigns again, still cut off.
    s.run_until_with(3 * t_min, without_a, |_| false);
    assert!(s.replica(1).vote() > first, "A campaigned again");
    // The delayed grant of its first campaign arrives.
    s.pool.extend(held);
    s.deliver(|m| m.to == 1);
    s.run_until_with(50 * MS, without_a, |_| false);
    s
}

#[test]
fn n8a_stale_grant_is_ignored() {
    let s = n8a(Mutations::default());
    assert_eq!(s.violation, None);
    assert_eq!(s.replica(1).established_leader(), None);
}

#[test]
fn n8a_mutant_counting_stale_grants_is_caught() {
    let s = n8a(Mutations {
        accept_stale_replies: true,
        ..Default::default()
    });
    let violation = s.violation.expect("the mutant must be caught");
    assert!(violation.contains("without LSN"), "{violation}");
}

/// H11: L proposes SET k=1 (chosen), SET k=2 (deps on it, only on L), SET
/// k=3 (deps on the second, chosen). L dies; the new leader fills the hole
/// with a no-op. With empty no-op deps, k=3 no longer depends on k=1: the
/// dependency-closure check fails. L, F, G are nodes 1, 2, 3.
fn h11(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = Script::new(3, Script::params(), mutations);
    s.advance(t_min + 20 * MS);
    elect_among(&mut s, 1, &[1, 2, 3]);
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
    let violation = s.violation.expect("the mutant must be caught");
    assert!(violation.contains("dependency closure"), "{violation}");
}

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
    let violation = s.violation.expect("the mutant must be caught");
    assert!(violation.contains("without LSN"), "{violation}");
}

/// H6: leader A proposes X; B and C make it durable and ack (X is chosen); A
/// crashes before its own write completes. Restarted as the same leader, A
/// has nothing at X's LSN and proposes Y there. A, B, C are nodes 1, 2, 3.
fn h6(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = Script::new(3, Script::params(), mutations);
    s.advance(t_min + 20 * MS);
    let c = elect_among(&mut s, 1, &[1, 2, 3]);
    s.auto_disk = false;
    let x = KvOp::Set { key: 3, value: 50 };
    s.propose(1, x);
    s.deliver(|m| m.from == 1);
    s.complete_disk(2);
    s.complete_disk(3);
    s.deliver(|m| m.to == 1);
    let x_lsn = lsn_of(&s, 2, x);
    assert!(
        s.replica(1).committed().contains(x_lsn),
        "X is chosen by B and C"
    );
    assert!(
        s.replica(1).log().get(&x_lsn).is_none(),
        "A's own write is still in flight"
    );
    s.crash(1);
    s.auto_disk = true;
    s.restart(1);
    if s.replica(1).established_leader() == Some(c) {
        // The mutant is back as `c` and proposes at the next LSN it sees free.
        s.propose(1, KvOp::Set { key: 3, value: 51 });
    } else {
        s.run_until_with(3 * t_min, |_| true, |_| false);
        campaign_among(&mut s, 2, &[1, 2, 3]);
    }
    s
}

#[test]
fn h6_restart_never_resumes_leadership() {
    let s = h6(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s.replica(1).established_leader().is_none());
}

#[test]
fn h6_mutant_resuming_leadership_is_caught() {
    let s = h6(Mutations {
        resume_leadership: true,
        ..Default::default()
    });
    let violation = s.violation.expect("the mutant must be caught");
    assert!(violation.contains("two contents"), "{violation}");
}

/// H9b: SET k=1; read-only GET k (deps on the SET); SET k=2, which must
/// depend on the GET too, or a replica may apply it before the GET and the
/// GET returns 2.
fn h9b(mutations: Mutations) -> Script {
    let mut s = Script::new(3, Script::params(), mutations);
    s.advance(Script::params().t_min + 20 * MS);
    elect_among(&mut s, 1, &[1, 2, 3]);
    s.propose(1, KvOp::Set { key: 4, value: 1 });
    let get = s.propose(1, KvOp::Get { key: 4 });
    s.propose(1, KvOp::Set { key: 4, value: 2 });
    assert!(s.run_until(500 * MS, |s| s.replies.len() == 3));
    let reply = s.replies[&get].clone().expect("GET answered");
    assert_eq!(reply.output, 1u64.to_le_bytes());
    s.final_checks();
    s
}

#[test]
fn h9b_write_depends_on_reads_since_the_last_write() {
    let s = h9b(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn h9b_mutant_ignoring_reads_is_caught() {
    let s = h9b(Mutations {
        deps_ignore_reads: true,
        ..Default::default()
    });
    let violation = s.violation.expect("the mutant must be caught");
    assert!(violation.contains("dependency closure"), "{violation}");
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
