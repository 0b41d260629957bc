//! A scripted world for the scenarios of SCENARIOS.md: the test decides which
//! message is delivered or lost, when each disk write completes, when a
//! replica crashes, and how time moves. The checks are the simulator's own.

use super::check::{Checker, Violation};
use super::disk::Disk;
use super::kv::{KvConflicts, KvOp, KvState};
use crate::core::{
    Config, Input, Message, Mutations, Nanos, Output, Params, ProposalId, ProposeError, Replica,
    Reply, WriteId,
};
use crate::frame::Record;
use crate::ids::{LeaderId, Lsn, NodeId};
use std::collections::BTreeMap;

pub const MS: Nanos = 1_000_000;

/// A message on its way: it stays in the pool until delivered or dropped.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
    /// When it was sent.
    pub sent_at: Nanos,
}

struct Node {
    replica: Option<Replica<KvConflicts>>,
    incarnation: u64,
    disk: Disk,
    kv: KvState,
}

pub struct Script {
    config: Config,
    params: Params,
    mutations: Mutations,
    now: Nanos,
    nodes: BTreeMap<NodeId, Node>,
    pub pool: Vec<InFlight>,
    /// Every message ever sent, in order (to replay one as a duplicate).
    pub sent: Vec<InFlight>,
    checker: Checker,
    /// Complete every disk write as soon as it is issued...
    pub auto_disk: bool,
    /// ...except on these nodes, whose writes wait for `complete_*`.
    pub slow_disks: std::collections::BTreeSet<NodeId>,
    /// Followers never campaign on their own; only `campaign` starts one...
    pub manual_elections: bool,
    /// ...except these, whose election timers run.
    pub timers_on: std::collections::BTreeSet<NodeId>,
    pub replies: BTreeMap<ProposalId, Result<Reply, ProposeError>>,
    /// What each served read returned.
    pub reads: BTreeMap<ProposalId, Vec<u8>>,
    read_invoked: BTreeMap<ProposalId, Nanos>,
    /// Reads take time: a handed-out read reads its first key at once and
    /// the rest at `finish_read`, with whatever applies in between.
    pub slow_reads: bool,
    /// Reads running: id → (node, command, value of the first key, the
    /// applied set they were handed out at).
    running_reads: BTreeMap<ProposalId, (NodeId, Vec<u8>, u64, crate::bitmap::TailBitmap)>,
    /// What each proposal asked for.
    proposed: BTreeMap<ProposalId, Vec<u8>>,
    next_proposal: ProposalId,
    /// The first violation any step produced.
    pub violation: Option<Violation>,
    /// The node `campaign` is starting, exempt from `manual_elections`.
    campaigning: Option<NodeId>,
    /// Clock rate errors, parts per million: a node's clock reads
    /// `now × (1 + ppm / 10⁶)` (DESIGN.md §3.9 bounds |ppm| by ρ).
    pub clock_ppm: BTreeMap<NodeId, i64>,
}

impl Script {
    /// `n` replicas with ids `1..=n`, started at time 0.
    pub fn new(n: u64, params: Params, mutations: Mutations) -> Script {
        let config = Config::uniform(1..=n).expect("valid config");
        let mut script = Script {
            checker: Checker::new(config.clone()),
            config,
            params,
            mutations,
            now: 0,
            nodes: BTreeMap::new(),
            pool: Vec::new(),
            sent: Vec::new(),
            auto_disk: true,
            slow_disks: Default::default(),
            manual_elections: true,
            timers_on: Default::default(),
            replies: BTreeMap::new(),
            reads: BTreeMap::new(),
            read_invoked: BTreeMap::new(),
            slow_reads: false,
            running_reads: BTreeMap::new(),
            proposed: BTreeMap::new(),
            next_proposal: 1,
            violation: None,
            campaigning: None,
            clock_ppm: BTreeMap::new(),
        };
        for id in 1..=n {
            script.nodes.insert(
                id,
                Node {
                    replica: None,
                    incarnation: 0,
                    disk: Disk::default(),
                    kv: KvState::default(),
                },
            );
            script.restart(id);
        }
        script
    }

    pub fn params() -> Params {
        Params {
            heartbeat: 20 * MS,
            t_min: 200 * MS,
            rho_ppm: 10_000,
            drift_allowance: 14 * MS,
            window: 4,
            retransmit: 10 * MS,
            max_batch: 64,
            strict: false,
            transfer_timeout: 400 * MS,
        }
    }

