//! Reading a snapshot: every byte validated once, entries then served in
//! place.

use super::format::{
    io, u32_at, SnapshotError, SnapshotMeta, ALIGN, CHUNK_HEADER_LEN, CHUNK_MAX, ENTRY_BYTES_MAX,
    HEADER_LEN, MAGIC, META_MAX, SNAPSHOT_VERSION,
};
use crate::core::Config;
use rkyv::util::AlignedVec;
use std::io::Read;
use std::path::Path;

/// A validated snapshot held in memory.
#[derive(Debug)]
pub struct Snapshot {
    bytes: AlignedVec<ALIGN>,
    meta: SnapshotMeta,
    /// Where the first chunk starts.
    chunks_at: usize,
}

impl Snapshot {
    /// Reads and validates the snapshot file at `path`.
    pub fn open(path: &Path) -> Result<Snapshot, SnapshotError> {
        let mut file = std::fs::File::open(path).map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len() as usize;
        let mut bytes = AlignedVec::<ALIGN>::with_capacity(len);
        bytes.resize(len, 0);
        file.read_exact(&mut bytes).map_err(io("read"))?;
        Snapshot::from_bytes(bytes)
    }

    /// Validates `bytes` as a snapshot: header, meta, every chunk's
    /// checksum, bounds and padding, key order, counts and the end.
    pub fn from_bytes(bytes: AlignedVec<ALIGN>) -> Result<Snapshot, SnapshotError> {
        let (meta, chunks_at) = read_meta(&bytes)?;
        check_chunks(&bytes, chunks_at, &meta)?;
        Ok(Snapshot {
            bytes,
            meta,
            chunks_at,
        })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Every entry in ascending key order, read in place.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.chunk_payloads().flat_map(entries)
    }

    /// The value of `key`, if the snapshot holds it.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Each chunk's payload, in order.
    fn chunk_payloads(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let bytes: &[u8] = &self.bytes;
        let mut at = self.chunks_at;
        std::iter::from_fn(move || {
            if at >= bytes.len() {
                return None;
            }
            let len = u32_at(bytes, at) as usize;
            let payload = &bytes[at + CHUNK_HEADER_LEN..at + CHUNK_HEADER_LEN + len];
            at = (at + CHUNK_HEADER_LEN + len).next_multiple_of(ALIGN);
            Some(payload)
        })
    }
}

/// The entries of a validated chunk payload.
fn entries(payload: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= payload.len() {
            return None;
        }
        let (klen, vlen) = (
            u32_at(payload, at) as usize,
            u32_at(payload, at + 4) as usize,
        );
        let key = &payload[at + 8..at + 8 + klen];
        let value = &payload[at + 8 + klen..at + 8 + klen + vlen];
        at += 8 + klen + vlen;
        Some((key, value))
    })
}

fn truncated(at: usize, what: &'static str, needed: usize) -> SnapshotError {
    SnapshotError::Truncated { at, what, needed }
}

fn zeros(bytes: &[u8], from: usize, to: usize) -> Result<(), SnapshotError> {
    match bytes[from..to].iter().position(|&b| b != 0) {
        Some(i) => Err(SnapshotError::NotZero { at: from + i }),
        None => Ok(()),
    }
}

