//! The WAL writer: frames packed back to back in segments, each append one
//! write of whole blocks plus one sync, the last partial block kept in
//! memory and written again with the next append. After a failed sync it
//! refuses every further append: nothing may pretend that data is durable.

use super::purge::{LiveSegment, SegmentReach};
use super::scan::{scan_with, Position, ScanError, ScanRules, SegmentBytes, FIRST_WAL_SEQ};
use super::storage::{Storage, BLOCK};
use crate::frame::{set_wal_fields, FrameError, WalFields};
use rkyv::util::AlignedVec;
use std::collections::BTreeMap;
use std::io;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("WAL {op} failed on segment {segment}: the disk is full")]
    DiskFull {
        op: &'static str,
        segment: u64,
        #[source]
        source: io::Error,
    },
    /// The next segment could not be made ready: nothing of the append
    /// was written and the WAL is not poisoned; it can be retried once
    /// there is space.
    #[error("no space for WAL segment {segment}: {source}")]
    NoSpaceForSegment {
        segment: u64,
        #[source]
        source: io::Error,
    },
    #[error("WAL {op} failed on segment {segment}: permission denied")]
    PermissionDenied {
        op: &'static str,
        segment: u64,
        #[source]
        source: io::Error,
    },
    #[error("WAL {op} failed on segment {segment}: {source}")]
    Io {
        op: &'static str,
        segment: u64,
        #[source]
        source: io::Error,
    },
    #[error("the WAL refuses appends after a failed sync (segment {segment}): {reason}")]
    Poisoned { segment: u64, reason: String },
    #[error("a frame of {len} bytes does not fit a segment of {segment_size}")]
    FrameTooLarge { len: usize, segment_size: usize },
    #[error("not a frame: {0}")]
    Frame(#[from] FrameError),
    #[error("the write carrying this append failed: {0}")]
    Failed(String),
    #[error("the WAL writer has stopped")]
    Closed,
}

impl WalError {
    /// An I/O failure of `op` on `segment`, with a full disk and a refused
    /// permission told apart.
    pub fn io(op: &'static str, segment: u64, source: io::Error) -> WalError {
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => WalError::DiskFull {
                op,
                segment,
                source,
            },
            io::ErrorKind::PermissionDenied => WalError::PermissionDenied {
                op,
                segment,
                source,
            },
            _ => WalError::Io {
                op,
                segment,
                source,
            },
        }
    }
}

pub(super) fn io_err(op: &'static str, segment: u64) -> impl FnOnce(io::Error) -> WalError {
    move |source| WalError::io(op, segment, source)
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Bytes per segment, a multiple of the block.
    pub segment_size: usize,
    /// The writer's boot counter: greater than at every earlier open.
    pub incarnation: u64,
    /// Recovery's rules; all on except in tests that remove one.
    pub rules: ScanRules,
}

/// A frame recovery returned: where it was and its bytes.
#[derive(Debug)]
pub struct RecoveredFrame {
    pub at: Position,
    pub bytes: AlignedVec,
}

/// What `Wal::open` found.
#[derive(Debug)]
pub struct Recovered {
    pub frames: Vec<RecoveredFrame>,
    /// Why the bytes after the last frame were cut, if any were there.
    pub cut: Option<String>,
    /// Recovery found corruption there: the frames end before it, and the
    /// replica must not vote until a newer leader's base (DESIGN.md §3.1).
    pub corruption: Option<ScanError>,
}

pub struct Wal<S: Storage> {
    pub(super) storage: S,
    pub(super) options: WalOptions,
    /// The segment being written and the offset of the next frame in it.
    pub(super) segment: u64,
    offset: usize,
    /// The bytes of the block holding `offset`, up to `offset`.
    tail: Vec<u8>,
    /// Segments after the current one, ready to be written (recycled or new).
    pub(super) spare: Vec<u64>,
    /// What each segment up to the current one holds, for purging.
    pub(super) live: BTreeMap<u64, LiveSegment>,
    next_seq: u64,
    poisoned: Option<String>,
}

