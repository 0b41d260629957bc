//! Forwarding (DESIGN.md §3.3): the leader's pipelined forwards, base
//! forwards on a committer switch, and the follower's side with its acks.

use super::deps::Conflicts;
use super::io::WalEntry;
use super::message::{LogForward, Message};
use super::replica::{MergeState, Replica, Role};
use crate::bitmap::TailBitmap;
use crate::frame::Record;
use crate::ids::{LeaderId, NodeId};

impl<C: Conflicts> Replica<C> {
    pub(super) fn poll_leader(&mut self) {
        self.poll_merge();
        self.poll_reelect();
        self.poll_transfer();
        let Role::Leader(leader) = &self.role else {
            return;
        };
        if !matches!(leader.merge, MergeState::Established) {
            return;
        }
        self.flush_batch();
        self.send_forwards();
        self.advance_commit();
    }

    /// Proposals that arrived while the last batch was being written form
    /// the next batch (group commit).
    fn flush_batch(&mut self) {
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if leader.queue.is_empty() || leader.batch_write.is_some() {
            return;
        }
        let records = std::mem::take(&mut leader.queue);
        let c = leader.c;
        let write = self.append(WalEntry::Records {
            committer: c,
            records,
        });
        if let Role::Leader(leader) = &mut self.role {
            leader.batch_write = Some(write);
        }
    }

    /// The LSNs the leader can forward: its log and what it is writing
    /// (not what it holds only in its snapshot: every member holds those).
    pub(super) fn leader_lsns(&self) -> TailBitmap {
        let mut lsns = self.accepted.difference(&self.purged);
        for lsn in self.unsynced.keys() {
            lsns.insert(*lsn).expect("valid LSN");
        }
        lsns
    }

    fn send_forwards(&mut self) {
        let now = self.now;
        let params = self.params.clone();
        let all = self.leader_lsns();
        let committed = self.committed.clone();
        let purged = self.purged.clone();
        let purge_floor = self.purge_floor;
        let no_retransmit = self.mutations.no_retransmit;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let c = leader.c;
        let transfer_to = match leader.transfer {
            Some(t) if t.open && !self.mutations.no_transfer_mark => Some(t.to),
            _ => None,
        };
        // A read waits for a round, or a transfer mark must go out.
        let round_due = std::mem::take(&mut leader.round_due);
        // (follower, seq, base, LSNs to carry)
        let mut plans: Vec<(NodeId, u64, Option<TailBitmap>, TailBitmap)> = Vec::new();
        let mut blocked = 0;
        for (&follower, progress) in leader.followers.iter_mut() {
            // Resend what a later echo or the timeout says was lost.
            let echoed = progress.echoed_seq;
            let acked = &progress.acked;
            let resend = !no_retransmit;
            progress.inflight.retain(|&seq, (sent, lsns)| {
                let lost = seq + params.window as u64 <= echoed || now >= *sent + params.retransmit;
                let done = lsns.is_subset(acked) || (resend && lost);
                !done
            });
            let heartbeat_due = round_due || now >= progress.last_send + params.heartbeat;
            let (base, lsns) = if progress.needs_base {
                // No records but the base forward until the follower acks
                // it. It goes again after a wait that doubles with each
                // resend (a lagging follower's base may be large; resending
                // it faster than the link carries it only queues stale
                // copies); empty forwards keep the follower's lease between.
                let base_due = progress.assumed_committed.is_some()
                    && progress.base_sent.is_none_or(|sent| {
                        now >= sent + base_resend_wait(&params, progress.base_resends)
                    });
                match &progress.assumed_committed {
                    Some(assumed) if base_due && !purged.is_subset(assumed) => {
                        // The follower lacks records this leader holds only
                        // in its snapshot (only a purge that ignored the
                        // floor, or a lost disk, leads here): no base can
                        // be built until snapshots are sent.
                        progress.base_sent = Some(now);
                        blocked += 1;
                        if !heartbeat_due {
                            continue;
                        }
                        (None, TailBitmap::new())
                    }
                    Some(assumed) if base_due => {
                        progress.base_sent = Some(now);
                        progress.base_resends = progress.base_resends.saturating_add(1);
                        (Some(assumed.clone()), all.difference(assumed))
                    }
                    _ if heartbeat_due => (None, TailBitmap::new()),
                    _ => continue,
                }
            } else {
                let mut pending = all.difference(&progress.acked);
                for (_, lsns) in progress.inflight.values() {
                    pending = pending.difference(lsns);
                }
                if progress.inflight.len() < params.window && !pending.is_empty() {
                    (None, pending.iter().take(params.max_batch).collect())
                } else if heartbeat_due {
                    (None, TailBitmap::new())
                } else {
                    continue;
                }
            };
            let seq = leader.next_seq;
            leader.next_seq += 1;
            leader.sent_at.insert(seq, now);
            progress.last_send = now;
            if base.is_none() && !lsns.is_empty() {
                progress.inflight.insert(seq, (now, lsns.clone()));
            }
            plans.push((follower, seq, base, lsns));
        }
        self.bases_blocked += blocked;
        for (to, seq, base, lsns) in plans {
            let records = lsns
                .iter()
                .map(|lsn| {
                    self.record_at(lsn)
                        .expect("the leader holds every LSN it forwards")
                        .clone()
                })
                .collect();
            let forward = LogForward {
                leader: c,
                seq,
                base,
                records,
                committed: committed.clone(),
                transfer_to,
                purge_floor,
            };
            self.send(to, Message::Forward(forward));
        }
    }

