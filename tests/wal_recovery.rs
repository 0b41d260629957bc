//! SCENARIOS.md §4, WAL and recovery: each row as a test that passes with
//! the rule and shows the failure with the rule removed. The WAL rows run
//! through the real writer and recovery scan over in-memory storage; the
//! recovery rows feed what the WAL returns to the core.

use rkyv::util::AlignedVec;
use traft::core::{
    Config, Durable, Input, Message, Mutations, Output, Replica, SlotState, WalEntry,
};
use traft::frame::{set_wal_fields, Frame, Record, WalFields, HEADER_LEN};
use traft::sim::kv::KvConflicts;
use traft::sim::script::Script;
use traft::wal::{
    entry, scan_with, slot, MemStorage, ScanRules, SegmentBytes, Storage, Wal, WalOptions,
};
use traft::{LeaderId, TailBitmap};

const M: LeaderId = LeaderId { term: 1, node: 1 };
const K: LeaderId = LeaderId { term: 2, node: 3 };

fn records(author: LeaderId, lsns: std::ops::RangeInclusive<u64>, cmd_len: usize) -> Vec<Record> {
    lsns.map(|lsn| Record {
        author,
        lsn,
        cmd: vec![lsn as u8; cmd_len],
        deps: Default::default(),
    })
    .collect()
}

fn base(committer: LeaderId, keep: TailBitmap, records: Vec<Record>) -> WalEntry {
    WalEntry::Base {
        committer,
        committed: keep.clone(),
        keep,
        records,
    }
}

fn batch(committer: LeaderId, records: Vec<Record>) -> WalEntry {
    WalEntry::Records { committer, records }
}

fn options(incarnation: u64, rules: ScanRules) -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        incarnation,
        rules,
    }
}

/// Recovers `storage` and returns the storage and the entries found.
fn recover(
    storage: MemStorage,
    incarnation: u64,
    rules: ScanRules,
) -> (MemStorage, Vec<WalEntry>, bool) {
    let (wal, recovered) = Wal::open(storage, options(incarnation, rules)).expect("open");
    let frames = recovered
        .frames
        .iter()
        .map(|f| Frame::decode(&f.bytes).expect("valid"));
    let entries = entry::decode(frames, LeaderId::ZERO).expect("entries");
    (wal.into_storage(), entries, recovered.corruption.is_some())
}

fn replica(durable: Durable, mutations: Mutations) -> Replica<KvConflicts> {
    let config = Config::uniform(1..=5).expect("config");
    Replica::recover(
        2,
        config,
        Script::params(),
        KvConflicts,
        durable,
        0,
        1,
        mutations,
    )
}

fn durable(slot: Option<SlotState>, wal: Vec<WalEntry>) -> Durable {
    Durable {
        slot,
        wal,
        corrupted: false,
        snapshot: None,
    }
}

fn slot(generation: u64, vote: LeaderId, committer: LeaderId) -> Option<SlotState> {
    Some(SlotState {
        generation,
        vote,
        committer,
    })
}

fn holds_m_after(replica: &Replica<KvConflicts>, from: u64) -> bool {
    replica.log().range(from..).any(|(_, r)| r.author == M)
}

/// S3b: B holds M's uncommitted 5..=9; K's base frame (base ≤ 4) drops them.
/// Recovery replays the base frame as the whole log; the mutant replays it
/// as an insert and M's records come back under committer K.
fn s3b(mutations: Mutations) -> Replica<KvConflicts> {
    let mut wal = Wal::open(MemStorage::default(), options(1, ScanRules::default()))
        .expect("open")
        .0;
    for e in [
        base(M, TailBitmap::new(), records(M, 0..=4, 8)),
        batch(M, records(M, 5..=9, 8)),
        base(K, TailBitmap::prefix(5), Vec::new()),
    ] {
        wal.append(&mut [entry::encode(&e).unwrap()]).unwrap();
    }
    let (_, entries, _) = recover(wal.into_storage(), 2, ScanRules::default());
    replica(durable(slot(1, K, K), entries), mutations)
}

#[test]
fn s3b_base_frame_replays_as_the_whole_log() {
    let r = s3b(Mutations::default());
    assert_eq!(r.committer(), K);
    assert!(!holds_m_after(&r, 5));
}

