//! The core's WAL entries as frames, and recovered frames as entries.

use crate::bitmap::{Extent, LSN_REACH};
use crate::core::WalEntry;
use crate::frame::{self, BaseFrame, CommittedFrame, Frame, FrameError, FrameKind, RecordBatch};
use crate::ids::LeaderId;
use rkyv::rancor;
use rkyv::util::AlignedVec;

/// One frame holding `entry`. A batch of records carries no committer: at
/// replay it belongs to the committer in effect at its place in the log.
pub fn encode(entry: &WalEntry) -> Result<AlignedVec, FrameError> {
    match entry {
        WalEntry::Records { records, .. } => frame::encode(&RecordBatch {
            records: records.clone(),
        }),
        WalEntry::Base {
            committer,
            keep,
            records,
            committed,
        } => frame::encode(&BaseFrame {
            committer: *committer,
            keep: keep.clone(),
            records: records.clone(),
            committed: committed.clone(),
        }),
        WalEntry::Committed { committed } => frame::encode(&CommittedFrame {
            committed: committed.clone(),
        }),
    }
}

fn owned<T>(kind: FrameKind, result: Result<T, rancor::BoxedError>) -> Result<T, FrameError> {
    result.map_err(|e| FrameError::InvalidPayload {
        kind,
        reason: e.to_string(),
    })
}

/// The entries recovered frames hold, in log order. `committer` is the one
/// in effect before the first frame (the slot file's copy).
pub fn decode<'a>(
    frames: impl IntoIterator<Item = Frame<'a>>,
    mut committer: LeaderId,
) -> Result<Vec<WalEntry>, FrameError> {
    let mut entries = Vec::new();
    // The LSNs held so far: each frame must stay within reach of them.
    let mut extent = Extent::default();
    let mut last_base = LeaderId::ZERO;
    for frame in frames {
        let kind = frame.header.kind;
        let entry = match kind {
            FrameKind::Record => WalEntry::Records {
                committer,
                records: vec![owned(kind, rkyv::deserialize(frame.record()?))?],
            },
            FrameKind::RecordBatch => {
                let batch: RecordBatch = owned(kind, rkyv::deserialize(frame.batch()?))?;
                WalEntry::Records {
                    committer,
                    records: batch.records,
                }
            }
            FrameKind::Base => {
                let base: BaseFrame = owned(kind, rkyv::deserialize(frame.base()?))?;
                if base.committer < last_base {
                    // I2: the writer never issues one (the core asserts it).
                    return Err(FrameError::InvalidPayload {
                        kind,
                        reason: format!(
                            "base frame of committer {:?} after one of {last_base:?}: committer never decreases",
                            base.committer
                        ),
                    });
                }
                last_base = base.committer;
                committer = base.committer;
                WalEntry::Base {
                    committer: base.committer,
                    keep: base.keep,
                    records: base.records,
                    committed: base.committed,
                }
            }
            FrameKind::Committed => {
                let c: CommittedFrame = owned(kind, rkyv::deserialize(frame.committed()?))?;
                WalEntry::Committed {
                    committed: c.committed,
                }
            }
            FrameKind::Message | FrameKind::Hello => {
                return Err(FrameError::InvalidPayload {
                    kind,
                    reason: "a wire frame does not belong in the WAL".into(),
                })
            }
        };
        let before = extent;
        entry_extent(&entry, &mut extent);
        if !extent.within_reach() {
            let (lo, hi) = extent.range().expect("not within reach: not empty");
            return Err(FrameError::InvalidPayload {
                kind,
                reason: format!(
                    "LSNs {lo} to {hi} do not fit in one bitmap ({LSN_REACH} LSNs; {:?} held before this frame)",
                    before.range()
                ),
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Adds the LSNs `entry` holds to `extent`.
fn entry_extent(entry: &WalEntry, extent: &mut Extent) {
    match entry {
        WalEntry::Records { records, .. } => records.iter().for_each(|r| {
            extent.lsn(r.lsn);
        }),
        WalEntry::Base {
            keep,
            records,
            committed,
            ..
        } => {
            extent.set(keep).set(committed);
            records.iter().for_each(|r| {
                extent.lsn(r.lsn);
            });
        }
        WalEntry::Committed { committed } => {
            extent.set(committed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Record;
    use crate::TailBitmap;

    fn record(lsn: u64) -> Record {
        Record {
            author: LeaderId::new(2, 1),
            lsn,
            cmd: vec![lsn as u8; 9],
            deps: TailBitmap::prefix(lsn),
        }
    }

    #[test]
    fn entries_survive_the_round_trip_with_committers_by_place() {
        let c = LeaderId::new(3, 2);
        let entries = vec![
            WalEntry::Records {
                committer: LeaderId::new(1, 1),
                records: vec![record(0), record(1)],
            },
            WalEntry::Base {
                committer: c,
                keep: TailBitmap::prefix(1),
                records: vec![record(2)],
                committed: TailBitmap::prefix(1),
            },
            WalEntry::Records {
                committer: c,
                records: vec![record(3)],
            },
            WalEntry::Committed {
                committed: TailBitmap::prefix(4),
            },
        ];
        let encoded: Vec<AlignedVec> = entries.iter().map(|e| encode(e).unwrap()).collect();
        let frames = encoded.iter().map(|b| Frame::decode(b).unwrap());
        let decoded = decode(frames, LeaderId::new(1, 1)).unwrap();
        assert_eq!(decoded, entries);
    }

    #[test]
    fn a_base_record_also_kept_is_refused() {
        let bad = BaseFrame {
            committer: LeaderId::new(1, 1),
            keep: TailBitmap::prefix(3),
            records: vec![record(2)],
            committed: TailBitmap::new(),
        };
        let bytes = frame::encode(&bad).unwrap();
        assert!(matches!(
            Frame::decode(&bytes),
            Err(FrameError::InvalidPayload { .. })
        ));
    }

    #[test]
    fn a_record_beyond_reach_of_the_log_is_refused() {
        let c = LeaderId::new(1, 1);
        let entries = [
            WalEntry::Records {
                committer: c,
                records: vec![record(3)],
            },
            WalEntry::Records {
                committer: c,
                records: vec![record(3 + crate::bitmap::LSN_REACH)],
            },
        ];
        let encoded: Vec<AlignedVec> = entries.iter().map(|e| encode(e).unwrap()).collect();
        let frames = encoded.iter().map(|b| Frame::decode(b).unwrap());
        let err = decode(frames, c).unwrap_err();
        assert!(err.to_string().contains("LSNs 3 to"), "{err}");
    }
}
