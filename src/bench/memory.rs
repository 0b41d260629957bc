//! How physically scattered a buffer's pages are. On the virtual disk this
//! project is measured on, an `O_DIRECT` write of one physically contiguous
//! run takes 10–22% less time at 256 KiB–1 MiB than the same write from
//! pages that lie apart (`perf/wal-experiments.md`, "Why one appender's
//! ratio moves"): each run is one more segment of the request the host must
//! carry. Which pages a buffer gets is the allocator's and the kernel's
//! luck, so the benchmarks print it.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The page size the map below is in.
const PAGE: usize = 4096;
/// The page frame number's bits in a `/proc/self/pagemap` entry.
const PFN_MASK: u64 = (1 << 55) - 1;
/// The entry's "present" bit.
const PRESENT: u64 = 1 << 63;

/// Physically contiguous runs among the pages `buf` covers, or `None` when
/// they cannot be read: page frame numbers are shown only with
/// `CAP_SYS_ADMIN` (zeros otherwise), and a page not yet touched has none.
pub fn physical_runs(buf: &[u8]) -> Option<usize> {
    if buf.is_empty() {
        return Some(0);
    }
    let map = File::open("/proc/self/pagemap").ok()?;
    let first = buf.as_ptr() as usize / PAGE;
    let last = (buf.as_ptr() as usize + buf.len() - 1) / PAGE;
    let mut runs = 0;
    let mut previous: Option<u64> = None;
    for page in first..=last {
        let mut entry = [0u8; 8];
        map.read_exact_at(&mut entry, (page * 8) as u64).ok()?;
        let entry = u64::from_le_bytes(entry);
        let frame = entry & PFN_MASK;
        if entry & PRESENT == 0 || frame == 0 {
            return None;
        }
        if previous != Some(frame.wrapping_sub(1)) {
            runs += 1;
        }
        previous = Some(frame);
    }
    Some(runs)
}

/// `physical_runs` as a table's note: "12 runs of 64 pages" or "unknown".
pub fn describe(buf: &[u8]) -> String {
    let pages = buf.len().div_ceil(PAGE);
    match physical_runs(buf) {
        Some(runs) => format!("{runs} physical runs of {pages} pages"),
        None => format!("{pages} pages, physical runs unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touched_buffer_has_between_one_run_and_one_per_page() {
        let buf = vec![0x5au8; 16 * PAGE];
        // Page frame numbers need privileges; without them there is no
        // answer, and that must be `None`, never a made-up count.
        if let Some(runs) = physical_runs(&buf) {
            let pages =
                (buf.as_ptr() as usize + buf.len() - 1) / PAGE - buf.as_ptr() as usize / PAGE + 1;
            assert!(
                (1..=pages).contains(&runs),
                "{runs} runs over {pages} pages"
            );
        }
        assert_eq!(physical_runs(&[]), Some(0));
    }
}
