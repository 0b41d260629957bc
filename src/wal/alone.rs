//! When the writer makes a write alone: with `pwritev` on its own thread
//! (`Storage::write_alone`), blocking it, instead of through the ring.
//!
//! Through the ring, an `O_DSYNC` completion passes a kernel worker and then
//! the ring's wake of the writer: 25–45 µs a write more here than the same
//! `pwritev` (README, "WAL"), much of a small write's time. Blocking costs
//! nothing when there is nothing else for the writer to do; it costs the
//! appends on their way, which wait for it instead of going in flight beside
//! it (several large appenders need their writes in flight together). So a
//! write goes alone only when nothing else is in flight or waiting, and one
//! of two things says that no append is on its way:
//! - the log is quiet (one append at a time: the last write ended with
//!   nothing else waiting, and the writes before it went one at a time), and
//!   the write carries one append;
//! - the write is small (`ALONE_WRITE_BYTES_MAX`) and carries at least as
//!   many appends as were last resolved together: their appenders come back
//!   around the same time, so the whole group is back.
//!
//! A log of large single appends stays on the ring until it is quiet again.

/// A write this small may go alone whatever number of appends it carries,
/// when its group is all back: through the ring its completion would cost a
/// large share of its time. Larger writes gain little from going alone.
pub const ALONE_WRITE_BYTES_MAX: usize = 64 << 10;

/// What the writer knows when it has planned a write.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// Writes in flight through the ring.
    pub in_flight: usize,
    /// Requests taken from the queue and not in this write.
    pub held: usize,
    /// Writes the group was planned into (a segment rollover makes two).
    pub writes: usize,
    /// Appends the write carries.
    pub appends: usize,
    /// Bytes the write carries, padding included.
    pub bytes: usize,
}

/// The writer's memory of how appends have been coming.
#[derive(Clone, Copy, Debug)]
pub struct AlonePolicy {
    /// The log serves one append at a time: when the last write ended,
    /// nothing else was in flight or waiting since the writes before.
    quiet: bool,
    /// The most writes in flight at once since the log was last quiet.
    busy_peak: usize,
    /// Appends resolved together the last time any were.
    last_resolved: usize,
}

impl Default for AlonePolicy {
    fn default() -> Self {
        AlonePolicy {
            quiet: true,
            busy_peak: 0,
            last_resolved: 0,
        }
    }
}

impl AlonePolicy {
    /// Whether `write` goes alone.
    pub fn alone(&self, write: Candidate) -> bool {
        let nothing_else = write.in_flight == 0 && write.held == 0 && write.writes == 1;
        let single_on_a_quiet_log = self.quiet && write.appends == 1;
        let whole_small_group =
            write.bytes <= ALONE_WRITE_BYTES_MAX && write.appends >= self.last_resolved;
        nothing_else && (single_on_a_quiet_log || whole_small_group)
    }

    /// A write through the ring went in flight; `in_flight` now.
    pub fn started(&mut self, in_flight: usize) {
        self.busy_peak = self.busy_peak.max(in_flight);
    }

    /// A write alone is done; `waiting`: requests queued meanwhile.
    pub fn written_alone(&mut self, waiting: bool) {
        self.quiet = !waiting;
    }

    /// The last write through the ring is done; `waiting`: requests held or
    /// queued.
    pub fn drained(&mut self, waiting: bool) {
        self.quiet = self.busy_peak <= 1 && !waiting;
        self.busy_peak = 0;
    }

    /// `count` appends (more than none) resolved together.
    pub fn resolved(&mut self, count: usize) {
        debug_assert!(count > 0, "a resolution of no appends");
        self.last_resolved = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(appends: usize, bytes: usize) -> Candidate {
        Candidate {
            in_flight: 0,
            held: 0,
            writes: 1,
            appends,
            bytes,
        }
    }

    const LARGE: usize = ALONE_WRITE_BYTES_MAX + 1;

    #[test]
    fn nothing_goes_alone_beside_other_writes_or_waiting_requests() {
        let policy = AlonePolicy::default();
        assert!(policy.alone(write(1, 4096)));
        for other in [
            Candidate {
                in_flight: 1,
                ..write(1, 4096)
            },
            Candidate {
                held: 1,
                ..write(1, 4096)
            },
            Candidate {
                writes: 2,
                ..write(1, 4096)
            },
        ] {
            assert!(!policy.alone(other), "{other:?}");
        }
    }

    #[test]
    fn a_large_single_append_goes_alone_only_on_a_quiet_log() {
        let mut policy = AlonePolicy::default();
        assert!(policy.alone(write(1, LARGE)));
        // Two writes in flight at once: the log is busy until it drains
        // after writes that went one at a time.
        policy.started(1);
        policy.started(2);
        policy.drained(false);
        assert!(!policy.alone(write(1, LARGE)));
        policy.started(1);
        policy.drained(false);
        assert!(policy.alone(write(1, LARGE)));
        // Drained with requests waiting: not quiet.
        policy.started(1);
        policy.drained(true);
        assert!(!policy.alone(write(1, LARGE)));
        // A write alone with nothing queued meanwhile makes it quiet.
        policy.written_alone(false);
        assert!(policy.alone(write(1, LARGE)));
        policy.written_alone(true);
        assert!(!policy.alone(write(1, LARGE)));
    }

    #[test]
    fn a_small_write_goes_alone_when_it_carries_its_whole_group() {
        let mut policy = AlonePolicy::default();
        policy.started(2);
        policy.drained(true);
        policy.resolved(16);
        assert!(
            !policy.alone(write(15, 15 * 4096)),
            "one is still on its way"
        );
        assert!(policy.alone(write(16, 16 * 4096)));
        assert!(!policy.alone(write(16, LARGE)), "too large to block for");
        policy.resolved(1);
        assert!(policy.alone(write(1, 4096)), "on a busy log too");
        assert!(!policy.alone(write(1, LARGE)), "but a large one waits");
    }
}
