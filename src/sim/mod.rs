//! The deterministic simulator (DESIGN.md §6): N replicas in one thread over
//! a simulated network and simulated disks, driven by one seeded RNG, with
//! the checks of §3.8 after every step. The same seed replays the same run.

mod check;
mod disk;
pub mod kv;
pub mod script;

use crate::core::{
    Config, Input, Message, Mutations, Nanos, Output, Params, ProposalId, Replica, Rng, WriteId,
};
use crate::ids::{LeaderId, NodeId};
use crate::TailBitmap;
use check::{Checker, Violation};
use kv::{KvConflicts, KvOp, KvState};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::hash::{Hash, Hasher};

const MS: Nanos = 1_000_000;
const US: Nanos = 1_000;

/// How hostile the world is while faults are on.
#[derive(Clone, Debug)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    /// Probability a message is held back for up to `long_delay`.
    pub delay: f64,
    pub long_delay: Nanos,
    /// Mean time between crashes of some replica.
    pub crash_every: Nanos,
    /// Mean time between partitions.
    pub partition_every: Nanos,
    /// Mean time between leadership transfer requests.
    pub transfer_every: Nanos,
    /// Probability a disk write stalls for up to `disk_stall`.
    pub disk_stall_p: f64,
    pub disk_stall: Nanos,
    /// Mean time between pauses of some replica (a SIGSTOP: it keeps its
    /// state, its inputs wait, its clock runs on).
    pub pause_every: Nanos,
    /// A pause lasts up to this long.
    pub pause_max: Nanos,
}

impl Faults {
    pub fn none() -> Self {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            delay: 0.0,
            long_delay: 0,
            crash_every: 0,
            partition_every: 0,
            transfer_every: 0,
            disk_stall_p: 0.0,
            disk_stall: 0,
            pause_every: 0,
            pause_max: 0,
        }
    }

    pub fn standard() -> Self {
        Faults {
            drop: 0.05,
            duplicate: 0.03,
            delay: 0.05,
            long_delay: 300 * MS,
            crash_every: 600 * MS,
            partition_every: 800 * MS,
            transfer_every: 1_000 * MS,
            disk_stall_p: 0.02,
            disk_stall: 200 * MS,
            pause_every: 1_500 * MS,
            pause_max: 1_000 * MS,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub replicas: usize,
    pub seed: u64,
    pub clients: usize,
    pub keys: u64,
    /// Simulated time with faults on; then they stop.
    pub fault_time: Nanos,
    /// Simulated time after faults stop, in which liveness must show.
    pub quiet_time: Nanos,
    pub faults: Faults,
    pub mutations: Mutations,
    pub strict: bool,
    /// Election race: every replica's timer fires at this instant, and the
    /// run ends at the first established leader.
    pub race_at: Option<Nanos>,
    /// Mean time between snapshot cuts asked of some replica (0: none).
    /// Each cut must find no apply in flight and a state that is the serial
    /// apply of its applied set.
    pub snapshot_every: Nanos,
}

impl SimConfig {
    pub fn new(replicas: usize, seed: u64) -> Self {
        SimConfig {
            replicas,
            seed,
            clients: 3,
            keys: 4,
            fault_time: 3_000 * MS,
            quiet_time: 3_000 * MS,
            faults: Faults::standard(),
            mutations: Mutations::default(),
            strict: false,
            race_at: None,
            snapshot_every: 0,
        }
    }

    /// A fault-free election race starting at 1 s (past every restart's stickiness).
    pub fn election_race(replicas: usize, seed: u64, classic_vote: bool) -> Self {
        let mut cfg = SimConfig::new(replicas, seed);
        cfg.faults = Faults::none();
        cfg.clients = 0;
        cfg.fault_time = 0;
        cfg.quiet_time = 120_000 * MS;
        cfg.mutations.classic_vote = classic_vote;
        cfg.race_at = Some(1_000 * MS);
        cfg
    }

    /// The command that replays this run exactly.
    pub fn replay_command(&self) -> String {
        let default = SimConfig::new(self.replicas, self.seed);
        let mut times = String::new();
        if (self.fault_time, self.quiet_time) != (default.fault_time, default.quiet_time) {
            times = format!(
                " --fault-secs {} --quiet-secs {}",
                self.fault_time as f64 / 1e9,
                self.quiet_time as f64 / 1e9
            );
        }
        let snapshots = if self.snapshot_every > 0 {
            format!(" --snapshot-ms {}", self.snapshot_every / MS)
        } else {
            String::new()
        };
        format!(
            "traft sim --replicas {} --seeds 1 --start {}{}{}{}",
            self.replicas,
            self.seed,
            if self.strict { " --strict" } else { "" },
            times,
            snapshots
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub steps: u64,
    pub trace_hash: u64,
    pub chosen: usize,
    pub leaders: usize,
    pub replies_ok: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub reads_ok: u64,
    pub transfers: u64,
    /// Snapshot cuts made and checked.
    pub snapshots: u64,
    /// Restarts whose state machine started from the last cut; restarts
    /// with a cut that recovery did not take (it covered LSNs the log lacks).
    pub restarts_from_snapshot: u64,
    /// WAL purges carried out (each below a durable snapshot).
    pub purges: u64,
    /// Restarts whose log lacked records its snapshot holds (purged).
    pub restarts_purged: u64,
    /// In an election race: time from the timers firing to the first
    /// established leader.
    pub race_time: Option<Nanos>,
}

#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub time: Nanos,
    pub step: u64,
    pub violation: Violation,
    pub replay: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} violated at t={:.3}s step {}: {}\n  replay: {}",
            self.seed,
            self.time as f64 / 1e9,
            self.step,
            self.violation,
            self.replay
        )
    }
}

