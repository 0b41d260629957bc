//! One replica's state and its step function. The protocol's rules live in
//! the sibling modules (`elect`, `merge`, `forward`, `commit`); this file
//! holds the state they share, the durable bookkeeping (slot file and WAL
//! completions, recovery), and the end-of-step `poll` that emits whatever a
//! step made possible.

use super::deps::{CommandClass, Conflicts, DepsIndex};
use super::io::{Input, Nanos, Output, ProposalId, SlotState, WalEntry, WriteId};
use super::message::{Grant, Message};
use super::read::PendingRead;

use super::mutations::Mutations;
use super::params::Params;
use super::quorum::Config;
use super::rng::Rng;
use crate::bitmap::{Extent, TailBitmap};
use crate::frame::Record;
use crate::ids::{LeaderId, Lsn, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// What recovery found on disk: the slot file and the durable WAL entries in
/// order (the runtime's WAL has already cut any torn tail).
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub slot: Option<SlotState>,
    pub wal: Vec<WalEntry>,
    /// Recovery found corruption vouched for by a later frame (DESIGN.md §4).
    pub corrupted: bool,
    /// The applied set of a snapshot the state machine can start from
    /// (DESIGN.md §3.7). Taken only if the log holds a record at every LSN
    /// it covers (`Replica::from_snapshot` says whether it was); otherwise the
    /// state machine starts empty and the log is applied again.
    pub snapshot: Option<TailBitmap>,
}

pub(super) enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Box<Leader>),
}

/// A follower asking the voters whether they would grant `c`, before it
/// raises its vote to `c` (DESIGN.md §3.1, traft note).
pub(super) struct Probe {
    pub c: LeaderId,
    pub yes: BTreeSet<NodeId>,
    pub no: BTreeSet<NodeId>,
}

pub(super) struct Candidate {
    pub c: LeaderId,
    /// Campaigning to take over from this leader by transfer.
    pub transfer_from: Option<LeaderId>,
    pub req_sent: bool,
    pub grants: BTreeMap<NodeId, Grant>,
    /// Voters that refused with a greater vote or a fresher log.
    pub refused: BTreeSet<NodeId>,
    pub deadline: Nanos,
}

/// Per-follower replication state of a leader.
#[derive(Default)]
pub(super) struct Progress {
    pub needs_base: bool,
    /// When the base forward went out, while it is unanswered.
    pub base_sent: Option<Nanos>,
    /// Base forwards sent since the follower last answered with something
    /// new: each resend waits twice as long as the one before.
    pub base_resends: u32,
    /// The follower's `committed` the base forward relies on; `None` until
    /// the follower reported it (a vote reply or "need base"). Until then
    /// the leader sends empty forwards, which the follower answers with
    /// "need base" and its `committed`: a base built on nothing would carry
    /// the whole log.
    pub assumed_committed: Option<TailBitmap>,
    /// LSNs the follower acknowledged to this leadership.
    pub acked: TailBitmap,
    pub echoed_seq: u64,
    /// The follower holds every LSN below this durably as committed (its
    /// acks say so).
    pub held_below: Lsn,
    /// Forwards with records not yet known received: seq → (sent at, LSNs).
    pub inflight: BTreeMap<u64, (Nanos, TailBitmap)>,
    pub last_send: Nanos,
}

pub(super) enum MergeState {
    /// Won; waiting for own writes to settle before merging.
    Won {
        grants: BTreeMap<NodeId, Grant>,
    },
    /// The merge frame is written; waiting for it to be durable.
    Writing {
        write: WriteId,
    },
    Established,
}

pub(super) struct Leader {
    pub c: LeaderId,
    pub merge: MergeState,
    pub next_seq: u64,
    pub next_lsn: Lsn,
    pub followers: BTreeMap<NodeId, Progress>,
    /// LSNs this leader holds durably as its own records.
    pub own_acked: TailBitmap,
    /// Proposed, not yet written.
    pub queue: Vec<Record>,
    /// The write carrying the last batch, while it is in flight.
    pub batch_write: Option<WriteId>,
    pub deps: DepsIndex,
    /// A refusal reported a greater vote: campaign again at this time.
    pub reelect_at: Option<Nanos>,
    /// Send times of recent seqs, for leases.
    pub sent_at: BTreeMap<u64, Nanos>,
    pub lease_until: Nanos,
    /// Only echoes of seqs from here on make a lease (raised by a cancelled
    /// transfer).
    pub lease_floor: u64,
    /// The LSNs of the base this leader established; reads wait until all
    /// are committed (DESIGN.md §3.5).
    pub base: TailBitmap,
    /// A read is waiting for a round: send a forward to every follower now.
    pub round_due: bool,
    pub transfer: Option<Transfer>,
}

