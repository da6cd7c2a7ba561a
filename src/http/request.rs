//! Request heads: parsed with httparse into byte ranges, then held to RFC 9112 more strictly
//! than httparse alone, because a proxy and its backend must never disagree about where a
//! request ends (request smuggling). Every refusal says which status to answer.

use std::ops::Range;

use super::fields::{
    body_framing, collect, connection_tokens, refuse, scan_head, valid_host, ConnectionTokens,
    Field, Framing, HeadError, Name,
};

/// Limits on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line, CRLF included (414 past it).
    pub max_line: usize,
    /// The whole head (431 past it).
    pub max_head: usize,
    /// Header fields (431 past it; at most 256 are ever parsed).
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
    /// Bytes of the head, blank line included (and any empty lines before the request line):
    /// the body, or the next pipelined request, starts here.
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
    /// `host` comes from an absolute-form target: the forwarded head carries it as Host
    /// (RFC 9112 §3.2.2), so the backend cannot route on another name than tern did.
    pub host_from_target: bool,
    pub framing: Option<Framing>,
    /// Content-Length came as a list or repeated (same value): forwarded as one field.
    pub normalize_length: bool,
    pub connection: ConnectionTokens,
    pub expect_continue: bool,
    /// An upgrade (e.g. WebSocket) is asked for: Connection: upgrade and an Upgrade header,
    /// in HTTP/1.1 (an HTTP/1.0 Upgrade is ignored, RFC 9110 §7.8).
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

    /// 413 when a declared Content-Length is already over `max_body`, so the request is
    /// refused before any of it goes to a backend. A chunked body's size is only known as it
    /// streams: `BodyScanner::with_limit` refuses that one.
    pub fn check_body_limit(&self, max_body: Option<u64>) -> Result<(), HeadError> {
        match (self.framing, max_body) {
            (Some(Framing::Length(n)), Some(max)) if n > max => refuse(413, "body too large"),
            _ => Ok(()),
        }
    }
}

/// Field slots parsed at most: a `max_fields` above this is capped to it.
const FIELD_SLOTS: usize = 256;

/// Parses the request head at the start of `buf`. `Ok(false)`: not complete yet (and within
/// the limits); read more and call again with the same bytes plus the new ones. `Ok(true)`:
/// `head` describes `buf[..head.len]`. Errors carry the status to answer; the connection is
/// closed after answering, since where the next request starts is unknown.
pub fn parse(buf: &[u8], limits: &Limits, head: &mut RequestHead) -> Result<bool, HeadError> {
    // Nothing past the head limit can belong to an acceptable head: never look further.
    let window = &buf[..buf.len().min(limits.max_head)];
    let layout = scan_head(window).or_else(|why| refuse(400, why))?;
    // The request line must end within its limit (414), checked first: a long line is a URI
    // problem even when it also makes the head too large.
    let line_len = layout.start_line_end.unwrap_or(window.len()) - layout.start;
    if line_len > limits.max_line
        || (layout.start_line_end.is_none() && line_len >= limits.max_line)
    {
        return refuse(414, "request line too long");
    }
    if layout.fields > limits.max_fields.min(FIELD_SLOTS) {
        return refuse(431, "too many header fields");
    }
    let (Some(head_len), Some(line_end)) = (layout.end, layout.start_line_end) else {
        if buf.len() >= limits.max_head {
            return refuse(431, "request head too large");
        }
        return Ok(false);
    };
    let bytes = &buf[..head_len];

    // Uninitialised slots: the parse writes only what it uses, so a large array costs nothing.
    let mut storage = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); FIELD_SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        bytes,
        &mut storage,
    );
    match parsed {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        Ok(_) => return refuse(400, "malformed request head"),
        Err(httparse::Error::TooManyHeaders) => return refuse(431, "too many header fields"),
        Err(httparse::Error::Version) => {
            return refuse(
                version_status(&bytes[layout.start..line_end]),
                "unsupported HTTP version",
            )
        }
        Err(httparse::Error::HeaderName) => return refuse(400, "invalid header name"),
        Err(httparse::Error::HeaderValue) => return refuse(400, "invalid header value"),
        Err(_) => return refuse(400, "malformed request line or header"),
    }
    // httparse hands out subslices of `bytes`, so these differences are offsets within it.
    let offset = |s: &[u8]| s.as_ptr() as usize - bytes.as_ptr() as usize;
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return refuse(400, "malformed request line");
    };
    head.len = head_len;
    head.method = Some(Method::parse(method));
    head.method_at = offset(method.as_bytes())..offset(method.as_bytes()) + method.len();
    head.target = offset(path.as_bytes())..offset(path.as_bytes()) + path.len();
    head.minor = minor;
    head.line = layout.start..line_end;
    collect(bytes, req.headers, &mut head.fields)?;
    validate(bytes, head)?;
    Ok(true)
}