#[derive(Debug, Clone, Hash)]
enum Event {
    Tick(NodeId),
    Deliver {
        to: NodeId,
        from: NodeId,
        msg: Message,
    },
    SlotDone {
        node: NodeId,
        incarnation: u64,
        generation: u64,
    },
    WalDone {
        node: NodeId,
        incarnation: u64,
        id: WriteId,
    },
    ApplyDone {
        node: NodeId,
        incarnation: u64,
        lsn: u64,
    },
    ReadDone {
        node: NodeId,
        incarnation: u64,
        id: ProposalId,
        cmd: Vec<u8>,
    },
    /// Ask the leader, if any, to hand over to a random replica.
    Transfer,
    /// Once faults stopped: remember what the leader knows committed; by
    /// the end every live replica must have applied all of it.
    CatchUpMark,
    /// Once faults stopped: a transfer to a live, connected replica must
    /// complete within the transfer timeout.
    QuietTransfer,
    TransferCheck {
        to: NodeId,
        asked: Nanos,
    },
    Crash(NodeId),
    Restart(NodeId),
    Pause(NodeId),
    /// Ask a replica for a snapshot cut.
    Snapshot(NodeId),
    /// The snapshot cut at `applied` is durable.
    SnapshotSaved {
        node: NodeId,
        incarnation: u64,
        applied: TailBitmap,
    },
    Partition,
    Heal,
    Client(usize),
}

struct Node {
    replica: Option<Replica<KvConflicts>>,
    incarnation: u64,
    disk: disk::Disk,
    kv: KvState,
    /// Apply outputs waiting for their `ApplyDone`.
    applying: BTreeMap<u64, crate::frame::Record>,
    /// Recording inputs held back to go in together through `step_all`
    /// before this node's next other input, as a runtime batches them.
    held: Vec<Held>,
    /// Paused (stopped, not crashed) until then: its inputs wait.
    paused_until: Nanos,
}

enum Held {
    Input(Input),
    /// An apply that finishes when the held inputs go in.
    Apply(u64),
}

enum ClientState {
    Idle,
    Waiting { id: ProposalId, since: Nanos },
}

struct Client {
    state: ClientState,
    target: NodeId,
    /// When an operation of this client last succeeded.
    last_ok: Nanos,
}

