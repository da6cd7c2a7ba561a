//! The front door end to end: `--accept-proxy` with v1, v2 (TLVs), LOCAL and refused headers,
//! the carried address in X-Forwarded-For, the access log and ip-hash; `--allow` / `--deny` in
//! both modes (on the socket's address and on the PROXY header's); `--proxy-from`;
//! `--max-conns-per-ip`; and HAProxy in front with `send-proxy-v2`.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http::{read_response, TestBackend};
use common::scrape::{metrics_addr, scrape, sum, wait_for};
use common::*;
use rustls::version::TLS13;

const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn v1(src: &str, sport: u16) -> Vec<u8> {
    let fam = if src.contains(':') { "TCP6" } else { "TCP4" };
    let dst = if src.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    format!("PROXY {fam} {src} {dst} {sport} 443\r\n").into_bytes()
}

/// A v2 PROXY header for TCP over IPv6 with ALPN, AUTHORITY and NOOP TLVs.
fn v2_tcp6(src: Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&src.octets());
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&sport.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    for (t, v) in [
        (0x01u8, &b"http/1.1"[..]),
        (0x02, b"localhost"),
        (0x04, b"\0\0\0"),
    ] {
        body.push(t);
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
    }
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x21]);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// A v2 LOCAL header (a balancer's health check), with an address block it must ignore.
fn v2_local() -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x20, 0x11, 0, 12]);
    h.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2, 0, 1, 0, 2]);
    h
}

/// The TLS handshake over a connected socket.
fn handshake(
    tcp: TcpStream,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream> {
    tls_over(tcp, cfg, "localhost")
}

/// Connects, sends `header`, then does the handshake.
fn proxied(addr: SocketAddr, certs: &Certs, header: &[u8]) -> std::io::Result<TlsStream> {
    let mut tcp = TcpStream::connect_timeout(&addr, WAIT)?;
    tcp.write_all(header)?;
    handshake(tcp, &certs.client(&[&TLS13]))
}

/// GET `path` on a kept-alive connection; the response body.
fn get(s: &mut TlsStream, path: &str) -> String {
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    s.flush().unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text()
}

/// The X-Forwarded-For the backend received, from its echo of the request head.
fn forwarded_for(s: &mut TlsStream) -> String {
    let head = get(s, "/echo");
    head.lines()
        .find_map(|l| l.strip_prefix("X-Forwarded-For: "))
        .unwrap_or_else(|| panic!("no X-Forwarded-For in {head}"))
        .trim()
        .to_string()
}

/// Whether tern closed the connection (EOF or reset) after it was sent `bytes`, reading
/// until then; `half_close` also ends the sending side.
fn closed_after(addr: SocketAddr, bytes: &[u8], half_close: bool) -> bool {
    let mut tcp = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(bytes).unwrap();
    if half_close {
        tcp.shutdown(Shutdown::Write).unwrap();
    }
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => true,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        Ok(_) => false,
    }
}

fn http_tern(certs: &Certs, backend: SocketAddr, extra: &[&str]) -> Tern {
    let mut args = vec!["--mode", "http", "--metrics", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    start_tern(certs, backend, &args)
}

#[test]
fn proxy_headers_carry_the_client_address_and_bad_ones_are_refused() {
    let certs = Certs::new();
    let backend = TestBackend::start("b");
    let tern = http_tern(
        &certs,
        backend.addr,
        &["--accept-proxy", "--proxy-timeout", "300ms"],
    );
    let (addr, metrics) = (tern.addr(), metrics_addr(&tern));

    let mut s = proxied(addr, &certs, &v1("203.0.113.7", 5555)).unwrap();
    assert_eq!(forwarded_for(&mut s), "203.0.113.7");
    assert_eq!(
        forwarded_for(&mut s),
        "203.0.113.7",
        "kept for the connection"
    );
    let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let mut s = proxied(addr, &certs, &v2_tcp6(src, 6666)).unwrap();
    assert_eq!(forwarded_for(&mut s), "2001:db8::7");
    // LOCAL: the socket's own address.
    let mut s = proxied(addr, &certs, &v2_local()).unwrap();
    assert_eq!(forwarded_for(&mut s), "127.0.0.1");
    assert_eq!(
        sum(&scrape(metrics), "tern_proxy_header_refused_total", &[]),
        0
    );

    // Refused: each closed, counted, and the next good connection works.
    let refusals: [(&str, Vec<u8>, bool); 5] = [
        (
            "bad",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 99999\r\n".to_vec(),
            false,
        ),
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec(), false),
        ("truncated v2", v2_tcp6(src, 1)[..20].to_vec(), true),
        ("truncated v1", b"PROXY TCP4 203.0.113.7 ".to_vec(), true),
        (
            "slow (past --proxy-timeout)",
            b"PROXY TCP4 203.0".to_vec(),
            false,
        ),
    ];
    for (n, (what, bytes, half_close)) in refusals.iter().enumerate() {
        assert!(closed_after(addr, bytes, *half_close), "{what}: not closed");
        wait_for(metrics, "tern_proxy_header_refused_total", n as u64 + 1);
        let mut s = proxied(addr, &certs, &v1("198.51.100.1", 1)).unwrap();
        assert_eq!(forwarded_for(&mut s), "198.51.100.1", "after {what}");
    }
    // Missing: the client starts TLS at once, and its ClientHello is not a PROXY header.
    let tcp = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    assert!(handshake(tcp, &certs.client(&[&TLS13])).is_err());
    wait_for(metrics, "tern_proxy_header_refused_total", 6);
    let mut s = proxied(addr, &certs, &v1("198.51.100.2", 1)).unwrap();
    assert_eq!(forwarded_for(&mut s), "198.51.100.2");
    // Refused before any handshake: none failed, and nothing reached the backend for them.
    let text = scrape(metrics);
    assert_eq!(
        sum(&text, "tern_tls_handshakes_total", &["result=\"failed\""]),
        0
    );
}

