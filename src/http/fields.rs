//! Header fields shared by request and response heads: recorded as byte ranges into the head
//! (so unchanged lines are forwarded as received), classified once by name, and the framing
//! rules both kinds of message obey (RFC 9112 §6).

use std::ops::Range;

/// Header names tern acts on; everything else is `Other` and passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRealIp,
    Forwarded,
    /// A client-certificate identity header tern writes (X-Client-Verify, X-Client-Subject,
    /// X-Client-Fingerprint, X-Forwarded-Client-Cert): never taken from a client.
    ClientCert,
    Other,
}

impl Name {
    pub fn classify(name: &[u8]) -> Name {
        // Compare case-insensitively without allocating; the length filters first, so most
        // names cost one comparison of a length.
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            2 if is("te") => Name::Te,
            4 if is("host") => Name::Host,
            6 if is("expect") => Name::Expect,
            7 if is("upgrade") => Name::Upgrade,
            9 if is("forwarded") => Name::Forwarded,
            9 if is("x-real-ip") => Name::XRealIp,
            10 if is("connection") => Name::Connection,
            10 if is("keep-alive") => Name::KeepAlive,
            14 if is("content-length") => Name::ContentLength,
            15 if is("x-forwarded-for") => Name::XForwardedFor,
            15 if is("x-client-verify") => Name::ClientCert,
            16 if is("x-client-subject") => Name::ClientCert,
            20 if is("x-client-fingerprint") => Name::ClientCert,
            23 if is("x-forwarded-client-cert") => Name::ClientCert,
            16 if is("proxy-connection") => Name::ProxyConnection,
            16 if is("x-forwarded-host") => Name::XForwardedHost,
            17 if is("transfer-encoding") => Name::TransferEncoding,
            17 if is("x-forwarded-proto") => Name::XForwardedProto,
            _ => Name::Other,
        }
    }

    /// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection | Name::KeepAlive | Name::ProxyConnection | Name::Te | Name::Upgrade
        )
    }

    /// Headers a peer must not be able to remove by naming them in `Connection`: the framing
    /// headers (with `Connection: Content-Length` the backend would otherwise see no length
    /// while tern framed the body by it: request smuggling) and Host (routing).
    pub fn is_protected(self) -> bool {
        matches!(
            self,
            Name::ContentLength | Name::TransferEncoding | Name::Host
        )
    }
}

/// One header line of a parsed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Name,
    pub name_at: Range<usize>,
    pub value: Range<usize>,
    /// The whole line including its CRLF, for forwarding it unchanged.
    pub line: Range<usize>,
    /// Named in the Connection header, so hop-by-hop for this message and not forwarded.
    /// Never set for the protected names (`Name::is_protected`).
    pub listed_in_connection: bool,
}

/// Why a head was refused: the status tern answers with (400, 414, 431, 505 for a request;
/// 502 for a backend's response) and a short reason for the debug log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeadError {
    pub status: u16,
    pub reason: &'static str,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for HeadError {}

pub(super) fn refuse<T>(status: u16, reason: &'static str) -> Result<T, HeadError> {
    Err(HeadError { status, reason })
}

/// Where the lines of a head lie, as far as it has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// Where the start line begins: after any empty lines sent before it (RFC 9112 §2.2 asks
    /// servers to ignore at least one, which clients send after a POST body).
    pub start: usize,
    /// The end of the start line (after its LF), once it has arrived.
    pub start_line_end: Option<usize>,
    /// The end of the head (after the empty line), once it has arrived.
    pub end: Option<usize>,
    /// Field lines seen so far.
    pub fields: usize,
}

/// Walks the lines of a (possibly partial) head in one pass over its LFs: finds where it
/// ends, and refuses a bare LF line ending and obs-fold (a line starting with SP/HTAB, which
/// also covers whitespace between the start line and the first field) as soon as they arrive,
/// both being ways to make two parsers disagree about where a header ends. httparse accepts
/// bare LF, so this is the only check for it. (A CR not followed by LF is refused by
/// httparse: CR is valid in no token, target or value.)
pub(super) fn scan_head(buf: &[u8]) -> Result<Layout, &'static str> {
    let mut layout = Layout {
        start: 0,
        start_line_end: None,
        end: None,
        fields: 0,
    };
    let mut line_start = 0;
    for at in memchr::memchr_iter(b'\n', buf) {
        // `at >= 1` is checked first, so `at - 1` is in bounds.
        if at == 0 || buf[at - 1] != b'\r' {
            return Err("bare LF line ending");
        }
        let empty = at - 1 == line_start;
        match layout.start_line_end {
            None if empty => layout.start = at + 1,
            None => layout.start_line_end = Some(at + 1),
            Some(_) if empty => {
                layout.end = Some(at + 1);
                return Ok(layout);
            }
            Some(_) => layout.fields += 1,
        }
        if layout.start_line_end.is_some() && matches!(buf.get(at + 1), Some(b' ' | b'\t')) {
            return Err("obsolete line folding");
        }
        line_start = at + 1;
    }
    Ok(layout)
}

