//! The fixed frame header, shared by the WAL and the wire.
//!
//! ```text
//! 0   magic "TRFT"         4   version u8    5  kind u8    6  reserved u16
//! 8   payload_len u32      12  payload_crc u32 (CRC32C of the payload)
//! 16  wal_seq u64          24  incarnation u64             32 durable_upto u64
//! 40  reserved u32         44  header_crc u32 (CRC32C of bytes 0..44)
//! ```
//! All little-endian. The WAL fields are zero on the wire; the WAL rewrites
//! them (and `header_crc`) when it appends, leaving payload and `payload_crc`
//! untouched, so the payload bytes a leader writes are the bytes it sends.

use super::FrameError;

pub const HEADER_LEN: usize = 48;
pub const MAGIC: [u8; 4] = *b"TRFT";
pub const FORMAT_VERSION: u8 = 1;
/// Frames start at, and are padded to, this alignment so that archived
/// payloads can be read in place.
pub const FRAME_ALIGN: usize = 16;
/// The largest payload a frame may carry.
pub const FRAME_PAYLOAD_MAX: usize = 64 << 20;

/// What a frame's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    Record = 1,
    RecordBatch = 2,
    Base = 3,
    Committed = 4,
    /// A message between replicas (wire only).
    Message = 5,
    /// The first frame on a replica connection (wire only).
    Hello = 6,
}

impl FrameKind {
    fn from_u8(value: u8) -> Option<FrameKind> {
        match value {
            1 => Some(FrameKind::Record),
            2 => Some(FrameKind::RecordBatch),
            3 => Some(FrameKind::Base),
            4 => Some(FrameKind::Committed),
            5 => Some(FrameKind::Message),
            6 => Some(FrameKind::Hello),
            _ => None,
        }
    }
}

/// The header fields the WAL fills in (DESIGN.md §4); zero on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalFields {
    /// One more per frame across the whole WAL, never reset.
    pub wal_seq: u64,
    /// The boot counter of the writer.
    pub incarnation: u64,
    /// The `wal_seq` below which the writer's frames were durable when this one was issued.
    pub durable_upto: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub payload_len: u32,
    pub payload_crc: u32,
    pub wal: WalFields,
}

impl FrameHeader {
    /// Bytes the whole frame occupies: header, payload, zero padding.
    pub fn frame_len(&self) -> usize {
        padded(HEADER_LEN + self.payload_len as usize)
    }

    pub(crate) fn write(&self, out: &mut [u8]) {
        let out = &mut out[..HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = self.kind as u8;
        out[6..8].fill(0);
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        out[16..24].copy_from_slice(&self.wal.wal_seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.wal.incarnation.to_le_bytes());
        out[32..40].copy_from_slice(&self.wal.durable_upto.to_le_bytes());
        out[40..44].fill(0);
        let crc = crc32c::crc32c(&out[..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses and checks a header: magic, checksum, version, reserved bytes,
    /// kind and the payload limit. Says nothing about the payload.
    pub fn read(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        let bytes = &bytes[..HEADER_LEN];
        if bytes[0..4] != MAGIC {
            return Err(FrameError::BadMagic(le_u32(&bytes[0..4])));
        }
        if crc32c::crc32c(&bytes[..44]) != le_u32(&bytes[44..48]) {
            return Err(FrameError::HeaderChecksum);
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(FrameError::UnsupportedVersion(bytes[4]));
        }
        if bytes[6..8] != [0, 0] || bytes[40..44] != [0, 0, 0, 0] {
            return Err(FrameError::Reserved);
        }
        let kind = FrameKind::from_u8(bytes[5]).ok_or(FrameError::UnknownKind(bytes[5]))?;
        let payload_len = le_u32(&bytes[8..12]);
        if payload_len as usize > FRAME_PAYLOAD_MAX {
            return Err(FrameError::PayloadTooLarge {
                len: payload_len as usize,
            });
        }
        Ok(FrameHeader {
            kind,
            payload_len,
            payload_crc: le_u32(&bytes[12..16]),
            wal: WalFields {
                wal_seq: le_u64(&bytes[16..24]),
                incarnation: le_u64(&bytes[24..32]),
                durable_upto: le_u64(&bytes[32..40]),
            },
        })
    }
}

/// `len` rounded up to [`FRAME_ALIGN`].
pub(crate) const fn padded(len: usize) -> usize {
    len.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}