#[test]
fn the_carried_address_is_in_the_access_log() {
    let certs = Certs::new();
    let backend = TestBackend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let tern = http_tern(
        &certs,
        backend.addr,
        &["--accept-proxy", "--access-log", log.to_str().unwrap()],
    );
    let mut s = proxied(tern.addr(), &certs, &v1("203.0.113.99", 4242)).unwrap();
    get(&mut s, "/name");
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("/name")) {
            // The client field follows the timestamp.
            assert_eq!(line.split(' ').nth(1), Some("203.0.113.99:4242"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "no access log line:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With ip-hash, the PROXY source decides the backend: one socket address (127.0.0.1) reaches
/// both backends, and each carried address always the same one.
#[test]
fn ip_hash_follows_the_carried_address() {
    let certs = Certs::new();
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let b_addr = b.addr.to_string();
    let tern = http_tern(
        &certs,
        a.addr,
        &[
            "--accept-proxy",
            "--backend",
            &b_addr,
            "--balance",
            "ip-hash",
        ],
    );
    let mut seen = std::collections::HashMap::new();
    for i in 1..=40u8 {
        let src = format!("198.51.100.{i}");
        let mut first = None;
        for _ in 0..3 {
            let mut s = proxied(tern.addr(), &certs, &v1(&src, 1000 + u16::from(i))).unwrap();
            let name = get(&mut s, "/name");
            assert_eq!(*first.get_or_insert(name.clone()), name, "{src} moved");
        }
        *seen.entry(first.unwrap()).or_insert(0) += 1;
        if seen.len() == 2 && i >= 8 {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "one socket address should reach both backends: {seen:?}"
    );
}

#[test]
fn deny_and_allow_on_the_socket_address_in_tcp_mode() {
    let certs = Certs::new();
    let backend = echo_backend();
    let cfg = certs.client(&[&TLS13]);
    let tern = start_tern(
        &certs,
        backend,
        &["--deny", "127.0.0.0/8", "--metrics", "127.0.0.1:0"],
    );
    assert!(connect(tern.addr(), &cfg).is_err(), "127.0.0.1 is denied");
    wait_for(metrics_addr(&tern), "tern_connections_denied_total", 1);
    drop(tern);

    let tern = start_tern(&certs, backend, &["--allow", "127.0.0.1/32"]);
    let mut s = connect(tern.addr(), &cfg).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    drop(tern);

    // An allow list without the client's address lets it not in.
    let tern = start_tern(
        &certs,
        backend,
        &[
            "--allow",
            "10.0.0.0/8",
            "--allow",
            "::1/128",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    assert!(connect(tern.addr(), &cfg).is_err());
    wait_for(metrics_addr(&tern), "tern_connections_denied_total", 1);
}

#[test]
fn deny_and_allow_on_the_carried_address_in_http_mode() {
    let certs = Certs::new();
    let backend = TestBackend::start("b");
    let tern = http_tern(
        &certs,
        backend.addr,
        &[
            "--accept-proxy",
            "--allow",
            "198.51.100.0/24",
            "--allow",
            "2001:db8::/32",
            "--deny",
            "198.51.100.128/25",
            "--deny",
            "2001:db8:bad::/48",
            // The socket's own address is checked against --proxy-from, not these.
            "--deny",
            "127.0.0.0/8",
        ],
    );
    let (addr, metrics) = (tern.addr(), metrics_addr(&tern));
    let ok = |header: Vec<u8>, want: &str| {
        let mut s = proxied(addr, &certs, &header).unwrap();
        assert_eq!(forwarded_for(&mut s), want);
    };
    ok(v1("198.51.100.5", 1), "198.51.100.5");
    ok(v1("198.51.100.127", 1), "198.51.100.127");
    ok(
        v2_tcp6("2001:db8:1::1".parse().unwrap(), 1),
        "2001:db8:1::1",
    );
    // A v4-mapped source in a TCP6 header is the IPv4 client it names.
    ok(v1("::ffff:198.51.100.9", 1), "198.51.100.9");
    let mut denied = 0;
    for header in [
        v1("198.51.100.128", 1),                        // deny /25, first address
        v1("198.51.100.255", 1),                        // deny /25, last address
        v1("203.0.113.1", 1),                           // not allowed
        v1("::ffff:198.51.100.200", 1),                 // mapped, denied as IPv4
        v2_tcp6("2001:db8:bad::1".parse().unwrap(), 1), // deny /48
        v2_tcp6("2001:db9::1".parse().unwrap(), 1),     // not allowed
        v2_local(),                                     // LOCAL: the socket's 127.0.0.1
    ] {
        assert!(
            proxied(addr, &certs, &header).is_err(),
            "{:?}",
            String::from_utf8_lossy(&header)
        );
        denied += 1;
        wait_for(metrics, "tern_connections_denied_total", denied);
    }
    ok(v1("198.51.100.6", 1), "198.51.100.6");
}

#[test]
fn proxy_headers_only_from_trusted_peers() {
    let certs = Certs::new();
    let backend = TestBackend::start("b");
    let tern = http_tern(
        &certs,
        backend.addr,
        &["--accept-proxy", "--proxy-from", "10.0.0.0/8"],
    );
    let metrics = metrics_addr(&tern);
    assert!(proxied(tern.addr(), &certs, &v1("198.51.100.5", 1)).is_err());
    wait_for(metrics, "tern_connections_denied_total", 1);
    assert_eq!(
        sum(&scrape(metrics), "tern_proxy_header_refused_total", &[]),
        0
    );
    drop(tern);
    let tern = http_tern(
        &certs,
        backend.addr,
        &["--accept-proxy", "--proxy-from", "127.0.0.1/32"],
    );
    let mut s = proxied(tern.addr(), &certs, &v1("198.51.100.5", 1)).unwrap();
    assert_eq!(forwarded_for(&mut s), "198.51.100.5");
}

/// Opens connections until one is refused; the established ones are returned.
fn fill(addr: SocketAddr, certs: &Certs, header: &dyn Fn() -> Vec<u8>, n: usize) -> Vec<TlsStream> {
    (0..n)
        .map(|i| {
            let mut s = proxied(addr, certs, &header()).unwrap_or_else(|e| panic!("conn {i}: {e}"));
            get(&mut s, "/name");
            s
        })
        .collect()
}

#[test]
fn connections_per_ip_are_limited_per_worker() {
    let certs = Certs::new();
    let backend = TestBackend::start("b");
    let tern = http_tern(
        &certs,
        backend.addr,
        &["--accept-proxy", "--max-conns-per-ip", "3"],
    );
    let (addr, metrics) = (tern.addr(), metrics_addr(&tern));
    let a = || v1("198.51.100.1", 1);
    let mut open = fill(addr, &certs, &a, 3);
    assert!(
        proxied(addr, &certs, &a()).is_err(),
        "a fourth from one address"
    );
    wait_for(metrics, "tern_connections_refused_per_ip_total", 1);
    // Another client has its own count, and IPv6 clients count per /64.
    let b = fill(addr, &certs, &|| v1("198.51.100.2", 1), 3);
    let v6 = |host: &str| v2_tcp6(format!("2001:db8:0:1::{host}").parse().unwrap(), 1);
    let c = fill(addr, &certs, &|| v6("1"), 2);
    let c3 = fill(addr, &certs, &|| v6("2"), 1);
    assert!(proxied(addr, &certs, &v6("3")).is_err(), "the same /64");
    wait_for(metrics, "tern_connections_refused_per_ip_total", 2);
    // Closing one lets another in, once tern has seen the close.
    let mut s = open.pop().unwrap();
    s.conn.send_close_notify();
    let _ = s.conn.complete_io(&mut s.sock);
    drop(s);
    let deadline = Instant::now() + WAIT;
    let again = loop {
        match proxied(addr, &certs, &a()) {
            Ok(mut s) => {
                get(&mut s, "/name");
                break s;
            }
            Err(e) => assert!(Instant::now() < deadline, "never let in again: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop((open, again, b, c, c3));
}

/// Without PROXY headers the socket's own address is counted (tcp mode, one worker).
#[test]
fn connections_per_ip_in_tcp_mode() {
    let certs = Certs::new();
    let backend = echo_backend();
    let cfg = certs.client(&[&TLS13]);
    let tern = start_tern(
        &certs,
        backend,
        &["--max-conns-per-ip", "2", "--metrics", "127.0.0.1:0"],
    );
    let ping = |s: &mut TlsStream| {
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    };
    let mut one = connect(tern.addr(), &cfg).unwrap();
    let mut two = connect(tern.addr(), &cfg).unwrap();
    ping(&mut one);
    ping(&mut two);
    assert!(connect(tern.addr(), &cfg).is_err());
    wait_for(
        metrics_addr(&tern),
        "tern_connections_refused_per_ip_total",
        1,
    );
    // A second loopback address is another client.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect_timeout(&tern.addr().into(), WAIT).unwrap();
    let mut other = handshake(sock.into(), &cfg).unwrap();
    ping(&mut other);
}

/// HAProxy in `mode tcp` with `send-proxy-v2` (and its CRC32C and unique-id TLVs) in front:
/// the client's own address, not HAProxy's, reaches the backend.
#[test]
fn haproxy_in_front_with_send_proxy_v2() {
    if !common::haproxy::available() {
        return;
    }
    let certs = Certs::new();
    let backend = TestBackend::start("b");
    let tern = http_tern(
        &certs,
        backend.addr,
        &["--accept-proxy", "--proxy-from", "127.0.0.1/32"],
    );
    let haproxy = common::haproxy::HaProxy::start(
        "  unique-id-format %ci:%cp_%Ts\n",
        &format!(
            "backend t\n  server tern {} send-proxy-v2 proxy-v2-options crc32c,unique-id\n",
            tern.addr()
        ),
    );
    let front_addr = haproxy.addr;
    let cfg = certs.client(&[&TLS13]);
    // From 127.0.0.2: HAProxy connects to tern from 127.0.0.1, so only the header can say .2.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect_timeout(&front_addr.into(), WAIT).unwrap();
    let mut s = handshake(sock.into(), &cfg).unwrap();
    assert_eq!(forwarded_for(&mut s), "127.0.0.2");
    assert_eq!(forwarded_for(&mut s), "127.0.0.2");
    let metrics = metrics_addr(&tern);
    assert_eq!(
        sum(&scrape(metrics), "tern_proxy_header_refused_total", &[]),
        0
    );
    drop(s);
    drop(haproxy);
}

/// The lists live in the generation: a reload changes them for new connections, and the
/// listener keeps its socket.
#[test]
fn a_reload_changes_a_listeners_lists() {
    let certs = Certs::new();
    let backend = echo_backend();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("tern.toml");
    let write = |deny: &str| {
        std::fs::write(
            &conf,
            format!(
                "[[listener]]\naddr = \"127.0.0.1:0\"\ndeny = [{deny}]\n\
                 [[cert]]\ncert = \"{}\"\nkey = \"{}\"\n\
                 [[pool]]\nname = \"p\"\nbackends = [\"{backend}\"]\n",
                certs.cert.display(),
                certs.key.display()
            ),
        )
        .unwrap();
    };
    write("\"127.0.0.0/8\"");
    let tern = Tern::start(&["--config", conf.to_str().unwrap(), "--workers", "1"]);
    let cfg = certs.client(&[&TLS13]);
    assert!(connect(tern.addr(), &cfg).is_err(), "denied at first");
    write("\"10.0.0.0/8\"");
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reloaded", WAIT), "{}", tern.log_text());
    let mut s = connect(tern.addr(), &cfg).expect("let in after the reload");
    s.write_all(b"ok").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ok");
}
