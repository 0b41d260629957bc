//! Large buffers on transparent huge pages: a global allocator that serves
//! allocations of `LARGE_MIN..=LARGE_MAX` bytes from a reserve of huge pages
//! made once at start, and every other allocation (and any large one the
//! reserve has no block for) from the system's.
//!
//! Why: a large frame is written to the WAL from its own memory (it is lent
//! to the write, `wal::LEND_MIN`), and on the virtual disk this engine is
//! measured on an `O_DIRECT` write costs about half a microsecond more for
//! every physically separate run of pages its buffer spans
//! (`bench::memory`); a 1 MiB buffer of 256 separate pages passes the
//! device's 254 segments a request as well, so the block layer splits the
//! write in two. Pages faulted in one by one lie wherever the kernel had
//! them; a huge page is 2 MiB in one run, and a block cut from one is a
//! single run too.
//!
//! Why a reserve made up front: a huge page's first fault zeroes 2 MiB, about
//! 0.3 ms here, a stall on whichever thread touches it first; with huge
//! pages mapped as they were needed, the cluster's p99.9 about doubled
//! (`perf/wal-experiments.md`, "Large buffers on huge pages"). So `reserve`
//! maps and faults in the whole reserve at start (64 MiB in about 8 ms),
//! and nothing is mapped afterwards.
//!
//! Blocks are powers of two from `LARGE_MIN` to one huge page, each aligned
//! to its size and cut from the reserve a huge page at a time; a freed block
//! waits on its size's free list for the next allocation of that size.
//! Whether a block is the reserve's is told by its address, so a large
//! allocation made before the reserve, or after it ran out, is the system's
//! and goes back to it.
//!
//! The `traft` binary installs this allocator and reserves
//! `TRAFT_HUGE_PAGES_MIB` (default `RESERVE_DEFAULT_MIB`; 0 for none) before
//! it runs a replica or a benchmark. A program embedding the library
//! chooses its own global allocator (`#[global_allocator]`); without a
//! reserve this one is the system's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The smallest allocation served from the reserve: the WAL lends frames
/// from `wal::LEND_MIN` (64 KiB) up to its writes.
pub const LARGE_MIN: usize = 64 << 10;
/// The largest: one huge page (x86-64 and aarch64 with 4 KiB pages). The
/// WAL's writes are at most 1 MiB (`wal::group::WRITE_BYTES_MAX`).
pub const LARGE_MAX: usize = HUGE_PAGE;
const HUGE_PAGE: usize = 2 << 20;
/// The reserve the `traft` binary makes unless told otherwise: sixteen
/// 1 MiB frames, their writes and the benchmark's floor buffers fit twice.
pub const RESERVE_DEFAULT_MIB: usize = 64;
/// Blocks are aligned to their size (at least `LARGE_MIN`); a layout asking
/// for more than a page is left to the system.
const ALIGN_MAX: usize = 4096;
/// One free list per power of two from `LARGE_MIN` to `LARGE_MAX`.
const CLASSES: usize = (LARGE_MAX.trailing_zeros() - LARGE_MIN.trailing_zeros() + 1) as usize;

/// The global allocator: large allocations from the reserve, the rest from
/// `System`.
pub struct LargeOnHugePages;

static POOL: Pool = Pool::new();

/// Maps `bytes` (rounded up to huge pages) advised to be huge pages and
/// faults them all in, for `LargeOnHugePages` to serve large allocations
/// from. Once per process: a second call changes nothing and returns the
/// reserve's size. Where the kernel has transparent huge pages off, the
/// reserve is ordinary pages, still faulted in up front.
pub fn reserve(bytes: usize) -> io::Result<usize> {
    POOL.reserve(bytes)
}

/// The reserve's size in bytes and how much of it is cut into blocks.
pub fn reserved() -> (usize, usize) {
    POOL.usage()
}

// SAFETY: every pointer handed out is either `System`'s, or a block of the
// reserve of at least `layout.size()` bytes aligned to at least `ALIGN_MAX`,
// owned by the caller until freed, and freed with the layout it was
// allocated with; a freed pointer of a large layout is routed by its
// address, which tells the two apart for the life of the process (the
// reserve is never unmapped), and one of a small layout cannot be a block.
unsafe impl GlobalAlloc for LargeOnHugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        POOL.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        POOL.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        POOL.dealloc(block, layout)
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        POOL.realloc(block, layout, new_size)
    }
}

