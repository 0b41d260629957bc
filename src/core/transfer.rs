//! Leadership transfer (DESIGN.md §3.1): the leader stops proposing and
//! serving lease reads, marks its forwards `transfer_to = B` once `B` holds
//! everything it does, and cancels if `B` has not won by the timeout.

use super::deps::Conflicts;
use super::replica::{MergeState, Replica, Role, Transfer};
use crate::ids::NodeId;

impl<C: Conflicts> Replica<C> {
    pub(super) fn on_transfer(&mut self, to: NodeId) {
        let timeout = self.params.transfer_timeout;
        let now = self.now;
        let voter = self.config.is_voter(to);
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let established = matches!(leader.merge, MergeState::Established);
        if !established || to == self.id || !voter || leader.transfer.is_some() {
            return;
        }
        if !leader.followers.contains_key(&to) {
            return;
        }
        leader.transfer = Some(Transfer {
            to,
            deadline: now + timeout,
            open: false,
        });
    }

    /// Opens the transfer once the target holds all the leader's records;
    /// cancels it at the timeout.
    pub(super) fn poll_transfer(&mut self) {
        let all = self.leader_lsns();
        let now = self.now;
        let no_cancel = self.mutations.no_transfer_cancel;
        let writes_settled = self.writes.is_empty();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(transfer) = &mut leader.transfer else {
            return;
        };
        if now >= transfer.deadline && !no_cancel {
            // Cancel: forwards drop the mark, and only a lease from seqs sent
            // from now on serves reads again (R5b).
            leader.transfer = None;
            leader.lease_until = 0;
            leader.lease_floor = leader.next_seq;
            leader.sent_at.clear();
            return;
        }
        if transfer.open || !leader.queue.is_empty() || !writes_settled {
            return;
        }
        let caught_up = leader
            .followers
            .get(&transfer.to)
            .is_some_and(|p| !p.needs_base && all.is_subset(&p.acked));
        if caught_up {
            transfer.open = true;
            leader.round_due = true;
        }
    }
}

impl<C: Conflicts> Replica<C> {
    /// The leader we follow hands leadership to us: campaign now, naming it.
    pub(super) fn poll_transfer_target(&mut self) {
        let Some(c) = self.following.leader else {
            return;
        };
        let handed_to_us = self.following.transfer_to == Some(self.id);
        if handed_to_us && matches!(self.role, Role::Follower) && self.vote == c {
            self.try_campaign(Some(c));
        }
    }
}
