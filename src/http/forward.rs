//! Writing heads onward: the request head for the backend (forwarding headers added,
//! hop-by-hop headers removed, everything else copied line by line as received), the response
//! head for the client, and tern's own error responses.

use std::io::Write;
use std::net::IpAddr;

use super::fields::{Field, Framing, Name};
use super::identity::IdentityFields;
use super::request::RequestHead;
use super::response::ResponseHead;

/// How forwarding headers are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardPolicy {
    /// Keep (and append to) X-Forwarded-For / Forwarded, and keep X-Real-IP /
    /// X-Forwarded-Host, sent by clients; by default they are dropped, since any client can
    /// forge them. X-Forwarded-Proto is always tern's own: the client spoke TLS to tern.
    pub trust_client: bool,
    /// Also send RFC 7239 `Forwarded: for=...;proto=https`.
    pub forwarded: bool,
}

/// Writes the request head for the backend into `out` (cleared first; reuse it across
/// requests and nothing is allocated once it has grown to a head's size).
///
/// The request line and every field not named below are copied as received (the version
/// too: an HTTP/1.0 request stays one, so the backend never answers it with chunked
/// framing the client cannot read). Removed: the hop-by-hop fields (Connection, what it
/// names, Keep-Alive, Proxy-Connection, TE, and Upgrade unless this is an upgrade) and,
/// unless trusted, the client's forwarding fields. Rewritten: Host when an absolute-form
/// target names the host; a repeated or listed Content-Length, as one field. Added:
/// `Connection: upgrade` for an upgrade, `Connection: keep-alive` for HTTP/1.0 (so the
/// backend connection can be reused), X-Forwarded-For, X-Forwarded-Proto and, if asked,
/// Forwarded.
pub fn request(
    src: &[u8],
    head: &RequestHead,
    client: IpAddr,
    policy: ForwardPolicy,
    out: &mut Vec<u8>,
) {
    request_with(src, head, client, policy, &IdentityFields::default(), out)
}

