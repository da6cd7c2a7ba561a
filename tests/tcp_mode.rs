//! End-to-end tests of tcp mode: the real binary, real sockets on 127.0.0.1 port 0, a rustls
//! client, blocking backends in the test. Every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use rustls::version::{TLS12, TLS13};

fn echo_lockstep(s: &mut TlsStream, total: usize, seed: u8) {
    let data = pattern(total, seed);
    let mut back = vec![0u8; 64 * 1024];
    for chunk in data.chunks(64 * 1024) {
        s.write_all(chunk).unwrap();
        s.flush().unwrap();
        s.read_exact(&mut back[..chunk.len()]).unwrap();
        assert!(back[..chunk.len()] == *chunk, "echo differs");
    }
}

#[test]
fn tls13_round_trip_of_several_mib() {
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &[]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    assert_eq!(
        s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    echo_lockstep(&mut s, 4 << 20, 1);
}

#[test]
fn tls12_round_trip_of_several_mib() {
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &[]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS12])).unwrap();
    assert_eq!(
        s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    echo_lockstep(&mut s, 4 << 20, 2);
}

#[test]
fn rsa_and_ed25519_keys_serve_and_pem_file_works() {
    for alg in [&rcgen::PKCS_RSA_SHA256, &rcgen::PKCS_ED25519] {
        let certs = Certs::with_alg(alg);
        let tern = start_tern(&certs, echo_backend(), &[]);
        let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
        echo_lockstep(&mut s, 100_000, 3);
    }
    let certs = Certs::new();
    let backend = echo_backend().to_string();
    let pem = certs.pem.display().to_string();
    let tern = Tern::start(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--pem",
        &pem,
        "--workers",
        "1",
    ]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    echo_lockstep(&mut s, 100_000, 4);
}

#[test]
fn download_until_the_backend_closes() {
    let certs = Certs::new();
    let body = pattern(8 << 20, 9);
    let sent = body.clone();
    let backend = backend(move |mut s| {
        let _ = s.write_all(&sent);
    });
    let tern = start_tern(&certs, backend, &[]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    let got = read_to_end(&mut s).unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got == body);
}

#[test]
fn half_close_still_delivers_the_backends_reply() {
    let certs = Certs::new();
    // The backend reads until the client's half-close arrives as EOF, then answers.
    let backend = backend(|mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let sum: u64 = got.iter().map(|&b| b as u64).sum();
        let _ = write!(s, "got {} bytes, sum {sum}", got.len());
    });
    let tern = start_tern(&certs, backend, &[]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    let data = pattern(3 << 20, 5);
    s.write_all(&data).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    s.sock.shutdown(Shutdown::Write).unwrap();
    let reply = String::from_utf8(read_to_end(&mut s).unwrap()).unwrap();
    let sum: u64 = data.iter().map(|&b| b as u64).sum();
    assert_eq!(reply, format!("got {} bytes, sum {sum}", data.len()));
}

#[test]
fn backend_half_close_still_takes_the_clients_upload() {
    let certs = Certs::new();
    let (tx, rx) = std::sync::mpsc::channel();
    // The backend says its piece and shuts its write side, then keeps reading to EOF.
    let backend = backend(move |mut s| {
        s.write_all(b"ready").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = tx.send(s.read_to_end(&mut got).map(|_| got));
    });
    let tern = start_tern(&certs, backend, &[]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    // The backend's FIN arrives as close_notify: a clean end of the reading side.
    assert_eq!(read_to_end(&mut s).unwrap(), b"ready");
    let data = pattern(2 << 20, 6);
    s.write_all(&data).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    s.sock.shutdown(Shutdown::Write).unwrap();
    let got = rx.recv_timeout(WAIT).expect("backend saw no EOF");
    let got = got.expect("backend read failed");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "upload differs");
}

