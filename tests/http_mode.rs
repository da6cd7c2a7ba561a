//! http mode end to end: the real binary between a rustls client and a scriptable backend.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::{read_response, Response, TestBackend};
use common::*;
use rustls::version::TLS13;

type Client = BufReader<TlsStream>;

fn start(certs: &Certs, backends: &[SocketAddr], extra: &[&str]) -> Tern {
    let mut args = tern_args(certs, backends[0], &["--mode", "http"]);
    for b in &backends[1..] {
        args.push("--backend".into());
        args.push(b.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn client(tern: &Tern, certs: &Certs) -> Client {
    BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap())
}

fn send(c: &mut Client, raw: &[u8]) {
    c.get_mut().write_all(raw).unwrap();
    c.get_mut().flush().unwrap();
}

fn get(c: &mut Client, path: &str) -> Response {
    send(
        c,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    );
    read_response(c, false).unwrap()
}

/// A fresh connection, one raw request, its response.
fn once(tern: &Tern, certs: &Certs, raw: &[u8]) -> Response {
    let mut c = client(tern, certs);
    send(&mut c, raw);
    read_response(&mut c, false).unwrap()
}

#[test]
fn forwarding_headers_are_set_and_spoofed_ones_dropped() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let spoofed = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\nForwarded: for=6.6.6.6\r\n\r\n";
    let tern = start(&certs, &[b.addr], &[]);
    let seen = once(&tern, &certs, spoofed).text();
    assert!(seen.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("X-Forwarded-Proto: https\r\n"), "{seen}");
    assert!(
        !seen.contains("6.6.6.6") && !seen.contains("proto: http\r"),
        "{seen}"
    );

    let tern = start(&certs, &[b.addr], &["--trust-forwarded", "--forwarded"]);
    let seen = once(&tern, &certs, spoofed).text();
    assert!(
        seen.contains("X-Forwarded-For: 6.6.6.6, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(
        seen.contains("Forwarded: for=6.6.6.6, for=127.0.0.1;proto=https\r\n"),
        "{seen}"
    );
    assert!(seen.contains("X-Forwarded-Proto: https\r\n"), "{seen}");
}

#[test]
fn a_hundred_requests_on_one_connection() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    for i in 0..100 {
        let r = get(&mut c, &format!("/n/{}", 100 + i));
        assert_eq!((r.status, r.body.len()), (200, 100 + i));
        assert_eq!(r.body, pattern(100 + i, 1));
    }
    assert_eq!(b.requests().len(), 100);
}

#[test]
fn big_bodies_stream_through_with_bounded_memory() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let rss = |pid: i32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut c = client(&tern, &certs);
    get(&mut c, "/n/10"); // warm up
    let before = rss(tern.pid());
    // 32 MiB chunked upload.
    const UP: usize = 32 << 20;
    send(
        &mut c,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let data = pattern(1 << 20, 3);
    for _ in 0..UP / data.len() {
        send(&mut c, format!("{:x}\r\n", data.len()).as_bytes());
        send(&mut c, &data);
        send(&mut c, b"\r\n");
    }
    send(&mut c, b"0\r\n\r\n");
    let r = read_response(&mut c, false).unwrap();
    let sum: u64 = data.iter().map(|&b| b as u64).sum::<u64>() * (UP / data.len()) as u64;
    assert_eq!(r.text(), format!("{UP} {sum}"));
    // 32 MiB Content-Length download and a chunked one.
    let r = get(&mut c, &format!("/n/{}", 32 << 20));
    assert!(r.body == pattern(32 << 20, 1));
    let r = get(&mut c, &format!("/chunked/{}", 4 << 20));
    assert!(r.body == pattern(4 << 20, 2));
    let grown = rss(tern.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "tern grew by {grown} KiB moving 68 MiB");
}

#[test]
fn head_204_and_304_have_no_body_and_the_connection_goes_on() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    send(&mut c, b"HEAD /n/1000 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = read_response(&mut c, true).unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("1000")));
    for code in [204, 304] {
        let r = get(&mut c, &format!("/status/{code}"));
        assert_eq!((r.status, r.body.len()), (code, 0));
    }
    // Framing held: the next response on the same connection is intact.
    assert_eq!(get(&mut c, "/n/7").body, pattern(7, 1));
}

#[test]
fn expect_100_continue_is_passed_through() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    send(&mut c, b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    let mut blank = String::new();
    c.read_line(&mut blank).unwrap();
    send(&mut c, b"hello");
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(
        r.text(),
        format!("5 {}", b"hello".iter().map(|&b| b as u64).sum::<u64>())
    );
    // An HTTP/1.0 client is never sent a 1xx (RFC 9110 §15.2): its first line is the answer.
    let mut c = client(&tern, &certs);
    send(
        &mut c,
        b"POST /upload HTTP/1.0\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    let mut first = String::new();
    c.read_line(&mut first).unwrap();
    assert!(first.starts_with("HTTP/1.1 200 "), "{first:?}");
    let r = read_response(
        &mut std::io::Cursor::new(format!("{first}{}", {
            let mut rest = String::new();
            let _ = c.read_to_string(&mut rest);
            rest
        })),
        false,
    )
    .unwrap();
    assert!(r.text().starts_with("5 "), "{}", r.text());
}

#[test]
fn websocket_upgrade_then_echo() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    send(&mut c, b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n");
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    for i in 0..5 {
        let msg = pattern(1000 * (i + 1), i as u8);
        send(&mut c, &msg);
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert!(back == msg);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    send(&mut c, b"GET /n/3 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /name HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nabGET /n/5 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(read_response(&mut c, false).unwrap().body, pattern(3, 1));
    assert_eq!(read_response(&mut c, false).unwrap().text(), "A");
    assert_eq!(
        read_response(&mut c, false).unwrap().text(),
        format!("2 {}", b'a' as u64 + b'b' as u64)
    );
    assert_eq!(read_response(&mut c, false).unwrap().body, pattern(5, 1));
}

#[test]
fn smuggling_attempts_get_400_and_reach_no_backend() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let base = "POST /upload HTTP/1.1\r\nHost: localhost\r\n";
    for extra in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "Transfer-Encoding: gzip\r\n\r\n",
        "Content-Length : 5\r\n\r\nhello",
        "X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "X-Bad: a\0b\r\n\r\n",
        "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    ] {
        let r = once(&tern, &certs, format!("{base}{extra}").as_bytes());
        assert_eq!(r.status, 400, "{extra:?}");
        assert_eq!(r.header("connection"), Some("close"));
    }
    for raw in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\nHost: localhost\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        assert_eq!(
            once(&tern, &certs, raw).status,
            400,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert!(
        b.requests().is_empty(),
        "reached the backend: {:?}",
        b.requests()
    );
    // Meanwhile a good request on the same tern goes through.
    assert_eq!(get(&mut client(&tern, &certs), "/name").text(), "A");
}

#[test]
fn limits_give_414_431_and_413() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &["--max-body-bytes", "1000"]);
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "x".repeat(9000)
    );
    assert_eq!(once(&tern, &certs, long.as_bytes()).status, 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "y".repeat(33_000)
    );
    assert_eq!(once(&tern, &certs, big.as_bytes()).status, 431);
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n");
    assert_eq!(once(&tern, &certs, many.as_bytes()).status, 431);
    let r = once(
        &tern,
        &certs,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(b.requests().is_empty(), "{:?}", b.requests());
    // A chunked body that grows past the limit is stopped too.
    let mut c = client(&tern, &certs);
    send(
        &mut c,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..3 {
        let _ = c.get_mut().write_all(b"1f4\r\n");
        let _ = c.get_mut().write_all(&[b'z'; 500]);
        let _ = c.get_mut().write_all(b"\r\n");
    }
    let _ = c.get_mut().flush();
    // The lingering close lets the 413 arrive whole, not lost to a reset.
    let r = read_response(&mut c, false).expect("the 413 arrives");
    assert_eq!(r.status, 413);
}

#[test]
fn a_slow_request_head_gets_408_in_time() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &["--header-timeout", "500ms"]);
    let mut c = client(&tern, &certs);
    send(&mut c, b"GET / HTTP/1.1\r\nHost: local");
    let started = Instant::now();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Other connections are served meanwhile and after.
    assert_eq!(get(&mut client(&tern, &certs), "/name").text(), "A");
}

