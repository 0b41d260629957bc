//! The write-ahead log (DESIGN.md §4): segments of frames, a writer that
//! appends whole blocks and syncs, recovery that tells a torn tail from
//! corruption.

mod adopt;
pub mod alone;
mod commit_loop;
pub mod entry;
pub mod file;
pub mod gather;
pub mod group;
pub mod purge;
pub mod reply;
pub mod scan;
pub mod slot;
pub mod stages;
pub mod storage;
pub mod store;
pub mod timeline;
pub mod uring;
pub mod writer;

pub use file::FileStorage;
pub use gather::{LentFrame, WriteBytes};
pub use group::{GroupWal, GroupWriter, WRITES_IN_FLIGHT_MAX};
pub use scan::{
    scan, scan_with, Accepted, Position, Scan, ScanError, ScanRules, SegmentBytes, FIRST_WAL_SEQ,
    PADDING_MAX,
};
pub use slot::{SlotFile, SlotRecord};
pub use storage::{Completion, MemStorage, Pipeline, Storage, BLOCK};
pub use store::{open_backend, open_store, Backend, Store, StoreOptions};
pub use uring::UringStorage;
pub use writer::{PlannedWrite, Recovered, RecoveredFrame, Wal, WalError, WalOptions, LEND_MIN};
