//! The writer's writes over time: when each started, how many appends it
//! carried, whether it went alone, and when the writer had its completion.
//! Kept only in builds with the `wal-stages` feature (elsewhere the marks
//! are empty), beside the hops of `stages.rs`:
//! `cargo run --release --features wal-stages -- bench wal --appenders 16`.
//!
//! Per append, the hops say where one appender's time goes; with many
//! appenders they interleave, and what tells whether the disk is kept busy
//! is the writes themselves: how long no write is in flight, how many are
//! at once, how full each one is.

use super::stages::at_percent;
use std::time::{Duration, Instant};

/// One write, from the writer's side.
#[derive(Clone, Copy, Debug)]
pub struct WriteSpan {
    /// Handed to the ring, or the `pwritev` begun.
    pub started: Instant,
    /// The writer has its completion.
    pub done: Instant,
    /// Appends planned with it (a group that rolls over into a new
    /// segment counts on its first write).
    pub appends: usize,
    pub bytes: usize,
    /// Made on the writer thread (`alone.rs`).
    pub alone: bool,
}

/// What the writes of one run add up to.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteTimeline {
    pub writes: usize,
    /// Writes made alone.
    pub alone: usize,
    pub appends_per_write: f64,
    pub bytes_per_write: f64,
    /// From the first write's start to the last one's completion.
    pub span: Duration,
    /// Share of the span with 0, 1, 2 and 3 or more writes in flight.
    pub in_flight_share: [f64; 4],
    /// Stretches with no write in flight, between two writes: p50 and p90.
    pub idle_us: (f64, f64),
    /// A write's start to its completion: p50 and p90.
    pub write_us: (f64, f64),
}

fn percentiles(mut values: Vec<f64>) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    (at_percent(&values, 50), at_percent(&values, 90))
}

/// The timeline of `writes`; `None` without any.
pub fn summarize(writes: &[WriteSpan]) -> Option<WriteTimeline> {
    let first = writes.iter().map(|w| w.started).min()?;
    let last = writes.iter().map(|w| w.done).max()?;
    // Starts before ends at the same instant: a write that starts as
    // another ends leaves no gap.
    let mut edges: Vec<(Instant, bool)> = writes
        .iter()
        .flat_map(|w| [(w.started, false), (w.done, true)])
        .collect();
    edges.sort();
    let mut share = [Duration::ZERO; 4];
    let mut idle = Vec::new();
    let mut in_flight = 0usize;
    let mut since = first;
    for (at, ends) in edges {
        let stretch = at - since;
        share[in_flight.min(3)] += stretch;
        if in_flight == 0 && at > first {
            idle.push(stretch.as_secs_f64() * 1e6);
        }
        if ends {
            debug_assert!(in_flight > 0, "a write ends before it starts");
            in_flight -= 1;
        } else {
            in_flight += 1;
        }
        since = at;
    }
    let span = last - first;
    let of_span = |d: Duration| d.as_secs_f64() / span.as_secs_f64().max(f64::MIN_POSITIVE);
    Some(WriteTimeline {
        writes: writes.len(),
        alone: writes.iter().filter(|w| w.alone).count(),
        appends_per_write: writes.iter().map(|w| w.appends).sum::<usize>() as f64
            / writes.len() as f64,
        bytes_per_write: writes.iter().map(|w| w.bytes).sum::<usize>() as f64 / writes.len() as f64,
        span,
        in_flight_share: share.map(of_span),
        idle_us: percentiles(idle),
        write_us: percentiles(
            writes
                .iter()
                .map(|w| (w.done - w.started).as_secs_f64() * 1e6)
                .collect(),
        ),
    })
}

#[cfg(feature = "wal-stages")]
mod kept {
    use super::{summarize, WriteSpan, WriteTimeline};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    /// Writes kept at most between two reports: a bound on memory (64 MiB).
    const WRITES_MAX: usize = 1 << 20;