/// A leadership transfer the leader was asked for.
#[derive(Clone, Copy, Debug)]
pub(super) struct Transfer {
    pub to: NodeId,
    /// Cancelled if `to` has not won by then.
    pub deadline: Nanos,
    /// Forwards carry the mark once `to` holds everything the leader does,
    /// so its campaign is not refused as staler.
    pub open: bool,
}

impl Leader {
    pub fn new(c: LeaderId, merge: MergeState, strict: bool) -> Leader {
        Leader {
            c,
            merge,
            next_seq: 1,
            next_lsn: 0,
            followers: BTreeMap::new(),
            own_acked: TailBitmap::new(),
            queue: Vec::new(),
            batch_write: None,
            deps: DepsIndex::new(strict),
            reelect_at: None,
            sent_at: BTreeMap::new(),
            lease_until: 0,
            lease_floor: 0,
            base: TailBitmap::new(),
            round_due: false,
            transfer: None,
        }
    }
}

/// What a follower knows of the leader it follows.
#[derive(Default)]
pub(super) struct Following {
    pub leader: Option<LeaderId>,
    pub last_seq: u64,
    pub transfer_to: Option<NodeId>,
    /// The latest `committed` the leader sent.
    pub leader_committed: TailBitmap,
    pub ack_due: bool,
}

pub struct Replica<C: Conflicts> {
    pub(super) id: NodeId,
    pub(super) params: Params,
    pub(super) conflicts: C,
    pub(super) config: Config,
    pub(super) now: Nanos,
    pub(super) rng: Rng,
    pub(super) out: Vec<Output>,
    pub(super) mutations: Mutations,

    // The slot file.
    pub(super) vote: LeaderId,
    /// The last durable slot.
    pub(super) slot: SlotState,
    pub(super) slot_in_flight: Option<SlotState>,
    /// Recovery raised the vote above the slot's: answer nothing until the
    /// slot write lands (DESIGN.md §4).
    pub(super) hold_answers: bool,

    // The log.
    /// The durable committer (of the newest durable base or merge frame).
    pub(super) committer: LeaderId,
    /// A base frame issued and not yet durable.
    pub(super) pending_committer: Option<LeaderId>,
    /// Records held durably under `committer`.
    pub(super) log: BTreeMap<Lsn, Record>,
    pub(super) accepted: TailBitmap,
    /// Issued, not yet durable.
    pub(super) writes: BTreeMap<WriteId, WalEntry>,
    pub(super) next_write: WriteId,
    /// Records of writes in flight, by LSN (the newest issued).
    pub(super) unsynced: BTreeMap<Lsn, Record>,
    pub(super) committed: TailBitmap,
    pub(super) durable_committed: TailBitmap,
    pub(super) committed_write: Option<WriteId>,
    /// When the last `committed` write was issued.
    pub(super) committed_written_at: Nanos,
    pub(super) applied: TailBitmap,
    pub(super) applying: BTreeSet<Lsn>,
    pub(super) apply: super::commit::ApplyScan,
    /// Snapshot cuts asked for: no apply is handed out until they are cut.
    pub(super) snapshot_cuts: Vec<ProposalId>,
    /// Recovery took `Durable::snapshot`: the state machine must start from it.
    pub(super) from_snapshot: bool,
    /// The applied set of the newest durable snapshot.
    pub(super) snapshot: TailBitmap,
    /// LSNs held only in the snapshot: in `accepted`, `committed` and
    /// `applied`, with no record in `log` (DESIGN.md §3.7).
    pub(super) purged: TailBitmap,
    /// Every member holds every LSN below this durably as committed: no
    /// replica will need those records from another.
    pub(super) purge_floor: Lsn,
    pub(super) pending_purge: Option<super::purge::PendingPurge>,
    /// Base forwards not sent: the follower lacked records held only in a
    /// snapshot here.
    pub(super) bases_blocked: u64,