#[test]
fn s3b_mutant_replaying_as_insert_brings_dropped_records_back() {
    let r = s3b(Mutations {
        base_as_insert: true,
        ..Default::default()
    });
    assert!(holds_m_after(&r, 5), "M's 5..=9 under committer K (P1)");
}

/// R1a: B (log ≤ 4 under M) issued the slot write {K, K} and K's base
/// frame; the slot landed, the frame did not. `committer` is durable only
/// through base frames: recovery says M. The mutant takes K, claiming K's
/// log while lacking K's base record 5.
fn r1a(mutations: Mutations) -> Replica<KvConflicts> {
    let wal = vec![base(M, TailBitmap::new(), records(M, 0..=4, 8))];
    replica(durable(slot(3, K, K), wal), mutations)
}

#[test]
fn r1a_committer_comes_from_the_frame() {
    assert_eq!(r1a(Mutations::default()).committer(), M);
}

#[test]
fn r1a_mutant_trusting_the_slot_copy_claims_a_log_it_lacks() {
    let r = r1a(Mutations {
        slot_committer_wins: true,
        ..Default::default()
    });
    assert_eq!(r.committer(), K);
    assert!(
        !r.accepted().contains(5),
        "committer K without K's base (P2)"
    );
}

/// R1b and N3: F adopted c = K from a base forward; the frame is durable,
/// the slot write (old vote M) is not. Recovery sets vote := max(slot vote,
/// committer) and writes the slot before answering anything.
fn adopted(mutations: Mutations) -> (Replica<KvConflicts>, Vec<Output>) {
    let wal = vec![
        base(M, TailBitmap::new(), records(M, 0..=4, 8)),
        base(K, TailBitmap::prefix(5), Vec::new()),
    ];
    let mut r = replica(durable(slot(1, M, M), wal), mutations);
    let start = r.step(Input::Tick { now: 0 });
    (r, start)
}

#[test]
fn r1b_vote_is_raised_to_the_committer() {
    let (r, _) = adopted(Mutations::default());
    assert!(r.vote() >= r.committer());
}

#[test]
fn r1b_mutant_taking_the_slot_vote_breaks_i2() {
    let (r, _) = adopted(Mutations {
        vote_from_slot_alone: true,
        ..Default::default()
    });
    assert!(r.vote() < r.committer(), "I2 broken");
}

