//! Three `traft serve` processes on loopback, driven through RESP: the
//! leader is SIGKILLed, a new one is elected with every acknowledged write
//! readable, the killed node restarts and catches up; a leader cut off by a
//! partition is replaced and catches up once healed. And the replica port
//! refuses what is not a member of this cluster speaking valid frames.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{Cluster, Value, CLUSTER_ID};

#[test]
fn a_killed_leader_loses_no_acknowledged_write_and_comes_back() {
    let mut cluster = Cluster::start();
    let all = [1, 2, 3];
    let mut acked = Vec::new();
    for i in 0..100 {
        let (k, v) = (format!("key{i}"), format!("value{i}"));
        let reply = cluster.call_leader(&all, &["SET", &k, &v]);
        assert_eq!(reply, Value::Simple("OK".into()));
        acked.push((k, v));
    }
    assert_eq!(cluster.call_leader(&all, &["INCR", "n"]), Value::Int(1));
    let first = cluster.wait_leader(&all, Duration::from_secs(15));
    cluster.kill(first);

    let rest: Vec<usize> = (1..=3).filter(|&i| i != first).collect();
    for (k, v) in &acked {
        let got = cluster.call_leader(&rest, &["GET", k]);
        assert_eq!(got, Value::Bulk(Some(v.clone().into_bytes())), "{k}");
    }
    assert_eq!(cluster.call_leader(&rest, &["INCR", "n"]), Value::Int(2));
    for i in 100..150 {
        let (k, v) = (format!("key{i}"), format!("value{i}"));
        let reply = cluster.call_leader(&rest, &["SET", &k, &v]);
        assert_eq!(reply, Value::Simple("OK".into()));
        acked.push((k, v));
    }
    let second = cluster.wait_leader(&rest, Duration::from_secs(15));

    cluster.spawn(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let want = cluster.info(second, "committed_lsns");
        let have = cluster.info(first, "applied_lsns");
        if want.is_some() && want == have {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {first} did not catch up: {have:?} of {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It follows, and sends writers to the leader.
    let mut back = cluster.client(first).unwrap();
    match back.call(&["SET", "k", "v"]) {
        Value::Error(e) => assert!(e.starts_with("NOTLEADER"), "{e}"),
        other => panic!("a follower took a write: {other:?}"),
    }
    assert_eq!(
        cluster.call_leader(&all, &["MGET", "key0", "key149", "nope"]),
        Value::Array(vec![
            Value::Bulk(Some(b"value0".to_vec())),
            Value::Bulk(Some(b"value149".to_vec())),
            Value::Bulk(None),
        ])
    );
    // The caught-up follower saves its state: 150 keys, the counter and the
    // start-up write.
    assert_eq!(back.call(&["SAVE"]), Value::Simple("OK".into()));
    let file = cluster.data_dirs[first - 1].join("snapshot.snap");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_traft"))
        .args(["snapshot", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{stdout}");
    assert!(stdout.contains("entries: 152 "), "{stdout}");
}

#[test]
fn the_replica_port_refuses_strangers_and_bad_frames_and_keeps_serving() {
    use traft::frame::{self, Hello};
    let cluster = Cluster::start();
    let leader = cluster.wait_leader(&[1, 2, 3], Duration::from_secs(15));
    let target = if leader == 1 { 2 } else { 1 };
    let port = cluster.replica_ports[target - 1];
    let hello = |cluster_id: u64| {
        frame::encode(&Hello {
            cluster_id,
            from: leader as u64,
            to: target as u64,
        })
        .unwrap()
        .to_vec()
    };
    let valid_hello = hello(CLUSTER_ID);
    let mut flipped = valid_hello.clone();
    flipped[60] ^= 0x10; // a payload bit: the payload checksum no longer matches
    let attempts: Vec<(&str, Vec<u8>)> = vec![
        ("another cluster", hello(CLUSTER_ID + 1)),
        ("a bad checksum", flipped),
        (
            "not a frame",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4),
        ),
        ("a bad frame after a valid hello", {
            let mut b = valid_hello.clone();
            b.extend_from_slice(&[0xAB; 96]);
            b
        }),
    ];
    for (what, bytes) in attempts {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bytes).unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{what}: the node answered {n} bytes"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{what}: the connection was not closed ({e})"),
        }
    }
    // The node is alive and still part of the cluster.
    let after = cluster.call_leader(&[1, 2, 3], &["SET", "after", "ok"]);
    assert_eq!(after, Value::Simple("OK".into()));
    // (The leader may have moved since: the target serves on either way.)
    assert!(
        cluster.info(target, "role").is_some(),
        "the target still answers"
    );
    let logs = cluster.logs();
    assert!(
        logs.contains("refused a connection"),
        "refusals are logged:\n{logs}"
    );
    assert!(
        logs.contains("closing the link"),
        "bad frames are logged:\n{logs}"
    );
}

/// The leader cut off from both followers (every replica link goes through a
/// proxy the test cuts): the other two elect a leader and take writes; once
/// healed, the old leader follows and holds every write.
#[test]
fn a_partitioned_leader_is_replaced_and_catches_up_when_healed() {
    let cluster = Cluster::start_with_links();
    let old = cluster.wait_leader(&[1, 2, 3], Duration::from_secs(10));
    let others: Vec<usize> = (1..=3).filter(|&id| id != old).collect();
    cluster.isolate(old);
    let new = cluster.wait_leader(&others, Duration::from_secs(10));
    for i in 0..20 {
        let key = format!("p{i}");
        let reply = cluster.call_leader(&others, &["SET", &key, "v"]);
        assert_eq!(
            reply,
            Value::Simple("OK".into()),
            "written with {old} cut off"
        );
    }
    cluster.heal();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.info(old, "applied_lsns") != cluster.info(new, "committed_lsns") {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cluster.info(old, "leader"), Some(new.to_string()));
    assert_eq!(
        cluster.info(old, "kv_digest"),
        cluster.info(new, "kv_digest")
    );
}
