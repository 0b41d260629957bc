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

/// Mounts a 16 MiB tmpfs on `dir`; `None` (and says why) where it cannot.
fn mount_small(dir: &Path) -> Option<Mount> {
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(dir)
        .output();
    match mounted {
        Ok(out) if out.status.success() => Some(Mount(dir.to_path_buf())),
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("skipped: cannot run mount: {e}");
            None
        }
    }
}

/// Waits until node `id` has space again, has applied all `leader`
/// committed and holds the same data; returns the seconds it took.
fn wait_caught_up(cluster: &Cluster, id: usize, leader: usize) -> f64 {
    let lsns = |id, field| -> u64 { cluster.info(id, field).unwrap().parse().unwrap() };
    let started = Instant::now();
    loop {
        let caught_up = cluster.info(id, "wal_waiting_for_space").as_deref() == Some("0")
            && lsns(id, "applied_lsns") == lsns(leader, "committed_lsns")
            && cluster.info(id, "kv_digest") == cluster.info(leader, "kv_digest");
        if caught_up {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "node {id} did not resume: {}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sets `key` through the leader: true once acknowledged, false if its
/// outcome is unknown (the leadership that took it ended: a leader whose
/// disk filled went silent and was replaced); any other reply fails.
fn set(cluster: &Cluster, key: &str, value: &str) -> bool {
    match cluster.call_leader(&[1, 2, 3], &["SET", key, value]) {
        Value::Simple(ok) if ok == "OK" => true,
        Value::Error(e) if e.contains("outcome unknown") => false,
        other => panic!("{key}: {other:?}: {}", cluster.logs()),
    }
}

/// Every key of `acked` reads `value`.
fn all_there(cluster: &Cluster, acked: &[String], value: &str) {
    for key in acked {
        let reply = cluster.call_leader(&[1, 2, 3], &["GET", key]);
        assert_eq!(reply, Value::Bulk(Some(value.as_bytes().to_vec())), "{key}");
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
    let Some(_mount) = mount_small(&small) else {
        return;
    };
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
        if set(&cluster, &key, &value) {
            acked.push(key);
        }
        i += 1;
    }
    let log = std::fs::read_to_string(cluster.root.path().join("log-3")).unwrap();
    assert!(
        log.contains("no space for WAL segment"),
        "a clear error: {log}"
    );
    // The cluster keeps taking writes; node 3 acknowledges none of them
    // (and if it led, another replica leads now).
    let before = acked.len();
    for j in 0..100 {
        let key = format!("more{j}");
        if set(&cluster, &key, &value) {
            acked.push(key);
        }
    }
    assert!(acked.len() - before >= 90, "{}", cluster.logs());
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
    let resumed = wait_caught_up(&cluster, 3, leader);
    let log = std::fs::read_to_string(cluster.root.path().join("log-3")).unwrap();
    assert!(log.contains("WAL space is back"), "{log}");
    eprintln!(
        "disk full: node 3 ran out of space after {i} writes of 16 KiB; {} writes acknowledged in all, {} while it waited; it resumed {resumed:.1} s after space returned",
        acked.len(),
        acked.len() - i,
    );
    all_there(&cluster, &acked, &value);
}

/// The leader's disk fills: it cannot make anything durable, so it goes
/// silent; the other two elect a leader and the cluster keeps writing. When
/// space returns the old leader catches up; nothing acknowledged is lost.
#[test]
fn a_leader_on_a_full_disk_goes_silent_and_another_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut mounts = Vec::new();
    for id in 1..=3 {
        let small = dir.path().join(format!("small-{id}"));
        std::fs::create_dir(&small).unwrap();
        let Some(mount) = mount_small(&small) else {
            return;
        };
        mounts.push(mount);
    }
    let cluster = Cluster::start_custom(false, |c| {
        for id in 1..=3 {
            c.data_dirs[id - 1] = dir.path().join(format!("small-{id}/node-{id}"));
        }
        for args in &mut c.extra_args {
            args.extend(["--segment-kib".to_string(), "1024".to_string()]);
        }
    });
    let full = cluster.wait_leader(&[1, 2, 3], Duration::from_secs(10));
    let filler = dir.path().join(format!("small-{full}/filler"));
    fill(&filler);

    // Writes go on until the leader's WAL needs a segment it has no space
    // for, and on after that, through a new leader. The writes in flight
    // when it went silent may end "outcome unknown": not acknowledged.
    let value = "v".repeat(16 << 10);
    let mut acked = Vec::new();
    let mut after = 0;
    let mut i = 0;
    while after < 50 {
        assert!(
            i < 3000,
            "the cluster stopped taking writes: {}",
            cluster.logs()
        );
        let key = format!("k{i}");
        i += 1;
        if set(&cluster, &key, &value) {
            acked.push(key);
        }
        if cluster.info(full, "wal_waiting_for_space").as_deref() == Some("1") {
            after += 1;
        }
    }
    let leader = cluster.wait_leader(&[1, 2, 3], Duration::from_secs(10));
    assert_ne!(leader, full, "a replica that can write leads");
    let log = std::fs::read_to_string(cluster.root.path().join(format!("log-{full}"))).unwrap();
    assert!(log.contains("no WAL space: silent"), "{log}");

    std::fs::remove_file(&filler).unwrap();
    let resumed = wait_caught_up(&cluster, full, leader);
    eprintln!(
        "disk full at the leader: node {full} led when its disk filled; node {leader} took over; {} writes acknowledged; node {full} caught up {resumed:.1} s after space returned",
        acked.len()
    );
    all_there(&cluster, &acked, &value);
}
