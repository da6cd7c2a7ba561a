//! `--metrics`: the real binary's counters scraped after known traffic, the exposition checked
//! by Prometheus' own parsers (promtool, and the prometheus_client OpenMetrics parser), and
//! `/healthz` / `/readyz` through start and drain.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use rustls::version::{TLS12, TLS13};

/// The address tern logged as `metrics on ADDR`.
fn metrics_addr(tern: &Tern) -> SocketAddr {
    let log = tern.log_text();
    let rest = log
        .split("metrics on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'metrics on' line in:\n{log}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

struct Response {
    status: u16,
    head: String,
    body: String,
}

/// One GET with its own connection, every wait bounded.
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Response {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: tern\r\n{accept}\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    Response {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The sum of the samples of `name` whose labels include every `label="value"` in `with`.
fn sum(text: &str, name: &str, with: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            n == name && with.iter().all(|w| labels.contains(w))
        })
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum()
}

/// Scrapes until `done` holds for the text (the counters settle as connection tasks end).
fn scrape_until(addr: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = get(addr, "/metrics", None);
        assert_eq!(r.status, 200);
        if done(&r.body) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "counters never settled:\n{}",
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `promtool check metrics` (parser and lint): true if it ran, panics if it refused the text.
fn promtool_accepts(text: &str) -> bool {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: promtool is not installed (apt-get install prometheus); \
                 the Prometheus text was not validated"
            );
            return false;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool refused the exposition: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// The OpenMetrics parser of the Python client (Debian's python3-prometheus-client), which
/// is strict: it refuses a missing `# EOF`, interleaved families, bad suffixes or escapes.
fn openmetrics_parser_accepts(text: &str) -> bool {
    const PARSE: &str = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
        families = list(p(sys.stdin.read()))\n\
        print(len(families))\n";
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import prometheus_client"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = python else {
        eprintln!(
            "SKIPPED: no python3 with prometheus_client (apt-get install \
             python3-prometheus-client); the OpenMetrics text was not validated"
        );
        return false;
    };
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(families > 10, "only {families} families parsed");
    true
}

#[test]
fn scraped_counters_match_the_traffic_and_the_text_parses() {
    let certs = Certs::new();
    let backend = echo_backend().to_string();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
    ];
    let cert_args = certs.args();
    args.extend(cert_args.iter().map(String::as_str));
    let tern = Tern::start(&args);
    let addr = metrics_addr(&tern);
    let before = get(addr, "/metrics", None).body;
    assert_eq!(sum(&before, "tern_connections_accepted_total", &[]), 0);
    assert_eq!(sum(&before, "tern_workers", &[]), 2);

    // Three TLS connections echo a known number of bytes and close cleanly...
    let sizes = [1_000usize, 20_000, 300_000];
    for (i, &n) in sizes.iter().enumerate() {
        let version = if i == 1 { &TLS12 } else { &TLS13 };
        let mut s = connect(tern.addr(), &certs.client(&[version])).unwrap();
        let data = pattern(n, i as u8);
        s.write_all(&data).unwrap();
        s.flush().unwrap();
        let mut back = vec![0u8; n];
        s.read_exact(&mut back).unwrap();
        assert!(back == data);
        s.conn.send_close_notify();
        s.flush().unwrap();
        assert!(read_to_end(&mut s).unwrap().is_empty());
    }
    // ...and one TCP connection closes without a handshake.
    drop(TcpStream::connect(tern.addr()).unwrap());

    let text = scrape_until(addr, |t| {
        sum(t, "tern_connections_accepted_total", &[]) == 4
            && sum(t, "tern_connections_open", &[]) == 0
    });
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();
    let ok = "result=\"ok\"";
    let failed = "result=\"failed\"";
    assert_eq!(sum(&text, "tern_tls_handshakes_total", &[ok]), 3, "{text}");
    assert_eq!(sum(&text, "tern_tls_handshakes_total", &[failed]), 1);
    let to_backend = "direction=\"to_backend\"";
    let to_client = "direction=\"to_client\"";
    assert_eq!(
        sum(&text, "tern_forwarded_bytes_total", &[to_backend]),
        total
    );
    assert_eq!(
        sum(&text, "tern_forwarded_bytes_total", &[to_client]),
        total
    );
    assert_eq!(sum(&text, "tern_connections_refused_total", &[]), 0);
    assert_eq!(sum(&text, "tern_backend_connect_failures_total", &[]), 0);
    // By version and kind, and how the failed one failed (closed before its ClientHello).
    let completed = "tern_tls_handshakes_completed_total";
    let v13 = "version=\"1.3\"";
    let v12 = "version=\"1.2\"";
    let full = "resumed=\"false\"";
    assert_eq!(sum(&text, completed, &[v13, full]), 2, "{text}");
    assert_eq!(sum(&text, completed, &[v12, full]), 1);
    assert_eq!(sum(&text, completed, &["resumed=\"true\""]), 0);
    let failures = "tern_tls_handshake_failures_total";
    assert_eq!(sum(&text, failures, &["reason=\"eof\""]), 1, "{text}");
    assert_eq!(sum(&text, failures, &[]), 1);
    // One duration per completed handshake, one connect time per backend connection.
    assert_eq!(
        sum(&text, "tern_tls_handshake_duration_seconds_count", &[]),
        3
    );
    assert_eq!(
        sum(&text, "tern_backend_connect_duration_seconds_count", &[]),
        3
    );
    // Both workers have their series.
    for w in ["worker=\"0\"", "worker=\"1\""] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("tern_connections_accepted_total{") && l.contains(w)),
            "no series for {w}"
        );
    }
    let names = certs_names(&text);
    assert_eq!(names, "localhost", "{text}");

    promtool_accepts(&text);
    let om = get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(om.status, 200);
    assert!(
        om.head
            .contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{}",
        om.head
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert_eq!(sum(&om.body, "tern_tls_handshakes_total", &[ok]), 3);
    openmetrics_parser_accepts(&om.body);
}

