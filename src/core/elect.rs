//! Elections (DESIGN.md §3.1): campaigning, voting, and winning.

use super::deps::Conflicts;
use super::message::{Grant, Message};
use super::replica::{Candidate, Leader, MergeState, Probe, Replica, Role};
use crate::bitmap::TailBitmap;
use crate::ids::{LeaderId, Lsn, NodeId};
use std::collections::{BTreeMap, BTreeSet};

impl<C: Conflicts> Replica<C> {
    /// Whether this replica may campaign or grant now.
    fn may_vote(&self) -> bool {
        self.config.is_voter(self.id)
            && (self.demoted_below.is_none() || self.mutations.corrupted_votes)
            // A base or merge frame in flight: the durable pair is about to change.
            && (self.pending_committer.is_none() || self.mutations.report_pending_pair)
    }

    /// Becomes a candidate `(max_term_seen + 1, self)`, if allowed;
    /// `transfer_from` names the leader handing over to us.
    pub(super) fn try_campaign(&mut self, transfer_from: Option<LeaderId>) {
        if !self.may_vote() {
            self.election_deadline = self.now + self.params.t_min + self.random(self.params.t_min);
            return;
        }
        let c = LeaderId::new(self.max_term_seen + 1, self.id);
        if self.mutations.max_term_from_zero && c < self.vote {
            self.vote = c; // the R6 mutant lowers its vote
        }
        debug_assert!(c >= self.vote);
        self.raise_vote(c);
        let timeout = self.params.t_min + self.random(self.params.t_min);
        if self.mutations.skip_merge {
            // The T3 mutant: lead at once, before any election or merge.
            let won = MergeState::Won {
                grants: BTreeMap::new(),
            };
            self.role = Role::Leader(Box::new(Leader::new(c, won, self.params.strict)));
            return;
        }
        self.role = Role::Candidate(Candidate {
            c,
            transfer_from,
            req_sent: false,
            grants: BTreeMap::new(),
            refused: BTreeSet::new(),
            deadline: self.now + timeout,
        });
        self.following = Default::default();
    }

    /// Sends `ElectReq` once the slot holds `vote = c`, and checks for a win.
    pub(super) fn poll_candidate(&mut self) {
        let Role::Candidate(candidate) = &mut self.role else {
            return;
        };
        let c = candidate.c;
        let transfer_from = candidate.transfer_from;
        if !candidate.req_sent && self.slot.vote == c {
            candidate.req_sent = true;
            // The durable pair; the N1 mutant reports a pending committer.
            let committer = if self.mutations.report_pending_pair {
                self.pending_committer.unwrap_or(self.committer)
            } else {
                self.committer
            };
            let accepted = self.accepted.clone();
            for voter in self.config.voters() {
                if voter != self.id {
                    let msg = Message::ElectReq {
                        candidate: c,
                        committer,
                        accepted: accepted.clone(),
                        transfer_from,
                    };
                    self.send(voter, msg);
                }
            }
        }
        self.check_win();
    }

    fn check_win(&mut self) {
        let Role::Candidate(candidate) = &self.role else {
            return;
        };
        if !candidate.req_sent || self.vote != candidate.c {
            return;
        }
        let me = self.id;
        if !self
            .config
            .is_quorum(|n| n == me || candidate.grants.contains_key(&n))
        {
            return;
        }
        let Role::Candidate(candidate) = std::mem::replace(&mut self.role, Role::Follower) else {
            unreachable!()
        };
        let merge = MergeState::Won {
            grants: candidate.grants,
        };
        self.role = Role::Leader(Box::new(Leader::new(
            candidate.c,
            merge,
            self.params.strict,
        )));
    }

    /// Stickiness (DESIGN.md §3.1): refuse while a live leader's forward (or
    /// our own start) is recent, or while we lead with a lease — except for a
    /// candidate from the node that leader runs on, and for the target of a
    /// transfer that leader opened.
    fn sticky_refuses(&self, c: LeaderId, transfer_from: Option<LeaderId>) -> bool {
        if let Role::Leader(leader) = &self.role {
            let target = leader.transfer.is_some_and(|t| t.open && t.to == c.node);
            if self.now < leader.lease_until && c.node != self.id && !target {
                return true;
            }
        }
        if self.now >= self.sticky_until {
            return false;
        }
        match self.following.leader {
            Some(leader) if c.node == leader.node => false,
            Some(leader) => {
                // Sticky only because of `leader`: its greatest-seq forward
                // must carry the mark for this candidate (R5b).
                let handing_over = transfer_from == Some(leader);
                let marked = self.following.transfer_to == Some(c.node);
                !(handing_over && (marked || self.mutations.transfer_from_alone))
            }
            None => true,
        }
    }

    /// Whether a vote for `c` from `from`, with that durable pair, would be
    /// granted now (DESIGN.md §3.1).
    fn would_grant(
        &self,
        from: NodeId,
        c: LeaderId,
        req_committer: LeaderId,
        req_max_lsn: Option<Lsn>,
        transfer_from: Option<LeaderId>,
    ) -> bool {
        let fresh_enough = (req_committer, req_max_lsn) >= (self.committer, self.accepted.max());
        let vote_allows = if self.mutations.classic_vote {
            c.term > self.vote.term || c == self.vote
        } else {
            c >= self.vote
        };
        vote_allows
            && c.node == from
            && fresh_enough
            && self.config.is_voter(c.node)
            && self.may_vote()
            && !self.sticky_refuses(c, transfer_from)
    }