/// N3 continued: K's next forward carries `c == vote`, so nothing else
/// would write the slot; an ack waits for a durable slot with vote ≥ K.
fn n3(mutations: Mutations) -> bool {
    let mut out = Vec::new();
    let (mut r, start) = adopted(mutations);
    for o in start {
        if let Output::WriteSlot(s) = o {
            out.extend(r.step(Input::SlotDurable {
                generation: s.generation,
            }));
        }
    }
    let forward = traft::core::LogForward {
        leader: K,
        seq: 1,
        base: None,
        records: records(K, 5..=5, 8),
        committed: TailBitmap::prefix(5),
        transfer_to: None,
        purge_floor: 0,
    };
    out.extend(r.step(Input::Receive {
        from: K.node,
        msg: Message::Forward(forward),
    }));
    let writes: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::AppendWal { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let mut after = Vec::new();
    if let Some(last) = writes.last() {
        after = r.step(Input::WalDurable { upto: last + 1 });
    }
    out.extend(after);
    out.iter()
        .any(|o| matches!(o, Output::Send { msg: Message::Ack { leader, .. }, .. } if *leader == K))
}

#[test]
fn n3_recovery_rewrites_the_slot_and_acks() {
    assert!(n3(Mutations::default()), "F acks K");
}

#[test]
fn n3_mutant_never_rewriting_the_slot_never_acks() {
    assert!(!n3(Mutations {
        no_slot_rewrite: true,
        ..Default::default()
    }));
}

/// N6: F grants (5,B) (slot generation 1, durable), then grants (6,C) and
/// (7,D) in quick succession. A crash tears every slot write in flight. With one in flight the durable (5,B) survives; the
/// mutant pipelines two, tearing both blocks: the vote falls below (5,B).
fn n6(mutations: Mutations) -> LeaderId {
    let config = Config::uniform(1..=5).expect("config");
    let params = Script::params();
    let late = params.t_min + params.drift_allowance + 1;
    let mut r = Replica::recover(
        5,
        config,
        params,
        KvConflicts,
        Durable::default(),
        0,
        1,
        mutations,
    );
    r.step(Input::Tick { now: late });
    let mut in_flight: Vec<SlotState> = Vec::new();
    let mut image = vec![0u8; 2 * traft::wal::BLOCK];
    for (i, term) in [5u64, 6, 7].into_iter().enumerate() {
        let candidate = LeaderId::new(term, 2 + i as u64);
        let out = r.step(Input::Receive {
            from: candidate.node,
            msg: Message::ElectReq {
                candidate,
                committer: LeaderId::ZERO,
                accepted: TailBitmap::new(),
                transfer_from: None,
            },
        });
        for o in out {
            if let Output::WriteSlot(s) = o {
                in_flight.push(s);
            }
        }
        if term == 5 {
            // The first write lands: (5,B) is durable and its grant is sent.
            let s = in_flight.pop().expect("a slot write");
            let at = slot::offset(s.generation);
            let record = traft::wal::SlotRecord {
                state: s,
                incarnation: 1,
            };
            image[at..at + traft::wal::BLOCK].copy_from_slice(&slot::encode(&record));
            r.step(Input::SlotDurable {
                generation: s.generation,
            });
        }
    }
    // Power loss: every write in flight is torn.
    for s in in_flight {
        let at = slot::offset(s.generation);
        let record = traft::wal::SlotRecord {
            state: s,
            incarnation: 1,
        };
        image[at..at + 24].copy_from_slice(&slot::encode(&record)[..24]);
    }
    slot::decode(&image).map_or(LeaderId::ZERO, |r| r.state.vote)
}

#[test]
fn n6_one_slot_write_in_flight_keeps_the_granted_vote() {
    assert!(n6(Mutations::default()) >= LeaderId::new(5, 2));
}

#[test]
fn n6_mutant_pipelining_slot_writes_loses_the_granted_vote() {
    let vote = n6(Mutations {
        pipeline_slot_writes: true,
        ..Default::default()
    });
    assert!(vote < LeaderId::new(5, 2), "vote fell to {vote:?}");
}

/// Frames with chosen WAL fields, packed into one segment image.
fn image(frames: &[(WalEntry, WalFields)], size: usize) -> AlignedVec {
    let mut bytes = AlignedVec::new();
    for (e, wal) in frames {
        let mut f = entry::encode(e).unwrap();
        set_wal_fields(&mut f, *wal).unwrap();
        bytes.extend_from_slice(&f);
    }
    bytes.resize(size, 0);
    bytes
}

fn fields(wal_seq: u64, incarnation: u64, durable_upto: u64) -> WalFields {
    WalFields {
        wal_seq,
        incarnation,
        durable_upto,
    }
}

fn entries_of(bytes: &AlignedVec, rules: ScanRules) -> (Vec<WalEntry>, bool) {
    let found = scan_with(&[SegmentBytes { index: 7, bytes }], rules);
    let frames = found.frames.iter().map(|a| a.frame);
    let entries = entry::decode(frames, LeaderId::ZERO).expect("entries");
    (entries, found.corruption.is_some())
}

/// R2a: recycled segment 7 holds a valid old-lap frame with M's 5..=9 right
/// after where this lap's frames end (K's base frame dropping them, then
/// K's 10..=11). Only the next `wal_seq` is accepted; the mutant accepts
/// any valid frame and M's records replay after K's base.
fn r2a(rules: ScanRules) -> Replica<KvConflicts> {
    let bytes = image(
        &[
            (
                base(K, TailBitmap::prefix(5), Vec::new()),
                fields(20, 4, 20),
            ),
            (batch(K, records(K, 10..=11, 8)), fields(21, 4, 21)),
            (batch(M, records(M, 5..=9, 8)), fields(12, 4, 12)),
        ],
        8192,
    );
    let (entries, _) = entries_of(&bytes, rules);
    let mut wal = vec![base(M, TailBitmap::new(), records(M, 0..=4, 8))];
    wal.extend(entries);
    replica(durable(slot(1, K, K), wal), Mutations::default())
}

#[test]
fn r2a_stale_frames_of_a_recycled_segment_never_replay() {
    assert!(!holds_m_after(&r2a(ScanRules::default()), 5));
}

#[test]
fn r2a_mutant_accepting_any_valid_frame_replays_them() {
    let r = r2a(ScanRules {
        next_seq: false,
        ..Default::default()
    });
    assert!(holds_m_after(&r, 5), "M's records after K's base (P1)");
}

/// N0: frames 2 (M's 5..=6) and 3 (M's 7..=8) were in flight; 2 is torn,
/// 3 complete (it vouches only below 2). Recovery cuts at 2; the writer
/// resumes there with K's base frame as frame 2, the same length as the
/// old one; crash. Frame 3 of the old incarnation then follows as 2 + 1:
/// only the incarnation rule keeps M's 7..=8 from replaying after K's base.
fn n0(rules: ScanRules) -> Replica<KvConflicts> {
    let m_base = base(M, TailBitmap::new(), records(M, 0..=4, 8));
    let first_len = entry::encode(&m_base).unwrap().len();
    // M's frame 2 ends at the third block boundary, so that frame 3 lies
    // beyond the zero padding of the writer's next write and beyond the
    // window recovery clears past the end (N0b): only the incarnation
    // rule stands between it and the log.
    let block = traft::wal::BLOCK;
    let frame_3_at = 3 * block;
    assert!(first_len + traft::wal::PADDING_MAX <= frame_3_at);
    let m2 = (0..frame_3_at)
        .map(|len| batch(M, records(M, 5..=6, len)))
        .find(|e| first_len + entry::encode(e).unwrap().len() == frame_3_at)
        .expect("a command length ending frame 2 at the block boundary");
    let m2_len = frame_3_at - first_len;
    // K's base frame (with K's own record at 10), as long as M's frame 2.
    let k_base = (0..frame_3_at)
        .map(|len| base(K, TailBitmap::prefix(5), records(K, 10..=10, len)))
        .find(|e| entry::encode(e).unwrap().len() == m2_len)
        .expect("a command length giving the same frame length");
    let mut wal = Wal::open(MemStorage::default(), options(1, rules))
        .expect("open")
        .0;
    let mut first = [entry::encode(&m_base).unwrap()];
    wal.append(&mut first).unwrap();
    let mut pair = [
        entry::encode(&m2).unwrap(),
        entry::encode(&batch(M, records(M, 7..=8, 8))).unwrap(),
    ];
    wal.append(&mut pair).unwrap();
    let mut storage = wal.into_storage();
    storage.damage(0, first[0].len() + HEADER_LEN + 8, 0x01);
    let (storage, entries, corrupt) = recover(storage, 2, rules);
    assert_eq!(entries.len(), 1, "cut at the torn frame");
    assert!(!corrupt);
    let mut wal = Wal::open(storage, options(2, rules)).expect("open").0;
    wal.append(&mut [entry::encode(&k_base).unwrap()]).unwrap();
    let (_, entries, _) = recover(wal.into_storage(), 3, rules);
    replica(durable(slot(1, K, K), entries), Mutations::default())
}

#[test]
fn n0_frames_of_an_older_incarnation_end_the_log() {
    assert!(!holds_m_after(&n0(ScanRules::default()), 5));
}

#[test]
fn n0_mutant_without_incarnation_replays_the_cut_tail() {
    let r = n0(ScanRules {
        incarnation: false,
        ..Default::default()
    });
    assert!(holds_m_after(&r, 5), "M's 7..=8 after K's base (P1)");
}

/// R2b: power is lost with two writes in flight: frame 3 torn, frame 4
/// complete (its durable_upto is 3: nothing vouches for 3). A torn tail,
/// not corruption; the mutant calls it corruption and the replica may not
/// vote — on every replica at once, a stall.
fn r2b(rules: ScanRules) -> bool {
    let mut bytes = image(
        &[
            (
                base(M, TailBitmap::new(), records(M, 0..=1, 8)),
                fields(1, 1, 1),
            ),
            (batch(M, records(M, 2..=2, 8)), fields(2, 1, 2)),
            (batch(M, records(M, 3..=3, 8)), fields(3, 1, 3)),
            (batch(M, records(M, 4..=4, 8)), fields(4, 1, 3)),
        ],
        8192,
    );
    let found = scan_with(
        &[SegmentBytes {
            index: 0,
            bytes: &bytes,
        }],
        rules,
    );
    let third = found.frames[2].at.offset;
    bytes[third + HEADER_LEN + 4] ^= 0xff;
    entries_of(&bytes, rules).1
}

#[test]
fn r2b_torn_write_before_a_complete_one_is_no_corruption() {
    assert!(!r2b(ScanRules::default()));
}

#[test]
fn r2b_mutant_calling_it_corruption_demotes_the_replica() {
    assert!(r2b(ScanRules {
        vouched_only: false,
        ..Default::default()
    }));
}

/// R3: F's segment 0 holds M's uncommitted Z@70; segment 1 K's base frame
/// (keeping ≤ 60, dropping 70) and K's 61..=64; segment 2 K's later record.
/// Applied reaches 65 and the WAL is purged below it. Segments go only as a
/// prefix: segment 0 reaches 70, so nothing goes. The mutant deletes segment
/// 1 and keeps 0; F restarts with committer K (from the slot) and M's Z@70.
fn r3(prefix_only: bool) -> Replica<KvConflicts> {
    let mut wal = Wal::open(MemStorage::default(), options(1, ScanRules::default()))
        .expect("open")
        .0;
    // Frames sized so that each of the three lands in a segment of its own.
    for e in [
        batch(M, records(M, 70..=70, 40_000)),
        base(K, TailBitmap::prefix(61), records(K, 61..=64, 9_000)),
        batch(K, records(K, 65..=65, 40_000)),
    ] {
        wal.append(&mut [entry::encode(&e).unwrap()]).unwrap();
    }
    assert_eq!(wal.segment(), 2, "three segments");
    let purged = if prefix_only {
        wal.purge(65).unwrap()
    } else {
        wal.purge_not_only_a_prefix(65).unwrap()
    };
    assert_eq!(purged.is_empty(), prefix_only);
    let (_, entries, _) = recover(wal.into_storage(), 2, ScanRules::default());
    replica(durable(slot(3, K, K), entries), Mutations::default())
}

#[test]
fn r3_segments_go_only_as_a_prefix() {
    let r = r3(true);
    assert_eq!(r.committer(), K);
    assert!(!holds_m_after(&r, 70));
}

#[test]
fn r3_mutant_purging_past_a_kept_segment_revives_a_dropped_record() {
    let r = r3(false);
    assert_eq!(r.committer(), K);
    assert!(holds_m_after(&r, 70), "M's Z@70 under committer K (P1)");
}

/// Storage whose segment 0 (of `size` bytes) starts with `bytes`, durable.
fn segment_zero(bytes: &[u8], size: usize) -> MemStorage {
    let mut storage = MemStorage::default();
    storage.prepare(0, size).unwrap();
    let mut aligned = AlignedVec::<{ traft::wal::BLOCK }>::new();
    aligned.extend_from_slice(bytes);
    storage.write(0, 0, &[&aligned]).unwrap();
    storage.sync(0).unwrap();
    storage
}

/// K's base frame, too large for what is left of a segment of `size`
/// bytes past `end`: appending it rolls over into the next segment.
fn k_base_overflowing(size: usize, end: usize) -> WalEntry {
    let block = traft::wal::BLOCK;
    (size - block..size)
        .map(|len| base(K, TailBitmap::prefix(5), records(K, 10..=10, len)))
        .find(|e| entry::encode(e).unwrap().len() > size - end)
        .expect("a command length that fills more than the rest")
}

/// N0b: in a recycled segment, M's base frame (`wal_seq` 1, block 0) and
/// frame 2 (M's 5..=6, block 1: planned while block 0 was in flight) were
/// written together. Frame 2's write completed; frame 1's tore after its
/// last byte, so the old lap's bytes (here 0xab) still follow it instead
/// of the zero padding. Recovery cuts at frame 1's end (frame 2 vouches
/// only below itself). The writer's next frame, K's base, does not fit in
/// the rest of the segment: it rewrites block 0 zero-padded and starts
/// segment 1; durable, acknowledged; crash. Nothing newer lies between
/// frame 1 and the stale frame 2, so the padding rule steps to it; the
/// mutant (no clearing past the end at recovery) returns M's 5..=6 and
/// loses K's base.
fn n0b(rules: ScanRules) -> Vec<WalEntry> {
    let block = traft::wal::BLOCK;
    let m_base = base(M, TailBitmap::new(), records(M, 0..=4, 8));
    let mut bytes = image(&[(m_base, fields(1, 1, 1))], block);
    let end = entry::encode(&base(M, TailBitmap::new(), records(M, 0..=4, 8)))
        .unwrap()
        .len();
    bytes[end..end + 40].fill(0xab);
    let stale = image(&[(batch(M, records(M, 5..=6, 8)), fields(2, 1, 1))], block);
    bytes.extend_from_slice(&stale);
    let size = options(1, rules).segment_size;
    let storage = segment_zero(&bytes, size);
    let (storage, entries, corrupt) = recover(storage, 2, rules);
    assert_eq!(entries.len(), 1, "cut at the torn write");
    assert!(!corrupt);
    let mut wal = Wal::open(storage, options(2, rules)).expect("open").0;
    let k_base = k_base_overflowing(size, end);
    wal.append(&mut [entry::encode(&k_base).unwrap()]).unwrap();
    assert_eq!(wal.segment(), 1, "it rolled over");
    let (_, entries, _) = recover(wal.into_storage(), 3, rules);
    entries
}

#[test]
fn n0b_recovery_clears_past_the_end_and_the_acked_base_survives() {
    let entries = n0b(ScanRules::default());
    assert_eq!(entries.len(), 2);
    assert!(matches!(&entries[1], WalEntry::Base { committer, .. } if *committer == K));
}

#[test]
fn n0b_mutant_not_clearing_brings_the_cut_frame_back_and_loses_the_base() {
    let entries = n0b(ScanRules {
        clear_past_the_end: false,
        ..Default::default()
    });
    assert_eq!(entries.len(), 2);
    assert!(
        matches!(&entries[1], WalEntry::Records { committer, .. } if *committer == M),
        "M's cut frame is back, K's acknowledged base is gone"
    );
}

/// N0b inside the end's own block: frame 1 ends at E; 32 bytes of an old
/// lap follow it, then zeros, then a cut frame 2 (M's 5..=6) later in the
/// same block (a frame written from its own memory may start mid-block).
/// Recovery cuts at E. The next append rolls over; its rewrite of block 0
/// (frame 1, then zeros) tears 64 bytes past E: the power goes before its
/// sync. Zeros now lie between frame 1 and the cut frame; the mutant, which
/// did not clear the block at recovery, takes frame 2 back.
fn n0b_own_block(rules: ScanRules) -> Vec<WalEntry> {
    let block = traft::wal::BLOCK;
    let m_base = base(M, TailBitmap::new(), records(M, 0..=4, 8));
    let end = entry::encode(&m_base).unwrap().len();
    let stale_at = (end + 32 + 256).next_multiple_of(16);
    let mut bytes = image(&[(m_base, fields(1, 1, 1))], stale_at);
    bytes[end..end + 32].fill(0xab);
    let cut = batch(M, records(M, 5..=6, 8));
    let cut_len = entry::encode(&cut).unwrap().len();
    let stale = image(&[(cut, fields(2, 1, 1))], cut_len);
    bytes.extend_from_slice(&stale);
    assert!(bytes.len() <= block, "the cut frame lies in block 0");
    bytes.resize(block, 0);
    let size = options(1, rules).segment_size;
    let storage = segment_zero(&bytes, size);
    let (storage, entries, _) = recover(storage, 2, rules);
    assert_eq!(entries.len(), 1, "cut at the old lap's bytes");
    let mut wal = Wal::open(storage, options(2, rules)).expect("open").0;
    // Making segment 1 and writing block 0 go through; its sync does not.
    wal.storage_mut().power_fails_after = Some(2);
    let k_base = k_base_overflowing(size, end);
    assert!(wal.append(&mut [entry::encode(&k_base).unwrap()]).is_err());
    let mut storage = wal.into_storage();
    storage.restore_power(|_| end + 64);
    let (_, entries, _) = recover(storage, 3, rules);
    entries
}

#[test]
fn n0b_recovery_clears_the_rest_of_the_ends_block() {
    assert_eq!(n0b_own_block(ScanRules::default()).len(), 1);
}

#[test]
fn n0b_mutant_not_clearing_takes_back_a_cut_frame_inside_the_ends_block() {
    let entries = n0b_own_block(ScanRules {
        clear_past_the_end: false,
        ..Default::default()
    });
    assert_eq!(entries.len(), 2, "the cut frame is back");
    assert!(matches!(&entries[1], WalEntry::Records { committer, .. } if *committer == M));
}