/// The header and meta; returns the meta and where the chunks start.
fn read_meta(bytes: &[u8]) -> Result<(SnapshotMeta, usize), SnapshotError> {
    if bytes.len() < HEADER_LEN {
        return Err(truncated(0, "the header", HEADER_LEN));
    }
    if bytes[0..4] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    if bytes[4] != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(bytes[4]));
    }
    zeros(bytes, 5, 8)?;
    let meta_len = u32_at(bytes, 8) as usize;
    if meta_len > META_MAX {
        return Err(SnapshotError::TooLarge {
            what: "meta",
            at: HEADER_LEN,
            len: meta_len,
        });
    }
    let chunks_at = (HEADER_LEN + meta_len).next_multiple_of(ALIGN);
    if bytes.len() < chunks_at {
        return Err(truncated(HEADER_LEN, "the meta", chunks_at - HEADER_LEN));
    }
    let raw = &bytes[HEADER_LEN..HEADER_LEN + meta_len];
    if crc32c::crc32c(raw) != u32_at(bytes, 12) {
        return Err(SnapshotError::Checksum {
            what: "meta",
            at: HEADER_LEN,
        });
    }
    zeros(bytes, HEADER_LEN + meta_len, chunks_at)?;
    let meta = rkyv::from_bytes::<SnapshotMeta, rkyv::rancor::BoxedError>(raw)
        .map_err(|e| SnapshotError::Meta(e.to_string()))?;
    meta.applied
        .check_canonical()
        .map_err(|e| SnapshotError::Meta(e.to_string()))?;
    // A config holds its invariants only if built by `Config::new`.
    let config = Config::new(
        meta.config.voter_sets().to_vec(),
        meta.config.learners().to_vec(),
    )
    .map_err(|e| SnapshotError::Meta(e.to_string()))?;
    if config != meta.config {
        return Err(SnapshotError::Meta("config not in its normal form".into()));
    }
    Ok((meta, chunks_at))
}

