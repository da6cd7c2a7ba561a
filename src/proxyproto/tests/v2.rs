//! Version 2 headers and their TLVs.

use super::*;

#[test]
fn v2_tcp4_and_tcp6() {
    let buf = [v4_with(&[]), b"\x16\x03\x01".to_vec()].concat();
    let (len, h) = header(&buf);
    assert_eq!(len, 28);
    assert_eq!((h.version, h.command), (Version::V2, Command::Proxy));
    let a = h.addrs.unwrap();
    assert_eq!(
        (a.src, a.dst),
        (sa("192.0.2.1:56324"), sa("198.51.100.7:443"))
    );
    every_prefix_incomplete(&buf, len);

    let mut block = Vec::new();
    for ip in ["2001:db8::1", "::1"] {
        block.extend_from_slice(&ip.parse::<std::net::Ipv6Addr>().unwrap().octets());
    }
    block.extend_from_slice(&[0xff, 0xff, 0x00, 0x50]);
    let (len, h) = header(&v2(0x21, 0x21, &block));
    assert_eq!(len, 52);
    let a = h.addrs.unwrap();
    assert_eq!((a.src, a.dst), (sa("[2001:db8::1]:65535"), sa("[::1]:80")));
}

#[test]
fn v2_families_without_socket_addresses() {
    // AF_UNIX: 216 address bytes, then TLVs that still count.
    let body = [vec![b'/'; 216], tlv(PP2_TYPE_AUTHORITY, b"a.example")].concat();
    let (_, h) = header(&v2(0x21, 0x31, &body));
    assert_eq!(h.addrs, None);
    assert_eq!(h.tlvs.authority.as_deref(), Some("a.example"));
    // AF_UNSPEC under PROXY: whatever follows is ignored.
    let (len, h) = header(&v2(0x21, 0x00, b"\x01\x02\x03"));
    assert_eq!(
        (len, h.command, h.addrs, h.tlvs),
        (19, Command::Proxy, None, Tlvs::default())
    );
    // LOCAL: the block is discarded whatever the family says, and its length is honoured.
    let (len, h) = header(&v2(0x20, 0x11, &V4_BLOCK));
    assert_eq!((len, h.command, h.addrs), (28, Command::Local, None));
    let (len, h) = header(&v2(0x20, 0xff, b""));
    assert_eq!((len, h.command), (16, Command::Local));
}

#[test]
fn v2_refusals_in_the_fixed_part() {
    let good = v4_with(&[]);
    for i in 0..12 {
        let mut b = good.clone();
        b[i] ^= 0x40;
        assert!(
            matches!(error(&b), Error::NotProxy | Error::V1(_)),
            "byte {i}"
        );
        // Seen as soon as the byte arrives.
        assert!(parse(&b[..=i]).is_err(), "prefix to byte {i}");
    }
    for (ver_cmd, want) in [
        (0x11, Error::Version(1)),
        (0x31, Error::Version(3)),
        (0x22, Error::Command(2)),
        (0x2f, Error::Command(15)),
    ] {
        let mut b = good.clone();
        b[12] = ver_cmd;
        assert_eq!(error(&b), want);
        assert_eq!(error(&b[..13]), want);
    }
    for (fam, want) in [
        (0x12, Error::Datagram),
        (0x22, Error::Datagram),
        (0x32, Error::Datagram),
        (0x41, Error::Family(0x41)),
        (0x13, Error::Family(0x13)),
        (0x10, Error::Family(0x10)),
        (0x01, Error::Family(0x01)),
    ] {
        let mut b = good.clone();
        b[13] = fam;
        assert_eq!(error(&b), want);
        assert_eq!(error(&b[..14]), want);
    }
}

#[test]
fn v2_address_blocks_too_short() {
    for (fam, need) in [(0x11u8, 12usize), (0x21, 36), (0x31, 216)] {
        let b = v2(0x21, fam, &vec![0; need - 1]);
        assert_eq!(
            error(&b),
            Error::AddressLength {
                family: fam,
                len: need - 1
            }
        );
        assert_eq!(header(&v2(0x21, fam, &vec![0; need])).0, 16 + need);
    }
}

#[test]
fn v2_length_bound() {
    let big = v4_with(&tlv(0xe0, &[0; 5000]));
    assert_eq!(
        error(&big),
        Error::TooLarge {
            len: big.len(),
            max: DEFAULT_MAX_HEADER
        }
    );
    // Refused from its fixed part, before the rest is waited for.
    assert_eq!(
        error(&big[..16]),
        Error::TooLarge {
            len: big.len(),
            max: DEFAULT_MAX_HEADER
        }
    );
    assert!(matches!(
        parse_with(&big, big.len()),
        Ok(Parsed::Header { .. })
    ));
    assert!(matches!(
        parse_with(&big, big.len() - 1),
        Err(Error::TooLarge { .. })
    ));
    let at_limit = v4_with(&tlv(0xe0, &[0; DEFAULT_MAX_HEADER - 28 - 3]));
    assert_eq!(header(&at_limit).0, DEFAULT_MAX_HEADER);
}

