//! The `traft` command line.

mod cli;

/// Large buffers (frames lent to WAL writes above all) on huge pages:
/// `traft::huge_pages`.
#[global_allocator]
static ALLOCATOR: traft::huge_pages::LargeOnHugePages = traft::huge_pages::LargeOnHugePages;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "traft", version, about = "TRaft replicated log engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark a 3-replica durable cluster on loopback (with no
    /// subcommand), the WAL, or the disk's durable-append floor.
    Bench(cli::bench::BenchArgs),
    /// Run one replica with a RESP2 (Redis protocol) front end.
    Serve(cli::serve::ServeArgs),
    /// Run the deterministic simulator over a range of seeds.
    Sim(SimArgs),
    /// Inspect a WAL directory.
    #[command(subcommand)]
    Wal(cli::wal::WalCommand),
    /// Inspect a snapshot file.
    #[command(subcommand)]
    Snapshot(cli::snapshot::SnapshotCommand),
}

#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Every record depends on every earlier LSN.
    #[arg(long)]
    strict: bool,
    /// Turn network, disk and crash faults off.
    #[arg(long)]
    no_faults: bool,
    /// Print each seed's report.
    #[arg(long)]
    verbose: bool,
    /// Measure elections instead: every replica's timer fires at once; report
    /// the time to an established leader under TRaft's greater-or-equal
    /// voting and under classic Raft's one vote per term, over the same seeds.
    #[arg(long)]
    election_race: bool,
    /// Run with one rule removed (a scenario id like H11, a mutant name, or
    /// `all`) and count the seeds whose checks catch it.
    #[arg(long)]
    mutant: Option<String>,
    /// Simulated seconds with faults on (then faults stop).
    #[arg(long, default_value_t = 3.0)]
    fault_secs: f64,
    /// Simulated seconds after the faults, in which liveness must show.
    #[arg(long, default_value_t = 3.0)]
    quiet_secs: f64,
    /// Ask a random replica for a snapshot cut about this often (simulated
    /// milliseconds; 0: never); every cut is checked.
    #[arg(long, default_value_t = 0)]
    snapshot_ms: u64,
}

fn main() -> Result<()> {
    // A closed stdout (`traft sim --verbose | head`) ends the process quietly,
    // as for any Unix filter, instead of panicking in `println!`.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // A server logs what operators need (elections, links); a benchmark's
    // replicas only what goes wrong, so its table stays readable.
    let default_level = match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if matches!(cli.command, Command::Bench(_) | Command::Serve(_)) {
        reserve_huge_pages();
    }
    match cli.command {
        Command::Bench(args) => cli::bench::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Sim(args) => sim(args),
        Command::Wal(command) => cli::wal::run(command),
        Command::Snapshot(command) => cli::snapshot::run(command),
    }
}

/// The huge-page reserve large buffers are served from
/// (`traft::huge_pages`): `TRAFT_HUGE_PAGES_MIB` MiB, 0 for none. Without it
/// everything is the system allocator's, which only costs speed; so a
/// failure is a warning.
fn reserve_huge_pages() {
    use traft::huge_pages::{reserve, RESERVE_DEFAULT_MIB};
    let mib = match std::env::var("TRAFT_HUGE_PAGES_MIB") {
        Ok(value) => match value.parse::<usize>() {
            Ok(mib) => mib,
            Err(_) => {
                tracing::warn!("TRAFT_HUGE_PAGES_MIB={value:?} is not a number of MiB; no reserve");
                0
            }
        },
        Err(_) => RESERVE_DEFAULT_MIB,
    };
    if let Err(e) = reserve(mib.saturating_mul(1 << 20)) {
        tracing::warn!(
            "no huge-page reserve of {mib} MiB: {e}; large buffers from the system allocator"
        );
    }
}

