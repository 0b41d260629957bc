//! A linearizability checker for key-value histories (Wing & Gong's search,
//! with Lowe's memoization), partitioned per key: single-key operations on
//! different keys commute, so each key's sub-history is checked on its own.
//!
//! An operation has an invocation time and, if its client saw an answer, a
//! completion time and a result. An operation whose outcome is unknown (a
//! timeout, a dropped connection) has no completion: it may have taken
//! effect at any moment after its invocation, or never.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What a client asked for, and what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// `SET key value`.
    Set { value: Vec<u8> },
    /// `GET key`; `result` is what was returned (None: the key was absent).
    Get { result: Option<Vec<u8>> },
    /// `INCR key`; `result` is the new value (meaningful only if completed).
    Incr { result: i64 },
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub key: Vec<u8>,
    pub op: KvOp,
    /// When the client sent it.
    pub invoked: u64,
    /// When the client got its answer; `None` if it never learned the outcome.
    pub completed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinearizabilityError {
    #[error("not linearizable: key {key:?} ({ops} operations); an operation that cannot be placed: {witness}")]
    Violation {
        key: String,
        ops: usize,
        witness: String,
    },
    #[error("key {key:?}: gave up after {explored} states ({ops} operations); the history is too concurrent to decide")]
    TooLarge {
        key: String,
        ops: usize,
        explored: usize,
    },
    #[error("operation {0}: completed before it was invoked")]
    BadTimes(usize),
}

/// States explored per key before giving up: this many, or
/// `EXPLORE_PER_OP` per operation of the key if that is more.
pub const EXPLORE_MAX: usize = 5_000_000;
pub const EXPLORE_PER_OP: usize = 20;

/// Checks a whole history; `Ok` with the number of operations checked.
pub fn check(history: &[Operation]) -> Result<usize, LinearizabilityError> {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if op.completed.is_some_and(|c| c < op.invoked) {
            return Err(LinearizabilityError::BadTimes(i));
        }
        // A read whose answer never came constrains nothing.
        if op.completed.is_none() && matches!(op.op, KvOp::Get { .. }) {
            continue;
        }
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut checked = 0;
    for (key, mut ops) in by_key {
        checked += ops.len();
        drop_unseen_writes(&mut ops);
        check_key(key, ops)?;
    }
    Ok(checked)
}

/// Removes the `SET`s of unknown outcome whose value no completed read
/// returned, on a key never incremented: whether one took effect cannot
/// show in any result, so a linearization that places it is one without
/// it. (Every `SET` that might have happened stays available to the search
/// otherwise, at every step, and each makes the state something else.)
fn drop_unseen_writes(ops: &mut Vec<&Operation>) {
    if ops.iter().any(|o| matches!(o.op, KvOp::Incr { .. })) {
        return;
    }
    let read: HashSet<&Option<Vec<u8>>> = ops
        .iter()
        .filter(|o| o.completed.is_some())
        .filter_map(|o| match &o.op {
            KvOp::Get { result } => Some(result),
            _ => None,
        })
        .collect();
    ops.retain(|o| match &o.op {
        KvOp::Set { value } if o.completed.is_none() => read.contains(&Some(value.clone())),
        _ => true,
    });
}

/// The register's value as the model sees it.
type State = Option<Vec<u8>>;

/// A counter's value: absent is 0; `None` if it is not a number.
fn counter_value(state: &State) -> Option<i64> {
    match state {
        None => Some(0),
        Some(v) => std::str::from_utf8(v).ok()?.parse().ok(),
    }
}

/// The counter value completed operation `op` must see when it takes
/// effect, if it says: an INCR's result − 1, a GET's result.
fn need_of(op: &Operation) -> Option<i64> {
    match &op.op {
        KvOp::Incr { result } => result.checked_sub(1),
        KvOp::Get { result } => counter_value(&result.clone()),
        KvOp::Set { .. } => None,
    }
}

