//! Frames: the one framing used by the WAL and the wire.
//!
//! A frame is a fixed [`FrameHeader`] followed by an rkyv payload and zero
//! padding to [`FRAME_ALIGN`]. Payloads are encoded once; whoever receives the
//! bytes — a follower from a socket, recovery from a segment — validates them
//! (checksums, then rkyv's bytecheck, then the payload's own invariants) and
//! reads the archived records in place. Decoding never panics: any damaged
//! input gives a [`FrameError`].

mod header;
mod log;
mod record;
mod wire;

pub use header::{
    FrameHeader, FrameKind, WalFields, FORMAT_VERSION, FRAME_ALIGN, FRAME_PAYLOAD_MAX, HEADER_LEN,
    MAGIC,
};
pub use log::{ArchivedBaseFrame, ArchivedCommittedFrame, BaseFrame, CommittedFrame};
pub use record::{ArchivedRecord, ArchivedRecordBatch, Record, RecordBatch};
pub use wire::{ArchivedHello, Hello};

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Portable, Serialize};
use thiserror::Error;

/// Why bytes were not accepted as a frame.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("bad frame magic {0:#010x}")]
    BadMagic(u32),
    #[error("frame header checksum mismatch")]
    HeaderChecksum,
    #[error("unsupported frame format version {0}")]
    UnsupportedVersion(u8),
    #[error("reserved frame header bytes are not zero")]
    Reserved,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame payload of {len} bytes exceeds the limit of {FRAME_PAYLOAD_MAX}")]
    PayloadTooLarge { len: usize },
    #[error("frame payload checksum mismatch")]
    PayloadChecksum,
    #[error("frame padding is not zero")]
    Padding,
    #[error("frame does not start at a {FRAME_ALIGN}-byte boundary")]
    Misaligned,
    #[error("frame kind {expected:?} expected, found {found:?}")]
    WrongKind {
        expected: FrameKind,
        found: FrameKind,
    },
    #[error("invalid {kind:?} payload: {reason}")]
    InvalidPayload { kind: FrameKind, reason: String },
    #[error("cannot encode {kind:?} payload: {reason}")]
    Encode { kind: FrameKind, reason: String },
}

/// A type that travels as a frame payload.
pub trait Payload:
    for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::BoxedError>>
{
    const KIND: FrameKind;
}

impl Payload for Record {
    const KIND: FrameKind = FrameKind::Record;
}

impl Payload for RecordBatch {
    const KIND: FrameKind = FrameKind::RecordBatch;
}

impl Payload for BaseFrame {
    const KIND: FrameKind = FrameKind::Base;
}

impl Payload for CommittedFrame {
    const KIND: FrameKind = FrameKind::Committed;
}

impl Payload for crate::core::Message {
    const KIND: FrameKind = FrameKind::Message;
}

impl Payload for Hello {
    const KIND: FrameKind = FrameKind::Hello;
}

