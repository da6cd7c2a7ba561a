//! Backends on Unix sockets (`--backend unix:/path`), end to end and with the sandbox on (the
//! default): bytes both ways in tcp mode, keep-alive reuse in http mode, the PROXY header
//! naming the real client, TLS to a backend over a socket, health checks, a dead socket (502
//! or a closed connection, and the next request still served), refusals of bad paths, and a
//! reload switching a pool from TCP to a socket.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::http::{read_response, Response};
use common::pki::{Ca, EC};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tern::proxyproto::{self, Parsed};

/// What a socket backend saw.
#[derive(Default)]
struct Seen {
    /// Connections accepted.
    conns: AtomicUsize,
    /// Request lines with their Host header (`GET /x localhost`), in order.
    requests: Mutex<Vec<String>>,
    /// The PROXY header each connection started with, if it was asked to read one.
    proxy: Mutex<Vec<proxyproto::Header>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Echo,
    /// HTTP/1.1 kept alive; answers `NAME conn=N` (N counts connections from 1).
    Http(&'static str),
}

/// A blocking backend listening on `path`; each connection on a thread of its own.
struct SockBackend {
    path: PathBuf,
    seen: Arc<Seen>,
}

impl SockBackend {
    fn start(path: &Path, kind: Kind, proxy: bool) -> SockBackend {
        Self::start_with(path, kind, proxy, None)
    }

    fn start_with(
        path: &Path,
        kind: Kind,
        proxy: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> SockBackend {
        let listener = UnixListener::bind(path).unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                stream.set_read_timeout(Some(WAIT)).unwrap();
                stream.set_write_timeout(Some(WAIT)).unwrap();
                let id = s.conns.fetch_add(1, Ordering::SeqCst) + 1;
                let (s, tls) = (s.clone(), tls.clone());
                std::thread::spawn(move || handle(stream, id, kind, proxy, tls, &s));
            }
        });
        SockBackend {
            path: path.to_path_buf(),
            seen,
        }
    }

    fn arg(&self) -> String {
        format!("unix:{}", self.path.display())
    }

    fn conns(&self) -> usize {
        self.seen.conns.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.requests.lock().unwrap().clone()
    }
}

fn handle(
    mut s: UnixStream,
    id: usize,
    kind: Kind,
    proxy: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    seen: &Seen,
) {
    if proxy {
        match read_proxy(&mut s) {
            Some(h) => seen.proxy.lock().unwrap().push(h),
            None => return,
        }
    }
    match tls {
        None => serve(&mut s, id, kind, seen),
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            serve(&mut tls, id, kind, seen);
        }
    }
}

fn serve(s: &mut (impl Read + Write), id: usize, kind: Kind, seen: &Seen) {
    match kind {
        Kind::Echo => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).and_then(|_| s.flush()).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        Kind::Http(name) => {
            let mut r = BufReader::new(s);
            loop {
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_string());
                }
                let host = head
                    .iter()
                    .find_map(|l| l.strip_prefix("Host: ").or(l.strip_prefix("host: ")))
                    .unwrap_or("-");
                let line = head.first().map(String::as_str).unwrap_or("");
                let words: Vec<&str> = line.split(' ').collect();
                let req = format!("{} {} {host}", words[0], words.get(1).unwrap_or(&""));
                seen.requests.lock().unwrap().push(req);
                let body = format!("{name} conn={id}");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let out = r.get_mut();
                if out
                    .write_all(reply.as_bytes())
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Reads exactly a PROXY v1 or v2 header (v2: 16 bytes, then the length they give).
fn read_proxy(s: &mut UnixStream) -> Option<proxyproto::Header> {
    let mut buf = vec![0u8; 16];
    s.read_exact(&mut buf).ok()?;
    assert_eq!(&buf[..12], proxyproto::V2_SIGNATURE, "a v2 header first");
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    buf.resize(16 + len, 0);
    s.read_exact(&mut buf[16..]).ok()?;
    match proxyproto::parse(&buf) {
        Ok(Parsed::Header { len: n, header }) if n == buf.len() => Some(header),
        other => panic!("backend got a bad PROXY header: {other:?}"),
    }
}

fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// tern with one worker on 127.0.0.1:0 towards `backend` (as written), plus `extra`.
fn start(certs: &Certs, backend: &str, extra: &[&str]) -> Tern {
    start_env(certs, backend, extra, &[])
}

fn start_env(certs: &Certs, backend: &str, extra: &[&str], env: &[(&str, &str)]) -> Tern {
    let mut args: Vec<String> = ["--listen", "127.0.0.1:0", "--backend", backend]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--workers".into(), "1".into()]);
    args.extend(certs.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let tern = Tern::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), env);
    assert_sandboxed(&tern);
    tern
}

