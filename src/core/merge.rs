//! Establishing leadership (DESIGN.md §3.2): merge the logs of the granting
//! quorum, using only replies with the greatest committer, fill holes with
//! no-ops, and write one merge frame before the first forward (I4).

use super::deps::{Conflicts, DepsIndex};
use super::io::WalEntry;
use super::message::Grant;
use super::replica::{MergeState, Progress, Replica, Role};
use crate::bitmap::TailBitmap;
use crate::frame::Record;
use crate::ids::{Lsn, NodeId};
use std::collections::BTreeMap;

impl<C: Conflicts> Replica<C> {
    /// Writes the merge frame once the candidate's own writes have settled.
    pub(super) fn poll_merge(&mut self) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let MergeState::Won { grants } = &leader.merge else {
            return;
        };
        if !self.writes.is_empty() || self.vote != leader.c {
            return; // own writes in flight are settled first
        }
        let c = leader.c;
        if self.mutations.skip_merge {
            return self.lead_without_merge();
        }
        // The greatest committer among the replies is our own (staleness rule).
        let mut committed_base = self.durable_committed.clone();
        let mut base: BTreeMap<Lsn, Record> = self.log.clone();
        for grant in grants.values() {
            committed_base.union_with(&grant.committed);
            for record in &grant.records {
                match base.get(&record.lsn) {
                    Some(held) => assert_eq!(
                        held, record,
                        "two records at one LSN from max-committer replies"
                    ),
                    None => {
                        base.insert(record.lsn, record.clone());
                    }
                }
            }
        }
        // LSNs held only in our snapshot are in the base, committed.
        let base_lsns = base
            .keys()
            .copied()
            .collect::<TailBitmap>()
            .union(&self.purged);
        if !committed_base.is_subset(&base_lsns) {
            // A committed LSN with no record: it lives only in a snapshot a
            // voter holds. It is never filled; without a fetch, the campaign
            // ends writing nothing.
            self.role = Role::Follower;
            self.election_deadline = self.now + self.random(self.params.t_min);
            return;
        }
        // Fill holes with no-ops that depend on every earlier LSN.
        if let Some(max) = base_lsns.max() {
            for lsn in (0..=max).filter(|l| !self.purged.contains(*l)) {
                let mut noop = Record::noop(c, lsn);
                if self.mutations.noop_empty_deps {
                    noop.deps = TailBitmap::new();
                }
                base.entry(lsn).or_insert(noop);
            }
        }
        let keep = self.accepted.clone();
        let records: Vec<Record> = base
            .iter()
            .filter(|(lsn, _)| !keep.contains(**lsn))
            .map(|(_, r)| r.clone())
            .collect();
        if self.mutations.split_merge_frame {
            self.append_first_half(c, &keep, &records, &committed_base);
        }
        let write = self.append(WalEntry::Base {
            committer: c,
            keep,
            records,
            committed: committed_base.clone(),
        });
        // committed_base counts as committed for the leader.
        self.committed.union_with(&committed_base);
        let Role::Leader(leader) = &mut self.role else {
            unreachable!()
        };
        let MergeState::Won { grants } =
            std::mem::replace(&mut leader.merge, MergeState::Writing { write })
        else {
            unreachable!()
        };
        self.start_followers(&grants);
    }

    /// The A7 mutant: the merge frame's lower half as a frame of its own,
    /// which recovery would take for the whole base.
    fn append_first_half(
        &mut self,
        c: crate::ids::LeaderId,
        keep: &TailBitmap,
        records: &[Record],
        committed: &TailBitmap,
    ) {
        let max = keep.max().max(records.last().map(|r| r.lsn)).unwrap_or(0);
        let lower = TailBitmap::prefix(max.div_ceil(2));
        self.append(WalEntry::Base {
            committer: c,
            keep: keep.intersection(&lower),
            records: records
                .iter()
                .filter(|r| lower.contains(r.lsn))
                .cloned()
                .collect(),
            committed: committed.intersection(&lower),
        });
    }

    /// Every follower starts needing a base forward that relies on the
    /// `committed` its vote reply reported.
    fn start_followers(&mut self, grants: &BTreeMap<NodeId, Grant>) {
        let seed_from_votes = self.mutations.seed_acked_from_votes;
        let members = self.config.members();
        let me = self.id;
        let Role::Leader(leader) = &mut self.role else {
            unreachable!()
        };
        for member in members {
            if member != me {
                let assumed = grants.get(&member).map(|g| g.committed.clone());
                let seeded = match grants.get(&member) {
                    Some(g) if seed_from_votes => g.accepted.clone(),
                    _ => TailBitmap::new(),
                };
                leader.followers.insert(
                    member,
                    Progress {
                        needs_base: true,
                        assumed_committed: assumed,
                        acked: seeded,
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// The T3 mutant: lead from our own log at once, with no merge and no
    /// merge frame.
    fn lead_without_merge(&mut self) {
        let Role::Leader(leader) = &mut self.role else {
            unreachable!()
        };
        let MergeState::Won { grants } = std::mem::replace(
            &mut leader.merge,
            MergeState::Writing {
                write: crate::core::io::WriteId::MAX,
            },
        ) else {
            unreachable!()
        };
        self.committer = leader.c;
        self.start_followers(&grants);
        self.on_merge_durable();
    }

    /// The merge frame is durable: the leader is established.
    pub(super) fn on_merge_durable(&mut self) {
        let own = self.accepted.clone();
        let strict = self.params.strict;
        let mut deps = DepsIndex::new(strict);
        deps.mutate(&self.mutations);
        for record in self.log.values() {
            let class = if record.cmd.is_empty() {
                Default::default()
            } else {
                self.conflicts.classify(&record.cmd)
            };
            deps.assign(record.lsn, &class);
        }
        let next_lsn = self.accepted.max().map_or(0, |l| l + 1);
        // Deps below the purge point are implied: no record there to index.
        deps.raise_barrier(self.purged.max().map_or(0, |l| l + 1));
        // The leader's own ack is its own writes: not what it holds only in
        // a snapshot, which it cannot commit again (A3).
        let own_records = own.difference(&self.purged);
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if self.vote != leader.c || self.committer != leader.c {
            self.role = Role::Follower;
            return;
        }
        leader.merge = MergeState::Established;
        if self.mutations.lease_at_election {
            leader.lease_until = self.now + self.params.lease();
        }
        leader.base = own;
        leader.own_acked = own_records;
        leader.next_lsn = next_lsn;
        leader.deps = deps;
    }
}
