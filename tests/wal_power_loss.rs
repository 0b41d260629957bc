//! Power loss under the WAL: a storage backend keeps unsynced writes apart,
//! and at a random moment the power goes. Each unsynced write is then lost,
//! kept, or kept as a torn prefix. Recovery must return every append that
//! resolved, intact, and nothing that was never appended.
//! `TRAFT_POWER_LOSSES` sets the number of runs (default 400, 5 losses each).

use rkyv::util::AlignedVec;
use std::collections::BTreeMap;
use traft::core::Rng;
use traft::frame::{encode, Record, RecordBatch};
use traft::wal::{MemStorage, Storage, Wal, WalOptions, BLOCK, LEND_MIN};
use traft::LeaderId;

/// A batch frame: small, or with `large`, sometimes large enough to be
/// lent to its write rather than copied (`LEND_MIN`), at whatever
/// alignment the allocator gives it.
fn frame(rng: &mut Rng, lsn: u64, large: bool) -> AlignedVec {
    let big = large && rng.next_u64() % 3 == 0;
    let records = (0..1 + rng.next_u64() % 4)
        .map(|i| {
            let len = if big && i == 0 {
                LEND_MIN + (rng.next_u64() % (3 * BLOCK as u64)) as usize
            } else {
                (rng.next_u64() % 1500) as usize
            };
            Record {
                author: LeaderId::new(1, 1),
                lsn: lsn * 8 + i,
                cmd: vec![(lsn % 251) as u8; len],
                deps: Default::default(),
            }
        })
        .collect();
    encode(&RecordBatch { records }).expect("encodes")
}

/// The frame bytes without the WAL fields (bytes 16..40 of the header and
/// the header checksum): what the appender handed over.
fn content(bytes: &[u8]) -> Vec<u8> {
    let mut c = bytes.to_vec();
    c[16..48].fill(0);
    c
}

