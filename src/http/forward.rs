//! Writing heads onward: the request head for the backend (forwarding headers added,
//! hop-by-hop headers removed, everything else copied line by line as received), the response
//! head for the client, and tern's own error responses.

use std::io::Write;
use std::net::IpAddr;

use super::fields::{Field, Name};
use super::request::RequestHead;
use super::response::ResponseHead;

/// How forwarding headers are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardPolicy {
    /// Keep (and append to) X-Forwarded-For / X-Forwarded-Proto / Forwarded / X-Real-IP sent by
    /// clients; by default they are dropped, since any client can forge them.
    pub trust_client: bool,
    /// Also send RFC 7239 `Forwarded: for=...;proto=https`.
    pub forwarded: bool,
}

fn is_forwarding(name: Name) -> bool {
    matches!(
        name,
        Name::XForwardedFor
            | Name::XForwardedProto
            | Name::XForwardedHost
            | Name::XRealIp
            | Name::Forwarded
    )
}

/// Writes the request head for the backend into `out` (cleared first).
pub fn request(
    src: &[u8],
    head: &RequestHead,
    client: IpAddr,
    policy: ForwardPolicy,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&src[head.line.clone()]);
    let mut xff: Option<Vec<u8>> = None;
    let mut fwd: Option<Vec<u8>> = None;
    for f in &head.fields {
        if drop_from_request(f, head) {
            continue;
        }
        if is_forwarding(f.name) {
            if !policy.trust_client {
                continue;
            }
            // Client-sent lists are merged into the one tern appends to.
            let v = &src[f.value.clone()];
            match f.name {
                Name::XForwardedFor => append_list(&mut xff, v),
                Name::Forwarded => append_list(&mut fwd, v),
                // The protocol is tern's to state.
                Name::XForwardedProto => {}
                _ => out.extend_from_slice(&src[f.line.clone()]),
            }
            continue;
        }
        out.extend_from_slice(&src[f.line.clone()]);
    }
    if head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prev) = &xff {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{}\r\nX-Forwarded-Proto: https\r\n", client);
    if policy.forwarded {
        out.extend_from_slice(b"Forwarded: ");
        if let Some(prev) = &fwd {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        match client {
            IpAddr::V4(v4) => {
                let _ = write!(out, "for={v4}");
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "for=\"[{v6}]\"");
            }
        }
        out.extend_from_slice(b";proto=https\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn append_list(acc: &mut Option<Vec<u8>>, value: &[u8]) {
    let acc = acc.get_or_insert_with(Vec::new);
    if !acc.is_empty() {
        acc.extend_from_slice(b", ");
    }
    acc.extend_from_slice(value);
}

fn drop_from_request(f: &Field, head: &RequestHead) -> bool {
    if f.listed_in_connection {
        return true;
    }
    match f.name {
        // An upgrade keeps its Upgrade header; Connection is rewritten to `upgrade` alone.
        Name::Upgrade => !head.upgrade,
        n => n.is_hop_by_hop(),
    }
}

/// Writes the response head for the client into `out` (cleared first). `close` adds
/// `Connection: close` (tern will close after this response).
pub fn response(src: &[u8], head: &ResponseHead, close: bool, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&src[head.line.clone()]);
    let switching = head.status == 101;
    for f in &head.fields {
        let keep = match f.name {
            _ if f.listed_in_connection => false,
            Name::Upgrade => switching,
            n => !n.is_hop_by_hop(),
        };
        if keep {
            out.extend_from_slice(&src[f.line.clone()]);
        }
    }
    if switching {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// tern's own response for `status`: a short text body and `Connection: close`.
pub fn error_response(status: u16, out: &mut Vec<u8>) {
    let reason = reason(status);
    let body = format!("{status} {reason}\n");
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::{self, Limits};
    use super::super::response as resp;
    use super::*;

    fn forwarded(text: &str, client: &str, policy: ForwardPolicy) -> String {
        let mut head = request::RequestHead::default();
        assert!(request::parse(text.as_bytes(), &Limits::default(), &mut head).unwrap());
        let mut out = Vec::new();
        request(
            text.as_bytes(),
            &head,
            client.parse().unwrap(),
            policy,
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn adds_forwarding_headers_and_drops_spoofed_ones() {
        let text = "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Proto: http\r\nAccept: */*\r\n\r\n";
        let out = forwarded(text, "203.0.113.7", ForwardPolicy::default());
        assert_eq!(
            out,
            "GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        let trusted = ForwardPolicy {
            trust_client: true,
            forwarded: true,
        };
        let out = forwarded(text, "203.0.113.7", trusted);
        assert!(
            out.contains("X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Real-IP: 6.6.6.6\r\n"), "{out}");
        assert!(
            out.contains("Forwarded: for=6.6.6.6, for=203.0.113.7;proto=https\r\n"),
            "{out}"
        );
        assert!(!out.contains("X-Forwarded-Proto: http\r\n"), "{out}");
    }

    #[test]
    fn ipv6_clients_are_quoted_in_forwarded() {
        let policy = ForwardPolicy {
            trust_client: false,
            forwarded: true,
        };
        let out = forwarded("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "2001:db8::1", policy);
        assert!(out.contains("X-Forwarded-For: 2001:db8::1\r\n"), "{out}");
        assert!(
            out.contains("Forwarded: for=\"[2001:db8::1]\";proto=https\r\n"),
            "{out}"
        );
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let text = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\nX-Hop: 1\r\nTE: trailers\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nCookie: c=1\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", ForwardPolicy::default());
        for gone in [
            "Connection",
            "Keep-Alive",
            "X-Hop",
            "TE:",
            "Proxy-Connection",
            "Upgrade",
        ] {
            assert!(!out.contains(gone), "{gone} survived: {out}");
        }
        assert!(out.contains("Cookie: c=1\r\n"));
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let text = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", ForwardPolicy::default());
        assert!(
            out.contains("Upgrade: websocket\r\n") && out.contains("Connection: upgrade\r\n"),
            "{out}"
        );
        assert!(out.contains("Sec-WebSocket-Key: k\r\n"));
    }

    #[test]
    fn response_heads_lose_hop_by_hop_and_gain_close() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nServer: b\r\n\r\nok";
        let mut head = resp::ResponseHead::default();
        assert!(resp::parse(text.as_bytes(), false, &mut head).unwrap());
        let mut out = Vec::new();
        response(text.as_bytes(), &head, false, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: b\r\n\r\n"
        );
        response(text.as_bytes(), &head, true, &mut out);
        assert!(String::from_utf8_lossy(&out).ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn error_responses_are_complete() {
        let mut out = Vec::new();
        for status in [400, 408, 413, 414, 421, 431, 502, 503, 504, 505] {
            error_response(status, &mut out);
            let text = String::from_utf8(out.clone()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            assert!(head.contains("Connection: close"));
        }
    }
}
