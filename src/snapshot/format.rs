//! The snapshot file's fixed parts, limits and errors.

use crate::core::Config;
use crate::TailBitmap;
use rkyv::{Archive, Deserialize, Serialize};

pub(super) const MAGIC: [u8; 4] = *b"TRSN";
pub const SNAPSHOT_VERSION: u8 = 1;
pub(super) const HEADER_LEN: usize = 16;
pub(super) const CHUNK_HEADER_LEN: usize = 16;
/// Everything in the file starts at a multiple of this (in-place reads).
pub(super) const ALIGN: usize = 16;
/// Payload bytes a chunk is closed at: the unit of a transfer.
pub const CHUNK_TARGET: usize = 256 << 10;
/// The largest key plus value an entry may hold (a chunk holds at least one).
pub const ENTRY_BYTES_MAX: usize = 64 << 20;
/// The largest chunk payload a reader accepts.
pub(super) const CHUNK_MAX: usize = ENTRY_BYTES_MAX + CHUNK_TARGET + 8;
/// The largest meta a reader accepts (the applied bitmap and the config).
pub(super) const META_MAX: usize = 1 << 20;

/// What a snapshot is of: the applied set it was cut at and the config in
/// effect there, and how many entries and chunks follow.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub applied: TailBitmap,
    pub config: Config,
    pub entries: u64,
    pub chunks: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {op}: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("not a snapshot: bad magic")]
    BadMagic,
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u8),
    #[error("snapshot truncated at byte {at}: {what} needs {needed} bytes")]
    Truncated {
        at: usize,
        what: &'static str,
        needed: usize,
    },
    #[error("snapshot {what} at byte {at}: checksum mismatch")]
    Checksum { what: &'static str, at: usize },
    #[error("snapshot {what} at byte {at} is too large: {len} bytes")]
    TooLarge {
        what: &'static str,
        at: usize,
        len: usize,
    },
    #[error("snapshot bytes at {at} that must be zero are not")]
    NotZero { at: usize },
    #[error("invalid snapshot meta: {0}")]
    Meta(String),
    #[error("snapshot chunk at byte {at}: {reason}")]
    Chunk { at: usize, reason: String },
    #[error("snapshot key at byte {at} is not above the key before it")]
    Unordered { at: usize },
    #[error("snapshot holds {found} {what}, its meta says {expected}")]
    Count {
        what: &'static str,
        found: u64,
        expected: u64,
    },
    #[error("snapshot has {0} bytes after its last chunk")]
    Trailing(usize),
    #[error("cannot encode a snapshot: {0}")]
    Encode(String),
    #[error("this state machine does not take snapshots")]
    Unsupported,
}

pub(super) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotError {
    move |source| SnapshotError::Io { op, source }
}

pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}
