//! Hot reload (SIGHUP): new connections get the new certificates and configuration, open
//! connections carry on untouched, a reload that fails its checks keeps the old generation and
//! says why, and sessions resume across it — in tcp and http mode.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use common::pki::{s_client, subject_cn, Ca, EC};
use common::*;

fn p(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// Replaces `to` with `from`'s contents in one rename, as certbot and deploy tools do.
fn swap_in(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn start(mode: &str, pem: &std::path::Path, backend: std::net::SocketAddr) -> Tern {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend.to_string(),
        "--workers",
        "1",
        "--mode",
        mode,
        "--pem",
        &p(pem),
    ];
    Tern::start(&args)
}

/// Sends `msg` on an open connection and reads what comes back (the echo backend in tcp
/// mode; in http mode a request and its response from an HTTP backend).
fn round_trip(s: &mut TlsStream, mode: &str) -> String {
    let msg: &[u8] = if mode == "http" {
        b"GET /still-here HTTP/1.1\r\nHost: site.test\r\n\r\n"
    } else {
        b"still here"
    };
    s.write_all(msg).unwrap();
    s.flush().unwrap();
    // Until the reply is whole (in http mode the head and body may come as two records).
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("still here") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn backend_for(mode: &str) -> std::net::SocketAddr {
    if mode == "http" {
        backend(|mut s| {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let body = b"still here";
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if s.write_all(head.as_bytes())
                    .and_then(|_| s.write_all(body))
                    .is_err()
                {
                    break;
                }
            }
        })
    } else {
        echo_backend()
    }
}

fn client(ca: &Ca) -> Arc<rustls::ClientConfig> {
    ca.client()
}

fn connect_site(tern: &Tern, cfg: &Arc<rustls::ClientConfig>) -> TlsStream {
    connect_as(tern.addr(), cfg, "site.test").unwrap()
}

#[test]
fn sighup_serves_the_new_certificate_and_keeps_open_connections() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let old = ca.leaf(dir.path(), "old", &["site.test"], EC);
    let new = ca.leaf(dir.path(), "new", &["site.test"], EC);
    let live = dir.path().join("live.pem");
    for mode in ["tcp", "http"] {
        swap_in(&old.pem, &live);
        let tern = start(mode, &live, backend_for(mode));
        let cfg = client(&ca);
        let mut open = connect_site(&tern, &cfg);
        assert!(round_trip(&mut open, mode).contains("still here"));
        let cn = || subject_cn(&s_client(tern.addr(), &["-servername", "site.test"]));
        assert_eq!(cn().as_deref(), Some("old"));

        swap_in(&new.pem, &live);
        tern.signal(libc::SIGHUP);
        assert!(tern.wait_log("reloaded", WAIT), "{}", tern.log_text());
        assert_eq!(
            cn().as_deref(),
            Some("new"),
            "{mode}: new connections see the new one"
        );
        // The connection opened before the reload is untouched.
        assert!(round_trip(&mut open, mode).contains("still here"), "{mode}");
        assert_eq!(
            open.conn.peer_certificates().unwrap()[0],
            old.der,
            "{mode}: it still shows the old certificate"
        );
    }
}

#[test]
fn a_bad_reload_keeps_the_old_certificate_and_says_why() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let old = ca.leaf(dir.path(), "old", &["site.test"], EC);
    let live = dir.path().join("live.pem");
    swap_in(&old.pem, &live);
    let mut tern = start("tcp", &live, echo_backend());
    std::fs::write(&live, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reload failed", WAIT), "{}", tern.log_text());
    let line = tern
        .log_text()
        .lines()
        .find(|l| l.contains("reload failed"))
        .unwrap()
        .to_string();
    assert!(line.contains("live.pem"), "names the file: {line}");
    assert!(tern.is_running());
    let cn = subject_cn(&s_client(tern.addr(), &["-servername", "site.test"]));
    assert_eq!(cn.as_deref(), Some("old"));
    // Fixed, a reload works again.
    swap_in(&old.pem, &live);
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reloaded", WAIT), "{}", tern.log_text());
}

#[test]
fn sessions_resume_across_a_reload() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let old = ca.leaf(dir.path(), "old", &["site.test"], EC);
    let new = ca.leaf(dir.path(), "new", &["site.test"], EC);
    let live = dir.path().join("live.pem");
    swap_in(&old.pem, &live);
    let tern = start("tcp", &live, echo_backend());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = Arc::new(
            rustls::ClientConfig::builder_with_protocol_versions(&[version])
                .with_root_certificates(roots(&ca))
                .with_no_client_auth(),
        );
        let mut first = connect_site(&tern, &cfg);
        assert!(round_trip(&mut first, "tcp").contains("still here"));
        drop(first);
        swap_in(&new.pem, &live);
        tern.signal(libc::SIGHUP);
        assert!(tern.wait_for_count(
            "reloaded",
            1 + (version == &rustls::version::TLS12) as usize,
            WAIT
        ));
        let mut again = connect_site(&tern, &cfg);
        assert!(round_trip(&mut again, "tcp").contains("still here"));
        assert_eq!(
            again.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{version:?}: resumed after the reload"
        );
        swap_in(&old.pem, &live);
    }
}

fn roots(ca: &Ca) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    roots
}
