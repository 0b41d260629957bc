//! Faults on real processes: three `traft serve` processes; clients doing
//! SET, GET and INCR through RESP while a nemesis SIGKILLs and restarts
//! nodes, SIGSTOPs and SIGCONTs them, and cuts replica links (every link
//! goes through a proxy the test controls). Afterwards the recorded history
//! must be linearizable (every acknowledged write present, no stale or
//! invented read), and every replica must hold the same state. Meanwhile
//! replicas are asked to `SAVE` snapshots, so that killed nodes restart from
//! them (and some are killed while writing one), and with 1 MiB WAL segments
//! each snapshot lets them delete segments below it.
//!
//! `TRAFT_NEMESIS_SECS` sets the seconds of faults (default 60),
//! `TRAFT_NEMESIS_SEED` the fault schedule (default fixed). On a stall the
//! failure prints each node's INFO, log and thread stacks (through gdb when
//! installed); `TRAFT_NEMESIS_HOLD=SECS` first leaves the stalled cluster up
//! that long, to be examined with redis-cli.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Cluster, Resp, Value};
use traft::core::Rng;
use traft::linearizability::{self, KvOp, Operation};

/// Clients, each with one request in flight.
const CLIENTS: u64 = 4;
/// A request unanswered this long has an unknown outcome.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

struct Tally {
    history: Vec<Operation>,
    ok: u64,
    unknown: u64,
    refused: u64,
    ok_after_faults: u64,
}

fn nanos(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

/// The node a redirect names: "NOTLEADER the leader is node 2, ...".
fn redirect(e: &str) -> Option<usize> {
    let rest = e.split("node ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Asks a random replica to `SAVE` a snapshot every 100–500 ms until
/// `end`; returns how many did.
fn saver(ports: Vec<u16>, end: Instant) -> u64 {
    let mut rng = Rng::new(0x5A7E);
    let mut saved = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100 + rng.next_u64() % 400));
        let port = ports[(rng.next_u64() % 3) as usize];
        let Some(mut conn) = Resp::connect(port) else {
            continue; // killed or restarting
        };
        conn.set_timeout(CLIENT_TIMEOUT);
        if let Ok(Value::Simple(ok)) = conn.try_call(&["SAVE"]) {
            assert_eq!(ok, "OK");
            saved += 1;
        }
    }
    saved
}

