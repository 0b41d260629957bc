//! Three replicas of one cluster embedded in one process, on loopback, with
//! their data in a temporary directory: start them, wait for a leader,
//! write and read through the embedding API, then lose the leader.
//!
//! `cargo run --release --example embedded_cluster`

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use traft::apply::{KvCommand, KvReply, KvStore};
use traft::node::{Node, NodeConfig, NodeError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // Every replica needs every replica's address before any starts: bind
    // the ports first, then hand each node its listener.
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let mut peers = BTreeMap::new();
    for (i, l) in listeners.iter().enumerate() {
        peers.insert(i as u64 + 1, l.local_addr()?);
    }
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let config = NodeConfig::new(id, peers.clone(), dir.path().join(format!("node-{id}")));
        nodes.push(Some(Node::start_on(
            config,
            Arc::new(KvStore::default()),
            listener,
        )?));
    }

    let leader = wait_leader(&nodes)?;
    println!("node {leader} leads");
    let node = nodes[leader as usize - 1].as_ref().expect("running");
    let set = KvCommand::Set {
        key: b"greeting".to_vec(),
        value: b"hello".to_vec(),
    };
    // `propose` resolves once the write is durable on a quorum, committed
    // and applied; the result is the state machine's reply.
    let reply = KvReply::decode(&node.propose_blocking(set.encode())?)?;
    println!("SET greeting -> {reply:?}");
    let get = KvCommand::Get {
        key: b"greeting".to_vec(),
    };
    let value = KvReply::decode(&node.read_blocking(get.encode())?)?;
    println!("GET greeting -> {value:?} (a linearizable read)");

    // Lose the leader: the others elect a new one, and the write is there.
    nodes[leader as usize - 1]
        .take()
        .expect("running")
        .shutdown()?;
    let next = wait_leader(&nodes)?;
    let node = nodes[next as usize - 1].as_ref().expect("running");
    let value = KvReply::decode(&node.read_blocking(get.encode())?)?;
    println!("node {leader} stopped; node {next} leads; GET greeting -> {value:?}");
    println!("node {next} metrics: {:?}", node.metrics());
    Ok(())
}

fn wait_leader(nodes: &[Option<Node>]) -> Result<u64, NodeError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(n) = nodes.iter().flatten().find(|n| n.is_leader()) {
            return Ok(n.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(NodeError::NotLeader { leader: None })
}