impl<S: Storage> Wal<S> {
    /// Recovers the WAL from `storage`: every valid frame, in order, and a
    /// writer positioned after the last one.
    pub fn open(mut storage: S, options: WalOptions) -> Result<(Wal<S>, Recovered), WalError> {
        assert!(options.segment_size % BLOCK == 0 && options.segment_size > 0);
        let mut indexes = storage.segments().map_err(io_err("list", 0))?;
        if indexes.is_empty() {
            storage
                .prepare(0, options.segment_size)
                .map_err(io_err("prepare", 0))?;
            indexes.push(0);
        }
        let mut buffers = Vec::new();
        for &index in &indexes {
            buffers.push(storage.read(index).map_err(io_err("read", index))?);
        }
        let segments: Vec<SegmentBytes<'_>> = indexes
            .iter()
            .zip(&buffers)
            .map(|(&index, bytes)| SegmentBytes { index, bytes })
            .collect();
        let found = scan_with(&segments, options.rules);
        let frames = found
            .frames
            .iter()
            .map(|a| {
                let mut bytes = AlignedVec::new();
                bytes.extend_from_slice(a.frame.bytes);
                RecoveredFrame { at: a.at, bytes }
            })
            .collect();
        let end = found.end;
        let at = indexes
            .iter()
            .position(|&i| i == end.segment)
            .expect("end in a segment");
        let block_start = end.offset / BLOCK * BLOCK;
        let tail = buffers[at][block_start..end.offset].to_vec();
        let mut reach: BTreeMap<u64, SegmentReach> = BTreeMap::new();
        let mut live: BTreeMap<u64, LiveSegment> = BTreeMap::new();
        for &i in &indexes[..=at] {
            live.insert(i, LiveSegment::default());
            reach.insert(i, SegmentReach::default());
        }
        for a in &found.frames {
            reach.entry(a.at.segment).or_default().add(&a.frame);
            let segment = live.entry(a.at.segment).or_default();
            segment.base |= a.frame.header.kind == crate::frame::FrameKind::Base;
        }
        for (i, r) in reach {
            live.entry(i).or_default().reach = Some(r);
        }
        let wal = Wal {
            storage,
            options,
            segment: end.segment,
            offset: end.offset,
            tail,
            spare: indexes[at + 1..].to_vec(),
            live,
            next_seq: found.next_seq.max(FIRST_WAL_SEQ),
            poisoned: None,
        };
        let recovered = Recovered {
            frames,
            cut: found.cut,
            corruption: found.corruption,
        };
        Ok((wal, recovered))
    }

    /// The segment being written.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// The `wal_seq` the next frame will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Appends `frames` (encoded, WAL fields zero) and makes them durable;
    /// returns the `wal_seq` of the first. The frames are rewritten in place
    /// with their WAL fields. On error nothing is known durable, and the WAL
    /// refuses every later append: a write or sync that failed may have
    /// reached the disk in part, and the writer has moved past it.
    pub fn append(&mut self, frames: &mut [AlignedVec]) -> Result<u64, WalError> {
        let result = self.append_inner(frames);
        if let Err(e) = &result {
            let retryable = matches!(
                e,
                WalError::FrameTooLarge { .. } | WalError::NoSpaceForSegment { .. }
            );
            if self.poisoned.is_none() && !retryable {
                self.poisoned = Some(e.to_string());
            }
        }
        result
    }

    fn append_inner(&mut self, frames: &mut [AlignedVec]) -> Result<u64, WalError> {
        if let Some(reason) = &self.poisoned {
            return Err(WalError::Poisoned {
                segment: self.segment,
                reason: reason.clone(),
            });
        }
        let first = self.next_seq;
        if frames.is_empty() {
            return Ok(first);
        }
        // Checked before anything moves: a frame larger than a segment is
        // refused without poisoning the WAL.
        if let Some(f) = frames.iter().find(|f| f.len() > self.options.segment_size) {
            return Err(WalError::FrameTooLarge {
                len: f.len(),
                segment_size: self.options.segment_size,
            });
        }
        // The segments this batch rolls over into are made ready before a
        // byte is written: a full disk shows here, with nothing changed.
        let mut offset = self.offset;
        let mut rollovers = 0;
        for f in frames.iter() {
            if offset + f.len() > self.options.segment_size {
                rollovers += 1;
                offset = 0;
            }
            offset += f.len();
        }
        self.reserve_segments(rollovers)?;
        // Every frame before this batch is durable: that is what they vouch.
        let durable_upto = first;
        let total: usize = frames.iter().map(|f| f.len()).sum();
        let capacity = (self.tail.len() + total).next_multiple_of(BLOCK);
        let mut batch = AlignedVec::<BLOCK>::with_capacity(capacity);
        batch.extend_from_slice(&self.tail);
        let mut batch_start = self.offset / BLOCK * BLOCK;
        for frame in frames.iter_mut() {
            let len = frame.len();
            let wal = WalFields {
                wal_seq: self.next_seq,
                incarnation: self.options.incarnation,
                durable_upto,
            };
            set_wal_fields(frame, wal)?;
            if self.offset + len > self.options.segment_size {
                // It does not fit: what is gathered goes to this segment,
                // the frame starts the next one.
                self.flush(batch_start, &mut batch)?;
                self.next_segment()?;
                batch.clear();
                batch_start = 0;
            }
            self.live.entry(self.segment).or_default().note(frame)?;
            batch.extend_from_slice(frame);
            self.offset += len;
            self.next_seq += 1;
        }
        let used = batch.len();
        self.flush(batch_start, &mut batch)?;
        let keep_from = (self.offset / BLOCK * BLOCK) - batch_start;
        self.tail = batch[keep_from..used].to_vec();
        Ok(first)
    }

