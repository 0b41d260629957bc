//! A 3-process `traft serve` cluster on loopback and a small RESP client,
//! shared by the process tests.
#![allow(dead_code)] // each test file uses part of it

pub mod proxy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CLUSTER_ID: u64 = 0xC0FFEE;

/// `n` distinct ports on loopback that nothing listens on, for nodes to bind.
///
/// They are taken below the kernel's ephemeral range. A port from that range
/// (what binding port 0 gives) is free only until the node binds it, and in
/// between any outgoing connection on the machine (the other nodes' links,
/// the clients) may take it as its source port: the node then fails to
/// start with "address already in use". Ports below the range are handed
/// out by nobody else here; each is checked free, and never given twice in
/// one test binary, whose tests run at once.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const LOWEST: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    assert!(
        ephemeral_low > LOWEST + 1_000,
        "room below the ephemeral ports"
    );
    let span = ephemeral_low - LOWEST;
    // Test binaries run one after another, but each start somewhere else.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut ports = Vec::with_capacity(n);
    for step in 0..span {
        if ports.len() == n {
            break;
        }
        let port = (LOWEST + (seed.wrapping_add(step.wrapping_mul(7_919))) % span) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        ports.push(port);
    }
    assert_eq!(ports.len(), n, "{n} free ports below {ephemeral_low}");
    ports
}

