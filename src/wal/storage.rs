//! Where segments live. The WAL writes whole blocks at block-aligned offsets
//! and makes them durable with `sync`; a backend carries that out on a real
//! disk, or in memory for tests that cut the power.

use super::gather::WriteBytes;
use rkyv::util::AlignedVec;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use tokio::sync::Notify;

/// The unit of every WAL write: offsets and lengths are multiples of it.
pub const BLOCK: usize = 4096;

/// Segment files, by index.
pub trait Storage {
    /// Indexes of the segments present, ascending.
    fn segments(&self) -> io::Result<Vec<u64>>;
    /// Creates segment `index`: `size` zero bytes, durable (file and name).
    fn prepare(&mut self, index: u64, size: usize) -> io::Result<()>;
    /// Gives segment `from` the index `to`, durably, content unchanged.
    fn rename(&mut self, from: u64, to: u64) -> io::Result<()>;
    /// Deletes segment `index`, durably.
    fn remove(&mut self, index: u64) -> io::Result<()>;
    /// The whole segment, as the disk holds it now.
    fn read(&self, index: u64) -> io::Result<AlignedVec<BLOCK>>;
    /// Writes `pieces`, one after another, at `offset` (block-aligned, and
    /// each piece whole blocks in block-aligned memory); durable only after
    /// `sync`.
    fn write(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()>;
    /// Makes every write to segment `index` durable.
    fn sync(&mut self, index: u64) -> io::Result<()>;
    /// `write` then `sync`, as one step where a backend can do better.
    fn write_durable(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        self.write(index, offset, pieces)?;
        self.sync(index)
    }
    /// `write_durable` for a write with nothing else in flight, made on
    /// the calling thread: a pipeline that completes its writes elsewhere
    /// may take a faster path for it.
    fn write_alone(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        self.write_durable(index, offset, pieces)
    }
    /// Makes a zero-filled file prepared ahead of use segment `index`, if
    /// one is ready; returns whether it did.
    fn adopt_prepared(&mut self, _index: u64, _size: usize) -> io::Result<bool> {
        Ok(false)
    }
    /// Starts making a prepared file segment `index` off the calling
    /// thread, where a backend can; `adopt_prepared(index)` then takes the
    /// result. Without, `adopt_prepared` does it all when asked.
    fn adopt_ahead(&mut self, _index: u64, _size: usize) {}
    /// The backend's way to keep several durable writes in flight, if it
    /// has one; without, writes go one at a time through `write_durable`.
    fn pipeline(&mut self) -> Option<&mut dyn Pipeline> {
        None
    }
}

/// Durable writes in flight together (io_uring).
pub trait Pipeline {
    /// Starts write `id`: `bytes` at `offset` (block-aligned) of segment
    /// `index`, made durable. Returns at once; `wake` is notified when it
    /// completes.
    fn start(
        &mut self,
        id: u64,
        index: u64,
        offset: usize,
        bytes: WriteBytes,
        wake: Arc<Notify>,
    ) -> io::Result<()>;
    /// Waits for `wake` unless a started write has completed already;
    /// returns the writes completed since the last call, with their results.
    fn wait(&mut self, wake: &Notify) -> Vec<Completion>;
}

/// A write that left the pipeline: its id, how it ended, and its bytes
/// back: the staging buffer for the next write (a fresh buffer costs page
/// faults per block) and the frames lent to it for their owners.
pub struct Completion {
    pub id: u64,
    pub result: io::Result<()>,
    pub bytes: WriteBytes,
}

/// Checks what every backend's `write` is given: `O_DIRECT` refuses
/// anything else, and the in-memory backend must refuse it as well.
pub fn assert_whole_blocks(offset: usize, pieces: &[&[u8]]) {
    assert_eq!(offset % BLOCK, 0, "a write starts on a block");
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        assert_eq!(piece.len() % BLOCK, 0, "a write is whole blocks");
        assert_eq!(piece.as_ptr() as usize % BLOCK, 0, "block-aligned memory");
    }
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn segments(&self) -> io::Result<Vec<u64>> {
        (**self).segments()
    }
    fn prepare(&mut self, index: u64, size: usize) -> io::Result<()> {
        (**self).prepare(index, size)
    }
    fn rename(&mut self, from: u64, to: u64) -> io::Result<()> {
        (**self).rename(from, to)
    }
    fn remove(&mut self, index: u64) -> io::Result<()> {
        (**self).remove(index)
    }
    fn read(&self, index: u64) -> io::Result<AlignedVec<BLOCK>> {
        (**self).read(index)
    }
    fn write(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        (**self).write(index, offset, pieces)
    }
    fn sync(&mut self, index: u64) -> io::Result<()> {
        (**self).sync(index)
    }
    fn adopt_prepared(&mut self, index: u64, size: usize) -> io::Result<bool> {
        (**self).adopt_prepared(index, size)
    }
    fn adopt_ahead(&mut self, index: u64, size: usize) {
        (**self).adopt_ahead(index, size)
    }
    fn write_durable(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        (**self).write_durable(index, offset, pieces)
    }
    fn write_alone(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        (**self).write_alone(index, offset, pieces)
    }
    fn pipeline(&mut self) -> Option<&mut dyn Pipeline> {
        (**self).pipeline()
    }
}

