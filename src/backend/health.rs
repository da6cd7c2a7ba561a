//! Active health checks: every interval, `GET <path>` to each backend of a pool over HTTP/1.1
//! (over TLS when the pool uses TLS, verified as requests are; after a PROXY protocol LOCAL
//! header when the pool sends PROXY headers); a 2xx or 3xx status within the connect timeout
//! keeps it in, anything else takes it out until a check passes again. Each worker checks on
//! its own (no shared verdicts), so a backend sees one probe per worker per interval.

use std::rc::Rc;
use std::time::Duration;

use super::addr::BackendAddr;
use super::conn;
use super::pool::Pool;
use super::proxy_out;
use crate::net::bufpool::BufPool;
use crate::util::latch::Latch;

/// Runs the checks of one pool of this worker until `retired` is set (the worker stops, or a
/// reload replaced the generation the pool belongs to). `timeout` bounds each probe.
pub async fn run(
    pool: Rc<Pool>,
    path: String,
    interval: Duration,
    retired: Rc<Latch>,
    bufs: Rc<BufPool>,
) {
    let timeout = pool.connect_timeout();
    let header = pool.proxy_protocol().map(proxy_out::local_header);
    while !retired.is_set() {
        // The pool's own addresses, borrowed: `pool` (an Rc) outlives every probe.
        for (i, addr) in pool.addrs().enumerate() {
            let header = header.as_deref().unwrap_or_default();
            let check = probe(addr, header, pool.tls_for(i), &path, &bufs);
            let result = monoio::time::timeout(timeout, check).await;
            if let Ok(Err(e)) = &result {
                tracing::debug!(pool = %pool.name(), backend = %addr, "health check: {e}");
            }
            let healthy = matches!(result, Ok(Ok(status)) if (200..400).contains(&status));
            pool.set_check(i, healthy);
        }
        monoio::select! {
            _ = retired.wait() => break,
            _ = monoio::time::sleep(interval) => {},
        }
    }
}

/// One check: the status code the backend answered with.
async fn probe(
    addr: &BackendAddr,
    header: &[u8],
    tls: Option<(&crate::tls::client::ClientTls, &str)>,
    path: &str,
    bufs: &BufPool,
) -> std::io::Result<u16> {
    let host = match (tls, addr) {
        (Some((_, name)), _) if !name.is_empty() => name.to_owned(),
        (_, BackendAddr::Tcp(a)) => a.to_string(),
        // `unix:/path` is no host name; a local backend is asked as localhost.
        (_, BackendAddr::Unix(_)) => "localhost".to_owned(),
    };
    let (mut rx, mut tx) = conn::open(addr, header, tls, bufs).await?.split();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tern-health-check\r\nConnection: close\r\n\r\n"
    );
    let (res, _) = tx.write_all(req.into_bytes(), bufs).await;
    res?;
    let mut head = Vec::new();
    let result = loop {
        if head.len() >= 1024 || head.contains(&b'\n') {
            break Ok(());
        }
        let (res, buf) = rx.read(Vec::with_capacity(512), bufs).await;
        match res {
            Ok(0) => break Ok(()),
            Ok(_) => head.extend_from_slice(&buf),
            Err(e) => break Err(e),
        }
    };
    rx.release(bufs);
    result?;
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
