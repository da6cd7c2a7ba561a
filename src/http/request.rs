//! Request heads: parsed with httparse into byte ranges, then held to RFC 9112 more strictly
//! than httparse alone, because a proxy and its backend must never disagree about where a
//! request ends (request smuggling). Every refusal says which status to answer.

use std::ops::Range;

use super::fields::{
    body_framing, check_line_structure, collect, connection_tokens, head_end, refuse,
    ConnectionTokens, Field, Framing, HeadError, Name,
};

/// Limits on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line, CRLF included (414 past it).
    pub max_line: usize,
    /// The whole head (431 past it).
    pub max_head: usize,
    /// Header fields (431 past it).
    pub max_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_head: 32 * 1024,
            max_fields: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// Safe to send twice (RFC 9110 §9.2.2), so retried once if a reused backend connection
    /// turns out to be dead.
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// A parsed request head; ranges index the buffer it was parsed from. Reused across the
/// requests of a connection (its field list keeps its capacity).
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub method: Option<Method>,
    pub method_at: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The request line with its CRLF.
    pub line: Range<usize>,
    pub fields: Vec<Field>,
    /// The host the request is for: the authority of an absolute-form target, else Host.
    pub host: Option<Range<usize>>,
    pub framing: Option<Framing>,
    pub connection: ConnectionTokens,
    pub expect_continue: bool,
    /// An upgrade (e.g. WebSocket) is asked for: Connection: upgrade and an Upgrade header.
    pub upgrade: bool,
}

impl RequestHead {
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }

    /// Whether the client wants the connection kept after this request.
    pub fn keep_alive(&self) -> bool {
        if self.connection.close {
            return false;
        }
        self.minor >= 1 || self.connection.keep_alive
    }

    pub fn body(&self) -> Framing {
        self.framing.unwrap_or(Framing::None)
    }
}

/// `Ok(false)`: the head is not complete yet; read more and call again.
pub fn parse(buf: &[u8], limits: &Limits, head: &mut RequestHead) -> Result<bool, HeadError> {
    // The request line must end within its limit, the head within its own.
    let line_end = memchr::memchr(b'\n', buf);
    match line_end {
        None if buf.len() >= limits.max_line => return refuse(414, "request line too long"),
        Some(end) if end + 1 > limits.max_line => return refuse(414, "request line too long"),
        _ => {}
    }
    let Some(head_len) = find_head_end(buf) else {
        if buf.len() >= limits.max_head {
            return refuse(431, "request head too large");
        }
        return Ok(false);
    };
    if head_len > limits.max_head {
        return refuse(431, "request head too large");
    }
    let bytes = &buf[..head_len];
    check_line_structure(bytes)?;

    let mut storage = [httparse::EMPTY_HEADER; 128];
    let slots = limits.max_fields.min(storage.len() - 1) + 1;
    let mut req = httparse::Request::new(&mut storage[..slots]);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        Ok(_) => return refuse(400, "malformed request head"),
        Err(httparse::Error::TooManyHeaders) => return refuse(431, "too many header fields"),
        Err(httparse::Error::Version) => return refuse(505, "HTTP version not supported"),
        Err(httparse::Error::HeaderName) => return refuse(400, "invalid header name"),
        Err(httparse::Error::HeaderValue) => return refuse(400, "invalid header value"),
        Err(_) => return refuse(400, "malformed request line or header"),
    }
    if req.headers.len() > limits.max_fields {
        return refuse(431, "too many header fields");
    }
    let offset = |s: &[u8]| s.as_ptr() as usize - bytes.as_ptr() as usize;
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return refuse(400, "malformed request line");
    };
    head.len = head_len;
    head.method = Some(Method::parse(method));
    head.method_at = offset(method.as_bytes())..offset(method.as_bytes()) + method.len();
    head.target = offset(path.as_bytes())..offset(path.as_bytes()) + path.len();
    head.minor = minor;
    head.line = 0..line_end.map_or(0, |e| e + 1);
    collect(bytes, req.headers, &mut head.fields)?;
    validate(bytes, head)?;
    Ok(true)
}

