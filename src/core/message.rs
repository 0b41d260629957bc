//! Messages between replicas (DESIGN.md §3.1–3.3).

use crate::bitmap::TailBitmap;
use crate::frame::Record;
use crate::ids::{LeaderId, Lsn, NodeId};
use rkyv::{Archive, Deserialize, Serialize};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A candidate asks for a vote; `committer` and `accepted` are its
    /// durable pair.
    ElectReq {
        candidate: LeaderId,
        committer: LeaderId,
        accepted: TailBitmap,
        /// Set when campaigning to take over from this leader by transfer.
        transfer_from: Option<LeaderId>,
    },
    /// The answer to `ElectReq { candidate }`.
    ElectReply {
        candidate: LeaderId,
        vote: LeaderId,
        committer: LeaderId,
        max_lsn: Option<Lsn>,
        grant: Option<Grant>,
    },
    Forward(LogForward),
    /// A follower holds `acked` durably as `leader`'s records or as committed.
    Ack {
        leader: LeaderId,
        /// The greatest `seq` received from `leader`.
        seq: u64,
        acked: TailBitmap,
        /// The follower's durable `committed`.
        committed: TailBitmap,
    },
    /// A forward from `leader` was refused: the follower's vote is greater.
    Refuse {
        leader: LeaderId,
        vote: LeaderId,
        committer: LeaderId,
        max_lsn: Option<Lsn>,
    },
    /// The follower cannot take `leader`'s forward without a base: its
    /// committer differs, or it no longer covers the assumed `committed`.
    NeedBase {
        leader: LeaderId,
        committed: TailBitmap,
    },
    /// Would the voter grant `candidate` now? Asked before campaigning (the
    /// vote is raised only once a quorum says yes); it changes nothing at
    /// either end. `committer` and `max_lsn` are the durable pair's.
    Probe {
        candidate: LeaderId,
        committer: LeaderId,
        max_lsn: Option<Lsn>,
    },
    /// The answer to `Probe { candidate }`, with the voter's vote and log.
    ProbeReply {
        candidate: LeaderId,
        would_grant: bool,
        vote: LeaderId,
        committer: LeaderId,
        max_lsn: Option<Lsn>,
    },
}

/// What a granting voter sends back (DESIGN.md §3.1).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    pub accepted: TailBitmap,
    /// The voter's durable `committed`.
    pub committed: TailBitmap,
    /// Records the candidate lacks, only when the voter's committer equals
    /// the candidate's.
    pub records: Vec<Record>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogForward {
    pub leader: LeaderId,
    pub seq: u64,
    /// Present on a base forward: the follower's `committed` the leader relied
    /// on. `records` then holds every base record outside it.
    pub base: Option<TailBitmap>,
    pub records: Vec<Record>,
    /// LSNs a quorum established as committed.
    pub committed: TailBitmap,
    pub transfer_to: Option<NodeId>,
    /// Every member of the config holds every LSN below this durably as
    /// committed (the leader learnt it from their acks): no replica will
    /// ever need those records from another, so a snapshot may purge them.
    pub purge_floor: Lsn,
}

impl Message {
    /// The name of each kind, indexed by `kind_index`.
    pub const KINDS: [&'static str; 8] = [
        "ElectReq",
        "ElectReply",
        "Forward",
        "Ack",
        "Refuse",
        "NeedBase",
        "Probe",
        "ProbeReply",
    ];

    /// A short name for traces.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// A small number per kind, for counters.
    pub fn kind_index(&self) -> usize {
        match self {
            Message::ElectReq { .. } => 0,
            Message::ElectReply { .. } => 1,
            Message::Forward(_) => 2,
            Message::Ack { .. } => 3,
            Message::Refuse { .. } => 4,
            Message::NeedBase { .. } => 5,
            Message::Probe { .. } => 6,
            Message::ProbeReply { .. } => 7,
        }
    }
}