/// [`request`], with the connection's client-certificate identity headers added. The
/// client's own identity headers (`Name::ClientCert`) are removed either way, trusted or not.
pub fn request_with(
    src: &[u8],
    head: &RequestHead,
    client: IpAddr,
    policy: ForwardPolicy,
    identity: &IdentityFields,
    out: &mut Vec<u8>,
) {
    // A dual-stack listener reports IPv4 clients as `::ffff:a.b.c.d`.
    let client = client.to_canonical();
    out.clear();
    out.extend_from_slice(&src[head.line.clone()]);
    let mut length_written = false;
    let mut host_written = false;
    let mut trusted_xff = false;
    let mut trusted_fwd = false;
    for f in &head.fields {
        if drop_from_request(f, head) {
            continue;
        }
        match f.name {
            // Written together with tern's own values at the end.
            Name::XForwardedFor => trusted_xff |= policy.trust_client,
            Name::Forwarded => trusted_fwd |= policy.trust_client,
            Name::XForwardedProto => {}
            // Only tern speaks for the client's certificate.
            Name::ClientCert => {}
            Name::XRealIp | Name::XForwardedHost if !policy.trust_client => {}
            Name::ContentLength if head.normalize_length => {
                if !length_written {
                    if let Some(Framing::Length(n)) = head.framing {
                        let _ = write!(out, "Content-Length: {n}\r\n");
                    }
                    length_written = true;
                }
            }
            Name::Host if head.host_from_target => {
                write_host(src, head, out);
                host_written = true;
            }
            _ => out.extend_from_slice(&src[f.line.clone()]),
        }
    }
    if head.host_from_target && !host_written {
        // An HTTP/1.0 absolute-form request without Host: the backend learns the host too.
        write_host(src, head, out);
    }
    if head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if head.minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if trusted_xff {
        write_values(src, head, Name::XForwardedFor, out);
    }
    write_ip(client, out);
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: https\r\n");
    if policy.forwarded {
        out.extend_from_slice(b"Forwarded: ");
        if trusted_fwd {
            write_values(src, head, Name::Forwarded, out);
        }
        // RFC 7239 §6: an IPv6 address is bracketed, and so must be quoted.
        match client {
            IpAddr::V4(_) => out.extend_from_slice(b"for="),
            IpAddr::V6(_) => out.extend_from_slice(b"for=\"["),
        }
        write_ip(client, out);
        match client {
            IpAddr::V4(_) => out.extend_from_slice(b";proto=https\r\n"),
            IpAddr::V6(_) => out.extend_from_slice(b"]\";proto=https\r\n"),
        }
    }
    out.extend_from_slice(identity.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_host(src: &[u8], head: &RequestHead, out: &mut Vec<u8>) {
    if let Some(host) = &head.host {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(&src[host.clone()]);
        out.extend_from_slice(b"\r\n");
    }
}

/// The values of every `name` field, each followed by `, `: a trusted client's list that
/// tern's own value is appended to. Written straight from the source, no list is built.
fn write_values(src: &[u8], head: &RequestHead, name: Name, out: &mut Vec<u8>) {
    for f in head.fields.iter().filter(|f| f.name == name) {
        let v = &src[f.value.clone()];
        if !v.is_empty() && !f.listed_in_connection {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
}

/// An address in its usual text form, IPv4 by hand (the common case, and `fmt` costs more
/// than the rest of a forwarded field).
fn write_ip(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn drop_from_request(f: &Field, head: &RequestHead) -> bool {
    if f.listed_in_connection {
        return true;
    }
    match f.name {
        // An upgrade keeps its Upgrade header; Connection is rewritten to `upgrade` alone.
        Name::Upgrade => !head.upgrade,
        // TE is dropped even as `TE: trailers`: it is hop-by-hop and would need a matching
        // Connection option; tern passes trailers through in chunked bodies whatever it says.
        n => n.is_hop_by_hop(),
    }
}

/// Whether the client connection can carry another request after this response: not if
/// the client asked to close (or spoke HTTP/1.0 without keep-alive), not after a
/// close-delimited body (its end is the close), not after 101 (the connection becomes the
/// upgraded protocol's). A backend's `Connection: close` is no reason: it ends the backend
/// connection only (Connection is hop-by-hop). The caller also closes if it did not read the
/// request body to its end.
pub fn client_keep_alive(request_keep_alive: bool, resp: &ResponseHead) -> bool {
    request_keep_alive && resp.body() != Framing::Close && resp.status != 101
}

/// Writes the response head for the client into `out` (cleared first). `close` adds
/// `Connection: close` (tern will close after this response). For an HTTP/1.1 client; see
/// `response_for`.
pub fn response(src: &[u8], head: &ResponseHead, close: bool, out: &mut Vec<u8>) {
    response_for(src, head, 1, !close, out);
}

/// Writes the response head for a client that spoke HTTP/1.`client_minor`, which tern
/// keeps alive after it or not (`client_keep_alive`): the status line and end-to-end fields
/// as received, hop-by-hop fields removed (Upgrade kept for 101), a repeated Content-Length
/// as one field, and the Connection field tern's choice calls for (an HTTP/1.0 client needs
/// `keep-alive` spelled out, an HTTP/1.1 one `close`).
pub fn response_for(
    src: &[u8],
    head: &ResponseHead,
    client_minor: u8,
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&src[head.line.clone()]);
    let switching = head.status == 101;
    let mut length_written = false;
    for f in &head.fields {
        match f.name {
            _ if f.listed_in_connection => {}
            Name::Upgrade if switching => out.extend_from_slice(&src[f.line.clone()]),
            n if n.is_hop_by_hop() => {}
            Name::ContentLength if head.normalize_length => {
                // Framing may be None (HEAD, 304) while the length still describes the
                // resource: rewrite from the field itself.
                if !length_written {
                    if let Some(n) = super::fields::content_length(&src[f.value.clone()]) {
                        let _ = write!(out, "Content-Length: {n}\r\n");
                    }
                    length_written = true;
                }
            }
            _ => out.extend_from_slice(&src[f.line.clone()]),
        }
    }
    if switching {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// tern's own response for `status`: complete, HTTP/1.1, a short text body with its
/// Content-Length, and `Connection: close` (after an error tern closes: where the next
/// request would start may be unknown).
pub fn error_response(status: u16, out: &mut Vec<u8>) {
    // Callers pass tern's statuses; anything else must still give a valid response.
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let reason = reason(status);
    // The body is "<status> <reason>\n": three digits, a space, the reason, a newline.
    let body_len = 3 + 1 + reason.len() + 1;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n{status} {reason}\n",
    );
}

pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
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

    const UNTRUSTED: ForwardPolicy = ForwardPolicy {
        trust_client: false,
        forwarded: false,
    };
    const TRUSTED: ForwardPolicy = ForwardPolicy {
        trust_client: true,
        forwarded: true,
    };

    fn forwarded(text: &str, client: &str, policy: ForwardPolicy) -> String {
        let mut head = request::RequestHead::default();
        assert_eq!(
            request::parse(text.as_bytes(), &Limits::default(), &mut head),
            Ok(true)
        );
        let mut out = Vec::new();
        request(
            text.as_bytes(),
            &head,
            client.parse().unwrap(),
            policy,
            &mut out,
        );
        // What tern sends must itself be a valid head with the same framing.
        let mut again = request::RequestHead::default();
        assert_eq!(
            request::parse(&out, &Limits::default(), &mut again),
            Ok(true)
        );
        assert_eq!(again.body(), head.body());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let text = "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: evil\r\nAccept: */*\r\n\r\n";
        let out = forwarded(text, "203.0.113.7", UNTRUSTED);
        assert_eq!(
            out,
            "GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn client_identity_headers_are_always_tern_s_own() {
        use super::super::identity::{CertHeaders, PeerCert};
        let text = "GET / HTTP/1.1\r\nHost: a\r\nX-Client-Verify: SUCCESS\r\n\
                    x-client-subject: CN=admin\r\nX-CLIENT-FINGERPRINT: 00\r\n\
                    X-Forwarded-Client-Cert: Hash=00\r\nAccept: */*\r\n\r\n";
        for policy in [UNTRUSTED, TRUSTED] {
            // No client authentication on this connection: removed, nothing added.
            let out = forwarded(text, "10.0.0.1", policy);
            assert!(!out.to_ascii_lowercase().contains("client"), "{out}");
            assert!(out.contains("\r\nAccept: */*\r\n"), "{out}");
            // Optional and none sent: tern's NONE only.
            let mut head = request::RequestHead::default();
            request::parse(text.as_bytes(), &Limits::default(), &mut head).unwrap();
            let fields = IdentityFields::new(PeerCert::Absent, CertHeaders::default());
            let mut out = Vec::new();
            request_with(
                text.as_bytes(),
                &head,
                [10, 0, 0, 1].into(),
                policy,
                &fields,
                &mut out,
            );
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.ends_with("X-Forwarded-Proto: https\r\nX-Client-Verify: NONE\r\n\r\n")
                    || out.ends_with("proto=https\r\nX-Client-Verify: NONE\r\n\r\n"),
                "{out}"
            );
            assert_eq!(
                out.to_ascii_lowercase().matches("x-client").count(),
                1,
                "{out}"
            );
            assert!(
                !out.contains("CN=admin") && !out.contains("Hash=00"),
                "{out}"
            );
        }
    }

    #[test]
    fn trusted_forwarding_headers_are_appended_to() {
        let text = "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6, 7.7.7.7\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 8.8.8.8\r\n\r\n";
        let out = forwarded(text, "203.0.113.7", TRUSTED);
        assert_eq!(
            out,
            "GET /x HTTP/1.1\r\nHost: a\r\nX-Real-IP: 6.6.6.6\r\n\
             X-Forwarded-For: 6.6.6.6, 7.7.7.7, 8.8.8.8, 203.0.113.7\r\n\
             X-Forwarded-Proto: https\r\n\
             Forwarded: for=6.6.6.6, for=203.0.113.7;proto=https\r\n\r\n"
        );
        // Trusted, but nothing sent: only tern's values.
        let out = forwarded("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "10.1.2.3", TRUSTED);
        assert!(out.contains("\r\nX-Forwarded-For: 10.1.2.3\r\n"), "{out}");
        assert!(
            out.contains("\r\nForwarded: for=10.1.2.3;proto=https\r\n"),
            "{out}"
        );
    }

    #[test]
    fn ipv6_clients_are_quoted_and_bracketed_in_forwarded() {
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
        // An IPv4 client seen through a dual-stack socket is written as IPv4.
        let out = forwarded(
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "::ffff:192.0.2.1",
            policy,
        );
        assert!(out.contains("X-Forwarded-For: 192.0.2.1\r\n"), "{out}");
        assert!(
            out.contains("Forwarded: for=192.0.2.1;proto=https\r\n"),
            "{out}"
        );
    }

    #[test]
    fn ipv4_addresses_are_written_like_std_does() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.20.30.40",
            "100.200.255.9",
            "255.255.255.255",
        ] {
            let mut out = Vec::new();
            write_ip(ip.parse().unwrap(), &mut out);
            assert_eq!(out, ip.as_bytes());
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let text = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\nX-Hop: 1\r\nTE: trailers\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\nCookie: c=1\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", UNTRUSTED);
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum\r\nCookie: c=1\r\n\
             X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn fields_named_in_connection_are_removed_from_all_connection_fields() {
        let text = "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-a\r\nconnection: X-B , close\r\nX-A: 1\r\nx-b: 2\r\nX-C: 3\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", UNTRUSTED);
        assert!(!out.contains("X-A") && !out.contains("x-b"), "{out}");
        assert!(out.contains("X-C: 3\r\n"), "{out}");
    }

    #[test]
    fn connection_cannot_strip_framing_or_host() {
        // Without this, the backend would see no Content-Length and read the body as the
        // next request.
        let text = "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Transfer-Encoding, Host\r\nContent-Length: 5\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", UNTRUSTED);
        assert!(
            out.contains("\r\nHost: a\r\nContent-Length: 5\r\n"),
            "{out}"
        );
        assert!(!out.contains("Connection"), "{out}");
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let text = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", UNTRUSTED);
        assert_eq!(
            out,
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\
             Connection: upgrade\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        // With a field named in Connection too (the second pass over the tokens must not
        // take `upgrade` for a field name).
        let text = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: X-Hop, Upgrade\r\nX-Hop: 1\r\nUpgrade: websocket\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", UNTRUSTED);
        assert!(
            out.contains("\r\nUpgrade: websocket\r\n") && !out.contains("X-Hop"),
            "{out}"
        );
    }

    #[test]
    fn framing_headers_are_kept_and_repeated_lengths_made_one() {
        let out = forwarded(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "10.0.0.1",
            UNTRUSTED,
        );
        assert!(
            out.contains("\r\nTransfer-Encoding: gzip, chunked\r\n"),
            "{out}"
        );
        let out = forwarded(
            "POST / HTTP/1.1\r\nContent-Length: 7, 7\r\nHost: a\r\nContent-Length: 7\r\n\r\n",
            "10.0.0.1",
            UNTRUSTED,
        );
        assert_eq!(out.matches("Content-Length").count(), 1, "{out}");
        assert!(
            out.starts_with("POST / HTTP/1.1\r\nContent-Length: 7\r\nHost: a\r\n"),
            "{out}"
        );
    }

    #[test]
    fn absolute_form_targets_set_the_host() {
        let text = "GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n";
        let out = forwarded(text, "10.0.0.1", UNTRUSTED);
        assert!(
            out.starts_with(
                "GET http://b.example/x HTTP/1.1\r\nHost: b.example\r\nAccept: */*\r\n"
            ),
            "{out}"
        );
        let out = forwarded(
            "GET http://b.example/x HTTP/1.0\r\n\r\n",
            "10.0.0.1",
            UNTRUSTED,
        );
        assert!(out.contains("\r\nHost: b.example\r\n"), "{out}");
    }

    #[test]
    fn http_1_0_is_forwarded_as_1_0_with_keep_alive() {
        let out = forwarded(
            "GET / HTTP/1.0\r\nConnection: close\r\n\r\n",
            "10.0.0.1",
            UNTRUSTED,
        );
        assert_eq!(
            out,
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn leading_empty_lines_are_not_forwarded() {
        let out = forwarded(
            "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "10.0.0.1",
            UNTRUSTED,
        );
        assert!(out.starts_with("GET / HTTP/1.1\r\nHost: a\r\n"), "{out}");
    }

    #[test]
    fn rewriting_reuses_the_output_buffer() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
        let mut head = request::RequestHead::default();
        assert_eq!(
            request::parse(text, &Limits::default(), &mut head),
            Ok(true)
        );
        let mut out = Vec::with_capacity(4096);
        let ptr = out.as_ptr();
        for _ in 0..3 {
            request(text, &head, [10, 0, 0, 1].into(), TRUSTED, &mut out);
        }
        assert_eq!(out.as_ptr(), ptr, "no reallocation");
    }

    fn response_head(text: &str) -> resp::ResponseHead {
        let mut head = resp::ResponseHead::default();
        assert_eq!(resp::parse(text.as_bytes(), false, &mut head), Ok(true));
        head
    }

    fn client_head(text: &str, minor: u8, keep_alive: bool) -> String {
        let head = response_head(text);
        let mut out = Vec::new();
        response_for(text.as_bytes(), &head, minor, keep_alive, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_heads_lose_hop_by_hop_and_gain_close() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\nX-Internal: 1\r\nServer: b\r\n\r\nok";
        let head = response_head(text);
        let mut out = Vec::new();
        response(text.as_bytes(), &head, false, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: b\r\n\r\n"
        );
        response(text.as_bytes(), &head, true, &mut out);
        assert!(String::from_utf8_lossy(&out).ends_with("Server: b\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn http_1_0_clients_are_told_keep_alive() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(client_head(text, 0, true).ends_with("\r\nConnection: keep-alive\r\n\r\n"));
        assert!(client_head(text, 0, false).ends_with("\r\nConnection: close\r\n\r\n"));
        assert!(client_head(text, 1, true).ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn responses_cannot_strip_their_framing() {
        let text = "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            client_head(text, 1, true),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        );
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\n";
        assert_eq!(
            client_head(text, 1, true),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn switching_protocols_keeps_upgrade() {
        let text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert_eq!(
            client_head(text, 1, true),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_of_the_client_connection() {
        let ok = response_head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(client_keep_alive(true, &ok));
        assert!(!client_keep_alive(false, &ok));
        let backend_closes =
            response_head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(client_keep_alive(true, &backend_closes), "hop-by-hop");
        let until_close = response_head("HTTP/1.1 200 OK\r\n\r\n");
        assert!(!client_keep_alive(true, &until_close));
        let switching = response_head("HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n");
        assert!(!client_keep_alive(true, &switching));
    }

    #[test]
    fn error_responses_are_complete() {
        let mut out = Vec::new();
        for status in [
            400, 403, 404, 405, 408, 413, 414, 421, 431, 500, 502, 503, 504, 505, 7,
        ] {
            error_response(status, &mut out);
            let mut parsed = resp::ResponseHead::default();
            assert_eq!(resp::parse(&out, false, &mut parsed), Ok(true));
            let want = if status == 7 { 500 } else { status };
            assert_eq!(parsed.status, want);
            assert!(parsed.connection.close);
            let body = &out[parsed.len..];
            assert_eq!(parsed.body(), Framing::Length(body.len() as u64));
            assert!(body.starts_with(format!("{want} ").as_bytes()));
        }
    }
}
