//! Apply: what embedders plug in (a [`StateMachine`]), the built-in KV
//! store, and the worker pool that runs ready records in parallel.
//!
//! The core hands out a record only once every record it depends on is
//! applied, and never two records that share a conflict key; records in
//! flight at once therefore commute, and running them on several threads
//! gives the same state and results as applying the log serially in LSN
//! order.

pub mod kv;
mod pool;

pub use kv::{KvCommand, KvReply, KvStore};
pub use pool::{run, Applied, ApplyJob, ApplyPool, APPLY_QUEUE_MAX};

use crate::core::{CommandClass, Conflicts};
use std::sync::Arc;

/// A replicated state machine.
///
/// `apply` and `read` take `&self`: the pool calls them from several
/// threads at once, but never for two commands whose `classify` keys meet
/// (unless one of them is a barrier, which runs alone).
pub trait StateMachine: Send + Sync + 'static {
    /// What a command touches. Must be pure: the same bytes give the same
    /// class on every replica and in every version that shares a log.
    fn classify(&self, cmd: &[u8]) -> CommandClass;

    /// Applies a committed command; returns the result its proposer gets.
    /// Never called with an empty command (those are the log's no-ops).
    fn apply(&self, cmd: &[u8]) -> Vec<u8>;

    /// Runs a read-only command (one whose class says `read_only`) against
    /// the current state, changing nothing.
    fn read(&self, cmd: &[u8]) -> Vec<u8>;

    /// Saves the whole state to `path` as a snapshot file (DESIGN.md §3.7)
    /// at `applied` under `config`. Called only while no command is being
    /// applied, so the state is exactly the one at `applied`; the file must
    /// be durable when this returns. Without an implementation, snapshots
    /// are refused.
    fn snapshot(
        &self,
        path: &std::path::Path,
        applied: &crate::TailBitmap,
        config: &crate::core::Config,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        let _ = (path, applied, config);
        Err(crate::snapshot::SnapshotError::Unsupported)
    }

    /// Loads a snapshot this state machine wrote into its empty state, as
    /// the node starts (before any command is applied).
    fn restore(
        &self,
        snapshot: &crate::snapshot::Snapshot,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        let _ = snapshot;
        Err(crate::snapshot::SnapshotError::Unsupported)
    }
}

/// The core's view of a state machine: only its classification.
pub struct Classifier<S>(pub Arc<S>);

impl<S: StateMachine> Conflicts for Classifier<S> {
    fn classify(&self, cmd: &[u8]) -> CommandClass {
        self.0.classify(cmd)
    }
}

/// Applies one record's command: no-ops (empty commands) give no result.
pub fn apply_command<S: StateMachine>(sm: &S, cmd: &[u8]) -> Vec<u8> {
    if cmd.is_empty() {
        Vec::new()
    } else {
        sm.apply(cmd)
    }
}