#[test]
fn tls_1_1_is_refused_by_an_independent_client() {
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &[]);
    let s_client = |version: &str| {
        let mut child = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &tern.addr().to_string(), version])
            .args(["-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("openssl s_client (apt install openssl)");
        drop(child.stdin.take());
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "openssl s_client hung");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    };
    let ok = s_client("-tls1_2");
    assert!(
        ok.contains("New, TLSv1.2, Cipher is"),
        "TLS 1.2 should work:\n{ok}"
    );
    let refused = s_client("-tls1_1");
    // The server answered the TLS 1.1 hello with an alert, and no session came up.
    assert!(
        refused.contains("SSL alert number")
            && refused.contains("no peer certificate available")
            && refused.contains("New, (NONE), Cipher is (NONE)"),
        "TLS 1.1 must be refused by the server with an alert:\n{refused}"
    );
}

#[test]
fn garbage_and_plain_http_are_closed_while_tern_keeps_serving() {
    let certs = Certs::new();
    let mut tern = start_tern(&certs, echo_backend(), &[]);
    let read_all = |s: &mut TcpStream| {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out); // EOF or reset both count as closed
        out
    };
    // Random bytes where a ClientHello should be.
    let mut s = TcpStream::connect(tern.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&pattern(3000, 77)).unwrap();
    let start = Instant::now();
    read_all(&mut s);
    assert!(start.elapsed() < WAIT, "garbage connection was not closed");
    // A plaintext HTTP request gets a plain 400 and a close.
    let mut s = TcpStream::connect(tern.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let reply = String::from_utf8_lossy(&read_all(&mut s)).to_string();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    // A truncated handshake.
    let mut s = TcpStream::connect(tern.addr()).unwrap();
    s.write_all(b"\x16\x03\x01\x00\xff\x01\x00").unwrap();
    drop(s);
    // Meanwhile tern serves as before.
    let mut ok = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    echo_lockstep(&mut ok, 200_000, 6);
    assert!(tern.is_running());
}

#[test]
fn dead_backend_closes_the_client_promptly_and_the_worker_lives() {
    let certs = Certs::new();
    let mut tern = start_tern(&certs, dead_addr(), &["--connect-timeout", "60s", "-v"]);
    for _ in 0..3 {
        let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
        // A refused connect must not wait for the 60 s connect timeout: the close comes well
        // before this read timeout, which would otherwise surface as WouldBlock/TimedOut.
        s.sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert_closed(s.read(&mut buf));
    }
    assert!(tern.is_running());
    assert!(
        tern.wait_log("no backend reachable", WAIT),
        "{}",
        tern.log_text()
    );
    // The worker still completes handshakes.
    connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
}

#[test]
fn the_next_backend_is_tried_when_one_refuses() {
    let certs = Certs::new();
    let dead = dead_addr().to_string();
    let tern = start_tern(&certs, echo_backend(), &["--backend", &dead]);
    for i in 0..4 {
        let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
        echo_lockstep(&mut s, 10_000, i);
    }
}

#[test]
fn max_conns_is_enforced() {
    let certs = Certs::new();
    let mut tern = start_tern(&certs, echo_backend(), &["--max-conns", "2"]);
    let cfg = certs.client(&[&TLS13]);
    let mut a = connect(tern.addr(), &cfg).unwrap();
    let mut b = connect(tern.addr(), &cfg).unwrap();
    echo_lockstep(&mut a, 1000, 1);
    echo_lockstep(&mut b, 1000, 2);
    // The third is closed at once, not left waiting: refused before (or right at) the
    // handshake, well inside this short read timeout.
    let third = TcpStream::connect(tern.addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut third = rustls::StreamOwned::new(conn, third);
    let r = third.read(&mut [0u8; 8]);
    assert!(
        !matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a third connection must be closed at once, got {r:?}"
    );
    assert!(
        r.is_err(),
        "a third connection must not complete a handshake"
    );
    drop(a);
    // Once a slot is free (the close travels through tern), new connections are served again.
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        if let Ok(c) = connect(tern.addr(), &cfg) {
            break c;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    };
    echo_lockstep(&mut c, 1000, 3);
    drop((b, c));
    // The refusal was counted (and any made while the slot was being freed): the totals
    // logged at exit say so.
    tern.signal(libc::SIGTERM);
    assert!(tern.wait_exit(WAIT).is_some(), "tern did not stop");
    assert!(tern.wait_log(" stopped ", WAIT), "{}", tern.log_text());
    let log = tern.log_text();
    let refused: u64 = log
        .split("refused_at_limit=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no refused_at_limit total:\n{log}"));
    assert!(refused >= 1, "{log}");
}

