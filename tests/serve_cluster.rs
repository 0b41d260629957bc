//! Three `traft serve` processes on loopback, driven through RESP: the
//! leader is SIGKILLed, a new one is elected with every acknowledged write
//! readable, the killed node restarts and catches up. And the replica port
//! refuses what is not a member of this cluster speaking valid frames.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLUSTER_ID: u64 = 0xC0FFEE;

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Cluster {
    replica_ports: Vec<u16>,
    client_ports: Vec<u16>,
    root: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn start() -> Cluster {
        let ports = free_ports(6);
        let mut cluster = Cluster {
            replica_ports: ports[..3].to_vec(),
            client_ports: ports[3..].to_vec(),
            root: tempfile::tempdir().unwrap(),
            children: vec![None, None, None],
        };
        for id in 1..=3 {
            cluster.spawn(id);
        }
        // Wait out the start-up elections (a first leader may be displaced by
        // a campaign that began before its first forward arrived), so that
        // the tests' writes do not end with an unknown outcome.
        let warm = cluster.call_leader(&[1, 2, 3], &["SET", "warm", "up"]);
        assert_eq!(warm, Value::Simple("OK".into()), "{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(400));
        cluster
    }

    fn spawn(&mut self, id: usize) {
        let list = |ports: &[u16]| {
            (1..=3)
                .map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1]))
                .collect::<Vec<_>>()
                .join(",")
        };
        let log = std::fs::File::create(self.root.path().join(format!("log-{id}"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_traft"))
            .args(["serve", "--id", &id.to_string()])
            .args(["--peers", &list(&self.replica_ports)])
            .args(["--client-peers", &list(&self.client_ports)])
            .args([
                "--client-listen",
                &format!("127.0.0.1:{}", self.client_ports[id - 1]),
            ])
            .arg("--data-dir")
            .arg(self.root.path().join(format!("node-{id}")))
            .args(["--cluster-id", &CLUSTER_ID.to_string()])
            .args(["--t-min-ms", "150", "--heartbeat-ms", "15"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn traft serve");
        self.children[id - 1] = Some(child);
    }

    fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.children[id - 1].take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn client(&self, id: usize) -> Option<Resp> {
        Resp::connect(self.client_ports[id - 1])
    }

    fn info(&self, id: usize, field: &str) -> Option<String> {
        let text = match self.client(id)?.call(&["INFO"]) {
            Value::Bulk(Some(b)) => String::from_utf8(b).ok()?,
            _ => return None,
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
    }

    fn wait_leader(&self, among: &[usize], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for &id in among {
                if self.info(id, "role").as_deref() == Some("leader") {
                    return id;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no leader among {among:?} within {timeout:?}; logs in {}",
            self.logs()
        );
    }

    /// Sends `args` to the leader among `among`, again after a refusal
    /// that guarantees the command was not taken (an election settling).
    fn call_leader(&self, among: &[usize], args: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leader = self.wait_leader(among, Duration::from_secs(15));
            let reply = match self.client(leader) {
                Some(mut c) => c.call(args),
                None => Value::Error("TRYAGAIN cannot connect".into()),
            };
            match &reply {
                Value::Error(e)
                    if (e.starts_with("NOTLEADER") || e.starts_with("TRYAGAIN"))
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return reply,
            }
        }
    }

    fn logs(&self) -> String {
        let root: &Path = self.root.path();
        (1..=3)
            .map(|id| std::fs::read_to_string(root.join(format!("log-{id}"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=3 {
            self.kill(id);
        }
    }
}

#[derive(Debug, PartialEq)]
enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
}

struct Resp {
    reader: BufReader<TcpStream>,
}

impl Resp {
    fn connect(port: u16) -> Option<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        Some(Resp {
            reader: BufReader::new(stream),
        })
    }

    fn call(&mut self, args: &[&str]) -> Value {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.reader.get_mut().write_all(req.as_bytes()).unwrap();
        self.read()
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        let (tag, rest) = line.split_at(1);
        match tag {
            "+" => Value::Simple(rest.into()),
            "-" => Value::Error(rest.into()),
            ":" => Value::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Value::Bulk(None);
                }
                let mut b = vec![0; n as usize + 2];
                self.reader.read_exact(&mut b).unwrap();
                b.truncate(n as usize);
                Value::Bulk(Some(b))
            }
            "*" => Value::Array(
                (0..rest.parse::<usize>().unwrap())
                    .map(|_| self.read())
                    .collect(),
            ),
            other => panic!("bad RESP tag {other:?}"),
        }
    }
}

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
