//! Payloads carried in frames: a `Record` and a batch of records.

use crate::bitmap::{BitmapView, TailBitmap};
use crate::ids::{is_valid_lsn, LeaderId, Lsn};
use rkyv::bytecheck::Verify;
use rkyv::rancor::{fail, Fallible, Source};
use rkyv::{Archive, Deserialize, Serialize};

/// One log entry: `(lsn, author)` names its content uniquely.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[rkyv(bytecheck(verify))]
pub struct Record {
    /// The leader that assigned `lsn` to this content.
    pub author: LeaderId,
    pub lsn: Lsn,
    /// The command, opaque to the log.
    pub cmd: Vec<u8>,
    /// Earlier LSNs this record must be applied after.
    pub deps: TailBitmap,
}

/// Records in one frame: what a leader appends and forwards as one unit.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(bytecheck(verify))]
pub struct RecordBatch {
    /// Ascending by LSN, one record per LSN.
    pub records: Vec<Record>,
}

impl ArchivedRecord {
    pub fn lsn(&self) -> Lsn {
        self.lsn.to_native()
    }

    pub fn author(&self) -> LeaderId {
        self.author.to_native()
    }

    pub fn cmd(&self) -> &[u8] {
        self.cmd.as_slice()
    }

    pub fn deps(&self) -> BitmapView<'_> {
        self.deps.view()
    }
}

impl ArchivedRecordBatch {
    pub fn records(&self) -> &[ArchivedRecord] {
        self.records.as_slice()
    }
}

#[derive(Debug, thiserror::Error)]
enum RecordInvalid {
    #[error("record LSN {0} is out of range")]
    LsnOutOfRange(Lsn),
    #[error("record {lsn} depends on LSN {dep}, which is not earlier")]
    DependsForward { lsn: Lsn, dep: Lsn },
    #[error("batch LSNs are not strictly ascending: {prev} then {next}")]
    Unordered { prev: Lsn, next: Lsn },
}

// SAFETY: `verify` returns `Ok` only if the LSN is in range and every
// dependency is an earlier LSN; it reads only fields bytecheck has checked.
unsafe impl<C> Verify<C> for ArchivedRecord
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _context: &mut C) -> Result<(), C::Error> {
        let lsn = self.lsn();
        if !is_valid_lsn(lsn) {
            fail!(RecordInvalid::LsnOutOfRange(lsn));
        }
        if let Some(dep) = self.deps().max() {
            if dep >= lsn {
                fail!(RecordInvalid::DependsForward { lsn, dep });
            }
        }
        Ok(())
    }
}

// SAFETY: `verify` returns `Ok` only if LSNs strictly ascend; each record was
// verified on its own before this runs.
unsafe impl<C> Verify<C> for ArchivedRecordBatch
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _context: &mut C) -> Result<(), C::Error> {
        for pair in self.records().windows(2) {
            let (prev, next) = (pair[0].lsn(), pair[1].lsn());
            if next <= prev {
                fail!(RecordInvalid::Unordered { prev, next });
            }
        }
        Ok(())
    }
}

impl Record {
    /// A no-op filling a hole at `lsn`: it depends on every earlier LSN so
    /// that dependency chains through the hole stay intact (DESIGN.md §3.2).
    pub fn noop(author: LeaderId, lsn: Lsn) -> Record {
        Record {
            author,
            lsn,
            cmd: Vec::new(),
            deps: TailBitmap::prefix(lsn),
        }
    }
}
