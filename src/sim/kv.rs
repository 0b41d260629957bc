//! The simulator's state machine: a tiny KV store over `u64` keys, with
//! commands that interfere when they share a key.

use crate::core::{CommandClass, Conflicts};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    Set { key: u64, value: u64 },
    Incr { key: u64 },
    Get { key: u64 },
}

impl KvOp {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, key, value) = match *self {
            KvOp::Set { key, value } => (1u8, key, value),
            KvOp::Incr { key } => (2, key, 0),
            KvOp::Get { key } => (3, key, 0),
        };
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<KvOp> {
        if bytes.len() != 17 {
            return None;
        }
        let key = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
        let value = u64::from_le_bytes(bytes[9..17].try_into().ok()?);
        match bytes[0] {
            1 => Some(KvOp::Set { key, value }),
            2 => Some(KvOp::Incr { key }),
            3 => Some(KvOp::Get { key }),
            _ => None,
        }
    }
}

/// Classifies KV commands for the dependency index.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvConflicts;

impl Conflicts for KvConflicts {
    fn classify(&self, cmd: &[u8]) -> CommandClass {
        match KvOp::decode(cmd) {
            Some(KvOp::Get { key }) => CommandClass {
                keys: vec![key],
                read_only: true,
                barrier: false,
            },
            Some(KvOp::Set { key, .. }) | Some(KvOp::Incr { key }) => CommandClass {
                keys: vec![key],
                read_only: false,
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
            Some(KvOp::Set { key, value }) => {
                self.data.insert(key, value);
                value
            }
            Some(KvOp::Incr { key }) => {
                let v = self.data.entry(key).or_insert(0);
                *v += 1;
                *v
            }
            Some(KvOp::Get { key }) => self.data.get(&key).copied().unwrap_or(0),
            None => return Vec::new(),
        };
        value.to_le_bytes().to_vec()
    }
}
