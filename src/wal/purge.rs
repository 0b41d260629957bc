//! Purge (DESIGN.md §4): segments go only as a prefix of the WAL, each only
//! once everything in it and before it lies below a given LSN (a snapshot
//! covers it). A base or merge frame goes too once it lies wholly below: the
//! caller purges only once the slot file holds that frame's `committer`,
//! which recovery then takes from the slot. A purged segment is recycled as
//! a spare: its stale frames never pass for new ones (their `wal_seq`).

use super::scan::{scan, SegmentBytes};
use super::storage::Storage;
use super::writer::{Wal, WalError};
use crate::frame::{Frame, FrameError, FrameHeader, FrameKind};
use crate::ids::Lsn;

/// What a live segment holds, as far as purging cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveSegment {
    /// It holds a base or merge frame.
    pub base: bool,
    /// The greatest LSN its frames name, once known: appends do not decode
    /// their payloads for it; purge reads the segment when it needs it.
    pub reach: Option<SegmentReach>,
}

impl LiveSegment {
    /// Notes an appended frame: only its header is read.
    pub fn note(&mut self, frame: &[u8]) -> Result<(), FrameError> {
        let header = FrameHeader::read(frame)?;
        self.base |= header.kind == FrameKind::Base;
        self.reach = None;
        Ok(())
    }
}

/// What a segment's frames reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentReach {
    /// The greatest LSN a frame in it names.
    pub max_lsn: Option<Lsn>,
}

impl SegmentReach {
    pub fn add(&mut self, frame: &Frame<'_>) {
        let max = match frame.header.kind {
            FrameKind::Record => frame.record().ok().map(|r| r.lsn()),
            FrameKind::RecordBatch => frame
                .batch()
                .ok()
                .and_then(|b| b.records().last().map(|r| r.lsn())),
            FrameKind::Base => frame.base().ok().and_then(|b| {
                let records = b.records.as_slice().last().map(|r| r.lsn());
                records.max(b.keep.view().max())
            }),
            FrameKind::Committed | FrameKind::Message | FrameKind::Hello => None,
        };
        self.max_lsn = self.max_lsn.max(max);
    }
}

impl<S: Storage> Wal<S> {
    /// Recycles every segment of the WAL's prefix whose frames all lie below
    /// `below`; returns the indexes it took.
    pub fn purge(&mut self, below: Lsn) -> Result<Vec<u64>, WalError> {
        self.purge_segments(below, true)
    }

    /// The R3 mutant (tests only): recycles every segment wholly below
    /// `below`, not only a prefix, so a base frame can go while records it
    /// dropped stay.
    #[doc(hidden)]
    pub fn purge_not_only_a_prefix(&mut self, below: Lsn) -> Result<Vec<u64>, WalError> {
        self.purge_segments(below, false)
    }

    fn purge_segments(&mut self, below: Lsn, prefix_only: bool) -> Result<Vec<u64>, WalError> {
        // A segment still being written is not below anything yet.
        assert_eq!(self.writes_in_flight(), 0, "purge between writes");
        let candidates: Vec<u64> = self
            .live
            .keys()
            .copied()
            .take_while(|&i| i != self.segment)
            .collect();
        let mut purged = Vec::new();
        for index in candidates {
            if self.reach(index)?.max_lsn.is_some_and(|m| m >= below) {
                if prefix_only {
                    break;
                }
                continue;
            }
            purged.push(index);
        }
        for &index in &purged {
            let last = self.spare.last().copied().unwrap_or(self.segment);
            let to = last + 1;
            self.storage
                .rename(index, to)
                .map_err(|source| WalError::io("recycle", index, source))?;
            self.live.remove(&index);
            self.spare.push(to);
        }
        Ok(purged)
    }

    /// What segment `index` reaches, reading it if not known yet. Its live
    /// frames start at offset 0 and run in `wal_seq` order.
    fn reach(&mut self, index: u64) -> Result<SegmentReach, WalError> {
        if let Some(reach) = self.live.get(&index).and_then(|s| s.reach) {
            return Ok(reach);
        }
        let bytes = self
            .storage
            .read(index)
            .map_err(|source| WalError::io("read", index, source))?;
        let found = scan(&[SegmentBytes {
            index,
            bytes: &bytes,
        }]);
        let mut reach = SegmentReach::default();
        for a in &found.frames {
            reach.add(&a.frame);
        }
        self.live.entry(index).or_default().reach = Some(reach);
        Ok(reach)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::WalEntry;
    use crate::frame::Record;
    use crate::ids::LeaderId;
    use crate::wal::{entry, MemStorage, WalOptions, BLOCK};
    use crate::TailBitmap;

    fn records(lsns: std::ops::Range<u64>) -> Vec<Record> {
        lsns.map(|lsn| Record {
            author: LeaderId::new(1, 1),
            lsn,
            cmd: vec![1; 1000],
            deps: Default::default(),
        })
        .collect()
    }

    fn options() -> WalOptions {
        WalOptions {
            segment_size: 2 * BLOCK,
            incarnation: 1,
            rules: Default::default(),
        }
    }

    fn append(wal: &mut Wal<MemStorage>, e: WalEntry) {
        wal.append(&mut [entry::encode(&e).unwrap()]).unwrap();
    }

    #[test]
    fn purge_takes_a_prefix_below_the_lsn() {
        let (mut wal, _) = Wal::open(MemStorage::default(), options()).unwrap();
        let c = LeaderId::new(1, 1);
        append(
            &mut wal,
            WalEntry::Base {
                committer: c,
                keep: TailBitmap::new(),
                records: records(0..2),
                committed: TailBitmap::new(),
            },
        );
        for lsn in (2..60).step_by(2) {
            append(
                &mut wal,
                WalEntry::Records {
                    committer: c,
                    records: records(lsn..lsn + 2),
                },
            );
        }
        let before = wal.storage().segments().unwrap();
        assert!(before.len() > 6);
        append(
            &mut wal,
            WalEntry::Base {
                committer: LeaderId::new(2, 2),
                keep: TailBitmap::prefix(60),
                records: Vec::new(),
                committed: TailBitmap::prefix(60),
            },
        );
        let purged = wal.purge(40).unwrap();
        assert!(!purged.is_empty());
        assert_eq!(purged[0], before[0], "a prefix");
        // Recovery starts at the first kept segment; nothing below 40 was
        // needed, every LSN from 40 up is still there.
        let storage = wal.into_storage();
        let (mut wal, recovered) = Wal::open(storage, options()).unwrap();
        let frames = recovered
            .frames
            .iter()
            .map(|f| Frame::decode(&f.bytes).unwrap());
        let entries = entry::decode(frames, LeaderId::ZERO).unwrap();
        let lsns: Vec<u64> = entries
            .iter()
            .flat_map(|e| match e {
                WalEntry::Records { records, .. } => records.iter().map(|r| r.lsn).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert!((40..60).all(|l| lsns.contains(&l)));
        assert!(matches!(entries.last(), Some(WalEntry::Base { .. })));
        // The recycled segments are reused before any new one is made.
        let count = wal.storage().segments().unwrap().len();
        for lsn in (60..70).step_by(2) {
            append(
                &mut wal,
                WalEntry::Records {
                    committer: c,
                    records: records(lsn..lsn + 2),
                },
            );
        }
        assert_eq!(wal.storage().segments().unwrap().len(), count);
    }
}
