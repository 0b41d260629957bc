//! A replica whose WAL device fills up, on a real filesystem: node 3's data
//! directory is on a small tmpfs, filled to the last byte by another file.
//! It stops acknowledging (its WAL waits for space for the next segment and
//! says so), the other two keep the cluster writing, and once space returns
//! it resumes and catches up; no acknowledged write is lost. Mounting needs
//! root: where it fails, the test says so and does nothing (the WAL's own
//! test, `wal::group::appends_wait_for_space_for_the_next_segment_and_resume`,
//! runs everywhere).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Cluster, Value};

/// Unmounts when dropped (after the cluster, which is declared later).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

#[test]
fn a_replica_on_a_full_disk_stops_acknowledging_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&small)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run mount: {e}");
            return;
        }
    }
    let _mount = Mount(small.clone());
    let cluster = Cluster::start_custom(false, |c| {
        c.data_dirs[2] = small.join("node-3");
        for args in &mut c.extra_args {
            args.extend(["--segment-kib".to_string(), "1024".to_string()]);
        }
    });
    let filler = small.join("filler");
    fill(&filler);

    // Writes go on, acknowledged by the other two, until node 3's WAL
    // needs a segment it has no space for.
    let value = "v".repeat(16 << 10);
    let mut acked = Vec::new();
    let mut i = 0;
    while cluster.info(3, "wal_waiting_for_space").as_deref() != Some("1") {
        assert!(i < 2000, "node 3 never ran out of space");
        let key = format!("k{i}");
        let reply = cluster.call_leader(&[1, 2, 3], &["SET", &key, &value]);
        assert_eq!(reply, Value::Simple("OK".into()));
        acked.push(key);
        i += 1;
    }
    let log = std::fs::read_to_string(cluster.root.path().join("log-3")).unwrap();
    assert!(
        log.contains("no space for WAL segment"),
        "a clear error: {log}"
    );
    // The cluster keeps taking writes; node 3 acknowledges none of them.
    for j in 0..50 {
        let key = format!("more{j}");
        let reply = cluster.call_leader(&[1, 2, 3], &["SET", &key, &value]);
        assert_eq!(reply, Value::Simple("OK".into()), "{}", cluster.logs());
        acked.push(key);
    }
    let leader = cluster.wait_leader(&[1, 2, 3], Duration::from_secs(10));
    let lsns = |id, field| -> u64 { cluster.info(id, field).unwrap().parse().unwrap() };
    assert!(
        lsns(3, "applied_lsns") < lsns(leader, "committed_lsns"),
        "node 3 is stalled"
    );
    assert_eq!(
        cluster.info(3, "wal_waiting_for_space").as_deref(),
        Some("1")
    );

    // Space returns: node 3 resumes and catches up.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up = cluster.info(3, "wal_waiting_for_space").as_deref() == Some("0")
            && lsns(3, "applied_lsns") == lsns(leader, "committed_lsns")
            && cluster.info(3, "kv_digest") == cluster.info(leader, "kv_digest");
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 did not resume: {}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(cluster.root.path().join("log-3")).unwrap();
    assert!(log.contains("WAL space is back"), "{log}");
    eprintln!(
        "disk full: node 3 ran out of space after {i} writes of 16 KiB; {} writes acknowledged in all, {} while it waited; it resumed {:.1} s after space returned",
        acked.len(),
        acked.len() - i,
        (Instant::now() - (deadline - Duration::from_secs(30))).as_secs_f64()
    );
    // Every acknowledged write is there.
    for key in &acked {
        let reply = cluster.call_leader(&[1, 2, 3], &["GET", key]);
        assert_eq!(
            reply,
            Value::Bulk(Some(value.clone().into_bytes())),
            "{key}"
        );
    }
}
