//! `traft bench wal`: durable appends through the WAL — group commit, the
//! chosen backend, segments prepared ahead — from concurrent appenders.

use super::latency_histogram;
use super::turns::{self, EndOnDrop, Side, Turns};
use crate::frame::{encode, Record, RecordBatch};
use crate::ids::LeaderId;
use crate::wal::stages::{self, Hop};
use crate::wal::timeline::{self, WriteTimeline};
pub use crate::wal::Backend;
use crate::wal::{file, open_backend, GroupWal, WalError, WalOptions};
use hdrhistogram::Histogram;
use rkyv::util::AlignedVec;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Segment size for the benchmark.
const SEGMENT: usize = 64 << 20;
/// Bytes a record adds around its command in an encoded batch frame.
const FRAME_OVERHEAD: usize = 128;

/// How a case's appenders wait for their appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appenders {
    /// Each appender is a thread blocked in `append_reusing` until its
    /// frame is durable.
    Threads,
    /// One driver thread keeps one append in flight per appender through
    /// `submit`; each append's callback hands it back over a channel and the
    /// driver submits that appender's next. A replica's driver appends this
    /// way: it never blocks on the WAL.
    Driver,
}

impl Appenders {
    pub const ALL: [Appenders; 2] = [Appenders::Threads, Appenders::Driver];

