//! TCP between replicas: one connection per direction and pair. The side
//! that connects only sends, the side that accepts only receives, so each
//! connection has one writer and one reader and no request/response pairing.
//!
//! Every message is a checksummed frame (`frame::FrameKind::Message`), the
//! first frame on a connection a `Hello` naming the cluster and both ends.
//! A forward's records travel as the record batch frame the leader wrote to
//! its WAL, right before the forward: the follower appends those bytes.
//! Anything that does not validate closes the connection with a logged
//! reason; the protocol resends what was lost.

mod listen;
mod peer;
mod wire;

pub use listen::{serve_connection, Inbound, HELLO_TIMEOUT};
pub use peer::{
    peer_queue, run_peer, PeerSender, PeerStats, BACKOFF_MAX, BACKOFF_MIN, PEER_QUEUE_BYTES_MAX,
    PEER_QUEUE_MAX,
};
pub use wire::{
    decode_message, encode_forward, encode_message, FrameReader, Received, WireError,
    WIRE_FRAME_MAX,
};
