//! Subcommands of the `traft` binary that have grown beyond a function.

pub mod bench;
pub mod floor;
pub mod serve;
pub mod snapshot;
pub mod wal;
pub mod wal_bench;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `dir` if given, else a fresh temporary directory (removed when the
/// returned guard drops).
pub fn work_dir(dir: Option<&Path>) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    match dir {
        Some(d) => Ok((None, d.to_path_buf())),
        None => {
            let tmp = tempfile::tempdir().context("creating a temporary directory")?;
            let path = tmp.path().to_path_buf();
            Ok((Some(tmp), path))
        }
    }
}
