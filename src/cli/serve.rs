//! `traft serve`: one replica as a process, with a RESP2 front end.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use traft::core::Params;
use traft::node::{Node, NodeConfig};
use traft::resp::{self, ServerInfo};
use traft::wal::Backend;
use traft::NodeId;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// This replica's id (a key of --peers).
    #[arg(long)]
    id: NodeId,
    /// Every replica's address for replication, `ID=HOST:PORT,...`,
    /// this one's included.
    #[arg(long, value_parser = parse_peer, value_delimiter = ',', required = true)]
    peers: Vec<(NodeId, SocketAddr)>,
    /// The slot file and the WAL live here (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to accept replica connections (default: this id's --peers address).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where to accept RESP clients.
    #[arg(long, default_value = "127.0.0.1:6379")]
    client_listen: SocketAddr,
    /// Client addresses of the replicas, `ID=HOST:PORT,...`, named in
    /// redirects to the leader.
    #[arg(long, value_parser = parse_peer, value_delimiter = ',')]
    client_peers: Vec<(NodeId, SocketAddr)>,
    /// Replicas with another cluster id are refused.
    #[arg(long)]
    cluster_id: Option<u64>,
    /// `uring` (io_uring, O_DIRECT) or `file` (pwrite, O_DIRECT).
    #[arg(long, default_value = "uring")]
    backend: String,
    /// Apply threads (0: on the replica's own thread).
    #[arg(long, default_value_t = 0)]
    apply_workers: usize,
    /// In-order commit and apply.
    #[arg(long)]
    strict: bool,
    /// Minimum election timeout, milliseconds.
    #[arg(long, default_value_t = 500)]
    t_min_ms: u64,
    /// Interval between forwards when idle, milliseconds.
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// WAL segment size, KiB (a multiple of 4).
    #[arg(long, default_value_t = 64 << 10)]
    segment_kib: usize,
    /// Save a snapshot each time this many records have been applied since
    /// the last (0: only on `SAVE`); a restart starts from it.
    #[arg(long, default_value_t = 0)]
    snapshot_every: u64,
}

fn parse_peer(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ID=HOST:PORT"))?;
    let id = id.trim().parse().map_err(|e| format!("{id:?}: {e}"))?;
    let addr = addr.trim().parse().map_err(|e| format!("{addr:?}: {e}"))?;
    Ok((id, addr))
}

pub fn run(args: ServeArgs) -> Result<()> {
    let peers: BTreeMap<NodeId, SocketAddr> = args.peers.iter().copied().collect();
    if peers.len() != args.peers.len() {
        bail!("--peers names a replica twice");
    }
    let Some(&own) = peers.get(&args.id) else {
        bail!("--id {} is not in --peers", args.id);
    };
    const MS: u64 = 1_000_000;
    let t_min = args.t_min_ms * MS;
    let defaults = Params::default();
    let mut config = NodeConfig::new(args.id, peers, &args.data_dir);
    config.params = Params {
        t_min,
        heartbeat: args.heartbeat_ms * MS,
        drift_allowance: 2 * t_min * defaults.rho_ppm / 1_000_000 + 10 * MS,
        transfer_timeout: 2 * t_min,
        strict: args.strict,
        ..defaults
    };
    config.store.backend = match args.backend.as_str() {
        "uring" => Backend::Uring,
        "file" => Backend::File,
        other => bail!("unknown backend {other:?}: uring or file"),
    };
    config.apply_workers = args.apply_workers;
    config.snapshot_every = args.snapshot_every;
    if args.segment_kib == 0 || args.segment_kib % 4 != 0 {
        bail!("--segment-kib must be a positive multiple of 4");
    }
    config.store.segment_size = args.segment_kib << 10;
    if let Some(cluster_id) = args.cluster_id {
        config.cluster_id = cluster_id;
    }
    let bind = args.listen.unwrap_or(own);
    let listener = std::net::TcpListener::bind(bind)
        .with_context(|| format!("binding the replica port {bind}"))?;
    let store = Arc::new(traft::apply::KvStore::default());
    let node = Node::start_on(config, store.clone(), listener).context("starting the node")?;
    let node = Arc::new(node);
    let info = Arc::new(ServerInfo {
        client_peers: args.client_peers.iter().copied().collect(),
        store: Some(store),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the client runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let clients = tokio::net::TcpListener::bind(args.client_listen)
            .await
            .with_context(|| format!("binding the client port {}", args.client_listen))?;
        tracing::info!(
            "node {} serving RESP clients on {}, replicas on {bind}, data in {}",
            args.id,
            args.client_listen,
            args.data_dir.display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        // A node that failed (a WAL write or sync that did not succeed) must
        // not linger answering INFO with stale figures: the process exits.
        let watched = node.clone();
        let failed = async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if let Some(reason) = watched.failure() {
                    return reason;
                }
            }
        };
        tokio::select! {
            _ = resp::serve(clients, node.clone(), info) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
            _ = term.recv() => tracing::info!("terminated: stopping"),
            reason = failed => bail!("node {} failed: {reason}", args.id),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // Client tasks hold the node; they go with the task set.
    drop(local);
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().context("stopping the node")?,
        Err(_) => bail!("the node is still in use at shutdown"),
    }
    Ok(())
}
