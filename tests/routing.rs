//! Pools, balancing, health and SNI routing in tcp mode, and `tern check`, against the real
//! binary.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::version::TLS13;

/// A backend that greets each connection with its name, then echoes.
fn named_backend(name: &'static str) -> SocketAddr {
    backend(move |mut s| {
        let _ = s.write_all(name.as_bytes());
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// A backend that serves HTTP health checks with `status` and greets other connections (a
/// proxied client sends nothing first; a health check sends GET at once).
fn checked_backend(name: &'static str, status: u16) -> SocketAddr {
    backend(move |mut s| {
        let mut first = [0u8; 3];
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let is_check = s.read_exact(&mut first).is_ok() && &first == b"GET";
        s.set_read_timeout(Some(WAIT)).unwrap();
        if is_check {
            let mut rest = [0u8; 512];
            let _ = s.read(&mut rest);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        } else {
            let _ = s.write_all(name.as_bytes());
        }
    })
}

fn greeting(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> String {
    let mut s = connect(addr, cfg).unwrap();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

fn start(certs: &Certs, backends: &[SocketAddr], extra: &[&str]) -> Tern {
    let mut args = tern_args(certs, backends[0], extra);
    for b in &backends[1..] {
        args.push("--backend".into());
        args.push(b.to_string());
    }
    Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn round_robin_spreads_over_three_backends() {
    let certs = Certs::new();
    let backends = [named_backend("A"), named_backend("B"), named_backend("C")];
    let tern = start(&certs, &backends, &[]);
    let cfg = certs.client(&[&TLS13]);
    let mut seen: Vec<String> = (0..9).map(|_| greeting(tern.addr(), &cfg)).collect();
    seen.sort();
    assert_eq!(seen, ["A", "A", "A", "B", "B", "B", "C", "C", "C"]);
}

#[test]
fn ip_hash_keeps_a_client_on_one_backend() {
    let certs = Certs::new();
    let backends = [named_backend("A"), named_backend("B"), named_backend("C")];
    let tern = start(&certs, &backends, &["--balance", "ip-hash"]);
    let cfg = certs.client(&[&TLS13]);
    let first = greeting(tern.addr(), &cfg);
    for _ in 0..6 {
        assert_eq!(greeting(tern.addr(), &cfg), first);
    }
}

#[test]
fn least_conn_sends_new_connections_to_the_idle_backend() {
    let certs = Certs::new();
    let backends = [named_backend("A"), named_backend("B")];
    let tern = start(&certs, &backends, &["--balance", "least-conn"]);
    let cfg = certs.client(&[&TLS13]);
    // Hold two connections on whichever backends they land; then each new connection goes
    // to the one with fewer open.
    let mut held = Vec::new();
    let mut count = std::collections::HashMap::<String, usize>::new();
    for _ in 0..6 {
        let mut s = connect(tern.addr(), &cfg).unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).unwrap();
        *count
            .entry(String::from_utf8_lossy(&buf).to_string())
            .or_default() += 1;
        held.push(s);
    }
    assert_eq!(count.get("A"), Some(&3), "{count:?}");
    assert_eq!(count.get("B"), Some(&3), "{count:?}");
}

#[test]
fn a_backend_failing_its_health_check_is_left_out() {
    let certs = Certs::new();
    let backends = [checked_backend("A", 200), checked_backend("B", 503)];
    let tern = start(
        &certs,
        &backends,
        &["--health-check", "/healthz", "--health-interval", "200ms"],
    );
    let cfg = certs.client(&[&TLS13]);
    assert!(
        tern.wait_log("failed its health check", WAIT),
        "{}",
        tern.log_text()
    );
    for _ in 0..6 {
        assert_eq!(greeting(tern.addr(), &cfg), "A");
    }
}

#[test]
fn sni_picks_the_certificate_and_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let a = Certs::for_names(&["a.test"]);
    let b = Certs::for_names(&["b.test", "*.b.test"]);
    let (ba, bb) = (named_backend("A"), named_backend("B"));
    let conf = dir.path().join("tern.toml");
    std::fs::write(
        &conf,
        format!(
            r#"listen = ["127.0.0.1:0"]
[[cert]]
cert = "{}"
key = "{}"
[[cert]]
pem = "{}"
[[pool]]
name = "a"
backends = ["{ba}"]
[[pool]]
name = "b"
backends = ["{bb}"]
[[route]]
pool = "a"
[[route]]
host = "*.b.test"
pool = "b"
[[route]]
host = "b.test"
pool = "b"
"#,
            a.cert.display(),
            a.key.display(),
            b.pem.display()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let tern = Tern::start(&["--config", &conf, "--workers", "1"]);
    for (name, certs, want) in [
        ("a.test", &a, "A"),
        ("b.test", &b, "B"),
        ("www.b.test", &b, "B"),
    ] {
        // Each name verifies against its own CA: the right certificate was chosen.
        let cfg = certs.client(&[&TLS13]);
        let mut s = connect_as(tern.addr(), &cfg, name).unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, want.as_bytes(), "{name}");
    }
}

/// A resumed session (TLS 1.3 and 1.2) is routed by its server name like a full one, not sent
/// to the default pool.
#[test]
fn a_resumed_session_routes_by_its_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = Certs::for_names(&["a.test"]);
    let b = Certs::for_names(&["b.test"]);
    let (ba, bb) = (named_backend("A"), named_backend("B"));
    let conf = dir.path().join("tern.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = [\"127.0.0.1:0\"]\n[[cert]]\npem = \"{}\"\n[[cert]]\npem = \"{}\"\n\
             [[pool]]\nname = \"a\"\nbackends = [\"{ba}\"]\n[[pool]]\nname = \"b\"\n\
             backends = [\"{bb}\"]\n[[route]]\npool = \"a\"\n[[route]]\nhost = \"b.test\"\n\
             pool = \"b\"\n",
            a.pem.display(),
            b.pem.display()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let tern = Tern::start(&["--config", &conf, "--workers", "1"]);
    for version in [&TLS13, &rustls::version::TLS12] {
        let cfg = b.client(&[version]);
        for round in 0..2 {
            let mut s = connect_as(tern.addr(), &cfg, "b.test").unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"B", "{version:?} round {round}");
            if round == 1 {
                assert_eq!(
                    s.conn.handshake_kind(),
                    Some(rustls::HandshakeKind::Resumed)
                );
            }
        }
    }
}

#[test]
fn tern_check_accepts_a_good_file_and_names_the_line_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    let good = format!(
        "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"{}\"\nkey = \"{}\"\n[[pool]]\nname = \"web\"\nbackends = [\"127.0.0.1:8080\"]\n",
        certs.cert.display(),
        certs.key.display()
    );
    let path = dir.path().join("good.toml");
    std::fs::write(&path, &good).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["check", "--config", &path.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("ok (1 listener(s), 1 certificate(s), 1 pool(s), 1 route(s))"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("{good}[[route]]\npool = \"nope\"\n")).unwrap();
    let (status, err) = run_tern(&["check", "--config", &bad.display().to_string()]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}:9: route pool 'nope' is not defined",
            bad.display()
        )),
        "{err}"
    );
}
