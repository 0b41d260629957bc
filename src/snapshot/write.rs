//! Writing a snapshot: entries in ascending key order, cut into chunks.

use super::format::{
    io, SnapshotError, SnapshotMeta, ALIGN, CHUNK_HEADER_LEN, CHUNK_TARGET, ENTRY_BYTES_MAX,
    HEADER_LEN, MAGIC, SNAPSHOT_VERSION,
};
use crate::core::Config;
use crate::TailBitmap;
use rkyv::util::AlignedVec;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The snapshot file of `entries` (strictly ascending keys) at `applied`
/// under `config`, in memory.
pub fn encode<'a>(
    applied: &TailBitmap,
    config: &Config,
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<AlignedVec<ALIGN>, SnapshotError> {
    let mut chunks = Chunks::default();
    let mut previous: Option<&[u8]> = None;
    for (key, value) in entries {
        if previous.is_some_and(|p| p >= key) {
            return Err(SnapshotError::Encode(
                "keys must be strictly ascending".into(),
            ));
        }
        previous = Some(key);
        chunks.push(key, value)?;
    }
    chunks.close();
    let meta = SnapshotMeta {
        applied: applied.clone(),
        config: config.clone(),
        entries: chunks.entries,
        chunks: chunks.count,
    };
    let meta = rkyv::to_bytes::<rkyv::rancor::BoxedError>(&meta)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let mut out = AlignedVec::<ALIGN>::with_capacity(
        HEADER_LEN + meta.len().next_multiple_of(ALIGN) + chunks.bytes.len(),
    );
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[SNAPSHOT_VERSION, 0, 0, 0]);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&meta).to_le_bytes());
    out.extend_from_slice(&meta);
    pad(&mut out);
    out.extend_from_slice(&chunks.bytes);
    Ok(out)
}

/// Writes the snapshot to `path` durably: a temporary file, synced, renamed
/// over `path`, and the directory synced. A crash leaves the old file or the
/// new one, never a part.
pub fn write_file<'a>(
    path: &Path,
    applied: &TailBitmap,
    config: &Config,
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), SnapshotError> {
    let bytes = encode(applied, config, entries)?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io("create"))?;
    file.write_all(&bytes).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("rename"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(io("sync the directory"))
}

/// Chunks as they are filled: each closed at `CHUNK_TARGET` payload bytes
/// (an entry larger than that gets a chunk of its own).
#[derive(Default)]
struct Chunks {
    bytes: AlignedVec<ALIGN>,
    payload: Vec<u8>,
    in_payload: u32,
    entries: u64,
    count: u64,
}

impl Chunks {
    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        if key.len() + value.len() > ENTRY_BYTES_MAX {
            return Err(SnapshotError::Encode(format!(
                "an entry of {} bytes exceeds {ENTRY_BYTES_MAX}",
                key.len() + value.len()
            )));
        }
        let len = 8 + key.len() + value.len();
        if !self.payload.is_empty() && self.payload.len() + len > CHUNK_TARGET {
            self.close();
        }
        self.payload
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.payload
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(key);
        self.payload.extend_from_slice(value);
        self.in_payload += 1;
        self.entries += 1;
        Ok(())
    }

    fn close(&mut self) {
        if self.payload.is_empty() {
            return;
        }
        let header: [u32; 4] = [
            self.payload.len() as u32,
            crc32c::crc32c(&self.payload),
            self.in_payload,
            0,
        ];
        debug_assert_eq!(header.len() * 4, CHUNK_HEADER_LEN);
        for word in header {
            self.bytes.extend_from_slice(&word.to_le_bytes());
        }
        self.bytes.extend_from_slice(&self.payload);
        pad(&mut self.bytes);
        self.payload.clear();
        self.in_payload = 0;
        self.count += 1;
    }
}

fn pad(bytes: &mut AlignedVec<ALIGN>) {
    bytes.resize(bytes.len().next_multiple_of(ALIGN), 0);
}
