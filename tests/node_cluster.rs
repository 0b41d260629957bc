//! Three replicas on loopback in one process, on real disks: elections,
//! replication, leader loss, catch-up after restart, parallel apply.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use traft::apply::{KvCommand, KvReply, KvStore, StateMachine};
use traft::core::Params;
use traft::node::{LocalCluster, NodeConfig, NodeError};
use traft::NodeId;

const MS: u64 = 1_000_000;

fn fast(config: &mut NodeConfig) {
    let t_min = 150 * MS;
    config.params = Params {
        heartbeat: 15 * MS,
        t_min,
        retransmit: 20 * MS,
        drift_allowance: 2 * t_min * 10_000 / 1_000_000 + 10 * MS,
        transfer_timeout: 2 * t_min,
        ..Params::default()
    };
    config.store.segment_size = 4 << 20;
}

fn set(key: &str, value: &str) -> Vec<u8> {
    KvCommand::Set {
        key: key.into(),
        value: value.into(),
    }
    .encode()
}

fn get(key: &str) -> Vec<u8> {
    KvCommand::Get { key: key.into() }.encode()
}

/// Proposes (or reads, for a read-only command) at whichever node leads,
/// again after a refusal, until `timeout`.
fn propose(cluster: &LocalCluster, cmd: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, NodeError> {
    let deadline = Instant::now() + timeout;
    loop {
        let leader = cluster.wait_leader(deadline.saturating_duration_since(Instant::now()));
        let Some(leader) = leader else {
            return Err(NodeError::NotLeader { leader: None });
        };
        let node = cluster.node(leader).unwrap();
        let result = if KvCommand::decode(&cmd).is_ok_and(|c| c.read_only()) {
            node.read_blocking(cmd.clone())
        } else {
            node.propose_blocking(cmd.clone())
        };
        match result {
            Err(NodeError::NotLeader { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

/// Waits out the start-up elections (a leader may be displaced by a
/// campaign that started before its first forward arrived), so that a write
/// the test makes is not left with an unknown outcome by a leader change.
/// The warm-up write may itself be caught by such a change (its leadership
/// ends before it commits: `OutcomeUnknown`); it sets a constant, so it is
/// simply made again until one is acknowledged.
fn settle(cluster: &LocalCluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let warm = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match propose(cluster, set("warm", "up"), left) {
            Err(NodeError::OutcomeUnknown) if Instant::now() < deadline => continue,
            other => break other,
        }
    };
    assert!(warm.is_ok(), "{warm:?}");
    std::thread::sleep(Duration::from_millis(400));
}

fn wait_converged(cluster: &LocalCluster, ids: &[NodeId], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let first = cluster.store(ids[0]).dump();
        if ids.iter().all(|&id| cluster.store(id).dump() == first) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A batch of records is encoded once: the leader's WAL and its followers
/// get the same frame, and a follower appends the frame it received.
#[test]
fn record_batches_are_encoded_once_and_appended_as_received() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(3, dir.path(), fast).unwrap();
    settle(&cluster);
    for i in 0..100 {
        propose(
            &cluster,
            set(&format!("k{i}"), "v"),
            Duration::from_secs(10),
        )
        .unwrap();
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).unwrap();
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(10)
    ));
    let m = cluster.node(leader).unwrap().metrics();
    eprintln!(
        "leader: {} encoded, {} reused",
        m.batches_encoded, m.batches_reused
    );
    assert!(
        m.batches_reused >= m.batches_encoded,
        "each batch the leader encoded went to its WAL and its followers: {m:?}"
    );
    for id in (1..=3).filter(|&id| id != leader) {
        let f = cluster.node(id).unwrap().metrics();
        eprintln!(
            "node {id}: {} from the wire, {} encoded",
            f.batches_from_wire, f.batches_encoded
        );
        assert!(
            f.batches_from_wire >= 100 && f.batches_from_wire > 10 * f.batches_encoded,
            "node {id} appended the frames it received: {f:?}"
        );
    }
    cluster.shutdown().unwrap();
}

#[test]
fn acknowledged_writes_survive_the_leader_and_a_restarted_node_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(3, dir.path(), fast).unwrap();
    settle(&cluster);
    let mut acked = BTreeMap::from([("warm".to_string(), "up".to_string())]);
    for i in 0..200 {
        let (k, v) = (format!("k{}", i % 50), format!("v{i}"));
        let reply = propose(&cluster, set(&k, &v), Duration::from_secs(10)).unwrap();
        assert_eq!(KvReply::decode(&reply).unwrap(), KvReply::Ok);
        acked.insert(k, v);
    }
    let first = cluster
        .wait_leader(Duration::from_secs(10))
        .expect("a leader");
    cluster.stop(first).unwrap();
    let second = cluster
        .wait_leader(Duration::from_secs(10))
        .expect("a new leader");
    assert_ne!(first, second);
    for (k, v) in &acked {
        let reply = propose(&cluster, get(k), Duration::from_secs(10)).unwrap();
        let reply = KvReply::decode(&reply).unwrap();
        assert_eq!(
            reply,
            KvReply::Value(Some(v.clone().into_bytes())),
            "key {k}"
        );
    }
    for i in 0..100 {
        let (k, v) = (format!("k{}", i % 70), format!("w{i}"));
        propose(&cluster, set(&k, &v), Duration::from_secs(10)).unwrap();
        acked.insert(k, v);
    }
    cluster.restart(first).unwrap();
    assert!(
        wait_converged(&cluster, &[1, 2, 3], Duration::from_secs(20)),
        "the restarted node caught up"
    );
    let expected: Vec<(Vec<u8>, Vec<u8>)> = acked
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect();
    assert_eq!(cluster.store(first).dump(), expected);
    cluster.shutdown().unwrap();
}

/// Three settled replicas, each applying on a pool of three threads.
fn with_apply_pool(dir: &std::path::Path) -> LocalCluster {
    let cluster = LocalCluster::start(3, dir, |c| {
        fast(c);
        c.apply_workers = 3;
    })
    .unwrap();
    settle(&cluster);
    cluster
}

#[test]
fn parallel_apply_gives_what_serial_apply_in_lsn_order_gives() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = with_apply_pool(dir.path());
    // Interfering commands from concurrent clients: counters and overwrites
    // on a few shared keys, multi-key writes across them.
    let results: Vec<Vec<(String, KvReply)>> = std::thread::scope(|s| {
        let cluster = &cluster;
        (0..8)
            .map(|t| {
                s.spawn(move || {
                    (0..150)
                        .map(|i| {
                            let mut key = format!("c{}", (t + i) % 5);
                            if i % 3 == 2 {
                                key = format!("d{}", i % 2);
                            }
                            let cmd = match i % 3 {
                                1 => KvCommand::MSet {
                                    pairs: vec![
                                        (format!("m{}", i % 4).into(), format!("{t}-{i}").into()),
                                        (format!("m{}", (i + 1) % 4).into(), b"x".to_vec()),
                                    ],
                                },
                                _ => KvCommand::Incr {
                                    key: key.clone().into(),
                                },
                            };
                            // At whichever node leads, retried only when refused.
                            let reply =
                                propose(cluster, cmd.encode(), Duration::from_secs(10)).unwrap();
                            (key, KvReply::decode(&reply).unwrap())
                        })
                        .collect()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.iter().map(|r| r.len()).sum::<usize>(), 8 * 150);
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(10)
    ));
    let live = cluster.store(1).dump();
    cluster.shutdown().unwrap();
    // Serial apply of each replica's recovered log, in LSN order.
    for id in 1..=3u64 {
        let options = NodeConfig::new(id, BTreeMap::new(), dir.path()).store;
        let (store, durable) =
            traft::wal::open_store(&dir.path().join(format!("node-{id}")), &options).unwrap();
        drop(store);
        let serial = KvStore::default();
        let replica = traft::core::Replica::new(
            id,
            traft::core::Config::uniform(1..=3).unwrap(),
            Params::default(),
            traft::sim::kv::KvConflicts,
            durable,
            0,
            1,
        );
        for record in replica.log().values() {
            if !record.cmd.is_empty() {
                serial.apply(&record.cmd);
            }
        }
        assert_eq!(
            serial.dump(),
            live,
            "replica {id}: parallel apply differs from serial"
        );
    }
    // Every counter went up by one per INCR, each value handed out once.
    let mut incr_values: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (key, reply) in results.into_iter().flatten() {
        if let KvReply::Int(n) = reply {
            incr_values.entry(key).or_default().push(n);
        }
    }
    assert!(!incr_values.is_empty());
    let final_state: BTreeMap<Vec<u8>, Vec<u8>> = live.into_iter().collect();
    for (key, values) in &mut incr_values {
        values.sort();
        let expected: Vec<i64> = (1..=values.len() as i64).collect();
        assert_eq!(values, &expected, "INCR results on {key}");
        let stored = &final_state[key.as_bytes()];
        assert_eq!(stored, values.len().to_string().as_bytes(), "{key}");
    }
}

/// Snapshot cuts on every replica while clients write pairs of keys through
/// a parallel apply pool: each file validates, holds the applied set it was
/// cut at, and never half of a two-key write; once writes stop, a cut holds
/// exactly the replica's store.
#[test]
fn snapshots_are_consistent_cuts_of_a_busy_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = with_apply_pool(dir.path());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let cuts = std::thread::scope(|s| {
        for c in 0..4 {
            let (cluster, stop) = (&cluster, &stop);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let v = n.to_string().into_bytes();
                    let cmd = KvCommand::MSet {
                        pairs: vec![
                            (format!("a{c}").into(), v.clone()),
                            (format!("b{c}").into(), v),
                        ],
                    };
                    let _ = propose(cluster, cmd.encode(), Duration::from_secs(10));
                }
            });
        }
        let mut cuts = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            for id in 1..=3 {
                let taken = cluster.node(id).unwrap().snapshot_blocking().unwrap();
                let file = traft::snapshot::Snapshot::open(&taken.path).unwrap();
                assert_eq!(file.meta().applied, taken.applied);
                for c in 0..4 {
                    let a = file.get(format!("a{c}").as_bytes());
                    let b = file.get(format!("b{c}").as_bytes());
                    assert_eq!(a, b, "node {id}: a{c} and b{c} from one write");
                }
                cuts += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        cuts
    });
    assert!(cuts >= 15, "{cuts} cuts");
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(10)
    ));
    for id in 1..=3 {
        let taken = cluster.node(id).unwrap().snapshot_blocking().unwrap();
        let file = traft::snapshot::Snapshot::open(&taken.path).unwrap();
        let held: Vec<(Vec<u8>, Vec<u8>)> =
            file.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(held, cluster.store(id).dump(), "node {id}");
    }
    cluster.shutdown().unwrap();
}

