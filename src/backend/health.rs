//! Active health checks: every interval, `GET <path>` to each backend of a pool over plain
//! HTTP/1.1; a 2xx or 3xx status within the connect timeout keeps it in, anything else takes
//! it out until a check passes again. Each worker checks on its own (no shared verdicts), so a
//! backend sees one probe per worker per interval.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::pool::Pool;
use crate::util::latch::Latch;

/// Runs the checks of one pool of this worker until `retired` is set (the worker stops, or a
/// reload replaced the generation the pool belongs to). `timeout` bounds each probe.
pub async fn run(pool: Rc<Pool>, path: String, interval: Duration, retired: Rc<Latch>) {
    let timeout = pool.connect_timeout();
    while !retired.is_set() {
        let addrs: Vec<SocketAddr> = pool.addrs().collect();
        for (i, addr) in addrs.into_iter().enumerate() {
            let healthy = matches!(
                monoio::time::timeout(timeout, probe(addr, &path)).await,
                Ok(Ok(status)) if (200..400).contains(&status)
            );
            pool.set_check(i, healthy);
        }
        monoio::select! {
            _ = retired.wait() => break,
            _ = monoio::time::sleep(interval) => {},
        }
    }
}

/// One check: the status code the backend answered with.
async fn probe(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_addr(addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tern-health-check\r\nConnection: close\r\n\r\n"
    );
    let (res, _) = s.write_all(req.into_bytes()).await;
    res?;
    let mut head = Vec::new();
    while head.len() < 1024 && !head.contains(&b'\n') {
        let (res, buf) = s.read(Vec::with_capacity(512)).await;
        if res? == 0 {
            break;
        }
        head.extend_from_slice(&buf);
    }
    status_of(&head).ok_or_else(|| std::io::Error::other("no HTTP status line"))
}

/// The status code in `HTTP/1.x NNN ...`.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let mut parts = line.split(|&b| b == b' ');
    let version = parts.next()?;
    if !version.starts_with(b"HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
