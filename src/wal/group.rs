//! Group commit: appenders on any thread hand frames to one writer thread;
//! every request that arrives while a write and its sync are in flight joins
//! the next write. An append returns only once its frames are durable.

use super::storage::Storage;
use super::writer::{Recovered, Wal, WalError, WalOptions};
use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rkyv::util::AlignedVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests waiting for the writer, at most: a bound on queued memory.
pub const GROUP_QUEUE_MAX: usize = 4096;
/// Zero-filled segments kept ready ahead of the writer.
pub const PREPARED_AHEAD: usize = 2;

/// Called on the writer thread once the request's frames are durable (or
/// the write failed): with the `wal_seq` of its first frame.
pub type Done = Box<dyn FnOnce(Result<u64, WalError>) + Send>;

struct Request {
    frames: Vec<AlignedVec>,
    done: Done,
}

/// A handle on the writer thread; clones share it.
#[derive(Clone)]
pub struct GroupWal {
    requests: Sender<Request>,
    writes: Arc<AtomicU64>,
    waiting_for_space: Arc<AtomicBool>,
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
        let (requests, queue) = bounded::<Request>(GROUP_QUEUE_MAX);
        let (opened, recovered) = bounded(1);
        let (wake, woken) = bounded::<()>(1);
        let writes = Arc::new(AtomicU64::new(0));
        let counted = writes.clone();
        let waiting_for_space = Arc::new(AtomicBool::new(false));
        let waiting = waiting_for_space.clone();
        let preparer = prepare_in.map(|dir| {
            let size = options.segment_size;
            std::thread::Builder::new()
                .name("traft-wal-prepare".into())
                .spawn(move || prepare_loop(&dir, size, woken))
                .expect("spawn the segment preparer thread")
        });
        let thread = std::thread::Builder::new()
            .name("traft-wal".into())
            .spawn(move || {
                let wal = storage().and_then(|s| Wal::open(s, options));
                match wal {
                    Ok((wal, found)) => {
                        let _ = opened.send(Ok(found));
                        write_loop(wal, queue, wake, &counted, &waiting);
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
            writes,
            waiting_for_space,
        };
        Ok((wal, writer, found))
    }

    /// Appends `frames` and waits until they are durable; returns the
    /// `wal_seq` of the first.
    pub fn append(&self, frames: Vec<AlignedVec>) -> Result<u64, WalError> {
        let (done, wait) = bounded(1);
        self.submit(
            frames,
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        )?;
        wait.recv().map_err(|_| WalError::Closed)?
    }

    /// Durable writes made so far (each one write and one sync), as a
    /// counter that outlives the handle.
    pub fn write_counter(&self) -> Arc<AtomicU64> {
        self.writes.clone()
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
            .map_err(|_| WalError::Closed)
    }
}

/// Tops up the prepared segments each time the writer takes one; ends
/// with the writer.
fn prepare_loop(dir: &std::path::Path, size: usize, woken: Receiver<()>) {
    loop {
        if let Err(e) = super::file::prepare_ahead(dir, size, PREPARED_AHEAD) {
            tracing::warn!("preparing WAL segments ahead in {}: {e}", dir.display());
        }
        if woken.recv().is_err() {
            return;
        }
    }
}

/// How long the writer waits before trying again to make a segment ready
/// on a full disk, at first and at most.
pub const NO_SPACE_RETRY_MIN: Duration = Duration::from_millis(50);
pub const NO_SPACE_RETRY_MAX: Duration = Duration::from_secs(1);

fn write_loop<S: Storage>(
    mut wal: Wal<S>,
    queue: Receiver<Request>,
    wake: Sender<()>,
    writes: &AtomicU64,
    waiting_for_space: &AtomicBool,
) {
    while let Ok(first) = queue.recv() {
        let segment = wal.segment();
        // Everything queued behind the first joins this write.
        let mut group = vec![first];
        group.extend(queue.try_iter());
        let mut frames: Vec<AlignedVec> = Vec::new();
        let mut counts = Vec::with_capacity(group.len());
        for request in &mut group {
            counts.push(request.frames.len() as u64);
            frames.append(&mut request.frames);
        }
        let mut retry = NO_SPACE_RETRY_MIN;
        let result = loop {
            match wal.append(&mut frames) {
                // Nothing was written: wait for space, taking in what
                // arrives meanwhile, and try again. Nothing resolves until
                // then, so nothing is acknowledged.
                Err(WalError::NoSpaceForSegment { segment, source }) => {
                    if !waiting_for_space.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "no space for WAL segment {segment} ({source}): appends wait until there is"
                        );
                    }
                    match queue.recv_timeout(retry) {
                        Ok(mut request) => {
                            counts.push(request.frames.len() as u64);
                            frames.append(&mut request.frames);
                            group.push(request);
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            break Err(WalError::NoSpaceForSegment { segment, source })
                        }
                    }
                    retry = (retry * 2).min(NO_SPACE_RETRY_MAX);
                }
                other => break other,
            }
        };
        if waiting_for_space.swap(false, Ordering::Relaxed) {
            tracing::info!("WAL space is back: appends resume");
        }
        writes.fetch_add(1, Ordering::Relaxed);
        if wal.segment() != segment {
            let _ = wake.try_send(()); // it took a prepared segment
        }
        match result {
            Ok(mut seq) => {
                for (request, count) in group.into_iter().zip(counts) {
                    (request.done)(Ok(seq));
                    seq += count;
                }
            }
            Err(first_error) => {
                let reason = first_error.to_string();
                let mut group = group.into_iter();
                if let Some(r) = group.next() {
                    (r.done)(Err(first_error));
                }
                for r in group {
                    (r.done)(Err(WalError::Failed(reason.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::wal::frame_of;
    use crate::wal::{MemStorage, FIRST_WAL_SEQ};
    use std::collections::BTreeSet;

    #[test]
    fn concurrent_appends_all_land_once_and_in_order() {
        let options = WalOptions {
            segment_size: 64 * 1024,
            incarnation: 1,
            rules: Default::default(),
        };
        let (wal, writer, _) =
            GroupWal::start(|| Ok(MemStorage::default()), options, None).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| {
                            let frames = vec![frame_of(100 + t * 10 + i); 1 + i % 3];
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
        let total = seqs.len() as u64;
        assert_eq!(seqs.first(), Some(&FIRST_WAL_SEQ));
        assert_eq!(seqs.last(), Some(&(FIRST_WAL_SEQ + total - 1)));
        drop(wal);
        writer.join();
    }

    #[test]
    fn appends_wait_for_space_for_the_next_segment_and_resume() {
        let options = WalOptions {
            segment_size: 4 * crate::wal::BLOCK,
            incarnation: 1,
            rules: Default::default(),
        };
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
}
