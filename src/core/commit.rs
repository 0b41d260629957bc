//! Commit, apply and replies (DESIGN.md §3.3–3.4): out-of-order commit by a
//! quorum over acked bitmaps, apply once deps are applied, replies keyed by
//! `(lsn, author)`.

use super::deps::Conflicts;
use super::io::{Output, ProposalId, ProposeError, Reply};
use super::replica::{MergeState, Replica, Role};
use crate::bitmap::TailBitmap;
use crate::frame::Record;
use crate::ids::{LeaderId, Lsn};
use std::collections::{BTreeSet, HashMap};

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
    ///
    /// Incremental, so a long backlog costs each record a few looks rather
    /// than one look per poll: a committed LSN is examined once when it
    /// first shows up (`committed` minus what was examined), then again
    /// only when something it waits for happens — the greatest dep it
    /// lacks is applied (`parked`), a read that holds it back finishes, a record
    /// it lacked arrives — or when a base replaces the log (a full rescan).
    pub(super) fn poll_apply(&mut self) {
        if !self.snapshot_cuts.is_empty() {
            if !self.applying.is_empty() {
                return; // the cut waits for what is in flight; nothing new starts
            }
            for id in std::mem::take(&mut self.snapshot_cuts) {
                self.out.push(Output::Snapshot {
                    id,
                    applied: self.applied.clone(),
                    config: self.config.clone(),
                });
            }
        }
        if self.apply.epoch != self.log_epoch {
            self.apply
                .reset(self.log_epoch, &self.applied, &self.applying);
        }
        let mut candidates: Vec<Lsn> = self
            .committed
            .difference(&self.apply.examined)
            .iter()
            .collect();
        candidates.append(&mut self.apply.woken);
        if !self.apply.missing.is_empty() && self.apply.arrivals != self.apply.arrivals_seen {
            candidates.extend(std::mem::take(&mut self.apply.missing));
        }
        self.apply.arrivals_seen = self.apply.arrivals;
        if self.apply.reads_changed {
            self.apply.reads_changed = false;
            candidates.extend(std::mem::take(&mut self.apply.held));
        }
        let mut ready: Vec<Record> = Vec::new();
        for lsn in candidates {
            self.apply.examined.insert(lsn).expect("valid LSN");
            if self.applied.contains(lsn) || self.applying.contains(&lsn) {
                continue;
            }
            let Some(record) = self.record_at(lsn) else {
                self.apply.missing.push(lsn);
                continue;
            };
            // Parked under the greatest dep it lacks: deps of deps come
            // first, so that one is applied last and the record wakes once
            // (the least would wake a strict chain once per record before it).
            if let Some(dep) = record.deps.difference(&self.applied).max() {
                self.apply.parked.entry(dep).or_default().push(lsn);
                continue;
            }
            if self.held_by_reads(&record.cmd) {
                self.apply.held.push(lsn);
                continue;
            }
            ready.push(record.clone());
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
        if let Some(mut waiting) = self.apply.parked.remove(&lsn) {
            self.apply.woken.append(&mut waiting);
        }
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

/// What `poll_apply` remembers between polls.
#[derive(Default)]
pub(super) struct ApplyScan {
    /// The log epoch this bookkeeping belongs to.
    pub epoch: u64,
    /// Committed LSNs looked at since the last reset.
    pub examined: TailBitmap,
    /// Records waiting for an LSN (the key) to be applied.
    pub parked: HashMap<Lsn, Vec<Lsn>>,
    /// Woken by an apply: look again.
    pub woken: Vec<Lsn>,
    /// Committed, but the record is not here yet: look again once records
    /// arrive.
    pub missing: Vec<Lsn>,
    /// Records put in the log or in flight to it, ever; and that count at
    /// the last poll.
    pub arrivals: u64,
    pub arrivals_seen: u64,
    /// Held back by a read in progress.
    pub held: Vec<Lsn>,
    /// A read finished: look at the held records again.
    pub reads_changed: bool,
}

impl ApplyScan {
    /// Forgets everything but what is applied or being applied: a base
    /// replaced the log, so every other committed LSN is looked at again.
    fn reset(&mut self, epoch: u64, applied: &TailBitmap, applying: &BTreeSet<Lsn>) {
        let mut examined = applied.clone();
        for &lsn in applying {
            examined.insert(lsn).expect("valid LSN");
        }
        *self = ApplyScan {
            epoch,
            examined,
            arrivals: self.arrivals,
            ..ApplyScan::default()
        };
    }
}
