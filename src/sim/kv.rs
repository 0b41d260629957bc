//! The simulator's state machine: a tiny KV store over `u64` keys, with
//! commands that interfere when they share a key.

use crate::core::{CommandClass, Conflicts};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    Set {
        key: u64,
        value: u64,
    },
    Incr {
        key: u64,
    },
    Get {
        key: u64,
    },
    /// Sets two keys to one value in one apply.
    Set2 {
        keys: [u64; 2],
        value: u64,
    },
    /// Reads two keys; the result is both values.
    Get2 {
        keys: [u64; 2],
    },
}

impl KvOp {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, words): (u8, Vec<u64>) = match *self {
            KvOp::Set { key, value } => (1, vec![key, value]),
            KvOp::Incr { key } => (2, vec![key, 0]),
            KvOp::Get { key } => (3, vec![key, 0]),
            KvOp::Set2 { keys, value } => (4, vec![keys[0], keys[1], value]),
            KvOp::Get2 { keys } => (5, vec![keys[0], keys[1], 0]),
        };
        let mut bytes = vec![tag];
        for word in words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<KvOp> {
        let (&tag, rest) = bytes.split_first()?;
        let words: Vec<u64> = rest
            .chunks(8)
            .map(|w| Some(u64::from_le_bytes(w.try_into().ok()?)))
            .collect::<Option<_>>()?;
        match (tag, words.as_slice()) {
            (1, &[key, value]) => Some(KvOp::Set { key, value }),
            (2, &[key, 0]) => Some(KvOp::Incr { key }),
            (3, &[key, 0]) => Some(KvOp::Get { key }),
            (4, &[a, b, value]) => Some(KvOp::Set2 {
                keys: [a, b],
                value,
            }),
            (5, &[a, b, 0]) => Some(KvOp::Get2 { keys: [a, b] }),
            _ => None,
        }
    }

    /// The keys it touches.
    pub fn keys(&self) -> Vec<u64> {
        match *self {
            KvOp::Set { key, .. } | KvOp::Incr { key } | KvOp::Get { key } => vec![key],
            KvOp::Set2 { keys, .. } | KvOp::Get2 { keys } => keys.to_vec(),
        }
    }
}

/// Classifies KV commands for the dependency index.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvConflicts;

impl Conflicts for KvConflicts {
    fn classify(&self, cmd: &[u8]) -> CommandClass {
        match KvOp::decode(cmd) {
            Some(op) => CommandClass {
                keys: op.keys(),
                read_only: matches!(op, KvOp::Get { .. } | KvOp::Get2 { .. }),
                barrier: false,
            },
            // Unknown bytes interfere with everything: the safe reading.
            None => CommandClass {
                keys: Vec::new(),
                read_only: false,
                barrier: !cmd.is_empty(),
            },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    pub data: BTreeMap<u64, u64>,
}

impl KvState {
    /// Applies one command; returns its result. An empty command is a no-op.
    pub fn apply(&mut self, cmd: &[u8]) -> Vec<u8> {
        let value = match KvOp::decode(cmd) {
            Some(KvOp::Set2 { keys, value }) => {
                for key in keys {
                    self.data.insert(key, value);
                }
                value
            }
            Some(KvOp::Get2 { keys }) => {
                let mut both = self.read(keys[0]).to_le_bytes().to_vec();
                both.extend_from_slice(&self.read(keys[1]).to_le_bytes());
                return both;
            }
            Some(KvOp::Set { key, value }) => {
                self.data.insert(key, value);
                value
            }
            Some(KvOp::Incr { key }) => {
                let v = self.data.entry(key).or_insert(0);
                *v += 1;
                *v
            }
            Some(KvOp::Get { key }) => self.read(key),
            None => return Vec::new(),
        };
        value.to_le_bytes().to_vec()
    }

    /// The value of `key` (0 if never written).
    pub fn read(&self, key: u64) -> u64 {
        self.data.get(&key).copied().unwrap_or(0)
    }
}
