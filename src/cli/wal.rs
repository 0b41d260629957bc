//! `traft wal`: what recovery sees in a WAL directory, and a writer that
//! the crash tests kill.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use traft::frame::{encode, Frame, FrameKind, Record, RecordBatch};
use traft::wal::{self, FileStorage, Storage, Wal, WalOptions, BLOCK};
use traft::LeaderId;

#[derive(clap::Subcommand)]
pub enum WalCommand {
    /// Verify every frame as recovery does; report where the log ends.
    Check { dir: PathBuf },
    /// List every frame recovery would return.
    Dump { dir: PathBuf },
    /// Append batches forever, printing `ok FIRST COUNT` once each is durable
    /// (each frame carries a content derived from a tag it holds, which
    /// `verify` checks). For crash tests.
    #[command(hide = true)]
    AppendLoop {
        dir: PathBuf,
        #[arg(long, default_value_t = 64 * 1024)]
        segment_size: usize,
        /// Keep zero-filled files ready on a second thread, as a replica
        /// does, so that segments are adopted from them ahead of use.
        #[arg(long)]
        prepared_ahead: bool,
        /// Append from this many threads through the group commit on the
        /// default backend (io_uring where it runs), as a replica does,
        /// with zero-filled segments prepared ahead; 0 appends from one
        /// thread straight into the `pwrite` backend.
        #[arg(long, default_value_t = 0)]
        appenders: usize,
    },
    /// Check that every frame holds the content `append-loop` gives its
    /// tag, that no tag comes twice, and that every `wal_seq` up to the
    /// given one is present. For crash tests.
    #[command(hide = true)]
    Verify {
        dir: PathBuf,
        /// The greatest `wal_seq` `append-loop` acknowledged.
        #[arg(long, default_value_t = 0)]
        acked_through: u64,
    },
}

pub fn run(command: WalCommand) -> Result<()> {
    match command {
        WalCommand::Check { dir } => check(&dir),
        WalCommand::Dump { dir } => dump(&dir),
        WalCommand::AppendLoop {
            dir,
            segment_size,
            prepared_ahead,
            appenders: 0,
        } => append_loop(&dir, segment_size, prepared_ahead),
        WalCommand::AppendLoop {
            dir,
            segment_size,
            appenders,
            ..
        } => group_append_loop(&dir, segment_size, appenders),
        WalCommand::Verify { dir, acked_through } => verify(&dir, acked_through),
    }
}

