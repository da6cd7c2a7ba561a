//! The client-certificate identity headers tern gives the backend in http mode, written once
//! per connection (the identity is the connection's) and appended to each request head:
//!
//! - `X-Client-Verify: SUCCESS` or `NONE` — the values of nginx's `$ssl_client_verify`, which
//!   nginx setups usually forward under this kind of name; `NONE` when the certificate was
//!   optional and the client sent none. (A certificate that fails verification never gets
//!   this far: the handshake is refused.)
//! - `X-Client-Subject: CN=alice,O=Example` — the subject, RFC 4514 (as `$ssl_client_s_dn`).
//! - `X-Client-Fingerprint: <64 lower-case hex digits>` — SHA-256 of the leaf's DER.
//! - with `--forward-client-cert xfcc`, Envoy's `X-Forwarded-Client-Cert:
//!   Hash=<hex>;Subject="<DN>";URI=<uri>;DNS=<name>`.
//!
//! None of them is written when the connection's certificate asks for no client certificate,
//! and a client's own copies are always removed (`forward::request`), whatever
//! `--trust-forwarded` says: a client must never be able to claim an identity.
//!
//! Every value is made safe here, whatever the caller passes: a byte outside printable ASCII
//! is escaped (`\XX` in a subject, `%XX` in a URI or DNS name), so no CR, LF or NUL from a
//! certificate can reach the backend's header parser.

/// Which identity headers to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertHeaders {
    /// X-Client-Verify, X-Client-Subject, X-Client-Fingerprint.
    pub x_client: bool,
    /// X-Forwarded-Client-Cert (Envoy).
    pub xfcc: bool,
}

impl Default for CertHeaders {
    fn default() -> Self {
        CertHeaders {
            x_client: true,
            xfcc: false,
        }
    }
}

impl CertHeaders {
    /// A comma-separated list of `x-client`, `xfcc`, or `none`.
    pub fn parse(list: &str) -> Result<CertHeaders, String> {
        let mut h = CertHeaders {
            x_client: false,
            xfcc: false,
        };
        for word in list.split(',').map(str::trim) {
            match word {
                "x-client" => h.x_client = true,
                "xfcc" => h.xfcc = true,
                "none" => {}
                other => {
                    return Err(format!(
                        "'{other}' is not one of x-client, xfcc, none (comma-separated)"
                    ))
                }
            }
        }
        Ok(h)
    }
}

/// What the connection's handshake established, as the http layer sees it.
#[derive(Debug, Clone, Copy)]
pub enum PeerCert<'a> {
    /// No client certificate was asked for: no identity headers.
    NotRequested,
    /// Asked for, none sent.
    Absent,
    Verified {
        /// RFC 4514.
        subject: &'a str,
        fingerprint_sha256: &'a [u8; 32],
        uris: &'a [String],
        dns: &'a [String],
    },
}

/// Header lines to append to every request of one connection; only [`IdentityFields::new`]
/// makes them, so they are always well-formed and safe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityFields(Vec<u8>);

