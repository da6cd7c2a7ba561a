//! The start-up report: a line per listener, per worker (CPU, driver, io_uring set-up) and per
//! certificate (names, key type, expiry) at start and after each reload; a warning for a
//! certificate that expires within 14 days, an error (and a metric) for one that has expired.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A self-signed certificate for `name` valid until `days` from now (negative: expired).
fn cert_expiring(dir: &Path, name: &str, days: i64) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    let p = dir.join(format!("{name}.pem"));
    std::fs::write(&p, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    p
}

fn line_with<'a>(log: &'a str, needle: &str, name: &str) -> Option<&'a str> {
    log.lines().find(|l| l.contains(needle) && l.contains(name))
}

#[test]
fn report_names_listeners_workers_and_certificates_with_their_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let fine = cert_expiring(dir.path(), "fine.test", 200);
    let soon = cert_expiring(dir.path(), "soon.test", 3);
    let gone = cert_expiring(dir.path(), "gone.test", -2);
    let s = |p: &Path| p.display().to_string();
    let tern = Tern::start(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--workers",
        "2",
        "--pem",
        &s(&fine),
        "--pem",
        &s(&soon),
        "--pem",
        &s(&gone),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let log = tern.log_text();
    assert_eq!(log.matches("listening on ").count(), 1, "{log}");
    for w in ["worker=0", "worker=1"] {
        let line = log
            .lines()
            .find(|l| l.contains("worker started") && l.contains(w));
        let line = line.unwrap_or_else(|| panic!("no start line for {w}:\n{log}"));
        assert!(
            line.contains("cpu=") && line.contains("driver=") && line.contains("setup="),
            "{line}"
        );
    }
    let fine_line = line_with(&log, "certificate", "fine.test").expect("a line for fine.test");
    assert!(
        fine_line.contains("INFO") && fine_line.contains("key=ecdsa"),
        "{fine_line}"
    );
    assert!(fine_line.contains("not_after=2"), "{fine_line}");
    assert!(
        fine_line.contains("days_left=199") || fine_line.contains("days_left=200"),
        "{fine_line}"
    );
    let soon_line = line_with(&log, "expires in", "soon.test").expect("a warning for soon.test");
    assert!(soon_line.contains("WARN"), "{soon_line}");
    assert!(
        soon_line.contains("expires in 2 days") || soon_line.contains("expires in 3 days"),
        "{soon_line}"
    );
    let gone_line = line_with(&log, "expired", "gone.test").expect("an error for gone.test");
    assert!(gone_line.contains("ERROR"), "{gone_line}");
    assert!(
        gone_line.contains("expired 2 days ago") || gone_line.contains("expired 3 days ago"),
        "{gone_line}"
    );

    // The metric says so too.
    let metrics: std::net::SocketAddr = log
        .split("metrics on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut m = std::net::TcpStream::connect(metrics).unwrap();
    m.set_read_timeout(Some(WAIT)).unwrap();
    use std::io::{Read, Write};
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).unwrap();
    assert!(text.contains("\ntern_certificates_expired 1\n"), "{text}");

    // A reload reports again.
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reloaded", WAIT), "{}", tern.log_text());
    assert!(
        tern.wait_for_count("expires in", 2, WAIT),
        "{}",
        tern.log_text()
    );
    let log = tern.log_text();
    assert_eq!(log.matches("listening on ").count(), 2, "{log}");
    assert_eq!(
        log.matches("worker serving a new generation").count(),
        2,
        "{log}"
    );
}
