//! Record batch frames of one loop turn, by the records they hold: a batch
//! is encoded once and the same bytes go to the WAL and to every follower,
//! and a follower appends the frame it received instead of encoding the
//! records again.

use crate::frame::{self, FrameError, Record, RecordBatch};
use crate::ids::{LeaderId, Lsn};
use rkyv::util::AlignedVec;

/// Frames kept in one turn, at most: a turn's forwards and appends share a
/// few batches; beyond it the oldest is dropped (and encoded again if asked).
pub const BATCH_FRAMES_MAX: usize = 64;

/// Where a batch frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Received from the leader, with its forward.
    Wire,
    /// Encoded for an earlier use this turn.
    Kept,
    /// Encoded just now.
    Encoded,
}

struct Batch {
    /// Author and LSN of each record, in order: a leader writes one record
    /// per LSN, so these name the records exactly.
    names: Vec<(LeaderId, Lsn)>,
    frame: AlignedVec,
    origin: Origin,
}

#[derive(Default)]
pub struct BatchFrames {
    batches: Vec<Batch>,
}

fn holds(names: &[(LeaderId, Lsn)], records: &[Record]) -> bool {
    names.len() == records.len()
        && names
            .iter()
            .zip(records)
            .all(|(&(author, lsn), r)| r.author == author && r.lsn == lsn)
}

impl BatchFrames {
    /// Keeps a frame received with a forward of `records`.
    pub fn received(&mut self, records: &[Record], frame: AlignedVec) {
        self.keep(records, frame, Origin::Wire);
    }

    /// The frame of exactly `records`: one kept this turn, or encoded now
    /// (and kept); with where it came from.
    pub fn frame_for(&mut self, records: &[Record]) -> Result<(&AlignedVec, Origin), FrameError> {
        let found = self.batches.iter().position(|b| holds(&b.names, records));
        let (at, fresh) = match found {
            Some(at) => (at, false),
            None => {
                let frame = frame::encode(&RecordBatch {
                    records: records.to_vec(),
                })?;
                self.keep(records, frame, Origin::Encoded);
                (self.batches.len() - 1, true)
            }
        };
        let batch = &self.batches[at];
        let origin = match batch.origin {
            Origin::Encoded if !fresh => Origin::Kept,
            origin => origin,
        };
        Ok((&batch.frame, origin))
    }

    /// Forgets every frame: the turn is over.
    pub fn clear(&mut self) {
        self.batches.clear();
    }

    fn keep(&mut self, records: &[Record], frame: AlignedVec, origin: Origin) {
        if self.batches.len() == BATCH_FRAMES_MAX {
            self.batches.remove(0);
        }
        let names = records.iter().map(|r| (r.author, r.lsn)).collect();
        self.batches.push(Batch {
            names,
            frame,
            origin,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    fn records(author: LeaderId, lsns: std::ops::Range<u64>) -> Vec<Record> {
        lsns.map(|lsn| Record {
            author,
            lsn,
            cmd: vec![lsn as u8; 10],
            deps: Default::default(),
        })
        .collect()
    }

    #[test]
    fn a_batch_is_encoded_once_and_found_by_its_records() {
        let mut frames = BatchFrames::default();
        let a = LeaderId::new(2, 1);
        let rs = records(a, 5..9);
        let (first, origin) = frames.frame_for(&rs).unwrap();
        assert_eq!(origin, Origin::Encoded);
        let first = first.to_vec();
        let batch = Frame::decode(&first).unwrap();
        assert_eq!(batch.batch().unwrap().records.len(), 4);
        let (again, origin) = frames.frame_for(&rs).unwrap();
        assert_eq!(origin, Origin::Kept);
        assert_eq!(again.as_slice(), first.as_slice(), "the same bytes");
        assert_eq!(frames.batches.len(), 1, "encoded once");
        // Another author at the same LSNs, or a subset: other records.
        frames
            .frame_for(&records(LeaderId::new(3, 2), 5..9))
            .unwrap();
        frames.frame_for(&rs[1..]).unwrap();
        assert_eq!(frames.batches.len(), 3);
    }

    #[test]
    fn a_received_frame_is_the_one_appended() {
        let mut frames = BatchFrames::default();
        let rs = records(LeaderId::new(4, 3), 0..3);
        let wire = frame::encode(&RecordBatch {
            records: rs.clone(),
        })
        .unwrap();
        frames.received(&rs, wire.clone());
        let (found, origin) = frames.frame_for(&rs).unwrap();
        assert_eq!(origin, Origin::Wire);
        assert_eq!(found.as_slice(), wire.as_slice());
        frames.clear();
        assert_eq!(frames.frame_for(&rs).unwrap().1, Origin::Encoded);
    }

    #[test]
    fn at_most_a_bounded_number_are_kept() {
        let mut frames = BatchFrames::default();
        let a = LeaderId::new(1, 1);
        for lsn in 0..BATCH_FRAMES_MAX as u64 + 10 {
            frames.frame_for(&records(a, lsn..lsn + 1)).unwrap();
        }
        assert_eq!(frames.batches.len(), BATCH_FRAMES_MAX);
    }
}
