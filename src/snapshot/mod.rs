//! Snapshots (DESIGN.md §1.6, §3.7): the state machine at a dep-closed
//! `applied` set, as a static, immutable, sorted key-value file.
//!
//! ```text
//! header   "TRSN" | version u8 | 3 zero bytes | meta_len u32 | meta_crc u32
//! meta     rkyv `SnapshotMeta` (applied, config, entry and chunk counts),
//!          zero-padded to 16 bytes
//! chunk*   payload_len u32 | payload_crc u32 | entries u32 | 4 zero bytes,
//!          then the payload — entries `key_len u32 | value_len u32 | key |
//!          value`, keys strictly ascending across the whole file — zero-padded
//!          to 16 bytes
//! ```
//! All little-endian, CRC32C. Every chunk checks itself, so a snapshot can
//! be sent and taken chunk by chunk. Reading validates every byte — the
//! header, the meta, each chunk's checksum and bounds, the key order, the
//! counts, the end of the file — and then serves entries in place, without
//! deserializing them.

mod format;
mod read;
mod write;

pub use format::{SnapshotError, SnapshotMeta, CHUNK_TARGET, ENTRY_BYTES_MAX, SNAPSHOT_VERSION};
pub use read::Snapshot;
pub use write::{encode, write_file};
