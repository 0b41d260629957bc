//! The seed README's own scenario.

use crate::*;
use traft::core::Mutations;
use traft::sim::kv::KvOp;
use traft::sim::script::{InFlight, Script, MS};

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
