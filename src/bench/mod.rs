//! `traft bench`: measurements a user can run on their own machine.

pub mod cluster;
pub mod floor;
pub mod memory;
pub mod net;
pub mod turns;
pub mod wal;

/// Latencies in nanoseconds, from 1 ns to a minute, 3 significant digits.
pub(crate) fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}