/// Segments in memory, with unsynced writes kept apart from durable bytes,
/// so that a test can cut the power: each unsynced write is then lost,
/// kept, or kept as a torn prefix.
#[derive(Default)]
pub struct MemStorage {
    segments: BTreeMap<u64, MemSegment>,
    /// Operations left before the power goes (`None`: never).
    pub power_fails_after: Option<usize>,
    /// The next `sync` fails (a disk error, not a power loss).
    pub fail_next_sync: bool,
    /// While set, making a new segment fails as on a full disk.
    pub no_space: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dark: bool,
}

#[derive(Clone, Default)]
struct MemSegment {
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(usize, Vec<u8>)>,
}

impl MemSegment {
    fn visible(&self) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        for (offset, data) in &self.pending {
            bytes[*offset..*offset + data.len()].copy_from_slice(data);
        }
        bytes
    }
}

impl MemStorage {
    fn tick(&mut self) -> io::Result<()> {
        if self.dark {
            return Err(io::Error::other("power is off"));
        }
        if let Some(left) = &mut self.power_fails_after {
            if *left == 0 {
                self.dark = true;
                return Err(io::Error::other("power lost"));
            }
            *left -= 1;
        }
        Ok(())
    }

    /// The power comes back after a loss: each unsynced write is dropped,
    /// kept whole, or kept as a prefix cut at a random byte, as `choose`
    /// decides given the write's length (returns the bytes that survive).
    pub fn restore_power(&mut self, mut choose: impl FnMut(usize) -> usize) {
        for segment in self.segments.values_mut() {
            for (offset, data) in std::mem::take(&mut segment.pending) {
                let kept = choose(data.len()).min(data.len());
                segment.durable[offset..offset + kept].copy_from_slice(&data[..kept]);
            }
        }
        self.dark = false;
        self.power_fails_after = None;
    }

    /// Flips the bits of `mask` in a durable byte (a latent media fault).
    pub fn damage(&mut self, index: u64, offset: usize, mask: u8) {
        self.segments.get_mut(&index).expect("segment").durable[offset] ^= mask;
    }
}

fn missing(index: u64) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no segment {index}"))
}

impl Storage for MemStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        Ok(self.segments.keys().copied().collect())
    }

    fn prepare(&mut self, index: u64, size: usize) -> io::Result<()> {
        self.tick()?;
        if self.no_space.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let segment = MemSegment {
            durable: vec![0; size],
            pending: Vec::new(),
        };
        self.segments.insert(index, segment);
        Ok(())
    }

    fn rename(&mut self, from: u64, to: u64) -> io::Result<()> {
        self.tick()?;
        let segment = self.segments.remove(&from).ok_or_else(|| missing(from))?;
        self.segments.insert(to, segment);
        Ok(())
    }

    fn remove(&mut self, index: u64) -> io::Result<()> {
        self.tick()?;
        self.segments.remove(&index).ok_or_else(|| missing(index))?;
        Ok(())
    }

    fn read(&self, index: u64) -> io::Result<AlignedVec<BLOCK>> {
        let segment = self.segments.get(&index).ok_or_else(|| missing(index))?;
        let mut out = AlignedVec::new();
        out.extend_from_slice(&segment.visible());
        Ok(out)
    }

    fn write(&mut self, index: u64, offset: usize, pieces: &[&[u8]]) -> io::Result<()> {
        assert_whole_blocks(offset, pieces);
        let bytes = pieces.concat();
        self.tick()?;
        let segment = self
            .segments
            .get_mut(&index)
            .ok_or_else(|| missing(index))?;
        if offset + bytes.len() > segment.durable.len() {
            return Err(io::Error::other("write past the end of the segment"));
        }
        segment.pending.push((offset, bytes));
        Ok(())
    }

    fn sync(&mut self, index: u64) -> io::Result<()> {
        self.tick()?;
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(io::Error::other("injected fsync failure"));
        }
        let segment = self
            .segments
            .get_mut(&index)
            .ok_or_else(|| missing(index))?;
        // In place, in write order: a later write over the same bytes wins.
        for (offset, data) in std::mem::take(&mut segment.pending) {
            segment.durable[offset..offset + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
}
