//! Group commit: appenders on any thread hand frames to one writer thread;
//! every request that arrives while a write is being formed or while the
//! writes in flight are at their limit joins the next write. With io_uring,
//! up to `WRITES_IN_FLIGHT_MAX` writes are in flight at once; an append
//! returns only once the durable mark, which moves over the contiguous
//! prefix of completed writes, has passed its frames.

use super::commit_loop;
use super::reply::reply;
use super::stages::{self, Stage};
use super::storage::Storage;
use super::writer::{Recovered, Wal, WalError, WalOptions};
use crate::ids::Lsn;
use crossbeam::channel::{bounded, Receiver, Sender};
use rkyv::util::AlignedVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::Notify;

/// Requests waiting for the writer, at most: a bound on queued memory.
pub const GROUP_QUEUE_MAX: usize = 4096;
/// Zero-filled segments kept ready ahead of the writer.
pub const PREPARED_AHEAD: usize = 2;
/// Durable writes in flight at once, where the storage can (io_uring): a
/// write starts while earlier ones are on their way, and appends resolve
/// as the durable mark passes them.
pub const WRITES_IN_FLIGHT_MAX: usize = 4;

/// Bytes of frames one write carries at most: requests beyond it go to the
/// next write, which can be in flight beside it. Larger writes gain nothing
/// on this disk, and their buffers would be too large to keep for reuse.
pub const WRITE_BYTES_MAX: usize = 1 << 20;

/// Called on the writer thread once the request's frames are durable (or
/// the write failed): with the `wal_seq` of its first frame, and the
/// frames themselves back, for the appender to reuse their buffers (empty
/// when the write failed).
pub type Done = Box<dyn FnOnce(Result<u64, WalError>, Vec<AlignedVec>) + Send>;

pub(super) struct Request {
    pub(super) frames: Vec<AlignedVec>,
    pub(super) done: Done,
}

/// Called on the writer thread once a purge ran: the segments it recycled.
pub type PurgeDone = Box<dyn FnOnce(Result<Vec<u64>, WalError>) + Send>;

/// Purges asked for and not yet run, at most: one per snapshot.
pub const PURGE_QUEUE_MAX: usize = 16;

/// A handle on the writer thread; clones share it.
#[derive(Clone)]
pub struct GroupWal {
    requests: Sender<Request>,
    purges: Sender<(Lsn, PurgeDone)>,
    /// Wakes the writer while it waits on writes in flight.
    notify: Arc<Notify>,
    /// The most writes that were in flight at once.
    peak_in_flight: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    waiting_for_space: Arc<AtomicBool>,
    /// Segments the preparer has zero-filled.
    prepared: Arc<AtomicU64>,
}

/// The writer thread. It ends once every `GroupWal` is dropped; `join`
/// waits for that (every append that returned is durable already).
pub struct GroupWriter {
    thread: JoinHandle<()>,
    preparer: Option<JoinHandle<()>>,
}

impl GroupWriter {
    /// Waits for the writer thread, then for the preparer (it ends with it).
    pub fn join(self) {
        let _ = self.thread.join();
        if let Some(preparer) = self.preparer {
            let _ = preparer.join();
        }
    }
}

impl GroupWal {
    /// Starts the writer thread: `storage` is built there (an io_uring
    /// runtime lives on one thread), then recovery runs, and what it found
    /// is returned here. With `prepare_in`, a second thread keeps zero-filled
    /// segments ready in that directory, off the commit path.
    pub fn start<S, F>(
        storage: F,
        options: WalOptions,
        prepare_in: Option<std::path::PathBuf>,
    ) -> Result<(GroupWal, GroupWriter, Recovered), WalError>
    where
        S: Storage,
        F: FnOnce() -> Result<S, WalError> + Send + 'static,
    {
        Self::start_with_depth(storage, options, prepare_in, WRITES_IN_FLIGHT_MAX)
    }

