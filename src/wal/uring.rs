//! Segment writes through io_uring (`tokio-uring`) on `O_DIRECT` files. The
//! runtime lives on the thread that builds this storage (the WAL writer
//! thread); creating, renaming and reading segments, off the commit path,
//! go through the plain file backend, and so does a write alone on an idle
//! log (`write_alone`), which is faster made at once than through the ring.

use super::file::{open_for_writes, FileStorage};
use super::gather::WriteBytes;
use super::stages::{self, Stage};
use super::storage::{assert_whole_blocks, Completion, Pipeline, Storage, BLOCK};
use rkyv::util::AlignedVec;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::Notify;

/// Writes completed in the ring and not yet collected.
type Completions = Rc<RefCell<Vec<Completion>>>;

/// A block-aligned buffer handed to the kernel for one write.
struct Blocks(AlignedVec<BLOCK>);

// SAFETY: the pointer is the AlignedVec's heap allocation, which does not
// move while the buffer is owned by an in-flight operation (nothing resizes
// it then: tokio-uring holds it by value until the write completes), and
// `len <= capacity` are the initialized and total byte counts.
unsafe impl tokio_uring::buf::IoBuf for Blocks {
    fn stable_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.0.len()
    }

    fn bytes_total(&self) -> usize {
        self.0.capacity()
    }
}

