//! Crash tests on real processes: `traft wal append-loop` appends and prints
//! each batch once it is durable; this test SIGKILLs it at random moments,
//! starts it again (it recovers first), and after every kill checks that
//! every acknowledged frame is present and intact and that recovery returns
//! nothing `append-loop` never wrote (and no frame twice). The runs take
//! four forms in turn, all on one directory: one thread appending straight
//! into the `pwrite` backend; the same with zero-filled files kept ready on a
//! second thread, so that kills land while a segment is being adopted ahead
//! of use; and the group commit on the default backend (io_uring where it
//! runs) as a replica appends, with one appender (its writes go alone on
//! the writer thread) and with four (writes in flight together).
//! `TRAFT_WAL_KILLS` sets the number of kills (default 50).
//!
//! SIGKILL leaves the page cache intact: this shows recovery after process
//! death, not durability across power loss (`wal_power_loss.rs` does that).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use traft::core::Rng;

const TRAFT: &str = env!("CARGO_BIN_EXE_traft");

#[test]
fn every_acknowledged_append_survives_sigkill() {
    let kills: u64 = std::env::var("TRAFT_WAL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    let wal = dir.path().join("wal");
    let mut rng = Rng::new(0x5eed_c4a5);
    let mut acked_through = 0u64;
    for kill in 0..kills {
        let mut command = Command::new(TRAFT);
        command
            .args(["wal", "append-loop"])
            .arg(&wal)
            .args(["--segment-size", "16384"]);
        match kill % 4 {
            0 => {}
            1 => {
                command.arg("--prepared-ahead");
            }
            2 => {
                command.args(["--appenders", "1"]);
            }
            _ => {
                command.args(["--appenders", "4"]);
            }
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start append-loop");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let ["ok", first, count] = fields[..] {
                    let first: u64 = first.parse().expect("seq");
                    let count: u64 = count.parse().expect("count");
                    last = first + count - 1;
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(5 + rng.next_u64() % 60));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        acked_through = acked_through.max(reader.join().expect("reader"));
        let verify = Command::new(TRAFT)
            .args(["wal", "verify"])
            .arg(&wal)
            .args(["--acked-through", &acked_through.to_string()])
            .output()
            .expect("run verify");
        assert!(
            verify.status.success(),
            "after kill {kill}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    assert!(
        acked_through > kills,
        "the writer made progress between kills"
    );
}