/// The end of the head (after CRLFCRLF), if it has arrived. A bare-LF head must be found
/// too (to be refused), not waited on until the size limit.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    head_end(buf).or_else(|| memchr::memmem::find(buf, b"\n\n").map(|p| p + 2))
}

fn validate(bytes: &[u8], head: &mut RequestHead) -> Result<(), HeadError> {
    head.connection = connection_tokens(bytes, &mut head.fields);
    let framing = body_framing(bytes, &head.fields)?;
    head.framing = match framing {
        // A request body cannot be delimited by closing: the last coding must be chunked.
        Some(Framing::Close) => return refuse(400, "Transfer-Encoding without chunked last"),
        Some(Framing::Chunked) if head.minor == 0 => {
            return refuse(400, "Transfer-Encoding in an HTTP/1.0 request")
        }
        other => other,
    };

    let target = &bytes[head.target.clone()];
    let method = head.method();
    let mut hosts = head.fields.iter().filter(|f| f.name == Name::Host);
    let host_field = hosts.next().map(|f| f.value.clone());
    if hosts.next().is_some() {
        return refuse(400, "more than one Host");
    }
    head.host = host_field.clone();
    if target.starts_with(b"/") {
        // origin-form
    } else if target == b"*" {
        if method != Method::Options {
            return refuse(400, "asterisk-form target without OPTIONS");
        }
    } else if let Some(authority) = absolute_form_authority(target) {
        // RFC 9112 §3.2.2: the target's authority wins over Host.
        let start = head.target.start + (authority.as_ptr() as usize - target.as_ptr() as usize);
        head.host = Some(start..start + authority.len());
    } else if bytes[head.method_at.clone()] == *b"CONNECT" {
        return refuse(405, "CONNECT is not supported");
    } else {
        return refuse(400, "invalid request target");
    }
    if head.minor >= 1 && host_field.is_none() {
        return refuse(400, "missing Host");
    }
    if head.host.as_ref().is_some_and(|h| h.is_empty()) && head.minor >= 1 {
        return refuse(400, "empty Host");
    }
    head.expect_continue = head.fields.iter().any(|f| {
        f.name == Name::Expect && bytes[f.value.clone()].eq_ignore_ascii_case(b"100-continue")
    });
    head.upgrade = head.connection.upgrade && head.fields.iter().any(|f| f.name == Name::Upgrade);
    Ok(())
}