/// Which free list serves `layout`, or `None` for the system allocator.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if !(LARGE_MIN..=LARGE_MAX).contains(&size) || layout.align() > ALIGN_MAX {
        return None;
    }
    Some((size.next_power_of_two().trailing_zeros() - LARGE_MIN.trailing_zeros()) as usize)
}

fn block_size(class: usize) -> usize {
    LARGE_MIN << class
}

/// Free blocks of one size, linked through their first word.
struct FreeList {
    head: *mut u8,
}

// SAFETY: a listed block belongs to the list alone until taken off it, and
// the list is only reached under its mutex.
unsafe impl Send for FreeList {}

/// The reserve, the free lists, and the routing between them and `System`.
struct Pool {
    /// The reserve's bounds; `start` is published last, so a reader that
    /// sees it sees `end` and `next` set.
    start: AtomicUsize,
    end: AtomicUsize,
    /// The first huge page not yet cut into blocks.
    next: AtomicUsize,
    /// Held while the reserve is made, so that it is made once.
    making: Mutex<()>,
    lists: [Mutex<FreeList>; CLASSES],
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            making: Mutex::new(()),
            lists: [const {
                Mutex::new(FreeList {
                    head: ptr::null_mut(),
                })
            }; CLASSES],
        }
    }

    fn reserve(&self, bytes: usize) -> io::Result<usize> {
        let _making = self.making.lock().unwrap_or_else(PoisonError::into_inner);
        if self.start.load(Ordering::Acquire) != 0 || bytes == 0 {
            return Ok(self.usage().0);
        }
        let len = bytes.next_multiple_of(HUGE_PAGE);
        let start = map_huge(len)?;
        self.end.store(start + len, Ordering::Relaxed);
        self.next.store(start, Ordering::Relaxed);
        self.start.store(start, Ordering::Release);
        Ok(len)
    }

    fn usage(&self) -> (usize, usize) {
        let start = self.start.load(Ordering::Acquire);
        if start == 0 {
            return (0, 0);
        }
        let end = self.end.load(Ordering::Relaxed);
        let cut = self.next.load(Ordering::Relaxed).min(end) - start;
        (end - start, cut)
    }

    fn owns(&self, block: *mut u8) -> bool {
        let start = self.start.load(Ordering::Acquire);
        start != 0 && (start..self.end.load(Ordering::Relaxed)).contains(&(block as usize))
    }

    fn list(&self, class: usize) -> MutexGuard<'_, FreeList> {
        // Nothing panics while a list is held, so a poisoned lock is only
        // another thread's unrelated panic.
        self.lists[class]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// # Safety
    /// As `GlobalAlloc::alloc`.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout).map(|class| self.take(class)) {
            Some(block) if !block.is_null() => block,
            _ => System.alloc(layout),
        }
    }

    /// # Safety
    /// As `GlobalAlloc::alloc_zeroed`.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout).map(|class| self.take(class)) {
            Some(block) if !block.is_null() => {
                // A block from a list holds its last owner's bytes.
                ptr::write_bytes(block, 0, layout.size());
                block
            }
            _ => System.alloc_zeroed(layout),
        }
    }

    /// # Safety
    /// As `GlobalAlloc::dealloc`: `block` came from this pool's `alloc` (or
    /// `realloc`) with `layout`.
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // The size first: most frees are small, and skip the address check.
        match class_of(layout) {
            Some(class) if self.owns(block) => self.give(class, block),
            _ => System.dealloc(block, layout),
        }
    }

    /// # Safety
    /// As `GlobalAlloc::realloc`.
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the
        // alignment, does not overflow `isize`.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let (old_class, new_class) = (class_of(layout), class_of(new_layout));
        if old_class.is_some() && self.owns(block) {
            if new_class == old_class {
                // The block already holds any size of its class.
                return block;
            }
        } else if new_class.is_none() {
            return System.realloc(block, layout, new_size);
        }
        let moved = self.alloc(new_layout);
        if !moved.is_null() {
            ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
            self.dealloc(block, layout);
        }
        moved
    }

    /// A block of `class`'s size from its free list or cut from the
    /// reserve; null when the reserve has none left.
    fn take(&self, class: usize) -> *mut u8 {
        {
            let mut list = self.list(class);
            if !list.head.is_null() {
                let block = list.head;
                // SAFETY: a listed block is ours and holds its successor's
                // address in its first word (`give`).
                list.head = unsafe { block.cast::<*mut u8>().read() };
                return block;
            }
        }
        if self.start.load(Ordering::Acquire) == 0 {
            return ptr::null_mut();
        }
        let page = self.next.fetch_add(HUGE_PAGE, Ordering::Relaxed);
        if page >= self.end.load(Ordering::Relaxed) {
            return ptr::null_mut();
        }
        // The page's first block is the caller's; the rest wait on the list.
        let size = block_size(class);
        for at in (page + size..page + HUGE_PAGE).step_by(size) {
            self.give(class, at as *mut u8);
        }
        page as *mut u8
    }

    /// `block`, of `class`'s size, back on its free list.
    fn give(&self, class: usize, block: *mut u8) {
        debug_assert!(self.owns(block));
        debug_assert_eq!(block as usize % block_size(class), 0);
        let mut list = self.list(class);
        // SAFETY: the block is at least `LARGE_MIN` bytes of the reserve,
        // ours again, and aligned for a pointer; its first word links it to
        // the list.
        unsafe { block.cast::<*mut u8>().write(list.head) };
        list.head = block;
    }
}

