//! Test-only switches that each remove one rule, so the simulator can show
//! the rule is needed (SCENARIOS.md). All off in production.

/// Which rules are removed. `Default` is the protocol as designed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// N8a: count vote replies addressed to an earlier campaign.
    pub accept_stale_replies: bool,
    /// H11: fill holes with no-ops that depend on nothing.
    pub noop_empty_deps: bool,
    /// H7a: a repeated base forward drops again what the first one kept.
    pub redo_base_drop: bool,
    /// H6: resume, after a restart, the leadership held before it.
    pub resume_leadership: bool,
    /// H9b: a write does not depend on the reads of its keys since the last write.
    pub deps_ignore_reads: bool,
    /// L2: never resend an LSN whose forward was lost.
    pub no_retransmit: bool,
    /// H1: seed a new leader's `acked[f]` from the vote replies.
    pub seed_acked_from_votes: bool,
    /// S2: report `committed` before it is durable, and install a base
    /// forward whatever `committed` it assumed.
    pub volatile_committed: bool,
    /// R5a: a transfer leader never marks its forwards `transfer_to`.
    pub no_transfer_mark: bool,
    /// R5a (second mutant): a transfer is never cancelled.
    pub no_transfer_cancel: bool,
    /// R5b: a sticky voter grants on `transfer_from` alone, without the mark
    /// on the leader's greatest-seq forward.
    pub transfer_from_alone: bool,
    /// S5b: a leader keeps serving lease reads while a transfer is open.
    pub lease_reads_in_transfer: bool,
    /// N2: a refusal from the transfer target triggers a re-election.
    pub transfer_refusal_reelects: bool,
    /// S5a: a restarted replica grants votes at once.
    pub no_restart_stickiness: bool,
    /// R8: a leader refused with a greater vote never campaigns again.
    pub no_reelect: bool,
    /// T3: a new leader forwards its own log at once, with no merge.
    pub skip_merge: bool,
    /// N8b: a pending proposal is keyed by its LSN alone.
    pub proposals_by_lsn: bool,
    /// H9a: a config change is an ordinary record, not a barrier.
    pub no_barrier: bool,
    /// T1: a follower whose stickiness ran out accepts and acks forwards
    /// from below its vote.
    pub accept_old_forwards: bool,
    /// S1: a follower decides to ack when a forward arrives, not when the
    /// write completes.
    pub ack_checked_at_receipt: bool,
    /// S1b: a leader whose vote moved on keeps leading and counting acks.
    pub keep_leading_after_vote: bool,
    /// R6: `max_term_seen` starts at 0 on recovery, and a campaign may lower
    /// the vote.
    pub max_term_from_zero: bool,
    /// N4: a replica whose recovery found corruption still votes.
    pub corrupted_votes: bool,
    /// A7: a merge frame written as two independent frames.
    pub split_merge_frame: bool,
    /// N5a: a refused leader campaigns again without letting its own
    /// writes complete.
    pub reelect_without_settling: bool,
    /// N1: a replica whose base frame is in flight campaigns, reporting the
    /// pending committer with the LSNs held under the old one.
    pub report_pending_pair: bool,
    /// N5b: a refused leader campaigns again at once, without the random
    /// delay in which a greater committer could be reported.
    pub reelect_at_once: bool,
    /// S3b: recovery replays a base frame as an insert.
    pub base_as_insert: bool,
    /// R1a: recovery takes the slot's committer copy when it is greater than
    /// the newest base frame's.
    pub slot_committer_wins: bool,
    /// R1b: recovery takes the vote from the slot alone.
    pub vote_from_slot_alone: bool,
    /// N3: the slot is not rewritten when recovery raised the vote.
    pub no_slot_rewrite: bool,
    /// N6: slot writes are pipelined instead of one at a time.
    pub pipeline_slot_writes: bool,
    /// H8: a new leader's lease starts at its election.
    pub lease_at_election: bool,
    /// S4: a quorum echo extends the lease from the leader's latest send,
    /// not from the send time of the seq echoed.
    pub lease_from_latest_send: bool,
    /// N7: the lease lasts `T_min (1 − ρ)`, forgetting that the followers'
    /// clocks may run fast.
    pub lease_ignores_drift: bool,
    /// L3: a follower whose election timer fires campaigns at once, raising
    /// its vote without first probing whether a quorum would grant it.
    pub no_probe: bool,
    /// R4: a write to a key waits for nothing, even while a read of that key
    /// is running.
    pub reads_dont_hold_writes: bool,
    /// A3: a new leader serves reads only once every base LSN is committed
    /// under its own leadership, even those it holds only in a snapshot.
    pub reads_need_own_commit: bool,
    /// F1: a replica purges whatever its durable snapshot holds, though a
    /// member may still need those records from it.
    pub purge_below_snapshot_alone: bool,
    /// S3a: a purge does not wait for the slot file to hold `committer`.
    pub purge_ignores_slot: bool,
    /// Classic Raft's one vote per term instead of greater-or-equal voting.
    /// Not a mutant: the baseline the "less conflict" measurement compares to.
    pub classic_vote: bool,
}

