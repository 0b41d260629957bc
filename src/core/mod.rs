//! The TRaft protocol as a pure state machine (DESIGN.md §3): no clock,
//! socket or file. A [`Replica`] consumes an [`Input`] and returns the
//! [`Output`]s its runtime must carry out.

mod commit;
pub mod deps;
mod elect;
mod forward;
pub mod io;
mod merge;
pub mod message;
pub mod mutations;
pub mod params;
mod purge;
pub mod quorum;
mod read;
mod replica;
mod rng;
mod transfer;

pub use deps::{CommandClass, Conflicts, DepsIndex};
pub use io::{Input, Nanos, Output, ProposalId, ProposeError, Reply, SlotState, WalEntry, WriteId};
pub use message::{Grant, LogForward, Message};
pub use mutations::{Mutations, MUTANTS};
pub use params::Params;
pub use quorum::{Config, ConfigError};
pub use replica::{Durable, Replica};
pub use rng::Rng;
