//! A linearizability checker for key-value histories (Wing & Gong's search,
//! with Lowe's memoization), partitioned per key: single-key operations on
//! different keys commute, so each key's sub-history is checked on its own.
//!
//! An operation has an invocation time and, if its client saw an answer, a
//! completion time and a result. An operation whose outcome is unknown (a
//! timeout, a dropped connection) has no completion: it may have taken
//! effect at any moment after its invocation, or never.

use std::collections::{BTreeMap, HashSet};

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

/// States explored per key before giving up.
pub const EXPLORE_MAX: usize = 5_000_000;

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
    for (key, ops) in by_key {
        checked += ops.len();
        check_key(key, ops)?;
    }
    Ok(checked)
}

/// The register's value as the model sees it.
type State = Option<Vec<u8>>;

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
    let mut search = Search {
        ops: &ops,
        linearized: vec![false; n],
        seen: HashSet::new(),
        explored: 0,
        deepest: 0,
        stuck_at: None,
    };
    match search.run(&None, 0, required) {
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
    linearized: Vec<bool>,
    /// (linearized set, state) pairs already explored and found dead.
    seen: HashSet<(Vec<bool>, State)>,
    explored: usize,
    /// For the error: how many completed operations the best attempt placed,
    /// and the first it could not place then.
    deepest: usize,
    stuck_at: Option<usize>,
}

impl Search<'_> {
    /// `Some(true)` if the remaining operations can be linearized from
    /// `state`; `None` if the budget ran out.
    fn run(&mut self, state: &State, done: usize, required: usize) -> Option<bool> {
        if done == required {
            return Some(true);
        }
        self.explored += 1;
        if self.explored > EXPLORE_MAX {
            return None;
        }
        if !self.seen.insert((self.linearized.clone(), state.clone())) {
            return Some(false);
        }
        // Whatever goes next was invoked before the earliest completion of
        // an operation still to place: that one precedes everything invoked
        // after its completion.
        let horizon = self
            .ops
            .iter()
            .zip(&self.linearized)
            .filter(|(_, &l)| !l)
            .filter_map(|(o, _)| o.completed)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            let op = self.ops[i];
            if op.invoked > horizon {
                break;
            }
            if self.linearized[i] {
                continue;
            }
            let Some(next) = step(state, op) else {
                if done >= self.deepest && op.completed.is_some() {
                    self.deepest = done;
                    self.stuck_at = Some(i);
                }
                continue;
            };
            self.linearized[i] = true;
            let placed = done + op.completed.is_some() as usize;
            let found = self.run(&next, placed, required);
            self.linearized[i] = false;
            match found {
                Some(false) => {}
                other => return other,
            }
        }
        Some(false)
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
            h.push(op(i % 4 + 4, get(Some(&i.to_string())), t + 7, Some(t + 12)));
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
}
