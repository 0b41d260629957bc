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
use tokio::sync::mpsc::Receiver;

/// Frames queued for one peer, at most; beyond it new ones are dropped
/// (and counted) — the protocol resends.
pub const PEER_QUEUE_MAX: usize = 4096;
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bytes gathered into one write.
const WRITE_MAX: usize = 1 << 20;

#[derive(Default, Debug)]
pub struct PeerStats {
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Frames dropped: queue full, or queued while the link was down.
    pub frames_dropped: AtomicU64,
    pub connects: AtomicU64,
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
                    tracing::info!("node {me}: link to node {to} at {addr} is up");
                }
                failures = 0;
                backoff = BACKOFF_MIN;
                match send_all(&mut stream, &hello, &mut queue, &mut buf, &stats).await {
                    Ok(()) => return, // queue closed: the node stopped
                    Err(e) => tracing::warn!("node {me}: link to node {to} at {addr}: {e}"),
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
        while queue.try_recv().is_ok() {
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
        buf.clear();
        buf.extend_from_slice(&first);
        let mut frames = 1;
        while buf.len() < WRITE_MAX {
            match queue.try_recv() {
                Ok(next) => {
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
