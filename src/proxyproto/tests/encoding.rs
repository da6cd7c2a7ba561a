//! Encoders: round trips, mixed families, what cannot be carried.

use super::*;

#[test]
fn round_trips() {
    let pairs = [
        ("192.0.2.1:56324", "198.51.100.7:443"),
        ("0.0.0.0:0", "255.255.255.255:65535"),
        ("[2001:db8::1]:1", "[2001:db8::2]:2"),
        ("[::]:0", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        ("[::ffff:192.0.2.1]:5", "[::1]:6"),
    ];
    let full = Tlvs {
        alpn: Some(b"h2".to_vec()),
        authority: Some("tern.example".into()),
        unique_id: Some(vec![1; 128]),
        ssl: Some(
            Ssl::terminated("TLSv1.3", "TLS_AES_128_GCM_SHA256").with_verified_client(Some("c")),
        ),
        netns: Some("ns".into()),
        crc32c: true,
    };
    for (src, dst) in pairs {
        let (src, dst) = (sa(src), sa(dst));
        let mut line = Vec::new();
        encode_v1(src, dst, &mut line);
        let (len, h) = header(&line);
        assert_eq!((len, h.addrs), (line.len(), Some(Addrs { src, dst })));
        every_prefix_incomplete(&line, len);
        for tlvs in [Tlvs::default(), full.clone()] {
            let mut out = Vec::new();
            encode_v2(src, dst, &tlvs, &mut out).unwrap();
            let (len, h) = header(&out);
            assert_eq!(len, out.len());
            assert_eq!(
                h,
                Header {
                    version: Version::V2,
                    command: Command::Proxy,
                    addrs: Some(Addrs { src, dst }),
                    tlvs
                }
            );
            every_prefix_incomplete(&out, len);
        }
    }
    let mut local = Vec::new();
    encode_v2_local(&mut local);
    assert_eq!(
        header(&local),
        (
            16,
            Header {
                version: Version::V2,
                command: Command::Local,
                addrs: None,
                tlvs: Tlvs::default()
            }
        )
    );
}

#[test]
fn mixed_families_are_sent_v4_mapped() {
    let (src, dst) = (sa("[2001:db8::7]:40000"), sa("192.0.2.9:8080"));
    let mut line = Vec::new();
    encode_v1(src, dst, &mut line);
    assert_eq!(
        line,
        b"PROXY TCP6 2001:db8::7 ::ffff:c000:209 40000 8080\r\n"
    );
    let mut out = Vec::new();
    encode_v2(dst, src, &Tlvs::default(), &mut out).unwrap();
    assert_eq!(out[13], 0x21);
    let a = header(&out).1.addrs.unwrap();
    assert_eq!((a.src, a.dst), (sa("[::ffff:192.0.2.9]:8080"), src));
    assert_eq!(a.src.ip().to_canonical(), dst.ip());
    // Flow info and scope IDs are not part of the protocol.
    let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
        "fe80::1".parse().unwrap(),
        1,
        7,
        3,
    ));
    let mut out = Vec::new();
    encode_v2(scoped, scoped, &Tlvs::default(), &mut out).unwrap();
    assert_eq!(header(&out).1.addrs.unwrap().src, sa("[fe80::1]:1"));
}

#[test]
fn encoding_refuses_what_cannot_be_carried() {
    let mut out = b"kept".to_vec();
    let long_id = Tlvs {
        unique_id: Some(vec![0; 129]),
        ..Tlvs::default()
    };
    let (a, b) = (sa("192.0.2.1:1"), sa("192.0.2.2:2"));
    assert_eq!(
        encode_v2(a, b, &long_id, &mut out),
        Err(TooLong("UNIQUE_ID (128 bytes at most)"))
    );
    let huge = Tlvs {
        alpn: Some(vec![0; 70_000]),
        ..Tlvs::default()
    };
    assert_eq!(encode_v2(a, b, &huge, &mut out), Err(TooLong("ALPN")));
    let sum = Tlvs {
        authority: Some("a".repeat(40_000)),
        netns: Some("n".repeat(40_000)),
        ..Tlvs::default()
    };
    assert_eq!(encode_v2(a, b, &sum, &mut out), Err(TooLong("the header")));
    let cn = "c".repeat(65_530);
    let ssl = Tlvs {
        ssl: Some(Ssl::terminated("TLSv1.3", "x").with_verified_client(Some(&cn))),
        ..Tlvs::default()
    };
    assert_eq!(encode_v2(a, b, &ssl, &mut out), Err(TooLong("SSL")));
    assert_eq!(out, b"kept");
}

#[test]
fn ssl_as_tern_sends_it() {
    let anon = Ssl::terminated("TLSv1.3", "TLS_AES_128_GCM_SHA256");
    assert_eq!(
        (anon.client, anon.verify, anon.cn.as_deref()),
        (PP2_CLIENT_SSL, 1, None)
    );
    assert!(anon.is_tls() && !anon.client_verified());
    let mtls = anon.clone().with_verified_client(Some("alice"));
    assert_eq!(
        (mtls.client, mtls.verify, mtls.cn.as_deref()),
        (7, 0, Some("alice"))
    );
    assert!(mtls.client_verified());
    assert_eq!(mtls.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(anon.with_verified_client(None).cn, None);
}
