//! How recovery reads the segments (DESIGN.md §4).
//!
//! Frames are accepted in order while each has valid checksums and payload,
//! carries exactly the next `wal_seq`, and an `incarnation` not below the
//! previous frame's. A segment's frames end where the next one fails; the log
//! goes on in the next segment only if that segment starts with the next
//! frame, and within a segment past fewer than `PADDING_MAX` zeros if the
//! next frame starts right after them (a write planned while the one before
//! it was in flight starts on a fresh block; a large frame written from its
//! own memory starts where that memory's blocks fall on the disk's). The
//! first failure that does not continue ends the log. That end is
//! corruption only if a valid frame further on says, through its
//! `durable_upto`, that the failed frame was durable; otherwise the frames
//! after it were never durable (a torn write) and are cut. Frames of an
//! older incarnation than the last accepted one vouch for nothing: they are
//! what an earlier recovery cut, left beyond the end.

use super::storage::BLOCK;
use crate::frame::{Frame, FRAME_ALIGN, HEADER_LEN, MAGIC};
use thiserror::Error;

/// The `wal_seq` of the first frame a new WAL writes.
pub const FIRST_WAL_SEQ: u64 = 1;

/// A place in the WAL: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: usize,
}

/// One segment as recovery read it. `bytes` must start 16-byte aligned.
#[derive(Clone, Copy, Debug)]
pub struct SegmentBytes<'a> {
    pub index: u64,
    pub bytes: &'a [u8],
}

/// A frame recovery accepted, read in place.
#[derive(Clone, Copy, Debug)]
pub struct Accepted<'a> {
    pub at: Position,
    pub frame: Frame<'a>,
}

/// What the segments hold.
#[derive(Debug)]
pub struct Scan<'a> {
    pub frames: Vec<Accepted<'a>>,
    /// Where the log ends: the next frame is written here.
    pub end: Position,
    /// The `wal_seq` of the next frame.
    pub next_seq: u64,
    /// The greatest `incarnation` among the accepted frames.
    pub incarnation: u64,
    /// Why the bytes at `end` were not a frame (a torn or never-written
    /// tail, cut before new appends), if the segments did not simply end.
    pub cut: Option<String>,
    /// The end is corruption: a later frame says the failed one was durable.
    pub corruption: Option<ScanError>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScanError {
    #[error(
        "WAL corruption in segment {} at offset {} (frame {seq} expected: {reason}); \
         the frame at segment {} offset {} says frames below {durable_upto} were durable",
        at.segment, at.offset, vouched_by.segment, vouched_by.offset
    )]
    Corruption {
        at: Position,
        seq: u64,
        reason: String,
        vouched_by: Position,
        durable_upto: u64,
    },
}

/// Recovery's rules, each removable for tests (SCENARIOS.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanRules {
    /// R2a: a frame is accepted only with exactly the next `wal_seq`.
    pub next_seq: bool,
    /// N0: a frame is accepted only with an incarnation not below the
    /// previous frame's.
    pub incarnation: bool,
    /// R2b: a failed frame is corruption only if a later one vouches for it.
    pub vouched_only: bool,
    /// N0b: the writer zeroes the padding window past the recovered end
    /// before it appends (`Wal::open`).
    pub clear_past_the_end: bool,
}

impl Default for ScanRules {
    fn default() -> Self {
        ScanRules {
            next_seq: true,
            incarnation: true,
            vouched_only: true,
            clear_past_the_end: true,
        }
    }
}

/// Reads `segments` (in index order) as recovery does.
pub fn scan<'a>(segments: &[SegmentBytes<'a>]) -> Scan<'a> {
    scan_with(segments, ScanRules::default())
}

