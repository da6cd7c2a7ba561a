//! http mode with `--uring-recv multishot`: the request loop's TLS reader takes the client's
//! records from one armed multishot receive (records opened in place in the ring buffers,
//! records cut at a buffer's end completed in a pooled one). Pipelined requests, bodies cut
//! over many ring buffers, keep-alive pauses, a record trickled byte by byte, and an upgrade
//! with bytes already received by the ring must all come through unchanged.

mod common;

use std::io::{BufReader, Read, Write};
use std::thread;
use std::time::Duration;

use common::http::{read_response, TestBackend};
use common::*;
use rustls::version::{TLS12, TLS13};

type Client = BufReader<TlsStream>;

const ARMED: &str = "http: client records through a multishot receive";

/// tern in http mode with multishot receive and debug logs (the arm line). `None` when this
/// kernel refused the buffer ring (nothing to test then).
fn start(certs: &Certs, backend: &TestBackend) -> Option<Tern> {
    let args = tern_args(
        certs,
        backend.addr,
        &["--mode", "http", "--uring-recv", "multishot", "-v"],
    );
    let tern = Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let log = tern.log_text();
    if log.contains("recv=single (") {
        eprintln!("multishot unavailable here; skipped\n{log}");
        return None;
    }
    assert!(log.contains("recv=multishot"), "{log}");
    Some(tern)
}

/// The connection's reader armed the receive (not the single way).
fn assert_armed(tern: &Tern) {
    assert!(
        tern.wait_log(ARMED, Duration::from_secs(10)),
        "{}",
        tern.log_text()
    );
}

fn client(
    tern: &Tern,
    certs: &Certs,
    version: &'static rustls::SupportedProtocolVersion,
) -> Client {
    BufReader::new(connect(tern.addr(), &certs.client(&[version])).unwrap())
}

fn send(c: &mut Client, raw: &[u8]) {
    c.get_mut().write_all(raw).unwrap();
    c.get_mut().flush().unwrap();
}

fn sum(data: &[u8]) -> u64 {
    data.iter().map(|&b| b as u64).sum()
}

