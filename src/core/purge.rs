//! Compaction (DESIGN.md §3.7): records a durable snapshot holds are dropped
//! from memory and their WAL segments deleted, but only below the *purge
//! floor* — every member holds those LSNs durably as committed, so no
//! replica will ever need their records from another, and no snapshot has
//! to be sent for them.
//!
//! A purge goes in three steps: a `Committed` frame is written (the
//! segments to be deleted may hold the only frames that said what is
//! committed above the purge point); once it is durable and the slot holds
//! `committer` (they may hold its only base frame), the records are dropped
//! and the runtime is told to delete the segments.

use super::deps::Conflicts;
use super::io::{Output, WalEntry, WriteId};
use super::replica::{Replica, Role};
use crate::bitmap::TailBitmap;
use crate::ids::Lsn;

/// A purge waiting for its `Committed` frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingPurge {
    pub write: WriteId,
    pub below: Lsn,
}

impl<C: Conflicts> Replica<C> {
    /// The runtime made a snapshot at `applied` durable.
    pub(super) fn on_snapshot_saved(&mut self, applied: TailBitmap) {
        assert!(
            applied.is_subset(&self.applied),
            "a snapshot holds only applied LSNs"
        );
        // A newer cut replaces an older one; an older report changes nothing.
        if self.snapshot.is_subset(&applied) {
            self.snapshot = applied;
        }
    }

    /// Notes a follower's durable `committed` (from its ack); a leader then
    /// raises the purge floor to what every member holds.
    pub(super) fn note_held(&mut self, from: crate::ids::NodeId, committed: &TailBitmap) {
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(progress) = leader.followers.get_mut(&from) else {
            return;
        };
        progress.held_below = progress.held_below.max(committed.first_unset());
        let own = self.durable_committed.first_unset();
        let floor = self
            .config
            .members()
            .into_iter()
            .map(|m| match leader.followers.get(&m) {
                Some(p) => p.held_below,
                None if m == self.id => own,
                None => 0,
            })
            .min()
            .unwrap_or(0);
        self.purge_floor = self.purge_floor.max(floor);
    }

    /// Where a purge could go now: below the floor, inside the durable
    /// snapshot's prefix and the log's.
    fn purge_target(&self) -> Lsn {
        let held = self.snapshot.first_unset().min(self.accepted.first_unset());
        if self.mutations.purge_below_snapshot_alone {
            return held;
        }
        self.purge_floor.min(held)
    }

    pub(super) fn poll_purge(&mut self) {
        if let Some(pending) = self.pending_purge {
            // A purge waits for its frame and for the slot: the segments it
            // deletes may hold the only base frame naming `committer`, which
            // recovery then takes from the slot's copy (S3a).
            let slot_holds = self.mutations.purge_ignores_slot
                || (self.slot_in_flight.is_none() && self.slot.committer == self.committer);
            if !self.writes.contains_key(&pending.write) && slot_holds {
                self.pending_purge = None;
                self.purge(pending.below);
            }
            return;
        }
        if self.hold_answers {
            return;
        }
        let below = self.purge_target();
        if below <= self.purged.first_unset() {
            return;
        }
        // The frames to be deleted may be the only ones saying what is
        // committed: say it again after them first.
        let committed = self.committed.intersection(&self.accepted);
        let write = self.append(WalEntry::Committed { committed });
        self.pending_purge = Some(PendingPurge { write, below });
    }

    fn purge(&mut self, below: Lsn) {
        let prefix = TailBitmap::prefix(below);
        assert!(
            prefix.is_subset(&self.snapshot) && prefix.is_subset(&self.applied),
            "purge only what a durable snapshot holds"
        );
        assert!(
            prefix.is_subset(&self.accepted) && prefix.is_subset(&self.durable_committed),
            "purge only durable committed LSNs"
        );
        self.log = self.log.split_off(&below);
        self.purged.insert_prefix(below);
        if let Role::Leader(leader) = &mut self.role {
            // Deps below the purge point are implied (DESIGN.md §3.4, S6):
            // the index no longer has the records that wrote them.
            leader.deps.raise_barrier(below);
        }
        self.out.push(Output::Purge { below });
    }
}
