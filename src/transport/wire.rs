//! Frames on a byte stream: reading them whole, in place and aligned.

use crate::core::Message;
use crate::frame::{self, Frame, FrameError, FrameHeader, FRAME_ALIGN, HEADER_LEN};
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
}

/// Encodes `msg` as one frame.
pub fn encode_message(msg: &Message) -> Result<AlignedVec, WireError> {
    frame::encode(msg).map_err(WireError::Encode)
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
