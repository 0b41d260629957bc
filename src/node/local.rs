//! Several nodes of one cluster in one process, on loopback: what the
//! benchmark, the example and the tests start.

use super::{Node, NodeConfig, NodeError};
use crate::apply::KvStore;
use crate::ids::NodeId;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Replicas `1..=n`, each with its own data directory under one root and
/// the built-in KV store.
pub struct LocalCluster {
    configs: Vec<NodeConfig>,
    nodes: Vec<Option<Node>>,
    stores: Vec<Arc<KvStore>>,
}

impl LocalCluster {
    /// Binds `n` loopback ports and starts a node on each; `tune` adjusts
    /// each node's config (parameters, WAL backend, apply workers).
    pub fn start(
        n: usize,
        root: &Path,
        tune: impl Fn(&mut NodeConfig),
    ) -> Result<LocalCluster, NodeError> {
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in 1..=n as NodeId {
            let listener = TcpListener::bind("127.0.0.1:0")
                .map_err(|e| NodeError::Start(format!("bind loopback: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| NodeError::Start(e.to_string()))?;
            peers.insert(id, addr);
            listeners.push(listener);
        }
        let mut cluster = LocalCluster {
            configs: Vec::new(),
            nodes: Vec::new(),
            stores: Vec::new(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let id = i as NodeId + 1;
            let mut config = NodeConfig::new(id, peers.clone(), root.join(format!("node-{id}")));
            tune(&mut config);
            let store = Arc::new(KvStore::default());
            cluster.nodes.push(Some(Node::start_on(
                config.clone(),
                store.clone(),
                listener,
            )?));
            cluster.configs.push(config);
            cluster.stores.push(store);
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The running node with id `id`.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize - 1)?.as_ref()
    }

    /// The state machine of node `id` (replaced on restart).
    pub fn store(&self, id: NodeId) -> &Arc<KvStore> {
        &self.stores[id as usize - 1]
    }

    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.configs[id as usize - 1].peers[&id]
    }

    /// Waits until one running node is the established leader.
    pub fn wait_leader(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.nodes.iter().flatten().find(|n| n.is_leader());
            if let Some(node) = leader {
                return Some(node.id());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops node `id` (its disk stays).
    pub fn stop(&mut self, id: NodeId) -> Result<(), NodeError> {
        match self.nodes[id as usize - 1].take() {
            Some(node) => node.shutdown(),
            None => Ok(()),
        }
    }

    /// Starts node `id` again from its disk, with an empty state machine
    /// that recovery fills by applying the log again.
    pub fn restart(&mut self, id: NodeId) -> Result<(), NodeError> {
        self.stop(id)?;
        let config = self.configs[id as usize - 1].clone();
        let store = Arc::new(KvStore::default());
        let node = Node::start(config, store.clone())?;
        self.nodes[id as usize - 1] = Some(node);
        self.stores[id as usize - 1] = store;
        Ok(())
    }

    /// Stops every node.
    pub fn shutdown(mut self) -> Result<(), NodeError> {
        for id in 1..=self.nodes.len() as NodeId {
            self.stop(id)?;
        }
        Ok(())
    }
}