/// Reads every segment and scans them, changing nothing.
fn read_segments(dir: &Path) -> Result<(Vec<u64>, Vec<rkyv::util::AlignedVec<BLOCK>>)> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let storage = FileStorage::new(dir, false)?;
    let indexes = storage.segments()?;
    let buffers = indexes
        .iter()
        .map(|&i| {
            storage
                .read(i)
                .with_context(|| format!("reading segment {i}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((indexes, buffers))
}

fn with_scan<T>(dir: &Path, f: impl FnOnce(&wal::Scan<'_>) -> Result<T>) -> Result<T> {
    let (indexes, buffers) = read_segments(dir)?;
    let segments: Vec<wal::SegmentBytes<'_>> = indexes
        .iter()
        .zip(&buffers)
        .map(|(&index, bytes)| wal::SegmentBytes { index, bytes })
        .collect();
    let scan = wal::scan(&segments);
    f(&scan)
}

fn check(dir: &Path) -> Result<()> {
    with_scan(dir, |scan| {
        let first = scan.frames.first().map(|a| a.frame.header.wal.wal_seq);
        println!("frames: {}", scan.frames.len());
        match first {
            Some(first) => println!("wal_seq: {first}..{}", scan.next_seq - 1),
            None => println!("wal_seq: none (next {})", scan.next_seq),
        }
        println!(
            "end: segment {} offset {}",
            scan.end.segment, scan.end.offset
        );
        if let Some(corruption) = &scan.corruption {
            bail!("{corruption}");
        }
        if let Some(cut) = &scan.cut {
            println!("tail cut before new appends: {cut}");
        }
        println!("ok");
        Ok(())
    })
}

fn dump(dir: &Path) -> Result<()> {
    with_scan(dir, |scan| {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "segment  offset  wal_seq  incarnation  durable_upto  kind  bytes  lsns"
        )?;
        for a in &scan.frames {
            let h = a.frame.header;
            let lsns = lsns(&a.frame);
            writeln!(
                out,
                "{:>7} {:>7} {:>8} {:>12} {:>13}  {:?} {:>6}  {lsns}",
                a.at.segment,
                a.at.offset,
                h.wal.wal_seq,
                h.wal.incarnation,
                h.wal.durable_upto,
                h.kind,
                a.frame.bytes.len()
            )?;
        }
        Ok(())
    })
}

fn lsns(frame: &Frame<'_>) -> String {
    match frame.header.kind {
        FrameKind::Record => frame
            .record()
            .map(|r| r.lsn().to_string())
            .unwrap_or_default(),
        FrameKind::RecordBatch => match frame.batch() {
            Ok(b) if !b.records().is_empty() => {
                let first = b.records()[0].lsn();
                let last = b.records()[b.records().len() - 1].lsn();
                format!("{first}..={last} ({})", b.records().len())
            }
            _ => String::new(),
        },
        FrameKind::Base => match frame.base() {
            Ok(b) => format!(
                "base of {:?}: keep {:?}, {} records",
                b.committer.to_native(),
                b.keep.view(),
                b.records.len()
            ),
            Err(_) => String::new(),
        },
        FrameKind::Committed => match frame.committed() {
            Ok(c) => format!("committed {:?}", c.committed.view()),
            Err(_) => String::new(),
        },
        FrameKind::Message | FrameKind::Hello => "a wire frame, out of place in a WAL".into(),
    }
}

/// The batch `append-loop` writes with `tag`: its first record's LSN is
/// `tag * 4`, so that `verify` finds the tag in the frame.
fn content(tag: u64) -> RecordBatch {
    let records = (0..1 + tag % 3)
        .map(|i| Record {
            author: LeaderId::new(1, 1),
            lsn: tag * 4 + i,
            cmd: tag.to_le_bytes().repeat(1 + (tag % 97) as usize),
            deps: Default::default(),
        })
        .collect();
    RecordBatch { records }
}

/// The frames of one append of `append-loop`: `count` batches, tags from
/// `tag` on.
fn frames_from(tag: u64, count: u64) -> Result<Vec<rkyv::util::AlignedVec>> {
    Ok((tag..tag + count)
        .map(|tag| encode(&content(tag)))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Boots the slot file in `dir` (created if missing): the options of the
/// WAL the new incarnation writes.
fn boot(dir: &Path, segment_size: usize) -> Result<WalOptions> {
    std::fs::create_dir_all(dir)?;
    let (mut slot, found) = wal::SlotFile::open(dir)?;
    Ok(WalOptions {
        segment_size,
        incarnation: slot.boot(found)?.incarnation,
        rules: Default::default(),
    })
}

/// The tag a frame of `append-loop` carries.
fn tag_of(frame: &Frame<'_>) -> Result<u64> {
    let batch = frame.batch()?;
    let first = batch.records().first().context("a batch without records")?;
    Ok(first.lsn() / 4)
}

fn append_loop(dir: &Path, segment_size: usize, prepared_ahead: bool) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    if prepared_ahead {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || loop {
            if let Err(e) = wal::file::prepare_ahead(&dir, segment_size, 2) {
                eprintln!("{e}");
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        });
    }
    let options = boot(dir, segment_size)?;
    let (mut wal, recovered) = Wal::open(FileStorage::new(dir, true)?, options)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "recovered {} next {}",
        recovered.frames.len(),
        wal.next_seq()
    )?;
    out.flush()?;
    let mut tag = next_tag(&recovered.frames)?;
    loop {
        let first = wal.next_seq();
        let count = 1 + tag % 4;
        let mut frames = frames_from(tag, count)?;
        tag += count;
        let at = wal.append(&mut frames)?;
        assert_eq!(at, first);
        writeln!(out, "ok {first} {count}")?;
        out.flush()?;
    }
}

/// The tag after the greatest one in `frames`, so that no two frames
/// share one: with several appenders, tags and `wal_seq`s go in different
/// orders, and a torn tail can lose lower tags than it keeps.
fn next_tag(frames: &[wal::RecoveredFrame]) -> Result<u64> {
    let mut next = 0;
    for f in frames {
        next = next.max(tag_of(&Frame::decode(&f.bytes)?)? + 1);
    }
    Ok(next)
}

/// The group commit's form of `append_loop`: `appenders` threads append
/// batches of fresh tags, each printing its batch once it resolved.
fn group_append_loop(dir: &Path, segment_size: usize, appenders: usize) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let options = boot(dir, segment_size)?;
    let storage_dir = dir.to_path_buf();
    let (wal, writer, recovered) = wal::GroupWal::start(
        move || wal::open_backend(&storage_dir, wal::Backend::Uring, true).map(|(s, _)| s),
        options,
        Some(dir.to_path_buf()),
    )?;
    let tags = AtomicU64::new(next_tag(&recovered.frames)?);
    let out = std::io::stdout();
    writeln!(out.lock(), "recovered {}", recovered.frames.len())?;
    let result = std::thread::scope(|scope| -> Result<()> {
        let threads: Vec<_> = (0..appenders)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        // Four tags reserved in one step, the first 1–4
                        // of them used.
                        let tag = tags.fetch_add(4, Ordering::Relaxed);
                        let count = 1 + tag / 4 % 4;
                        let first = wal.append(frames_from(tag, count)?)?;
                        let mut out = out.lock();
                        writeln!(out, "ok {first} {count}")?;
                        out.flush()?;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("an appender thread panicked")?;
        }
        Ok(())
    });
    drop(wal);
    writer.join();
    result
}

fn verify(dir: &Path, acked_through: u64) -> Result<()> {
    with_scan(dir, |scan| {
        if let Some(corruption) = &scan.corruption {
            bail!("{corruption}");
        }
        let mut tags = std::collections::HashSet::new();
        for a in &scan.frames {
            let seq = a.frame.header.wal.wal_seq;
            let tag = tag_of(&a.frame)
                .with_context(|| format!("frame {seq} is no batch append-loop wrote"))?;
            let want = encode(&content(tag))?;
            // Compare everything but the WAL fields and the header checksum.
            if a.frame.bytes[48..] != want[48..] || a.frame.bytes[..16] != want[..16] {
                bail!("frame {seq} holds bytes append-loop never wrote there");
            }
            if !tags.insert(tag) {
                bail!("frame {seq} repeats tag {tag}: a frame came back twice");
            }
        }
        // Recovery returns contiguous wal_seqs: the last one bounds them all.
        let first = scan.frames.first().map(|a| a.frame.header.wal.wal_seq);
        if acked_through > 0
            && (first != Some(wal::FIRST_WAL_SEQ) || scan.next_seq <= acked_through)
        {
            bail!(
                "acknowledged frames up to {acked_through}, recovery returns {:?}..{}",
                first,
                scan.next_seq
            );
        }
        println!(
            "ok: {} frames, every acknowledged one present",
            scan.frames.len()
        );
        Ok(())
    })
}
