//! Bytes from a real HAProxy 2.6 (testdata/manifest.txt says what its clients knew).

use super::*;

const PAYLOAD: &[u8] = b"hello after the header\n";

/// The fixture parses to a header that ends exactly where the relayed payload begins.
fn fixture(bytes: &[u8]) -> Header {
    let (len, h) = header(bytes);
    assert_eq!(&bytes[len..], PAYLOAD);
    every_prefix_incomplete(bytes, len);
    h
}

#[test]
fn haproxy_v1() {
    let bytes = include_bytes!("../testdata/v1_tcp4.bin");
    let h = fixture(bytes);
    assert_eq!(
        h.addrs,
        Some(Addrs {
            src: sa("127.0.0.1:51572"),
            dst: sa("127.0.0.1:42979")
        })
    );
    let mut out = Vec::new();
    encode_v1(sa("127.0.0.1:51572"), sa("127.0.0.1:42979"), &mut out);
    assert_eq!(out, bytes[..bytes.len() - PAYLOAD.len()]);

    let bytes = include_bytes!("../testdata/v1_tcp6.bin");
    let h = fixture(bytes);
    assert_eq!(
        h.addrs,
        Some(Addrs {
            src: sa("[::1]:55452"),
            dst: sa("[::1]:54329")
        })
    );
    let mut out = Vec::new();
    encode_v1(sa("[::1]:55452"), sa("[::1]:54329"), &mut out);
    assert_eq!(out, bytes[..bytes.len() - PAYLOAD.len()]);
}

#[test]
fn haproxy_v2_ssl_cn() {
    // `send-proxy-v2 send-proxy-v2-ssl-cn`, a client with a certificate.
    let bytes = include_bytes!("../testdata/v2_ssl_cn.bin");
    let h = fixture(bytes);
    let (src, dst) = (sa("127.0.0.1:45090"), sa("127.0.0.1:57171"));
    assert_eq!(h.addrs, Some(Addrs { src, dst }));
    let ssl = Ssl {
        client: PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS,
        verify: 0,
        version: Some("TLSv1.3".into()),
        cn: Some("client.tern.example".into()),
        ..Ssl::default()
    };
    let want = Tlvs {
        alpn: Some(b"h2".to_vec()),
        ssl: Some(ssl),
        ..Tlvs::default()
    };
    assert_eq!(h.tlvs, want);
    // tern's encoder writes the same facts as the same bytes.
    let mut out = Vec::new();
    encode_v2(src, dst, &want, &mut out).unwrap();
    assert_eq!(out, bytes[..bytes.len() - PAYLOAD.len()]);
}

#[test]
fn haproxy_v2_every_option_with_crc32c() {
    // proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id
    let bytes = include_bytes!("../testdata/v2_all.bin");
    let h = fixture(bytes);
    let (src, dst) = (sa("127.0.0.1:39182"), sa("127.0.0.1:37159"));
    assert_eq!(h.addrs, Some(Addrs { src, dst }));
    let t = &h.tlvs;
    assert!(t.crc32c, "HAProxy's checksum verified");
    assert_eq!(t.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(t.authority.as_deref(), Some("tern.example"));
    // unique-id-format %{+X}o %ci:%cp_%fi:%fp: the client's and frontend's address in hex.
    assert_eq!(
        t.unique_id.as_deref(),
        Some(&b"7F000001:990E_7F000001:9127"[..])
    );
    assert_eq!((0x990e, 0x9127), (39182, 37159));
    let ssl = t.ssl.as_ref().unwrap();
    assert_eq!((ssl.client, ssl.verify), (7, 0));
    assert_eq!(ssl.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(ssl.cn.as_deref(), Some("client.tern.example"));
    assert_eq!(ssl.cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
    // The frontend's own certificate: ECDSA P-256, signed by an ECDSA CA.
    assert_eq!(ssl.sig_alg.as_deref(), Some("ecdsa-with-SHA256"));
    assert_eq!(ssl.key_alg.as_deref(), Some("EC256"));
    // Same facts, same bytes, same checksum.
    let mut out = Vec::new();
    encode_v2(src, dst, t, &mut out).unwrap();
    assert_eq!(out, bytes[..bytes.len() - PAYLOAD.len()]);
    let mut bad = bytes.to_vec();
    bad[32] ^= 0x80; // inside HAProxy's checksum value (its TLV starts at byte 28)
    assert_eq!(error(&bad), Error::Checksum);
}

#[test]
fn haproxy_v2_ipv6_without_client_certificate() {
    let bytes = include_bytes!("../testdata/v2_ssl_nocert_v6.bin");
    let h = fixture(bytes);
    assert_eq!(
        h.addrs,
        Some(Addrs {
            src: sa("[::1]:43966"),
            dst: sa("[::1]:54669")
        })
    );
    let ssl = h.tlvs.ssl.unwrap();
    // HAProxy sends verify 0 without a certificate: only the CERT bits say none was seen.
    assert_eq!((ssl.client, ssl.verify), (PP2_CLIENT_SSL, 0));
    assert!(!ssl.client_verified());
    assert_eq!(ssl.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(h.tlvs.alpn.as_deref(), Some(&b"h2"[..]));
}

#[test]
fn haproxy_v2_plain_and_local() {
    let h = fixture(include_bytes!("../testdata/v2_plain_v4.bin"));
    assert_eq!(
        h.addrs,
        Some(Addrs {
            src: sa("127.0.0.1:36976"),
            dst: sa("127.0.0.1:55849")
        })
    );
    assert_eq!(h.tlvs, Tlvs::default());
    // A health check: LOCAL, and nothing follows it.
    let local = include_bytes!("../testdata/v2_local_check.bin");
    assert_eq!(
        header(local),
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
    let mut ours = Vec::new();
    encode_v2_local(&mut ours);
    assert_eq!(ours, local);
}
