//! What a replica consumes and what it asks its runtime to do.
//!
//! Ordering contract (DESIGN.md §3): an output that must wait for a write is
//! emitted only in the step that sees the write complete.

use super::message::Message;
use crate::bitmap::TailBitmap;
use crate::frame::Record;
use crate::ids::{LeaderId, Lsn, NodeId};

/// Time in nanoseconds on the replica's own clock.
pub type Nanos = u64;
/// Names one WAL write; ids grow by one per write.
pub type WriteId = u64;
/// The runtime's name for a client proposal.
pub type ProposalId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The clock moved on.
    Tick {
        now: Nanos,
    },
    Receive {
        from: NodeId,
        msg: Message,
    },
    /// The slot write with this generation is durable.
    SlotDurable {
        generation: u64,
    },
    /// Every WAL write with id `< upto` is durable.
    WalDurable {
        upto: WriteId,
    },
    Propose {
        id: ProposalId,
        cmd: Vec<u8>,
    },
    /// The record at `lsn` was applied, giving `result`.
    Applied {
        lsn: Lsn,
        result: Vec<u8>,
    },
    /// A linearizable read of a read-only command (DESIGN.md §3.5).
    Read {
        id: ProposalId,
        cmd: Vec<u8>,
    },
    /// A read handed out by `Output::Read` has run; writes to its keys may
    /// apply again.
    ReadDone {
        id: ProposalId,
    },
    /// Hand leadership to `to` (DESIGN.md §3.1).
    Transfer {
        to: NodeId,
    },
    /// Cut a snapshot of the state machine (DESIGN.md §3.7): answered by
    /// `Output::Snapshot` once no apply is in flight; no record is handed
    /// out to apply in between.
    Snapshot {
        id: ProposalId,
    },
    /// A snapshot cut at `applied` is durable (its file written, synced and
    /// renamed into place): records it covers may be purged once every
    /// member holds them (DESIGN.md §3.7).
    SnapshotSaved {
        applied: TailBitmap,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        to: NodeId,
        msg: Message,
    },
    /// Write the slot file; at most one is in flight.
    WriteSlot(SlotState),
    AppendWal {
        id: WriteId,
        entry: WalEntry,
    },
    /// A committed record whose deps are applied: apply it, then `Applied`.
    Apply {
        record: Record,
    },
    /// No apply is in flight: the state machine holds exactly the state at
    /// `applied` (a dep-closed set), under `config`. Save it before carrying
    /// out any later output.
    Snapshot {
        id: ProposalId,
        applied: TailBitmap,
        config: super::Config,
    },
    Reply {
        id: ProposalId,
        result: Result<Reply, ProposeError>,
    },
    /// Delete the WAL's segments that lie wholly below `below`, only as a
    /// prefix (DESIGN.md §3.7): a durable snapshot holds every record there,
    /// every member holds them durably as committed, and a `Committed`
    /// frame written after them keeps what they said was committed.
    Purge {
        below: Lsn,
    },
    /// A confirmed read whose keys' last writes are applied: run it against
    /// the state machine now, answer the client, then `ReadDone`. No write
    /// to its keys is handed out until then.
    Read {
        id: ProposalId,
        cmd: Vec<u8>,
    },
}

/// The slot file's content (DESIGN.md §2): `vote` and a cache of `committer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotState {
    pub generation: u64,
    pub vote: LeaderId,
    pub committer: LeaderId,
}

/// One WAL write, as the protocol sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEntry {
    /// Records received (or proposed) under `committer`; a completion adds
    /// them only if that is still the committer.
    Records {
        committer: LeaderId,
        records: Vec<Record>,
    },
    /// A base or merge frame: the log is now exactly the records at `keep`
    /// plus `records`, and `committer` is set. `committed` is what the writer
    /// knew committed when it wrote the frame.
    Base {
        committer: LeaderId,
        keep: TailBitmap,
        records: Vec<Record>,
        committed: TailBitmap,
    },
    /// LSNs known committed (persisted lazily; only grows).
    Committed { committed: TailBitmap },
}

/// A proposal's outcome: where it landed and what applying it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub lsn: Lsn,
    pub output: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader; try {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    #[error("outcome unknown: another record took the proposal's LSN")]
    OutcomeUnknown,
    #[error("a leadership transfer is under way; try {to}")]
    Transferring { to: NodeId },
}