/// `scan` with some rules removed (tests only).
pub fn scan_with<'a>(segments: &[SegmentBytes<'a>], rules: ScanRules) -> Scan<'a> {
    for s in segments {
        assert!(
            s.bytes.is_empty() || s.bytes.as_ptr() as usize % FRAME_ALIGN == 0,
            "segment bytes must be {FRAME_ALIGN}-byte aligned"
        );
    }
    let mut scan = Scan {
        frames: Vec::new(),
        end: Position {
            segment: segments.first().map_or(0, |s| s.index),
            offset: 0,
        },
        next_seq: FIRST_WAL_SEQ,
        incarnation: 0,
        cut: None,
        corruption: None,
    };
    let mut started = false;
    'segments: for (i, segment) in segments.iter().enumerate() {
        let mut offset = 0;
        loop {
            match accept(
                segment.bytes,
                offset,
                started.then_some(scan.next_seq),
                scan.incarnation,
                rules,
            ) {
                Ok(frame) => {
                    scan.next_seq = frame.header.wal.wal_seq + 1;
                    scan.incarnation = frame.header.wal.incarnation;
                    started = true;
                    scan.frames.push(Accepted {
                        at: Position {
                            segment: segment.index,
                            offset,
                        },
                        frame,
                    });
                    offset += frame.bytes.len();
                    scan.end = Position {
                        segment: segment.index,
                        offset,
                    };
                }
                Err(reason) => {
                    let expected = started.then_some(scan.next_seq);
                    // Zeros may stand between two frames: a write planned
                    // while the one before it was in flight starts at the
                    // next block, and a large frame written from its own
                    // memory starts where that memory's blocks fall.
                    let padded = started
                        .then(|| past_padding(segment.bytes, offset))
                        .flatten();
                    if let Some(next) = padded.filter(|&next| {
                        accept(segment.bytes, next, expected, scan.incarnation, rules).is_ok()
                    }) {
                        offset = next;
                        continue;
                    }
                    let next = segments.get(i + 1);
                    if next.is_some_and(|n| {
                        accept(n.bytes, 0, expected, scan.incarnation, rules).is_ok()
                    }) {
                        continue 'segments; // the writer moved on to the next segment here
                    }
                    scan.end = Position {
                        segment: segment.index,
                        offset,
                    };
                    scan.cut = Some(reason);
                    break 'segments;
                }
            }
        }
    }
    if let Some(reason) = &scan.cut {
        let found = voucher(segments, scan.end, scan.next_seq, scan.incarnation, rules);
        if let Some((vouched_by, durable_upto)) = found {
            scan.corruption = Some(ScanError::Corruption {
                at: scan.end,
                seq: scan.next_seq,
                reason: reason.clone(),
                vouched_by,
                durable_upto,
            });
        }
    }
    scan
}

/// Zeros between two frames are fewer than this: up to a block to skip a
/// block still being written, and up to a block more to place a frame
/// written from its own memory.
pub const PADDING_MAX: usize = 2 * BLOCK;

/// Where the next frame would start if the bytes at `offset` are padding:
/// the first byte past at least one and fewer than `PADDING_MAX` zeros, on a
/// frame boundary, inside the segment.
fn past_padding(bytes: &[u8], offset: usize) -> Option<usize> {
    let limit = (offset + PADDING_MAX).min(bytes.len());
    let zeros = bytes
        .get(offset..limit)?
        .iter()
        .take_while(|&&b| b == 0)
        .count();
    let next = (offset + zeros) / FRAME_ALIGN * FRAME_ALIGN;
    (next > offset && next < limit).then_some(next)
}

/// The frame at `offset`, if it is valid and is the one expected next.
fn accept(
    bytes: &[u8],
    offset: usize,
    expected_seq: Option<u64>,
    min_incarnation: u64,
    rules: ScanRules,
) -> Result<Frame<'_>, String> {
    let frame = Frame::decode(bytes.get(offset..).unwrap_or(&[])).map_err(|e| e.to_string())?;
    let wal = frame.header.wal;
    if let Some(seq) = expected_seq.filter(|_| rules.next_seq) {
        if wal.wal_seq != seq {
            return Err(format!("wal_seq {} where {seq} was next", wal.wal_seq));
        }
    }
    if wal.incarnation < min_incarnation && rules.incarnation {
        return Err(format!(
            "incarnation {} below the previous frame's {min_incarnation}",
            wal.incarnation
        ));
    }
    Ok(frame)
}

