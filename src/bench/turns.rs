//! The floor and a case taking turns on the disk, in slices, so that both
//! are measured over the same minutes. The disk here drifts by ±20% from one
//! minute to the next, more than most differences worth measuring; measured
//! one after the other, a case and its floor each catch a different part of
//! the drift.
//!
//! Each side's workers call `begin` before an operation (it blocks while the
//! other side has the disk) and `end` after it. The conductor (`conduct`)
//! gives each side a slice in turn, and after each slice waits until the
//! side's operations in progress are done, so that no two sides' operations
//! overlap; a side's time runs from the start of its slice to the end of
//! its last operation.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which side of a pair an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The raw floor, one writer.
    Floor = 0,
    /// What is measured against it.
    Case = 1,
}

/// `turn` values besides the two sides'.
const PAUSED: u8 = 2;
const OVER: u8 = 3;

/// How often the conductor looks whether a side's last operations are done:
/// a durable write takes 100 µs or more here, so finer would only spin.
const DRAIN_POLL: Duration = Duration::from_micros(20);

#[derive(Debug)]
pub struct Turns {
    /// `Side as u8`, `PAUSED` or `OVER`; changed only under `lock`.
    turn: AtomicU8,
    /// Operations begun and not yet ended, of whichever side.
    busy: AtomicUsize,
    /// Per side: set up and waiting for its first turn.
    lock: Mutex<[bool; 2]>,
    changed: Condvar,
    /// Per side: the time it has had the disk, in nanoseconds.
    time: [AtomicU64; 2],
    /// Operations ended so far, of either side.
    ended: AtomicU64,
    /// Every turn given so far.
    given: Mutex<Vec<Turn>>,
}

/// One turn given: to whom, for how long, and the operations it ended.
#[derive(Clone, Copy, Debug)]
pub struct Turn {
    pub side: Side,
    pub time: Duration,
    pub operations: u64,
}

impl Default for Turns {
    fn default() -> Self {
        Turns {
            turn: AtomicU8::new(PAUSED),
            busy: AtomicUsize::new(0),
            lock: Mutex::new([false; 2]),
            changed: Condvar::new(),
            time: [AtomicU64::new(0), AtomicU64::new(0)],
            ended: AtomicU64::new(0),
            given: Mutex::new(Vec::new()),
        }
    }
}

