//! Response heads from backends: parsed into byte ranges, and the body framing decided as
//! RFC 9112 §6.3 orders it. A backend that breaks the rules costs the client a 502, never a
//! misframed response.

use std::ops::Range;

use super::fields::{
    body_framing, check_line_structure, collect, connection_tokens, head_end, refuse,
    ConnectionTokens, Field, Framing, HeadError,
};

/// A parsed response head; ranges index the buffer it was parsed from.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub minor: u8,
    /// The status line with its CRLF.
    pub line: Range<usize>,
    pub fields: Vec<Field>,
    pub framing: Option<Framing>,
    pub connection: ConnectionTokens,
}

impl ResponseHead {
    /// 1xx other than 101: more heads follow before the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    pub fn body(&self) -> Framing {
        self.framing.unwrap_or(Framing::Close)
    }

    /// Whether the backend connection can carry another request after this response.
    pub fn backend_reusable(&self) -> bool {
        !self.connection.close
            && (self.minor >= 1 || self.connection.keep_alive)
            && self.body() != Framing::Close
    }
}

/// The largest response head accepted from a backend.
pub const MAX_HEAD: usize = 32 * 1024;

/// Parses a response to a request with method HEAD (`head_request`) or not. `Ok(false)`: not
/// complete yet. Errors mean the backend broke the protocol: answer 502.
pub fn parse(buf: &[u8], head_request: bool, head: &mut ResponseHead) -> Result<bool, HeadError> {
    let Some(head_len) = head_end(buf) else {
        if buf.len() >= MAX_HEAD {
            return refuse(502, "backend response head too large");
        }
        return Ok(false);
    };
    if head_len > MAX_HEAD {
        return refuse(502, "backend response head too large");
    }
    let bytes = &buf[..head_len];
    check_line_structure(bytes).or_else(|_| refuse(502, "malformed backend response"))?;
    let mut storage = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut storage);
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        _ => return refuse(502, "malformed backend response"),
    }
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return refuse(502, "malformed backend status line");
    };
    if !(100..=599).contains(&status) {
        return refuse(502, "backend status out of range");
    }
    head.len = head_len;
    head.status = status;
    head.minor = minor;
    head.line = 0..memchr::memchr(b'\n', bytes).map_or(0, |p| p + 1);
    collect(bytes, resp.headers, &mut head.fields)
        .or_else(|_| refuse(502, "malformed backend response header"))?;
    head.connection = connection_tokens(bytes, &mut head.fields);
    let declared = body_framing(bytes, &head.fields).or_else(|_| {
        // Conflicting or invalid lengths from a backend: the response cannot be framed.
        refuse(502, "backend response framing is ambiguous")
    })?;
    head.framing = Some(
        if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
            Framing::None
        } else {
            declared.unwrap_or(Framing::Close)
        },
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str, head_request: bool) -> Result<ResponseHead, HeadError> {
        let mut h = ResponseHead::default();
        assert_eq!(
            parse(text.as_bytes(), head_request, &mut h),
            Ok(true),
            "{text:?}"
        );
        Ok(h)
    }

    #[test]
    fn framing_by_status_and_method() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_all(ok, false).unwrap().body(), Framing::Length(5));
        assert_eq!(parse_all(ok, true).unwrap().body(), Framing::None, "HEAD");
        for s in [
            "204 No Content",
            "304 Not Modified",
            "100 Continue",
            "103 Early Hints",
        ] {
            let text = format!("HTTP/1.1 {s}\r\nContent-Length: 5\r\n\r\n");
            assert_eq!(
                parse_all(&text, false).unwrap().body(),
                Framing::None,
                "{s}"
            );
        }
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_all(chunked, false).unwrap().body(), Framing::Chunked);
        let close = "HTTP/1.1 200 OK\r\n\r\n";
        let h = parse_all(close, false).unwrap();
        assert_eq!(h.body(), Framing::Close);
        assert!(!h.backend_reusable());
        assert!(parse_all("HTTP/1.1 100 Continue\r\n\r\n", false)
            .unwrap()
            .is_interim());
        assert!(!parse_all(
            "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n",
            false
        )
        .unwrap()
        .is_interim());
    }

    #[test]
    fn reuse_of_the_backend_connection() {
        let h = parse_all("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert!(h.backend_reusable());
        let h = parse_all(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!h.backend_reusable());
        let h = parse_all("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert!(!h.backend_reusable());
    }

    #[test]
    fn broken_backends_get_502() {
        let mut h = ResponseHead::default();
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "SSH-2.0-x\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad.as_bytes(), false, &mut h).unwrap_err().status,
                502,
                "{bad:?}"
            );
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse(huge.as_bytes(), false, &mut h).unwrap_err().status,
            502
        );
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n", false, &mut h), Ok(false));
    }
}
