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
    Other,
}

impl Name {
    pub fn classify(name: &[u8]) -> Name {
        // Compare case-insensitively without allocating; lengths filter first.
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
}

/// One header line of a parsed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Name,
    pub name_at: Range<usize>,
    pub value: Range<usize>,
    /// The whole line including its CRLF, for forwarding it unchanged.
    pub line: Range<usize>,
    /// Named in the Connection header: hop-by-hop for this message.
    pub listed_in_connection: bool,
}

/// Records httparse's headers as byte ranges into `bytes` (the head they were parsed from).
pub fn collect(
    bytes: &[u8],
    headers: &[httparse::Header<'_>],
    out: &mut Vec<Field>,
) -> Result<(), HeadError> {
    let offset = |s: &[u8]| s.as_ptr() as usize - bytes.as_ptr() as usize;
    out.clear();
    for h in headers {
        let name_at = offset(h.name.as_bytes())..offset(h.name.as_bytes()) + h.name.len();
        let value = offset(h.value)..offset(h.value) + h.value.len();
        if bytes.get(name_at.end) != Some(&b':') {
            return refuse(400, "whitespace between header name and colon");
        }
        // The line runs from the name to the LF after the value.
        let line_end =
            memchr::memchr(b'\n', &bytes[value.end..]).map_or(value.end, |p| value.end + p + 1);
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

/// Why a head was refused; each carries the status tern answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub reason: &'static str,
}

pub(super) fn refuse<T>(status: u16, reason: &'static str) -> Result<T, HeadError> {
    Err(HeadError { status, reason })
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

/// Checks every line ending is CRLF and no line is folded (obs-fold); both are ways to make
/// two parsers disagree about where a header ends. `head` ends with the blank line. (A CR not
/// followed by LF is refused by httparse itself.)
pub fn check_line_structure(head: &[u8]) -> Result<(), HeadError> {
    for at in memchr::memchr_iter(b'\n', head) {
        if at == 0 || head[at - 1] != b'\r' {
            return refuse(400, "bare LF line ending");
        }
        if matches!(head.get(at + 1), Some(b' ' | b'\t')) {
            return refuse(400, "obsolete line folding");
        }
    }
    Ok(())
}

/// The end of a head (just after its blank line), if it has all arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|p| p + 4)
}

/// A Content-Length value: digits only, no sign, no overflow. Lists of identical values
/// (`5, 5`) are accepted as one.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut result = None;
    for item in value.split(|&b| b == b',').map(trim) {
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(item).ok()?.parse().ok()?;
        match result {
            Some(prev) if prev != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

/// Collects Connection tokens and marks the fields they name as hop-by-hop.
pub fn connection_tokens(head: &[u8], fields: &mut [Field]) -> ConnectionTokens {
    let mut t = ConnectionTokens::default();
    let mut named: Vec<Range<usize>> = Vec::new();
    for f in fields.iter().filter(|f| f.name == Name::Connection) {
        for tok in tokens(&head[f.value.clone()]) {
            if tok.eq_ignore_ascii_case(b"close") {
                t.close = true;
            } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                t.keep_alive = true;
            } else if tok.eq_ignore_ascii_case(b"upgrade") {
                t.upgrade = true;
            } else {
                let start = tok.as_ptr() as usize - head.as_ptr() as usize;
                named.push(start..start + tok.len());
            }
        }
    }
    if !named.is_empty() {
        for f in fields.iter_mut() {
            let name = &head[f.name_at.clone()];
            if named
                .iter()
                .any(|r| head[r.clone()].eq_ignore_ascii_case(name))
            {
                f.listed_in_connection = true;
            }
        }
    }
    t
}

/// Framing from Content-Length and Transfer-Encoding, the rules both message kinds share.
/// `Ok(None)`: neither header.
pub fn body_framing(head: &[u8], fields: &[Field]) -> Result<Option<Framing>, HeadError> {
    let mut length: Option<u64> = None;
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
                length = Some(n);
            }
            Name::TransferEncoding => {
                for coding in tokens(v) {
                    if chunked_last {
                        // Anything after chunked means chunked was not last.
                        return refuse(400, "chunked is not the final transfer coding");
                    }
                    chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                }
                te_seen = true;
            }
            _ => {}
        }
    }
    match (te_seen, length) {
        (true, Some(_)) => refuse(400, "both Content-Length and Transfer-Encoding"),
        (true, None) if chunked_last => Ok(Some(Framing::Chunked)),
        (true, None) => Ok(Some(Framing::Close)),
        (false, Some(n)) => Ok(Some(Framing::Length(n))),
        (false, None) => Ok(None),
    }
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
        assert!(Name::Upgrade.is_hop_by_hop() && !Name::Host.is_hop_by_hop());
    }

    #[test]
    fn content_length_values() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"5, 5"), Some(5));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1 2",
            b"0x10",
            b"5, 6",
            b"99999999999999999999",
            b"1,",
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
    fn line_structure() {
        assert!(check_line_structure(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert_eq!(
            check_line_structure(b"GET / HTTP/1.1\nHost: a\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            check_line_structure(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
                .unwrap_err()
                .reason,
            "obsolete line folding"
        );
    }

    #[test]
    fn tokens_trim_and_skip_empties() {
        let t: Vec<&[u8]> = tokens(b" gzip ,, chunked\t").collect();
        assert_eq!(t, vec![&b"gzip"[..], b"chunked"]);
    }
}
