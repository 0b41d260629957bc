//! `traft bench wal`: the WAL's durable appends beside the raw floor.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use traft::bench::floor::{self, FloorConfig};
use traft::bench::wal::{self, Backend, WalBenchConfig};

#[derive(clap::Args)]
pub struct WalBenchArgs {
    /// Bytes per append (comma-separated cases).
    #[arg(long, value_delimiter = ',', default_values_t = [4096usize, 65536, 262144, 1048576])]
    bytes: Vec<usize>,
    /// Concurrent appenders (comma-separated cases).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    appenders: Vec<usize>,
    /// Seconds per case.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// `uring` (io_uring on O_DIRECT files) or `file` (pwrite).
    #[arg(long, default_value = "uring")]
    backend: String,
    /// Make appends durable with a write and then `fdatasync`, instead of
    /// the `O_DSYNC` writes replicas use.
    #[arg(long)]
    fdatasync: bool,
    /// Writes in flight at most, io_uring only (comma-separated cases).
    #[arg(long, value_delimiter = ',', default_values_t = [traft::wal::WRITES_IN_FLIGHT_MAX])]
    in_flight: Vec<usize>,
    /// Directory for the segments (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// More bytes per second than this disk writes (the floor's file holds a
/// whole run at this rate, so it never wraps into pages written already).
const FASTEST_DISK: f64 = 2.5e9;

pub fn run(args: WalBenchArgs) -> Result<()> {
    let (_tmp, dir) = super::work_dir(args.dir.as_deref())?;
    let dir: &Path = &dir;
    let backend = match args.backend.as_str() {
        "uring" => Backend::Uring,
        "file" => Backend::File,
        other => anyhow::bail!("unknown backend {other:?}: uring or file"),
    };
    let duration = Duration::from_secs_f64(args.duration);
    println!(
        "WAL durable appends ({}) in {} ({:.1} s per case); floor: one O_DIRECT pwrite + fdatasync at a time",
        if args.fdatasync { "write, then fdatasync" } else { "O_DSYNC writes" },
        dir.display(),
        args.duration
    );
    println!(
        "{:>8} {:>5} {:>9} {:>6} | {:>10} {:>8} {:>8} {:>8} {:>8} | {:>10} {:>8} {:>8} {:>8} | {:>7} {:>9}",
        "bytes",
        "appnd",
        "backend",
        "flight",
        "appends/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "app/wr",
        "floor/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "MB/s %",
        "× 1 appnd"
    );
    for &bytes in &args.bytes {
        let floor_config = FloorConfig {
            records_per_append: 1,
            value_size: bytes.saturating_sub(128).max(1),
            duration,
            // Fresh pre-zeroed space for the whole run, as the WAL writes:
            // rewriting a small file measures a cache, not the disk.
            file_size: ((args.duration * FASTEST_DISK) as u64).next_multiple_of(1 << 20),
        };
        let f = floor::run(dir, &floor_config).context("the raw floor")?;
        let fus = |q: f64| f.latency.value_at_quantile(q) as f64 / 1e3;
        for &in_flight in &args.in_flight {
            let mut single = None;
            for &appenders in &args.appenders {
                let config = WalBenchConfig {
                    bytes,
                    appenders,
                    duration,
                    backend,
                    dsync: !args.fdatasync,
                    in_flight,
                    // Half again the floor's rate: beyond any WAL's.
                    prepare_for: 1.5 * f.mb_per_sec() * 1e6,
                };
                let r = wal::run(dir, &config).context("WAL appends")?;
                let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1e3;
                let one = *single.get_or_insert(r.appends_per_sec());
                println!(
                    "{:>8} {:>5} {:>9} {:>3}/{:<2} | {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} | {:>10.0} {:>8.1} {:>8.1} {:>8.1} | {:>6.0}% {:>8.1}×",
                    bytes, appenders, r.backend, r.peak_in_flight, in_flight,
                    r.appends_per_sec(), r.mb_per_sec(), us(0.5), us(0.99),
                    r.appends as f64 / r.writes.max(1) as f64,
                    f.appends_per_sec(), f.mb_per_sec(), fus(0.5), fus(0.99),
                    100.0 * r.mb_per_sec() / f.mb_per_sec(),
                    r.appends_per_sec() / one
                );
            }
        }
    }
    Ok(())
}