pub struct Cluster {
    pub replica_ports: Vec<u16>,
    pub client_ports: Vec<u16>,
    pub root: tempfile::TempDir,
    pub children: Vec<Option<Child>>,
    /// With `start_with_links`: node i reaches node j through `links[(i, j)]`.
    pub links: std::collections::BTreeMap<(usize, usize), proxy::Link>,
    /// Each node's data directory (default: `node-N` under `root`).
    pub data_dirs: Vec<std::path::PathBuf>,
    /// More arguments for each node's `traft serve`.
    pub extra_args: Vec<Vec<String>>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_custom(false, |_| {})
    }

    /// A cluster whose replica links all go through proxies the test can
    /// cut (`cut`, `isolate`, `heal`).
    pub fn start_with_links() -> Cluster {
        Cluster::start_custom(true, |_| {})
    }

    /// A cluster set up by `customize` (data directories, arguments) before
    /// its nodes start.
    pub fn start_custom(with_links: bool, customize: impl FnOnce(&mut Cluster)) -> Cluster {
        let ports = free_ports(6);
        let mut links = std::collections::BTreeMap::new();
        if with_links {
            for from in 1..=3 {
                for to in (1..=3).filter(|&to| to != from) {
                    links.insert((from, to), proxy::Link::start(ports[to - 1]));
                }
            }
        }
        let root = tempfile::tempdir().unwrap();
        let data_dirs = (1..=3)
            .map(|id| root.path().join(format!("node-{id}")))
            .collect();
        let mut cluster = Cluster {
            replica_ports: ports[..3].to_vec(),
            client_ports: ports[3..].to_vec(),
            root,
            children: vec![None, None, None],
            links,
            data_dirs,
            extra_args: vec![Vec::new(); 3],
        };
        customize(&mut cluster);
        for id in 1..=3 {
            cluster.spawn(id);
        }
        // Wait out the start-up elections (a first leader may be displaced by
        // a campaign that began before its first forward arrived), so that
        // the tests' writes do not end with an unknown outcome. The warm-up
        // may itself be caught by such a change; it sets a constant, so it is
        // made again until one is acknowledged.
        let deadline = Instant::now() + Duration::from_secs(15);
        let warm = loop {
            let reply = cluster.call_leader(&[1, 2, 3], &["SET", "warm", "up"]);
            match &reply {
                Value::Error(e)
                    if e.starts_with("ERR outcome unknown") && Instant::now() < deadline => {}
                _ => break reply,
            }
        };
        assert_eq!(warm, Value::Simple("OK".into()), "{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(400));
        cluster
    }

    pub fn spawn(&mut self, id: usize) {
        let list = |ports: &[u16]| {
            (1..=3)
                .map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1]))
                .collect::<Vec<_>>()
                .join(",")
        };
        // Node `id` reaches the others through its links, if there are any.
        let peers: Vec<u16> = (1..=3)
            .map(|to| match self.links.get(&(id, to)) {
                Some(link) => link.port,
                None => self.replica_ports[to - 1],
            })
            .collect();
        // Appended across restarts: a node's whole history in one file.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join(format!("log-{id}")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_traft"))
            .args(["serve", "--id", &id.to_string()])
            .args(["--peers", &list(&peers)])
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.replica_ports[id - 1]),
            ])
            .args(["--client-peers", &list(&self.client_ports)])
            .args([
                "--client-listen",
                &format!("127.0.0.1:{}", self.client_ports[id - 1]),
            ])
            .arg("--data-dir")
            .arg(&self.data_dirs[id - 1])
            .args(&self.extra_args[id - 1])
            .args(["--cluster-id", &CLUSTER_ID.to_string()])
            .args(["--t-min-ms", "150", "--heartbeat-ms", "15"])
            // TRAFT_TEST_BACKEND=file runs the WAL on pwrite instead of io_uring.
            .args([
                "--backend",
                &std::env::var("TRAFT_TEST_BACKEND").unwrap_or_else(|_| "uring".into()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn traft serve");
        self.children[id - 1] = Some(child);
    }

    /// The process id of node `id`, if running.
    pub fn pid(&self, id: usize) -> Option<u32> {
        self.children[id - 1].as_ref().map(|c| c.id())
    }

    pub fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.children[id - 1].take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    pub fn client(&self, id: usize) -> Option<Resp> {
        Resp::connect(self.client_ports[id - 1])
    }

    pub fn info(&self, id: usize, field: &str) -> Option<String> {
        let text = match self.client(id)?.call(&["INFO"]) {
            Value::Bulk(Some(b)) => String::from_utf8(b).ok()?,
            _ => return None,
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
    }

    pub fn wait_leader(&self, among: &[usize], timeout: Duration) -> usize {
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
    pub fn call_leader(&self, among: &[usize], args: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leader = self.wait_leader(among, Duration::from_secs(15));
            let reply = match self.client(leader) {
                Some(mut c) => c
                    .try_call(args)
                    .unwrap_or_else(|e| panic!("{args:?} to node {leader}: {e}; {}", self.logs())),
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

    /// The last lines of each node's log, without backtrace frames (with
    /// `RUST_BACKTRACE` set they would crowd out the error above them).
    pub fn logs(&self) -> String {
        const LINES: usize = 80;
        let root: &Path = self.root.path();
        let frame = |line: &&str| {
            let line = line.trim_start();
            // `12: tokio::runtime::…` and `at /path:line`, not an error's
            // numbered causes (`1: No space left on device`).
            line.starts_with("at ")
                || line
                    .split_once(": ")
                    .is_some_and(|(n, f)| n.parse::<u32>().is_ok() && f.contains("::"))
        };
        (1..=3)
            .map(|id| {
                let log =
                    std::fs::read_to_string(root.join(format!("log-{id}"))).unwrap_or_default();
                let lines: Vec<&str> = log.lines().filter(|l| !frame(l)).collect();
                let from = lines.len().saturating_sub(LINES);
                format!(
                    "node {id} (last {} of {} lines):\n{}",
                    lines.len() - from,
                    lines.len(),
                    lines[from..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// Where each node's log is kept.
    pub fn log_path(&self, id: usize) -> std::path::PathBuf {
        self.root.path().join(format!("log-{id}"))
    }
}

impl Cluster {
    /// Cuts the link from node `from` to node `to` (one direction).
    pub fn cut(&self, from: usize, to: usize) {
        self.links[&(from, to)].cut();
    }

    /// Cuts every link to and from node `id`.
    pub fn isolate(&self, id: usize) {
        for (&(from, to), link) in &self.links {
            if from == id || to == id {
                link.cut();
            }
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.links.values().for_each(proxy::Link::heal);
    }

    /// Every thread's stack of each running node, through gdb when it is
    /// installed: what a stalled node is blocked on.
    pub fn stacks(&self) -> String {
        (1..=3)
            .filter_map(|id| self.pid(id).map(|pid| (id, pid)))
            .map(|(id, pid)| {
                let out = std::process::Command::new("gdb")
                    .args([
                        "-p",
                        &pid.to_string(),
                        "-batch",
                        "-ex",
                        "thread apply all bt",
                    ])
                    .output();
                let text = match out {
                    Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
                    Err(e) => format!("(no gdb: {e})"),
                };
                let threads = std::process::Command::new("ps")
                    .args(["-L", "-o", "tid,comm,time,pcpu", "-p", &pid.to_string()])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                format!("node {id} (pid {pid}):\n{threads}\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
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
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
}

pub struct Resp {
    reader: BufReader<TcpStream>,
}

impl Resp {
    pub fn connect(port: u16) -> Option<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        Some(Resp {
            reader: BufReader::new(stream),
        })
    }

    pub fn call(&mut self, args: &[&str]) -> Value {
        self.try_call(args).expect("a RESP reply")
    }

    /// `call`, with I/O errors (a timeout, a reset) returned.
    pub fn try_call(&mut self, args: &[&str]) -> std::io::Result<Value> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.try_read()
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        let _ = self.reader.get_mut().set_read_timeout(Some(timeout));
    }

    pub fn read(&mut self) -> Value {
        self.try_read().expect("a RESP reply")
    }

    pub fn try_read(&mut self) -> std::io::Result<Value> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Err(bad("empty line"));
        }
        let (tag, rest) = line.split_at(1);
        let number = |s: &str| s.parse::<i64>().map_err(|_| bad("bad number"));
        Ok(match tag {
            "+" => Value::Simple(rest.into()),
            "-" => Value::Error(rest.into()),
            ":" => Value::Int(number(rest)?),
            "$" => {
                let n = number(rest)?;
                if n < 0 {
                    return Ok(Value::Bulk(None));
                }
                let mut b = vec![0; n as usize + 2];
                self.reader.read_exact(&mut b)?;
                b.truncate(n as usize);
                Value::Bulk(Some(b))
            }
            "*" => {
                let n = number(rest)?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.try_read()?);
                }
                Value::Array(items)
            }
            _ => return Err(bad("bad RESP tag")),
        })
    }
}
