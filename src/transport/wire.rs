//! Frames on a byte stream: reading them whole, in place and aligned.

use crate::core::{LogForward, Message};
use crate::frame::{
    self, Frame, FrameError, FrameHeader, FrameKind, Record, FRAME_ALIGN, HEADER_LEN,
};
use rkyv::rancor;
use rkyv::util::AlignedVec;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest frame a replica accepts from a peer (a base forward carries
/// the records a follower lacks, so this bounds a catch-up step).
pub const WIRE_FRAME_MAX: usize = 64 << 20;
/// Read at least this much at a time.
const READ_CHUNK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    #[error("frame of {0} bytes exceeds the wire limit of {WIRE_FRAME_MAX}")]
    TooLarge(usize),
    #[error("cannot encode a message: {0}")]
    Encode(FrameError),
    #[error("a record batch not followed by a forward without records")]
    StrayBatch,
}

/// A message as a peer sent it. A forward's records come as the record
/// batch frame the leader wrote to its own WAL, kept here whole (WAL fields
/// zero) for the follower to append as it is.
#[derive(Debug)]
pub struct Received {
    pub msg: Message,
    pub batch: Option<AlignedVec>,
}

/// Encodes `msg` as one frame.
pub fn encode_message(msg: &Message) -> Result<AlignedVec, WireError> {
    frame::encode(msg).map_err(WireError::Encode)
}

/// Encodes `forward` as one unit for a peer's queue: `batch`, the frame of
/// its records exactly as the WAL is given it, then the forward without
/// its records. Queued and sent whole, so the batch always arrives right
/// before the forward it belongs to.
pub fn encode_forward(forward: &LogForward, batch: &[u8]) -> Result<AlignedVec, WireError> {
    let head = Message::Forward(LogForward {
        leader: forward.leader,
        seq: forward.seq,
        base: forward.base.clone(),
        records: Vec::new(),
        committed: forward.committed.clone(),
        transfer_to: forward.transfer_to,
        purge_floor: forward.purge_floor,
    });
    let mut unit = AlignedVec::with_capacity(batch.len() + 256);
    unit.extend_from_slice(batch);
    frame::encode_into(&head, &mut unit).map_err(WireError::Encode)?;
    Ok(unit)
}

/// Reads whole frames from a stream into one aligned buffer. Frames are
/// padded to `FRAME_ALIGN`, so every frame in the buffer starts aligned and
/// decodes in place.
pub struct FrameReader<R> {
    stream: R,
    buf: AlignedVec,
    /// The next frame starts here.
    start: usize,
    /// Bytes read end here.
    end: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(stream: R) -> Self {
        let mut buf = AlignedVec::new();
        buf.resize(READ_CHUNK * 2, 0);
        FrameReader {
            stream,
            buf,
            start: 0,
            end: 0,
        }
    }

    /// The next whole, validated frame. Errors end the connection.
    pub async fn next(&mut self) -> Result<Frame<'_>, WireError> {
        let len = loop {
            if let Some(len) = self.buffered_frame_len()? {
                if self.end - self.start >= len {
                    break len;
                }
            }
            self.read_more().await?;
        };
        let at = self.start;
        self.start += len;
        Ok(Frame::decode(&self.buf[at..at + len])?)
    }

    /// The next message: a frame of one, or a record batch and the forward
    /// it belongs to (`encode_forward`).
    pub async fn next_message(&mut self) -> Result<Received, WireError> {
        let frame = self.next().await?;
        if frame.header.kind != FrameKind::RecordBatch {
            let msg = decode_message(&frame)?;
            return Ok(Received { msg, batch: None });
        }
        let batch: crate::frame::RecordBatch =
            rkyv::deserialize::<_, rancor::BoxedError>(frame.batch()?).map_err(|e| {
                WireError::Frame(FrameError::InvalidPayload {
                    kind: FrameKind::RecordBatch,
                    reason: e.to_string(),
                })
            })?;
        let records: Vec<Record> = batch.records;
        let mut batch = AlignedVec::with_capacity(frame.bytes.len());
        batch.extend_from_slice(frame.bytes);
        match decode_message(&self.next().await?)? {
            Message::Forward(mut forward) if forward.records.is_empty() => {
                forward.records = records;
                Ok(Received {
                    msg: Message::Forward(forward),
                    batch: Some(batch),
                })
            }
            _ => Err(WireError::StrayBatch),
        }
    }

    /// The length of the frame at `start`, once its header is in.
    fn buffered_frame_len(&self) -> Result<Option<usize>, WireError> {
        if self.end - self.start < HEADER_LEN {
            return Ok(None);
        }
        let header = FrameHeader::read(&self.buf[self.start..self.end])?;
        let len = header.frame_len();
        if len > WIRE_FRAME_MAX {
            return Err(WireError::TooLarge(len));
        }
        Ok(Some(len))
    }

    async fn read_more(&mut self) -> Result<(), WireError> {
        let need = self.buffered_frame_len()?.unwrap_or(HEADER_LEN);
        if self.start > 0 && self.start + need.max(READ_CHUNK) > self.buf.len() {
            // Move the partial frame to the front; it stays aligned.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if need.max(READ_CHUNK) > self.buf.len() - self.start {
            let size = (self.start + need.max(READ_CHUNK)).next_multiple_of(FRAME_ALIGN);
            self.buf.resize(size, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(if self.end == self.start {
                WireError::Closed
            } else {
                WireError::Truncated
            });
        }
        self.end += n;
        Ok(())
    }
}