/// The sandbox is on by default: where the kernel has Landlock, tern says it is enforced, so
/// the connects these tests make ran confined.
fn assert_sandboxed(tern: &Tern) {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION (1) with a null attribute only asks the version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    if abi > 0 {
        let log = tern.log_text();
        assert!(
            log.contains("sandbox: Landlock") && log.contains("enforced"),
            "{log}"
        );
    }
}

fn get(s: &mut TlsStream, path: &str) -> Response {
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    s.flush().unwrap();
    read_response(&mut BufReader::new(s), false).unwrap()
}

fn echo_round(s: &mut TlsStream, data: &[u8]) {
    s.write_all(data).unwrap();
    s.flush().unwrap();
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    assert!(got == data, "echoed bytes differ");
}

#[test]
fn tcp_mode_moves_bytes_both_ways_through_a_unix_backend() {
    let dir = tempfile::tempdir().unwrap();
    let b = SockBackend::start(&dir.path().join("echo.sock"), Kind::Echo, false);
    let certs = Certs::new();
    let tern = start(&certs, &b.arg(), &["--access-log", "-"]);
    let mut s = connect(tern.addr(), &certs.client(rustls::DEFAULT_VERSIONS)).unwrap();
    // 256 KiB in 16 KiB rounds: many records each way, and never a full socket buffer.
    for (i, chunk) in pattern(256 * 1024, 7).chunks(16 * 1024).enumerate() {
        echo_round(&mut s, chunk);
        assert_eq!(b.conns(), 1, "round {i}: one backend connection");
    }
    // The client's close_notify becomes the backend's EOF, whose close comes back as ours.
    s.conn.send_close_notify();
    s.flush().unwrap();
    assert_eq!(read_to_end(&mut s).unwrap(), b"");
    // The connection's log line names the backend as written.
    let named = format!("backend={} up=262144 down=262144", b.arg());
    assert!(tern.wait_log(&named, WAIT), "{}", tern.log_text());
}

#[test]
fn http_mode_reuses_a_kept_alive_unix_backend_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = SockBackend::start(&dir.path().join("app.sock"), Kind::Http("app"), false);
    let certs = Certs::new();
    let tern = start(&certs, &b.arg(), &["--mode", "http"]);
    let cfg = certs.client(rustls::DEFAULT_VERSIONS);
    let mut one = connect(tern.addr(), &cfg).unwrap();
    for _ in 0..3 {
        let r = get(&mut one, "/a");
        assert_eq!((r.status, r.text()), (200, "app conn=1".to_string()));
    }
    drop(one);
    // A later client takes the same kept-alive connection.
    let mut two = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut two, "/b").text(), "app conn=1");
    assert_eq!(b.conns(), 1, "{}", tern.log_text());
    assert_eq!(b.requests().len(), 4);
    let pool = format!("backends=[\"{}\"]", b.arg());
    assert!(tern.log_text().contains(&pool), "{}", tern.log_text());
}

#[test]
fn proxy_v2_over_a_unix_socket_names_the_real_client() {
    let dir = tempfile::tempdir().unwrap();
    let b = SockBackend::start(&dir.path().join("pp.sock"), Kind::Echo, true);
    let certs = Certs::new();
    let tern = start(&certs, &b.arg(), &["--proxy-protocol", "v2"]);
    let mut s = connect(tern.addr(), &certs.client(rustls::DEFAULT_VERSIONS)).unwrap();
    let me = s.sock.local_addr().unwrap();
    echo_round(&mut s, b"hello");
    let seen = b.seen.proxy.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].command, proxyproto::Command::Proxy);
    let a = seen[0]
        .addrs
        .expect("the client's addresses, not the socket's");
    assert_eq!((a.src, a.dst), (me, tern.addr()));
    assert_eq!(seen[0].tlvs.authority.as_deref(), Some("localhost"));
}