    /// `start`, with at most `depth` writes in flight where the storage can
    /// keep several (1: each write completes before the next starts).
    pub fn start_with_depth<S, F>(
        storage: F,
        options: WalOptions,
        prepare_in: Option<std::path::PathBuf>,
        depth: usize,
    ) -> Result<(GroupWal, GroupWriter, Recovered), WalError>
    where
        S: Storage,
        F: FnOnce() -> Result<S, WalError> + Send + 'static,
    {
        assert!(depth >= 1, "at least one write in flight");
        let (requests, queue) = bounded::<Request>(GROUP_QUEUE_MAX);
        let (purges, purge_queue) = bounded(PURGE_QUEUE_MAX);
        let (opened, recovered) = bounded(1);
        let (wake, woken) = bounded::<()>(1);
        let writes = Arc::new(AtomicU64::new(0));
        let counted = writes.clone();
        let waiting_for_space = Arc::new(AtomicBool::new(false));
        let waiting = waiting_for_space.clone();
        let notify = Arc::new(Notify::new());
        let notified = notify.clone();
        let peak_in_flight = Arc::new(AtomicU64::new(0));
        let peak = peak_in_flight.clone();
        let prepared = Arc::new(AtomicU64::new(0));
        let counted_prepared = prepared.clone();
        let preparer = prepare_in.map(|dir| {
            let size = options.segment_size;
            std::thread::Builder::new()
                .name("traft-wal-prepare".into())
                .spawn(move || prepare_loop(&dir, size, woken, &counted_prepared))
                .expect("spawn the segment preparer thread")
        });
        let thread = std::thread::Builder::new()
            .name("traft-wal".into())
            .spawn(move || {
                let wal = storage().and_then(|s| Wal::open(s, options));
                match wal {
                    Ok((wal, found)) => {
                        let _ = opened.send(Ok(found));
                        let shared = commit_loop::Shared {
                            depth,
                            queue,
                            purge_queue,
                            wake,
                            writes: &counted,
                            waiting_for_space: &waiting,
                            notify: &notified,
                            peak_in_flight: &peak,
                        };
                        commit_loop::run(wal, shared);
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                    }
                }
            })
            .expect("spawn the WAL writer thread");
        let found = recovered
            .recv()
            .expect("the writer thread reports recovery")?;
        let writer = GroupWriter { thread, preparer };
        let wal = GroupWal {
            requests,
            purges,
            notify,
            peak_in_flight,
            writes,
            waiting_for_space,
            prepared,
        };
        Ok((wal, writer, found))
    }

    /// Appends `frames` and waits until they are durable; returns the
    /// `wal_seq` of the first.
    pub fn append(&self, frames: Vec<AlignedVec>) -> Result<u64, WalError> {
        self.append_reusing(&mut { frames })
    }

    /// `append`, giving the frames back in `frames` once durable, for their
    /// buffers to carry the next ones (a fresh buffer costs a page fault per
    /// page). The frames' WAL fields are those of this append; a later
    /// append overwrites them.
    pub fn append_reusing(&self, frames: &mut Vec<AlignedVec>) -> Result<u64, WalError> {
        let (done, wait) = reply();
        stages::mark(Stage::Submitted);
        self.submit(
            std::mem::take(frames),
            Box::new(move |result, frames| done.send((result, frames))),
        )?;
        let (result, back) = wait.wait().ok_or(WalError::Closed)?;
        stages::mark(Stage::Returned);
        *frames = back;
        result
    }

    /// Durable writes made so far (each one write and one sync), as a
    /// counter that outlives the handle.
    pub fn write_counter(&self) -> Arc<AtomicU64> {
        self.writes.clone()
    }

    /// Segments zero-filled by the preparer so far, as a counter that
    /// outlives the handle: zeroing shares the disk with the appends.
    pub fn prepared_counter(&self) -> Arc<AtomicU64> {
        self.prepared.clone()
    }

    /// The most writes that were in flight at once so far.
    pub fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// True while appends wait for disk space for the next segment.
    pub fn space_flag(&self) -> Arc<AtomicBool> {
        self.waiting_for_space.clone()
    }

    /// Queues `frames` without waiting; `done` runs on the writer thread once
    /// they are durable. Requests resolve in the order they were submitted.
    /// Blocks while `GROUP_QUEUE_MAX` requests wait.
    pub fn submit(&self, frames: Vec<AlignedVec>, done: Done) -> Result<(), WalError> {
        self.requests
            .send(Request { frames, done })
            .map_err(|_| WalError::Closed)?;
        self.notify.notify_one();
        Ok(())
    }
}

impl GroupWal {
    /// Asks the writer to purge the segments below `below` (`Wal::purge`):
    /// it lets the writes in flight finish, starts none meanwhile, purges,
    /// then calls `done`.
    pub fn purge(&self, below: Lsn, done: PurgeDone) -> Result<(), WalError> {
        self.purges
            .send((below, done))
            .map_err(|_| WalError::Closed)?;
        self.notify.notify_one();
        Ok(())
    }
}