impl Turns {
    fn locked(&self) -> MutexGuard<'_, [bool; 2]> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, turn: u8) {
        let _held = self.locked();
        self.turn.store(turn, SeqCst);
        self.changed.notify_all();
    }

    /// `side` is set up: the conductor starts once both are.
    pub fn ready(&self, side: Side) {
        let mut ready = self.locked();
        ready[side as usize] = true;
        self.changed.notify_all();
    }

    /// Ends the run early (a side failed): every `begin` returns false, and
    /// the conductor stops.
    pub fn abort(&self) {
        self.set(OVER);
    }

    /// Waits for `side`'s turn: true when it has the disk (the caller then
    /// makes one operation and calls `end`), false once the run is over.
    pub fn begin(&self, side: Side) -> bool {
        loop {
            // Counted before the turn is read, and the conductor reads the
            // count after it changed the turn (both sequentially
            // consistent): either this sees the new turn, or the conductor
            // sees this operation and waits for it.
            self.busy.fetch_add(1, SeqCst);
            let turn = self.turn.load(SeqCst);
            if turn == side as u8 {
                return true;
            }
            self.busy.fetch_sub(1, SeqCst);
            if turn == OVER {
                return false;
            }
            let mut held = self.locked();
            while !matches!(self.turn.load(SeqCst), t if t == side as u8 || t == OVER) {
                held = self.changed.wait(held).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// One operation begun with `begin` is done. Never blocks: a WAL's
    /// callbacks call it on the writer thread.
    pub fn end(&self) {
        self.ended.fetch_add(1, SeqCst);
        let before = self.busy.fetch_sub(1, SeqCst);
        debug_assert!(before > 0, "an end without its begin");
    }

    /// Every turn given so far, in order.
    pub fn given(&self) -> Vec<Turn> {
        self.given.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The time `side` has had the disk so far.
    pub fn time(&self, side: Side) -> Duration {
        Duration::from_nanos(self.time[side as usize].load(SeqCst))
    }

    /// Once both sides are ready, gives them `pairs` pairs of turns of
    /// `slice` each, the floor first in even pairs and the case first in
    /// odd ones (a drift within a pair then falls on both alike), then ends
    /// the run. Returns early if the run was aborted.
    pub fn conduct(&self, pairs: usize, slice: Duration) {
        {
            let mut ready = self.locked();
            while !(ready[0] && ready[1]) {
                if self.turn.load(SeqCst) == OVER {
                    return;
                }
                ready = self.changed.wait(ready).unwrap_or_else(|e| e.into_inner());
            }
        }
        for pair in 0..pairs {
            let order = if pair % 2 == 0 {
                [Side::Floor, Side::Case]
            } else {
                [Side::Case, Side::Floor]
            };
            for side in order {
                if self.turn.load(SeqCst) == OVER {
                    return;
                }
                self.give(side, slice);
            }
        }
        self.set(OVER);
    }

    /// One turn of `side`: its slice, then until its operations are done.
    fn give(&self, side: Side, slice: Duration) {
        let started = Instant::now();
        let ended_before = self.ended.load(SeqCst);
        self.set(side as u8);
        std::thread::sleep(slice);
        {
            let _held = self.locked();
            // Not over a concurrent `abort`.
            let _ = self
                .turn
                .compare_exchange(side as u8, PAUSED, SeqCst, SeqCst);
        }
        // An aborted side may never end what it began.
        while self.busy.load(SeqCst) > 0 && self.turn.load(SeqCst) != OVER {
            std::thread::sleep(DRAIN_POLL);
        }
        let took = started.elapsed();
        self.time[side as usize].fetch_add(took.as_nanos() as u64, SeqCst);
        let turn = Turn {
            side,
            time: took,
            operations: self.ended.load(SeqCst) - ended_before,
        };
        self.given
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(turn);
    }
}

/// Whether a worker makes another operation: with turns, once it is its
/// side's turn (false when the run is over); without, until `end`.
pub fn another(turns: Option<(&Turns, Side)>, end: Instant) -> bool {
    match turns {
        Some((turns, side)) => turns.begin(side),
        None => Instant::now() < end,
    }
}

/// Ends an operation begun with `Turns::begin` when dropped, however the
/// operation went.
pub struct EndOnDrop<'a>(pub &'a Turns);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Workers of both sides, each counting its operations and checking
    /// that no operation of the other side is in progress meanwhile.
    #[test]
    fn the_sides_never_overlap_and_each_gets_its_time() {
        let turns = Arc::new(Turns::default());
        let in_progress = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let workers: Vec<_> = [Side::Floor, Side::Case, Side::Case, Side::Case]
            .into_iter()
            .map(|side| {
                let (turns, in_progress) = (turns.clone(), in_progress.clone());
                std::thread::spawn(move || {
                    let (mine, other) = (side as usize, 1 - side as usize);
                    turns.ready(side);
                    let mut ops = 0u64;
                    while turns.begin(side) {
                        in_progress[mine].fetch_add(1, SeqCst);
                        assert_eq!(in_progress[other].load(SeqCst), 0, "sides overlap");
                        std::thread::sleep(Duration::from_micros(300));
                        assert_eq!(in_progress[other].load(SeqCst), 0, "sides overlap");
                        in_progress[mine].fetch_sub(1, SeqCst);
                        turns.end();
                        ops += 1;
                    }
                    ops
                })
            })
            .collect();
        let slice = Duration::from_millis(10);
        turns.conduct(4, slice);
        let ops: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert!(
            ops.iter().all(|&n| n > 0),
            "every worker had turns: {ops:?}"
        );
        let given = turns.given();
        assert_eq!(given.len(), 8);
        let of = |side| -> u64 {
            given
                .iter()
                .filter(|t| t.side == side)
                .map(|t| t.operations)
                .sum()
        };
        assert_eq!(of(Side::Floor), ops[0], "each operation in its side's turn");
        assert_eq!(of(Side::Case), ops[1..].iter().sum::<u64>());
        for side in [Side::Floor, Side::Case] {
            let time = turns.time(side);
            assert!(time >= slice * 4, "{side:?} had {time:?}");
            assert!(
                time < slice * 4 + Duration::from_millis(200),
                "{side:?}: {time:?}"
            );
        }
    }

    #[test]
    fn an_abort_before_both_sides_are_ready_ends_the_run() {
        let turns = Arc::new(Turns::default());
        let conductor = {
            let turns = turns.clone();
            std::thread::spawn(move || turns.conduct(3, Duration::from_millis(5)))
        };
        turns.ready(Side::Floor);
        turns.abort();
        conductor.join().unwrap();
        assert!(!turns.begin(Side::Floor));
        assert!(!turns.begin(Side::Case));
        assert_eq!(turns.time(Side::Floor), Duration::ZERO);
    }
}
