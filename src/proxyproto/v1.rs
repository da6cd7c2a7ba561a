//! Version 1: one line of US-ASCII, `PROXY TCP4|TCP6 src dst sport dport\r\n` or
//! `PROXY UNKNOWN...\r\n`, at most 107 bytes. Held to the letter of the spec: single spaces,
//! decimal numbers without leading zeros, a CRLF and no lone CR or LF.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use super::{Addrs, Command, Error, Header, Parsed, Tlvs, Version};

/// The longest line the spec allows, CRLF included (`PROXY UNKNOWN` with two full IPv6
/// addresses and ports).
pub const MAX_LINE: usize = 107;

/// The shortest line, `PROXY UNKNOWN\r\n`.
const MIN_LINE: usize = 15;

const PREFIX: &[u8] = b"PROXY ";

/// Parses a v1 line at the start of `buf` (which starts with `P`).
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match memchr::memchr2(b'\r', b'\n', window) {
        Some(i) if window[i] == b'\r' => match buf.get(i + 1) {
            Some(b'\n') if i + 2 <= MAX_LINE => {
                let header = parse_line(&buf[..i])?;
                Ok(Parsed::Header { len: i + 2, header })
            }
            Some(b'\n') => Err(Error::V1TooLong),
            Some(_) => Err(Error::V1("a CR not followed by LF")),
            None if i + 2 > MAX_LINE => Err(Error::V1TooLong),
            None => {
                check_prefix(&buf[..i])?;
                Ok(Parsed::Incomplete { at_least: i + 2 })
            }
        },
        Some(_) => Err(Error::V1("an LF without CR")),
        // The CRLF is still to come, after every byte seen.
        None if buf.len() + 2 > MAX_LINE => Err(Error::V1TooLong),
        None => {
            check_prefix(buf)?;
            Ok(Parsed::Incomplete {
                at_least: (buf.len() + 2).max(MIN_LINE),
            })
        }
    }
}

/// Refuses a partial line (no CR or LF in it) as soon as it cannot start a valid one, so
/// that a client speaking something else is cut at once rather than at the timeout.
fn check_prefix(part: &[u8]) -> Result<(), Error> {
    let n = part.len().min(PREFIX.len());
    if part[..n] != PREFIX[..n] {
        return Err(prefix_error(part));
    }
    let Some(rest) = part.get(PREFIX.len()..) else {
        return Ok(());
    };
    for proto in [&b"TCP4 "[..], b"TCP6 "] {
        if let Some(fields) = rest.strip_prefix(proto) {
            let fits = |b: &u8| b.is_ascii_hexdigit() || b":. ".contains(b);
            if fields.iter().all(fits) {
                return Ok(());
            }
            return Err(Error::V1(
                "a character that has no place in an address or port",
            ));
        }
        if proto.starts_with(rest) {
            return Ok(());
        }
    }
    match rest.strip_prefix(b"UNKNOWN") {
        Some(after) if after.is_empty() || after[0] == b' ' => Ok(()),
        None if b"UNKNOWN".starts_with(rest) => Ok(()),
        _ => Err(UNKNOWN_PROTOCOL),
    }
}

const UNKNOWN_PROTOCOL: Error = Error::V1("a protocol other than TCP4, TCP6 or UNKNOWN");

fn prefix_error(line: &[u8]) -> Error {
    let n = line.len().min(5);
    if line[..n] != PREFIX[..n] {
        Error::NotProxy
    } else {
        Error::V1("PROXY not followed by one space")
    }
}

/// A whole line, CRLF removed.
fn parse_line(line: &[u8]) -> Result<Header, Error> {
    let Some(rest) = line.strip_prefix(PREFIX) else {
        return Err(prefix_error(line));
    };
    let (v6, fields) = if let Some(f) = rest.strip_prefix(b"TCP4 ") {
        (false, f)
    } else if let Some(f) = rest.strip_prefix(b"TCP6 ") {
        (true, f)
    } else {
        // The spec: for UNKNOWN the receiver ignores the rest of the line.
        return match rest.strip_prefix(b"UNKNOWN") {
            Some(after) if after.is_empty() || after[0] == b' ' => Ok(Header {
                version: Version::V1,
                command: Command::Proxy,
                addrs: None,
                tlvs: Tlvs::default(),
            }),
            _ => Err(UNKNOWN_PROTOCOL),
        };
    };
    let mut it = fields.split(|&b| b == b' ');
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(Error::V1("not four fields separated by single spaces"));
    };
    let (src, dst) = if v6 {
        (IpAddr::V6(ipv6(src)?), IpAddr::V6(ipv6(dst)?))
    } else {
        (IpAddr::V4(ipv4(src)?), IpAddr::V4(ipv4(dst)?))
    };
    Ok(Header {
        version: Version::V1,
        command: Command::Proxy,
        addrs: Some(Addrs {
            src: SocketAddr::new(src, port(sport)?),
            dst: SocketAddr::new(dst, port(dport)?),
        }),
        tlvs: Tlvs::default(),
    })
}

