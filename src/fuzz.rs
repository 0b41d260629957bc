//! Entry points that take arbitrary bytes, one per decoder of untrusted
//! input: the fuzz targets in `fuzz/` call them, and `tests/fuzz_corpus.rs`
//! replays the kept corpus through them in every test run. Each returns
//! normally for any input; a panic is a finding.

use crate::apply::{KvCommand, KvReply, KvStore, StateMachine};
use crate::core::{Config, Message, Replica};
use crate::frame::{Frame, FrameHeader, FrameKind, WalFields, FRAME_ALIGN, HEADER_LEN};
use crate::resp::{kv_reply, parse_command, request_of, Request};
use crate::transport::{decode_message, encode_message, FrameReader};
use crate::wal::{entry, MemStorage, Storage, Wal, WalOptions, BLOCK};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Segments a WAL input is cut into: small, so that inputs span several.
pub const FUZZ_SEGMENT_SIZE: usize = 4 * BLOCK;
/// Segments one input fills, at most.
pub const FUZZ_SEGMENTS_MAX: usize = 4;

/// A replica's inbound byte stream, read as a connection is: a greeting
/// frame, then messages (a forward's records as the batch frame before it).
/// Every message that validates must encode back to a frame that decodes to
/// the same message, and a forward's batch must hold exactly its records.
pub fn wire_stream(bytes: &[u8]) {
    let mut reader = FrameReader::new(bytes);
    match ready(reader.next()) {
        Ok(greeting) => drop(greeting.hello()),
        Err(_) => return,
    }
    while let Ok(received) = ready(reader.next_message()) {
        assert_round_trip(&received.msg);
        if let (Some(batch), Message::Forward(forward)) = (&received.batch, &received.msg) {
            let frame = Frame::decode(batch).expect("a received batch frame decodes again");
            let held: crate::frame::RecordBatch =
                rkyv::deserialize::<_, rkyv::rancor::BoxedError>(frame.batch().expect("a batch"))
                    .expect("a received batch deserializes again");
            assert_eq!(
                held.records, forward.records,
                "the batch is the forward's records"
            );
        }
    }
}

/// Polls a future over a byte slice, which is always ready.
fn ready<F: Future>(future: F) -> F::Output {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("a byte slice is always ready"),
    }
}

/// A message frame with a right checksum around an arbitrary payload:
/// reaches the payload validation that a raw stream (almost never carrying
/// a valid checksum) does not.
pub fn wire_payload(bytes: &[u8]) {
    let mut frame = Vec::new();
    seal(FrameKind::Message, bytes, WalFields::default(), &mut frame);
    let mut aligned = rkyv::util::AlignedVec::<FRAME_ALIGN>::new();
    aligned.extend_from_slice(&frame);
    let Ok(frame) = Frame::decode(&aligned) else {
        return;
    };
    if let Ok(msg) = decode_message(&frame) {
        assert_round_trip(&msg);
    }
}

fn assert_round_trip(msg: &Message) {
    let again = encode_message(msg).expect("a decoded message encodes");
    let frame = Frame::decode(&again).expect("an encoded message frame decodes");
    let back = decode_message(&frame).expect("an encoded message decodes");
    assert_eq!(&back, msg, "a message survives encode and decode");
}

/// A snapshot file, as a replica reads one from its disk or a peer: it
/// validates or is refused, never a panic; one that validates encodes back
/// to a file that reads the same.
pub fn snapshot_file(bytes: &[u8]) {
    let mut aligned = rkyv::util::AlignedVec::<FRAME_ALIGN>::new();
    aligned.extend_from_slice(bytes);
    let Ok(snapshot) = crate::snapshot::Snapshot::from_bytes(aligned) else {
        return;
    };
    let meta = snapshot.meta();
    let entries: Vec<(&[u8], &[u8])> = snapshot.iter().collect();
    assert_eq!(
        entries.len() as u64,
        meta.entries,
        "the meta counts the entries"
    );
    let again = crate::snapshot::encode(&meta.applied, &meta.config, entries.iter().copied())
        .expect("a valid snapshot encodes");
    let back = crate::snapshot::Snapshot::from_bytes(again).expect("an encoded snapshot reads");
    assert_eq!(back.meta().applied, meta.applied);
    assert_eq!(back.meta().config, meta.config);
    assert!(back.iter().eq(entries.iter().copied()), "the same entries");
}

/// A client's RESP byte stream, taken as the server takes it: requests
/// parsed one after another, each read into a command; KV commands go
/// through their log encoding and are applied to a store, and the reply is
/// written out.
pub fn resp_stream(bytes: &[u8]) {
    let store = KvStore::default();
    let mut rest = bytes;
    let mut out = Vec::new();
    while let Ok(Some((args, used))) = parse_command(rest) {
        assert!(
            used > 0 && used <= rest.len(),
            "a parse consumes bytes it has"
        );
        rest = &rest[used..];
        if args.is_empty() {
            continue; // an empty line: nothing asked
        }
        let command = match request_of(args) {
            Request::Kv(command) => command,
            Request::Answer(reply) => {
                reply.write_to(&mut out);
                continue;
            }
            Request::Info | Request::Save => continue,
        };
        let encoded = command.encode();
        assert_eq!(
            KvCommand::decode(&encoded).as_ref(),
            Ok(&command),
            "a command survives its log encoding"
        );
        let _ = store.classify(&encoded);
        let result = if command.read_only() {
            store.read(&encoded)
        } else {
            store.apply(&encoded)
        };
        let reply = KvReply::decode(&result).expect("the store's reply decodes");
        kv_reply(reply).write_to(&mut out);
    }
}

