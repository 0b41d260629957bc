//! The durable-append floor: frames appended to a pre-zeroed file with
//! `O_DIRECT` and `fdatasync`, one write in flight. Nothing that writes a
//! durable log on this disk can beat it, so every replicated figure is
//! reported beside it. With several threads, each appends so into its own
//! part of the file: what the disk and kernel give to concurrent writers
//! that do not batch.

use super::turns::{another, EndOnDrop, Side, Turns};
use crate::frame::{self, Record, RecordBatch};
use crate::ids::LeaderId;
use crate::TailBitmap;
use hdrhistogram::Histogram;
use rkyv::util::AlignedVec;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Device block: `O_DIRECT` writes are whole, aligned blocks.
const BLOCK: usize = 4096;

#[derive(Clone, Debug)]
pub struct FloorConfig {
    pub records_per_append: usize,
    pub value_size: usize,
    pub duration: Duration,
    /// Size of the pre-zeroed file; appends wrap around inside it.
    pub file_size: u64,
    /// Copy each append's bytes into the write buffer before writing it,
    /// as a log that stages its frames must (timed with the append).
    pub copy_in: bool,
    /// Threads appending at once, each one write in flight into its own
    /// part of the file (1: the floor proper).
    pub threads: usize,
    /// Take turns on the disk with another measurement, as this side, for
    /// as long as the turns go on (`duration` then only sizes the file).
    pub turns: Option<(Arc<Turns>, Side)>,
}

#[derive(Clone, Debug)]
pub struct FloorReport {
    pub direct_io: bool,
    pub appends: u64,
    pub records: u64,
    pub bytes: u64,
    pub append_bytes: usize,
    pub elapsed: Duration,
    /// Latency of one append (write + fdatasync), nanoseconds.
    pub latency: Histogram<u64>,
    /// How the first thread's buffer lies in physical memory
    /// (`memory::describe`): it moves the floor by up to a sixth here.
    pub memory: String,
}

impl FloorReport {
    pub fn appends_per_sec(&self) -> f64 {
        self.appends as f64 / self.elapsed.as_secs_f64()
    }

    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// One append's bytes: a batch of records encoded as a frame, zero-padded
/// to whole blocks in a block-aligned buffer.
fn append_bytes(config: &FloorConfig) -> io::Result<AlignedVec<BLOCK>> {
    let author = LeaderId::new(1, 1);
    let batch = RecordBatch {
        records: (0..config.records_per_append as u64)
            .map(|lsn| Record {
                author,
                lsn,
                cmd: vec![0x5a; config.value_size],
                deps: TailBitmap::prefix(lsn.saturating_sub(1)),
            })
            .collect(),
    };
    let encoded = frame::encode(&batch).map_err(io::Error::other)?;
    let mut buf = AlignedVec::<BLOCK>::with_capacity(encoded.len().next_multiple_of(BLOCK));
    buf.extend_from_slice(&encoded);
    buf.resize(encoded.len().next_multiple_of(BLOCK), 0);
    Ok(buf)
}

/// Runs the floor measurement in `dir`.
pub fn run(dir: &Path, config: &FloorConfig) -> io::Result<FloorReport> {
    assert!(config.threads >= 1, "at least one thread appends");
    // Apart from a floor of other threads it may take turns with.
    let path = dir.join(format!("floor-{}.dat", config.threads));
    let buf = append_bytes(config)?;
    let append = buf.len() as u64;
    // Each thread's part holds whole appends, at least four.
    let part = (config.file_size / config.threads as u64)
        .max(append * 4)
        .next_multiple_of(append);
    let file_size = part * config.threads as u64;
    crate::wal::file::zero_fill(&path, file_size)?;
    let (file, direct_io) = crate::wal::file::open_for_writes(&path, true, false)?;
    let bufs: Vec<AlignedVec<BLOCK>> = (0..config.threads).map(|_| buf.clone()).collect();
    let memory = super::memory::describe(&bufs[0]);
    if let Some((turns, side)) = &config.turns {
        turns.ready(*side);
    }
    let started = Instant::now();
    let parts: Vec<io::Result<(u64, Histogram<u64>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..config.threads as u64)
            .zip(bufs)
            .map(|(i, buf)| {
                let file = &file;
                let range = i * part..(i + 1) * part;
                scope.spawn(move || append_loop(file, buf, range, config, started))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("floor thread"))
            .collect()
    });
    let mut report = FloorReport {
        direct_io,
        appends: 0,
        records: 0,
        bytes: 0,
        append_bytes: buf.len(),
        elapsed: match &config.turns {
            Some((turns, side)) => turns.time(*side),
            None => started.elapsed(),
        },
        latency: super::latency_histogram(),
        memory,
    };
    for part in parts {
        let (appends, latency) = part?;
        report.appends += appends;
        report
            .latency
            .add(&latency)
            .expect("floor histograms share their bounds");
    }
    report.records = report.appends * config.records_per_append as u64;
    report.bytes = report.appends * append;
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(report)
}

/// Appends `buf` over and over into `range` of `file`, one write and sync
/// at a time, until the run's time is up: the appends and their latencies.
fn append_loop(
    file: &std::fs::File,
    mut buf: AlignedVec<BLOCK>,
    range: std::ops::Range<u64>,
    config: &FloorConfig,
    started: Instant,
) -> io::Result<(u64, Histogram<u64>)> {
    let source = buf.to_vec();
    let mut latency = super::latency_histogram();
    let mut appends = 0;
    let mut at = range.start;
    let turns = config.turns.as_ref().map(|(turns, side)| (&**turns, *side));
    while another(turns, started + config.duration) {
        // Ends the turn's operation however it goes.
        let _turn = config.turns.as_ref().map(|(turns, _)| EndOnDrop(turns));
        if at + buf.len() as u64 > range.end {
            at = range.start;
        }
        let t0 = Instant::now();
        if config.copy_in {
            buf.copy_from_slice(&source);
        }
        file.write_all_at(&buf, at)?;
        file.sync_data()?;
        latency.saturating_record(t0.elapsed().as_nanos() as u64);
        at += buf.len() as u64;
        appends += 1;
    }
    Ok((appends, latency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_append_into_their_own_parts_and_every_append_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let config = FloorConfig {
            records_per_append: 1,
            value_size: 100,
            duration: Duration::from_millis(50),
            file_size: 1 << 20,
            copy_in: false,
            threads: 3,
            turns: None,
        };
        let r = run(dir.path(), &config).unwrap();
        assert!(r.appends >= 3, "each thread appends at least once");
        assert_eq!(r.latency.len(), r.appends, "one latency per append");
        assert_eq!(r.bytes, r.appends * r.append_bytes as u64);
        assert!(!dir.path().join("floor-3.dat").exists(), "the file goes");
    }
}