#[test]
fn a_trickled_tls_record_gets_408_in_time_too() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &["--header-timeout", "500ms"]);
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    // A whole request sealed into one record, of which all but the last bytes are sent:
    // tern has ciphertext but no plaintext yet.
    s.conn
        .writer()
        .write_all(b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut record = Vec::new();
    s.conn.write_tls(&mut record).unwrap();
    s.sock.write_all(&record[..record.len() - 5]).unwrap();
    let started = Instant::now();
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(b.requests().is_empty());
}

#[test]
fn dead_backend_502_failing_checks_503_and_slow_backend_504() {
    let certs = Certs::new();
    let tern = start(&certs, &[dead_addr()], &[]);
    assert_eq!(get(&mut client(&tern, &certs), "/").status, 502);
    // Resting, but the only one: it is tried again (and fails again).
    assert_eq!(get(&mut client(&tern, &certs), "/").status, 502);
    // Failing its active health check takes it out: nothing usable.
    let tern = start(
        &certs,
        &[dead_addr()],
        &["--health-check", "/hz", "--health-interval", "100ms"],
    );
    assert!(tern.wait_log("backend failed its health check", WAIT));
    assert_eq!(get(&mut client(&tern, &certs), "/").status, 503);
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &["--backend-timeout", "300ms"]);
    assert_eq!(get(&mut client(&tern, &certs), "/slow/2000").status, 504);
    assert_eq!(get(&mut client(&tern, &certs), "/name").status, 200);
}