/// The `names` label of the one certificate series.
fn certs_names(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with("tern_certificate_not_after_timestamp_seconds{"))
        .expect("a certificate series");
    let names = line.split("names=\"").nth(1).unwrap();
    names.split('"').next().unwrap().to_string()
}

#[test]
fn healthz_turns_503_when_draining_and_readyz_is_200_once_ready() {
    let certs = Certs::new();
    let mut tern = start_tern(
        &certs,
        echo_backend(),
        &["--metrics", "127.0.0.1:0", "--drain-timeout", "5s"],
    );
    let addr = metrics_addr(&tern);
    // start_tern returned at "tern ready": every worker accepts.
    assert_eq!(get(addr, "/readyz", None).status, 200);
    let health = get(addr, "/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let mut held = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    held.write_all(b"ping").unwrap();
    held.flush().unwrap();
    held.read_exact(&mut [0u8; 4]).unwrap();

    tern.signal(libc::SIGTERM);
    assert!(
        tern.wait_log("no longer accepting", WAIT),
        "{}",
        tern.log_text()
    );
    let health = get(addr, "/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (503, "draining\n"));
    assert_eq!(get(addr, "/readyz", None).status, 503);
    // Metrics are still served, and show the connection being waited for.
    let text = get(addr, "/metrics", None).body;
    assert_eq!(sum(&text, "tern_connections_open", &[]), 1, "{text}");
    assert!(tern.is_running());

    held.conn.send_close_notify();
    held.flush().unwrap();
    let _ = read_to_end(&mut held);
    drop(held);
    let status = tern
        .wait_exit(WAIT)
        .expect("tern did not exit after the drain");
    assert_eq!(status.code(), Some(0), "{}", tern.log_text());
}

#[test]
fn a_metrics_address_that_cannot_be_bound_is_refused_at_start() {
    let certs = Certs::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    for (value, needle) in [
        (taken.as_str(), format!("--metrics {taken}: cannot listen")),
        ("nowhere", "--metrics nowhere".to_string()),
    ] {
        let args = tern_args(&certs, dead_addr(), &["--metrics", value]);
        let (status, err) = run_tern(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(status.code(), Some(2), "{err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line expected: {err}"
        );
        assert!(err.contains(&needle), "'{needle}' missing from: {err}");
    }
}

#[test]
fn http_requests_and_responses_are_counted_by_class_and_pool() {
    let certs = Certs::new();
    let b = common::http::TestBackend::start("A");
    let tern = start_tern(
        &certs,
        b.addr,
        &["--mode", "http", "--metrics", "127.0.0.1:0"],
    );
    let addr = metrics_addr(&tern);
    let mut c = std::io::BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    for path in ["/name", "/name", "/name", "/status/404"] {
        write!(
            c.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        c.get_mut().flush().unwrap();
        common::http::read_response(&mut c, false).unwrap();
    }
    // Refused before routing: counted as a request and a 4xx, not for the pool.
    let mut bad = std::io::BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    bad.get_mut().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    bad.get_mut().flush().unwrap();
    assert_eq!(
        common::http::read_response(&mut bad, false).unwrap().status,
        400
    );
    let text = scrape_until(addr, |t| sum(t, "tern_http_requests_total", &[]) == 5);
    let class = |c: &str| format!("class=\"{c}\"");
    assert_eq!(
        sum(&text, "tern_http_responses_total", &[&class("2xx")]),
        3,
        "{text}"
    );
    assert_eq!(sum(&text, "tern_http_responses_total", &[&class("4xx")]), 2);
    let pool = "pool=\"default\"";
    assert_eq!(sum(&text, "tern_http_pool_requests_total", &[pool]), 4);
    assert_eq!(
        sum(
            &text,
            "tern_http_pool_responses_total",
            &[pool, &class("2xx")]
        ),
        3
    );
    assert_eq!(
        sum(
            &text,
            "tern_http_pool_responses_total",
            &[pool, &class("4xx")]
        ),
        1
    );
    assert_eq!(
        sum(
            &text,
            "tern_http_pool_response_duration_seconds_count",
            &[pool]
        ),
        4
    );
    promtool_accepts(&text);
}
