//! `--uring-recv multishot` end to end: a restricted io_uring worker receives its clients'
//! records through one armed multishot receive per connection (records opened in place in the
//! ring buffers, records cut at a buffer's end completed in a pooled one), says so in its start
//! line, and does so by default; the epoll driver and `--uring-recv single` read the single way
//! and say so too.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use common::*;
use rustls::version::{TLS12, TLS13};

fn start(certs: &Certs, extra: &[&str], env: &[(&str, &str)]) -> Tern {
    let args = tern_args(certs, echo_backend(), extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Tern::start_with(&args, env)
}

/// Writes `total` bytes in `chunk`-sized writes and reads each echo back before the next.
fn echo_in_chunks(s: &mut TlsStream, total: usize, chunk: usize, seed: u8) {
    let data = pattern(total, seed);
    let mut back = vec![0u8; chunk];
    for c in data.chunks(chunk) {
        s.write_all(c).unwrap();
        s.flush().unwrap();
        s.read_exact(&mut back[..c.len()]).unwrap();
        assert!(back[..c.len()] == *c, "echo differs");
    }
}

/// Whether this kernel takes provided-buffer rings (5.19) and multishot receive (6.0): the
/// worker's start line says `recv=multishot` only then.
fn kernel_has_multishot(tern: &Tern) -> bool {
    let log = tern.log_text();
    if log.contains("recv=single (multishot refused") {
        eprintln!("kernel refused the buffer ring here; multishot checks skipped\n{log}");
        return false;
    }
    true
}

#[test]
fn a_restricted_worker_serves_through_multishot_receive_and_says_so() {
    let certs = Certs::new();
    let tern = start(&certs, &["--uring-recv", "multishot"], &[]);
    if !kernel_has_multishot(&tern) {
        return;
    }
    let log = tern.log_text();
    assert!(log.contains("recv=multishot"), "{log}");
    assert!(
        log.contains("ring=restricted") || log.contains("ring=unrestricted ("),
        "{log}"
    );
    // TLS 1.3 and 1.2 records of every size, cut anywhere by the ring's 32 KiB buffers: bulk
    // (records straddle buffers), odd-sized chunks, and one-byte writes (a record per byte).
    for (version, seed) in [(&TLS13, 1u8), (&TLS12, 2)] {
        let mut s = connect(tern.addr(), &certs.client(&[version])).unwrap();
        echo_in_chunks(&mut s, 3 << 20, 64 * 1024, seed);
        echo_in_chunks(&mut s, 200_000, 7_777, seed + 10);
        echo_in_chunks(&mut s, 300, 1, seed + 20);
    }
}

#[test]
fn many_connections_share_the_ring_and_a_quiet_one_comes_back() {
    let certs = Certs::new();
    let tern = start(&certs, &["--uring-recv", "multishot"], &[]);
    if !kernel_has_multishot(&tern) {
        return;
    }
    let cfg = certs.client(&[&TLS13]);
    // More connections moving bulk at once than the ring has buffers (64): when it runs dry a
    // connection reads the single way and arms again; every byte still comes back in order.
    let workers: Vec<_> = (0..80u8)
        .map(|i| {
            let mut s = connect(tern.addr(), &cfg).unwrap();
            thread::spawn(move || echo_in_chunks(&mut s, 256 * 1024, 48 * 1024, i))
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // A connection that went quiet (its buffers released, maybe parked with the receive
    // armed) serves again when the client speaks.
    let mut s = connect(tern.addr(), &cfg).unwrap();
    echo_in_chunks(&mut s, 10_000, 1000, 99);
    thread::sleep(Duration::from_millis(700));
    echo_in_chunks(&mut s, 100_000, 30_000, 98);
    // A clean close still reaches the backend as a half-close (the echo ends).
    s.conn.send_close_notify();
    s.flush().unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{} bytes after close", rest.len());
}

#[test]
fn multishot_is_the_default() {
    let certs = Certs::new();
    // Started directly, so TERN_TEST_URING_RECV (which would add the flag) does not apply.
    let args = tern_args(&certs, echo_backend(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tern = Tern::start_program(env!("CARGO_BIN_EXE_tern"), &args);
    if !kernel_has_multishot(&tern) {
        return;
    }
    let log = tern.log_text();
    assert!(log.contains("recv=multishot"), "{log}");
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    echo_in_chunks(&mut s, 1 << 20, 64 * 1024, 5);
}

#[test]
fn the_epoll_driver_reads_the_single_way_and_says_so() {
    let certs = Certs::new();
    let tern = start(
        &certs,
        &["--uring-recv", "multishot"],
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
    );
    let log = tern.log_text();
    assert!(log.contains("recv=single (epoll)"), "{log}");
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    echo_in_chunks(&mut s, 1 << 20, 64 * 1024, 3);
}

#[test]
fn single_reads_the_single_way_and_says_so() {
    let certs = Certs::new();
    let tern = start(&certs, &["--uring-recv", "single"], &[]);
    let log = tern.log_text();
    assert!(log.contains("recv=single"), "{log}");
    assert!(!log.contains("recv=multishot"), "{log}");
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    echo_in_chunks(&mut s, 1 << 20, 64 * 1024, 4);
}
