//! Version 1 lines.

use super::*;

#[test]
fn v1_spec_example() {
    let buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
    let (len, h) = header(buf);
    assert_eq!(len, 47);
    assert_eq!((h.version, h.command), (Version::V1, Command::Proxy));
    let a = h.addrs.unwrap();
    assert_eq!(
        (a.src, a.dst),
        (sa("192.168.0.1:56324"), sa("192.168.0.11:443"))
    );
    assert_eq!(h.tlvs, Tlvs::default());
    every_prefix_incomplete(buf, len);
}

#[test]
fn v1_longest_lines_of_the_spec() {
    let tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(header(tcp4).0, 56);
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let tcp6 = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
    let (len, h) = header(tcp6.as_bytes());
    assert_eq!(len, 104);
    assert_eq!(h.addrs.unwrap().src, sa(&format!("[{f}]:65535")));
    let worst = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
    assert_eq!(worst.len(), V1_MAX_LINE);
    let (len, h) = header(worst.as_bytes());
    assert_eq!((len, h.addrs), (107, None));
    // One byte more is over the limit, whether the CRLF shows or not.
    let over = format!("PROXY UNKNOWN {f} {f} 65535 655350\r\n");
    assert_eq!(error(over.as_bytes()), Error::V1TooLong);
    assert_eq!(error(&over.as_bytes()[..107]), Error::V1TooLong);
    // 106 bytes and no CR: the CRLF cannot end by byte 107.
    assert_eq!(error(&over.as_bytes()[..106]), Error::V1TooLong);
    assert_eq!(
        parse(&over.as_bytes()[..105]),
        Ok(Parsed::Incomplete { at_least: 107 })
    );
    every_prefix_incomplete(worst.as_bytes(), 107);
}

#[test]
fn v1_unknown_ignores_the_rest_of_its_line() {
    let (len, h) = header(b"PROXY UNKNOWN\r\n\x16\x03\x01");
    assert_eq!((len, h.command, h.addrs), (15, Command::Proxy, None));
    let (len, h) = header(b"PROXY UNKNOWN whatever \xff here\r\n");
    assert_eq!((len, h.addrs), (31, None));
}

#[test]
fn v1_ipv6_forms() {
    let (_, h) = header(b"PROXY TCP6 2001:db8::1 ::1 1 0\r\n");
    let a = h.addrs.unwrap();
    assert_eq!((a.src, a.dst), (sa("[2001:db8::1]:1"), sa("[::1]:0")));
    // Upper case hex, and the v4-mapped form inet_ntop (HAProxy) writes.
    let (_, h) = header(b"PROXY TCP6 2001:DB8::A ::ffff:192.0.2.1 80 443\r\n");
    let a = h.addrs.unwrap();
    assert_eq!(
        (a.src, a.dst),
        (sa("[2001:db8::a]:80"), sa("[::ffff:192.0.2.1]:443"))
    );
}

#[test]
fn v1_refusals() {
    let bad: &[(&[u8], Error)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", Error::NotProxy),
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Error::NotProxy),
        (b"PROXY\r\n", Error::V1("PROXY not followed by one space")),
        (
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            Error::V1("a protocol other than TCP4, TCP6 or UNKNOWN"),
        ),
        (
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            Error::V1("a protocol other than TCP4, TCP6 or UNKNOWN"),
        ),
        (
            b"PROXY UNKNOWNX\r\n",
            Error::V1("a protocol other than TCP4, TCP6 or UNKNOWN"),
        ),
        (
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            Error::V1("a protocol other than TCP4, TCP6 or UNKNOWN"),
        ),
        (
            b"PROXY TCP4\r\n",
            Error::V1("a protocol other than TCP4, TCP6 or UNKNOWN"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            Error::V1("not four fields separated by single spaces"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            Error::V1("not four fields separated by single spaces"),
        ),
        (
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            Error::V1("not four fields separated by single spaces"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            Error::V1("not four fields separated by single spaces"),
        ),
        (
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            Error::V1("an IPv4 address not four decimal 0..255 without leading zeros"),
        ),
        (
            b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
            Error::V1("an IPv4 address not four decimal 0..255 without leading zeros"),
        ),
        (
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            Error::V1("an IPv4 address not four decimal 0..255 without leading zeros"),
        ),
        (
            b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
            Error::V1("an IPv4 address not four decimal 0..255 without leading zeros"),
        ),
        (
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            Error::V1("an IPv4 address not four decimal 0..255 without leading zeros"),
        ),
        (
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            Error::V1("an IPv6 address that does not parse"),
        ),
        (
            b"PROXY TCP6 1::2::3 ::1 1 2\r\n",
            Error::V1("an IPv6 address that does not parse"),
        ),
        (
            b"PROXY TCP6 fe80::1%lo ::1 1 2\r\n",
            Error::V1("an IPv6 address that does not parse"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            Error::V1("a port not a decimal 0..65535 without leading zeros"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            Error::V1("a port not a decimal 0..65535 without leading zeros"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
            Error::V1("a port not a decimal 0..65535 without leading zeros"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            Error::V1("an LF without CR"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
            Error::V1("a CR not followed by LF"),
        ),
        (
            b"PROXY UNKNOWN\rx\r\n",
            Error::V1("a CR not followed by LF"),
        ),
    ];
    for (buf, want) in bad {
        assert_eq!(error(buf), *want, "{:?}", String::from_utf8_lossy(buf));
    }
}

#[test]
fn v1_refused_before_the_line_ends() {
    // What cannot start a valid line is refused at once, not when 107 bytes have come.
    assert_eq!(error(b"G"), Error::NotProxy);
    assert_eq!(error(b"PROXX"), Error::NotProxy);
    assert_eq!(
        error(b"PROXY-"),
        Error::V1("PROXY not followed by one space")
    );
    assert_eq!(
        error(b"PROXY TCP7"),
        Error::V1("a protocol other than TCP4, TCP6 or UNKNOWN")
    );
    assert_eq!(
        error(b"PROXY TCP4 1.2.3.4 x"),
        Error::V1("a character that has no place in an address or port")
    );
    assert_eq!(error(b"PROXY TCP4 1.2\n"), Error::V1("an LF without CR"));
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
        Ok(Parsed::Incomplete { at_least: 32 })
    );
    assert_eq!(parse(b""), Ok(Parsed::Incomplete { at_least: 15 }));
    assert_eq!(parse(b"PROX"), Ok(Parsed::Incomplete { at_least: 15 }));
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4"),
        Ok(Parsed::Incomplete { at_least: 20 })
    );
}
