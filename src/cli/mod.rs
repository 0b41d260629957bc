//! Subcommands of the `traft` binary that have grown beyond a function.

pub mod bench;
pub mod wal;
