//! A replica's disk: the slot file and the WAL in one directory, opened as
//! recovery does (DESIGN.md §4): the boot counter is raised and synced in the
//! slot file before the first append, the WAL is scanned, and its frames are
//! handed to the core as `Durable`.

use super::entry;
use super::file::FileStorage;
use super::group::{GroupWal, GroupWriter};
use super::slot::{SlotFile, SlotRecord};
use super::storage::Storage;
use super::uring::UringStorage;
use super::writer::{WalError, WalOptions};
use crate::core::Durable;
use crate::frame::Frame;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring (`tokio-uring`) writes on `O_DIRECT` files.
    Uring,
    /// `pwrite` on `O_DIRECT` files.
    File,
    /// Nothing reaches a disk: for comparison runs only, never durable.
    Memory,
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub segment_size: usize,
    pub backend: Backend,
    /// Durable writes through `O_DSYNC` instead of `fdatasync`: the
    /// default, since one write that is durable when it completes beats a
    /// write and then a sync (with io_uring on this disk: 4 KiB appends p50
    /// 189 µs against 299 µs, `traft bench wal [--dsync]`).
    pub dsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: 64 << 20,
            backend: Backend::Uring,
            dsync: true,
        }
    }
}

/// Segment storage in `dir` with `backend`, falling back to plain file
/// writes (with the reason logged) where io_uring is unavailable; returns it
/// with the name of what runs.
pub fn open_backend(
    dir: &Path,
    backend: Backend,
    dsync: bool,
) -> Result<(Box<dyn Storage>, &'static str), WalError> {
    if backend == Backend::Memory {
        tracing::warn!("WAL in memory: NOT durable, for comparison only");
        return Ok((
            Box::new(super::MemStorage::default()),
            "memory (not durable)",
        ));
    }
    if backend == Backend::Uring {
        match UringStorage::new(dir, true, dsync) {
            Ok(s) => return Ok((Box::new(s), "io_uring")),
            Err(e) => tracing::warn!("io_uring unavailable ({e}): plain file writes"),
        }
    }
    let files = FileStorage::new(dir, true)
        .map_err(|e| WalError::io("open", 0, e))?
        .with_dsync(dsync);
    Ok((Box::new(files), "pwrite"))
}

/// The open disk of a replica.
pub struct Store {
    pub slot: SlotFile,
    /// What the slot file holds now (after the boot counter was raised).
    pub slot_record: SlotRecord,
    pub wal: GroupWal,
    pub writer: GroupWriter,
    /// The WAL's first frames were purged: a snapshot holds their records,
    /// and recovery cannot go on without it.
    pub purged: bool,
}

/// Opens `dir` (created if missing): the slot file, then the WAL in
/// `dir/wal`. Returns the store and what the core starts from.
pub fn open_store(dir: &Path, options: &StoreOptions) -> Result<(Store, Durable), WalError> {
    std::fs::create_dir_all(dir).map_err(|e| WalError::io("create", 0, e))?;
    let (mut slot, found) = SlotFile::open(dir).map_err(|e| WalError::io("slot open", 0, e))?;
    // Raised and synced before the first append: frames cut by this
    // recovery can never come back after a later crash.
    let record = slot
        .boot(found)
        .map_err(|e| WalError::io("slot write", 0, e))?;
    let wal_dir: PathBuf = dir.join("wal");
    // Before the preparer starts filling it.
    std::fs::create_dir_all(&wal_dir).map_err(|e| WalError::io("create", 0, e))?;
    let storage_dir = wal_dir.clone();
    let (backend, dsync) = (options.backend, options.dsync);
    let wal_options = WalOptions {
        segment_size: options.segment_size,
        incarnation: record.incarnation,
        rules: Default::default(),
    };
    let (wal, writer, recovered) = GroupWal::start(
        move || {
            std::fs::create_dir_all(&storage_dir).map_err(|e| WalError::io("create", 0, e))?;
            open_backend(&storage_dir, backend, dsync).map(|(s, _)| s)
        },
        wal_options,
        (backend != Backend::Memory).then_some(wal_dir),
    )?;
    if let Some(corruption) = &recovered.corruption {
        tracing::error!("{corruption}: this replica may not vote until a newer leader's base");
    }
    let frames = recovered
        .frames
        .iter()
        .map(|f| Frame::decode(&f.bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let entries = entry::decode(frames, record.state.committer)?;
    let durable = Durable {
        slot: found.map(|_| record.state),
        wal: entries,
        corrupted: recovered.corruption.is_some(),
        // The node offers its snapshot, if it has one, after this.
        snapshot: None,
    };
    let purged = recovered
        .frames
        .first()
        .is_some_and(|f| f.wal_seq() > super::FIRST_WAL_SEQ);
    let store = Store {
        slot,
        slot_record: record,
        wal,
        writer,
        purged,
    };
    Ok((store, durable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::WalEntry;
    use crate::frame::Record;
    use crate::ids::LeaderId;
    use crate::TailBitmap;

    #[test]
    fn what_was_appended_comes_back_and_the_boot_counter_rises() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            segment_size: 1 << 20,
            backend: Backend::File,
            dsync: true,
        };
        let c = LeaderId::new(1, 1);
        let entries = vec![
            WalEntry::Base {
                committer: c,
                keep: TailBitmap::new(),
                records: Vec::new(),
                committed: TailBitmap::new(),
            },
            WalEntry::Records {
                committer: c,
                records: vec![Record {
                    author: c,
                    lsn: 0,
                    cmd: b"x".to_vec(),
                    deps: TailBitmap::new(),
                }],
            },
        ];
        let (store, durable) = open_store(dir.path(), &options).unwrap();
        assert!(durable.wal.is_empty());
        assert_eq!(store.slot_record.incarnation, 1);
        for e in &entries {
            store.wal.append(vec![entry::encode(e).unwrap()]).unwrap();
        }
        let Store { wal, writer, .. } = store;
        drop(wal);
        writer.join();
        let (store, durable) = open_store(dir.path(), &options).unwrap();
        assert_eq!(store.slot_record.incarnation, 2);
        assert_eq!(durable.wal, entries);
        // The core starts from it: committer from the base frame, the record held.
        let config = crate::core::Config::uniform(1..=3).unwrap();
        let replica = crate::core::Replica::new(
            2,
            config,
            Default::default(),
            crate::sim::kv::KvConflicts,
            durable,
            0,
            1,
        );
        assert_eq!(replica.committer(), c);
        assert!(replica.accepted().contains(0));
    }
}
