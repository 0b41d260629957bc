//! The receiving side: a connection is accepted, its `Hello` checked, then
//! every frame validated and handed to the node as a message.

use super::wire::{FrameReader, Received, WireError};
use crate::core::Message;
use crate::ids::NodeId;
use rkyv::util::AlignedVec;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc::Sender;

/// A connection that has not greeted by then is closed.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// A message received from a peer, with a forward's record batch frame.
pub struct Inbound {
    pub from: NodeId,
    pub msg: Message,
    pub batch: Option<AlignedVec>,
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("no hello within {HELLO_TIMEOUT:?}")]
    Silent,
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the first frame is not a hello")]
    NoHello,
    #[error("cluster id {found:#x}, this cluster is {ours:#x}")]
    OtherCluster { found: u64, ours: u64 },
    #[error("hello from node {from} to node {to}; this is node {me}")]
    WrongNode {
        from: NodeId,
        to: NodeId,
        me: NodeId,
    },
    #[error("node {0} is not a member")]
    Stranger(NodeId),
}

/// Serves one accepted connection until it ends; every reason it ends other
/// than the peer closing it is logged.
pub async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    cluster_id: u64,
    me: NodeId,
    members: &[NodeId],
    inbound: Sender<Inbound>,
) {
    let _ = stream.set_nodelay(true);
    let mut reader = FrameReader::new(stream);
    let from = match greet(&mut reader, cluster_id, me, members).await {
        Ok(from) => from,
        Err(e) => {
            tracing::warn!("node {me}: refused a connection from {addr}: {e}");
            return;
        }
    };
    loop {
        let Received { msg, batch } = match reader.next_message().await {
            Ok(received) => received,
            Err(WireError::Closed) => return,
            Err(e) => {
                tracing::warn!("node {me}: closing the link from node {from} ({addr}): {e}");
                return;
            }
        };
        if inbound.send(Inbound { from, msg, batch }).await.is_err() {
            return; // the node stopped
        }
    }
}

async fn greet(
    reader: &mut FrameReader<TcpStream>,
    cluster_id: u64,
    me: NodeId,
    members: &[NodeId],
) -> Result<NodeId, Refused> {
    let frame = tokio::time::timeout(HELLO_TIMEOUT, reader.next())
        .await
        .map_err(|_| Refused::Silent)??;
    let hello = frame.hello().map_err(|_| Refused::NoHello)?;
    let (found, from, to) = (
        hello.cluster_id.to_native(),
        hello.from.to_native(),
        hello.to.to_native(),
    );
    if found != cluster_id {
        return Err(Refused::OtherCluster {
            found,
            ours: cluster_id,
        });
    }
    if to != me || from == me {
        return Err(Refused::WrongNode { from, to, me });
    }
    if !members.contains(&from) {
        return Err(Refused::Stranger(from));
    }
    Ok(from)
}