fn client(
    id: u64,
    ports: Vec<u16>,
    start: Instant,
    faults_end: Instant,
    end: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut rng = Rng::new(0xC11E ^ id);
    let mut target = (id as usize % 3) + 1;
    let mut conn: Option<Resp> = None;
    let mut n = 0u64;
    while Instant::now() < end {
        if conn.is_none() {
            conn = Resp::connect(ports[target - 1]);
            match &mut conn {
                Some(c) => c.set_timeout(CLIENT_TIMEOUT),
                None => {
                    target = target % 3 + 1;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        n += 1;
        let (key, args, op) = match rng.next_u64() % 5 {
            0 | 1 => {
                let key = format!("s{}", rng.next_u64() % 3);
                let value = format!("c{id}-{n}");
                let op = KvOp::Set {
                    value: value.clone().into_bytes(),
                };
                (key.clone(), vec!["SET".to_string(), key, value], op)
            }
            2 => {
                let key = format!("n{}", rng.next_u64() % 2);
                (
                    key.clone(),
                    vec!["INCR".to_string(), key],
                    KvOp::Incr { result: 0 },
                )
            }
            _ => {
                let key = if rng.next_u64() % 2 == 0 {
                    format!("s{}", rng.next_u64() % 3)
                } else {
                    format!("n{}", rng.next_u64() % 2)
                };
                (
                    key.clone(),
                    vec!["GET".to_string(), key],
                    KvOp::Get { result: None },
                )
            }
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let invoked = nanos(start);
        let reply = conn.as_mut().expect("connected").try_call(&args);
        let completed = nanos(start);
        let mut record = Operation {
            client: id,
            key: key.into_bytes(),
            op,
            invoked,
            completed: Some(completed),
        };
        let mut t = tally.lock().unwrap();
        match reply {
            Ok(Value::Error(e)) if e.starts_with("NOTLEADER") || e.starts_with("TRYAGAIN") => {
                // Refused before it entered the log: it never happens.
                t.refused += 1;
                drop(t);
                target = redirect(&e).unwrap_or(target % 3 + 1);
                conn = None;
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Ok(Value::Error(_)) | Err(_) => {
                // A timeout, a reset, or "outcome unknown": it may have
                // happened. Reads without an answer constrain nothing.
                record.completed = None;
                t.unknown += 1;
                if !matches!(record.op, KvOp::Get { .. }) {
                    t.history.push(record);
                }
                drop(t);
                conn = None;
                target = target % 3 + 1;
                continue;
            }
            Ok(value) => {
                let fits = match (&mut record.op, value) {
                    (KvOp::Set { .. }, Value::Simple(s)) => s == "OK",
                    (KvOp::Incr { result }, Value::Int(i)) => {
                        *result = i;
                        true
                    }
                    (KvOp::Get { result }, Value::Bulk(b)) => {
                        *result = b;
                        true
                    }
                    _ => false,
                };
                assert!(fits, "reply of the wrong shape for {record:?}");
                t.ok += 1;
                if Instant::now() > faults_end {
                    t.ok_after_faults += 1;
                }
                t.history.push(record);
            }
        }
    }
}

/// Each node's `INFO` figures, logs and thread stacks; first, with
/// `TRAFT_NEMESIS_HOLD=SECS`, leaves the stalled cluster up that long.
fn stall_report(cluster: &Cluster) -> String {
    if let Some(secs) = std::env::var("TRAFT_NEMESIS_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!(
            "stalled; holding {secs} s: client ports {:?}, pids {:?}, logs {:?}",
            cluster.client_ports,
            (1..=3).map(|id| cluster.pid(id)).collect::<Vec<_>>(),
            (1..=3).map(|id| cluster.log_path(id)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(secs));
    }
    let fields = [
        "role",
        "leader",
        "term",
        "committed_lsns",
        "applied_lsns",
        "messages_sent",
        "messages_received",
        "messages_dropped",
        "proposals",
        "messages_received_by_kind",
        "messages_queued_by_kind",
        "core_status",
    ];
    let infos: Vec<String> = (1..=3)
        .map(|id| {
            let values: Vec<String> = fields
                .iter()
                .map(|f| format!("{f}={:?}", cluster.info(id, f)))
                .collect();
            format!("node {id}: {}", values.join(" "))
        })
        .collect();
    format!(
        "{}\nlogs:\n{}\nstacks:\n{}",
        infos.join("\n"),
        cluster.logs(),
        cluster.stacks()
    )
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process id this test spawned and has not
    // reaped; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

#[test]
fn history_stays_linearizable_while_nodes_die_and_pause() {
    let secs: u64 = std::env::var("TRAFT_NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Small segments, so that snapshots let the nodes delete some while
    // they are killed and restarted.
    let mut cluster = Cluster::start_custom(true, |c| {
        for args in &mut c.extra_args {
            args.extend(["--segment-kib".to_string(), "1024".to_string()]);
        }
    });
    let start = Instant::now();
    let faults_end = start + Duration::from_secs(secs);
    let end = faults_end + Duration::from_secs(5);
    let tally = Arc::new(Mutex::new(Tally {
        history: Vec::new(),
        ok: 0,
        unknown: 0,
        refused: 0,
        ok_after_faults: 0,
    }));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (ports, tally) = (cluster.client_ports.clone(), tally.clone());
            std::thread::spawn(move || client(id, ports, start, faults_end, end, tally))
        })
        .collect();
    let ports = cluster.client_ports.clone();
    let saves = std::thread::spawn(move || saver(ports, end));

    // The nemesis: one fault at a time: a node killed and restarted, a node
    // paused, or a partition.
    let seed = std::env::var("TRAFT_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4E4E);
    let mut rng = Rng::new(seed);
    let (mut kills, mut pauses, mut partitions) = (0, 0, 0);
    let mut last_report = Instant::now();
    loop {
        let wait = Duration::from_millis(300 + rng.next_u64() % 1200);
        let victim = (rng.next_u64() % 3) as usize + 1;
        let down = Duration::from_millis(200 + rng.next_u64() % 1300);
        if Instant::now() + wait + down > faults_end {
            break; // every fault heals before the quiet period
        }
        std::thread::sleep(wait);
        if last_report.elapsed() >= Duration::from_secs(60) {
            // Long runs say how they go, so a slow decline shows when it began.
            last_report = Instant::now();
            let t = tally.lock().unwrap();
            let terms: Vec<_> = (1..=3).map(|id| cluster.info(id, "term")).collect();
            eprintln!(
                "nemesis at {:.0} s: {kills} kills, {pauses} pauses, {partitions} partitions; {} acknowledged, {} unknown, {} refused; terms {terms:?}",
                start.elapsed().as_secs_f64(),
                t.ok,
                t.unknown,
                t.refused
            );
        }
        match rng.next_u64() % 3 {
            0 => {
                cluster.kill(victim);
                std::thread::sleep(down);
                cluster.spawn(victim);
                kills += 1;
            }
            1 => {
                if let Some(pid) = cluster.pid(victim) {
                    signal(pid, libc::SIGSTOP);
                    std::thread::sleep(down);
                    signal(pid, libc::SIGCONT);
                    pauses += 1;
                }
            }
            _ => {
                // The victim cut off from both others, or one link cut one
                // way (the victim hears the others but cannot reach one).
                if rng.next_u64() % 2 == 0 {
                    cluster.isolate(victim);
                } else {
                    let other = victim % 3 + 1;
                    cluster.cut(victim, other);
                }
                std::thread::sleep(down);
                cluster.heal();
                partitions += 1;
            }
        }
    }
    for c in clients {
        c.join().unwrap();
    }
    let saves = saves.join().unwrap();

    // Read every key once more, after everything, into the history.
    let mut tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    for key in ["s0", "s1", "s2", "n0", "n1"] {
        let invoked = nanos(start);
        let value = cluster.call_leader(&[1, 2, 3], &["GET", key]);
        let Value::Bulk(result) = value else {
            panic!("final GET {key}: {value:?}\n{}", stall_report(&cluster));
        };
        tally.history.push(Operation {
            client: 99,
            key: key.as_bytes().to_vec(),
            op: KvOp::Get { result },
            invoked,
            completed: Some(nanos(start)),
        });
    }
    // Every replica applies everything and holds the same state.
    let leader = cluster.wait_leader(&[1, 2, 3], Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = cluster.info(leader, "committed_lsns");
        let applied: Vec<_> = (1..=3).map(|id| cluster.info(id, "applied_lsns")).collect();
        let digests: Vec<_> = (1..=3).map(|id| cluster.info(id, "kv_digest")).collect();
        if want.is_some()
            && applied.iter().all(|a| *a == want)
            && digests.iter().all(|d| d.is_some() && *d == digests[0])
        {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "replicas did not converge: committed {want:?}, applied {applied:?}, digests {digests:?}\n{}",
                stall_report(&cluster)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let converged = Instant::now();
    let checked = linearizability::check(&tally.history);
    let logged = |what: &str| -> usize {
        (1..=3)
            .map(|id| {
                let log = std::fs::read_to_string(cluster.log_path(id)).unwrap_or_default();
                log.matches(what).count()
            })
            .sum()
    };
    let restored = logged("restored from its snapshot");
    let purges = logged("WAL segments below LSN");
    eprintln!(
        "nemesis: seed {seed}, {secs} s of faults, {kills} kills, {pauses} pauses, {partitions} partitions, {saves} snapshots saved; restarts from a snapshot {restored}; WAL purges {purges}; {} operations acknowledged, {} of unknown outcome, {} refused; {} acknowledged in the 5 s after faults stopped; converged {:.1} s after the clients stopped; linearizability ({:.1} s): {checked:?}",
        tally.ok, tally.unknown, tally.refused, tally.ok_after_faults,
        converged.duration_since(end).as_secs_f64(),
        converged.elapsed().as_secs_f64(),
    );
    let checked = checked.unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", cluster.logs()));
    assert!(checked > 100, "only {checked} operations checked");
    assert!(saves > 10, "only {saves} snapshots saved");
    assert!(purges > 0, "{saves} snapshots saved, no WAL segment purged");
    assert!(
        kills < 4 || restored > 0,
        "{kills} kills, no restart from a snapshot"
    );
    assert!(
        tally.ok_after_faults > 0,
        "nothing succeeded once faults stopped"
    );
}
