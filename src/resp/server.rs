//! Client connections: requests are parsed, run against the node one at a
//! time per connection (so a pipeline keeps Redis's in-order semantics),
//! and answered in order.

use super::parse::{parse_command, Reply};
use crate::apply::{KvCommand, KvReply, KvStore};
use crate::ids::NodeId;
use crate::node::{Node, NodeError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes read at a time from a client.
const READ_CHUNK: usize = 16 << 10;

/// What the server tells clients besides replies.
#[derive(Clone, Default)]
pub struct ServerInfo {
    /// Client addresses of the other nodes, for redirects.
    pub client_peers: BTreeMap<NodeId, SocketAddr>,
    /// The node's state machine, for a digest of its contents in INFO (to
    /// compare replicas once writes stop).
    pub store: Option<Arc<KvStore>>,
}

/// Accepts clients until the listener fails; each connection runs as a
/// task on the current `LocalSet`.
pub async fn serve(listener: TcpListener, node: Arc<Node>, info: Arc<ServerInfo>) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let (node, info) = (node.clone(), info.clone());
                tokio::task::spawn_local(async move {
                    if let Err(e) = connection(stream, &node, &info).await {
                        tracing::debug!("client {addr}: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accepting a client failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream, node: &Node, info: &ServerInfo) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mut start = 0;
        loop {
            match parse_command(&buf[start..]) {
                Ok(Some((args, used))) => {
                    start += used;
                    if args.is_empty() {
                        continue;
                    }
                    let quit = args[0].eq_ignore_ascii_case(b"QUIT");
                    execute(node, info, args).await.write_to(&mut out);
                    if quit {
                        stream.write_all(&out).await?;
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Framing is lost: say why and close, as Redis does.
                    Reply::Error(format!("ERR {e}")).write_to(&mut out);
                    stream.write_all(&out).await?;
                    return Ok(());
                }
            }
        }
        buf.drain(..start);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

fn wrong_args(name: &[u8]) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    ))
}

/// What a client's request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Answered at once, without the replicas.
    Answer(Reply),
    Info,
    /// Save this replica's state as a snapshot (`Node::snapshot`).
    Save,
    /// A command for the replicated KV store.
    Kv(KvCommand),
}

/// Reads a parsed request (at least one argument: its name).
pub fn request_of(mut args: Vec<Vec<u8>>) -> Request {
    use Request::Answer;
    let name = args[0].to_ascii_uppercase();
    let n = args.len();
    let command = match (name.as_slice(), n) {
        (b"PING", 1) => return Answer(Reply::Simple("PONG")),
        (b"PING", 2) | (b"ECHO", 2) => return Answer(Reply::Bulk(args.pop())),
        (b"SET", 3) => KvCommand::Set {
            value: args.pop().expect("3 args"),
            key: args.pop().expect("3 args"),
        },
        (b"SET", _) if n > 3 => {
            return Answer(Reply::Error(
                "ERR syntax error: SET takes no options here".into(),
            ))
        }
        (b"GET", 2) => KvCommand::Get {
            key: args.pop().expect("2 args"),
        },
        (b"INCR", 2) => KvCommand::Incr {
            key: args.pop().expect("2 args"),
        },
        (b"DEL", _) if n >= 2 => KvCommand::Del {
            keys: args.split_off(1),
        },
        (b"MGET", _) if n >= 2 => KvCommand::MGet {
            keys: args.split_off(1),
        },
        (b"MSET", _) if n >= 3 && n % 2 == 1 => {
            let mut rest = args.split_off(1).into_iter();
            let mut pairs = Vec::with_capacity(n / 2);
            while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
                pairs.push((k, v));
            }
            KvCommand::MSet { pairs }
        }
        (b"INFO", _) => return Request::Info,
        (b"SAVE", 1) => return Request::Save,
        // What redis-cli and redis-benchmark ask on connecting.
        (b"COMMAND", _) | (b"CONFIG", _) => return Answer(Reply::Array(Vec::new())),
        (b"SELECT", 2) if args[1] == b"0" => return Answer(Reply::Simple("OK")),
        (b"SELECT", 2) => return Answer(Reply::Error("ERR DB index is out of range".into())),
        (b"CLIENT", _) | (b"QUIT", _) => return Answer(Reply::Simple("OK")),
        (
            b"PING" | b"ECHO" | b"SET" | b"GET" | b"INCR" | b"DEL" | b"MGET" | b"MSET" | b"SELECT"
            | b"SAVE",
            _,
        ) => return Answer(wrong_args(&name)),
        _ => {
            return Answer(Reply::Error(format!(
                "ERR unknown command '{}'",
                String::from_utf8_lossy(&args[0])
            )))
        }
    };
    Request::Kv(command)
}

async fn execute(node: &Node, info: &ServerInfo, args: Vec<Vec<u8>>) -> Reply {
    let command = match request_of(args) {
        Request::Answer(reply) => return reply,
        Request::Info => return Reply::Bulk(Some(info_text(node, info).into_bytes())),
        Request::Save => {
            return match node.snapshot().await {
                Ok(_) => Reply::Simple("OK"),
                Err(e) => node_error(e, info),
            }
        }
        Request::Kv(command) => command,
    };
    let result = if command.read_only() {
        node.read(command.encode()).await
    } else {
        node.propose(command.encode()).await
    };
    match result {
        Ok(bytes) => match KvReply::decode(&bytes) {
            Ok(reply) => kv_reply(reply),
            Err(e) => Reply::Error(format!("ERR {e}")),
        },
        Err(e) => node_error(e, info),
    }
}

/// The RESP form of a KV store's reply.
pub fn kv_reply(reply: KvReply) -> Reply {
    match reply {
        KvReply::Ok => Reply::Simple("OK"),
        KvReply::Value(v) => Reply::Bulk(v),
        KvReply::Values(vs) => Reply::Array(vs.into_iter().map(Reply::Bulk).collect()),
        KvReply::Int(i) => Reply::Int(i),
        KvReply::Error(e) => Reply::Error(e),
    }
}

fn node_error(e: NodeError, info: &ServerInfo) -> Reply {
    Reply::Error(match e {
        NodeError::NotLeader { leader: Some(id) } => match info.client_peers.get(&id) {
            Some(addr) => format!("NOTLEADER the leader is node {id}, clients at {addr}"),
            None => format!("NOTLEADER the leader is node {id}"),
        },
        NodeError::NotLeader { leader: None } => "TRYAGAIN no leader is known yet".into(),
        NodeError::Transferring { to } => {
            format!("TRYAGAIN leadership is moving to node {to}")
        }
        other => format!("ERR {other}"),
    })
}

fn info_text(node: &Node, info: &ServerInfo) -> String {
    let m = node.metrics();
    let role = if node.is_leader() {
        "leader"
    } else {
        "follower"
    };
    let leader = node.leader().map_or("none".to_string(), |l| l.to_string());
    let (committed, applied) = node.positions();
    let digest = info.store.as_ref().map_or(String::new(), |store| {
        let mut crc = 0u32;
        for (k, v) in store.dump() {
            crc = crc32c::crc32c_append(crc, &(k.len() as u64).to_le_bytes());
            crc = crc32c::crc32c_append(crc, &k);
            crc = crc32c::crc32c_append(crc, &(v.len() as u64).to_le_bytes());
            crc = crc32c::crc32c_append(crc, &v);
        }
        format!("kv_digest:{crc:08x}\r\n")
    });
    let mut text = format!(
        "# Replication\r\nrole:{role}\r\nnode_id:{}\r\nleader:{leader}\r\nterm:{}\r\ncommitted_lsns:{committed}\r\napplied_lsns:{applied}\r\n\
         # Log\r\nproposals:{}\r\nreads:{}\r\nwal_submits:{}\r\nwal_syncs:{}\r\nwal_frames:{}\r\nwal_bytes:{}\r\nwal_latency_p50_us:{}\r\nwal_latency_p99_us:{}\r\nrecords_per_batch_mean:{:.2}\r\n\
         batches_encoded:{}\r\nbatches_reused:{}\r\nbatches_from_wire:{}\r\nwal_purges:{}\r\nwal_segments_purged:{}\r\n\
         proposal_latency_p50_us:{}\r\nproposal_latency_p99_us:{}\r\nread_latency_p50_us:{}\r\nread_latency_p99_us:{}\r\n\
         # Network\r\nmessages_sent:{}\r\nmessages_received:{}\r\nmessages_dropped:{}\r\n",
        node.id(),
        node.term(),
        m.proposals,
        m.reads,
        m.wal_submits,
        m.wal_syncs,
        m.wal_frames,
        m.wal_bytes,
        m.wal_p50_us,
        m.wal_p99_us,
        m.batch_records_mean,
        m.batches_encoded,
        m.batches_reused,
        m.batches_from_wire,
        m.wal_purges,
        m.wal_segments_purged,
        m.proposal_p50_us,
        m.proposal_p99_us,
        m.read_p50_us,
        m.read_p99_us,
        m.messages_sent,
        m.messages_received,
        m.messages_dropped,
    );
    let by_kind = |counts: &[u64]| {
        crate::core::Message::KINDS
            .iter()
            .zip(counts)
            .map(|(kind, n)| format!("{kind}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    text.push_str(&format!(
        "messages_received_by_kind:{}\r\nmessages_queued_by_kind:{}\r\n",
        by_kind(&m.received_by_kind),
        by_kind(&m.sent_by_kind)
    ));
    text.push_str(&format!(
        "wal_waiting_for_space:{}\r\nslot_writes:{}\r\nslot_latency_p50_us:{}\r\nslot_latency_max_us:{}\r\n",
        u8::from(node.wal_waiting_for_space()),
        m.slot_writes,
        m.slot_p50_us,
        m.slot_max_us
    ));
    text.push_str(&digest);
    text.push_str(&format!("core_status:{}\r\n", node.status()));
    text
}