/// Records httparse's headers as byte ranges into `bytes` (the head they were parsed from).
pub(super) fn collect(
    bytes: &[u8],
    headers: &[httparse::Header<'_>],
    out: &mut Vec<Field>,
) -> Result<(), HeadError> {
    // httparse hands out subslices of `bytes`, so these differences are offsets within it.
    let offset = |s: &[u8]| s.as_ptr() as usize - bytes.as_ptr() as usize;
    out.clear();
    for (i, h) in headers.iter().enumerate() {
        let name_at = offset(h.name.as_bytes())..offset(h.name.as_bytes()) + h.name.len();
        let value = offset(h.value)..offset(h.value) + h.value.len();
        if bytes.get(name_at.end) != Some(&b':') {
            // httparse refuses this for requests; for responses it is its default too, and
            // this keeps it so whatever its configuration.
            return refuse(400, "whitespace between header name and colon");
        }
        // With obs-fold and leading whitespace refused (`scan_head`), a line runs from its
        // name to the next field's name, the last one to the head's final CRLF: no search.
        // Checked (one byte) rather than trusted; the search is the fallback.
        let next = headers
            .get(i + 1)
            .map_or(bytes.len().saturating_sub(2), |n| offset(n.name.as_bytes()));
        let line_end = if next > value.end && bytes.get(next - 1) == Some(&b'\n') {
            next
        } else {
            // `value.end <= bytes.len()`, as the value is a subslice of `bytes`.
            memchr::memchr(b'\n', &bytes[value.end..]).map_or(value.end, |p| value.end + p + 1)
        };
        out.push(Field {
            name: Name::classify(h.name.as_bytes()),
            name_at: name_at.clone(),
            value,
            line: name_at.start..line_end,
            listed_in_connection: false,
        });
    }
    Ok(())
}

/// What the Connection header(s) said.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Splits a header value on commas, trimming optional whitespace; empty items are skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A Content-Length value: digits only, no sign, no overflow. Lists of identical values
/// (`5, 5`) are accepted as one (RFC 9110 §8.6; the forwarded head then carries one value).
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut result = None;
    for item in value.split(|&b| b == b',').map(trim) {
        if item.is_empty() {
            return None;
        }
        let mut n: u64 = 0;
        for &b in item {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        match result {
            Some(prev) if prev != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

/// Collects Connection tokens and marks the fields they name as hop-by-hop. No allocation:
/// named fields are rare, so they are found by walking the Connection values again.
pub fn connection_tokens(head: &[u8], fields: &mut [Field]) -> ConnectionTokens {
    let mut t = ConnectionTokens::default();
    let mut named = false;
    for f in fields.iter().filter(|f| f.name == Name::Connection) {
        for tok in tokens(&head[f.value.clone()]) {
            if tok.eq_ignore_ascii_case(b"close") {
                t.close = true;
            } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                t.keep_alive = true;
            } else if tok.eq_ignore_ascii_case(b"upgrade") {
                t.upgrade = true;
            } else {
                named = true;
            }
        }
    }
    if named {
        for i in 0..fields.len() {
            let f = &fields[i];
            // Upgrade's fate is the `upgrade` token's (kept for an upgrade, else dropped as
            // hop-by-hop), not that of a name the token happens to match.
            if f.name.is_protected() || matches!(f.name, Name::Connection | Name::Upgrade) {
                continue;
            }
            let name = &head[f.name_at.clone()];
            let listed = fields
                .iter()
                .filter(|c| c.name == Name::Connection)
                .any(|c| tokens(&head[c.value.clone()]).any(|t| t.eq_ignore_ascii_case(name)));
            fields[i].listed_in_connection = listed;
        }
    }
    t
}

/// What Content-Length and Transfer-Encoding declare, the rules both message kinds share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Declared {
    /// `None`: neither header.
    pub framing: Option<Framing>,
    /// Content-Length came as a list or in several fields (all the same value): forwarded as
    /// one field, as RFC 9110 §8.6 asks of a recipient that accepts it.
    pub normalize_length: bool,
}

pub(super) fn body_framing(head: &[u8], fields: &[Field]) -> Result<Declared, HeadError> {
    let mut length: Option<u64> = None;
    let mut normalize_length = false;
    let mut te_seen = false;
    let mut chunked_last = false;
    for f in fields {
        let v = &head[f.value.clone()];
        match f.name {
            Name::ContentLength => {
                let Some(n) = content_length(v) else {
                    return refuse(400, "invalid Content-Length");
                };
                if length.is_some_and(|prev| prev != n) {
                    return refuse(400, "conflicting Content-Length values");
                }
                normalize_length |= length.is_some() || memchr::memchr(b',', v).is_some();
                length = Some(n);
            }
            Name::TransferEncoding => {
                for coding in tokens(v) {
                    if chunked_last {
                        // Anything after chunked (chunked twice included) means chunked is
                        // not the final coding (RFC 9112 §6.1).
                        return refuse(400, "chunked is not the final transfer coding");
                    }
                    chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                }
                te_seen = true;
            }
            _ => {}
        }
    }
    let framing = match (te_seen, length) {
        // RFC 9112 §6.3 lets a recipient let Transfer-Encoding win; a proxy refusing is the
        // only way to be sure no server behind it frames the message by the other one.
        (true, Some(_)) => return refuse(400, "both Content-Length and Transfer-Encoding"),
        (true, None) if chunked_last => Some(Framing::Chunked),
        (true, None) => Some(Framing::Close),
        (false, Some(n)) => Some(Framing::Length(n)),
        (false, None) => None,
    };
    Ok(Declared {
        framing,
        normalize_length,
    })
}

/// Whether `h` is a syntactically possible `uri-host [":" port]` (RFC 3986 reg-name or
/// IP-literal characters): refuses the spaces, slashes, `@` and the like that let a Host mean
/// different things to different parsers. Host values are short, so a byte loop is fine.
pub fn valid_host(h: &[u8]) -> bool {
    h.iter().all(|&b| {
        matches!(b,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'_' | b'~' | b'%'
            | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            | b':' | b'[' | b']')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_case_insensitively() {
        assert_eq!(Name::classify(b"Content-LENGTH"), Name::ContentLength);
        assert_eq!(Name::classify(b"x-forwarded-for"), Name::XForwardedFor);
        assert_eq!(Name::classify(b"TE"), Name::Te);
        assert_eq!(Name::classify(b"Cookie"), Name::Other);
        for n in [
            &b"X-Client-Verify"[..],
            b"x-client-subject",
            b"X-CLIENT-FINGERPRINT",
            b"X-Forwarded-Client-Cert",
        ] {
            assert_eq!(Name::classify(n), Name::ClientCert);
        }
        assert!(Name::Upgrade.is_hop_by_hop() && !Name::Host.is_hop_by_hop());
        assert!(Name::ContentLength.is_protected() && !Name::Other.is_protected());
    }

    #[test]
    fn content_length_values() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"5, 5"), Some(5));
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(content_length(b"000000000000000000000007"), Some(7));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1 2",
            b"0x10",
            b"5, 6",
            b"18446744073709551616",
            b"99999999999999999999",
            b"1,",
            b"1.0",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn layout_of_heads() {
        let l = scan_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest").unwrap();
        assert_eq!(
            l,
            Layout {
                start: 0,
                start_line_end: Some(16),
                end: Some(27),
                fields: 1
            }
        );
        let l = scan_head(b"\r\n\r\nGET / HTTP/1.1\r\nHo").unwrap();
        assert_eq!((l.start, l.start_line_end, l.end), (4, Some(20), None));
        assert_eq!(
            scan_head(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
            Err("bare LF line ending")
        );
        assert_eq!(scan_head(b"\n"), Err("bare LF line ending"));
        // Refused as soon as it arrives, complete head or not.
        assert_eq!(
            scan_head(b"GET / HTTP/1.1\r\nHost: a\n"),
            Err("bare LF line ending")
        );
        assert_eq!(
            scan_head(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
            Err("obsolete line folding")
        );
        assert_eq!(
            scan_head(b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n"),
            Err("obsolete line folding")
        );
        // The bytes after the head are the body's business.
        assert!(scan_head(b"GET / HTTP/1.1\r\n\r\n body\n").is_ok());
    }

    #[test]
    fn tokens_trim_and_skip_empties() {
        let t: Vec<&[u8]> = tokens(b" gzip ,, chunked\t").collect();
        assert_eq!(t, vec![&b"gzip"[..], b"chunked"]);
    }

    #[test]
    fn hosts() {
        for ok in [
            &b"example.com"[..],
            b"a:8080",
            b"[2001:db8::1]:443",
            b"xn--bcher-kva.de",
        ] {
            assert!(valid_host(ok));
        }
        for bad in [&b"a b"[..], b"a/b", b"u@a", b"a\\b", b"a\"", b"a#", b"a?"] {
            assert!(!valid_host(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
