//! The node's event loop: the only owner of the `Replica`. It turns clock
//! ticks, peer messages, WAL completions, apply results and client requests
//! into `Input`s, and carries out the `Output`s: frames to peers, one WAL
//! submission per loop turn, slot writes, apply jobs, replies.

use super::batches::{BatchFrames, Origin};
use super::metrics::Metrics;
use super::{NodeError, Request, Shared};
use crate::apply::{self, Applied, ApplyJob, ApplyPool, Classifier, StateMachine};
use crate::core::{Input, Nanos, Output, ProposalId, Replica, WriteId};
use crate::ids::{LeaderId, NodeId};
use crate::transport::{encode_forward, encode_message, Inbound, PeerSender};
use crate::wal::slot::SlotRecord;
use crate::wal::{entry, GroupWal, SlotFile, WalError};
use rkyv::util::AlignedVec;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::oneshot;

/// How often the clock is stepped when nothing else happens.
pub const TICK: Duration = Duration::from_millis(1);
/// Events taken from each source per loop turn before outputs are carried
/// out: bounds a turn's latency while letting one turn batch many.
const DRAIN_MAX: usize = 1024;

/// A WAL submission resolved: every write below `upto` is durable.
type WalDone = Result<WriteId, WalError>;

pub(super) struct Driver<S: StateMachine> {
    pub replica: Replica<Classifier<S>>,
    pub sm: Arc<S>,
    pub started: Instant,
    pub wal: GroupWal,
    pub slot: SlotFile,
    pub incarnation: u64,
    pub peers: BTreeMap<NodeId, PeerSender>,
    pub pool: Option<ApplyPool>,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub wal_done_tx: mpsc::UnboundedSender<WalDone>,
    /// Requests accepted and not yet answered.
    pub waiting: HashMap<ProposalId, Waiter>,
    pub next_id: ProposalId,
    /// Inputs waiting to be stepped, in arrival order.
    pub inbox: Vec<Input>,
    pub wal_frames: Vec<AlignedVec>,
    pub wal_upto: Option<WriteId>,
    /// This turn's record batch frames, shared by the WAL and the wire.
    pub batches: BatchFrames,
    /// Where a snapshot cut is written, and the cuts asked for.
    pub snapshot_path: std::path::PathBuf,
    pub snapshots: HashMap<ProposalId, super::SnapshotAnswer>,
    /// Records applied since the last cut the node made on its own, the
    /// interval (`NodeConfig::snapshot_every`), and that cut while asked.
    pub applied_since_cut: u64,
    pub snapshot_every: u64,
    pub own_cut: Option<ProposalId>,
    pub was_leader: bool,
    /// Set while the WAL waits for disk space for its next segment.
    pub wal_full: Arc<std::sync::atomic::AtomicBool>,
    /// A leader whose WAL waits for space sends nothing (`send`): true
    /// while it does, to log the change once each way.
    pub silent: bool,
    /// Vote, role and known leader when last published, to log changes.
    pub role_seen: Option<(LeaderId, &'static str, Option<LeaderId>)>,
    /// When `Shared::status` was last refreshed.
    pub status_at: Instant,
}

/// How often the core's status line is refreshed for `INFO`.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// A caller waiting for its request's answer.
pub(super) struct Waiter {
    reply: oneshot::Sender<Result<Vec<u8>, NodeError>>,
    since: Instant,
    read: bool,
}

impl Waiter {
    fn answer(self, result: Result<Vec<u8>, NodeError>, metrics: &Metrics) {
        let us = self.since.elapsed().as_micros() as u64;
        let histogram = if self.read {
            &metrics.read_latency_us
        } else {
            &metrics.proposal_latency_us
        };
        Metrics::record(histogram, us);
        let _ = self.reply.send(result);
    }
}

pub(super) struct Channels {
    pub requests: mpsc::Receiver<Request>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub wal_done: mpsc::UnboundedReceiver<WalDone>,
    pub applied: mpsc::UnboundedReceiver<Applied>,
}

impl<S: StateMachine> Driver<S> {
    fn now(&self) -> Nanos {
        self.started.elapsed().as_nanos() as Nanos
    }

