//! Zero-filled files prepared ahead of use, made segments: renamed to the
//! segment's name, then the directory synced, so that the name survives a
//! power loss before any frame written into it is acknowledged.
//!
//! Why a thread: the directory sync is a journal commit here. Done when the
//! writer rolls over, it stalls every append behind it (one 1 MiB appender
//! for 3 s under `strace`: 78 such syncs, 52 ms in all, the longest 31 ms).
//! Done while the writer still fills the segment before, it costs appends
//! nothing; the writer joins it before its first write into the new one.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Names end in it while a file waits, zero-filled and synced, to become
/// a segment.
pub(super) const PREPARED_SUFFIX: &str = ".zero";

/// Whether a directory entry is a prepared file (of any size).
pub(super) fn is_prepared(entry: &fs::DirEntry) -> bool {
    entry
        .file_name()
        .to_str()
        .is_some_and(|n| n.ends_with(PREPARED_SUFFIX))
}

/// Renames a prepared file of `size` bytes in `dir` to `target` and syncs
/// `dir`; returns whether one was there.
pub(super) fn adopt_into(dir: &Path, target: &Path, size: usize) -> io::Result<bool> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if is_prepared(&entry) && entry.metadata()?.len() == size as u64 {
            fs::rename(entry.path(), target)?;
            File::open(dir)?.sync_all()?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// One adoption running on its own thread.
pub(super) struct Adopting {
    index: u64,
    thread: JoinHandle<io::Result<bool>>,
}

impl Adopting {
    /// Starts adopting a prepared file as segment `index` at `target`;
    /// `None` if no thread could be started (the writer adopts it itself).
    pub(super) fn start(dir: PathBuf, index: u64, target: PathBuf, size: usize) -> Option<Self> {
        let thread = std::thread::Builder::new()
            .name("traft-wal-adopt".into())
            .spawn(move || adopt_into(&dir, &target, size));
        match thread {
            Ok(thread) => Some(Adopting { index, thread }),
            Err(e) => {
                tracing::warn!("no thread to adopt WAL segment {index} ahead: {e}");
                None
            }
        }
    }

    /// Waits for it: the index it was for, and whether it adopted a file.
    pub(super) fn finish(self) -> io::Result<(u64, bool)> {
        let adopted = self
            .thread
            .join()
            .map_err(|_| io::Error::other("the WAL segment adopter thread panicked"))??;
        Ok((self.index, adopted))
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::{prepare_ahead, FileStorage};
    use super::super::{Storage, Wal, WalOptions, BLOCK};
    use crate::bench::wal::frame_of;

    const SIZE: usize = 8 * BLOCK;

    fn options() -> WalOptions {
        WalOptions {
            segment_size: SIZE,
            incarnation: 1,
            rules: Default::default(),
        }
    }

    fn prepared(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| super::is_prepared(e.as_ref().unwrap()))
            .count()
    }

    #[test]
    fn the_next_segment_is_adopted_while_the_current_one_fills() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(prepare_ahead(dir.path(), SIZE, 3).unwrap(), 3);
        assert_eq!(
            prepare_ahead(dir.path(), SIZE, 3).unwrap(),
            0,
            "three are ready"
        );
        let (mut wal, _) =
            Wal::open(FileStorage::new(dir.path(), false).unwrap(), options()).expect("open");
        // Segment 0 was made fresh; segment 1 is being adopted already.
        let mut appended = 0;
        while wal.segment() < 2 {
            wal.append(&mut [frame_of(3 * BLOCK)]).unwrap();
            appended += 1;
        }
        drop(wal);
        // 1 and 2 were taken as the writer reached them, 3 ahead of use.
        assert_eq!(prepared(dir.path()), 0);
        let storage = FileStorage::new(dir.path(), false).unwrap();
        assert_eq!(storage.segments().unwrap(), vec![0, 1, 2, 3]);
        let (wal, recovered) = Wal::open(storage, options()).unwrap();
        assert_eq!(recovered.frames.len(), appended);
        assert!(recovered.corruption.is_none());
        assert_eq!(wal.segment(), 2, "the segment adopted ahead is a spare");
    }

    #[test]
    fn a_rename_waits_for_the_adoption_ahead_and_takes_its_name() {
        let dir = tempfile::tempdir().unwrap();
        prepare_ahead(dir.path(), SIZE, 1).unwrap();
        let mut storage = FileStorage::new(dir.path(), false).unwrap();
        storage.prepare(0, SIZE).unwrap();
        let mut sevens = rkyv::util::AlignedVec::<BLOCK>::with_capacity(BLOCK);
        sevens.resize(BLOCK, 7);
        storage.write(0, 0, &[&sevens]).unwrap();
        storage.sync(0).unwrap();
        storage.adopt_ahead(1, SIZE);
        // A purge recycling segment 0 into index 1 must not race the
        // adoption: the recycled segment is what index 1 holds after.
        storage.rename(0, 1).unwrap();
        assert_eq!(storage.segments().unwrap(), vec![1]);
        assert_eq!(storage.read(1).unwrap()[0], 7, "the recycled segment");
        assert_eq!(prepared(dir.path()), 0);
        // Nothing left running: adopting now takes nothing ahead.
        assert!(!storage.adopt_prepared(2, SIZE).unwrap());
    }
}
