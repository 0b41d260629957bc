//! A TCP proxy for one directed replica link, which the test cuts and
//! heals: while cut, it closes every connection through it and refuses new
//! ones, as a partition looks to the node (resets and failed connects).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Link {
    /// Where the sending node connects.
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Both ends of every connection through the link.
    open: Arc<Mutex<Vec<Arc<TcpStream>>>>,
}

impl Link {
    /// A link to the replica port `target`, healed.
    pub fn start(target: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<Arc<TcpStream>>>> = Arc::default();
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (a, b) = (Arc::new(inbound), Arc::new(outbound));
                {
                    let mut open = open2.lock().unwrap();
                    open.retain(|s| Arc::strong_count(s) > 1); // threads gone
                    open.push(a.clone());
                    open.push(b.clone());
                }
                pipe(a.clone(), b.clone());
                pipe(b, a);
            }
        });
        Link { port, cut, open }
    }

    /// Closes every connection through the link, and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either side ends; then closes both.
fn pipe(from: Arc<TcpStream>, to: Arc<TcpStream>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match (&*from).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if (&*to).write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