    /// Writes `bytes`, zero-padded here to whole blocks, at `start`, and syncs.
    fn flush(&mut self, start: usize, bytes: &mut AlignedVec<BLOCK>) -> Result<(), WalError> {
        if bytes.is_empty() {
            return Ok(());
        }
        bytes.resize(bytes.len().next_multiple_of(BLOCK), 0);
        let segment = self.segment;
        // After a failed sync the page cache may have dropped the dirty
        // pages: a retry could report data durable that is not (`append`
        // refuses everything from then on).
        self.storage
            .write_durable(segment, start, bytes)
            .map_err(io_err("durable write", segment))
    }

    /// Makes the `count` segments after the current one ready (spare):
    /// recycled, prepared ahead, or zero-filled here.
    fn reserve_segments(&mut self, count: u64) -> Result<(), WalError> {
        let size = self.options.segment_size;
        for index in self.segment + 1..=self.segment + count {
            if self.spare.contains(&index) {
                continue;
            }
            let adopted = self
                .storage
                .adopt_prepared(index, size)
                .map_err(io_err("adopt", index))?;
            if !adopted {
                // Nothing prepared ahead: zero it here, on the commit path.
                self.storage.prepare(index, size).map_err(|source| {
                    match WalError::io("prepare", index, source) {
                        WalError::DiskFull { source, .. } => WalError::NoSpaceForSegment {
                            segment: index,
                            source,
                        },
                        other => other,
                    }
                })?;
            }
            self.spare.push(index);
            self.spare.sort_unstable();
        }
        Ok(())
    }

    /// Moves to the next segment: a spare one (recycled, stale bytes are
    /// never read as frames: their `wal_seq` is not the next one) or a new one.
    fn next_segment(&mut self) -> Result<(), WalError> {
        let next = self.segment + 1;
        let size = self.options.segment_size;
        if self.spare.first() == Some(&next) {
            self.spare.remove(0);
        } else if !self
            .storage
            .adopt_prepared(next, size)
            .map_err(io_err("adopt", next))?
        {
            // Nothing prepared ahead: zero it here, on the commit path.
            self.storage
                .prepare(next, size)
                .map_err(io_err("prepare", next))?;
        }
        self.segment = next;
        self.offset = 0;
        self.tail.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode, Record, RecordBatch};
    use crate::ids::LeaderId;
    use crate::wal::MemStorage;

    fn frame(lsn: u64) -> AlignedVec {
        let record = Record {
            author: LeaderId::new(1, 1),
            lsn,
            cmd: vec![1; 100],
            deps: Default::default(),
        };
        encode(&RecordBatch {
            records: vec![record],
        })
        .unwrap()
    }

    fn options() -> WalOptions {
        WalOptions {
            segment_size: 4 * BLOCK,
            incarnation: 1,
            rules: Default::default(),
        }
    }

    #[test]
    fn a_failed_sync_refuses_every_later_append() {
        let (mut wal, _) = Wal::open(MemStorage::default(), options()).unwrap();
        assert_eq!(wal.append(&mut [frame(0)]).unwrap(), FIRST_WAL_SEQ);
        wal.storage_mut().fail_next_sync = true;
        assert!(matches!(
            wal.append(&mut [frame(1)]),
            Err(WalError::Io {
                op: "durable write",
                ..
            })
        ));
        assert!(matches!(
            wal.append(&mut [frame(2)]),
            Err(WalError::Poisoned { .. })
        ));
    }

    #[test]
    fn a_frame_larger_than_a_segment_is_refused_alone() {
        let (mut wal, _) = Wal::open(MemStorage::default(), options()).unwrap();
        let mut huge = AlignedVec::new();
        huge.extend_from_slice(&frame(0));
        huge.resize(5 * BLOCK, 0);
        assert!(matches!(
            wal.append(&mut [huge]),
            Err(WalError::FrameTooLarge { .. })
        ));
        assert_eq!(wal.append(&mut [frame(0)]).unwrap(), FIRST_WAL_SEQ);
    }

    #[test]
    fn frames_roll_over_into_new_segments() {
        let (mut wal, _) = Wal::open(MemStorage::default(), options()).unwrap();
        for lsn in 0..100 {
            wal.append(&mut [frame(lsn), frame(lsn)]).unwrap();
        }
        let storage = wal.into_storage();
        assert!(storage.segments().unwrap().len() >= 3);
        let (wal, recovered) = Wal::open(storage, options()).unwrap();
        assert_eq!(recovered.frames.len(), 200);
        assert_eq!(wal.next_seq(), FIRST_WAL_SEQ + 200);
    }
}
