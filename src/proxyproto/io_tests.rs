//! `read_header` over real loopback sockets, on the epoll driver and, where the kernel
//! allows it, on io_uring: the header is taken and nothing after it.

use std::future::Future;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use super::*;
use crate::proxyproto::{
    encode_v1, encode_v2, Addrs, Ssl, Tlvs, Version, DEFAULT_MAX_HEADER, V2_SIGNATURE,
};

/// Every wait in these tests ends by this: a hang is a failure, not a stuck test.
const BOUND: Duration = Duration::from_secs(10);

const TLS_BYTES: &[u8] = b"\x16\x03\x01\x00\x05hello";

/// Runs the scenario on the epoll driver, then on io_uring when a ring can be had here.
fn on_each_driver<F: Future<Output = ()>>(scenario: impl Fn() -> F) {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(scenario());
    if let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        rt.block_on(scenario());
    } else {
        eprintln!("no io_uring ring here: the epoll driver only");
    }
}

/// An accepted socket and the client connected to it.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = monoio::join!(TcpStream::connect(addr), listener.accept());
    (accepted.unwrap().0, client.unwrap())
}

/// Sends `pieces` one after another with a pause between (so that they arrive as separate
/// segments), then closes.
async fn send(mut client: TcpStream, pieces: Vec<Vec<u8>>) {
    let last = pieces.len().saturating_sub(1);
    for (i, p) in pieces.into_iter().enumerate() {
        let (res, _) = client.write_all(p).await;
        res.unwrap();
        if i < last {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Everything left in the socket until the peer's close.
async fn rest(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let read = monoio::time::timeout(BOUND, stream.read(vec![0u8; 4096])).await;
        let (res, buf) = read.expect("the client closes");
        match res.unwrap() {
            0 => return all,
            n => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads a header off a connection the client fed with `pieces`; also returns what was left
/// in the socket after it.
async fn exchange(
    pieces: Vec<Vec<u8>>,
    timeout: Duration,
    max: usize,
) -> (Result<Option<Header>, ReadError>, Vec<u8>) {
    let (mut server, client) = pair().await;
    let (got, ()) = monoio::join!(read_header(&server, timeout, max), send(client, pieces));
    let left = rest(&mut server).await;
    (got, left)
}

fn v2_with_tlvs() -> (Vec<u8>, Tlvs) {
    let tlvs = Tlvs {
        alpn: Some(b"h2".to_vec()),
        authority: Some("tern.example".into()),
        ssl: Some(
            Ssl::terminated("TLSv1.3", "TLS_AES_128_GCM_SHA256")
                .with_verified_client(Some("alice")),
        ),
        crc32c: true,
        ..Tlvs::default()
    };
    let mut out = Vec::new();
    let (src, dst) = (
        "[2001:db8::5]:40001".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    encode_v2(src, dst, &tlvs, &mut out).unwrap();
    (out, tlvs)
}

#[test]
fn v1_header_then_the_tls_bytes() {
    on_each_driver(|| async {
        let mut line = Vec::new();
        encode_v1(
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.2:443".parse().unwrap(),
            &mut line,
        );
        let (got, left) = exchange(
            vec![[&line[..], TLS_BYTES].concat()],
            BOUND,
            DEFAULT_MAX_HEADER,
        )
        .await;
        let h = got.unwrap().unwrap();
        assert_eq!(h.version, Version::V1);
        assert_eq!(h.addrs.unwrap().src, "192.0.2.1:5000".parse().unwrap());
        assert_eq!(left, TLS_BYTES);
    });
}

#[test]
fn v2_header_with_tlvs_then_the_tls_bytes() {
    on_each_driver(|| async {
        let (bytes, tlvs) = v2_with_tlvs();
        let (got, left) = exchange(
            vec![[&bytes[..], TLS_BYTES].concat()],
            BOUND,
            DEFAULT_MAX_HEADER,
        )
        .await;
        let h = got.unwrap().unwrap();
        assert_eq!(h.tlvs, tlvs);
        assert_eq!(
            h.addrs,
            Some(Addrs {
                src: "[2001:db8::5]:40001".parse().unwrap(),
                dst: "[2001:db8::1]:443".parse().unwrap()
            })
        );
        assert_eq!(left, TLS_BYTES);
        // HAProxy's own bytes, with what it relayed after them.
        let fixture = include_bytes!("testdata/v2_all.bin").to_vec();
        let (got, left) = exchange(vec![fixture], BOUND, DEFAULT_MAX_HEADER).await;
        let cn = got.unwrap().unwrap().tlvs.ssl.and_then(|s| s.cn);
        assert_eq!(cn.as_deref(), Some("client.tern.example"));
        assert_eq!(left, b"hello after the header\n");
    });
}

#[test]
fn headers_arriving_in_pieces() {
    on_each_driver(|| async {
        // A v1 line a byte at a time, with the TLS bytes behind its last piece.
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n".to_vec();
        let mut pieces: Vec<Vec<u8>> = line.iter().map(|&b| vec![b]).collect();
        pieces.last_mut().unwrap().extend_from_slice(TLS_BYTES);
        let (got, left) = exchange(pieces, BOUND, DEFAULT_MAX_HEADER).await;
        assert_eq!(
            got.unwrap().unwrap().addrs.unwrap().dst,
            "[2001:db8::2]:2".parse().unwrap()
        );
        assert_eq!(left, TLS_BYTES);
        // A v2 header cut inside its fixed part, then inside its TLVs.
        let (bytes, tlvs) = v2_with_tlvs();
        let pieces = vec![
            bytes[..10].to_vec(),
            bytes[10..40].to_vec(),
            [&bytes[40..], TLS_BYTES].concat(),
        ];
        let (got, left) = exchange(pieces, BOUND, DEFAULT_MAX_HEADER).await;
        assert_eq!(got.unwrap().unwrap().tlvs, tlvs);
        assert_eq!(left, TLS_BYTES);
    });
}

#[test]
fn a_header_larger_than_the_first_peek() {
    on_each_driver(|| async {
        let tlvs = Tlvs {
            authority: Some("a".repeat(3000)),
            ..Tlvs::default()
        };
        let mut bytes = Vec::new();
        encode_v2(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
            &tlvs,
            &mut bytes,
        )
        .unwrap();
        assert!(bytes.len() > FIRST_PEEK);
        let (got, left) = exchange(
            vec![[&bytes[..], TLS_BYTES].concat()],
            BOUND,
            DEFAULT_MAX_HEADER,
        )
        .await;
        assert_eq!(got.unwrap().unwrap().tlvs, tlvs);
        assert_eq!(left, TLS_BYTES);
    });
}

#[test]
fn local_is_none_and_keeps_what_follows() {
    on_each_driver(|| async {
        let mut bytes = Vec::new();
        super::super::encode_v2_local(&mut bytes);
        bytes.extend_from_slice(TLS_BYTES);
        let (got, left) = exchange(vec![bytes], BOUND, DEFAULT_MAX_HEADER).await;
        assert!(got.unwrap().is_none());
        assert_eq!(left, TLS_BYTES);
    });
}

#[test]
fn garbage_is_refused() {
    on_each_driver(|| async {
        let (got, _) = exchange(
            vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()],
            BOUND,
            DEFAULT_MAX_HEADER,
        )
        .await;
        assert!(
            matches!(got, Err(ReadError::Invalid(Error::NotProxy))),
            "{got:?}"
        );
        // A TLS ClientHello where a header should be.
        let (got, _) = exchange(vec![TLS_BYTES.to_vec()], BOUND, DEFAULT_MAX_HEADER).await;
        assert!(
            matches!(got, Err(ReadError::Invalid(Error::NotProxy))),
            "{got:?}"
        );
        let (mut bytes, _) = v2_with_tlvs();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let (got, _) = exchange(vec![bytes], BOUND, DEFAULT_MAX_HEADER).await;
        assert!(
            matches!(got, Err(ReadError::Invalid(Error::Checksum))),
            "{got:?}"
        );
        // Over the bound: refused from the fixed part.
        let (bytes, _) = v2_with_tlvs();
        let (got, _) = exchange(vec![bytes[..16].to_vec()], BOUND, 40).await;
        assert!(
            matches!(
                got,
                Err(ReadError::Invalid(Error::TooLarge { max: 40, .. }))
            ),
            "{got:?}"
        );
    });
}

#[test]
fn truncated_then_closed() {
    on_each_driver(|| async {
        let (bytes, _) = v2_with_tlvs();
        let (got, _) = exchange(vec![bytes[..20].to_vec()], BOUND, DEFAULT_MAX_HEADER).await;
        assert!(
            matches!(got, Err(ReadError::Closed { after: 20 })),
            "{got:?}"
        );
        let (got, _) = exchange(vec![b"PROXY TCP4 1.2".to_vec()], BOUND, DEFAULT_MAX_HEADER).await;
        assert!(
            matches!(got, Err(ReadError::Closed { after: 14 })),
            "{got:?}"
        );
        let (got, _) = exchange(vec![], BOUND, DEFAULT_MAX_HEADER).await;
        assert!(
            matches!(got, Err(ReadError::Closed { after: 0 })),
            "{got:?}"
        );
    });
}

#[test]
fn silent_or_stalled_clients_are_cut_at_the_timeout() {
    on_each_driver(|| async {
        for sent in [&b""[..], &V2_SIGNATURE[..7], b"PROXY TCP4 "] {
            let (server, mut client) = pair().await;
            if !sent.is_empty() {
                client.write_all(sent.to_vec()).await.0.unwrap();
            }
            let got = read_header(&server, Duration::from_millis(100), DEFAULT_MAX_HEADER).await;
            assert!(matches!(got, Err(ReadError::Timeout)), "{sent:?}: {got:?}");
            drop(client);
        }
    });
}
