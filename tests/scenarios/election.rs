//! SCENARIOS.md §3.1: elections.

use crate::*;
use traft::core::Mutations;
use traft::sim::kv::KvOp;
use traft::sim::script::{InFlight, Script, MS};

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
    // A's campaign times out; it campaigns again, still cut off (a yes
    // from C to its probe, sent before C took B's base, arrived late).
    s.run_until_with(3 * t_min, without_a, |_| false);
    s.campaign(1);
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
    assert_caught(&s, "without LSN");
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
    assert_caught(&s, "two contents");
}

/// S5a: A leads with a lease resting on B's echo; C has been cut off from
/// A for longer than its stickiness. B restarts: for `T_min` plus the drift
/// allowance it refuses every vote, so C cannot win while A's lease may
/// still count on B. The mutant grants at once; C commits `k = 2` and A
/// serves a lease read of `k = 1`.
fn s5a(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = led_by_a(3, mutations);
    let id = s.propose(1, KvOp::Set { key: 1, value: 1 });
    assert!(s.run_until(100 * MS, |s| succeeded(s, id)));
    let apart = |m: &InFlight| !matches!((m.from, m.to), (1, 3) | (3, 1));
    s.run_until_with(t_min + 20 * MS, apart, |_| false);
    s.advance(MS);
    s.crash(2);
    s.run_until_with(49 * MS, apart, |_| false);
    s.restart(2);
    s.campaign(3);
    let bc = within(&[2, 3]);
    if s.run_until_with(50 * MS, &bc, |s| leads(s, 3)) {
        let id = s.propose(3, KvOp::Set { key: 1, value: 2 });
        s.run_until_with(50 * MS, &bc, |s| succeeded(s, id));
    }
    let read = s.read(1, KvOp::Get { key: 1 });
    s.run_until_with(20 * MS, &bc, |s| s.reads.contains_key(&read));
    s
}

