//! SCENARIOS.md §3.4: dependencies and apply.

use crate::*;
use traft::core::Mutations;
use traft::sim::kv::KvOp;
use traft::sim::script::{Script, MS};

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
    assert_caught(&s, "dependency closure");
}

/// H9a: `SET k` at 0, a config change at 1, `SET k` at 2. The config
/// change is a barrier: 2 depends on all of `[0, 2)`. The mutant's deps for
/// 2 are `{0}`: a follower missing 1 could apply 2 first, and the closure
/// check fails (1 < 2 interfere, 1 is not in the closure of 2).
fn h9a(mutations: Mutations) -> Script {
    let mut s = led_by_a(3, mutations);
    let ids = [
        s.propose(1, KvOp::Set { key: 5, value: 1 }),
        s.propose_bytes(1, b"config change".to_vec()),
        s.propose(1, KvOp::Set { key: 5, value: 2 }),
    ];
    assert!(s.run_until(100 * MS, |s| ids.iter().all(|&id| succeeded(s, id))));
    s.final_checks();
    s
}

#[test]
fn h9a_config_change_is_a_barrier() {
    let s = h9a(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn h9a_mutant_without_barrier_is_caught() {
    let s = h9a(Mutations {
        no_barrier: true,
        ..Default::default()
    });
    assert_caught(&s, "dependency closure");
}