fn election_race(args: &SimArgs) -> Result<()> {
    use traft::sim::{Sim, SimConfig};
    println!(
        "election race: {} replicas, seeds {}..{}, all timers fire together",
        args.replicas,
        args.start,
        args.start + args.seeds
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "voting", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"
    );
    for (name, classic) in [
        ("TRaft (greater-or-equal)", false),
        ("classic (one per term)", true),
    ] {
        let mut times: Vec<u64> = Vec::new();
        for seed in args.start..args.start + args.seeds {
            let report = Sim::new(SimConfig::election_race(args.replicas, seed, classic))
                .run()
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            let time = report.race_time.expect("a leader");
            if args.verbose {
                println!(
                    "  seed {seed}: {:.2} ms, {} leaders",
                    time as f64 / 1e6,
                    report.leaders
                );
            }
            times.push(time);
        }
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize] as f64 / 1e6;
        let mean = times.iter().sum::<u64>() as f64 / times.len() as f64 / 1e6;
        println!(
            "{:<26} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            name,
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0),
            mean
        );
    }
    Ok(())
}

fn mutants(args: &SimArgs, which: &str) -> Result<()> {
    use traft::core::{Mutations, MUTANTS};
    use traft::sim::{Sim, SimConfig};
    let chosen: Vec<_> = MUTANTS
        .iter()
        .filter(|(id, name, _)| which == "all" || id.eq_ignore_ascii_case(which) || *name == which)
        .collect();
    anyhow::ensure!(!chosen.is_empty(), "no mutant named {which}");
    // Mutants may trip the core's own assertions: count those, quietly.
    std::panic::set_hook(Box::new(|_| {}));
    println!(
        "{:<5} {:<22} {:>14}  first catch",
        "id", "mutant", "seeds caught"
    );
    for (id, name, _) in chosen {
        let mutations = Mutations::by_name(id).expect("listed");
        let mut caught = 0u64;
        let mut first: Option<String> = None;
        for seed in args.start..args.start + args.seeds {
            let mut cfg = SimConfig::new(args.replicas, seed);
            cfg.strict = args.strict;
            cfg.snapshot_every = args.snapshot_ms * 1_000_000;
            cfg.mutations = mutations.clone();
            let outcome = std::panic::catch_unwind(|| Sim::new(cfg).run());
            let violation = match outcome {
                Ok(Ok(_)) => None,
                Ok(Err(failure)) => Some(format!("seed {seed}: {}", failure.violation)),
                Err(_) => Some(format!("seed {seed}: an assertion fired")),
            };
            if let Some(v) = violation {
                caught += 1;
                first.get_or_insert(v);
            }
        }
        println!(
            "{:<5} {:<22} {:>8} / {:<5} {}",
            id,
            name,
            caught,
            args.seeds,
            first.unwrap_or_default()
        );
    }
    Ok(())
}

fn sim(args: SimArgs) -> Result<()> {
    use traft::sim::{Faults, Sim, SimConfig};
    if args.election_race {
        return election_race(&args);
    }
    if let Some(mutant) = &args.mutant {
        return mutants(&args, mutant);
    }
    let started = std::time::Instant::now();
    let (mut steps, mut chosen, mut crashes) = (0u64, 0usize, 0u64);
    let (mut reads, mut transfers, mut cuts) = (0u64, 0u64, 0u64);
    let (mut from_cut, mut purges, mut from_purged) = (0u64, 0u64, 0u64);
    for seed in args.start..args.start + args.seeds {
        let mut cfg = SimConfig::new(args.replicas, seed);
        cfg.strict = args.strict;
        cfg.fault_time = (args.fault_secs * 1e9) as u64;
        cfg.quiet_time = (args.quiet_secs * 1e9) as u64;
        cfg.snapshot_every = args.snapshot_ms * 1_000_000;
        if args.no_faults {
            cfg.faults = Faults::none();
        }
        match Sim::new(cfg).run() {
            Ok(report) => {
                if args.verbose {
                    println!("seed {seed}: {report:?}");
                }
                steps += report.steps;
                chosen += report.chosen;
                crashes += report.crashes;
                reads += report.reads_ok;
                transfers += report.transfers;
                cuts += report.snapshots;
                from_cut += report.restarts_from_snapshot;
                purges += report.purges;
                from_purged += report.restarts_purged;
            }
            Err(failure) => {
                println!("{failure}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "{} seeds from {} with {} replicas: no violations ({} steps, {} chosen LSNs, {} reads served, {} crashes, {} transfers asked, {} snapshot cuts, {} restarts from one ({} with a purged log), {} WAL purges, {:.1} s)",
        args.seeds,
        args.start,
        args.replicas,
        steps,
        chosen,
        reads,
        crashes,
        transfers,
        cuts,
        from_cut,
        from_purged,
        purges,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