#[test]
fn tls_to_a_unix_backend_checks_the_name_given_by_backend_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let leaf = ca.leaf(dir.path(), "app", &["app.internal"], EC);
    let cfg = server_config(&leaf.cert, &leaf.key);
    let b = SockBackend::start_with(
        &dir.path().join("tls.sock"),
        Kind::Http("tls"),
        false,
        Some(cfg),
    );
    let certs = Certs::new();
    let ca_path = ca.pem_path().display().to_string();
    let tls = ["--backend-tls", "--backend-ca", &ca_path, "--mode", "http"];
    let good = [&tls[..], &["--backend-sni", "app.internal"]].concat();
    let tern = start(&certs, &b.arg(), &good);
    let mut s = connect(tern.addr(), &certs.client(rustls::DEFAULT_VERSIONS)).unwrap();
    let r = get(&mut s, "/x");
    assert_eq!((r.status, r.text()), (200, "tls conn=1".to_string()));
    drop((s, tern));
    // A name the certificate is not for: nothing reaches the backend.
    let wrong = [&tls[..], &["--backend-sni", "other.internal"]].concat();
    let tern = start(&certs, &b.arg(), &wrong);
    let mut s = connect(tern.addr(), &certs.client(rustls::DEFAULT_VERSIONS)).unwrap();
    assert_eq!(get(&mut s, "/y").status, 502);
    assert_eq!(b.requests().len(), 1, "{}", tern.log_text());
    // No name at all: refused at start-up, saying which flag gives one.
    let arg = b.arg();
    let mut args = vec!["--listen", "127.0.0.1:0", "--backend", &arg];
    args.extend(tls);
    let certs_args = certs.args();
    args.extend(certs_args.iter().map(String::as_str));
    let (status, err) = run_tern(&args);
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&b.arg()) && err.contains("--backend-sni"),
        "{err}"
    );
}

#[test]
fn health_checks_reach_a_unix_backend_as_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let b = SockBackend::start(&dir.path().join("hc.sock"), Kind::Http("hc"), false);
    let certs = Certs::new();
    let tern = start(
        &certs,
        &b.arg(),
        &[
            "--mode",
            "http",
            "--health-check",
            "/healthz",
            "--health-interval",
            "100ms",
        ],
    );
    let deadline = std::time::Instant::now() + WAIT;
    while b.requests().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let seen = b.requests();
    assert!(seen.len() >= 2, "{seen:?}\n{}", tern.log_text());
    assert_eq!(seen[0], "GET /healthz localhost");
    let mut s = connect(tern.addr(), &certs.client(rustls::DEFAULT_VERSIONS)).unwrap();
    assert_eq!(get(&mut s, "/after").status, 200);
}

#[test]
fn a_dead_socket_is_502_in_http_mode_and_the_next_request_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    // A socket file nobody listens on (its listener is gone): connection refused.
    drop(UnixListener::bind(&path).unwrap());
    let certs = Certs::new();
    let arg = format!("unix:{}", path.display());
    let tern = start(&certs, &arg, &["--mode", "http"]);
    let cfg = certs.client(rustls::DEFAULT_VERSIONS);
    let mut s = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut s, "/").status, 502);
    // No file at all.
    std::fs::remove_file(&path).unwrap();
    let mut s = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut s, "/").status, 502);
    // The backend comes up: the very next request reaches it, the worker alive and well.
    let b = SockBackend::start(&path, Kind::Http("up"), false);
    let mut s = connect(tern.addr(), &cfg).unwrap();
    let r = get(&mut s, "/");
    assert_eq!((r.status, r.text()), (200, "up conn=1".to_string()));
    assert_eq!(b.conns(), 1);
}

