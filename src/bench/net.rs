//! The loopback floor: a small message's TCP round trip on this machine.

use super::latency_histogram;
use hdrhistogram::Histogram;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Round trips of a `bytes`-byte message to an echo thread over loopback
/// TCP, `count` times, one at a time; nanoseconds.
pub fn loopback_round_trips(bytes: usize, count: usize) -> io::Result<Histogram<u64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buf = vec![0u8; bytes];
        loop {
            if let Err(e) = stream.read_exact(&mut buf) {
                return if e.kind() == io::ErrorKind::UnexpectedEof {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            stream.write_all(&buf)?;
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = vec![7u8; bytes];
    let mut latency = latency_histogram();
    for _ in 0..count {
        let t = std::time::Instant::now();
        stream.write_all(&buf)?;
        stream.read_exact(&mut buf)?;
        latency.saturating_record(t.elapsed().as_nanos() as u64);
    }
    drop(stream);
    echo.join().expect("the echo thread ends")?;
    Ok(latency)
}
