//! `traft wal check` on damaged WAL directories: damage a later frame vouches
//! for is corruption named by segment and offset (exit status 1); a torn
//! last frame is a tail cut before new appends (exit status 0).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use traft::frame::{encode, Record, RecordBatch, HEADER_LEN};
use traft::wal::{FileStorage, Wal, WalOptions};
use traft::LeaderId;

const TRAFT: &str = env!("CARGO_BIN_EXE_traft");

/// Ten appends of one frame each; returns the frames' offsets in segment 0.
fn write_wal(dir: &Path) -> Vec<usize> {
    let options = WalOptions {
        segment_size: 1 << 20,
        incarnation: 1,
        rules: Default::default(),
    };
    let (mut wal, _) = Wal::open(FileStorage::new(dir, false).unwrap(), options.clone()).unwrap();
    for lsn in 0..10 {
        let record = Record {
            author: LeaderId::new(1, 1),
            lsn,
            cmd: vec![lsn as u8; 200],
            deps: Default::default(),
        };
        let mut frame = [encode(&RecordBatch {
            records: vec![record],
        })
        .unwrap()];
        wal.append(&mut frame).unwrap();
    }
    drop(wal);
    let (_, recovered) = Wal::open(FileStorage::new(dir, false).unwrap(), options).unwrap();
    recovered.frames.iter().map(|f| f.at.offset).collect()
}

fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(TRAFT)
        .args(["wal", "check"])
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn segment(dir: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(format!("{:016x}.wal", 0)))
        .unwrap()
}

#[test]
fn vouched_damage_is_reported_at_its_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_wal(dir.path());
    let (ok, text) = check(dir.path());
    assert!(ok, "{text}");
    // A bit flips in frame 4's payload; frames 5.. say 4 was durable.
    segment(dir.path())
        .write_all_at(&[0xff], (offsets[4] + HEADER_LEN + 20) as u64)
        .unwrap();
    let (ok, text) = check(dir.path());
    assert!(!ok, "corruption must fail the check: {text}");
    let place = format!("segment 0 at offset {}", offsets[4]);
    assert!(text.contains(&place), "{text}");
}

#[test]
fn a_torn_last_frame_is_a_clean_tail() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_wal(dir.path());
    let last = offsets[9];
    segment(dir.path())
        .write_all_at(&[0u8; 64], (last + 32) as u64)
        .unwrap();
    let (ok, text) = check(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("frames: 9"), "{text}");
    assert!(
        text.contains(&format!("end: segment 0 offset {last}")),
        "{text}"
    );
}