pub struct Sim {
    cfg: SimConfig,
    config: Config,
    params: Params,
    rng: Rng,
    now: Nanos,
    seq: u64,
    /// Pending events by (time, sequence): ties run in scheduling order.
    queue: BinaryHeap<std::cmp::Reverse<(Nanos, u64)>>,
    events: BTreeMap<u64, Event>,
    nodes: BTreeMap<NodeId, Node>,
    clients: Vec<Client>,
    /// Operations waiting for an answer: id → (client, command).
    proposals: BTreeMap<ProposalId, (usize, Vec<u8>)>,
    next_proposal: ProposalId,
    /// Nodes cut off from the rest, while a partition lasts.
    cut: BTreeSet<NodeId>,
    checker: Checker,
    hasher: DefaultHasher,
    report: Report,
    /// OK replies to check against serial apply: (lsn, output).
    replies: Vec<(u64, Vec<u8>)>,
    /// When each read was invoked, while it waits.
    reads: BTreeMap<ProposalId, Nanos>,
    /// Print every event (`TRAFT_SIM_TRACE=1`).
    trace: bool,
    /// Each replica's clock rate error in ppm, within ±ρ (DESIGN.md §3.9).
    clock_ppm: BTreeMap<NodeId, i64>,
    /// The leader and what it knew committed at the catch-up mark.
    catch_up: Option<(NodeId, crate::TailBitmap)>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
        let ids: Vec<NodeId> = (1..=cfg.replicas as NodeId).collect();
        let config = Config::uniform(ids.iter().copied()).expect("valid config");
        // Parameters drawn per seed, heartbeat well below the lease.
        let t_min = (100 + rng.next_u64() % 200) * MS;
        let params = Params {
            heartbeat: t_min / 10,
            t_min,
            rho_ppm: 10_000,
            drift_allowance: 2 * t_min / 100 + 10 * MS,
            window: 2 + (rng.next_u64() % 7) as usize,
            retransmit: (5 + rng.next_u64() % 20) * MS,
            max_batch: 1 + (rng.next_u64() % 64) as usize,
            strict: cfg.strict,
            transfer_timeout: 2 * t_min,
        };
        let checker = Checker::new(config.clone());
        // Clock rates come from their own stream, so the rest of a seed's
        // draws are those of a world without drift. The election race keeps
        // every clock exact: it measures timers firing together.
        let mut clock_rng = Rng::new(cfg.seed ^ 0xc10c_c10c);
        let rho = params.rho_ppm as i64;
        let clock_ppm = ids
            .iter()
            .map(|&id| {
                let ppm = (clock_rng.next_u64() % (2 * rho as u64 + 1)) as i64 - rho;
                (id, if cfg.race_at.is_some() { 0 } else { ppm })
            })
            .collect();
        let mut sim = Sim {
            catch_up: None,
            clock_ppm,
            config,
            params,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes: BTreeMap::new(),
            clients: Vec::new(),
            proposals: BTreeMap::new(),
            next_proposal: 1,
            cut: BTreeSet::new(),
            checker,
            hasher: DefaultHasher::new(),
            report: Report::default(),
            replies: Vec::new(),
            reads: BTreeMap::new(),
            trace: std::env::var_os("TRAFT_SIM_TRACE").is_some(),
            cfg,
        };
        for &id in &ids {
            sim.nodes.insert(
                id,
                Node {
                    replica: None,
                    incarnation: 0,
                    disk: disk::Disk::default(),
                    kv: KvState::default(),
                    applying: BTreeMap::new(),
                    held: Vec::new(),
                    paused_until: 0,
                },
            );
            sim.schedule(0, Event::Restart(id));
        }
        for c in 0..sim.cfg.clients {
            sim.clients.push(Client {
                state: ClientState::Idle,
                target: ids[c % ids.len()],
                last_ok: 0,
            });
            let at = 10 * MS + sim.random(50 * MS);
            sim.schedule(at, Event::Client(c));
        }
        if sim.cfg.faults.crash_every > 0 {
            let at = sim.random(2 * sim.cfg.faults.crash_every);
            let victim = sim.random_node();
            sim.schedule(at, Event::Crash(victim));
        }
        if sim.cfg.faults.partition_every > 0 {
            let at = sim.random(2 * sim.cfg.faults.partition_every);
            sim.schedule(at, Event::Partition);
        }
        if sim.cfg.faults.pause_every > 0 {
            let at = sim.random(2 * sim.cfg.faults.pause_every);
            let victim = sim.random_node();
            sim.schedule(at, Event::Pause(victim));
        }
        if sim.cfg.snapshot_every > 0 {
            let at = sim.random(2 * sim.cfg.snapshot_every);
            let node = sim.random_node();
            sim.schedule(at, Event::Snapshot(node));
        }
        if sim.cfg.race_at.is_none() {
            let mark = sim.cfg.fault_time + 2 * sim.params.t_min;
            sim.schedule(mark, Event::CatchUpMark);
        }
        if sim.cfg.faults.transfer_every > 0 {
            let at = sim.random(2 * sim.cfg.faults.transfer_every);
            sim.schedule(at, Event::Transfer);
            let quiet = sim.cfg.fault_time + 5 * sim.params.t_min;
            sim.schedule(quiet, Event::QuietTransfer);
        }
        sim
    }

    fn random(&mut self, bound: Nanos) -> Nanos {
        if bound == 0 {
            0
        } else {
            self.rng.next_u64() % bound
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn random_node(&mut self) -> NodeId {
        1 + self.random(self.cfg.replicas as u64)
    }

    fn faults_on(&self) -> bool {
        self.now < self.cfg.fault_time
    }

    fn schedule(&mut self, at: Nanos, event: Event) {
        self.seq += 1;
        self.queue.push(std::cmp::Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Runs to the end; the first violated check ends the run.
    pub fn run(mut self) -> Result<Report, Failure> {
        let end = self.cfg.fault_time + self.cfg.quiet_time;
        while let Some(std::cmp::Reverse((at, seq))) = self.queue.pop() {
            if at > end || self.report.race_time.is_some() {
                break;
            }
            let event = self.events.remove(&seq).expect("scheduled event");
            self.now = at;
            self.report.steps += 1;
            (at, &event).hash(&mut self.hasher);
            if self.trace {
                eprintln!("{at} {event:?}");
            }
            if let Err(violation) = self.handle(event) {
                return Err(self.failure(violation));
            }
        }
        if let Err(violation) = self.final_checks() {
            return Err(self.failure(violation));
        }
        self.report.trace_hash = self.hasher.finish();
        self.report.chosen = self.checker.chosen.len();
        self.report.leaders = self.checker.leaders_established();
        Ok(self.report)
    }

    fn failure(&self, violation: Violation) -> Failure {
        Failure {
            seed: self.cfg.seed,
            time: self.now,
            step: self.report.steps,
            violation,
            replay: self.cfg.replay_command(),
        }
    }

    /// The node whose input `event` is, if that node is paused now.
    fn paused_target(&self, event: &Event) -> Option<NodeId> {
        let node = match event {
            Event::Tick(node)
            | Event::SlotDone { node, .. }
            | Event::WalDone { node, .. }
            | Event::SnapshotSaved { node, .. }
            | Event::ApplyDone { node, .. }
            | Event::ReadDone { node, .. } => *node,
            Event::Deliver { to, .. } => *to,
            _ => return None,
        };
        (self.nodes[&node].paused_until > self.now).then_some(node)
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        // A paused node's inputs wait for it, in their order (messages sit
        // in its socket buffers, completions in its rings).
        if let Some(node) = self.paused_target(&event) {
            let resume = self.nodes[&node].paused_until;
            self.schedule(resume, event);
            return Ok(());
        }
        match event {
            Event::Tick(node) => {
                if self.nodes[&node].replica.is_some() {
                    let now = self.local_now(node);
                    self.step(node, Input::Tick { now })?;
                    let next = self.now + MS + self.random(4 * MS);
                    self.schedule(next, Event::Tick(node));
                }
            }
            Event::Deliver { to, from, msg } => {
                if self.nodes[&to].replica.is_some() && !self.separated(from, to) {
                    self.step(to, Input::Receive { from, msg })?;
                }
            }
            Event::SlotDone {
                node,
                incarnation,
                generation,
            } => {
                let n = self.nodes.get_mut(&node).expect("node");
                if n.incarnation == incarnation && n.replica.is_some() {
                    n.disk.complete_slot();
                    self.step(node, Input::SlotDurable { generation })?;
                }
            }
            Event::WalDone {
                node,
                incarnation,
                id,
            } => {
                let n = self.nodes.get_mut(&node).expect("node");
                if n.incarnation == incarnation && n.replica.is_some() {
                    if let Some(upto) = n.disk.complete_wal(id) {
                        self.step(node, Input::WalDurable { upto })?;
                    }
                }
            }
            Event::SnapshotSaved {
                node,
                incarnation,
                applied,
            } => {
                let n = &self.nodes[&node];
                if n.incarnation == incarnation && n.replica.is_some() {
                    self.step(node, Input::SnapshotSaved { applied })?;
                }
            }
            Event::ApplyDone {
                node,
                incarnation,
                lsn,
            } => {
                let n = self.nodes.get_mut(&node).expect("node");
                if n.incarnation == incarnation && n.replica.is_some() {
                    if self.random(2) == 0 {
                        let n = self.nodes.get_mut(&node).expect("node");
                        n.held.push(Held::Apply(lsn));
                    } else {
                        // The state machine changed: the core learns it now.
                        let result = self.finish_apply(node, lsn);
                        self.step_now(node, Input::Applied { lsn, result })?;
                    }
                    // A full serial replay is costly: check every 256th apply and at the end.
                    if lsn % 256 == 0 {
                        self.check_state(node)?;
                    }
                }
            }
            Event::ReadDone {
                node,
                incarnation,
                id,
                cmd,
            } => {
                let n = &self.nodes[&node];
                if let (true, Some(replica)) = (n.incarnation == incarnation, &n.replica) {
                    // The value it returns is the state of `applied`, which
                    // `check_state` compares with serial apply.
                    if let Some(invoked) = self.reads.remove(&id) {
                        self.checker
                            .on_read(node, &cmd, invoked, replica.applied())?;
                    }
                    self.report.reads_ok += 1;
                    self.client_answered(id, true, None);
                    self.step(node, Input::ReadDone { id })?;
                }
            }
            Event::CatchUpMark => match self.settled_leader() {
                None => self.schedule(self.now + 50 * MS, Event::CatchUpMark),
                Some(leader) => {
                    let replica = self.nodes[&leader].replica.as_ref().expect("live");
                    self.catch_up = Some((leader, replica.committed().clone()));
                }
            },
            Event::QuietTransfer => {
                // Asked once every replica is up and follows the leader: a
                // concurrent election may rightly end a transfer.
                match self.settled_leader() {
                    None => self.schedule(self.now + 50 * MS, Event::QuietTransfer),
                    Some(leader) => {
                        let to = 1
                            + (leader + self.random(self.cfg.replicas as u64 - 1))
                                % self.cfg.replicas as u64;
                        self.step(leader, Input::Transfer { to })?;
                        let check = self.now + self.params.transfer_timeout;
                        let asked = self.now;
                        self.schedule(check, Event::TransferCheck { to, asked });
                    }
                }
            }
            Event::TransferCheck { to, asked } => {
                if self.leader_node() != Some(to) {
                    return Err(format!(
                        "liveness: the transfer to node {to} asked at t={:.3}s, after faults stopped, did not complete within the transfer timeout",
                        asked as f64 / 1e9
                    ));
                }
            }
            Event::Transfer => {
                if self.faults_on() {
                    let leader = self.leader_node();
                    let to = self.random_node();
                    if let Some(leader) = leader {
                        self.report.transfers += 1;
                        self.step(leader, Input::Transfer { to })?;
                    }
                    let next = self.now + self.random(2 * self.cfg.faults.transfer_every);
                    self.schedule(next, Event::Transfer);
                }
            }
            Event::Crash(node) => {
                if self.faults_on() {
                    self.crash(node);
                    let down = 1 + self.random(self.params.t_min * 3);
                    self.schedule(self.now + down, Event::Restart(node));
                    let next = self.now + self.random(2 * self.cfg.faults.crash_every);
                    let victim = self.random_node();
                    self.schedule(next, Event::Crash(victim));
                }
            }
            Event::Restart(node) => self.restart(node)?,
            Event::Snapshot(node) => {
                if self.nodes[&node].replica.is_some() {
                    let id = self.next_proposal;
                    self.next_proposal += 1;
                    self.step(node, Input::Snapshot { id })?;
                }
                let next = self.now + self.random(2 * self.cfg.snapshot_every);
                let node = self.random_node();
                self.schedule(next, Event::Snapshot(node));
            }
            Event::Pause(node) => {
                if self.faults_on() {
                    let n = self.nodes.get_mut(&node).expect("node");
                    if n.replica.is_some() {
                        // Every fault ends when the faults stop.
                        let length = 1 + self.random(self.cfg.faults.pause_max);
                        let until = (self.now + length).min(self.cfg.fault_time);
                        self.nodes.get_mut(&node).expect("node").paused_until = until;
                        self.report.pauses += 1;
                    }
                    let next = self.now + self.random(2 * self.cfg.faults.pause_every);
                    let victim = self.random_node();
                    self.schedule(next, Event::Pause(victim));
                }
            }
            Event::Partition => {
                if self.faults_on() {
                    self.report.partitions += 1;
                    self.cut.clear();
                    let size = 1 + self.random((self.cfg.replicas as u64 - 1) / 2 + 1);
                    for _ in 0..size {
                        let n = self.random_node();
                        self.cut.insert(n);
                    }
                    let heal = self.now + self.random(self.params.t_min * 4);
                    self.schedule(heal, Event::Heal);
                    let next = self.now + self.random(2 * self.cfg.faults.partition_every);
                    self.schedule(next, Event::Partition);
                }
            }
            Event::Heal => self.cut.clear(),
            Event::Client(c) => self.client(c)?,
        }
        if !self.faults_on() && !self.cut.is_empty() {
            self.cut.clear();
        }
        Ok(())
    }

    /// The leader's node, if every replica is up and follows it.
    fn settled_leader(&self) -> Option<NodeId> {
        let leader = self.leader_node()?;
        let c = self.nodes[&leader].replica.as_ref()?.established_leader();
        let all_follow = self
            .nodes
            .values()
            .all(|n| n.replica.as_ref().is_some_and(|r| r.known_leader() == c));
        all_follow.then_some(leader)
    }

    /// The node of the greatest established leader, if any.
    fn leader_node(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| {
                let c = n.replica.as_ref()?.established_leader()?;
                Some((c, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn separated(&self, a: NodeId, b: NodeId) -> bool {
        self.cut.contains(&a) != self.cut.contains(&b)
    }

    fn crash(&mut self, node: NodeId) {
        let n = self.nodes.get_mut(&node).expect("node");
        if n.replica.is_none() {
            return;
        }
        self.report.crashes += 1;
        // Everything not durable is lost; a write in flight is torn.
        n.replica = None;
        n.held.clear();
        n.incarnation += 1;
        n.disk.crash();
        n.kv = KvState::default();
        n.applying.clear();
        n.paused_until = 0;
    }

    fn restart(&mut self, node: NodeId) -> Result<(), Violation> {
        let n = self.nodes.get_mut(&node).expect("node");
        if n.replica.is_some() {
            return Ok(());
        }
        n.incarnation += 1;
        let seed = self.cfg.seed ^ (n.incarnation << 32);
        let local = self.local_now(node);
        let n = self.nodes.get_mut(&node).expect("node");
        let mutations = &self.cfg.mutations;
        let mut replica = n
            .disk
            .boot(node, &self.config, &self.params, local, seed, mutations);
        // The state machine starts from the cut (recovery always takes a
        // durable one), else empty.
        n.kv = match &n.disk.snapshot {
            Some((_, state)) => {
                assert!(replica.from_snapshot(), "recovery takes the snapshot");
                self.report.restarts_from_snapshot += 1;
                if !replica.purged().is_empty() {
                    self.report.restarts_purged += 1;
                }
                state.clone()
            }
            None => KvState::default(),
        };
        if let Some(at) = self.cfg.race_at {
            replica.set_election_timer(at);
        }
        self.nodes.get_mut(&node).expect("node").replica = Some(replica);
        self.step(node, Input::Tick { now: local })?;
        let next = self.now + MS;
        self.schedule(next, Event::Tick(node));
        Ok(())
    }

    /// What `node`'s clock reads now.
    fn local_now(&self, node: NodeId) -> Nanos {
        let ppm = self.clock_ppm.get(&node).copied().unwrap_or(0);
        (self.now as i128 + self.now as i128 * ppm as i128 / 1_000_000) as Nanos
    }

    /// A snapshot cut: nothing in flight to apply, and the state is what
    /// applying the cut's applied set serially, in LSN order, gives. Kept as
    /// the node's snapshot for its next restart.
    fn check_snapshot(&mut self, node: NodeId, applied: &TailBitmap) -> Result<(), Violation> {
        let n = &self.nodes[&node];
        if !n.applying.is_empty() {
            return Err(format!(
                "node {node}: snapshot cut with {} applies in flight",
                n.applying.len()
            ));
        }
        if self.checker.serial_state(applied)? != n.kv {
            return Err(format!(
                "node {node}: snapshot state is not the serial apply of its applied set"
            ));
        }
        let n = self.nodes.get_mut(&node).expect("node");
        n.disk.snapshot = Some((applied.clone(), n.kv.clone()));
        let incarnation = n.incarnation;
        self.report.snapshots += 1;
        let at = self.now + self.disk_delay();
        let applied = applied.clone();
        self.schedule(
            at,
            Event::SnapshotSaved {
                node,
                incarnation,
                applied,
            },
        );
        Ok(())
    }

    fn step(&mut self, node: NodeId, input: Input) -> Result<(), Violation> {
        if Replica::<KvConflicts>::batchable(&input) && self.random(2) == 0 {
            let n = self.nodes.get_mut(&node).expect("node");
            n.held.push(Held::Input(input));
            return Ok(());
        }
        self.step_now(node, input)
    }

    /// Steps the held inputs, then `input`.
    fn step_now(&mut self, node: NodeId, input: Input) -> Result<(), Violation> {
        let held = std::mem::take(&mut self.nodes.get_mut(&node).expect("node").held);
        if !held.is_empty() {
            let inputs: Vec<Input> = held
                .into_iter()
                .map(|h| match h {
                    Held::Input(input) => input,
                    Held::Apply(lsn) => Input::Applied {
                        lsn,
                        result: self.finish_apply(node, lsn),
                    },
                })
                .collect();
            let replica = self.nodes.get_mut(&node).expect("node").replica.as_mut();
            let outputs = replica.expect("live replica").step_all(inputs);
            self.after_step(node, outputs)?;
        }
        let replica = self.nodes.get_mut(&node).expect("node").replica.as_mut();
        let outputs = replica.expect("live replica").step(input);
        self.after_step(node, outputs)
    }

    /// Applies the record whose apply was handed out at `lsn`.
    fn finish_apply(&mut self, node: NodeId, lsn: u64) -> Vec<u8> {
        let n = self.nodes.get_mut(&node).expect("node");
        let record = n.applying.remove(&lsn).expect("apply in flight");
        n.kv.apply(&record.cmd)
    }

    /// Checks the invariants after a step and carries out its outputs.
    fn after_step(&mut self, node: NodeId, outputs: Vec<Output>) -> Result<(), Violation> {
        let incarnation = self.nodes[&node].incarnation;
        if self.trace {
            for o in &outputs {
                if !matches!(
                    o,
                    Output::Send {
                        msg: Message::Forward(_),
                        ..
                    }
                ) {
                    eprintln!("    {node} -> {o:?}");
                }
            }
        }
        let replica = self.nodes[&node].replica.as_ref().expect("live");
        self.checker.after_step(replica, incarnation)?;
        if let Some(race) = self.cfg.race_at {
            if replica.established_leader().is_some() && self.report.race_time.is_none() {
                self.report.race_time = Some(self.now - race);
            }
        }
        for output in outputs {
            self.output(node, output)?;
        }
        Ok(())
    }

    fn disk_delay(&mut self) -> Nanos {
        let stall = self.faults_on() && self.chance(self.cfg.faults.disk_stall_p);
        if stall {
            self.random(self.cfg.faults.disk_stall)
        } else {
            50 * US + self.random(2 * MS)
        }
    }

    fn output(&mut self, node: NodeId, output: Output) -> Result<(), Violation> {
        let incarnation = self.nodes[&node].incarnation;
        match output {
            Output::Send { to, msg } => {
                let sender = self.nodes[&node].replica.as_ref().expect("live");
                self.checker.on_send(sender, &msg)?;
                self.send(node, to, msg);
            }
            Output::WriteSlot(slot) => {
                let n = self.nodes.get_mut(&node).expect("node");
                n.disk
                    .write_slot(slot)
                    .map_err(|e| format!("node {node}: {e}"))?;
                let at = self.now + self.disk_delay();
                self.schedule(
                    at,
                    Event::SlotDone {
                        node,
                        incarnation,
                        generation: slot.generation,
                    },
                );
            }
            Output::AppendWal { id, entry } => {
                let writer = self.nodes[&node].replica.as_ref().expect("live");
                self.checker.on_append(writer, incarnation, &entry)?;
                let n = self.nodes.get_mut(&node).expect("node");
                n.disk.append(id, entry);
                let at = self.now + self.disk_delay();
                self.schedule(
                    at,
                    Event::WalDone {
                        node,
                        incarnation,
                        id,
                    },
                );
            }
            Output::Snapshot { applied, .. } => self.check_snapshot(node, &applied)?,
            Output::Purge { below } => {
                let n = self.nodes.get_mut(&node).expect("node");
                n.disk.purge(below);
                self.report.purges += 1;
            }
            Output::Apply { record } => {
                self.checker.on_apply(node, &record)?;
                let lsn = record.lsn;
                self.nodes
                    .get_mut(&node)
                    .expect("node")
                    .applying
                    .insert(lsn, record);
                let at = self.now + self.random(500 * US);
                self.schedule(
                    at,
                    Event::ApplyDone {
                        node,
                        incarnation,
                        lsn,
                    },
                );
            }
            Output::Reply { id, result } => {
                if let Ok(reply) = &result {
                    self.report.replies_ok += 1;
                    self.replies.push((reply.lsn, reply.output.clone()));
                    if let Some((_, cmd)) = self.proposals.get(&id) {
                        self.checker.on_reply(reply.lsn, cmd, self.now)?;
                    }
                }
                let redirect = match &result {
                    Err(crate::core::ProposeError::NotLeader { leader: Some(l) }) => Some(*l),
                    Err(crate::core::ProposeError::Transferring { to }) => Some(*to),
                    _ => None,
                };
                self.reads.remove(&id);
                self.client_answered(id, result.is_ok(), redirect);
            }
            Output::Read { id, cmd } => {
                let at = self.now + self.random(500 * US);
                self.schedule(
                    at,
                    Event::ReadDone {
                        node,
                        incarnation,
                        id,
                        cmd,
                    },
                );
            }
        }
        Ok(())
    }

    /// The client waiting for `id` has its answer; it tries `redirect` next.
    fn client_answered(&mut self, id: ProposalId, ok: bool, redirect: Option<NodeId>) {
        let Some((c, _)) = self.proposals.remove(&id) else {
            return;
        };
        if let ClientState::Waiting { id: waiting, .. } = self.clients[c].state {
            if waiting == id {
                if let Some(l) = redirect {
                    self.clients[c].target = l;
                }
                self.clients[c].state = ClientState::Idle;
                if ok {
                    self.clients[c].last_ok = self.now;
                }
                let at = self.now + 5 * MS + self.random(30 * MS);
                self.schedule(at, Event::Client(c));
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: Message) {
        let faults = self.faults_on();
        if faults && self.chance(self.cfg.faults.drop) {
            return;
        }
        let copies = if faults && self.chance(self.cfg.faults.duplicate) {
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut delay = 20 * US + self.random(200 * US);
            // A duplicate comes back late: after later messages, often after
            // a leader change (a repeated base forward, a stale grant).
            if faults && copy > 0 {
                delay += self.random(4 * self.params.t_min);
            } else if faults && self.chance(self.cfg.faults.delay) {
                delay += self.random(self.cfg.faults.long_delay);
            }
            let at = self.now + delay;
            self.schedule(
                at,
                Event::Deliver {
                    to,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn client(&mut self, c: usize) -> Result<(), Violation> {
        let timeout = 4 * self.params.t_min;
        // Liveness: once faults stop and a leader had time to settle, every
        // client succeeds again within a bound (a stuck leader, a transfer
        // never cancelled or a lost LSN never resent all break this).
        let settle = self.cfg.fault_time + 4 * self.params.t_min;
        if !self.faults_on() && self.now > settle {
            let since = self.clients[c].last_ok.max(settle);
            let bound = timeout + 2 * self.params.t_min;
            if self.now > since + bound {
                return Err(format!(
                    "liveness: client {c} had no successful operation from t={:.3}s to t={:.3}s after faults stopped",
                    since as f64 / 1e9,
                    self.now as f64 / 1e9
                ));
            }
        }
        match self.clients[c].state {
            ClientState::Waiting { since, .. } if self.now < since + timeout => return Ok(()),
            ClientState::Waiting { id, .. } => {
                // Indeterminate: the proposal may still commit.
                self.proposals.remove(&id);
                self.reads.remove(&id);
                self.clients[c].state = ClientState::Idle;
                self.clients[c].target = self.random_node();
            }
            ClientState::Idle => {}
        }
        let node = self.clients[c].target;
        let key = self.random(self.cfg.keys);
        let op = match self.random(4) {
            0 => KvOp::Set {
                key,
                value: self.random(1000),
            },
            1 => KvOp::Incr { key },
            _ => KvOp::Get { key },
        };
        // Half the GETs are linearizable reads outside the log.
        let read = matches!(op, KvOp::Get { .. }) && self.random(2) == 0;
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.proposals.insert(id, (c, op.encode()));
        self.clients[c].state = ClientState::Waiting {
            id,
            since: self.now,
        };
        // A paused node's request is as good as lost: the client times out.
        let n = &self.nodes[&node];
        if n.replica.is_some() && n.paused_until <= self.now {
            let cmd = op.encode();
            if read {
                self.reads.insert(id, self.now);
                self.step(node, Input::Read { id, cmd })?;
            } else {
                self.step(node, Input::Propose { id, cmd })?;
            }
        }
        // Check back at the timeout; a reply reschedules sooner.
        let at = self.now + timeout;
        self.schedule(at, Event::Client(c));
        Ok(())
    }

    /// Replicas that applied the same LSN set have identical state, equal to
    /// applying those records serially in LSN order.
    fn check_state(&self, node: NodeId) -> Result<(), Violation> {
        let n = &self.nodes[&node];
        let Some(replica) = &n.replica else {
            return Ok(());
        };
        let serial = self.checker.serial_state(replica.applied())?;
        if serial != n.kv {
            return Err(format!(
                "node {node}: state after applying {:?} differs from serial LSN-order apply",
                replica.applied()
            ));
        }
        Ok(())
    }

    fn final_checks(&mut self) -> Result<(), Violation> {
        if self.cfg.race_at.is_some() {
            return match self.report.race_time {
                Some(_) => Ok(()),
                None => Err("election race: no leader".into()),
            };
        }
        let live: Vec<NodeId> = self.nodes.keys().copied().collect();
        for node in live {
            self.check_state(node)?;
        }
        self.checker.check_dependency_closure()?;
        let serial = self.checker.serial_results();
        for (lsn, output) in &self.replies {
            if let Some(serial) = serial.get(lsn) {
                if serial != output {
                    let record = self.checker.chosen.get(lsn).map(|(r, _)| r.clone());
                    return Err(format!(
                        "the reply for LSN {lsn} ({:?}, deps {:?}) was {output:?}, serial apply gives {serial:?}",
                        record.as_ref().and_then(|r| KvOp::decode(&r.cmd)),
                        record.map(|r| r.deps)
                    ));
                }
            }
        }
        // Liveness: after faults stop, a leader is established.
        let leader: Option<LeaderId> = self
            .nodes
            .values()
            .filter_map(|n| n.replica.as_ref().and_then(|r| r.established_leader()))
            .max();
        if leader.is_none() {
            return Err(format!(
                "liveness: no established leader {:.3}s after faults stopped",
                self.cfg.quiet_time as f64 / 1e9
            ));
        }
        // Liveness: every live replica applied what was committed early in
        // the quiet period (followers too: clients only wait on the leader).
        if let Some((leader, committed)) = &self.catch_up {
            for (id, n) in &self.nodes {
                let Some(replica) = &n.replica else { continue };
                let missing = committed.difference(replica.applied());
                if !missing.is_empty() {
                    return Err(format!(
                        "liveness: node {id} has not applied {:?} of what node {leader} knew committed {:.3}s before the end (its committed {:?})",
                        missing,
                        (self.cfg.fault_time + self.cfg.quiet_time - 2 * self.params.t_min) as f64 / 1e9 - self.cfg.fault_time as f64 / 1e9,
                        replica.committed()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Runs `count` seeds from `start`; returns the reports, or the first failure.
pub fn run_seeds(
    replicas: usize,
    start: u64,
    count: u64,
    configure: impl Fn(&mut SimConfig),
) -> Result<Vec<Report>, Box<Failure>> {
    let mut reports = Vec::new();
    for seed in start..start + count {
        let mut cfg = SimConfig::new(replicas, seed);
        configure(&mut cfg);
        reports.push(Sim::new(cfg).run().map_err(Box::new)?);
    }
    Ok(reports)
}
