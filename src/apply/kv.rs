//! The built-in key-value state machine: byte-string keys and values, the
//! commands the RESP front end speaks (SET, GET, DEL, MSET, MGET, INCR).
//!
//! Commands and replies travel as compact binary: a tag byte, then
//! length-prefixed byte strings. Decoding checks every length; bytes that do
//! not decode are classified as a barrier and applied as an error reply, the
//! same on every replica.

use super::StateMachine;
use crate::core::CommandClass;
use std::collections::HashMap;
use std::sync::Mutex;

/// Keys and values, at most (a RESP bulk string's limit is 512 MiB; a log
/// record must fit a frame).
pub const KV_ITEM_MAX: usize = 16 << 20;
/// Shards of the store: records applied in parallel rarely share a lock.
const SHARDS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCommand {
    Set { key: Vec<u8>, value: Vec<u8> },
    Get { key: Vec<u8> },
    Del { keys: Vec<Vec<u8>> },
    MSet { pairs: Vec<(Vec<u8>, Vec<u8>)> },
    MGet { keys: Vec<Vec<u8>> },
    Incr { key: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvReply {
    Ok,
    Value(Option<Vec<u8>>),
    Values(Vec<Option<Vec<u8>>>),
    Int(i64),
    Error(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed KV bytes: {0}")]
pub struct KvDecodeError(&'static str);

const SET: u8 = 1;
const GET: u8 = 2;
const DEL: u8 = 3;
const MSET: u8 = 4;
const MGET: u8 = 5;
const INCR: u8 = 6;

const R_OK: u8 = 1;
const R_VALUE: u8 = 2;
const R_NIL: u8 = 3;
const R_VALUES: u8 = 4;
const R_INT: u8 = 5;
const R_ERROR: u8 = 6;

impl KvCommand {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.payload_len());
        match self {
            KvCommand::Set { key, value } => {
                out.push(SET);
                put(&mut out, key);
                put(&mut out, value);
            }
            KvCommand::Get { key } => {
                out.push(GET);
                put(&mut out, key);
            }
            KvCommand::Incr { key } => {
                out.push(INCR);
                put(&mut out, key);
            }
            KvCommand::Del { keys } | KvCommand::MGet { keys } => {
                out.push(if matches!(self, KvCommand::Del { .. }) {
                    DEL
                } else {
                    MGET
                });
                out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
                keys.iter().for_each(|k| put(&mut out, k));
            }
            KvCommand::MSet { pairs } => {
                out.push(MSET);
                out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
                for (k, v) in pairs {
                    put(&mut out, k);
                    put(&mut out, v);
                }
            }
        }
        out
    }

    fn payload_len(&self) -> usize {
        match self {
            KvCommand::Set { key, value } => key.len() + value.len() + 8,
            KvCommand::Get { key } | KvCommand::Incr { key } => key.len() + 4,
            KvCommand::Del { keys } | KvCommand::MGet { keys } => {
                keys.iter().map(|k| k.len() + 4).sum()
            }
            KvCommand::MSet { pairs } => pairs.iter().map(|(k, v)| k.len() + v.len() + 8).sum(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<KvCommand, KvDecodeError> {
        let mut r = Reader(bytes);
        let command = match r.u8()? {
            SET => KvCommand::Set {
                key: r.item()?,
                value: r.item()?,
            },
            GET => KvCommand::Get { key: r.item()? },
            INCR => KvCommand::Incr { key: r.item()? },
            DEL => KvCommand::Del { keys: r.items()? },
            MGET => KvCommand::MGet { keys: r.items()? },
            MSET => {
                let n = r.count()?;
                let mut pairs = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    pairs.push((r.item()?, r.item()?));
                }
                KvCommand::MSet { pairs }
            }
            _ => return Err(KvDecodeError("unknown command tag")),
        };
        r.end()?;
        Ok(command)
    }

    /// The keys it touches, each once.
    pub fn keys(&self) -> Vec<&[u8]> {
        let mut keys: Vec<&[u8]> = match self {
            KvCommand::Set { key, .. } | KvCommand::Get { key } | KvCommand::Incr { key } => {
                vec![key]
            }
            KvCommand::Del { keys } | KvCommand::MGet { keys } => {
                keys.iter().map(|k| k.as_slice()).collect()
            }
            KvCommand::MSet { pairs } => pairs.iter().map(|(k, _)| k.as_slice()).collect(),
        };
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    pub fn read_only(&self) -> bool {
        matches!(self, KvCommand::Get { .. } | KvCommand::MGet { .. })
    }
}

impl KvReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            KvReply::Ok => out.push(R_OK),
            KvReply::Value(v) => put_value(&mut out, v.as_deref()),
            KvReply::Values(values) => {
                out.push(R_VALUES);
                out.extend_from_slice(&(values.len() as u32).to_le_bytes());
                values
                    .iter()
                    .for_each(|v| put_value(&mut out, v.as_deref()));
            }
            KvReply::Int(i) => {
                out.push(R_INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            KvReply::Error(e) => {
                out.push(R_ERROR);
                put(&mut out, e.as_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<KvReply, KvDecodeError> {
        let mut r = Reader(bytes);
        let reply = match r.u8()? {
            R_OK => KvReply::Ok,
            R_VALUE => KvReply::Value(Some(r.item()?)),
            R_NIL => KvReply::Value(None),
            R_VALUES => {
                let n = r.count()?;
                let mut values = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    values.push(match r.u8()? {
                        R_VALUE => Some(r.item()?),
                        R_NIL => None,
                        _ => return Err(KvDecodeError("bad value tag")),
                    });
                }
                KvReply::Values(values)
            }
            R_INT => KvReply::Int(i64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"))),
            R_ERROR => KvReply::Error(String::from_utf8_lossy(&r.item()?).into_owned()),
            _ => return Err(KvDecodeError("unknown reply tag")),
        };
        r.end()?;
        Ok(reply)
    }
}

fn put(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(&(item.len() as u32).to_le_bytes());
    out.extend_from_slice(item);
}

fn put_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            out.push(R_VALUE);
            put(out, v);
        }
        None => out.push(R_NIL),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KvDecodeError> {
        if self.0.len() < n {
            return Err(KvDecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, KvDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn count(&mut self) -> Result<usize, KvDecodeError> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if n == 0 {
            return Err(KvDecodeError("empty key list"));
        }
        Ok(n)
    }

    fn item(&mut self) -> Result<Vec<u8>, KvDecodeError> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if n > KV_ITEM_MAX {
            return Err(KvDecodeError("item over the size limit"));
        }
        Ok(self.take(n)?.to_vec())
    }

    fn items(&mut self) -> Result<Vec<Vec<u8>>, KvDecodeError> {
        let n = self.count()?;
        (0..n).map(|_| self.item()).collect()
    }

    fn end(&self) -> Result<(), KvDecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(KvDecodeError("trailing bytes"))
        }
    }
}

/// A key's conflict hash (64-bit FNV-1a): fixed across versions and
/// platforms, since every replica must derive the same deps. A collision
/// only adds a dependency.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The built-in store: a sharded hash map.
pub struct KvStore {
    shards: Vec<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl KvStore {
    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Vec<u8>>> {
        let i = (key_hash(key) % SHARDS as u64) as usize;
        self.shards[i]
            .lock()
            .expect("a KV shard lock is never poisoned")
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.shard(key).get(key).cloned()
    }

    /// Every key and value, sorted: for comparing replicas.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all: Vec<_> = self
            .shards
            .iter()
            .flat_map(|s| {
                let s = s.lock().expect("a KV shard lock is never poisoned");
                s.iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        all
    }

    /// A store holding exactly a snapshot's entries.
    pub fn from_snapshot(snapshot: &crate::snapshot::Snapshot) -> KvStore {
        let store = KvStore::default();
        store.load(snapshot);
        store
    }

    fn load(&self, snapshot: &crate::snapshot::Snapshot) {
        for (key, value) in snapshot.iter() {
            self.shard(key).insert(key.to_vec(), value.to_vec());
        }
    }

    /// Runs a decoded command. Each key's shard is locked on its own: the
    /// apply pool never runs two commands on one key at once, so a
    /// multi-key command needs no lock over all its keys.
    pub fn execute(&self, command: &KvCommand) -> KvReply {
        match command {
            KvCommand::Set { key, value } => {
                self.shard(key).insert(key.clone(), value.clone());
                KvReply::Ok
            }
            KvCommand::Get { key } => KvReply::Value(self.get(key)),
            KvCommand::MGet { keys } => KvReply::Values(keys.iter().map(|k| self.get(k)).collect()),
            KvCommand::MSet { pairs } => {
                for (k, v) in pairs {
                    self.shard(k).insert(k.clone(), v.clone());
                }
                KvReply::Ok
            }
            KvCommand::Del { keys } => {
                let mut removed = 0;
                for k in keys {
                    removed += self.shard(k).remove(k).is_some() as i64;
                }
                KvReply::Int(removed)
            }
            KvCommand::Incr { key } => {
                let mut shard = self.shard(key);
                let current = match shard.get(key) {
                    None => 0,
                    Some(v) => match std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(n) => n,
                        None => return not_an_integer(),
                    },
                };
                let Some(next) = current.checked_add(1) else {
                    return not_an_integer();
                };
                shard.insert(key.clone(), next.to_string().into_bytes());
                KvReply::Int(next)
            }
        }
    }
}

fn not_an_integer() -> KvReply {
    KvReply::Error("ERR value is not an integer or out of range".into())
}

impl StateMachine for KvStore {
    fn classify(&self, cmd: &[u8]) -> CommandClass {
        match KvCommand::decode(cmd) {
            Ok(command) => CommandClass {
                keys: command.keys().into_iter().map(key_hash).collect(),
                read_only: command.read_only(),
                barrier: false,
            },
            // Bytes that do not decode interfere with everything: the safe
            // reading of a command nobody understands.
            Err(_) => CommandClass {
                keys: Vec::new(),
                read_only: false,
                barrier: true,
            },
        }
    }

    fn apply(&self, cmd: &[u8]) -> Vec<u8> {
        match KvCommand::decode(cmd) {
            Ok(command) => self.execute(&command),
            Err(e) => KvReply::Error(format!("ERR {e}")),
        }
        .encode()
    }

    fn read(&self, cmd: &[u8]) -> Vec<u8> {
        match KvCommand::decode(cmd) {
            Ok(command) if command.read_only() => self.execute(&command),
            Ok(_) => KvReply::Error("ERR not a read-only command".into()),
            Err(e) => KvReply::Error(format!("ERR {e}")),
        }
        .encode()
    }

    fn snapshot(
        &self,
        path: &std::path::Path,
        applied: &crate::TailBitmap,
        config: &crate::core::Config,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        let all = self.dump();
        crate::snapshot::write_file(
            path,
            applied,
            config,
            all.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
    }

    fn restore(
        &self,
        snapshot: &crate::snapshot::Snapshot,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        assert!(
            self.shards
                .iter()
                .all(|s| s.lock().expect("unpoisoned").is_empty()),
            "a snapshot is restored into an empty store"
        );
        self.load(snapshot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_comes_back_whole_from_its_snapshot() {
        let store = KvStore::default();
        for i in 0..5000u32 {
            let key = format!("k{}", i * 7919 % 5000).into_bytes();
            store.execute(&KvCommand::Set {
                key,
                value: i.to_le_bytes().repeat(1 + i as usize % 9),
            });
        }
        store.execute(&KvCommand::Del {
            keys: vec![b"k17".to_vec()],
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.snap");
        let applied = crate::TailBitmap::prefix(5001);
        let config = crate::core::Config::uniform(1..=3).unwrap();
        store.snapshot(&path, &applied, &config).unwrap();
        let snapshot = crate::snapshot::Snapshot::open(&path).unwrap();
        assert_eq!(snapshot.meta().applied, applied);
        assert_eq!(snapshot.meta().entries, 4999);
        assert_eq!(KvStore::from_snapshot(&snapshot).dump(), store.dump());
    }

    #[test]
    fn commands_and_replies_round_trip() {
        let commands = [
            KvCommand::Set {
                key: b"k".to_vec(),
                value: vec![0; 100],
            },
            KvCommand::Get { key: Vec::new() },
            KvCommand::Del {
                keys: vec![b"a".to_vec(), b"b".to_vec()],
            },
            KvCommand::MSet {
                pairs: vec![(b"a".to_vec(), b"1".to_vec())],
            },
            KvCommand::MGet {
                keys: vec![b"a".to_vec()],
            },
            KvCommand::Incr { key: b"n".to_vec() },
        ];
        for c in &commands {
            let bytes = c.encode();
            assert_eq!(&KvCommand::decode(&bytes).unwrap(), c);
            for cut in 0..bytes.len() {
                assert!(
                    KvCommand::decode(&bytes[..cut]).is_err(),
                    "{c:?} cut at {cut}"
                );
            }
        }
        let replies = [
            KvReply::Ok,
            KvReply::Value(None),
            KvReply::Value(Some(b"v".to_vec())),
            KvReply::Values(vec![None, Some(b"x".to_vec())]),
            KvReply::Int(-3),
            KvReply::Error("ERR x".into()),
        ];
        for r in &replies {
            assert_eq!(&KvReply::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn incr_counts_and_refuses_non_integers() {
        let kv = KvStore::default();
        let incr = KvCommand::Incr { key: b"n".to_vec() };
        assert_eq!(kv.execute(&incr), KvReply::Int(1));
        assert_eq!(kv.execute(&incr), KvReply::Int(2));
        kv.execute(&KvCommand::Set {
            key: b"n".to_vec(),
            value: b"x".to_vec(),
        });
        assert!(matches!(kv.execute(&incr), KvReply::Error(_)));
    }

    #[test]
    fn garbage_is_a_barrier_and_an_error_everywhere() {
        let kv = KvStore::default();
        assert!(kv.classify(b"\xff").barrier);
        let reply = KvReply::decode(&kv.apply(b"\xff")).unwrap();
        assert!(matches!(reply, KvReply::Error(_)));
    }
}
