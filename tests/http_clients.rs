//! http mode against clients that misbehave or are slow: error answers that must arrive even
//! while the client is still sending (lingering close), a body trickled too slowly
//! (`--body-timeout`), a client that never reads its responses, and deep pipelining.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::http::{read_response, TestBackend};
use common::*;
use rustls::version::TLS13;

fn start(certs: &Certs, backend: SocketAddr, extra: &[&str]) -> Tern {
    let mut args = tern_args(certs, backend, &["--mode", "http"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `raw` (ignoring write errors: tern may stop reading once it has answered) and reads
/// the status tern answers with.
fn status_after_sending(tern: &Tern, certs: &Certs, raw: &[u8]) -> Result<u16, String> {
    let s = connect(tern.addr(), &certs.client(&[&TLS13])).map_err(|e| e.to_string())?;
    let mut c = BufReader::new(s);
    let _ = c.get_mut().write_all(raw);
    let _ = c.get_mut().flush();
    read_response(&mut c, false)
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

/// Without a lingering close, an answer sent while request bytes are still unread is lost to
/// the reset the kernel sends on close — about half the time for a 70 KB head.
#[test]
fn error_answers_arrive_while_the_client_is_still_sending() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, b.addr, &["--max-body-bytes", "64KiB"]);
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "h".repeat(70_000)
    );
    let mut upload =
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 600000\r\n\r\n".to_vec();
    upload.extend(std::iter::repeat_n(b'u', 600_000));
    for round in 0..50 {
        assert_eq!(
            status_after_sending(&tern, &certs, big_head.as_bytes()),
            Ok(431),
            "oversized head, round {round}"
        );
        assert_eq!(
            status_after_sending(&tern, &certs, &upload),
            Ok(413),
            "upload over the limit, round {round}"
        );
    }
    assert!(b.requests().is_empty(), "{:?}", b.requests());
}

#[test]
fn a_body_trickled_too_slowly_gets_408() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, b.addr, &["--body-timeout", "300ms"]);
    let mut c = BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    c.get_mut()
        .write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nfirst")
        .unwrap();
    c.get_mut().flush().unwrap();
    // ... and then nothing more.
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 408);
    // Bytes that keep coming in time are fine, however long the upload takes.
    let mut c = BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    c.get_mut()
        .write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n")
        .unwrap();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        c.get_mut().write_all(b"x").unwrap();
        c.get_mut().flush().unwrap();
    }
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
}

#[test]
fn a_client_that_never_reads_holds_the_backend_back() {
    const TOTAL: usize = 512 << 20;
    let certs = Certs::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let backend = backend(move |mut s| {
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head);
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n");
        let chunk = vec![7u8; 1 << 20];
        let mut sent = 0;
        while sent < TOTAL && s.write_all(&chunk).is_ok() {
            sent += chunk.len();
            let _ = tx.send(sent);
        }
    });
    let tern = start(&certs, backend, &[]);
    let mut c = BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    let before = rss_kib(tern.pid());
    c.get_mut()
        .write_all(b"GET /huge HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    c.get_mut().flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = rx.try_iter().last().unwrap_or(0);
    let grown = rss_kib(tern.pid()).saturating_sub(before);
    assert!(
        sent < 64 << 20,
        "backend pushed {sent} bytes at a client that reads nothing"
    );
    assert!(
        grown < 16 * 1024,
        "tern grew by {grown} KiB while its client did not read"
    );
    // Once the client reads, the body flows.
    let r = read_response_head_only(&mut c);
    assert_eq!(r, 200);
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < 64 << 20 {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {got} bytes");
        assert!(buf[..n].iter().all(|&b| b == 7));
        got += n;
    }
}

/// Reads a response head (not its body) and returns the status.
fn read_response_head_only(c: &mut BufReader<TlsStream>) -> u16 {
    use std::io::BufRead;
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    loop {
        let mut l = String::new();
        c.read_line(&mut l).unwrap();
        if l == "\r\n" {
            return status;
        }
    }
}

/// A client that pipelines thousands of requests before reading any answer: tern takes in
/// one buffer of them at a time (it reads no further while a whole head waits to be answered),
/// its memory stays flat, and every response comes back, in order.
#[test]
fn deep_pipelining_is_bounded_and_answered_in_order() {
    const N: usize = 5000;
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, b.addr, &[]);
    let mut c = BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    let before = rss_kib(tern.pid());
    let mut all = Vec::new();
    for i in 0..N {
        all.extend_from_slice(
            format!("GET /echo/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        );
    }
    // ~250 KB of requests and ~1 MB of answers fit in loopback's socket buffers, so the
    // writes complete without reading; a hang would end in the socket timeout, not here.
    c.get_mut().write_all(&all).unwrap();
    c.get_mut().flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_kib(tern.pid()).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "tern grew by {grown} KiB holding {N} pipelined requests"
    );
    for i in 0..N {
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.status, 200, "response {i}");
        assert!(
            r.text().contains(&format!("/echo/{i} ")),
            "response {i} out of order: {}",
            r.text()
        );
    }
}