/// A restarted replica's state machine starts from its snapshot and applies
/// only what came after; a damaged snapshot is set aside and the log applied
/// from the start. Either way it ends with the others' state.
#[test]
fn a_restart_starts_from_the_snapshot_or_from_the_log_if_it_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(3, dir.path(), fast).unwrap();
    settle(&cluster);
    // SETs of distinct keys, and one counter: applied twice, it would show.
    let write = |cluster: &LocalCluster, range: std::ops::Range<u32>, tag: &str| {
        for i in range {
            let cmd = set(&format!("k{i}"), &format!("{tag}{i}"));
            propose(cluster, cmd, Duration::from_secs(10)).unwrap();
            let incr = KvCommand::Incr { key: b"n".to_vec() }.encode();
            propose(cluster, incr, Duration::from_secs(10)).unwrap();
        }
    };
    write(&cluster, 0..200, "a");
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(10)
    ));
    let leader = cluster.wait_leader(Duration::from_secs(10)).unwrap();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let taken = cluster.node(follower).unwrap().snapshot_blocking().unwrap();
    assert!(taken.applied.count() > 400, "{:?}", taken.applied);
    write(&cluster, 150..300, "b");
    cluster.stop(follower).unwrap();
    cluster.restart(follower).unwrap();
    assert_eq!(
        cluster.node(follower).unwrap().restored_from(),
        Some(&taken.applied),
        "the state machine started from the snapshot"
    );
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(20)
    ));
    assert_eq!(cluster.store(follower).get(b"n"), Some(b"350".to_vec()));

    // A flipped byte: the snapshot is refused, the log applied again.
    let mut bytes = std::fs::read(&taken.path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    cluster.stop(follower).unwrap();
    std::fs::write(&taken.path, bytes).unwrap();
    cluster.restart(follower).unwrap();
    assert_eq!(cluster.node(follower).unwrap().restored_from(), None);
    write(&cluster, 300..320, "c");
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(20)
    ));
    let dump = cluster.store(follower).dump();
    assert_eq!(dump.len(), 322, "k0..k319, the counter and the warm-up key");
    assert_eq!(cluster.store(follower).get(b"n"), Some(b"370".to_vec()));
    cluster.shutdown().unwrap();
}

