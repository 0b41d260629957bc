//! `traft bench wal`: the WAL's durable appends beside the raw floor.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use traft::bench::floor::{self, FloorConfig};
use traft::bench::turns::{Side, Turn, Turns};
use traft::bench::wal::{self, Appenders, Backend, WalBenchConfig};

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
    /// `uring` (io_uring on O_DIRECT files) or `file` (pwrite), or both
    /// (comma-separated cases, measured in the same rounds).
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("uring")])]
    backend: Vec<String>,
    /// Make appends durable with a write and then `fdatasync`, instead of
    /// the `O_DSYNC` writes replicas use.
    #[arg(long)]
    fdatasync: bool,
    /// How appenders wait (comma-separated cases): `threads`, each a thread
    /// blocked until its append is durable; `driver`, one thread keeping an
    /// append in flight per appender without blocking, as a replica does.
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("threads")])]
    kind: Vec<String>,
    /// Writes in flight at most, io_uring only (comma-separated cases).
    #[arg(long, value_delimiter = ',', default_values_t = [traft::wal::WRITES_IN_FLIGHT_MAX])]
    in_flight: Vec<usize>,
    /// Directory for the segments (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rounds per size: each measures the floor again, then every case;
    /// figures are medians over the rounds, the ratio to the floor with
    /// its range (the disk here moves by ±20% from minute to minute).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Also measure the floor with as many threads as each case of several
    /// appenders has (each thread one write + fdatasync at a time into its
    /// own part of the file), in the same rounds: rows `raw`, what the disk
    /// gives concurrent writers that do not batch.
    #[arg(long)]
    raw_threads: bool,
    /// Measure each case taking turns on the disk with a floor of its own,
    /// in this many pairs of turns per round (each side `duration` in all),
    /// so that both see the same minutes of the disk's drift; 0: the
    /// round's floor, then each case, one after the other.
    #[arg(long, default_value_t = 0)]
    slices: usize,
}

/// One case of the table: how its appends were written and waited for.
struct Case {
    backend: Backend,
    in_flight: usize,
    kind: Appenders,
    appenders: usize,
}

/// A measurement in one round beside its floor's, and its MB/s as a share
/// of the floor's.
type Against = (Measured, Measured, f64);