/// Recovery over arbitrary segment bytes: the input is cut into segments,
/// the WAL opened over them, the frames decoded into entries, and a replica
/// started from them.
pub fn wal_segments(bytes: &[u8]) {
    recover_segments(bytes);
}

/// What `wal_segments` does; the number of WAL entries the replica
/// started from, if recovery got that far.
fn recover_segments(bytes: &[u8]) -> Option<usize> {
    let mut storage = MemStorage::default();
    for (index, chunk) in bytes
        .chunks(FUZZ_SEGMENT_SIZE)
        .take(FUZZ_SEGMENTS_MAX)
        .enumerate()
    {
        let mut segment = rkyv::util::AlignedVec::<{ crate::wal::BLOCK }>::new();
        segment.extend_from_slice(chunk);
        segment.resize(FUZZ_SEGMENT_SIZE, 0);
        let index = index as u64;
        storage.prepare(index, FUZZ_SEGMENT_SIZE).expect("memory");
        storage.write(index, 0, &[&segment]).expect("memory");
        storage.sync(index).expect("memory");
    }
    recover(storage)
}

/// Recovery over frames whose checksums and sequence numbers are right but
/// whose payloads are arbitrary: the input is a list of (kind, length,
/// payload) triples, sealed into frames and laid out as the WAL writer
/// would. This reaches the payload validation and the replay that raw
/// bytes (which almost never carry a valid checksum) do not.
pub fn wal_payloads(bytes: &[u8]) {
    recover_segments(&sealed_log(bytes));
}

/// The log `wal_payloads` recovers from: each triple sealed into a frame.
fn sealed_log(bytes: &[u8]) -> Vec<u8> {
    let kinds = [
        FrameKind::Record,
        FrameKind::RecordBatch,
        FrameKind::Base,
        FrameKind::Committed,
    ];
    let mut log = Vec::new();
    let mut rest = bytes;
    let mut wal_seq = crate::wal::FIRST_WAL_SEQ;
    while rest.len() >= 3 {
        let kind = kinds[rest[0] as usize % kinds.len()];
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let wal = WalFields {
            wal_seq,
            incarnation: 1,
            durable_upto: wal_seq,
        };
        seal(kind, payload, wal, &mut log);
        wal_seq += 1;
    }
    log
}

/// Appends a frame of `kind` around `payload`, as the encoder lays it out;
/// like the writer, starts the next segment when it does not fit in this one.
fn seal(kind: FrameKind, payload: &[u8], wal: WalFields, out: &mut Vec<u8>) {
    debug_assert_eq!(out.len() % FRAME_ALIGN, 0);
    let header = FrameHeader {
        kind,
        payload_len: payload.len() as u32,
        payload_crc: crc32c::crc32c(payload),
        wal,
    };
    let room = FUZZ_SEGMENT_SIZE - out.len() % FUZZ_SEGMENT_SIZE;
    if header.frame_len() > room && header.frame_len() <= FUZZ_SEGMENT_SIZE {
        out.resize(out.len() + room, 0);
    }
    let start = out.len();
    out.resize(start + header.frame_len(), 0);
    header.write(&mut out[start..]);
    out[start + HEADER_LEN..start + HEADER_LEN + payload.len()].copy_from_slice(payload);
}

fn recover(storage: MemStorage) -> Option<usize> {
    let options = WalOptions {
        segment_size: FUZZ_SEGMENT_SIZE,
        incarnation: 2,
        rules: Default::default(),
    };
    let (_, recovered) = Wal::open(storage, options).ok()?;
    let frames: Result<Vec<_>, _> = recovered
        .frames
        .iter()
        .map(|f| Frame::decode(&f.bytes))
        .collect();
    let frames = frames.expect("recovery returns only frames that decode");
    let entries = entry::decode(frames, crate::LeaderId::ZERO).ok()?;
    let count = entries.len();
    let durable = crate::core::Durable {
        slot: None,
        wal: entries,
        corrupted: recovered.corruption.is_some(),
        snapshot: None,
    };
    let config = Config::uniform(1..=3).expect("a valid config");
    let _ = Replica::new(
        1,
        config,
        Default::default(),
        crate::sim::kv::KvConflicts,
        durable,
        0,
        1,
    );
    Some(count)
}

