//! The sending side of a replica link: connect, greet, write queued frames;
//! on any failure, drop what is queued and reconnect with backoff.

use crate::frame::{self, Hello};
use crate::ids::NodeId;
use rkyv::util::AlignedVec;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Receiver, Sender};

/// Frames queued for one peer, at most; beyond it new ones are dropped
/// (and counted) — the protocol resends.
pub const PEER_QUEUE_MAX: usize = 4096;
/// Bytes queued for one peer, at most (a frame is taken whole when the
/// queue is empty). Bounds memory, and how stale a queued frame can be:
/// a link that falls behind drops new frames rather than sending old ones
/// for seconds.
pub const PEER_QUEUE_BYTES_MAX: usize = 64 << 20;
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A link that stayed up this long before failing was up: its failure
/// starts a new backoff from `BACKOFF_MIN`.
pub const LINK_STABLE: Duration = Duration::from_secs(1);
/// Bytes gathered into one write.
const WRITE_MAX: usize = 1 << 20;

#[derive(Default, Debug)]
pub struct PeerStats {
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Frames dropped: queue full, or queued while the link was down.
    pub frames_dropped: AtomicU64,
    pub connects: AtomicU64,
    /// Bytes in the queue now.
    pub queued_bytes: AtomicU64,
}

/// The node's end of one peer link's queue, bounded in frames and bytes.
pub struct PeerSender {
    queue: Sender<AlignedVec>,
    stats: Arc<PeerStats>,
}

/// A queue for the link to one peer: the node sends into the first, and
/// `run_peer` takes from the second.
pub fn peer_queue(stats: Arc<PeerStats>) -> (PeerSender, Receiver<AlignedVec>) {
    let (queue, rx) = tokio::sync::mpsc::channel(PEER_QUEUE_MAX);
    (PeerSender { queue, stats }, rx)
}

impl PeerSender {
    /// Queues `frame`, or drops it (counted) when the queue is full or
    /// the link has stopped; true if queued.
    pub fn try_send(&self, frame: AlignedVec) -> bool {
        let len = frame.len() as u64;
        let queued = self.stats.queued_bytes.load(Ordering::Relaxed);
        let fits = queued == 0 || queued + len <= PEER_QUEUE_BYTES_MAX as u64;
        if fits && self.queue.try_send(frame).is_ok() {
            self.stats.queued_bytes.fetch_add(len, Ordering::Relaxed);
            return true;
        }
        self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Takes one frame's bytes off the queue's count.
fn taken(stats: &PeerStats, frame: &AlignedVec) {
    stats
        .queued_bytes
        .fetch_sub(frame.len() as u64, Ordering::Relaxed);
}

/// Runs the link from `me` to `to` until `queue` is closed.
pub async fn run_peer(
    cluster_id: u64,
    me: NodeId,
    to: NodeId,
    addr: SocketAddr,
    mut queue: Receiver<AlignedVec>,
    stats: Arc<PeerStats>,
) {
    let hello = frame::encode(&Hello {
        cluster_id,
        from: me,
        to,
    })
    .expect("a hello always encodes");
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_MAX);
    loop {
        match TcpStream::connect(addr).await {
            Ok(mut stream) => {
                let _ = stream.set_nodelay(true);
                stats.connects.fetch_add(1, Ordering::Relaxed);
                if failures > 0 {
                    tracing::info!(
                        "node {me}: connected to node {to} at {addr} after {failures} failed attempts"
                    );
                }
                let since = std::time::Instant::now();
                let Err(e) = send_all(&mut stream, &hello, &mut queue, &mut buf, &stats).await
                else {
                    return; // queue closed: the node stopped
                };
                if since.elapsed() >= LINK_STABLE {
                    // It was up: this is a new failure.
                    tracing::warn!("node {me}: link to node {to} at {addr} failed: {e}");
                    failures = 0;
                    backoff = BACKOFF_MIN;
                } else {
                    // Accepted and dropped at once (a peer restarting, a
                    // cut link behind a proxy): a failed attempt, said once.
                    if failures == 0 {
                        tracing::warn!(
                            "node {me}: link to node {to} at {addr} fails as soon as it connects: {e}; retrying with backoff"
                        );
                    }
                    failures += 1;
                }
            }
            Err(e) => {
                // Peers start and restart at their own pace: say it once.
                if failures == 0 {
                    tracing::info!("node {me}: cannot reach node {to} at {addr} yet: {e}");
                }
                failures += 1;
            }
        }
        // What was queued for a dead link is stale by the time it is back.
        while let Ok(frame) = queue.try_recv() {
            taken(&stats, &frame);
            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if queue.is_closed() {
            return;
        }
    }
}

/// Writes the greeting, then queued frames, gathering what is ready into
/// one write. `Ok` once the queue closes.
async fn send_all(
    stream: &mut TcpStream,
    hello: &[u8],
    queue: &mut Receiver<AlignedVec>,
    buf: &mut Vec<u8>,
    stats: &PeerStats,
) -> std::io::Result<()> {
    stream.write_all(hello).await?;
    while let Some(first) = queue.recv().await {
        taken(stats, &first);
        buf.clear();
        buf.extend_from_slice(&first);
        let mut frames = 1;
        while buf.len() < WRITE_MAX {
            match queue.try_recv() {
                Ok(next) => {
                    taken(stats, &next);
                    buf.extend_from_slice(&next);
                    frames += 1;
                }
                Err(_) => break,
            }
        }
        stream.write_all(buf).await?;
        stats.frames_sent.fetch_add(frames, Ordering::Relaxed);
        stats
            .bytes_sent
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}
