//! Dependency sets at proposal time (DESIGN.md §3.4): a key → last-LSN index.
//!
//! A write depends on the last write of each of its keys and on every
//! read-only command on those keys since; a read depends on the last write
//! of its keys. Everything below the *barrier* (the last config change, the
//! purge point) is folded into the TailBitmap offset, so deps stay a few words.

use crate::bitmap::TailBitmap;
use crate::ids::Lsn;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// What a command touches: its conflict keys (hashes; a collision only adds a
/// dependency) and whether it only reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandClass {
    pub keys: Vec<u64>,
    pub read_only: bool,
    /// Interferes with everything (a config change): depends on every
    /// earlier LSN, and every later record depends on it.
    pub barrier: bool,
}

/// The state machine's word on what a command touches. Pure: the same bytes
/// always give the same class, on every replica.
pub trait Conflicts {
    fn classify(&self, cmd: &[u8]) -> CommandClass;
}

#[derive(Default, Debug, Clone)]
struct KeyState {
    last_write: Option<Lsn>,
    reads_since_write: Vec<Lsn>,
}

/// The leader's index for computing `deps`.
#[derive(Debug, Clone)]
pub struct DepsIndex {
    strict: bool,
    /// The H9b mutant: writes skip the reads since the last write.
    ignore_reads: bool,
    /// The H9a mutant: barriers are ordinary records.
    ignore_barriers: bool,
    barrier: Lsn,
    keys: HashMap<u64, KeyState, BuildHasherDefault<KeyHasher>>,
}

/// Conflict keys are hashes already (`Conflicts::classify`): the map uses
/// them as they are instead of hashing them again with SipHash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in, to stay correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_u64(&mut self, key: u64) {
        // Spread the bits: a state machine may hand out small, sequential
        // or aligned keys.
        let mut x = key ^ (key >> 33);
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        self.0 = x ^ (x >> 33);
    }
}

impl DepsIndex {
    /// `strict`: every record depends on every earlier LSN (in-order Raft).
    pub fn new(strict: bool) -> Self {
        DepsIndex {
            strict,
            ignore_reads: false,
            ignore_barriers: false,
            barrier: 0,
            keys: HashMap::default(),
        }
    }

    /// Applies the mutants that concern deps (tests only).
    pub fn mutate(&mut self, mutations: &crate::core::Mutations) {
        self.ignore_reads = mutations.deps_ignore_reads;
        self.ignore_barriers = mutations.no_barrier;
    }

    /// Raises the barrier: every later record depends on all of `[0, barrier)`.
    pub fn raise_barrier(&mut self, barrier: Lsn) {
        if barrier > self.barrier {
            self.barrier = barrier;
            // Entries below the barrier are implied by the offset now.
            self.keys.retain(|_, state| {
                state.reads_since_write.retain(|&l| l >= barrier);
                if state.last_write.is_some_and(|l| l < barrier) {
                    state.last_write = None;
                }
                state.last_write.is_some() || !state.reads_since_write.is_empty()
            });
        }
    }

    /// What a read of `class` must see applied, served when the next LSN
    /// is `next_lsn`: the last write of each of its keys (everything, in
    /// strict mode). Unlike `assign`, it records nothing: a read is not in
    /// the log.
    pub fn read_deps(&self, next_lsn: Lsn, class: &CommandClass) -> TailBitmap {
        if self.strict || class.barrier {
            return TailBitmap::prefix(next_lsn);
        }
        let mut deps = TailBitmap::prefix(self.barrier.min(next_lsn));
        for key in &class.keys {
            if let Some(w) = self.keys.get(key).and_then(|s| s.last_write) {
                deps.insert(w).expect("deps are valid LSNs");
            }
        }
        deps
    }

    /// The deps of a record at `lsn` of class `class`, and records it in the
    /// index. LSNs must be given in increasing order.
    pub fn assign(&mut self, lsn: Lsn, class: &CommandClass) -> TailBitmap {
        let barrier = class.barrier && !self.ignore_barriers;
        if self.strict || barrier {
            let deps = TailBitmap::prefix(lsn);
            if barrier {
                self.raise_barrier(lsn + 1);
            }
            return deps;
        }
        let mut deps = TailBitmap::prefix(self.barrier.min(lsn));
        for key in &class.keys {
            let state = self.keys.entry(*key).or_default();
            if let Some(w) = state.last_write {
                debug_assert!(w < lsn);
                deps.insert(w).expect("deps are valid LSNs");
            }
            if class.read_only {
                state.reads_since_write.push(lsn);
            } else {
                if !self.ignore_reads {
                    for &r in &state.reads_since_write {
                        deps.insert(r).expect("deps are valid LSNs");
                    }
                }
                state.reads_since_write.clear();
                state.last_write = Some(lsn);
            }
        }
        debug_assert!(deps.max().is_none_or(|d| d < lsn));
        deps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(keys: &[u64]) -> CommandClass {
        CommandClass {
            keys: keys.to_vec(),
            ..Default::default()
        }
    }

    fn read(keys: &[u64]) -> CommandClass {
        CommandClass {
            keys: keys.to_vec(),
            read_only: true,
            barrier: false,
        }
    }

    fn set(lsns: &[u64]) -> TailBitmap {
        lsns.iter().copied().collect()
    }

    #[test]
    fn writes_follow_writes_and_reads_of_their_keys() {
        let mut index = DepsIndex::new(false);
        assert_eq!(index.assign(0, &write(&[1])), set(&[]));
        assert_eq!(index.assign(1, &write(&[2])), set(&[]));
        assert_eq!(index.assign(2, &read(&[1])), set(&[0]));
        assert_eq!(index.assign(3, &read(&[1])), set(&[0]));
        // H9b: a write after reads depends on them too.
        assert_eq!(index.assign(4, &write(&[1])), set(&[0, 2, 3]));
        assert_eq!(index.assign(5, &write(&[1, 2])), set(&[1, 4]));
    }

    #[test]
    fn barrier_folds_into_the_offset() {
        let mut index = DepsIndex::new(false);
        index.assign(0, &write(&[1]));
        let barrier = CommandClass {
            barrier: true,
            ..Default::default()
        };
        assert_eq!(index.assign(5, &barrier), TailBitmap::prefix(5));
        // H9a: after a config change at 5, deps cover everything up to it.
        assert_eq!(index.assign(7, &write(&[1])), TailBitmap::prefix(6));
    }

    #[test]
    fn strict_depends_on_everything() {
        let mut index = DepsIndex::new(true);
        assert_eq!(index.assign(9, &write(&[1])), TailBitmap::prefix(9));
    }
}
