//! Logs for log shippers: the tcp-mode connection log (one line per connection, however it
//! ended), `--log-format json` for both modes' access logs and for tern's own log lines.

mod common;

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use common::http::{read_response, TestBackend};
use common::*;
use rustls::version::{TLS12, TLS13};

/// Waits until the access log at `path` has `n` lines; returns them.
fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines:\n{text}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn echo_round_trip(s: &mut TlsStream, n: usize) {
    let data = pattern(n, 9);
    s.write_all(&data).unwrap();
    s.flush().unwrap();
    let mut back = vec![0u8; n];
    s.read_exact(&mut back).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    let _ = read_to_end(s);
}

#[test]
fn tcp_mode_logs_each_connection_in_text_and_json() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    for format in ["text", "json"] {
        let log = dir.path().join(format!("conn-{format}.log"));
        let log_arg = log.display().to_string();
        let backend = echo_backend();
        let tern = start_tern(
            &certs,
            backend,
            &[
                "--access-log",
                &log_arg,
                "--log-format",
                format,
                "--alpn",
                "h2,http/1.1",
            ],
        );
        let mut cfg = (*certs.client(&[&TLS13])).clone();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let cfg = std::sync::Arc::new(cfg);
        let mut s = connect(tern.addr(), &cfg).unwrap();
        echo_round_trip(&mut s, 1234);
        // The same client again: resumed.
        let mut s = connect(tern.addr(), &cfg).unwrap();
        echo_round_trip(&mut s, 10);
        let mut s = connect(tern.addr(), &certs.client(&[&TLS12])).unwrap();
        echo_round_trip(&mut s, 7);
        // Gone before its handshake.
        drop(std::net::TcpStream::connect(tern.addr()).unwrap());
        let got = lines(&log, 4);
        if format == "text" {
            let first = &got[0];
            for want in [
                "sni=localhost",
                "alpn=h2",
                " TLSv1.3 TLS13_",
                "resumed=no",
                &format!("backend={backend}"),
                "up=1234 down=1234",
                "\"closed\\x20by\\x20both\\x20sides\"",
            ] {
                assert!(first.contains(want), "{want} in {first}");
            }
            assert!(
                got[1].contains("resumed=yes") && got[1].contains("up=10 down=10"),
                "{}",
                got[1]
            );
            assert!(
                got[2].contains(" TLSv1.2 TLS_ECDHE_") && got[2].contains("alpn=-"),
                "{}",
                got[2]
            );
            assert!(
                got[3].contains(" - - resumed=no backend=- up=0 down=0"),
                "{}",
                got[3]
            );
            assert!(got[3].contains("handshake\\x20failed"), "{}", got[3]);
        } else {
            let v: Vec<serde_json::Value> = got
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(v[0]["sni"], "localhost");
            assert_eq!(v[0]["alpn"], "h2");
            assert_eq!(v[0]["tls"], "TLSv1.3");
            assert_eq!(v[0]["resumed"], false);
            assert_eq!(v[0]["backend"], backend.to_string());
            assert_eq!(v[0]["bytes_to_backend"], 1234);
            assert_eq!(v[0]["bytes_to_client"], 1234);
            assert_eq!(v[0]["end"], "closed by both sides");
            assert!(v[0]["client"].as_str().unwrap().starts_with("127.0.0.1:"));
            assert!(v[0]["duration_ms"].as_f64().unwrap() > 0.0);
            assert_eq!(v[1]["resumed"], true);
            assert_eq!(v[2]["tls"], "TLSv1.2");
            assert_eq!(v[3]["tls"], serde_json::Value::Null);
            assert!(
                v[3]["end"]
                    .as_str()
                    .unwrap()
                    .starts_with("handshake failed"),
                "{}",
                v[3]
            );
        }
    }
}

#[test]
fn json_for_http_access_logs_and_terns_own_lines() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("http.log");
    let log_arg = log.display().to_string();
    let b = TestBackend::start("A");
    let tern = start_tern(
        &certs,
        b.addr,
        &[
            "--mode",
            "http",
            "--access-log",
            &log_arg,
            "--log-format",
            "json",
        ],
    );
    let mut c = BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    c.get_mut()
        .write_all(b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    c.get_mut().flush().unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    let got = lines(&log, 1);
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["host"], "localhost");
    assert_eq!(v["path"], "/name");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 1);
    assert_eq!(v["backend"], b.addr.to_string());
    // tern's own lines on stderr are JSON objects too.
    let own = tern.log_text();
    let ready = own.lines().find(|l| l.contains("tern ready")).unwrap();
    let v: serde_json::Value = serde_json::from_str(ready).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["message"], "tern ready");
    assert_eq!(v["workers"], 1);
}
