//! Payloads only the wire carries: the connection greeting. Messages
//! between replicas are `core::Message` payloads.

use crate::ids::NodeId;
use rkyv::{Archive, Deserialize, Serialize};

/// The first frame a replica sends on a connection it opened: a node of
/// another cluster, or one that thinks it is talking to someone else, is
/// refused before any message is read.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub cluster_id: u64,
    pub from: NodeId,
    pub to: NodeId,
}