/// Encodes `value` as one frame (WAL fields zero), in a buffer aligned for
/// reading in place.
pub fn encode<P: Payload>(value: &P) -> Result<AlignedVec, FrameError> {
    let mut buf = AlignedVec::new();
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Appends `value` as one frame to `buf`, whose length must be a multiple of
/// [`FRAME_ALIGN`] (so frames can be packed back to back).
pub fn encode_into<P: Payload>(value: &P, buf: &mut AlignedVec) -> Result<(), FrameError> {
    assert_eq!(buf.len() % FRAME_ALIGN, 0, "frames start aligned");
    let frame_start = buf.len();
    buf.resize(frame_start + HEADER_LEN, 0);
    let taken = std::mem::take(buf);
    let written =
        rkyv::api::high::to_bytes_in::<_, rancor::BoxedError>(value, taken).map_err(|e| {
            FrameError::Encode {
                kind: P::KIND,
                reason: e.to_string(),
            }
        })?;
    *buf = written;
    let payload_start = frame_start + HEADER_LEN;
    let payload_len = buf.len() - payload_start;
    if payload_len > FRAME_PAYLOAD_MAX {
        buf.resize(frame_start, 0);
        return Err(FrameError::PayloadTooLarge { len: payload_len });
    }
    let header = FrameHeader {
        kind: P::KIND,
        payload_len: payload_len as u32,
        payload_crc: crc32c::crc32c(&buf[payload_start..]),
        wal: WalFields::default(),
    };
    buf.resize(frame_start + header.frame_len(), 0);
    header.write(&mut buf[frame_start..]);
    Ok(())
}

/// A checked frame: its header and its validated payload, read in place.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    /// The validated payload bytes.
    pub payload: &'a [u8],
    /// The whole frame, padding included.
    pub bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Checks the frame at the start of `buf`: header, length, padding,
    /// payload checksum, and the archived payload of its kind.
    pub fn decode(buf: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if buf.as_ptr() as usize % FRAME_ALIGN != 0 {
            return Err(FrameError::Misaligned);
        }
        let header = FrameHeader::read(buf)?;
        let frame_len = header.frame_len();
        if buf.len() < frame_len {
            return Err(FrameError::Truncated {
                needed: frame_len,
                available: buf.len(),
            });
        }
        let payload_end = HEADER_LEN + header.payload_len as usize;
        if buf[payload_end..frame_len].iter().any(|&b| b != 0) {
            return Err(FrameError::Padding);
        }
        let payload = &buf[HEADER_LEN..payload_end];
        if crc32c::crc32c(payload) != header.payload_crc {
            return Err(FrameError::PayloadChecksum);
        }
        match header.kind {
            FrameKind::Record => check::<ArchivedRecord>(header.kind, payload).map(drop)?,
            FrameKind::RecordBatch => {
                check::<ArchivedRecordBatch>(header.kind, payload).map(drop)?
            }
            FrameKind::Base => check::<ArchivedBaseFrame>(header.kind, payload).map(drop)?,
            FrameKind::Committed => {
                check::<ArchivedCommittedFrame>(header.kind, payload).map(drop)?
            }
            FrameKind::Message => {
                check::<crate::core::message::ArchivedMessage>(header.kind, payload).map(drop)?
            }
            FrameKind::Hello => check::<ArchivedHello>(header.kind, payload).map(drop)?,
        }
        Ok(Frame {
            header,
            payload,
            bytes: &buf[..frame_len],
        })
    }

    /// The payload as a record; the frame must be of kind `Record`.
    pub fn record(&self) -> Result<&'a ArchivedRecord, FrameError> {
        self.expect(FrameKind::Record)?;
        // SAFETY: `decode` validated these bytes as an `ArchivedRecord`
        // (bytecheck and `Verify`), and `Frame` is only built by `decode`.
        Ok(unsafe { rkyv::access_unchecked::<ArchivedRecord>(self.payload) })
    }

    /// The payload as a batch; the frame must be of kind `RecordBatch`.
    pub fn batch(&self) -> Result<&'a ArchivedRecordBatch, FrameError> {
        self.expect(FrameKind::RecordBatch)?;
        // SAFETY: as in `record`: validated by `decode` as this type.
        Ok(unsafe { rkyv::access_unchecked::<ArchivedRecordBatch>(self.payload) })
    }

    /// The payload as a base or merge frame.
    pub fn base(&self) -> Result<&'a ArchivedBaseFrame, FrameError> {
        self.expect(FrameKind::Base)?;
        // SAFETY: as in `record`: validated by `decode` as this type.
        Ok(unsafe { rkyv::access_unchecked::<ArchivedBaseFrame>(self.payload) })
    }

    /// The payload as a `committed` frame.
    pub fn committed(&self) -> Result<&'a ArchivedCommittedFrame, FrameError> {
        self.expect(FrameKind::Committed)?;
        // SAFETY: as in `record`: validated by `decode` as this type.
        Ok(unsafe { rkyv::access_unchecked::<ArchivedCommittedFrame>(self.payload) })
    }

    pub fn message(&self) -> Result<&'a crate::core::message::ArchivedMessage, FrameError> {
        self.expect(FrameKind::Message)?;
        // SAFETY: as in `record`: validated by `decode` as this type.
        Ok(
            unsafe {
                rkyv::access_unchecked::<crate::core::message::ArchivedMessage>(self.payload)
            },
        )
    }

    pub fn hello(&self) -> Result<&'a ArchivedHello, FrameError> {
        self.expect(FrameKind::Hello)?;
        // SAFETY: as in `record`: validated by `decode` as this type.
        Ok(unsafe { rkyv::access_unchecked::<ArchivedHello>(self.payload) })
    }

    fn expect(&self, expected: FrameKind) -> Result<(), FrameError> {
        if self.header.kind == expected {
            Ok(())
        } else {
            Err(FrameError::WrongKind {
                expected,
                found: self.header.kind,
            })
        }
    }
}

fn check<'a, T>(kind: FrameKind, payload: &'a [u8]) -> Result<&'a T, FrameError>
where
    T: Portable + for<'b> CheckBytes<HighValidator<'b, rancor::BoxedError>>,
{
    rkyv::access::<T, rancor::BoxedError>(payload).map_err(|e| FrameError::InvalidPayload {
        kind,
        reason: e.to_string(),
    })
}

/// Rewrites the WAL fields of the encoded frame at the start of `frame`
/// (and its header checksum); the payload is untouched.
pub fn set_wal_fields(frame: &mut [u8], wal: WalFields) -> Result<(), FrameError> {
    let mut header = FrameHeader::read(frame)?;
    header.wal = wal;
    header.write(frame);
    Ok(())
}