/// 505 for a well-formed version tern does not speak (`HTTP/2.0`, `HTTP/1.2`), 400 for
/// something that is no HTTP version at all.
fn version_status(line: &[u8]) -> u16 {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(line);
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            505
        }
        _ => 400,
    }
}

fn validate(bytes: &[u8], head: &mut RequestHead) -> Result<(), HeadError> {
    let method = &bytes[head.method_at.clone()];
    if method == b"CONNECT" {
        // tern terminates TLS for a site; it is no forward proxy and tunnels nothing by
        // CONNECT, whatever the target's form (a 2xx would switch the backend connection to
        // a tunnel that tern would still frame as HTTP).
        return refuse(405, "CONNECT is not supported");
    }
    head.connection = connection_tokens(bytes, &mut head.fields);
    let declared = body_framing(bytes, &head.fields)?;
    head.normalize_length = declared.normalize_length;
    head.framing = match declared.framing {
        // A request body cannot be delimited by closing: the last coding must be chunked.
        Some(Framing::Close) => return refuse(400, "Transfer-Encoding without chunked last"),
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        Some(Framing::Chunked) if head.minor == 0 => {
            return refuse(400, "Transfer-Encoding in an HTTP/1.0 request")
        }
        other => other,
    };

    let mut hosts = head.fields.iter().filter(|f| f.name == Name::Host);
    let host_field = hosts.next().map(|f| f.value.clone());
    if hosts.next().is_some() {
        return refuse(400, "more than one Host");
    }
    if let Some(h) = &host_field {
        if !valid_host(&bytes[h.clone()]) {
            return refuse(400, "invalid Host");
        }
    }
    head.host = host_field.clone();
    head.host_from_target = false;
    let target = &bytes[head.target.clone()];
    if target.starts_with(b"/") {
        // origin-form
    } else if target == b"*" {
        if head.method() != Method::Options {
            return refuse(400, "asterisk-form target without OPTIONS");
        }
    } else if let Some(authority) = absolute_form_authority(target) {
        if !valid_host(authority) {
            return refuse(400, "invalid authority in the request target");
        }
        // RFC 9112 §3.2.2: the target's authority wins over Host.
        let start = head.target.start + (authority.as_ptr() as usize - target.as_ptr() as usize);
        head.host = Some(start..start + authority.len());
        head.host_from_target = true;
    } else {
        // authority-form is CONNECT's alone, refused above.
        return refuse(400, "invalid request target");
    }
    if head.minor >= 1 && host_field.is_none() {
        return refuse(400, "missing Host");
    }
    // RFC 9112 allows an empty Host for a target without authority; tern routes by host and
    // serves named sites only, so it has no use for one.
    if head.minor >= 1 && head.host.as_ref().is_some_and(|h| h.is_empty()) {
        return refuse(400, "empty Host");
    }
    // Both are HTTP/1.1 mechanisms an HTTP/1.0 server must ignore (RFC 9110 §10.1.1, §7.8).
    head.expect_continue = head.minor >= 1
        && head.fields.iter().any(|f| {
            f.name == Name::Expect && bytes[f.value.clone()].eq_ignore_ascii_case(b"100-continue")
        });
    head.upgrade = head.minor >= 1
        && head.connection.upgrade
        && head.fields.iter().any(|f| f.name == Name::Upgrade);
    Ok(())
}

/// `http://host[:port]/path` → `host[:port]`; `None` if `target` is not absolute-form with an
/// http(s) scheme, or carries userinfo (`user@host`), which a request target must not.
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let has_scheme = |s: &[u8]| target.len() > s.len() && target[..s.len()].eq_ignore_ascii_case(s);
    let rest = if has_scheme(b"http://") {
        &target[7..]
    } else if has_scheme(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains(&b'@') {
        return None;
    }
    Some(authority)
}

// The tests are many (one per rule); they live in `request/tests.rs`.
#[cfg(test)]
mod tests;
