//! Parser and encoder tests: the spec's examples and limits, every class of refusal, round
//! trips (`encoding`), and headers captured from a real HAProxy (`haproxy`: `testdata/`, made
//! by `capture.py`).

mod encoding;
mod haproxy;
mod v1;
mod v2;

use std::net::SocketAddr;

pub use super::tlv::{
    PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS, PP2_CLIENT_SSL, PP2_SUBTYPE_SSL_CIPHER,
    PP2_SUBTYPE_SSL_CN, PP2_SUBTYPE_SSL_KEY_ALG, PP2_SUBTYPE_SSL_SIG_ALG, PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_CRC32C, PP2_TYPE_NETNS, PP2_TYPE_NOOP,
    PP2_TYPE_SSL, PP2_TYPE_UNIQUE_ID,
};
pub use super::*;

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn header(buf: &[u8]) -> (usize, Header) {
    match parse(buf) {
        Ok(Parsed::Header { len, header }) => (len, header),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

pub fn error(buf: &[u8]) -> Error {
    match parse(buf) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// Every proper prefix of a valid header is `Incomplete`, asking for no more than its length.
pub fn every_prefix_incomplete(buf: &[u8], len: usize) {
    for cut in 0..len {
        match parse(&buf[..cut]) {
            Ok(Parsed::Incomplete { at_least }) => {
                assert!(at_least > cut && at_least <= len, "cut {cut}: {at_least}")
            }
            other => panic!("cut {cut} of {:?}: {other:?}", &buf[..len]),
        }
    }
}

/// A v2 header with the given version/command and family bytes around `body`.
pub fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[ver_cmd, fam]);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

pub const V4_BLOCK: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb];

pub fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut t = vec![kind];
    t.extend_from_slice(&(value.len() as u16).to_be_bytes());
    t.extend_from_slice(value);
    t
}

pub fn v4_with(tlvs: &[u8]) -> Vec<u8> {
    v2(0x21, 0x11, &[&V4_BLOCK[..], tlvs].concat())
}