#[test]
fn a_dead_socket_closes_the_client_in_tcp_mode_and_the_next_connection_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let certs = Certs::new();
    let arg = format!("unix:{}", path.display());
    let tern = start(&certs, &arg, &[]);
    let cfg = certs.client(rustls::DEFAULT_VERSIONS);
    let mut s = connect(tern.addr(), &cfg).unwrap();
    let _ = s.write_all(b"anyone?");
    let _ = s.flush();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "closed without a byte: {got:?}");
    let b = SockBackend::start(&path, Kind::Echo, false);
    let mut s = connect(tern.addr(), &cfg).unwrap();
    echo_round(&mut s, b"now");
    assert_eq!(b.conns(), 1, "{}", tern.log_text());
}

#[test]
fn bad_unix_backends_are_refused_in_one_line_naming_the_flag_or_the_line() {
    let certs = Certs::new();
    let cert_args = certs.args();
    for (backend, why) in [
        ("unix:app.sock", "absolute"),
        ("unix:", "empty"),
        ("unix:./run/app.sock", "absolute"),
    ] {
        let mut args = vec!["--listen", "127.0.0.1:0", "--backend", backend];
        args.extend(cert_args.iter().map(String::as_str));
        let (status, err) = run_tern(&args);
        assert_eq!(status.code(), Some(2), "{backend}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("--backend {backend}:")) && err.contains(why),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("tern.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = [\"127.0.0.1:0\"]\n[[cert]]\npem = \"{}\"\n[[pool]]\nname = \"p\"\n\
             backends = [\"unix:run/app.sock\"]\n[[route]]\npool = \"p\"\n",
            certs.pem.display()
        ),
    )
    .unwrap();
    let (status, err) = run_tern(&["--config", &conf.display().to_string()]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("tern.toml:6") && err.contains("absolute"),
        "{err}"
    );
}

#[test]
fn sighup_switches_a_pool_from_a_tcp_backend_to_a_unix_one() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = common::http::TestBackend::start("tcp");
    let sock = SockBackend::start(&dir.path().join("new.sock"), Kind::Http("unix"), false);
    let certs = Certs::new();
    let conf = dir.path().join("tern.toml");
    let write = |backend: &str| {
        std::fs::write(
            &conf,
            format!(
                "listen = [\"127.0.0.1:0\"]\n[[cert]]\npem = \"{}\"\n[[pool]]\nname = \"p\"\n\
                 backends = [\"{backend}\"]\n[[route]]\npool = \"p\"\n",
                certs.pem.display()
            ),
        )
        .unwrap()
    };
    write(&tcp.addr.to_string());
    let conf_arg = conf.display().to_string();
    let tern = Tern::start(&["--config", &conf_arg, "--workers", "1", "--mode", "http"]);
    assert_sandboxed(&tern);
    let cfg = certs.client(rustls::DEFAULT_VERSIONS);
    let mut before = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut before, "/name").text(), "tcp");
    write(&sock.arg());
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reloaded", WAIT), "{}", tern.log_text());
    let mut after = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut after, "/name").text(), "unix conn=1");
    // The connection from before keeps its generation's pool.
    assert_eq!(get(&mut before, "/name").text(), "tcp");
}

#[test]
fn the_epoll_driver_reaches_unix_backends_too() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    let cfg = certs.client(rustls::DEFAULT_VERSIONS);
    let legacy = [("MONOIO_FORCE_LEGACY_DRIVER", "1")];
    // http mode: a missing socket, then a live one kept alive.
    let path = dir.path().join("http.sock");
    let arg = format!("unix:{}", path.display());
    let tern = start_env(&certs, &arg, &["--mode", "http"], &legacy);
    assert!(
        tern.log_text().contains("driver=Legacy"),
        "{}",
        tern.log_text()
    );
    let mut s = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut s, "/").status, 502);
    let b = SockBackend::start(&path, Kind::Http("epoll"), false);
    let mut s = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut s, "/").text(), "epoll conn=1");
    assert_eq!(get(&mut s, "/").text(), "epoll conn=1");
    assert_eq!(b.conns(), 1);
    // tcp mode: bytes both ways.
    let e = SockBackend::start(&dir.path().join("echo.sock"), Kind::Echo, false);
    let tern = start_env(&certs, &e.arg(), &[], &legacy);
    let mut s = connect(tern.addr(), &cfg).unwrap();
    for chunk in pattern(64 * 1024, 3).chunks(8 * 1024) {
        echo_round(&mut s, chunk);
    }
}
