//! Does it matter where in physical memory an `O_DIRECT` write's buffer
//! lies? Alternates durable appends (pwrite + fdatasync into a pre-zeroed
//! file) from two buffers of the same size: one faulted in page by page as
//! any allocation is, one backed by a transparent huge page (one physical
//! run), and prints each one's median p50 over the rounds.
//!
//! `cargo run --release --example contiguous_writes -- 262144 /var/tmp`
//! (run as root to see the physical runs; Linux only).

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};
use traft::bench::memory::describe;

const HUGE: usize = 2 << 20;

/// `len` bytes at the start of a fresh 2 MiB-aligned anonymous mapping,
/// advised onto huge pages or not, then written (faulted in).
fn buffer(len: usize, huge: bool) -> &'static mut [u8] {
    let span = len.next_multiple_of(HUGE) + HUGE;
    // SAFETY: a new private anonymous mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap");
    let start = (base as usize).next_multiple_of(HUGE);
    if huge {
        // SAFETY: the range lies inside the mapping made above.
        let advised = unsafe {
            libc::madvise(
                start as *mut _,
                len.next_multiple_of(HUGE),
                libc::MADV_HUGEPAGE,
            )
        };
        assert_eq!(advised, 0, "madvise(MADV_HUGEPAGE)");
    }
    // SAFETY: `start..start + len` is inside the mapping, which is never
    // unmapped (the buffers live as long as the process).
    let buf = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
    buf.fill(0x5a);
    buf
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args
        .get(1)
        .map_or(262144, |s| s.parse().expect("bytes per write"));
    assert!(size % 4096 == 0 && size > 0, "whole 4 KiB blocks");
    let dir = std::path::PathBuf::from(args.get(2).map_or("/var/tmp", String::as_str));
    let path = dir.join("contiguous_writes.dat");
    let file_size: u64 = 2 << 30;
    traft::wal::file::zero_fill(&path, file_size).expect("zero the file");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open with O_DIRECT");
    let cases = [
        ("4 KiB pages", buffer(size, false)),
        ("huge page", buffer(size, true)),
    ];
    for (name, buf) in &cases {
        println!("{name}: {}", describe(buf));
    }
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut at = 0u64;
    for _ in 0..9 {
        for (i, (_, buf)) in cases.iter().enumerate() {
            let mut latencies = Vec::new();
            let end = Instant::now() + Duration::from_millis(800);
            while Instant::now() < end {
                if at + size as u64 > file_size {
                    at = 0;
                }
                let t = Instant::now();
                file.write_all_at(buf, at).expect("write");
                file.sync_data().expect("fdatasync");
                latencies.push(t.elapsed().as_secs_f64() * 1e6);
                at += size as u64;
            }
            latencies.sort_by(f64::total_cmp);
            p50s[i].push(latencies[latencies.len() / 2]);
        }
    }
    for ((name, _), p50) in cases.iter().zip(&mut p50s) {
        p50.sort_by(f64::total_cmp);
        println!(
            "{name:>12}: p50 {:.1} µs (median of 9 rounds; {:.1}–{:.1})",
            p50[p50.len() / 2],
            p50[0],
            p50[p50.len() - 1]
        );
    }
    std::fs::remove_file(&path).expect("remove the file");
}