#[test]
fn the_backend_timeout_counts_from_the_end_of_the_upload() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &["--backend-timeout", "400ms"]);
    let mut c = client(&tern, &certs);
    send(
        &mut c,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3000\r\n\r\n",
    );
    // The upload takes longer than the backend timeout; the backend answers as soon as it
    // has it all.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(350));
        send(&mut c, &[b'u'; 1000]);
    }
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("3000 {}", 3000 * b'u' as u64));
    // After the upload the timeout still holds.
    assert_eq!(get(&mut c, "/slow/2000").status, 504);
}

#[test]
fn a_head_near_the_limit_is_forwarded_whole_with_the_added_headers() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &["--forwarded"]);
    let mut c = client(&tern, &certs);
    // Just under the default 32 KiB limit as received; larger than that once tern adds
    // X-Forwarded-For/-Proto and Forwarded.
    let pad = 32 * 1024 - 110;
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nCookie: {}\r\nContent-Length: 5\r\n\r\nhello",
        "c".repeat(pad)
    );
    send(&mut c, raw.as_bytes());
    let seen = read_response(&mut c, false).unwrap();
    assert_eq!(seen.status, 200);
    let seen = seen.text();
    assert!(
        seen.contains(&format!("Cookie: {}\r\n", "c".repeat(pad))),
        "cookie cut"
    );
    assert!(
        seen.contains("Content-Length: 5\r\n"),
        "Content-Length lost"
    );
    assert!(seen.contains("X-Forwarded-For: 127.0.0.1\r\n"));
    assert!(seen.ends_with("\r\n\r\n"), "head not whole");
    // The body was the body, not a second request; the connection goes on.
    assert_eq!(get(&mut c, "/name").text(), "A");
    assert_eq!(b.requests(), ["POST /echo HTTP/1.1", "GET /name HTTP/1.1"]);
}

#[test]
fn requests_are_balanced_and_a_refusing_backend_is_skipped() {
    let certs = Certs::new();
    let (a, b, c) = (
        TestBackend::start("A"),
        TestBackend::start("B"),
        TestBackend::start("C"),
    );
    let tern = start(&certs, &[a.addr, b.addr, c.addr], &[]);
    let mut conn = client(&tern, &certs);
    let mut names: Vec<String> = (0..9).map(|_| get(&mut conn, "/name").text()).collect();
    names.sort();
    assert_eq!(names, ["A", "A", "A", "B", "B", "B", "C", "C", "C"]);
    let tern = start(&certs, &[dead_addr(), a.addr], &[]);
    let mut conn = client(&tern, &certs);
    for _ in 0..4 {
        assert_eq!(get(&mut conn, "/name").text(), "A");
    }
}

