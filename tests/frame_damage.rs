//! Frames survive a round trip, and damaged bytes never get through:
//! every bit flip, every truncation, random bytes, valid checksums around an
//! invalid payload.

use proptest::prelude::*;
use rkyv::util::AlignedVec;
use traft::frame::{
    self, set_wal_fields, Frame, FrameError, FrameKind, Record, RecordBatch, WalFields,
    FRAME_ALIGN, HEADER_LEN,
};
use traft::{LeaderId, TailBitmap};

fn record(lsn: u64, deps: &[u64]) -> Record {
    Record {
        author: LeaderId::new(3, 2),
        lsn,
        cmd: format!("SET k{lsn} v").into_bytes(),
        deps: deps.iter().copied().filter(|&d| d < lsn).collect(),
    }
}

fn batch(lsns: std::ops::Range<u64>) -> RecordBatch {
    RecordBatch {
        records: lsns
            .map(|l| record(l, &[l / 2, l.saturating_sub(1)]))
            .collect(),
    }
}

/// Copies `bytes` into a fresh aligned buffer (frames are read in place).
fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut buf: AlignedVec = AlignedVec::with_capacity(bytes.len());
    buf.extend_from_slice(bytes);
    buf
}

/// Re-checksums header and payload after tampering, to reach payload validation.
fn reseal(buf: &mut AlignedVec) {
    let len = u32::from_le_bytes(buf[8..12].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&buf[HEADER_LEN..HEADER_LEN + len]);
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&buf[..44]);
    buf[44..48].copy_from_slice(&header_crc.to_le_bytes());
}

#[test]
fn batch_round_trips_and_reads_in_place() {
    let original = batch(10..20);
    let encoded = frame::encode(&original).unwrap();
    assert_eq!(encoded.len() % FRAME_ALIGN, 0);
    let frame = Frame::decode(&encoded).unwrap();
    assert_eq!(frame.header.kind, FrameKind::RecordBatch);
    assert_eq!(frame.bytes.len(), encoded.len());
    let archived = frame.batch().unwrap();
    // Read in place, without deserializing.
    assert_eq!(archived.records().len(), 10);
    for (a, r) in archived.records().iter().zip(&original.records) {
        assert_eq!(a.lsn(), r.lsn);
        assert_eq!(a.author(), r.author);
        assert_eq!(a.cmd(), &r.cmd[..]);
        assert_eq!(a.deps().to_owned(), r.deps);
        assert!(a.deps().is_subset(TailBitmap::prefix(r.lsn).view()));
    }
    let owned: RecordBatch = rkyv::deserialize::<_, rkyv::rancor::Error>(archived).unwrap();
    assert_eq!(owned, original);
    assert!(matches!(frame.record(), Err(FrameError::WrongKind { .. })));
}

#[test]
fn frames_pack_back_to_back() {
    let mut buf: AlignedVec = AlignedVec::new();
    frame::encode_into(&record(7, &[1, 2]), &mut buf).unwrap();
    frame::encode_into(&batch(0..3), &mut buf).unwrap();
    let first = Frame::decode(&buf).unwrap();
    assert_eq!(first.record().unwrap().lsn(), 7);
    let second = Frame::decode(&buf[first.bytes.len()..]).unwrap();
    assert_eq!(second.batch().unwrap().records().len(), 3);
}

#[test]
fn wal_fields_rewrite_keeps_payload() {
    let mut encoded = frame::encode(&batch(0..4)).unwrap();
    let payload_before = encoded[HEADER_LEN..].to_vec();
    let wal = WalFields {
        wal_seq: 41,
        incarnation: 3,
        durable_upto: 40,
    };
    set_wal_fields(&mut encoded, wal).unwrap();
    assert_eq!(&encoded[HEADER_LEN..], &payload_before[..]);
    let frame = Frame::decode(&encoded).unwrap();
    assert_eq!(frame.header.wal, wal);
}

#[test]
fn every_bit_flip_is_rejected() {
    let encoded = frame::encode(&batch(5..7)).unwrap();
    assert!(Frame::decode(&encoded).is_ok());
    let mut flipped = aligned(&encoded);
    let mut flips = 0;
    for byte in 0..encoded.len() {
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            assert!(
                Frame::decode(&flipped).is_err(),
                "flip of bit {bit} in byte {byte} accepted"
            );
            flipped[byte] ^= 1 << bit;
            flips += 1;
        }
    }
    assert_eq!(flips, encoded.len() * 8);
    assert!(Frame::decode(&flipped).is_ok());
}

