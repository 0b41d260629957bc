//! What a node is started from.

use crate::core::Params;
use crate::ids::NodeId;
use crate::wal::StoreOptions;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Proposals and reads accepted and not yet answered, at most; further
/// callers wait (backpressure) instead of growing the leader's queue.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 16_384;
/// Requests queued between callers and the node, at most.
pub const REQUEST_QUEUE_MAX: usize = 4096;
/// Messages received and not yet stepped, at most; readers wait beyond it.
pub const INBOUND_QUEUE_MAX: usize = 4096;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Replicas of another cluster are refused at the handshake.
    pub cluster_id: u64,
    /// Every voter's replica address, this node's own included (it listens
    /// there).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The slot file and the WAL live here.
    pub data_dir: PathBuf,
    pub params: Params,
    pub store: StoreOptions,
    /// Apply threads; 0 applies on the node's own thread. The default is 0:
    /// for commands that cost a microsecond (the KV store) a thread handoff
    /// costs more than it saves, and a chain of records on one key applies
    /// within one loop turn instead of one handoff per record. A pool pays
    /// for state machines whose commands are expensive.
    pub apply_workers: usize,
    /// Cut a snapshot (`Node::snapshot`) each time this many records have
    /// been applied since the last one; 0: only when asked. The node's loop
    /// waits while the state machine writes it, so a large state wants a
    /// large interval.
    pub snapshot_every: u64,
    /// Seeds the election timer jitter.
    pub seed: u64,
}

impl NodeConfig {
    pub fn new(
        id: NodeId,
        peers: BTreeMap<NodeId, SocketAddr>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        NodeConfig {
            id,
            cluster_id: 0x7472_6166_7400_0001,
            peers,
            data_dir: data_dir.into(),
            params: Params::default(),
            store: StoreOptions::default(),
            apply_workers: 0,
            snapshot_every: 0,
            seed: id,
        }
    }
}
