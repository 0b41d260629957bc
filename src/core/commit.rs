//! Commit, apply and replies (DESIGN.md §3.3–3.4): out-of-order commit by a
//! quorum over acked bitmaps, apply once deps are applied, replies keyed by
//! `(lsn, author)`.

use super::deps::Conflicts;
use super::io::{Output, ProposalId, ProposeError, Reply};
use super::replica::{MergeState, Replica, Role};
use crate::frame::Record;
use crate::ids::{LeaderId, Lsn};

impl<C: Conflicts> Replica<C> {
    /// Marks committed what a quorum of this leadership acked.
    pub(super) fn advance_commit(&mut self) {
        self.update_lease();
        let me = self.id;
        let Role::Leader(leader) = &self.role else {
            return;
        };
        if self.vote != leader.c && !self.mutations.keep_leading_after_vote {
            return;
        }
        let own = &leader.own_acked;
        let followers = &leader.followers;
        // Acks from different leaderships never add up: `acked` holds only
        // acks to this leadership's forwards.
        let chosen = self.config.chosen(|n| {
            if n == me {
                Some(own)
            } else {
                followers.get(&n).map(|p| &p.acked)
            }
        });
        self.committed.union_with(&chosen);
    }

    pub(super) fn on_propose(&mut self, id: ProposalId, cmd: Vec<u8>) {
        let leader_hint = self.following.leader.map(|l| l.node);
        let class = self.conflicts.classify(&cmd);
        let Role::Leader(leader) = &mut self.role else {
            self.reply(
                id,
                Err(ProposeError::NotLeader {
                    leader: leader_hint,
                }),
            );
            return;
        };
        if !matches!(leader.merge, MergeState::Established) || leader.reelect_at.is_some() {
            self.reply(id, Err(ProposeError::NotLeader { leader: None }));
            return;
        }
        if let Some(transfer) = leader.transfer {
            self.reply(id, Err(ProposeError::Transferring { to: transfer.to }));
            return;
        }
        assert!(!cmd.is_empty(), "an empty command is a no-op");
        let lsn = leader.next_lsn;
        leader.next_lsn += 1;
        let deps = leader.deps.assign(lsn, &class);
        let record = Record {
            author: leader.c,
            lsn,
            cmd,
            deps,
        };
        self.proposals.insert((lsn, record.author), id);
        leader.queue.push(record);
    }

    fn reply(&mut self, id: ProposalId, result: Result<Reply, ProposeError>) {
        self.out.push(Output::Reply { id, result });
    }

    /// Emits every committed record whose deps are applied.
    pub(super) fn poll_apply(&mut self) {
        let waiting = self.committed.difference(&self.applied);
        let mut ready: Vec<Record> = Vec::new();
        for lsn in waiting.iter() {
            if self.applying.contains(&lsn) {
                continue;
            }
            let Some(record) = self.record_at(lsn) else {
                continue;
            };
            if record.deps.is_subset(&self.applied) && !self.held_by_reads(&record.cmd) {
                ready.push(record.clone());
            }
        }
        for record in ready {
            self.applying.insert(record.lsn);
            self.out.push(Output::Apply { record });
        }
    }

    pub(super) fn on_applied(&mut self, lsn: Lsn, result: Vec<u8>) {
        assert!(
            self.applying.remove(&lsn),
            "LSN {lsn} applied but never handed out"
        );
        self.applied.insert(lsn).expect("valid LSN");
        let author = self.record_at(lsn).map(|r| r.author);
        let waiting: Vec<_> = self
            .proposals
            .range((lsn, LeaderId::ZERO)..=(lsn, LeaderId::new(u64::MAX, u64::MAX)))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (key, id) in waiting {
            self.proposals.remove(&key);
            // Another record at the proposal's LSN: its outcome is unknown (N8b).
            if Some(key.1) == author || self.mutations.proposals_by_lsn {
                let reply = Reply {
                    lsn,
                    output: result.clone(),
                };
                self.reply(id, Ok(reply));
            } else {
                self.reply(id, Err(ProposeError::OutcomeUnknown));
            }
        }
    }
}
