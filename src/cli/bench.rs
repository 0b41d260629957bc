//! `traft bench`: with no subcommand, a 3-replica durable cluster on
//! loopback under closed-loop clients, beside the floor measured in the same
//! run (one durable 4 KiB append plus one loopback round trip).

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;
use traft::bench::cluster::{BenchCluster, ClusterBenchConfig};
use traft::bench::floor::{self, FloorConfig};
use traft::bench::net;
use traft::wal::Backend;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Durable appends through the WAL (group commit, io_uring) beside the
    /// raw floor, for several append sizes and numbers of appenders.
    Wal(super::wal_bench::WalBenchArgs),
    /// One replica's durable appends of encoded record batches, one in
    /// flight: the disk's floor.
    Floor(super::floor::FloorArgs),
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// Closed-loop clients (comma-separated cases).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64, 256])]
    clients: Vec<usize>,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Distinct keys, drawn uniformly.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Measured seconds per case.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured seconds before each case.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// In-order commit and apply: every record depends on every earlier one.
    #[arg(long)]
    strict: bool,
    /// `uring` (io_uring, O_DIRECT), `file` (pwrite, O_DIRECT), or `memory`
    /// (NOT durable: for comparison only).
    #[arg(long, default_value = "uring")]
    backend: String,
    /// Apply threads per replica (0: on the replica's own thread).
    #[arg(long, default_value_t = 0)]
    apply_workers: usize,
    /// Directory for the replicas' data (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        Some(BenchWhat::Wal(wal)) => super::wal_bench::run(wal),
        Some(BenchWhat::Floor(f)) => super::floor::run(f),
        None => run_cluster(args.cluster),
    }
}

fn backend(name: &str) -> Result<Backend> {
    Ok(match name {
        "uring" => Backend::Uring,
        "file" => Backend::File,
        "memory" => Backend::Memory,
        other => anyhow::bail!("unknown backend {other:?}: uring, file or memory"),
    })
}

fn run_cluster(args: ClusterArgs) -> Result<()> {
    let (_tmp, dir) = super::work_dir(args.dir.as_deref())?;
    let backend = backend(&args.backend)?;
    // The floor, in this run: one durable 4 KiB append, one loopback trip.
    let f = floor::run(
        &dir,
        &FloorConfig {
            records_per_append: 1,
            value_size: args.value_size,
            duration: Duration::from_secs(1),
            file_size: 64 << 20,
            copy_in: false,
            threads: 1,
            turns: None,
        },
    )
    .context("the durable-append floor")?;
    let rtt = net::loopback_round_trips(64, 5_000).context("the loopback round trip")?;
    let append_us = f.latency.value_at_quantile(0.5) as f64 / 1e3;
    let rtt_us = rtt.value_at_quantile(0.5) as f64 / 1e3;
    let floor_us = append_us + rtt_us;
    let mut config = ClusterBenchConfig {
        replicas: args.replicas,
        clients: 1,
        value_size: args.value_size,
        keys: args.keys,
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs_f64(args.warmup),
        strict: args.strict,
        backend,
        apply_workers: args.apply_workers,
    };
    let mode = if args.strict {
        "strict (in order)"
    } else {
        "out of order"
    };
    let durability = match backend {
        Backend::Memory => "WAL IN MEMORY, NOT DURABLE (comparison only)",
        _ => "durable WAL",
    };
    if !args.json {
        println!(
            "{} replicas on loopback, {durability} ({}), {mode}, SET of {}-byte values over {} keys, {:.0} s per case",
            args.replicas, args.backend, args.value_size, args.keys, args.duration
        );
        println!(
            "floor (same run): durable 4 KiB append p50 {append_us:.1} µs + loopback round trip p50 {rtt_us:.1} µs = {floor_us:.1} µs"
        );
        println!(
            "{:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10} {:>11} {:>7}",
            "clients",
            "ops/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "p50/flr",
            "batches/s",
            "rec/batch",
            "fsyncs/s",
            "errors"
        );
    }
    let cluster = BenchCluster::start(&dir, &config).context("starting the cluster")?;
    for &clients in &args.clients {
        config.clients = clients;
        let r = cluster.run(&config).context("running clients")?;
        let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1e3;
        let batches = r.per_sec(r.leader.wal_submits);
        let per_batch = r.leader.records_written as f64 / r.leader.wal_submits.max(1) as f64;
        let fsyncs = r.per_sec(r.syncs_all);
        if args.json {
            println!(
                "{{\"replicas\":{},\"clients\":{clients},\"value_size\":{},\"strict\":{},\"backend\":\"{}\",\"durable\":{},\"ops\":{},\"ops_per_sec\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"floor_us\":{floor_us:.1},\"floor_append_us\":{append_us:.1},\"floor_rtt_us\":{rtt_us:.1},\"leader_batches_per_sec\":{batches:.1},\"records_per_batch\":{per_batch:.2},\"fsyncs_per_sec_all_replicas\":{fsyncs:.1},\"errors\":{}}}",
                args.replicas, args.value_size, args.strict, args.backend,
                backend != Backend::Memory, r.ops, r.ops_per_sec(),
                us(0.5), us(0.99), us(0.999), r.latency.max() as f64 / 1e3, r.errors
            );
        } else {
            println!(
                "{:>7} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.2}× {:>10.0} {:>10.1} {:>11.0} {:>7}",
                clients, r.ops_per_sec(), us(0.5), us(0.99), us(0.999),
                r.latency.max() as f64 / 1e3, us(0.5) / floor_us,
                batches, per_batch, fsyncs, r.errors
            );
        }
    }
    cluster.shutdown().context("stopping the cluster")?;
    Ok(())
}
