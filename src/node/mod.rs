//! A replica on real disks and sockets, and the API to embed it.
//!
//! [`Node::start`] opens the data directory as recovery does, binds the
//! replica port and runs the node on its own thread: a `tokio-uring`
//! runtime whose event loop ([`driver`]) owns the sans-IO `Replica`. The WAL
//! writes on its own thread (io_uring, `O_DIRECT`); ready records are applied
//! by a worker pool. Proposals and reads come in through a bounded queue: a
//! caller waits when the node is saturated.

mod batches;
mod config;
mod driver;
mod local;
pub mod metrics;

pub use config::{NodeConfig, INBOUND_QUEUE_MAX, REQUESTS_IN_FLIGHT_MAX, REQUEST_QUEUE_MAX};
pub use local::LocalCluster;
pub use metrics::{Metrics, MetricsSnapshot};

use crate::apply::{ApplyPool, Classifier, StateMachine};
use crate::core::{Config, ProposeError, Replica};
use crate::ids::NodeId;
use crate::transport::{self, PeerStats};
use crate::wal::{open_store, GroupWriter, Store, WalError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("not the leader; try node {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    #[error("outcome unknown: the leadership that took the request ended")]
    OutcomeUnknown,
    #[error("a leadership transfer to node {to} is under way")]
    Transferring { to: NodeId },
    #[error("an empty command is the log's no-op and cannot be proposed")]
    EmptyCommand,
    #[error("a read must be a read-only command")]
    NotReadOnly,
    #[error("the node has stopped")]
    Stopped,
    #[error("the node failed: {0}")]
    Failed(String),
    #[error("cannot start the node: {0}")]
    Start(String),
    #[error("snapshot failed: {0}")]
    Snapshot(String),
}

impl From<ProposeError> for NodeError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { leader } => NodeError::NotLeader { leader },
            ProposeError::OutcomeUnknown => NodeError::OutcomeUnknown,
            ProposeError::Transferring { to } => NodeError::Transferring { to },
        }
    }
}

impl From<WalError> for NodeError {
    fn from(e: WalError) -> Self {
        NodeError::Start(format!("WAL: {e}"))
    }
}

type Answer = oneshot::Sender<Result<Vec<u8>, NodeError>>;

pub(crate) enum Request {
    Propose { cmd: Vec<u8>, reply: Answer },
    Read { cmd: Vec<u8>, reply: Answer },
    Transfer { to: NodeId },
    Snapshot { reply: SnapshotAnswer },
    Shutdown,
}

type SnapshotAnswer = oneshot::Sender<Result<SnapshotTaken, NodeError>>;

/// Where a snapshot was written, and the applied set it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTaken {
    pub path: std::path::PathBuf,
    pub applied: crate::TailBitmap,
}

/// The snapshot file in a node's data directory (each cut replaces it).
pub const SNAPSHOT_FILE: &str = "snapshot.snap";

/// What the node's thread publishes for handles to read.
pub(crate) struct Shared {
    pub id: NodeId,
    /// The known leader's id + 1; 0 when none is known.
    pub leader: AtomicU64,
    pub is_leader: AtomicBool,
    pub term: AtomicU64,
    /// LSNs known committed and applied here.
    pub committed: AtomicU64,
    pub applied: AtomicU64,
    /// `Replica::status`, refreshed about every 100 ms.
    pub status: Mutex<String>,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn set_failure(&self, reason: String) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(reason);
        }
    }
}

/// A running replica. Dropping it shuts it down.
pub struct Node {
    id: NodeId,
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    peer_stats: Vec<Arc<PeerStats>>,
    wal_writes: Arc<AtomicU64>,
    wal_waiting_for_space: Arc<AtomicBool>,
    /// The applied set of the snapshot the state machine started from.
    restored: Option<crate::TailBitmap>,
    thread: Option<JoinHandle<Result<(), NodeError>>>,
}

/// The snapshot in the node's data directory, if there is one this node
/// can start from: valid, and of this cluster's config. Any other is logged
/// and set aside (the log is then applied from the start).
fn own_snapshot(config: &NodeConfig, voters: &Config) -> Option<crate::snapshot::Snapshot> {
    let path = config.data_dir.join(SNAPSHOT_FILE);
    if !path.exists() {
        return None;
    }
    match crate::snapshot::Snapshot::open(&path) {
        Ok(snapshot) if &snapshot.meta().config == voters => Some(snapshot),
        Ok(_) => {
            tracing::warn!(
                "node {}: {} is of another config; not used",
                config.id,
                path.display()
            );
            None
        }
        Err(e) => {
            tracing::error!("node {}: {}: {e}; not used", config.id, path.display());
            None
        }
    }
}