/// The model: applies `op` to `state` if the result it reported is what a
/// sequential register would have answered; the state after it.
fn step(state: &State, op: &Operation) -> Option<State> {
    let completed = op.completed.is_some();
    match &op.op {
        KvOp::Set { value } => Some(Some(value.clone())),
        KvOp::Get { result } => (result == state).then(|| state.clone()),
        KvOp::Incr { result } => {
            let current = match state {
                None => 0,
                Some(v) => std::str::from_utf8(v).ok()?.parse::<i64>().ok()?,
            };
            let next = current.checked_add(1)?;
            if completed && next != *result {
                return None;
            }
            Some(Some(next.to_string().into_bytes()))
        }
    }
}

fn check_key(key: &[u8], mut ops: Vec<&Operation>) -> Result<(), LinearizabilityError> {
    ops.sort_by_key(|o| o.invoked);
    let n = ops.len();
    let required = ops.iter().filter(|o| o.completed.is_some()).count();
    let mut mix = 0x243f_6a88_85a3_08d3u64;
    let keys = (0..n)
        .map(|_| {
            // SplitMix64: a random 64-bit name per operation.
            mix = mix.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = mix;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect();
    let mut classes: Vec<Class> = Vec::new();
    let mut class_by_op: Vec<(&KvOp, usize)> = Vec::new();
    let class_of = ops
        .iter()
        .enumerate()
        .map(|(i, o)| {
            if o.completed.is_some() {
                return None;
            }
            let c = match class_by_op.iter().find(|(op, _)| **op == o.op) {
                Some(&(_, c)) => c,
                None => {
                    classes.push(Class {
                        members: Vec::new(),
                        placed: 0,
                    });
                    class_by_op.push((&o.op, classes.len() - 1));
                    classes.len() - 1
                }
            };
            classes[c].members.push(i);
            Some(c)
        })
        .collect();
    let counter_only = ops.iter().all(|o| !matches!(o.op, KvOp::Set { .. }));
    let needs = counter_only.then(|| {
        ops.iter()
            .enumerate()
            .filter(|(_, o)| o.completed.is_some())
            .filter_map(|(i, o)| need_of(o).map(|v| (v, i)))
            .collect()
    });
    let mut search = Search {
        ops: &ops,
        needs,
        class_of,
        classes,
        keys,
        placed_hash: 0,
        unplaced: (0..n).collect(),
        completions: ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.completed.map(|c| (c, i)))
            .collect(),
        seen: HashSet::new(),
        explored: 0,
        deepest: 0,
        stuck_at: None,
    };
    match search.run(required) {
        Some(true) => Ok(()),
        Some(false) => {
            let witness = search
                .stuck_at
                .map(|i| format!("{:?}", ops[i]))
                .unwrap_or_default();
            Err(LinearizabilityError::Violation {
                key: String::from_utf8_lossy(key).into_owned(),
                ops: n,
                witness,
            })
        }
        None => Err(LinearizabilityError::TooLarge {
            key: String::from_utf8_lossy(key).into_owned(),
            ops: n,
            explored: search.explored,
        }),
    }
}

struct Search<'a> {
    ops: &'a [&'a Operation],
    /// A random name per operation; `placed_hash` is the XOR of the names
    /// of the operations placed so far (Zobrist hashing), so a set of
    /// placed operations is remembered in 8 bytes. Two different sets
    /// collide with probability about 2⁻⁶⁴ per pair.
    keys: Vec<u64>,
    placed_hash: u64,
    /// Operations not placed yet, by index (ascending invocation).
    unplaced: BTreeSet<usize>,
    /// Completion times of the completed operations not placed yet.
    completions: BTreeSet<(u64, usize)>,
    /// (placed set, state) pairs already explored.
    seen: HashSet<(u64, State)>,
    /// On a key only ever incremented (no `SET`), the counter never goes
    /// down: the value each completed operation not yet placed needs to
    /// see (an INCR's result − 1, a GET's result). Once the counter passes
    /// the smallest of them, that operation can never be placed.
    needs: Option<BTreeSet<(i64, usize)>>,
    /// The class of each unknown-outcome operation (`next_of_its_class`).
    class_of: Vec<Option<usize>>,
    classes: Vec<Class>,
    explored: usize,
    /// For the error: how many completed operations the best attempt placed,
    /// and the first it could not place then.
    deepest: usize,
    stuck_at: Option<usize>,
}

