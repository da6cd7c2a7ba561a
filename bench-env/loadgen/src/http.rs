//! Minimal HTTP/1.1 client side: a prebuilt request, and reading one response (Content-Length or
//! chunked framing) off a `TlsConn`, discarding the body but counting it.

use std::io;

use crate::tls::TlsConn;

/// The request bytes (head and body together, so they leave in as few TLS records as possible).
pub fn build_request(method: &str, path: &str, host: &str, body: usize, close: bool) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tern-loadgen\r\n");
    if body > 0 || method == "POST" || method == "PUT" {
        r.push_str(&format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {body}\r\n"
        ));
    }
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.resize(v.len() + body, b'x');
    v
}

pub struct Response {
    pub status: u16,
    pub body_bytes: u64,
    /// The server said `Connection: close`.
    pub close: bool,
}

enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Read one full response. Bytes after it stay in `c.plain` (there are none unless the server
/// pipelines).
pub async fn read_response(c: &mut TlsConn) -> io::Result<Response> {
    // Head.
    let (status, framing, close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&c.plain) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = resp.code.unwrap_or(0);
                let mut framing = Framing::UntilClose;
                let mut close = false;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let v = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                            .ok_or_else(|| bad("bad Content-Length"))?;
                        framing = Framing::Length(v);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                    {
                        framing = Framing::Chunked;
                    } else if h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                    {
                        close = true;
                    }
                }
                if (100..200).contains(&status) || status == 204 || status == 304 {
                    framing = Framing::Length(0);
                }
                c.plain.drain(..head_len);
                break (status, framing, close);
            }
            Ok(httparse::Status::Partial) => {
                if c.plain.len() > 64 * 1024 {
                    return Err(bad("response head over 64 KiB"));
                }
            }
            Err(e) => return Err(bad(format!("bad response head: {e}"))),
        }
        if c.fill().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the response head",
            ));
        }
    };
    // Body.
    let body_bytes = match framing {
        Framing::Length(n) => {
            let mut left = n;
            loop {
                let take = left.min(c.plain.len() as u64) as usize;
                c.plain.drain(..take);
                left -= take as u64;
                if left == 0 {
                    break;
                }
                if c.fill().await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside the response body",
                    ));
                }
            }
            n
        }
        Framing::UntilClose => {
            let mut n = c.plain.len() as u64;
            c.plain.clear();
            while c.fill().await? != 0 {
                n += c.plain.len() as u64;
                c.plain.clear();
            }
            n
        }
        Framing::Chunked => read_chunked(c).await?,
    };
    Ok(Response {
        status,
        body_bytes,
        close: close || matches!(framing, Framing::UntilClose),
    })
}

async fn read_chunked(c: &mut TlsConn) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // Chunk-size line.
        let line_end = loop {
            if let Some(p) = c.plain.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if c.plain.len() > 4096 {
                return Err(bad("chunk size line too long"));
            }
            if c.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in chunk",
                ));
            }
        };
        let line = std::str::from_utf8(&c.plain[..line_end]).map_err(|_| bad("chunk size"))?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(hex, 16).map_err(|_| bad("chunk size"))?;
        c.plain.drain(..line_end + 2);
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                if let Some(p) = c.plain.windows(2).position(|w| w == b"\r\n") {
                    let empty = p == 0;
                    c.plain.drain(..p + 2);
                    if empty {
                        return Ok(total);
                    }
                    continue;
                }
                if c.fill().await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed in trailer",
                    ));
                }
            }
        }
        let mut left = size + 2; // data and its CRLF
        loop {
            let take = left.min(c.plain.len() as u64) as usize;
            c.plain.drain(..take);
            left -= take as u64;
            if left == 0 {
                break;
            }
            if c.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in chunk",
                ));
            }
        }
        total += size;
    }
}
