//! The PROXY protocol header tern sends a backend first (`--proxy-protocol v1|v2`), so it
//! learns the client's address: the client's socket address and the one it connected to, and
//! in v2 what the client negotiated with tern: ALPN, the server name (authority) and the SSL
//! TLV (TLS version and cipher; with a verified client certificate its bits, verify 0 and its
//! subject's common name), as HAProxy sends them to Varnish or another HAProxy.
//! tern's own connections (health checks) send LOCAL (v2) or `PROXY UNKNOWN` (v1).

use std::net::SocketAddr;

use crate::proxyproto::{self, Ssl, Tlvs, Version};
use crate::tls::SessionInfo;

/// The header for a connection relayed for the client at `src` that connected to `dst`.
pub fn header(version: Version, src: SocketAddr, dst: SocketAddr, info: &SessionInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    match version {
        Version::V1 => proxyproto::encode_v1(src, dst, &mut out),
        Version::V2 => {
            let mut ssl = Ssl::terminated(info.version, &iana_suite(info.suite));
            if let Some(id) = info.client_cert.verified() {
                // The client showed a certificate and it verified (mTLS): CERT_CONN and
                // CERT_SESS, verify 0, and the subject's common name.
                ssl = ssl.with_verified_client(id.cn.as_deref());
            }
            let tlvs = Tlvs {
                alpn: info.alpn.clone(),
                authority: info.sni.clone(),
                ssl: Some(ssl),
                ..Tlvs::default()
            };
            if proxyproto::encode_v2(src, dst, &tlvs, &mut out).is_err() {
                // Only a TLV over 64 KiB could do this, and no name or protocol is that long:
                // the addresses are what the backend needs most.
                proxyproto::encode_v2(src, dst, &Tlvs::default(), &mut out)
                    .unwrap_or_else(|_| unreachable!("a header without TLVs always fits"));
            }
        }
    }
    out
}

/// The header of tern's own connections (health checks): the receiver uses the socket's
/// addresses.
pub fn local_header(version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    match version {
        Version::V1 => out.extend_from_slice(b"PROXY UNKNOWN\r\n"),
        Version::V2 => proxyproto::encode_v2_local(&mut out),
    }
    out
}

/// rustls names TLS 1.3 suites `TLS13_...`; the registry (and OpenSSL, and HAProxy's TLV)
/// says `TLS_AES_128_GCM_SHA256`. TLS 1.2 names are the registry's already.
fn iana_suite(name: &str) -> String {
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxyproto::{parse, Command, Parsed};

    fn info() -> SessionInfo {
        SessionInfo {
            version: "TLSv1.3",
            suite: "TLS13_AES_256_GCM_SHA384",
            sni: Some("shop.example".into()),
            alpn: Some(b"http/1.1".to_vec()),
            ..SessionInfo::default()
        }
    }

    fn parsed(bytes: &[u8]) -> crate::proxyproto::Header {
        match parse(bytes).unwrap() {
            Parsed::Header { len, header } => {
                assert_eq!(len, bytes.len(), "exactly the header");
                header
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v2_carries_addresses_and_what_the_client_negotiated() {
        let src: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let dst: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let h = parsed(&header(Version::V2, src, dst, &info()));
        assert_eq!(h.command, Command::Proxy);
        let a = h.addrs.unwrap();
        assert_eq!((a.src, a.dst), (src, dst));
        assert_eq!(h.tlvs.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(h.tlvs.authority.as_deref(), Some("shop.example"));
        let ssl = h.tlvs.ssl.unwrap();
        assert!(ssl.is_tls() && !ssl.client_verified());
        assert_eq!(ssl.version.as_deref(), Some("TLSv1.3"));
        assert_eq!(ssl.cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
    }

    #[test]
    fn a_verified_client_certificate_is_in_the_ssl_tlv() {
        let src: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let dst: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let mut i = info();
        let mut id = crate::tls::ClientIdentity::from_der(&[]);
        id.cn = Some("alice".into());
        i.client_cert = crate::tls::ClientCert::Verified(Box::new(id));
        let ssl = parsed(&header(Version::V2, src, dst, &i)).tlvs.ssl.unwrap();
        assert!(ssl.client_verified());
        assert_eq!((ssl.verify, ssl.cn.as_deref()), (0, Some("alice")));
        // Asked for and not sent: no certificate bits, verify non-zero.
        i.client_cert = crate::tls::ClientCert::Absent;
        let ssl = parsed(&header(Version::V2, src, dst, &i)).tlvs.ssl.unwrap();
        assert!(!ssl.client_verified() && ssl.verify != 0);
    }

    #[test]
    fn v1_and_mixed_families() {
        let src: SocketAddr = "[2001:db8::5]:4000".parse().unwrap();
        let dst: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let bytes = header(Version::V1, src, dst, &info());
        assert!(bytes.starts_with(b"PROXY TCP6 2001:db8::5 "), "{bytes:?}");
        let a = parsed(&bytes).addrs.unwrap();
        assert_eq!(a.src, src);
        assert_eq!(a.dst.ip().to_canonical(), dst.ip());
    }

    #[test]
    fn health_checks_say_local() {
        let v2 = parsed(&local_header(Version::V2));
        assert_eq!((v2.command, v2.addrs), (Command::Local, None));
        let v1 = parsed(&local_header(Version::V1));
        assert_eq!(v1.addrs, None);
    }

    #[test]
    fn suite_names_are_the_registry_s() {
        assert_eq!(
            iana_suite("TLS13_AES_128_GCM_SHA256"),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_suite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        );
    }
}