    pub(super) max_term_seen: u64,
    /// Messages dropped because their LSNs lie beyond `LSN_REACH` of ours.
    pub(super) out_of_reach: u64,
    /// The last refusal received: (answered, vote, committer), for `status`.
    pub(super) last_refusal: Option<(LeaderId, LeaderId, LeaderId)>,
    pub(super) role: Role,
    /// A probe in flight (a follower whose election timer fired).
    pub(super) probe: Option<Probe>,
    /// The next timer campaigns at once (`campaign_next`).
    pub(super) skip_probe: bool,
    pub(super) following: Following,
    /// Refuse votes until then (a live leader's forward, or a restart).
    pub(super) sticky_until: Nanos,
    pub(super) election_deadline: Nanos,
    /// Recovery found corruption: no campaigning, granting or counted acks
    /// until a base from a leader greater than this is installed.
    pub(super) demoted_below: Option<LeaderId>,
    /// Grant replies, read at grant time, waiting for the slot to hold the
    /// vote: (candidate, to, reply).
    pub(super) grant_replies: Vec<(LeaderId, NodeId, Message)>,
    pub(super) proposals: BTreeMap<(Lsn, LeaderId), ProposalId>,
    /// Reads not yet handed out (DESIGN.md §3.5).
    pub(super) reads: Vec<PendingRead>,
    /// Reads handed out and not yet done, with what they touch: writes to
    /// their keys wait.
    pub(super) reads_out: BTreeMap<ProposalId, CommandClass>,
    /// Counts base and merge frames made durable: the log only grows between.
    pub(super) log_epoch: u64,
    /// The N3 mutant writes the slot only when `(vote, committer)` moves
    /// away from this, never to catch up with what recovery raised.
    pub(super) slot_seen: (LeaderId, LeaderId),
}

impl<C: Conflicts> Replica<C> {
    /// Starts a replica from what recovery found. Leadership is volatile: it
    /// starts as a follower and refuses votes for `T_min` plus the drift
    /// allowance.
    pub fn new(
        id: NodeId,
        config: Config,
        params: Params,
        conflicts: C,
        durable: Durable,
        now: Nanos,
        seed: u64,
    ) -> Self {
        let mutations = Mutations::default();
        Self::recover(id, config, params, conflicts, durable, now, seed, mutations)
    }

