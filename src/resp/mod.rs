//! The RESP2 front end: `redis-cli` and `redis-benchmark` talk to a node as
//! to a Redis server. Writes go through the log; GET and MGET are
//! linearizable reads (DESIGN.md §3.5).

mod parse;
mod server;

pub use parse::{parse_command, Reply, RespError, RESP_ARGS_MAX, RESP_BULK_MAX};
pub use server::{kv_reply, request_of, serve, Request, ServerInfo};
