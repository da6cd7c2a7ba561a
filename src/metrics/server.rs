//! The metrics listener: one std thread, one connection at a time, one request per connection.
//!
//! It is strict and small on purpose: GET or HEAD only (405 otherwise), a request head of at
//! most 8 KiB (431) read within 2 s (408), then the answer and the close. It never touches a
//! worker: a scrape reads counters with relaxed loads. Keep it on loopback or a private
//! address; it has no authentication.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::exposition::Format;
use super::{Phase, State};

const MAX_HEAD: usize = 8 * 1024;
/// A scraper sends its request at once; a client slower than this holds the thread no longer.
const READ_TIME: Duration = Duration::from_secs(2);
const WRITE_TIME: Duration = Duration::from_secs(5);
/// How long a closed exchange waits for the client's own close (see `write_answer`).
const LINGER: Duration = Duration::from_millis(500);

/// The running listener thread. Dropping it asks the thread to stop; [`Server::shutdown`]
/// also waits for it.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` (already bound, so a bind failure is the caller's start-up error).
    pub fn start(listener: TcpListener, state: Arc<State>) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("tern-metrics".into())
            .spawn(move || accept_loop(listener, &shared, &flag))?;
        Ok(Server {
            addr,
            state,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server reads: the control thread records reloads in `state().process`.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops the thread and waits for it (at most one request's read and write times).
    pub fn shutdown(mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept; if this connect fails the thread is gone or stuck in a
        // request, and it sees the flag when that ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.signal_stop();
        }
    }
}

fn accept_loop(listener: TcpListener, state: &State, stop: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                if let Err(e) = serve(stream, state) {
                    tracing::debug!("metrics: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors or similar: pause rather than spin.
                tracing::debug!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// What one request is answered with.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    /// HEAD: the headers of the GET answer, no body.
    head_only: bool,
}

fn serve(mut stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIME))?;
    let answer = match read_head(&mut stream)? {
        Ok(head) => respond(&head, state),
        Err(status) => plain(status, reason(status)),
    };
    write_answer(&mut stream, &answer)
}

/// Reads until a whole request head is in; `Err(status)` for a head tern will not serve.
fn read_head(stream: &mut TcpStream) -> io::Result<Result<Vec<u8>, u16>> {
    let deadline = Instant::now() + READ_TIME;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err(408));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(io::Error::other("client closed before a whole request")),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Err(408))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        match httparse::Request::new(&mut headers).parse(&buf[..len]) {
            Ok(httparse::Status::Complete(end)) => {
                buf.truncate(end);
                return Ok(Ok(buf));
            }
            Ok(httparse::Status::Partial) if len == MAX_HEAD => return Ok(Err(431)),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Ok(Err(431)),
            Err(_) => return Ok(Err(400)),
        }
    }
}

/// The answer to a complete request head (parsed again: it is small and already checked).
fn respond(head: &[u8], state: &State) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return plain(400, "bad request\n");
    }
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return plain(405, "only GET and HEAD\n"),
    };
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let phase = state.health.phase();
    let mut answer = match path {
        "/metrics" => {
            let accept: Vec<&str> = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("accept"))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .collect();
            let accept = (!accept.is_empty()).then(|| accept.join(","));
            let format = Format::negotiate(accept.as_deref());
            Answer {
                status: 200,
                content_type: format.content_type(),
                body: state.render(format),
                head_only: false,
            }
        }
        "/healthz" => match phase {
            Phase::Draining => plain(503, "draining\n"),
            Phase::Starting | Phase::Ready => plain(200, "ok\n"),
        },
        "/readyz" => match phase {
            Phase::Ready => plain(200, "ready\n"),
            Phase::Starting => plain(503, "starting\n"),
            Phase::Draining => plain(503, "draining\n"),
        },
        _ => plain(404, "not found: try /metrics, /healthz or /readyz\n"),
    };
    answer.head_only = head_only;
    answer
}