/// Turns a validated message frame into the core's message.
pub fn decode_message(frame: &Frame<'_>) -> Result<Message, WireError> {
    let archived = frame.message()?;
    rkyv::deserialize::<Message, rancor::BoxedError>(archived).map_err(|e| {
        WireError::Frame(FrameError::InvalidPayload {
            kind: frame.header.kind,
            reason: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Message;
    use crate::ids::LeaderId;
    use crate::TailBitmap;

    fn message(n: u64) -> Message {
        Message::NeedBase {
            leader: LeaderId::new(n, 1),
            committed: TailBitmap::prefix(n * 100),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn frames_come_back_whole_across_any_split() {
        let mut bytes = Vec::new();
        for n in 0..50 {
            bytes.extend_from_slice(&encode_message(&message(n)).unwrap());
        }
        for chunk in [1, 7, 48, 100, 4096] {
            let (mut tx, rx) = tokio::io::duplex(chunk);
            let data = bytes.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                tx.write_all(&data).await.unwrap();
            });
            let mut reader = FrameReader::new(rx);
            for n in 0..50 {
                let frame = reader.next().await.unwrap();
                assert_eq!(decode_message(&frame).unwrap(), message(n));
            }
            assert!(matches!(reader.next().await, Err(WireError::Closed)));
            writer.await.unwrap();
        }
    }

    fn forward(records: Vec<Record>) -> LogForward {
        LogForward {
            leader: LeaderId::new(2, 1),
            seq: 9,
            base: None,
            records,
            committed: TailBitmap::prefix(3),
            transfer_to: None,
            purge_floor: 1,
        }
    }

    fn batch_of(records: &[Record]) -> AlignedVec {
        frame::encode(&crate::frame::RecordBatch {
            records: records.to_vec(),
        })
        .unwrap()
    }

    fn records(n: u64) -> Vec<Record> {
        (0..n)
            .map(|lsn| Record {
                author: LeaderId::new(2, 1),
                lsn,
                cmd: vec![7; 30 + lsn as usize],
                deps: (0..lsn).collect(),
            })
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_forward_arrives_with_its_batch_frame_as_sent() {
        let rs = records(5);
        let batch = batch_of(&rs);
        let mut bytes = encode_message(&message(1)).unwrap().to_vec();
        bytes.extend_from_slice(&encode_forward(&forward(rs.clone()), &batch).unwrap());
        bytes.extend_from_slice(&encode_message(&message(2)).unwrap());
        for chunk in [1, 7, 48, 4096] {
            let (mut tx, rx) = tokio::io::duplex(chunk);
            let data = bytes.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                tx.write_all(&data).await.unwrap();
            });
            let mut reader = FrameReader::new(rx);
            let first = reader.next_message().await.unwrap();
            assert_eq!((first.msg, first.batch.is_none()), (message(1), true));
            let fwd = reader.next_message().await.unwrap();
            assert_eq!(fwd.msg, Message::Forward(forward(rs.clone())));
            assert_eq!(
                fwd.batch.unwrap().as_slice(),
                batch.as_slice(),
                "the bytes sent"
            );
            assert_eq!(reader.next_message().await.unwrap().msg, message(2));
            assert!(matches!(
                reader.next_message().await,
                Err(WireError::Closed)
            ));
            writer.await.unwrap();
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_not_followed_by_a_bare_forward_is_refused() {
        let rs = records(2);
        let batch = batch_of(&rs);
        let mut before_other = batch.to_vec();
        before_other.extend_from_slice(&encode_message(&message(1)).unwrap());
        let mut before_full = batch.to_vec();
        before_full.extend_from_slice(&encode_message(&Message::Forward(forward(rs))).unwrap());
        for bytes in [before_other, before_full] {
            let mut reader = FrameReader::new(&bytes[..]);
            let got = reader.next_message().await;
            assert!(matches!(got, Err(WireError::StrayBatch)), "{got:?}");
        }
        let mut reader = FrameReader::new(&batch[..]);
        assert!(matches!(
            reader.next_message().await,
            Err(WireError::Closed)
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flipped_bit_or_a_cut_is_an_error_not_a_message() {
        let good = encode_message(&message(3)).unwrap().to_vec();
        for bit in (0..good.len() * 8).step_by(13) {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut reader = FrameReader::new(&bad[..]);
            let got = reader.next().await.and_then(|f| decode_message(&f));
            assert!(got.is_err(), "bit {bit} flipped went through");
        }
        let mut reader = FrameReader::new(&good[..good.len() - 1]);
        assert!(matches!(reader.next().await, Err(WireError::Truncated)));
    }
}