    pub fn now(&self) -> Nanos {
        self.now
    }

    /// What `node`'s clock reads now.
    pub fn local_now(&self, node: NodeId) -> Nanos {
        let ppm = self.clock_ppm.get(&node).copied().unwrap_or(0);
        let drift = self.now as i128 * ppm as i128 / 1_000_000;
        (self.now as i128 + drift) as Nanos
    }

    pub fn replica(&self, node: NodeId) -> &Replica<KvConflicts> {
        self.nodes[&node].replica.as_ref().expect("live replica")
    }

    pub fn is_up(&self, node: NodeId) -> bool {
        self.nodes[&node].replica.is_some()
    }

    pub fn kv(&self, node: NodeId) -> &KvState {
        &self.nodes[&node].kv
    }

    fn fail(&mut self, violation: Violation) {
        if self.violation.is_none() {
            self.violation = Some(violation);
        }
    }

    /// Moves time forward by `dt`, ticking every live replica.
    pub fn advance(&mut self, dt: Nanos) {
        self.now += dt;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.is_up(id) {
                let now = self.local_now(id);
                self.step(id, Input::Tick { now });
            }
        }
    }

    /// Moves time forward in small ticks, delivering every message as it
    /// goes, until `done` holds or `limit` passes. Returns whether it held.
    pub fn run_until(&mut self, limit: Nanos, done: impl Fn(&Script) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.deliver(|_| true);
            self.advance(MS);
        }
        done(self)
    }

    /// Like `run_until`, but delivers only messages `pass` accepts and loses
    /// the others (a partition, a lossy link).
    pub fn run_until_with(
        &mut self,
        limit: Nanos,
        pass: impl Fn(&InFlight) -> bool,
        done: impl Fn(&Script) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.deliver(&pass);
            self.drop_where(|m| !pass(m));
            self.advance(MS);
        }
        done(self)
    }

    /// Delivers (once) every pooled message `pick` selects; the rest stay.
    pub fn deliver(&mut self, pick: impl Fn(&InFlight) -> bool) -> usize {
        let mut delivered = 0;
        loop {
            let Some(index) = self.pool.iter().position(&pick) else {
                return delivered;
            };
            let m = self.pool.remove(index);
            delivered += 1;
            if self.is_up(m.to) {
                self.step(
                    m.to,
                    Input::Receive {
                        from: m.from,
                        msg: m.msg,
                    },
                );
            }
        }
    }

    /// Loses every pooled message `pick` selects.
    pub fn drop_where(&mut self, pick: impl Fn(&InFlight) -> bool) -> usize {
        let before = self.pool.len();
        self.pool.retain(|m| !pick(m));
        before - self.pool.len()
    }

    /// Completes the slot write in flight at `node`, if any.
    pub fn complete_slot(&mut self, node: NodeId) {
        let n = self.nodes.get_mut(&node).expect("node");
        if let Some(generation) = n.disk.complete_slot() {
            self.step(node, Input::SlotDurable { generation });
        }
    }

    /// Completes WAL write `id` at `node`; the durable mark moves over the
    /// contiguous prefix of completed writes.
    pub fn complete_wal(&mut self, node: NodeId, id: WriteId) {
        let n = self.nodes.get_mut(&node).expect("node");
        if let Some(upto) = n.disk.complete_wal(id) {
            self.step(node, Input::WalDurable { upto });
        }
    }

    /// The WAL writes in flight at `node`.
    pub fn wal_in_flight(&self, node: NodeId) -> Vec<WriteId> {
        self.nodes[&node].disk.in_flight()
    }

    /// Completes every disk write in flight at `node`, and those they issue.
    pub fn complete_disk(&mut self, node: NodeId) {
        while self.nodes[&node].disk.busy() {
            self.complete_slot(node);
            for id in self.nodes[&node].disk.in_flight() {
                self.complete_wal(node, id);
            }
        }
    }

    /// Crashes `node`; a latent fault damaged its frame holding `lsn`, which
    /// a later frame vouches for. It restarts reporting corruption.
    pub fn crash_corrupted(&mut self, node: NodeId, lsn: Lsn) {
        self.crash(node);
        self.nodes.get_mut(&node).expect("node").disk.corrupt(lsn);
        self.restart(node);
    }

    /// Loses everything not durable, then restarts through recovery.
    pub fn crash_and_restart(&mut self, node: NodeId) {
        self.crash(node);
        self.restart(node);
    }

    pub fn crash(&mut self, node: NodeId) {
        let n = self.nodes.get_mut(&node).expect("node");
        n.replica = None;
        n.disk.crash();
        n.kv = KvState::default();
        // Messages already sent stay in the pool: a crash recalls no packet.
    }

    pub fn restart(&mut self, node: NodeId) {
        let n = self.nodes.get_mut(&node).expect("node");
        n.incarnation += 1;
        let seed = node * 7919 + n.incarnation;
        let local = self.local_now(node);
        let n = self.nodes.get_mut(&node).expect("node");
        let replica = n.disk.boot(
            node,
            &self.config,
            &self.params,
            local,
            seed,
            &self.mutations,
        );
        n.kv = match &n.disk.snapshot {
            Some((_, state)) => state.clone(),
            None => KvState::default(),
        };
        n.replica = Some(replica);
        self.step(node, Input::Tick { now: local });
    }

    /// Removes rules at `node` alone from now on.
    pub fn mutate(&mut self, node: NodeId, mutations: Mutations) {
        let n = self.nodes.get_mut(&node).expect("node");
        n.replica.as_mut().expect("live").set_mutations(mutations);
    }

    /// Makes `node` campaign now, as after a successful probe.
    pub fn campaign(&mut self, node: NodeId) {
        let now = self.local_now(node);
        self.nodes
            .get_mut(&node)
            .expect("node")
            .replica
            .as_mut()
            .expect("live")
            .campaign_next();
        self.campaigning = Some(node);
        self.step(node, Input::Tick { now });
        self.campaigning = None;
    }

    /// Proposes `op` at `node`; returns the proposal id.
    pub fn propose(&mut self, node: NodeId, op: KvOp) -> ProposalId {
        self.propose_bytes(node, op.encode())
    }

    /// Proposes a raw command (bytes the KV machine does not know are a
    /// barrier, like a config change).
    pub fn propose_bytes(&mut self, node: NodeId, cmd: Vec<u8>) -> ProposalId {
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.proposed.insert(id, cmd.clone());
        self.step(node, Input::Propose { id, cmd });
        id
    }

    /// Asks `node` for a snapshot cut; it is durable as soon as it is cut.
    pub fn snapshot(&mut self, node: NodeId) {
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.step(node, Input::Snapshot { id });
    }

    /// Asks `node` for a linearizable read of `op`; returns its id.
    pub fn read(&mut self, node: NodeId, op: KvOp) -> ProposalId {
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.read_invoked.insert(id, self.now);
        self.step(
            node,
            Input::Read {
                id,
                cmd: op.encode(),
            },
        );
        id
    }

    /// How many reads are running (with `slow_reads`).
    pub fn running_reads(&self) -> usize {
        self.running_reads.len()
    }

    /// Ends read `id` (with `slow_reads`): reads its other keys now.
    pub fn finish_read(&mut self, id: ProposalId) {
        let (node, cmd, first, applied) = self.running_reads.remove(&id).expect("a running read");
        let op = KvOp::decode(&cmd).expect("a KV read");
        let kv = &self.nodes[&node].kv;
        let mut value = first.to_le_bytes().to_vec();
        for key in &op.keys()[1..] {
            value.extend_from_slice(&kv.read(*key).to_le_bytes());
        }
        if let Err(v) = self.checker.on_read_result(node, &cmd, &value, &applied) {
            self.fail(v);
        }
        self.reads.insert(id, value);
        if self.is_up(node) {
            self.step(node, Input::ReadDone { id });
        }
    }

    /// Asks `node` to hand leadership to `to`.
    pub fn transfer(&mut self, node: NodeId, to: NodeId) {
        self.step(node, Input::Transfer { to });
    }

    /// The established leader with the greatest LeaderId, if any.
    pub fn leader(&self) -> Option<(NodeId, LeaderId)> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| {
                n.replica
                    .as_ref()
                    .and_then(|r| r.established_leader())
                    .map(|c| (*id, c))
            })
            .max_by_key(|(_, c)| *c)
    }

    /// The record `node` holds at `lsn`.
    pub fn record_at(&self, node: NodeId, lsn: Lsn) -> Option<Record> {
        self.replica(node).log().get(&lsn).cloned()
    }

    /// Runs the end-of-run checks (state equals serial apply, closure).
    pub fn final_checks(&mut self) {
        if let Err(v) = self.checker.check_dependency_closure() {
            self.fail(v);
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(r) = &self.nodes[&id].replica {
                match self.checker.serial_state(r.applied()) {
                    Ok(state) if state == self.nodes[&id].kv => {}
                    Ok(_) => self.fail(format!(
                        "node {id}: state differs from serial LSN-order apply"
                    )),
                    Err(v) => self.fail(v),
                }
            }
        }
    }

    fn step(&mut self, node: NodeId, input: Input) {
        let n = self.nodes.get_mut(&node).expect("node");
        let incarnation = n.incarnation;
        let Some(replica) = n.replica.as_mut() else {
            return;
        };
        let manual = self.manual_elections && !self.timers_on.contains(&node);
        if manual && self.campaigning != Some(node) {
            replica.set_election_timer(Nanos::MAX);
        }
        let outputs = replica.step(input);
        if manual {
            replica.set_election_timer(Nanos::MAX);
        }
        let replica = self.nodes[&node].replica.as_ref().expect("live");
        if let Err(v) = self.checker.after_step(replica, incarnation) {
            self.fail(v);
        }
        for output in outputs {
            self.output(node, incarnation, output);
        }
    }

    fn output(&mut self, node: NodeId, incarnation: u64, output: Output) {
        match output {
            Output::Send { to, msg } => {
                let sender = self.nodes[&node].replica.as_ref().expect("live");
                if let Err(v) = self.checker.on_send(sender, &msg) {
                    self.fail(v);
                }
                let m = InFlight {
                    from: node,
                    to,
                    msg,
                    sent_at: self.now,
                };
                self.sent.push(m.clone());
                self.pool.push(m);
            }
            Output::WriteSlot(slot) => {
                let written = self
                    .nodes
                    .get_mut(&node)
                    .expect("node")
                    .disk
                    .write_slot(slot);
                if let Err(e) = written {
                    self.fail(format!("node {node}: {e}"));
                }
                if self.auto_disk && !self.slow_disks.contains(&node) {
                    self.complete_slot(node);
                }
            }
            Output::AppendWal { id, entry } => {
                let writer = self.nodes[&node].replica.as_ref().expect("live");
                if let Err(v) = self.checker.on_append(writer, incarnation, &entry) {
                    self.fail(v);
                }
                self.nodes
                    .get_mut(&node)
                    .expect("node")
                    .disk
                    .append(id, entry);
                if self.auto_disk && !self.slow_disks.contains(&node) {
                    self.complete_wal(node, id);
                }
            }
            // Applies here are synchronous: a cut always finds none in flight.
            // The cut is durable at once.
            Output::Snapshot { applied, .. } => {
                let n = self.nodes.get_mut(&node).expect("node");
                n.disk.snapshot = Some((applied.clone(), n.kv.clone()));
                self.step(node, Input::SnapshotSaved { applied });
            }
            Output::Purge { below } => {
                let n = self.nodes.get_mut(&node).expect("node");
                n.disk.purge(below);
            }
            Output::Apply { record } => {
                if let Err(v) = self.checker.on_apply(node, &record) {
                    self.fail(v);
                }
                let n = self.nodes.get_mut(&node).expect("node");
                let result = n.kv.apply(&record.cmd);
                self.step(
                    node,
                    Input::Applied {
                        lsn: record.lsn,
                        result,
                    },
                );
            }
            Output::Reply { id, result } => {
                if let (Ok(reply), Some(cmd)) = (&result, self.proposed.get(&id)) {
                    if let Err(v) = self.checker.on_reply(reply.lsn, cmd, self.now) {
                        self.fail(v);
                    }
                }
                self.replies.insert(id, result);
            }
            Output::Read { id, cmd } => {
                let replica = self.nodes[&node].replica.as_ref().expect("live");
                let applied = replica.applied().clone();
                let invoked = self.read_invoked.remove(&id).expect("a read we made");
                if let Err(v) = self.checker.on_read(node, &cmd, invoked, &applied) {
                    self.fail(v);
                }
                let op = KvOp::decode(&cmd).expect("a KV read");
                let n = self.nodes.get_mut(&node).expect("node");
                if self.slow_reads {
                    let first = n.kv.read(op.keys()[0]);
                    self.running_reads.insert(id, (node, cmd, first, applied));
                } else {
                    let value = n.kv.apply(&cmd);
                    self.reads.insert(id, value);
                    self.step(node, Input::ReadDone { id });
                }
            }
        }
    }
}