impl Node {
    /// Binds `config.peers[config.id]` and starts the node.
    pub fn start<S: StateMachine>(config: NodeConfig, sm: Arc<S>) -> Result<Node, NodeError> {
        let addr = *config
            .peers
            .get(&config.id)
            .ok_or_else(|| NodeError::Start(format!("node {} has no address", config.id)))?;
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| NodeError::Start(format!("bind {addr}: {e}")))?;
        Self::start_on(config, sm, listener)
    }

    /// Starts the node on a listener bound already (tests bind port 0).
    pub fn start_on<S: StateMachine>(
        config: NodeConfig,
        sm: Arc<S>,
        listener: std::net::TcpListener,
    ) -> Result<Node, NodeError> {
        let start_err =
            |what: &str, e: &dyn std::fmt::Display| NodeError::Start(format!("{what}: {e}"));
        listener
            .set_nonblocking(true)
            .map_err(|e| start_err("listener", &e))?;
        let members: Vec<NodeId> = config.peers.keys().copied().collect();
        let voters =
            Config::uniform(members.iter().copied()).map_err(|e| start_err("config", &e))?;
        let (store, mut durable) = open_store(&config.data_dir, &config.store)?;
        let snapshot = own_snapshot(&config, &voters);
        durable.snapshot = snapshot.as_ref().map(|s| s.meta().applied.clone());
        let Store {
            slot,
            slot_record,
            wal,
            writer,
            purged,
        } = store;
        if purged && snapshot.is_none() {
            // The purged records live only in the snapshot: starting
            // without it would forget committed writes.
            return Err(NodeError::Start(format!(
                "the WAL was purged below a snapshot, but {} is missing or unusable (see the log above); refusing to start without it",
                config.data_dir.join(SNAPSHOT_FILE).display()
            )));
        }
        let replica = Replica::new(
            config.id,
            voters,
            config.params.clone(),
            Classifier(sm.clone()),
            durable,
            0,
            config.seed,
        );
        let restored = snapshot.as_ref().map(|s| s.meta().applied.clone());
        if let Some(snapshot) = snapshot {
            // Recovery always takes a valid snapshot of this config.
            assert!(replica.from_snapshot(), "recovery takes the snapshot");
            sm.restore(&snapshot)
                .map_err(|e| start_err("restoring the state machine's snapshot", &e))?;
            tracing::info!(
                "node {}: state machine restored from its snapshot ({} entries; applied: {} LSNs)",
                config.id,
                snapshot.meta().entries,
                snapshot.meta().applied.count()
            );
        }
        let shared = Arc::new(Shared {
            id: config.id,
            leader: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            term: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            status: Mutex::new(String::new()),
            failure: Mutex::new(None),
        });
        let metrics = Arc::new(Metrics::default());
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE_MAX);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE_MAX);
        let (wal_done_tx, wal_done_rx) = mpsc::unbounded_channel();
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let pool = (config.apply_workers > 0).then(|| {
            let name = format!("traft-{}", config.id);
            ApplyPool::start(sm.clone(), config.apply_workers, &name, applied_tx)
        });
        let mut peers = BTreeMap::new();
        let mut peer_links = Vec::new();
        let mut peer_stats = Vec::new();
        for (&to, &addr) in config.peers.iter().filter(|(&n, _)| n != config.id) {
            let stats = Arc::new(PeerStats::default());
            let (tx, rx) = transport::peer_queue(stats.clone());
            peers.insert(to, tx);
            peer_links.push((to, addr, rx, stats.clone()));
            peer_stats.push(stats);
        }
        let wal_writes = wal.write_counter();
        let wal_waiting_for_space = wal.space_flag();
        let driver = driver::Driver {
            replica,
            sm,
            started: Instant::now(),
            wal,
            slot,
            incarnation: slot_record.incarnation,
            peers,
            pool,
            shared: shared.clone(),
            metrics: metrics.clone(),
            wal_done_tx,
            waiting: HashMap::new(),
            next_id: 1,
            inbox: Vec::new(),
            wal_frames: Vec::new(),
            batches: Default::default(),
            snapshot_path: config.data_dir.join(SNAPSHOT_FILE),
            snapshots: HashMap::new(),
            applied_since_cut: 0,
            snapshot_every: config.snapshot_every,
            own_cut: None,
            wal_upto: None,
            was_leader: false,
            wal_full: wal_waiting_for_space.clone(),
            silent: false,
            role_seen: None,
            status_at: Instant::now(),
        };
        let channels = driver::Channels {
            requests: requests_rx,
            inbound: inbound_rx,
            wal_done: wal_done_rx,
            applied: applied_rx,
        };
        let (id, cluster_id) = (config.id, config.cluster_id);
        let thread = std::thread::Builder::new()
            .name(format!("traft-node-{id}"))
            .spawn(move || {
                let result = tokio_uring::start(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .map_err(|e| NodeError::Start(format!("listener: {e}")))?;
                    for (to, addr, rx, stats) in peer_links {
                        tokio_uring::spawn(transport::run_peer(
                            cluster_id, id, to, addr, rx, stats,
                        ));
                    }
                    tokio_uring::spawn(accept_loop(listener, cluster_id, id, members, inbound_tx));
                    driver.run(channels).await
                });
                finish(writer);
                if let Err(e) = &result {
                    tracing::error!("node {id} stopped: {e}");
                }
                result
            })
            .map_err(|e| start_err("spawn", &e))?;
        Ok(Node {
            id,
            requests,
            shared,
            metrics,
            peer_stats,
            wal_writes,
            wal_waiting_for_space,
            restored,
            thread: Some(thread),
        })
    }

    /// The applied set of the snapshot this node's state machine started
    /// from, if it started from one (`SNAPSHOT_FILE` in its data directory).
    pub fn restored_from(&self) -> Option<&crate::TailBitmap> {
        self.restored.as_ref()
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Proposes `cmd`; resolves with the state machine's result once it is
    /// committed and applied.
    pub async fn propose(&self, cmd: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Propose { cmd, reply }).await?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// A linearizable read of a read-only command (DESIGN.md §3.5).
    pub async fn read(&self, cmd: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Read { cmd, reply }).await?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// `propose` for callers outside any async runtime.
    pub fn propose_blocking(&self, cmd: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .blocking_send(Request::Propose { cmd, reply })
            .map_err(|_| self.stopped())?;
        answer.blocking_recv().map_err(|_| self.stopped())?
    }

    /// `read` for callers outside any async runtime.
    pub fn read_blocking(&self, cmd: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .blocking_send(Request::Read { cmd, reply })
            .map_err(|_| self.stopped())?;
        answer.blocking_recv().map_err(|_| self.stopped())?
    }

    /// Saves this replica's state machine as a snapshot file in its data
    /// directory (`SNAPSHOT_FILE`), cut where no apply is in flight: the
    /// state at exactly the applied set returned. Any replica can, leader or
    /// not. The node's loop waits while the state machine writes it.
    pub async fn snapshot(&self) -> Result<SnapshotTaken, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Snapshot { reply }).await?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// `snapshot` for callers outside any async runtime.
    pub fn snapshot_blocking(&self) -> Result<SnapshotTaken, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .blocking_send(Request::Snapshot { reply })
            .map_err(|_| self.stopped())?;
        answer.blocking_recv().map_err(|_| self.stopped())?
    }

    /// Asks this node, if it leads, to hand leadership to `to`.
    pub async fn transfer(&self, to: NodeId) -> Result<(), NodeError> {
        self.request(Request::Transfer { to }).await
    }

    async fn request(&self, request: Request) -> Result<(), NodeError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| self.stopped())
    }

    fn stopped(&self) -> NodeError {
        self.shared
            .failure()
            .map_or(NodeError::Stopped, NodeError::Failed)
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.leader.load(Ordering::Relaxed).checked_sub(1)
    }

    /// True while this node is the established leader.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader.load(Ordering::Relaxed)
    }

    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Relaxed)
    }

    /// How many LSNs this node knows committed, and has applied.
    pub fn positions(&self) -> (u64, u64) {
        (
            self.shared.committed.load(Ordering::Relaxed),
            self.shared.applied.load(Ordering::Relaxed),
        )
    }

    /// What the protocol core is waiting on (see `Replica::status`).
    pub fn status(&self) -> String {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// True while the WAL waits for disk space for its next segment:
    /// nothing new becomes durable here, so nothing is acknowledged.
    pub fn wal_waiting_for_space(&self) -> bool {
        self.wal_waiting_for_space.load(Ordering::Relaxed)
    }

    /// Why the node stopped, if it failed.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let mut m = self.metrics.snapshot();
        m.wal_syncs = self.wal_writes.load(Ordering::Relaxed);
        for p in &self.peer_stats {
            m.messages_sent += p.frames_sent.load(Ordering::Relaxed);
            m.messages_dropped += p.frames_dropped.load(Ordering::Relaxed);
        }
        m
    }

    /// Stops the node: requests still queued are dropped (their callers see
    /// `Stopped`); everything acknowledged is durable already.
    pub fn shutdown(mut self) -> Result<(), NodeError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), NodeError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.requests.try_send(Request::Shutdown);
        // A full queue: closing it stops the loop too.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.requests, closed));
        thread
            .join()
            .map_err(|_| NodeError::Failed("the node thread panicked".into()))?
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Waits for the WAL writer once the loop is done: every append that
/// resolved is durable, the rest are dropped.
fn finish(writer: GroupWriter) {
    writer.join();
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    cluster_id: u64,
    me: NodeId,
    members: Vec<NodeId>,
    inbound: mpsc::Sender<transport::Inbound>,
) {
    let members: Arc<[NodeId]> = members.into();
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let (members, inbound) = (members.clone(), inbound.clone());
                tokio_uring::spawn(async move {
                    transport::serve_connection(stream, addr, cluster_id, me, &members, inbound)
                        .await
                });
            }
            Err(e) => {
                tracing::warn!("node {me}: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
