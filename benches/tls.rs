//! Criterion benches of tern's tls layer, server side only: a full TLS 1.3 handshake through
//! `tern::tls` against an in-memory rustls client, and 16 KiB application-data records each way
//! through tern's own record layer. Only the server's calls are timed (`iter_custom`), so the
//! figures are the terminator's cost.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tern::tls::{self, certs, Control, Established, RxEvent, ServerTls, Step, TlsSettings};

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
    let server = ServerTls::new(
        &TlsSettings {
            alpn: vec![],
            tickets: None,
            ..TlsSettings::new(certs::CertStore::single(ck))
        },
        None,
    )
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
fn handshake(s: &Setup) -> (Duration, Established, ClientConnection) {
    let mut client =
        ClientConnection::new(s.client.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut server_time = Duration::ZERO;
    let t = Instant::now();
    let mut server = s.server.accept().unwrap();
    server_time += t.elapsed();
    let (mut inbox, mut out) = (Vec::new(), vec![0u8; 64 * 1024]);
    loop {
        while client.wants_write() {
            client.write_tls(&mut inbox).unwrap();
        }
        let t = Instant::now();
        let (consumed, step) = server.step(&mut inbox, &mut out).unwrap();
        server_time += t.elapsed();
        inbox.drain(..consumed);
        match step {
            Step::Send(n) => {
                let mut rd = &out[..n];
                while !rd.is_empty() {
                    client.read_tls(&mut rd).unwrap();
                    client.process_new_packets().unwrap();
                }
            }
            Step::NeedMore => assert!(client.wants_write(), "handshake stalled"),
            Step::Done => break,
        }
    }
    let t = Instant::now();
    let established = server.finish().unwrap();
    server_time += t.elapsed();
    (server_time, established, client)
}

fn bench_handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("server_handshake_tls13");
    g.throughput(Throughput::Elements(1));
    type Case = (
        &'static str,
        &'static rcgen::SignatureAlgorithm,
        &'static dyn SupportedKxGroup,
    );
    let cases: [Case; 4] = [
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
    let (_, server, mut client) = handshake(&s);
    let Established {
        mut rx,
        mut tx,
        control,
        ..
    } = server;
    let control: RefCell<Control> = control;
    let data = vec![0x5au8; LEN];
    let mut g = c.benchmark_group("record_16k");
    g.throughput(Throughput::Bytes(LEN as u64));

    let mut out = vec![0u8; LEN + 1024];
    g.bench_function("seal", |b| {
        b.iter(|| tx.seal_data(&data, &mut out, &control).unwrap())
    });

    // The client seals `n` records (untimed), then the server opens them in place (timed);
    // the pair persists across iterations so sequence numbers simply continue.
    let mut wire = Vec::new();
    g.bench_function("open", |b| {
        b.iter_custom(|n| {
            wire.clear();
            for _ in 0..n {
                client.writer().write_all(&data).unwrap();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
            }
            let t = Instant::now();
            let (mut at, mut got) = (0, 0);
            while got < LEN * n as usize {
                let (used, event) = rx.next(&mut wire[at..], &control).unwrap().unwrap();
                if let RxEvent::Data(r) = event {
                    got += r.len();
                }
                at += used;
            }
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_handshakes, bench_records);
criterion_main!(benches);