    struct Kept {
        /// By write id, until the completion.
        open: HashMap<u64, (Instant, usize, usize, bool)>,
        done: Vec<WriteSpan>,
    }

    static KEPT: Mutex<Option<Kept>> = Mutex::new(None);

    fn with<T>(f: impl FnOnce(&mut Kept) -> T) -> T {
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        f(kept.get_or_insert_with(|| Kept {
            open: HashMap::new(),
            done: Vec::new(),
        }))
    }

    pub fn started(id: u64, appends: usize, bytes: usize, alone: bool) {
        let now = Instant::now();
        with(|k| {
            if k.done.len() + k.open.len() < WRITES_MAX {
                k.open.insert(id, (now, appends, bytes, alone));
            }
        });
    }

    pub fn done(id: u64) {
        let now = Instant::now();
        with(|k| {
            if let Some((started, appends, bytes, alone)) = k.open.remove(&id) {
                k.done.push(WriteSpan {
                    started,
                    done: now,
                    appends,
                    bytes,
                    alone,
                });
            }
        });
    }

    pub fn take() -> Option<WriteTimeline> {
        let writes = with(|k| {
            k.open.clear();
            std::mem::take(&mut k.done)
        });
        summarize(&writes)
    }
}

/// Notes that write `id` starts now, carrying `appends` appends.
#[cfg(feature = "wal-stages")]
pub use kept::started;

/// Notes that the writer has write `id`'s completion now.
#[cfg(feature = "wal-stages")]
pub use kept::done;

/// The timeline of the writes since the last call; `None` without the
/// `wal-stages` feature.
#[cfg(feature = "wal-stages")]
pub use kept::take;

#[cfg(not(feature = "wal-stages"))]
#[inline(always)]
pub fn started(_id: u64, _appends: usize, _bytes: usize, _alone: bool) {}

#[cfg(not(feature = "wal-stages"))]
#[inline(always)]
pub fn done(_id: u64) {}

#[cfg(not(feature = "wal-stages"))]
pub fn take() -> Option<WriteTimeline> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(t0: Instant, from_us: u64, to_us: u64, appends: usize) -> WriteSpan {
        WriteSpan {
            started: t0 + Duration::from_micros(from_us),
            done: t0 + Duration::from_micros(to_us),
            appends,
            bytes: appends * 4096,
            alone: appends == 1,
        }
    }

    #[test]
    fn the_timeline_shares_its_span_by_writes_in_flight() {
        let t0 = Instant::now();
        // 0–100 one write, 50–150 a second beside it, idle 150–200, then
        // one alone 200–300 starting as nothing else runs.
        let writes = [
            span(t0, 0, 100, 4),
            span(t0, 50, 150, 2),
            span(t0, 200, 300, 1),
        ];
        let t = summarize(&writes).unwrap();
        assert_eq!(t.writes, 3);
        assert_eq!(t.alone, 1);
        assert!((t.appends_per_write - 7.0 / 3.0).abs() < 1e-9);
        assert!((t.bytes_per_write - 7.0 * 4096.0 / 3.0).abs() < 1e-9);
        assert_eq!(t.span, Duration::from_micros(300));
        let share = t.in_flight_share.map(|s| (s * 300.0).round());
        assert_eq!(share, [50.0, 200.0, 50.0, 0.0]);
        assert_eq!(t.idle_us, (50.0, 50.0));
        assert_eq!(t.write_us, (100.0, 100.0));
    }

    #[test]
    fn a_write_that_starts_as_another_ends_leaves_no_gap() {
        let t0 = Instant::now();
        let t = summarize(&[span(t0, 0, 100, 1), span(t0, 100, 180, 1)]).unwrap();
        assert_eq!(t.idle_us, (0.0, 0.0), "no idle stretch: {t:?}");
        assert_eq!(t.in_flight_share[0], 0.0);
        assert!(summarize(&[]).is_none());
    }
}