/// One case's figures in one round.
struct Measured {
    appends_per_sec: f64,
    mb_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    per_write: f64,
    peak_in_flight: u64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median of `f` over `rounds`.
fn med<T>(rounds: &[T], f: impl Fn(&T) -> f64) -> f64 {
    median(rounds.iter().map(f).collect())
}

/// More bytes per second than this disk writes, and more durable appends
/// per second than one writer makes on it: the floor's file holds a whole
/// run at the lesser of the two rates (per thread), so it never wraps into
/// pages written already, and small appends do not zero gigabytes first.
const FASTEST_DISK: f64 = 6e9;
const FASTEST_APPENDS: f64 = 20_000.0;

/// How long a floor runs to size the WAL's preparation when the cases take
/// turns with floors of their own.
const CALIBRATION: Duration = Duration::from_millis(500);

/// Bytes of fresh pre-zeroed space for `threads` writers of `bytes`-byte
/// appends for `seconds`.
fn floor_space(bytes: usize, threads: usize, seconds: f64) -> u64 {
    let rate = (FASTEST_APPENDS * (bytes * threads) as f64).min(FASTEST_DISK);
    ((seconds * rate) as u64).next_multiple_of(1 << 20)
}

pub fn run(args: WalBenchArgs) -> Result<()> {
    anyhow::ensure!(args.rounds >= 1, "at least one round");
    let (_tmp, dir) = super::work_dir(args.dir.as_deref())?;
    let cases = cases(&args)?;
    print_header(&args, &dir);
    for &bytes in &args.bytes {
        measure_size(&args, &dir, bytes, &cases)?;
    }
    // Large buffers past the reserve came from scattered pages: say so.
    let (reserve, cut) = traft::huge_pages::reserved();
    eprintln!(
        "huge-page reserve: {} MiB, {} MiB of it cut into blocks (TRAFT_HUGE_PAGES_MIB)",
        reserve >> 20,
        cut >> 20
    );
    Ok(())
}

/// Every combination of the backends, writes in flight, kinds and numbers
/// of appenders asked for, in the table's order.
fn cases(args: &WalBenchArgs) -> Result<Vec<Case>> {
    let backends = args
        .backend
        .iter()
        .map(|b| match b.as_str() {
            "uring" => Ok(Backend::Uring),
            "file" => Ok(Backend::File),
            other => anyhow::bail!("unknown backend {other:?}: uring or file"),
        })
        .collect::<Result<Vec<_>>>()?;
    let kinds = args
        .kind
        .iter()
        .map(|k| {
            Appenders::ALL
                .into_iter()
                .find(|a| a.name() == k)
                .with_context(|| format!("unknown kind of appenders {k:?}: threads or driver"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(backends
        .iter()
        .flat_map(|&b| args.in_flight.iter().map(move |&f| (b, f)))
        .flat_map(|(b, f)| kinds.iter().map(move |&k| (b, f, k)))
        .flat_map(|(backend, in_flight, kind)| {
            args.appenders.iter().map(move |&appenders| Case {
                backend,
                in_flight,
                kind,
                appenders,
            })
        })
        .collect())
}

fn print_header(args: &WalBenchArgs, dir: &Path) {
    println!(
        "WAL durable appends ({}) in {} ({:.1} s per case, {} round{}: medians, and the range of the ratio to each round's floor); floor: one O_DIRECT pwrite + fdatasync at a time",
        if args.fdatasync { "write, then fdatasync" } else { "O_DSYNC writes" },
        dir.display(),
        args.duration,
        args.rounds,
        if args.rounds == 1 { "" } else { "s" }
    );
    println!(
        "{:>8} {:>5} {:>7} {:>9} {:>6} | {:>10} {:>8} {:>8} {:>8} {:>8} | {:>10} {:>8} {:>8} {:>8} | {:>7} {:>10} {:>9} {:>9}",
        "bytes",
        "appnd",
        "kind",
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
        "range",
        "× 1 appnd",
        "range"
    );
}

/// Every round of every case at `bytes`, then their rows.
fn measure_size(args: &WalBenchArgs, dir: &Path, bytes: usize, cases: &[Case]) -> Result<()> {
    let floor_config = FloorConfig {
        records_per_append: 1,
        value_size: bytes.saturating_sub(128).max(1),
        duration: Duration::from_secs_f64(args.duration),
        // Fresh pre-zeroed space for the whole run, as the WAL writes:
        // rewriting a small file measures a cache, not the disk.
        file_size: floor_space(bytes, 1, args.duration),
        copy_in: false,
        threads: 1,
        turns: None,
    };
    let mut raw_counts: Vec<usize> = Vec::new();
    if args.raw_threads {
        raw_counts = args.appenders.iter().copied().filter(|&a| a > 1).collect();
        raw_counts.sort_unstable();
        raw_counts.dedup();
    }
    let mut raws: Vec<Vec<Against>> = raw_counts.iter().map(|_| Vec::new()).collect();
    // Per case, per round: its figures beside its floor's.
    let mut results: Vec<Vec<Against>> = cases.iter().map(|_| Vec::new()).collect();
    // What each case ran: the backend asked for may fall back.
    let mut backend_names = vec![""; cases.len()];
    // The floor's rate sizes the WAL's preparation; taking turns, a short
    // floor of its own measures it, once per size.
    let mut calibrated: Option<f64> = None;
    for number in 1..=args.rounds {
        let round = Round::start(args, dir, bytes, number, &floor_config, &mut calibrated)?;
        for (i, &threads) in raw_counts.iter().enumerate() {
            raws[i].push(round.raw(threads)?);
        }
        for (i, case) in cases.iter().enumerate() {
            let (against, backend) = round.case(case)?;
            results[i].push(against);
            backend_names[i] = backend;
        }
    }
    for (i, case) in cases.iter().enumerate() {
        let rounds = &results[i];
        let peak = rounds.iter().map(|(m, _, _)| m.peak_in_flight).max();
        let row = Row {
            bytes,
            appenders: case.appenders,
            kind: case.kind.name(),
            backend: backend_names[i],
            flight: format!("{:>3}/{:<2}", peak.unwrap_or(0), case.in_flight),
            base: one_appender_rates(case, cases, &results, args.appenders[0]),
        };
        row.print(rounds);
    }
    for (i, &threads) in raw_counts.iter().enumerate() {
        // Set against the floor each ran beside.
        let one = raws[i].iter().map(|(_, f, _)| f.appends_per_sec).collect();
        let row = Row {
            bytes,
            appenders: threads,
            kind: "threads",
            backend: "raw",
            flight: format!("{:>3}/{:<2}", threads, threads),
            base: one,
        };
        row.print(&raws[i]);
    }
    print_against_raw(bytes, cases, &results, &raw_counts, &raws);
    Ok(())
}

/// Each case of as many appenders as a `raw` row has threads, against that
/// row's MB/s round by round (measured seconds apart, where the floor may
/// be a minute away): to standard error, beside the table.
fn print_against_raw(
    bytes: usize,
    cases: &[Case],
    results: &[Vec<Against>],
    raw_counts: &[usize],
    raws: &[Vec<Against>],
) {
    for (case, rounds) in cases.iter().zip(results) {
        let Some(raw) = raw_counts.iter().position(|&t| t == case.appenders) else {
            continue;
        };
        let ratios: Vec<f64> = rounds
            .iter()
            .zip(&raws[raw])
            .map(|((m, _, _), (r, _, _))| 100.0 * m.mb_per_sec / r.mb_per_sec)
            .collect();
        let (lo, hi) = range(&ratios);
        let mid = median(ratios);
        eprintln!(
            "{bytes} B, {} × {} ({} in flight): {mid:.0}% ({lo:.0}–{hi:.0}%) of {} raw threads' MB/s, round by round",
            case.appenders,
            case.kind.name(),
            case.in_flight,
            case.appenders,
        );
    }
}

/// The base of the `× 1 appnd` column for `of`, per round (the disk drifts
/// from minute to minute: a case is set against the one-appender rate of
/// its own round): for its backend and `in_flight`, the faster of the
/// kinds' cases with `first` appenders (against the slower, a ratio would
/// flatter the kind).
fn one_appender_rates(
    of: &Case,
    cases: &[Case],
    results: &[Vec<Against>],
    first: usize,
) -> Vec<f64> {
    let rounds = results.first().map_or(0, Vec::len);
    (0..rounds)
        .map(|round| {
            cases
                .iter()
                .zip(results)
                .filter(|(c, _)| {
                    c.backend == of.backend && c.in_flight == of.in_flight && c.appenders == first
                })
                .map(|(_, rounds)| rounds[round].0.appends_per_sec)
                .fold(0.0, f64::max)
        })
        .collect()
}

/// One round at one size: the floor its measurements are set against.
struct Round<'a> {
    args: &'a WalBenchArgs,
    dir: &'a Path,
    bytes: usize,
    number: usize,
    /// The round's floor, measured first; none when each measurement takes
    /// turns with a floor of its own.
    floor: Option<floor::FloorReport>,
    /// A floor that takes turns with a measurement.
    paired_floor: FloorConfig,
    /// The floor's MB/s, which sizes the WAL's preparation.
    floor_rate: f64,
}

impl<'a> Round<'a> {
    /// Measures the round's floor, or (taking turns) the rate calibrated
    /// once per size.
    fn start(
        args: &'a WalBenchArgs,
        dir: &'a Path,
        bytes: usize,
        number: usize,
        floor_config: &FloorConfig,
        calibrated: &mut Option<f64>,
    ) -> Result<Round<'a>> {
        let floor = if args.slices == 0 {
            let f = floor::run(dir, floor_config).context("the raw floor")?;
            eprintln!(
                "{bytes} B, round {number}: the floor {:.0} MB/s from a buffer in {}",
                f.mb_per_sec(),
                f.memory
            );
            Some(f)
        } else {
            None
        };
        let floor_rate = match (&floor, *calibrated) {
            (Some(f), _) => f.mb_per_sec(),
            (None, Some(rate)) => rate,
            (None, None) => {
                let config = FloorConfig {
                    duration: CALIBRATION,
                    file_size: floor_space(bytes, 1, CALIBRATION.as_secs_f64()),
                    ..floor_config.clone()
                };
                let rate = floor::run(dir, &config)
                    .context("the raw floor")?
                    .mb_per_sec();
                *calibrated.insert(rate)
            }
        };
        // A floor taking turns is sized by the rate measured, with room to
        // spare: zeroing gigabytes for each case would take minutes.
        let room = (2.0 * floor_rate * 1e6 * args.duration) as u64;
        let paired_floor = FloorConfig {
            file_size: floor_config.file_size.min(room.next_multiple_of(1 << 20)),
            ..floor_config.clone()
        };
        Ok(Round {
            args,
            dir,
            bytes,
            number,
            floor,
            paired_floor,
            floor_rate,
        })
    }

    /// `threads` raw writers beside the floor.
    fn raw(&self, threads: usize) -> Result<Against> {
        let config = FloorConfig {
            threads,
            file_size: floor_space(self.bytes, threads, self.args.duration),
            ..self.paired_floor.clone()
        };
        let (r, f, turns) = self.against_floor(|turns| {
            let config = FloorConfig {
                turns: turns.map(|t| (t, Side::Case)),
                ..config.clone()
            };
            floor::run(self.dir, &config).context("the raw floor, threads")
        })?;
        let what = format!("{threads} raw threads");
        self.note_floor(&what, &f, &turns, r.append_bytes as f64);
        let ratio = r.mb_per_sec() / f.mb_per_sec();
        Ok((measured_floor(&r), measured_floor(&f), ratio))
    }

    /// The WAL's appends in `case` beside the floor, and the backend that
    /// ran them.
    fn case(&self, case: &Case) -> Result<(Against, &'static str)> {
        let (bytes, duration) = (self.bytes, self.paired_floor.duration);
        let config = WalBenchConfig {
            bytes,
            appenders: case.appenders,
            kind: case.kind,
            duration,
            backend: case.backend,
            dsync: !self.args.fdatasync,
            in_flight: case.in_flight,
            // Twice the floor's rate per appender (a group commits several
            // appends per write, and a floor a minute earlier may have met
            // the disk at a slow moment), up to what no disk here writes:
            // beyond any WAL's, so that no segment is zeroed while the
            // clock runs.
            prepare_for: (2.0 * case.appenders as f64 * self.floor_rate * 1e6).min(FASTEST_DISK),
            turns: None,
        };
        let (r, f, turns) = self.against_floor(|turns| {
            let config = WalBenchConfig {
                turns,
                ..config.clone()
            };
            wal::run(self.dir, &config).context("WAL appends")
        })?;
        let what = format!("{} × {}", case.appenders, case.kind.name());
        let per_op = r.bytes as f64 / r.appends.max(1) as f64;
        self.note_floor(&what, &f, &turns, per_op);
        if r.zeroed_while_timed > 0 {
            eprintln!(
                "  warning: {bytes} B × {} ({}): {} segments zeroed while the clock ran, sharing the disk with the appends",
                case.appenders,
                case.kind.name(),
                r.zeroed_while_timed
            );
        }
        print_stages(&config, &r.stages);
        if let Some(t) = &r.timeline {
            print_timeline(&what, t);
        }
        let ratio = r.mb_per_sec() / f.mb_per_sec();
        if case.appenders == 1 {
            eprintln!(
                "  one appender, {} {}: {:.0}% of the floor, its frame in {}",
                case.kind.name(),
                r.backend,
                100.0 * ratio,
                r.frame_memory
            );
        }
        let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1e3;
        let measured = Measured {
            appends_per_sec: r.appends_per_sec(),
            mb_per_sec: r.mb_per_sec(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            per_write: r.appends as f64 / r.writes.max(1) as f64,
            peak_in_flight: r.peak_in_flight,
        };
        Ok(((measured, measured_floor(&f), ratio), r.backend))
    }

    /// One measurement beside its floor: taking turns on the disk with a floor
    /// of its own (`slices` pairs of turns), or after the round's floor
    /// (`slices` 0).
    fn against_floor<T>(
        &self,
        measure: impl FnOnce(Option<Arc<Turns>>) -> Result<T>,
    ) -> Result<(T, floor::FloorReport, Vec<Turn>)> {
        if self.args.slices == 0 {
            let f = self.floor.clone().expect("a round's floor without turns");
            return Ok((measure(None)?, f, Vec::new()));
        }
        let (dir, slices) = (self.dir, self.args.slices);
        let turns = Arc::new(Turns::default());
        let slice = self.paired_floor.duration / slices as u32;
        std::thread::scope(|scope| {
            let floor = scope.spawn(|| {
                let config = FloorConfig {
                    turns: Some((turns.clone(), Side::Floor)),
                    ..self.paired_floor.clone()
                };
                let f = floor::run(dir, &config);
                if f.is_err() {
                    turns.abort();
                }
                f
            });
            let conductor = scope.spawn(|| turns.conduct(slices, slice));
            let measured = measure(Some(turns.clone()));
            if measured.is_err() {
                turns.abort();
            }
            conductor.join().expect("the conductor thread");
            let f = floor.join().expect("the floor thread");
            Ok((measured?, f.context("the raw floor")?, turns.given()))
        })
    }

    /// The floor a measurement took turns with, and the measurement's MB/s
    /// against it pair of turns by pair (median and quartiles), to standard
    /// error. `bytes_per_op`: the measurement's bytes per operation.
    fn note_floor(&self, what: &str, f: &floor::FloorReport, turns: &[Turn], bytes_per_op: f64) {
        if turns.is_empty() {
            return;
        }
        let (bytes, round) = (self.bytes, self.number);
        let rate = |t: &Turn| t.operations as f64 / t.time.as_secs_f64();
        let mut ratios: Vec<f64> = turns
            .chunks(2)
            .filter_map(|pair| {
                let floor = pair.iter().find(|t| t.side == Side::Floor)?;
                let case = pair.iter().find(|t| t.side == Side::Case)?;
                let floor_mb = rate(floor) * f.append_bytes as f64;
                Some(100.0 * rate(case) * bytes_per_op / floor_mb)
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
        eprintln!(
            "{bytes} B, round {round}, {what}: its floor {:.0} MB/s from a buffer in {}; pair by pair {:.0}% of it (quartiles {:.0}–{:.0}%, {} pairs)",
            f.mb_per_sec(),
            f.memory,
            at(0.5),
            at(0.25),
            at(0.75),
            ratios.len()
        );
    }
}

/// Where one appender's appends went, hop by hop (`wal-stages` builds):
/// to standard error, beside the table.
fn print_stages(config: &WalBenchConfig, hops: &[traft::wal::stages::Hop]) {
    if hops.is_empty() {
        return;
    }
    eprintln!(
        "stages of {} B appends, one appender ({}):",
        config.bytes,
        config.kind.name()
    );
    for hop in hops {
        eprintln!(
            "  {:>9?} → {:<9?} {:>7} times  p50 {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs",
            hop.from, hop.to, hop.count, hop.p50_us, hop.p90_us, hop.p99_us
        );
    }
}

/// The writer's writes over the case (`wal-stages` builds): to standard
/// error, beside the table.
fn print_timeline(what: &str, t: &traft::wal::timeline::WriteTimeline) {
    let [none, one, two, more] = t.in_flight_share.map(|s| 100.0 * s);
    eprintln!(
        "  writes of {what}: {} in {:.2} s ({} alone), {:.1} appends and {:.0} KiB each, start to completion p50 {:.0} µs p90 {:.0} µs; in flight 0/1/2/3+ for {none:.1}/{one:.1}/{two:.1}/{more:.1}% of the time, idle stretches p50 {:.0} µs p90 {:.0} µs",
        t.writes,
        t.span.as_secs_f64(),
        t.alone,
        t.appends_per_write,
        t.bytes_per_write / 1024.0,
        t.write_us.0,
        t.write_us.1,
        t.idle_us.0,
        t.idle_us.1,
    );
}

/// The floor's figures in one round.
fn measured_floor(f: &floor::FloorReport) -> Measured {
    let us = |q: f64| f.latency.value_at_quantile(q) as f64 / 1e3;
    Measured {
        appends_per_sec: f.appends_per_sec(),
        mb_per_sec: f.mb_per_sec(),
        p50_us: us(0.5),
        p99_us: us(0.99),
        per_write: 1.0,
        peak_in_flight: 1,
    }
}

/// The least and the most of `values`.
fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// One line of the table: a case's medians over the rounds beside the
/// floor's, its ratio to the floor (median and range), and its rate
/// against `base` (median and range, round by round).
struct Row<'a> {
    bytes: usize,
    appenders: usize,
    kind: &'a str,
    backend: &'a str,
    flight: String,
    /// Per round.
    base: Vec<f64>,
}

impl Row<'_> {
    fn print(&self, rounds: &[Against]) {
        let ratios: Vec<f64> = rounds.iter().map(|(_, _, r)| 100.0 * r).collect();
        let (lo, hi) = range(&ratios);
        let times: Vec<f64> = rounds
            .iter()
            .zip(&self.base)
            .map(|((m, _, _), base)| m.appends_per_sec / base)
            .collect();
        let (times_lo, times_hi) = range(&times);
        println!(
            "{:>8} {:>5} {:>7} {:>9} {} | {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} | {:>10.0} {:>8.1} {:>8.1} {:>8.1} | {:>6.0}% {:>10} {:>8.1}× {:>9}",
            self.bytes,
            self.appenders,
            self.kind,
            self.backend,
            self.flight,
            med(rounds, |(m, _, _)| m.appends_per_sec),
            med(rounds, |(m, _, _)| m.mb_per_sec),
            med(rounds, |(m, _, _)| m.p50_us),
            med(rounds, |(m, _, _)| m.p99_us),
            med(rounds, |(m, _, _)| m.per_write),
            med(rounds, |(_, f, _)| f.appends_per_sec),
            med(rounds, |(_, f, _)| f.mb_per_sec),
            med(rounds, |(_, f, _)| f.p50_us),
            med(rounds, |(_, f, _)| f.p99_us),
            median(ratios),
            format!("{lo:.0}–{hi:.0}%"),
            median(times),
            format!("{times_lo:.1}–{times_hi:.1}"),
        );
    }
}