/// With `snapshot_every`, every replica cuts snapshots on its own as it
/// applies, and a restart starts from the last.
#[test]
fn replicas_cut_snapshots_on_their_own_every_n_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(3, dir.path(), |c| {
        fast(c);
        c.snapshot_every = 50;
    })
    .unwrap();
    settle(&cluster);
    for i in 0..120 {
        propose(
            &cluster,
            set(&format!("k{i}"), "v"),
            Duration::from_secs(10),
        )
        .unwrap();
    }
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(10)
    ));
    for id in 1..=3 {
        let path = dir
            .path()
            .join(format!("node-{id}"))
            .join(traft::node::SNAPSHOT_FILE);
        let file = traft::snapshot::Snapshot::open(&path).unwrap();
        assert!(
            file.meta().applied.count() >= 100,
            "node {id}: {:?}",
            file.meta().applied
        );
    }
    cluster.stop(2).unwrap();
    cluster.restart(2).unwrap();
    assert!(cluster.node(2).unwrap().restored_from().is_some());
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(20)
    ));
    cluster.shutdown().unwrap();
}

/// Once every replica holds a stretch of the log durably as committed, each
/// replica's snapshot lets it delete the WAL segments below it. A restart
/// then starts from the snapshot and what the WAL kept; without the
/// snapshot, the node refuses to start rather than forget committed writes.
#[test]
fn snapshots_purge_the_wal_and_a_restart_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(3, dir.path(), |c| {
        fast(c);
        c.store.segment_size = 64 << 10;
        c.snapshot_every = 200;
    })
    .unwrap();
    settle(&cluster);
    let value = "v".repeat(100);
    let write = |cluster: &LocalCluster, range: std::ops::Range<u32>| {
        for i in range {
            propose(
                cluster,
                set(&format!("k{i}"), &value),
                Duration::from_secs(10),
            )
            .unwrap();
            let incr = KvCommand::Incr { key: b"n".to_vec() }.encode();
            propose(cluster, incr, Duration::from_secs(10)).unwrap();
        }
    };
    write(&cluster, 0..500);
    let deadline = Instant::now() + Duration::from_secs(20);
    let purged = |id| cluster.node(id).unwrap().metrics().wal_segments_purged;
    while (1..=3).any(|id| purged(id) == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in 1..=3 {
        assert!(purged(id) > 0, "node {id} purged no WAL segment");
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).unwrap();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    cluster.restart(follower).unwrap();
    assert!(cluster.node(follower).unwrap().restored_from().is_some());
    write(&cluster, 500..520);
    assert!(wait_converged(
        &cluster,
        &[1, 2, 3],
        Duration::from_secs(20)
    ));
    assert_eq!(cluster.store(follower).get(b"n"), Some(b"520".to_vec()));

    cluster.stop(follower).unwrap();
    let snapshot = dir
        .path()
        .join(format!("node-{follower}"))
        .join(traft::node::SNAPSHOT_FILE);
    std::fs::remove_file(&snapshot).unwrap();
    let refused = cluster.restart(follower).unwrap_err().to_string();
    assert!(refused.contains("refusing to start"), "{refused}");
    cluster.shutdown().unwrap();
}