/// Tops up the prepared segments each time the writer takes one, counting
/// those it zero-fills in `prepared`; ends with the writer.
fn prepare_loop(dir: &std::path::Path, size: usize, woken: Receiver<()>, prepared: &AtomicU64) {
    loop {
        match super::file::prepare_ahead(dir, size, PREPARED_AHEAD) {
            Ok(n) => {
                prepared.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                prepared.fetch_add(e.prepared as u64, Ordering::Relaxed);
                tracing::warn!("in {}: {e}", dir.display());
            }
        }
        if woken.recv().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::wal::frame_of;
    use crate::wal::{MemStorage, FIRST_WAL_SEQ};
    use std::collections::BTreeSet;
    use std::time::Duration;

    /// 8 threads each append `per_thread` times 1–3 frames of
    /// `size(thread, i)` bytes; returns every `wal_seq` given, checking none
    /// was given twice.
    fn append_from_threads(
        wal: &GroupWal,
        per_thread: usize,
        size: fn(usize, usize) -> usize,
    ) -> BTreeSet<u64> {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let frames = vec![frame_of(size(t, i)); 1 + i % 3];
                            (wal.append(frames).unwrap(), 1 + i % 3)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs = BTreeSet::new();
        for t in threads {
            for (first, count) in t.join().unwrap() {
                for seq in first..first + count as u64 {
                    assert!(seqs.insert(seq), "wal_seq {seq} given twice");
                }
            }
        }
        seqs
    }

    #[test]
    fn concurrent_appends_all_land_once_and_in_order() {
        let options = options_of(64 * 1024);
        let (wal, writer, _) =
            GroupWal::start(|| Ok(MemStorage::default()), options, None).unwrap();
        let seqs = append_from_threads(&wal, 50, |t, i| 100 + t * 10 + i);
        let total = seqs.len() as u64;
        assert_eq!(seqs.first(), Some(&FIRST_WAL_SEQ));
        assert_eq!(seqs.last(), Some(&(FIRST_WAL_SEQ + total - 1)));
        drop(wal);
        writer.join();
    }

    fn options_of(segment_size: usize) -> WalOptions {
        WalOptions {
            segment_size,
            incarnation: 1,
            rules: Default::default(),
        }
    }

    #[test]
    fn appended_frames_come_back_for_reuse_and_recover_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let options = options_of(64 * 1024);
        let path = dir.path().to_path_buf();
        let storage = move || {
            crate::wal::file::FileStorage::new(&path, false).map_err(|e| WalError::io("open", 0, e))
        };
        let (wal, writer, _) = GroupWal::start(storage, options.clone(), None).unwrap();
        let mut frames = vec![frame_of(3000), frame_of(200)];
        let first = wal.append_reusing(&mut frames).unwrap();
        assert_eq!(frames.len(), 2, "both frames came back");
        let second = wal.append_reusing(&mut frames).unwrap();
        assert_eq!(second, first + 2);
        drop(wal);
        writer.join();
        let storage = crate::wal::file::FileStorage::new(dir.path(), false).unwrap();
        let (_, found) = Wal::open(storage, options).unwrap();
        assert!(found.corruption.is_none());
        let seqs: Vec<u64> = found.frames.iter().map(|f| f.wal_seq()).collect();
        assert_eq!(seqs, (first..first + 4).collect::<Vec<_>>());
    }

    #[test]
    fn appends_wait_for_space_for_the_next_segment_and_resume() {
        let options = options_of(4 * crate::wal::BLOCK);
        let storage = MemStorage::default();
        let full = storage.no_space.clone();
        let (wal, writer, _) = GroupWal::start(move || Ok(storage), options, None).unwrap();
        full.store(true, Ordering::Relaxed);
        let waiting = wal.space_flag();
        let appender = wal.clone();
        // Five frames of 3,000 bytes do not fit one segment of 16 KiB.
        let appends = std::thread::spawn(move || {
            (0..8)
                .map(|_| appender.append(vec![frame_of(3000)]).unwrap())
                .collect::<Vec<_>>()
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !waiting.load(Ordering::Relaxed) {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(!appends.is_finished(), "nothing resolves without space");
        full.store(false, Ordering::Relaxed);
        let seqs = appends.join().unwrap();
        let expected: Vec<u64> = (FIRST_WAL_SEQ..FIRST_WAL_SEQ + 8).collect();
        assert_eq!(seqs, expected, "every append landed once, in order");
        assert!(!waiting.load(Ordering::Relaxed));
        drop(wal);
        writer.join();
    }

    /// Through io_uring, one appender's writes go out alone on the writer
    /// thread (none in flight through the ring), then several appenders'
    /// through the ring, rolling over segments; large frames are lent in
    /// both. Recovery reads every append back, in order.
    #[test]
    fn writes_alone_and_through_the_ring_all_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let options = options_of(256 * 1024);
        let path = dir.path().to_path_buf();
        let storage = move || {
            crate::wal::UringStorage::new(&path, true, true).map_err(|e| WalError::io("open", 0, e))
        };
        let Ok((wal, writer, _)) = GroupWal::start(storage, options.clone(), None) else {
            eprintln!("io_uring unavailable here: nothing to test");
            return;
        };
        let mut seqs = Vec::new();
        // Within the first segment: a write across two goes through the
        // ring as two writes.
        for i in 0..9 {
            let size = if i % 3 == 0 { 70_000 } else { 300 + 41 * i };
            let mut frames = vec![frame_of(size)];
            seqs.push(wal.append_reusing(&mut frames).unwrap());
            assert_eq!(
                frames[0].len(),
                frame_of(size).len(),
                "the frame comes back"
            );
        }
        assert_eq!(wal.peak_in_flight(), 0, "one appender's writes went alone");
        seqs.extend(append_from_threads(&wal, 40, |t, i| {
            200 + 97 * ((t + i) % 13) + 70_000 * usize::from(i % 7 == 0)
        }));
        assert!(wal.peak_in_flight() > 1, "writes were in flight together");
        drop(wal);
        writer.join();
        let storage = crate::wal::UringStorage::new(dir.path(), true, true).unwrap();
        let (_, found) = Wal::open(storage, options).unwrap();
        assert!(found.corruption.is_none());
        let recovered: Vec<u64> = found.frames.iter().map(|f| f.wal_seq()).collect();
        seqs.sort_unstable();
        assert_eq!(recovered, seqs);
    }
}