/// Interchangeable unknown-outcome operations.
struct Class {
    /// By invocation.
    members: Vec<usize>,
    /// How many of the first members are placed.
    placed: usize,
}

/// One level of the depth-first search: a state reached by placing
/// `placed` (none at the root), and where to look for the next candidate.
struct Frame {
    state: State,
    done: usize,
    placed: Option<usize>,
    next: usize,
    horizon: u64,
}

/// Marks a level already explored.
const DEAD: u64 = u64::MAX;

impl Search<'_> {
    /// `Some(true)` if every completed operation can be linearized from the
    /// empty register; `None` if the budget ran out. Iterative: a history of
    /// thousands of operations is thousands of levels deep.
    fn run(&mut self, required: usize) -> Option<bool> {
        let mut stack = vec![self.enter(None, 0, None)?];
        loop {
            let Some(top) = stack.last_mut() else {
                return Some(false);
            };
            if top.done == required {
                return Some(true);
            }
            let mut child = None;
            while let Some(&i) = self.unplaced.range(top.next..).next() {
                top.next = i + 1;
                let op = self.ops[i];
                if op.invoked > top.horizon {
                    top.next = self.ops.len();
                    break;
                }
                if !self.next_of_its_class(i) {
                    continue;
                }
                match step(&top.state, op) {
                    Some(next) => {
                        let done = top.done + op.completed.is_some() as usize;
                        child = Some((next, done, i));
                        break;
                    }
                    None => {
                        if top.done >= self.deepest && op.completed.is_some() {
                            self.deepest = top.done;
                            self.stuck_at = Some(i);
                        }
                    }
                }
            }
            match child {
                Some((state, done, i)) => {
                    self.place(i);
                    match self.enter(state, done, Some(i)) {
                        Some(frame) if frame.horizon != DEAD => stack.push(frame),
                        Some(_) => self.unplace(i),
                        None => return None,
                    }
                }
                None => {
                    let frame = stack.pop().expect("a frame");
                    if let Some(i) = frame.placed {
                        self.unplace(i);
                    }
                }
            }
        }
    }

    /// Unknown-outcome operations asking the same thing (`INCR`, or `SET`
    /// of one value) are interchangeable: none has a completion to respect
    /// or a result to match, so any linearization that places some of them
    /// may place the earliest-invoked ones instead, at the same points. So
    /// they are placed in invocation order only, and the placed ones of a
    /// class are always its first k: the memo then sees k, not which k of
    /// m (C(m, k) sets, each explored apart).
    fn next_of_its_class(&self, i: usize) -> bool {
        match self.class_of[i] {
            None => true,
            Some(c) => self.classes[c].members[self.classes[c].placed] == i,
        }
    }

    fn place(&mut self, i: usize) {
        if let Some(c) = self.class_of[i] {
            self.classes[c].placed += 1;
        }
        if let (Some(needs), Some(v)) = (&mut self.needs, need_of(self.ops[i])) {
            if self.ops[i].completed.is_some() {
                needs.remove(&(v, i));
            }
        }
        self.unplaced.remove(&i);
        if let Some(c) = self.ops[i].completed {
            self.completions.remove(&(c, i));
        }
        self.placed_hash ^= self.keys[i];
    }

    fn unplace(&mut self, i: usize) {
        if let Some(c) = self.class_of[i] {
            self.classes[c].placed -= 1;
        }
        if let (Some(needs), Some(v)) = (&mut self.needs, need_of(self.ops[i])) {
            if self.ops[i].completed.is_some() {
                needs.insert((v, i));
            }
        }
        self.unplaced.insert(i);
        if let Some(c) = self.ops[i].completed {
            self.completions.insert((c, i));
        }
        self.placed_hash ^= self.keys[i];
    }

    /// A new level, or one marked `DEAD` if this (placed set, state) was
    /// explored before; `None` once the budget is spent.
    fn enter(&mut self, state: State, done: usize, placed: Option<usize>) -> Option<Frame> {
        self.explored += 1;
        if self.explored > EXPLORE_MAX.max(EXPLORE_PER_OP * self.ops.len()) {
            return None;
        }
        let passed = self.needs.as_ref().is_some_and(|needs| {
            needs
                .first()
                .is_some_and(|&(need, _)| counter_value(&state).is_none_or(|v| v > need))
        });
        let fresh = !passed && self.seen.insert((self.placed_hash, state.clone()));
        // Whatever goes next was invoked before the earliest completion of
        // an operation still to place: that one precedes everything invoked
        // after its completion.
        let horizon = if fresh {
            self.completions.first().map_or(u64::MAX - 1, |&(c, _)| c)
        } else {
            DEAD
        };
        Some(Frame {
            state,
            done,
            placed,
            next: 0,
            horizon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, op: KvOp, invoked: u64, completed: Option<u64>) -> Operation {
        Operation {
            client,
            key: b"k".to_vec(),
            op,
            invoked,
            completed,
        }
    }

    fn set(v: &str) -> KvOp {
        KvOp::Set {
            value: v.as_bytes().to_vec(),
        }
    }

    fn get(v: Option<&str>) -> KvOp {
        KvOp::Get {
            result: v.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn concurrent_writes_and_reads_that_some_order_explains() {
        let h = [
            op(1, set("a"), 0, Some(10)),
            op(2, set("b"), 5, Some(15)),
            // Overlaps both writes: may see either.
            op(3, get(Some("a")), 6, Some(20)),
            op(3, get(Some("b")), 21, Some(25)),
        ];
        // a, then the first read, then b, then the second read.
        assert_eq!(check(&h), Ok(4));
        let counters = [
            op(1, KvOp::Incr { result: 1 }, 0, Some(5)),
            op(2, KvOp::Incr { result: 2 }, 1, Some(6)),
            op(3, get(Some("2")), 7, Some(8)),
        ];
        assert_eq!(check(&counters), Ok(3));
        // Two increments cannot both have returned 1.
        let twice = [
            op(1, KvOp::Incr { result: 1 }, 0, Some(5)),
            op(2, KvOp::Incr { result: 1 }, 1, Some(6)),
        ];
        assert!(check(&twice).is_err());
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = [
            op(1, set("old"), 0, Some(1)),
            op(1, set("new"), 2, Some(3)),
            op(2, get(Some("old")), 4, Some(5)),
        ];
        assert!(matches!(
            check(&h),
            Err(LinearizabilityError::Violation { .. })
        ));
    }

    #[test]
    fn a_lost_write_is_caught() {
        // The write was acknowledged, yet a later read sees the key absent.
        let h = [op(1, set("x"), 0, Some(1)), op(2, get(None), 5, Some(6))];
        assert!(check(&h).is_err());
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught() {
        let h = [
            op(1, set("x"), 0, Some(1)),
            op(2, get(Some("y")), 2, Some(3)),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn a_write_completed_before_a_read_must_be_in_it() {
        let h = [
            op(1, set("a"), 0, Some(1)),
            op(1, set("b"), 2, Some(3)),
            // Invoked after "b" completed, concurrent with nothing.
            op(2, get(Some("a")), 10, Some(11)),
        ];
        assert!(check(&h).is_err());
        // Had the read been concurrent with "b", "a" would be fine.
        let h2 = [
            op(1, set("a"), 0, Some(1)),
            op(1, set("b"), 2, Some(12)),
            op(2, get(Some("a")), 10, Some(11)),
        ];
        assert_eq!(check(&h2), Ok(3));
    }

    #[test]
    fn an_unknown_outcome_may_or_may_not_have_happened() {
        let took = [op(1, set("x"), 0, None), op(2, get(Some("x")), 5, Some(6))];
        assert_eq!(check(&took), Ok(2));
        let never = [op(1, set("x"), 0, None), op(2, get(None), 5, Some(6))];
        assert_eq!(check(&never), Ok(2));
        // But not before it was invoked.
        let early = [op(2, get(Some("x")), 0, Some(1)), op(1, set("x"), 5, None)];
        assert!(check(&early).is_err());
    }

    #[test]
    fn a_long_history_with_overlaps_is_decided() {
        // 4,000 operations on one key by 4 clients, each overlapping the
        // next client's: SETs of increasing values, each read returning the
        // value written just before it.
        let mut h = Vec::new();
        for i in 0..2_000u64 {
            let t = i * 10;
            h.push(op(i % 4, set(&i.to_string()), t, Some(t + 6)));
            h.push(op(
                i % 4 + 4,
                get(Some(&i.to_string())),
                t + 7,
                Some(t + 12),
            ));
        }
        assert_eq!(check(&h), Ok(4_000));
        // The same with one read seeing a value two writes old.
        h[2_001] = op(1, get(Some("998")), 10_007, Some(10_012));
        assert!(check(&h).is_err());
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut h = vec![op(1, set("a"), 0, Some(1))];
        h.push(Operation {
            key: b"other".to_vec(),
            ..op(2, get(None), 2, Some(3))
        });
        assert_eq!(check(&h), Ok(2));
    }

    /// Four clients INCR one counter; one INCR in ten times out (taking
    /// effect or not). Interchangeable unknown INCRs are placed in one way
    /// only and a counter never goes back, so 40,000 operations with 4,000
    /// unknown outcomes are decided well within the budget; a late INCR
    /// that answers a value long passed is refused.
    #[test]
    fn many_unknown_incrs_are_decided() {
        let mut rng = crate::core::Rng::new(9);
        let mut history = Vec::new();
        let mut counter = 0i64;
        let mut t = 0u64;
        for n in 0..40_000u64 {
            t += 1 + rng.next_u64() % 3;
            let invoked = t.saturating_sub(rng.next_u64() % 8);
            let unknown = n % 10 == 3;
            // An unknown outcome took effect or not; a known one did.
            if !unknown || rng.next_u64() % 2 == 0 {
                counter += 1;
            }
            let done = if unknown {
                None
            } else {
                Some(t + rng.next_u64() % 8)
            };
            history.push(op(
                n % 4,
                KvOp::Incr {
                    result: if unknown { 0 } else { counter },
                },
                invoked,
                done,
            ));
        }
        assert_eq!(check(&history), Ok(40_000));
        // The last completed INCR answers 1.
        let last = history
            .iter_mut()
            .rev()
            .find(|o| o.completed.is_some())
            .unwrap();
        last.op = KvOp::Incr { result: 1 };
        assert!(matches!(
            check(&history),
            Err(LinearizabilityError::Violation { .. })
        ));
    }

    /// A register under four clients with one SET in ten of unknown
    /// outcome: 40,000 operations are decided (unknown SETs nobody read
    /// are dropped, the others searched), and a stale read at the end is
    /// refused.
    #[test]
    fn many_unknown_sets_are_decided() {
        let mut rng = crate::core::Rng::new(11);
        let mut history = Vec::new();
        let mut current: Option<String> = None;
        let mut t = 0u64;
        for n in 0..40_000u64 {
            t += 1 + rng.next_u64() % 3;
            let invoked = t.saturating_sub(rng.next_u64() % 8);
            let done = t + rng.next_u64() % 8;
            if n % 2 == 0 {
                let value = format!("v{n}");
                let unknown = n % 20 == 4;
                if !unknown || rng.next_u64() % 2 == 0 {
                    current = Some(value.clone());
                }
                history.push(op(n % 4, set(&value), invoked, (!unknown).then_some(done)));
            } else {
                history.push(op(n % 4, get(current.as_deref()), invoked, Some(done)));
            }
        }
        assert_eq!(check(&history).map(|n| n > 38_000), Ok(true));
        let t = t + 100;
        history.push(op(9, get(Some("v0")), t, Some(t + 1)));
        assert!(matches!(
            check(&history),
            Err(LinearizabilityError::Violation { .. })
        ));
    }
}
