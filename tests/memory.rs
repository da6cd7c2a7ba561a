//! Memory per connection: an idle connection gives its I/O buffers back to the worker's pool,
//! and one that wakes up again gets them back and carries on.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use rustls::version::{TLS12, TLS13};

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn round_trip(s: &mut TlsStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    s.flush().unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn quiet_connections_wake_up_and_carry_on() {
    let certs = Certs::new();
    for driver in [None, Some(("MONOIO_FORCE_LEGACY_DRIVER", "1"))] {
        let args = tern_args(&certs, echo_backend(), &[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let tern = Tern::start_with(&args, driver.as_slice());
        for version in [&TLS13, &TLS12] {
            let mut s = connect(tern.addr(), &certs.client(&[version])).unwrap();
            round_trip(&mut s, b"before");
            // Longer than the 500 ms after which buffers are released.
            std::thread::sleep(Duration::from_millis(1300));
            round_trip(&mut s, &pattern(200_000, 1));
            std::thread::sleep(Duration::from_millis(700));
            round_trip(&mut s, b"after");
        }
    }
}

#[test]
fn idle_connections_hold_no_io_buffers() {
    const N: usize = 2000;
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &[]);
    let cfg = certs.client(&[&TLS13]);
    // Warm up the allocator and pools with a few busy connections first.
    for i in 0..8 {
        let mut s = connect(tern.addr(), &cfg).unwrap();
        round_trip(&mut s, &pattern(300_000, i));
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(tern.pid());
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        let mut s = connect(tern.addr(), &cfg).unwrap();
        round_trip(&mut s, b"x");
        conns.push(s);
    }
    // Past the release delay, every connection is idle.
    std::thread::sleep(Duration::from_millis(1500));
    let per_conn = (rss_kib(tern.pid()) - before) * 1024 / N as u64;
    // Two 32 KiB buffers per connection would be 64 KiB; TLS state and futures are far less.
    assert!(per_conn < 32 * 1024, "{per_conn} bytes per idle connection");
    eprintln!("idle connection: {per_conn} bytes of tern RSS");
    drop(conns);
}

#[test]
fn a_slow_reader_holds_the_backend_back_instead_of_growing_buffers() {
    const TOTAL: usize = 512 << 20;
    let certs = Certs::new();
    let (tx, rx) = std::sync::mpsc::channel();
    // A backend that pushes as fast as tern takes it, reporting how much it got rid of.
    let backend = backend(move |mut s| {
        let chunk = vec![7u8; 1 << 20];
        let mut sent = 0;
        while sent < TOTAL && s.write_all(&chunk).is_ok() {
            sent += chunk.len();
            let _ = tx.send(sent);
        }
    });
    let tern = start_tern(&certs, backend, &[]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    let before = rss_kib(tern.pid());
    // The client reads nothing for a while; at loopback speed an unbounded buffer would have
    // taken hundreds of MiB by now.
    std::thread::sleep(Duration::from_millis(1500));
    let sent = rx.try_iter().last().unwrap_or(0);
    let grown = rss_kib(tern.pid()).saturating_sub(before);
    // What is in flight is the socket buffers' (a few MiB each way on loopback) plus tern's
    // per-connection buffers.
    assert!(
        sent < 64 << 20,
        "backend pushed {sent} bytes at a client that reads nothing"
    );
    assert!(
        grown < 16 * 1024,
        "tern grew by {grown} KiB while its client did not read"
    );
    // Once the client reads, the flow resumes.
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < 128 << 20 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {got} bytes");
        assert!(buf[..n].iter().all(|&b| b == 7));
        got += n;
    }
}
