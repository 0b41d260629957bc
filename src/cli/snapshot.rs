//! `traft snapshot`: what a snapshot file holds, validated as a replica
//! reads it.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use traft::snapshot::Snapshot;

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Validate every byte; print the applied set, the config and the counts.
    Check { file: PathBuf },
    /// Print every entry (key and value, escaped), after validating.
    Dump { file: PathBuf },
}

pub fn run(command: SnapshotCommand) -> Result<()> {
    match command {
        SnapshotCommand::Check { file } => check(&file),
        SnapshotCommand::Dump { file } => dump(&file),
    }
}

fn open(file: &Path) -> Result<Snapshot> {
    Snapshot::open(file).with_context(|| format!("snapshot {}", file.display()))
}

fn check(file: &Path) -> Result<()> {
    let snapshot = open(file)?;
    let meta = snapshot.meta();
    println!("bytes: {}", snapshot.as_bytes().len());
    println!("entries: {} in {} chunks", meta.entries, meta.chunks);
    let below = meta.applied.first_unset();
    println!(
        "applied: every LSN below {below}, {} more above",
        meta.applied.count() - below
    );
    println!(
        "config: voters {:?}, learners {:?}",
        meta.config.voter_sets(),
        meta.config.learners()
    );
    println!("ok");
    Ok(())
}

fn dump(file: &Path) -> Result<()> {
    let snapshot = open(file)?;
    for (key, value) in snapshot.iter() {
        println!("{} = {}", key.escape_ascii(), value.escape_ascii());
    }
    Ok(())
}
