//! The bytes of one WAL write, gathered from two kinds of memory: runs
//! staged in one block-aligned buffer (small frames, the kept partial
//! block, padding, the unaligned ends of large frames), and the aligned
//! middles of large frames, written straight from the frames' own buffers.
//!
//! Why large frames are not copied: on this machine kind an `O_DIRECT`
//! write of memory the CPU has just written costs a third more at 1 MiB
//! than one of memory it has not (`perf/wal-experiments.md`, "Large frames
//! written from their own memory"), and the copy into a staging buffer is
//! exactly such a write. A frame is lent to the write that carries it and
//! handed back when that write is over.

use super::storage::BLOCK;
use rkyv::util::AlignedVec;

/// A frame lent to a write: its `wal_seq`, and its buffer.
#[derive(Debug)]
pub struct LentFrame {
    pub wal_seq: u64,
    pub frame: AlignedVec,
}

/// A run of the write, in file order.
#[derive(Clone, Copy, Debug)]
enum Span {
    /// `len` bytes of the staging buffer from `start`.
    Staged { start: usize, len: usize },
    /// `len` bytes of lent frame `frame` from `start`.
    Lent {
        frame: usize,
        start: usize,
        len: usize,
    },
}

/// One write's bytes: whole blocks once `finish` ran.
#[derive(Debug, Default)]
pub struct WriteBytes {
    staged: AlignedVec<BLOCK>,
    lent: Vec<LentFrame>,
    spans: Vec<Span>,
    len: usize,
}

impl WriteBytes {
    /// A write built on `staged` (emptied), a buffer kept from an earlier one.
    pub fn new(mut staged: AlignedVec<BLOCK>) -> WriteBytes {
        staged.clear();
        WriteBytes {
            staged,
            ..WriteBytes::default()
        }
    }

    /// Bytes in the write.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frames lent to it.
    pub fn lent(&self) -> usize {
        self.lent.len()
    }

    /// Its runs in file order, for a vectored write.
    pub fn pieces(&self) -> Vec<&[u8]> {
        self.spans
            .iter()
            .map(|&span| match span {
                Span::Staged { start, len } => &self.staged[start..start + len],
                Span::Lent { frame, start, len } => &self.lent[frame].frame[start..start + len],
            })
            .collect()
    }

    /// The last `n` bytes gathered; they must be staged (the kept tail).
    pub fn staged_tail(&self, n: usize) -> &[u8] {
        match self.spans.last() {
            Some(&Span::Staged { start, len }) => {
                assert!(n <= len, "the tail lies in the last staged run");
                &self.staged[start + len - n..start + len]
            }
            _ => {
                assert_eq!(n, 0, "a write ending in a lent run keeps no tail");
                &[]
            }
        }
    }

    /// Copies `bytes` onto the end.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.spans.last_mut() {
            Some(Span::Staged { start, len }) if *start + *len == self.staged.len() => {
                *len += bytes.len();
            }
            _ => {
                // A new run starts where the kernel may read it straight:
                // every earlier run ended on a block boundary.
                assert_eq!(self.staged.len() % BLOCK, 0, "staged runs start on a block");
                self.spans.push(Span::Staged {
                    start: self.staged.len(),
                    len: bytes.len(),
                });
            }
        }
        self.staged.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Zero bytes onto the end.
    pub fn push_zeros(&mut self, n: usize) {
        const ZEROS: [u8; BLOCK] = [0; BLOCK];
        let mut left = n;
        while left > 0 {
            let step = left.min(BLOCK);
            self.push_copy(&ZEROS[..step]);
            left -= step;
        }
    }

    /// Lends `frame` to the write: its bytes before `middle` are copied,
    /// `middle` itself (block-aligned in memory, whole blocks, and starting
    /// on a block of the write) is written from the frame's buffer, and the
    /// bytes after it are copied.
    pub fn push_lent(&mut self, wal_seq: u64, frame: AlignedVec, middle: std::ops::Range<usize>) {
        assert!(middle.end <= frame.len() && middle.start < middle.end);
        assert_eq!(
            (frame.as_ptr() as usize + middle.start) % BLOCK,
            0,
            "a lent run starts block-aligned in memory"
        );
        assert_eq!(middle.len() % BLOCK, 0, "a lent run is whole blocks");
        self.push_copy(&frame[..middle.start]);
        assert_eq!(self.len % BLOCK, 0, "a lent run starts on a block");
        // Staged runs start on blocks and, before a lent run, end on one.
        debug_assert_eq!(self.staged.len() % BLOCK, 0);
        self.spans.push(Span::Lent {
            frame: self.lent.len(),
            start: middle.start,
            len: middle.len(),
        });
        self.len += middle.len();
        let after = frame[middle.end..].to_vec();
        self.lent.push(LentFrame { wal_seq, frame });
        self.push_copy(&after);
    }

    /// Zero-pads the write to whole blocks.
    pub fn finish(&mut self) {
        let padded = self.len.next_multiple_of(BLOCK);
        self.push_zeros(padded - self.len);
    }

    /// The staging buffer, for a later write, and the lent frames, for
    /// their owners.
    pub fn into_parts(self) -> (AlignedVec<BLOCK>, Vec<LentFrame>) {
        (self.staged, self.lent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame-like buffer whose bytes count up.
    fn counting(len: usize) -> AlignedVec {
        let mut v = AlignedVec::with_capacity(len);
        v.extend_from_slice(&(0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        v
    }

    #[test]
    fn a_lent_frame_is_written_in_place_between_copied_ends() {
        let frame = counting(5 * BLOCK + 100);
        let lead = (BLOCK - frame.as_ptr() as usize % BLOCK) % BLOCK;
        let expected = frame.to_vec();
        let mut write = WriteBytes::default();
        // The frame goes where its first aligned byte lands on a block.
        write.push_copy(&[7u8; 40]);
        let at = 40 + (frame.as_ptr() as usize % BLOCK + BLOCK - 40) % BLOCK;
        write.push_zeros(at - 40);
        let middle = lead..lead + (frame.len() - lead) / BLOCK * BLOCK;
        write.push_lent(9, frame, middle.clone());
        write.finish();
        assert_eq!(write.len() % BLOCK, 0);
        let pieces = write.pieces();
        assert!(pieces.iter().all(|p| p.len() % BLOCK == 0));
        assert!(pieces.iter().all(|p| p.as_ptr() as usize % BLOCK == 0));
        let all: Vec<u8> = pieces.concat();
        assert_eq!(&all[..40], &[7u8; 40]);
        assert_eq!(&all[at..at + expected.len()], &expected[..]);
        assert!(all[at + expected.len()..].iter().all(|&b| b == 0));
        let (_, lent) = write.into_parts();
        assert_eq!(lent.len(), 1);
        assert_eq!(lent[0].wal_seq, 9);
        assert_eq!(lent[0].frame.to_vec(), expected);
    }
}