    /// A refusal with a greater vote (DESIGN.md §3.1).
    pub(super) fn on_refuse(&mut self, answered: LeaderId, vote: LeaderId, committer: LeaderId) {
        self.max_term_seen = self.max_term_seen.max(vote.term);
        self.last_refusal = Some((answered, vote, committer));
        let own_committer = self.committer;
        let delay = self.random(self.params.t_min / 2);
        let now = self.now;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if answered != leader.c || vote <= leader.c {
            return;
        }
        if committer > own_committer {
            // A newer leader's base reached that replica: stop leading.
            self.role = Role::Follower;
            self.election_deadline = now + delay;
            return;
        }
        if self.mutations.no_reelect {
            return;
        }
        // The transfer target campaigning: wait for its ElectReq or the
        // transfer timeout (N2).
        let target = leader.transfer.is_some_and(|t| t.to == vote.node);
        if target && !self.mutations.transfer_refusal_reelects {
            return;
        }
        // A failed candidate raised its vote: stop proposing, let own writes
        // complete, and campaign again after a random delay.
        if self.mutations.reelect_at_once {
            leader.reelect_at = Some(now);
        } else if leader.reelect_at.is_none() {
            leader.reelect_at = Some(now + delay);
        }
    }

    fn poll_reelect(&mut self) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let Some(at) = leader.reelect_at else { return };
        let settled = self.writes.is_empty() || self.mutations.reelect_without_settling;
        if self.now >= at && settled {
            self.role = super::replica::Role::Follower;
            self.try_campaign(None);
        }
    }

    pub(super) fn on_need_base(&mut self, from: NodeId, answered: LeaderId, committed: TailBitmap) {
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if answered != leader.c {
            return;
        }
        if let Some(progress) = leader.followers.get_mut(&from) {
            progress.needs_base = true;
            progress.inflight.clear();
            // The same answer again (to an empty forward, while the base is
            // on its way) changes nothing; a different `committed` (the
            // follower restarted, or reports it for the first time) needs a
            // base that relies on it, now.
            if progress.assumed_committed.as_ref() != Some(&committed) {
                progress.assumed_committed = Some(committed);
                progress.base_sent = None;
                progress.base_resends = 0;
            }
        }
    }

    /// Counts an ack; true if it was to this leadership.
    pub(super) fn on_ack(
        &mut self,
        from: NodeId,
        answered: LeaderId,
        seq: u64,
        acked: TailBitmap,
    ) -> bool {
        let Role::Leader(leader) = &mut self.role else {
            return false;
        };
        let voting_for_us = self.vote == leader.c || self.mutations.keep_leading_after_vote;
        if answered != leader.c || !voting_for_us {
            return false;
        }
        if let Some(progress) = leader.followers.get_mut(&from) {
            // Only acks to forwards of this leadership ever land here.
            progress.needs_base = false;
            progress.base_sent = None;
            progress.base_resends = 0;
            progress.acked.union_with(&acked);
            progress.echoed_seq = progress.echoed_seq.max(seq);
        }
        true
    }

    // ---- Follower side ----------------------------------------------------

    pub(super) fn on_forward(&mut self, from: NodeId, forward: LogForward) {
        let c = forward.leader;
        let lapsed = self.mutations.accept_old_forwards && self.now >= self.sticky_until;
        if (c < self.vote && !lapsed) || c.node != from || c.node == self.id {
            // Refused whatever the lease says (T1).
            let msg = Message::Refuse {
                leader: c,
                vote: self.vote,
                committer: self.committer,
                max_lsn: self.accepted.max(),
            };
            self.send(from, msg);
            return;
        }
        if c > self.vote {
            self.raise_vote(c);
        }
        self.role = Role::Follower;
        self.probe = None;
        // A valid forward: the follower lease and stickiness restart.
        self.sticky_until = self.now + self.params.t_min;
        self.election_deadline = self.now + self.params.t_min + self.random(self.params.t_min);
        if self.following.leader != Some(c) {
            self.following = Default::default();
            self.following.leader = Some(c);
        }
        if forward.seq >= self.following.last_seq {
            self.following.last_seq = forward.seq;
            self.following.transfer_to = forward.transfer_to;
        }
        self.following
            .leader_committed
            .union_with(&forward.committed);
        // A fact about every member's durable state, whoever learnt it.
        self.purge_floor = self.purge_floor.max(forward.purge_floor);
        let effective = self.effective_committer();
        match forward.base {
            Some(assumed) if effective != c => {
                if c < self.committer {
                    return; // committer never decreases (I2): not reachable past the vote check
                }
                if !assumed.is_subset(&self.durable_committed) && !self.mutations.volatile_committed
                {
                    self.send_need_base(from, c);
                    return;
                }
                self.write_base(c, forward.records);
                self.pending_committer = Some(c);
            }
            _ if effective != c => {
                self.send_need_base(from, c);
                return;
            }
            Some(_) if self.mutations.redo_base_drop => self.write_base(c, forward.records),
            // A plain forward, or a base forward again: drops nothing.
            _ => self.write_new_records(c, forward.records),
        }
        self.following.ack_due = true;
    }

    /// One atomic base frame: committer = c, and the log is exactly the
    /// LSNs known committed (kept as held) plus the base records.
    fn write_base(&mut self, c: LeaderId, records: Vec<Record>) {
        let keep = self.committed.intersection(&self.accepted);
        let records = records
            .into_iter()
            .filter(|r| !keep.contains(r.lsn))
            .collect();
        self.append(WalEntry::Base {
            committer: c,
            keep: keep.clone(),
            records,
            committed: keep,
        });
    }

    fn send_need_base(&mut self, to: NodeId, leader: LeaderId) {
        let msg = Message::NeedBase {
            leader,
            committed: self
                .mutations
                .reported_committed(&self.durable_committed, &self.committed)
                .clone(),
        };
        self.send(to, msg);
    }

    /// Writes the records not already held or being written, tagged `c`.
    fn write_new_records(&mut self, c: LeaderId, records: Vec<Record>) {
        let fresh: Vec<Record> = records
            .into_iter()
            .filter(|r| match self.record_at(r.lsn) {
                Some(held) => {
                    debug_assert!(
                        held == r || !self.accepted.contains(r.lsn) || held.author != c,
                        "leader {c:?} sent a second content for LSN {}",
                        r.lsn
                    );
                    held != r
                }
                None => true,
            })
            .collect();
        if !fresh.is_empty() {
            self.append(WalEntry::Records {
                committer: c,
                records: fresh,
            });
        }
    }

    /// Acks and committed-marking for the leader this replica follows.
    pub(super) fn poll_follower(&mut self) {
        if !matches!(self.role, Role::Follower) {
            return;
        }
        let Some(c) = self.following.leader else {
            return;
        };
        // Only while vote == committer == c at the moment the ack is produced (I1).
        let below_vote = self.mutations.accept_old_forwards && self.vote > c;
        if (self.vote != c && !below_vote) || self.committer != c {
            return;
        }
        // Mark committed what the leader says a quorum holds, and we hold too.
        let newly = self.following.leader_committed.intersection(&self.accepted);
        self.committed.union_with(&newly);
        if !self.following.ack_due || self.slot.vote < c || self.demoted_below.is_some() {
            return;
        }
        self.following.ack_due = false;
        let msg = Message::Ack {
            leader: c,
            seq: self.following.last_seq,
            acked: self.accepted.clone(),
            committed: self
                .mutations
                .reported_committed(&self.durable_committed, &self.committed)
                .clone(),
        };
        self.send(c.node, msg);
    }

    /// The leader's lease: from the send time of the greatest seq a quorum
    /// has echoed (DESIGN.md §3.5).
    pub(super) fn update_lease(&mut self) {
        let me = self.id;
        let lease = if self.mutations.lease_ignores_drift {
            self.params.t_min * (1_000_000 - self.params.rho_ppm) / 1_000_000
        } else {
            self.params.lease()
        };
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let mut echoes: Vec<u64> = leader.followers.values().map(|p| p.echoed_seq).collect();
        echoes.sort_unstable();
        echoes.dedup();
        for &seq in echoes.iter().rev() {
            if seq < leader.lease_floor {
                break; // sent before a cancelled transfer: no lease (R5b)
            }
            let followers = &leader.followers;
            let quorum = self
                .config
                .is_quorum(|n| n == me || followers.get(&n).is_some_and(|p| p.echoed_seq >= seq));
            if quorum {
                let sent = if self.mutations.lease_from_latest_send {
                    leader.sent_at.values().max()
                } else {
                    leader.sent_at.get(&seq)
                };
                if let Some(&sent) = sent {
                    leader.lease_until = leader.lease_until.max(sent + lease);
                }
                leader.sent_at.retain(|&s, _| s >= seq);
                break;
            }
        }
    }
}

/// How long a base forward waits before it goes again, after `resends`
/// unanswered ones: the retransmit interval (at least a heartbeat), doubled
/// per resend, at most a quarter of `T_min`.
fn base_resend_wait(params: &super::Params, resends: u32) -> super::Nanos {
    let first = params.retransmit.max(params.heartbeat);
    let cap = first.max(params.t_min / 4);
    first
        .saturating_mul(1 << resends.saturating_sub(1).min(BASE_BACKOFF_DOUBLINGS))
        .min(cap)
}

/// Doublings of the base resend wait, at most.
const BASE_BACKOFF_DOUBLINGS: u32 = 6;
