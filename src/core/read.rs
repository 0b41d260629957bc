//! Linearizable reads (DESIGN.md §3.5). A read is served by an established
//! leader whose base is committed, once its leadership is confirmed for a
//! moment after the read arrived — by a lease or by a round of forwards — and
//! then runs as a read-only task: when the last writes of its keys are
//! applied, with later writes to those keys held back until it is done.

use super::deps::{CommandClass, Conflicts};
use super::io::{Output, ProposalId, ProposeError};
use super::replica::{MergeState, Replica, Role};
use crate::bitmap::TailBitmap;
use crate::ids::LeaderId;

pub(super) struct PendingRead {
    id: ProposalId,
    cmd: Vec<u8>,
    class: CommandClass,
    /// The leadership the read arrived under; it fails if that ends.
    leader: LeaderId,
    /// The first seq sent after the read arrived: a quorum echoing it (or
    /// a later one) confirms the leadership.
    round_seq: u64,
    /// Set once confirmed: the LSNs the read must see applied.
    deps: Option<TailBitmap>,
}

impl<C: Conflicts> Replica<C> {
    pub(super) fn on_read(&mut self, id: ProposalId, cmd: Vec<u8>) {
        let class = self.conflicts.classify(&cmd);
        let hint = self.following.leader.map(|l| l.node);
        let Role::Leader(leader) = &mut self.role else {
            self.out.push(Output::Reply {
                id,
                result: Err(ProposeError::NotLeader { leader: hint }),
            });
            return;
        };
        assert!(class.read_only, "a read must be a read-only command");
        leader.round_due = true;
        self.reads.push(PendingRead {
            id,
            cmd,
            class,
            leader: leader.c,
            round_seq: leader.next_seq,
            deps: None,
        });
    }

    /// Whether the leader's lease covers now and may serve reads.
    pub(super) fn lease_serves_reads(&self) -> bool {
        let Role::Leader(leader) = &self.role else {
            return false;
        };
        let quiet = leader.transfer.is_none() || self.mutations.lease_reads_in_transfer;
        quiet && leader.reelect_at.is_none() && self.now < leader.lease_until
    }

    fn read_confirmed(&self, read: &PendingRead) -> bool {
        let Role::Leader(leader) = &self.role else {
            return false;
        };
        let me = self.id;
        if !leader.base.is_subset(&self.committed) {
            return false; // a record the old leader acknowledged may not be known committed yet
        }
        if self.mutations.reads_need_own_commit {
            let followers = &leader.followers;
            let chosen = self.config.chosen(|n| {
                if n == me {
                    Some(&leader.own_acked)
                } else {
                    followers.get(&n).map(|p| &p.acked)
                }
            });
            if !leader.base.is_subset(&chosen) {
                return false;
            }
        }
        if self.lease_serves_reads() {
            return true;
        }
        let followers = &leader.followers;
        self.config.is_quorum(|n| {
            n == me
                || followers
                    .get(&n)
                    .is_some_and(|p| p.echoed_seq >= read.round_seq)
        })
    }

    /// Confirms waiting reads and hands out those whose keys are applied.
    pub(super) fn poll_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let leading = match &self.role {
            Role::Leader(l) if self.vote == l.c => Some(l.c),
            _ => None,
        };
        for mut read in std::mem::take(&mut self.reads) {
            if leading != Some(read.leader) {
                let result = Err(ProposeError::NotLeader { leader: None });
                self.out.push(Output::Reply {
                    id: read.id,
                    result,
                });
                continue;
            }
            let established = matches!(&self.role,
                Role::Leader(l) if matches!(l.merge, MergeState::Established));
            if read.deps.is_none() && established && self.read_confirmed(&read) {
                let Role::Leader(leader) = &self.role else {
                    unreachable!()
                };
                read.deps = Some(leader.deps.read_deps(leader.next_lsn, &read.class));
            }
            match &read.deps {
                Some(deps) if deps.is_subset(&self.applied) => {
                    self.out.push(Output::Read {
                        id: read.id,
                        cmd: read.cmd,
                    });
                    self.reads_out.insert(read.id, read.class);
                }
                _ => self.reads.push(read),
            }
        }
    }

    /// Whether a write must wait for a read that is running (it would
    /// change what the read sees).
    pub(super) fn held_by_reads(&self, cmd: &[u8]) -> bool {
        if self.reads_out.is_empty() || cmd.is_empty() || self.mutations.reads_dont_hold_writes {
            return false;
        }
        let class = self.conflicts.classify(cmd);
        if class.read_only {
            return false;
        }
        class.barrier
            || self
                .reads_out
                .values()
                .any(|r| r.keys.iter().any(|k| class.keys.contains(k)))
    }
}
