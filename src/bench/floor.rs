//! The durable-append floor: frames appended to a pre-zeroed file with
//! `O_DIRECT` and `fdatasync`, one write in flight. Nothing that writes a
//! durable log on this disk can beat it, so every replicated figure is
//! reported beside it.

use crate::frame::{self, Record, RecordBatch};
use crate::ids::LeaderId;
use crate::TailBitmap;
use hdrhistogram::Histogram;
use rkyv::util::AlignedVec;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
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
    let path = dir.join("floor.dat");
    let mut buf = append_bytes(config)?;
    let source = buf.to_vec();
    let file_size = config
        .file_size
        .max(buf.len() as u64 * 4)
        .next_multiple_of(BLOCK as u64);
    crate::wal::file::zero_fill(&path, file_size)?;
    let (file, direct_io) = crate::wal::file::open_for_writes(&path, true, false)?;
    let mut latency = super::latency_histogram();
    let mut report = FloorReport {
        direct_io,
        appends: 0,
        records: 0,
        bytes: 0,
        append_bytes: buf.len(),
        elapsed: Duration::ZERO,
        latency: latency.clone(),
    };
    let started = Instant::now();
    let mut at = 0u64;
    while started.elapsed() < config.duration {
        if at + buf.len() as u64 > file_size {
            at = 0;
        }
        let t0 = Instant::now();
        if config.copy_in {
            buf.copy_from_slice(&source);
        }
        file.write_all_at(&buf, at)?;
        file.sync_data()?;
        latency.saturating_record(t0.elapsed().as_nanos() as u64);
        at += buf.len() as u64;
        report.appends += 1;
    }
    report.elapsed = started.elapsed();
    report.records = report.appends * config.records_per_append as u64;
    report.bytes = report.appends * buf.len() as u64;
    report.latency = latency;
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(report)
}
