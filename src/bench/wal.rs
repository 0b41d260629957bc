//! `traft bench wal`: durable appends through the WAL — group commit, the
//! chosen backend, segments prepared ahead — from concurrent appenders.

use super::latency_histogram;
use crate::frame::{encode, Record, RecordBatch};
use crate::ids::LeaderId;
pub use crate::wal::Backend;
use crate::wal::{file, open_backend, GroupWal, WalError, WalOptions};
use hdrhistogram::Histogram;
use rkyv::util::AlignedVec;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Segment size for the benchmark.
const SEGMENT: usize = 64 << 20;
/// Bytes a record adds around its command in an encoded batch frame.
const FRAME_OVERHEAD: usize = 128;

#[derive(Clone, Debug)]
pub struct WalBenchConfig {
    /// Bytes per append (one frame).
    pub bytes: usize,
    pub appenders: usize,
    pub duration: Duration,
    pub backend: Backend,
    /// Durability through `O_DSYNC` writes instead of `fdatasync`.
    pub dsync: bool,
    /// Writes in flight at most (io_uring).
    pub in_flight: usize,
    /// Segments are zeroed before the clock starts for this rate over the
    /// whole run (bytes/s): zeroing during the run would share the disk.
    pub prepare_for: f64,
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
    file::prepare_ahead(&dir, SEGMENT, ahead)
        .map_err(|source| WalError::io("prepare", 0, source))?;
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
    let chosen = chosen_rx.recv().unwrap_or("unknown");
    let frame = frame_of(config.bytes);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..config.appenders)
        .map(|_| {
            let wal = wal.clone();
            let frame = frame.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<(u64, Histogram<u64>), WalError> {
                let mut latency = latency_histogram();
                let mut appends = 0;
                let mut frames = vec![frame];
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    wal.append_reusing(&mut frames)?;
                    latency.saturating_record(t0.elapsed().as_nanos() as u64);
                    appends += 1;
                }
                Ok((appends, latency))
            })
        })
        .collect();
    std::thread::sleep(config.duration);
    stop.store(true, Ordering::Relaxed);
    let mut report = WalBenchReport {
        appends: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latency: latency_histogram(),
        backend: chosen,
        writes: 0,
        peak_in_flight: 0,
    };
    for t in threads {
        let (appends, latency) = t.join().expect("appender thread")?;
        report.appends += appends;
        report.latency.add(&latency).expect("same histogram bounds");
    }
    report.elapsed = started.elapsed();
    report.bytes = report.appends * frame.len() as u64;
    report.writes = writes.load(Ordering::Relaxed);
    report.peak_in_flight = wal.peak_in_flight();
    drop(wal);
    writer.join();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
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
}