#[test]
fn handshake_timeout_closes_a_silent_client() {
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &["--handshake-timeout", "500ms"]);
    let mut s = TcpStream::connect(tern.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let start = Instant::now();
    let r = s.read(&mut [0u8; 8]);
    assert!(
        matches!(r, Ok(0) | Err(_)) && start.elapsed() < WAIT,
        "{r:?}"
    );
    assert!(matches!(r, Ok(0)) || r.as_ref().unwrap_err().kind() != std::io::ErrorKind::WouldBlock);
}

#[test]
fn idle_timeout_closes_both_sides() {
    let certs = Certs::new();
    let (tx, rx) = std::sync::mpsc::channel();
    // A backend that never closes by itself: only tern's idle timeout can end its read.
    let backend = backend(move |mut s| {
        let mut buf = [0u8; 1024];
        let r = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
                Err(e) => break Err(e.kind()),
            }
        };
        let _ = tx.send(r);
    });
    let tern = start_tern(&certs, backend, &["--idle-timeout", "500ms"]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    echo_lockstep(&mut s, 1000, 1);
    s.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_closed(s.read(&mut buf));
    // The backend side was closed too (its read ended, not timed out).
    let seen = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend connection was left open");
    assert!(
        !matches!(
            seen,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "{seen:?}"
    );
}

/// The read ended because tern closed the connection (EOF, close_notify or reset), not
/// because the socket's read timeout ran out.
fn assert_closed(r: std::io::Result<usize>) {
    match r {
        Ok(0) => {}
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "not closed by tern: {e}"
        ),
        Ok(n) => panic!("unexpected {n} bytes"),
    }
}

