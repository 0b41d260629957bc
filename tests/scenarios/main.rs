//! Scripted scenarios: fixed losses, delays, disk completion orders and
//! crashes. Each passes with the protocol's rules in place; where a rule has
//! a test-only switch, its mutant must be caught by the simulator's checks.

use traft::core::Mutations;
use traft::sim::kv::KvOp;
use traft::sim::script::{InFlight, Script, MS};
use traft::{LeaderId, Lsn, NodeId};

pub fn is_ack(m: &InFlight) -> bool {
    matches!(m.msg, traft::core::Message::Ack { .. })
}

pub fn is_forward(m: &InFlight) -> bool {
    matches!(m.msg, traft::core::Message::Forward(_))
}

/// Lets `node` campaign with every message delivered among `group`, until it
/// leads and every live member of `group` follows its base.
pub fn elect_among(s: &mut Script, node: NodeId, group: &[NodeId]) -> LeaderId {
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
pub fn campaign_among(s: &mut Script, node: NodeId, group: &[NodeId]) -> LeaderId {
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

/// Whether `node` is up and an established leader.
pub fn leads(s: &Script, node: NodeId) -> bool {
    s.is_up(node) && s.replica(node).established_leader().is_some()
}

/// Whether proposal `id` was answered with success.
pub fn succeeded(s: &Script, id: u64) -> bool {
    s.replies.get(&id).is_some_and(|r| r.is_ok())
}

/// Messages between members of `group` only (a partition).
pub fn within(group: &'static [NodeId]) -> impl Fn(&InFlight) -> bool {
    move |m| group.contains(&m.from) && group.contains(&m.to)
}

/// `n` replicas, past their start-up stickiness, with node 1 (A) elected
/// by all.
pub fn led_by_a(n: u64, mutations: Mutations) -> Script {
    let mut s = Script::new(n, Script::params(), mutations);
    s.advance(Script::params().t_min + 20 * MS);
    let all: Vec<NodeId> = (1..=n).collect();
    elect_among(&mut s, 1, &all);
    s
}

/// The scenario's checks caught the mutant, with a violation naming `what`.
pub fn assert_caught(s: &Script, what: &str) {
    let violation = s.violation.as_ref().expect("the mutant must be caught");
    assert!(violation.contains(what), "{violation}");
}

/// A, B, C (nodes 1–3) with A leading and LSNs 0..5 committed everywhere.
pub fn three_led_by_a(mutations: Mutations) -> Script {
    let mut s = led_by_a(3, mutations);
    let ids: Vec<u64> = (0..5)
        .map(|v| s.propose(1, KvOp::Set { key: v, value: v }))
        .collect();
    assert!(
        s.run_until(100 * MS, |s| ids.iter().all(|&id| succeeded(s, id))
            && [2, 3]
                .iter()
                .all(|&n| s.replica(n).committed().count() == 5))
    );
    s
}

pub fn lsn_of(s: &Script, node: NodeId, op: KvOp) -> Lsn {
    let cmd = op.encode();
    *s.replica(node)
        .log()
        .iter()
        .find(|(_, r)| r.cmd == cmd)
        .expect("proposed record")
        .0
}

mod deps;
mod election;
mod forward;
mod merge;
mod read;
mod seed_readme;
mod snapshot;
mod transfer;