#[test]
fn pipelined_requests_come_back_in_order() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let Some(tern) = start(&certs, &b) else {
        return;
    };
    for version in [&TLS13, &TLS12] {
        let mut c = client(&tern, &certs, version);
        // 200 requests in one go (many records, several ring buffers), bodies among them.
        let mut raw = Vec::new();
        for i in 0..200usize {
            if i % 3 == 0 {
                let body = pattern(i * 37, i as u8);
                raw.extend_from_slice(
                    format!(
                        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                raw.extend_from_slice(&body);
            } else {
                raw.extend_from_slice(
                    format!("GET /n/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
                );
            }
        }
        send(&mut c, &raw);
        for i in 0..200usize {
            let r = read_response(&mut c, false).unwrap();
            assert_eq!(r.status, 200, "request {i}");
            if i % 3 == 0 {
                let body = pattern(i * 37, i as u8);
                assert_eq!(
                    r.text(),
                    format!("{} {}", body.len(), sum(&body)),
                    "request {i}"
                );
            } else {
                assert_eq!(r.body, pattern(i, 1), "request {i}");
            }
        }
    }
    assert_armed(&tern);
}

#[test]
fn a_large_chunked_upload_cut_over_many_ring_buffers() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let Some(tern) = start(&certs, &b) else {
        return;
    };
    let mut c = client(&tern, &certs, &TLS13);
    send(
        &mut c,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    // 12 MiB in odd-sized chunks written in big writes: full records straddling ring buffers.
    let data = pattern(12 << 20, 7);
    let mut wire = Vec::new();
    for (i, chunk) in data.chunks(7_001 + 13).enumerate() {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
        if wire.len() > 200_000 || i == 0 {
            send(&mut c, &wire);
            wire.clear();
        }
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    send(&mut c, &wire);
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("{} {}", data.len(), sum(&data)));
    // The connection goes on.
    send(&mut c, b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(read_response(&mut c, false).unwrap().text(), "A");
    assert_armed(&tern);
}

#[test]
fn a_keep_alive_connection_idle_between_requests() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let Some(tern) = start(&certs, &b) else {
        return;
    };
    let mut c = client(&tern, &certs, &TLS13);
    for i in 0..5 {
        send(
            &mut c,
            format!("GET /n/{} HTTP/1.1\r\nHost: localhost\r\n\r\n", 1000 + i).as_bytes(),
        );
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.body, pattern(1000 + i, 1));
        // Quiet: the armed receive waits holding no buffer, then takes the next request.
        thread::sleep(Duration::from_millis(200));
    }
    // Many idle connections at once, more than the ring has buffers (64), each then served.
    let mut idle: Vec<Client> = (0..80).map(|_| client(&tern, &certs, &TLS13)).collect();
    for c in &mut idle {
        send(c, b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(read_response(c, false).unwrap().text(), "A");
    }
    thread::sleep(Duration::from_millis(200));
    for c in &mut idle {
        send(c, b"GET /n/70000 HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(read_response(c, false).unwrap().body, pattern(70000, 1));
    }
    assert_armed(&tern);
}

#[test]
fn a_record_sent_byte_by_byte() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let Some(tern) = start(&certs, &b) else {
        return;
    };
    for version in [&TLS13, &TLS12] {
        let mut s = connect(tern.addr(), &certs.client(&[version])).unwrap();
        s.sock.set_nodelay(true).unwrap();
        // One request in one record, its bytes written one at a time (each its own ring
        // buffer, the record completed piece by piece in the pooled one), twice.
        for round in 0..2 {
            s.conn
                .writer()
                .write_all(
                    b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
                )
                .unwrap();
            let mut wire = Vec::new();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut wire).unwrap();
            }
            for byte in &wire {
                s.sock.write_all(std::slice::from_ref(byte)).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
            let mut c = BufReader::new(&mut s);
            let r = read_response(&mut c, false).unwrap();
            assert_eq!(r.text(), format!("5 {}", sum(b"hello")), "round {round}");
        }
    }
    assert_armed(&tern);
}

#[test]
fn an_upgrade_takes_the_bytes_the_ring_already_received() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let Some(tern) = start(&certs, &b) else {
        return;
    };
    let mut c = client(&tern, &certs, &TLS13);
    // The upgrade request and, before its 101 is read, more records: some may already sit in
    // ring buffers when the tunnel takes over.
    send(&mut c, b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n");
    let early: Vec<u8> = (0..8).flat_map(|i| pattern(3000, i)).collect();
    for part in early.chunks(3000) {
        send(&mut c, part);
    }
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 101);
    let mut back = vec![0u8; early.len()];
    c.read_exact(&mut back).unwrap();
    assert!(back == early, "early bytes differ");
    for i in 0..5 {
        let msg = pattern(20_000 * (i + 1), i as u8);
        send(&mut c, &msg);
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert!(back == msg);
    }
    assert_armed(&tern);
}

#[test]
fn key_updates_and_close_notify_between_requests() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let Some(tern) = start(&certs, &b) else {
        return;
    };
    let mut c = client(&tern, &certs, &TLS13);
    for i in 0..4 {
        // A KeyUpdate asking for one back: tern answers it and opens what follows with the
        // new keys, whether it came in the same ring buffer or the next.
        c.get_mut().conn.refresh_traffic_keys().unwrap();
        send(
            &mut c,
            format!("GET /n/{} HTTP/1.1\r\nHost: localhost\r\n\r\n", 100 + i).as_bytes(),
        );
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.body, pattern(100 + i, 1), "round {i}");
    }
    // close_notify after a request: answered, then the connection ends (no hang).
    send(&mut c, b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n");
    c.get_mut().conn.send_close_notify();
    c.get_mut().flush().unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().text(), "A");
    let mut rest = Vec::new();
    match c.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
    }
    assert!(rest.is_empty());
    assert_armed(&tern);
}