#[test]
fn falls_back_to_the_epoll_driver_and_says_so() {
    let certs = Certs::new();
    let args = tern_args(&certs, echo_backend(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tern = Tern::start_with(&args, &[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
    let log = tern.log_text();
    assert!(log.contains("falling back to the epoll driver"), "{log}");
    assert!(log.contains("driver=Legacy"), "{log}");
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    echo_lockstep(&mut s, 1 << 20, 8);
}

#[test]
fn workers_start_pinned_on_io_uring_and_all_serve() {
    let certs = Certs::new();
    let mut args = tern_args(&certs, echo_backend(), &[]);
    let at = args.iter().position(|a| a == "--workers").unwrap();
    args[at + 1] = "2".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tern = Tern::start(&args);
    let log = tern.log_text();
    for w in 0..2 {
        assert!(
            log.contains(&format!("worker started worker={w} cpu=")),
            "{log}"
        );
    }
    assert!(
        log.contains("driver=IoUring"),
        "this machine has io_uring:\n{log}"
    );
    let cfg = certs.client(&[&TLS13]);
    let mut conns: Vec<_> = (0..16)
        .map(|_| connect(tern.addr(), &cfg).unwrap())
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        echo_lockstep(c, 20_000, i as u8);
    }
}

#[test]
fn a_backend_reset_reaches_the_client_as_a_reset() {
    let certs = Certs::new();
    let backend = backend(|mut s| {
        let mut buf = [0u8; 5];
        let _ = s.read_exact(&mut buf);
        reset_on_close(&s);
    });
    let tern = start_tern(&certs, backend, &["-v"]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    s.write_all(b"hello").unwrap();
    s.flush().unwrap();
    // A reset, not a clean close_notify: rustls reports the TCP reset as an error.
    let mut buf = [0u8; 8];
    let r = s.read(&mut buf);
    let e = r.expect_err("the backend's reset must not look like a clean close");
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset,
        "{e}\n{}",
        tern.log_text()
    );
}

#[test]
fn alpn_is_offered_when_asked() {
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &["--alpn", "h2,http/1.1"]);
    let mut cfg = (*certs.client(&[&TLS13])).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let s = connect(tern.addr(), &std::sync::Arc::new(cfg)).unwrap();
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Without --alpn, nothing is negotiated.
    let tern = start_tern(&certs, echo_backend(), &[]);
    let mut cfg = (*certs.client(&[&TLS13])).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let s = connect(tern.addr(), &std::sync::Arc::new(cfg)).unwrap();
    assert_eq!(s.conn.alpn_protocol(), None);
}

#[test]
fn a_client_reset_reaches_the_backend_as_a_reset() {
    let certs = Certs::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let backend = backend(move |mut s| {
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        let _ = tx.send(s.read(&mut buf).map_err(|e| e.kind()));
    });
    let tern = start_tern(&certs, backend, &[]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    s.write_all(b"hello").unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100)); // let "hello" reach the backend first
    reset_on_close(&s.sock);
    drop(s);
    let seen = rx.recv_timeout(WAIT).expect("backend saw nothing");
    assert_eq!(seen, Err(std::io::ErrorKind::ConnectionReset));
}

fn handshake_kinds(
    tern: &Tern,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
    n: usize,
) -> Vec<rustls::HandshakeKind> {
    (0..n)
        .map(|i| {
            let mut s = connect(tern.addr(), cfg).unwrap();
            // A round trip makes the client read the tickets sent after the handshake.
            echo_lockstep(&mut s, 100, i as u8);
            s.conn.handshake_kind().unwrap()
        })
        .collect()
}

#[test]
fn sessions_resume_on_any_worker() {
    use rustls::HandshakeKind::{Full, Resumed};
    let certs = Certs::new();
    let mut args = tern_args(&certs, echo_backend(), &[]);
    let at = args.iter().position(|a| a == "--workers").unwrap();
    args[at + 1] = "2".into();
    let tern = Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for version in [&TLS13, &TLS12] {
        // One client config = one client session cache, as a browser has.
        let cfg = certs.client(&[version]);
        let kinds = handshake_kinds(&tern, &cfg, 12);
        assert_eq!(kinds[0], Full);
        // With two workers, connections land on both; every one after the first resumes,
        // whichever worker issued the ticket.
        assert!(
            kinds[1..].iter().all(|k| *k == Resumed),
            "{version:?}: {kinds:?}"
        );
    }
}

#[test]
fn tickets_off_means_full_handshakes() {
    use rustls::HandshakeKind::Full;
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &["--tickets", "off"]);
    for version in [&TLS13, &TLS12] {
        let kinds = handshake_kinds(&tern, &certs.client(&[version]), 4);
        assert!(kinds.iter().all(|k| *k == Full), "{kinds:?}");
    }
}

/// A client whose record does not decrypt gets `bad_record_mac` and then a clean close, even
/// with more of its bytes still unread by tern: without a lingering close, tern's close would
/// answer those bytes with a reset, and a reset that overtakes the alert makes the client
/// lose it (it sees "connection reset" and never learns why).
#[test]
fn a_bad_record_gets_its_alert_despite_unread_bytes() {
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &[]);
    let cfg = certs.client(&[&TLS13]);
    for attempt in 0..10 {
        let mut s = connect(tern.addr(), &cfg).unwrap();
        echo_lockstep(&mut s, 1000, 3);
        // An application-data record of garbage, then more bytes over the next 100 ms, as an
        // uploading client goes on sending after tern gave up on it: a closed socket would
        // answer those with a reset, and the client's next write would fail before it read.
        let mut bytes = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        bytes.extend(pattern(0x40, 9));
        s.sock.write_all(&bytes).unwrap();
        for chunk in 0..10 {
            std::thread::sleep(Duration::from_millis(10));
            if let Err(e) = s.sock.write_all(&pattern(4096, chunk)) {
                panic!("attempt {attempt}: reset while the client sent chunk {chunk}: {e}");
            }
        }
        let mut buf = [0u8; 100];
        let err = s
            .read(&mut buf)
            .expect_err("tern answered a bad record with data");
        let alert = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .cloned();
        assert_eq!(
            alert,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::BadRecordMac
            )),
            "attempt {attempt}: {err}"
        );
    }
}
