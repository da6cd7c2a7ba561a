//! io_uring restrictions end to end: every worker's ring is limited to the operations tern
//! submits (`--uring-restrict on`, the default), serves tcp and http mode that way, and says so
//! in its start line and in `tern_worker_uring_restricted`; `--uring-restrict off` and the
//! epoll driver serve unrestricted and say so too.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use common::http::{read_response, TestBackend};
use common::scrape::{metrics_addr, scrape, sum};
use common::*;
use rustls::version::TLS13;

const WORKERS: usize = 2;

/// Whether this kernel creates disabled rings (Linux 5.10, with restrictions); an older one
/// must get the fallback, not a failed start.
fn kernel_restricts() -> bool {
    let ring: std::io::Result<io_uring::IoUring> =
        io_uring::IoUring::builder().setup_r_disabled().build(8);
    ring.is_ok()
}

fn start(certs: &Certs, backend: SocketAddr, extra: &[&str], env: &[(&str, &str)]) -> Tern {
    let backend = backend.to_string();
    let workers = WORKERS.to_string();
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--workers",
        &workers,
        "--metrics",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(certs.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    Tern::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

/// One exchange through tern in its mode: an echo in tcp mode, a GET in http mode.
fn exchange(tern: &Tern, certs: &Certs, http: bool) {
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    if http {
        s.write_all(b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut r = std::io::BufReader::new(s);
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), "B");
    } else {
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
    }
}

/// Exchanges until every worker has accepted at least one connection (SO_REUSEPORT spreads
/// them by address, so a few connections reach both), then returns the scrape.
fn through_every_worker(tern: &Tern, certs: &Certs, http: bool) -> String {
    let metrics = metrics_addr(tern);
    let deadline = Instant::now() + WAIT;
    loop {
        exchange(tern, certs, http);
        let text = scrape(metrics);
        let idle = (0..WORKERS).any(|w| {
            let label = format!("worker=\"{w}\"");
            sum(&text, "tern_connections_accepted_total", &[&label]) == 0
        });
        if !idle {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "a worker never got a connection:\n{text}"
        );
    }
}

/// Each worker's start line says `ring=WANT` and its gauge is `gauge`.
fn assert_workers(tern: &Tern, text: &str, want: &str, gauge: u64) {
    let log = tern.log_text();
    for w in 0..WORKERS {
        let worker = format!("worker={w}");
        let line = log
            .lines()
            .find(|l| l.contains("worker started") && l.contains(&worker))
            .unwrap_or_else(|| panic!("no start line for {worker}:\n{log}"));
        assert!(line.contains(&format!("ring={want}")), "{line}");
        let series = format!("tern_worker_uring_restricted{{worker=\"{w}\"}} {gauge}");
        assert!(text.lines().any(|l| l == series), "no {series}:\n{text}");
    }
}

#[test]
fn every_worker_serves_on_a_restricted_ring_in_tcp_and_http_mode() {
    let certs = Certs::new();
    let echo = echo_backend();
    let web = TestBackend::start("B");
    for (http, backend, mode) in [(false, echo, "tcp"), (true, web.addr, "http")] {
        let tern = start(&certs, backend, &["--mode", mode], &[]);
        let text = through_every_worker(&tern, &certs, http);
        if kernel_restricts() {
            assert_workers(&tern, &text, "restricted", 1);
        } else {
            // An old kernel: the same set-up without restrictions, and the cause.
            assert_workers(&tern, &text, "unrestricted (", 0);
            assert!(
                tern.log_text().contains("io_uring restrictions refused"),
                "{}",
                tern.log_text()
            );
        }
    }
}

#[test]
fn uring_restrict_off_serves_on_unrestricted_rings() {
    let certs = Certs::new();
    let web = TestBackend::start("B");
    let tern = start(
        &certs,
        web.addr,
        &["--mode", "http", "--uring-restrict", "off"],
        &[],
    );
    let text = through_every_worker(&tern, &certs, true);
    assert_workers(&tern, &text, "unrestricted (--uring-restrict off)", 0);
    assert!(
        !tern.log_text().contains("io_uring restrictions refused"),
        "{}",
        tern.log_text()
    );
}

#[test]
fn the_epoll_driver_has_no_ring_to_restrict() {
    let certs = Certs::new();
    let echo = echo_backend();
    let tern = start(&certs, echo, &[], &[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
    let text = through_every_worker(&tern, &certs, false);
    assert_workers(&tern, &text, "n/a (epoll)", 0);
}

#[test]
fn a_bad_uring_restrict_value_is_one_line_exit_2() {
    let (status, err) = run_tern(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--pem",
        "/nonexistent.pem",
        "--uring-restrict",
        "maybe",
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--uring-restrict"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
