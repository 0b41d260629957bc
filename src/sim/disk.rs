//! A replica's simulated disk: the slot file and the WAL, with writes in
//! flight. A crash loses every write not below the durable mark and the slot
//! write in flight; what is durable is what recovery sees.

use crate::core::{Durable, SlotState, WalEntry, WriteId};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Disk {
    slot: Option<SlotState>,
    slot_in_flight: Option<SlotState>,
    /// Durable WAL entries, in order.
    wal: Vec<WalEntry>,
    /// Issued writes: the entry, and whether it completed.
    wal_in_flight: BTreeMap<WriteId, (WalEntry, bool)>,
    /// A latent fault was found: recovery reports corruption.
    corrupted: bool,
    /// The last snapshot cut, written whole before the node went on: its
    /// applied set and the state machine's state.
    pub snapshot: Option<(crate::TailBitmap, super::kv::KvState)>,
}

impl Disk {
    /// Starts a slot write. A second one while the first is in flight
    /// could tear both (N6): that is refused as a violation.
    pub fn write_slot(&mut self, slot: SlotState) -> Result<(), String> {
        if let Some(in_flight) = self.slot_in_flight {
            return Err(format!(
                "two slot writes in flight (generations {} and {})",
                in_flight.generation, slot.generation
            ));
        }
        self.slot_in_flight = Some(slot);
        Ok(())
    }

    pub fn append(&mut self, id: WriteId, entry: WalEntry) {
        self.wal_in_flight.insert(id, (entry, false));
    }

    /// The slot write in flight lands; returns its generation.
    pub fn complete_slot(&mut self) -> Option<u64> {
        let slot = self.slot_in_flight.take()?;
        self.slot = Some(slot);
        Some(slot.generation)
    }

    /// Write `id` completes. The durable mark moves over the contiguous
    /// prefix of completed writes; returns it if it moved.
    pub fn complete_wal(&mut self, id: WriteId) -> Option<WriteId> {
        if let Some(write) = self.wal_in_flight.get_mut(&id) {
            write.1 = true;
        }
        let mut upto = None;
        while let Some(write) = self.wal_in_flight.first_entry() {
            if !write.get().1 {
                break;
            }
            let (id, (entry, _)) = write.remove_entry();
            self.wal.push(entry);
            upto = Some(id + 1);
        }
        upto
    }

    pub fn busy(&self) -> bool {
        self.slot_in_flight.is_some() || !self.wal_in_flight.is_empty()
    }

    pub fn in_flight(&self) -> Vec<WriteId> {
        self.wal_in_flight.keys().copied().collect()
    }

    /// Deletes the WAL's longest prefix whose entries all lie below `below`
    /// (DESIGN.md §3.7). Finer than the real WAL's segments: it purges as
    /// much as the rule allows.
    pub fn purge(&mut self, below: crate::ids::Lsn) {
        let mut cut = 0;
        for (i, entry) in self.wal.iter().enumerate() {
            let reach = match entry {
                WalEntry::Records { records, .. } => records.iter().map(|r| r.lsn).max(),
                WalEntry::Base { records, keep, .. } => {
                    records.iter().map(|r| r.lsn).max().max(keep.max())
                }
                WalEntry::Committed { .. } => None,
            };
            if reach.is_some_and(|max| max >= below) {
                break;
            }
            cut = i + 1;
        }
        self.wal.drain(..cut);
    }

    /// Power is lost: what was in flight is gone (a torn write included).
    pub fn crash(&mut self) {
        self.slot_in_flight = None;
        self.wal_in_flight.clear();
    }

    /// A latent fault damages the durable frame holding `lsn`, and a later
    /// frame vouches for it: recovery ends the log before that frame and
    /// reports corruption (DESIGN.md §4).
    pub fn corrupt(&mut self, lsn: u64) {
        let holds = |e: &WalEntry| match e {
            WalEntry::Records { records, .. } | WalEntry::Base { records, .. } => {
                records.iter().any(|r| r.lsn == lsn)
            }
            WalEntry::Committed { .. } => false,
        };
        let at = self
            .wal
            .iter()
            .position(holds)
            .expect("a durable frame holds the LSN");
        self.wal.truncate(at);
        self.corrupted = true;
    }

    /// Starts `node` from what recovery finds here, with `mutations`.
    pub fn boot(
        &self,
        node: crate::ids::NodeId,
        config: &crate::core::Config,
        params: &crate::core::Params,
        now: crate::core::Nanos,
        seed: u64,
        mutations: &crate::core::Mutations,
    ) -> crate::core::Replica<super::kv::KvConflicts> {
        let mut replica = crate::core::Replica::new(
            node,
            config.clone(),
            params.clone(),
            super::kv::KvConflicts,
            self.durable(),
            now,
            seed,
        );
        replica.set_mutations(mutations.clone());
        replica
    }

    /// What recovery finds.
    pub fn durable(&self) -> Durable {
        Durable {
            slot: self.slot,
            wal: self.wal.clone(),
            corrupted: self.corrupted,
            snapshot: self.snapshot.as_ref().map(|(applied, _)| applied.clone()),
        }
    }
}
