//! Backend selection for tcp mode: round-robin per worker, trying the next backend when one
//! refuses or times out, each attempt bounded by the connect timeout.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::stats::WorkerStats;

pub struct Backends {
    addrs: Arc<[SocketAddr]>,
    next: Cell<usize>,
    connect_timeout: Duration,
}

impl Backends {
    /// `first` staggers the round-robin start per worker so that N workers with fresh state
    /// do not all send their first connection to the same backend.
    pub fn new(addrs: Arc<[SocketAddr]>, connect_timeout: Duration, first: usize) -> Self {
        let start = if addrs.is_empty() {
            0
        } else {
            first % addrs.len()
        };
        Backends {
            addrs,
            next: Cell::new(start),
            connect_timeout,
        }
    }

    /// The order in which the next connection tries the backends.
    fn order(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let n = self.addrs.len();
        let start = self.next.get();
        self.next.set(if n == 0 { 0 } else { (start + 1) % n });
        (0..n).map(move |i| self.addrs[(start + i) % n])
    }

    /// Connects to the next backend in turn, falling through to the others on failure.
    pub async fn connect(&self, stats: &WorkerStats) -> io::Result<(TcpStream, SocketAddr)> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no backend configured");
        for addr in self.order() {
            match monoio::time::timeout(self.connect_timeout, TcpStream::connect_addr(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, addr)),
                Ok(Err(e)) => {
                    tracing::debug!(backend = %addr, "backend connect failed: {e}");
                    last = io::Error::new(e.kind(), format!("{addr}: {e}"));
                }
                Err(_) => {
                    tracing::debug!(backend = %addr, "backend connect timed out");
                    last = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{addr}: connect timed out"),
                    );
                }
            }
            stats.backend_connect_failures.inc();
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_starts_at_the_next_backend_each_time() {
        let addrs: Arc<[SocketAddr]> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let b = Backends::new(addrs, Duration::from_secs(1), 1);
        let ports = |b: &Backends| b.order().map(|a| a.port()).collect::<Vec<_>>();
        assert_eq!(ports(&b), vec![2, 3, 1]);
        assert_eq!(ports(&b), vec![3, 1, 2]);
        assert_eq!(ports(&b), vec![1, 2, 3]);
    }
}