#[test]
fn a_backend_closing_its_kept_alive_connection_does_not_fail_the_next_request() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    for _ in 0..5 {
        assert_eq!(get(&mut c, "/oneshot").text(), "oneshot");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn routing_by_host_and_path_and_421_across_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let a = Certs::for_names(&["a.test"]);
    let b = Certs::for_names(&["b.test"]);
    let (web, api, other) = (
        TestBackend::start("web"),
        TestBackend::start("api"),
        TestBackend::start("other"),
    );
    let conf = dir.path().join("tern.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = [\"127.0.0.1:0\"]\n[[cert]]\npem = \"{}\"\n[[cert]]\npem = \"{}\"\n\
             [[pool]]\nname = \"web\"\nbackends = [\"{}\"]\n[[pool]]\nname = \"api\"\nbackends = [\"{}\"]\n\
             [[pool]]\nname = \"other\"\nbackends = [\"{}\"]\n\
             [[route]]\nhost = \"a.test\"\npool = \"web\"\n[[route]]\nhost = \"a.test\"\npath = \"/api/\"\npool = \"api\"\n\
             [[route]]\nhost = \"b.test\"\npool = \"other\"\n",
            a.pem.display(), b.pem.display(), web.addr, api.addr, other.addr
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let tern = Tern::start(&["--config", &conf, "--workers", "1", "--mode", "http"]);
    let conn_to = |certs: &Certs, name: &str| {
        let tcp = std::net::TcpStream::connect(tern.addr()).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let cfg = certs.client(&[&TLS13]);
        let c = rustls::ClientConnection::new(
            cfg,
            rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
        )
        .unwrap();
        BufReader::new(rustls::StreamOwned::new(c, tcp))
    };
    let ask = |c: &mut Client, host: &str, path: &str| {
        send(
            c,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        read_response(c, false).unwrap()
    };
    let mut ca = conn_to(&a, "a.test");
    assert_eq!(ask(&mut ca, "a.test", "/name").text(), "web");
    assert_eq!(ask(&mut ca, "A.TEST:443", "/api/v1/name").text(), "api");
    // b.test has its own certificate: asked on a.test's connection it is misdirected.
    let r = ask(&mut ca, "b.test", "/name");
    assert_eq!(r.status, 421);
    let mut cb = conn_to(&b, "b.test");
    assert_eq!(ask(&mut cb, "b.test", "/name").text(), "other");
    // A host no route covers.
    let mut cb = conn_to(&b, "b.test");
    assert_eq!(ask(&mut cb, "unknown.test", "/x").status, 421);
}

#[test]
fn an_access_log_line_per_request() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let log_s = log.display().to_string();
    let tern = start(&certs, &[b.addr], &["--access-log", &log_s]);
    let mut c = client(&tern, &certs);
    get(&mut c, "/n/123");
    get(&mut c, "/status/404");
    // A head refused before it parsed is logged too, with what its request line said.
    let refused = once(&tern, &certs, b"GET /bare-lf HTTP/1.1\nHost: localhost\n\n");
    assert_eq!(refused.status, 400);
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.lines().count() >= 3 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("\"GET localhost /n/123\" 200 123 backend="),
        "{text}"
    );
    // Two durations: until the backend's response head, and the whole request.
    let times: Vec<&str> = lines[0].rsplitn(3, ' ').take(2).collect();
    assert!(
        times
            .iter()
            .all(|t| t.ends_with("ms") && t.trim_end_matches("ms").parse::<f64>().is_ok()),
        "{text}"
    );
    assert!(
        lines[1].contains("\"GET localhost /status/404\" 404 "),
        "{text}"
    );
    assert!(
        lines[2].contains("\"GET - /bare-lf\" 400 0 backend=- -"),
        "{text}"
    );
}

#[test]
fn an_access_log_on_stdout_works_on_the_epoll_driver_and_ends_whole() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let args = tern_args(&certs, b.addr, &["--mode", "http", "--access-log", "-"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut tern = Tern::start_with(&args, &[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
    let mut c = client(&tern, &certs);
    for i in 0..20 {
        assert_eq!(get(&mut c, &format!("/n/{i}")).status, 200);
    }
    drop(c);
    // Stopped at once: the lines still buffered are written before the process exits.
    tern.signal(libc::SIGTERM);
    assert_eq!(tern.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    let log = tern.log_text();
    for i in 0..20 {
        assert!(
            tern.wait_log(&format!("\"GET localhost /n/{i}\" 200 {i} "), WAIT),
            "{log}"
        );
    }
    assert!(!log.contains("access log write failed"), "{log}");
}

#[test]
fn an_idempotent_request_is_retried_once_when_a_reused_connection_dies() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    assert_eq!(get(&mut c, "/flaky").text(), "flaky");
    // Goes out on the kept-alive connection, which dies unanswered: retried on a new one.
    assert_eq!(get(&mut c, "/flaky").text(), "flaky");
    assert_eq!(b.requests().len(), 3);
    // A POST is not repeated: the client gets 502.
    send(
        &mut c,
        b"POST /flaky HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    );
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 502);
}

#[test]
fn http_1_0_clients_get_keep_alive_when_they_ask() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &[]);
    let mut c = client(&tern, &certs);
    for _ in 0..3 {
        send(
            &mut c,
            b"GET /n/5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        );
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.body, pattern(5, 1));
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive")
        );
    }
    // Without keep-alive, HTTP/1.0 ends after one response.
    send(&mut c, b"GET /n/5 HTTP/1.0\r\n\r\n");
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn a_chunked_body_over_the_limit_counts_data_not_framing() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let tern = start(&certs, &[b.addr], &["--max-body-bytes", "100"]);
    // 100 data bytes in 100 one-byte chunks: 600+ bytes on the wire, within the limit.
    let mut body = String::new();
    for _ in 0..100 {
        body.push_str("1\r\nx\r\n");
    }
    body.push_str("0\r\n\r\n");
    let r = once(
        &tern,
        &certs,
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        )
        .as_bytes(),
    );
    assert_eq!(r.text(), format!("100 {}", 100 * b'x' as u64));
}