impl IdentityFields {
    pub fn new(peer: PeerCert<'_>, which: CertHeaders) -> IdentityFields {
        let mut out = Vec::new();
        match peer {
            PeerCert::NotRequested => {}
            PeerCert::Absent => {
                if which.x_client {
                    out.extend_from_slice(b"X-Client-Verify: NONE\r\n");
                }
            }
            PeerCert::Verified {
                subject,
                fingerprint_sha256,
                uris,
                dns,
            } => {
                if which.x_client {
                    out.extend_from_slice(b"X-Client-Verify: SUCCESS\r\nX-Client-Subject: ");
                    subject_value(subject, &mut out);
                    out.extend_from_slice(b"\r\nX-Client-Fingerprint: ");
                    hex(fingerprint_sha256, &mut out);
                    out.extend_from_slice(b"\r\n");
                }
                if which.xfcc {
                    out.extend_from_slice(b"X-Forwarded-Client-Cert: Hash=");
                    hex(fingerprint_sha256, &mut out);
                    // Envoy always quotes the subject; RFC 4514 has already escaped any `"`
                    // and `\` in it, so the quoted string ends where it should.
                    out.extend_from_slice(b";Subject=\"");
                    subject_value(subject, &mut out);
                    out.push(b'"');
                    for (key, values) in [(&b";URI="[..], uris), (b";DNS=", dns)] {
                        for v in values {
                            out.extend_from_slice(key);
                            xfcc_value(v, &mut out);
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        IdentityFields(out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 15) as usize]);
    }
}

fn escaped(b: u8, lead: u8, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[lead, DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
}

/// A subject as given (RFC 4514 already escapes it to printable ASCII); anything else, and a
/// space at either end (a header parser would trim it), as `\XX`, RFC 4514's own hex escape.
fn subject_value(subject: &str, out: &mut Vec<u8>) {
    let bytes = subject.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b' ' if i == 0 || i == last => escaped(b, b'\\', out),
            0x20..=0x7e => out.push(b),
            _ => escaped(b, b'\\', out),
        }
    }
}

/// A URI or DNS name in XFCC: bytes outside printable ASCII percent-encoded (a URI's own
/// escapes are left as they are), quoted when it holds one of XFCC's separators.
fn xfcc_value(v: &str, out: &mut Vec<u8>) {
    let quote = v
        .bytes()
        .any(|b| matches!(b, b',' | b';' | b'=' | b'"' | b'\\'));
    if quote {
        out.push(b'"');
    }
    for b in v.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x21..=0x7e => out.push(b),
            _ => escaped(b, b'%', out),
        }
    }
    if quote {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: [u8; 32] = [
        0x00, 0x01, 0x0a, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0,
        0xc0, 0xd0, 0xe0, 0xf0, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5,
        0xb4, 0xc3,
    ];
    const FP_HEX: &str = "00010aff102030405060708090a0b0c0d0e0f00f1e2d3c4b5a69788796a5b4c3";

    fn text(peer: PeerCert<'_>, which: CertHeaders) -> String {
        String::from_utf8(IdentityFields::new(peer, which).0).unwrap()
    }

    fn verified<'a>(subject: &'a str, uris: &'a [String], dns: &'a [String]) -> PeerCert<'a> {
        PeerCert::Verified {
            subject,
            fingerprint_sha256: &FP,
            uris,
            dns,
        }
    }

    const BOTH: CertHeaders = CertHeaders {
        x_client: true,
        xfcc: true,
    };

    #[test]
    fn verified_absent_and_not_requested() {
        let v = verified("CN=alice,O=Example\\, Inc.", &[], &[]);
        assert_eq!(
            text(v, CertHeaders::default()),
            format!(
                "X-Client-Verify: SUCCESS\r\nX-Client-Subject: CN=alice,O=Example\\, Inc.\r\n\
                 X-Client-Fingerprint: {FP_HEX}\r\n"
            )
        );
        assert_eq!(
            text(PeerCert::Absent, CertHeaders::default()),
            "X-Client-Verify: NONE\r\n"
        );
        assert_eq!(text(PeerCert::NotRequested, BOTH), "");
        assert_eq!(
            text(PeerCert::Absent, CertHeaders::parse("none").unwrap()),
            ""
        );
    }

    #[test]
    fn envoy_xfcc() {
        let uris = ["spiffe://example.org/ns/a".to_string()];
        let dns = ["a.example".to_string(), "b;c".to_string()];
        let v = verified("CN=a\\\"b,O=x", &uris, &dns);
        let which = CertHeaders::parse("xfcc").unwrap();
        assert_eq!(
            text(v, which),
            format!(
                "X-Forwarded-Client-Cert: Hash={FP_HEX};Subject=\"CN=a\\\"b,O=x\";\
                 URI=spiffe://example.org/ns/a;DNS=a.example;DNS=\"b;c\"\r\n"
            )
        );
        assert!(text(v, BOTH).starts_with("X-Client-Verify: SUCCESS\r\n"));
        assert_eq!(text(PeerCert::Absent, which), "", "XFCC has no NONE");
    }

    #[test]
    fn nothing_unsafe_reaches_a_header() {
        // Whatever the caller passes, no CR, LF, NUL or other control byte is written.
        let nasty = "CN=x\r\nX-Evil: 1\0\u{7f}\u{e9} ";
        let uris = ["spiffe://a/\r\nX-Evil: 1".to_string()];
        let out = text(verified(nasty, &uris, &uris), BOTH);
        for line in out.split_terminator("\r\n") {
            assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "{line:?}");
            assert!(!line.starts_with("X-Evil"), "{out}");
        }
        assert!(
            out.contains("X-Client-Subject: CN=x\\0D\\0AX-Evil: 1\\00\\7F\\C3\\A9\\20\r\n"),
            "{out}"
        );
        assert!(out.contains(";URI=spiffe://a/%0D%0AX-Evil:%201"), "{out}");
    }

    #[test]
    fn header_lists_parse() {
        assert_eq!(CertHeaders::parse("x-client,xfcc").unwrap(), BOTH);
        assert_eq!(
            CertHeaders::parse("x-client").unwrap(),
            CertHeaders::default()
        );
        let e = CertHeaders::parse("rfc9440").unwrap_err();
        assert!(e.contains("'rfc9440'"), "{e}");
    }
}