/// `len` bytes of anonymous memory aligned to a huge page, advised to be
/// backed by huge pages, and faulted in.
fn map_huge(len: usize) -> io::Result<usize> {
    debug_assert_eq!(len % HUGE_PAGE, 0);
    let span = len + HUGE_PAGE;
    // SAFETY: an anonymous private mapping at an address the kernel picks
    // touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let head = aligned - start;
    let tail = span - head - len;
    // SAFETY: the head and tail lie inside the mapping just made and outside
    // the aligned `len` bytes kept; nothing refers to them. The advice and
    // the faulting concern the kept range alone.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        let kept = aligned as *mut libc::c_void;
        // Refused where transparent huge pages are off: ordinary pages then.
        libc::madvise(kept, len, libc::MADV_HUGEPAGE);
        if libc::madvise(kept, len, libc::MADV_POPULATE_WRITE) != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINVAL) {
                // Out of memory, most likely: no reserve rather than a
                // process the kernel kills when the pages are touched.
                libc::munmap(kept, len);
                return Err(error);
            }
            // Before Linux 5.14: a write to every page faults them in.
            for page in (aligned..aligned + len).step_by(4096) {
                (page as *mut u8).write_volatile(0);
            }
        }
    }
    Ok(aligned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 16).unwrap()
    }

    fn reserved_pool(bytes: usize) -> Pool {
        let pool = Pool::new();
        assert_eq!(
            pool.reserve(bytes).unwrap(),
            bytes.next_multiple_of(HUGE_PAGE)
        );
        pool
    }

    #[test]
    fn sizes_route_to_the_right_list() {
        assert_eq!(class_of(layout(LARGE_MIN - 1)), None);
        assert_eq!(class_of(layout(LARGE_MIN)), Some(0));
        assert_eq!(class_of(layout(LARGE_MIN + 1)), Some(1));
        assert_eq!(class_of(layout(1 << 20)), Some(4));
        assert_eq!(class_of(layout((1 << 20) + 16)), Some(5));
        assert_eq!(class_of(layout(LARGE_MAX)), Some(CLASSES - 1));
        assert_eq!(class_of(layout(LARGE_MAX + 1)), None);
        let over_aligned = Layout::from_size_align(1 << 20, 2 * ALIGN_MAX).unwrap();
        assert_eq!(class_of(over_aligned), None);
    }

    #[test]
    fn without_a_reserve_everything_is_the_systems() {
        let pool = Pool::new();
        // SAFETY: the block is freed with the layout it was allocated with.
        unsafe {
            let block = pool.alloc(layout(1 << 20));
            assert!(!block.is_null() && !pool.owns(block));
            pool.dealloc(block, layout(1 << 20));
        }
        assert_eq!(pool.usage(), (0, 0));
    }

    #[test]
    fn blocks_are_aligned_distinct_and_reused_once_freed() {
        let pool = reserved_pool(8 << 20);
        let l = layout(256 << 10);
        // SAFETY: every block is freed with the layout it was allocated with.
        unsafe {
            let blocks: Vec<*mut u8> = (0..20).map(|_| pool.alloc(l)).collect();
            let distinct: HashSet<usize> = blocks.iter().map(|b| *b as usize).collect();
            assert_eq!(distinct.len(), blocks.len());
            for &b in &blocks {
                assert!(pool.owns(b));
                assert_eq!(b as usize % (256 << 10), 0, "aligned to its size");
                ptr::write_bytes(b, 0xA5, l.size());
            }
            assert_eq!(pool.usage(), (8 << 20, 6 << 20), "20 blocks of 256 KiB");
            let freed = blocks[7];
            pool.dealloc(freed, l);
            assert_eq!(pool.alloc(l), freed, "a freed block is handed out again");
            for b in blocks {
                pool.dealloc(b, l);
            }
        }
    }

    #[test]
    fn past_the_reserve_large_allocations_are_the_systems() {
        let pool = reserved_pool(4 << 20);
        let l = layout(1 << 20);
        // SAFETY: as above.
        unsafe {
            let blocks: Vec<*mut u8> = (0..6).map(|_| pool.alloc(l)).collect();
            let owned = blocks.iter().filter(|&&b| pool.owns(b)).count();
            assert_eq!(owned, 4, "two huge pages of 1 MiB blocks");
            for &b in &blocks {
                ptr::write_bytes(b, 1, l.size());
            }
            for b in blocks {
                pool.dealloc(b, l);
            }
            // The reserve's freed blocks serve again; the system's went back.
            assert!(pool.owns(pool.alloc(l)));
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_reused() {
        let pool = reserved_pool(2 << 20);
        let l = layout(1 << 20);
        // SAFETY: as above.
        unsafe {
            let b = pool.alloc(l);
            ptr::write_bytes(b, 0xFF, l.size());
            pool.dealloc(b, l);
            let z = pool.alloc_zeroed(l);
            assert_eq!(z, b);
            assert!(std::slice::from_raw_parts(z, l.size())
                .iter()
                .all(|&x| x == 0));
            pool.dealloc(z, l);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_the_system_and_the_reserve() {
        let pool = reserved_pool(8 << 20);
        // SAFETY: each step's block is passed on with the layout it has.
        unsafe {
            let mut size = 1000;
            let mut block = pool.alloc(layout(size));
            for (i, byte) in std::slice::from_raw_parts_mut(block, size)
                .iter_mut()
                .enumerate()
            {
                *byte = (i % 251) as u8;
            }
            // Up from the system into the reserve, within a class, across
            // classes, past `LARGE_MAX` and back down.
            let steps = [
                (100_000, true),
                (120_000, true),
                (2 << 20, true),
                (3 << 20, false),
                (500_000, true),
                (2000, false),
                (900, false),
            ];
            for (new_size, in_reserve) in steps {
                block = pool.realloc(block, layout(size), new_size);
                assert!(!block.is_null());
                assert_eq!(pool.owns(block), in_reserve, "{new_size} bytes");
                let kept = size.min(new_size).min(1000);
                let bytes = std::slice::from_raw_parts(block, kept);
                assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
                size = new_size;
            }
            pool.dealloc(block, layout(size));
        }
    }

    #[test]
    fn a_second_reserve_changes_nothing() {
        let pool = reserved_pool(2 << 20);
        assert_eq!(pool.reserve(64 << 20).unwrap(), 2 << 20);
        assert_eq!(pool.usage(), (2 << 20, 0));
    }

    #[test]
    fn threads_never_share_a_live_block() {
        let pool = reserved_pool(16 << 20);
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let pool = &pool;
                scope.spawn(move || {
                    for round in 0..200usize {
                        let size = LARGE_MIN << (round % 5);
                        let l = layout(size);
                        let mark = t.wrapping_mul(61).wrapping_add(round as u8);
                        // SAFETY: the block is written, read and freed by this
                        // thread alone, with its layout.
                        unsafe {
                            let b = pool.alloc(l);
                            ptr::write_bytes(b, mark, size);
                            std::thread::yield_now();
                            let bytes = std::slice::from_raw_parts(b, size);
                            assert!(bytes.iter().all(|&x| x == mark), "another owner wrote here");
                            pool.dealloc(b, l);
                        }
                    }
                });
            }
        });
    }
}