/// With `in_flight`, up to that many planned writes are outstanding at
/// once and complete in random order (`Wal::plan` / `Wal::completed`, as
/// the io_uring writer does); otherwise each append is written and synced
/// before the next.
/// Returns how many frames were lent to planned writes (with `in_flight`).
fn run(seed: u64, in_flight: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut storage = MemStorage::default();
    // One run in three has segments that hold large frames, and writes them.
    let large = seed % 3 == 2;
    let segment_size = if large {
        LEND_MIN + BLOCK * (4 + (rng.next_u64() % 24) as usize)
    } else {
        BLOCK * (2 + (rng.next_u64() % 6) as usize)
    };
    // Every content ever appended at each wal_seq (a cut tail's seqs are reused).
    let mut attempted: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    // Appends that resolved: wal_seq → content.
    let mut resolved: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut lsn = 0;
    let mut lent = 0;
    for incarnation in 1..=6 {
        let options = WalOptions {
            segment_size,
            incarnation,
            rules: Default::default(),
        };
        let (mut wal, recovered) = Wal::open(storage, options).expect("recovery");
        assert!(
            recovered.corruption.is_none(),
            "seed {seed}: a power loss is never corruption: {:?}",
            recovered.corruption
        );
        let seqs: Vec<u64> = recovered
            .frames
            .iter()
            .map(|f| u64::from_le_bytes(f.bytes[16..24].try_into().unwrap()))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "seed {seed}: recovered wal_seqs not contiguous: {seqs:?}"
        );
        let found: BTreeMap<u64, Vec<u8>> = seqs
            .iter()
            .zip(&recovered.frames)
            .map(|(&s, f)| (s, content(&f.bytes)))
            .collect();
        for (seq, c) in &resolved {
            assert_eq!(
                found.get(seq),
                Some(c),
                "seed {seed}: resolved append {seq} lost or changed"
            );
        }
        for (seq, c) in &found {
            assert!(
                attempted.get(seq).is_some_and(|a| a.contains(c)),
                "seed {seed}: recovery invented frame {seq}"
            );
        }
        // What recovery returned is durable now.
        resolved = found;
        if incarnation == 6 {
            return lent;
        }
        storage = {
            wal_storage_arm(&mut wal, rng.next_u64() % 30);
            // Planned writes not yet carried out, and batches not yet resolved.
            let mut outstanding: Vec<traft::wal::PlannedWrite> = Vec::new();
            let mut waiting: Vec<(u64, Vec<Vec<u8>>)> = Vec::new();
            loop {
                let mut batch: Vec<AlignedVec> = (0..1 + rng.next_u64() % 5)
                    .map(|_| {
                        lsn += 1;
                        frame(&mut rng, lsn, large)
                    })
                    .collect();
                let first = wal.next_seq();
                // Taken now: planning lends large frames to their writes.
                let contents: Vec<Vec<u8>> = batch.iter().map(|f| content(f)).collect();
                for (i, c) in contents.iter().enumerate() {
                    attempted
                        .entry(first + i as u64)
                        .or_default()
                        .push(c.clone());
                }
                if in_flight == 0 {
                    match wal.append(&mut batch) {
                        Ok(first) => {
                            for (i, f) in batch.iter().enumerate() {
                                assert_eq!(content(f), contents[i], "a lent frame comes back");
                                resolved.insert(first + i as u64, content(f));
                            }
                        }
                        Err(_) => break,
                    }
                    continue;
                }
                let Ok((first, writes)) = wal.plan(&mut batch) else {
                    break;
                };
                waiting.push((first, contents));
                lent += writes.iter().map(|w| w.bytes.lent()).sum::<usize>();
                outstanding.extend(writes);
                // Carry out writes, in random order, until few enough are left.
                let mut failed = false;
                while outstanding.len() >= in_flight
                    || (rng.next_u64() % 3 == 0 && !outstanding.is_empty())
                {
                    let pick = (rng.next_u64() as usize) % outstanding.len();
                    let w = outstanding.swap_remove(pick);
                    let result =
                        wal.storage_mut()
                            .write_durable(w.segment, w.offset, &w.bytes.pieces());
                    let Ok(mark) = wal.completed(w.id, result) else {
                        failed = true;
                        break;
                    };
                    waiting.retain(|(first, contents)| {
                        let durable = first + contents.len() as u64 <= mark;
                        if durable {
                            for (i, c) in contents.iter().enumerate() {
                                resolved.insert(first + i as u64, c.clone());
                            }
                        }
                        !durable
                    });
                }
                if failed {
                    break;
                }
            }
            let mut storage = wal.into_storage();
            storage.restore_power(|len| match rng.next_u64() % 3 {
                0 => 0,
                1 => len,
                _ => (rng.next_u64() as usize) % len,
            });
            storage
        };
    }
    unreachable!("the last incarnation returns")
}

fn wal_storage_arm(wal: &mut Wal<MemStorage>, ops: u64) {
    wal.storage_mut().power_fails_after = Some(ops as usize);
}

/// `TRAFT_POWER_LOSSES` runs, 400 by default.
fn runs() -> u64 {
    std::env::var("TRAFT_POWER_LOSSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// Seeds `0..runs`, or only `TRAFT_POWER_SEED` to replay one.
fn seeds(runs: u64) -> std::ops::Range<u64> {
    match std::env::var("TRAFT_POWER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => seed..seed + 1,
        None => 0..runs,
    }
}

#[test]
fn every_resolved_append_survives_power_loss() {
    let runs = runs();
    for seed in seeds(runs) {
        run(seed, 0);
    }
}

#[test]
fn every_resolved_append_survives_power_loss_with_writes_in_flight() {
    let runs = runs();
    let lent: usize = seeds(runs)
        .map(|seed| run(seed, 2 + (seed % 3) as usize))
        .sum();
    assert!(
        runs < 30 || lent > 0,
        "some runs write large frames from their own memory"
    );
}