/// `http://host[:port]/path` → `host[:port]`.
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let lower_scheme =
        |s: &[u8]| target.len() > s.len() && target[..s.len()].eq_ignore_ascii_case(s);
    let rest = if lower_scheme(b"http://") {
        &target[7..]
    } else if lower_scheme(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    // Strip userinfo, which a request target must not carry.
    if authority.contains(&b'@') {
        return None;
    }
    Some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Result<RequestHead, HeadError> {
        let mut head = RequestHead::default();
        match parse(text.as_bytes(), &Limits::default(), &mut head)? {
            true => Ok(head),
            false => panic!("incomplete: {text:?}"),
        }
    }

    fn status(text: &str) -> u16 {
        match parse_all(text) {
            Ok(_) => 200,
            Err(e) => e.status,
        }
    }

    #[test]
    fn a_plain_get() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: Example.com\r\nUser-Agent: t\r\n\r\n";
        let h = parse_all(text).unwrap();
        assert_eq!(h.len, text.len());
        assert_eq!(h.method(), Method::Get);
        assert_eq!(&text[h.target.clone()], "/a?b=1");
        assert_eq!(&text[h.host.clone().unwrap()], "Example.com");
        assert_eq!(h.body(), Framing::None);
        assert!(h.keep_alive());
        assert_eq!(&text[h.fields[1].line.clone()], "User-Agent: t\r\n");
        assert_eq!(&text[h.line.clone()], "GET /a?b=1 HTTP/1.1\r\n");
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let mut h = RequestHead::default();
        for text in ["", "GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTT"] {
            assert_eq!(
                parse(text.as_bytes(), &Limits::default(), &mut h),
                Ok(false)
            );
        }
    }

    #[test]
    fn pipelined_bytes_are_not_part_of_the_head() {
        let text = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n";
        let h = parse_all(text).unwrap();
        assert_eq!(&text[h.len..], "GET /2 HTTP/1.1\r\n");
    }

    #[test]
    fn framing_of_request_bodies() {
        let h = parse_all("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n").unwrap();
        assert_eq!(h.body(), Framing::Length(10));
        let h = parse_all("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
            .unwrap();
        assert_eq!(h.body(), Framing::Chunked);
        let h = parse_all("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n").unwrap();
        assert_eq!(h.body(), Framing::Length(3));
    }

    #[test]
    fn smuggling_vectors_are_refused_with_400() {
        let base = "POST / HTTP/1.1\r\nHost: a\r\n";
        for extra in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 1e3\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "X-Folded: a\r\n b\r\n",
            "Content-Length : 5\r\n",
            "Content-Length\t: 5\r\n",
            "X-Nul: a\0b\r\n",
            "X-Del: a\x7fb\r\n",
            "Bad Name: x\r\n",
            "Host: b\r\n",
        ] {
            assert_eq!(status(&format!("{base}{extra}\r\n")), 400, "{extra:?}");
        }
        assert_eq!(status("POST / HTTP/1.1\nHost: a\r\n\r\n"), 400, "bare LF");
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\n\n"),
            400,
            "bare LF at the end"
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n"),
            400,
            "no Host"
        );
        assert_eq!(
            status("GET / HTTP/1.0\r\n\r\n"),
            200,
            "HTTP/1.0 needs no Host"
        );
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400,
            "chunked in 1.0"
        );
    }

    #[test]
    fn targets() {
        assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
        assert_eq!(status("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        let text = "GET http://Other.example:8080/x HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = parse_all(text).unwrap();
        assert_eq!(&text[h.host.clone().unwrap()], "Other.example:8080");
        assert_eq!(
            status("GET http://u@evil/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            400
        );
    }

    #[test]
    fn versions() {
        assert_eq!(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
    }

    #[test]
    fn limits_give_414_and_431() {
        let limits = Limits {
            max_line: 64,
            max_head: 256,
            max_fields: 4,
        };
        let mut h = RequestHead::default();
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(100));
        assert_eq!(
            parse(long_line.as_bytes(), &limits, &mut h)
                .unwrap_err()
                .status,
            414
        );
        // Still unfinished but already too long.
        let partial = format!("GET /{}", "x".repeat(100));
        assert_eq!(
            parse(partial.as_bytes(), &limits, &mut h)
                .unwrap_err()
                .status,
            414
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "y".repeat(300)
        );
        assert_eq!(
            parse(big.as_bytes(), &limits, &mut h).unwrap_err().status,
            431
        );
        let growing = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "y".repeat(300));
        assert_eq!(
            parse(growing.as_bytes(), &limits, &mut h)
                .unwrap_err()
                .status,
            431
        );
        let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n";
        assert_eq!(
            parse(many.as_bytes(), &limits, &mut h).unwrap_err().status,
            431
        );
    }

    #[test]
    fn connection_semantics() {
        let h = parse_all("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!h.keep_alive());
        let h = parse_all("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive());
        let h = parse_all("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive());
        let text = "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret, Upgrade\r\nX-Secret: 1\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n";
        let h = parse_all(text).unwrap();
        assert!(h.upgrade && h.expect_continue);
        let secret = h
            .fields
            .iter()
            .find(|f| &text[f.name_at.clone()] == "X-Secret")
            .unwrap();
        assert!(secret.listed_in_connection);
    }
}
