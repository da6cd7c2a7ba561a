//! Response heads from backends: parsed into byte ranges, and the body framing decided as
//! RFC 9112 §6.3 orders it. A backend that breaks the rules costs the client a 502, never a
//! misframed response.

use std::ops::Range;

use super::fields::{
    body_framing, collect, connection_tokens, refuse, scan_head, ConnectionTokens, Field, Framing,
    HeadError,
};

/// A parsed response head; ranges index the buffer it was parsed from.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    /// Bytes of the head, blank line included: the body starts here.
    pub len: usize,
    pub status: u16,
    pub minor: u8,
    /// The status line with its CRLF.
    pub line: Range<usize>,
    pub fields: Vec<Field>,
    pub framing: Option<Framing>,
    /// Content-Length came as a list or repeated (same value): forwarded as one field.
    pub normalize_length: bool,
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

    /// Whether the backend connection can carry another request after this response (and
    /// after its body has been read to its end). The backend's `Connection: close` ends the
    /// backend connection only: Connection is hop-by-hop.
    pub fn backend_reusable(&self) -> bool {
        !self.connection.close
            && (self.minor >= 1 || self.connection.keep_alive)
            && self.body() != Framing::Close
            && self.status != 101
    }
}

/// The largest response head accepted from a backend.
pub const MAX_HEAD: usize = 32 * 1024;

/// Field slots parsed at most.
const FIELD_SLOTS: usize = 256;

/// Parses a response to a request with method HEAD (`head_request`) or not. `Ok(false)`: not
/// complete yet. Errors mean the backend broke the protocol: answer 502 (every error here
/// carries 502).
pub fn parse(buf: &[u8], head_request: bool, head: &mut ResponseHead) -> Result<bool, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let layout = scan_head(window).or_else(|_| refuse(502, "malformed backend response"))?;
    if layout.fields > FIELD_SLOTS {
        return refuse(502, "too many header fields from the backend");
    }
    let (Some(head_len), Some(line_end)) = (layout.end, layout.start_line_end) else {
        if buf.len() >= MAX_HEAD {
            return refuse(502, "backend response head too large");
        }
        return Ok(false);
    };
    let bytes = &buf[..head_len];
    // Uninitialised slots: the parse writes only what it uses, so a large array costs nothing.
    let mut storage = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); FIELD_SLOTS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        bytes,
        &mut storage,
    );
    match parsed {
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
    head.line = layout.start..line_end;
    collect(bytes, resp.headers, &mut head.fields)
        .or_else(|_| refuse(502, "malformed backend response header"))?;
    head.connection = connection_tokens(bytes, &mut head.fields);
    let declared = body_framing(bytes, &head.fields).or_else(|_| {
        // Conflicting or invalid lengths from a backend: the response cannot be framed.
        refuse(502, "backend response framing is ambiguous")
    })?;
    // RFC 9112 §6.1: Transfer-Encoding (the only source of these two) in HTTP/1.0 is faulty
    // framing.
    if minor == 0 && matches!(declared.framing, Some(Framing::Chunked | Framing::Close)) {
        return refuse(502, "Transfer-Encoding in an HTTP/1.0 response");
    }
    head.normalize_length = declared.normalize_length;
    // RFC 9112 §6.3, in its order: no body for HEAD, 1xx, 204, 304 whatever the headers say
    // (CONNECT, the other case, is refused before it reaches a backend); then
    // Transfer-Encoding (chunked last, else until close); then Content-Length; else until
    // close.
    head.framing = Some(
        if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
            Framing::None
        } else {
            declared.framing.unwrap_or(Framing::Close)
        },
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str, head_request: bool) -> ResponseHead {
        let mut h = ResponseHead::default();
        assert_eq!(
            parse(text.as_bytes(), head_request, &mut h),
            Ok(true),
            "{text:?}"
        );
        h
    }

    fn body(text: &str) -> Framing {
        parse_all(text, false).body()
    }

    #[test]
    fn a_plain_response() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: b\r\n\r\nhello";
        let h = parse_all(text, false);
        assert_eq!((h.status, h.minor, h.len), (200, 1, text.len() - 5));
        assert_eq!(&text[h.line.clone()], "HTTP/1.1 200 OK\r\n");
        assert_eq!(&text[h.fields[1].line.clone()], "Server: b\r\n");
        let h = parse_all("\r\nHTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(
            &"\r\nHTTP/1.1 204 No Content\r\n\r\n"[h.line.clone()],
            "HTTP/1.1 204 No Content\r\n"
        );
        let h = parse_all("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!(h.status, 200, "no reason phrase");
    }

    #[test]
    fn head_responses_have_no_body() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse_all(ok, false).body(), Framing::Length(5));
        assert_eq!(parse_all(ok, true).body(), Framing::None);
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_all(chunked, true).body(), Framing::None);
    }

    #[test]
    fn no_body_for_204_304_and_1xx() {
        for s in [
            "204 No Content",
            "304 Not Modified",
            "100 Continue",
            "103 Early Hints",
            "101 Switching Protocols",
        ] {
            for framing in ["Content-Length: 5", "Transfer-Encoding: chunked"] {
                let text = format!("HTTP/1.1 {s}\r\n{framing}\r\n\r\n");
                assert_eq!(body(&text), Framing::None, "{s} {framing}");
            }
        }
        assert!(parse_all("HTTP/1.1 100 Continue\r\n\r\n", false).is_interim());
        assert!(parse_all("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false).is_interim());
        assert!(!parse_all(
            "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n",
            false
        )
        .is_interim());
        assert!(!parse_all("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).is_interim());
    }

    #[test]
    fn framing_by_headers() {
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Framing::Chunked
        );
        // A response may end its body by closing: a final coding other than chunked, or
        // neither header.
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Framing::Close
        );
        assert_eq!(body("HTTP/1.1 200 OK\r\n\r\n"), Framing::Close);
        assert_eq!(
            body("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"),
            Framing::Length(2)
        );
        let h = parse_all("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n", false);
        assert_eq!((h.body(), h.normalize_length), (Framing::Length(2), true));
    }

    #[test]
    fn reuse_of_the_backend_connection() {
        let reusable = |t: &str| parse_all(t, false).backend_reusable();
        assert!(reusable("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(reusable(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!reusable(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        assert!(!reusable("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(reusable(
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!reusable("HTTP/1.1 200 OK\r\n\r\n"), "close-delimited");
        assert!(!reusable(
            "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n"
        ));
    }

    #[test]
    fn broken_backends_get_502() {
        let mut h = ResponseHead::default();
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nX: 1\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 099 OK\r\n\r\n",
            "HTTP/1.1 600 OK\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n",
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
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nX: 1\n", false, &mut h)
                .unwrap_err()
                .status,
            502
        );
    }

    #[test]
    fn the_body_is_not_part_of_the_head() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody\n\n";
        let h = parse_all(text, false);
        assert_eq!(&text[h.len..], "body\n\n");
    }
}
