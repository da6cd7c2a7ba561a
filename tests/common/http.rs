//! A scriptable HTTP/1.1 backend and a small client-side response reader for the http-mode
//! tests. Blocking std I/O with timeouts; every request line the backend receives is recorded
//! so a test can assert that a refused request never reached it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{backend, pattern};

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// Reads one response from `r`; `head_request` when it answers a HEAD.
pub fn read_response(r: &mut impl BufRead, head_request: bool) -> std::io::Result<Response> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no response",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let headers = read_headers(r)?;
        if (100..200).contains(&status) && status != 101 {
            continue; // interim
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || status == 101 {
            return Ok(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            resp.body = read_chunked(r)?;
        } else if let Some(n) = resp.header("content-length") {
            let n: usize = n.trim().parse().map_err(std::io::Error::other)?;
            resp.body = vec![0; n];
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

fn read_headers(r: &mut impl BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(headers);
        }
        let (n, v) = line.split_once(':').unwrap_or((line, ""));
        headers.push((n.to_string(), v.trim().to_string()));
    }
}

pub fn read_chunked(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(std::io::Error::other)?;
        if n == 0 {
            read_headers(r)?; // trailers
            return Ok(body);
        }
        let at = body.len();
        body.resize(at + n, 0);
        r.read_exact(&mut body[at..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// The scriptable backend. Paths:
/// `/echo` → the request head it received as the body; `/n/N` → N pattern bytes with
/// Content-Length; `/chunked/N` → N bytes chunked; `/status/S` → status S (204/304 without
/// body); `/upload` → reads the body (length or chunked), answers `LEN SUM`; `/slow/MS` →
/// waits MS ms first; `/ws` → 101 then echo; `/name` → its name; `/close` → answers then
/// closes (Connection: close); `/flaky` → answered once per connection, a second request
/// on the same connection is dropped unanswered. Any path ending in `/name` answers with the name.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl TestBackend {
    pub fn start(name: &'static str) -> TestBackend {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let addr = backend(move |s| serve(s, name, &log));
        TestBackend { addr, seen }
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(s: TcpStream, name: &str, seen: &Mutex<Vec<String>>) {
    let mut out = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut served = 0;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let request_line = head.lines().next().unwrap_or("").to_string();
        seen.lock().unwrap().push(request_line.clone());
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let expects = headers
            .get("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects && out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return;
        }
        let body = if headers.contains_key("transfer-encoding") {
            read_chunked(&mut r).unwrap_or_default()
        } else if let Some(n) = headers
            .get("content-length")
            .and_then(|n| n.parse::<usize>().ok())
        {
            let mut b = vec![0; n];
            if r.read_exact(&mut b).is_err() {
                return;
            }
            b
        } else {
            Vec::new()
        };
        served += 1;
        if path == "/flaky" && served > 1 {
            // Takes a second request on a kept-alive connection, then drops it unanswered.
            return;
        }
        let seg: Vec<&str> = path.split('/').collect();
        let head_only = method == "HEAD";
        let mut close = false;
        let first = if path.ends_with("/name") {
            "name"
        } else {
            seg.get(1).copied().unwrap_or("")
        };
        let reply: Vec<u8> = match first {
            "echo" => plain(200, head.as_bytes(), head_only),
            "name" => plain(200, name.as_bytes(), head_only),
            "flaky" => plain(200, b"flaky", head_only),
            "n" => plain(200, &pattern(seg[2].parse().unwrap_or(0), 1), head_only),
            "chunked" => {
                let data = pattern(seg[2].parse().unwrap_or(0), 2);
                let mut v = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for c in data.chunks(7000) {
                    v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    v.extend_from_slice(c);
                    v.extend_from_slice(b"\r\n");
                }
                v.extend_from_slice(b"0\r\n\r\n");
                v
            }
            "status" => {
                let code: u16 = seg[2].parse().unwrap_or(500);
                if code == 204 || code == 304 {
                    format!("HTTP/1.1 {code} X\r\nETag: \"e\"\r\n\r\n").into_bytes()
                } else {
                    plain(code, b"status", head_only)
                }
            }
            "upload" => {
                let sum: u64 = body.iter().map(|&b| b as u64).sum();
                plain(200, format!("{} {sum}", body.len()).as_bytes(), head_only)
            }
            "slow" => {
                std::thread::sleep(Duration::from_millis(seg[2].parse().unwrap_or(0)));
                plain(200, b"slow", head_only)
            }
            "oneshot" => {
                // Answers as if the connection stays open, then closes it anyway.
                close = true;
                plain(200, b"oneshot", head_only)
            }
            "close" => {
                close = true;
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nclose".to_vec()
            }
            "ws" => {
                let _ = out.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if out.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            _ => plain(404, b"no such test path", head_only),
        };
        if out.write_all(&reply).is_err() || close {
            return;
        }
    }
}

fn plain(status: u16, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        v.extend_from_slice(body);
    }
    v
}