/// Well-formed inputs for each target (a starting corpus): real frames,
/// commands and WAL segments, which the fuzzer then mutates.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::core::{LogForward, WalEntry};
    use crate::frame::{Hello, Record};
    use crate::{LeaderId, TailBitmap};

    let c = LeaderId::new(3, 1);
    let record = |lsn: u64| Record {
        author: c,
        lsn,
        cmd: KvCommand::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }
        .encode(),
        deps: (0..lsn).collect(),
    };
    let committed: TailBitmap = (0u64..3).collect();
    let messages = [
        Message::Forward(LogForward {
            leader: c,
            seq: 7,
            base: Some(TailBitmap::new()),
            records: vec![record(0), record(1)],
            committed: committed.clone(),
            transfer_to: None,
            purge_floor: 2,
        }),
        Message::Ack {
            leader: c,
            seq: 7,
            acked: committed.clone(),
            committed: committed.clone(),
        },
        Message::Refuse {
            leader: c,
            vote: LeaderId::new(4, 2),
            committer: c,
            max_lsn: Some(2),
        },
        Message::Probe {
            candidate: LeaderId::new(4, 1),
            committer: c,
            max_lsn: Some(2),
        },
        Message::ProbeReply {
            candidate: LeaderId::new(4, 1),
            would_grant: true,
            vote: c,
            committer: c,
            max_lsn: None,
        },
    ];
    let mut wire = crate::frame::encode(&Hello {
        cluster_id: 1,
        from: 1,
        to: 2,
    })
    .expect("a hello encodes")
    .to_vec();
    for msg in &messages {
        wire.extend_from_slice(&encode_message(msg).expect("a message encodes"));
    }
    // A forward as a leader sends it: its records' batch frame, then it.
    if let Message::Forward(forward) = &messages[0] {
        let batch = crate::frame::encode(&crate::frame::RecordBatch {
            records: forward.records.clone(),
        })
        .expect("a batch encodes");
        let unit = crate::transport::encode_forward(forward, &batch).expect("a forward encodes");
        wire.extend_from_slice(&unit);
    }

    let resp =
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n".to_vec();

    let entries = [
        WalEntry::Base {
            committer: c,
            keep: TailBitmap::new(),
            records: vec![record(0)],
            committed: TailBitmap::new(),
        },
        WalEntry::Records {
            committer: c,
            records: vec![record(1), record(2)],
        },
        WalEntry::Committed { committed },
    ];
    let mut storage = MemStorage::default();
    storage.prepare(0, FUZZ_SEGMENT_SIZE).expect("memory");
    let options = WalOptions {
        segment_size: FUZZ_SEGMENT_SIZE,
        incarnation: 1,
        rules: Default::default(),
    };
    let (mut wal, _) = Wal::open(storage, options).expect("an empty WAL opens");
    let mut payloads = Vec::new();
    for e in &entries {
        let frame = entry::encode(e).expect("an entry encodes");
        let decoded = Frame::decode(&frame).expect("an encoded entry decodes");
        let kind = [
            FrameKind::Record,
            FrameKind::RecordBatch,
            FrameKind::Base,
            FrameKind::Committed,
        ]
        .iter()
        .position(|&k| k == decoded.header.kind)
        .expect("a WAL frame kind");
        payloads.push(kind as u8);
        payloads.extend_from_slice(&(decoded.payload.len() as u16).to_le_bytes());
        payloads.extend_from_slice(decoded.payload);
        wal.append(&mut [frame]).expect("memory");
    }
    let segments: Vec<u8> = wal
        .storage()
        .segments()
        .expect("memory")
        .into_iter()
        .flat_map(|i| wal.storage().read(i).expect("memory").to_vec())
        .collect();
    let payload = Frame::decode(&encode_message(&messages[0]).expect("a message encodes"))
        .expect("an encoded message decodes")
        .payload
        .to_vec();
    let snapshot_entries: Vec<(Vec<u8>, Vec<u8>)> = (0..20u8)
        .map(|i| (vec![b'k', i], vec![i; i as usize]))
        .collect();
    let snapshot = crate::snapshot::encode(
        &(0u64..3).collect(),
        &Config::uniform(1..=3).expect("a config"),
        snapshot_entries.iter().map(|(k, v)| (&k[..], &v[..])),
    )
    .expect("a snapshot encodes")
    .to_vec();
    vec![
        ("wire_stream", wire),
        ("wire_payload", payload),
        ("resp_stream", resp),
        ("wal_segments", segments),
        ("wal_payloads", payloads),
        ("snapshot_file", snapshot),
    ]
}

/// The entry point of the target named `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "wire_stream" => wire_stream,
        "wire_payload" => wire_payload,
        "resp_stream" => resp_stream,
        "wal_segments" => wal_segments,
        "wal_payloads" => wal_payloads,
        "snapshot_file" => snapshot_file,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_seeds_recover_every_entry() {
        let seeds = seeds();
        let input = |name| &seeds.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(recover_segments(input("wal_segments")), Some(3));
        let log = sealed_log(input("wal_payloads"));
        assert_eq!(recover_segments(&log), Some(3));
    }
}
