//! Criterion benches of tern's tls layer, server side only: a full TLS 1.3 handshake through
//! `tern::tls` against an in-memory rustls client, and 16 KiB application-data records each way.
//! Only the server's calls are timed (`iter_custom`), so the figures are the terminator's cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tern::tls::{self, certs, Plain, ServerSession, ServerTls, TlsSettings};

struct Setup {
    server: ServerTls,
    client: Arc<ClientConfig>,
}

fn setup(alg: &'static rcgen::SignatureAlgorithm, group: &'static dyn SupportedKxGroup) -> Setup {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ck = certs::from_der(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        &tls::provider(),
    )
    .unwrap();
    let server = ServerTls::new(&TlsSettings {
        key: ck,
        alpn: vec![],
        tickets: None,
    })
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .unwrap();
    let provider = CryptoProvider {
        kx_groups: vec![group],
        ..aws_lc_rs::default_provider()
    };
    let client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Setup {
        server,
        client: Arc::new(client),
    }
}

/// Runs one handshake; returns the time spent in server-side calls.
fn handshake(s: &Setup) -> (Duration, ServerSession, ClientConnection) {
    let mut client =
        ClientConnection::new(s.client.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut server_time = Duration::ZERO;
    let t = Instant::now();
    let mut server = s.server.session().unwrap();
    server_time += t.elapsed();
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        c2s.clear();
        while client.wants_write() {
            client.write_tls(&mut c2s).unwrap();
        }
        let t = Instant::now();
        let mut fed = 0;
        while fed < c2s.len() {
            fed += server.feed(&c2s[fed..]).unwrap();
        }
        s2c.clear();
        server.write_tls_into(&mut s2c);
        server_time += t.elapsed();
        let mut rd = &s2c[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
        if c2s.is_empty() && s2c.is_empty() && !client.wants_write() {
            break;
        }
    }
    (server_time, server, client)
}

fn bench_handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("server_handshake_tls13");
    g.throughput(Throughput::Elements(1));
    let cases: [(
        &str,
        &'static rcgen::SignatureAlgorithm,
        &'static dyn SupportedKxGroup,
    ); 4] = [
        (
            "ecdsa_p256/x25519",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            aws_lc_rs::kx_group::X25519,
        ),
        (
            "ecdsa_p256/x25519mlkem768",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            aws_lc_rs::kx_group::X25519MLKEM768,
        ),
        (
            "rsa2048/x25519",
            &rcgen::PKCS_RSA_SHA256,
            aws_lc_rs::kx_group::X25519,
        ),
        (
            "ed25519/x25519",
            &rcgen::PKCS_ED25519,
            aws_lc_rs::kx_group::X25519,
        ),
    ];
    for (name, alg, group) in cases {
        let s = setup(alg, group);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|n| (0..n).map(|_| handshake(&s).0).sum())
        });
    }
    g.finish();
}

fn bench_records(c: &mut Criterion) {
    const LEN: usize = 16 * 1024;
    let s = setup(&rcgen::PKCS_ECDSA_P256_SHA256, aws_lc_rs::kx_group::X25519);
    let (_, mut server, mut client) = handshake(&s);
    let data = vec![0x5au8; LEN];
    let mut g = c.benchmark_group("record_16k");
    g.throughput(Throughput::Bytes(LEN as u64));

    let mut out = Vec::with_capacity(LEN + 1024);
    g.bench_function("encrypt", |b| {
        b.iter(|| {
            let mut off = 0;
            while off < LEN {
                off += server.write_plain(&data[off..]);
            }
            out.clear();
            server.write_tls_into(&mut out);
            out.len()
        })
    });

    // The client encrypts `n` records (untimed), then the server decrypts them (timed); the
    // pair persists across iterations so record sequence numbers simply continue.
    use std::io::Write;
    let mut wire = Vec::new();
    let mut plain = vec![0u8; LEN];
    g.bench_function("decrypt", |b| {
        b.iter_custom(|n| {
            wire.clear();
            for _ in 0..n {
                client.writer().write_all(&data).unwrap();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
            }
            let t = Instant::now();
            let (mut fed, mut got) = (0, 0);
            while got < LEN * n as usize {
                if fed < wire.len() {
                    fed += server.feed(&wire[fed..]).unwrap();
                }
                while let Plain::Data(k) = server.read_plain(&mut plain) {
                    got += k;
                }
            }
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_handshakes, bench_records);
criterion_main!(benches);
