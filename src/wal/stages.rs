//! Where one append's time goes, hop by hop: timestamps taken on the
//! appender's thread, the writer's and the ring's task, kept only in builds
//! with the `wal-stages` feature (elsewhere `mark` is empty):
//! `cargo run --release --features wal-stages -- bench wal --appenders 1`.
//!
//! With one appender the stages follow one another, so the time from one
//! mark to the next is what that hop costs; with several appenders they
//! interleave and the hops mean nothing (the benchmark reports them for one
//! appender only).

/// A point in an append's way through the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The appender hands its request to the writer.
    Submitted,
    /// The writer has taken it from the queue (woken, if it slept).
    Taken,
    /// It is planned into a write, handed to the storage.
    Started,
    /// The write goes to the kernel (on the ring: its task runs).
    Issued,
    /// The kernel reports the write durable.
    Written,
    /// The writer has collected the completion.
    Collected,
    /// The writer calls the append's callback.
    Resolved,
    /// The appender, woken, holds its reply.
    Returned,
}

/// The value at `percent` of `sorted` (nearest rank below; not empty).
pub fn at_percent(sorted: &[f64], percent: usize) -> f64 {
    debug_assert!(!sorted.is_empty() && percent <= 100);
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

/// One hop between two stages, over every time it was taken.
#[derive(Clone, Debug)]
pub struct Hop {
    pub from: Stage,
    pub to: Stage,
    pub count: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
}

#[cfg(feature = "wal-stages")]
mod kept {
    use super::{Hop, Stage};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Instant;

    /// Marks kept at most between two reports: a bound on memory (16 MiB).
    const MARKS_MAX: usize = 1 << 20;

    static MARKS: Mutex<Vec<(Stage, Instant)>> = Mutex::new(Vec::new());

    pub fn mark(stage: Stage) {
        let now = Instant::now();
        let mut marks = MARKS.lock().unwrap_or_else(|e| e.into_inner());
        if marks.len() < MARKS_MAX {
            marks.push((stage, now));
        }
    }

    pub fn take_hops() -> Vec<Hop> {
        let marks = std::mem::take(&mut *MARKS.lock().unwrap_or_else(|e| e.into_inner()));
        let mut hops: BTreeMap<(Stage, Stage), Vec<f64>> = BTreeMap::new();
        for pair in marks.windows(2) {
            let ((from, t0), (to, t1)) = (pair[0], pair[1]);
            let us = (t1 - t0).as_secs_f64() * 1e6;
            hops.entry((from, to)).or_default().push(us);
        }
        // Hops taken rarely (a case's first and last append) are noise.
        let most = hops.values().map(Vec::len).max().unwrap_or(0);
        hops.into_iter()
            .filter(|(_, times)| times.len() * 100 >= most)
            .map(|((from, to), mut times)| {
                times.sort_by(f64::total_cmp);
                let at = |q: usize| super::at_percent(&times, q);
                Hop {
                    from,
                    to,
                    count: times.len(),
                    p50_us: at(50),
                    p90_us: at(90),
                    p99_us: at(99),
                }
            })
            .collect()
    }
}

/// Notes that an append reached `stage` now.
#[cfg(feature = "wal-stages")]
pub use kept::mark;

/// The hops between the marks since the last call, in the order of their
/// stages; empty without the `wal-stages` feature.
#[cfg(feature = "wal-stages")]
pub use kept::take_hops;

#[cfg(not(feature = "wal-stages"))]
#[inline(always)]
pub fn mark(_stage: Stage) {}

#[cfg(not(feature = "wal-stages"))]
pub fn take_hops() -> Vec<Hop> {
    Vec::new()
}
