//! Segments as files in a directory, named `{index:016x}.wal`. Writes go
//! through `O_DIRECT` when the filesystem allows it (with the reason logged
//! when it does not), durability through `fdatasync`; creating, renaming and
//! deleting a segment also syncs the directory.

use super::adopt::{adopt_into, is_prepared, Adopting, PREPARED_SUFFIX};
use super::storage::{assert_whole_blocks, Storage, BLOCK};
use rkyv::util::AlignedVec;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".wal";

pub struct FileStorage {
    dir: PathBuf,
    /// Ask for `O_DIRECT`.
    direct: bool,
    /// Open segments `O_DSYNC`: a write is durable when it returns, with no
    /// separate `fdatasync` (this disk has no FUA: the kernel flushes either way).
    dsync: bool,
    open: HashMap<u64, File>,
    /// A prepared file being made a segment ahead of use, if any: every
    /// other change to the directory waits for it first.
    adopting: Option<Adopting>,
}

impl FileStorage {
    /// Segments in `dir` (created if missing). `direct`: write with `O_DIRECT`
    /// where the filesystem supports it.
    pub fn new(dir: &Path, direct: bool) -> io::Result<FileStorage> {
        fs::create_dir_all(dir)?;
        Ok(FileStorage {
            dir: dir.to_path_buf(),
            direct,
            dsync: false,
            open: HashMap::new(),
            adopting: None,
        })
    }

    pub(crate) fn dsync(&self) -> bool {
        self.dsync
    }

    /// Durable writes through `O_DSYNC` instead of `fdatasync` after each.
    pub fn with_dsync(mut self, dsync: bool) -> FileStorage {
        self.dsync = dsync;
        self
    }

    pub fn path(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{index:016x}{SUFFIX}"))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Waits for the adoption running ahead, if any: the index it was for
    /// and whether it adopted a file.
    fn finish_adopting(&mut self) -> io::Result<Option<(u64, bool)>> {
        self.adopting.take().map(Adopting::finish).transpose()
    }

    fn file(&mut self, index: u64) -> io::Result<&File> {
        if !self.open.contains_key(&index) {
            let (file, _) = open_for_writes(&self.path(index), self.direct, self.dsync)?;
            self.open.insert(index, file);
        }
        Ok(&self.open[&index])
    }
}

/// Opens `path` for writing, with `O_DIRECT` if asked and supported, and
/// `O_DSYNC` if asked; returns whether it is direct.
pub(crate) fn open_for_writes(path: &Path, direct: bool, dsync: bool) -> io::Result<(File, bool)> {
    let sync_flag = if dsync { libc::O_DSYNC } else { 0 };
    if direct {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | sync_flag)
            .open(path)
        {
            Ok(file) => return Ok((file, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(
                    "O_DIRECT unsupported on {}: buffered writes and fdatasync",
                    path.display()
                );
            }
            Err(e) => return Err(e),
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(sync_flag)
        .open(path)?;
    Ok((file, false))
}

/// Writes `pieces` one after another at `offset` with `pwritev`, again
/// from where it stopped after a short write.
fn write_all_vectored_at(file: &File, pieces: &[&[u8]], mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut slices: Vec<io::IoSlice<'_>> = pieces.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        let count = left.len().min(IOV_MAX);
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and the
        // `count` slices from `left` borrow memory that lives for the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                left.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                offset as libc::off_t,
            )
        };
        if written < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        offset += written as u64;
        io::IoSlice::advance_slices(&mut left, written as usize);
    }
    Ok(())
}

/// Slices one `pwritev` takes at most.
const IOV_MAX: usize = 1024;

/// Writes `size` zero bytes to a new file at `path` and syncs it, so that
/// later writes overwrite allocated, written blocks (writing into unwritten
/// space costs ~2.6× here).
pub fn zero_fill(path: &Path, size: u64) -> io::Result<()> {
    let file = File::create(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let len = zeros.len().min((size - at) as usize);
        file.write_all_at(&zeros[..len], at)?;
        at += len as u64;
    }
    file.sync_all()?;
    drop_cached(&file);
    Ok(())
}