/// Walks every chunk: header, bounds, checksum, padding, entries, key order.
fn check_chunks(bytes: &[u8], mut at: usize, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
    let mut previous: Option<&[u8]> = None;
    let (mut chunks, mut entries) = (0u64, 0u64);
    while chunks < meta.chunks {
        if bytes.len() - at < CHUNK_HEADER_LEN {
            return Err(truncated(at, "a chunk header", CHUNK_HEADER_LEN));
        }
        let (len, crc, count) = (
            u32_at(bytes, at) as usize,
            u32_at(bytes, at + 4),
            u32_at(bytes, at + 8),
        );
        zeros(bytes, at + 12, at + 16)?;
        if len > CHUNK_MAX {
            return Err(SnapshotError::TooLarge {
                what: "chunk",
                at,
                len,
            });
        }
        let start = at + CHUNK_HEADER_LEN;
        let end = (start + len).next_multiple_of(ALIGN);
        if bytes.len() < end {
            return Err(truncated(at, "a chunk", end - at));
        }
        let payload = &bytes[start..start + len];
        if crc32c::crc32c(payload) != crc {
            return Err(SnapshotError::Checksum { what: "chunk", at });
        }
        zeros(bytes, start + len, end)?;
        let chunk_error = |reason: &str| SnapshotError::Chunk {
            at,
            reason: reason.into(),
        };
        if count == 0 {
            return Err(chunk_error("no entries"));
        }
        let mut p = 0;
        for _ in 0..count {
            if payload.len() - p < 8 {
                return Err(chunk_error("an entry header runs past the payload"));
            }
            let (klen, vlen) = (u32_at(payload, p) as usize, u32_at(payload, p + 4) as usize);
            if klen + vlen > ENTRY_BYTES_MAX || payload.len() - p - 8 < klen + vlen {
                return Err(chunk_error("an entry runs past the payload"));
            }
            let key = &payload[p + 8..p + 8 + klen];
            if previous.is_some_and(|prev| prev >= key) {
                return Err(SnapshotError::Unordered { at: start + p });
            }
            previous = Some(key);
            p += 8 + klen + vlen;
        }
        if p != payload.len() {
            return Err(chunk_error("bytes after its entries"));
        }
        chunks += 1;
        entries += u64::from(count);
        at = end;
    }
    if entries != meta.entries {
        return Err(SnapshotError::Count {
            what: "entries",
            found: entries,
            expected: meta.entries,
        });
    }
    if at != bytes.len() {
        return Err(SnapshotError::Trailing(bytes.len() - at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{encode, write_file, CHUNK_TARGET};
    use crate::TailBitmap;

    fn config() -> Config {
        Config::new(vec![vec![1, 2, 3], vec![3, 4, 5]], vec![6]).unwrap()
    }

    fn applied() -> TailBitmap {
        let mut applied = TailBitmap::prefix(1000);
        applied.insert(1005).unwrap();
        applied
    }

    /// `n` entries, keys ascending, values of `value_len(i)` bytes.
    fn entries(n: usize, value_len: fn(usize) -> usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    format!("key{i:06}").into_bytes(),
                    vec![i as u8; value_len(i)],
                )
            })
            .collect()
    }

    fn encoded(kv: &[(Vec<u8>, Vec<u8>)]) -> AlignedVec<ALIGN> {
        encode(
            &applied(),
            &config(),
            kv.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
        .unwrap()
    }

    #[test]
    fn what_is_written_reads_back_across_many_chunks() {
        let kv = entries(3000, |i| (i * 37) % 900);
        let snapshot = Snapshot::from_bytes(encoded(&kv)).unwrap();
        let meta = snapshot.meta();
        assert_eq!(
            (meta.applied.clone(), meta.config.clone()),
            (applied(), config())
        );
        assert_eq!(meta.entries, 3000);
        assert!(meta.chunks > 1, "{} chunks", meta.chunks);
        let back: Vec<(Vec<u8>, Vec<u8>)> = snapshot
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(back, kv);
        assert_eq!(snapshot.get(b"key001234"), Some(&kv[1234].1[..]));
        assert_eq!(snapshot.get(b"key9"), None);
    }

    #[test]
    fn empty_and_oversized_entries_have_their_place() {
        let empty = Snapshot::from_bytes(encoded(&[])).unwrap();
        assert_eq!((empty.meta().entries, empty.meta().chunks), (0, 0));
        assert_eq!(empty.iter().count(), 0);
        let big = vec![
            (b"".to_vec(), vec![]),
            (b"a".to_vec(), vec![9; CHUNK_TARGET * 2]),
        ];
        let snapshot = Snapshot::from_bytes(encoded(&big)).unwrap();
        assert_eq!(
            snapshot.meta().chunks,
            2,
            "a large entry gets a chunk of its own"
        );
        assert_eq!(snapshot.get(b"a").unwrap().len(), CHUNK_TARGET * 2);
        assert_eq!(snapshot.get(b""), Some(&[][..]));
    }

    #[test]
    fn keys_out_of_order_are_refused_when_writing() {
        let kv = [(b"b".as_slice(), b"1".as_slice()), (b"a", b"2")];
        assert!(encode(&applied(), &config(), kv).is_err());
        let twice = [(b"a".as_slice(), b"1".as_slice()), (b"a", b"2")];
        assert!(encode(&applied(), &config(), twice).is_err());
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_an_error() {
        let kv = entries(40, |i| 20 + i);
        let good = encoded(&kv);
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x41;
            assert!(
                Snapshot::from_bytes(bad).is_err(),
                "byte {at} of {} flipped went through",
                good.len()
            );
        }
        for len in 0..good.len() {
            let mut cut = AlignedVec::<ALIGN>::new();
            cut.extend_from_slice(&good[..len]);
            assert!(
                Snapshot::from_bytes(cut).is_err(),
                "cut at {len} went through"
            );
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 16]);
        assert!(matches!(
            Snapshot::from_bytes(longer),
            Err(SnapshotError::Trailing(16))
        ));
    }

    #[test]
    fn a_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.snap");
        let (first, second) = (entries(10, |_| 5), entries(20, |_| 7));
        for kv in [&first, &second] {
            let pairs = kv.iter().map(|(k, v)| (&k[..], &v[..]));
            write_file(&path, &applied(), &config(), pairs).unwrap();
        }
        let read = Snapshot::open(&path).unwrap();
        let back: Vec<_> = read.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(back, second);
        assert!(!path.with_extension("tmp").exists());
    }
}