    /// The election timer fired: ask the voters whether they would grant
    /// `(max_term_seen + 1, self)` before raising the vote to it (the probe,
    /// DESIGN.md §3.1 traft note). A replica that cannot win — its log is
    /// staler than a quorum's, or a live leader holds the others — thus
    /// never pushes its vote above the leader's, whose forwards it would
    /// then refuse; the leader's re-election would only repeat whenever the
    /// election outlasts the replica's timer.
    pub(super) fn start_probe(&mut self) {
        // Whatever the answers, try again after an election timeout.
        self.election_deadline = self.now + self.params.t_min + self.random(self.params.t_min);
        if self.mutations.no_probe || std::mem::take(&mut self.skip_probe) {
            self.try_campaign(None);
            return;
        }
        if !self.may_vote() {
            return;
        }
        let c = LeaderId::new(self.max_term_seen + 1, self.id);
        debug_assert!(c > self.vote, "max_term_seen covers the vote");
        self.probe = Some(Probe {
            c,
            yes: BTreeSet::new(),
            no: BTreeSet::new(),
        });
        for voter in self.config.voters() {
            if voter != self.id {
                let msg = Message::Probe {
                    candidate: c,
                    committer: self.committer,
                    max_lsn: self.accepted.max(),
                };
                self.send(voter, msg);
            }
        }
        self.check_probe();
    }

    /// Campaigns once the probe has a quorum of yes (itself included).
    fn check_probe(&mut self) {
        let me = self.id;
        let Some(probe) = &self.probe else { return };
        if !self.config.is_quorum(|n| n == me || probe.yes.contains(&n)) {
            return;
        }
        self.probe = None;
        if matches!(self.role, Role::Follower) {
            self.try_campaign(None);
        }
    }

    pub(super) fn on_probe(
        &mut self,
        from: NodeId,
        c: LeaderId,
        committer: LeaderId,
        max_lsn: Option<Lsn>,
    ) {
        let would_grant = self.would_grant(from, c, committer, max_lsn, None);
        let msg = Message::ProbeReply {
            candidate: c,
            would_grant,
            vote: self.vote,
            committer: self.committer,
            max_lsn: self.accepted.max(),
        };
        self.send(from, msg);
    }

    pub(super) fn on_probe_reply(
        &mut self,
        from: NodeId,
        answered: LeaderId,
        would_grant: bool,
        vote: LeaderId,
        _committer: LeaderId,
    ) {
        // A vote the voter holds is real: campaign above it next time.
        self.max_term_seen = self.max_term_seen.max(vote.term);
        let me = self.id;
        let Some(probe) = &mut self.probe else { return };
        if probe.c != answered {
            return;
        }
        if would_grant {
            probe.yes.insert(from);
            self.check_probe();
        } else {
            probe.no.insert(from);
            let no = &probe.no;
            if !self.config.is_quorum(|n| n == me || !no.contains(&n)) {
                // No quorum can say yes: wait for the next timeout.
                self.probe = None;
            }
        }
    }

    pub(super) fn on_elect_req(
        &mut self,
        from: NodeId,
        c: LeaderId,
        req_committer: LeaderId,
        req_accepted: TailBitmap,
        transfer_from: Option<LeaderId>,
    ) {
        let grant = self.would_grant(from, c, req_committer, req_accepted.max(), transfer_from);
        if !grant {
            let msg = Message::ElectReply {
                candidate: c,
                vote: self.vote,
                committer: self.committer,
                max_lsn: self.accepted.max(),
                grant: None,
            };
            self.send(from, msg);
            return;
        }
        // Set the vote in memory first, then read what the reply carries: a
        // write completing later cannot be acked to an older leader (I1).
        if c > self.vote {
            self.raise_vote(c);
            self.following = Default::default();
        }
        // Give the candidate an election timeout to win before campaigning
        // against it (only liveness rests on this).
        self.election_deadline = self.now + self.params.t_min + self.random(self.params.t_min);
        let records = if self.committer == req_committer {
            self.records_in(&self.accepted.difference(&req_accepted))
        } else {
            Vec::new()
        };
        let grant = Grant {
            accepted: self.accepted.clone(),
            committed: self
                .mutations
                .reported_committed(&self.durable_committed, &self.committed)
                .clone(),
            records,
        };
        let reply = Message::ElectReply {
            candidate: c,
            vote: self.vote,
            committer: self.committer,
            max_lsn: self.accepted.max(),
            grant: Some(grant),
        };
        // Sent once the slot holds a vote >= c (`poll_grants`).
        self.grant_replies.push((c, from, reply));
    }

    pub(super) fn on_elect_reply(
        &mut self,
        from: NodeId,
        answered: LeaderId,
        vote: LeaderId,
        committer: LeaderId,
        max_lsn: Option<Lsn>,
        grant: Option<Grant>,
    ) {
        self.max_term_seen = self.max_term_seen.max(vote.term);
        let own_freshness = (self.committer, self.accepted.max());
        let Role::Candidate(candidate) = &mut self.role else {
            return;
        };
        // A reply names the campaign it answers; one for an earlier campaign
        // of ours is ignored (N8a).
        if answered != candidate.c && !self.mutations.accept_stale_replies {
            return;
        }
        match grant {
            Some(grant) => {
                let mutant =
                    self.mutations.accept_stale_replies || self.mutations.report_pending_pair;
                debug_assert!(committer <= self.committer || mutant);
                candidate.grants.insert(from, grant);
            }
            None => {
                if vote > candidate.c || (committer, max_lsn) > own_freshness {
                    // Someone is ahead. Stop only once the refusals leave no
                    // quorum: stopping at the first one lets a staler replica
                    // whose failed campaigns keep its vote ahead end every
                    // campaign that could still win (a duel, seed 818).
                    candidate.refused.insert(from);
                    let refused = &candidate.refused;
                    if !self.config.is_quorum(|n| !refused.contains(&n)) {
                        self.role = Role::Follower;
                        self.election_deadline = self.now + self.random(self.params.t_min);
                    }
                }
            }
        }
    }
}
