//! The protocol's names for replicas, leaders and log positions (DESIGN.md §2).

use rkyv::{Archive, Deserialize, Serialize};
use std::fmt;

/// A replica's id: unique in a cluster, never reused.
pub type NodeId = u64;

/// A log sequence number, assigned by the leader. Valid LSNs are `< LSN_LIMIT`.
pub type Lsn = u64;

/// The exclusive upper bound of LSNs. Keeping `u64::MAX` out of the LSN space
/// lets "every LSN below x" always be written as an `offset: u64`.
pub const LSN_LIMIT: Lsn = u64::MAX;

/// A leader's name: `(term, node)`, ordered term first, then node.
///
/// Two candidates of one term do not split the vote: a voter grants any
/// candidate whose `LeaderId` is greater than or equal to its vote.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct LeaderId {
    pub term: u64,
    pub node: NodeId,
}

impl LeaderId {
    /// The LeaderId every replica starts from; no leader ever carries it.
    pub const ZERO: LeaderId = LeaderId { term: 0, node: 0 };

    pub const fn new(term: u64, node: NodeId) -> Self {
        LeaderId { term, node }
    }
}

impl ArchivedLeaderId {
    pub fn to_native(&self) -> LeaderId {
        LeaderId {
            term: self.term.to_native(),
            node: self.node.to_native(),
        }
    }
}

impl fmt::Debug for LeaderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.term, self.node)
    }
}

impl fmt::Display for LeaderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// True if `lsn` may name a log position.
#[allow(clippy::absurd_extreme_comparisons)] // The limit is named, not assumed to be u64::MAX.
pub const fn is_valid_lsn(lsn: Lsn) -> bool {
    lsn < LSN_LIMIT
}