#[test]
fn s5a_restarted_voter_refuses_votes() {
    let s = s5a(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(!leads(&s, 3));
}

#[test]
fn s5a_mutant_granting_after_restart_is_caught() {
    let s = s5a(Mutations {
        no_restart_stickiness: true,
        ..Default::default()
    });
    assert_caught(&s, "stale read");
}

/// R8: B, partitioned, campaigns up to a greater vote while A commits with
/// C. After healing B refuses A's forwards, and C crashes: {A, B} is a live
/// quorum, so A must campaign again and win with B. The mutant never does.
fn r8(mutations: Mutations) -> bool {
    let t_min = Script::params().t_min;
    let mut s = Script::new(3, Script::params(), mutations);
    s.advance(t_min + 20 * MS);
    let first = elect_among(&mut s, 1, &[1, 2, 3]);
    let no_b = |m: &InFlight| m.from != 2 && m.to != 2;
    s.campaign(2);
    s.run_until_with(t_min / 2, no_b, |_| false);
    assert!(s.replica(2).vote() > first, "B's vote moved ahead");
    let ids: Vec<u64> = (0..5)
        .map(|v| s.propose(1, KvOp::Set { key: v, value: v }))
        .collect();
    assert!(s.run_until_with(100 * MS, no_b, |s| ids.iter().all(|&id| succeeded(s, id))));
    s.crash(3);
    let recovered = s.run_until(3 * t_min, |s| {
        s.leader().is_some_and(|(node, c)| node == 1 && c > first)
    });
    assert_eq!(s.violation, None);
    recovered
}

#[test]
fn r8_refused_leader_campaigns_again() {
    assert!(r8(Mutations::default()), "A leads again with B");
}

#[test]
fn r8_mutant_never_campaigning_stalls() {
    let recovered = r8(Mutations {
        no_reelect: true,
        ..Default::default()
    });
    assert!(!recovered, "liveness bound: the mutant must stall");
}

/// S1b: A's own write of X@5 is slow; B acks 5 but the ack is held; A's
/// forwards to C are lost. A's lease lapses and it grants (2, C) with a
/// reply without 5; C wins with A. Then A's write completes and B's ack
/// arrives: A's vote is C's, so it counts nothing. The mutant still leads
/// and counts: {A, B} choose X, which C's base lacks.
fn s1b(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    s.slow_disks.insert(1);
    s.propose(1, KvOp::Set { key: 7, value: 1 });
    s.deliver(|m| m.from == 1 && m.to == 2);
    let held: Vec<InFlight> = s
        .pool
        .iter()
        .filter(|m| m.from == 2 && m.to == 1 && is_ack(m))
        .cloned()
        .collect();
    assert!(!held.is_empty(), "B acked X");
    s.drop_where(|m| m.to == 1 || m.from == 1);
    // A hears nothing: its lease lapses, and C's stickiness runs out.
    s.run_until_with(t_min + 20 * MS, |m| m.from == 1 && m.to == 2, |_| false);
    s.campaign(3);
    // C's forwards to A come later.
    let ac = |m: &InFlight| within(&[1, 3])(m) && !(m.from == 3 && is_forward(m));
    let start = s.now();
    while !leads(&s, 3) && s.now() < start + 100 * MS {
        s.complete_slot(1);
        s.deliver(ac);
        s.drop_where(|m| !ac(m));
        s.advance(MS);
    }
    assert!(leads(&s, 3), "C won with A");
    s.slow_disks.clear();
    s.complete_disk(1);
    s.pool.extend(held);
    s.deliver(|m| m.to == 1);
    s
}

#[test]
fn s1b_leader_whose_vote_moved_counts_nothing() {
    let s = s1b(Mutations::default());
    assert_eq!(s.violation, None);
}

#[test]
fn s1b_mutant_counting_after_its_vote_moved_is_caught() {
    let s = s1b(Mutations {
        keep_leading_after_vote: true,
        ..Default::default()
    });
    assert_caught(&s, "LSN 5");
}

/// R6: F (node 3) grants (2, B) durably and restarts. Recovery starts
/// `max_term_seen` at the recovered vote's term, so F's next campaign is
/// above (2, B). The mutant starts it at 0 and campaigns (1, F), lowering
/// its vote (left alone, a deposed leader's forward is then above F's vote,
/// and {A, F} and later {B, F} choose two values at one LSN).
fn r6(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = led_by_a(3, mutations);
    s.drop_where(|m| m.from == 1 || m.to == 1);
    let bf = within(&[2, 3]);
    s.run_until_with(t_min + 20 * MS, &bf, |_| false);
    s.campaign(2);
    let b_vote = s.replica(2).vote();
    // B's base forward to F is delayed.
    let no_forward = |m: &InFlight| bf(m) && !is_forward(m);
    assert!(s.run_until_with(20 * MS, no_forward, |s| s.replica(3).vote() == b_vote));
    s.drop_where(is_forward);
    s.crash_and_restart(3);
    assert_eq!(s.replica(3).vote(), b_vote, "F's vote was durable");
    s.campaign(3);
    s
}

#[test]
fn r6_campaign_is_above_the_recovered_vote() {
    let s = r6(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(s.replica(3).vote().term > 2);
}

#[test]
fn r6_mutant_lowering_the_vote_is_caught() {
    let s = r6(Mutations {
        max_term_from_zero: true,
        ..Default::default()
    });
    assert_caught(&s, "vote fell");
}

/// N4: {A, B} choose X@5; C lacks it. A latent fault hits B's frame
/// holding 5, and a later frame vouches for it: B recovers reporting
/// corruption, its log ending at 4. A dies. C campaigns with a log ending at
/// 4: B must refuse, as a replica that found corruption neither campaigns
/// nor grants until it installs a newer leader's base. The mutant grants,
/// and C's base lacks 5.
fn n4(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    let x = s.propose(1, KvOp::Set { key: 7, value: 1 });
    assert!(s.run_until_with(50 * MS, within(&[1, 2]), |s| succeeded(s, x)));
    s.crash(1);
    s.crash_corrupted(2, 5);
    assert!(!s.replica(2).accepted().contains(5));
    let bc = within(&[2, 3]);
    s.run_until_with(t_min + 40 * MS, &bc, |_| false);
    s.campaign(3);
    s.run_until_with(50 * MS, &bc, |s| leads(s, 3));
    s
}

#[test]
fn n4_corrupted_replica_does_not_vote() {
    let s = n4(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(!leads(&s, 3));
}

#[test]
fn n4_mutant_voting_after_corruption_is_caught() {
    let s = n4(Mutations {
        corrupted_votes: true,
        ..Default::default()
    });
    assert_caught(&s, "without LSN 5");
}

/// N5a: A's own write of X@5 is in flight while B and C hold X. B misses
/// heartbeats and raises its vote in a failed campaign, then refuses A's
/// forward. A must let its write complete before campaigning again: then
/// its log is as fresh as theirs and it wins at once. The mutant campaigns
/// with a log ending at 4, is refused as staler by both, and no leader
/// follows within the bound.
fn n5a(mutations: Mutations) -> bool {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    let first = s.replica(1).vote();
    s.slow_disks.insert(1);
    s.propose(1, KvOp::Set { key: 7, value: 1 });
    s.deliver(|_| true);
    assert!([2, 3].iter().all(|&n| s.replica(n).accepted().contains(5)));
    // B hears nothing from A for longer than its lease, and campaigns in vain.
    let not_to_b = |m: &InFlight| m.to != 2;
    let start = s.now();
    while s.now() < start + t_min + 20 * MS {
        s.complete_slot(1);
        s.deliver(not_to_b);
        s.drop_where(|m| !not_to_b(m));
        s.advance(MS);
    }
    s.campaign(2);
    s.drop_where(|m| m.from == 2);
    // A's forwards reach B again and are refused; A's disk stays slow for
    // longer than the re-election delay.
    let start = s.now();
    while s.now() < start + t_min / 2 + 10 * MS {
        s.complete_slot(1);
        s.deliver(|_| true);
        s.advance(MS);
    }
    s.slow_disks.clear();
    s.complete_disk(1);
    let elected = s.run_until(100 * MS, |s| s.leader().is_some_and(|(_, c)| c > first));
    assert_eq!(s.violation, None);
    elected
}

#[test]
fn n5a_refused_leader_settles_its_writes_first() {
    assert!(n5a(Mutations::default()), "a leader within the bound");
}

#[test]
fn n5a_mutant_campaigning_unsettled_stalls() {
    let elected = n5a(Mutations {
        reelect_without_settling: true,
        ..Default::default()
    });
    assert!(!elected, "liveness bound: the mutant must stall");
}

/// N1: Z@5 is durable on A, in flight on B, lost to C; A crashes. C wins
/// with B, whose write of Z then completes. A restarts and installs C's
/// base (dropping Z); {C, A} choose Y@5 and C crashes before A learns it is
/// committed. B's install of C's base frame is in flight (slow disk) and
/// it lost Y. A replica whose base frame is in flight neither campaigns nor
/// grants, and reports only its durable pair. The mutant B campaigns
/// reporting committer C with `accepted ∋ 5` (M's Z): A grants without 5,
/// and B's base lacks Y.
fn n1(mutations: Mutations) -> Script {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(Mutations::default());
    s.mutate(2, mutations);
    s.slow_disks.insert(2);
    s.propose(1, KvOp::Set { key: 7, value: 1 });
    s.deliver(|m| m.from == 1 && m.to == 2);
    s.drop_where(|_| true);
    s.crash(1);
    // C wins with B; B's slot writes land, its WAL writes wait.
    let bc = within(&[2, 3]);
    let grind =
        |s: &mut Script, pass: &dyn Fn(&InFlight) -> bool, until: &dyn Fn(&Script) -> bool| {
            let start = s.now();
            while !until(s) && s.now() < start + t_min + 40 * MS {
                s.complete_slot(2);
                s.deliver(pass);
                s.drop_where(|m| !pass(m));
                s.advance(MS);
            }
        };
    grind(&mut s, &bc, &|_| false);
    s.campaign(3);
    let no_forward = |m: &InFlight| bc(m) && !is_forward(m);
    grind(&mut s, &no_forward, &|s| leads(s, 3));
    assert!(leads(&s, 3), "C won with B");
    // B's write of Z completes under M.
    s.complete_disk(2);
    assert!(s.replica(2).accepted().contains(5));
    // C resends its base forward; B's base frame stays in flight.
    let start = s.now();
    grind(&mut s, &bc, &|s| s.now() >= start + 20 * MS);
    assert_ne!(
        s.replica(2).committer(),
        s.replica(3).committer(),
        "not durable yet"
    );
    // A restarts, installs C's base; {C, A} choose Y@5.
    s.restart(1);
    let y = s.propose(3, KvOp::Set { key: 8, value: 1 });
    let ac = within(&[1, 3]);
    grind(&mut s, &ac, &|s| succeeded(s, y));
    assert!(succeeded(&s, y), "Y acknowledged");
    s.drop_where(|_| true);
    s.crash(3);
    // B campaigns once A's stickiness to C has run out.
    let ab = within(&[1, 2]);
    grind(&mut s, &ab, &|_| false);
    s.campaign(2);
    let start = s.now();
    grind(&mut s, &ab, &|s| s.now() >= start + 20 * MS);
    // B's base frame lands.
    s.slow_disks.clear();
    s.complete_disk(2);
    s.run_until_with(50 * MS, &ab, |s| leads(s, 2));
    s
}

#[test]
fn n1_base_frame_in_flight_blocks_campaigning() {
    let s = n1(Mutations::default());
    assert_eq!(s.violation, None);
    assert!(!leads(&s, 2));
}

#[test]
fn n1_mutant_reporting_the_pending_pair_is_caught() {
    let s = n1(Mutations {
        report_pending_pair: true,
        ..Default::default()
    });
    assert_caught(&s, "LSN 5");
}

/// N5b: A (node 1) is cut off from C; C wins with B. Every forward to B
/// takes 30 ms, longer than a heartbeat, so the deposed leader's next
/// forward always reaches B before the new leader's base forward and is
/// refused with B's new vote and the old committer. A refused leader waits a
/// random delay in `[0, T_min/2)`, in which the new base lands on B and the
/// next refusal reports a greater committer: it stops. The mutant
/// re-elects at once, the other does the same on its refusal, and the duel
/// never lets a proposal commit.
fn n5b(mutations: Mutations) -> bool {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    let slow_to_b = |m: &InFlight, now: u64| {
        let cut = matches!((m.from, m.to), (1, 3) | (3, 1));
        let held = m.to == 2 && is_forward(m) && now < m.sent_at + 30 * MS;
        !cut && !held
    };
    let tick = |s: &mut Script| {
        let now = s.now();
        s.deliver(|m| slow_to_b(m, now));
        s.drop_where(|m| matches!((m.from, m.to), (1, 3) | (3, 1)));
        s.advance(MS);
    };
    // B's and C's stickiness to A runs out; then C campaigns.
    let start = s.now();
    s.drop_where(|m| m.from == 1);
    while s.now() < start + t_min + 20 * MS {
        let now = s.now();
        s.deliver(|m| m.from != 1 && slow_to_b(m, now));
        s.drop_where(|m| m.from == 1);
        s.advance(MS);
    }
    // A's next heartbeat to B is on its way when C campaigns.
    s.drop_where(|_| true);
    while !s.pool.iter().any(|m| m.from == 1 && m.to == 2) {
        s.advance(MS);
    }
    s.advance(5 * MS);
    s.campaign(3);
    // Proposals at whichever node leads, until one commits; one left
    // unanswered by a deposed leader is given up after 50 ms.
    let first = s.replica(1).vote();
    let start = s.now();
    let mut ids: Vec<u64> = Vec::new();
    let mut last = 0;
    while s.now() < start + 5 * t_min {
        if ids.iter().any(|&id| succeeded(&s, id)) {
            return true;
        }
        if let Some((node, c)) = s.leader() {
            let answered = ids.last().is_none_or(|id| s.replies.contains_key(id));
            if c > first && (answered || s.now() > last + 50 * MS) {
                ids.push(s.propose(node, KvOp::Set { key: 9, value: 9 }));
                last = s.now();
            }
        }
        tick(&mut s);
    }
    assert_eq!(s.violation, None);
    false
}

#[test]
fn n5b_refused_leader_waits_and_yields() {
    assert!(n5b(Mutations::default()), "a proposal commits");
}

#[test]
fn n5b_mutant_reelecting_at_once_duels() {
    let committed = n5b(Mutations {
        reelect_at_once: true,
        ..Default::default()
    });
    assert!(!committed, "liveness bound: the duel must stall");
}

/// L3: B (node 2) missed C's leadership while down, so its log is staler
/// than A's and C's, and it campaigned while cut off, so its vote is above
/// C's. C's disk is slow: each of its writes takes longer than B's election
/// timeout. B refuses C's forwards, so C campaigns again (R8) and wins with
/// A and B; while C's merge frame is on its way to the disk, B's timer
/// fires. The mutant B campaigns at once: its vote passes C's again, C's
/// first forward is refused, and this repeats for ever — B never catches
/// up and C never keeps a leadership. Probing first, B learns that no
/// quorum would grant it (its log is staler), keeps its vote, and takes
/// C's base. Returns whether B caught up.
fn l3(mutations: Mutations) -> bool {
    let t_min = Script::params().t_min;
    let mut s = three_led_by_a(mutations);
    s.crash(2);
    let c = elect_among(&mut s, 3, &[1, 3]);
    let ids: Vec<u64> = (10..15)
        .map(|v| s.propose(3, KvOp::Set { key: v, value: v }))
        .collect();
    assert!(s.run_until_with(200 * MS, within(&[1, 3]), |s| ids
        .iter()
        .all(|&id| succeeded(s, id))));
    // B comes back cut off and campaigns until its vote passes C's.
    s.restart(2);
    for _ in 0..5 {
        if s.replica(2).vote() > c {
            break;
        }
        s.campaign(2);
        s.run_until_with(2 * t_min, within(&[1, 3]), |_| false);
    }
    assert!(s.replica(2).vote() > c && s.replica(2).committer() < c);
    // From here B's election timer runs, and C's WAL writes take
    // 2 T_min + 10 ms (its slot writes are quick).
    s.timers_on.insert(2);
    s.slow_disks.insert(3);
    let delay = 2 * t_min + 10 * MS;
    let mut issued: std::collections::BTreeMap<u64, u64> = Default::default();
    let start = s.now();
    while s.now() < start + 20 * t_min {
        if s.replica(2).committer() >= c && s.replica(2).committed().count() >= 10 {
            break;
        }
        s.complete_slot(3);
        for id in s.wal_in_flight(3) {
            let at = *issued.entry(id).or_insert(s.now());
            if s.now() >= at + delay {
                s.complete_wal(3, id);
            }
        }
        s.deliver(|_| true);
        s.advance(MS);
    }
    assert_eq!(s.violation, None);
    s.replica(2).committer() >= c && s.replica(2).committed().count() >= 10
}

#[test]
fn l3_stale_replica_probes_and_catches_up() {
    assert!(l3(Mutations::default()), "B takes C's base");
}

#[test]
fn l3_mutant_campaigning_without_a_probe_livelocks() {
    let caught_up = l3(Mutations {
        no_probe: true,
        ..Default::default()
    });
    assert!(
        !caught_up,
        "liveness bound: the mutant must never let B catch up"
    );
}