/// One run of a gathered write, handed to the kernel: it shares the
/// write's bytes, which stay put until every run is back.
struct Piece {
    bytes: Rc<WriteBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr..ptr + len` is one of `bytes.pieces()`: memory of the
// staging buffer or of a lent frame, owned by the `WriteBytes` this piece
// holds a count on. Nothing can mutate or free it while any piece lives
// (the `Rc` gives only shared access), and tokio-uring keeps the pieces
// until the kernel is done with them.
unsafe impl tokio_uring::buf::IoBuf for Piece {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.len
    }
}

/// The runs of `bytes`, each holding it.
fn pieces_of(bytes: WriteBytes) -> Vec<Piece> {
    let bytes = Rc::new(bytes);
    bytes
        .pieces()
        .iter()
        .map(|p| Piece {
            bytes: Rc::clone(&bytes),
            ptr: p.as_ptr(),
            len: p.len(),
        })
        .collect()
}

/// Writes `pieces` at `offset` with vectored writes, again from where a
/// short write stopped; gives the pieces back (at least one).
async fn write_all(
    file: &tokio_uring::fs::File,
    mut pieces: Vec<Piece>,
    mut offset: u64,
) -> (io::Result<()>, Vec<Piece>) {
    loop {
        let total: usize = pieces.iter().map(|p| p.len).sum();
        let (written, back) = file.writev_at(pieces, offset).await;
        pieces = back;
        match written {
            Err(e) => return (Err(e), pieces),
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), pieces),
            Ok(n) if n >= total => return (Ok(()), pieces),
            Ok(mut n) => {
                offset += n as u64;
                // Drop what is written; the first run left may start inside.
                pieces.retain_mut(|p| {
                    let skip = n.min(p.len);
                    n -= skip;
                    // SAFETY: `skip <= len`: the pointer stays in its run.
                    p.ptr = unsafe { p.ptr.add(skip) };
                    p.len -= skip;
                    p.len > 0
                });
            }
        }
    }
}

/// The write's bytes back from its runs, once the kernel returned them.
fn bytes_of(pieces: Vec<Piece>) -> WriteBytes {
    let shared = Rc::clone(&pieces.first().expect("a write has a run").bytes);
    drop(pieces);
    Rc::try_unwrap(shared).expect("every run of the write is back")
}

pub struct UringStorage {
    files: FileStorage,
    runtime: tokio_uring::Runtime,
    /// Shared with the writes in flight on them.
    open: HashMap<u64, Rc<tokio_uring::fs::File>>,
    /// Reused for every write.
    buffer: Option<Blocks>,
    direct: bool,
    completions: Completions,
}

impl UringStorage {
    /// Segments in `dir`, written through io_uring; fails if io_uring is not
    /// available here (the caller then falls back to `FileStorage`).
    pub fn new(dir: &Path, direct: bool, dsync: bool) -> io::Result<UringStorage> {
        let runtime = tokio_uring::Runtime::new(&tokio_uring::builder())?;
        Ok(UringStorage {
            files: FileStorage::new(dir, direct)?.with_dsync(dsync),
            runtime,
            open: HashMap::new(),
            buffer: Some(Blocks(AlignedVec::new())),
            direct,
            completions: Rc::default(),
        })
    }

    fn file(&mut self, index: u64) -> io::Result<&tokio_uring::fs::File> {
        if !self.open.contains_key(&index) {
            let dsync = self.files.dsync();
            let (file, _) = open_for_writes(&self.files.path(index), self.direct, dsync)?;
            let file = self
                .runtime
                .block_on(async { tokio_uring::fs::File::from_std(file) });
            self.open.insert(index, Rc::new(file));
        }
        Ok(&self.open[&index])
    }
}

impl UringStorage {
    /// Writes `bytes` at `offset` through the ring and, with `sync`, syncs
    /// in the same entry into the runtime: the sync is submitted as soon as
    /// the write completes.
    fn submit(
        &mut self,
        index: u64,
        offset: usize,
        pieces: &[&[u8]],
        sync: bool,
    ) -> io::Result<()> {
        assert_whole_blocks(offset, pieces);
        // Off the pipeline (recovery's first writes, tools): one copy.
        let mut buffer = self.buffer.take().unwrap_or(Blocks(AlignedVec::new()));
        buffer.0.clear();
        for piece in pieces {
            buffer.0.extend_from_slice(piece);
        }
        self.file(index)?;
        let file = &self.open[&index];
        let (result, buffer) = self.runtime.block_on(async {
            let (written, buffer) = file.write_all_at(buffer, offset as u64).await;
            match written {
                Ok(()) if sync => (file.sync_data().await, buffer),
                other => (other, buffer),
            }
        });
        self.buffer = Some(buffer);
        result
    }
}

impl Storage for UringStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        self.files.segments()
    }

    fn prepare(&mut self, index: u64, size: usize) -> io::Result<()> {
        self.files.prepare(index, size)
    }

    fn rename(&mut self, from: u64, to: u64) -> io::Result<()> {
        self.open.remove(&from);
        self.files.rename(from, to)
    }

    fn remove(&mut self, index: u64) -> io::Result<()> {
        self.open.remove(&index);
        self.files.remove(index)
    }

    fn read(&self, index: u64) -> io::Result<AlignedVec<BLOCK>> {
        self.files.read(index)
    }

    fn write(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        self.submit(index, offset, pieces, false)
    }

    fn sync(&mut self, index: u64) -> io::Result<()> {
        self.file(index)?;
        let file = &self.open[&index];
        self.runtime.block_on(file.sync_data())
    }

    fn write_durable(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        let sync = !self.files.dsync();
        self.submit(index, offset, pieces, sync)
    }

    /// Blocking `pwritev` on this thread's own descriptor of the segment
    /// (`O_DIRECT`, and `O_DSYNC` or `fdatasync` as the ring's writes).
    fn write_alone(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        assert_whole_blocks(offset, pieces);
        self.files.write_durable(index, offset, pieces)
    }

    fn adopt_prepared(&mut self, index: u64, size: usize) -> io::Result<bool> {
        self.files.adopt_prepared(index, size)
    }

    fn adopt_ahead(&mut self, index: u64, size: usize) {
        self.files.adopt_ahead(index, size)
    }

    fn pipeline(&mut self) -> Option<&mut dyn Pipeline> {
        Some(self)
    }
}

impl Pipeline for UringStorage {
    fn start(
        &mut self,
        id: u64,
        index: u64,
        offset: usize,
        bytes: WriteBytes,
        wake: Arc<Notify>,
    ) -> io::Result<()> {
        assert_whole_blocks(offset, &bytes.pieces());
        self.file(index)?;
        let file = Rc::clone(&self.open[&index]);
        let sync = !self.files.dsync();
        let done = self.completions.clone();
        // Spawned here, submitted to the kernel when the runtime next parks:
        // in `wait`, which the writer calls right after starting writes.
        self.runtime.block_on(async move {
            tokio_uring::spawn(async move {
                stages::mark(Stage::Issued);
                let (written, pieces) = write_all(&file, pieces_of(bytes), offset as u64).await;
                let result = match written {
                    Ok(()) if sync => file.sync_data().await,
                    other => other,
                };
                stages::mark(Stage::Written);
                let bytes = bytes_of(pieces);
                done.borrow_mut().push(Completion { id, result, bytes });
                wake.notify_one();
            });
        });
        Ok(())
    }

    fn wait(&mut self, wake: &Notify) -> Vec<Completion> {
        if self.completions.borrow().is_empty() {
            self.runtime.block_on(wake.notified());
        }
        std::mem::take(&mut *self.completions.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Wal, WalOptions};

    #[test]
    fn appends_through_the_ring_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(storage) = UringStorage::new(dir.path(), true, false) else {
            eprintln!("io_uring unavailable here: nothing to test");
            return;
        };
        let options = WalOptions {
            segment_size: 16 * BLOCK,
            incarnation: 1,
            rules: Default::default(),
        };
        let (mut wal, _) = Wal::open(storage, options.clone()).unwrap();
        for lsn in 0..40 {
            let mut frames = [crate::bench::wal::frame_of(1000 + lsn as usize)];
            wal.append(&mut frames).unwrap();
        }
        drop(wal);
        let storage = UringStorage::new(dir.path(), true, true).unwrap();
        let (_, recovered) = Wal::open(storage, options).unwrap();
        assert_eq!(recovered.frames.len(), 40);
        assert!(recovered.corruption.is_none());
    }
}
