//! The slot file (DESIGN.md §2, §4): `vote`, a cache of `committer`, and the
//! writer's boot counter, in two alternating checksummed blocks. A write goes
//! to the block its generation picks and is synced before the next write
//! starts, so a torn write can only damage the block being replaced:
//! recovery takes the valid block with the greatest generation.

use super::storage::BLOCK;
use crate::core::SlotState;
use crate::ids::LeaderId;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = *b"TSLT";
const VERSION: u8 = 1;
/// Bytes of a slot that carry data; the rest of its block is zero.
const BODY: usize = 4 + 1 + 3 + 8 * 6;

/// What one slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotRecord {
    pub state: SlotState,
    /// The boot counter: raised and synced before the first append after
    /// each recovery.
    pub incarnation: u64,
}

/// The block for `record`: it goes at `offset(record.state.generation)`.
pub fn encode(record: &SlotRecord) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[0..4].copy_from_slice(&MAGIC);
    block[4] = VERSION;
    let s = record.state;
    let words = [
        s.generation,
        s.vote.term,
        s.vote.node,
        s.committer.term,
        s.committer.node,
        record.incarnation,
    ];
    for (i, w) in words.iter().enumerate() {
        block[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    let crc = crc32c::crc32c(&block[..BODY]);
    block[BODY..BODY + 4].copy_from_slice(&crc.to_le_bytes());
    block
}

/// Where the slot of `generation` lives: the two blocks alternate.
pub fn offset(generation: u64) -> usize {
    (generation % 2) as usize * BLOCK
}

fn decode_one(block: &[u8]) -> Option<SlotRecord> {
    if block.len() < BLOCK || block[0..4] != MAGIC || block[4] != VERSION {
        return None;
    }
    let crc = u32::from_le_bytes(block[BODY..BODY + 4].try_into().ok()?);
    if crc32c::crc32c(&block[..BODY]) != crc || block[BODY + 4..BLOCK].iter().any(|&b| b != 0) {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(block[8 + 8 * i..16 + 8 * i].try_into().unwrap());
    let record = SlotRecord {
        state: SlotState {
            generation: word(0),
            vote: LeaderId::new(word(1), word(2)),
            committer: LeaderId::new(word(3), word(4)),
        },
        incarnation: word(5),
    };
    Some(record)
}

/// The valid slot with the greatest generation in the file's bytes, if any.
pub fn decode(file: &[u8]) -> Option<SlotRecord> {
    let first = file.get(..BLOCK).and_then(decode_one);
    let second = file.get(BLOCK..2 * BLOCK).and_then(decode_one);
    // A block only ever holds generations of its own parity.
    let valid = |r: Option<SlotRecord>, at: usize| r.filter(|r| offset(r.state.generation) == at);
    match (valid(first, 0), valid(second, BLOCK)) {
        (Some(a), Some(b)) => Some(if a.state.generation > b.state.generation {
            a
        } else {
            b
        }),
        (a, b) => a.or(b),
    }
}

/// The slot file on disk.
pub struct SlotFile {
    path: PathBuf,
    file: File,
}

impl SlotFile {
    /// Opens (creating if missing) `dir/slot`; returns it with the record
    /// recovery finds there.
    pub fn open(dir: &Path) -> io::Result<(SlotFile, Option<SlotRecord>)> {
        let path = dir.join("slot");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = file.metadata()?.len() as usize;
        let mut bytes = vec![0u8; len.min(2 * BLOCK)];
        file.read_exact_at(&mut bytes, 0)?;
        let record = decode(&bytes);
        if len < 2 * BLOCK {
            File::open(dir)?.sync_all()?;
        }
        Ok((SlotFile { path, file }, record))
    }

    /// Writes `record` to its slot and syncs. The caller keeps one write in
    /// flight and raises the generation by one each time.
    pub fn write(&mut self, record: &SlotRecord) -> io::Result<()> {
        let block = encode(record);
        self.file
            .write_all_at(&block, offset(record.state.generation) as u64)?;
        self.file.sync_data()
    }

    /// Raises the boot counter over `found` (what `open` returned) and
    /// writes it, synced, keeping `vote` and `committer`; returns the record
    /// now on disk. Done once per recovery, before the first WAL append.
    pub fn boot(&mut self, found: Option<SlotRecord>) -> io::Result<SlotRecord> {
        let previous = found.unwrap_or_default();
        let record = SlotRecord {
            state: SlotState {
                generation: previous.state.generation + 1,
                ..previous.state
            },
            incarnation: previous.incarnation + 1,
        };
        self.write(&record)?;
        Ok(record)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: u64, term: u64) -> SlotRecord {
        SlotRecord {
            state: SlotState {
                generation,
                vote: LeaderId::new(term, 2),
                committer: LeaderId::new(term.saturating_sub(1), 1),
            },
            incarnation: 7,
        }
    }

    fn file_after(writes: &[SlotRecord]) -> Vec<u8> {
        let mut file = vec![0u8; 2 * BLOCK];
        for r in writes {
            let at = offset(r.state.generation);
            file[at..at + BLOCK].copy_from_slice(&encode(r));
        }
        file
    }

    #[test]
    fn the_greatest_valid_generation_wins() {
        assert_eq!(decode(&[0u8; 2 * BLOCK]), None);
        let file = file_after(&[record(1, 3), record(2, 4), record(3, 5)]);
        assert_eq!(decode(&file), Some(record(3, 5)));
    }

    #[test]
    fn a_torn_write_leaves_the_previous_slot() {
        let before = file_after(&[record(1, 3), record(2, 4)]);
        let next = encode(&record(3, 5));
        let at = offset(3);
        for cut in 0..BLOCK {
            let mut file = before.clone();
            file[at..at + cut].copy_from_slice(&next[..cut]);
            let found = decode(&file).expect("a valid slot survives");
            assert!(
                found == record(2, 4) || (cut >= BODY + 4 && found == record(3, 5)),
                "cut {cut}: {found:?}"
            );
        }
    }

    #[test]
    fn any_flipped_bit_invalidates_a_slot() {
        let good = encode(&record(4, 9));
        for byte in 0..BODY + 4 {
            for bit in 0..8 {
                let mut block = good;
                block[byte] ^= 1 << bit;
                assert_eq!(decode_one(&block), None, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn n6_two_slot_writes_in_flight_can_both_tear() {
        // Generation 5 granted (5,B) durably. With one write in flight, a
        // torn write of generation 6 leaves 5. Two in flight (6 to block 0,
        // 7 to block 1) can tear both: no slot holds a vote >= (5,B) — why
        // at most one slot write is ever in flight.
        let durable = file_after(&[record(4, 4), record(5, 5)]);
        let mut one = durable.clone();
        one[offset(6)..offset(6) + 24].copy_from_slice(&encode(&record(6, 6))[..24]);
        assert!(decode(&one).is_some_and(|r| r.state.vote >= record(5, 5).state.vote));
        let mut two = one.clone();
        two[offset(7)..offset(7) + 24].copy_from_slice(&encode(&record(7, 7))[..24]);
        assert!(decode(&two).is_none_or(|r| r.state.vote < record(5, 5).state.vote));
    }

    #[test]
    fn the_file_keeps_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, found) = SlotFile::open(dir.path()).unwrap();
        assert_eq!(found, None);
        file.write(&record(1, 2)).unwrap();
        file.write(&record(2, 3)).unwrap();
        drop(file);
        let (_, found) = SlotFile::open(dir.path()).unwrap();
        assert_eq!(found, Some(record(2, 3)));
    }
}