/// Every mutant: (scenario id, name, the rule it removes).
pub const MUTANTS: &[(&str, &str, &str)] = &[
    (
        "H8",
        "lease-at-election",
        "a lease never starts at a vote: only at the send time of a quorum-echoed seq",
    ),
    (
        "N7",
        "lease-ignores-drift",
        "the lease lasts T_min (1 - rho) / (1 + rho) of the leader's clock",
    ),
    (
        "R4",
        "reads-dont-hold-writes",
        "a write to a key waits for every running read of that key: one apply is atomic with respect to a read",
    ),
    (
        "S4",
        "lease-from-latest-send",
        "the lease starts at the send time of the greatest seq a quorum echoed",
    ),
    (
        "A3",
        "reads-need-own-commit",
        "a new leader serves reads once every base LSN is committed under its own leadership or in committed_base",
    ),
    (
        "F1",
        "purge-below-snapshot-alone",
        "records are purged only below the purge floor: LSNs every member holds durably as committed",
    ),
    (
        "S3a",
        "purge-ignores-slot",
        "a purge waits for the slot file to hold committer: the segments it deletes may hold the only base frame naming it",
    ),
    (
        "N8a",
        "accept-stale-replies",
        "a reply names the LeaderId it answers; stale ones are ignored",
    ),
    (
        "H11",
        "noop-empty-deps",
        "a no-op's deps are every earlier LSN",
    ),
    (
        "H7a",
        "redo-base-drop",
        "a base forward that arrives again drops nothing",
    ),
    (
        "H6",
        "resume-leadership",
        "a replica never resumes a LeaderId it held before a restart",
    ),
    (
        "H9b",
        "deps-ignore-reads",
        "a write depends on every read of its keys since the last write",
    ),
    (
        "L2",
        "no-retransmit",
        "an LSN is resent after the retransmit timeout or a later echo",
    ),
    (
        "H1",
        "seed-acked-from-votes",
        "acked sets are never seeded from vote replies",
    ),
    (
        "S2",
        "volatile-committed",
        "committed is reported only once durable; a base needs the assumed committed",
    ),
    (
        "R5a",
        "no-transfer-mark",
        "a transfer leader marks every forward transfer_to = B",
    ),
    (
        "R5a2",
        "no-transfer-cancel",
        "a transfer not won by the timeout is cancelled",
    ),
    (
        "R5b",
        "transfer-from-alone",
        "a sticky voter grants a transfer only if the leader's greatest-seq forward has the mark",
    ),
    (
        "S5b",
        "lease-reads-in-transfer",
        "a leader stops serving lease reads while a transfer is open",
    ),
    (
        "N2",
        "transfer-refusal-reelects",
        "a refusal from the transfer target does not trigger a re-election",
    ),
    (
        "S5a",
        "no-restart-stickiness",
        "after it starts, a replica refuses every vote for T_min plus the drift allowance",
    ),
    (
        "R8",
        "no-reelect",
        "a leader refused with a greater vote and a committer not greater campaigns again",
    ),
    (
        "L3",
        "no-probe",
        "a follower whose timer fires raises its vote only once a quorum's probe replies say they would grant",
    ),
    (
        "T3",
        "skip-merge",
        "a new leader sends its first forward only after its merge frame is durable",
    ),
    (
        "N8b",
        "proposals-by-lsn",
        "a pending proposal is keyed by (lsn, author)",
    ),
    (
        "H9a",
        "no-barrier",
        "a config change is a barrier every later record depends on",
    ),
    (
        "T1",
        "accept-old-forwards",
        "a forward with c < vote is refused whatever the lease says",
    ),
    (
        "S1",
        "ack-checked-at-receipt",
        "an ack only if vote == committer == c at the moment the ack is produced",
    ),
    (
        "S1b",
        "keep-leading-after-vote",
        "a leader whose vote moves on stops counting acks, proposing and serving reads",
    ),
    (
        "R6",
        "max-term-from-zero",
        "max_term_seen starts at max(vote.term, committer.term); a campaign's c is always > vote",
    ),
    (
        "N4",
        "corrupted-votes",
        "a replica whose recovery found corruption neither campaigns nor grants until a newer base",
    ),
    (
        "A7",
        "split-merge-frame",
        "a merge frame is one write: recovery sees all of it or none",
    ),
    (
        "N5a",
        "reelect-without-settling",
        "a refused leader lets its own in-flight writes complete before campaigning again",
    ),
    (
        "N1",
        "report-pending-pair",
        "ElectReq reports the durable pair; a base frame in flight blocks campaigning and granting",
    ),
    (
        "N5b",
        "reelect-at-once",
        "a refused leader waits a random delay in [0, T_min/2) before campaigning again",
    ),
    (
        "S3b",
        "base-as-insert",
        "recovery replays a base or merge frame as the whole log, never as an insert",
    ),
    (
        "R1a",
        "slot-committer-wins",
        "committer is durable only through base and merge frames",
    ),
    (
        "R1b",
        "vote-from-slot-alone",
        "recovery sets vote := max(slot vote, committer)",
    ),
    (
        "N3",
        "no-slot-rewrite",
        "recovery that raised the vote writes the slot before answering anything",
    ),
    (
        "N6",
        "pipeline-slot-writes",
        "at most one slot write in flight; later changes coalesce into the next",
    ),
];