    pub fn name(self) -> &'static str {
        match self {
            Appenders::Threads => "threads",
            Appenders::Driver => "driver",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WalBenchConfig {
    /// Bytes per append (one frame).
    pub bytes: usize,
    pub appenders: usize,
    pub kind: Appenders,
    pub duration: Duration,
    pub backend: Backend,
    /// Durability through `O_DSYNC` writes instead of `fdatasync`.
    pub dsync: bool,
    /// Writes in flight at most (io_uring).
    pub in_flight: usize,
    /// Segments are zeroed before the clock starts for this rate over the
    /// whole run (bytes/s): zeroing during the run would share the disk.
    pub prepare_for: f64,
    /// Take turns on the disk with the floor, as its case, for as long as
    /// the turns go on (`duration` then only sizes the preparation).
    pub turns: Option<Arc<Turns>>,
}

pub struct WalBenchReport {
    pub appends: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Per-append latency, nanoseconds.
    pub latency: Histogram<u64>,
    /// What ran: the backend asked for may fall back.
    pub backend: &'static str,
    /// Durable writes made (each carries one or more appends).
    pub writes: u64,
    /// The most writes that were in flight at once.
    pub peak_in_flight: u64,
    /// Where one appender's appends spent their time (`wal-stages` builds,
    /// one appender only; empty otherwise).
    pub stages: Vec<Hop>,
    /// The writer's writes over time (`wal-stages` builds, and not taking
    /// turns: the floor's turns would count as the disk idle).
    pub timeline: Option<WriteTimeline>,
    /// How the first appender's frame lies in physical memory
    /// (`memory::describe`): lent to the writes, it moves them as the
    /// floor's buffer moves the floor.
    pub frame_memory: String,
    /// Segments zero-filled while the clock ran: the preparation fell
    /// short, and the zeroing shared the disk with the appends.
    pub zeroed_while_timed: u64,
}

impl WalBenchReport {
    pub fn appends_per_sec(&self) -> f64 {
        self.appends as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// One frame of `bytes` bytes, or of the most bytes below that a frame can
/// have (an encoded frame is a whole number of 16-byte words): an append of
/// 64 KiB must be one, not 16 bytes short of one, or it would fall below
/// `LEND_MIN` and be copied.
pub fn frame_of(bytes: usize) -> AlignedVec {
    let encoded = |cmd: usize| {
        let record = Record {
            author: LeaderId::new(1, 1),
            lsn: 0,
            cmd: vec![0x5a; cmd.max(1)],
            deps: Default::default(),
        };
        encode(&RecordBatch {
            records: vec![record],
        })
        .expect("a benchmark frame encodes")
    };
    let mut cmd = bytes.saturating_sub(FRAME_OVERHEAD);
    let mut frame = encoded(cmd);
    // The command's bytes add to the frame's one for one, then round up.
    while frame.len() < bytes {
        let longer = encoded(cmd + (bytes - frame.len()));
        if longer.len() > bytes {
            break;
        }
        cmd += bytes - frame.len();
        frame = longer;
    }
    frame
}

/// Runs one case in a fresh directory under `dir`.
pub fn run(dir: &Path, config: &WalBenchConfig) -> Result<WalBenchReport, WalError> {
    let dir = dir.join(format!("wal-{}-{}", config.bytes, config.appenders));
    std::fs::create_dir_all(&dir).map_err(|source| WalError::io("create", 0, source))?;
    // Enough segments zeroed before the clock starts for the whole run (in
    // steady state purged segments are recycled; zeroing is not on the path).
    let expected = config.duration.as_secs_f64() * config.prepare_for;
    let ahead = (expected / SEGMENT as f64).ceil() as usize + 2;
    file::prepare_ahead(&dir, SEGMENT, ahead).map_err(|e| WalError::io("prepare", 0, e.source))?;
    let backend = config.backend;
    let dsync = config.dsync;
    let (chosen_tx, chosen_rx) = crossbeam::channel::bounded(1);
    let storage_dir = dir.clone();
    let options = WalOptions {
        segment_size: SEGMENT,
        incarnation: 1,
        rules: Default::default(),
    };
    let (wal, writer, _) = GroupWal::start_with_depth(
        move || {
            let (s, name) = open_backend(&storage_dir, backend, dsync)?;
            let _ = chosen_tx.send(name);
            Ok(s)
        },
        options,
        Some(dir.clone()),
        config.in_flight,
    )?;
    let writes = wal.write_counter();
    let prepared = wal.prepared_counter();
    let chosen = chosen_rx.recv().unwrap_or("unknown");
    let frame = frame_of(config.bytes);
    // Each appender's own copy, made here so that its memory can be told.
    let frames: Vec<AlignedVec> = (0..config.appenders).map(|_| frame.clone()).collect();
    let frame_memory = super::memory::describe(&frames[0]);
    let prepared_before = prepared.load(Ordering::Relaxed);
    if let Some(turns) = &config.turns {
        turns.ready(Side::Case);
    }
    let started = Instant::now();
    let (appends, latency) = match config.kind {
        Appenders::Threads => run_threads(&wal, frames, config)?,
        Appenders::Driver => run_driver(&wal, frames, config)?,
    };
    let elapsed = match &config.turns {
        Some(turns) => turns.time(Side::Case),
        None => started.elapsed(),
    };
    let zeroed_while_timed = prepared.load(Ordering::Relaxed) - prepared_before;
    let peak_in_flight = wal.peak_in_flight();
    drop(wal);
    writer.join();
    // Taken in every case, so that no case's marks run into the next one's.
    let hops = stages::take_hops();
    let timeline = timeline::take().filter(|_| config.turns.is_none());
    let report = WalBenchReport {
        appends,
        bytes: appends * frame.len() as u64,
        elapsed,
        latency,
        backend: chosen,
        writes: writes.load(Ordering::Relaxed),
        peak_in_flight,
        stages: if config.appenders == 1 {
            hops
        } else {
            Vec::new()
        },
        timeline,
        frame_memory,
        zeroed_while_timed,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// Whether an appender makes another append: while the duration runs, or
/// while the turns go on (then waiting for the case's turn).
fn another(config: &WalBenchConfig, end: Instant) -> bool {
    turns::another(config.turns.as_deref().map(|t| (t, Side::Case)), end)
}

/// Appender threads, each blocked in `append_reusing`, for the duration
/// (or the turns): the appends made and their latencies.
fn run_threads(
    wal: &GroupWal,
    frames: Vec<AlignedVec>,
    config: &WalBenchConfig,
) -> Result<(u64, Histogram<u64>), WalError> {
    let end = Instant::now() + config.duration;
    let threads: Vec<_> = frames
        .into_iter()
        .map(|frame| {
            let wal = wal.clone();
            let config = config.clone();
            std::thread::spawn(move || -> Result<(u64, Histogram<u64>), WalError> {
                let mut latency = latency_histogram();
                let mut appends = 0;
                let mut frames = vec![frame];
                while another(&config, end) {
                    let _turn = config.turns.as_deref().map(EndOnDrop);
                    let t0 = Instant::now();
                    wal.append_reusing(&mut frames)?;
                    latency.saturating_record(t0.elapsed().as_nanos() as u64);
                    appends += 1;
                }
                Ok((appends, latency))
            })
        })
        .collect();
    let mut appends = 0;
    let mut latency = latency_histogram();
    for t in threads {
        let (made, measured) = t.join().expect("appender thread")?;
        appends += made;
        latency.add(&measured).expect("same histogram bounds");
    }
    Ok((appends, latency))
}

/// An append of one driver-style appender, resolved: which appender, when
/// it was submitted, its result and its frames back.
type Resolved = (usize, Instant, Result<u64, WalError>, Vec<AlignedVec>);

/// Resolved appends, from the writer's callbacks to the driver: a mutex and
/// a condition variable, so that the driver sleeps at once and a callback's
/// wake is one system call. Through a channel, whose receive spins and
/// yields before it sleeps, this hand-off took 25–50 µs at p50 here (the
/// `wal-stages` timer), and one appender through the driver measured the
/// benchmark's channel more than the WAL. A callback wakes the driver only
/// if it sleeps: the writer resolves a write's appends one after another,
/// and a wake for each cost it 4.5 µs per append.
struct Mailbox {
    held: Mutex<Posted>,
    ready: Condvar,
    /// Appenders: each has one append in flight at most.
    capacity: usize,
}

struct Posted {
    resolved: Vec<Resolved>,
    /// The driver waits on `ready`.
    sleeping: bool,
}

impl Mailbox {
    /// Called on the writer thread: never blocks but on the short lock.
    fn post(&self, resolved: Resolved) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let appender = resolved.0;
        assert!(
            held.resolved.len() < self.capacity,
            "more than one append in flight for appender {appender}"
        );
        held.resolved.push(resolved);
        let wake = std::mem::take(&mut held.sleeping);
        drop(held);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Waits for at least one resolved append; takes every one there is.
    fn take(&self, into: &mut Vec<Resolved>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while held.resolved.is_empty() {
            held.sleeping = true;
            held = self.ready.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.sleeping = false;
        into.append(&mut held.resolved);
    }
}

/// One driver thread (this one) keeping one append in flight per appender
/// through `submit`, for the duration: the appends made and their latencies.
fn run_driver(
    wal: &GroupWal,
    frames: Vec<AlignedVec>,
    config: &WalBenchConfig,
) -> Result<(u64, Histogram<u64>), WalError> {
    let mailbox = Arc::new(Mailbox {
        held: Mutex::new(Posted {
            resolved: Vec::with_capacity(config.appenders),
            sleeping: false,
        }),
        ready: Condvar::new(),
        capacity: config.appenders,
    });
    let submit = |appender: usize, frames: Vec<AlignedVec>| {
        let mailbox = mailbox.clone();
        let turns = config.turns.clone();
        let submitted = Instant::now();
        wal.submit(
            frames,
            // Runs on the writer thread, which must never block here.
            Box::new(move |result, frames| {
                mailbox.post((appender, submitted, result, frames));
                if let Some(turns) = turns {
                    turns.end();
                }
            }),
        )
    };
    let end = Instant::now() + config.duration;
    let mut in_flight = 0;
    for (appender, frame) in frames.into_iter().enumerate() {
        if !another(config, end) {
            break;
        }
        submit(appender, vec![frame])?;
        in_flight += 1;
    }
    let mut latency = latency_histogram();
    let mut appends = 0;
    let mut resolved = Vec::with_capacity(config.appenders);
    let mut next = Vec::with_capacity(config.appenders);
    while in_flight > 0 {
        mailbox.take(&mut resolved);
        // Every latency taken before the next appends go out: waiting for
        // the case's turn is no append's.
        let now = Instant::now();
        for (appender, submitted, result, frames) in resolved.drain(..) {
            in_flight -= 1;
            result?;
            latency.saturating_record((now - submitted).as_nanos() as u64);
            appends += 1;
            next.push((appender, frames));
        }
        for (appender, frames) in next.drain(..) {
            if another(config, end) {
                submit(appender, frames)?;
                in_flight += 1;
            }
        }
    }
    Ok((appends, latency))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::LEND_MIN;

    #[test]
    fn benchmark_frames_have_the_size_asked_for() {
        for bytes in [4096, LEND_MIN, 262144, 1 << 20, 1048000] {
            assert_eq!(frame_of(bytes).len(), bytes);
        }
        // Not a whole number of 16-byte words: the largest frame below.
        assert_eq!(frame_of(3000).len(), 2992);
    }

    #[test]
    fn both_kinds_of_appenders_count_every_append_once() {
        let dir = tempfile::tempdir().unwrap();
        for kind in Appenders::ALL {
            let config = WalBenchConfig {
                bytes: 4096,
                appenders: 4,
                kind,
                duration: Duration::from_millis(100),
                backend: Backend::File,
                dsync: true,
                in_flight: 1,
                prepare_for: 1e6,
                turns: None,
            };
            let r = run(dir.path(), &config).unwrap();
            assert!(
                r.appends >= 4,
                "{kind:?}: each appender appends at least once"
            );
            assert_eq!(
                r.latency.len(),
                r.appends,
                "{kind:?}: one latency per append"
            );
            assert_eq!(r.bytes, r.appends * 4096);
            assert!(
                r.writes >= 1 && r.writes <= r.appends,
                "{kind:?}: writes carry appends"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "segments go"
        );
    }
}