/// A decimal number of at most `max` without a leading zero (the spec forbids them, so
/// that nobody reads an octal number).
fn decimal(s: &[u8], max: u32) -> Option<u32> {
    let digits = s.len() <= 5 && !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    let n = s.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    (n <= max).then_some(n)
}

fn port(s: &[u8]) -> Result<u16, Error> {
    let bad = Error::V1("a port not a decimal 0..65535 without leading zeros");
    // decimal() caps the value at 65535.
    decimal(s, 65535).map(|n| n as u16).ok_or(bad)
}

fn ipv4(s: &[u8]) -> Result<Ipv4Addr, Error> {
    let bad = Error::V1("an IPv4 address not four decimal 0..255 without leading zeros");
    let mut octets = [0u8; 4];
    let mut it = s.split(|&b| b == b'.');
    for o in &mut octets {
        // decimal() caps the value at 255.
        *o = it.next().and_then(|p| decimal(p, 255)).ok_or(bad)? as u8;
    }
    match it.next() {
        None => Ok(Ipv4Addr::from(octets)),
        Some(_) => Err(bad),
    }
}

/// Hex groups with at most one `::`, as the spec says; a dotted IPv4 tail is accepted too,
/// because HAProxy writes a v4-mapped address that way (`::ffff:192.0.2.1`, inet_ntop's form).
fn ipv6(s: &[u8]) -> Result<Ipv6Addr, Error> {
    let bad = Error::V1("an IPv6 address that does not parse");
    if !s
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(bad);
    }
    // Only ASCII hex digits, colons and dots are left: valid UTF-8.
    let text = std::str::from_utf8(s).map_err(|_| bad)?;
    text.parse().map_err(|_| bad)
}

/// Writes the v1 line for a proxied TCP connection. Mixed families (an IPv6 client reaching
/// an IPv4 backend, or the reverse) are sent as TCP6 with the IPv4 address v4-mapped
/// (`::ffff:c000:201`), as HAProxy does, rather than UNKNOWN, so the receiver still learns
/// the client's address. IPv6 addresses are written as hex groups only (RFC 5952 form
/// without the dotted tail), the form the spec describes.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    // Writes into a Vec cannot fail.
    let _ = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => write!(
            out,
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        _ => {
            let (s, d) = (to_v6(src), to_v6(dst));
            out.extend_from_slice(b"PROXY TCP6 ");
            write_v6(out, s.ip());
            out.push(b' ');
            write_v6(out, d.ip());
            write!(out, " {} {}\r\n", s.port(), d.port())
        }
    };
}

/// The address as IPv6, v4-mapped if it is IPv4 (flow info and scope are not carried).
pub(super) fn to_v6(a: SocketAddr) -> SocketAddrV6 {
    match a {
        SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
        SocketAddr::V6(v6) => SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0),
    }
}

/// RFC 5952: lower-case hex groups without leading zeros, the longest run (first of equals)
/// of two or more zero groups written `::`.
fn write_v6(out: &mut Vec<u8>, ip: &Ipv6Addr) {
    let g = ip.segments();
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, &s) in g.iter().enumerate() {
        if s == 0 {
            run = if run.1 == 0 {
                (i, 1)
            } else {
                (run.0, run.1 + 1)
            };
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let skip = if best.1 >= 2 {
        best.0..best.0 + best.1
    } else {
        0..0
    };
    let mut i = 0;
    while i < 8 {
        if i == skip.start && !skip.is_empty() {
            out.extend_from_slice(b"::");
            i = skip.end;
            continue;
        }
        if i > 0 && i != skip.end {
            out.push(b':');
        }
        let _ = write!(out, "{:x}", g[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(ip: &str) -> String {
        let mut out = Vec::new();
        write_v6(&mut out, &ip.parse().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ipv6_text_is_rfc5952_hex_only() {
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("1::"), "1::");
        assert_eq!(v6("2001:db8::1"), "2001:db8::1");
        assert_eq!(v6("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(v6("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
        assert_eq!(v6("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(v6("::ffff:192.0.2.1"), "::ffff:c000:201");
        assert_eq!(
            v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        for ip in [
            "::",
            "1::",
            "::ffff:1.2.3.4",
            "1:0:0:2:0:0:0:3",
            "0:1:0:0:0:0:1:0",
        ] {
            let text = v6(ip);
            assert_eq!(
                text.parse::<Ipv6Addr>().unwrap(),
                ip.parse::<Ipv6Addr>().unwrap()
            );
        }
    }

    #[test]
    fn decimals_refuse_leading_zeros_and_overflow() {
        assert_eq!(decimal(b"0", 255), Some(0));
        assert_eq!(decimal(b"255", 255), Some(255));
        assert_eq!(decimal(b"256", 255), None);
        assert_eq!(decimal(b"01", 255), None);
        assert_eq!(decimal(b"", 255), None);
        assert_eq!(decimal(b"65535", 65535), Some(65535));
        assert_eq!(decimal(b"65536", 65535), None);
        assert_eq!(decimal(b"999999", u32::MAX), None);
        assert_eq!(decimal(b"+1", 255), None);
    }
}
