//! Payloads only the WAL holds: base and merge frames, and `committed`.

use super::record::{ArchivedRecord, Record};
use crate::bitmap::TailBitmap;
use crate::ids::LeaderId;
use rkyv::bytecheck::Verify;
use rkyv::rancor::{fail, Fallible, Source};
use rkyv::{Archive, Deserialize, Serialize};

/// A base or merge frame (DESIGN.md §3.2–3.3): from here on the log is
/// exactly the records at `keep` plus `records`, under `committer`. Replayed
/// as a replacement, never as an insert.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(bytecheck(verify))]
pub struct BaseFrame {
    pub committer: LeaderId,
    /// LSNs of the log before this frame that stay.
    pub keep: TailBitmap,
    /// Ascending by LSN, none in `keep`.
    pub records: Vec<Record>,
    /// What the writer knew committed.
    pub committed: TailBitmap,
}

/// LSNs known committed (persisted lazily; only grows).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(bytecheck(verify))]
pub struct CommittedFrame {
    pub committed: TailBitmap,
}

#[derive(Debug, thiserror::Error)]
enum BaseInvalid {
    #[error("base records are not strictly ascending: {prev} then {next}")]
    Unordered { prev: u64, next: u64 },
    #[error("base record {0} is also in keep")]
    Kept(u64),
}

// SAFETY: `verify` returns `Ok` only if the records ascend and none is also
// kept; each record and bitmap was verified on its own before this runs.
unsafe impl<C> Verify<C> for ArchivedBaseFrame
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _context: &mut C) -> Result<(), C::Error> {
        let records: &[ArchivedRecord] = self.records.as_slice();
        for pair in records.windows(2) {
            let (prev, next) = (pair[0].lsn(), pair[1].lsn());
            if next <= prev {
                fail!(BaseInvalid::Unordered { prev, next });
            }
        }
        let keep = self.keep.view();
        if let Some(r) = records.iter().find(|r| keep.contains(r.lsn())) {
            fail!(BaseInvalid::Kept(r.lsn()));
        }
        Ok(())
    }
}

// SAFETY: nothing beyond bytecheck (the bitmap verified itself).
unsafe impl<C> Verify<C> for ArchivedCommittedFrame
where
    C: Fallible + ?Sized,
{
    fn verify(&self, _context: &mut C) -> Result<(), C::Error> {
        Ok(())
    }
}
