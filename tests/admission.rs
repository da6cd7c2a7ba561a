//! Handshake admission (`--max-handshakes`) end to end: a flood of full handshakes never has
//! more than the bound in flight and never starves established connections; a resumption
//! gets in while full handshakes wait.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::scrape::{metrics_addr, scrape, sum};
use common::*;
use rustls::client::Resumption;
use rustls::version::TLS13;

/// A connection that sends a full ClientHello and then nothing: once admitted, it holds its
/// slot until tern's handshake timeout (or until it is dropped).
fn staller(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> TcpStream {
    let mut c =
        rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.write_all(&hello).unwrap();
    s
}

fn no_tickets(certs: &Certs) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*certs.client(&[&TLS13])).clone();
    cfg.resumption = Resumption::disabled();
    Arc::new(cfg)
}

/// Scrapes until `name` (summed) satisfies `done`; panics after `WAIT`.
fn until(metrics: SocketAddr, name: &str, done: impl Fn(u64) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(metrics);
        if done(sum(&text, name, &[])) {
            return text;
        }
        assert!(Instant::now() < deadline, "{name} never got there:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_flood_of_full_handshakes_stays_within_the_bound_and_starves_nobody() {
    const BOUND: u64 = 4;
    let certs = Certs::new();
    let backend = echo_backend();
    let bound = BOUND.to_string();
    let tern = start_tern(
        &certs,
        backend,
        &[
            "--max-handshakes",
            &bound,
            "--tickets",
            "off",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let (addr, metrics) = (tern.addr(), metrics_addr(&tern));
    let cfg = no_tickets(&certs);

    // Established before the flood.
    let established: Vec<TlsStream> = (0..4).map(|_| connect(addr, &cfg).unwrap()).collect();
    // Slots held until dropped, so the flood certainly finds the bound reached.
    let stallers: Vec<TcpStream> = (0..BOUND).map(|_| staller(addr, &cfg)).collect();
    until(metrics, "tern_tls_handshakes_in_flight", |n| n == BOUND);

    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..24)
        .map(|_| {
            let (stop, done, failed, cfg) =
                (stop.clone(), done.clone(), failed.clone(), cfg.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match connect(addr, &cfg) {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let requests: Vec<_> = established
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let msg = pattern(64, i as u8);
                let mut back = vec![0u8; 64];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Every request must complete: the socket's timeout (WAIT) is the only limit.
                    s.write_all(&msg)
                        .unwrap_or_else(|e| panic!("conn {i}, request {n}: {e}"));
                    s.read_exact(&mut back)
                        .unwrap_or_else(|e| panic!("conn {i}, request {n}: {e}"));
                    assert_eq!(back, msg);
                    n += 1;
                }
                n
            })
        })
        .collect();

    // The flood waits for slots (and the accept loop for room) ...
    until(metrics, "tern_tls_handshakes_waiting", |n| n > 0);
    // ... and runs at full speed once they free.
    drop(stallers);
    std::thread::sleep(Duration::from_secs(3));
    let deadline = Instant::now() + WAIT;
    while done.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "no flood handshake ever completed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
    for (i, t) in requests.into_iter().enumerate() {
        let n = t
            .join()
            .unwrap_or_else(|_| panic!("keep-alive connection {i} failed"));
        assert!(n > 0, "connection {i} sent nothing");
    }

    let text = until(metrics, "tern_tls_handshakes_in_flight", |n| n == 0);
    let max = sum(&text, "tern_tls_handshakes_in_flight_max", &[]);
    assert!(
        max <= BOUND,
        "{max} handshakes in flight at once, over --max-handshakes {BOUND}"
    );
    assert_eq!(max, BOUND, "the stallers alone held {BOUND}");
    assert!(
        sum(
            &text,
            "tern_tls_handshakes_queued_total",
            &["kind=\"full\""]
        ) > 0
    );
    assert_eq!(
        sum(
            &text,
            "tern_tls_handshakes_queued_total",
            &["kind=\"resumption\""]
        ),
        0
    );
    assert_eq!(
        sum(
            &text,
            "tern_tls_handshakes_in_flight_limit",
            &["kind=\"full\""]
        ),
        BOUND
    );
    eprintln!(
        "flood: {} handshakes done, {} failed; full handshakes admitted: {}",
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        sum(
            &text,
            "tern_tls_handshakes_admitted_total",
            &["kind=\"full\""]
        )
    );
}

/// Full handshakes hold every full slot (and one more waits); a resumption still gets in,
/// through the room the bound keeps for resumptions, and the waiting full one goes on once a
/// slot frees.
#[test]
fn a_resumption_gets_in_while_full_handshakes_wait() {
    let certs = Certs::new();
    let backend = echo_backend();
    let tern = start_tern(
        &certs,
        backend,
        &[
            "--max-handshakes",
            "2",
            "--handshake-timeout",
            "60s",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let (addr, metrics) = (tern.addr(), metrics_addr(&tern));
    // A client that keeps the ticket of its first connection.
    let resuming = certs.client(&[&TLS13]);
    let mut first = connect(addr, &resuming).unwrap();
    first.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    first.read_exact(&mut b).unwrap(); // the ticket came before the echo
    drop(first);

    let full = no_tickets(&certs);
    let stallers: Vec<TcpStream> = (0..2).map(|_| staller(addr, &full)).collect();
    until(metrics, "tern_tls_handshakes_in_flight", |n| n == 2);
    let waiting = std::thread::spawn({
        let full = full.clone();
        move || connect(addr, &full).map(|_| ())
    });
    until(metrics, "tern_tls_handshakes_waiting", |n| n == 1);

    let mut again = connect(addr, &resuming).unwrap();
    assert_eq!(
        again.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    again.write_all(b"y").unwrap();
    again.read_exact(&mut b).unwrap();
    let text = scrape(metrics);
    assert_eq!(
        sum(&text, "tern_tls_handshakes_waiting", &[]),
        1,
        "the full one still waits"
    );
    assert_eq!(
        sum(
            &text,
            "tern_tls_handshakes_admitted_total",
            &["kind=\"resumption\""]
        ),
        1
    );

    drop(stallers);
    waiting
        .join()
        .unwrap()
        .expect("the waiting full handshake completes once a slot frees");
    let text = until(metrics, "tern_tls_handshakes_in_flight", |n| n == 0);
    assert_eq!(sum(&text, "tern_tls_handshakes_in_flight_max", &[]), 3);
    assert_eq!(
        sum(
            &text,
            "tern_tls_handshakes_queued_total",
            &["kind=\"full\""]
        ),
        1
    );
}