#[test]
fn v2_tlvs_parsed() {
    let ssl_value = [
        &[
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS,
            0,
            0,
            0,
            0,
        ][..],
        &tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3"),
        &tlv(PP2_SUBTYPE_SSL_CN, b"client.example"),
        &tlv(0x26, b"X25519"), // a sub-type newer than this parser: skipped
        &tlv(PP2_SUBTYPE_SSL_CIPHER, b"TLS_AES_128_GCM_SHA256"),
        &tlv(PP2_SUBTYPE_SSL_SIG_ALG, b"RSA-SHA256"),
        &tlv(PP2_SUBTYPE_SSL_KEY_ALG, b"RSA2048"),
    ]
    .concat();
    let tlvs = [
        tlv(PP2_TYPE_NOOP, b""),
        tlv(PP2_TYPE_ALPN, b"h2"),
        tlv(PP2_TYPE_AUTHORITY, b"api.example"),
        tlv(0xe5, b"custom, skipped"),
        tlv(PP2_TYPE_UNIQUE_ID, &[7; 128]),
        tlv(PP2_TYPE_SSL, &ssl_value),
        tlv(PP2_TYPE_NETNS, b"blue"),
    ]
    .concat();
    let (_, h) = header(&v4_with(&tlvs));
    let want = Tlvs {
        alpn: Some(b"h2".to_vec()),
        authority: Some("api.example".into()),
        unique_id: Some(vec![7; 128]),
        ssl: Some(Ssl {
            client: 7,
            verify: 0,
            version: Some("TLSv1.3".into()),
            cn: Some("client.example".into()),
            cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            sig_alg: Some("RSA-SHA256".into()),
            key_alg: Some("RSA2048".into()),
        }),
        netns: Some("blue".into()),
        crc32c: false,
    };
    assert_eq!(h.tlvs, want);
    assert!(want.ssl.as_ref().unwrap().client_verified());
}

#[test]
fn v2_tlv_refusals() {
    let ssl_head = [1u8, 0, 0, 0, 0];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![PP2_TYPE_ALPN], "a TLV cut short"),
        (vec![PP2_TYPE_ALPN, 0], "a TLV cut short"),
        (
            vec![PP2_TYPE_ALPN, 0, 3, b'h', b'2'],
            "a TLV past the end of the header",
        ),
        (
            [tlv(PP2_TYPE_NOOP, b""), vec![0xe0, 0xff, 0xff]].concat(),
            "a TLV past the end of the header",
        ),
        (
            tlv(PP2_TYPE_SSL, &[1, 0, 0, 0]),
            "an SSL TLV shorter than 5 bytes",
        ),
        (tlv(PP2_TYPE_SSL, &[]), "an SSL TLV shorter than 5 bytes"),
        (
            tlv(PP2_TYPE_SSL, &[&ssl_head[..], &[0x21, 0]].concat()),
            "an SSL sub-TLV cut short",
        ),
        (
            tlv(PP2_TYPE_SSL, &[&ssl_head[..], &[0x21, 0, 9, b'T']].concat()),
            "an SSL sub-TLV past its SSL TLV",
        ),
        (
            tlv(
                PP2_TYPE_SSL,
                &[&ssl_head[..], &tlv(0x22, b"a"), &tlv(0x22, b"b")].concat(),
            ),
            "two SSL_CN sub-TLVs",
        ),
        (
            tlv(PP2_TYPE_SSL, &[&ssl_head[..], &tlv(0x23, b"\xff")].concat()),
            "SSL_CIPHER is not UTF-8",
        ),
        (
            [tlv(PP2_TYPE_ALPN, b"h2"), tlv(PP2_TYPE_ALPN, b"h2")].concat(),
            "two ALPN TLVs",
        ),
        (
            [tlv(PP2_TYPE_SSL, &ssl_head), tlv(PP2_TYPE_SSL, &ssl_head)].concat(),
            "two SSL TLVs",
        ),
        (tlv(PP2_TYPE_AUTHORITY, b"\xc3("), "AUTHORITY is not UTF-8"),
        (tlv(PP2_TYPE_NETNS, b"\x80"), "NETNS is not UTF-8"),
        (
            tlv(PP2_TYPE_UNIQUE_ID, &[0; 129]),
            "a UNIQUE_ID over 128 bytes",
        ),
        (
            tlv(PP2_TYPE_CRC32C, &[0; 3]),
            "a CRC32C TLV not 4 bytes long",
        ),
    ];
    for (tlvs, why) in cases {
        assert_eq!(error(&v4_with(&tlvs)), Error::Tlv(why), "{tlvs:?}");
    }
}

#[test]
fn v2_checksum_verified() {
    let tlvs = Tlvs {
        alpn: Some(b"http/1.1".to_vec()),
        crc32c: true,
        ..Tlvs::default()
    };
    let mut out = Vec::new();
    encode_v2(sa("192.0.2.1:1000"), sa("192.0.2.2:443"), &tlvs, &mut out).unwrap();
    assert_eq!(header(&out).1.tlvs, tlvs);
    // Any change anywhere in the header, checksum included, is caught.
    for i in 16..out.len() {
        let mut bad = out.clone();
        bad[i] ^= 0x01;
        match parse(&bad) {
            Err(Error::Checksum) => {}
            // Flipping a TLV's type or length makes it another TLV or no TLV at all.
            Err(Error::Tlv(_)) => {}
            Ok(Parsed::Header { header, .. }) => assert!(!header.tlvs.crc32c, "byte {i}"),
            other => panic!("byte {i}: {other:?}"),
        }
    }
    let mut bad = out.clone();
    bad[16] ^= 1; // the source address
    assert_eq!(error(&bad), Error::Checksum);
    let mut two = out.clone();
    two.extend_from_slice(&tlv(PP2_TYPE_CRC32C, &[0; 4]));
    let len = (two.len() - 16) as u16;
    two[14..16].copy_from_slice(&len.to_be_bytes());
    assert_eq!(error(&two), Error::Tlv("two CRC32C TLVs"));
}