fn plain(status: u16, body: &str) -> Answer {
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
        head_only: false,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_answer(stream: &mut TcpStream, a: &Answer) -> io::Result<()> {
    let allow = if a.status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    );
    if !a.head_only {
        out.push_str(&a.body);
    }
    stream.write_all(out.as_bytes())?;
    // Close gently: a close with unread input (the rest of an oversized head) would send a
    // reset that can destroy the answer before the client reads it. Send FIN, then read and
    // drop what the client still sends until it closes too (bounded in time and bytes).
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Health, Process};
    use crate::stats::Registry;
    use crate::tls::{certs::CertStore, TlsSettings};

    fn state() -> Arc<State> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["m.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ck = crate::tls::certs::from_der(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            &crate::tls::provider(),
        )
        .unwrap();
        let tls = TlsSettings::new(CertStore::single(ck));
        Arc::new(State {
            registry: Arc::new(Registry::new(1)),
            process: Process::new(1, false, &tls),
            health: Health::default(),
        })
    }

    fn start() -> (Server, Arc<State>) {
        let st = state();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        (Server::start(l, st.clone()).unwrap(), st)
    }

    /// Sends `request` raw; returns the status and the whole response.
    fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, out)
    }

    fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes(),
        )
    }

    #[test]
    fn serves_metrics_in_the_negotiated_format() {
        let (server, st) = start();
        st.registry.workers()[0].accepted.add(42);
        let (status, text) = get(server.local_addr(), "/metrics", "");
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(text.contains("\ntern_connections_accepted_total{worker=\"0\"} 42\n"));
        assert!(text.contains("tern_certificate_not_after_timestamp_seconds{cert=\"0\",names=\"m.example\",key_type=\"ecdsa\"}"));
        let body_len = text.split_once("\r\n\r\n").unwrap().1.len();
        assert!(text.contains(&format!("Content-Length: {body_len}\r\n")));

        let (status, om) = get(
            server.local_addr(),
            "/metrics?x=1",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
        );
        assert_eq!(status, 200);
        assert!(om.contains("Content-Type: application/openmetrics-text; version=1.0.0"));
        assert!(om.ends_with("# EOF\n"), "{om}");
        server.shutdown();
    }

    #[test]
    fn health_follows_the_phase() {
        let (server, st) = start();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/healthz", "").0, 200);
        let (status, body) = get(addr, "/readyz", "");
        assert_eq!(status, 503);
        assert!(body.ends_with("starting\n"));
        st.health.set_ready();
        assert_eq!(get(addr, "/readyz", "").0, 200);
        assert_eq!(get(addr, "/healthz", "").0, 200);
        st.health.set_draining();
        let (status, body) = get(addr, "/healthz", "");
        assert_eq!(status, 503);
        assert!(body.ends_with("draining\n"));
        assert_eq!(get(addr, "/readyz", "").0, 503);
        // Metrics are still served while draining.
        assert_eq!(get(addr, "/metrics", "").0, 200);
        server.shutdown();
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        let (server, _st) = start();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/", "").0, 404);
        assert_eq!(get(addr, "/metricsx", "").0, 404);
        let (status, text) = exchange(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status, 405);
        assert!(text.contains("Allow: GET, HEAD\r\n"));
        assert_eq!(
            exchange(addr, b"GET /metrics HTTP/1.1\r\nHo st: x\r\n\r\n").0,
            400
        );
        assert_eq!(exchange(addr, b"\x16\x03\x01\x00\x05hello\r\n\r\n").0, 400);
        let big = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(exchange(addr, big.as_bytes()).0, 431);
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
        assert_eq!(exchange(addr, req.as_bytes()).0, 431);
        // The server still answers after all that.
        assert_eq!(get(addr, "/healthz", "").0, 200);
        server.shutdown();
    }

    #[test]
    fn head_gets_the_headers_only() {
        let (server, _st) = start();
        let (status, text) = exchange(server.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, 200);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(body.is_empty(), "{body}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(len > 100, "Content-Length of the GET body: {len}");
        server.shutdown();
    }

    #[test]
    fn a_silent_client_gets_408_and_does_not_block_the_next() {
        let (server, _st) = start();
        let addr = server.local_addr();
        let mut silent = TcpStream::connect(addr).unwrap();
        silent.write_all(b"GET /metr").unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = String::new();
        silent.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert_eq!(get(addr, "/healthz", "").0, 200);
        server.shutdown();
    }
}