impl Mutations {
    /// The `committed` a replica reports: durable, unless the S2 mutant.
    pub(crate) fn reported_committed<'a>(
        &self,
        durable: &'a crate::TailBitmap,
        in_memory: &'a crate::TailBitmap,
    ) -> &'a crate::TailBitmap {
        if self.volatile_committed {
            in_memory
        } else {
            durable
        }
    }

    /// The mutant with this scenario id or name.
    pub fn by_name(name: &str) -> Option<Mutations> {
        let (id, _, _) = MUTANTS
            .iter()
            .find(|(id, n, _)| id.eq_ignore_ascii_case(name) || *n == name)?;
        let mut m = Mutations::default();
        match *id {
            "N8a" => m.accept_stale_replies = true,
            "H11" => m.noop_empty_deps = true,
            "H7a" => m.redo_base_drop = true,
            "H6" => m.resume_leadership = true,
            "H9b" => m.deps_ignore_reads = true,
            "L2" => m.no_retransmit = true,
            "H1" => m.seed_acked_from_votes = true,
            "S2" => m.volatile_committed = true,
            "R5a" => m.no_transfer_mark = true,
            "R5a2" => m.no_transfer_cancel = true,
            "R5b" => m.transfer_from_alone = true,
            "S5b" => m.lease_reads_in_transfer = true,
            "N2" => m.transfer_refusal_reelects = true,
            "S5a" => m.no_restart_stickiness = true,
            "R8" => m.no_reelect = true,
            "L3" => m.no_probe = true,
            "T3" => m.skip_merge = true,
            "N8b" => m.proposals_by_lsn = true,
            "H9a" => m.no_barrier = true,
            "T1" => m.accept_old_forwards = true,
            "S1" => m.ack_checked_at_receipt = true,
            "S1b" => m.keep_leading_after_vote = true,
            "R6" => m.max_term_from_zero = true,
            "N4" => m.corrupted_votes = true,
            "A7" => m.split_merge_frame = true,
            "N5a" => m.reelect_without_settling = true,
            "N1" => m.report_pending_pair = true,
            "N5b" => m.reelect_at_once = true,
            "S3b" => m.base_as_insert = true,
            "R1a" => m.slot_committer_wins = true,
            "R1b" => m.vote_from_slot_alone = true,
            "N3" => m.no_slot_rewrite = true,
            "N6" => m.pipeline_slot_writes = true,
            "H8" => m.lease_at_election = true,
            "S4" => m.lease_from_latest_send = true,
            "N7" => m.lease_ignores_drift = true,
            "R4" => m.reads_dont_hold_writes = true,
            "A3" => m.reads_need_own_commit = true,
            "F1" => m.purge_below_snapshot_alone = true,
            "S3a" => m.purge_ignores_slot = true,
            _ => return None,
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_mutant_has_a_switch() {
        for (id, name, _) in MUTANTS {
            let by_id = Mutations::by_name(id).expect("listed id resolves");
            assert_ne!(by_id, Mutations::default(), "{id} switches something");
            assert_eq!(Mutations::by_name(name), Some(by_id));
        }
    }
}