/// Drops a synced file's pages from the page cache: its segment is written
/// with `O_DIRECT`, which would otherwise have to invalidate each cached page
/// it overwrites, on the commit path. Advice only: a failure costs speed.
fn drop_cached(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the call's duration (`file` is
    // borrowed); posix_fadvise reads no memory of ours.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

impl Storage for FileStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        let mut indexes = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(hex) = name.strip_suffix(SUFFIX) {
                if let Ok(index) = u64::from_str_radix(hex, 16) {
                    indexes.push(index);
                }
            }
        }
        indexes.sort_unstable();
        Ok(indexes)
    }

    fn prepare(&mut self, index: u64, size: usize) -> io::Result<()> {
        self.finish_adopting()?;
        // Zeroed under a temporary name, so a crash never leaves a short
        // segment under a real one.
        let tmp = self.dir.join(format!("{index:016x}.tmp"));
        if let Err(e) = zero_fill(&tmp, size as u64) {
            let _ = fs::remove_file(&tmp); // give back what it took
            return Err(e);
        }
        fs::rename(&tmp, self.path(index))?;
        self.sync_dir()
    }

    fn rename(&mut self, from: u64, to: u64) -> io::Result<()> {
        self.finish_adopting()?;
        self.open.remove(&from);
        fs::rename(self.path(from), self.path(to))?;
        self.sync_dir()
    }

    fn remove(&mut self, index: u64) -> io::Result<()> {
        self.finish_adopting()?;
        self.open.remove(&index);
        fs::remove_file(self.path(index))?;
        self.sync_dir()
    }

    fn read(&self, index: u64) -> io::Result<AlignedVec<BLOCK>> {
        let mut file = File::open(self.path(index))?;
        let len = file.metadata()?.len() as usize;
        let mut bytes = AlignedVec::<BLOCK>::with_capacity(len);
        bytes.resize(len, 0);
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn write(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        assert_whole_blocks(offset, pieces);
        let file = self.file(index)?;
        match pieces {
            [one] => file.write_all_at(one, offset as u64),
            _ => write_all_vectored_at(file, pieces, offset as u64),
        }
    }

    fn sync(&mut self, index: u64) -> io::Result<()> {
        self.file(index)?.sync_data()
    }

    fn write_durable(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        self.write(index, offset, pieces)?;
        if self.dsync {
            Ok(())
        } else {
            self.sync(index)
        }
    }

    fn adopt_prepared(&mut self, index: u64, size: usize) -> io::Result<bool> {
        // A file adopted ahead for another index stays a zero-filled
        // segment the WAL has not written: taking that index later puts a
        // new file under its name, and recovery sees it as a spare.
        if let Some((ahead, adopted)) = self.finish_adopting()? {
            if ahead == index && adopted {
                return Ok(true);
            }
        }
        adopt_into(&self.dir, &self.path(index), size)
    }

    fn adopt_ahead(&mut self, index: u64, size: usize) {
        // One at a time: a second would wait for the first anyway.
        if self.adopting.is_none() {
            self.adopting = Adopting::start(self.dir.clone(), index, self.path(index), size);
        }
    }
}

impl Drop for FileStorage {
    /// No thread changes the directory once its storage is gone (a WAL
    /// opened on it next must see it as it stays).
    fn drop(&mut self) {
        if let Err(e) = self.finish_adopting() {
            tracing::warn!(
                "adopting a WAL segment ahead in {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// `prepare_ahead` stopped on an error after zero-filling `prepared` files,
/// which are ready: a counter of zeroing must count them too.
#[derive(Debug, thiserror::Error)]
#[error("preparing segments ahead, after {prepared} zero-filled: {source}")]
pub struct PrepareError {
    pub prepared: usize,
    #[source]
    pub source: io::Error,
}

/// Keeps `keep` zero-filled, synced files of `size` bytes ready in `dir`
/// for the writer to take as new segments (run off the commit path);
/// returns how many it zero-filled.
pub fn prepare_ahead(dir: &Path, size: usize, keep: usize) -> Result<usize, PrepareError> {
    let mut prepared = 0;
    let failed = |prepared, source| PrepareError { prepared, source };
    let ready = fs::read_dir(dir)
        .map_err(|e| failed(0, e))?
        .filter_map(|e| e.ok())
        .filter(is_prepared)
        .count();
    for i in ready..keep {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{stamp:x}-{i}");
        let tmp = dir.join(format!("{name}.tmp"));
        if let Err(e) = zero_fill(&tmp, size as u64) {
            let _ = fs::remove_file(&tmp);
            return Err(failed(prepared, e));
        }
        fs::rename(&tmp, dir.join(format!("{name}{PREPARED_SUFFIX}")))
            .map_err(|e| failed(prepared, e))?;
        // Zero-filled and named: it counts even if the directory's sync
        // then fails (its zeros are synced, and adopting it as a segment
        // syncs the directory again).
        prepared += 1;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed(prepared, e))?;
    }
    Ok(prepared)
}