#[test]
fn every_truncation_is_rejected() {
    let encoded = frame::encode(&batch(0..5)).unwrap();
    for len in 0..encoded.len() {
        match Frame::decode(&encoded[..len]) {
            Err(FrameError::Truncated { available, .. }) => assert_eq!(available, len),
            other => panic!("truncation to {len} gave {other:?}"),
        }
    }
    assert!(Frame::decode(&encoded).is_ok());
}

#[test]
fn misaligned_buffer_is_rejected() {
    let encoded = frame::encode(&record(1, &[0])).unwrap();
    let mut shifted: AlignedVec = AlignedVec::new();
    shifted.push(0);
    shifted.extend_from_slice(&encoded);
    assert_eq!(
        Frame::decode(&shifted[1..]).unwrap_err(),
        FrameError::Misaligned
    );
}

#[test]
fn invalid_payload_with_valid_checksums_is_rejected() {
    let depends_on_itself = Record {
        author: LeaderId::new(1, 1),
        lsn: 9,
        cmd: vec![],
        deps: [9].into_iter().collect(),
    };
    let encoded = frame::encode(&depends_on_itself).unwrap();
    assert!(matches!(
        Frame::decode(&encoded),
        Err(FrameError::InvalidPayload { .. })
    ));
    let unordered = RecordBatch {
        records: vec![record(5, &[]), record(4, &[])],
    };
    let encoded = frame::encode(&unordered).unwrap();
    assert!(matches!(
        Frame::decode(&encoded),
        Err(FrameError::InvalidPayload { .. })
    ));
}

#[test]
fn tampered_payload_with_valid_checksums_never_panics() {
    // Every byte of a payload set to a few values and re-checksummed:
    // decoding rejects it or yields a record that is valid, never panics.
    let encoded = frame::encode(&record(100, &[3, 64, 99])).unwrap();
    let mut tampered = aligned(&encoded);
    let mut rejected = 0;
    for byte in HEADER_LEN..encoded.len() {
        for value in [0u8, 1, 0x3f, 0x80, 0xff] {
            let old = tampered[byte];
            tampered[byte] = value;
            reseal(&mut tampered);
            match Frame::decode(&tampered) {
                Ok(frame) => {
                    let r = frame.record().unwrap();
                    r.deps().check_canonical().unwrap();
                    assert!(r.deps().max().is_none_or(|d| d < r.lsn()));
                }
                Err(_) => rejected += 1,
            }
            tampered[byte] = old;
        }
    }
    assert!(rejected > 0);
    reseal(&mut tampered);
    assert!(Frame::decode(&tampered).is_ok());
}

#[test]
fn non_canonical_bitmap_is_rejected() {
    // deps = [0,37) + {5000}: offset 37, tail word 78 (LSNs 4992..5056).
    let r = Record {
        author: LeaderId::new(7, 9),
        lsn: 10_000,
        cmd: vec![],
        deps: (0..37).chain([5000]).collect(),
    };
    let encoded = frame::encode(&r).unwrap();
    let mut fields = 37u64.to_le_bytes().to_vec();
    fields.extend_from_slice(&78u64.to_le_bytes());
    let at = encoded[HEADER_LEN..]
        .windows(16)
        .position(|w| w == &fields[..])
        .expect("deps offset and start in the payload")
        + HEADER_LEN;
    let tampers: [(usize, u64); 2] = [
        // The tail word moved onto the prefix word, whose low bits are unset.
        (at + 8, 0),
        // The offset moved into the tail word, whose low bits are unset.
        (at, 5000),
    ];
    for (field, value) in tampers {
        let mut tampered = aligned(&encoded);
        tampered[field..field + 8].copy_from_slice(&value.to_le_bytes());
        reseal(&mut tampered);
        let err = Frame::decode(&tampered).unwrap_err();
        assert!(
            matches!(&err, FrameError::InvalidPayload { reason, .. } if reason.contains("canonical")),
            "{err}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let buf = aligned(&bytes);
        prop_assert!(Frame::decode(&buf).is_err());
    }

    #[test]
    fn random_payload_behind_a_valid_header_never_panics(
        kind in prop_oneof![Just(1u8), Just(2u8)],
        payload in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut buf: AlignedVec = AlignedVec::new();
        buf.resize(HEADER_LEN, 0);
        buf[0..4].copy_from_slice(b"TRFT");
        buf[4] = 1;
        buf[5] = kind;
        buf[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&payload);
        buf.resize(buf.len().div_ceil(FRAME_ALIGN) * FRAME_ALIGN, 0);
        reseal(&mut buf);
        let _ = Frame::decode(&buf);
    }
}