    /// `new` with rules removed from recovery itself (tests only).
    #[allow(clippy::too_many_arguments)]
    pub fn recover(
        id: NodeId,
        config: Config,
        params: Params,
        conflicts: C,
        durable: Durable,
        now: Nanos,
        seed: u64,
        mutations: Mutations,
    ) -> Self {
        let mut replica = Replica {
            id,
            params,
            conflicts,
            config,
            now,
            rng: Rng::new(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            out: Vec::new(),
            mutations,
            vote: LeaderId::ZERO,
            slot: SlotState::default(),
            slot_in_flight: None,
            hold_answers: false,
            committer: LeaderId::ZERO,
            pending_committer: None,
            log: BTreeMap::new(),
            accepted: TailBitmap::new(),
            writes: BTreeMap::new(),
            next_write: 0,
            unsynced: BTreeMap::new(),
            committed: TailBitmap::new(),
            durable_committed: TailBitmap::new(),
            committed_write: None,
            committed_written_at: 0,
            applied: TailBitmap::new(),
            applying: BTreeSet::new(),
            snapshot_cuts: Vec::new(),
            from_snapshot: false,
            snapshot: TailBitmap::new(),
            purged: TailBitmap::new(),
            purge_floor: 0,
            pending_purge: None,
            bases_blocked: 0,
            apply: Default::default(),
            max_term_seen: 0,
            last_refusal: None,
            out_of_reach: 0,
            role: Role::Follower,
            probe: None,
            skip_probe: false,
            following: Following::default(),
            sticky_until: 0,
            election_deadline: 0,
            demoted_below: None,
            grant_replies: Vec::new(),
            proposals: BTreeMap::new(),
            reads: Vec::new(),
            reads_out: BTreeMap::new(),
            log_epoch: 0,
            slot_seen: (LeaderId::ZERO, LeaderId::ZERO),
        };
        if let Some(slot) = durable.slot {
            replica.slot = slot;
            replica.vote = slot.vote;
        }
        // `committer` comes from the newest surviving base or merge frame, and
        // from the slot's copy only if none survives. Records before the first
        // surviving base were written under one committer whose frame may be
        // purged: they are taken as they are, and that base then keeps or drops them.
        let mut base_seen = false;
        for entry in durable.wal {
            base_seen |= matches!(entry, WalEntry::Base { .. });
            replica.make_durable_as(entry, !base_seen);
        }
        if !base_seen {
            replica.committer = replica.slot.committer;
        } else if replica.mutations.slot_committer_wins {
            replica.committer = replica.committer.max(replica.slot.committer);
        }
        replica.committed = replica.durable_committed.clone();
        if let Some(applied) = durable.snapshot {
            // Applied LSNs were committed, and the snapshot is durable: it
            // holds them, whether or not the log still has their records
            // (purged, or a leader that applied a record a quorum held
            // before its own copy was durable, cut, and crashed).
            replica.purged = applied.difference(&replica.log.keys().copied().collect());
            replica.accepted.union_with(&applied);
            replica.durable_committed.union_with(&applied);
            replica.committed.union_with(&applied);
            replica.snapshot = applied.clone();
            replica.applied = applied;
            replica.from_snapshot = true;
        }
        // I2 across recoveries: the vote never falls below the committer.
        if !replica.mutations.vote_from_slot_alone {
            replica.vote = replica.vote.max(replica.committer);
        }
        replica.slot_seen = (replica.vote, replica.committer);
        replica.hold_answers =
            replica.vote != replica.slot.vote || replica.committer != replica.slot.committer;
        replica.max_term_seen = replica.vote.term.max(replica.committer.term);
        if durable.corrupted {
            replica.demoted_below = Some(replica.vote);
        }
        replica.sticky_until = now + replica.params.t_min + replica.params.drift_allowance;
        replica.election_deadline = replica.sticky_until + replica.random(replica.params.t_min);
        replica.poll();
        replica
    }

    /// The H6 mutant: come back as the leader this replica was before the
    /// restart, instead of winning a new election.
    fn resume_leadership(&mut self) {
        let c = self.vote;
        if c.node != self.id || self.committer != c {
            return;
        }
        let mut followers = BTreeMap::new();
        for member in self.config.members() {
            if member != self.id {
                let progress = Progress {
                    needs_base: true,
                    ..Default::default()
                };
                followers.insert(member, progress);
            }
        }
        let mut leader = Leader::new(
            c,
            MergeState::Writing {
                write: WriteId::MAX,
            },
            self.params.strict,
        );
        leader.followers = followers;
        self.role = Role::Leader(Box::new(leader));
        self.on_merge_durable();
    }

    pub fn set_mutations(&mut self, mutations: Mutations) {
        self.mutations = mutations;
        if self.mutations.no_restart_stickiness {
            self.sticky_until = self.now;
        }
        if self.mutations.max_term_from_zero {
            self.max_term_seen = 0;
        }
        if self.mutations.resume_leadership && matches!(self.role, Role::Follower) {
            self.resume_leadership();
        }
    }

    /// Sets the follower's election timer to fire at `at`: lets a simulation
    /// start every replica's campaign at one instant, or hold elections back
    /// in a scripted scenario.
    pub fn set_election_timer(&mut self, at: Nanos) {
        self.election_deadline = at;
    }

    /// Campaigns at the next step, skipping the probe: what a follower does
    /// once its probe found a quorum. Scripted scenarios start elections
    /// with it (a probe may succeed just before a partition begins).
    pub fn campaign_next(&mut self) {
        self.election_deadline = self.now;
        self.skip_probe = true;
    }

    /// Consumes one input; returns what the runtime must do.
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Tick { now } => {
                debug_assert!(now >= self.now, "time never goes back");
                self.now = self.now.max(now);
                self.on_tick();
            }
            Input::Receive { from, msg } => {
                if !self.hold_answers {
                    self.on_message(from, msg);
                }
            }
            Input::SlotDurable { generation } => self.on_slot_durable(generation),
            Input::WalDurable { upto } => self.on_wal_durable(upto),
            Input::Propose { id, cmd } => self.on_propose(id, cmd),
            Input::Applied { lsn, result } => self.on_applied(lsn, result),
            Input::Read { id, cmd } => self.on_read(id, cmd),
            Input::ReadDone { id } => self.on_read_done(id),
            Input::Transfer { to } => self.on_transfer(to),
            Input::Snapshot { id } => self.snapshot_cuts.push(id),
            Input::SnapshotSaved { applied } => self.on_snapshot_saved(applied),
        }
        self.poll();
        std::mem::take(&mut self.out)
    }

    /// Consumes several inputs, then emits what they made possible: the
    /// same as stepping them one at a time, except that nothing is emitted
    /// in between. Only for inputs whose handlers just record something —
    /// proposals, reads, apply results, finished reads — so that 256
    /// proposals become one batch and one pass over what is ready to apply,
    /// not 256.
    pub fn step_all(&mut self, inputs: impl IntoIterator<Item = Input>) -> Vec<Output> {
        for input in inputs {
            match input {
                Input::Propose { id, cmd } => self.on_propose(id, cmd),
                Input::Applied { lsn, result } => self.on_applied(lsn, result),
                Input::Read { id, cmd } => self.on_read(id, cmd),
                Input::ReadDone { id } => self.on_read_done(id),
                other => panic!("step_all takes only recording inputs, not {other:?}"),
            }
        }
        self.poll();
        std::mem::take(&mut self.out)
    }

    fn on_read_done(&mut self, id: ProposalId) {
        self.reads_out.remove(&id);
        self.apply.reads_changed = true;
    }

    /// True for the inputs `step_all` takes.
    pub fn batchable(input: &Input) -> bool {
        matches!(
            input,
            Input::Propose { .. }
                | Input::Applied { .. }
                | Input::Read { .. }
                | Input::ReadDone { .. }
        )
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        if !self.in_reach(&msg) {
            // Held, its LSNs would make our sets grow by the gap (see
            // `LSN_REACH`): invalid input, dropped like a bad frame.
            self.out_of_reach += 1;
            return;
        }
        match msg {
            Message::ElectReq {
                candidate,
                committer,
                accepted,
                transfer_from,
            } => self.on_elect_req(from, candidate, committer, accepted, transfer_from),
            Message::ElectReply {
                candidate,
                vote,
                committer,
                max_lsn,
                grant,
            } => self.on_elect_reply(from, candidate, vote, committer, max_lsn, grant),
            Message::Forward(forward) => self.on_forward(from, forward),
            Message::Ack {
                leader,
                seq,
                acked,
                committed,
            } => {
                if self.on_ack(from, leader, seq, acked) {
                    self.note_held(from, &committed);
                }
            }
            Message::Refuse {
                leader,
                vote,
                committer,
                max_lsn: _,
            } => self.on_refuse(leader, vote, committer),
            Message::NeedBase { leader, committed } => self.on_need_base(from, leader, committed),
            Message::Probe {
                candidate,
                committer,
                max_lsn,
            } => self.on_probe(from, candidate, committer, max_lsn),
            Message::ProbeReply {
                candidate,
                would_grant,
                vote,
                committer,
                max_lsn: _,
            } => self.on_probe_reply(from, candidate, would_grant, vote, committer),
        }
    }

    /// Whether the LSNs `msg` carries lie within `LSN_REACH` of ours.
    fn in_reach(&self, msg: &Message) -> bool {
        let mut extent = Extent::default();
        extent.set(&self.accepted).set(&self.committed);
        match msg {
            Message::ElectReq { accepted, .. } => {
                extent.set(accepted);
            }
            Message::ElectReply { grant, .. } => {
                if let Some(g) = grant {
                    extent.set(&g.accepted).set(&g.committed);
                    g.records.iter().for_each(|r| {
                        extent.lsn(r.lsn);
                    });
                }
            }
            Message::Forward(f) => {
                extent.set(&f.committed);
                if let Some(assumed) = &f.base {
                    extent.set(assumed);
                }
                f.records.iter().for_each(|r| {
                    extent.lsn(r.lsn);
                });
            }
            Message::Ack {
                acked, committed, ..
            } => {
                extent.set(acked).set(committed);
            }
            Message::NeedBase { committed, .. } => {
                extent.set(committed);
            }
            Message::Refuse { .. } | Message::Probe { .. } | Message::ProbeReply { .. } => {}
        }
        extent.within_reach()
    }

    fn on_tick(&mut self) {
        match &self.role {
            Role::Follower => {
                if self.now >= self.election_deadline {
                    self.start_probe();
                }
            }
            Role::Candidate(candidate) => {
                if self.now >= candidate.deadline {
                    self.role = Role::Follower;
                    self.start_probe();
                }
            }
            Role::Leader(_) => {}
        }
    }

    // ---- Small shared helpers ------------------------------------------

    /// Uniform in `[0, bound)`.
    pub(super) fn random(&mut self, bound: Nanos) -> Nanos {
        if bound == 0 {
            0
        } else {
            self.rng.next_u64() % bound
        }
    }

    pub(super) fn send(&mut self, to: NodeId, msg: Message) {
        debug_assert_ne!(to, self.id);
        self.out.push(Output::Send { to, msg });
    }

    /// Raises the vote. A leader or candidate whose vote moves on stops at
    /// once (DESIGN.md §3.1): it counts no acks, proposes nothing, serves no reads.
    pub(super) fn raise_vote(&mut self, vote: LeaderId) {
        assert!(vote >= self.vote, "vote never decreases");
        self.vote = vote;
        // Granted or followed someone, or campaigning: a probe is moot.
        self.probe = None;
        self.max_term_seen = self.max_term_seen.max(vote.term);
        let acting = match &self.role {
            Role::Follower => None,
            Role::Candidate(c) => Some(c.c),
            Role::Leader(l) => Some(l.c),
        };
        if acting.is_some_and(|c| c != vote) && !self.mutations.keep_leading_after_vote {
            self.role = Role::Follower;
        }
    }

    /// Issues a WAL write.
    pub(super) fn append(&mut self, entry: WalEntry) -> WriteId {
        let id = self.next_write;
        self.next_write += 1;
        match &entry {
            WalEntry::Records { records, .. } => {
                for r in records {
                    self.unsynced.insert(r.lsn, r.clone());
                    self.apply.arrivals += 1;
                }
            }
            WalEntry::Base { records, .. } => {
                self.unsynced.clear();
                for r in records {
                    self.unsynced.insert(r.lsn, r.clone());
                    self.apply.arrivals += 1;
                }
            }
            WalEntry::Committed { .. } => {}
        }
        self.writes.insert(id, entry.clone());
        self.out.push(Output::AppendWal { id, entry });
        id
    }

    /// The committer a new write would be tagged with.
    pub(super) fn effective_committer(&self) -> LeaderId {
        self.pending_committer.unwrap_or(self.committer)
    }

    /// The record this replica has (or is writing) at `lsn`.
    pub fn record_at(&self, lsn: Lsn) -> Option<&Record> {
        self.unsynced.get(&lsn).or_else(|| self.log.get(&lsn))
    }

    /// Records of the durable log at `lsns`.
    pub(super) fn records_in(&self, lsns: &TailBitmap) -> Vec<Record> {
        self.log
            .iter()
            .filter(|(l, _)| lsns.contains(**l))
            .map(|(_, r)| r.clone())
            .collect()
    }

    // ---- Durability -----------------------------------------------------

    fn on_slot_durable(&mut self, generation: u64) {
        if let Some(slot) = self.slot_in_flight {
            if slot.generation == generation {
                self.slot = slot;
                self.slot_in_flight = None;
                if self.slot.vote == self.vote && self.slot.committer == self.committer {
                    self.hold_answers = false;
                }
            }
        }
    }

    fn on_wal_durable(&mut self, upto: WriteId) {
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() >= upto {
                break;
            }
            let (id, entry) = entry.remove_entry();
            if self.committed_write == Some(id) {
                self.committed_write = None;
            }
            self.make_durable_live(id, entry);
        }
    }

    /// A write became durable while running: the same state change as in
    /// recovery, plus what waits for it.
    fn make_durable_live(&mut self, id: WriteId, entry: WalEntry) {
        let tagged = match &entry {
            WalEntry::Records { committer, .. } => Some(*committer),
            WalEntry::Base { committer, .. } => Some(*committer),
            WalEntry::Committed { .. } => None,
        };
        let lsns: Vec<Lsn> = match &entry {
            WalEntry::Records { records, .. } | WalEntry::Base { records, .. } => {
                records.iter().map(|r| r.lsn).collect()
            }
            WalEntry::Committed { .. } => Vec::new(),
        };
        let is_base = matches!(entry, WalEntry::Base { .. });
        self.make_durable(entry);
        for lsn in &lsns {
            if self.log.contains_key(lsn) {
                let same = self.unsynced.get(lsn) == self.log.get(lsn);
                if same {
                    self.unsynced.remove(lsn);
                }
            }
        }
        if is_base && self.demoted_below.is_some_and(|v| self.committer > v) {
            // The base of a leader elected without us: it holds whatever we
            // may have acked and lost, so we are a voter again.
            self.demoted_below = None;
        }
        let Some(tag) = tagged else { return };
        if let Role::Leader(leader) = &mut self.role {
            if let MergeState::Writing { write } = leader.merge {
                if write == id {
                    self.on_merge_durable();
                    return;
                }
            }
            if let Role::Leader(leader) = &mut self.role {
                if leader.batch_write == Some(id) {
                    leader.batch_write = None;
                }
                // The leader's own ack (I1): only while vote == committer == c.
                let voting_for_us = self.vote == leader.c || self.mutations.keep_leading_after_vote;
                if tag == leader.c && voting_for_us && self.committer == leader.c {
                    for lsn in lsns {
                        if self.accepted.contains(lsn) {
                            leader.own_acked.insert(lsn).expect("valid LSN");
                        }
                    }
                }
            }
        } else if self.following.leader == Some(tag) {
            self.following.ack_due = true;
        } else if self.mutations.ack_checked_at_receipt && tag.node != self.id {
            // The S1 mutant decided at receipt: ack whatever the vote is now.
            let msg = Message::Ack {
                leader: tag,
                seq: 0,
                acked: lsns.iter().copied().collect(),
                committed: self.durable_committed.clone(),
            };
            self.send(tag.node, msg);
        }
    }

    /// Applies a durable WAL entry to the durable state. Recovery replays
    /// entries through exactly this function.
    fn make_durable(&mut self, entry: WalEntry) {
        self.make_durable_as(entry, false);
    }

    /// `any_tag`: take records whatever committer they were written under
    /// (recovery, before the first surviving base frame).
    fn make_durable_as(&mut self, entry: WalEntry, any_tag: bool) {
        match entry {
            WalEntry::Records { committer, records } => {
                // A completion adds its LSNs only if that is still the committer.
                if any_tag || committer == self.committer {
                    // A purged LSN stays held by the snapshot alone.
                    for r in records.into_iter().filter(|r| !self.purged.contains(r.lsn)) {
                        self.accepted.insert(r.lsn).expect("valid LSN");
                        self.log.insert(r.lsn, r);
                        self.apply.arrivals += 1;
                    }
                }
            }
            WalEntry::Base {
                committer,
                keep,
                records,
                committed,
            } => {
                // Replayed as "the log is now exactly keep ∪ records", never as an insert.
                assert!(
                    committer >= self.committer,
                    "committer never decreases (I2)"
                );
                assert!(
                    self.purged.is_subset(&keep),
                    "a base keeps every committed LSN, purged ones included"
                );
                if !self.mutations.base_as_insert {
                    self.log.retain(|lsn, _| keep.contains(*lsn));
                }
                for r in records.into_iter().filter(|r| !self.purged.contains(r.lsn)) {
                    self.log.insert(r.lsn, r);
                    self.apply.arrivals += 1;
                }
                self.accepted = self.log.keys().copied().collect();
                self.accepted.union_with(&self.purged);
                self.committer = committer;
                self.log_epoch += 1;
                if self.pending_committer == Some(committer) {
                    self.pending_committer = None;
                }
                self.durable_committed = self
                    .durable_committed
                    .union(&committed)
                    .intersection(&self.accepted);
                self.committed = self
                    .committed
                    .union(&committed)
                    .intersection(&self.accepted);
            }
            WalEntry::Committed { committed } => {
                self.durable_committed
                    .union_with(&committed.intersection(&self.accepted));
            }
        }
    }

    // ---- End of step ----------------------------------------------------

    /// Emits whatever the state now allows, in an order that respects the
    /// ordering contract.
    fn poll(&mut self) {
        // First: a campaign it starts needs the slot write below.
        self.poll_transfer_target();
        self.poll_slot();
        self.poll_candidate();
        self.poll_grants();
        self.poll_leader();
        self.poll_follower();
        self.poll_committed();
        self.poll_purge();
        // Reads first: a read that became ready holds back later writes to its keys.
        self.poll_reads();
        self.poll_apply();
    }

    fn poll_slot(&mut self) {
        let latest = match self.slot_in_flight {
            // At most one in flight; later changes coalesce into the next.
            Some(_) if !self.mutations.pipeline_slot_writes => return,
            Some(in_flight) => in_flight,
            None => self.slot,
        };
        if self.mutations.no_slot_rewrite {
            if (self.vote, self.committer) == self.slot_seen {
                return;
            }
            self.slot_seen = (self.vote, self.committer);
        }
        if self.vote != latest.vote || self.committer != latest.committer {
            let slot = SlotState {
                generation: latest.generation + 1,
                vote: self.vote,
                committer: self.committer,
            };
            self.slot_in_flight = Some(slot);
            self.out.push(Output::WriteSlot(slot));
        }
    }

    fn poll_grants(&mut self) {
        if self.grant_replies.is_empty() {
            return;
        }
        let durable_vote = self.slot.vote;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.grant_replies)
            .into_iter()
            .partition(|(c, _, _)| durable_vote >= *c);
        self.grant_replies = waiting;
        for (_, to, msg) in ready {
            self.send(to, msg);
        }
    }

    fn poll_committed(&mut self) {
        if self.committed_write.is_some() {
            return;
        }
        // Lazily (DESIGN.md §4): with a write this step issued anyway, so
        // it costs no sync of its own, or once a heartbeat interval has
        // passed since the last one. A smaller durable `committed` is only
        // more conservative; a write per commit would double the syncs on
        // the commit path.
        let piggyback = self
            .out
            .iter()
            .any(|o| matches!(o, Output::AppendWal { .. }));
        let due = self.now >= self.committed_written_at + self.params.heartbeat;
        if !piggyback && !due {
            return;
        }
        let holdable = self.committed.intersection(&self.accepted);
        if !holdable.is_subset(&self.durable_committed) {
            let id = self.append(WalEntry::Committed {
                committed: holdable,
            });
            self.committed_write = Some(id);
            self.committed_written_at = self.now;
        }
    }

    // ---- Read access for the simulator's checks and the runtime ----------

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn vote(&self) -> LeaderId {
        self.vote
    }

    pub fn committer(&self) -> LeaderId {
        self.committer
    }

    pub fn accepted(&self) -> &TailBitmap {
        &self.accepted
    }

    pub fn committed(&self) -> &TailBitmap {
        &self.committed
    }

    pub fn applied(&self) -> &TailBitmap {
        &self.applied
    }

    /// Whether recovery took the snapshot it was offered: the runtime then
    /// loads that snapshot into the state machine before the first step.
    pub fn from_snapshot(&self) -> bool {
        self.from_snapshot
    }

    /// LSNs held only in the durable snapshot, their records purged.
    pub fn purged(&self) -> &TailBitmap {
        &self.purged
    }

    /// Base forwards this replica could not send as leader: the follower
    /// lacked records held here only in a snapshot.
    pub fn bases_blocked(&self) -> u64 {
        self.bases_blocked
    }

    /// Every member holds every LSN below this durably as committed.
    pub fn purge_floor(&self) -> Lsn {
        self.purge_floor
    }

    pub fn log(&self) -> &BTreeMap<Lsn, Record> {
        &self.log
    }

    /// The LeaderId this replica currently leads as, once established.
    pub fn established_leader(&self) -> Option<LeaderId> {
        match &self.role {
            Role::Leader(l) if matches!(l.merge, MergeState::Established) => Some(l.c),
            _ => None,
        }
    }

    /// The LSNs this replica, as leader, holds durably as its own records.
    pub fn own_acked(&self) -> Option<(LeaderId, &TailBitmap)> {
        match &self.role {
            Role::Leader(l) => Some((l.c, &l.own_acked)),
            _ => None,
        }
    }

    /// Changes whenever the log is replaced by a base or merge frame; between
    /// two changes the log only grows.
    pub fn log_epoch(&self) -> u64 {
        self.log_epoch
    }

    /// The record held or being written at `lsn`.
    pub fn record(&self, lsn: Lsn) -> Option<&Record> {
        self.record_at(lsn)
    }

    /// "follower", "candidate" or "leader" (established or merging).
    pub fn role_name(&self) -> &'static str {
        match &self.role {
            Role::Follower => "follower",
            Role::Candidate(_) => "candidate",
            Role::Leader(_) => "leader",
        }
    }

    /// The leader this replica last followed, if any.
    pub fn known_leader(&self) -> Option<LeaderId> {
        self.established_leader().or(self.following.leader)
    }

    /// A one-line account of what this replica is waiting on, for operators
    /// (`INFO`): role, whether it ignores messages until its slot write
    /// lands, demotion, a pending re-election, writes in flight.
    pub fn status(&self) -> String {
        let role = match &self.role {
            Role::Follower => "follower".to_string(),
            Role::Candidate(c) => format!(
                "candidate {:?} (requests sent {}, grants {}, deadline {})",
                c.c,
                c.req_sent,
                c.grants.len(),
                c.deadline
            ),
            Role::Leader(l) => format!(
                "leader {:?}{}",
                l.c,
                l.reelect_at
                    .map_or(String::new(), |at| format!(" re-election at {at}"))
            ),
        };
        format!(
            "now {}; {role}; vote {:?}; committer {:?}; slot {:?}/{:?}{}{}; writes in flight {}; slot write in flight {}; last refusal {:?}; dropped out of reach {}; purge floor {}, snapshot prefix {}, purged below {}, bases blocked {}",
            self.now,
            self.vote,
            self.committer,
            self.slot.vote,
            self.slot.committer,
            if self.hold_answers { "; holding answers" } else { "" },
            self.demoted_below
                .map_or(String::new(), |d| format!("; demoted below {d:?}")),
            self.writes.len(),
            self.slot_in_flight.is_some(),
            self.last_refusal,
            self.out_of_reach,
            self.purge_floor,
            self.snapshot.first_unset(),
            self.purged.first_unset(),
            self.bases_blocked,
        )
    }
}