    /// Runs until asked to stop or every handle is gone; `Err` if the node
    /// had to stop (a failed WAL write: nothing more may be acknowledged).
    pub async fn run(mut self, mut ch: Channels) -> Result<(), NodeError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepting = self.waiting.len() < super::REQUESTS_IN_FLIGHT_MAX;
            tokio::select! {
                biased;
                Some(done) = ch.wal_done.recv() => self.on_wal_done(done)?,
                Some(applied) = ch.applied.recv() => self.on_applied(applied),
                Some(msg) = ch.inbound.recv() => self.on_inbound(msg),
                request = ch.requests.recv(), if accepting => match request {
                    Some(Request::Shutdown) | None => return Ok(()),
                    Some(request) => self.on_request(request),
                },
                _ = tick.tick() => {}
            }
            // Take what else is ready, so one turn carries out many inputs.
            for _ in 0..DRAIN_MAX {
                match ch.wal_done.try_recv() {
                    Ok(done) => self.on_wal_done(done)?,
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_MAX {
                match ch.applied.try_recv() {
                    Ok(applied) => self.on_applied(applied),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_MAX {
                match ch.inbound.try_recv() {
                    Ok(msg) => self.on_inbound(msg),
                    Err(_) => break,
                }
            }
            while self.waiting.len() < super::REQUESTS_IN_FLIGHT_MAX {
                match ch.requests.try_recv() {
                    Ok(Request::Shutdown) => return Ok(()),
                    Ok(request) => self.on_request(request),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            let now = self.now();
            self.inbox.push(Input::Tick { now });
            self.process();
            self.batches.clear();
            self.flush_wal()?;
            self.publish();
        }
    }

    /// Steps every input in the inbox, in order, and carries out what they
    /// lead to (which may queue more). Runs of recording inputs (proposals,
    /// apply results) go in through one `step_all`.
    fn process(&mut self) {
        while !self.inbox.is_empty() {
            let inputs = std::mem::take(&mut self.inbox);
            let mut run = Vec::new();
            for input in inputs {
                if Replica::<Classifier<S>>::batchable(&input) {
                    run.push(input);
                    continue;
                }
                if !run.is_empty() {
                    let outputs = self.replica.step_all(std::mem::take(&mut run));
                    outputs.into_iter().for_each(|o| self.carry_out(o));
                }
                let outputs = self.replica.step(input);
                outputs.into_iter().for_each(|o| self.carry_out(o));
            }
            if !run.is_empty() {
                let outputs = self.replica.step_all(run);
                outputs.into_iter().for_each(|o| self.carry_out(o));
            }
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Send { to, msg } => self.send(to, &msg),
            Output::WriteSlot(state) => {
                // Slot writes are rare (elections) and must be durable before
                // the vote is used: written and synced in place.
                let record = SlotRecord {
                    state,
                    incarnation: self.incarnation,
                };
                let since = Instant::now();
                if let Err(e) = self.slot.write(&record) {
                    self.fail(format!("slot file write failed: {e}"));
                    return;
                }
                let us = since.elapsed().as_micros() as u64;
                Metrics::record(&self.metrics.slot_latency_us, us);
                self.inbox.push(Input::SlotDurable {
                    generation: state.generation,
                });
            }
            Output::AppendWal { id, entry } => {
                let frame = match &entry {
                    crate::core::WalEntry::Records { records, .. } => {
                        let n = records.len() as u64;
                        self.metrics.records_written.fetch_add(n, Ordering::Relaxed);
                        Metrics::record(&self.metrics.batch_records, n);
                        self.batch_frame(records).map(|(frame, _)| frame.clone())
                    }
                    other => entry::encode(other),
                };
                match frame {
                    Ok(frame) => {
                        self.wal_frames.push(frame);
                        debug_assert!(self.wal_upto.is_none_or(|u| u == id));
                        self.wal_upto = Some(id + 1);
                    }
                    Err(e) => self.fail(format!("cannot encode WAL entry {id}: {e}")),
                }
            }
            Output::Snapshot {
                id,
                applied,
                config,
            } => {
                // No apply is in flight and none starts before this returns:
                // the state machine holds exactly the state at `applied`.
                let path = self.snapshot_path.clone();
                let result = self
                    .sm
                    .snapshot(&path, &applied, &config)
                    .map(|()| super::SnapshotTaken {
                        path,
                        applied: applied.clone(),
                    })
                    .map_err(|e| NodeError::Snapshot(e.to_string()));
                match &result {
                    // Durable: the core may purge what it holds.
                    Ok(_) => self.inbox.push(Input::SnapshotSaved { applied }),
                    Err(e) => tracing::warn!("node {}: {e}", self.shared.id),
                }
                if self.own_cut == Some(id) {
                    self.own_cut = None;
                    self.applied_since_cut = 0;
                }
                if let Some(reply) = self.snapshots.remove(&id) {
                    let _ = reply.send(result);
                }
            }
            Output::Purge { below } => self.purge_wal(below),
            Output::Apply { record } => {
                let job = ApplyJob::Record {
                    lsn: record.lsn,
                    cmd: record.cmd,
                };
                self.run_job(job);
            }
            Output::Read { id, cmd } => self.run_job(ApplyJob::Read { id, cmd }),
            Output::Reply { id, result } => {
                if let Some(waiter) = self.waiting.remove(&id) {
                    let result = result.map(|r| r.output).map_err(NodeError::from);
                    waiter.answer(result, &self.metrics);
                }
            }
        }
    }

    fn run_job(&mut self, job: ApplyJob) {
        match &self.pool {
            Some(pool) => pool.submit(job),
            None => {
                let applied = apply::run(&*self.sm, job);
                self.on_applied(applied);
            }
        }
    }

    fn send(&mut self, to: NodeId, msg: &crate::core::Message) {
        if !self.peers.contains_key(&to) {
            return; // not a peer this node knows an address for
        }
        if self.silenced() {
            return;
        }
        let encoded = match msg {
            // The records go as their batch frame, the bytes the WAL is given.
            crate::core::Message::Forward(forward) if !forward.records.is_empty() => self
                .batch_frame(&forward.records)
                .map_err(crate::transport::WireError::Encode)
                .and_then(|(batch, _)| encode_forward(forward, batch)),
            _ => encode_message(msg),
        };
        let frame = match encoded {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!("node {}: {e}; message to {to} dropped", self.shared.id);
                return;
            }
        };
        if self.peers[&to].try_send(frame) {
            self.metrics.sent_by_kind[msg.kind_index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The batch frame of `records` for this turn: received with a forward,
    /// made for an earlier use this turn, or encoded now.
    fn batch_frame(
        &mut self,
        records: &[crate::frame::Record],
    ) -> Result<(&AlignedVec, Origin), crate::frame::FrameError> {
        let (frame, origin) = self.batches.frame_for(records)?;
        let counter = match origin {
            Origin::Wire => &self.metrics.batches_from_wire,
            Origin::Kept => &self.metrics.batches_reused,
            Origin::Encoded => &self.metrics.batches_encoded,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok((frame, origin))
    }

    /// Asks the WAL writer to delete the segments below `below`. A purge
    /// that fails leaves segments that recovery reads again: logged, not
    /// fatal.
    fn purge_wal(&mut self, below: crate::ids::Lsn) {
        let id = self.shared.id;
        let metrics = self.metrics.clone();
        let asked = self.wal.purge(
            below,
            Box::new(move |result| match result {
                Ok(segments) => {
                    metrics.wal_purges.fetch_add(1, Ordering::Relaxed);
                    let n = segments.len() as u64;
                    metrics.wal_segments_purged.fetch_add(n, Ordering::Relaxed);
                    if n > 0 {
                        tracing::info!("node {id}: purged {n} WAL segments below LSN {below}");
                    }
                }
                Err(e) => tracing::warn!("node {id}: WAL purge below LSN {below} failed: {e}"),
            }),
        );
        if let Err(e) = asked {
            tracing::warn!("node {id}: WAL purge below LSN {below} not asked: {e}");
        }
    }

    /// One WAL submission for everything this turn appended, in order.
    fn flush_wal(&mut self) -> Result<(), NodeError> {
        if let Some(reason) = self.shared.failure() {
            return Err(NodeError::Failed(reason));
        }
        let Some(upto) = self.wal_upto.take() else {
            return Ok(());
        };
        let frames = std::mem::take(&mut self.wal_frames);
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        self.metrics.wal_submits.fetch_add(1, Ordering::Relaxed);
        let n = frames.len() as u64;
        self.metrics.wal_frames.fetch_add(n, Ordering::Relaxed);
        self.metrics
            .wal_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let done = self.wal_done_tx.clone();
        let metrics = self.metrics.clone();
        let submitted = Instant::now();
        self.wal
            .submit(
                frames,
                Box::new(move |result, _frames| {
                    let us = submitted.elapsed().as_micros() as u64;
                    Metrics::record(&metrics.wal_latency_us, us);
                    let _ = done.send(result.map(|_| upto));
                }),
            )
            .map_err(|e| NodeError::Failed(format!("WAL: {e}")))
    }

    fn on_wal_done(&mut self, done: WalDone) -> Result<(), NodeError> {
        match done {
            Ok(upto) => {
                self.inbox.push(Input::WalDurable { upto });
                Ok(())
            }
            Err(e) => {
                // Never retried: a failed write or sync may have lost data
                // the disk claimed to hold, so nothing more is acknowledged.
                let reason = format!("WAL write failed: {e}");
                self.fail(reason.clone());
                Err(NodeError::Failed(reason))
            }
        }
    }

    /// Answers a read; queues the input that tells the core a job is done.
    fn on_applied(&mut self, applied: Applied) {
        let input = match applied {
            Applied::Record { lsn, result } => {
                self.metrics.applied.fetch_add(1, Ordering::Relaxed);
                self.applied_since_cut += 1;
                if self.snapshot_every > 0
                    && self.applied_since_cut >= self.snapshot_every
                    && self.own_cut.is_none()
                {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.own_cut = Some(id);
                    self.inbox.push(Input::Snapshot { id });
                }
                Input::Applied { lsn, result }
            }
            Applied::Read { id, result } => {
                if let Some(waiter) = self.waiting.remove(&id) {
                    waiter.answer(Ok(result), &self.metrics);
                }
                Input::ReadDone { id }
            }
        };
        self.inbox.push(input);
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        self.metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        self.metrics.received_by_kind[inbound.msg.kind_index()].fetch_add(1, Ordering::Relaxed);
        if let (Some(batch), crate::core::Message::Forward(forward)) = (inbound.batch, &inbound.msg)
        {
            self.batches.received(&forward.records, batch);
        }
        self.inbox.push(Input::Receive {
            from: inbound.from,
            msg: inbound.msg,
        });
    }

    fn on_request(&mut self, request: Request) {
        let id = self.next_id;
        self.next_id += 1;
        let input = match request {
            Request::Propose { cmd, reply } => {
                if cmd.is_empty() {
                    let _ = reply.send(Err(NodeError::EmptyCommand));
                    return;
                }
                self.metrics.proposals.fetch_add(1, Ordering::Relaxed);
                let since = Instant::now();
                let read = false;
                self.waiting.insert(id, Waiter { reply, since, read });
                Input::Propose { id, cmd }
            }
            Request::Read { cmd, reply } => {
                if !self.sm.classify(&cmd).read_only {
                    let _ = reply.send(Err(NodeError::NotReadOnly));
                    return;
                }
                self.metrics.reads.fetch_add(1, Ordering::Relaxed);
                let since = Instant::now();
                let read = true;
                self.waiting.insert(id, Waiter { reply, since, read });
                Input::Read { id, cmd }
            }
            Request::Transfer { to } => Input::Transfer { to },
            Request::Snapshot { reply } => {
                self.snapshots.insert(id, reply);
                Input::Snapshot { id }
            }
            Request::Shutdown => unreachable!("handled by the loop"),
        };
        self.inbox.push(input);
    }

    /// A leader whose WAL waits for disk space goes silent: it cannot make
    /// anything durable, and while its heartbeats reach them the followers
    /// would stay with it, so the cluster would stop. Silent, it is to them
    /// a leader cut off: they elect one that can write, and its forwards
    /// depose this one, which then follows (and waits for space as any
    /// follower does). It speaks again once space returns.
    fn silenced(&mut self) -> bool {
        let silent = self.replica.role_name() == "leader" && self.wal_full.load(Ordering::Relaxed);
        if silent != self.silent {
            self.silent = silent;
            if silent {
                tracing::warn!(
                    "node {}: leading with no WAL space: silent, for another replica to take over",
                    self.shared.id
                );
            } else {
                tracing::info!("node {}: no longer silent", self.shared.id);
            }
        }
        silent
    }

    fn fail(&mut self, reason: String) {
        tracing::error!("node {}: {reason}; the node stops", self.shared.id);
        self.shared.set_failure(reason);
    }

    /// Publishes who leads; answers what a lost leadership leaves behind.
    fn publish(&mut self) {
        let leader = self.replica.known_leader();
        let is_leader = self.replica.established_leader().is_some();
        // Elections are rare in a healthy cluster: each change is worth a line.
        let role = (self.replica.vote(), self.replica.role_name(), leader);
        if self.role_seen != Some(role) {
            self.role_seen = Some(role);
            tracing::info!(
                "node {}: vote {}, {}{}, committer {}",
                self.shared.id,
                role.0,
                role.1,
                leader.map_or(String::new(), |l| format!(
                    " (leader {l}{})",
                    if is_leader { ", established" } else { "" }
                )),
                self.replica.committer()
            );
        }
        self.shared
            .leader
            .store(leader.map_or(0, |l| l.node + 1), Ordering::Relaxed);
        self.shared.is_leader.store(is_leader, Ordering::Relaxed);
        self.shared
            .term
            .store(self.replica.vote().term, Ordering::Relaxed);
        let (committed, applied) = (self.replica.committed(), self.replica.applied());
        self.shared
            .committed
            .store(committed.count(), Ordering::Relaxed);
        self.shared
            .applied
            .store(applied.count(), Ordering::Relaxed);
        if self.status_at.elapsed() >= STATUS_EVERY {
            self.status_at = Instant::now();
            if let Ok(mut status) = self.shared.status.lock() {
                *status = self.replica.status();
            }
        }
        if self.was_leader && !is_leader {
            // Proposals this leadership took may still commit under a later
            // leader, or not: their outcome is unknown, and waiting on would
            // keep callers hanging for a reply nobody will send.
            for (_, waiter) in self.waiting.drain() {
                waiter.answer(Err(NodeError::OutcomeUnknown), &self.metrics);
            }
        }
        self.was_leader = is_leader;
    }
}
