//! Signals, draining, and resource limits, against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::*;
use rustls::version::TLS13;

/// A backend that sends `chunks` chunks of `size` bytes, one every `gap`, then closes.
fn slow_backend(chunks: usize, size: usize, gap: Duration) -> std::net::SocketAddr {
    backend(move |mut s| {
        for i in 0..chunks {
            if s.write_all(&pattern(size, i as u8)).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
    })
}

#[test]
fn sigterm_lets_an_open_transfer_finish_then_exits_0() {
    let certs = Certs::new();
    let (chunks, size) = (10, 100_000);
    let mut tern = start_tern(
        &certs,
        slow_backend(chunks, size, Duration::from_millis(100)),
        &[],
    );
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    let mut first = vec![0u8; 1000];
    s.read_exact(&mut first).unwrap();

    tern.signal(libc::SIGTERM);
    assert!(tern.wait_log("draining", WAIT), "{}", tern.log_text());
    // New connections are no longer accepted...
    let refused = TcpStream::connect(tern.addr()).is_err()
        || connect(tern.addr(), &certs.client(&[&TLS13])).is_err();
    assert!(refused, "a new connection was served during the drain");
    // ...while the open transfer runs to its end.
    let rest = read_to_end(&mut s).unwrap();
    assert_eq!(first.len() + rest.len(), chunks * size);
    drop(s); // the client's close ends the connection's last direction
    let status = tern
        .wait_exit(WAIT)
        .expect("tern did not exit after the drain");
    assert_eq!(status.code(), Some(0), "{}", tern.log_text());
}

#[test]
fn drain_timeout_closes_what_is_still_open() {
    let certs = Certs::new();
    let mut tern = start_tern(&certs, echo_backend(), &["--drain-timeout", "300ms"]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    s.write_all(b"ping").unwrap();
    s.read_exact(&mut [0u8; 4]).unwrap();
    tern.signal(libc::SIGINT);
    let status = tern
        .wait_exit(WAIT)
        .expect("tern did not exit at the drain timeout");
    assert_eq!(status.code(), Some(0));
    assert!(tern.log_text().contains("drain timeout"));
    let r = s.read(&mut [0u8; 4]);
    assert!(matches!(r, Ok(0) | Err(_)), "connection still open: {r:?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let certs = Certs::new();
    let mut tern = start_tern(&certs, echo_backend(), &["--drain-timeout", "10m"]);
    let _s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    tern.signal(libc::SIGTERM);
    assert!(tern.wait_log("draining", WAIT));
    tern.signal(libc::SIGTERM);
    let status = tern
        .wait_exit(WAIT)
        .expect("second signal did not stop tern");
    assert_eq!(status.code(), Some(1));
    assert!(status.signal().is_none());
}

/// With the descriptor limit exhausted, accept keeps failing with EMFILE; the worker must back
/// off instead of spinning, and serve again once descriptors are free.
#[test]
fn running_out_of_descriptors_does_not_spin() {
    let certs = Certs::new();
    let args = tern_args(&certs, echo_backend(), &["--max-conns", "100000"]);
    // prlimit(1) runs tern with both soft and hard RLIMIT_NOFILE at 64.
    let mut prlimit_args = vec!["--nofile=64:64", env!("CARGO_BIN_EXE_tern")];
    prlimit_args.extend(args.iter().map(String::as_str));
    let tern = Tern::start_program("prlimit", &prlimit_args);

    // Hold many raw connections: each accepted one takes a descriptor until EMFILE.
    let mut held = Vec::new();
    for _ in 0..120 {
        if let Ok(s) = TcpStream::connect(tern.addr()) {
            held.push(s);
        }
    }
    assert!(tern.wait_log("accept failed", WAIT), "{}", tern.log_text());
    let before = tern.cpu_seconds();
    std::thread::sleep(Duration::from_secs(2));
    let used = tern.cpu_seconds() - before;
    assert!(
        used < 0.5,
        "tern used {used:.2}s of CPU in 2s while out of descriptors"
    );

    drop(held);
    let deadline = Instant::now() + WAIT;
    let cfg = certs.client(&[&TLS13]);
    let mut s = loop {
        if let Ok(s) = connect(tern.addr(), &cfg) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tern did not recover:\n{}",
            tern.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    s.write_all(b"alive").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"alive");
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let certs = Certs::new();
    let args = tern_args(&certs, echo_backend(), &[]);
    let mut prlimit_args = vec!["--nofile=256:4096", env!("CARGO_BIN_EXE_tern")];
    prlimit_args.extend(args.iter().map(String::as_str));
    let tern = Tern::start_program("prlimit", &prlimit_args);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", tern.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums, ["4096", "4096"], "{line}");
}

#[test]
fn user_drops_root_after_binding() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: --user cannot be exercised here");
        return;
    }
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let log_s = log.display().to_string();
    let tern = start_tern(
        &certs,
        echo_backend(),
        &["--user", "nobody", "--access-log", &log_s],
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", tern.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid_line}"
    );
    // Still serving, as nobody.
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    let (status, err) = run_tern(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9",
        "--pem",
        &certs.pem.display().to_string(),
        "--user",
        "no-such-user-x",
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("--user no-such-user-x: no such user"), "{err}");
}
