//! The WAL writer: frames packed back to back in segments, each append one
//! write of whole blocks plus one sync, the last partial block kept in
//! memory and written again with the next append. After a failed sync it
//! refuses every further append: nothing may pretend that data is durable.
//!
//! Writes may be in flight together (`plan`, `completed`): the durable mark
//! moves only over a contiguous prefix of completed writes, each frame's
//! `durable_upto` is that mark when it was planned, and a write never shares
//! a block with one still in flight — the disk may apply two overlapping
//! writes in either order — so a write planned while the one holding the
//! partial last block is in flight starts at the next block, past the zeros
//! that write padded its block with (recovery steps over them, DESIGN.md §4).

use super::gather::{LentFrame, WriteBytes};
use super::purge::{LiveSegment, SegmentReach};
use super::scan::{
    scan_with, Position, ScanError, ScanRules, SegmentBytes, FIRST_WAL_SEQ, PADDING_MAX,
};
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

impl RecoveredFrame {
    /// Its `wal_seq` (recovery verified the frame).
    pub fn wal_seq(&self) -> u64 {
        crate::frame::Frame::decode(&self.bytes)
            .expect("recovery returns valid frames")
            .header
            .wal
            .wal_seq
    }
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

/// Zeroes what lies past the recovered end within recovery's padding
/// window, before anything is appended.
///
/// Why: frames cut at an earlier recovery can sit there (a write that the
/// power tore, of an incarnation not below the end's). The next append
/// rewrites the end's block, zero-padded; if it then rolls over into a new
/// segment, nothing newer lies between the end and those frames, and a
/// later recovery would step over the padding and take them back, ending
/// the log before the new segment's acknowledged frames (SCENARIOS N0b).
/// The same holds for a frame inside the end's own block, should that
/// rewrite tear after zeros in front of it. Zeroed here, durably and the
/// farthest block first (a torn zeroing then never leaves zeros in front of
/// a stale frame), the window holds nothing to take, and any later write
/// into it leaves only its own bytes and zeros there.
fn clear_past_the_end<S: Storage>(
    storage: &mut S,
    end: Position,
    bytes: &[u8],
    segment_size: usize,
) -> Result<(), WalError> {
    let first = end.offset / BLOCK * BLOCK;
    let to = (end.offset + PADDING_MAX)
        .next_multiple_of(BLOCK)
        .min(segment_size)
        .min(bytes.len());
    for block in (first..to).step_by(BLOCK).rev() {
        // The end's own block keeps what lies before the end.
        let keep = end.offset.saturating_sub(block).min(BLOCK);
        if bytes[block + keep..block + BLOCK].iter().all(|&b| b == 0) {
            continue;
        }
        let mut cleared = AlignedVec::<BLOCK>::with_capacity(BLOCK);
        cleared.extend_from_slice(&bytes[block..block + keep]);
        cleared.resize(BLOCK, 0);
        storage
            .write_durable(end.segment, block, &[&cleared])
            .map_err(io_err("clear past the end", end.segment))?;
    }
    Ok(())
}

/// One write of whole blocks the WAL planned: the caller carries it out
/// (write and sync), several at once if it can, and reports it with
/// `Wal::completed`.
#[derive(Debug)]
pub struct PlannedWrite {
    pub id: u64,
    pub segment: u64,
    pub offset: usize,
    pub bytes: WriteBytes,
}

/// Where the planner puts one frame.
#[derive(Clone, Copy, Debug)]
struct Placed {
    /// It starts the next segment.
    rollover: bool,
    /// Its offset in its segment.
    at: usize,
    /// Lent to its write, not copied.
    lent: bool,
    /// Bytes of it (and of the padding before it) the write copies, at most.
    staged: usize,
}

/// Frames at least this large are lent to the write that carries them
/// instead of copied into it (gather.rs); smaller ones cost little to copy
/// and their padding would waste a larger share of the segment.
pub const LEND_MIN: usize = 64 << 10;
/// Frames lent to one write at most: each adds up to three runs to the
/// write's vector, which the kernel bounds (`IOV_MAX` is 1024).
pub const LENT_PER_WRITE_MAX: usize = 64;

/// A planned write not yet reported durable.
#[derive(Clone, Copy, Debug)]
struct WriteInFlight {
    /// The `wal_seq` of the first frame it ends (frames before it are in
    /// earlier writes).
    first_seq: u64,
    segment: u64,
    done: bool,
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
    /// Planned writes by id, until they and every earlier one completed.
    in_flight: BTreeMap<u64, WriteInFlight>,
    next_write: u64,
    /// The write that last wrote the block holding `offset`.
    tail_write: Option<u64>,
    /// Write buffers back from completed writes, for the next ones.
    buffers: Vec<AlignedVec<BLOCK>>,
}

/// Write buffers kept for reuse, at most, and the largest one kept: a
/// buffer reused costs no page faults, one kept costs memory while idle.
pub const WRITE_BUFFERS_KEPT: usize = 8;
pub const WRITE_BUFFER_KEPT_MAX: usize = 8 << 20;

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
        if options.rules.clear_past_the_end {
            clear_past_the_end(&mut storage, end, &buffers[at], options.segment_size)?;
        }
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
        let mut wal = Wal {
            storage,
            options,
            segment: end.segment,
            offset: end.offset,
            tail,
            spare: indexes[at + 1..].to_vec(),
            live,
            next_seq: found.next_seq.max(FIRST_WAL_SEQ),
            poisoned: None,
            in_flight: BTreeMap::new(),
            next_write: 0,
            tail_write: None,
            buffers: Vec::new(),
        };
        wal.adopt_next_ahead();
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
        let (first, writes) = self.plan(frames)?;
        let mut failed = None;
        for write in writes {
            if failed.is_none() {
                let pieces = write.bytes.pieces();
                let result = self
                    .storage
                    .write_durable(write.segment, write.offset, &pieces);
                drop(pieces);
                failed = self.completed(write.id, result).err();
            }
            // Every lent frame goes back, whatever happened to its write.
            for lent in self.write_over(write.bytes) {
                frames[(lent.wal_seq - first) as usize] = lent.frame;
            }
        }
        failed.map_or(Ok(first), Err)
    }

    /// Takes back a write that is over: its staging buffer, for a later
    /// write; returns the frames lent to it, for their owners.
    pub fn write_over(&mut self, bytes: WriteBytes) -> Vec<LentFrame> {
        let (staged, lent) = bytes.into_parts();
        self.recycle(staged);
        lent
    }

    /// Takes back the buffer of a write that is over, for a later write.
    pub fn recycle(&mut self, mut buffer: AlignedVec<BLOCK>) {
        if buffer.capacity() > WRITE_BUFFER_KEPT_MAX {
            return;
        }
        buffer.clear();
        if self.buffers.len() == WRITE_BUFFERS_KEPT {
            // The smallest goes: the largest serve every batch.
            let smallest = (0..self.buffers.len())
                .min_by_key(|&i| self.buffers[i].capacity())
                .expect("kept buffers");
            if self.buffers[smallest].capacity() >= buffer.capacity() {
                return;
            }
            self.buffers.swap_remove(smallest);
        }
        self.buffers.push(buffer);
    }

    /// An empty write buffer with room for `capacity` bytes: the smallest
    /// kept one that is large enough, else a new one (growing a kept one
    /// would copy its old bytes for nothing).
    fn write_buffer(&mut self, capacity: usize) -> AlignedVec<BLOCK> {
        let fits = (0..self.buffers.len())
            .filter(|&i| self.buffers[i].capacity() >= capacity)
            .min_by_key(|&i| self.buffers[i].capacity());
        match fits {
            Some(i) => {
                let buffer = self.buffers.swap_remove(i);
                debug_assert!(buffer.is_empty());
                buffer
            }
            None => AlignedVec::with_capacity(capacity),
        }
    }

    /// Lays `frames` out in the segments as `append` does, but leaves the
    /// writes to the caller: returns the `wal_seq` of the first frame and
    /// the writes that carry them, in order. They are durable once
    /// `durable_mark` passes the last frame's `wal_seq`.
    pub fn plan(
        &mut self,
        frames: &mut [AlignedVec],
    ) -> Result<(u64, Vec<PlannedWrite>), WalError> {
        let result = self.plan_inner(frames);
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

    /// Every frame below this `wal_seq` is durable: the first frame of the
    /// oldest write not yet completed, or the next frame if none is.
    pub fn durable_mark(&self) -> u64 {
        self.in_flight
            .values()
            .next()
            .map_or(self.next_seq, |w| w.first_seq)
    }

    /// Planned writes not yet below the durable mark.
    pub fn writes_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Reports planned write `id` done; returns the durable mark. A failed
    /// write poisons the WAL: the disk may hold part of it, and what is
    /// planned after it will never count as durable.
    pub fn completed(&mut self, id: u64, result: io::Result<()>) -> Result<u64, WalError> {
        let segment = self.in_flight.get(&id).map_or(self.segment, |w| w.segment);
        if let Err(source) = result {
            // After a failed sync the page cache may have dropped the dirty
            // pages: a retry could report data durable that is not.
            let error = WalError::io("durable write", segment, source);
            if self.poisoned.is_none() {
                self.poisoned = Some(error.to_string());
            }
            return Err(error);
        }
        if let Some(reason) = &self.poisoned {
            return Err(WalError::Poisoned {
                segment,
                reason: reason.clone(),
            });
        }
        let write = self
            .in_flight
            .get_mut(&id)
            .expect("a planned write completes once");
        assert!(!write.done, "a planned write completes once");
        write.done = true;
        while let Some(entry) = self.in_flight.first_entry() {
            if !entry.get().done {
                break;
            }
            entry.remove();
        }
        Ok(self.durable_mark())
    }

    fn plan_inner(
        &mut self,
        frames: &mut [AlignedVec],
    ) -> Result<(u64, Vec<PlannedWrite>), WalError> {
        if let Some(reason) = &self.poisoned {
            return Err(WalError::Poisoned {
                segment: self.segment,
                reason: reason.clone(),
            });
        }
        let first = self.next_seq;
        if frames.is_empty() {
            return Ok((first, Vec::new()));
        }
        // Checked before anything moves: a frame larger than a segment is
        // refused without poisoning the WAL.
        if let Some(f) = frames.iter().find(|f| f.len() > self.options.segment_size) {
            return Err(WalError::FrameTooLarge {
                len: f.len(),
                segment_size: self.options.segment_size,
            });
        }
        // The block holding `offset` is still being written: start at the
        // next one (the zeros between are the earlier write's padding).
        let tail_busy = self
            .tail_write
            .is_some_and(|w| self.in_flight.contains_key(&w));
        let mut offset = self.offset;
        if offset % BLOCK != 0 && tail_busy {
            offset = offset.next_multiple_of(BLOCK);
        }
        // Where each frame goes, decided before a byte is written: the
        // segments this batch rolls over into are made ready first, so a
        // full disk shows here, with nothing changed.
        let start_offset = offset;
        let placed = self.place_all(offset, frames);
        let rollovers = placed.iter().filter(|p| p.rollover).count() as u64;
        self.reserve_segments(rollovers)?;
        if start_offset != self.offset {
            self.offset = start_offset;
            self.tail.clear();
        }
        // Every frame before the oldest write in flight is durable: that is
        // what these frames vouch for.
        let durable_upto = self.durable_mark();
        let staged = self.tail.len() + placed.iter().map(|p| p.staged).sum::<usize>();
        let capacity = staged.next_multiple_of(BLOCK);
        let mut batch = WriteBytes::new(self.write_buffer(capacity));
        batch.push_copy(&self.tail);
        let mut batch_start = self.offset / BLOCK * BLOCK;
        let mut writes = Vec::new();
        let mut write_first = first;
        for (frame, place) in frames.iter_mut().zip(placed) {
            let len = frame.len();
            let wal = WalFields {
                wal_seq: self.next_seq,
                incarnation: self.options.incarnation,
                durable_upto,
            };
            set_wal_fields(frame, wal)?;
            if place.rollover {
                // It does not fit: what is gathered goes to this segment,
                // the frame starts the next one.
                let next = WriteBytes::new(self.write_buffer(capacity));
                let gathered = std::mem::replace(&mut batch, next);
                writes.extend(self.cut_write(batch_start, gathered, write_first));
                write_first = self.next_seq;
                self.next_segment()?;
                batch_start = 0;
            }
            self.live.entry(self.segment).or_default().note(frame)?;
            if place.lent {
                batch.push_zeros(place.at - self.offset);
                let memory = frame.as_ptr() as usize % BLOCK;
                let lead = (BLOCK - memory) % BLOCK;
                let middle = lead..lead + (len - lead) / BLOCK * BLOCK;
                batch.push_lent(self.next_seq, std::mem::take(frame), middle);
            } else {
                debug_assert_eq!(place.at, self.offset);
                batch.push_copy(frame);
            }
            self.offset = place.at + len;
            self.next_seq += 1;
        }
        let kept = self.offset % BLOCK;
        self.tail = batch.staged_tail(kept).to_vec();
        let last = self.cut_write(batch_start, batch, write_first);
        if let Some(write) = &last {
            self.tail_write = Some(write.id);
        }
        writes.extend(last);
        Ok((first, writes))
    }

    /// Where each of `frames` goes, the first with the next free byte at
    /// `offset` of the current segment.
    fn place_all(&self, mut offset: usize, frames: &[AlignedVec]) -> Vec<Placed> {
        let mut lent = 0;
        frames
            .iter()
            .map(|frame| {
                let mut placed = self.place(offset, frame, lent);
                if placed.at + frame.len() > self.options.segment_size {
                    lent = 0;
                    placed = Placed {
                        rollover: true,
                        ..self.place(0, frame, lent)
                    };
                }
                lent += usize::from(placed.lent);
                offset = placed.at + frame.len();
                placed
            })
            .collect()
    }

    /// Where `frame` goes with the next free byte at `offset`, `lent`
    /// frames lent to its write already. A large frame is lent to the
    /// write (gather.rs): it goes where its first block-aligned byte in
    /// memory lands on a block, past fewer than `BLOCK` zeros — unless that
    /// would open a segment (recovery looks for a segment's first frame at
    /// its start) or not fit in it. Other frames are copied, back to back.
    fn place(&self, offset: usize, frame: &AlignedVec, lent: usize) -> Placed {
        let copied = Placed {
            rollover: false,
            at: offset,
            lent: false,
            staged: frame.len(),
        };
        if frame.len() < LEND_MIN || lent >= LENT_PER_WRITE_MAX {
            return copied;
        }
        let memory = frame.as_ptr() as usize % BLOCK;
        let at = offset + (memory + BLOCK - offset % BLOCK) % BLOCK;
        if (at != offset && offset == 0) || at + frame.len() > self.options.segment_size {
            return copied;
        }
        Placed {
            rollover: false,
            at,
            lent: true,
            // At most the padding's block, the frame's unaligned start and
            // its last partial block are copied.
            staged: 3 * BLOCK,
        }
    }

    /// A write of `bytes`, zero-padded here to whole blocks, at `start` of
    /// the current segment, ending the frames from `first_seq` on.
    fn cut_write(
        &mut self,
        start: usize,
        mut bytes: WriteBytes,
        first_seq: u64,
    ) -> Option<PlannedWrite> {
        if bytes.is_empty() {
            self.recycle(bytes.into_parts().0);
            return None;
        }
        bytes.finish();
        let id = self.next_write;
        self.next_write += 1;
        self.in_flight.insert(
            id,
            WriteInFlight {
                first_seq,
                segment: self.segment,
                done: false,
            },
        );
        Some(PlannedWrite {
            id,
            segment: self.segment,
            offset: start,
            bytes,
        })
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
        self.adopt_next_ahead();
        Ok(())
    }

    /// Has the segment after the current one made ready while this one
    /// fills, unless it is ready already: its name's directory sync is then
    /// off the commit path.
    fn adopt_next_ahead(&mut self) {
        let next = self.segment + 1;
        if !self.spare.contains(&next) {
            self.storage.adopt_ahead(next, self.options.segment_size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode, Record, RecordBatch, HEADER_LEN};
    use crate::ids::LeaderId;
    use crate::wal::MemStorage;

    fn frame(lsn: u64) -> AlignedVec {
        sized(lsn, 100)
    }

    fn options() -> WalOptions {
        WalOptions {
            segment_size: 4 * BLOCK,
            incarnation: 1,
            rules: Default::default(),
        }
    }

    #[test]
    fn write_buffers_are_kept_largest_first_and_handed_out_smallest_fitting() {
        let (mut wal, _) = Wal::open(MemStorage::default(), options()).unwrap();
        for blocks in 1..=WRITE_BUFFERS_KEPT + 4 {
            wal.recycle(AlignedVec::with_capacity(blocks * BLOCK));
        }
        wal.recycle(AlignedVec::with_capacity(WRITE_BUFFER_KEPT_MAX + BLOCK));
        assert_eq!(wal.buffers.len(), WRITE_BUFFERS_KEPT);
        let smallest = wal.buffers.iter().map(|b| b.capacity()).min().unwrap();
        assert!(smallest >= 5 * BLOCK, "the smallest went first");
        assert!(wal
            .buffers
            .iter()
            .all(|b| b.capacity() <= WRITE_BUFFER_KEPT_MAX));
        let fits = wal.write_buffer(6 * BLOCK + 1);
        assert!(fits.capacity() > 6 * BLOCK && fits.capacity() < 8 * BLOCK);
        let fresh = wal.write_buffer(100 * BLOCK);
        assert!(fresh.capacity() >= 100 * BLOCK);
        assert_eq!(wal.buffers.len(), WRITE_BUFFERS_KEPT - 1);
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

    /// Frame `lsn` of about `len` bytes.
    fn sized(lsn: u64, len: usize) -> AlignedVec {
        let record = Record {
            author: LeaderId::new(1, 1),
            lsn,
            cmd: vec![3; len],
            deps: Default::default(),
        };
        encode(&RecordBatch {
            records: vec![record],
        })
        .unwrap()
    }

    fn wide() -> WalOptions {
        WalOptions {
            segment_size: 64 * BLOCK,
            ..options()
        }
    }

    /// Two batches planned before either is written: the second starts on a
    /// fresh block (never sharing one with the first) and vouches only for
    /// what was durable before the first.
    fn two_in_flight() -> (Wal<MemStorage>, PlannedWrite, PlannedWrite) {
        let (mut wal, _) = Wal::open(MemStorage::default(), wide()).unwrap();
        wal.append(&mut [sized(0, 300)]).unwrap();
        let (first, mut a) = wal.plan(&mut [sized(1, 5000), sized(2, 700)]).unwrap();
        let (second, mut b) = wal.plan(&mut [sized(3, 900)]).unwrap();
        assert_eq!((first, second), (2, 4));
        let (a, b) = (a.remove(0), b.remove(0));
        assert_eq!(a.offset, 0, "the first rewrites the partial block");
        assert_eq!(
            b.offset,
            a.offset + a.bytes.len(),
            "the second starts past it"
        );
        assert_eq!(wal.durable_mark(), 2);
        (wal, a, b)
    }

    /// Writes the first `len` bytes of planned write `w`, durably.
    fn carry_out(wal: &mut Wal<MemStorage>, w: &PlannedWrite, len: usize) {
        let mut prefix = AlignedVec::<BLOCK>::new();
        prefix.extend_from_slice(&w.bytes.pieces().concat()[..len]);
        wal.storage_mut()
            .write_durable(w.segment, w.offset, &[&prefix])
            .unwrap();
    }

    fn recover(wal: Wal<MemStorage>) -> (Vec<u64>, Recovered) {
        let mut storage = wal.into_storage();
        storage.restore_power(|_| 0);
        let (_, found) = Wal::open(storage, wide()).unwrap();
        let seqs = found.frames.iter().map(RecoveredFrame::wal_seq).collect();
        (seqs, found)
    }

    #[test]
    fn writes_in_flight_complete_in_any_order_and_recovery_steps_over_the_padding() {
        let (mut wal, a, b) = two_in_flight();
        carry_out(&mut wal, &b, b.bytes.len());
        carry_out(&mut wal, &a, a.bytes.len());
        assert_eq!(
            wal.completed(b.id, Ok(())).unwrap(),
            2,
            "not past the first"
        );
        assert_eq!(wal.completed(a.id, Ok(())).unwrap(), 5);
        let (seqs, found) = recover(wal);
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert!(found.corruption.is_none());
    }

    #[test]
    fn first_write_torn_second_complete_is_a_clean_tail() {
        for kept in [0, BLOCK] {
            let (mut wal, a, b) = two_in_flight();
            carry_out(&mut wal, &b, b.bytes.len());
            // The power goes with the first write torn: `kept` bytes of it.
            carry_out(&mut wal, &a, kept);
            let (seqs, found) = recover(wal);
            assert_eq!(seqs, [1], "kept {kept}: only what was durable before");
            assert!(
                found.corruption.is_none(),
                "kept {kept}: {:?}",
                found.corruption
            );
            assert!(found.cut.is_some());
        }
    }

    /// The bytes recovery returns for each frame, WAL fields aside.
    fn payloads(found: &Recovered) -> Vec<Vec<u8>> {
        found
            .frames
            .iter()
            .map(|f| f.bytes[HEADER_LEN..].to_vec())
            .collect()
    }

    #[test]
    fn a_large_frame_is_lent_to_its_write_and_comes_back_whole() {
        let (mut wal, _) = Wal::open(MemStorage::default(), wide()).unwrap();
        let mut frames = [sized(0, 300), sized(1, LEND_MIN), sized(2, 500)];
        let sent: Vec<Vec<u8>> = frames.iter().map(|f| f[HEADER_LEN..].to_vec()).collect();
        let (first, writes) = wal.plan(&mut frames).unwrap();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].bytes.lent(), 1, "the large frame is not copied");
        assert!(frames[1].is_empty(), "it is with its write");
        for w in writes {
            let pieces = w.bytes.pieces();
            assert_eq!(pieces.len(), 3, "copied, lent, copied");
            wal.storage_mut()
                .write_durable(w.segment, w.offset, &pieces)
                .unwrap();
            drop(pieces);
            for lent in wal.write_over(w.bytes) {
                frames[(lent.wal_seq - first) as usize] = lent.frame;
            }
            wal.completed(w.id, Ok(())).unwrap();
        }
        let back: Vec<Vec<u8>> = frames.iter().map(|f| f[HEADER_LEN..].to_vec()).collect();
        assert_eq!(back, sent);
        // And `append` lends and gives back the same way.
        let mut more = [sized(3, LEND_MIN + 3000)];
        let more_sent = more[0][HEADER_LEN..].to_vec();
        wal.append(&mut more).unwrap();
        assert_eq!(more[0][HEADER_LEN..], more_sent[..]);
        let (seqs, found) = recover(wal);
        assert_eq!(seqs, [1, 2, 3, 4], "recovery steps over the padding");
        assert!(found.corruption.is_none());
        let mut expected = sent;
        expected.push(more_sent);
        assert_eq!(payloads(&found), expected);
    }

    #[test]
    fn a_lent_frame_behind_a_write_in_flight_pads_past_its_block_and_a_torn_first_is_a_clean_tail()
    {
        for torn in [false, true] {
            let (mut wal, _) = Wal::open(MemStorage::default(), wide()).unwrap();
            wal.append(&mut [sized(0, 300)]).unwrap();
            let (_, mut a) = wal.plan(&mut [sized(1, 700)]).unwrap();
            let (_, mut b) = wal.plan(&mut [sized(2, LEND_MIN + 100)]).unwrap();
            let (a, b) = (a.remove(0), b.remove(0));
            assert_eq!(b.bytes.lent(), 1);
            assert_eq!(b.offset, a.offset + a.bytes.len(), "never inside a's block");
            carry_out(&mut wal, &b, b.bytes.len());
            carry_out(&mut wal, &a, if torn { 0 } else { a.bytes.len() });
            let (seqs, found) = recover(wal);
            let expected: &[u64] = if torn { &[1] } else { &[1, 2, 3] };
            assert_eq!(seqs, expected, "torn {torn}");
            assert!(
                found.corruption.is_none(),
                "torn {torn}: {:?}",
                found.corruption
            );
        }
    }

    #[test]
    fn a_write_after_the_one_in_flight_completed_shares_its_block_again() {
        let (mut wal, _) = Wal::open(MemStorage::default(), wide()).unwrap();
        let (_, a) = wal.plan(&mut [sized(0, 300)]).unwrap();
        let a = &a[0];
        wal.storage_mut()
            .write_durable(a.segment, a.offset, &a.bytes.pieces())
            .unwrap();
        wal.completed(a.id, Ok(())).unwrap();
        let (_, b) = wal.plan(&mut [sized(1, 300)]).unwrap();
        assert_eq!(b[0].offset, 0, "no padding once the block is durable");
    }
}
