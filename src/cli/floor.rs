//! `traft bench floor`: one replica's durable appends of encoded record
//! batches (O_DIRECT write + fdatasync, one in flight) — what bounds every
//! replicated figure on this disk.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;
use traft::bench::floor::{self, FloorConfig};

#[derive(clap::Args)]
pub struct FloorArgs {
    /// Seconds to run each case.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Bytes per command.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Records per append (comma-separated list of cases).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64, 1024])]
    batch: Vec<usize>,
    /// Directory for the data file (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    json: bool,
    /// Copy each append into the write buffer before writing it (as a log
    /// that stages its frames does): shows what writing memory the CPU has
    /// just written costs against memory it has not.
    #[arg(long)]
    copy_in: bool,
    /// Threads appending at once, each one write in flight into its own
    /// part of the file.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(args: FloorArgs) -> Result<()> {
    let (_tmp, dir) = super::work_dir(args.dir.as_deref())?;
    anyhow::ensure!(args.threads >= 1, "at least one thread");
    if !args.json {
        println!(
            "durable append floor in {} ({}-byte values, {:.1} s per case, {} thread{})",
            dir.display(),
            args.value_size,
            args.duration,
            args.threads,
            if args.threads == 1 { "" } else { "s" }
        );
        println!(
            "{:>8} {:>9} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "records",
            "bytes",
            "appends/s",
            "records/s",
            "MB/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs"
        );
    }
    for &records in &args.batch {
        let config = FloorConfig {
            records_per_append: records,
            value_size: args.value_size,
            duration: Duration::from_secs_f64(args.duration),
            file_size: 64 << 20,
            copy_in: args.copy_in,
            threads: args.threads,
            turns: None,
        };
        let r = floor::run(&dir, &config)
            .with_context(|| format!("durable appends in {}", dir.display()))?;
        let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1e3;
        if args.json {
            println!(
                "{{\"records_per_append\":{records},\"append_bytes\":{},\"direct_io\":{},\"appends_per_sec\":{:.1},\"records_per_sec\":{:.1},\"mb_per_sec\":{:.2},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
                r.append_bytes, r.direct_io, r.appends_per_sec(), r.records_per_sec(), r.mb_per_sec(),
                us(0.5), us(0.99), us(0.999), r.latency.max() as f64 / 1e3
            );
        } else {
            println!(
                "{:>8} {:>9} {:>10.0} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}{}",
                records,
                r.append_bytes,
                r.appends_per_sec(),
                r.records_per_sec(),
                r.mb_per_sec(),
                us(0.5),
                us(0.99),
                us(0.999),
                r.latency.max() as f64 / 1e3,
                if r.direct_io {
                    ""
                } else {
                    "  (buffered: O_DIRECT unavailable)"
                }
            );
        }
    }
    Ok(())
}