/// A valid frame after `end`, of incarnation `incarnation` or later, whose
/// `durable_upto` covers frame `seq`.
fn voucher(
    segments: &[SegmentBytes<'_>],
    end: Position,
    seq: u64,
    incarnation: u64,
    rules: ScanRules,
) -> Option<(Position, u64)> {
    for segment in segments.iter().filter(|s| s.index >= end.segment) {
        let from = if segment.index == end.segment {
            end.offset + FRAME_ALIGN
        } else {
            0
        };
        let mut offset = from;
        while offset + HEADER_LEN <= segment.bytes.len() {
            // Cheap test first: most offsets are not a frame start.
            if segment.bytes[offset..offset + 4] == MAGIC {
                if let Ok(frame) = Frame::decode(&segment.bytes[offset..]) {
                    let wal = frame.header.wal;
                    let current = wal.incarnation >= incarnation;
                    let vouches = wal.durable_upto > seq || !rules.vouched_only;
                    if current && wal.wal_seq > seq && vouches {
                        let at = Position {
                            segment: segment.index,
                            offset,
                        };
                        return Some((at, wal.durable_upto));
                    }
                }
            }
            offset += FRAME_ALIGN;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_into, set_wal_fields, Record, RecordBatch, WalFields};
    use crate::ids::LeaderId;
    use rkyv::util::AlignedVec;

    /// Frames written by one writer: (wal_seq, incarnation, durable_upto).
    fn segment(frames: &[(u64, u64, u64)], size: usize) -> (AlignedVec, Vec<usize>) {
        let mut buf = AlignedVec::new();
        let mut starts = Vec::new();
        for &(seq, incarnation, durable_upto) in frames {
            let start = buf.len();
            starts.push(start);
            let batch = RecordBatch {
                records: vec![Record {
                    author: LeaderId::new(1, 1),
                    lsn: seq,
                    cmd: vec![7; 40],
                    deps: Default::default(),
                }],
            };
            encode_into(&batch, &mut buf).unwrap();
            let wal = WalFields {
                wal_seq: seq,
                incarnation,
                durable_upto,
            };
            set_wal_fields(&mut buf[start..], wal).unwrap();
        }
        assert!(buf.len() <= size);
        buf.resize(size, 0);
        (buf, starts)
    }

    fn seqs(scan: &Scan<'_>) -> Vec<u64> {
        scan.frames
            .iter()
            .map(|a| a.frame.header.wal.wal_seq)
            .collect()
    }

    #[test]
    fn frames_run_across_segments() {
        let (a, _) = segment(&[(1, 1, 1), (2, 1, 2), (3, 1, 3)], 1024);
        let (b, _) = segment(&[(4, 1, 4), (5, 1, 5)], 1024);
        let segs = [
            SegmentBytes {
                index: 0,
                bytes: &a,
            },
            SegmentBytes {
                index: 1,
                bytes: &b,
            },
        ];
        let scan = scan(&segs);
        assert_eq!(seqs(&scan), [1, 2, 3, 4, 5]);
        assert_eq!(scan.next_seq, 6);
        assert_eq!(scan.end.segment, 1);
        assert!(scan.cut.is_some(), "zeros after the last frame");
    }

    #[test]
    fn a_cut_last_frame_ends_the_log_before_it() {
        let (full, starts) = segment(&[(1, 1, 1), (2, 1, 2), (3, 1, 2)], 1024);
        let last = starts[2];
        let last_end = full.iter().rposition(|&b| b != 0).unwrap() + 1;
        for cut in last..last_end {
            let mut bytes = full.clone();
            bytes[cut..].fill(0);
            let segs = [SegmentBytes {
                index: 0,
                bytes: &bytes,
            }];
            let scan = scan(&segs);
            assert_eq!(seqs(&scan), [1, 2], "cut at {cut}");
            assert_eq!(scan.end.offset, last);
        }
    }

    #[test]
    fn vouched_damage_is_corruption_at_its_place() {
        // Frame 4 says frames below 3 were durable: damage in frame 2 is corruption.
        let (mut bytes, starts) = segment(&[(1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 1, 3)], 2048);
        bytes[starts[1] + HEADER_LEN + 5] ^= 0x10;
        let segs = [SegmentBytes {
            index: 3,
            bytes: &bytes,
        }];
        let found = scan(&segs);
        assert_eq!(seqs(&found), [1], "the frames before the damage");
        match found.corruption {
            Some(ScanError::Corruption { at, seq, .. }) => {
                assert_eq!(
                    at,
                    Position {
                        segment: 3,
                        offset: starts[1]
                    }
                );
                assert_eq!(seq, 2);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn torn_write_before_a_complete_one_is_a_clean_tail() {
        // Two writes in flight: frame 3 torn, frame 4 complete, issued while
        // 3 was not durable (durable_upto 3): nothing vouches for 3.
        let (mut bytes, starts) = segment(&[(1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 1, 3)], 2048);
        bytes[starts[2] + HEADER_LEN..starts[3]].fill(0);
        let segs = [SegmentBytes {
            index: 0,
            bytes: &bytes,
        }];
        let scan = scan(&segs);
        assert_eq!(seqs(&scan), [1, 2]);
        assert_eq!(scan.end.offset, starts[2]);
    }

    #[test]
    fn stale_frames_of_a_recycled_segment_are_never_replayed() {
        // Segment 8 was recycled: its old lap holds valid frames 1..4 (the
        // last ones vouching for earlier ones). This lap wrote 10..11 over
        // its start.
        let (old, _) = segment(&[(1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 1, 4)], 2048);
        let (a, _) = segment(&[(8, 2, 8), (9, 2, 9)], 1024);
        let (new, new_starts) = segment(&[(10, 2, 10), (11, 2, 11)], 2048);
        let mut recycled = old.clone();
        let new_len = new_starts[1] + (new_starts[1] - new_starts[0]);
        recycled[..new_len].copy_from_slice(&new[..new_len]);
        let segs = [
            SegmentBytes {
                index: 7,
                bytes: &a,
            },
            SegmentBytes {
                index: 8,
                bytes: &recycled,
            },
        ];
        let scan = scan(&segs);
        assert_eq!(seqs(&scan), [8, 9, 10, 11]);
        assert_eq!(scan.next_seq, 12);
    }

    #[test]
    fn an_older_incarnation_ends_the_log() {
        let (bytes, starts) = segment(&[(1, 2, 1), (2, 2, 2), (3, 1, 3)], 1024);
        let segs = [SegmentBytes {
            index: 0,
            bytes: &bytes,
        }];
        let scan = scan(&segs);
        assert_eq!(seqs(&scan), [1, 2]);
        assert_eq!(scan.end.offset, starts[2]);
        assert!(scan.cut.unwrap().contains("incarnation"));
    }

    #[test]
    fn a_gap_in_wal_seq_ends_the_log() {
        let (bytes, _) = segment(&[(1, 1, 1), (2, 1, 2), (4, 1, 2)], 1024);
        let segs = [SegmentBytes {
            index: 0,
            bytes: &bytes,
        }];
        assert_eq!(seqs(&scan(&segs)), [1, 2]);
    }

    #[test]
    fn an_empty_wal_scans_to_nothing() {
        let (zeros, _) = segment(&[], 4096);
        let scan = scan(&[SegmentBytes {
            index: 0,
            bytes: &zeros,
        }]);
        assert!(scan.frames.is_empty());
        assert_eq!(scan.next_seq, FIRST_WAL_SEQ);
    }
}
